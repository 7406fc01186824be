//! Sets declared with `typeof`: the key is named by the expressions that
//! load it, not by datatypes. It is the only way nft has to declare a key
//! holding a raw payload (`@th,64,128`, an integer of 16 bytes): `type`
//! has no spelling for an integer of a given width. The kernel keeps only
//! the key's type id and length; nft reads the expressions from the set's
//! user data (NFTNL_UDATA_SET_KEY_TYPEOF) to list the elements and to
//! type-check rules and elements of `nft -f` against the set. The layout
//! below is the one nft 1.0.6 writes for the same declaration.
//!
//! ```text
//! KEY_TYPEOF { EXPR: u32 kind, DATA { ... } }
//!   concat:  DATA { 0: { EXPR, DATA }, 1: { EXPR, DATA }, ... }
//!   meta:    DATA { 0: u32 key }
//!   payload: DATA { 0: u32 protocol, 1: u32 field }            (a named field)
//!            DATA { 0: 0, 1: 0, 2: u32 base, 3: u32 offset bits, 4: u32 length bits }
//! ```
//! Values are in host byte order, as nft's user data helpers write them.

use crate::error::{NftError, Result};
use crate::rule::Field;
use crate::types::DataType;

/// NFTNL_UDATA_SET_KEY_TYPEOF.
pub(crate) const UDATA_SET_KEY_TYPEOF: u8 = 3;
const TYPEOF_EXPR: u8 = 0;
const TYPEOF_DATA: u8 = 1;

/// nft's expression kinds.
const EXPR_PAYLOAD: u32 = 7;
const EXPR_META: u32 = 9;
const EXPR_CONCAT: u32 = 13;

const META_KEY: u8 = 0;
const PAYLOAD_DESC: u8 = 0;
const PAYLOAD_TYPE: u8 = 1;
const PAYLOAD_BASE: u8 = 2;
const PAYLOAD_OFFSET: u8 = 3;
const PAYLOAD_LEN: u8 = 4;

/// nft's protocol descriptions and the index of a field in each.
const PROTO_IP: u32 = 12;
const PROTO_IP6: u32 = 13;
const PROTO_ARP: u32 = 15;
const PROTO_ETHER: u32 = 17;
/// nft's PROTO_BASE_TRANSPORT_HDR (not the kernel's payload base number).
const BASE_TRANSPORT: u32 = 3;

/// How nft describes one field of a typeof key.
enum Expr {
    Meta(u32),
    Payload { proto: u32, field: u32 },
    Raw { base: u32, offset: u32, len: u32 },
}

fn expr_of(field: Field) -> Result<Expr> {
    Ok(match field {
        Field::Mark => Expr::Meta(3),
        Field::Iifname => Expr::Meta(6),
        Field::Oifname => Expr::Meta(7),
        Field::EtherSaddr => Expr::Payload {
            proto: PROTO_ETHER,
            field: 2,
        },
        Field::IpSaddr => Expr::Payload {
            proto: PROTO_IP,
            field: 11,
        },
        Field::Ip6Saddr => Expr::Payload {
            proto: PROTO_IP6,
            field: 8,
        },
        Field::ArpSaddrIp => Expr::Payload {
            proto: PROTO_ARP,
            field: 7,
        },
        Field::NdTarget => Expr::Raw {
            base: BASE_TRANSPORT,
            offset: 64,
            len: 128,
        },
        f => {
            return Err(NftError::Invalid(format!(
                "{} cannot be part of a typeof key",
                f.as_str()
            )))
        }
    })
}

/// The datatype of a set key field that holds `field`.
pub(crate) fn key_type(field: Field) -> DataType {
    match field {
        Field::IpSaddr | Field::IpDaddr | Field::ArpSaddrIp => DataType::Ipv4Addr,
        Field::Ip6Saddr | Field::Ip6Daddr => DataType::Ipv6Addr,
        Field::L4Proto | Field::Ip6Nexthdr => DataType::InetProto,
        Field::ThSport | Field::ThDport => DataType::InetService,
        Field::Iifname | Field::Oifname => DataType::Ifname,
        Field::Mark => DataType::Mark,
        Field::EtherSaddr | Field::ArpSaddrEther => DataType::EtherAddr,
        Field::Icmpv6Type | Field::NdTarget => DataType::Integer(field.len() as u8),
    }
}

/// nft's spelling of the key: `iifname . ether saddr . @th,64,128`.
pub(crate) fn render(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(" . ")
}

/// One user data TLV: type, length, value.
fn put(out: &mut Vec<u8>, ty: u8, value: &[u8]) {
    out.push(ty);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

fn put_u32(out: &mut Vec<u8>, ty: u8, v: u32) {
    put(out, ty, &v.to_ne_bytes());
}

/// `{ EXPR: kind, DATA { ... } }` of one field.
fn field_udata(field: Field) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    let kind = match expr_of(field)? {
        Expr::Meta(key) => {
            put_u32(&mut data, META_KEY, key);
            EXPR_META
        }
        Expr::Payload { proto, field } => {
            put_u32(&mut data, PAYLOAD_DESC, proto);
            put_u32(&mut data, PAYLOAD_TYPE, field);
            EXPR_PAYLOAD
        }
        Expr::Raw { base, offset, len } => {
            put_u32(&mut data, PAYLOAD_DESC, 0);
            put_u32(&mut data, PAYLOAD_TYPE, 0);
            put_u32(&mut data, PAYLOAD_BASE, base);
            put_u32(&mut data, PAYLOAD_OFFSET, offset);
            put_u32(&mut data, PAYLOAD_LEN, len);
            EXPR_PAYLOAD
        }
    };
    let mut out = Vec::new();
    put_u32(&mut out, TYPEOF_EXPR, kind);
    put(&mut out, TYPEOF_DATA, &data);
    Ok(out)
}

/// The KEY_TYPEOF user data TLV of a key made of `fields`.
pub(crate) fn udata(fields: &[Field]) -> Result<Vec<u8>> {
    let inner = match fields {
        [] => return Err(NftError::Invalid("a typeof key needs a field".into())),
        [one] => field_udata(*one)?,
        many => {
            let mut parts = Vec::new();
            for (i, f) in many.iter().enumerate() {
                put(&mut parts, i as u8, &field_udata(*f)?);
            }
            let mut out = Vec::new();
            put_u32(&mut out, TYPEOF_EXPR, EXPR_CONCAT);
            put(&mut out, TYPEOF_DATA, &parts);
            out
        }
    };
    if inner.len() > u8::MAX as usize {
        return Err(NftError::Invalid(format!(
            "typeof {} is too long for nft's user data",
            render(fields)
        )));
    }
    let mut out = Vec::new();
    put(&mut out, UDATA_SET_KEY_TYPEOF, &inner);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes nft 1.0.6 writes for `typeof iifname . ether saddr .
    /// @th,64,128` (after its key byte order TLV), taken from
    /// `nft --debug=mnl`.
    #[test]
    fn the_nd_key_is_encoded_as_nft_does() {
        let got = udata(&[Field::Iifname, Field::EtherSaddr, Field::NdTarget]).unwrap();
        let want: Vec<u8> = [
            "03 56 00 04 0d 00 00 00 01 4e",
            "00 0e 00 04 09 00 00 00 01 06 00 04 06 00 00 00",
            "01 14 00 04 07 00 00 00 01 0c 00 04 11 00 00 00 01 04 02 00 00 00",
            "02 26 00 04 07 00 00 00 01 1e 00 04 00 00 00 00 01 04 00 00 00 00",
            "02 04 03 00 00 00 03 04 40 00 00 00 04 04 80 00 00 00",
        ]
        .join(" ")
        .split(' ')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
        if cfg!(target_endian = "little") {
            assert_eq!(got, want);
        }
        assert_eq!(
            render(&[Field::Iifname, Field::EtherSaddr, Field::NdTarget]),
            "iifname . ether saddr . @th,64,128"
        );
    }

    #[test]
    fn fields_without_a_known_description_are_refused() {
        assert!(udata(&[Field::Iifname, Field::ThDport]).is_err());
        assert!(udata(&[]).is_err());
    }
}

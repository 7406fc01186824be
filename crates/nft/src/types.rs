//! Typed values shared by sets, elements and rules: families, protocols, verdicts,
//! set data types and their kernel encodings and nft spellings.

use crate::error::{NftError, Result};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// nf_tables address family of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `inet`: IPv4 and IPv6.
    Inet,
    /// `ip`
    Ip,
    /// `ip6`
    Ip6,
    /// `arp`
    Arp,
    /// `bridge`
    Bridge,
    /// `netdev`
    Netdev,
}

impl Family {
    /// NFPROTO_* value.
    pub fn to_raw(self) -> u8 {
        match self {
            Family::Inet => 1,
            Family::Ip => 2,
            Family::Arp => 3,
            Family::Netdev => 5,
            Family::Bridge => 7,
            Family::Ip6 => 10,
        }
    }
    /// Inverse of [`Family::to_raw`].
    pub fn from_raw(v: u8) -> Option<Family> {
        Some(match v {
            1 => Family::Inet,
            2 => Family::Ip,
            3 => Family::Arp,
            5 => Family::Netdev,
            7 => Family::Bridge,
            10 => Family::Ip6,
            _ => return None,
        })
    }
    /// nft keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Arp => "arp",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Layer 4 protocol number, as matched by `meta l4proto` / stored as `inet_proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4Proto {
    /// 6
    Tcp,
    /// 17
    Udp,
    /// 1
    Icmp,
    /// 58
    Icmpv6,
    /// 132
    Sctp,
    /// Any other protocol number.
    Other(u8),
}

impl L4Proto {
    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            L4Proto::Tcp => 6,
            L4Proto::Udp => 17,
            L4Proto::Icmp => 1,
            L4Proto::Icmpv6 => 58,
            L4Proto::Sctp => 132,
            L4Proto::Other(n) => n,
        }
    }
    /// From a protocol number.
    pub fn from_number(n: u8) -> L4Proto {
        match n {
            6 => L4Proto::Tcp,
            17 => L4Proto::Udp,
            1 => L4Proto::Icmp,
            58 => L4Proto::Icmpv6,
            132 => L4Proto::Sctp,
            n => L4Proto::Other(n),
        }
    }
}

impl fmt::Display for L4Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            L4Proto::Tcp => f.write_str("tcp"),
            L4Proto::Udp => f.write_str("udp"),
            L4Proto::Icmp => f.write_str("icmp"),
            L4Proto::Icmpv6 => f.write_str("ipv6-icmp"),
            L4Proto::Sctp => f.write_str("sctp"),
            L4Proto::Other(n) => write!(f, "{n}"),
        }
    }
}

/// A rule or map verdict.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// `accept`
    Accept,
    /// `drop`
    Drop,
    /// `continue`
    Continue,
    /// `return`
    Return,
    /// `jump <chain>`
    Jump(String),
    /// `goto <chain>`
    Goto(String),
}

impl Verdict {
    pub(crate) fn code(&self) -> i32 {
        match self {
            Verdict::Drop => 0,
            Verdict::Accept => 1,
            Verdict::Continue => -1,
            Verdict::Jump(_) => -3,
            Verdict::Goto(_) => -4,
            Verdict::Return => -5,
        }
    }
    pub(crate) fn chain(&self) -> Option<&str> {
        match self {
            Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
            _ => None,
        }
    }
    pub(crate) fn from_code(code: i32, chain: Option<String>) -> Option<Verdict> {
        Some(match (code, chain) {
            (0, _) => Verdict::Drop,
            (1, _) => Verdict::Accept,
            (-1, _) => Verdict::Continue,
            (-5, _) => Verdict::Return,
            (-3, Some(c)) => Verdict::Jump(c),
            (-4, Some(c)) => Verdict::Goto(c),
            _ => return None,
        })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Continue => f.write_str("continue"),
            Verdict::Return => f.write_str("return"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

/// Data type of a set key field or map data field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `ipv4_addr`
    Ipv4Addr,
    /// `ipv6_addr`
    Ipv6Addr,
    /// `inet_proto`
    InetProto,
    /// `inet_service` (port)
    InetService,
    /// `ifname`
    Ifname,
    /// `mark`
    Mark,
    /// `ether_addr` (a MAC address)
    EtherAddr,
    /// `verdict` (map data only)
    Verdict,
    /// `integer` of this many bytes: a raw payload (`@th,64,128`), which
    /// only a set declared with `typeof` can hold.
    Integer(u8),
}

/// Bits per type in nft's concatenated type id (TYPE_BITS in nftables).
const TYPE_BITS: u32 = 6;

impl DataType {
    /// nftables datatype id (stored in NFTA_SET_KEY_TYPE / NFTA_SET_DATA_TYPE).
    pub fn id(self) -> u32 {
        match self {
            DataType::Verdict => 1,
            DataType::Ipv4Addr => 7,
            DataType::Ipv6Addr => 8,
            DataType::InetProto => 12,
            DataType::InetService => 13,
            DataType::EtherAddr => 9,
            DataType::Mark => 19,
            DataType::Ifname => 41,
            DataType::Integer(_) => 4,
        }
    }
    /// An integer's length is not in its id: [`split_type_id`] leaves it 0
    /// for the caller to fill in from the key's length.
    fn from_id(id: u32) -> Option<DataType> {
        Some(match id {
            1 => DataType::Verdict,
            7 => DataType::Ipv4Addr,
            8 => DataType::Ipv6Addr,
            12 => DataType::InetProto,
            13 => DataType::InetService,
            9 => DataType::EtherAddr,
            19 => DataType::Mark,
            41 => DataType::Ifname,
            4 => DataType::Integer(0),
            _ => return None,
        })
    }
    /// Size of a value in bytes, before register padding.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        match self {
            DataType::Ipv4Addr | DataType::Mark => 4,
            DataType::Ipv6Addr | DataType::Ifname => 16,
            DataType::InetProto => 1,
            DataType::InetService => 2,
            DataType::EtherAddr => 6,
            DataType::Verdict => 0,
            DataType::Integer(n) => n.into(),
        }
    }
    /// nft spelling.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Ipv4Addr => "ipv4_addr",
            DataType::Ipv6Addr => "ipv6_addr",
            DataType::InetProto => "inet_proto",
            DataType::InetService => "inet_service",
            DataType::Ifname => "ifname",
            DataType::Mark => "mark",
            DataType::EtherAddr => "ether_addr",
            DataType::Verdict => "verdict",
            DataType::Integer(_) => "integer",
        }
    }
}

/// Type id of a (possibly concatenated) key, the way nft computes it.
pub(crate) fn concat_type_id(types: &[DataType]) -> u32 {
    types.iter().fold(0, |acc, t| (acc << TYPE_BITS) | t.id())
}

/// Inverse of [`concat_type_id`]; `None` if a component is unknown.
pub(crate) fn split_type_id(mut id: u32) -> Option<Vec<DataType>> {
    let mut out = Vec::new();
    while id != 0 {
        out.push(DataType::from_id(id & ((1 << TYPE_BITS) - 1))?);
        id >>= TYPE_BITS;
    }
    out.reverse();
    Some(out)
}

/// Gives each integer of `types` (listed back with length 0) its length:
/// the concatenation's field lengths when the kernel reports them, else
/// what the key's length leaves for a lone integer.
pub(crate) fn fill_integer_lens(types: &mut [DataType], key_len: usize, fields: &[usize]) {
    if fields.len() == types.len() {
        for (t, len) in types.iter_mut().zip(fields) {
            if let DataType::Integer(n) = t {
                *n = *len as u8;
            }
        }
        return;
    }
    let unknown = types
        .iter()
        .filter(|t| matches!(t, DataType::Integer(0)))
        .count();
    if unknown != 1 {
        return;
    }
    let known: usize = if types.len() == 1 {
        0
    } else {
        types.iter().map(|t| crate::netlink::align4(t.len())).sum()
    };
    for t in types.iter_mut() {
        if let DataType::Integer(n @ 0) = t {
            *n = key_len.saturating_sub(known) as u8;
        }
    }
}

/// Length of a key: a single field keeps its natural size, concatenated fields are
/// each padded to a 32-bit register.
pub(crate) fn key_len(types: &[DataType]) -> usize {
    if types.len() == 1 {
        types[0].len()
    } else {
        types.iter().map(|t| crate::netlink::align4(t.len())).sum()
    }
}

/// A value of a set key field or map data field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// `ipv4_addr`
    Ipv4(Ipv4Addr),
    /// `ipv6_addr`
    Ipv6(Ipv6Addr),
    /// `inet_proto`
    Proto(L4Proto),
    /// `inet_service`
    Port(u16),
    /// `ifname`
    Ifname(String),
    /// `mark`
    Mark(u32),
    /// `ether_addr`
    Ether([u8; 6]),
    /// `verdict`
    Verdict(Verdict),
    /// `integer`: big-endian bytes, as loaded from the packet.
    Integer(Vec<u8>),
}

impl From<Ipv4Addr> for Value {
    fn from(v: Ipv4Addr) -> Self {
        Value::Ipv4(v)
    }
}
impl From<Ipv6Addr> for Value {
    fn from(v: Ipv6Addr) -> Self {
        Value::Ipv6(v)
    }
}
impl From<IpAddr> for Value {
    fn from(v: IpAddr) -> Self {
        match v {
            IpAddr::V4(a) => Value::Ipv4(a),
            IpAddr::V6(a) => Value::Ipv6(a),
        }
    }
}
impl From<L4Proto> for Value {
    fn from(v: L4Proto) -> Self {
        Value::Proto(v)
    }
}
impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Value::Port(v)
    }
}
impl From<Verdict> for Value {
    fn from(v: Verdict) -> Self {
        Value::Verdict(v)
    }
}

impl Value {
    /// The data type this value belongs to.
    pub fn data_type(&self) -> DataType {
        match self {
            Value::Ipv4(_) => DataType::Ipv4Addr,
            Value::Ipv6(_) => DataType::Ipv6Addr,
            Value::Proto(_) => DataType::InetProto,
            Value::Port(_) => DataType::InetService,
            Value::Ifname(_) => DataType::Ifname,
            Value::Mark(_) => DataType::Mark,
            Value::Ether(_) => DataType::EtherAddr,
            Value::Verdict(_) => DataType::Verdict,
            Value::Integer(b) => DataType::Integer(b.len() as u8),
        }
    }

    /// Kernel byte encoding (natural size, no register padding).
    pub(crate) fn bytes(&self) -> Vec<u8> {
        match self {
            Value::Ipv4(a) => a.octets().to_vec(),
            Value::Ipv6(a) => a.octets().to_vec(),
            Value::Proto(p) => vec![p.number()],
            Value::Port(p) => p.to_be_bytes().to_vec(),
            Value::Ifname(s) => {
                let mut v = s.as_bytes().to_vec();
                v.resize(16, 0);
                v
            }
            // Marks are host-endian in the kernel (skb->mark).
            Value::Mark(m) => m.to_ne_bytes().to_vec(),
            Value::Ether(m) => m.to_vec(),
            Value::Verdict(_) => Vec::new(),
            Value::Integer(b) => b.clone(),
        }
    }

    pub(crate) fn from_bytes(t: DataType, b: &[u8]) -> Option<Value> {
        Some(match t {
            DataType::Ipv4Addr => {
                Value::Ipv4(Ipv4Addr::from(<[u8; 4]>::try_from(b.get(..4)?).ok()?))
            }
            DataType::Ipv6Addr => {
                Value::Ipv6(Ipv6Addr::from(<[u8; 16]>::try_from(b.get(..16)?).ok()?))
            }
            DataType::InetProto => Value::Proto(L4Proto::from_number(*b.first()?)),
            DataType::InetService => Value::Port(u16::from_be_bytes(b.get(..2)?.try_into().ok()?)),
            DataType::Mark => Value::Mark(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?)),
            DataType::EtherAddr => Value::Ether(b.get(..6)?.try_into().ok()?),
            DataType::Ifname => {
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                Value::Ifname(String::from_utf8_lossy(&b[..end]).into_owned())
            }
            DataType::Integer(n) => Value::Integer(b.get(..n.into())?.to_vec()),
            DataType::Verdict => return None,
        })
    }

    /// The next value, used as the exclusive end of an interval. `None` on overflow.
    pub(crate) fn successor(&self) -> Option<Value> {
        Some(match self {
            Value::Ipv4(a) => Value::Ipv4(Ipv4Addr::from(u32::from(*a).checked_add(1)?)),
            Value::Ipv6(a) => Value::Ipv6(Ipv6Addr::from(u128::from(*a).checked_add(1)?)),
            Value::Proto(p) => Value::Proto(L4Proto::from_number(p.number().checked_add(1)?)),
            Value::Port(p) => Value::Port(p.checked_add(1)?),
            Value::Mark(m) => Value::Mark(m.checked_add(1)?),
            Value::Ifname(_) | Value::Ether(_) | Value::Verdict(_) | Value::Integer(_) => {
                return None
            }
        })
    }

    /// Last value of a prefix starting at `self`. Errors for non-address types.
    pub(crate) fn prefix_end(&self, len: u8) -> Result<Value> {
        match self {
            // A shift by the full width overflows: /32 and /128 have no host bits.
            Value::Ipv4(a) if len <= 32 => {
                let host = u32::MAX.checked_shr(len.into()).unwrap_or(0);
                Ok(Value::Ipv4(Ipv4Addr::from(u32::from(*a) | host)))
            }
            Value::Ipv6(a) if len <= 128 => {
                let host = u128::MAX.checked_shr(len.into()).unwrap_or(0);
                Ok(Value::Ipv6(Ipv6Addr::from(u128::from(*a) | host)))
            }
            _ => Err(NftError::Invalid(format!("prefix /{len} on {self}"))),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Ipv4(a) => write!(f, "{a}"),
            Value::Ipv6(a) => write!(f, "{a}"),
            Value::Proto(p) => write!(f, "{p}"),
            Value::Port(p) => write!(f, "{p}"),
            Value::Ifname(s) => write!(f, "\"{s}\""),
            Value::Mark(m) => write!(f, "{m:#010x}"),
            Value::Ether(m) => write!(
                f,
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
            Value::Verdict(v) => write!(f, "{v}"),
            // Every byte, leading zeros included, so the width shows.
            Value::Integer(b) => {
                f.write_str("0x")?;
                b.iter().try_for_each(|x| write!(f, "{x:02x}"))
            }
        }
    }
}

/// Mask of the first `len` bits of a `bytes`-long big-endian value.
pub(crate) fn prefix_mask(bytes: usize, len: u8) -> Vec<u8> {
    let mut m = vec![0u8; bytes];
    let mut left = len as usize;
    for b in m.iter_mut() {
        let take = left.min(8);
        *b = if take == 0 { 0 } else { 0xffu8 << (8 - take) };
        left -= take;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_key_lengths_pad_each_field() {
        use DataType::*;
        assert_eq!(key_len(&[InetService]), 2);
        assert_eq!(key_len(&[InetProto]), 1);
        assert_eq!(key_len(&[Ipv4Addr, InetProto, InetService]), 12);
        assert_eq!(key_len(&[Ipv4Addr, InetService]), 8);
        assert_eq!(key_len(&[Ipv6Addr, InetService]), 20);
        assert_eq!(key_len(&[Ifname, Mark]), 20);
    }

    #[test]
    fn concat_type_ids_roundtrip() {
        use DataType::*;
        let t = [Ipv4Addr, InetProto, InetService];
        assert_eq!(concat_type_id(&t), (7 << 12) | (12 << 6) | 13);
        assert_eq!(split_type_id(concat_type_id(&t)).unwrap(), t.to_vec());
    }

    #[test]
    fn prefix_masks() {
        assert_eq!(prefix_mask(4, 24), vec![255, 255, 255, 0]);
        assert_eq!(prefix_mask(4, 20), vec![255, 255, 0xf0, 0]);
        assert_eq!(prefix_mask(4, 0), vec![0, 0, 0, 0]);
        assert_eq!(prefix_mask(16, 64)[7..9], [255, 0]);
        let end = Value::Ipv4("10.1.2.0".parse().unwrap())
            .prefix_end(23)
            .unwrap();
        assert_eq!(end, Value::Ipv4("10.1.3.255".parse().unwrap()));
        assert_eq!(
            Value::Ipv4("255.255.255.255".parse().unwrap()).successor(),
            None
        );
        let v6 = Value::Ipv6("fd00:1:2:3::".parse().unwrap());
        assert_eq!(
            v6.prefix_end(64).unwrap(),
            Value::Ipv6("fd00:1:2:3:ffff:ffff:ffff:ffff".parse().unwrap())
        );
        // Full-length prefixes are one address (no shift overflow).
        assert_eq!(v6.prefix_end(128).unwrap(), v6);
        let one = Value::Ipv4("10.0.0.1".parse().unwrap());
        assert_eq!(one.prefix_end(32).unwrap(), one);
        assert_eq!(
            Value::Ipv6("::".parse().unwrap()).prefix_end(0).unwrap(),
            Value::Ipv6(Ipv6Addr::from(u128::MAX))
        );
        assert!(v6.prefix_end(129).is_err());
    }
}

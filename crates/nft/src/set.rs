//! Named sets and maps, and their elements: key/data types (including
//! concatenations), flags, and the element encodings for plain, interval and
//! concatenated-interval sets.

use crate::error::{NftError, Result};
use crate::expr::{put_data_value, put_data_verdict};
use crate::netlink::{align4, MsgBuf};
use crate::rule::Field;
use crate::set_typeof;
use crate::table::Table;
use crate::types::{concat_type_id, key_len, DataType, Value};
use std::fmt;
use std::time::Duration;

pub(crate) const NFTA_SET_TABLE: u16 = 1;
pub(crate) const NFTA_SET_NAME: u16 = 2;
pub(crate) const NFTA_SET_FLAGS: u16 = 3;
pub(crate) const NFTA_SET_KEY_TYPE: u16 = 4;
pub(crate) const NFTA_SET_KEY_LEN: u16 = 5;
pub(crate) const NFTA_SET_DATA_TYPE: u16 = 6;
pub(crate) const NFTA_SET_DATA_LEN: u16 = 7;
pub(crate) const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_TIMEOUT: u16 = 11;
const NFTA_SET_USERDATA: u16 = 13;
/// libnftnl's NFTNL_UDATA_SET_KEYBYTEORDER / DATABYTEORDER TLV types.
const UDATA_SET_KEYBYTEORDER: u8 = 0;
const UDATA_SET_DATABYTEORDER: u8 = 1;
/// nft's BYTEORDER_HOST_ENDIAN.
const BYTEORDER_HOST_ENDIAN: u32 = 1;
pub(crate) const NFTA_SET_DESC_CONCAT: u16 = 2;
pub(crate) const NFTA_SET_FIELD_LEN: u16 = 1;
const NFTA_LIST_ELEM: u16 = 1;

pub(crate) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub(crate) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub(crate) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub(crate) const NFTA_SET_ELEM_KEY: u16 = 1;
pub(crate) const NFTA_SET_ELEM_DATA: u16 = 2;
pub(crate) const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
pub(crate) const NFTA_SET_ELEM_KEY_END: u16 = 10;
pub(crate) const NFT_SET_ELEM_INTERVAL_END: u32 = 1;

/// Kernel data type for verdict map data.
pub(crate) const NFT_DATA_VERDICT: u32 = 0xffff_ff00;

/// NFT_SET_* flags.
pub mod flags {
    /// Set contents cannot change after creation.
    pub const CONSTANT: u32 = 0x2;
    /// Elements are ranges/prefixes.
    pub const INTERVAL: u32 = 0x4;
    /// Set is a map (set automatically for maps).
    pub const MAP: u32 = 0x8;
    /// Elements can time out.
    pub const TIMEOUT: u32 = 0x10;
    /// Concatenated key with a field description (set automatically).
    pub const CONCAT: u32 = 0x80;
}

/// A named set or map.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Set {
    /// Owning table.
    pub table: Table,
    /// Set name.
    pub name: String,
    /// Key field types; more than one means a concatenation.
    pub key: Vec<DataType>,
    /// Map data field types; `None` for a plain set, `[Verdict]` for a verdict map.
    pub data: Option<Vec<DataType>>,
    /// User flags ([`flags::CONSTANT`], [`flags::INTERVAL`], [`flags::TIMEOUT`]).
    pub flags: u32,
    /// Default element timeout.
    pub timeout: Option<Duration>,
    /// The fields the key was declared with (`typeof`), if it was; `key`
    /// then holds their datatypes.
    pub typeof_key: Option<Vec<Field>>,
}

impl Set {
    /// A set with key `key` (e.g. `&[DataType::Ipv4Addr]`).
    pub fn new(table: &Table, name: impl Into<String>, key: &[DataType]) -> Self {
        Set {
            table: table.clone(),
            name: name.into(),
            key: key.to_vec(),
            data: None,
            flags: 0,
            timeout: None,
            typeof_key: None,
        }
    }

    /// A set whose key is declared by the fields that load it
    /// (`typeof iifname . ether saddr . @th,64,128`): what a key with a raw
    /// payload field needs for nft to accept its rules and elements.
    pub fn typed_by(table: &Table, name: impl Into<String>, fields: &[Field]) -> Self {
        let key: Vec<DataType> = fields.iter().map(|f| set_typeof::key_type(*f)).collect();
        let mut s = Set::new(table, name, &key);
        s.typeof_key = Some(fields.to_vec());
        s
    }

    /// A map from `key` to `data`.
    pub fn map(
        table: &Table,
        name: impl Into<String>,
        key: &[DataType],
        data: &[DataType],
    ) -> Self {
        let mut s = Set::new(table, name, key);
        s.data = Some(data.to_vec());
        s
    }

    /// Adds `flags interval`.
    pub fn interval(mut self) -> Self {
        self.flags |= flags::INTERVAL;
        self
    }

    /// Adds `flags constant`.
    pub fn constant(mut self) -> Self {
        self.flags |= flags::CONSTANT;
        self
    }

    /// Adds `flags timeout` and optionally a default timeout.
    pub fn with_timeout(mut self, default: Option<Duration>) -> Self {
        self.flags |= flags::TIMEOUT;
        self.timeout = default;
        self
    }

    /// Whether this is a map.
    pub fn is_map(&self) -> bool {
        self.data.is_some()
    }

    /// `set` or `map`.
    pub fn kind(&self) -> &'static str {
        if self.is_map() {
            "map"
        } else {
            "set"
        }
    }

    /// `map inet berth published4`
    pub fn describe(&self) -> String {
        format!("{} {} {}", self.kind(), self.table.spec(), self.name)
    }

    fn is_interval(&self) -> bool {
        self.flags & flags::INTERVAL != 0
    }

    fn is_verdict_map(&self) -> bool {
        matches!(self.data.as_deref(), Some([DataType::Verdict]))
    }

    pub(crate) fn kernel_flags(&self) -> u32 {
        let mut f = self.flags;
        if self.is_map() {
            f |= flags::MAP;
        }
        if self.key.len() > 1 {
            // The kernel insists on this flag whenever NFTA_SET_DESC_CONCAT lists
            // more than one field.
            f |= flags::CONCAT;
        }
        f
    }

    pub(crate) fn encode(&self, b: &mut MsgBuf, id: u32) -> Result<()> {
        if self.key.is_empty() || self.key.contains(&DataType::Verdict) {
            return Err(NftError::Invalid(format!(
                "bad key type for {}",
                self.describe()
            )));
        }
        b.attr_str(NFTA_SET_TABLE, &self.table.name);
        b.attr_str(NFTA_SET_NAME, &self.name);
        b.attr_be32(NFTA_SET_FLAGS, self.kernel_flags());
        b.attr_be32(NFTA_SET_KEY_TYPE, concat_type_id(&self.key));
        b.attr_be32(NFTA_SET_KEY_LEN, key_len(&self.key) as u32);
        if let Some(data) = &self.data {
            if self.is_verdict_map() {
                b.attr_be32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT);
            } else {
                if data.is_empty() || data.contains(&DataType::Verdict) {
                    return Err(NftError::Invalid(format!(
                        "bad data type for {}",
                        self.describe()
                    )));
                }
                b.attr_be32(NFTA_SET_DATA_TYPE, concat_type_id(data));
                b.attr_be32(NFTA_SET_DATA_LEN, key_len(data) as u32);
            }
        }
        if let Some(t) = self.timeout {
            b.attr_be64(NFTA_SET_TIMEOUT, t.as_millis() as u64);
        }
        b.attr_be32(NFTA_SET_ID, id);
        // nft decodes host-endian values (ifname, mark) with the byte order it finds
        // in the set's userdata; without it, `nft list` shows them byte-swapped.
        let host_endian = |t: &[DataType]| matches!(t, [DataType::Ifname] | [DataType::Mark]);
        let mut ud = Vec::new();
        if host_endian(&self.key) {
            ud.extend_from_slice(&[UDATA_SET_KEYBYTEORDER, 4]);
            ud.extend_from_slice(&BYTEORDER_HOST_ENDIAN.to_ne_bytes());
        }
        if self.data.as_deref().is_some_and(host_endian) {
            ud.extend_from_slice(&[UDATA_SET_DATABYTEORDER, 4]);
            ud.extend_from_slice(&BYTEORDER_HOST_ENDIAN.to_ne_bytes());
        }
        if let Some(fields) = &self.typeof_key {
            ud.extend(set_typeof::udata(fields)?);
        }
        if !ud.is_empty() {
            b.attr(NFTA_SET_USERDATA, &ud);
        }
        if self.key.len() > 1 {
            // The field layout lets the kernel pick a concatenation-aware backend
            // (pipapo for intervals) and check per-field lengths.
            let d = b.nest_begin(NFTA_SET_DESC);
            let c = b.nest_begin(NFTA_SET_DESC_CONCAT);
            for t in &self.key {
                let e = b.nest_begin(NFTA_LIST_ELEM);
                b.attr_be32(NFTA_SET_FIELD_LEN, t.len() as u32);
                b.nest_end(e)?;
            }
            b.nest_end(c)?;
            b.nest_end(d)?;
        }
        Ok(())
    }

    pub(crate) fn render_def(&self) -> String {
        let names = |t: &[DataType]| t.iter().map(|t| t.name()).collect::<Vec<_>>().join(" . ");
        let mut s = match &self.typeof_key {
            Some(fields) => format!(" {{ typeof {}", set_typeof::render(fields)),
            None => format!(" {{ type {}", names(&self.key)),
        };
        if let Some(d) = &self.data {
            s.push_str(&format!(" : {}", names(d)));
        }
        s.push(';');
        let mut f = Vec::new();
        if self.flags & flags::CONSTANT != 0 {
            f.push("constant");
        }
        if self.flags & flags::INTERVAL != 0 {
            f.push("interval");
        }
        if self.flags & flags::TIMEOUT != 0 {
            f.push("timeout");
        }
        if !f.is_empty() {
            s.push_str(&format!(" flags {};", f.join(",")));
        }
        if let Some(t) = self.timeout {
            s.push_str(&format!(" timeout {};", render_duration(t)));
        }
        s.push_str(" }");
        s
    }

    fn check_types(&self, what: &str, want: &[DataType], got: &[Value]) -> Result<()> {
        let got_t: Vec<DataType> = got.iter().map(Value::data_type).collect();
        if got_t != want {
            return Err(NftError::Invalid(format!(
                "{what} of {} must be {:?}, got {:?}",
                self.describe(),
                want,
                got_t
            )));
        }
        Ok(())
    }

    /// Encodes the elements of one NEWSETELEM/DELSETELEM message body. Returns, for
    /// each encoded NFTA_LIST_ELEM, its offset from `msg_start` and the index of the
    /// element it came from, so a kernel error offset can be traced back.
    pub(crate) fn encode_elements(
        &self,
        b: &mut MsgBuf,
        msg_start: usize,
        elems: &[(usize, &Element)],
        adding: bool,
    ) -> Result<Vec<(usize, usize)>> {
        b.attr_str(NFTA_SET_ELEM_LIST_TABLE, &self.table.name);
        b.attr_str(NFTA_SET_ELEM_LIST_SET, &self.name);
        let list = b.nest_begin(NFTA_SET_ELEM_LIST_ELEMENTS);
        let mut offsets = Vec::new();
        for &(idx, el) in elems {
            let starts: Vec<Value> = el.key.iter().map(|p| p.start().clone()).collect();
            self.check_types("key", &self.key, &starts)?;
            let ranged = el.key.iter().any(|p| !matches!(p, KeyPart::Single(_)));
            if ranged && !self.is_interval() {
                return Err(NftError::Invalid(format!(
                    "range element {} in non-interval {}",
                    el.render_key(),
                    self.describe()
                )));
            }
            let ends = el
                .key
                .iter()
                .map(KeyPart::end)
                .collect::<Result<Vec<Value>>>()?;
            offsets.push((b.len() - msg_start, idx));
            let e = b.nest_begin(NFTA_LIST_ELEM);
            put_data_value(b, NFTA_SET_ELEM_KEY, &concat_bytes(&starts))?;
            if self.is_interval() && self.key.len() > 1 {
                // Concatenated intervals carry an inclusive end in the same element.
                put_data_value(b, NFTA_SET_ELEM_KEY_END, &concat_bytes(&ends))?;
            }
            if adding {
                if let Some(t) = el.timeout {
                    b.attr_be64(NFTA_SET_ELEM_TIMEOUT, t.as_millis() as u64);
                }
                self.encode_elem_data(b, el)?;
            }
            b.nest_end(e)?;
            if self.is_interval() && self.key.len() == 1 {
                // rbtree intervals: a second element, flagged as interval end, at the
                // first value past the range. Ranges reaching the top of the type
                // have no such value and are left open, as nft does.
                if let Some(next) = ends[0].successor() {
                    offsets.push((b.len() - msg_start, idx));
                    let e = b.nest_begin(NFTA_LIST_ELEM);
                    put_data_value(b, NFTA_SET_ELEM_KEY, &next.bytes())?;
                    b.attr_be32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
                    b.nest_end(e)?;
                }
            }
        }
        b.nest_end(list)?;
        Ok(offsets)
    }

    fn encode_elem_data(&self, b: &mut MsgBuf, el: &Element) -> Result<()> {
        match (&self.data, &el.data) {
            (None, None) => Ok(()),
            (Some(want), Some(data)) => {
                if self.is_verdict_map() {
                    match data.as_slice() {
                        [Value::Verdict(v)] => put_data_verdict(b, NFTA_SET_ELEM_DATA, v),
                        _ => Err(NftError::Invalid(format!(
                            "element {} of {} needs a verdict",
                            el.render_key(),
                            self.describe()
                        ))),
                    }
                } else {
                    self.check_types("data", want, data)?;
                    put_data_value(b, NFTA_SET_ELEM_DATA, &concat_bytes(data))
                }
            }
            (Some(_), None) => Err(NftError::Invalid(format!(
                "element {} of {} has no data",
                el.render_key(),
                self.describe()
            ))),
            (None, Some(_)) => Err(NftError::Invalid(format!(
                "element {} of set {} cannot have data",
                el.render_key(),
                self.describe()
            ))),
        }
    }
}

/// Bytes of a key or data value: a lone field is used as is, concatenated fields
/// are each zero-padded to 4 bytes (one register).
pub(crate) fn concat_bytes(vals: &[Value]) -> Vec<u8> {
    if vals.len() == 1 {
        return vals[0].bytes();
    }
    let mut out = Vec::new();
    for v in vals {
        let mut b = v.bytes();
        b.resize(align4(b.len()), 0);
        out.extend_from_slice(&b);
    }
    out
}

/// One field of an element key: a value, an inclusive range, or a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyPart {
    /// `10.0.0.1`
    Single(Value),
    /// `10.0.0.1-10.0.0.9` (inclusive)
    Range(Value, Value),
    /// `10.0.0.0/24`
    Prefix(Value, u8),
}

impl KeyPart {
    fn start(&self) -> &Value {
        match self {
            KeyPart::Single(v) | KeyPart::Range(v, _) | KeyPart::Prefix(v, _) => v,
        }
    }
    fn end(&self) -> Result<Value> {
        match self {
            KeyPart::Single(v) => Ok(v.clone()),
            KeyPart::Range(_, e) => Ok(e.clone()),
            KeyPart::Prefix(v, l) => v.prefix_end(*l),
        }
    }
}

impl<T: Into<Value>> From<T> for KeyPart {
    fn from(v: T) -> Self {
        KeyPart::Single(v.into())
    }
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::Single(v) => write!(f, "{v}"),
            KeyPart::Range(a, b) => write!(f, "{a}-{b}"),
            KeyPart::Prefix(a, l) => write!(f, "{a}/{l}"),
        }
    }
}

/// A set or map element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Element {
    /// Key fields, one per key type of the set.
    pub key: Vec<KeyPart>,
    /// Map data fields (one `Value::Verdict` for verdict maps).
    pub data: Option<Vec<Value>>,
    /// Per-element timeout (set needs `flags timeout`).
    pub timeout: Option<Duration>,
}

impl Element {
    /// An element with the given key fields.
    pub fn new<I: IntoIterator<Item = KeyPart>>(key: I) -> Self {
        Element {
            key: key.into_iter().collect(),
            data: None,
            timeout: None,
        }
    }

    /// A single-field element from a value (`Element::of(Ipv4Addr::new(..))`).
    pub fn of(v: impl Into<Value>) -> Self {
        Element::new([KeyPart::Single(v.into())])
    }

    /// An IPv4/IPv6 prefix element for an interval set; host bits are cleared.
    pub fn prefix(addr: impl Into<Value>, len: u8) -> Result<Self> {
        let addr = addr.into();
        let net = match &addr {
            Value::Ipv4(a) if len <= 32 => {
                let m = crate::types::prefix_mask(4, len);
                let o = a.octets();
                Value::Ipv4(std::array::from_fn::<u8, 4, _>(|i| o[i] & m[i]).into())
            }
            Value::Ipv6(a) if len <= 128 => {
                let m = crate::types::prefix_mask(16, len);
                let o = a.octets();
                Value::Ipv6(std::array::from_fn::<u8, 16, _>(|i| o[i] & m[i]).into())
            }
            _ => return Err(NftError::Invalid(format!("prefix /{len} on {addr}"))),
        };
        Ok(Element::new([KeyPart::Prefix(net, len)]))
    }

    /// Sets the map data.
    pub fn to<I: IntoIterator<Item = Value>>(mut self, data: I) -> Self {
        self.data = Some(data.into_iter().collect());
        self
    }

    /// Sets a per-element timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// `10.0.0.2 . tcp . 8080`
    pub fn render_key(&self) -> String {
        self.key
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(" . ")
    }

    /// The element as written inside `{ }` of an nft element command.
    pub fn render(&self) -> String {
        let mut s = self.render_key();
        if let Some(t) = self.timeout {
            s.push_str(&format!(" timeout {}", render_duration(t)));
        }
        if let Some(d) = &self.data {
            let d: Vec<String> = d.iter().map(|v| v.to_string()).collect();
            s.push_str(&format!(" : {}", d.join(" . ")));
        }
        s
    }
}

pub(crate) fn render_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::Attrs;
    use crate::types::{Family, L4Proto};
    use std::net::Ipv4Addr;

    fn published() -> Set {
        use DataType::*;
        Set::map(
            &Table::new(Family::Inet, "berth"),
            "published4",
            &[Ipv4Addr, InetProto, InetService],
            &[Ipv4Addr, InetService],
        )
    }

    #[test]
    fn concat_map_definition() {
        let s = published();
        assert_eq!(
            s.render_def(),
            " { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }"
        );
        let mut b = MsgBuf::new();
        s.encode(&mut b, 1).unwrap();
        let a = Attrs::new(&b.buf);
        assert_eq!(a.be32(NFTA_SET_KEY_LEN), Some(12));
        assert_eq!(a.be32(NFTA_SET_DATA_LEN), Some(8));
        assert_eq!(a.be32(NFTA_SET_FLAGS), Some(flags::MAP | flags::CONCAT));
        let fields: Vec<u32> = a
            .nested(NFTA_SET_DESC)
            .unwrap()
            .nested(NFTA_SET_DESC_CONCAT)
            .unwrap()
            .list
            .iter()
            .map(|(_, d)| Attrs::new(d).be32(NFTA_SET_FIELD_LEN).unwrap())
            .collect();
        assert_eq!(fields, vec![4, 1, 2]);
    }

    #[test]
    fn concat_element_is_register_padded() {
        let s = published();
        let el = Element::new([
            Ipv4Addr::new(0, 0, 0, 0).into(),
            L4Proto::Tcp.into(),
            8080u16.into(),
        ])
        .to([Ipv4Addr::new(10, 90, 0, 2).into(), 80u16.into()]);
        assert_eq!(el.render(), "0.0.0.0 . tcp . 8080 : 10.90.0.2 . 80");
        let mut b = MsgBuf::new();
        let offs = s.encode_elements(&mut b, 0, &[(0, &el)], true).unwrap();
        assert_eq!(offs.len(), 1);
        let list = Attrs::new(&b.buf)
            .nested(NFTA_SET_ELEM_LIST_ELEMENTS)
            .unwrap();
        let e = Attrs::new(list.list[0].1);
        let key = e.nested(NFTA_SET_ELEM_KEY).unwrap().get(1).unwrap();
        assert_eq!(key, &[0, 0, 0, 0, 6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        let data = e.nested(NFTA_SET_ELEM_DATA).unwrap().get(1).unwrap();
        assert_eq!(data, &[10, 90, 0, 2, 0, 80, 0, 0]);
    }

    #[test]
    fn interval_prefix_becomes_start_and_end() {
        let s = Set::new(
            &Table::new(Family::Inet, "berth"),
            "nets",
            &[DataType::Ipv4Addr],
        )
        .interval();
        let el = Element::prefix(Ipv4Addr::new(10, 1, 2, 3), 24).unwrap();
        assert_eq!(el.render(), "10.1.2.0/24");
        let mut b = MsgBuf::new();
        let offs = s.encode_elements(&mut b, 0, &[(5, &el)], true).unwrap();
        assert_eq!(offs.iter().map(|o| o.1).collect::<Vec<_>>(), vec![5, 5]);
        let list = Attrs::new(&b.buf)
            .nested(NFTA_SET_ELEM_LIST_ELEMENTS)
            .unwrap();
        let start = Attrs::new(list.list[0].1);
        let end = Attrs::new(list.list[1].1);
        assert_eq!(start.nested(1).unwrap().get(1).unwrap(), &[10, 1, 2, 0]);
        assert_eq!(start.be32(NFTA_SET_ELEM_FLAGS), None);
        assert_eq!(end.nested(1).unwrap().get(1).unwrap(), &[10, 1, 3, 0]);
        assert_eq!(
            end.be32(NFTA_SET_ELEM_FLAGS),
            Some(NFT_SET_ELEM_INTERVAL_END)
        );
    }

    #[test]
    fn wrong_types_are_rejected() {
        let s = published();
        let el = Element::of(80u16);
        let mut b = MsgBuf::new();
        assert!(s.encode_elements(&mut b, 0, &[(0, &el)], true).is_err());
    }
}

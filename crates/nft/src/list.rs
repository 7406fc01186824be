//! Reading state back: tables, chains (to spot foreign base chains that could drop
//! berth's traffic), set definitions and set/map elements.

use crate::chain::{
    ChainType, Hook, Policy, NFTA_CHAIN_HOOK, NFTA_CHAIN_NAME, NFTA_CHAIN_POLICY, NFTA_CHAIN_TABLE,
    NFTA_CHAIN_TYPE, NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY,
};
use crate::error::{NftError, Result};
use crate::netlink::*;
use crate::set::*;
use crate::table::{Table, NFTA_TABLE_FLAGS, NFTA_TABLE_NAME};
use crate::types::{fill_integer_lens, split_type_id, DataType, Family, Value, Verdict};
use crate::Nft;

const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_GETSET: u16 = 10;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_GETGEN: u16 = 16;
const NFT_MSG_GETRULE: u16 = 7;
const NFTA_GEN_ID: u16 = 1;
const NFTA_TABLE_HANDLE: u16 = 4;
const NFTA_CHAIN_HANDLE: u16 = 2;

/// A table as listed by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// The table (family, name, flags).
    pub table: Table,
    /// Kernel handle.
    pub handle: u64,
}

/// A chain as listed by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    /// Family of the owning table.
    pub family: Family,
    /// Owning table name.
    pub table: String,
    /// Chain name.
    pub name: String,
    /// Kernel handle.
    pub handle: u64,
    /// Base chain type (`None` for regular chains).
    pub ty: Option<ChainType>,
    /// Hook number as sent by the kernel (`None` for regular chains).
    pub hooknum: Option<u32>,
    /// Hook, for families using the inet hook numbering (inet, ip, ip6, bridge).
    pub hook: Option<Hook>,
    /// Priority of a base chain.
    pub priority: Option<i32>,
    /// Policy of a base chain.
    pub policy: Option<Policy>,
}

impl ChainInfo {
    /// A base chain on the forward hook whose policy drops: it would drop the
    /// forwarded container traffic that berth's own chain accepts.
    pub fn is_dropping_forward_hook(&self) -> bool {
        self.hook == Some(Hook::Forward) && self.policy == Some(Policy::Drop)
    }
}

/// A set/map definition as listed by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetInfo {
    /// The definition, when all types are known to this crate.
    pub set: Option<Set>,
    /// Kernel NFT_SET_* flags.
    pub flags: u32,
    /// Raw key type id.
    pub key_type: u32,
    /// Key length.
    pub key_len: u32,
}

fn family_of(m: &Msg<'_>) -> Result<Family> {
    Family::from_raw(m.nf_family())
        .ok_or_else(|| NftError::Protocol(format!("unknown family {}", m.nf_family())))
}

impl Nft {
    fn get(
        &mut self,
        msg: u16,
        family: u8,
        dump: bool,
        attrs: impl Fn(&mut MsgBuf),
    ) -> Result<Vec<Vec<u8>>> {
        self.sock.dump(|b, seq| {
            let flags = if dump {
                NLM_F_REQUEST | NLM_F_DUMP
            } else {
                NLM_F_REQUEST | NLM_F_ACK
            };
            let m = b.begin_msg((NFNL_SUBSYS_NFTABLES << 8) | msg, flags, seq, family, 0);
            attrs(b);
            b.end_msg(m);
        })
    }

    /// The raw dump of `table`'s rules (the kernel filters it to the table).
    pub(crate) fn dump_rules(&mut self, table: &Table) -> Result<Vec<Vec<u8>>> {
        self.get(NFT_MSG_GETRULE, table.family.to_raw(), true, |b| {
            b.attr_str(crate::rule::NFTA_RULE_TABLE, &table.name);
        })
    }

    /// All tables of all families.
    pub fn list_tables(&mut self) -> Result<Vec<TableInfo>> {
        let raw = self.get(NFT_MSG_GETTABLE, 0, true, |_| {})?;
        let mut out = Vec::new();
        for r in &raw {
            for m in parse_msgs(r)? {
                let a = m.nf_attrs();
                out.push(TableInfo {
                    table: Table {
                        family: family_of(&m)?,
                        name: a.str(NFTA_TABLE_NAME).unwrap_or_default(),
                        flags: a.be32(NFTA_TABLE_FLAGS).unwrap_or(0),
                    },
                    handle: a.be64(NFTA_TABLE_HANDLE).unwrap_or(0),
                });
            }
        }
        Ok(out)
    }

    /// Whether `family name` exists.
    pub fn table_exists(&mut self, family: Family, name: &str) -> Result<bool> {
        Ok(self
            .list_tables()?
            .iter()
            .any(|t| t.table.family == family && t.table.name == name))
    }

    /// The ruleset generation: the kernel bumps it on every committed
    /// nf_tables transaction, by anyone, so an unchanged number proves that
    /// nothing was changed since it was read.
    pub fn generation(&mut self) -> Result<u32> {
        let raw = self.get(NFT_MSG_GETGEN, 0, false, |_| {})?;
        for r in &raw {
            for m in parse_msgs(r)? {
                if let Some(id) = m.nf_attrs().be32(NFTA_GEN_ID) {
                    return Ok(id);
                }
            }
        }
        Err(NftError::Protocol(
            "GETGEN reply without a generation id".into(),
        ))
    }

    /// The names of the chains of `table`, or None when it does not exist.
    pub fn table_chains(&mut self, table: &Table) -> Result<Option<Vec<String>>> {
        if !self.table_exists(table.family, &table.name)? {
            return Ok(None);
        }
        Ok(Some(
            self.list_chains()?
                .into_iter()
                .filter(|c| c.family == table.family && c.table == table.name)
                .map(|c| c.name)
                .collect(),
        ))
    }

    /// How many rules `table` holds, per chain name (the dump is filtered
    /// by the kernel to the one table). A cheap fingerprint of a ruleset:
    /// `nft flush table` keeps chains and sets but drops every rule.
    pub fn rule_counts(
        &mut self,
        table: &Table,
    ) -> Result<std::collections::BTreeMap<String, usize>> {
        let raw = self.get(NFT_MSG_GETRULE, table.family.to_raw(), true, |b| {
            b.attr_str(crate::rule::NFTA_RULE_TABLE, &table.name);
        })?;
        let mut counts = std::collections::BTreeMap::new();
        for r in &raw {
            for m in parse_msgs(r)? {
                let a = m.nf_attrs();
                if a.str(crate::rule::NFTA_RULE_TABLE).as_deref() != Some(table.name.as_str()) {
                    continue;
                }
                let chain = a.str(crate::rule::NFTA_RULE_CHAIN).unwrap_or_default();
                *counts.entry(chain).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// All chains of all tables.
    pub fn list_chains(&mut self) -> Result<Vec<ChainInfo>> {
        let raw = self.get(NFT_MSG_GETCHAIN, 0, true, |_| {})?;
        let mut out = Vec::new();
        for r in &raw {
            for m in parse_msgs(r)? {
                let a = m.nf_attrs();
                let family = family_of(&m)?;
                let hook = a.nested(NFTA_CHAIN_HOOK);
                let hooknum = hook.as_ref().and_then(|h| h.be32(NFTA_HOOK_HOOKNUM));
                let inet_hooks = matches!(
                    family,
                    Family::Inet | Family::Ip | Family::Ip6 | Family::Bridge
                );
                out.push(ChainInfo {
                    family,
                    table: a.str(NFTA_CHAIN_TABLE).unwrap_or_default(),
                    name: a.str(NFTA_CHAIN_NAME).unwrap_or_default(),
                    handle: a.be64(NFTA_CHAIN_HANDLE).unwrap_or(0),
                    ty: a.str(NFTA_CHAIN_TYPE).and_then(|t| ChainType::parse(&t)),
                    hooknum,
                    hook: hooknum.filter(|_| inet_hooks).and_then(Hook::from_number),
                    priority: hook
                        .as_ref()
                        .and_then(|h| h.be32(NFTA_HOOK_PRIORITY))
                        .map(|p| p as i32),
                    policy: a
                        .be32(NFTA_CHAIN_POLICY)
                        .and_then(Policy::from_number)
                        .filter(|_| hooknum.is_some()),
                });
            }
        }
        Ok(out)
    }

    /// The definition of set/map `name` in `table`.
    pub fn get_set(&mut self, table: &Table, name: &str) -> Result<SetInfo> {
        let raw = self
            .get(NFT_MSG_GETSET, table.family.to_raw(), false, |b| {
                b.attr_str(NFTA_SET_TABLE, &table.name);
                b.attr_str(NFTA_SET_NAME, name);
            })
            .map_err(|e| match e {
                NftError::Kernel { errno, detail, .. } => NftError::Kernel {
                    what: format!("getting set {} {name}", table.spec()),
                    errno,
                    detail,
                },
                e => e,
            })?;
        let r = raw
            .first()
            .ok_or_else(|| NftError::Protocol("empty GETSET reply".into()))?;
        let msgs = parse_msgs(r)?;
        let a = msgs[0].nf_attrs();
        let flags = a.be32(NFTA_SET_FLAGS).unwrap_or(0);
        let key_type = a.be32(NFTA_SET_KEY_TYPE).unwrap_or(0);
        let key_len = a.be32(NFTA_SET_KEY_LEN).unwrap_or(0);
        let data = if flags & flags::MAP != 0 {
            match a.be32(NFTA_SET_DATA_TYPE) {
                Some(NFT_DATA_VERDICT) => Some(Some(vec![DataType::Verdict])),
                Some(t) => Some(split_type_id(t)),
                None => Some(None),
            }
        } else {
            None
        };
        // An integer's width is not in the type id: the concatenation's
        // field lengths (or the key's length) tell it.
        let fields: Vec<usize> = a
            .nested(NFTA_SET_DESC)
            .and_then(|d| d.nested(NFTA_SET_DESC_CONCAT))
            .map(|c| {
                c.list
                    .iter()
                    .filter_map(|(_, f)| Attrs::new(f).be32(NFTA_SET_FIELD_LEN))
                    .map(|n| n as usize)
                    .collect()
            })
            .unwrap_or_default();
        let key = split_type_id(key_type).map(|mut k| {
            fill_integer_lens(&mut k, key_len as usize, &fields);
            k
        });
        let set = match (key, data) {
            (Some(key), None) => Some(Set {
                data: None,
                ..Set::new(table, name, &key)
            }),
            (Some(key), Some(Some(d))) => Some(Set::map(table, name, &key, &d)),
            _ => None,
        }
        .map(|mut s| {
            s.flags = flags & (flags::CONSTANT | flags::INTERVAL | flags::TIMEOUT);
            s
        });
        Ok(SetInfo {
            set,
            flags,
            key_type,
            key_len,
        })
    }

    /// The elements of set/map `name`, decoded with the set's types. Intervals come
    /// back as prefixes where they align, ranges otherwise.
    pub fn list_elements(&mut self, table: &Table, name: &str) -> Result<Vec<Element>> {
        let info = self.get_set(table, name)?;
        let set = info.set.ok_or_else(|| {
            NftError::Invalid(format!(
                "set {} {name} has types this crate cannot decode",
                table.spec()
            ))
        })?;
        let raw = self.get(NFT_MSG_GETSETELEM, table.family.to_raw(), true, |b| {
            b.attr_str(NFTA_SET_ELEM_LIST_TABLE, &table.name);
            b.attr_str(NFTA_SET_ELEM_LIST_SET, name);
        })?;
        let mut flat = Vec::new();
        for r in &raw {
            for m in parse_msgs(r)? {
                let Some(list) = m.nf_attrs().nested(NFTA_SET_ELEM_LIST_ELEMENTS) else {
                    continue;
                };
                for (_, e) in &list.list {
                    let a = Attrs::new(e);
                    let key = a
                        .nested(NFTA_SET_ELEM_KEY)
                        .and_then(|k| k.get(1))
                        .unwrap_or(&[]);
                    let key_end = a.nested(NFTA_SET_ELEM_KEY_END).and_then(|k| k.get(1));
                    let end_flag =
                        a.be32(NFTA_SET_ELEM_FLAGS).unwrap_or(0) & NFT_SET_ELEM_INTERVAL_END != 0;
                    let start = split_values(&set.key, key)?;
                    let end = key_end.map(|k| split_values(&set.key, k)).transpose()?;
                    let data = match (&set.data, a.nested(NFTA_SET_ELEM_DATA)) {
                        (Some(dt), Some(d)) if dt == &[DataType::Verdict] => {
                            let v = d
                                .nested(2)
                                .ok_or_else(|| NftError::Protocol("verdict data".into()))?;
                            let code = v.be32(1).unwrap_or(0) as i32;
                            Verdict::from_code(code, v.str(2)).map(|v| vec![Value::Verdict(v)])
                        }
                        (Some(dt), Some(d)) => Some(split_values(dt, d.get(1).unwrap_or(&[]))?),
                        _ => None,
                    };
                    flat.push((start, end, end_flag, data));
                }
            }
        }
        let interval = info.flags & flags::INTERVAL != 0;
        let mut out = Vec::new();
        if interval && set.key.len() == 1 {
            // rbtree: start elements and "interval end" elements at end + 1.
            flat.sort_by(|a, b| {
                key_order(&a.0[0])
                    .cmp(&key_order(&b.0[0]))
                    .then(b.2.cmp(&a.2))
            });
            let mut i = 0;
            while i < flat.len() {
                let (start, _, is_end, data) = &flat[i];
                if *is_end {
                    i += 1;
                    continue;
                }
                let last = match flat.get(i + 1) {
                    Some((next, _, true, _)) => {
                        i += 1;
                        predecessor(&next[0])
                    }
                    _ => max_of(&start[0]),
                };
                out.push(Element {
                    key: vec![to_part(&start[0], &last)],
                    data: data.clone(),
                    timeout: None,
                });
                i += 1;
            }
        } else {
            for (start, end, _, data) in flat {
                let key = match end {
                    Some(end) => start
                        .iter()
                        .zip(end.iter())
                        .map(|(s, e)| to_part(s, e))
                        .collect(),
                    None => start.into_iter().map(KeyPart::Single).collect(),
                };
                out.push(Element {
                    key,
                    data,
                    timeout: None,
                });
            }
        }
        Ok(out)
    }
}

fn split_values(types: &[DataType], bytes: &[u8]) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut off = 0;
    for t in types {
        let v = bytes
            .get(off..)
            .and_then(|b| Value::from_bytes(*t, b))
            .ok_or_else(|| {
                NftError::Protocol(format!("cannot decode {} from {bytes:02x?}", t.name()))
            })?;
        out.push(v);
        off += if types.len() == 1 {
            t.len()
        } else {
            align4(t.len())
        };
    }
    Ok(out)
}

fn key_order(v: &Value) -> Vec<u8> {
    match v {
        Value::Mark(m) => m.to_be_bytes().to_vec(),
        v => v.bytes(),
    }
}

fn predecessor(v: &Value) -> Value {
    match v {
        Value::Ipv4(a) => Value::Ipv4(u32::from(*a).wrapping_sub(1).into()),
        Value::Ipv6(a) => Value::Ipv6(u128::from(*a).wrapping_sub(1).into()),
        Value::Port(p) => Value::Port(p.wrapping_sub(1)),
        Value::Mark(m) => Value::Mark(m.wrapping_sub(1)),
        Value::Proto(p) => Value::Proto(crate::types::L4Proto::from_number(
            p.number().wrapping_sub(1),
        )),
        v => v.clone(),
    }
}

fn max_of(v: &Value) -> Value {
    match v {
        Value::Ipv4(_) => Value::Ipv4(u32::MAX.into()),
        Value::Ipv6(_) => Value::Ipv6(u128::MAX.into()),
        Value::Port(_) => Value::Port(u16::MAX),
        Value::Mark(_) => Value::Mark(u32::MAX),
        Value::Proto(_) => Value::Proto(crate::types::L4Proto::from_number(u8::MAX)),
        v => v.clone(),
    }
}

/// `a-b` as a prefix when it is one, a single value when a == b, else a range.
fn to_part(a: &Value, b: &Value) -> KeyPart {
    if a == b {
        return KeyPart::Single(a.clone());
    }
    let (s, e, bits) = match (a, b) {
        (Value::Ipv4(s), Value::Ipv4(e)) => (u32::from(*s) as u128, u32::from(*e) as u128, 32u32),
        (Value::Ipv6(s), Value::Ipv6(e)) => (u128::from(*s), u128::from(*e), 128),
        _ => return KeyPart::Range(a.clone(), b.clone()),
    };
    let host = s ^ e;
    // A prefix: the differing bits are exactly the low bits, all zero in s, all one in e.
    if host & host.wrapping_add(1) == 0 && s & host == 0 && e & host == host {
        let hostbits = 128 - host.leading_zeros();
        return KeyPart::Prefix(a.clone(), (bits - hostbits) as u8);
    }
    KeyPart::Range(a.clone(), b.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_recognised_as_prefixes() {
        let v = |s: &str| Value::Ipv4(s.parse().unwrap());
        assert_eq!(
            to_part(&v("10.0.0.0"), &v("10.0.0.255")),
            KeyPart::Prefix(v("10.0.0.0"), 24)
        );
        assert_eq!(
            to_part(&v("10.0.0.1"), &v("10.0.0.255")),
            KeyPart::Range(v("10.0.0.1"), v("10.0.0.255"))
        );
        assert_eq!(
            to_part(&v("0.0.0.0"), &v("255.255.255.255")),
            KeyPart::Prefix(v("0.0.0.0"), 0)
        );
        assert_eq!(
            to_part(&v("1.2.3.4"), &v("1.2.3.4")),
            KeyPart::Single(v("1.2.3.4"))
        );
    }
}

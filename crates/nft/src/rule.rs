//! The rule builder. Every method appends both the kernel expressions and the nft
//! text of the same statement, so a rule's rendering cannot drift from what is sent.

use crate::chain::Chain;
use crate::error::{NftError, Result};
use crate::expr::{CmpOp, CtKey, Expr, MetaKey, NatType, PayloadBase, Reg, RejectType};
use crate::netlink::{align4, MsgBuf};
use crate::types::{prefix_mask, Family, L4Proto, Value, Verdict};
use std::net::Ipv4Addr;

pub(crate) const NFTA_RULE_TABLE: u16 = 1;
pub(crate) const NFTA_RULE_CHAIN: u16 = 2;
pub(crate) const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_POSITION: u16 = 6;
const NFTA_RULE_USERDATA: u16 = 7;
/// NFTNL_UDATA_RULE_COMMENT: the TLV nft reads comments from.
const UDATA_RULE_COMMENT: u8 = 0;

const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

/// A packet field that can be matched or used as (part of) a set lookup key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `ip saddr`
    IpSaddr,
    /// `ip daddr`
    IpDaddr,
    /// `ip6 saddr`
    Ip6Saddr,
    /// `ip6 daddr`
    Ip6Daddr,
    /// `meta l4proto`
    L4Proto,
    /// `th sport`
    ThSport,
    /// `th dport`
    ThDport,
    /// `iifname`
    Iifname,
    /// `oifname`
    Oifname,
    /// `meta mark`
    Mark,
    /// `ether saddr` (bridge and netdev tables)
    EtherSaddr,
    /// `arp saddr ether`: the sender hardware address of an Ethernet ARP packet
    ArpSaddrEther,
    /// `arp saddr ip`: the sender protocol address of an IPv4 ARP packet
    ArpSaddrIp,
}

/// Ethertypes of the network protocols a field can depend on.
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;

/// A protocol match nft inserts implicitly before some statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dep {
    /// The network protocol, by ethertype: `meta nfproto ipv4/ipv6` in inet
    /// tables, `meta protocol ip/ip6` or `ether type arp` in bridge tables,
    /// nothing in tables of one protocol.
    L3(u16),
    /// `meta l4proto <n>`
    L4(u8),
}

impl Dep {
    fn exprs(self, family: Family) -> Vec<Expr> {
        let r = Reg::r32(0);
        let (load, data) = match (self, family) {
            (Dep::L4(p), _) => (
                Expr::Meta {
                    key: MetaKey::L4proto,
                    dreg: r,
                },
                vec![p],
            ),
            (Dep::L3(t), Family::Inet) => (
                Expr::Meta {
                    key: MetaKey::Nfproto,
                    dreg: r,
                },
                vec![if t == ETH_P_IPV6 {
                    NFPROTO_IPV6
                } else {
                    NFPROTO_IPV4
                }],
            ),
            // ARP has no `meta protocol` spelling in nft: it matches the
            // frame's ethertype instead.
            (Dep::L3(ETH_P_ARP), _) => (ether_type_load(r), ETH_P_ARP.to_be_bytes().to_vec()),
            (Dep::L3(t), _) => (
                Expr::Meta {
                    key: MetaKey::Protocol,
                    dreg: r,
                },
                t.to_be_bytes().to_vec(),
            ),
        };
        vec![
            load,
            Expr::Cmp {
                op: CmpOp::Eq,
                sreg: r,
                data,
            },
        ]
    }
    fn needed_in(self, family: Family) -> bool {
        match self {
            Dep::L3(_) => matches!(family, Family::Inet | Family::Bridge | Family::Netdev),
            Dep::L4(_) => true,
        }
    }
}

/// The ethertype of the frame (`ether type`).
fn ether_type_load(dreg: Reg) -> Expr {
    Expr::Payload {
        base: PayloadBase::Link,
        offset: 12,
        len: 2,
        dreg,
    }
}

impl Field {
    /// Length of the loaded value in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        match self {
            Field::IpSaddr | Field::IpDaddr | Field::Mark | Field::ArpSaddrIp => 4,
            Field::Ip6Saddr | Field::Ip6Daddr | Field::Iifname | Field::Oifname => 16,
            Field::L4Proto => 1,
            Field::ThSport | Field::ThDport => 2,
            Field::EtherSaddr | Field::ArpSaddrEther => 6,
        }
    }

    /// nft spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::IpSaddr => "ip saddr",
            Field::IpDaddr => "ip daddr",
            Field::Ip6Saddr => "ip6 saddr",
            Field::Ip6Daddr => "ip6 daddr",
            Field::L4Proto => "meta l4proto",
            Field::ThSport => "th sport",
            Field::ThDport => "th dport",
            Field::Iifname => "iifname",
            Field::Oifname => "oifname",
            Field::Mark => "meta mark",
            Field::EtherSaddr => "ether saddr",
            Field::ArpSaddrEther => "arp saddr ether",
            Field::ArpSaddrIp => "arp saddr ip",
        }
    }

    fn dep(self) -> Option<Dep> {
        match self {
            Field::IpSaddr | Field::IpDaddr => Some(Dep::L3(ETH_P_IP)),
            Field::Ip6Saddr | Field::Ip6Daddr => Some(Dep::L3(ETH_P_IPV6)),
            Field::ArpSaddrEther | Field::ArpSaddrIp => Some(Dep::L3(ETH_P_ARP)),
            _ => None,
        }
    }

    fn load(self, dreg: Reg) -> Expr {
        let payload = |base, offset| Expr::Payload {
            base,
            offset,
            len: self.len() as u32,
            dreg,
        };
        match self {
            Field::IpSaddr => payload(PayloadBase::Network, 12),
            Field::IpDaddr => payload(PayloadBase::Network, 16),
            Field::Ip6Saddr => payload(PayloadBase::Network, 8),
            Field::Ip6Daddr => payload(PayloadBase::Network, 24),
            Field::ThSport => payload(PayloadBase::Transport, 0),
            Field::EtherSaddr => payload(PayloadBase::Link, 6),
            Field::ArpSaddrEther => payload(PayloadBase::Network, 8),
            Field::ArpSaddrIp => payload(PayloadBase::Network, 14),
            Field::ThDport => payload(PayloadBase::Transport, 2),
            Field::L4Proto => Expr::Meta {
                key: MetaKey::L4proto,
                dreg,
            },
            Field::Iifname => Expr::Meta {
                key: MetaKey::Iifname,
                dreg,
            },
            Field::Oifname => Expr::Meta {
                key: MetaKey::Oifname,
                dreg,
            },
            Field::Mark => Expr::Meta {
                key: MetaKey::Mark,
                dreg,
            },
        }
    }
}

/// Conntrack states for [`Rule::ct_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum CtState {
    Invalid,
    Established,
    Related,
    New,
    Untracked,
}

impl CtState {
    fn bit(self) -> u32 {
        match self {
            CtState::Invalid => 1,
            CtState::Established => 2,
            CtState::Related => 4,
            CtState::New => 8,
            CtState::Untracked => 64,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            CtState::Invalid => "invalid",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::New => "new",
            CtState::Untracked => "untracked",
        }
    }
}

/// Conntrack status bits for [`Rule::ct_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum CtStatus {
    Expected,
    SeenReply,
    Assured,
    Confirmed,
    Snat,
    Dnat,
}

impl CtStatus {
    fn bit(self) -> u32 {
        match self {
            CtStatus::Expected => 1,
            CtStatus::SeenReply => 2,
            CtStatus::Assured => 4,
            CtStatus::Confirmed => 8,
            CtStatus::Snat => 16,
            CtStatus::Dnat => 32,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            CtStatus::Expected => "expected",
            CtStatus::SeenReply => "seen-reply",
            CtStatus::Assured => "assured",
            CtStatus::Confirmed => "confirmed",
            CtStatus::Snat => "snat",
            CtStatus::Dnat => "dnat",
        }
    }
}

/// ICMPX codes for `reject with icmpx type ...` (family-independent reject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum IcmpxCode {
    NoRoute,
    PortUnreachable,
    HostUnreachable,
    AdminProhibited,
}

impl IcmpxCode {
    fn code(self) -> u8 {
        match self {
            IcmpxCode::NoRoute => 0,
            IcmpxCode::PortUnreachable => 1,
            IcmpxCode::HostUnreachable => 2,
            IcmpxCode::AdminProhibited => 3,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            IcmpxCode::NoRoute => "no-route",
            IcmpxCode::PortUnreachable => "port-unreachable",
            IcmpxCode::HostUnreachable => "host-unreachable",
            IcmpxCode::AdminProhibited => "admin-prohibited",
        }
    }
}

/// Log levels for [`LogOptions::level`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum LogLevel {
    Emerg,
    Alert,
    Crit,
    Err,
    Warn,
    Notice,
    Info,
    Debug,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Emerg => "emerg",
            LogLevel::Alert => "alert",
            LogLevel::Crit => "crit",
            LogLevel::Err => "err",
            LogLevel::Warn => "warn",
            LogLevel::Notice => "notice",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// Options of the `log` statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// `prefix "..."`
    pub prefix: Option<String>,
    /// `group N` (nflog group; excludes level)
    pub group: Option<u16>,
    /// `level ...`
    pub level: Option<LogLevel>,
}

/// Time unit of `limit rate N/unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum RateUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl RateUnit {
    fn secs(self) -> u64 {
        match self {
            RateUnit::Second => 1,
            RateUnit::Minute => 60,
            RateUnit::Hour => 3600,
            RateUnit::Day => 86400,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            RateUnit::Second => "second",
            RateUnit::Minute => "minute",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stmt {
    needs: Option<Dep>,
    /// nft puts this statement's dependency at the head of the rule rather than
    /// right before the statement (true for `reject with tcp reset`).
    dep_at_start: bool,
    provides: Option<Dep>,
    exprs: Vec<Expr>,
    text: String,
}

/// A rule: statements in order, each with its expressions and its nft text.
///
/// ```
/// use berth_nft::{Rule, Field};
/// let r = Rule::new().iifname("br0").oifname_ne("br0").accept();
/// assert_eq!(r.render(), r#"iifname "br0" oifname != "br0" accept"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    stmts: Vec<Stmt>,
    comment: Option<String>,
    error: Option<String>,
}

impl Rule {
    /// An empty rule.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, needs: Option<Dep>, exprs: Vec<Expr>, text: impl Into<String>) -> Self {
        self.stmts.push(Stmt {
            needs,
            dep_at_start: false,
            provides: None,
            exprs,
            text: text.into(),
        });
        self
    }

    fn fail(mut self, msg: String) -> Self {
        self.error.get_or_insert(msg);
        self
    }

    /// Escape hatch: raw expressions with the nft text they correspond to.
    pub fn raw(self, exprs: Vec<Expr>, text: impl Into<String>) -> Self {
        self.push(None, exprs, text)
    }

    /// `<field> <op> <value>`; the value's type must suit the field.
    pub fn cmp(self, field: Field, op: CmpOp, value: impl Into<Value>) -> Self {
        let value = value.into();
        let data = match (field, &value) {
            (Field::IpSaddr | Field::IpDaddr, Value::Ipv4(_))
            | (Field::Ip6Saddr | Field::Ip6Daddr, Value::Ipv6(_))
            | (Field::L4Proto, Value::Proto(_))
            | (Field::ThSport | Field::ThDport, Value::Port(_))
            | (Field::Iifname | Field::Oifname, Value::Ifname(_))
            | (Field::Mark, Value::Mark(_))
            | (Field::EtherSaddr | Field::ArpSaddrEther, Value::Ether(_))
            | (Field::ArpSaddrIp, Value::Ipv4(_)) => value.bytes(),
            _ => {
                return self.fail(format!(
                    "{} cannot be compared with {value}",
                    field.as_str()
                ))
            }
        };
        let text = format!("{} {}{value}", field.as_str(), op.nft());
        let r = Reg::r32(0);
        let provides = match (field, op, &value) {
            (Field::L4Proto, CmpOp::Eq, Value::Proto(p)) => Some(Dep::L4(p.number())),
            _ => None,
        };
        let mut me = self.push(
            field.dep(),
            vec![field.load(r), Expr::Cmp { op, sreg: r, data }],
            text,
        );
        me.stmts.last_mut().unwrap().provides = provides;
        me
    }

    /// `iifname "name"`
    pub fn iifname(self, name: &str) -> Self {
        self.cmp(Field::Iifname, CmpOp::Eq, Value::Ifname(name.into()))
    }
    /// `iifname != "name"`
    pub fn iifname_ne(self, name: &str) -> Self {
        self.cmp(Field::Iifname, CmpOp::Neq, Value::Ifname(name.into()))
    }
    /// `oifname "name"`
    pub fn oifname(self, name: &str) -> Self {
        self.cmp(Field::Oifname, CmpOp::Eq, Value::Ifname(name.into()))
    }
    /// `oifname != "name"`
    pub fn oifname_ne(self, name: &str) -> Self {
        self.cmp(Field::Oifname, CmpOp::Neq, Value::Ifname(name.into()))
    }
    /// `meta l4proto <proto>`
    pub fn l4proto(self, p: L4Proto) -> Self {
        self.cmp(Field::L4Proto, CmpOp::Eq, p)
    }
    /// `meta nfproto ipv4|ipv6` (explicit family match in inet tables).
    pub fn nfproto(mut self, family: Family) -> Self {
        let (v, name) = match family {
            Family::Ip => (NFPROTO_IPV4, "ipv4"),
            Family::Ip6 => (NFPROTO_IPV6, "ipv6"),
            other => return self.fail(format!("meta nfproto {other} is not supported")),
        };
        let ethertype = if v == NFPROTO_IPV6 {
            ETH_P_IPV6
        } else {
            ETH_P_IP
        };
        self = self.push(
            None,
            Dep::L3(ethertype).exprs(Family::Inet),
            format!("meta nfproto {name}"),
        );
        self.stmts.last_mut().unwrap().provides = Some(Dep::L3(ethertype));
        self
    }
    /// `ether type ip|ip6|arp|0xNNNN` (bridge tables): the frame's ethertype.
    /// It also stands for the protocol match nft would otherwise insert
    /// before `ip`, `ip6` and `arp` fields.
    pub fn ether_type(mut self, ethertype: u16) -> Self {
        let name = match ethertype {
            ETH_P_IP => "ip".to_string(),
            ETH_P_IPV6 => "ip6".to_string(),
            ETH_P_ARP => "arp".to_string(),
            t => format!("{t:#06x}"),
        };
        let r = Reg::r32(0);
        self = self.push(
            None,
            vec![
                ether_type_load(r),
                Expr::Cmp {
                    op: CmpOp::Eq,
                    sreg: r,
                    data: ethertype.to_be_bytes().to_vec(),
                },
            ],
            format!("ether type {name}"),
        );
        self.stmts.last_mut().unwrap().provides = Some(Dep::L3(ethertype));
        self
    }
    /// `meta mark <mark>`
    pub fn mark(self, mark: u32) -> Self {
        self.cmp(Field::Mark, CmpOp::Eq, Value::Mark(mark))
    }
    /// `ip saddr <addr>`
    pub fn ip_saddr(self, a: Ipv4Addr) -> Self {
        self.cmp(Field::IpSaddr, CmpOp::Eq, a)
    }
    /// `ip daddr <addr>`
    pub fn ip_daddr(self, a: Ipv4Addr) -> Self {
        self.cmp(Field::IpDaddr, CmpOp::Eq, a)
    }
    /// `th dport <port>`
    pub fn th_dport(self, p: u16) -> Self {
        self.cmp(Field::ThDport, CmpOp::Eq, p)
    }
    /// `th sport <port>`
    pub fn th_sport(self, p: u16) -> Self {
        self.cmp(Field::ThSport, CmpOp::Eq, p)
    }

    fn prefix(self, field: Field, addr: Ipv4Addr, len: u8, op: CmpOp) -> Self {
        if len > 32 {
            return self.fail(format!("bad prefix length /{len}"));
        }
        let mask = prefix_mask(4, len);
        let o = addr.octets();
        let net: [u8; 4] = std::array::from_fn(|i| o[i] & mask[i]);
        let r = Reg::r32(0);
        let text = format!(
            "{} {}{}/{len}",
            field.as_str(),
            op.nft(),
            Ipv4Addr::from(net)
        );
        self.push(
            field.dep(),
            vec![
                field.load(r),
                Expr::Bitwise {
                    sreg: r,
                    dreg: r,
                    mask,
                    xor: vec![0; 4],
                },
                Expr::Cmp {
                    op,
                    sreg: r,
                    data: net.to_vec(),
                },
            ],
            text,
        )
    }
    /// `ip saddr <net>/<len>`
    pub fn ip_saddr_prefix(self, addr: Ipv4Addr, len: u8) -> Self {
        self.prefix(Field::IpSaddr, addr, len, CmpOp::Eq)
    }
    /// `ip saddr != <net>/<len>`
    pub fn ip_saddr_prefix_ne(self, addr: Ipv4Addr, len: u8) -> Self {
        self.prefix(Field::IpSaddr, addr, len, CmpOp::Neq)
    }
    /// `ip daddr <net>/<len>`
    pub fn ip_daddr_prefix(self, addr: Ipv4Addr, len: u8) -> Self {
        self.prefix(Field::IpDaddr, addr, len, CmpOp::Eq)
    }
    /// `ip daddr != <net>/<len>`
    pub fn ip_daddr_prefix_ne(self, addr: Ipv4Addr, len: u8) -> Self {
        self.prefix(Field::IpDaddr, addr, len, CmpOp::Neq)
    }

    /// Loads `fields` into consecutive registers from NFT_REG32_00; returns the
    /// expressions, the nft key text (`a . b . c`) and the first dependency.
    fn load_concat(fields: &[Field]) -> Result<(Vec<Expr>, String, Vec<Dep>)> {
        let mut exprs = Vec::new();
        let mut slot = 0u32;
        let mut deps = Vec::new();
        for f in fields {
            exprs.push(f.load(Reg::r32(slot)));
            slot += (align4(f.len()) / 4) as u32;
            if let Some(d) = f.dep() {
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
        }
        if fields.is_empty() || slot > 16 {
            return Err(NftError::Invalid(format!(
                "a key of {} fields does not fit the registers",
                fields.len()
            )));
        }
        let text = fields
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(" . ");
        Ok((exprs, text, deps))
    }

    fn with_deps(mut self, deps: Vec<Dep>, exprs: Vec<Expr>, text: String) -> Self {
        // Only single-family dependencies can be hoisted; mixing ip and ip6 fields
        // in one key would never match anyway.
        if deps.len() > 1 {
            return self.fail("key mixes IPv4 and IPv6 fields".into());
        }
        self = self.push(deps.first().copied(), exprs, text);
        self
    }

    fn lookup_impl(self, fields: &[Field], set: &str, invert: bool) -> Self {
        match Self::load_concat(fields) {
            Err(e) => self.fail(e.to_string()),
            Ok((mut exprs, key, deps)) => {
                exprs.push(Expr::Lookup {
                    set: set.into(),
                    sreg: Reg::r32(0),
                    dreg: None,
                    invert,
                });
                let op = if invert { "!= " } else { "" };
                self.with_deps(deps, exprs, format!("{key} {op}@{set}"))
            }
        }
    }
    /// `<f1> . <f2> @set`
    pub fn lookup(self, fields: &[Field], set: &str) -> Self {
        self.lookup_impl(fields, set, false)
    }
    /// `<f1> . <f2> != @set`
    pub fn lookup_ne(self, fields: &[Field], set: &str) -> Self {
        self.lookup_impl(fields, set, true)
    }
    /// `<f1> . <f2> vmap @map` (verdict map)
    pub fn vmap(self, fields: &[Field], map: &str) -> Self {
        match Self::load_concat(fields) {
            Err(e) => self.fail(e.to_string()),
            Ok((mut exprs, key, deps)) => {
                exprs.push(Expr::Lookup {
                    set: map.into(),
                    sreg: Reg::r32(0),
                    dreg: Some(Reg::VERDICT),
                    invert: false,
                });
                self.with_deps(deps, exprs, format!("{key} vmap @{map}"))
            }
        }
    }

    /// `ct KEY a,b` (any bit set) or, with `none`, `ct KEY & (a|b) == 0`.
    /// nft's `ct status != dnat` is not the latter: it compares the whole
    /// status word, so any connection with more bits than DNAT matches.
    fn ct_bits(self, key: CtKey, name: &str, bits: u32, words: Vec<&str>, none: bool) -> Self {
        let r = Reg::r32(0);
        self.push(
            None,
            vec![
                Expr::Ct {
                    key,
                    dreg: r,
                    direction: None,
                },
                Expr::Bitwise {
                    sreg: r,
                    dreg: r,
                    mask: bits.to_ne_bytes().to_vec(),
                    xor: vec![0; 4],
                },
                Expr::Cmp {
                    op: if none { CmpOp::Eq } else { CmpOp::Neq },
                    sreg: r,
                    data: vec![0; 4],
                },
            ],
            if none {
                format!("ct {name} & ({}) == 0", words.join(" | "))
            } else {
                format!("ct {name} {}", words.join(","))
            },
        )
    }
    /// `ct state a,b` (any of the states)
    pub fn ct_state(self, states: &[CtState]) -> Self {
        let bits = states.iter().fold(0, |a, s| a | s.bit());
        self.ct_bits(
            CtKey::State,
            "state",
            bits,
            states.iter().map(|s| s.as_str()).collect(),
            false,
        )
    }
    /// `ct status a,b` (any of the bits)
    pub fn ct_status(self, st: &[CtStatus]) -> Self {
        let bits = st.iter().fold(0, |a, s| a | s.bit());
        self.ct_bits(
            CtKey::Status,
            "status",
            bits,
            st.iter().map(|s| s.as_str()).collect(),
            false,
        )
    }
    /// `ct status & (a | b) == 0` (none of the bits)
    pub fn ct_status_none(self, st: &[CtStatus]) -> Self {
        let bits = st.iter().fold(0, |a, s| a | s.bit());
        self.ct_bits(
            CtKey::Status,
            "status",
            bits,
            st.iter().map(|s| s.as_str()).collect(),
            true,
        )
    }
    /// `ct original ip daddr <addr>`
    pub fn ct_original_ip_daddr(self, a: Ipv4Addr) -> Self {
        let r = Reg::r32(0);
        self.push(
            None,
            vec![
                Expr::Ct {
                    key: CtKey::DstIp,
                    dreg: r,
                    direction: Some(0),
                },
                Expr::Cmp {
                    op: CmpOp::Eq,
                    sreg: r,
                    data: a.octets().to_vec(),
                },
            ],
            format!("ct original ip daddr {a}"),
        )
    }

    fn fib_local(self, op: CmpOp) -> Self {
        let r = Reg::r32(0);
        const NFTA_FIB_F_DADDR: u32 = 2;
        const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
        const RTN_LOCAL: u32 = 2;
        self.push(
            None,
            vec![
                Expr::Fib {
                    flags: NFTA_FIB_F_DADDR,
                    result: NFT_FIB_RESULT_ADDRTYPE,
                    dreg: r,
                },
                Expr::Cmp {
                    op,
                    sreg: r,
                    data: RTN_LOCAL.to_ne_bytes().to_vec(),
                },
            ],
            format!("fib daddr type {}local", op.nft()),
        )
    }
    /// `fib daddr type local`
    pub fn fib_daddr_local(self) -> Self {
        self.fib_local(CmpOp::Eq)
    }
    /// `fib daddr type != local`
    pub fn fib_daddr_not_local(self) -> Self {
        self.fib_local(CmpOp::Neq)
    }

    /// `counter`
    pub fn counter(self) -> Self {
        self.push(None, vec![Expr::Counter], "counter")
    }
    /// `log [prefix "..."] [group N] [level L]`
    pub fn log(self, opts: LogOptions) -> Self {
        let mut text = String::from("log");
        if let Some(p) = &opts.prefix {
            if p.contains('"') {
                return self.fail("log prefix cannot contain '\"'".into());
            }
            text.push_str(&format!(" prefix \"{p}\""));
        }
        if let Some(g) = opts.group {
            text.push_str(&format!(" group {g}"));
        }
        if let Some(l) = opts.level {
            text.push_str(&format!(" level {}", l.as_str()));
        }
        self.push(
            None,
            vec![Expr::Log {
                prefix: opts.prefix,
                group: opts.group,
                level: opts.level.map(|l| l as u32),
            }],
            text,
        )
    }
    /// `limit rate N/unit burst B packets`
    pub fn limit(self, rate: u64, unit: RateUnit, burst: u32) -> Self {
        self.push(
            None,
            vec![Expr::Limit {
                rate,
                unit_secs: unit.secs(),
                burst,
                invert: false,
            }],
            format!("limit rate {rate}/{} burst {burst} packets", unit.as_str()),
        )
    }
    /// `limit rate over N/unit burst B packets`
    pub fn limit_over(self, rate: u64, unit: RateUnit, burst: u32) -> Self {
        self.push(
            None,
            vec![Expr::Limit {
                rate,
                unit_secs: unit.secs(),
                burst,
                invert: true,
            }],
            format!(
                "limit rate over {rate}/{} burst {burst} packets",
                unit.as_str()
            ),
        )
    }

    /// A terminal verdict.
    pub fn verdict(self, v: Verdict) -> Self {
        let text = v.to_string();
        self.push(None, vec![Expr::Verdict(v)], text)
    }
    /// `accept`
    pub fn accept(self) -> Self {
        self.verdict(Verdict::Accept)
    }
    /// `drop`
    pub fn drop(self) -> Self {
        self.verdict(Verdict::Drop)
    }
    /// `return`
    pub fn ret(self) -> Self {
        self.verdict(Verdict::Return)
    }
    /// `jump <chain>`
    pub fn jump(self, chain: &str) -> Self {
        self.verdict(Verdict::Jump(chain.into()))
    }
    /// `goto <chain>`
    pub fn goto(self, chain: &str) -> Self {
        self.verdict(Verdict::Goto(chain.into()))
    }

    /// `reject` (ICMP/ICMPv6 port unreachable, whichever fits the packet)
    pub fn reject(self) -> Self {
        self.push(
            None,
            vec![Expr::Reject {
                ty: RejectType::IcmpxUnreach,
                code: IcmpxCode::PortUnreachable.code(),
            }],
            "reject",
        )
    }
    /// `reject with icmpx <code>`
    pub fn reject_icmpx(self, code: IcmpxCode) -> Self {
        self.push(
            None,
            vec![Expr::Reject {
                ty: RejectType::IcmpxUnreach,
                code: code.code(),
            }],
            format!("reject with icmpx {}", code.as_str()),
        )
    }
    /// `reject with tcp reset` (nft implies `meta l4proto tcp`)
    pub fn reject_tcp_reset(self) -> Self {
        let mut me = self.push(
            Some(Dep::L4(6)),
            vec![Expr::Reject {
                ty: RejectType::TcpRst,
                code: 0,
            }],
            "reject with tcp reset",
        );
        me.stmts.last_mut().unwrap().dep_at_start = true;
        me
    }

    /// `masquerade`
    pub fn masquerade(self) -> Self {
        self.push(None, vec![Expr::Masq { flags: 0 }], "masquerade")
    }

    fn nat_to(self, ty: NatType, addr: Ipv4Addr, port: Option<u16>) -> Self {
        let r0 = Reg::r32(0);
        let r1 = Reg::r32(1);
        let mut exprs = vec![Expr::Immediate {
            dreg: r0,
            data: addr.octets().to_vec(),
        }];
        if let Some(p) = port {
            exprs.push(Expr::Immediate {
                dreg: r1,
                data: p.to_be_bytes().to_vec(),
            });
        }
        exprs.push(Expr::Nat {
            ty,
            family: NFPROTO_IPV4,
            addr: Some((r0, r0)),
            proto: port.map(|_| (r1, r1)),
            flags: 0,
        });
        let kw = if ty == NatType::Dnat { "dnat" } else { "snat" };
        let text = match port {
            Some(p) => format!("{kw} ip to {addr}:{p}"),
            None => format!("{kw} ip to {addr}"),
        };
        // nft adds no protocol dependency for nat statements.
        self.push(None, exprs, text)
    }
    /// `dnat ip to <addr>[:<port>]`
    pub fn dnat_ip(self, addr: Ipv4Addr, port: Option<u16>) -> Self {
        self.nat_to(NatType::Dnat, addr, port)
    }
    /// `snat ip to <addr>`
    pub fn snat_ip(self, addr: Ipv4Addr) -> Self {
        self.nat_to(NatType::Snat, addr, None)
    }
    /// `dnat ip to <f1> . <f2> map @map`: the map's data is `ipv4_addr` or, with
    /// `with_port`, `ipv4_addr . inet_service`.
    pub fn dnat_ip_map(self, fields: &[Field], map: &str, with_port: bool) -> Self {
        match Self::load_concat(fields) {
            Err(e) => self.fail(e.to_string()),
            Ok((mut exprs, key, deps)) => {
                let r0 = Reg::r32(0);
                let r1 = Reg::r32(1);
                exprs.push(Expr::Lookup {
                    set: map.into(),
                    sreg: r0,
                    dreg: Some(r0),
                    invert: false,
                });
                exprs.push(Expr::Nat {
                    ty: NatType::Dnat,
                    family: NFPROTO_IPV4,
                    addr: Some((r0, r0)),
                    proto: with_port.then_some((r1, r1)),
                    flags: 0,
                });
                self.with_deps(deps, exprs, format!("dnat ip to {key} map @{map}"))
            }
        }
    }

    /// `meta mark set <mark>`
    pub fn set_mark(self, mark: u32) -> Self {
        let r = Reg::r32(0);
        self.push(
            None,
            vec![
                Expr::Immediate {
                    dreg: r,
                    data: mark.to_ne_bytes().to_vec(),
                },
                Expr::MetaSet {
                    key: MetaKey::Mark,
                    sreg: r,
                },
            ],
            format!("meta mark set {mark:#010x}"),
        )
    }

    /// `meta nftrace set 1`: every nf_tables chain this packet meets from
    /// here on reports it on the NFNLGRP_NFTRACE group (see [`crate::TraceListener`]).
    pub fn nftrace(self) -> Self {
        let r = Reg::r32(0);
        self.push(
            None,
            vec![
                Expr::Immediate {
                    dreg: r,
                    data: vec![1],
                },
                Expr::MetaSet {
                    key: MetaKey::Nftrace,
                    sreg: r,
                },
            ],
            "meta nftrace set 1",
        )
    }

    /// `icmp type <type>` (8: echo-request); the protocol match comes with it.
    pub fn icmp_type(self, ty: u8) -> Self {
        let r = Reg::r32(0);
        let name = match ty {
            0 => "echo-reply".to_string(),
            8 => "echo-request".to_string(),
            n => n.to_string(),
        };
        self.l4proto(L4Proto::Icmp).push(
            None,
            vec![
                Expr::Payload {
                    base: PayloadBase::Transport,
                    offset: 0,
                    len: 1,
                    dreg: r,
                },
                Expr::Cmp {
                    op: CmpOp::Eq,
                    sreg: r,
                    data: vec![ty],
                },
            ],
            format!("icmp type {name}"),
        )
    }

    /// `comment "..."` (stored as rule userdata, as nft does).
    pub fn comment(mut self, c: &str) -> Self {
        if c.contains('"') || c.len() > 128 {
            return self.fail("comment must be under 128 bytes without '\"'".into());
        }
        self.comment = Some(c.into());
        self
    }

    /// The statements in nft syntax, e.g. `iifname "br0" accept`.
    pub fn render(&self) -> String {
        let mut parts: Vec<&str> = self.stmts.iter().map(|s| s.text.as_str()).collect();
        let c;
        if let Some(comment) = &self.comment {
            c = format!("comment \"{comment}\"");
            parts.push(&c);
        }
        parts.join(" ")
    }

    /// The expressions sent for a rule in a table of `family`, with the implicit
    /// protocol dependencies nft would add.
    pub fn exprs(&self, family: Family) -> Vec<Expr> {
        let mut have: Vec<Dep> = Vec::new();
        let mut out = Vec::new();
        for (i, s) in self.stmts.iter().enumerate() {
            if let (true, Some(d)) = (s.dep_at_start, s.needs) {
                let provided = self.stmts[..i].iter().any(|p| p.provides == Some(d));
                if d.needed_in(family) && !provided && !have.contains(&d) {
                    out.extend(d.exprs(family));
                    have.push(d);
                }
            }
        }
        for s in &self.stmts {
            if let Some(d) = s.needs.filter(|_| !s.dep_at_start) {
                if d.needed_in(family) && !have.contains(&d) {
                    out.extend(d.exprs(family));
                    have.push(d);
                }
            }
            out.extend(s.exprs.iter().cloned());
            if let Some(p) = s.provides {
                have.push(p);
            }
        }
        out
    }

    pub(crate) fn check(&self) -> Result<()> {
        match &self.error {
            Some(e) => Err(NftError::Invalid(e.clone())),
            None if self.stmts.is_empty() => Err(NftError::Invalid("empty rule".into())),
            None => Ok(()),
        }
    }

    pub(crate) fn encode(
        &self,
        b: &mut MsgBuf,
        chain: &Chain,
        position: Option<u64>,
    ) -> Result<()> {
        self.check()?;
        b.attr_str(NFTA_RULE_TABLE, &chain.table.name);
        b.attr_str(NFTA_RULE_CHAIN, &chain.name);
        if let Some(p) = position {
            b.attr_be64(NFTA_RULE_POSITION, p);
        }
        let list = b.nest_begin(NFTA_RULE_EXPRESSIONS);
        for e in self.exprs(chain.table.family) {
            e.encode(b)?;
        }
        b.nest_end(list)?;
        if let Some(c) = &self.comment {
            let mut ud = vec![UDATA_RULE_COMMENT, (c.len() + 1) as u8];
            ud.extend_from_slice(c.as_bytes());
            ud.push(0);
            b.attr(NFTA_RULE_USERDATA, &ud);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering() {
        let r = Rule::new()
            .iifname("br0")
            .oifname_ne("br0")
            .ip_saddr_prefix("10.90.0.7".parse().unwrap(), 24)
            .counter()
            .masquerade()
            .comment("hi");
        assert_eq!(
            r.render(),
            r#"iifname "br0" oifname != "br0" ip saddr 10.90.0.0/24 counter masquerade comment "hi""#
        );
        let d = Rule::new().fib_daddr_local().dnat_ip_map(
            &[Field::IpDaddr, Field::L4Proto, Field::ThDport],
            "published4",
            true,
        );
        assert_eq!(
            d.render(),
            "fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @published4"
        );
    }

    #[test]
    fn inet_dependencies_are_added_once() {
        let r = Rule::new()
            .ip_saddr("1.2.3.4".parse().unwrap())
            .ip_daddr("1.2.3.5".parse().unwrap());
        let inet = r.exprs(Family::Inet);
        assert_eq!(inet.len(), 6);
        assert_eq!(
            inet[0],
            Expr::Meta {
                key: MetaKey::Nfproto,
                dreg: Reg::r32(0)
            }
        );
        assert_eq!(r.exprs(Family::Ip).len(), 4);
        let explicit = Rule::new()
            .nfproto(Family::Ip)
            .ip_saddr("1.2.3.4".parse().unwrap());
        assert_eq!(explicit.exprs(Family::Inet).len(), 4);
    }

    #[test]
    fn concat_registers_are_consecutive() {
        let r = Rule::new().lookup(&[Field::IpDaddr, Field::L4Proto, Field::ThDport], "s");
        let e = r.exprs(Family::Ip);
        let regs: Vec<u32> = e
            .iter()
            .filter_map(|e| match e {
                Expr::Payload { dreg, .. } | Expr::Meta { dreg, .. } => Some(dreg.0),
                _ => None,
            })
            .collect();
        assert_eq!(regs, vec![8, 9, 10]);
        let v6 = Rule::new().lookup(&[Field::Ip6Daddr, Field::ThDport], "s");
        let regs: Vec<u32> = v6
            .exprs(Family::Ip6)
            .iter()
            .filter_map(|e| match e {
                Expr::Payload { dreg, .. } => Some(dreg.0),
                _ => None,
            })
            .collect();
        assert_eq!(regs, vec![8, 12]);
    }

    #[test]
    fn invalid_rules_are_reported() {
        assert!(Rule::new()
            .cmp(Field::ThDport, CmpOp::Eq, Ipv4Addr::LOCALHOST)
            .check()
            .is_err());
        assert!(Rule::new().check().is_err());
    }
}

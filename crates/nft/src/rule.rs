//! The rule builder. Every method appends both the kernel expressions and the nft
//! text of the same statement, so a rule's rendering cannot drift from what is sent.

use crate::chain::Chain;
use crate::error::{NftError, Result};
use crate::expr::{CmpOp, CtKey, Expr, MetaKey, NatType, PayloadBase, Reg, RejectType};
use crate::netlink::{align4, MsgBuf};
use crate::types::{prefix_mask, Family, L4Proto, Value, Verdict};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// `ip6 nexthdr`: the next header of the fixed IPv6 header (the layer 4
    /// protocol only when no extension header follows; `meta l4proto` skips them)
    Ip6Nexthdr,
    /// `icmpv6 type`
    Icmpv6Type,
    /// The target address of a neighbour solicitation or advertisement
    /// (RFC 4861 4.3, 4.4: bytes 8-23 of the ICMPv6 message). nft 1.0
    /// has no name for it: `@th,64,128`.
    NdTarget,
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
            Field::Ip6Saddr
            | Field::Ip6Daddr
            | Field::Iifname
            | Field::Oifname
            | Field::NdTarget => 16,
            Field::L4Proto | Field::Ip6Nexthdr | Field::Icmpv6Type => 1,
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
            Field::Ip6Nexthdr => "ip6 nexthdr",
            Field::Icmpv6Type => "icmpv6 type",
            Field::NdTarget => "@th,64,128",
        }
    }

    /// The source address field of `addr`'s family (`ip saddr` or `ip6 saddr`).
    pub fn saddr_of(addr: IpAddr) -> Field {
        match addr {
            IpAddr::V4(_) => Field::IpSaddr,
            IpAddr::V6(_) => Field::Ip6Saddr,
        }
    }

    /// The destination address field of `addr`'s family (`ip daddr` or `ip6 daddr`).
    pub fn daddr_of(addr: IpAddr) -> Field {
        match addr {
            IpAddr::V4(_) => Field::IpDaddr,
            IpAddr::V6(_) => Field::Ip6Daddr,
        }
    }

    /// The protocol matches nft puts before this field, in nft's order.
    fn deps(self) -> Vec<Dep> {
        match self {
            Field::IpSaddr | Field::IpDaddr => vec![Dep::L3(ETH_P_IP)],
            Field::Ip6Saddr | Field::Ip6Daddr | Field::Ip6Nexthdr => vec![Dep::L3(ETH_P_IPV6)],
            Field::ArpSaddrEther | Field::ArpSaddrIp => vec![Dep::L3(ETH_P_ARP)],
            Field::Icmpv6Type | Field::NdTarget => vec![Dep::L3(ETH_P_IPV6), Dep::L4(58)],
            _ => Vec::new(),
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
            Field::Ip6Nexthdr => payload(PayloadBase::Network, 6),
            Field::Icmpv6Type => payload(PayloadBase::Transport, 0),
            Field::NdTarget => payload(PayloadBase::Transport, 8),
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
    /// Protocol matches this statement depends on, in the order nft adds them.
    needs: Vec<Dep>,
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

    fn push(self, needs: Option<Dep>, exprs: Vec<Expr>, text: impl Into<String>) -> Self {
        self.push_deps(needs.into_iter().collect(), exprs, text)
    }

    fn push_deps(mut self, needs: Vec<Dep>, exprs: Vec<Expr>, text: impl Into<String>) -> Self {
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
            | (Field::L4Proto | Field::Ip6Nexthdr, Value::Proto(_))
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
        let mut me = self.push_deps(
            field.deps(),
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

    /// `<field> <op> <net>/<len>` for an address field of `addr`'s family.
    fn prefix(self, field: Field, addr: IpAddr, len: u8, op: CmpOp) -> Self {
        let bytes = match addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        if usize::from(len) > bytes.len() * 8 {
            return self.fail(format!("bad prefix length /{len} for {addr}"));
        }
        let mask = prefix_mask(bytes.len(), len);
        let net: Vec<u8> = bytes.iter().zip(&mask).map(|(b, m)| b & m).collect();
        let shown = match addr {
            IpAddr::V4(_) => IpAddr::from(<[u8; 4]>::try_from(&net[..]).expect("4 bytes")),
            IpAddr::V6(_) => IpAddr::from(<[u8; 16]>::try_from(&net[..]).expect("16 bytes")),
        };
        let r = Reg::r32(0);
        let text = format!("{} {}{shown}/{len}", field.as_str(), op.nft());
        let xor = vec![0; net.len()];
        self.push_deps(
            field.deps(),
            vec![
                field.load(r),
                Expr::Bitwise {
                    sreg: r,
                    dreg: r,
                    mask,
                    xor,
                },
                Expr::Cmp {
                    op,
                    sreg: r,
                    data: net,
                },
            ],
            text,
        )
    }
    /// `ip saddr <net>/<len>`
    pub fn ip_saddr_prefix(self, addr: Ipv4Addr, len: u8) -> Self {
        self.prefix(Field::IpSaddr, addr.into(), len, CmpOp::Eq)
    }
    /// `ip saddr != <net>/<len>`
    pub fn ip_saddr_prefix_ne(self, addr: Ipv4Addr, len: u8) -> Self {
        self.prefix(Field::IpSaddr, addr.into(), len, CmpOp::Neq)
    }
    /// `ip daddr <net>/<len>`
    pub fn ip_daddr_prefix(self, addr: Ipv4Addr, len: u8) -> Self {
        self.prefix(Field::IpDaddr, addr.into(), len, CmpOp::Eq)
    }
    /// `ip daddr != <net>/<len>`
    pub fn ip_daddr_prefix_ne(self, addr: Ipv4Addr, len: u8) -> Self {
        self.prefix(Field::IpDaddr, addr.into(), len, CmpOp::Neq)
    }

    /// `ip6 saddr <addr>`
    pub fn ip6_saddr(self, a: Ipv6Addr) -> Self {
        self.cmp(Field::Ip6Saddr, CmpOp::Eq, a)
    }
    /// `ip6 daddr <addr>`
    pub fn ip6_daddr(self, a: Ipv6Addr) -> Self {
        self.cmp(Field::Ip6Daddr, CmpOp::Eq, a)
    }
    /// `ip6 nexthdr <proto>`
    pub fn ip6_nexthdr(self, p: L4Proto) -> Self {
        self.cmp(Field::Ip6Nexthdr, CmpOp::Eq, p)
    }

    /// `ip saddr <addr>` or `ip6 saddr <addr>`, by the address's family.
    pub fn saddr(self, a: IpAddr) -> Self {
        self.cmp(Field::saddr_of(a), CmpOp::Eq, a)
    }
    /// `ip daddr <addr>` or `ip6 daddr <addr>`, by the address's family.
    pub fn daddr(self, a: IpAddr) -> Self {
        self.cmp(Field::daddr_of(a), CmpOp::Eq, a)
    }
    /// `ip[6] saddr <net>/<len>`, by the address's family.
    pub fn saddr_prefix(self, addr: IpAddr, len: u8) -> Self {
        self.prefix(Field::saddr_of(addr), addr, len, CmpOp::Eq)
    }
    /// `ip[6] saddr != <net>/<len>`, by the address's family.
    pub fn saddr_prefix_ne(self, addr: IpAddr, len: u8) -> Self {
        self.prefix(Field::saddr_of(addr), addr, len, CmpOp::Neq)
    }
    /// `ip[6] daddr <net>/<len>`, by the address's family.
    pub fn daddr_prefix(self, addr: IpAddr, len: u8) -> Self {
        self.prefix(Field::daddr_of(addr), addr, len, CmpOp::Eq)
    }
    /// `ip[6] daddr != <net>/<len>`, by the address's family.
    pub fn daddr_prefix_ne(self, addr: IpAddr, len: u8) -> Self {
        self.prefix(Field::daddr_of(addr), addr, len, CmpOp::Neq)
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
            for d in f.deps() {
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

    fn with_deps(self, deps: Vec<Dep>, exprs: Vec<Expr>, text: String) -> Self {
        // A key of fields of two network protocols (ip and ip6, ip and arp)
        // would never match: no packet is both.
        if deps.iter().filter(|d| matches!(d, Dep::L3(_))).count() > 1 {
            return self.fail(format!("key {text} mixes network protocols"));
        }
        self.push_deps(deps, exprs, text)
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
    /// `ct direction original|reply`: whether the packet goes the way the
    /// connection's first packet went (`reply` is false for it).
    pub fn ct_direction(self, reply: bool) -> Self {
        let r = Reg::r32(0);
        self.push(
            None,
            vec![
                Expr::Ct {
                    key: CtKey::Direction,
                    dreg: r,
                    direction: None,
                },
                Expr::Cmp {
                    op: CmpOp::Eq,
                    sreg: r,
                    data: vec![u8::from(reply)],
                },
            ],
            format!("ct direction {}", if reply { "reply" } else { "original" }),
        )
    }
    /// `ct original ip daddr <addr>`
    pub fn ct_original_ip_daddr(self, a: Ipv4Addr) -> Self {
        self.ct_original(false, a.into())
    }
    /// `ct original ip[6] daddr <addr>`, by the address's family.
    pub fn ct_original_daddr(self, a: IpAddr) -> Self {
        self.ct_original(false, a)
    }
    /// `ct original ip[6] saddr <addr>`, by the address's family.
    pub fn ct_original_saddr(self, a: IpAddr) -> Self {
        self.ct_original(true, a)
    }

    /// The connection's original source or destination. The kernel keys are
    /// per family (4 or 16 bytes); on a connection of the other family the
    /// load breaks the rule, so no protocol dependency is needed.
    fn ct_original(self, source: bool, a: IpAddr) -> Self {
        let r = Reg::r32(0);
        let (key, fam, data) = match (source, a) {
            (false, IpAddr::V4(v)) => (CtKey::DstIp, "ip", v.octets().to_vec()),
            (true, IpAddr::V4(v)) => (CtKey::SrcIp, "ip", v.octets().to_vec()),
            (false, IpAddr::V6(v)) => (CtKey::DstIp6, "ip6", v.octets().to_vec()),
            (true, IpAddr::V6(v)) => (CtKey::SrcIp6, "ip6", v.octets().to_vec()),
        };
        let dir = if source { "saddr" } else { "daddr" };
        self.push(
            None,
            vec![
                Expr::Ct {
                    key,
                    dreg: r,
                    direction: Some(0),
                },
                Expr::Cmp {
                    op: CmpOp::Eq,
                    sreg: r,
                    data,
                },
            ],
            format!("ct original {fam} {dir} {a}"),
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

    fn nat_to(self, ty: NatType, addr: IpAddr, port: Option<u16>) -> Self {
        let (family, fam, data) = match addr {
            IpAddr::V4(a) => (NFPROTO_IPV4, "ip", a.octets().to_vec()),
            IpAddr::V6(a) => (NFPROTO_IPV6, "ip6", a.octets().to_vec()),
        };
        // The port goes in the 128-bit register after the address's, as nft
        // allocates them, whatever the family.
        let r0 = Reg::r32(0);
        let rp = Reg::r32(4);
        let mut exprs = vec![Expr::Immediate { dreg: r0, data }];
        if let Some(p) = port {
            exprs.push(Expr::Immediate {
                dreg: rp,
                data: p.to_be_bytes().to_vec(),
            });
        }
        exprs.push(Expr::Nat {
            ty,
            family,
            addr: Some((r0, r0)),
            proto: port.map(|_| (rp, rp)),
            flags: 0,
        });
        let kw = if ty == NatType::Dnat { "dnat" } else { "snat" };
        let text = match (port, addr) {
            (Some(p), IpAddr::V6(_)) => format!("{kw} {fam} to [{addr}]:{p}"),
            (Some(p), IpAddr::V4(_)) => format!("{kw} {fam} to {addr}:{p}"),
            (None, _) => format!("{kw} {fam} to {addr}"),
        };
        // nft adds no protocol dependency for nat statements: in an inet
        // table the kernel applies a NAT only to packets of its family.
        self.push(None, exprs, text)
    }
    /// `dnat ip to <addr>[:<port>]`
    pub fn dnat_ip(self, addr: Ipv4Addr, port: Option<u16>) -> Self {
        self.nat_to(NatType::Dnat, addr.into(), port)
    }
    /// `snat ip to <addr>`
    pub fn snat_ip(self, addr: Ipv4Addr) -> Self {
        self.nat_to(NatType::Snat, addr.into(), None)
    }
    /// `dnat ip6 to [<addr>]:<port>` or `dnat ip6 to <addr>`
    pub fn dnat_ip6(self, addr: Ipv6Addr, port: Option<u16>) -> Self {
        self.nat_to(NatType::Dnat, addr.into(), port)
    }
    /// `snat ip6 to <addr>`
    pub fn snat_ip6(self, addr: Ipv6Addr) -> Self {
        self.nat_to(NatType::Snat, addr.into(), None)
    }
    /// `dnat ip|ip6 to <addr>[:<port>]`, by the address's family.
    pub fn dnat_to(self, addr: IpAddr, port: Option<u16>) -> Self {
        self.nat_to(NatType::Dnat, addr, port)
    }
    /// `snat ip|ip6 to <addr>`, by the address's family.
    pub fn snat_to(self, addr: IpAddr) -> Self {
        self.nat_to(NatType::Snat, addr, None)
    }
    /// `dnat ip to <f1> . <f2> map @map`: the map's data is `ipv4_addr` or, with
    /// `with_port`, `ipv4_addr . inet_service`.
    pub fn dnat_ip_map(self, fields: &[Field], map: &str, with_port: bool) -> Self {
        self.dnat_map(Family::Ip, fields, map, with_port)
    }
    /// `dnat ip6 to <f1> . <f2> map @map`: the map's data is `ipv6_addr` or, with
    /// `with_port`, `ipv6_addr . inet_service`.
    pub fn dnat_ip6_map(self, fields: &[Field], map: &str, with_port: bool) -> Self {
        self.dnat_map(Family::Ip6, fields, map, with_port)
    }
    /// `dnat ip|ip6 to <key> map @map`; `family` (`Ip` or `Ip6`) is the
    /// family of the map's address data.
    pub fn dnat_map(self, family: Family, fields: &[Field], map: &str, with_port: bool) -> Self {
        let (nfproto, fam, addr_slots) = match family {
            Family::Ip => (NFPROTO_IPV4, "ip", 1),
            Family::Ip6 => (NFPROTO_IPV6, "ip6", 4),
            other => return self.fail(format!("dnat {other} to a map is not supported")),
        };
        match Self::load_concat(fields) {
            Err(e) => self.fail(e.to_string()),
            Ok((mut exprs, key, deps)) => {
                let r0 = Reg::r32(0);
                let rp = Reg::r32(addr_slots);
                exprs.push(Expr::Lookup {
                    set: map.into(),
                    sreg: r0,
                    dreg: Some(r0),
                    invert: false,
                });
                exprs.push(Expr::Nat {
                    ty: NatType::Dnat,
                    family: nfproto,
                    addr: Some((r0, r0)),
                    proto: with_port.then_some((rp, rp)),
                    flags: 0,
                });
                self.with_deps(deps, exprs, format!("dnat {fam} to {key} map @{map}"))
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

    /// `icmpv6 type <type>` (135: neighbour solicitation, 136: advertisement);
    /// nft's dependencies (`meta nfproto ipv6` in inet tables, `meta l4proto
    /// ipv6-icmp`) come with it.
    pub fn icmpv6_type(self, ty: u8) -> Self {
        self.icmpv6_type_cmp(CmpOp::Eq, ty)
    }
    /// `icmpv6 type != <type>`
    pub fn icmpv6_type_ne(self, ty: u8) -> Self {
        self.icmpv6_type_cmp(CmpOp::Neq, ty)
    }
    fn icmpv6_type_cmp(self, op: CmpOp, ty: u8) -> Self {
        let r = Reg::r32(0);
        self.push_deps(
            Field::Icmpv6Type.deps(),
            vec![
                Field::Icmpv6Type.load(r),
                Expr::Cmp {
                    op,
                    sreg: r,
                    data: vec![ty],
                },
            ],
            format!("icmpv6 type {}{}", op.nft(), icmpv6_type_name(ty)),
        )
    }
    /// `icmpv6 type <first>-<last>` (inclusive; 133-137 is neighbour
    /// discovery: router solicitation and advertisement, neighbour
    /// solicitation and advertisement, redirect).
    pub fn icmpv6_type_range(self, first: u8, last: u8) -> Self {
        if first > last {
            return self.fail(format!("empty icmpv6 type range {first}-{last}"));
        }
        let r = Reg::r32(0);
        self.push_deps(
            Field::Icmpv6Type.deps(),
            vec![
                Field::Icmpv6Type.load(r),
                Expr::Cmp {
                    op: CmpOp::Gte,
                    sreg: r,
                    data: vec![first],
                },
                Expr::Cmp {
                    op: CmpOp::Lte,
                    sreg: r,
                    data: vec![last],
                },
            ],
            format!("icmpv6 type {first}-{last}"),
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
            for &d in s.needs.iter().filter(|_| s.dep_at_start) {
                let provided = self.stmts[..i].iter().any(|p| p.provides == Some(d));
                if d.needed_in(family) && !provided && !have.contains(&d) {
                    out.extend(d.exprs(family));
                    have.push(d);
                }
            }
        }
        for s in &self.stmts {
            for &d in s.needs.iter().filter(|_| !s.dep_at_start) {
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
            None if self.network_protocols() > 1 => Err(NftError::Invalid(format!(
                "rule {} matches two network protocols (no packet is both)",
                self.render()
            ))),
            None => Ok(()),
        }
    }

    /// How many network protocols (ip, ip6, arp) the rule's matches need.
    fn network_protocols(&self) -> usize {
        let mut seen: Vec<u16> = Vec::new();
        for s in &self.stmts {
            for d in s.needs.iter().chain(s.provides.iter()) {
                if let Dep::L3(t) = d {
                    if !seen.contains(t) {
                        seen.push(*t);
                    }
                }
            }
        }
        seen.len()
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

/// nft's name of an ICMPv6 type, or its number.
fn icmpv6_type_name(ty: u8) -> String {
    let name = match ty {
        1 => "destination-unreachable",
        2 => "packet-too-big",
        3 => "time-exceeded",
        4 => "parameter-problem",
        128 => "echo-request",
        129 => "echo-reply",
        130 => "mld-listener-query",
        131 => "mld-listener-report",
        132 => "mld-listener-done",
        133 => "nd-router-solicit",
        134 => "nd-router-advert",
        135 => "nd-neighbor-solicit",
        136 => "nd-neighbor-advert",
        137 => "nd-redirect",
        143 => "mld2-listener-report",
        n => return n.to_string(),
    };
    name.to_string()
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
    fn ipv6_nat_and_icmpv6_encode_as_nft_does() {
        let a: Ipv6Addr = "fd00::2".parse().unwrap();
        let r = Rule::new().dnat_ip6(a, Some(80));
        assert_eq!(r.render(), "dnat ip6 to [fd00::2]:80");
        let e = r.exprs(Family::Inet);
        assert_eq!(
            e[0],
            Expr::Immediate {
                dreg: Reg::r32(0),
                data: a.octets().to_vec()
            }
        );
        assert!(matches!(
            e[2],
            Expr::Nat {
                family: NFPROTO_IPV6,
                proto: Some((p, _)),
                ..
            } if p == Reg::r32(4)
        ));
        // nfproto ipv6, then l4proto ipv6-icmp, then the type.
        let nd = Rule::new().icmpv6_type(136).exprs(Family::Inet);
        assert_eq!(nd.len(), 6);
        assert_eq!(
            nd[1],
            Expr::Cmp {
                op: CmpOp::Eq,
                sreg: Reg::r32(0),
                data: vec![NFPROTO_IPV6]
            }
        );
        assert_eq!(
            nd[3],
            Expr::Cmp {
                op: CmpOp::Eq,
                sreg: Reg::r32(0),
                data: vec![58]
            }
        );
        // In an ip6 table only the layer 4 dependency remains.
        assert_eq!(Rule::new().icmpv6_type(136).exprs(Family::Ip6).len(), 4);
        let net = Rule::new().saddr_prefix("fd00:1:2:3::9".parse().unwrap(), 64);
        assert_eq!(net.render(), "ip6 saddr fd00:1:2:3::/64");
        assert!(net.check().is_ok());
    }

    /// A neighbour advertisement's target in a concatenated lookup: the
    /// 16 bytes at offset 8 of the ICMPv6 message, after the type match
    /// and its dependencies; in the bridge family the network protocol is
    /// the ether type.
    #[test]
    fn an_nd_target_is_loaded_from_the_icmpv6_message() {
        let r = Rule::new().icmpv6_type(136).lookup_ne(
            &[Field::Iifname, Field::EtherSaddr, Field::NdTarget],
            "allowed6",
        );
        assert!(r.check().is_ok());
        assert_eq!(
            r.render(),
            "icmpv6 type nd-neighbor-advert iifname . ether saddr . @th,64,128 != @allowed6"
        );
        let e = r.exprs(Family::Bridge);
        assert!(
            e.contains(&Expr::Payload {
                base: PayloadBase::Transport,
                offset: 8,
                len: 16,
                dreg: Reg::r32(6),
            }),
            "{e:?}"
        );
        assert!(matches!(e.last(), Some(Expr::Lookup { invert: true, .. })));
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

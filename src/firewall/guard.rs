//! Anti-spoofing: a container's frames must carry its own MAC and one of
//! its own addresses, and its ARP packets and neighbour advertisements may
//! speak only for those. These
//! checks need the Ethernet header and ARP, which the `inet` family never
//! sees, so they live in a second table of berth's, `bridge berth`, whose
//! prerouting hook sees every frame entering a bridge port (before
//! br_netfilter passes any of it to `inet`, so both modes judge alike).
//!
//! ```text
//! set guarded  { type ifname; }                                 host veths under guard
//! set allowed4 { type ifname . ether_addr . ipv4_addr; }        veth . its MAC . an own address
//! set allowed6 { type ifname . ether_addr . ipv6_addr; }        the same for IPv6
//! set targets6 { typeof iifname . ether saddr . @th,64,128; }   the same, as an ND target
//! chain prerouting { filter prerouting priority filter (-200); policy accept;
//!     iifname @guarded jump guard }
//! chain guard {
//!     ether type ip   iifname . ether saddr . ip saddr @allowed4 return
//!     ether type arp  iifname . ether saddr . arp saddr ip @allowed4
//!                     iifname . arp saddr ether . arp saddr ip @allowed4 return
//!     ether type ip6 icmpv6 type nd-neighbor-advert
//!                     iifname . ether saddr . @th,64,128 != @targets6 counter drop
//!     ether type ip6  iifname . ether saddr . ip6 saddr @allowed6 return
//!     counter drop }
//! ```
//!
//! Every check is a hash lookup keyed by the port, so a connect adds
//! elements (its veth, its MAC and addresses) and never a rule: its cost
//! does not grow with the number of containers, and a frame's does not
//! either. Whatever is not IPv4, ARP or IPv6 from a guarded port (other
//! ethertypes, VLAN tags that could hide a spoofed packet) is dropped;
//! berth's containers send nothing else. Frames of other bridges and of
//! ports without a guard (`--allow-spoofing`) pass untouched.
//!
//! "Own addresses" are those berth gave the endpoint's namespace: a
//! namespace on two networks may answer on one interface with its address
//! on the other (its default route leaves by one of them), which is still
//! its own. The elements of a namespace are a pure function of its
//! endpoints ([`elements`]); a change is the difference between the
//! elements before and after it ([`change`]), so connect, disconnect and
//! the reconcile's rebuild cannot disagree.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use berth_nft::{
    priority, Batch, Chain, ChainType, DataType, ElemOp, Element, Family, Field, Hook, Policy,
    Rule, Set, Table, Value,
};

use crate::model::Endpoint;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;

pub const GUARDED: &str = "guarded";
pub const ALLOWED4: &str = "allowed4";
pub const ALLOWED6: &str = "allowed6";
pub const TARGETS6: &str = "targets6";
/// ICMPv6 neighbour advertisement (RFC 4861 4.4).
const ND_NEIGHBOR_ADVERT: u8 = 136;
const GUARD_CHAIN: &str = "guard";

/// `bridge berth`, the second of berth's two tables.
pub fn table() -> Table {
    Table::new(Family::Bridge, super::TABLE_NAME)
}

pub fn guarded() -> Set {
    Set::new(&table(), GUARDED, &[DataType::Ifname])
}

pub fn allowed4() -> Set {
    Set::new(
        &table(),
        ALLOWED4,
        &[DataType::Ifname, DataType::EtherAddr, DataType::Ipv4Addr],
    )
}

pub fn allowed6() -> Set {
    Set::new(
        &table(),
        ALLOWED6,
        &[DataType::Ifname, DataType::EtherAddr, DataType::Ipv6Addr],
    )
}

/// `allowed6` again, with the address as nft sees a neighbour
/// advertisement's target: nft 1.0 has no name for that field, and a raw
/// payload is an integer, which only a `typeof` key can hold (nft refuses
/// to look an integer up in an `ipv6_addr` key).
pub fn targets6() -> Set {
    Set::typed_by(
        &table(),
        TARGETS6,
        &[Field::Iifname, Field::EtherSaddr, Field::NdTarget],
    )
}

fn prerouting() -> Chain {
    Chain::base(
        &table(),
        "prerouting",
        ChainType::Filter,
        Hook::Prerouting,
        priority::BRIDGE_FILTER,
    )
    .policy(Policy::Accept)
}

fn guard_chain() -> Chain {
    Chain::regular(&table(), GUARD_CHAIN)
}

/// Appends the table, its sets, chains and rules (no elements).
pub fn create(b: &mut Batch) {
    let pre = prerouting();
    let guard = guard_chain();
    b.add_table(&table())
        .add_set(&guarded())
        .add_set(&allowed4())
        .add_set(&allowed6())
        .add_set(&targets6())
        .add_chain(&pre)
        .add_chain(&guard);
    b.add_rule(
        &pre,
        Rule::new()
            .lookup(&[Field::Iifname], GUARDED)
            .jump(GUARD_CHAIN),
    );
    b.add_rule(
        &guard,
        Rule::new()
            .ether_type(ETH_P_IP)
            .lookup(
                &[Field::Iifname, Field::EtherSaddr, Field::IpSaddr],
                ALLOWED4,
            )
            .ret(),
    );
    // Both the frame's source and the ARP sender must be the port's MAC:
    // either alone would let a container teach its neighbours or the
    // bridge another MAC for an address.
    b.add_rule(
        &guard,
        Rule::new()
            .ether_type(ETH_P_ARP)
            .lookup(
                &[Field::Iifname, Field::EtherSaddr, Field::ArpSaddrIp],
                ALLOWED4,
            )
            .lookup(
                &[Field::Iifname, Field::ArpSaddrEther, Field::ArpSaddrIp],
                ALLOWED4,
            )
            .ret(),
    );
    // ARP's second check for IPv6: an advertisement's source address is
    // the port's own, but its target is the address it speaks for. Without
    // this, a container could claim a neighbour's (or the gateway's)
    // address and the bridge's neighbours would send it that traffic.
    b.add_rule(
        &guard,
        Rule::new()
            .ether_type(ETH_P_IPV6)
            .icmpv6_type(ND_NEIGHBOR_ADVERT)
            .lookup_ne(
                &[Field::Iifname, Field::EtherSaddr, Field::NdTarget],
                TARGETS6,
            )
            .counter()
            .drop(),
    );
    b.add_rule(
        &guard,
        Rule::new()
            .ether_type(ETH_P_IPV6)
            .lookup(
                &[Field::Iifname, Field::EtherSaddr, Field::Ip6Saddr],
                ALLOWED6,
            )
            .ret(),
    );
    b.add_rule(&guard, Rule::new().counter().drop());
}

/// Appends the removal of the whole table.
pub fn delete(b: &mut Batch) {
    b.delete_table(&table());
}

/// The elements of the guard, by set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Elements {
    pub guarded: Vec<Element>,
    pub allowed4: Vec<Element>,
    pub allowed6: Vec<Element>,
    pub targets6: Vec<Element>,
}

impl Elements {
    pub fn is_empty(&self) -> bool {
        self.guarded.is_empty()
            && self.allowed4.is_empty()
            && self.allowed6.is_empty()
            && self.targets6.is_empty()
    }

    /// Appends `op` on every element (nothing for none).
    pub fn apply(&self, b: &mut Batch, op: ElemOp) {
        for (set, elements) in [
            (guarded(), &self.guarded),
            (allowed4(), &self.allowed4),
            (allowed6(), &self.allowed6),
            (targets6(), &self.targets6),
        ] {
            if !elements.is_empty() {
                b.elements(&set, op, elements.clone());
            }
        }
    }

    /// What `self` has and `other` has not.
    fn minus(&self, other: &Elements) -> Elements {
        let less = |a: &[Element], b: &[Element]| -> Vec<Element> {
            let b: HashSet<&Element> = b.iter().collect();
            a.iter().filter(|e| !b.contains(e)).cloned().collect()
        };
        Elements {
            guarded: less(&self.guarded, &other.guarded),
            allowed4: less(&self.allowed4, &other.allowed4),
            allowed6: less(&self.allowed6, &other.allowed6),
            targets6: less(&self.targets6, &other.targets6),
        }
    }
}

/// What the guard holds for `endpoints`: each guarded port, and for each
/// the pairs of its MAC with every address of its namespace (endpoints
/// with the same namespace inode). Ports with `allow_spoofing` have no
/// element of their own, but their addresses still count as their
/// namespace's.
pub fn elements<'a>(endpoints: impl IntoIterator<Item = &'a Endpoint>) -> Elements {
    let mut namespaces: BTreeMap<u64, Vec<&Endpoint>> = BTreeMap::new();
    // A macvlan/ipvlan child has no port on a bridge of berth's to guard,
    // and its address is not one a veth may send with.
    for e in endpoints.into_iter().filter(|e| e.has_veth()) {
        namespaces.entry(e.netns_inode).or_default().push(e);
    }
    let mut out = Elements::default();
    for members in namespaces.values() {
        let addresses: Vec<IpAddr> = members.iter().flat_map(|e| e.ips.iter().copied()).collect();
        for port in members.iter().filter(|e| !e.allow_spoofing) {
            let veth = Value::Ifname(port.host_ifname.clone());
            out.guarded.push(Element::of(veth.clone()));
            let mac = Value::Ether(port.mac.0);
            for address in &addresses {
                let key =
                    |ip: Value| Element::new([veth.clone().into(), mac.clone().into(), ip.into()]);
                match address {
                    IpAddr::V4(ip) => out.allowed4.push(key(Value::Ipv4(*ip))),
                    IpAddr::V6(ip) => {
                        out.allowed6.push(key(Value::Ipv6(*ip)));
                        out.targets6.push(key(Value::Integer(ip.octets().to_vec())));
                    }
                }
            }
        }
    }
    out
}

/// The change that takes the guard from what `before` needs to what
/// `after` needs (the endpoints of the namespaces concerned, before and
/// after), and its inverse. Empty batches when nothing differs.
pub fn change(before: &[&Endpoint], after: &[&Endpoint]) -> super::Change {
    let (old, new) = (
        elements(before.iter().copied()),
        elements(after.iter().copied()),
    );
    let (gone, added) = (old.minus(&new), new.minus(&old));
    let mut batch = Batch::new();
    let mut undo = Batch::new();
    gone.apply(&mut batch, ElemOp::Delete);
    added.apply(&mut batch, ElemOp::Add);
    added.apply(&mut undo, ElemOp::Delete);
    gone.apply(&mut undo, ElemOp::Add);
    super::Change { batch, undo }
}

//! Published ports in the ruleset: DNAT maps looked up from prerouting
//! and output, and the elements one endpoint's mappings become. The chains
//! and rules are part of the skeleton; a connect or disconnect only adds or
//! removes elements here, in one batch, so its cost does not depend on how
//! many ports are published, and neither does the per-packet cost.
//!
//! ```text
//! map published4        { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
//! map published4_any    { type inet_proto . inet_service : ipv4_addr . inet_service; }
//! map published4_ranges { type ipv4_addr . inet_proto . inet_service : ipv4_addr; flags interval; }
//! map published6, published6_any, published6_ranges   the same with ipv6_addr
//! ```
//!
//! A mapping goes into the maps of each family it answers on (0.0.0.0:
//! both; `::` and an IPv6 HOST_IP: IPv6's) for which its container has an
//! address, so `-p 8080:80` on a dual-stack container answers on the
//! host's IPv4 and IPv6 addresses, each DNATed to the container's address
//! of the same family: no translation between families.
//!
//! Single ports live in hash maps: `published4` for a given HOST_IP,
//! `published4_any` for "every local address". A hash lookup costs the same
//! with 10 or 10,000 elements, where an interval map (the kernel's pipapo
//! set) scans bitmaps that grow with its elements: with 10,000 mappings in
//! one, new connections per second fell to 0.63x. A range whose host and
//! container ports are the same numbers is one element of
//! `published4_ranges` (an interval map, so `0.0.0.0/0` stands for any
//! address), whose data is only the address: DNAT to an address keeps the
//! destination port. Any other range is one element per port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use berth_nft::{Batch, DataType, ElemOp, Element, KeyPart, L4Proto, Set, Value};

use super::table;
use crate::model::{Family, PortMapping, Proto};

pub const PUBLISHED: &str = "published4";
pub const PUBLISHED_ANY: &str = "published4_any";
pub const PUBLISHED_RANGES: &str = "published4_ranges";
pub const PUBLISHED6: &str = "published6";
pub const PUBLISHED6_ANY: &str = "published6_any";
pub const PUBLISHED6_RANGES: &str = "published6_ranges";

/// The address type of a family's maps.
fn addr_type(family: Family) -> DataType {
    match family {
        Family::V4 => DataType::Ipv4Addr,
        Family::V6 => DataType::Ipv6Addr,
    }
}

fn key(family: Family) -> [DataType; 3] {
    [
        addr_type(family),
        DataType::InetProto,
        DataType::InetService,
    ]
}

fn target(family: Family) -> [DataType; 2] {
    [addr_type(family), DataType::InetService]
}

/// The names of a family's three maps: one address, every address, ranges.
pub fn names(family: Family) -> [&'static str; 3] {
    match family {
        Family::V4 => [PUBLISHED, PUBLISHED_ANY, PUBLISHED_RANGES],
        Family::V6 => [PUBLISHED6, PUBLISHED6_ANY, PUBLISHED6_RANGES],
    }
}

/// `published4`/`published6`: host address . protocol . port -> container
/// address . port.
pub fn published_of(family: Family) -> Set {
    Set::map(&table(), names(family)[0], &key(family), &target(family))
}

/// `published4_any`/`published6_any`: protocol . port -> container
/// address . port, for mappings on every local address.
pub fn published_any_of(family: Family) -> Set {
    Set::map(
        &table(),
        names(family)[1],
        &key(family)[1..],
        &target(family),
    )
}

/// `published4_ranges`/`published6_ranges`: host address . protocol .
/// port range -> container address (the port is kept).
pub fn published_ranges_of(family: Family) -> Set {
    Set::map(
        &table(),
        names(family)[2],
        &key(family),
        &[addr_type(family)],
    )
    .interval()
}

/// The IPv4 maps, as their names say.
pub fn published() -> Set {
    published_of(Family::V4)
}

pub fn published_any() -> Set {
    published_any_of(Family::V4)
}

pub fn published_ranges() -> Set {
    published_ranges_of(Family::V4)
}

pub fn l4proto(p: Proto) -> L4Proto {
    L4Proto::from_number(p.number())
}

/// The host side of a range element: the address, or every address of
/// the family as the prefix of length 0.
fn address(m: &PortMapping, family: Family) -> KeyPart {
    if m.is_any_address() {
        match family {
            Family::V4 => KeyPart::Prefix(Ipv4Addr::UNSPECIFIED.into(), 0),
            Family::V6 => KeyPart::Prefix(Ipv6Addr::UNSPECIFIED.into(), 0),
        }
    } else {
        KeyPart::Single(m.host_ip.into())
    }
}

/// The elements of `ports` published to `container`, by map (the maps of
/// the container address's family).
#[derive(Default)]
pub struct Elements {
    pub published: Vec<Element>,
    pub any: Vec<Element>,
    pub ranges: Vec<Element>,
}

/// The elements of the mappings that answer on `container`'s family: a
/// mapping on 0.0.0.0 answers on both, so a dual-stack container gets it
/// in both families' maps, each to its own address there.
pub fn elements(container: IpAddr, ports: &[PortMapping]) -> Elements {
    let family = Family::of(container);
    let mut out = Elements::default();
    for m in ports.iter().filter(|m| m.covers(family)) {
        let proto = KeyPart::Single(l4proto(m.proto).into());
        if m.count > 1 && m.host_port == m.container_port {
            out.ranges.push(
                Element::new([
                    address(m, family),
                    proto,
                    KeyPart::Range(m.host_port.into(), m.host_last().into()),
                ])
                .to([Value::from(container)]),
            );
        } else {
            for (host, inside) in m.pairs() {
                let target = [Value::from(container), inside.into()];
                if m.is_any_address() {
                    out.any
                        .push(Element::new([proto.clone(), host.into()]).to(target));
                } else {
                    out.published.push(
                        Element::new([
                            KeyPart::Single(m.host_ip.into()),
                            proto.clone(),
                            host.into(),
                        ])
                        .to(target),
                    );
                }
            }
        }
    }
    out
}

/// Appends `op` on the elements of `ports` for `container` (nothing for no
/// ports, so that a connect without `-p` sends no nft message at all).
pub fn elements_op(b: &mut Batch, op: ElemOp, container: IpAddr, ports: &[PortMapping]) {
    let family = Family::of(container);
    let e = elements(container, ports);
    for (map, elements) in [
        (published_of(family), e.published),
        (published_any_of(family), e.any),
        (published_ranges_of(family), e.ranges),
    ] {
        if !elements.is_empty() {
            b.elements(&map, op, elements);
        }
    }
}

/// The batch that publishes `ports` to `container`, and the one that takes
/// them back. The batch is atomic, so when the undo runs every element is
/// there and a plain delete suffices (`destroy` needs Linux 6.3).
pub fn publish(container: IpAddr, ports: &[PortMapping]) -> super::Change {
    let mut batch = Batch::new();
    let mut undo = Batch::new();
    elements_op(&mut batch, ElemOp::Add, container, ports);
    elements_op(&mut undo, ElemOp::Delete, container, ports);
    super::Change { batch, undo }
}

/// The reverse of [`publish`]: removes the elements; the undo adds them back.
pub fn unpublish(container: IpAddr, ports: &[PortMapping]) -> super::Change {
    let c = publish(container, ports);
    super::Change {
        batch: c.undo,
        undo: c.batch,
    }
}

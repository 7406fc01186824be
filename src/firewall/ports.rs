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
//! ```
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

use std::net::Ipv4Addr;

use berth_nft::{Batch, DataType, ElemOp, Element, KeyPart, L4Proto, Set, Value};

use super::table;
use crate::model::{PortMapping, Proto};

pub const PUBLISHED: &str = "published4";
pub const PUBLISHED_ANY: &str = "published4_any";
pub const PUBLISHED_RANGES: &str = "published4_ranges";

const KEY: [DataType; 3] = [
    DataType::Ipv4Addr,
    DataType::InetProto,
    DataType::InetService,
];
const TARGET: [DataType; 2] = [DataType::Ipv4Addr, DataType::InetService];

/// `published4`: host address . protocol . port -> container address . port.
pub fn published() -> Set {
    Set::map(&table(), PUBLISHED, &KEY, &TARGET)
}

/// `published4_any`: protocol . port -> container address . port, for
/// mappings on every local address.
pub fn published_any() -> Set {
    Set::map(&table(), PUBLISHED_ANY, &KEY[1..], &TARGET)
}

/// `published4_ranges`: host address . protocol . port range -> container
/// address (the port is kept).
pub fn published_ranges() -> Set {
    Set::map(&table(), PUBLISHED_RANGES, &KEY, &[DataType::Ipv4Addr]).interval()
}

pub fn l4proto(p: Proto) -> L4Proto {
    L4Proto::from_number(p.number())
}

fn address(m: &PortMapping) -> KeyPart {
    if m.is_any_address() {
        KeyPart::Prefix(Ipv4Addr::UNSPECIFIED.into(), 0)
    } else {
        KeyPart::Single(m.host_ip.into())
    }
}

/// The elements of `ports` published to `container`, by map.
#[derive(Default)]
pub struct Elements {
    pub published: Vec<Element>,
    pub any: Vec<Element>,
    pub ranges: Vec<Element>,
}

pub fn elements(container: Ipv4Addr, ports: &[PortMapping]) -> Elements {
    let mut out = Elements::default();
    for m in ports {
        let proto = KeyPart::Single(l4proto(m.proto).into());
        if m.count > 1 && m.host_port == m.container_port {
            out.ranges.push(
                Element::new([
                    address(m),
                    proto,
                    KeyPart::Range(m.host_port.into(), m.host_last().into()),
                ])
                .to([Value::Ipv4(container)]),
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
pub fn elements_op(b: &mut Batch, op: ElemOp, container: Ipv4Addr, ports: &[PortMapping]) {
    let e = elements(container, ports);
    for (map, elements) in [
        (published(), e.published),
        (published_any(), e.any),
        (published_ranges(), e.ranges),
    ] {
        if !elements.is_empty() {
            b.elements(&map, op, elements);
        }
    }
}

/// The batch that publishes `ports` to `container`, and the one that takes
/// them back. The batch is atomic, so when the undo runs every element is
/// there and a plain delete suffices (`destroy` needs Linux 6.3).
pub fn publish(container: Ipv4Addr, ports: &[PortMapping]) -> super::Change {
    let mut batch = Batch::new();
    let mut undo = Batch::new();
    elements_op(&mut batch, ElemOp::Add, container, ports);
    elements_op(&mut undo, ElemOp::Delete, container, ports);
    super::Change { batch, undo }
}

/// The reverse of [`publish`]: removes the elements; the undo adds them back.
pub fn unpublish(container: Ipv4Addr, ports: &[PortMapping]) -> super::Change {
    let c = publish(container, ports);
    super::Change {
        batch: c.undo,
        undo: c.batch,
    }
}

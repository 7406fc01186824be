//! Published ports in the ruleset: two DNAT maps looked up from prerouting
//! and output, and the elements one endpoint's mappings become. The chains
//! and rules are part of the skeleton; a connect or disconnect only adds or
//! removes elements here, in one batch, so its cost does not depend on how
//! many ports are published, and neither does the per-packet cost (one map
//! lookup, not a rule per port).
//!
//! ```text
//! map published4        { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; flags interval; }
//! map published4_ranges { type ipv4_addr . inet_proto . inet_service : ipv4_addr; flags interval; }
//! ```
//!
//! The key's address is the HOST_IP, or `0.0.0.0/0` for "every local
//! address" (hence `flags interval`: a prefix matches any destination, and
//! the kernel refuses an element that overlaps another, a second guard
//! behind the state's clash check). A range whose host and container ports
//! are the same numbers is one element of `published4_ranges`, whose data
//! is only the address: DNAT to an address keeps the destination port. Any
//! other range is one `published4` element per port.

use std::net::Ipv4Addr;

use berth_nft::{Batch, DataType, ElemOp, Element, KeyPart, L4Proto, Set, Value};

use super::table;
use crate::model::{PortMapping, Proto};

pub const PUBLISHED: &str = "published4";
pub const PUBLISHED_RANGES: &str = "published4_ranges";

const KEY: [DataType; 3] = [
    DataType::Ipv4Addr,
    DataType::InetProto,
    DataType::InetService,
];

/// `published4`: host address . protocol . port -> container address . port.
pub fn published() -> Set {
    Set::map(
        &table(),
        PUBLISHED,
        &KEY,
        &[DataType::Ipv4Addr, DataType::InetService],
    )
    .interval()
}

/// `published4_ranges`: host address . protocol . port range -> container
/// address (the port is kept).
pub fn published_ranges() -> Set {
    Set::map(&table(), PUBLISHED_RANGES, &KEY, &[DataType::Ipv4Addr]).interval()
}

pub fn l4proto(p: Proto) -> L4Proto {
    match p {
        Proto::Tcp => L4Proto::Tcp,
        Proto::Udp => L4Proto::Udp,
        Proto::Sctp => L4Proto::Sctp,
    }
}

fn address(m: &PortMapping) -> KeyPart {
    if m.is_any_address() {
        KeyPart::Prefix(Ipv4Addr::UNSPECIFIED.into(), 0)
    } else {
        KeyPart::Single(m.host_ip.into())
    }
}

/// The elements of `ports` published to `container`: (for `published4`,
/// for `published4_ranges`).
pub fn elements(container: Ipv4Addr, ports: &[PortMapping]) -> (Vec<Element>, Vec<Element>) {
    let mut single = Vec::new();
    let mut ranges = Vec::new();
    for m in ports {
        let proto = KeyPart::Single(l4proto(m.proto).into());
        if m.count > 1 && m.host_port == m.container_port {
            ranges.push(
                Element::new([
                    address(m),
                    proto,
                    KeyPart::Range(m.host_port.into(), m.host_last().into()),
                ])
                .to([Value::Ipv4(container)]),
            );
        } else {
            for (host, inside) in m.pairs() {
                single.push(
                    Element::new([address(m), proto.clone(), host.into()])
                        .to([container.into(), inside.into()]),
                );
            }
        }
    }
    (single, ranges)
}

/// Appends `op` on the elements of `ports` for `container` (nothing for no
/// ports, so that a connect without `-p` sends no nft message at all).
pub fn elements_op(b: &mut Batch, op: ElemOp, container: Ipv4Addr, ports: &[PortMapping]) {
    let (single, ranges) = elements(container, ports);
    if !single.is_empty() {
        b.elements(&published(), op, single);
    }
    if !ranges.is_empty() {
        b.elements(&published_ranges(), op, ranges);
    }
}

/// The batch that publishes `ports` to `container`, and the one that takes
/// them back (`destroy`, so a half-applied state never blocks the undo).
pub fn publish(container: Ipv4Addr, ports: &[PortMapping]) -> super::Change {
    let mut batch = Batch::new();
    let mut undo = Batch::new();
    elements_op(&mut batch, ElemOp::Add, container, ports);
    elements_op(&mut undo, ElemOp::Destroy, container, ports);
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

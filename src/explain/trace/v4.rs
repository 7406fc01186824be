//! The IPv4 view of networks and endpoints the walk takes: trace follows
//! IPv4 flows only, so an endpoint or network without IPv4 stands for the
//! unspecified address, which no flow it judges has.

use std::net::Ipv4Addr;

use crate::model::{Endpoint, Ipv4Net, Network};

/// The endpoint's IPv4 address, or 0.0.0.0.
pub fn ip(e: &Endpoint) -> Ipv4Addr {
    e.ip4().unwrap_or(Ipv4Addr::UNSPECIFIED)
}

/// The network's IPv4 gateway, or 0.0.0.0.
pub fn gateway(n: &Network) -> Ipv4Addr {
    n.gateway4().unwrap_or(Ipv4Addr::UNSPECIFIED)
}

/// The network's IPv4 subnet, or 0.0.0.0/32 (which holds no flow's
/// address but the unspecified one).
pub fn subnet(n: &Network) -> Ipv4Net {
    n.net4()
        .unwrap_or_else(|| Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 32).expect("32 is a valid length"))
}

//! Wiring for the private sandboxes `demo` and `bench` build for
//! themselves (see `netns::isolate_self`): a namespace playing "the
//! outside world" on a routed veth to the sandbox host.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;

use super::rtnl::Rtnl;
use super::{addr, link, netns};
use crate::model::{Ipv4Net, Mac};

/// A routed veth from this namespace (`host_ifname`, with `host_ip`) to
/// `eth0` inside `peer` (with `peer_ip`, in `net`), both up, and `peer`'s
/// default route via `host_ip`: the peer reaches this host's addresses, and
/// nothing behind it without DNAT.
pub fn wire_routed_peer(
    host_ifname: &str,
    peer: &File,
    host_ip: Ipv4Addr,
    peer_ip: Ipv4Addr,
    net: Ipv4Net,
) -> io::Result<()> {
    let mut rtnl = Rtnl::open()?;
    let spec = link::VethSpec {
        host_ifname,
        bridge_index: None,
        link_group: 0,
        peer_ifname: "eth0",
        peer_netns: peer,
        peer_mac: Mac::from_ipv4(peer_ip).0,
        mtu: 1500,
    };
    link::create_veth(&mut rtnl, &spec)?;
    let host_side = link::index_of(&mut rtnl, host_ifname)?
        .ok_or_else(|| io::Error::other(format!("{host_ifname} vanished")))?;
    addr::add_address(&mut rtnl, host_side, host_ip.into(), net.into())?;
    netns::run_in(peer, || -> io::Result<()> {
        let mut rtnl = Rtnl::open()?;
        for name in ["lo", "eth0"] {
            if let Some(index) = link::index_of(&mut rtnl, name)? {
                link::set_up(&mut rtnl, index)?;
            }
        }
        let eth0 = link::index_of(&mut rtnl, "eth0")?.unwrap_or_default();
        addr::add_address(&mut rtnl, eth0, peer_ip.into(), net.into())?;
        addr::add_default_route(&mut rtnl, host_ip.into(), None)
    })?
}

/// Adds IPv6 to a link made by [`wire_routed_peer`]: `host_ip` on
/// `host_ifname` here, `peer_ip` on the peer's `eth0` (both in `net`,
/// without DAD), and the peer's IPv6 default route via `host_ip`. The
/// kernel's own link-local addresses still do DAD (about a second) before
/// this host can solicit the peer for forwarded packets; callers wait.
pub fn add_routed_peer6(
    host_ifname: &str,
    peer: &File,
    host_ip: std::net::Ipv6Addr,
    peer_ip: std::net::Ipv6Addr,
    net: crate::model::Ipv6Net,
) -> io::Result<()> {
    let mut rtnl = Rtnl::open()?;
    let host_side = link::index_of(&mut rtnl, host_ifname)?
        .ok_or_else(|| io::Error::other(format!("{host_ifname} vanished")))?;
    addr::add_address(&mut rtnl, host_side, host_ip.into(), net.into())?;
    netns::run_in(peer, || -> io::Result<()> {
        let mut rtnl = Rtnl::open()?;
        let eth0 = link::index_of(&mut rtnl, "eth0")?.unwrap_or_default();
        addr::add_address(&mut rtnl, eth0, peer_ip.into(), net.into())?;
        addr::add_default_route(&mut rtnl, host_ip.into(), None)
    })?
}

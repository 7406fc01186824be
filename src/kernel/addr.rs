//! Address and route requests over rtnetlink: IPv4 addresses on links,
//! default routes, and reading which IPv4 prefixes the host already uses.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::rtnl::Rtnl;
use crate::model::Ipv4Net;

/// Adds `ip/prefix` (with its broadcast address) to the link `index`.
pub fn add_address(rtnl: &mut Rtnl, index: u32, ip: Ipv4Addr, net: Ipv4Net) -> io::Result<()> {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = net.prefix_len();
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
    msg.attributes
        .push(AddressAttribute::Address(IpAddr::V4(ip)));
    msg.attributes
        .push(AddressAttribute::Broadcast(net.broadcast()));
    rtnl.request(
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Adds a default route via `gateway` in the main table, with `metric`
/// if given.
pub fn add_default_route(
    rtnl: &mut Rtnl,
    gateway: Ipv4Addr,
    metric: Option<u32>,
) -> io::Result<()> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unicast;
    msg.attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    if let Some(metric) = metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    rtnl.request(
        RouteNetlinkMessage::NewRoute(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Sets the default route of the main table to go via `gateway`, whatever
/// default route there was.
pub fn replace_default_route(rtnl: &mut Rtnl, gateway: Ipv4Addr) -> io::Result<()> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unicast;
    msg.attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    rtnl.request(
        RouteNetlinkMessage::NewRoute(msg),
        NLM_F_CREATE | netlink_packet_core::NLM_F_REPLACE,
    )
}

/// Where a host prefix comes from, for clash messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPrefix {
    pub net: Ipv4Net,
    /// e.g. "route 10.89.0.0/24 dev eth1" or "address 10.89.0.5/16 on eth1".
    pub what: String,
}

/// Every IPv4 prefix the host routes in its main table (default routes
/// aside) and every IPv4 address it holds: what a new subnet must not overlap.
pub fn host_prefixes(rtnl: &mut Rtnl) -> io::Result<Vec<HostPrefix>> {
    let names = link_names(rtnl)?;
    let name_of = |index: u32| {
        names
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| format!("if{index}"))
    };
    let mut out = Vec::new();

    let mut req = RouteMessage::default();
    req.header.address_family = AddressFamily::Inet;
    for msg in rtnl.dump(RouteNetlinkMessage::GetRoute(req))? {
        let RouteNetlinkMessage::NewRoute(route) = msg else {
            continue;
        };
        let table = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        });
        let table = table.unwrap_or(u32::from(route.header.table));
        if table != u32::from(RouteHeader::RT_TABLE_MAIN)
            || route.header.destination_prefix_length == 0
        {
            continue;
        }
        let dst = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
            _ => None,
        });
        let Some(dst) = dst else { continue };
        let net = Ipv4Net::new_truncating(dst, route.header.destination_prefix_length);
        let dev = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(name_of(*i)),
            _ => None,
        });
        let what = match dev {
            Some(dev) => format!("the host route {net} dev {dev}"),
            None => format!("the host route {net}"),
        };
        out.push(HostPrefix { net, what });
    }

    let mut req = AddressMessage::default();
    req.header.family = AddressFamily::Inet;
    for msg in rtnl.dump(RouteNetlinkMessage::GetAddress(req))? {
        let RouteNetlinkMessage::NewAddress(addr) = msg else {
            continue;
        };
        let ip = addr.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => {
                Some(*ip)
            }
            _ => None,
        });
        let Some(ip) = ip else { continue };
        if ip.is_loopback() {
            continue;
        }
        let net = Ipv4Net::new_truncating(ip, addr.header.prefix_len);
        let what = format!(
            "the host address {ip}/{} on {}",
            addr.header.prefix_len,
            name_of(addr.header.index)
        );
        out.push(HostPrefix { net, what });
    }
    Ok(out)
}

fn link_names(rtnl: &mut Rtnl) -> io::Result<Vec<(u32, String)>> {
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};
    let mut out = Vec::new();
    for msg in rtnl.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))? {
        if let RouteNetlinkMessage::NewLink(link) = msg {
            if let Some(name) = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            }) {
                out.push((link.header.index, name));
            }
        }
    }
    Ok(out)
}

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
use super::{link, route};
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

/// Adds a default route via `gateway` in the main table. Without a
/// metric it must be the only one (`ip route add`). With a metric it is
/// added even beside another default route of the same metric, as
/// netavark asks (`ip route prepend`: the newest is tried first), since
/// Podman gives every network metric 100 unless told otherwise.
pub fn add_default_route(
    rtnl: &mut Rtnl,
    gateway: Ipv4Addr,
    metric: Option<u32>,
) -> io::Result<()> {
    let flags = match metric {
        None => NLM_F_CREATE | NLM_F_EXCL,
        Some(_) => NLM_F_CREATE,
    };
    rtnl.request(
        RouteNetlinkMessage::NewRoute(default_route(gateway, metric)),
        flags,
    )
}

/// Sets the default route of the main table to go via `gateway`, whatever
/// default route there was.
pub fn replace_default_route(rtnl: &mut Rtnl, gateway: Ipv4Addr) -> io::Result<()> {
    rtnl.request(
        RouteNetlinkMessage::NewRoute(default_route(gateway, None)),
        NLM_F_CREATE | netlink_packet_core::NLM_F_REPLACE,
    )
}

/// `default via GATEWAY [metric M]` in the main table.
fn default_route(gateway: Ipv4Addr, metric: Option<u32>) -> RouteMessage {
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
    msg
}

/// Where a host prefix comes from, for clash messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPrefix {
    pub net: Ipv4Net,
    /// e.g. "route 10.89.0.0/24 dev eth1" or "address 10.89.0.5/16 on eth1".
    pub what: String,
}

/// An IPv4 address on a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrFact {
    /// Index of the link that holds it.
    pub index: u32,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
}

/// Every IPv4 address of the namespace, in one dump.
pub fn ipv4_addresses(rtnl: &mut Rtnl) -> io::Result<Vec<AddrFact>> {
    let mut req = AddressMessage::default();
    req.header.family = AddressFamily::Inet;
    let mut out = Vec::new();
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
        if let Some(ip) = ip {
            out.push(AddrFact {
                index: addr.header.index,
                ip,
                prefix_len: addr.header.prefix_len,
            });
        }
    }
    Ok(out)
}

/// Every IPv4 prefix the host routes in its main table (default routes
/// aside) and every IPv4 address it holds: what a new subnet must not overlap.
pub fn host_prefixes(rtnl: &mut Rtnl) -> io::Result<Vec<HostPrefix>> {
    let links = link::dump(rtnl)?;
    let name_of = |index: u32| {
        links
            .iter()
            .find(|l| l.index == index && !l.name.is_empty())
            .map(|l| l.name.clone())
            .unwrap_or_else(|| format!("if{index}"))
    };
    let mut out = Vec::new();
    for route in route::main_routes(rtnl)? {
        if route.prefix_len == 0 {
            continue;
        }
        let Some(dst) = route.dst else { continue };
        let net = Ipv4Net::new_truncating(dst, route.prefix_len);
        let what = match route.oif.map(name_of) {
            Some(dev) => format!("the host route {net} dev {dev}"),
            None => format!("the host route {net}"),
        };
        out.push(HostPrefix { net, what });
    }
    for addr in ipv4_addresses(rtnl)? {
        if addr.ip.is_loopback() {
            continue;
        }
        let net = Ipv4Net::new_truncating(addr.ip, addr.prefix_len);
        let what = format!(
            "the host address {}/{} on {}",
            addr.ip,
            addr.prefix_len,
            name_of(addr.index)
        );
        out.push(HostPrefix { net, what });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};

    use super::*;
    use crate::kernel::fake_rtnl::{self, addr, link, route, Answer};

    #[test]
    fn an_address_carries_its_prefix_and_broadcast() {
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![]);
        let net: Ipv4Net = "10.90.0.0/24".parse().unwrap();
        let ip = Ipv4Addr::new(10, 90, 0, 2);
        add_address(&mut rtnl, 5, ip, net).unwrap();
        let sent = sent.sent();
        assert_eq!(
            sent[0].flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        );
        let RouteNetlinkMessage::NewAddress(msg) = &sent[0].message else {
            panic!("{sent:?}")
        };
        assert_eq!((msg.header.index, msg.header.prefix_len), (5, 24));
        assert_eq!(
            msg.attributes,
            [
                AddressAttribute::Local(IpAddr::V4(ip)),
                AddressAttribute::Address(IpAddr::V4(ip)),
                AddressAttribute::Broadcast(Ipv4Addr::new(10, 90, 0, 255)),
            ]
        );
    }

    #[test]
    fn host_prefixes_are_routes_and_addresses_named_by_device() {
        let (mut rtnl, _) = fake_rtnl::rtnl(vec![
            Answer::Replies(vec![link("lo", 1, vec![]), link("eth1", 2, vec![])]),
            Answer::Replies(vec![
                route(
                    RouteHeader::RT_TABLE_MAIN,
                    None,
                    Some(Ipv4Addr::new(192, 0, 2, 1)),
                    2,
                ),
                route(
                    RouteHeader::RT_TABLE_MAIN,
                    Some((Ipv4Addr::new(10, 89, 0, 0), 24)),
                    None,
                    2,
                ),
            ]),
            Answer::Replies(vec![
                addr(1, Ipv4Addr::LOCALHOST, 8),
                addr(2, Ipv4Addr::new(192, 0, 2, 5), 24),
            ]),
        ]);
        let found: Vec<String> = host_prefixes(&mut rtnl)
            .unwrap()
            .into_iter()
            .map(|p| format!("{}: {}", p.net, p.what))
            .collect();
        assert_eq!(
            found,
            [
                "10.89.0.0/24: the host route 10.89.0.0/24 dev eth1",
                "192.0.2.0/24: the host address 192.0.2.5/24 on eth1",
            ]
        );
    }
}

//! Address and route requests over rtnetlink: addresses of both families
//! on links, default routes, and reading which prefixes the host already
//! uses.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::rtnl::Rtnl;
use super::{link, route};
use crate::model::subnet::{truncating, IpNet};

/// The rtnetlink family of an address.
pub fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// Adds `ip/prefix` to the link `index`: an IPv4 address with its
/// broadcast address; an IPv6 one without duplicate address detection
/// (`nodad`): berth's IPAM already made it unique on the bridge, and DAD
/// would keep it tentative (unusable) for a second and send a neighbour
/// solicitation that the bridge floods to every port.
pub fn add_address(rtnl: &mut Rtnl, index: u32, ip: IpAddr, net: IpNet) -> io::Result<()> {
    let (msg, flags) = address_request(index, ip, net);
    rtnl.request(msg, flags)
}

/// `add_address`'s request and flags, for a batch.
pub fn address_request(index: u32, ip: IpAddr, net: IpNet) -> (RouteNetlinkMessage, u16) {
    let mut msg = AddressMessage::default();
    msg.header.family = family_of(ip);
    msg.header.prefix_len = net.prefix_len();
    msg.header.index = index;
    match (ip, net) {
        (IpAddr::V4(_), IpNet::V4(v4)) => {
            msg.attributes.push(AddressAttribute::Local(ip));
            msg.attributes.push(AddressAttribute::Address(ip));
            msg.attributes
                .push(AddressAttribute::Broadcast(v4.broadcast()));
        }
        _ => {
            msg.attributes.push(AddressAttribute::Address(ip));
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    (
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Adds a default route via `gateway` (its family's) in the main table.
/// Without a metric it must be the only one (`ip route add`). With a
/// metric it is added even beside another default route of the same
/// metric, as netavark asks (`ip route prepend`: the newest is tried
/// first), since Podman gives every network metric 100 unless told
/// otherwise.
pub fn add_default_route(rtnl: &mut Rtnl, gateway: IpAddr, metric: Option<u32>) -> io::Result<()> {
    let (msg, flags) = default_route_request(gateway, metric);
    rtnl.request(msg, flags)
}

/// `add_default_route`'s request and flags, for a batch.
pub fn default_route_request(gateway: IpAddr, metric: Option<u32>) -> (RouteNetlinkMessage, u16) {
    let flags = match metric {
        None => NLM_F_CREATE | NLM_F_EXCL,
        Some(_) => NLM_F_CREATE,
    };
    (
        RouteNetlinkMessage::NewRoute(default_route(gateway, metric)),
        flags,
    )
}

/// Sets the default route of the main table (of `gateway`'s family) to
/// go via `gateway`, whatever default route there was.
pub fn replace_default_route(rtnl: &mut Rtnl, gateway: IpAddr) -> io::Result<()> {
    rtnl.request(
        RouteNetlinkMessage::NewRoute(default_route(gateway, None)),
        NLM_F_CREATE | netlink_packet_core::NLM_F_REPLACE,
    )
}

/// `default via GATEWAY [metric M]` in the main table.
fn default_route(gateway: IpAddr, metric: Option<u32>) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family_of(gateway);
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unicast;
    msg.attributes
        .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
    if let Some(metric) = metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    msg
}

/// Where a host prefix comes from, for clash messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPrefix {
    pub net: IpNet,
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

/// An address of either family on a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpAddrFact {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix_len: u8,
}

/// Every IPv4 address of the namespace, in one dump.
pub fn ipv4_addresses(rtnl: &mut Rtnl) -> io::Result<Vec<AddrFact>> {
    Ok(addresses(rtnl, AddressFamily::Inet)?
        .into_iter()
        .filter_map(|a| match a.ip {
            IpAddr::V4(ip) => Some(AddrFact {
                index: a.index,
                ip,
                prefix_len: a.prefix_len,
            }),
            IpAddr::V6(_) => None,
        })
        .collect())
}

/// Every address of `family` (Inet, Inet6, or Unspec for both) of the
/// namespace, in one dump.
pub fn addresses(rtnl: &mut Rtnl, family: AddressFamily) -> io::Result<Vec<IpAddrFact>> {
    let mut req = AddressMessage::default();
    req.header.family = family;
    let mut out = Vec::new();
    for msg in rtnl.dump(RouteNetlinkMessage::GetAddress(req))? {
        let RouteNetlinkMessage::NewAddress(addr) = msg else {
            continue;
        };
        // IFA_LOCAL is the address itself where it differs (a
        // point-to-point peer is IFA_ADDRESS); IPv6 sends IFA_ADDRESS only.
        let local = addr.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let ip = local.or_else(|| {
            addr.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if let Some(ip) = ip {
            out.push(IpAddrFact {
                index: addr.header.index,
                ip,
                prefix_len: addr.header.prefix_len,
            });
        }
    }
    Ok(out)
}

/// Every prefix the host routes in its main tables (default routes
/// aside) and every address it holds, of both families: what a new subnet
/// must not overlap. IPv6 link-local and multicast routes are left out
/// (no network may use those ranges anyway).
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
    let mut routes: Vec<route::IpRouteFact> = route::main_routes(rtnl)?
        .into_iter()
        .map(|r| route::IpRouteFact {
            dst: r.dst.map(IpAddr::V4),
            prefix_len: r.prefix_len,
            gateway: r.gateway.map(IpAddr::V4),
            oif: r.oif,
        })
        .collect();
    routes.extend(route::main_routes6(rtnl)?);
    for route in routes {
        if route.prefix_len == 0 {
            continue;
        }
        let Some(dst) = route.dst else { continue };
        if skipped6(dst) {
            continue;
        }
        let net = truncating(dst, route.prefix_len);
        let what = match route.oif.map(name_of) {
            Some(dev) => format!("the host route {net} dev {dev}"),
            None => format!("the host route {net}"),
        };
        out.push(HostPrefix { net, what });
    }
    for addr in addresses(rtnl, AddressFamily::Unspec)? {
        if addr.ip.is_loopback() || skipped6(addr.ip) {
            continue;
        }
        let net = truncating(addr.ip, addr.prefix_len);
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

/// IPv6 link-local and multicast: every interface has routes there.
fn skipped6(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80 || v6.is_multicast(),
        IpAddr::V4(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};

    use super::*;
    use crate::kernel::fake_rtnl::{self, addr, link, route, Answer};

    #[test]
    fn an_address_carries_its_prefix_and_broadcast() {
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![]);
        let net: IpNet = "10.90.0.0/24".parse().unwrap();
        let ip = Ipv4Addr::new(10, 90, 0, 2);
        add_address(&mut rtnl, 5, IpAddr::V4(ip), net).unwrap();
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
    fn an_ipv6_address_is_added_without_dad() {
        let (mut rtnl, log) = fake_rtnl::rtnl(vec![]);
        let ip: IpAddr = "fd00:1::2".parse().unwrap();
        add_address(&mut rtnl, 5, ip, "fd00:1::/64".parse().unwrap()).unwrap();
        let sent = log.sent();
        let RouteNetlinkMessage::NewAddress(msg) = &sent[0].message else {
            panic!("{sent:?}")
        };
        assert_eq!(msg.header.family, AddressFamily::Inet6);
        assert_eq!((msg.header.index, msg.header.prefix_len), (5, 64));
        assert_eq!(
            msg.attributes,
            [
                AddressAttribute::Address(ip),
                AddressAttribute::Flags(AddressFlags::Nodad),
            ]
        );
        // Its default route is an IPv6 one.
        add_default_route(&mut rtnl, "fd00:1::1".parse().unwrap(), None).unwrap();
        let sent = log.sent();
        let RouteNetlinkMessage::NewRoute(route) = &sent[1].message else {
            panic!("{sent:?}")
        };
        assert_eq!(route.header.address_family, AddressFamily::Inet6);
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
            // No IPv6 routes.
            Answer::Replies(vec![]),
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

//! What one namespace holds, as CNI's CHECK compares it with the state:
//! its links (MAC, bridge, up), IPv4 addresses and default gateways, read
//! with the same dumps the rest of berth uses, one each.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_route::AddressFamily;

use super::addr::{self, AddrFact, IpAddrFact};
use super::link::{self, LinkFact};
use super::route;
use super::rtnl::Rtnl;

/// The links, IPv4 addresses and IPv4 default gateways of one namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetnsFacts {
    pub links: Vec<LinkFact>,
    pub addrs: Vec<AddrFact>,
    /// Gateways of the main table's default routes.
    pub default_gateways: Vec<Ipv4Addr>,
    /// IPv6 addresses (link-local ones included).
    pub addrs6: Vec<IpAddrFact>,
    /// Gateways of the main table's IPv6 default routes.
    pub default_gateways6: Vec<Ipv6Addr>,
}

impl NetnsFacts {
    pub fn link(&self, name: &str) -> Option<&LinkFact> {
        self.links.iter().find(|l| l.name == name)
    }

    /// Whether the link `index` holds `ip/prefix_len`.
    pub fn has_address(&self, index: u32, ip: Ipv4Addr, prefix_len: u8) -> bool {
        self.addrs
            .iter()
            .any(|a| a.index == index && a.ip == ip && a.prefix_len == prefix_len)
    }

    /// Whether the link `index` holds `ip/prefix_len`, of either family.
    pub fn holds_address(&self, index: u32, ip: IpAddr, prefix_len: u8) -> bool {
        match ip {
            IpAddr::V4(v4) => self.has_address(index, v4, prefix_len),
            IpAddr::V6(_) => self
                .addrs6
                .iter()
                .any(|a| a.index == index && a.ip == ip && a.prefix_len == prefix_len),
        }
    }
}

/// Reads the facts of the namespace `rtnl` is bound to.
pub fn read(rtnl: &mut Rtnl) -> io::Result<NetnsFacts> {
    Ok(NetnsFacts {
        links: link::dump(rtnl)?,
        addrs: addr::ipv4_addresses(rtnl)?,
        default_gateways: route::main_routes(rtnl)?
            .into_iter()
            .filter(|r| r.prefix_len == 0)
            .filter_map(|r| r.gateway)
            .collect(),
        addrs6: addr::addresses(rtnl, AddressFamily::Inet6)?,
        default_gateways6: route::main_routes6(rtnl)?
            .into_iter()
            .filter(|r| r.prefix_len == 0)
            .filter_map(|r| match r.gateway {
                Some(std::net::IpAddr::V6(g)) => Some(g),
                _ => None,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::route::RouteHeader;
    use netlink_packet_route::RouteNetlinkMessage;

    use super::*;
    use crate::kernel::fake_rtnl::{self, addr, link, route, Answer};

    #[test]
    fn a_namespace_is_read_in_five_dumps() {
        let gw = Ipv4Addr::new(10, 90, 0, 1);
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![
            Answer::Replies(vec![link("lo", 1, vec![]), link("eth0", 5, vec![])]),
            Answer::Replies(vec![addr(5, Ipv4Addr::new(10, 90, 0, 2), 24)]),
            Answer::Replies(vec![
                route(RouteHeader::RT_TABLE_MAIN, None, Some(gw), 5),
                route(
                    RouteHeader::RT_TABLE_MAIN,
                    Some((Ipv4Addr::new(10, 90, 0, 0), 24)),
                    None,
                    5,
                ),
            ]),
        ]);
        let facts = read(&mut rtnl).unwrap();
        let kinds: Vec<&str> = sent
            .sent()
            .iter()
            .map(|s| match s.message {
                RouteNetlinkMessage::GetLink(_) => "links",
                RouteNetlinkMessage::GetAddress(_) => "addresses",
                RouteNetlinkMessage::GetRoute(_) => "routes",
                _ => "other",
            })
            .collect();
        // IPv4's addresses and routes, then IPv6's.
        assert_eq!(
            kinds,
            ["links", "addresses", "routes", "addresses", "routes"]
        );
        let eth0 = facts.link("eth0").expect("eth0");
        assert_eq!(eth0.index, 5);
        assert!(facts.has_address(5, Ipv4Addr::new(10, 90, 0, 2), 24));
        assert!(!facts.has_address(5, Ipv4Addr::new(10, 90, 0, 2), 16));
        assert_eq!(facts.default_gateways, [gw]);
    }
}

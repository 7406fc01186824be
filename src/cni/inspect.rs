//! What CNI's ADD result and CHECK need to read from a namespace: links
//! with their MAC and bridge, IPv4 addresses, and the default route. One
//! dump each over rtnetlink, in the host's namespace or, on a short-lived
//! thread, inside the container's.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::kernel::netns;
use crate::kernel::rtnl::Rtnl;

/// One link as CNI cares about it.
#[derive(Clone, Debug, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`, empty when the link has none.
    pub mac: String,
    pub master: Option<u32>,
    pub up: bool,
}

/// The links, IPv4 addresses (link index, address, prefix) and IPv4
/// default gateways of one namespace.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub links: Vec<Link>,
    pub addrs: Vec<(u32, Ipv4Addr, u8)>,
    pub default_gateways: Vec<Ipv4Addr>,
}

impl Facts {
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }
}

/// Reads the facts of the calling thread's namespace.
pub fn read() -> io::Result<Facts> {
    let mut rtnl = Rtnl::open()?;
    let mut facts = Facts::default();
    for msg in rtnl.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))? {
        let RouteNetlinkMessage::NewLink(l) = msg else {
            continue;
        };
        let mut link = Link {
            index: l.header.index,
            up: l
                .header
                .flags
                .contains(netlink_packet_route::link::LinkFlags::Up),
            ..Default::default()
        };
        for a in l.attributes {
            match a {
                LinkAttribute::IfName(n) => link.name = n,
                LinkAttribute::Address(b) if b.len() == 6 => {
                    link.mac = b
                        .iter()
                        .map(|x| format!("{x:02x}"))
                        .collect::<Vec<_>>()
                        .join(":")
                }
                LinkAttribute::Controller(m) => link.master = Some(m),
                _ => {}
            }
        }
        facts.links.push(link);
    }
    let mut req = AddressMessage::default();
    req.header.family = AddressFamily::Inet;
    for msg in rtnl.dump(RouteNetlinkMessage::GetAddress(req))? {
        let RouteNetlinkMessage::NewAddress(a) = msg else {
            continue;
        };
        let ip = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => {
                Some(*ip)
            }
            _ => None,
        });
        if let Some(ip) = ip {
            facts.addrs.push((a.header.index, ip, a.header.prefix_len));
        }
    }
    let mut req = RouteMessage::default();
    req.header.address_family = AddressFamily::Inet;
    for msg in rtnl.dump(RouteNetlinkMessage::GetRoute(req))? {
        let RouteNetlinkMessage::NewRoute(r) = msg else {
            continue;
        };
        let table = r
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(r.header.table));
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) || r.header.destination_prefix_length != 0
        {
            continue;
        }
        if let Some(gw) = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(*g),
            _ => None,
        }) {
            facts.default_gateways.push(gw);
        }
    }
    Ok(facts)
}

/// The MAC of the link `name` in the calling thread's namespace: one
/// GETLINK by name rather than a dump of every link (the host side of a
/// busy node has thousands).
pub fn link_mac(name: &str) -> io::Result<String> {
    let mut rtnl = Rtnl::open()?;
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    for reply in rtnl.request_reply(RouteNetlinkMessage::GetLink(msg))? {
        if let RouteNetlinkMessage::NewLink(l) = reply {
            for a in l.attributes {
                if let LinkAttribute::Address(b) = a {
                    return Ok(b
                        .iter()
                        .map(|x| format!("{x:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"));
                }
            }
        }
    }
    Ok(String::new())
}

/// Reads the facts of the namespace at `path`.
pub fn read_in(path: &Path) -> io::Result<Facts> {
    let ns = std::fs::File::open(path)?;
    netns::run_in(&ns, read)?
}

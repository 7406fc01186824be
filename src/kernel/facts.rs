//! What one namespace holds, as CNI's CHECK compares it with the state:
//! its links (MAC, bridge, up), IPv4 addresses and default gateways, read
//! with the same dumps the rest of berth uses, one each.

use std::io;
use std::net::Ipv4Addr;

use super::addr::{self, AddrFact};
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
    })
}

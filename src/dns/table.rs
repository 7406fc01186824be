//! The name table the server answers from: built in one pass from the
//! state, never changed afterwards (a reload builds a new one and swaps an
//! `Arc`, so a query in flight keeps the table it started with).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::model::Ipv4Net;
use crate::store::{DnsEndpoint, DnsNetwork};

/// Names under this domain are berth's alone: answered here, never sent
/// upstream (`api.dns.berth` is `api`). The search list containers get
/// starts with it, so a short name is tried here first.
pub const LOCAL_DOMAIN: &str = "dns.berth";

/// One network with DNS, keyed in [`Table`] by its gateway (where the
/// server listens for it).
#[derive(Debug, Default)]
pub struct Net {
    pub name: String,
    pub subnet: Option<Ipv4Net>,
    /// Lower-cased names and aliases.
    names: HashMap<String, Ipv4Addr>,
    /// Address to the endpoint's own name, for PTR.
    ptr: HashMap<Ipv4Addr, String>,
    /// A client address to the gateways of every DNS network its
    /// namespace is on: what it may see.
    scopes: HashMap<Ipv4Addr, Arc<[Ipv4Addr]>>,
}

/// Every DNS network's names.
#[derive(Debug, Default)]
pub struct Table {
    nets: HashMap<Ipv4Addr, Net>,
}

/// What a name lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// The name is in a network the client sees.
    Address(Ipv4Addr),
    /// It is not.
    Missing,
}

impl Table {
    pub fn build(networks: &[DnsNetwork], names: &[DnsEndpoint]) -> Table {
        let by_id: HashMap<i64, Ipv4Addr> = networks.iter().map(|n| (n.id, n.gateway)).collect();
        let mut nets: HashMap<Ipv4Addr, Net> = networks
            .iter()
            .map(|n| {
                (
                    n.gateway,
                    Net {
                        name: n.name.clone(),
                        subnet: Some(n.subnet),
                        ..Default::default()
                    },
                )
            })
            .collect();
        // A namespace's networks, in the order its names were listed.
        let mut spaces: HashMap<u64, Vec<Ipv4Addr>> = HashMap::new();
        for e in names {
            let Some(&gw) = by_id.get(&e.network_id) else {
                continue;
            };
            let seen = spaces.entry(e.netns_inode).or_default();
            if !seen.contains(&gw) {
                seen.push(gw);
            }
            let net = nets.get_mut(&gw).expect("every id has its net");
            net.names.insert(e.name.clone(), e.ip);
            if !e.alias {
                net.ptr.insert(e.ip, e.name.clone());
            }
        }
        let spaces: HashMap<u64, Arc<[Ipv4Addr]>> =
            spaces.into_iter().map(|(k, v)| (k, v.into())).collect();
        for e in names {
            if let (Some(gw), Some(scope)) = (by_id.get(&e.network_id), spaces.get(&e.netns_inode))
            {
                if let Some(net) = nets.get_mut(gw) {
                    net.scopes.insert(e.ip, scope.clone());
                }
            }
        }
        Table { nets }
    }

    /// The gateways the server should listen on.
    pub fn gateways(&self) -> impl Iterator<Item = &Ipv4Addr> {
        self.nets.keys()
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn net(&self, gateway: Ipv4Addr) -> Option<&Net> {
        self.nets.get(&gateway)
    }

    /// The networks a query from `client` arriving on `gateway` may see:
    /// that network first, then the other networks of the client's
    /// namespace. A client berth does not know (the host, say) sees only
    /// the network it asked.
    fn scope(&self, gateway: Ipv4Addr, client: Ipv4Addr) -> impl Iterator<Item = &Net> {
        let others = self
            .nets
            .get(&gateway)
            .and_then(|n| n.scopes.get(&client))
            .map(|s| s.iter().copied().filter(move |g| *g != gateway))
            .into_iter()
            .flatten();
        std::iter::once(gateway)
            .chain(others)
            .filter_map(|g| self.nets.get(&g))
    }

    /// Looks `name` (lower-cased, no trailing dot) up for a client.
    pub fn lookup(&self, gateway: Ipv4Addr, client: Ipv4Addr, name: &str) -> Found {
        self.scope(gateway, client)
            .find_map(|n| n.names.get(name).copied())
            .map_or(Found::Missing, Found::Address)
    }

    /// The reverse lookup of `ip` for a client: `Some(Some(name))` if a
    /// network it sees has the address, `Some(None)` if the address is in
    /// a berth subnet otherwise (unknown, or on a network the client does
    /// not see: not sent upstream either), `None` if it is none of berth's
    /// business.
    pub fn reverse(
        &self,
        gateway: Ipv4Addr,
        client: Ipv4Addr,
        ip: Ipv4Addr,
    ) -> Option<Option<&str>> {
        if let Some(name) = self.scope(gateway, client).find_map(|n| n.ptr.get(&ip)) {
            return Some(Some(name));
        }
        let ours = self
            .nets
            .values()
            .any(|n| n.subnet.is_some_and(|s| s.contains(ip)));
        ours.then_some(None)
    }

    /// How many names the table holds (for the log).
    pub fn name_count(&self) -> usize {
        self.nets.values().map(|n| n.names.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn net(id: i64, name: &str, prefix: &str) -> DnsNetwork {
        DnsNetwork {
            id,
            name: name.into(),
            subnet: format!("{prefix}.0/24").parse().unwrap(),
            gateway: ip(&format!("{prefix}.1")),
        }
    }

    fn name(network_id: i64, name: &str, alias: bool, addr: &str, inode: u64) -> DnsEndpoint {
        DnsEndpoint {
            network_id,
            name: name.into(),
            alias,
            ip: ip(addr),
            netns_inode: inode,
        }
    }

    #[test]
    fn a_namespace_sees_the_names_of_its_networks_and_no_others() {
        let table = Table::build(
            &[
                net(1, "a", "10.1.0"),
                net(2, "b", "10.2.0"),
                net(3, "c", "10.3.0"),
            ],
            &[
                // ns 100 is on a and b; ns 200 only on b; ns 300 only on c.
                name(1, "both", false, "10.1.0.2", 100),
                name(2, "both", false, "10.2.0.2", 100),
                name(1, "alias", true, "10.1.0.2", 100),
                name(2, "bonly", false, "10.2.0.3", 200),
                name(3, "conly", false, "10.3.0.2", 300),
            ],
        );
        let gw_a = ip("10.1.0.1");
        let client = ip("10.1.0.2");
        assert_eq!(table.lookup(gw_a, client, "alias"), Found::Address(client));
        // Through a, ns 100 sees b's names too.
        assert_eq!(
            table.lookup(gw_a, client, "bonly"),
            Found::Address(ip("10.2.0.3"))
        );
        assert_eq!(table.lookup(gw_a, client, "conly"), Found::Missing);
        // ns 200 does not see a.
        let gw_b = ip("10.2.0.1");
        assert_eq!(table.lookup(gw_b, ip("10.2.0.3"), "alias"), Found::Missing);
        // Its own network first.
        assert_eq!(
            table.lookup(gw_b, ip("10.2.0.3"), "both"),
            Found::Address(ip("10.2.0.2"))
        );
        // An unknown client sees the network it asked.
        assert_eq!(table.lookup(gw_a, ip("10.9.9.9"), "bonly"), Found::Missing);
        assert_eq!(
            table.reverse(gw_a, client, ip("10.2.0.3")),
            Some(Some("bonly"))
        );
        assert_eq!(table.reverse(gw_a, client, ip("10.1.0.77")), Some(None));
        assert_eq!(table.reverse(gw_a, client, ip("10.3.0.2")), Some(None));
        assert_eq!(table.reverse(gw_a, client, ip("192.0.2.1")), None);
        assert_eq!(table.name_count(), 5);
    }
}

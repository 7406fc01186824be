//! The name table the server answers from. A query reads one immutable
//! snapshot ([`Table`], behind an `Arc`); a change builds the next one and
//! swaps it in, so a query in flight keeps the table it started with.
//!
//! A change to one namespace's endpoints (connect, disconnect) touches
//! only that namespace's rows: [`Table::with_netns`] copies the networks
//! the namespace is or was on and shares every other one, so its cost does
//! not grow with the number of endpoints elsewhere. [`Index`], which only
//! the reloading side holds, remembers what each namespace put in.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::model::Ipv4Net;
use crate::store::{DnsEndpoint, DnsNetwork};

/// Names under this domain are berth's alone: answered here, never sent
/// upstream (`api.dns.berth` is `api`). The search list containers get
/// starts with it, so a short name is tried here first.
pub const LOCAL_DOMAIN: &str = "dns.berth";
/// The domain Podman's containers search (netavark's `dns_search_domains`).
pub const PODMAN_DOMAIN: &str = "dns.podman";

/// One network with DNS, keyed in [`Table`] by its gateway (where the
/// server listens for it). Every entry carries the inode of the namespace
/// that holds it, so that a namespace's later update removes its own
/// entries and never another's.
#[derive(Clone, Debug, Default)]
pub struct Net {
    pub name: String,
    pub subnet: Option<Ipv4Net>,
    /// Nothing is forwarded upstream for an `--internal` network.
    pub internal: bool,
    /// Podman's network: reverse lookups answer bare names (`NAME.`), as
    /// aardvark-dns does, rather than `NAME.dns.berth.`.
    pub podman: bool,
    /// Where this network's queries for other names go (Podman's
    /// `network_dns_servers`); empty: the host's resolvers.
    pub servers: Vec<std::net::SocketAddr>,
    /// Lower-cased names and aliases.
    names: Sharded<String, (Ipv4Addr, u64)>,
    /// Address to the endpoint's names for PTR: its own name, then its
    /// aliases in the order given.
    ptr: Sharded<Ipv4Addr, (Arc<[String]>, u64)>,
    /// A client address to the gateways of every DNS network its
    /// namespace is on: what it may see.
    scopes: Sharded<Ipv4Addr, (Arc<[Ipv4Addr]>, u64)>,
}

/// Shards of a map behind `Arc`s, so the next table copies only the
/// shards a change touches: with 1000 names a connect copies about 16 of
/// them rather than all (copying whole maps was most of a reload's time).
#[derive(Clone, Debug)]
struct Sharded<K, V> {
    shards: Vec<Arc<HashMap<K, V>>>,
}

const SHARDS: usize = 64;

impl<K, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| Arc::new(HashMap::new())).collect(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Sharded<K, V> {
    fn shard<Q: std::hash::Hash + ?Sized>(key: &Q) -> usize {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        BuildHasherDefault::<DefaultHasher>::default().hash_one(key) as usize % SHARDS
    }

    fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.shards[Self::shard(key)].get(key)
    }

    fn insert(&mut self, key: K, value: V) {
        Arc::make_mut(&mut self.shards[Self::shard(&key)]).insert(key, value);
    }

    fn remove(&mut self, key: &K) {
        Arc::make_mut(&mut self.shards[Self::shard(key)]).remove(key);
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }
}

/// Every DNS network's names.
#[derive(Clone, Debug, Default)]
pub struct Table {
    nets: HashMap<Ipv4Addr, Arc<Net>>,
}

/// What each namespace put in the table, and the networks' gateways by id:
/// what a namespace update needs besides the state's rows.
#[derive(Debug, Default)]
pub struct Index {
    by_id: HashMap<i64, Ipv4Addr>,
    spaces: HashMap<u64, Vec<Held>>,
}

/// One endpoint of a namespace, as entered in the table.
#[derive(Debug)]
struct Held {
    gateway: Ipv4Addr,
    ip: Ipv4Addr,
    names: Vec<String>,
}

/// What a name lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// The name's address on every network the client sees that has it,
    /// the network asked first (never empty).
    Addresses(Vec<Ipv4Addr>),
    /// No network the client sees has it.
    Missing,
}

/// What a reverse lookup found: every name of the endpoint, and how to
/// write them.
#[derive(Debug, PartialEq, Eq)]
pub struct Ptr<'a> {
    /// Own name first, then the aliases in the order given.
    pub names: &'a [String],
    /// Bare names (`NAME.`, Podman's networks) rather than under
    /// [`LOCAL_DOMAIN`].
    pub bare: bool,
}

impl Table {
    /// The whole table from the state's rows.
    pub fn build(networks: &[DnsNetwork], names: &[DnsEndpoint]) -> (Table, Index) {
        let mut index = Index {
            by_id: networks.iter().map(|n| (n.id, n.gateway)).collect(),
            spaces: HashMap::new(),
        };
        let mut table = Table {
            nets: networks
                .iter()
                .map(|n| {
                    let net = Net {
                        name: n.name.clone(),
                        subnet: Some(n.subnet),
                        internal: n.internal,
                        podman: n.podman,
                        servers: n
                            .servers
                            .iter()
                            .map(|ip| std::net::SocketAddr::new(*ip, 53))
                            .collect(),
                        ..Default::default()
                    };
                    (n.gateway, Arc::new(net))
                })
                .collect(),
        };
        let mut by_space: HashMap<u64, Vec<DnsEndpoint>> = HashMap::new();
        for e in names {
            by_space.entry(e.netns_inode).or_default().push(e.clone());
        }
        for (inode, rows) in by_space {
            table.update_netns(&mut index, inode, &rows);
        }
        (table, index)
    }

    /// The table after a change of one namespace's endpoints: `rows` are
    /// all its names now (on networks with DNS). None if a row names a
    /// network the table does not know (a full reload is due).
    pub fn with_netns(&self, index: &mut Index, inode: u64, rows: &[DnsEndpoint]) -> Option<Table> {
        if rows
            .iter()
            .any(|r| !index.by_id.contains_key(&r.network_id))
        {
            return None;
        }
        let mut next = self.clone();
        next.update_netns(index, inode, rows);
        Some(next)
    }

    fn update_netns(&mut self, index: &mut Index, inode: u64, rows: &[DnsEndpoint]) {
        for h in index.spaces.remove(&inode).unwrap_or_default() {
            let Some(net) = self.nets.get_mut(&h.gateway) else {
                continue;
            };
            let net = Arc::make_mut(net);
            for name in &h.names {
                if net.names.get(name.as_str()).is_some_and(|v| v.1 == inode) {
                    net.names.remove(name);
                }
            }
            if net.ptr.get(&h.ip).is_some_and(|v| v.1 == inode) {
                net.ptr.remove(&h.ip);
            }
            if net.scopes.get(&h.ip).is_some_and(|v| v.1 == inode) {
                net.scopes.remove(&h.ip);
            }
        }
        let mut held: Vec<Held> = Vec::new();
        for r in rows {
            let Some(&gateway) = index.by_id.get(&r.network_id) else {
                continue;
            };
            let i = match held
                .iter()
                .position(|h| h.gateway == gateway && h.ip == r.ip)
            {
                Some(i) => i,
                None => {
                    held.push(Held {
                        gateway,
                        ip: r.ip,
                        names: Vec::new(),
                    });
                    held.len() - 1
                }
            };
            // The endpoint's own name leads its PTR answer.
            if r.alias {
                held[i].names.push(r.name.clone());
            } else {
                held[i].names.insert(0, r.name.clone());
            }
            let Some(net) = self.nets.get_mut(&gateway) else {
                continue;
            };
            Arc::make_mut(net)
                .names
                .insert(r.name.clone(), (r.ip, inode));
        }
        let mut scope: Vec<Ipv4Addr> = Vec::new();
        for h in &held {
            if !scope.contains(&h.gateway) {
                scope.push(h.gateway);
            }
        }
        let scope: Arc<[Ipv4Addr]> = scope.into();
        for h in &held {
            if let Some(net) = self.nets.get_mut(&h.gateway) {
                let net = Arc::make_mut(net);
                net.scopes.insert(h.ip, (scope.clone(), inode));
                net.ptr.insert(h.ip, (h.names.as_slice().into(), inode));
            }
        }
        if !held.is_empty() {
            index.spaces.insert(inode, held);
        }
    }

    /// The gateways the server should listen on.
    pub fn gateways(&self) -> impl Iterator<Item = &Ipv4Addr> {
        self.nets.keys()
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn net(&self, gateway: Ipv4Addr) -> Option<&Net> {
        self.nets.get(&gateway).map(|n| &**n)
    }

    /// Whether `client` may ask the server on `gateway` at all: an address
    /// of that network, or the host itself on the gateway. Anyone else who
    /// can route to the gateway would otherwise have an open resolver.
    pub fn admits(&self, gateway: Ipv4Addr, client: Ipv4Addr) -> bool {
        client == gateway
            || self
                .net(gateway)
                .is_some_and(|n| n.subnet.is_some_and(|s| s.contains(&client)))
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
            .map(|s| s.0.iter().copied().filter(move |g| *g != gateway))
            .into_iter()
            .flatten();
        std::iter::once(gateway)
            .chain(others)
            .filter_map(|g| self.nets.get(&g).map(|n| &**n))
    }

    /// Looks `name` (lower-cased, no trailing dot) up for a client: its
    /// address on every network the client's namespace shares with the
    /// name's holder, as aardvark-dns answers (the client is known by its
    /// address; one berth does not know sees the network it asked).
    pub fn lookup(&self, gateway: Ipv4Addr, client: Ipv4Addr, name: &str) -> Found {
        let found: Vec<Ipv4Addr> = self
            .scope(gateway, client)
            .filter_map(|n| n.names.get(name).map(|v| v.0))
            .collect();
        if found.is_empty() {
            Found::Missing
        } else {
            Found::Addresses(found)
        }
    }

    /// The reverse lookup of `ip` for a client: `Some(Some(names))` if a
    /// network it sees has the address, `Some(None)` if the address is in
    /// a berth subnet otherwise (unknown, or on a network the client does
    /// not see: not sent upstream either), `None` if it is none of berth's
    /// business.
    pub fn reverse(
        &self,
        gateway: Ipv4Addr,
        client: Ipv4Addr,
        ip: Ipv4Addr,
    ) -> Option<Option<Ptr<'_>>> {
        let found = self
            .scope(gateway, client)
            .find_map(|n| n.ptr.get(&ip).map(|v| (&v.0, n.podman)));
        if let Some((names, bare)) = found {
            return Some(Some(Ptr { names, bare }));
        }
        let ours = self
            .nets
            .values()
            .any(|n| n.subnet.is_some_and(|s| s.contains(&ip)));
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
            internal: false,
            podman: false,
            servers: vec![],
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
        let (table, _) = Table::build(
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
        let one = |s: &str| Found::Addresses(vec![ip(s)]);
        assert_eq!(table.lookup(gw_a, client, "alias"), one("10.1.0.2"));
        // Through a, ns 100 sees b's names too.
        assert_eq!(table.lookup(gw_a, client, "bonly"), one("10.2.0.3"));
        // A name on both of its networks: both addresses, the network
        // asked first, whichever gateway (and address) it asks from.
        assert_eq!(
            table.lookup(gw_a, client, "both"),
            Found::Addresses(vec![ip("10.1.0.2"), ip("10.2.0.2")])
        );
        assert_eq!(
            table.lookup(ip("10.2.0.1"), ip("10.2.0.2"), "both"),
            Found::Addresses(vec![ip("10.2.0.2"), ip("10.1.0.2")])
        );
        assert_eq!(table.lookup(gw_a, client, "conly"), Found::Missing);
        // ns 200 does not see a.
        let gw_b = ip("10.2.0.1");
        assert_eq!(table.lookup(gw_b, ip("10.2.0.3"), "alias"), Found::Missing);
        // Only the networks it shares with the holder.
        assert_eq!(table.lookup(gw_b, ip("10.2.0.3"), "both"), one("10.2.0.2"));
        // An unknown client sees the network it asked.
        assert_eq!(table.lookup(gw_a, ip("10.9.9.9"), "bonly"), Found::Missing);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            table.reverse(gw_a, client, ip("10.2.0.3")),
            Some(Some(Ptr {
                names: &names(&["bonly"]),
                bare: false
            }))
        );
        assert_eq!(
            table.reverse(gw_a, client, ip("10.1.0.2")),
            Some(Some(Ptr {
                names: &names(&["both", "alias"]),
                bare: false
            }))
        );
        assert_eq!(table.reverse(gw_a, client, ip("10.1.0.77")), Some(None));
        assert_eq!(table.reverse(gw_a, client, ip("10.3.0.2")), Some(None));
        assert_eq!(table.reverse(gw_a, client, ip("192.0.2.1")), None);
        assert_eq!(table.name_count(), 5);
    }

    #[test]
    fn a_namespace_update_equals_a_full_rebuild() {
        let nets = [net(1, "a", "10.1.0"), net(2, "b", "10.2.0")];
        let before = [
            name(1, "x", false, "10.1.0.2", 100),
            name(2, "x", false, "10.2.0.2", 100),
            name(1, "y", false, "10.1.0.3", 200),
        ];
        let (table, mut index) = Table::build(&nets, &before);
        // x leaves b and takes an alias on a; z joins b.
        let x_now = [
            name(1, "x", false, "10.1.0.2", 100),
            name(1, "xx", true, "10.1.0.2", 100),
        ];
        let t = table.with_netns(&mut index, 100, &x_now).unwrap();
        let z_now = [name(2, "z", false, "10.2.0.4", 300)];
        let t = t.with_netns(&mut index, 300, &z_now).unwrap();
        let all: Vec<DnsEndpoint> = [&before[2..], &x_now[..], &z_now[..]].concat();
        let (full, _) = Table::build(&nets, &all);
        let probe = |t: &Table| {
            let mut seen = Vec::new();
            for gw in ["10.1.0.1", "10.2.0.1"] {
                for client in ["10.1.0.2", "10.2.0.2", "10.1.0.3", "10.2.0.4"] {
                    for n in ["x", "xx", "y", "z"] {
                        seen.push(t.lookup(ip(gw), ip(client), n));
                    }
                    for a in ["10.1.0.2", "10.2.0.2", "10.2.0.4"] {
                        let names = match t.reverse(ip(gw), ip(client), ip(a)) {
                            Some(Some(p)) => p.names.join(","),
                            _ => String::new(),
                        };
                        seen.push(Found::Addresses(
                            names
                                .bytes()
                                .map(|b| Ipv4Addr::from(u32::from(b)))
                                .collect(),
                        ));
                    }
                }
            }
            seen
        };
        assert_eq!(probe(&t), probe(&full));
        // The old table is untouched (a query in flight keeps it).
        assert_eq!(
            table.lookup(ip("10.2.0.1"), ip("10.2.0.2"), "x"),
            Found::Addresses(vec![ip("10.2.0.2"), ip("10.1.0.2")])
        );
        assert_eq!(
            t.lookup(ip("10.2.0.1"), ip("10.2.0.4"), "x"),
            Found::Missing
        );
        // An unknown network asks for a full reload.
        assert!(t
            .with_netns(&mut index, 9, &[name(7, "q", false, "10.7.0.2", 9)])
            .is_none());
    }

    #[test]
    fn a_reverse_lookup_gives_every_name_in_order_and_podman_networks_bare_ones() {
        let mut podman = net(1, "p", "10.4.0");
        podman.podman = true;
        let (table, _) = Table::build(
            &[podman],
            &[
                // Rows as the state gives them may come in any order; the
                // own name leads, the aliases keep theirs.
                name(1, "web1", true, "10.4.0.2", 100),
                name(1, "0123456789ab", true, "10.4.0.2", 100),
                name(1, "c1", false, "10.4.0.2", 100),
            ],
        );
        let found = table.reverse(ip("10.4.0.1"), ip("10.4.0.2"), ip("10.4.0.2"));
        let Some(Some(p)) = found else {
            panic!("{found:?}")
        };
        assert_eq!(p.names, ["c1", "web1", "0123456789ab"]);
        assert!(p.bare);
    }
}

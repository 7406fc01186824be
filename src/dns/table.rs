//! The name table the server answers from. A query reads one immutable
//! snapshot ([`Table`], behind an `Arc`); a change builds the next one and
//! swaps it in, so a query in flight keeps the table it started with.
//!
//! The table knows no address family: a network has a subnet and a
//! gateway per family, a name maps to every address of its endpoint
//! (IPv4 and IPv6), and clients and gateways are `IpAddr`s; the answer
//! side picks the family a question asks for.
//!
//! A change to one namespace's endpoints (connect, disconnect) touches
//! only that namespace's rows: [`Table::with_netns`] copies the networks
//! the namespace is or was on and shares every other one, so its cost does
//! not grow with the number of endpoints elsewhere. [`Index`], which only
//! the reloading side holds, remembers what each namespace put in.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::store::{DnsEndpoint, DnsNetwork};

/// Names under this domain are berth's alone: answered here, never sent
/// upstream (`api.dns.berth` is `api`). The search list containers get
/// starts with it, so a short name is tried here first.
pub const LOCAL_DOMAIN: &str = "dns.berth";
/// The domain Podman's containers search (netavark's `dns_search_domains`).
pub const PODMAN_DOMAIN: &str = "dns.podman";

/// One network with DNS, keyed in [`Table`] by its id and found from any
/// of its gateways (where the server listens for it, one per family).
/// Every entry carries the inode of the namespace that holds it, so that
/// a namespace's later update removes its own entries and never another's.
#[derive(Clone, Debug, Default)]
pub struct Net {
    pub name: String,
    /// One per family the network has.
    pub subnets: Vec<IpNet>,
    pub gateways: Vec<IpAddr>,
    /// Nothing is forwarded upstream for an `--internal` network.
    pub internal: bool,
    /// Podman's network: reverse lookups answer bare names (`NAME.`), as
    /// aardvark-dns does, rather than `NAME.dns.berth.`.
    pub podman: bool,
    /// Where this network's queries for other names go (Podman's
    /// `network_dns_servers`); empty: the host's resolvers.
    pub servers: Vec<std::net::SocketAddr>,
    /// Lower-cased names and aliases to every address of their endpoint
    /// on this network, IPv4 first.
    names: Sharded<String, (Arc<[IpAddr]>, u64)>,
    /// Address (either family) to the endpoint's names for PTR: its own
    /// name, then its aliases in the order given.
    ptr: Sharded<IpAddr, (Arc<[String]>, u64)>,
    /// A client address (either family) to the ids of every DNS network
    /// its namespace is on: what it may see.
    scopes: Sharded<IpAddr, (Arc<[i64]>, u64)>,
}

impl Net {
    fn holds(&self, ip: IpAddr) -> bool {
        self.subnets.iter().any(|s| s.contains(&ip))
    }
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
    nets: HashMap<i64, Arc<Net>>,
    /// Every gateway (either family) to its network; shared between
    /// tables until networks change.
    gateways: Arc<HashMap<IpAddr, i64>>,
}

/// What each namespace put in the table, and the networks the table
/// knows: what a namespace update needs besides the state's rows.
#[derive(Debug, Default)]
pub struct Index {
    known: HashSet<i64>,
    spaces: HashMap<u64, Vec<Entered>>,
}

/// One endpoint of a namespace, as entered in the table: the very lists
/// the table's maps hold, shared, so the index costs no copy of a name.
#[derive(Debug)]
struct Entered {
    network: i64,
    /// IPv4 first, as the rows come.
    ips: Arc<[IpAddr]>,
    /// Own name first, then the aliases in order.
    names: Arc<[String]>,
}

/// One endpoint of a namespace, gathered from its rows.
#[derive(Debug)]
struct Held {
    network: i64,
    endpoint: i64,
    /// IPv4 first, as the rows come.
    ips: Vec<IpAddr>,
    /// Own name first, then the aliases in order.
    names: Vec<String>,
}

/// What a name lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// The name's addresses (every family) on every network the client
    /// sees that has it, the network asked first (never empty).
    Addresses(Vec<IpAddr>),
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
    /// The whole table from the state's rows (a network comes once per
    /// family it has, an endpoint's name once per address).
    pub fn build(networks: &[DnsNetwork], names: &[DnsEndpoint]) -> (Table, Index) {
        let mut nets: HashMap<i64, Net> = HashMap::new();
        let mut gateways = HashMap::new();
        for n in networks {
            let net = nets.entry(n.id).or_insert_with(|| Net {
                name: n.name.clone(),
                internal: n.internal,
                podman: n.podman,
                servers: n
                    .servers
                    .iter()
                    .map(|ip| std::net::SocketAddr::new(*ip, 53))
                    .collect(),
                ..Default::default()
            });
            net.subnets.push(n.subnet);
            net.gateways.push(n.gateway);
            gateways.insert(n.gateway, n.id);
        }
        let mut index = Index {
            known: nets.keys().copied().collect(),
            spaces: HashMap::new(),
        };
        let mut table = Table {
            nets: nets.into_iter().map(|(id, n)| (id, Arc::new(n))).collect(),
            gateways: Arc::new(gateways),
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
        if rows.iter().any(|r| !index.known.contains(&r.network_id)) {
            return None;
        }
        let mut next = self.clone();
        next.update_netns(index, inode, rows);
        Some(next)
    }

    fn update_netns(&mut self, index: &mut Index, inode: u64, rows: &[DnsEndpoint]) {
        for h in index.spaces.remove(&inode).unwrap_or_default() {
            let Some(net) = self.nets.get_mut(&h.network) else {
                continue;
            };
            let net = Arc::make_mut(net);
            for name in h.names.iter() {
                if net.names.get(name.as_str()).is_some_and(|v| v.1 == inode) {
                    net.names.remove(name);
                }
            }
            for ip in h.ips.iter() {
                if net.ptr.get(ip).is_some_and(|v| v.1 == inode) {
                    net.ptr.remove(ip);
                }
                if net.scopes.get(ip).is_some_and(|v| v.1 == inode) {
                    net.scopes.remove(ip);
                }
            }
        }
        // Rows come one per name and address: gather each endpoint's.
        let mut held: Vec<Held> = Vec::new();
        for r in rows {
            if !self.nets.contains_key(&r.network_id) {
                continue;
            }
            let i = match held
                .iter()
                .position(|h| h.network == r.network_id && h.endpoint == r.endpoint_id)
            {
                Some(i) => i,
                None => {
                    held.push(Held {
                        network: r.network_id,
                        endpoint: r.endpoint_id,
                        ips: Vec::new(),
                        names: Vec::new(),
                    });
                    held.len() - 1
                }
            };
            let h = &mut held[i];
            if !h.ips.contains(&r.ip) {
                h.ips.push(r.ip);
            }
            if !h.names.contains(&r.name) {
                // The endpoint's own name leads its PTR answer.
                if r.alias {
                    h.names.push(r.name.clone());
                } else {
                    h.names.insert(0, r.name.clone());
                }
            }
        }
        let mut scope: Vec<i64> = Vec::new();
        for h in &held {
            if !scope.contains(&h.network) {
                scope.push(h.network);
            }
        }
        let scope: Arc<[i64]> = scope.into();
        let mut entered = Vec::with_capacity(held.len());
        for h in held {
            let Some(net) = self.nets.get_mut(&h.network) else {
                continue;
            };
            let net = Arc::make_mut(net);
            let ips: Arc<[IpAddr]> = h.ips.into();
            let names: Arc<[String]> = h.names.into();
            for name in names.iter() {
                net.names.insert(name.clone(), (ips.clone(), inode));
            }
            for ip in ips.iter() {
                net.scopes.insert(*ip, (scope.clone(), inode));
                net.ptr.insert(*ip, (names.clone(), inode));
            }
            entered.push(Entered {
                network: h.network,
                ips,
                names,
            });
        }
        if !entered.is_empty() {
            index.spaces.insert(inode, entered);
        }
    }

    /// The addresses the server should listen on: every gateway of every
    /// network, in either family.
    pub fn gateways(&self) -> impl Iterator<Item = &IpAddr> {
        self.gateways.keys()
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The network served on `gateway`.
    pub fn net(&self, gateway: IpAddr) -> Option<&Net> {
        let id = self.gateways.get(&gateway)?;
        self.nets.get(id).map(|n| &**n)
    }

    /// Whether `client` may ask the server on `gateway` at all: an address
    /// of that network (either family), or the host itself on one of the
    /// network's gateways. Anyone else who can route to the gateway would
    /// otherwise have an open resolver.
    pub fn admits(&self, gateway: IpAddr, client: IpAddr) -> bool {
        self.net(gateway)
            .is_some_and(|n| n.gateways.contains(&client) || n.holds(client))
    }

    /// The networks a query from `client` arriving on `gateway` may see:
    /// that network first, then the other networks of the client's
    /// namespace. A client berth does not know (the host, say) sees only
    /// the network it asked.
    fn scope(&self, gateway: IpAddr, client: IpAddr) -> impl Iterator<Item = &Net> {
        let asked = self.gateways.get(&gateway).copied();
        let others = asked
            .and_then(|id| self.nets.get(&id))
            .and_then(|n| n.scopes.get(&client))
            .map(|s| s.0.iter().copied().filter(move |id| Some(*id) != asked))
            .into_iter()
            .flatten();
        asked
            .into_iter()
            .chain(others)
            .filter_map(|id| self.nets.get(&id).map(|n| &**n))
    }

    /// Looks `name` (lower-cased, no trailing dot) up for a client: its
    /// addresses, of both families, on every network the client's
    /// namespace shares with the name's holder, as aardvark-dns answers
    /// (the client is known by its address; one berth does not know sees
    /// the network it asked).
    pub fn lookup(&self, gateway: IpAddr, client: IpAddr, name: &str) -> Found {
        let found: Vec<IpAddr> = self
            .scope(gateway, client)
            .filter_map(|n| n.names.get(name))
            .flat_map(|v| v.0.iter().copied())
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
    pub fn reverse(&self, gateway: IpAddr, client: IpAddr, ip: IpAddr) -> Option<Option<Ptr<'_>>> {
        let found = self
            .scope(gateway, client)
            .find_map(|n| n.ptr.get(&ip).map(|v| (&v.0, n.podman)));
        if let Some((names, bare)) = found {
            return Some(Some(Ptr { names, bare }));
        }
        self.owns(IpNet::from(ip)).then_some(None)
    }

    /// Whether every address of `prefix` lies in one berth subnet: its
    /// reverse names are berth's to answer, never sent upstream.
    pub fn owns(&self, prefix: IpNet) -> bool {
        self.nets
            .values()
            .any(|n| n.subnets.iter().any(|s| s.contains(&prefix)))
    }

    /// How many names the table holds (for the log).
    pub fn name_count(&self) -> usize {
        self.nets.values().map(|n| n.names.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
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

    /// A network's IPv6 half: `prefix::/64`, gateway `prefix::1`.
    fn net6(id: i64, name: &str, prefix: &str) -> DnsNetwork {
        DnsNetwork {
            subnet: format!("{prefix}::/64").parse().unwrap(),
            gateway: ip(&format!("{prefix}::1")),
            ..net(id, name, "0.0.0")
        }
    }

    /// A name row; one endpoint per namespace and network.
    fn name(network_id: i64, name: &str, alias: bool, addr: &str, inode: u64) -> DnsEndpoint {
        DnsEndpoint {
            network_id,
            endpoint_id: inode as i64 * 100 + network_id,
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
                            names.bytes().map(|b| IpAddr::from([0, 0, 0, b])).collect(),
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

    /// Network 1 has both families (10.1.0.0/24, fd00:1::/64), network 2
    /// only IPv6 (fd00:2::/64). ns 100 holds c1 on both (10.1.0.2 and
    /// fd00:1::2 on 1, fd00:2::2 on 2); ns 200 c2 on 1 only; ns 300 c3 on
    /// 2 only.
    fn dual_stack() -> (Vec<DnsNetwork>, Vec<DnsEndpoint>) {
        let nets = vec![
            net(1, "a", "10.1.0"),
            net6(1, "a", "fd00:1"),
            net6(2, "b", "fd00:2"),
        ];
        let names = vec![
            name(1, "c1", false, "10.1.0.2", 100),
            name(1, "c1", false, "fd00:1::2", 100),
            name(1, "web", true, "10.1.0.2", 100),
            name(1, "web", true, "fd00:1::2", 100),
            name(2, "c1", false, "fd00:2::2", 100),
            name(1, "c2", false, "10.1.0.3", 200),
            name(1, "c2", false, "fd00:1::3", 200),
            name(2, "c3", false, "fd00:2::3", 300),
        ];
        (nets, names)
    }

    #[test]
    fn a_name_maps_to_every_address_of_both_families_on_the_shared_networks() {
        let (nets, names) = dual_stack();
        let (t, _) = Table::build(&nets, &names);
        let all = |v: &[&str]| Found::Addresses(v.iter().map(|s| ip(s)).collect());
        // ns 200 shares only network 1 with c1: its two addresses there,
        // whichever family it asks over.
        for (gw, client) in [("fd00:1::1", "fd00:1::3"), ("10.1.0.1", "10.1.0.3")] {
            assert_eq!(
                t.lookup(ip(gw), ip(client), "c1"),
                all(&["10.1.0.2", "fd00:1::2"]),
                "{gw}"
            );
            assert_eq!(
                t.lookup(ip(gw), ip(client), "web"),
                all(&["10.1.0.2", "fd00:1::2"])
            );
            assert_eq!(t.lookup(ip(gw), ip(client), "c3"), Found::Missing);
        }
        // c1 itself sees both networks, the asked one first.
        assert_eq!(
            t.lookup(ip("fd00:2::1"), ip("fd00:2::2"), "c1"),
            all(&["fd00:2::2", "10.1.0.2", "fd00:1::2"])
        );
        assert_eq!(
            t.lookup(ip("fd00:1::1"), ip("fd00:1::2"), "c3"),
            all(&["fd00:2::3"])
        );
        // ns 300, on the IPv6-only network: c1's address there only.
        assert_eq!(
            t.lookup(ip("fd00:2::1"), ip("fd00:2::3"), "c1"),
            all(&["fd00:2::2"])
        );
        assert_eq!(
            t.lookup(ip("fd00:2::1"), ip("fd00:2::3"), "c2"),
            Found::Missing
        );
        // Both gateways of network 1 lead to it; network 2 has one.
        let mut gws: Vec<IpAddr> = t.gateways().copied().collect();
        gws.sort();
        assert_eq!(gws, [ip("10.1.0.1"), ip("fd00:1::1"), ip("fd00:2::1")]);
        assert_eq!(t.net(ip("fd00:1::1")).unwrap().name, "a");
        assert_eq!(t.net(ip("10.1.0.1")).unwrap().subnets.len(), 2);
        assert!(t.net(ip("fd00:9::1")).is_none());
    }

    #[test]
    fn admission_and_reverse_lookups_are_keyed_by_any_address() {
        let (nets, names) = dual_stack();
        let (t, _) = Table::build(&nets, &names);
        let gw = ip("fd00:1::1");
        assert!(t.admits(gw, ip("fd00:1::3")));
        assert!(t.admits(gw, ip("fd00:1::ffff")));
        // The host on either gateway of the network.
        assert!(t.admits(gw, gw));
        assert!(t.admits(gw, ip("10.1.0.1")));
        // Another network's address, or one from elsewhere.
        assert!(!t.admits(gw, ip("fd00:2::3")));
        assert!(!t.admits(gw, ip("2001:db8::5")));
        assert!(!t.admits(ip("fd00:2::1"), ip("10.1.0.3")));
        assert!(!t.admits(ip("fd00:9::1"), ip("fd00:9::2")));
        let names_of = |gw: &str, client: &str, a: &str| match t.reverse(ip(gw), ip(client), ip(a))
        {
            Some(Some(p)) => Some(p.names.join(",")),
            Some(None) => Some(String::new()),
            None => None,
        };
        assert_eq!(
            names_of("fd00:1::1", "fd00:1::3", "fd00:1::2").as_deref(),
            Some("c1,web")
        );
        assert_eq!(
            names_of("fd00:1::1", "fd00:1::3", "10.1.0.2").as_deref(),
            Some("c1,web")
        );
        // Network 2 is not ns 200's: known as berth's, but no names.
        assert_eq!(
            names_of("fd00:1::1", "fd00:1::3", "fd00:2::2").as_deref(),
            Some("")
        );
        assert_eq!(
            names_of("fd00:2::1", "fd00:2::3", "fd00:2::2").as_deref(),
            Some("c1")
        );
        assert_eq!(names_of("fd00:1::1", "fd00:1::3", "2001:db8::2"), None);
        assert!(t.owns("fd00:1::/80".parse().unwrap()));
        assert!(t.owns("fd00:2::2/128".parse().unwrap()));
        assert!(!t.owns("fd00::/48".parse().unwrap()));
        assert!(!t.owns("10.0.0.0/8".parse().unwrap()));
        assert!(t.owns("10.1.0.0/24".parse().unwrap()));
    }

    #[test]
    fn a_dual_stack_namespace_update_equals_a_full_rebuild() {
        let (nets, before) = dual_stack();
        let (table, mut index) = Table::build(&nets, &before);
        // c1 leaves network 2 and drops its alias.
        let c1_now: Vec<DnsEndpoint> = before[..2].to_vec();
        let t = table.with_netns(&mut index, 100, &c1_now).unwrap();
        let all: Vec<DnsEndpoint> = [&c1_now[..], &before[5..]].concat();
        let (full, _) = Table::build(&nets, &all);
        let probe = |t: &Table| {
            let mut seen = Vec::new();
            for (gw, client) in [
                ("10.1.0.1", "10.1.0.2"),
                ("fd00:1::1", "fd00:1::2"),
                ("fd00:1::1", "fd00:1::3"),
                ("fd00:2::1", "fd00:2::2"),
                ("fd00:2::1", "fd00:2::3"),
            ] {
                for n in ["c1", "web", "c2", "c3"] {
                    seen.push(format!("{:?}", t.lookup(ip(gw), ip(client), n)));
                }
                for a in ["10.1.0.2", "fd00:1::2", "fd00:2::2"] {
                    seen.push(format!("{:?}", t.reverse(ip(gw), ip(client), ip(a))));
                }
                seen.push(format!("{}", t.admits(ip(gw), ip(client))));
            }
            seen
        };
        assert_eq!(probe(&t), probe(&full));
        assert_eq!(
            t.lookup(ip("fd00:2::1"), ip("fd00:2::3"), "c1"),
            Found::Missing
        );
        assert_eq!(
            table.lookup(ip("fd00:2::1"), ip("fd00:2::3"), "c1"),
            Found::Addresses(vec![ip("fd00:2::2")])
        );
    }
}

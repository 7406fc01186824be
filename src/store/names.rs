//! The state berth's DNS server answers from: each endpoint's name and
//! aliases (table `dns_names`, lower-cased, unique per network), the
//! networks that have DNS, and the namespace each address belongs to (so
//! the server can tell which networks a client sees).
//!
//! The rows are family-neutral: a network gives one [`DnsNetwork`] per
//! address family it has (subnet and gateway), an endpoint one
//! [`DnsEndpoint`] per name and address. Which columns hold a family's
//! addresses is written once, in [`families!`]: every query here reads
//! them through it, so a new family (IPv6) is one more column there and
//! nothing else.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use rusqlite::types::ValueRef;
use rusqlite::{params, OptionalExtension};

use super::Tx;
use crate::error::{Error, Result};

/// The columns that hold each family's addresses, as SQL: `addresses` of
/// an endpoint row `e` (one column per family), `subnets` of a network
/// row `n` (a subnet and a gateway column per family). A column is NULL
/// where the row has no address of that family; an IPv4 address may be
/// the integer berth stores, any address its text.
macro_rules! families {
    (addresses) => {
        "e.ip, e.ip6"
    };
    (subnets) => {
        "n.subnet, n.gateway, n.subnet6, n.gateway6"
    };
}

/// A network whose names the DNS server serves, in one family: a network
/// with IPv4 and IPv6 gives two, with the same id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsNetwork {
    pub id: i64,
    pub name: String,
    pub subnet: IpNet,
    /// Where the server listens for this network in this family.
    pub gateway: IpAddr,
    /// `--internal`: nothing leaves, so nothing is forwarded upstream.
    pub internal: bool,
    /// Made by Podman (berth as its netavark): reverse lookups answer
    /// bare names, as aardvark-dns does.
    pub podman: bool,
    /// Its own upstream servers (Podman's `network_dns_servers`); empty:
    /// the host's resolvers.
    pub servers: Vec<IpAddr>,
}

/// One name of an endpoint on a DNS network, with one of its addresses:
/// an endpoint with an IPv4 and an IPv6 address gives two per name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsEndpoint {
    pub network_id: i64,
    /// The endpoint the name belongs to (its names answer PTR together).
    pub endpoint_id: i64,
    /// Lower-cased.
    pub name: String,
    /// An alias rather than the endpoint's own name.
    pub alias: bool,
    pub ip: IpAddr,
    pub netns_inode: u64,
}

/// An address column: NULL (no address of that family), berth's integer
/// IPv4 address, or an address as text.
fn address(r: &rusqlite::Row, index: usize) -> rusqlite::Result<Option<IpAddr>> {
    match r.get_ref(index)? {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) => u32::try_from(i)
            .map(|v| Some(IpAddr::V4(Ipv4Addr::from(v))))
            .map_err(|_| super::bad_column(index, &i.to_string())),
        ValueRef::Text(t) => {
            let text = String::from_utf8_lossy(t);
            text.parse()
                .map(Some)
                .map_err(|_| super::bad_column(index, &text))
        }
        other => Err(super::bad_column(index, &format!("{other:?}"))),
    }
}

/// Every address in the columns from `from` on (`families!(addresses)`).
fn addresses(r: &rusqlite::Row, from: usize) -> rusqlite::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for i in from..r.as_ref().column_count() {
        out.extend(address(r, i)?);
    }
    Ok(out)
}

/// Every (subnet, gateway) pair in the columns from `from` on
/// (`families!(subnets)`); a family whose columns are NULL is left out.
fn subnets(r: &rusqlite::Row, from: usize) -> rusqlite::Result<Vec<(IpNet, IpAddr)>> {
    let mut out = Vec::new();
    let mut i = from;
    while i + 1 < r.as_ref().column_count() {
        let subnet: Option<String> = r.get(i)?;
        if let (Some(subnet), Some(gateway)) = (subnet, address(r, i + 1)?) {
            let net: IpNet = subnet.parse().map_err(|_| super::bad_column(i, &subnet))?;
            out.push((net.trunc(), gateway));
        }
        i += 2;
    }
    Ok(out)
}

/// Columns `network_id, endpoint_id, name, alias, netns_inode`, then
/// `families!(addresses)`: one row per address.
fn dns_endpoints_from_row(r: &rusqlite::Row) -> rusqlite::Result<Vec<DnsEndpoint>> {
    let (network_id, endpoint_id, name, alias): (i64, i64, String, bool) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    let netns_inode = r.get::<_, i64>(4)? as u64;
    Ok(addresses(r, 5)?
        .into_iter()
        .map(|ip| DnsEndpoint {
            network_id,
            endpoint_id,
            name: name.clone(),
            alias,
            ip,
            netns_inode,
        })
        .collect())
}

fn flatten<T>(rows: impl Iterator<Item = rusqlite::Result<Vec<T>>>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for r in rows {
        out.extend(r?);
    }
    Ok(out)
}

impl Tx<'_> {
    /// The endpoint of `network_id` that already answers to `name` (own
    /// name or alias, any case), if any.
    pub fn dns_name_holder(&self, network_id: i64, name: &str) -> Result<Option<String>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT e.name FROM dns_names d JOIN endpoints e ON e.id = d.endpoint_id
             WHERE d.network_id = ?1 AND d.name = ?2",
        )?;
        Ok(stmt
            .query_row(params![network_id, name.to_ascii_lowercase()], |r| r.get(0))
            .optional()?)
    }

    /// Records the names an endpoint answers to. A name another endpoint
    /// of the network holds is refused by the schema (check first with
    /// [`Tx::dns_name_holder`] for a clear message).
    pub fn insert_dns_names(
        &self,
        network_id: i64,
        endpoint_id: i64,
        name: &str,
        aliases: &[String],
    ) -> Result<()> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT INTO dns_names (network_id, name, endpoint_id, alias, pos) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        stmt.execute(params![
            network_id,
            name.to_ascii_lowercase(),
            endpoint_id,
            false,
            0
        ])?;
        for (i, a) in aliases.iter().enumerate() {
            stmt.execute(params![
                network_id,
                a.to_ascii_lowercase(),
                endpoint_id,
                true,
                i as i64 + 1
            ])?;
        }
        Ok(())
    }

    /// The aliases of one endpoint, in the order given.
    pub fn aliases_of(&self, endpoint_id: i64) -> Result<Vec<String>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT name FROM dns_names WHERE endpoint_id = ?1 AND alias = 1 ORDER BY pos, name",
        )?;
        let rows = stmt.query_map([endpoint_id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The aliases of every endpoint that has any, by endpoint id, each
    /// endpoint's in the order given.
    pub fn all_aliases(&self) -> Result<std::collections::HashMap<i64, Vec<String>>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT endpoint_id, name FROM dns_names WHERE alias = 1
             ORDER BY endpoint_id, pos, name",
        )?;
        let mut all: std::collections::HashMap<i64, Vec<String>> = Default::default();
        for row in stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))? {
            let (id, name) = row?;
            all.entry(id).or_default().push(name);
        }
        Ok(all)
    }

    /// The aliases of the endpoints of network `network_id` that have
    /// any, by endpoint id, each endpoint's in the order given: a range
    /// of the names' key, not every name of every network.
    pub fn network_aliases(
        &self,
        network_id: i64,
    ) -> Result<std::collections::HashMap<i64, Vec<String>>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT endpoint_id, name FROM dns_names WHERE network_id = ?1 AND alias = 1
             ORDER BY endpoint_id, pos, name",
        )?;
        let mut all: std::collections::HashMap<i64, Vec<String>> = Default::default();
        for row in stmt.query_map([network_id], |r| Ok((r.get(0)?, r.get(1)?)))? {
            let (id, name) = row?;
            all.entry(id).or_default().push(name);
        }
        Ok(all)
    }

    /// How many networks have DNS: the server is needed while this is > 0.
    pub fn dns_network_count(&self) -> Result<usize> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT count(*) FROM networks WHERE dns = 1")?;
        Ok(stmt.query_row([], |r| r.get::<_, i64>(0))? as usize)
    }

    /// The networks with DNS, one row per family each has.
    pub fn dns_networks(&self) -> Result<Vec<DnsNetwork>> {
        let mut stmt = self.tx.prepare_cached(concat!(
            "SELECT n.id, n.name, n.internal, n.owner IS 'podman', n.dns_servers, ",
            families!(subnets),
            " FROM networks n WHERE n.dns = 1"
        ))?;
        let rows = stmt.query_map([], |r| {
            let (id, name, internal, podman): (i64, String, bool, bool) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            let servers = parse_servers(r.get::<_, Option<String>>(4)?.as_deref());
            Ok(subnets(r, 5)?
                .into_iter()
                .map(|(subnet, gateway)| DnsNetwork {
                    id,
                    name: name.clone(),
                    subnet,
                    gateway,
                    internal,
                    podman,
                    servers: servers.clone(),
                })
                .collect())
        })?;
        flatten(rows)
    }

    /// A network's own upstream DNS servers (empty: the host's).
    pub fn network_dns_servers(&self, network_id: i64) -> Result<Vec<std::net::IpAddr>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT dns_servers FROM networks WHERE id = ?1")?;
        let text: Option<String> = stmt.query_row([network_id], |r| r.get(0))?;
        Ok(parse_servers(text.as_deref()))
    }

    /// Sets a network's own upstream DNS servers (empty: the host's).
    pub fn set_network_dns_servers(
        &self,
        network_id: i64,
        servers: &[std::net::IpAddr],
    ) -> Result<()> {
        let text: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
        self.tx.execute(
            "UPDATE networks SET dns_servers = ?2 WHERE id = ?1",
            rusqlite::params![network_id, (!text.is_empty()).then(|| text.join(","))],
        )?;
        Ok(())
    }

    /// Every name on every network with DNS, with each address and the
    /// namespace that holds it: all the server needs, in one query. Each
    /// endpoint's names come together, its own name first, then its
    /// aliases in the order given (the order of a reverse lookup's answer).
    pub fn dns_endpoints(&self) -> Result<Vec<DnsEndpoint>> {
        let mut stmt = self.tx.prepare_cached(concat!(
            "SELECT d.network_id, d.endpoint_id, d.name, d.alias, e.netns_inode, ",
            families!(addresses),
            " FROM dns_names d JOIN endpoints e ON e.id = d.endpoint_id
             JOIN networks n ON n.id = d.network_id
             WHERE n.dns = 1 ORDER BY d.endpoint_id, d.alias, d.pos, d.name"
        ))?;
        let rows = stmt.query_map([], dns_endpoints_from_row)?;
        flatten(rows)
    }

    /// The names of one namespace on networks with DNS (what the server
    /// re-reads after a connect or disconnect): two index lookups per
    /// endpoint, whatever the number of endpoints elsewhere.
    pub fn dns_endpoints_of_netns(&self, inode: u64) -> Result<Vec<DnsEndpoint>> {
        let mut stmt = self.tx.prepare_cached(concat!(
            "SELECT d.network_id, d.endpoint_id, d.name, d.alias, e.netns_inode, ",
            families!(addresses),
            " FROM endpoints e JOIN dns_names d ON d.endpoint_id = e.id
             JOIN networks n ON n.id = e.network_id
             WHERE e.netns_inode = ?1 AND n.dns = 1
             ORDER BY d.endpoint_id, d.alias, d.pos, d.name"
        ))?;
        let rows = stmt.query_map([inode as i64], dns_endpoints_from_row)?;
        flatten(rows)
    }

    /// The gateways a namespace's resolv.conf names: those of the first
    /// network with DNS it joined, one per family (the server answers
    /// there for all of the namespace's networks). Empty: none.
    pub fn dns_gateways_of_netns(&self, inode: u64) -> Result<Vec<IpAddr>> {
        let mut stmt = self.tx.prepare_cached(concat!(
            "SELECT ",
            families!(subnets),
            " FROM endpoints e JOIN networks n ON n.id = e.network_id
             WHERE e.netns_inode = ?1 AND n.dns = 1 ORDER BY e.id LIMIT 1"
        ))?;
        let found = stmt
            .query_row([inode as i64], |r| subnets(r, 0))
            .optional()
            .map_err(|e| Error::Other(format!("unreadable gateway in the state: {e}")))?;
        Ok(found
            .unwrap_or_default()
            .into_iter()
            .map(|(_, gateway)| gateway)
            .collect())
    }
}

/// The `dns_servers` column: addresses separated by commas; what does not
/// parse (a state edited by hand) is left out.
fn parse_servers(text: Option<&str>) -> Vec<std::net::IpAddr> {
    text.unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::super::tests::{endpoint_c1, insert_web, temp_dir};
    use super::super::Store;

    /// A dual-stack network gives a DNS row per family, and its endpoint
    /// a name row per address; the namespace's resolv.conf names both
    /// gateways.
    #[test]
    fn a_dual_stack_network_serves_each_name_on_both_families() {
        use crate::model::{NetworkPolicy, Subnet};
        let dir = temp_dir("dns-dual");
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let v4: IpAddr = "10.90.0.1".parse().unwrap();
        let v6: IpAddr = "fd00:9::1".parse().unwrap();
        let net = tx
            .insert_network(&super::super::NewNetwork {
                name: "dual",
                subnets: vec![
                    Subnet {
                        net: "10.90.0.0/24".parse().unwrap(),
                        gateway: Some(v4),
                    },
                    Subnet {
                        net: "fd00:9::/64".parse().unwrap(),
                        gateway: Some(v6),
                    },
                ],
                bridge: "berth-dual".into(),
                mtu: 1500,
                policy: NetworkPolicy::default(),
                driver: Default::default(),
            })
            .unwrap();
        let ep = crate::model::Endpoint {
            network: "dual".into(),
            ips: vec!["10.90.0.2".parse().unwrap(), "fd00:9::2".parse().unwrap()],
            host_ifname: crate::model::names::host_veth_name("dual", "c1"),
            ..endpoint_c1(7)
        };
        let id = tx.insert_endpoint(&net, &ep).unwrap();
        tx.insert_dns_names(net.id, id, "c1", &[]).unwrap();
        let nets = tx.dns_networks().unwrap();
        let gateways: Vec<IpAddr> = nets.iter().map(|n| n.gateway).collect();
        assert_eq!(gateways, [v4, v6]);
        assert!(nets.iter().all(|n| n.id == net.id));
        let ips: Vec<IpAddr> = tx.dns_endpoints().unwrap().iter().map(|n| n.ip).collect();
        assert_eq!(ips, ep.ips);
        assert_eq!(tx.dns_endpoints_of_netns(7).unwrap().len(), 2);
        assert_eq!(tx.dns_gateways_of_netns(7).unwrap(), [v4, v6]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names_are_unique_per_network_whatever_their_case() {
        let dir = temp_dir("dns");
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let net = insert_web(&tx);
        let ep = endpoint_c1(7);
        let id = tx.insert_endpoint(&net, &ep).unwrap();
        tx.insert_dns_names(net.id, id, "c1", &["Backend".into(), "v1.backend".into()])
            .unwrap();
        assert_eq!(
            tx.dns_name_holder(net.id, "BACKEND").unwrap().as_deref(),
            Some("c1")
        );
        assert_eq!(tx.dns_name_holder(net.id, "other").unwrap(), None);
        assert!(tx.insert_dns_names(net.id, id, "C1", &[]).is_err());
        assert_eq!(
            tx.aliases_of(id).unwrap(),
            vec!["backend".to_string(), "v1.backend".to_string()]
        );
        assert_eq!(tx.dns_network_count().unwrap(), 1);
        let nets = tx.dns_networks().unwrap();
        assert_eq!(nets.len(), 1);
        assert_eq!(Some(nets[0].gateway), net.gateways().first().copied());
        assert_eq!(nets[0].subnet, net.subnets[0].net);
        let names = tx.dns_endpoints().unwrap();
        assert_eq!(names.len(), 3);
        assert!(names
            .iter()
            .all(|n| n.ip == ep.ips[0] && n.netns_inode == 7 && n.endpoint_id == id));
        assert_eq!(tx.dns_gateways_of_netns(7).unwrap(), net.gateways());
        assert!(tx.dns_gateways_of_netns(8).unwrap().is_empty());
        assert_eq!(tx.dns_endpoints_of_netns(7).unwrap().len(), 3);
        assert!(tx.dns_endpoints_of_netns(8).unwrap().is_empty());
        // The names go with their endpoint.
        tx.delete_endpoint(id).unwrap();
        assert!(tx.dns_endpoints().unwrap().is_empty());
        tx.commit().unwrap();
        drop(store);
        let mut ro = Store::open_read_only(&dir).unwrap().expect("state exists");
        assert_eq!(ro.read().unwrap().dns_network_count().unwrap(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn version_5_state_gets_dns_on_and_its_endpoint_names() {
        let dir = temp_dir("dns-v3");
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let net = insert_web(&tx);
        let ep = super::super::Endpoint {
            name: "Web-1".into(),
            ..endpoint_c1(5)
        };
        tx.insert_endpoint(&net, &ep).unwrap();
        tx.commit().unwrap();
        // Back to what version 5 (the last before DNS) had.
        store
            .conn
            .execute_batch(
                // (and without version 7's CNI table and column, version 8's
                // jobs, version 9's bandwidth and version 10's guard columns)
                "DROP TABLE jobs; DROP TABLE attachments; ALTER TABLE networks DROP COLUMN cluster_cidrs; \
                 ALTER TABLE endpoints DROP COLUMN bw_in_rate; ALTER TABLE endpoints DROP COLUMN bw_in_burst; \
                 ALTER TABLE endpoints DROP COLUMN bw_out_rate; ALTER TABLE endpoints DROP COLUMN bw_out_burst; \
                 ALTER TABLE networks DROP COLUMN host_access; ALTER TABLE endpoints DROP COLUMN allow_spoofing; ALTER TABLE endpoints DROP COLUMN metric; ALTER TABLE networks DROP COLUMN dns_servers; \
                 DROP TABLE dns_names; ALTER TABLE networks DROP COLUMN dns; ALTER TABLE networks DROP COLUMN driver; ALTER TABLE networks DROP COLUMN parent; ALTER TABLE networks DROP COLUMN mode; PRAGMA user_version = 5;",
            )
            .unwrap();
        drop(store);
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        assert!(tx.require_network("web").unwrap().policy.dns);
        assert_eq!(
            tx.dns_name_holder(net.id, "web-1").unwrap().as_deref(),
            Some("Web-1")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn address_columns_of_either_family_are_read_and_null_ones_skipped() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        // Rows shaped as the queries give them, with a second family's
        // columns after the first (as IPv6 adds them).
        let rows = conn
            .query_row(
                "SELECT 1, 2, 'c1', 0, 7, 167837698, 'fd00:1::2', NULL",
                [],
                super::dns_endpoints_from_row,
            )
            .unwrap();
        let ips: Vec<IpAddr> = rows.iter().map(|r| r.ip).collect();
        assert_eq!(
            ips,
            [
                "10.1.0.2".parse::<IpAddr>().unwrap(),
                "fd00:1::2".parse().unwrap()
            ]
        );
        assert!(rows
            .iter()
            .all(|r| r.name == "c1" && r.endpoint_id == 2 && r.netns_inode == 7));
        // An IPv6-only endpoint: its IPv4 column NULL.
        let rows = conn
            .query_row(
                "SELECT 1, 2, 'c1', 0, 7, NULL, 'fd00:1::2'",
                [],
                super::dns_endpoints_from_row,
            )
            .unwrap();
        assert_eq!(rows.len(), 1);
        let pairs = conn
            .query_row(
                "SELECT NULL, NULL, 'fd00:1::/64', 'fd00:1::1', '10.1.0.0/24', '10.1.0.1'",
                [],
                |r| super::subnets(r, 0),
            )
            .unwrap();
        let text: Vec<String> = pairs.iter().map(|(s, g)| format!("{s} {g}")).collect();
        assert_eq!(text, ["fd00:1::/64 fd00:1::1", "10.1.0.0/24 10.1.0.1"]);
        // What does not parse is an error, not a silent gap.
        assert!(conn
            .query_row("SELECT 'fd00::/64', 'nope'", [], |r| super::subnets(r, 0))
            .is_err());
    }
}

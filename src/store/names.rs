//! The state berth's DNS server answers from: each endpoint's name and
//! aliases (table `dns_names`, lower-cased, unique per network), the
//! networks that have DNS, and the namespace each address belongs to (so
//! the server can tell which networks a client sees).

use std::net::Ipv4Addr;

use rusqlite::{params, OptionalExtension};

use super::Tx;
use crate::error::{Error, Result};
use crate::model::Ipv4Net;

/// A network whose names the DNS server serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsNetwork {
    pub id: i64,
    pub name: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// `--internal`: nothing leaves, so nothing is forwarded upstream.
    pub internal: bool,
    /// Made by Podman (berth as its netavark): reverse lookups answer
    /// bare names, as aardvark-dns does.
    pub podman: bool,
    /// Its own upstream servers (Podman's `network_dns_servers`); empty:
    /// the host's resolvers.
    pub servers: Vec<std::net::IpAddr>,
}

/// One name of an endpoint on a DNS network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsEndpoint {
    pub network_id: i64,
    /// Lower-cased.
    pub name: String,
    /// An alias rather than the endpoint's own name.
    pub alias: bool,
    pub ip: Ipv4Addr,
    pub netns_inode: u64,
}

/// Columns `network_id, name, alias, ip, netns_inode`.
fn dns_endpoint_from_row(r: &rusqlite::Row) -> rusqlite::Result<DnsEndpoint> {
    let ip: u32 = r.get(3)?;
    Ok(DnsEndpoint {
        network_id: r.get(0)?,
        name: r.get(1)?,
        alias: r.get(2)?,
        ip: Ipv4Addr::from(ip),
        netns_inode: r.get::<_, i64>(4)? as u64,
    })
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

    /// How many networks have DNS: the server is needed while this is > 0.
    pub fn dns_network_count(&self) -> Result<usize> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT count(*) FROM networks WHERE dns = 1")?;
        Ok(stmt.query_row([], |r| r.get::<_, i64>(0))? as usize)
    }

    /// The networks with DNS.
    pub fn dns_networks(&self) -> Result<Vec<DnsNetwork>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT id, name, subnet, gateway, internal, owner IS 'podman', dns_servers FROM networks WHERE dns = 1",
        )?;
        let rows = stmt.query_map([], |r| {
            let subnet: String = r.get(2)?;
            let gateway: String = r.get(3)?;
            Ok(DnsNetwork {
                id: r.get(0)?,
                name: r.get(1)?,
                subnet: subnet.parse().map_err(|_| super::bad_column(2, &subnet))?,
                gateway: gateway
                    .parse()
                    .map_err(|_| super::bad_column(3, &gateway))?,
                internal: r.get(4)?,
                podman: r.get(5)?,
                servers: parse_servers(r.get::<_, Option<String>>(6)?.as_deref()),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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

    /// Every name on every network with DNS, with its address and the
    /// namespace that holds it: all the server needs, in one query. Each
    /// endpoint's names come together, its own name first, then its
    /// aliases in the order given (the order of a reverse lookup's answer).
    pub fn dns_endpoints(&self) -> Result<Vec<DnsEndpoint>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT d.network_id, d.name, d.alias, e.ip, e.netns_inode
             FROM dns_names d JOIN endpoints e ON e.id = d.endpoint_id
             JOIN networks n ON n.id = d.network_id
             WHERE n.dns = 1 ORDER BY d.endpoint_id, d.alias, d.pos, d.name",
        )?;
        let rows = stmt.query_map([], dns_endpoint_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The names of one namespace on networks with DNS (what the server
    /// re-reads after a connect or disconnect): two index lookups per
    /// endpoint, whatever the number of endpoints elsewhere.
    pub fn dns_endpoints_of_netns(&self, inode: u64) -> Result<Vec<DnsEndpoint>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT d.network_id, d.name, d.alias, e.ip, e.netns_inode
             FROM endpoints e JOIN dns_names d ON d.endpoint_id = e.id
             JOIN networks n ON n.id = e.network_id
             WHERE e.netns_inode = ?1 AND n.dns = 1
             ORDER BY d.endpoint_id, d.alias, d.pos, d.name",
        )?;
        let rows = stmt.query_map([inode as i64], dns_endpoint_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The gateway a namespace's resolv.conf names: that of the first
    /// network with DNS it joined (the server answers there for all of the
    /// namespace's networks).
    pub fn dns_gateway_of_netns(&self, inode: u64) -> Result<Option<Ipv4Addr>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT n.gateway FROM endpoints e JOIN networks n ON n.id = e.network_id
             WHERE e.netns_inode = ?1 AND n.dns = 1 ORDER BY e.id LIMIT 1",
        )?;
        let gateway: Option<String> = stmt.query_row([inode as i64], |r| r.get(0)).optional()?;
        gateway
            .map(|g| {
                g.parse()
                    .map_err(|_| Error::Other(format!("unreadable gateway {g:?} in the state")))
            })
            .transpose()
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
    use super::super::tests::{endpoint_c1, insert_web, temp_dir};
    use super::super::Store;

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
        assert_eq!(Some(tx.dns_networks().unwrap()[0].gateway), net.gateway4());
        let names = tx.dns_endpoints().unwrap();
        assert_eq!(names.len(), 3);
        assert!(names
            .iter()
            .all(|n| Some(n.ip) == ep.ip4() && n.netns_inode == 7));
        assert_eq!(tx.dns_gateway_of_netns(7).unwrap(), net.gateway4());
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
}

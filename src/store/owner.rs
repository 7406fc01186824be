//! Who made a network or an endpoint (schema version 4's `owner` and
//! `container_id` columns). berth's own commands leave them NULL; berth
//! acting as Podman's netavark marks what it makes `podman`, so that
//! `ps` and `network ls` show Podman's containers as such and so that a
//! Podman teardown removes only networks Podman's setup created.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension};

use super::{endpoint_from_row, Tx, ENDPOINT_COLUMNS};
use crate::error::Result;
use crate::model::Endpoint;

pub use crate::model::EndpointMark;

/// Every mark, for the listings: network owner by network name, endpoint
/// marks by endpoint id.
#[derive(Debug, Default)]
pub struct Owners {
    pub networks: HashMap<String, String>,
    pub endpoints: HashMap<i64, EndpointMark>,
}

impl Tx<'_> {
    pub fn mark_network(&self, network_id: i64, owner: &str) -> Result<()> {
        self.tx.execute(
            "UPDATE networks SET owner = ?1 WHERE id = ?2",
            params![owner, network_id],
        )?;
        Ok(())
    }

    pub fn mark_endpoint(&self, endpoint_id: i64, mark: &EndpointMark) -> Result<()> {
        self.tx.execute(
            "UPDATE endpoints SET owner = ?1, container_id = ?2 WHERE id = ?3",
            params![mark.owner, mark.container_id, endpoint_id],
        )?;
        Ok(())
    }

    /// The owner of network `name` (None: berth's own, or no such network).
    pub fn network_owner(&self, name: &str) -> Result<Option<String>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT owner FROM networks WHERE name = ?1")?;
        Ok(stmt
            .query_row([name], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }

    /// The endpoint called `name` on network `network_id`, with its mark.
    pub fn endpoint_named(
        &self,
        network_id: i64,
        name: &str,
    ) -> Result<Option<(Endpoint, EndpointMark)>> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS}, e.owner, e.container_id
             FROM endpoints e JOIN networks n ON n.id = e.network_id
             WHERE e.network_id = ?1 AND e.name = ?2"
        );
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let found = stmt
            .query_row(params![network_id, name], |r| {
                Ok((
                    endpoint_from_row(r)?,
                    EndpointMark {
                        owner: r.get(super::endpoint_columns_len())?,
                        container_id: r.get(super::endpoint_columns_len() + 1)?,
                    },
                ))
            })
            .optional()?;
        Ok(found)
    }

    /// The networks Podman's container `container_id` is attached to, each
    /// with the namespace as recorded.
    pub fn container_networks(&self, container_id: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT n.name, e.netns FROM endpoints e JOIN networks n ON n.id = e.network_id
             WHERE e.container_id = ?1 ORDER BY n.name",
        )?;
        let rows = stmt.query_map([container_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Who made network `network_id` and its endpoints: [`Tx::owners`]
    /// for one network, read through its index.
    pub fn network_owners(&self, network_id: i64) -> Result<Owners> {
        let mut owners = Owners::default();
        let mut stmt = self.tx.prepare_cached(
            "SELECT name, owner FROM networks WHERE id = ?1 AND owner IS NOT NULL",
        )?;
        for row in stmt.query_map([network_id], |r| Ok((r.get(0)?, r.get(1)?)))? {
            let (name, owner) = row?;
            owners.networks.insert(name, owner);
        }
        owners.endpoints = self.endpoint_marks(
            "SELECT id, owner, container_id FROM endpoints
             WHERE network_id = ?1 AND (owner IS NOT NULL OR container_id IS NOT NULL)",
            [network_id],
        )?;
        Ok(owners)
    }

    /// Who made each network that some runtime made (by network name).
    pub fn network_marks(&self) -> Result<HashMap<String, String>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT name, owner FROM networks WHERE owner IS NOT NULL")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn owners(&self) -> Result<Owners> {
        Ok(Owners {
            networks: self.network_marks()?,
            endpoints: self.endpoint_marks(
                "SELECT id, owner, container_id FROM endpoints WHERE owner IS NOT NULL OR container_id IS NOT NULL",
                [],
            )?,
        })
    }

    /// The marks of the endpoints `sql` selects (id, owner, container_id).
    fn endpoint_marks<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
    ) -> Result<HashMap<i64, EndpointMark>> {
        let mut stmt = self.tx.prepare_cached(sql)?;
        let rows = stmt.query_map(params, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                EndpointMark {
                    owner: r.get(1)?,
                    container_id: r.get(2)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use rusqlite::Connection;

    use super::super::{NewNetwork, Store, PORTS_SCHEMA, SCHEMA};
    use super::*;
    use crate::model::{Mac, NetworkPolicy};

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("berth-owner-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn marks_round_trip_and_version_3_state_gets_the_columns() {
        let dir = temp_dir("v3");
        std::fs::create_dir_all(&dir).unwrap();
        {
            let conn = Connection::open(dir.join("berth.db")).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(PORTS_SCHEMA).unwrap();
            conn.pragma_update(None, "user_version", 3).unwrap();
        }
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let net = tx
            .insert_network(&NewNetwork {
                name: "web",
                subnets: vec![crate::model::Subnet {
                    net: "10.90.0.0/24".parse().unwrap(),
                    gateway: Some(std::net::IpAddr::V4(Ipv4Addr::new(10, 90, 0, 1))),
                }],
                bridge: "podman1".into(),
                mtu: 1500,
                policy: NetworkPolicy::default(),
                driver: Default::default(),
            })
            .unwrap();
        assert_eq!(tx.network_owner("web").unwrap(), None);
        tx.mark_network(net.id, "podman").unwrap();
        let ip = Ipv4Addr::new(10, 90, 0, 2);
        let ep = Endpoint {
            id: 0,
            network: "web".into(),
            name: "c1".into(),
            netns: "/run/netns/netns-1".into(),
            netns_inode: 7,
            ips: vec![std::net::IpAddr::V4(ip)],
            mac: Mac::from_ipv4(ip),
            ifname: "eth0".into(),
            host_ifname: crate::model::names::host_veth_name("web", "c1"),
            default_route: crate::model::Families::V4,
            metric: None,
            ports: Vec::new(),
            bandwidth: Default::default(),
            allow_spoofing: false,
        };
        let id = tx.insert_endpoint(&net, &ep).unwrap();
        let mark = EndpointMark {
            owner: Some("podman".into()),
            container_id: Some("abc".into()),
        };
        tx.mark_endpoint(id, &mark).unwrap();
        tx.commit().unwrap();

        let tx = store.begin().unwrap();
        assert_eq!(tx.network_owner("web").unwrap().as_deref(), Some("podman"));
        let owners = tx.owners().unwrap();
        assert_eq!(owners.networks["web"], "podman");
        assert_eq!(owners.endpoints[&id], mark);
        let (found, found_mark) = tx.endpoint_named(net.id, "c1").unwrap().unwrap();
        assert_eq!(found, Endpoint { id, ..ep });
        assert_eq!(found_mark, mark);
        assert!(tx.endpoint_named(net.id, "c2").unwrap().is_none());
        assert_eq!(
            tx.container_networks("abc").unwrap(),
            [("web".to_string(), "/run/netns/netns-1".to_string())]
        );
        assert!(tx.container_networks("other").unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

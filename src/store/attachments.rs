//! CNI attachments (schema version 7): which endpoint a container runtime
//! made through berth's CNI plugin, keyed as the runtime keys it, by
//! container ID and interface name.
//!
//! An attachment is an ordinary endpoint plus this row. The row is written
//! in the same transaction as the endpoint's intent and goes with the
//! endpoint (`ON DELETE CASCADE`), so every way an endpoint leaves (DEL,
//! GC, `disconnect`, a reconcile, `network rm --force`, `reset`) takes its
//! attachment with it.

use rusqlite::{params, OptionalExtension};

use super::{endpoint_from_row, Tx, ENDPOINT_COLUMNS};
use crate::error::Result;
use crate::model::Endpoint;

/// Version 6 → 7, its own migration step: the attachments table, and the
/// networks' `--cluster-cidr` ranges (routed peers, see `firewall/network.rs`).
pub const ATTACHMENTS_SCHEMA: &str = "
CREATE TABLE attachments (
    endpoint_id INTEGER PRIMARY KEY REFERENCES endpoints(id) ON DELETE CASCADE,
    container_id TEXT NOT NULL,
    ifname TEXT NOT NULL,
    -- who made it: 'cni'
    owner TEXT NOT NULL,
    UNIQUE (container_id, ifname)
);
-- comma-separated CIDRs (`--cluster-cidr`): routed peers of the network
ALTER TABLE networks ADD COLUMN cluster_cidrs TEXT NOT NULL DEFAULT '';
";

pub use crate::model::Attachment;

impl Tx<'_> {
    pub fn insert_attachment(&self, endpoint_id: i64, a: &Attachment) -> Result<()> {
        self.tx.execute(
            "INSERT INTO attachments (endpoint_id, container_id, ifname, owner) VALUES (?1, ?2, ?3, ?4)",
            params![endpoint_id, a.container_id, a.ifname, a.owner],
        )?;
        Ok(())
    }

    /// The endpoint a runtime attached as (`container_id`, `ifname`).
    pub fn find_attachment(&self, container_id: &str, ifname: &str) -> Result<Option<Endpoint>> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM attachments a JOIN endpoints e ON e.id = a.endpoint_id
             JOIN networks n ON n.id = e.network_id
             WHERE a.container_id = ?1 AND a.ifname = ?2"
        );
        let mut stmt = self.tx.prepare_cached(&sql)?;
        Ok(stmt
            .query_row(params![container_id, ifname], endpoint_from_row)
            .optional()?)
    }

    /// Every attachment of one network, with its endpoint.
    pub fn network_attachments(&self, network_id: i64) -> Result<Vec<(Attachment, Endpoint)>> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS}, a.container_id, a.ifname, a.owner
             FROM attachments a JOIN endpoints e ON e.id = a.endpoint_id
             JOIN networks n ON n.id = e.network_id
             WHERE e.network_id = ?1"
        );
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let n = ENDPOINT_COLUMNS.split(',').count();
        let rows = stmt.query_map([network_id], |row| {
            let a = Attachment {
                container_id: row.get(n)?,
                ifname: row.get(n + 1)?,
                owner: row.get(n + 2)?,
            };
            Ok((a, endpoint_from_row(row)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every attachment (for `ps`), by endpoint id.
    pub fn attachments(&self) -> Result<Vec<(i64, Attachment)>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT endpoint_id, container_id, ifname, owner FROM attachments")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get(0)?,
                Attachment {
                    container_id: row.get(1)?,
                    ifname: row.get(2)?,
                    owner: row.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Mac, NetworkPolicy};
    use crate::store::{NewNetwork, Status, Store};
    use std::net::Ipv4Addr;

    #[test]
    fn attachments_are_keyed_by_runtime_and_go_with_their_endpoint() {
        let dir = std::env::temp_dir().join(format!("berth-attach-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let policy = NetworkPolicy {
            cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
            ..NetworkPolicy::default()
        };
        let net = tx
            .insert_network(&NewNetwork {
                name: "pods",
                subnets: vec![crate::model::Subnet {
                    net: "10.244.1.0/24".parse().unwrap(),
                    gateway: Some(std::net::IpAddr::V4(Ipv4Addr::new(10, 244, 1, 1))),
                }],
                bridge: "cni0".into(),
                mtu: 1500,
                policy: policy.clone(),
                driver: Default::default(),
            })
            .unwrap();
        tx.set_network_status(net.id, Status::Removing).unwrap();
        // The status is read after every network column, cluster CIDRs included.
        let (read, status) = tx.networks_with_status().unwrap().remove(0);
        assert_eq!(read.policy, policy);
        assert_eq!(status, Status::Removing);
        let ip = Ipv4Addr::new(10, 244, 1, 2);
        let e = Endpoint {
            id: 0,
            network: "pods".into(),
            name: "cni-abc-eth0".into(),
            netns: "/run/netns/x".into(),
            netns_inode: 1,
            ips: vec![std::net::IpAddr::V4(ip)],
            mac: Mac::from_ipv4(ip),
            ifname: "eth0".into(),
            host_ifname: crate::model::names::host_veth_name("pods", "cni-abc-eth0"),
            default_route: crate::model::Families::V4,
            metric: None,
            ports: Vec::new(),
            bandwidth: Default::default(),
            allow_spoofing: false,
        };
        let id = tx.insert_endpoint(&net, &e).unwrap();
        let a = Attachment {
            container_id: "abc".into(),
            ifname: "eth0".into(),
            owner: "cni".into(),
        };
        tx.insert_attachment(id, &a).unwrap();
        assert!(tx.insert_attachment(id, &a).is_err());
        assert_eq!(tx.find_attachment("abc", "eth0").unwrap().unwrap().id, id);
        assert!(tx.find_attachment("abc", "eth1").unwrap().is_none());
        assert_eq!(tx.network_attachments(net.id).unwrap()[0].0, a);
        tx.delete_endpoint(id).unwrap();
        assert!(tx.attachments().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

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

/// An endpoint's maker and, for Podman's, the container it belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointMark {
    pub owner: Option<String>,
    pub container_id: Option<String>,
}

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
                        owner: r.get(10)?,
                        container_id: r.get(11)?,
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

    pub fn owners(&self) -> Result<Owners> {
        let mut owners = Owners::default();
        let mut stmt = self
            .tx
            .prepare_cached("SELECT name, owner FROM networks WHERE owner IS NOT NULL")?;
        for row in stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))? {
            let (name, owner) = row?;
            owners.networks.insert(name, owner);
        }
        let mut stmt = self.tx.prepare_cached(
            "SELECT id, owner, container_id FROM endpoints WHERE owner IS NOT NULL OR container_id IS NOT NULL",
        )?;
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                EndpointMark {
                    owner: r.get(1)?,
                    container_id: r.get(2)?,
                },
            ))
        })? {
            let (id, mark) = row?;
            owners.endpoints.insert(id, mark);
        }
        Ok(owners)
    }
}

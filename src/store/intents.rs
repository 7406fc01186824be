//! The state's half of crash safety: row statuses (the intent of the
//! command working on a row), the namespaces `run` owns, and the facts
//! that let the next command notice a reboot or a foreign change.
//!
//! A row is `ready` when the kernel matches it. A command that is about to
//! build something commits its row as `creating` first, one about to take
//! something down commits `removing`; both settle the row after the kernel
//! work. Mutating commands hold the state lock for their whole run, so a
//! row found unsettled by a lock holder belongs to a command that died.

use std::net::IpAddr;

use rusqlite::params;

use super::{endpoint_from_row, network_from_row, Tx, ENDPOINT_COLUMNS, NETWORK_COLUMNS};
use crate::error::Result;
use crate::model::{Endpoint, Family, Network};

/// What the command working on a row meant to do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ready,
    Creating,
    Removing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ready => "ready",
            Status::Creating => "creating",
            Status::Removing => "removing",
        }
    }

    pub fn parse(s: &str) -> Status {
        match s {
            "creating" => Status::Creating,
            "removing" => Status::Removing,
            _ => Status::Ready,
        }
    }
}

/// Settings keys of the facts [`Tx::preflight_facts`] reads: the host
/// identity and the nf_tables generation the last command left.
pub const HOST_ID: &str = "host_id";
pub const NFT_GENERATION: &str = "nft_generation";

/// See [`Tx::preflight_facts`].
#[derive(Clone, Debug)]
pub struct PreflightFacts {
    pub host: Option<String>,
    pub generation: Option<String>,
    pub unsettled: bool,
    pub sandboxes: bool,
}

/// A namespace `berth run` made, and the process it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    pub name: String,
    pub owner_pid: u32,
    pub owner_start: u64,
}

impl Tx<'_> {
    pub fn set_network_status(&self, id: i64, status: Status) -> Result<()> {
        self.tx.execute(
            "UPDATE networks SET status = ?2 WHERE id = ?1",
            params![id, status.as_str()],
        )?;
        Ok(())
    }

    pub fn set_endpoint_status(&self, id: i64, status: Status) -> Result<()> {
        // Cached: a connect marks its row twice (the intent, then ready),
        // and a statement prepared once is not parsed again.
        self.tx
            .prepare_cached("UPDATE endpoints SET status = ?2 WHERE id = ?1")?
            .execute(params![id, status.as_str()])?;
        Ok(())
    }

    /// What every mutating command checks first, in one statement: the
    /// recorded host identity and nf_tables generation, whether any row is
    /// unsettled, and whether any `run` sandbox is recorded.
    pub fn preflight_facts(&self) -> Result<PreflightFacts> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT (SELECT value FROM settings WHERE key = 'host_id'),
                    (SELECT value FROM settings WHERE key = 'nft_generation'),
                    EXISTS (SELECT 1 FROM networks WHERE status != 'ready')
                        OR EXISTS (SELECT 1 FROM endpoints WHERE status != 'ready'),
                    EXISTS (SELECT 1 FROM sandboxes)",
        )?;
        Ok(stmt.query_row([], |r| {
            Ok(PreflightFacts {
                host: r.get(0)?,
                generation: r.get(1)?,
                unsettled: r.get(2)?,
                sandboxes: r.get(3)?,
            })
        })?)
    }

    /// Whether anything can die behind berth's back, in one statement: a
    /// `run` sandbox, an endpoint, or a network with DNS (its server).
    pub fn anything_to_watch(&self) -> Result<bool> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM sandboxes)
                    OR EXISTS (SELECT 1 FROM endpoints)
                    OR EXISTS (SELECT 1 FROM networks WHERE dns = 1)",
        )?;
        Ok(stmt.query_row([], |r| r.get(0))?)
    }

    /// Every network with its status.
    pub fn networks_with_status(&self) -> Result<Vec<(Network, Status)>> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {NETWORK_COLUMNS}, status FROM networks ORDER BY name"
        ))?;
        let rows = stmt.query_map([], |row| {
            // Right after the network's columns, however many there are.
            let status: String = row.get(NETWORK_COLUMNS.split(',').count())?;
            Ok((network_from_row(row)?, Status::parse(&status)))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every endpoint with its status.
    pub fn endpoints_with_status(&self) -> Result<Vec<(Endpoint, Status)>> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {ENDPOINT_COLUMNS}, e.status FROM endpoints e
             JOIN networks n ON n.id = e.network_id ORDER BY n.name, e.ip"
        ))?;
        let rows = stmt.query_map([], |row| {
            let status: String = row.get(super::endpoint_columns_len())?;
            Ok((endpoint_from_row(row)?, Status::parse(&status)))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The endpoints recorded in the namespace with `inode`, on any
    /// network. The kernel reuses inode numbers, so callers check that each
    /// one is still alive.
    pub fn endpoints_by_inode(&self, inode: u64) -> Result<Vec<Endpoint>> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints e JOIN networks n ON n.id = e.network_id
             WHERE e.netns_inode = ?1"
        ))?;
        let rows = stmt.query_map([inode as i64], endpoint_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The rows a connect of namespace `inode` (spelled `netns`) as `name`
    /// on network `network_id`, with host interface `host_ifname`, meets:
    /// those of the namespace, by inode or by spelling, on any network,
    /// the one with that name on the network, and the one holding that
    /// host interface name. A connect decides from them alone whether it
    /// clashes, is already done, or stands on a dead row, and which
    /// interface name and default routes are left to it: one statement
    /// (each branch of the OR an index lookup) where it ran eight.
    pub fn endpoints_near(
        &self,
        inode: u64,
        netns: &str,
        network_id: i64,
        name: &str,
        host_ifname: &str,
    ) -> Result<Vec<Endpoint>> {
        // The network's name by a subquery rather than a join: SQLite plans
        // each branch of the OR as a loop of its own, and with the join in
        // every one parsing the statement took a third longer (~0.02 ms).
        let columns = ENDPOINT_COLUMNS.replace(
            "n.name",
            "(SELECT name FROM networks WHERE id = e.network_id)",
        );
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {columns} FROM endpoints e
             WHERE e.netns_inode = ?1 OR e.netns = ?2 OR (e.network_id = ?3 AND e.name = ?4)
                OR e.host_ifname = ?5"
        ))?;
        let rows = stmt.query_map(
            params![inode as i64, netns, network_id, name, host_ifname],
            endpoint_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The host veths of the endpoints that hold a host port `m` would use,
    /// or `ip` on network `network`: the rows a new connect could clash with.
    pub fn claim_holders(
        &self,
        mappings: &[crate::model::PortMapping],
        network_id: i64,
        ips: &[IpAddr],
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        // Most connects give no host port: then the statement is not even
        // parsed (parsing is most of what a lookup costs a process that
        // runs one command).
        if !mappings.is_empty() {
            let mut stmt = self.tx.prepare_cached(
                "SELECT e.host_ifname, c.host_ip FROM port_claims c JOIN ports p ON p.id = c.port_id
                 JOIN endpoints e ON e.id = p.endpoint_id
                 WHERE c.proto = ?1 AND c.host_port BETWEEN ?2 AND ?3",
            )?;
            for m in mappings {
                let ip = m.host_ip.to_string();
                let mut rows = stmt.query(params![m.proto.as_str(), m.host_port, m.host_last()])?;
                while let Some(row) = rows.next()? {
                    if super::addresses_clash(&row.get::<_, String>(1)?, &ip) {
                        out.push(row.get(0)?);
                    }
                }
            }
        }
        for ip in ips {
            let mut stmt = self.tx.prepare_cached(
                "SELECT host_ifname FROM endpoints WHERE network_id = ?1 AND (ip = ?2 OR ip6 = ?3)",
            )?;
            let (v4, v6) = match ip {
                IpAddr::V4(v4) => (Some(u32::from(*v4)), None),
                IpAddr::V6(v6) => (None, Some(v6.to_string())),
            };
            let rows = stmt.query_map(params![network_id, v4, v6], |r| r.get(0))?;
            for r in rows {
                out.push(r?);
            }
        }
        Ok(out)
    }

    /// Another endpoint of the namespace with `inode` on a network that is
    /// not internal, with an address of `family` and without a default
    /// route of its own (with a metric), with that network's gateway of
    /// the family: the one that takes over the namespace's default route
    /// of `family` without a metric when the endpoint `leaving` goes.
    pub fn default_route_heir(
        &self,
        inode: u64,
        leaving: i64,
        family: Family,
    ) -> Result<Option<(Endpoint, IpAddr)>> {
        let sql = match family {
            Family::V4 => format!(
                "SELECT {ENDPOINT_COLUMNS}, n.gateway FROM endpoints e JOIN networks n ON n.id = e.network_id
                 WHERE e.netns_inode = ?1 AND e.id != ?2 AND n.internal = 0 AND e.status = 'ready'
                   AND (e.default_route & 1) = 0 AND e.metric IS NULL AND e.ip IS NOT NULL
                 ORDER BY e.id"
            ),
            Family::V6 => format!(
                "SELECT {ENDPOINT_COLUMNS}, n.gateway6 FROM endpoints e JOIN networks n ON n.id = e.network_id
                 WHERE e.netns_inode = ?1 AND e.id != ?2 AND n.internal = 0 AND e.status = 'ready'
                   AND (e.default_route & 2) = 0 AND e.metric IS NULL AND e.ip6 IS NOT NULL
                 ORDER BY e.id"
            ),
        };
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![inode as i64, leaving], |row| {
            let gateway: Option<String> = row.get(super::endpoint_columns_len())?;
            Ok((endpoint_from_row(row)?, gateway))
        })?;
        for row in rows {
            let (e, gateway) = row?;
            if let Some(g) = gateway.and_then(|t| t.parse::<IpAddr>().ok()) {
                return Ok(Some((e, g)));
            }
        }
        Ok(None)
    }

    /// Records that endpoint `id` now gives its namespace the default
    /// route of `family` too.
    pub fn add_default_route_family(&self, id: i64, family: Family) -> Result<()> {
        self.tx.execute(
            "UPDATE endpoints SET default_route = default_route | ?2 WHERE id = ?1",
            params![id, crate::model::Families::of(family).bits()],
        )?;
        Ok(())
    }

    /// Whether a live endpoint of the network already has `mac`.
    pub fn mac_holder(&self, network_id: i64, mac: &str) -> Result<Option<String>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT name FROM endpoints WHERE network_id = ?1 AND mac = ?2")?;
        use rusqlite::OptionalExtension;
        Ok(stmt
            .query_row(params![network_id, mac], |r| r.get(0))
            .optional()?)
    }

    pub fn insert_sandbox(&self, s: &Sandbox) -> Result<()> {
        self.tx.execute(
            "INSERT INTO sandboxes (name, owner_pid, owner_start) VALUES (?1, ?2, ?3)",
            params![s.name, s.owner_pid, s.owner_start as i64],
        )?;
        Ok(())
    }

    pub fn delete_sandbox(&self, name: &str) -> Result<()> {
        self.tx
            .execute("DELETE FROM sandboxes WHERE name = ?1", [name])?;
        Ok(())
    }

    pub fn sandboxes(&self) -> Result<Vec<Sandbox>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT name, owner_pid, owner_start FROM sandboxes ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(Sandbox {
                name: r.get(0)?,
                owner_pid: r.get(1)?,
                owner_start: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// This state's instance id (made on first use): what marks the
    /// firewall table as this state's.
    pub fn instance_id(&self) -> Result<String> {
        if let Some(id) = self.setting("instance")? {
            return Ok(id);
        }
        let mut bytes = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .map_err(|e| crate::error::Error::Other(format!("reading /dev/urandom: {e}")))?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.set_setting("instance", &id)?;
        Ok(id)
    }

    /// Removes the ports, port claims and row of every endpoint in `ids`.
    pub fn delete_endpoints(&self, ids: &[i64]) -> Result<()> {
        for id in ids {
            self.delete_endpoint(*id)?;
        }
        Ok(())
    }
}

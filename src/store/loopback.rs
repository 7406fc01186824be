//! The published ports berth forwards from the host's `[::1]` in user
//! space (see `portproxy`): mappings on every address (`0.0.0.0`, `::`) or
//! on `::1` itself, of ready endpoints with an IPv6 address. IPv6 has no
//! `route_localnet`, so no in-kernel path reaches a container from `::1`.

use std::net::Ipv6Addr;

use super::{bad_column, port_from_row, Tx};
use crate::error::Result;
use crate::model::PortMapping;

/// One mapping to forward from `[::1]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopbackForward {
    pub netns_inode: u64,
    /// `NETWORK/ENDPOINT`, for what the forwarder reports.
    pub endpoint: String,
    /// The endpoint's IPv6 address.
    pub target: Ipv6Addr,
    pub mapping: PortMapping,
}

/// The host addresses whose mappings answer on `[::1]`.
const LOOPBACK_HOST_IPS: &str = "('0.0.0.0', '::', '::1')";

/// Whether any mapping is forwarded from `[::1]`. The endpoints with an
/// IPv6 address come first (CROSS JOIN keeps that order), read from a
/// partial index that holds only those (schema version 16), then their
/// ports by the endpoint index: on an IPv4-only host nothing is read.
pub(crate) fn any_forward() -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM endpoints e CROSS JOIN ports p ON p.endpoint_id = e.id
           WHERE e.ip6 IS NOT NULL AND p.host_ip IN {LOOPBACK_HOST_IPS}
             AND p.proto IN ('tcp', 'udp'))"
    )
}

fn select(filter: &str) -> String {
    format!(
        "SELECT p.host_ip, p.proto, p.host_port, p.container_port, p.count,
                e.netns_inode, n.name || '/' || e.name, e.ip6
         FROM ports p JOIN endpoints e ON e.id = p.endpoint_id
         JOIN networks n ON n.id = e.network_id
         WHERE e.ip6 IS NOT NULL AND e.status = 'ready'
           AND p.host_ip IN {LOOPBACK_HOST_IPS} AND p.proto IN ('tcp', 'udp') {filter}
         ORDER BY p.id"
    )
}

fn from_row(row: &rusqlite::Row) -> rusqlite::Result<LoopbackForward> {
    let ip6: String = row.get(7)?;
    Ok(LoopbackForward {
        netns_inode: row.get::<_, i64>(5)? as u64,
        endpoint: row.get(6)?,
        target: ip6.parse().map_err(|_| bad_column(7, &ip6))?,
        mapping: port_from_row(row)?,
    })
}

impl Tx<'_> {
    /// Every mapping to forward from `[::1]`.
    pub fn loopback_forwards(&self) -> Result<Vec<LoopbackForward>> {
        let mut stmt = self.tx.prepare_cached(&select(""))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The mappings to forward of one namespace's endpoints (by index: a
    /// connect's reload does not grow with the number of endpoints).
    pub fn loopback_forwards_of_netns(&self, inode: u64) -> Result<Vec<LoopbackForward>> {
        let mut stmt = self.tx.prepare_cached(&select("AND e.netns_inode = ?1"))?;
        let rows = stmt.query_map([inode as i64], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether any mapping is forwarded from `[::1]`: the background
    /// server is needed for it even when no network has DNS.
    pub fn has_loopback_forwards(&self) -> Result<bool> {
        let mut stmt = self.tx.prepare_cached(&any_forward())?;
        Ok(stmt.query_row([], |r| r.get(0))?)
    }
}

/// Whether `m` on an endpoint with an IPv6 address is forwarded from
/// `[::1]` (the rule the queries above apply).
pub fn forwarded_from_loopback(m: &PortMapping) -> bool {
    use crate::model::Proto;
    let any_or_loopback =
        m.host_ip.is_unspecified() || m.host_ip == std::net::IpAddr::V6(Ipv6Addr::LOCALHOST);
    any_or_loopback && matches!(m.proto, Proto::Tcp | Proto::Udp)
}

//! berth's DNS: containers find each other by name.
//!
//! One server process (`berth-dns dns-server` or `berth dns-server`,
//! [`serve`]) answers on the
//! gateways (IPv4 and IPv6) of every network with DNS: A and AAAA records
//! for every endpoint's name and aliases, PTR for their addresses
//! (`in-addr.arpa` and `ip6.arpa`), NXDOMAIN at once for unknown single
//! labels, and everything else forwarded to the host's resolvers.
//! It reads berth's state and keeps none of its own; berth commands call
//! [`sync`] after each change, which starts, reloads or stops it.
//!
//! - `table`: the names, built from the state, swapped whole on reload.
//! - `answer`: one query in, a reply (or "forward") out; pure.
//! - `reverse`: reading `in-addr.arpa` and `ip6.arpa` names; pure.
//! - `upstream`: forwarding to the host's resolvers.
//! - `server`: the tokio side: listeners and the control socket.
//! - `batch`: datagrams several to a system call.
//! - `limits`: what one network, and one client in it, may hold at once.
//! - `memory`: keeping the server's resident memory to what it uses.
//! - `control`: berth's side: starting and notifying the server.
//! - `standalone`: the server's own executable, `berth-dns`.
//! - `resolv`: reading and writing resolv.conf.

mod answer;
mod batch;
mod control;
mod limits;
mod memory;
pub mod resolv;
mod reverse;
mod server;
pub mod standalone;
mod table;
mod upstream;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

pub use crate::portproxy::WARNING_PREFIX as FORWARD_WARNING;
pub use control::{sync, sync_netns};
pub use server::serve;
pub use table::LOCAL_DOMAIN;

use crate::error::{Error, Result};
use crate::model::Network;
use crate::store::{Store, Tx};

/// The server's control socket, in the state directory.
pub const SOCKET: &str = "dns.sock";
/// The server's PID, locked for its whole life.
pub const PID_FILE: &str = "dns.pid";
/// Taken by berth while it starts or notifies the server.
const LOCK_FILE: &str = "dns.lock";
/// The server's stdout and stderr.
pub const LOG_FILE: &str = "dns.log";

/// Checks `--alias` values: DNS names (labels of letters, digits, '-' and
/// '_', 1-63 bytes each, 253 in all), none twice and none the endpoint's
/// own name.
pub fn check_aliases(name: &str, aliases: &[String]) -> Result<()> {
    for (i, a) in aliases.iter().enumerate() {
        check_dns_name(a)?;
        if a.eq_ignore_ascii_case(name) || aliases[..i].iter().any(|b| b.eq_ignore_ascii_case(a)) {
            return Err(Error::invalid(format!(
                "alias {a:?} is given twice (names are case-insensitive)"
            )));
        }
    }
    Ok(())
}

fn check_dns_name(name: &str) -> Result<()> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let lower = name.to_ascii_lowercase();
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(Error::invalid(format!(
            "invalid alias {name:?}: a DNS name is dot-separated labels of 1-63 letters, digits, '-' or '_'"
        )));
    }
    if lower == LOCAL_DOMAIN || lower.ends_with(&format!(".{LOCAL_DOMAIN}")) {
        return Err(Error::invalid(format!(
            "invalid alias {name:?}: names under {LOCAL_DOMAIN} are berth's own"
        )));
    }
    Ok(())
}

/// Checks that no other endpoint of `network` answers to the endpoint's
/// name or one of its aliases (case-insensitive): one line naming the
/// holder.
pub fn check_names_free(tx: &Tx, network: &Network, name: &str, aliases: &[String]) -> Result<()> {
    for n in std::iter::once(&name.to_string()).chain(aliases) {
        if let Some(holder) = tx.dns_name_holder(network.id, n)? {
            return Err(Error::invalid(format!(
                "name {n:?} is already taken on network {:?} by endpoint {holder:?} (names and aliases are case-insensitive)",
                network.name
            )));
        }
    }
    Ok(())
}

/// The resolv.conf a container gets: `dns` (`--dns`) or berth's server on
/// `gateways` (its network's, one per family: IPv4 first, then IPv6),
/// `search` (`--dns-search`) or the host's search list. Written into the
/// state directory, to be bind-mounted and then removed.
pub fn write_container_resolv(
    state_dir: &Path,
    tag: &str,
    gateways: &[IpAddr],
    dns: &[IpAddr],
    search: &[String],
) -> Result<PathBuf> {
    let host = resolv::ResolvConf::host();
    let text = resolv::container_file(&host, gateways, dns, search);
    let dir = state_dir.join("resolv");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{tag}.conf"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The gateways whose server a namespace should ask (those of its first
/// network with DNS, one per family); empty if it has none.
pub fn gateways_for_netns(state_dir: &Path, inode: u64) -> Result<Vec<IpAddr>> {
    let mut store = Store::open(state_dir)?;
    let tx = store.begin()?;
    tx.dns_gateways_of_netns(inode)
}

/// The aliases of each endpoint, in order (for `network inspect`), read
/// in one query rather than one per endpoint. `store` is read-only, like
/// every view: `network inspect` writes nothing.
pub fn aliases(
    store: &mut Store,
    endpoints: &[crate::model::Endpoint],
) -> Result<Vec<Vec<String>>> {
    let tx = store.read()?;
    let mut all = tx.all_aliases()?;
    Ok(endpoints
        .iter()
        .map(|e| all.remove(&e.id).unwrap_or_default())
        .collect())
}

/// Settings key of the port berth's DNS server listens on (53 unless
/// Podman asked for another with NETAVARK_DNS_PORT).
pub const PORT_SETTING: &str = "dns_port";

/// The port the DNS server listens on, as the state says.
pub fn configured_port(state_dir: &Path) -> u16 {
    let read = || -> Result<Option<u16>> {
        let Some(mut store) = Store::open_read_only(state_dir)? else {
            return Ok(None);
        };
        let tx = store.read()?;
        Ok(tx.setting(PORT_SETTING)?.and_then(|p| p.parse().ok()))
    };
    read().ok().flatten().unwrap_or(53)
}

/// What makes a network's DNS answer on the gateway's port 53 when the
/// server listens on another port: `GATEWAY:53 -> GATEWAY:PORT` over UDP
/// and TCP, as published-port mappings (the same DNAT maps, so no rule
/// changes).
pub fn port_redirects(gateway: Ipv4Addr, port: u16) -> Vec<crate::model::PortMapping> {
    use crate::model::{PortMapping, Proto};
    if port == 53 {
        return Vec::new();
    }
    [Proto::Udp, Proto::Tcp]
        .into_iter()
        .map(|proto| PortMapping {
            host_ip: gateway.into(),
            host_port: 53,
            container_port: port,
            count: 1,
            proto,
        })
        .collect()
}

/// Parses `--dns` values.
pub fn parse_servers(values: &[String]) -> Result<Vec<IpAddr>> {
    values
        .iter()
        .map(|v| {
            v.parse()
                .map_err(|_| Error::invalid(format!("invalid --dns {v:?}: expected an IP address")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_dns_names() {
        assert!(check_aliases("c1", &["backend".into(), "v1.Backend".into()]).is_ok());
        for bad in [
            "",
            "a..b",
            "-x",
            "x-",
            "a b",
            "a/b",
            &"x".repeat(64),
            "x.dns.berth",
        ] {
            assert!(check_aliases("c1", &[bad.to_string()]).is_err(), "{bad:?}");
        }
        assert!(check_aliases("c1", &["C1".into()]).is_err());
        assert!(check_aliases("c1", &["a".into(), "A".into()]).is_err());
    }
}

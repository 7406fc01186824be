//! Published ports on the host's `[::1]`, forwarded in user space.
//!
//! IPv6 has no `route_localnet`: a connection from `::1` DNATed to a
//! container leaves with a loopback source the container must drop (RFC
//! 4291), and its reply, de-NATed back to `::1`, is dropped on the bridge
//! before any hook can help when `bridge-nf-call-ip6tables` is 1 (the
//! default wherever br_netfilter is loaded). So for a mapping on every
//! address (`0.0.0.0`, `::`) or on `::1`, of an endpoint with an IPv6
//! address, berth listens on `[::1]:HOSTPORT` itself and relays to
//! `[CONTAINER]:PORT`: one mechanism in both br_netfilter modes. Every
//! other path keeps its in-kernel DNAT (the firewall's `output` chain
//! leaves `::1` alone so that these sockets get the connections).
//!
//! The listeners live in berth's background server process (`berth
//! dns-server`), whose tokio runtime and control socket already exist and
//! which every connect and disconnect re-syncs, so a connect costs no
//! process start. The process keeps no state: after each sync it reads the
//! mappings from the store ([`Proxy::sync`]) and opens or closes
//! listeners to match; killed, the supervisor starts it again and it
//! reopens them all.
//!
//! - `tcp`: a listener and its relays (`copy_bidirectional`, no thread per
//!   connection).
//! - `udp`: a listener and its flows, one connected socket per client.

mod tcp;
mod udp;

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::model::Proto;
use crate::store::{LoopbackForward, Store};

/// How every warning about a forward begins, so that a front door can tell
/// it from the DNS server's own.
pub const WARNING_PREFIX: &str = "published port ";

/// One host port on `[::1]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub proto: Proto,
    pub port: u16,
}

/// Where one host port goes, and whose it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddrV6,
    pub endpoint: String,
    pub netns_inode: u64,
}

/// Every host port of `rows`, with its target (a range is one per port).
pub fn expand(rows: &[LoopbackForward]) -> Vec<(Key, Target)> {
    rows.iter()
        .flat_map(|r| {
            r.mapping.pairs().map(move |(host, container)| {
                (
                    Key {
                        proto: r.mapping.proto,
                        port: host,
                    },
                    Target {
                        addr: SocketAddrV6::new(r.target, container, 0, 0),
                        endpoint: r.endpoint.clone(),
                        netns_inode: r.netns_inode,
                    },
                )
            })
        })
        .collect()
}

/// What was asked to change (the server's control line).
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    All,
    Netns(u64),
}

/// A relay's destination, shared with its listener task, so that a port
/// that moves to another container keeps its socket.
pub(crate) type Shared = Arc<Mutex<SocketAddr>>;

struct Listener {
    target: Target,
    dest: Shared,
    task: JoinHandle<()>,
}

/// The forwards in force: the rows read (by namespace), the listeners
/// open, and the ports that could not be bound.
#[derive(Default)]
pub struct Proxy {
    rows: HashMap<u64, Vec<LoopbackForward>>,
    listeners: HashMap<Key, Listener>,
    /// Ports held by someone else when last tried, retried on every sync
    /// and by [`Proxy::retry`]; warned about once.
    failed: HashMap<Key, Target>,
    /// Listener tasks aborted but perhaps not yet dropped: an aborted task
    /// lets go of its socket only when the runtime next gets to it, so a
    /// sync waits for them before it answers (a command that freed a port
    /// may publish it again at once, and its check would find it held).
    closing: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Whether nothing is forwarded (and nothing waits for its port).
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty() && self.failed.is_empty()
    }

    /// How many ports are forwarded now.
    pub fn forwarded(&self) -> usize {
        self.listeners.len()
    }

    /// Whether some port waits for its owner to let go of it.
    pub fn has_failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Reads the mappings of `scope` from the state (on the blocking
    /// thread) and matches the listeners to them. Returns the warnings for
    /// ports that could not be bound (each once).
    pub async fn sync(&mut self, dir: &Path, scope: Scope) -> Vec<String> {
        let d = dir.to_path_buf();
        let read = tokio::task::spawn_blocking(move || read(&d, scope)).await;
        let rows = match read {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => return vec![format!("{WARNING_PREFIX}forwards: reading the state: {e}")],
            Err(e) => return vec![format!("{WARNING_PREFIX}forwards: reading the state: {e}")],
        };
        let warnings = match scope {
            Scope::All => {
                self.rows.clear();
                for r in rows {
                    self.rows.entry(r.netns_inode).or_default().push(r);
                }
                self.apply_all()
            }
            Scope::Netns(inode) => self.update_netns(inode, rows),
        };
        for task in std::mem::take(&mut self.closing) {
            // Err(cancelled) once the task and its socket are gone.
            let _ = task.await;
        }
        warnings
    }

    /// Replaces the rows of one namespace and matches only its listeners,
    /// so a connect's sync does not grow with every other endpoint's
    /// mappings.
    fn update_netns(&mut self, inode: u64, rows: Vec<LoopbackForward>) -> Vec<String> {
        let mut before: Vec<Key> = self
            .rows
            .get(&inode)
            .map(|r| expand(r).into_iter().map(|(k, _)| k).collect())
            .unwrap_or_default();
        if rows.is_empty() {
            self.rows.remove(&inode);
        } else {
            self.rows.insert(inode, rows);
        }
        let wanted = self.rows.get(&inode).map(|r| expand(r)).unwrap_or_default();
        before.retain(|k| !wanted.iter().any(|(w, _)| w == k));
        self.close(&before, Some(inode));
        self.open_wanted(wanted)
    }

    /// Tries the ports that were held by someone else again.
    pub fn retry(&mut self) -> Vec<String> {
        // Nobody waits on a retry: forget the tasks already gone.
        self.closing.retain(|task| !task.is_finished());
        self.apply_all()
    }

    /// Matches every listener to every row.
    fn apply_all(&mut self) -> Vec<String> {
        let wanted: HashMap<Key, Target> = self.rows.values().flat_map(|r| expand(r)).collect();
        let gone: Vec<Key> = self
            .listeners
            .keys()
            .chain(self.failed.keys())
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        self.close(&gone, None);
        self.open_wanted(wanted.into_iter().collect())
    }

    /// Closes the listeners of `keys` (and forgets their failures); with
    /// `owner`, only those still forwarding to that namespace (a port may
    /// have moved to another container since).
    fn close(&mut self, keys: &[Key], owner: Option<u64>) {
        let owned = |t: &Target| owner.is_none_or(|inode| t.netns_inode == inode);
        for key in keys {
            if self.listeners.get(key).is_some_and(|l| owned(&l.target)) {
                if let Some(l) = self.listeners.remove(key) {
                    l.task.abort();
                    self.closing.push(l.task);
                }
            }
            if self.failed.get(key).is_some_and(owned) {
                self.failed.remove(key);
            }
        }
    }

    /// Opens (or re-targets) the listener of every wanted port.
    fn open_wanted(&mut self, wanted: Vec<(Key, Target)>) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut order = wanted;
        order.sort_by_key(|(k, _)| *k);
        for (key, target) in order {
            if let Some(l) = self.listeners.get_mut(&key) {
                if l.target != target {
                    *l.dest.lock().unwrap_or_else(|e| e.into_inner()) = target.addr.into();
                    l.target = target;
                }
                continue;
            }
            match open(key, target.addr.into()) {
                Ok((task, dest)) => {
                    if self.failed.remove(&key).is_some() {
                        eprintln!(
                            "berth-dns: {WARNING_PREFIX}{} of {} now forwarded",
                            show(key),
                            target.endpoint
                        );
                    }
                    self.listeners.insert(key, Listener { target, dest, task });
                }
                Err(e) => {
                    let again = self.failed.get(&key) == Some(&target);
                    if !again {
                        warnings.push(format!(
                            "{WARNING_PREFIX}{} of {} does not answer on [::1]: {} ({e}); \
                             it still answers on the host's other addresses, and is \
                             forwarded from [::1] once the port is free",
                            show(key),
                            target.endpoint,
                            if e.kind() == std::io::ErrorKind::AddrInUse {
                                "another process holds that port on [::1]"
                            } else {
                                "cannot listen there"
                            }
                        ));
                    }
                    self.failed.insert(key, target);
                }
            }
        }
        warnings
    }
}

/// `[::1]:PORT/PROTO`.
fn show(key: Key) -> String {
    format!("[::1]:{}/{}", key.port, key.proto.as_str())
}

/// The server's read-only connection for the forwards, kept between syncs.
static STATE: Mutex<Option<Store>> = Mutex::new(None);

fn read(dir: &Path, scope: Scope) -> Result<Vec<LoopbackForward>> {
    let mut slot = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = Store::open_read_only(dir)?;
    }
    let Some(store) = slot.as_mut() else {
        return Ok(Vec::new());
    };
    let rows = store.read().and_then(|tx| match scope {
        Scope::All => tx.loopback_forwards(),
        Scope::Netns(inode) => tx.loopback_forwards_of_netns(inode),
    });
    if rows.is_err() {
        *slot = None;
    }
    rows
}

/// Opens the listener of `key` and starts its task.
fn open(key: Key, dest: SocketAddr) -> std::io::Result<(JoinHandle<()>, Shared)> {
    let dest = Arc::new(Mutex::new(dest));
    let task = match key.proto {
        Proto::Tcp => {
            let s = socket(key.port, Type::STREAM)?;
            s.listen(1024)?;
            let l = tokio::net::TcpListener::from_std(s.into())?;
            tokio::spawn(tcp::serve(l, dest.clone()))
        }
        Proto::Udp => {
            let s = socket(key.port, Type::DGRAM)?;
            let u = tokio::net::UdpSocket::from_std(s.into())?;
            tokio::spawn(udp::serve(u, dest.clone()))
        }
        Proto::Sctp => {
            return Err(std::io::Error::other(
                "SCTP is not forwarded from [::1]".to_string(),
            ))
        }
    };
    Ok((task, dest))
}

/// A socket on `[::1]:port`. IPV6_V6ONLY is implied by the address but set
/// anyway (the wildcard is never used here). SO_REUSEADDR for TCP only, so
/// that a restarted server is not refused by its predecessor's connections
/// in TIME_WAIT; on UDP it would let another socket share the port, and a
/// port someone else holds must be reported, not shared.
fn socket(port: u16, kind: Type) -> std::io::Result<Socket> {
    let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let s = Socket::new(Domain::IPV6, kind, None)?;
    s.set_only_v6(true)?;
    s.set_reuse_address(kind == Type::STREAM)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// How long a relay may wait for the container to accept.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests;

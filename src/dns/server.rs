//! The server process (`berth-dns` or `berth dns-server`): one process,
//! one thread of tokio, UDP and TCP port 53 on every gateway (IPv4 and
//! IPv6) of every network with DNS, and a control socket (`dns.sock` in
//! the state directory) on which berth asks it to reload, and on which the
//! supervisor (see `background`) holds
//! a connection: each of the two starts the other again when that
//! connection ends without a `bye`.
//!
//! It also holds the listeners of published ports on `[::1]`
//! (`portproxy`), matched to the state after every reload.
//!
//! It keeps no state of its own: a reload reads berth's state (read-only,
//! on a blocking thread, so queries keep being answered meanwhile), builds
//! a new [`Table`] and swaps it in; then listeners of new networks are
//! opened and those of removed networks closed, the others untouched.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixListener};
use tokio::task::JoinHandle;

use super::answer::{self, Reply};
use super::batch;
use super::limits::{self, Ceiling, Pool};
use super::memory;
use super::table::{Index, Table};
use super::upstream::{self, Upstreams};
use super::{resolv, PID_FILE, SOCKET};
use crate::error::{Error, Result};
use crate::portproxy::{Proxy, Scope};
use crate::store::{FileLock, Store};

/// How long after the last reload the server lets go of what reloading
/// touched (`memory`).
const SETTLE: Duration = Duration::from_secs(1);
/// How often ports of [::1] held by another process are tried again.
const FORWARD_RETRY: Duration = Duration::from_secs(5);

/// The port the listeners bind: 53, or what the state says
/// (`dns::PORT_SETTING`), read once when the server starts.
static DNS_PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();

fn dns_port() -> u16 {
    *DNS_PORT.get().unwrap_or(&53)
}
/// An idle TCP client is dropped after this.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What every listener shares.
struct Shared {
    table: RwLock<Arc<Table>>,
    upstreams: Upstreams,
    /// The process-wide ceilings; each network's pools draw on them.
    forward_ceiling: Arc<Ceiling>,
    tcp_ceiling: Arc<Ceiling>,
}

/// One network's share of the server: its TCP connections and its
/// forwarded queries in flight, each divided among its clients. A
/// network's gateways (one per family) share it, so a dual-stack network
/// holds no more than an IPv4-only one.
struct Limits {
    tcp: Arc<Pool>,
    forwards: Arc<Pool>,
}

impl Limits {
    fn new(shared: &Shared) -> Arc<Limits> {
        Arc::new(Limits {
            tcp: Pool::new(limits::TCP, shared.tcp_ceiling.clone()),
            forwards: Pool::new(limits::FORWARDS, shared.forward_ceiling.clone()),
        })
    }
}

/// The listeners of one gateway, and the limits of its network.
struct Listening {
    tasks: Vec<JoinHandle<()>>,
    limits: Arc<Limits>,
}

impl Shared {
    fn table(&self) -> Arc<Table> {
        self.table.read().unwrap().clone()
    }
}

/// Runs the server until no network needs it (or, with `stay`, forever).
/// The pidfile is locked for the server's whole life: a second server on
/// the same state waits up to 3 s for it (one may be on its way out) and
/// otherwise exits.
pub fn serve(state_dir: &Path, stay: bool) -> Result<i32> {
    let pidfile = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(state_dir.join(PID_FILE))
        .map_err(|e| Error::Other(format!("opening {}: {e}", PID_FILE)))?;
    // A server on its way out may still hold the lock for a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut pidfile = pidfile;
    let pidfile = loop {
        match FileLock::try_acquire(pidfile)? {
            Ok(lock) => break lock,
            Err(_) if std::time::Instant::now() > deadline => {
                eprintln!("berth-dns: another server runs for {}", state_dir.display());
                return Ok(0);
            }
            Err(back) => {
                pidfile = back;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    pidfile.file().set_len(0)?;
    writeln!(pidfile.file(), "{}", std::process::id())?;
    let _ = DNS_PORT.set(super::configured_port(state_dir));
    let files = raise_file_limit();
    memory::one_arena();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // One thread reads the state during reloads; no pool is needed.
        .max_blocking_threads(1)
        .build()?;
    let dir = state_dir.to_path_buf();
    let result = runtime.block_on(run(dir, stay, files));
    let _ = std::fs::remove_file(state_dir.join(SOCKET));
    drop(pidfile);
    result.map(|_| 0)
}

/// Raises the soft limit of open files to the hard one (every forward and
/// TCP client is a descriptor); returns the limit in force.
fn raise_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

async fn run(dir: PathBuf, stay: bool, files: u64) -> Result<()> {
    let (forwards, tcp) = limits::ceilings(files);
    let shared = Arc::new(Shared {
        table: RwLock::new(Arc::new(Table::default())),
        upstreams: Upstreams::new(resolv::HOST_RESOLV_CONF.into()),
        forward_ceiling: Ceiling::new(forwards),
        tcp_ceiling: Ceiling::new(tcp),
    });
    let mut listeners: HashMap<IpAddr, Listening> = HashMap::new();
    let mut index = Index::default();
    let mut proxy = Proxy::default();
    let mut warnings = reload(&dir, Change::All, &shared, &mut index, &mut listeners).await;
    warnings.extend(proxy.sync(&dir, Change::All.scope()).await);
    for w in &warnings {
        eprintln!("berth-dns: {w}");
    }
    let sock_path = dir.join(SOCKET);
    let _ = std::fs::remove_file(&sock_path);
    let control = UnixListener::bind(&sock_path)
        .map_err(|e| Error::Other(format!("binding {}: {e}", sock_path.display())))?;
    // Everything starting touched is behind; what serving needs comes back.
    memory::drop_idle_pages();
    eprintln!(
        "berth-dns: pid {}, serving {} name(s) on {} network(s) of {}, {} port(s) forwarded from [::1]",
        std::process::id(),
        shared.table().name_count(),
        listeners.len(),
        dir.display(),
        proxy.forwarded()
    );
    // Ports of [::1] that someone else held are tried again now and then,
    // not only when a berth command comes.
    let mut retry = tokio::time::interval(FORWARD_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the last burst of reloads is over: their code and garbage go
    // (see `memory`); a burst of connects pays for this once.
    let mut settle: Option<tokio::time::Instant> = None;
    // The supervisor's end of its connection, kept so that a deliberate
    // exit can say `bye` (a death says nothing, and it starts a new server).
    let mut supervisor: Option<OwnedWriteHalf> = None;
    let exiting = Arc::new(AtomicBool::new(false));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // SIGHUP: read everything again (for a service manager's reload).
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        let conn = tokio::select! {
            c = control.accept() => c,
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let mut warnings = reload(&dir, Change::All, &shared, &mut index, &mut listeners).await;
                warnings.extend(proxy.sync(&dir, Change::All.scope()).await);
                for w in warnings {
                    eprintln!("berth-dns: {w}");
                }
                continue;
            }
            _ = tokio::time::sleep_until(settle.unwrap_or_else(tokio::time::Instant::now)), if settle.is_some() => {
                settle = None;
                // On the blocking thread: reading smaps takes a while, and
                // queries go on meanwhile.
                tokio::task::spawn_blocking(|| {
                    memory::trim();
                    memory::drop_idle_pages();
                });
                continue;
            }
            _ = retry.tick(), if proxy.has_failed() => {
                for w in proxy.retry() {
                    eprintln!("berth-dns: {w}");
                }
                continue;
            }
        };
        let Ok((stream, _)) = conn else { continue };
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        let mut reader = BufReader::new(read);
        let read_line = reader.read_line(&mut line);
        if tokio::time::timeout(Duration::from_secs(2), read_line)
            .await
            .is_err()
        {
            continue;
        }
        if line.trim() == "supervisor" {
            if write.write_all(b"ok\n").await.is_ok() {
                supervisor = Some(write);
                tokio::spawn(watch_supervisor(reader, dir.clone(), exiting.clone()));
            }
            continue;
        }
        let Some(change) = Change::parse(&line) else {
            let _ = write.write_all(b"error: unknown request\n").await;
            continue;
        };
        let mut warnings = reload(&dir, change, &shared, &mut index, &mut listeners).await;
        warnings.extend(proxy.sync(&dir, change.scope()).await);
        settle = Some(tokio::time::Instant::now() + SETTLE);
        let idle = shared.table().is_empty() && proxy.is_empty() && !stay;
        let mut reply = String::from("ok");
        for w in &warnings {
            eprintln!("berth-dns: {w}");
            reply.push_str(&format!("\nwarning: {w}"));
        }
        reply.push('\n');
        if idle {
            // Gone before the ack, so the next berth command starts a
            // fresh server rather than talking to one on its way out.
            let _ = std::fs::remove_file(&sock_path);
        }
        let _ = write.write_all(reply.as_bytes()).await;
        if idle {
            eprintln!("berth-dns: no network needs DNS and no port is forwarded; exiting");
            break;
        }
    }
    exiting.store(true, Ordering::Release);
    if let Some(mut w) = supervisor.take() {
        let _ = w.write_all(b"bye\n").await;
    }
    Ok(())
}

/// Holds the supervisor's connection: when it ends without a `bye`, the
/// supervisor died, and a new one is started (after a tenth of a second,
/// so that whatever killed it in a teardown is done; at most one every 2 s).
async fn watch_supervisor(
    mut reader: BufReader<OwnedReadHalf>,
    dir: PathBuf,
    exiting: Arc<AtomicBool>,
) {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) if line.trim() == "bye" => return,
            Ok(_) => {}
        }
    }
    let mut wait = Duration::from_millis(100);
    if let Some(last) = *LAST.lock().unwrap_or_else(|e| e.into_inner()) {
        wait = wait.max(Duration::from_secs(2).saturating_sub(last.elapsed()));
    }
    tokio::time::sleep(wait).await;
    if exiting.load(Ordering::Acquire) {
        return;
    }
    *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    eprintln!("berth-dns: the supervisor died; starting it again");
    std::thread::spawn(move || {
        if let Err(e) = crate::background::supervise(&dir, 0, None) {
            eprintln!("berth-dns: starting the supervisor: {e}");
        }
    });
}

/// What berth says changed (one line on the control socket).
#[derive(Clone, Copy, Debug)]
enum Change {
    /// `reload`: anything (networks came or went): read everything.
    All,
    /// `netns INODE`: the endpoints of one namespace: read its rows only.
    Netns(u64),
}

impl Change {
    /// The same change, for the forwards of [::1].
    fn scope(self) -> Scope {
        match self {
            Change::All => Scope::All,
            Change::Netns(inode) => Scope::Netns(inode),
        }
    }

    fn parse(line: &str) -> Option<Change> {
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["reload"] => Some(Change::All),
            ["netns", inode] => inode.parse().ok().map(Change::Netns),
            _ => None,
        }
    }
}

/// Reads what changed into a new table (on the blocking thread: queries
/// go on meanwhile), swaps it in and matches the listeners to it. Returns
/// what went wrong, one line each.
async fn reload(
    dir: &Path,
    change: Change,
    shared: &Arc<Shared>,
    index: &mut Index,
    listeners: &mut HashMap<IpAddr, Listening>,
) -> Vec<String> {
    let d = dir.to_path_buf();
    let current = shared.table();
    let taken = std::mem::take(index);
    let started = std::time::Instant::now();
    let loaded = tokio::task::spawn_blocking(move || load(&d, change, &current, taken)).await;
    let took = started.elapsed();
    let table = match loaded {
        Ok((Ok(t), i)) => {
            *index = i;
            Arc::new(t)
        }
        Ok((Err(e), _)) => return vec![format!("reading the state: {e}")],
        Err(e) => return vec![format!("reading the state: {e}")],
    };
    *shared.table.write().unwrap() = table.clone();
    let mut warnings = Vec::new();
    listeners.retain(|gw, l| {
        let keep = table.net(*gw).is_some();
        if !keep {
            for t in l.tasks.iter() {
                t.abort();
            }
        }
        keep
    });
    let gateways: Vec<IpAddr> = table.gateways().copied().collect();
    for gw in &gateways {
        if listeners.contains_key(gw) {
            continue;
        }
        // The limits of the network's other family, if it listens already.
        let limits = table
            .net(*gw)
            .and_then(|n| {
                n.gateways
                    .iter()
                    .find_map(|g| listeners.get(g).map(|l| l.limits.clone()))
            })
            .unwrap_or_else(|| Limits::new(shared));
        match listen(*gw, dns_port(), shared, limits.clone()) {
            Ok((tasks, _)) => {
                listeners.insert(*gw, Listening { tasks, limits });
            }
            Err(e) => warnings.push(format!(
                "cannot listen on {} for network {}: {e}",
                SocketAddr::new(*gw, dns_port()),
                table.net(*gw).map(|n| n.name.as_str()).unwrap_or("?")
            )),
        }
    }
    shared.upstreams.set_own(gateways);
    if took > Duration::from_millis(5) {
        eprintln!(
            "berth-dns: reading {} name(s) took {:.1} ms",
            table.name_count(),
            took.as_secs_f64() * 1000.0
        );
    }
    warnings
}

/// The server's one read-only connection, kept between reloads (its
/// prepared statements and schema with it: reopening cost about a third of
/// a reload with 1000 names). Only the reload thread touches it.
static STATE: std::sync::Mutex<Option<Store>> = std::sync::Mutex::new(None);

/// The next table: `current` updated with one namespace's rows, or built
/// afresh. On failure the index comes back empty, so that the next change
/// rebuilds everything.
fn load(dir: &Path, change: Change, current: &Table, mut index: Index) -> (Result<Table>, Index) {
    let mut slot = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        match Store::open_read_only(dir) {
            Ok(Some(s)) => *slot = Some(s),
            Ok(None) => {
                return (
                    Err(crate::error::Error::Other(format!(
                        "no berth state in {}",
                        dir.display()
                    ))),
                    Index::default(),
                )
            }
            Err(e) => return (Err(e), Index::default()),
        }
    }
    let store = slot.as_mut().expect("just opened");
    let mut read = || -> Result<Table> {
        let tx = store.read()?;
        if let Change::Netns(inode) = change {
            let rows = tx.dns_endpoints_of_netns(inode)?;
            if let Some(next) = current.with_netns(&mut index, inode, &rows) {
                return Ok(next);
            }
        }
        let (table, fresh) = Table::build(&tx.dns_networks()?, &tx.dns_endpoints()?);
        index = fresh;
        Ok(table)
    };
    let table = read();
    store.release_cache();
    if table.is_err() {
        // Opened afresh next time (the file may have been replaced).
        *slot = None;
        return (table, Index::default());
    }
    (table, index)
}

/// A socket on a gateway's port. IP_FREEBIND (IPV6_FREEBIND): the address
/// may not be on the bridge yet (a server started before the networks at
/// boot, or an IPv6 address still tentative). IPV6_V6ONLY, so an IPv6
/// listener never takes its IPv4 family's traffic, whatever
/// `net.ipv6.bindv6only` says, and clients are seen as their own address,
/// never as an IPv4-mapped one. SO_REUSEADDR for TCP only, so a restarted
/// server is not refused by connections in TIME_WAIT; on UDP it would let
/// another socket share (and take) the port.
fn socket(gw: IpAddr, port: u16, kind: Type) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(SocketAddr::new(gw, port)), kind, None)?;
    s.set_reuse_address(kind == Type::STREAM)?;
    match gw {
        IpAddr::V4(_) => s.set_freebind_v4(true)?,
        IpAddr::V6(_) => {
            s.set_only_v6(true)?;
            s.set_freebind_v6(true)?;
        }
    }
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(gw, port).into())?;
    Ok(s)
}

/// The listeners of one network's gateway (either family) on `port`, with
/// its network's limits (kept as long as the listeners: a reload does not
/// reset what clients hold), and the UDP listener's address.
fn listen(
    gw: IpAddr,
    port: u16,
    shared: &Arc<Shared>,
    limits: Arc<Limits>,
) -> std::io::Result<(Vec<JoinHandle<()>>, SocketAddr)> {
    let udp = UdpSocket::from_std(socket(gw, port, Type::DGRAM)?.into())?;
    let bound = udp.local_addr()?;
    // The same port for TCP (`port` 0, in tests, is the one UDP got).
    let tcp = socket(gw, bound.port(), Type::STREAM)?;
    tcp.listen(1024)?;
    let tcp = TcpListener::from_std(tcp.into())?;
    let tasks = vec![
        tokio::spawn(serve_udp(gw, Arc::new(udp), shared.clone(), limits.clone())),
        tokio::spawn(serve_tcp(gw, tcp, shared.clone(), limits)),
    ];
    Ok((tasks, bound))
}

/// The upstream servers of the network served on `gw` (empty: the host's).
fn network_servers(shared: &Shared, gw: IpAddr) -> Vec<SocketAddr> {
    shared
        .table()
        .net(gw)
        .map(|n| n.servers.clone())
        .unwrap_or_default()
}

async fn serve_udp(gw: IpAddr, sock: Arc<UdpSocket>, shared: Arc<Shared>, limits: Arc<Limits>) {
    let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(batch::BATCH);
    loop {
        if sock.readable().await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let table = shared.table();
        let read = sock.try_io(tokio::io::Interest::READABLE, || {
            batch::receive(&*sock, |received| {
                for (packet, peer) in received.iter() {
                    let client = peer.ip();
                    match answer::reply(&table, gw, client, packet) {
                        Reply::Answer(bytes) => replies.push((bytes, peer)),
                        Reply::Ignore => {}
                        Reply::Forward { max_len } => {
                            // Over its share (or its network's): told at
                            // once, and no socket is opened for it.
                            let Ok(slot) = limits.forwards.take(client) else {
                                replies.push((answer::servfail(packet), peer));
                                continue;
                            };
                            let (sock, shared, query) =
                                (sock.clone(), shared.clone(), packet.to_vec());
                            let own = table.net(gw).map(|n| n.servers.clone()).unwrap_or_default();
                            tokio::spawn(async move {
                                let reply =
                                    upstream::forward(&shared.upstreams, &own, &query, max_len)
                                        .await;
                                let _ = sock.send_to(&reply, peer).await;
                                drop(slot);
                            });
                        }
                    }
                }
            })
        });
        drop(table);
        match read {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            // An ICMP error for an earlier reply: not fatal.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            // Anything else (out of memory, say) may repeat: no busy loop.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        let sent = sock
            .try_io(tokio::io::Interest::WRITABLE, || {
                batch::send(&*sock, &replies)
            })
            .unwrap_or(0);
        for (bytes, peer) in &replies[sent..] {
            let _ = sock.send_to(bytes, *peer).await;
        }
        replies.clear();
        // A batch at most, then behind every other listener with a packet
        // waiting.
        tokio::task::yield_now().await;
    }
}

async fn serve_tcp(gw: IpAddr, listener: TcpListener, shared: Arc<Shared>, limits: Arc<Limits>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of file descriptors, say: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let client = peer.ip();
        // Decided from the address alone, before anything is read or any
        // slot taken: a client that may not ask this gateway, or that is
        // over its share, costs one accept and a reset.
        let slot = if shared.table().admits(gw, client) {
            limits.tcp.take(client).ok()
        } else {
            None
        };
        let Some(slot) = slot else {
            // Reset rather than closed: no TIME_WAIT kept for it here.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            continue;
        };
        let (shared, limits) = (shared.clone(), limits.clone());
        tokio::spawn(async move {
            tcp_client(gw, client, stream, shared, limits).await;
            drop(slot);
        });
    }
}

/// One TCP client: length-prefixed queries until it closes or idles.
async fn tcp_client(
    gw: IpAddr,
    client: IpAddr,
    mut stream: TcpStream,
    shared: Arc<Shared>,
    limits: Arc<Limits>,
) {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        let mut query = vec![0u8; len];
        if tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query))
            .await
            .map_or(true, |r| r.is_err())
        {
            return;
        }
        let reply = match answer::reply(&shared.table(), gw, client, &query) {
            Reply::Answer(bytes) => bytes,
            Reply::Ignore => return,
            Reply::Forward { .. } => match limits.forwards.take(client) {
                Ok(slot) => {
                    let own = network_servers(&shared, gw);
                    let reply = upstream::forward(&shared.upstreams, &own, &query, 65535).await;
                    drop(slot);
                    reply
                }
                Err(_) => answer::servfail(&query),
            },
        };
        let mut out = (reply.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&reply);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Ipv6Addr, TcpStream, UdpSocket};

    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};

    use super::*;
    use crate::store::{DnsEndpoint, DnsNetwork};

    /// A server for one network whose IPv6 gateway is ::1 (the host's own
    /// address, so the test's client on ::1 is admitted as the host),
    /// listening on a free port of ::1; its address.
    fn serve_on_loopback(names: &[(&str, &str)]) -> SocketAddr {
        let nets = [DnsNetwork {
            id: 1,
            name: "v6".into(),
            subnet: "fd00:5::/64".parse().unwrap(),
            gateway: IpAddr::V6(Ipv6Addr::LOCALHOST),
            internal: false,
            podman: false,
            servers: vec![],
        }];
        let rows: Vec<DnsEndpoint> = names
            .iter()
            .enumerate()
            .map(|(i, (name, ip))| DnsEndpoint {
                network_id: 1,
                endpoint_id: i as i64,
                name: name.to_string(),
                alias: false,
                ip: ip.parse().unwrap(),
                netns_inode: i as u64,
            })
            .collect();
        let (table, _) = Table::build(&nets, &rows);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let shared = Arc::new(Shared {
                    table: RwLock::new(Arc::new(table)),
                    upstreams: Upstreams::new("/nonexistent/resolv.conf".into()),
                    forward_ceiling: Ceiling::new(64),
                    tcp_ceiling: Ceiling::new(32),
                });
                let limits = Limits::new(&shared);
                let (_tasks, bound) =
                    listen(IpAddr::V6(Ipv6Addr::LOCALHOST), 0, &shared, limits).unwrap();
                tx.send(bound).unwrap();
                std::future::pending::<()>().await;
            });
        });
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0x6666).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn data(m: &Message) -> Vec<String> {
        m.answers().iter().map(|r| r.data().to_string()).collect()
    }

    #[test]
    fn answers_over_udp_and_tcp_on_an_ipv6_gateway() {
        let server = serve_on_loopback(&[("c1", "fd00:5::2"), ("c2", "10.5.0.3")]);
        assert!(server.is_ipv6());
        let udp = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        udp.send_to(&query("c1.", RecordType::AAAA), server)
            .unwrap();
        let mut buf = [0u8; 512];
        let (n, from) = udp.recv_from(&mut buf).unwrap();
        assert_eq!(from, server);
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.id(), 0x6666);
        assert_eq!(data(&m), ["fd00:5::2"]);
        // A name with only an IPv4 address: NODATA for AAAA, over TCP.
        let mut tcp = TcpStream::connect(server).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for (name, t, want) in [
            ("c2.", RecordType::AAAA, vec![]),
            ("c2.", RecordType::A, vec!["10.5.0.3".to_string()]),
        ] {
            let q = query(name, t);
            let mut out = (q.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&q);
            tcp.write_all(&out).unwrap();
            let mut len = [0u8; 2];
            tcp.read_exact(&mut len).unwrap();
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
            tcp.read_exact(&mut reply).unwrap();
            let m = Message::from_vec(&reply).unwrap();
            assert_eq!(m.response_code(), ResponseCode::NoError);
            assert_eq!(data(&m), want, "{name} {t}");
        }
    }

    #[test]
    fn an_ipv6_listener_leaves_the_ipv4_port_to_others() {
        // On the wildcard address, IPV6_V6ONLY is what lets an IPv4
        // socket take the same port.
        let s = socket(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0, Type::DGRAM).unwrap();
        let port = s.local_addr().unwrap().as_socket().unwrap().port();
        assert!(s.only_v6().unwrap());
        UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, port))
            .expect("the IPv4 port is free beside a v6-only listener");
    }
}

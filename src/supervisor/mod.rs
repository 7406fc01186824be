//! The supervisor (`berth supervise`): a small background process, started
//! by berth itself when something needs watching (see `background`), that
//! heals what dies behind berth's back without waiting for the next berth
//! command.
//!
//! - **The DNS server.** The supervisor holds a connection to the server's
//!   control socket. When it ends without the `bye` of a deliberate exit,
//!   the server died: a new one is started a tenth of a second later (later
//!   still while it keeps dying young). The server holds the other end and
//!   starts a new supervisor the same way, so whichever of the two is
//!   killed, the other brings it back; killed together, the next berth
//!   command starts both.
//! - **A killed `run`.** Each sandbox's owner is watched with a pidfd. When
//!   one ends and its sandbox is still recorded, no one else will take it
//!   away.
//! - **A namespace that went** (deleted by hand, or a container's, killed).
//!   Link deletions are heard over rtnetlink. A second after a berth veth
//!   goes, if its endpoint is still recorded as ready, its namespace is
//!   gone and no one tore it down (a runtime, told of the death first,
//!   usually does, and the second leaves it the time to).
//!
//! - **Links waiting to be deleted.** A disconnect does not delete its
//!   veth (that waits for an RCU grace period, ~20 ms): it takes it out of
//!   service into the pending link group and says `pending N` here. The
//!   supervisor deletes the whole group [`BATCH_DELAY`] later, or at once
//!   when [`PENDING_BOUND`] are waiting: one grace period for the batch,
//!   waited for here instead of in the commands. It also deletes any it
//!   finds in its periodic look (a disconnect killed before it said so)
//!   and before it exits.
//!
//! Reclaiming is `berth up`: the `Reconcile` change the preflight uses,
//! through the executor, under the state lock. The supervisor only decides
//! when (`decide`, pure). Every ten seconds it also looks, in case an event
//! was missed. It exits once nothing is left to watch. It is its own front
//! door: what it does goes to `supervisor.log`.

pub mod decide;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::background::{SUPERVISOR_PID, SUPERVISOR_SOCKET};
use crate::change::Outcome;
use crate::commands::maintain;
use crate::context::{Context, Notice};
use crate::error::{Error, Result};
use crate::kernel::watch::{self, LinkEvent, LinkEvents, StopSignals};
use crate::model::names;
use crate::store::{FileLock, Store};
use decide::{Snapshot, Watched};

/// How long a lost veth's endpoint is left to its runtime's own teardown.
const GRACE: Duration = Duration::from_secs(1);
/// How often everything is looked at anyway.
const PERIODIC: Duration = Duration::from_secs(10);
/// How often a supervisor in a private sandbox looks whether the
/// sandbox's owner still runs.
const SANDBOX_CHECK: Duration = Duration::from_secs(1);
/// How long a failed reclaim waits before the next try.
const RETRY: Duration = Duration::from_secs(5);
/// How long links told pending wait, so that a burst of disconnects is
/// deleted in a few requests (each waits one RCU grace period, ~20 ms).
pub const BATCH_DELAY: Duration = Duration::from_millis(50);
/// How many endpoints' links may wait: told this many since the last
/// delete, the supervisor deletes them at once.
const PENDING_BOUND: usize = crate::background::PENDING_BOUND;

/// Runs the supervisor until nothing is left to watch. A second one for
/// the same state waits up to 3 s for the first to go (it may be on its
/// way out) and otherwise leaves it the job.
pub fn serve(state_dir: &Path) -> Result<i32> {
    let Some(_pidfile) = lock_pidfile(state_dir)? else {
        return Ok(0);
    };
    let sock_path = state_dir.join(SUPERVISOR_SOCKET);
    let mut listener = bind(&sock_path)?;
    // Subscribed before the first look, so that no deletion falls between.
    let mut links =
        LinkEvents::open().map_err(|e| Error::kernel("listening for link changes", e))?;
    let stop = StopSignals::open().map_err(|e| Error::kernel("taking SIGTERM", e))?;
    let mut sv = Supervisor {
        dir: state_dir.to_path_buf(),
        owners: HashMap::new(),
        ended: HashSet::new(),
        dns: DnsLink::default(),
        dns_wanted: false,
        store: None,
        check_at: Some(Instant::now()),
        rescan: true,
        next_periodic: Instant::now() + PERIODIC,
        pending: 0,
        delete_at: None,
        held: Vec::new(),
        sandbox_owner: sandbox_owner(),
    };
    log(format!(
        "pid {}, supervising {}",
        std::process::id(),
        state_dir.display()
    ));
    loop {
        if sv.rescan {
            sv.rescan = false;
            match sv.watched() {
                Ok(w) if !w.anything => {
                    if sv.leave(&mut listener, &sock_path)? {
                        return Ok(0);
                    }
                    continue;
                }
                Ok(w) => sv.watch(&w),
                Err(e) => {
                    log(format!("reading the state: {e}"));
                    sv.check_at = Some(Instant::now() + RETRY);
                }
            }
        }
        sv.keep_dns();
        if sv.sandbox_gone() {
            // Killed before it could stop us: nothing can reach this
            // sandbox any more, so its server goes too.
            if let Some(mut conn) = sv.dns.conn.take() {
                let _ = conn.write_all(b"bye\n");
            }
            crate::background::stop_recorded(state_dir, crate::dns::PID_FILE, "dns-server");
            let _ = std::fs::remove_file(&sock_path);
            log("the sandbox's owner is gone; exiting".into());
            return Ok(0);
        }
        if sv.wait_once(&listener, &mut links, &stop)? {
            // Asked to stop: a `bye`, so that the DNS server does not take
            // this for a death and start another.
            if let Some(mut conn) = sv.dns.conn.take() {
                let _ = conn.write_all(b"bye\n");
            }
            let _ = std::fs::remove_file(&sock_path);
            log("stopped by a signal".into());
            return Ok(0);
        }
    }
}

/// The owner of the private sandbox this supervisor runs in, when it
/// runs in one (see `netns::isolate_self`).
fn sandbox_owner() -> Option<(u32, u64)> {
    let pid = std::env::var(crate::kernel::netns::SANDBOX_OWNER_ENV)
        .ok()?
        .parse::<u32>()
        .ok()?;
    // Gone already: no start time matches, so the first look ends us.
    Some((pid, crate::kernel::process::start_time(pid).unwrap_or(0)))
}

/// The pidfile, locked for the supervisor's life; None when another
/// supervisor holds it for more than 3 s.
fn lock_pidfile(state_dir: &Path) -> Result<Option<FileLock>> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(state_dir.join(SUPERVISOR_PID))
        .map_err(|e| Error::Other(format!("opening {SUPERVISOR_PID}: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(3);
    let lock = loop {
        match FileLock::try_acquire(file)? {
            Ok(lock) => break lock,
            Err(_) if Instant::now() > deadline => {
                log("another supervisor runs; leaving it the job".into());
                return Ok(None);
            }
            Err(back) => {
                file = back;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    lock.file().set_len(0)?;
    writeln!(lock.file(), "{}", std::process::id())?;
    Ok(Some(lock))
}

fn bind(path: &Path) -> Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .map_err(|e| Error::Other(format!("binding {}: {e}", path.display())))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// One line of the log, stamped with the time (seconds since the epoch),
/// so that what the supervisor did can be matched with what happened.
fn log(line: String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!("{:.3} berth-supervisor: {line}", now.as_secs_f64());
}

/// The supervisor's connection to the DNS server.
#[derive(Default)]
struct DnsLink {
    conn: Option<UnixStream>,
    /// When the connected server was found running.
    since: Option<Instant>,
    /// When to start a dead server again.
    retry_at: Option<Instant>,
    /// How many times in a row it died young (see `decide::restart_delay`).
    young_deaths: u32,
    /// The server said `bye`: it was stopped on purpose, and is started
    /// again only after a berth command says the state changed.
    stopped: bool,
}

struct Supervisor {
    dir: PathBuf,
    /// The pidfds of the sandboxes' owners, by sandbox name.
    owners: HashMap<String, OwnedFd>,
    /// Sandboxes whose owner has ended (not watched again while recorded).
    ended: HashSet<String>,
    dns: DnsLink,
    dns_wanted: bool,
    /// The state, read-only, kept open between reads.
    store: Option<Store>,
    /// When to look for what is lost.
    check_at: Option<Instant>,
    /// Whether to read the state again.
    rescan: bool,
    next_periodic: Instant,
    /// Endpoints whose links were told pending since the last delete.
    pending: usize,
    /// When to delete the pending link group.
    delete_at: Option<Instant>,
    /// nf_tables sockets commands handed over to be closed here.
    held: Vec<OwnedFd>,
    /// In a private sandbox of `bench` or `demo`: its owner (PID and
    /// start time), looked at every second.
    sandbox_owner: Option<(u32, u64)>,
}

impl Supervisor {
    /// Reads the state (read-only, through the connection kept between
    /// reads: opening one costs more than the queries).
    fn read<T>(&mut self, f: impl FnOnce(&crate::store::Tx) -> Result<T>) -> Result<Option<T>> {
        if self.store.is_none() {
            self.store = Store::open_read_only(&self.dir)?;
        }
        let Some(store) = self.store.as_mut() else {
            return Ok(None);
        };
        let result = store.read().and_then(|tx| f(&tx));
        if result.is_err() {
            // Opened afresh next time (the file may have been replaced).
            self.store = None;
        }
        result.map(Some)
    }

    fn watched(&mut self) -> Result<Watched> {
        let w = self.read(|tx| {
            Ok(Watched {
                sandboxes: tx.sandboxes()?,
                dns_networks: tx.dns_network_count()?,
                loopback_forwards: tx.has_loopback_forwards()?,
                anything: tx.anything_to_watch()?,
            })
        })?;
        Ok(w.unwrap_or_default())
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        let s = self.read(|tx| {
            Ok(Snapshot {
                sandboxes: tx.sandboxes()?,
                endpoints: tx.endpoints_with_status()?,
            })
        })?;
        Ok(s.unwrap_or_default())
    }

    /// Watches the owners of the sandboxes now recorded, and lets go of
    /// those of sandboxes gone. An owner that has ended already makes a
    /// look due at once.
    fn watch(&mut self, snap: &Watched) {
        let names: HashSet<&str> = snap.sandboxes.iter().map(|s| s.name.as_str()).collect();
        self.owners.retain(|name, _| names.contains(name.as_str()));
        self.ended.retain(|name| names.contains(name.as_str()));
        for s in &snap.sandboxes {
            if self.owners.contains_key(&s.name) || self.ended.contains(&s.name) {
                continue;
            }
            match watch::watch_process(s.owner_pid, s.owner_start) {
                Ok(Some(fd)) => {
                    self.owners.insert(s.name.clone(), fd);
                }
                Ok(None) => {
                    self.ended.insert(s.name.clone());
                    self.check_at = Some(Instant::now());
                }
                Err(e) => {
                    log(format!("watching pid {}: {e}", s.owner_pid));
                    self.check_at = Some(Instant::now() + RETRY);
                }
            }
        }
        self.dns_wanted = snap.dns_networks > 0 || snap.loopback_forwards;
    }

    /// Whether this supervisor's sandbox lost its owner (a sandbox whose
    /// owner was already gone when this started counts as lost).
    fn sandbox_gone(&self) -> bool {
        self.sandbox_owner
            .is_some_and(|(pid, start)| !crate::kernel::process::alive(pid, start))
    }

    /// Nothing is left to watch: gone, unless the state changed meanwhile
    /// (the socket is taken away first, so a command that comes after
    /// starts a new supervisor, and one that came before is seen here).
    fn leave(&mut self, listener: &mut UnixListener, sock_path: &Path) -> Result<bool> {
        let _ = std::fs::remove_file(sock_path);
        // Whatever was told pending before the socket went is in the group
        // by now (a command tells after it took its links out).
        self.delete_pending();
        if self.watched().is_ok_and(|w| !w.anything) {
            if let Some(mut conn) = self.dns.conn.take() {
                let _ = conn.write_all(b"bye\n");
            }
            log("nothing left to watch; exiting".into());
            return Ok(true);
        }
        *listener = bind(sock_path)?;
        self.rescan = true;
        Ok(false)
    }

    /// Makes sure the supervisor is connected to a running DNS server when
    /// a network has DNS, starting one when it is due.
    fn keep_dns(&mut self) {
        let now = Instant::now();
        if !self.dns_wanted || self.dns.conn.is_some() || self.dns.stopped {
            return;
        }
        if self.dns.retry_at.is_some_and(|t| t > now) {
            return;
        }
        self.dns.retry_at = None;
        let conn = match connect_dns(&self.dir) {
            Ok(Some(c)) => Some(c),
            Ok(None) => {
                // None runs: start it (crate::dns::sync starts it only
                // when a network still needs it).
                match crate::dns::sync(&self.dir) {
                    Ok(warnings) => {
                        log("started the DNS server".into());
                        for w in warnings {
                            log(format!("DNS: {w}"));
                        }
                    }
                    Err(e) => log(format!("starting the DNS server: {e}")),
                }
                connect_dns(&self.dir).ok().flatten()
            }
            Err(e) => {
                log(format!("DNS server: {e}"));
                None
            }
        };
        match conn {
            Some(c) => {
                self.dns.conn = Some(c);
                self.dns.since = Some(Instant::now());
            }
            None => {
                let (delay, deaths) = decide::restart_delay(Duration::ZERO, self.dns.young_deaths);
                self.dns.young_deaths = deaths;
                self.dns.retry_at = Some(Instant::now() + delay);
            }
        }
    }

    /// Waits for the next event (or the next thing due) and handles it;
    /// true when a stop signal came.
    fn wait_once(
        &mut self,
        listener: &UnixListener,
        links: &mut LinkEvents,
        stop: &StopSignals,
    ) -> Result<bool> {
        let now = Instant::now();
        let mut due = self.next_periodic;
        if let Some(t) = self.check_at {
            due = due.min(t);
        }
        if let Some(t) = self.dns.retry_at {
            due = due.min(t);
        }
        if let Some(t) = self.delete_at {
            due = due.min(t);
        }
        if self.sandbox_owner.is_some() {
            due = due.min(now + SANDBOX_CHECK);
        }
        let names: Vec<String> = self.owners.keys().cloned().collect();
        let ready = {
            let mut fds: Vec<BorrowedFd<'_>> = vec![stop.as_fd(), listener.as_fd(), links.as_fd()];
            if let Some(c) = &self.dns.conn {
                fds.push(c.as_fd());
            }
            fds.extend(names.iter().map(|n| self.owners[n].as_fd()));
            watch::wait_readable(&fds, due.saturating_duration_since(now))
                .map_err(|e| Error::kernel("waiting for events", e))?
        };
        let mut ready = ready.into_iter();
        if ready.next() == Some(true) && stop.arrived() {
            return Ok(true);
        }
        if ready.next() == Some(true) {
            self.read_pokes(listener);
        }
        if ready.next() == Some(true) {
            self.read_links(links)?;
        }
        if self.dns.conn.is_some() && ready.next() == Some(true) {
            self.read_dns();
        }
        for (name, r) in names.iter().zip(ready) {
            if r {
                // Its owner ended: if it took the sandbox away, the look
                // finds nothing to do.
                self.owners.remove(name);
                self.ended.insert(name.clone());
                self.check_at = Some(Instant::now());
                self.rescan = true;
            }
        }
        let now = Instant::now();
        if now >= self.next_periodic {
            self.next_periodic = now + PERIODIC;
            self.check_at = Some(now);
            self.rescan = true;
        }
        if self.delete_at.is_some_and(|t| t <= now) {
            self.delete_pending();
        }
        if self.check_at.is_some_and(|t| t <= now) {
            self.check_at = None;
            self.reclaim();
        }
        Ok(false)
    }

    /// Berth commands say `changed`: read the state again.
    fn read_pokes(&mut self, listener: &UnixListener) {
        while let Ok((stream, _)) = listener.accept() {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
            let (line, fds) = receive(&stream);
            if !fds.is_empty() {
                // Closed with the next delete of the pending group, by
                // when what their batches deleted is usually freed.
                self.held.extend(fds);
                let at = Instant::now() + BATCH_DELAY;
                self.delete_at = Some(self.delete_at.map_or(at, |t| t.min(at)));
            }
            if let Some(n) = decide::pending_told(&line) {
                self.pending += n;
                let at = if self.pending >= PENDING_BOUND {
                    Instant::now()
                } else {
                    Instant::now() + BATCH_DELAY
                };
                self.delete_at = Some(self.delete_at.map_or(at, |t| t.min(at)));
            }
            self.rescan = true;
            // A command ran: a server stopped on purpose may be wanted again.
            self.dns.stopped = false;
        }
    }

    fn read_links(&mut self, links: &mut LinkEvents) -> Result<()> {
        let events = links
            .read()
            .map_err(|e| Error::kernel("reading link changes", e))?;
        let now = Instant::now();
        for event in events {
            let at = match event {
                LinkEvent::Deleted { name, .. } if names::is_host_veth_name(&name) => now + GRACE,
                LinkEvent::Deleted { .. } => continue,
                LinkEvent::Lost => now,
            };
            self.check_at = Some(self.check_at.map_or(at, |t| t.min(at)));
        }
        Ok(())
    }

    /// The server spoke, or its end of the connection closed.
    fn read_dns(&mut self) {
        let Some(conn) = self.dns.conn.as_mut() else {
            return;
        };
        let mut buf = [0u8; 64];
        let said = match conn.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(_) => None,
        };
        self.dns.conn = None;
        if said.as_deref().is_some_and(|s| s.contains("bye")) {
            log("the DNS server stopped on purpose".into());
            self.dns.stopped = true;
            return;
        }
        let ran = self.dns.since.map_or(Duration::ZERO, |s| s.elapsed());
        let (delay, deaths) = decide::restart_delay(ran, self.dns.young_deaths);
        self.dns.young_deaths = deaths;
        self.dns.retry_at = Some(Instant::now() + delay);
        log(format!(
            "the DNS server died after {:.1} s; starting it again in {} ms",
            ran.as_secs_f64(),
            delay.as_millis()
        ));
        // Its networks may have gone with a command that killed it.
        self.rescan = true;
    }

    /// Deletes the pending link group in one request (nothing to do when
    /// it is empty: the kernel says so at once). No state lock: only
    /// links no row names any more are in the group.
    fn delete_pending(&mut self) {
        self.delete_at = None;
        self.held.clear();
        let told = std::mem::take(&mut self.pending);
        let started = Instant::now();
        crate::background::pending_deleted(&self.dir);
        let mut kernel = crate::kernel::LiveKernel::new();
        use crate::kernel::Kernel;
        match kernel.delete_link_group(names::PENDING_GROUP) {
            Ok(()) if told > 0 => log(format!(
                "deleted the pending links of {told} disconnect(s) in {:.1} ms",
                started.elapsed().as_secs_f64() * 1e3
            )),
            Ok(()) => {}
            Err(e) => {
                log(format!("deleting the pending links: {e}"));
                self.pending = told;
                self.delete_at = Some(Instant::now() + RETRY);
            }
        }
    }

    /// Looks for what is lost and, if anything is, reconciles.
    fn reclaim(&mut self) {
        let snap = match self.snapshot() {
            Ok(s) => s,
            Err(e) => {
                log(format!("reading the state: {e}"));
                self.check_at = Some(Instant::now() + RETRY);
                return;
            }
        };
        let mut ctx = Context::new(self.dir.clone(), false);
        let links: HashSet<String> = match ctx.kernel.links() {
            Ok(l) => {
                // Left by a disconnect that was killed before it told.
                if l.iter().any(|l| l.group == names::PENDING_GROUP) {
                    self.delete_at = Some(Instant::now());
                }
                l.into_iter().map(|l| l.name).collect()
            }
            Err(e) => {
                log(format!("{e}"));
                self.check_at = Some(Instant::now() + RETRY);
                return;
            }
        };
        let lost = decide::lost(&snap, &links, |s| {
            ctx.kernel.process_alive(s.owner_pid, s.owner_start)
        });
        if lost.is_empty() {
            return;
        }
        for l in &lost {
            log(l.clone());
        }
        match maintain::up(&mut ctx) {
            Ok(Outcome::Done(lines)) => {
                for l in lines {
                    log(format!("reconciled: {l}"));
                }
            }
            Ok(Outcome::Planned(_)) => {}
            Err(e) => {
                log(format!("reconciling: {e}"));
                self.check_at = Some(Instant::now() + RETRY);
            }
        }
        for notice in ctx.take_notices() {
            match notice {
                Notice::Warning(w) => log(format!("warning: {w}")),
                Notice::Repaired { reason, lines } => log(format!("{reason}: {lines:?}")),
            }
        }
        self.rescan = true;
    }
}

/// A command's line, and the descriptors that came with it (nf_tables
/// sockets for this process to close).
fn receive(stream: &UnixStream) -> (String, Vec<OwnedFd>) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd, RawFd};
    let mut buf = [0u8; 128];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let Ok(msg) = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    ) else {
        return (String::new(), Vec::new());
    };
    let mut fds = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: SCM_RIGHTS gave this process these descriptors.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
    }
    let n = msg.bytes;
    (String::from_utf8_lossy(&buf[..n]).into_owned(), fds)
}

/// Connects to the DNS server's control socket as its supervisor; None
/// when no server listens.
fn connect_dns(dir: &Path) -> Result<Option<UnixStream>> {
    let path = dir.join(crate::dns::SOCKET);
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(None)
        }
        Err(e) => return Err(Error::Other(format!("{}: {e}", path.display()))),
    };
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"supervisor\n")?;
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone()?);
    match reader.read_line(&mut line) {
        Ok(_) if line.trim() == "ok" => {}
        // On its way out, or an older server that does not know us.
        _ => return Ok(None),
    }
    stream.set_nonblocking(true)?;
    Ok(Some(stream))
}

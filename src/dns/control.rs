//! berth's side of the server's life: [`sync`] makes the running server
//! match the state now. It starts the server when a network needs DNS and
//! none answers on `dns.sock` (it never started, or it died), asks a live
//! one to reload and waits for its ack (so a name resolves as soon as
//! `connect` returns), and lets it exit when no network needs it. The
//! same process holds the `[::1]` listeners of published ports, so a
//! forwarded port needs it as much as a network with DNS.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{LOCK_FILE, LOG_FILE, PID_FILE, SOCKET};
use crate::background;
use crate::error::{Error, Result};
use crate::store::{FileLock, Store};

/// How long a reload may take before the server is deemed hung.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a fresh server may take to open its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(5);

enum Notify {
    /// The server reloaded; its warnings, one line each.
    Done(Vec<String>),
    /// Nothing listens on the socket.
    NotRunning,
}

/// Makes the server match the state: start, restart, reload or let it go.
/// Concurrent berth processes take turns (a lock file), so only one starts
/// a server.
/// Returns the server's warnings, one line each.
pub fn sync(state_dir: &Path) -> Result<Vec<String>> {
    sync_with(state_dir, "reload")
}

/// [`sync`] after a change to one namespace's endpoints only (connect,
/// disconnect): the server re-reads that namespace's rows alone.
pub fn sync_netns(state_dir: &Path, inode: u64) -> Result<Vec<String>> {
    sync_with(state_dir, &format!("netns {inode}"))
}

fn sync_with(state_dir: &Path, request: &str) -> Result<Vec<String>> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state_dir.join(LOCK_FILE))
        .map_err(|e| Error::Other(format!("opening {LOCK_FILE}: {e}")))?;
    let _lock =
        FileLock::acquire(lock).map_err(|e| Error::Other(format!("locking {LOCK_FILE}: {e}")))?;
    // A running server decides for itself whether it is still needed (it
    // exits after a reload that finds no DNS network), so the state is
    // read here only when none runs.
    let mut warnings = Vec::new();
    let reply = notify(state_dir, request, &mut warnings)?;
    let server = match reply {
        Notify::Done(w) => w,
        Notify::NotRunning if !needed(state_dir)? => return Ok(warnings),
        Notify::NotRunning => {
            start(state_dir)?;
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                match notify(state_dir, request, &mut warnings)? {
                    Notify::Done(w) => break w,
                    Notify::NotRunning if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Notify::NotRunning => {
                        return Err(Error::Other(format!(
                            "the DNS server did not start; see {}",
                            state_dir.join(LOG_FILE).display()
                        )))
                    }
                }
            }
        }
    };
    warnings.extend(server);
    Ok(warnings)
}

/// Whether some network has DNS, or some published port is forwarded
/// from `[::1]` (the same process holds those listeners).
fn needed(state_dir: &Path) -> Result<bool> {
    // Read-only: no pragmas, no schema check, no write lock (the caller's
    // command has just committed and migrated).
    let Some(mut store) = Store::open_read_only(state_dir)? else {
        return Ok(false);
    };
    let tx = store.read()?;
    Ok(tx.dns_network_count()? > 0 || tx.has_loopback_forwards()?)
}

/// Asks the server to reload and waits for its ack.
fn notify(state_dir: &Path, request: &str, warnings: &mut Vec<String>) -> Result<Notify> {
    let path = state_dir.join(SOCKET);
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(Notify::NotRunning)
        }
        Err(e) => return Err(Error::Other(format!("{}: {e}", path.display()))),
    };
    stream.set_read_timeout(Some(ACK_TIMEOUT))?;
    let talk = |stream: &mut UnixStream| -> std::io::Result<Vec<String>> {
        stream.write_all(format!("{request}\n").as_bytes())?;
        let mut lines = BufReader::new(stream).lines();
        let first = lines.next().transpose()?.unwrap_or_default();
        if first != "ok" {
            return Err(std::io::Error::other(format!("unexpected reply {first:?}")));
        }
        Ok(lines
            .map_while(|l| l.ok())
            .filter_map(|l| l.strip_prefix("warning: ").map(str::to_string))
            .collect())
    };
    match talk(&mut stream) {
        Ok(w) => Ok(Notify::Done(w)),
        // It died in between: the caller starts a new one.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof || e.kind() == ErrorKind::BrokenPipe => {
            Ok(Notify::NotRunning)
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            // Hung: end it (by the PID it recorded) so a fresh one takes over.
            warnings.extend(kill_recorded(state_dir));
            let _ = std::fs::remove_file(&path);
            Ok(Notify::NotRunning)
        }
        Err(e) => Err(Error::Other(format!("DNS server: {e}"))),
    }
}

fn kill_recorded(state_dir: &Path) -> Option<String> {
    let pid = std::fs::read_to_string(state_dir.join(PID_FILE))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok());
    // Only a berth DNS server: never a process that took a stale PID.
    let ours = |pid: &i32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            c.split(|b| *b == 0)
                .any(|arg| arg == background::DNS_SUBCOMMAND.as_bytes())
        })
    };
    let pid = pid.filter(|p| *p > 1).filter(ours)?;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    Some(format!(
        "DNS server (pid {pid}) does not answer; restarting it"
    ))
}

/// Starts the server detached (see [`background::spawn_detached`]).
fn start(state_dir: &Path) -> Result<()> {
    background::spawn_detached(state_dir, background::DNS_SUBCOMMAND, LOG_FILE)
}

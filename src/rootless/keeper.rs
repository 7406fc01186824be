//! The keeper of a user's rootless networks (`berth rootless-keeper`, a
//! detached process of the user's, one per `$XDG_RUNTIME_DIR/berth`).
//!
//! It owns the two things that make the user's namespace reachable and
//! that no command can own, since commands end:
//!
//! - the **holder**, a child in the user's own user, network and mount
//!   namespaces (`kernel::userns::fork_holder`), in whose network namespace
//!   the user's bridges live, as Podman's rootless-netns holds them;
//! - **pasta**, the one link from that namespace to the outside: its
//!   `--config-net` interface carries the user's containers' traffic out
//!   (masqueraded by berth's own rules), and every port the user's
//!   endpoints publish is forwarded by pasta from the host to the same port
//!   of that namespace, where berth's DNAT takes it to the container. The
//!   client's address survives both: pasta's tap path writes the client's
//!   own address, and a DNAT keeps the source.
//!
//! The pasta of Debian 12 cannot change its forwarded ports while running
//! (`-t auto` only looks at start), so when the published ports change the
//! keeper starts pasta again with the new set; connections through pasta
//! at that moment are lost (a known limit, README).
//!
//! Crash safety: the holder and pasta die with the keeper
//! (PR_SET_PDEATHSIG). The next command then finds no live keeper, starts
//! one, and the new namespace's identity differs from the recorded one, so
//! berth's preflight rebuilds the user's networks as after a reboot. What
//! still ran in the old namespace (the DNS server, the supervisor, `run`
//! commands) is ended first, found by the old namespace's inode.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::net::{self, Helper};
use crate::error::{Error, Result};
use crate::kernel::userns;
use crate::model::{PortSpec, Proto};
use crate::store::{self, Store};

/// The hidden subcommand that runs the keeper.
pub const KEEPER_COMMAND: &str = "rootless-keeper";
/// Where the keeper says who it is, in the user's state directory.
pub const KEEPER_FILE: &str = "keeper.json";
/// Held by the live keeper for its whole life.
const KEEPER_LOCK: &str = "keeper.lock";
/// Its log.
pub const KEEPER_LOG: &str = "keeper.log";
/// How often the keeper looks at its children and the state.
const TICK: Duration = Duration::from_millis(100);
/// How often a pasta that could not start is tried again.
const RETRY: Duration = Duration::from_secs(10);

/// Whether the user's state holds no network.
pub fn no_networks(dir: &Path) -> bool {
    matches!(published(dir), Ok((_, 0)))
}

/// What `keeper.json` records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeeperInfo {
    pub keeper: i32,
    pub holder: i32,
    /// The inode of the holder's network namespace: a PID can be reused,
    /// the pair cannot be mistaken.
    pub netns_inode: u64,
}

impl KeeperInfo {
    /// The recorded keeper, if its holder is still the one recorded.
    pub fn live(dir: &Path) -> Option<KeeperInfo> {
        let text = std::fs::read_to_string(dir.join(KEEPER_FILE)).ok()?;
        let info: KeeperInfo = serde_json::from_str(&text).ok()?;
        (netns_inode(info.holder) == Some(info.netns_inode)).then_some(info)
    }

    fn read(dir: &Path) -> Option<KeeperInfo> {
        let text = std::fs::read_to_string(dir.join(KEEPER_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(format!("{KEEPER_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_string(self).expect("plain struct"))?;
        std::fs::rename(&tmp, dir.join(KEEPER_FILE))?;
        Ok(())
    }
}

/// The inode of `/proc/PID/ns/net`, if that process exists and is ours.
pub fn netns_inode(pid: i32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}

fn log(line: &str) {
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    eprintln!("{stamp:.3} {line}");
}

/// The host ports the user's endpoints publish, as pasta forwards them:
/// each host port to the same port of the user's namespace.
fn published(dir: &Path) -> Result<(BTreeSet<PortKey>, usize)> {
    let Some(mut store) = Store::open_read_only(dir)? else {
        return Ok((BTreeSet::new(), 0));
    };
    let tx = store.read()?;
    let networks = tx.networks()?.len();
    let mut endpoints = tx.endpoints(None)?;
    tx.load_ports(&mut endpoints)?;
    let ports = endpoints
        .iter()
        .flat_map(|e| e.ports.iter())
        .map(|p| PortKey {
            host_ip: p.host_ip,
            host_port: p.host_port,
            count: p.count,
            tcp: p.proto == Proto::Tcp,
        })
        .collect();
    Ok((ports, networks))
}

/// One forwarded port or range, ordered so that sets compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    host_ip: std::net::IpAddr,
    host_port: u16,
    count: u16,
    tcp: bool,
}

impl PortKey {
    fn spec(self) -> PortSpec {
        PortSpec {
            host_ip: self.host_ip,
            host_port: Some(self.host_port),
            container_port: self.host_port,
            count: self.count,
            proto: if self.tcp { Proto::Tcp } else { Proto::Udp },
        }
    }
}

/// The modification times of the state database and its WAL: what moves
/// when a command commits.
fn state_stamp(dir: &Path) -> Vec<Option<SystemTime>> {
    ["berth.db", "berth.db-wal"]
        .iter()
        .map(|f| {
            std::fs::metadata(dir.join(f))
                .and_then(|m| m.modified())
                .ok()
        })
        .collect()
}

/// Ends every process of this user whose network namespace is the one
/// with `inode` (what ran in a namespace whose keeper is gone).
pub fn end_processes_in(inode: u64) {
    let me = nix::unistd::getuid().as_raw();
    let own = std::process::id() as i32;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if meta.uid() != me {
            continue;
        }
        if netns_inode(pid) == Some(inode) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// `berth rootless-keeper`: runs until the holder dies, or SIGTERM when
/// the user has no network left (sent by the command that removed the
/// last one: the keeper cannot tell a command's end from inside), or
/// SIGINT.
pub fn keep(dir: &Path) -> Result<i32> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(KEEPER_LOCK))?;
    let _lock = match store::lock::FileLock::try_acquire(lock)? {
        Ok(l) => l,
        Err(_) => {
            log("another keeper runs; exiting");
            return Ok(0);
        }
    };
    if let Some(old) = KeeperInfo::read(dir) {
        log(&format!(
            "the namespace {} lost its keeper; ending what ran in it",
            old.netns_inode
        ));
        end_processes_in(old.netns_inode);
    }
    let mut stop = nix::sys::signal::SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stop.add(s);
    }
    stop.thread_block()
        .map_err(|e| Error::Other(e.to_string()))?;

    let (resolv, dns_extra) = net::dns_for(Some(Helper::Pasta), &[], &[]);
    // Single-threaded here, as fork_holder needs.
    let mut holder = userns::fork_holder(resolv)?;
    let holder_pid = holder.pid();
    let inode = netns_inode(holder_pid.as_raw())
        .ok_or_else(|| Error::Other("the holder vanished".into()))?;
    let (mut ports, _) = published(dir)?;
    let specs = |p: &BTreeSet<PortKey>| p.iter().map(|k| k.spec()).collect::<Vec<_>>();
    // Without pasta (a host with no route out: pasta finds no interface to
    // copy) the user's networks still work among themselves; pasta is
    // tried again when the state changes and every 10 s.
    let mut pasta = match net::start(Helper::Pasta, holder_pid, &specs(&ports), &dns_extra) {
        Ok(p) => {
            pace_link(&mut holder);
            Some(p)
        }
        Err(e) => {
            log(&format!("no link to the outside for now: {e}"));
            None
        }
    };
    KeeperInfo {
        keeper: std::process::id() as i32,
        holder: holder_pid.as_raw(),
        netns_inode: inode,
    }
    .write(dir)?;
    log(&format!(
        "holder {holder_pid} (netns {inode}), pasta forwarding {} port(s)",
        ports.len()
    ));

    let mut stamp = state_stamp(dir);
    let mut last_start = Instant::now();
    let why_end = loop {
        match wait_signal(&stop, TICK) {
            Some(Signal::SIGHUP) => stamp.clear(),
            Some(Signal::SIGTERM) => {
                // Sent by a command that left no network: it ends the
                // keeper only if that still holds once no command runs.
                let _running = store::lock::StateLock::acquire(dir)?;
                match published(dir) {
                    Ok((_, 0)) => break "no network left".to_string(),
                    Ok(_) => log("asked to end with networks left; going on"),
                    Err(e) => log(&format!("reading the state: {e}")),
                }
            }
            Some(sig) => break format!("{sig}"),
            None => {}
        }
        match waitpid(holder_pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            other => break format!("the holder ended ({other:?})"),
        }
        let now = state_stamp(dir);
        let changed = now != stamp;
        stamp = now;
        let down = pasta.as_mut().is_none_or(|p| !p.running());
        // A pasta that died is started again at once the first time, then
        // at most every RETRY.
        let retry = down && (pasta.is_some() || last_start.elapsed() >= RETRY);
        if !changed && !retry {
            continue;
        }
        let (want, _) = match published(dir) {
            Ok(p) => p,
            Err(e) => {
                log(&format!("reading the state: {e}"));
                continue;
            }
        };
        if want == ports && !retry {
            continue;
        }
        if let Some(p) = pasta.take() {
            p.stop();
        }
        last_start = Instant::now();
        ports = want;
        match net::start(Helper::Pasta, holder_pid, &specs(&ports), &dns_extra) {
            Ok(p) => {
                pace_link(&mut holder);
                log(&format!(
                    "pasta {} forwarding {} port(s)",
                    if down { "started again," } else { "restarted," },
                    ports.len()
                ));
                pasta = Some(p);
            }
            Err(e) => log(&format!("starting pasta: {e}")),
        }
    };
    log(&format!("ending: {why_end}"));
    if let Some(p) = pasta.take() {
        p.stop();
    }
    let _ = kill(holder_pid, Signal::SIGKILL);
    let _ = waitpid(holder_pid, None);
    end_processes_in(inode);
    let _ = std::fs::remove_file(dir.join(KEEPER_FILE));
    Ok(0)
}

/// Paces what the namespace sends to pasta (`pace.rs`); without it (a
/// kernel without `tbf`) the user's networks work as before, with pasta's
/// upload losses.
fn pace_link(holder: &mut userns::Holder) {
    match super::pace::pace(holder) {
        Ok(()) => log(&format!(
            "pasta's link paced at {}",
            crate::model::bandwidth::format_rate(super::pace::LIMIT.rate)
        )),
        Err(e) => log(&format!("pasta's link not paced: {e}")),
    }
}

/// Waits up to `timeout` for one of `set` (blocked); None on timeout.
fn wait_signal(set: &nix::sys::signal::SigSet, timeout: Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a plain system call on a valid set and timespec.
    let n = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    if n > 0 {
        Signal::try_from(n).ok()
    } else {
        None
    }
}

/// The user's rootless state directory: `$XDG_RUNTIME_DIR/berth`.
pub fn rootless_dir() -> Option<PathBuf> {
    let rt = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)?;
    (rt.is_absolute() && rt.is_dir()).then(|| rt.join("berth"))
}

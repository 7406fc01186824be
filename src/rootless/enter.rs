//! Commands of an ordinary user that work on the user's rootless networks:
//! berth runs itself again inside the user's namespaces (those of the
//! keeper's holder, started first if none runs), where the user is root
//! over the user's own network namespace, with the state in
//! `$XDG_RUNTIME_DIR/berth`. Every rule of berth (the lock, the intents,
//! the preflight, the reconcile) then applies there unchanged.

use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

use super::keeper::{self, KeeperInfo};
use crate::error::{Error, Result};
use crate::kernel::userns;
use crate::store;

/// How long a new keeper may take to have its namespace ready.
const KEEPER_TIMEOUT: Duration = Duration::from_secs(10);

/// The signals passed on to the berth inside.
const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// The user's rootless state directory, made (0700) if missing; an error
/// naming what is wrong when there is no `$XDG_RUNTIME_DIR`.
pub fn state_dir(words: &str) -> Result<std::path::PathBuf> {
    let Some(dir) = keeper::rootless_dir() else {
        return Err(Error::Privilege(format!(
            "`berth {words}` needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), or \
             $XDG_RUNTIME_DIR (set by a login session) for the user's rootless \
             networks; without either, `berth run [-p HOST:CTR] -- CMD` gives a \
             command a network namespace of its own"
        )));
    };
    if !dir.is_dir() {
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// The live keeper of `dir`, started first when there is none.
fn ensure_keeper(dir: &Path) -> Result<KeeperInfo> {
    if let Some(info) = KeeperInfo::live(dir) {
        return Ok(info);
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("keeper-start.lock"))?;
    let _lock = store::lock::FileLock::acquire(lock)?;
    if let Some(info) = KeeperInfo::live(dir) {
        return Ok(info);
    }
    crate::background::spawn_detached(dir, keeper::KEEPER_COMMAND, keeper::KEEPER_LOG)?;
    let deadline = Instant::now() + KEEPER_TIMEOUT;
    loop {
        if let Some(info) = KeeperInfo::live(dir) {
            return Ok(info);
        }
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(dir.join(keeper::KEEPER_LOG)).unwrap_or_default();
            let last = log.lines().last().unwrap_or("").to_string();
            return Err(Error::Other(format!(
                "the user's network namespace did not start in 10 s ({}: {last})",
                dir.join(keeper::KEEPER_LOG).display()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs this berth command line (`args`, program name first) inside the
/// user's namespaces and returns its exit code. With `start` false and no
/// keeper running (a read-only command), runs it here on the user's state
/// instead (`None`: the caller goes on with `dir` as its state directory).
pub fn inside(args: &[OsString], dir: &Path, start: bool) -> Result<Option<i32>> {
    let info = match (KeeperInfo::live(dir), start) {
        (Some(info), _) => info,
        (None, true) => ensure_keeper(dir)?,
        (None, false) => return Ok(None),
    };
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(&args[1..])
        .env("BERTH_STATE_DIR", dir)
        .env_remove("BERTH_ROOTLESS_NET");
    userns::enter_holder(&mut cmd, Pid::from_raw(info.holder))?;
    let mut forwarded = SigSet::empty();
    for s in FORWARDED {
        forwarded.add(s);
    }
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None)
        .map_err(|e| Error::Other(e.to_string()))?;
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Other(format!("entering the user's namespaces: {e}")))?;
    let pid = Pid::from_raw(child.id() as i32);
    std::thread::spawn(move || loop {
        if let Ok(sig) = forwarded.wait() {
            let _ = kill(pid, sig);
        }
    });
    let status = child.wait()?;
    // The user's namespace goes with the user's last network: told here,
    // once the command inside has ended, so that the keeper does not end
    // it under the command's feet.
    if start && keeper::no_networks(dir) {
        let _ = kill(Pid::from_raw(info.keeper), Signal::SIGTERM);
    }
    Ok(Some(
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
    ))
}

//! berth's background processes and how they are started: the DNS server
//! (`berth-dns dns-server`, or `berth dns-server` where no `berth-dns`
//! sits next to berth) and the supervisor (`berth supervise`), which keeps
//! the server running and reclaims what killed sandboxes leave behind.
//!
//! Neither is a daemon the user installs. Each is started, detached, by
//! whichever berth process finds it missing and needed: every command that
//! changes the state tells the supervisor so ([`supervise`]), starting it
//! when none answers; the supervisor restarts a DNS server that dies, and
//! the DNS server restarts a supervisor that dies. Both exit once nothing
//! needs them.

use std::io::{ErrorKind, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::store::{FileLock, Store};

/// The supervisor's control socket, in the state directory: one line,
/// `changed`, says that the state changed; `pending N` says so too, and
/// that N more endpoints' links wait in the pending group to be deleted.
pub const SUPERVISOR_SOCKET: &str = "supervisor.sock";
/// The supervisor's PID, locked for its whole life.
pub const SUPERVISOR_PID: &str = "supervisor.pid";
/// The supervisor's log (its stdout and stderr).
pub const SUPERVISOR_LOG: &str = "supervisor.log";
/// Taken by whoever checks for the supervisor and starts it.
const SUPERVISOR_LOCK: &str = "supervisor.lock";
/// One byte per endpoint whose links a disconnect left in the pending
/// group since the group was last deleted (emptied just before each such
/// delete): the count a disconnect checks against [`PENDING_BOUND`] in
/// O(1), whatever the number of links, without the supervisor.
pub const PENDING_FILE: &str = "pending-links";
/// How many endpoints' links may wait in the pending group: past this, the
/// disconnect that finds it so deletes the group itself (one request), so
/// a burst leaves a bounded number even when no supervisor keeps up.
pub const PENDING_BOUND: usize = 256;
/// How long a fresh supervisor may take to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(2);

/// The DNS server's own executable, installed next to berth's: the
/// server's code alone (the runtime, DNS, the state reader), so the code
/// serving runs lies in fewer places than among all of berth's. Each
/// place touched costs resident memory for the server's whole life: the
/// kernel maps 64 KiB or more of the file around every page touched.
pub const DNS_EXECUTABLE: &str = "berth-dns";
/// The subcommand of the DNS server, in the argv of either executable (by
/// it, berth knows the process for its server).
pub const DNS_SUBCOMMAND: &str = "dns-server";
/// Set for `berth-dns`: the berth executable that started it, which it
/// runs for anything but serving (the supervisor).
pub const BERTH_EXE_ENV: &str = "BERTH_EXE";

/// Set for `berth-dns` with [`BERTH_EXE_ENV`]: the build of the berth
/// that started it ([`build_stamp`]); a `berth-dns` of another build
/// (berth upgraded alone) hands over to that berth.
pub const BERTH_BUILD_ENV: &str = "BERTH_BUILD";

static BERTH_EXE: OnceLock<PathBuf> = OnceLock::new();

/// This build: the commit and time that build.rs recorded, the same in
/// berth and berth-dns of one `cargo build` (both link one library).
pub fn build_stamp() -> String {
    format!(
        "{} {}",
        option_env!("BERTH_COMMIT").unwrap_or("unknown"),
        option_env!("BERTH_BUILD_TIME").unwrap_or("unknown")
    )
}

/// Names berth's executable, for a process that is not berth itself
/// (`berth-dns`).
pub fn set_berth_exe(exe: PathBuf) {
    let _ = BERTH_EXE.set(exe);
}

fn berth_exe() -> Result<PathBuf> {
    match BERTH_EXE.get() {
        Some(exe) => Ok(exe.clone()),
        None => Ok(std::env::current_exe()?),
    }
}

/// The executable that runs `subcommand`: [`DNS_EXECUTABLE`] for the
/// server when it sits next to berth's, berth's otherwise.
fn executable(subcommand: &str) -> Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let berth = berth_exe()?;
    if subcommand == DNS_SUBCOMMAND {
        let dns = berth.with_file_name(DNS_EXECUTABLE);
        if std::fs::metadata(&dns).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        {
            return Ok((dns, berth));
        }
    }
    Ok((berth.clone(), berth))
}

/// Starts `berth --state-dir DIR SUBCOMMAND` detached (`berth-dns` for the
/// DNS server where it is installed, see [`DNS_EXECUTABLE`]): its own
/// session, stdio to `log` in the state directory, every signal unblocked,
/// and (by a second fork) not a child of this process, so it never becomes
/// a zombie of a long `berth run`.
pub fn spawn_detached(state_dir: &Path, subcommand: &str, log: &str) -> Result<()> {
    let (exe, berth) = executable(subcommand)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join(log))?;
    let mut cmd = Command::new(&exe);
    if exe != berth {
        cmd.env(BERTH_EXE_ENV, &berth)
            .env(BERTH_BUILD_ENV, build_stamp());
    }
    cmd.arg("--state-dir")
        .arg(state_dir)
        .arg(subcommand)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .current_dir("/")
        // A failpoint armed for this command is not the background's.
        .env_remove("BERTH_FAILPOINT");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // `run` blocks the signals it forwards; the process must get
            // SIGTERM.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            // The intermediate process exits at once; its child is adopted
            // by init (or the nearest subreaper).
            match libc::fork() {
                -1 => Err(std::io::Error::last_os_error()),
                0 => Ok(()),
                _ => libc::_exit(0),
            }
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Other(format!("starting berth {subcommand}: {e}")))?;
    let _ = child.wait();
    Ok(())
}

/// Counts `pending` more endpoints' links as waiting (see
/// [`PENDING_FILE`]); true when the count reached [`PENDING_BOUND`], the
/// caller then deletes the group itself and calls [`pending_deleted`].
/// The count is a hint: a command killed between taking its links out and
/// counting them leaves one uncounted, which the next delete of the group
/// takes anyway.
pub fn note_pending(state_dir: &Path, pending: usize) -> Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    if pending == 0 {
        return Ok(false);
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(state_dir.join(PENDING_FILE))
        .map_err(|e| Error::Other(format!("opening {PENDING_FILE}: {e}")))?;
    file.write_all(&vec![b'.'; pending])?;
    Ok(file.metadata()?.len() >= PENDING_BOUND as u64)
}

/// The pending group is about to be deleted: the count starts again.
/// Emptied before the delete, so a link counted meanwhile is at worst
/// counted once too often.
pub fn pending_deleted(state_dir: &Path) {
    if let Ok(f) = std::fs::OpenOptions::new()
        .write(true)
        .open(state_dir.join(PENDING_FILE))
    {
        let _ = f.set_len(0);
    }
}

/// Tells the supervisor that the state changed, and of `pending` more
/// endpoints' links waiting to be deleted; starts it first when none runs
/// and something needs watching or deleting. Concurrent callers take
/// turns, so only one starts it.
///
/// `nft`, when given, goes along (`SCM_RIGHTS`) for the supervisor to
/// close: the last close of an nf_tables socket that deleted elements
/// waits for them to be freed (an RCU grace period), which the command
/// then does not.
pub fn supervise(state_dir: &Path, pending: usize, nft: Option<OwnedFd>) -> Result<()> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state_dir.join(SUPERVISOR_LOCK))
        .map_err(|e| Error::Other(format!("opening {SUPERVISOR_LOCK}: {e}")))?;
    let _lock = FileLock::acquire(lock)
        .map_err(|e| Error::Other(format!("locking {SUPERVISOR_LOCK}: {e}")))?;
    if tell(state_dir, pending, nft.as_ref())? {
        return Ok(());
    }
    if pending == 0 && !needed(state_dir)? {
        return Ok(());
    }
    spawn_detached(state_dir, "supervise", SUPERVISOR_LOG)?;
    let deadline = Instant::now() + START_TIMEOUT;
    while !tell(state_dir, pending, nft.as_ref())? {
        if Instant::now() > deadline {
            return Err(Error::Other(format!(
                "the supervisor did not start; see {}",
                state_dir.join(SUPERVISOR_LOG).display()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Sends `changed` (or `pending N`) to a running supervisor, with `fd`
/// attached; false when none listens.
fn tell(state_dir: &Path, pending: usize, fd: Option<&OwnedFd>) -> Result<bool> {
    let path = state_dir.join(SUPERVISOR_SOCKET);
    match UnixStream::connect(&path) {
        Ok(mut s) => {
            // It reads the line when it gets to it; nothing to wait for.
            let line = match pending {
                0 => "changed\n".to_string(),
                n => format!("pending {n}\n"),
            };
            match fd {
                None => {
                    let _ = s.write_all(line.as_bytes());
                }
                Some(fd) => {
                    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
                    let fds = [fd.as_raw_fd()];
                    let _ = sendmsg::<()>(
                        s.as_raw_fd(),
                        &[std::io::IoSlice::new(line.as_bytes())],
                        &[ControlMessage::ScmRights(&fds)],
                        MsgFlags::MSG_NOSIGNAL,
                        None,
                    );
                }
            }
            Ok(true)
        }
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            Ok(false)
        }
        Err(e) => Err(Error::Other(format!("{}: {e}", path.display()))),
    }
}

/// Whether the state has anything to watch (read without a lock).
fn needed(state_dir: &Path) -> Result<bool> {
    let Some(mut store) = Store::open_read_only(state_dir)? else {
        return Ok(false);
    };
    let tx = store.read()?;
    tx.anything_to_watch()
}

/// Ends the supervisor of `state_dir`, if one runs (by the PID it recorded,
/// and only if that process is berth's supervisor), and waits up to a second
/// for it to go. For what isolates itself in a private sandbox (`demo`,
/// `bench`): nothing may keep that sandbox alive once it is done.
pub fn stop_supervisor(state_dir: &Path) {
    stop_recorded(state_dir, SUPERVISOR_PID, "supervise");
}

/// Ends the background process of `state_dir` whose PID is in `pid_file`,
/// if it is berth's `subcommand` for that state, and waits up to a second
/// for it to go.
pub fn stop_recorded(state_dir: &Path, pid_file: &str, subcommand: &str) {
    let pid = std::fs::read_to_string(state_dir.join(pid_file))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|p| *p > 1);
    let ours = |pid: i32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.contains(&subcommand.as_bytes())
                && args.contains(&state_dir.as_os_str().as_encoded_bytes())
        })
    };
    let Some(pid) = pid.filter(|p| ours(*p)) else {
        return;
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    while ours(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_count_reaches_the_bound_and_starts_again_after_a_delete() {
        let dir = std::env::temp_dir().join(format!("berth-pending-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!note_pending(&dir, 0).unwrap());
        assert!(!note_pending(&dir, PENDING_BOUND - 2).unwrap());
        assert!(!note_pending(&dir, 1).unwrap());
        assert!(note_pending(&dir, 1).unwrap(), "the bound is reached");
        pending_deleted(&dir);
        assert!(!note_pending(&dir, 1).unwrap());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(PENDING_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

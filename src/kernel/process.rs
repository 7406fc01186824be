//! Processes in namespaces: starting a command inside a network namespace
//! (`run`), becoming one there (`exec`), and, as facts, whether the
//! process that owns something (the namespace of a `run`) is still the one
//! that started, despite PID reuse.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::sched::CloneFlags;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};

use super::netns;

/// Starts `command` inside the network namespace `netns`. Between fork and
/// exec the child, in this order: enters the namespace; runs `prepare`
/// (e.g. a bind mount over /etc/resolv.conf; only async-signal-safe calls
/// belong there); unblocks every signal, whatever its parent blocks for
/// forwarding; asks to be killed (SIGKILL) when its parent dies, so it does
/// not run on in a namespace nobody owns; gives up if the parent is gone
/// already; and, with `hostname`, takes a UTS namespace with that name.
pub fn spawn_in_netns(
    command: &mut Command,
    netns: &File,
    hostname: Option<&str>,
    prepare: impl Fn() -> io::Result<()> + Send + Sync + 'static,
) -> io::Result<Child> {
    let netns_fd = netns.as_raw_fd();
    let hostname = hostname.map(|h| h.as_bytes().to_vec());
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and makes
    // only system calls (setns, mount through `prepare`, sigprocmask,
    // prctl, getppid, unshare, sethostname); `netns` outlives the spawn.
    unsafe {
        command.pre_exec(move || {
            nix::sched::setns(BorrowedFd::borrow_raw(netns_fd), CloneFlags::CLONE_NEWNET)?;
            prepare()?;
            pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::other("berth exited before the command started"));
            }
            if let Some(name) = &hostname {
                nix::sched::unshare(CloneFlags::CLONE_NEWUTS)?;
                nix::unistd::sethostname(OsStr::from_bytes(name))?;
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Which step of [`exec_in_netns`] failed.
#[derive(Debug)]
pub enum ExecFailure {
    /// Entering the namespace.
    Enter(io::Error),
    /// The caller's `prepare`.
    Prepare(io::Error),
    /// The exec itself.
    Exec(io::Error),
}

/// Replaces this process with `command` inside `netns`: the calling thread
/// enters the namespace (the one place berth moves a thread of its own
/// rather than a short-lived helper, since the process is about to become
/// the command), runs `prepare`, and execs. Returns only on failure.
pub fn exec_in_netns(
    command: &mut Command,
    netns: &File,
    prepare: impl FnOnce() -> io::Result<()>,
) -> ExecFailure {
    if let Err(e) = netns::enter(netns) {
        return ExecFailure::Enter(e);
    }
    if let Err(e) = prepare() {
        return ExecFailure::Prepare(e);
    }
    ExecFailure::Exec(command.exec())
}

/// The start time of process `pid` (clock ticks after boot, field 22 of
/// /proc/PID/stat), None when there is no such process.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start after its last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether the process `pid` that started at `start` is still running. A
/// zombie is not: it has ended, and only waits for its parent to read its
/// status (a killed `run -d`'s parent may take its time).
pub fn alive(pid: u32, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
        return false;
    };
    let mut fields = rest.split(' ');
    let state = fields.next().unwrap_or("");
    !matches!(state, "Z" | "X") && fields.nth(18).and_then(|f| f.parse().ok()) == Some(start)
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_process_is_alive_and_a_wrong_start_is_not() {
        let me = std::process::id();
        let start = super::start_time(me).expect("own stat");
        assert!(super::alive(me, start));
        assert!(!super::alive(me, start + 1));
        assert_eq!(super::start_time(u32::MAX), None);
        // Ended and not yet waited for: not alive.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let t = std::time::Instant::now();
        let mut seen_zombie = false;
        while t.elapsed() < std::time::Duration::from_secs(5) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            if stat.contains(") Z ") {
                seen_zombie = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(seen_zombie);
        let zombie_start = super::start_time(pid).unwrap();
        assert!(!super::alive(pid, zombie_start));
        child.wait().unwrap();
    }
}

//! A command in a user namespace of its own, made by an ordinary user: the
//! user is root inside it (one id mapped, no setuid helper), with a fresh
//! network and mount namespace (and a UTS one for a host name).
//!
//! The child is forked by hand rather than through `std::process::Command`
//! because it must stop between making its namespaces and exec: the
//! network helper (pasta, slirp4netns) joins the namespaces by the child's
//! PID, and the command must not start before its network is there.
//! `Command::spawn` only returns after exec, so the PID would come too late.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::unistd::Pid;

/// What the child makes before its command starts.
#[derive(Debug, Default)]
pub struct Options {
    /// A UTS namespace with this host name.
    pub hostname: Option<String>,
    /// The text of the command's /etc/resolv.conf (None: the host's).
    pub resolv: Option<String>,
}

/// A child in its namespaces, held before exec until [`Held::start`].
/// Dropped without `start`, the child exits without running anything.
pub struct Held {
    pid: Pid,
    go: File,
    status: File,
}

/// One byte the child sends when its namespaces are made.
const READY: u8 = b'R';
/// The byte that precedes an errno the child failed with.
const FAILED: u8 = b'E';

/// Which step of the child failed, by the number it sends.
const STEPS: &[&str] = &[
    "unshare(CLONE_NEWUSER)",
    "writing the id maps",
    "unshare(CLONE_NEWNET|CLONE_NEWNS)",
    "making mounts private",
    "bind-mounting /etc/resolv.conf",
    "sethostname",
    "exec",
];

impl Held {
    /// The child's PID (its namespaces are `/proc/PID/ns/*`).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Lets the child exec its command; returns once it has (or with the
    /// reason it could not).
    pub fn start(mut self) -> io::Result<Pid> {
        self.go.write_all(&[1])?;
        match read_status(&mut self.status)? {
            None => Ok(self.pid),
            Some(e) => {
                reap(self.pid);
                Err(e)
            }
        }
    }
}

/// Reads what the child says on its status pipe: None at end of file (it
/// exec'd, the pipe closed with it), or the error it failed with.
fn read_status(status: &mut File) -> io::Result<Option<io::Error>> {
    let mut buf = [0u8; 6];
    let mut got = 0;
    while got < buf.len() {
        match status.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    match got {
        0 => Ok(None),
        6 if buf[0] == FAILED => {
            let step = STEPS.get(buf[1] as usize).copied().unwrap_or("?");
            let errno = i32::from_ne_bytes([buf[2], buf[3], buf[4], buf[5]]);
            let e = io::Error::from_raw_os_error(errno);
            Ok(Some(io::Error::new(e.kind(), format!("{step}: {e}"))))
        }
        _ => Ok(Some(io::Error::other("the namespace child ended early"))),
    }
}

fn reap(pid: Pid) {
    let _ = nix::sys::wait::waitpid(pid, None);
}

fn pipe() -> io::Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((File::from(r), File::from(w)))
}

fn cstring(s: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| io::Error::other("NUL byte in argument"))
}

/// Forks `program args` into a new user namespace (this user as root in
/// it), network namespace and mount namespace, held before exec; returns
/// once the namespaces exist. The child dies with this process
/// (PR_SET_PDEATHSIG) and has every signal unblocked.
pub fn fork_held(program: &str, args: &[String], opts: Options) -> io::Result<Held> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    // Everything the child needs is made before fork: between fork and
    // exec it only makes system calls.
    let program_c = cstring(program)?;
    let mut argv_c = vec![program_c.clone()];
    for a in args {
        argv_c.push(cstring(a)?);
    }
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let uid_map = format!("0 {uid} 1\n");
    let gid_map = format!("0 {gid} 1\n");
    let resolv = opts.resolv.clone().map(String::into_bytes);
    let hostname = opts.hostname.clone().map(cstring).transpose()?;
    let paths = [
        cstring("/proc/self/setgroups")?,
        cstring("/proc/self/uid_map")?,
        cstring("/proc/self/gid_map")?,
        cstring("/")?,
        cstring("/etc/resolv.conf")?,
        cstring("tmpfs")?,
        cstring("/tmp")?,
        cstring("/tmp/resolv.conf")?,
        cstring("mode=0755,size=64k")?,
        cstring("sysfs")?,
        cstring("/sys")?,
    ];
    let (go_r, go_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    let parent = std::process::id() as libc::pid_t;

    // SAFETY: the child below makes only async-signal-safe system calls on
    // memory prepared before the fork, and ends in exec or _exit.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            let code = unsafe {
                child(ChildArgs {
                    parent,
                    go: go_r.as_raw_fd(),
                    status: status_w.as_raw_fd(),
                    uid_map: uid_map.as_bytes(),
                    gid_map: gid_map.as_bytes(),
                    paths: &paths,
                    resolv: resolv.as_deref(),
                    hostname: hostname.as_deref(),
                    program: &program_c,
                    argv: &argv,
                })
            };
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(go_r);
            drop(status_w);
            let mut status = status_r;
            let mut byte = [0u8; 1];
            let ready = loop {
                match status.read(&mut byte) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r,
                }
            };
            match ready {
                Ok(1) if byte[0] == READY => Ok(Held {
                    pid: child,
                    go: go_w,
                    status,
                }),
                Ok(1) if byte[0] == FAILED => {
                    // The rest of the failure follows; put the byte back.
                    let mut rest = [0u8; 5];
                    status.read_exact(&mut rest)?;
                    let mut all = [FAILED, 0, 0, 0, 0, 0];
                    all[1..].copy_from_slice(&rest);
                    reap(child);
                    let step = STEPS.get(all[1] as usize).copied().unwrap_or("?");
                    let errno = i32::from_ne_bytes([all[2], all[3], all[4], all[5]]);
                    let e = io::Error::from_raw_os_error(errno);
                    Err(io::Error::new(e.kind(), format!("{step}: {e}")))
                }
                Ok(_) => {
                    reap(child);
                    Err(io::Error::other("the namespace child ended early"))
                }
                Err(e) => Err(e),
            }
        }
    }
}

struct ChildArgs<'a> {
    parent: libc::pid_t,
    go: RawFd,
    status: RawFd,
    uid_map: &'a [u8],
    gid_map: &'a [u8],
    /// setgroups, uid_map, gid_map, /, /etc/resolv.conf, tmpfs, /tmp,
    /// /tmp/resolv.conf, the tmpfs's options, sysfs, /sys
    paths: &'a [CString; 11],
    resolv: Option<&'a [u8]>,
    hostname: Option<&'a std::ffi::CStr>,
    program: &'a CString,
    argv: &'a [*const libc::c_char],
}

/// Sends the failure of step `step` and returns the child's exit code.
unsafe fn fail(status: RawFd, step: u8) -> i32 {
    let errno = *libc::__errno_location();
    let mut msg = [FAILED, step, 0, 0, 0, 0];
    msg[2..].copy_from_slice(&errno.to_ne_bytes());
    libc::write(status, msg.as_ptr().cast(), msg.len());
    127
}

unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> bool {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return false;
    }
    let ok = libc::write(fd, data.as_ptr().cast(), data.len()) == data.len() as isize;
    libc::close(fd);
    ok
}

/// The forked child, up to exec. Returns an exit code only on failure.
unsafe fn child(a: ChildArgs) -> i32 {
    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 || libc::getppid() != a.parent {
        return 1;
    }
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    if libc::unshare(libc::CLONE_NEWUSER) != 0 {
        return fail(a.status, 0);
    }
    // setgroups must be denied before an unprivileged gid_map is written.
    if !write_file(&a.paths[0], b"deny")
        || !write_file(&a.paths[1], a.uid_map)
        || !write_file(&a.paths[2], a.gid_map)
    {
        return fail(a.status, 1);
    }
    let mut flags = libc::CLONE_NEWNET | libc::CLONE_NEWNS;
    if a.hostname.is_some() {
        flags |= libc::CLONE_NEWUTS;
    }
    if libc::unshare(flags) != 0 {
        return fail(a.status, 2);
    }
    // Nothing mounted here may show on the host.
    if libc::mount(
        std::ptr::null(),
        a.paths[3].as_ptr(),
        std::ptr::null(),
        libc::MS_REC | libc::MS_PRIVATE,
        std::ptr::null(),
    ) != 0
    {
        return fail(a.status, 3);
    }
    // A sysfs of the new network namespace, so that /sys/class/net lists
    // the command's links, not the host's. Best effort: the kernel refuses
    // a user namespace a new sysfs where the old one is partly covered,
    // and the command runs all the same.
    libc::mount(
        a.paths[9].as_ptr(),
        a.paths[10].as_ptr(),
        a.paths[9].as_ptr(),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        std::ptr::null(),
    );
    if let Some(text) = a.resolv {
        // The file is made on a tmpfs that covers /tmp only until the bind
        // mount holds it: a file opened before the mount namespace was made
        // lives on a mount of the old namespace, which the kernel refuses
        // to bind from (EINVAL), and a memfd cannot be bind-mounted at all.
        let p = a.paths;
        if libc::mount(
            p[5].as_ptr(),
            p[6].as_ptr(),
            p[5].as_ptr(),
            0,
            p[8].as_ptr().cast(),
        ) != 0
        {
            return fail(a.status, 4);
        }
        let fd = libc::open(
            p[7].as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        );
        if fd < 0 || libc::write(fd, text.as_ptr().cast(), text.len()) != text.len() as isize {
            return fail(a.status, 4);
        }
        libc::close(fd);
        if libc::mount(
            p[7].as_ptr(),
            p[4].as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ) != 0
        {
            return fail(a.status, 4);
        }
        if libc::umount2(p[6].as_ptr(), libc::MNT_DETACH) != 0 {
            return fail(a.status, 4);
        }
    }
    if let Some(h) = a.hostname {
        if libc::sethostname(h.as_ptr(), h.to_bytes().len()) != 0 {
            return fail(a.status, 5);
        }
    }
    libc::write(a.status, [READY].as_ptr().cast(), 1);
    let mut go = [0u8; 1];
    loop {
        let n = libc::read(a.go, go.as_mut_ptr().cast(), 1);
        if n == 1 {
            break;
        }
        if n < 0 && *libc::__errno_location() == libc::EINTR {
            continue;
        }
        // The parent gave up (or died): run nothing.
        return 1;
    }
    libc::execvp(a.program.as_ptr(), a.argv.as_ptr());
    fail(a.status, 6)
}

/// Makes `command` die (SIGKILL) with this process: a network helper must
/// not outlive the `run` that started it, killed by SIGKILL or not.
pub fn dies_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only sigprocmask, prctl and getppid run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // The mask `run` blocks for forwarding would survive exec and
            // leave the helper deaf to the SIGTERM that stops it.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::other("berth exited before its helper started"));
            }
            Ok(())
        });
    }
}

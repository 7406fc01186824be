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
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::unistd::Pid;

use super::rtnl::Rtnl;
use crate::model::Limit;

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

/// The holder of a user's own namespaces ([`fork_holder`]), with an
/// rtnetlink socket it opened in its network namespace.
///
/// The socket is how the keeper, an ordinary user's process, configures
/// that namespace without entering it: the kernel lets a process join a
/// user namespace only while it has a single thread and stay there for
/// good, and a network namespace only with CAP_SYS_ADMIN where it is now.
/// A socket keeps the namespace it was opened in, and the user owns the
/// holder's user namespace, so requests sent on it pass the kernel's
/// checks (the opener's and the sender's capability there).
pub struct Holder {
    pid: Pid,
    rtnl: Rtnl,
}

impl Holder {
    /// The holder's PID (its namespaces are `/proc/PID/ns/*`).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Makes a token bucket of `limit` the root qdisc of the link
    /// `ifname` in the holder's network namespace, where a frame waits at
    /// most `latency` for it.
    pub fn shape_egress(
        &mut self,
        ifname: &str,
        limit: &Limit,
        latency: Duration,
    ) -> io::Result<()> {
        let index = super::link::index_of(&mut self.rtnl, ifname)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no link {ifname}")))?;
        super::tc::shape_egress_within(&mut self.rtnl, index, limit, latency)
    }

    /// A holder whose requests go to `rtnl` (a stand-in, in unit tests).
    #[cfg(test)]
    pub(crate) fn over(pid: Pid, rtnl: Rtnl) -> Holder {
        Holder { pid, rtnl }
    }
}

/// Forks the holder of a user's own namespaces: a user namespace (the user
/// root in it), a network namespace for the user's bridges and a mount
/// namespace in which `/run/netns` is a private tmpfs the user may bind
/// namespaces onto (and `/etc/resolv.conf` says `resolv`, if given). The
/// child never execs: it is a fork of a single-threaded caller, so it may
/// run ordinary code, and then waits until it is killed. It dies with its
/// parent. Returns once the namespaces are ready, with the rtnetlink
/// socket the child opened in its network namespace.
///
/// The caller must be single-threaded.
pub fn fork_holder(resolv: Option<String>) -> io::Result<Holder> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    let (ready_r, ready_w) = UnixStream::pair()?;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the caller is single-threaded, so the child may allocate.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(ready_r);
            let mut ready_w = ready_w;
            let result = holder_setup(parent, uid, gid, resolv.as_deref()).and_then(|()| {
                let socket = rtnl_socket()?;
                send_with_fd(&ready_w, b"ok\n", socket.as_raw_fd())
            });
            if let Err(e) = &result {
                let _ = ready_w.write_all(format!("{e}\n").as_bytes());
            }
            drop(ready_w);
            if result.is_err() {
                unsafe { libc::_exit(1) };
            }
            loop {
                // SAFETY: waits for a signal; SIGTERM or SIGKILL ends it.
                unsafe { libc::pause() };
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(ready_w);
            let mut ready_r = ready_r;
            let (first, socket) = recv_with_fd(&ready_r)?;
            let mut said = String::from_utf8_lossy(&first).into_owned();
            let _ = ready_r.read_to_string(&mut said);
            match socket {
                Some(fd) if said.trim() == "ok" => {
                    // SAFETY: the child sent a netlink socket it opened.
                    let socket = unsafe { Socket::from_raw_fd(fd.into_raw_fd()) };
                    Ok(Holder {
                        pid: child,
                        rtnl: Rtnl::over(Box::new(socket)),
                    })
                }
                _ => {
                    reap(child);
                    Err(io::Error::other(format!(
                        "making the user's namespaces: {}",
                        said.trim()
                    )))
                }
            }
        }
    }
}

/// An rtnetlink socket in this thread's network namespace, set up as
/// [`Rtnl::open`] sets up its own.
fn rtnl_socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let _ = socket.set_ext_ack(true);
    Ok(socket)
}

/// Room for one `SCM_RIGHTS` message of one descriptor, aligned as a
/// `cmsghdr` must be.
type FdControl = [u64; 4];

/// Sends `data` on `stream` with a copy of `fd` attached (`SCM_RIGHTS`).
fn send_with_fd(stream: &UnixStream, data: &[u8], fd: RawFd) -> io::Result<()> {
    let mut control: FdControl = [0; 4];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: the header points at `iov` and `control`, which outlive the
    // call; CMSG_SPACE of one descriptor fits in `control`.
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        assert!(space <= std::mem::size_of::<FdControl>());
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        loop {
            let n = libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Receives what [`send_with_fd`] sent: the first bytes, and the
/// descriptor if one came with them (close-on-exec here).
fn recv_with_fd(stream: &UnixStream) -> io::Result<(Vec<u8>, Option<OwnedFd>)> {
    let mut data = [0u8; 512];
    let mut control: FdControl = [0; 4];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: as in `send_with_fd`; the kernel fills `data` and `control`
    // and says how much of each it used.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of::<FdControl>() as _;
        let n = loop {
            let n = libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        let mut fd = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok((data[..n].to_vec(), fd))
    }
}

fn holder_setup(
    parent: libc::pid_t,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
    resolv: Option<&str>,
) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    // SAFETY: plain system calls.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            return Err(io::Error::other("the keeper exited"));
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // Ctrl-C in the terminal that started the first command must not
        // end the user's namespaces.
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| step("unshare(CLONE_NEWUSER)", e))?;
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1\n"))?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1\n"))?;
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)
        .map_err(|e| step("unshare(CLONE_NEWNET|CLONE_NEWNS)", e))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| step("making mounts private", e))?;
    private_netns_dir()?;
    if let Some(text) = resolv {
        let tmp = std::path::Path::new("/tmp");
        mount(
            Some("tmpfs"),
            tmp,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=64k"),
        )
        .map_err(|e| step("mounting a tmpfs", e))?;
        std::fs::write(tmp.join("resolv.conf"), text)?;
        mount(
            Some("/tmp/resolv.conf"),
            "/etc/resolv.conf",
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| step("bind-mounting /etc/resolv.conf", e))?;
        nix::mount::umount2(tmp, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| step("unmounting /tmp", e))?;
    }
    // The user's own network namespace starts with `lo` down.
    Ok(())
}

fn step(what: &str, e: nix::errno::Errno) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// Gives the holder's mount namespace a private, writable `/run/netns`: a
/// tmpfs over it when it exists; otherwise a tmpfs over `/run` with every
/// entry of the old `/run` bound back in, and an empty `netns` beside them.
fn private_netns_dir() -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    let netns = std::path::Path::new("/run/netns");
    if netns.is_dir() {
        return mount(
            Some("tmpfs"),
            netns,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=0755"),
        )
        .map_err(|e| step("mounting a tmpfs on /run/netns", e));
    }
    // The old /run, held open so its entries can be bound back once the
    // tmpfs covers it (a mount of this namespace, so binding from it is
    // allowed).
    let old = File::open("/run")?;
    let old_path = format!("/proc/self/fd/{}", old.as_raw_fd());
    let entries: Vec<(std::ffi::OsString, bool)> = std::fs::read_dir(&old_path)?
        .filter_map(|e| e.ok())
        .map(|e| {
            let dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            (e.file_name(), dir)
        })
        .collect();
    mount(
        Some("tmpfs"),
        "/run",
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(|e| step("mounting a tmpfs on /run", e))?;
    for (name, dir) in entries {
        let target = std::path::Path::new("/run").join(&name);
        if dir {
            std::fs::create_dir(&target)?;
        } else {
            File::create(&target)?;
        }
        let source = std::path::Path::new(&old_path).join(&name);
        // Symlinks and sockets cannot be bound onto; they are rare under
        // /run's top level and skipped.
        let _ = mount(
            Some(&source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        );
    }
    std::fs::create_dir(netns)?;
    Ok(())
}

/// Makes `command` run inside the namespaces of `holder` (user, mount and
/// network, entered in that order) and die with this process.
pub fn enter_holder(command: &mut std::process::Command, holder: Pid) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    let user = File::open(format!("/proc/{holder}/ns/user"))?;
    let mnt = File::open(format!("/proc/{holder}/ns/mnt"))?;
    let net = File::open(format!("/proc/{holder}/ns/net"))?;
    let fds = [
        (user, libc::CLONE_NEWUSER),
        (mnt, libc::CLONE_NEWNS),
        (net, libc::CLONE_NEWNET),
    ];
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: setns, prctl, getppid and sigprocmask only, on fds that live
    // as long as the command (moved into the closure).
    unsafe {
        command.pre_exec(move || {
            for (f, kind) in &fds {
                if libc::setns(f.as_raw_fd(), *kind) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::other("berth exited before entering"));
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{
        Emitable, Nla, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST,
    };
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};
    use netlink_packet_route::tc::{TcAttribute, TcOption};
    use netlink_packet_route::RouteNetlinkMessage;

    use super::*;
    use crate::kernel::fake_rtnl::{self, Answer};
    use crate::kernel::tc;

    fn bytes(m: &impl Emitable) -> Vec<u8> {
        let mut b = vec![0; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    /// The link is looked up by name in the holder's namespace, and the
    /// bucket replaces the root qdisc of that index with the queue the
    /// latency gives.
    #[test]
    fn the_holder_shapes_the_named_link_with_the_latencys_queue() {
        let mut eth0 = LinkMessage::default();
        eth0.header.index = 5;
        eth0.attributes.push(LinkAttribute::IfName("eth0".into()));
        let (rtnl, sent) =
            fake_rtnl::rtnl(vec![Answer::Replies(vec![RouteNetlinkMessage::NewLink(
                eth0,
            )])]);
        let mut holder = Holder::over(Pid::from_raw(1), rtnl);
        let limit = Limit {
            rate: 12_000_000_000,
            burst: 2 << 20,
        };
        let latency = Duration::from_millis(20);
        holder.shape_egress("eth0", &limit, latency).unwrap();
        let sent = sent.sent();
        assert_eq!(sent.len(), 2, "{sent:?}");
        let RouteNetlinkMessage::GetLink(get) = &sent[0].message else {
            panic!("{sent:?}")
        };
        assert!(get
            .attributes
            .contains(&LinkAttribute::IfName("eth0".into())));
        assert_eq!(
            sent[1].flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        );
        let RouteNetlinkMessage::NewQueueDiscipline(got) = &sent[1].message else {
            panic!("{sent:?}")
        };
        let want = tc::tbf_message_queued(5, &limit, 30_000_000 + 2_097_152);
        assert_eq!(got.header, want.header);
        assert_eq!(got.attributes[0], want.attributes[0], "the kind");
        // The options compared as bytes: the decoder keeps an unknown
        // kind's options as one blob.
        let (TcAttribute::Options(got), TcAttribute::Options(want)) =
            (&got.attributes[1], &want.attributes[1])
        else {
            panic!("{got:?}")
        };
        let [TcOption::Other(blob)] = &got[..] else {
            panic!("{got:?}")
        };
        let mut got = vec![0; blob.value_len()];
        blob.emit_value(&mut got);
        assert_eq!(got, bytes(&want.as_slice()));
    }

    #[test]
    fn a_missing_link_is_not_found() {
        let (rtnl, sent) = fake_rtnl::rtnl(vec![Answer::Errno(libc::ENODEV)]);
        let mut holder = Holder::over(Pid::from_raw(1), rtnl);
        let limit = Limit::at_rate(1_000_000);
        let err = holder
            .shape_egress("eth9", &limit, Duration::from_millis(20))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert_eq!(sent.sent().len(), 1, "only the lookup");
    }
}

//! Network namespaces: resolving what the user names as a target, creating
//! and deleting named namespaces the way `ip netns` does (so each tool sees
//! the other's), and running code inside a namespace.
//!
//! Namespaces belong to threads, so code for another namespace runs on a
//! dedicated short-lived thread that enters it; sockets opened there stay
//! bound to that namespace. The calling thread never changes namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::Error;

/// Where named namespaces live, shared with iproute2.
pub const NETNS_DIR: &str = "/run/netns";

/// A network namespace the user pointed at.
#[derive(Clone, Debug)]
pub struct Target {
    /// The canonical spelling: a netns name, an absolute path, or `pid:N`.
    pub key: String,
    /// A file that refers to the namespace.
    pub path: PathBuf,
    /// Set when the namespace exists: its inode, which identifies it.
    pub inode: Option<u64>,
}

impl Target {
    /// Where TARGET points (its canonical key and path) without looking
    /// there: `inode` is None. No I/O, so pure code (the reconcile's
    /// decision) may use it.
    pub fn locate(text: &str) -> Result<Target, Error> {
        let bad = || {
            Error::invalid(format!(
                "invalid target {text:?}: expected a netns name, a path to a namespace file, or pid:PID"
            ))
        };
        let (key, path) = if let Some(pid) = text.strip_prefix("pid:") {
            let pid: u32 = pid.parse().map_err(|_| bad())?;
            (
                format!("pid:{pid}"),
                PathBuf::from(format!("/proc/{pid}/ns/net")),
            )
        } else if text.contains('/') {
            let path = std::path::absolute(text).map_err(|_| bad())?;
            (path.display().to_string(), path)
        } else {
            crate::model::names::check_name("netns", text)?;
            (text.to_string(), Path::new(NETNS_DIR).join(text))
        };
        Ok(Target {
            key,
            path,
            inode: None,
        })
    }

    /// Parses TARGET without requiring the namespace to exist (disconnect
    /// must work after it is gone).
    pub fn parse(text: &str) -> Result<Target, Error> {
        let mut target = Target::locate(text)?;
        target.inode = net_namespace_inode(&target.path);
        Ok(target)
    }

    /// Parses TARGET and requires it to be an existing network namespace.
    pub fn resolve(text: &str) -> Result<Target, Error> {
        Target::parse(text)?.existing(text)
    }

    /// This target if its namespace exists, else the error that TARGET
    /// (as the user wrote it, `text`) is no network namespace.
    pub fn existing(self, text: &str) -> Result<Target, Error> {
        if self.inode.is_none() {
            return Err(Error::invalid(format!(
                "target {text:?} is not a network namespace ({} is missing or is not one)",
                self.path.display()
            )));
        }
        Ok(self)
    }

    pub fn open(&self) -> Result<File, Error> {
        File::open(&self.path)
            .map_err(|e| Error::kernel(format!("opening namespace {}", self.path.display()), e))
    }
}

/// The inode of the network namespace behind `path`, or None if it is not
/// one (missing, a regular file, another kind of namespace).
pub fn net_namespace_inode(path: &Path) -> Option<u64> {
    let file = File::open(path).ok()?;
    // NS_GET_NSTYPE answers which kind of namespace a nsfs file refers to.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb7 << 8 | 0x3;
    let kind = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&file), NS_GET_NSTYPE as _) };
    if kind != libc::CLONE_NEWNET {
        return None;
    }
    file.metadata().ok().map(|m| m.ino())
}

/// The inode of the network namespace berth itself runs in.
pub fn own_inode() -> Option<u64> {
    // That link is a network namespace by definition: a stat through it
    // (one system call) rather than open, type check, fstat and close.
    std::fs::metadata("/proc/self/ns/net").ok().map(|m| m.ino())
}

/// The path of the named namespace `name`.
pub fn named_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Makes /run/netns a shared mount point as iproute2 does, so namespaces
/// mounted there show in every mount namespace that shares it.
fn prepare_netns_dir() -> io::Result<()> {
    std::fs::create_dir_all(NETNS_DIR)?;
    let shared = || {
        mount(
            None::<&str>,
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            shared().map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates a new, empty network namespace pinned at /run/netns/NAME.
pub fn create_named(name: &str) -> Result<(), Error> {
    let path = named_path(name);
    let what = format!("creating namespace {}", path.display());
    prepare_netns_dir().map_err(|e| Error::kernel(&what, e))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::kernel(&what, e))?;
    let target = path.clone();
    let pinned = std::thread::spawn(move || -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")));
    if let Err(e) = pinned {
        let _ = std::fs::remove_file(&path);
        return Err(Error::kernel(what, e));
    }
    Ok(())
}

/// Unpins and removes /run/netns/NAME; the kernel frees the namespace (and
/// the devices in it) once nothing else uses it. Ok(false) if it was absent.
pub fn delete_named(name: &str) -> Result<bool, Error> {
    let path = named_path(name);
    if !path.exists() {
        return Ok(false);
    }
    let what = format!("deleting namespace {}", path.display());
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(Error::kernel(what, e.into())),
    }
    std::fs::remove_file(&path).map_err(|e| Error::kernel(what, e))?;
    Ok(true)
}

/// Runs `f` on a dedicated thread inside the namespace `ns`.
pub fn run_in<R: Send>(ns: &File, f: impl FnOnce() -> R + Send) -> io::Result<R> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> io::Result<R> {
                setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

/// Moves the calling thread into `ns`. For a process about to exec a
/// command there (`berth exec`, the child of `berth run`).
pub fn enter(ns: &File) -> io::Result<()> {
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// Set by [`isolate_self`]: the PID of the process whose private sandbox
/// this is.
pub const SANDBOX_OWNER_ENV: &str = "BERTH_SANDBOX_OWNER";

/// Moves the whole (still single-threaded) process into fresh network and
/// mount namespaces with a private, empty /run, and brings `lo` up: a
/// throwaway host for `berth demo` and `berth bench`, so they never touch
/// the real host's network.
///
/// It also names this process the sandbox's owner
/// ([`SANDBOX_OWNER_ENV`], inherited by the background processes it
/// starts): killed before it could stop them, nothing could reach them
/// any more, so they end themselves once it is gone.
pub fn isolate_self() -> Result<(), Error> {
    let what = "creating a private sandbox (needs root)";
    // Still single-threaded (see above), so no reader races the write.
    std::env::set_var(SANDBOX_OWNER_ENV, std::process::id().to_string());
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)
        .map_err(|e| Error::kernel(what, e.into()))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::kernel(what, e.into()))?;
    mount(
        Some("tmpfs"),
        "/run",
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| Error::kernel(what, e.into()))?;
    let mut rtnl = super::rtnl::Rtnl::open().map_err(|e| Error::kernel(what, e))?;
    let lo = super::link::index_of(&mut rtnl, "lo").map_err(|e| Error::kernel(what, e))?;
    if let Some(lo) = lo {
        super::link::set_up(&mut rtnl, lo).map_err(|e| Error::kernel(what, e))?;
    }
    Ok(())
}

/// The names under /run/netns (none when it does not exist).
pub fn list_named() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

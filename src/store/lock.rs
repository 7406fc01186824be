//! The state lock: one file in the state directory that every mutating
//! command holds (`flock`, exclusive) from before it reads the state until
//! it has settled what it did.
//!
//! It is what makes an unsettled row mean "its command died": only a lock
//! holder writes intents, and the kernel drops a dead process's `flock` at
//! once, whatever killed it. Read-only commands never take it.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Held for as long as the value lives.
pub struct StateLock {
    _lock: FileLock,
}

impl StateLock {
    /// Waits for and takes the lock of the state in `dir`.
    pub fn acquire(dir: &Path) -> Result<StateLock> {
        // The directory may not exist yet (the first command ever): made
        // private, as the store makes it.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| super::secure::state_dir_error(dir, "create state directory", e))?;
        let path = dir.join("berth.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::Other(format!("cannot open {}: {e}", path.display())))?;
        match FileLock::acquire(file) {
            Ok(lock) => Ok(StateLock { _lock: lock }),
            Err(e) => Err(Error::Other(format!("cannot lock {}: {e}", path.display()))),
        }
    }
}

/// An exclusive `flock` on an open file, held for as long as the value
/// lives (the kernel drops it when the last descriptor closes, also when
/// the holder is killed). The one place berth calls `flock`: the state
/// lock, the DNS server's start lock and its pidfile.
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Waits for the lock on `file`. A signal that interrupts the wait
    /// (a handler returning, a stopped process resumed) is not a failure:
    /// the wait goes on.
    pub fn acquire(file: File) -> std::io::Result<FileLock> {
        loop {
            match flock(&file, libc::LOCK_EX) {
                Ok(()) => return Ok(FileLock { file }),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes the lock on `file` if no one holds it now; hands the file
    /// back (`Ok(Err(file))`) when someone does, so the caller may retry.
    pub fn try_acquire(file: File) -> std::io::Result<Result<FileLock, File>> {
        loop {
            match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => return Ok(Ok(FileLock { file })),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Err(file)),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The locked file (the DNS server writes its PID into it).
    pub fn file(&self) -> &File {
        &self.file
    }
}

fn flock(file: &File, operation: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor `file` owns for the whole call.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("berth-lock-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("x.lock")
    }

    fn open(path: &Path) -> File {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap()
    }

    #[test]
    fn a_held_lock_is_refused_to_a_second_open_and_freed_on_drop() {
        let path = scratch("held");
        let held = FileLock::acquire(open(&path)).unwrap();
        // flock belongs to the open file, so a second open of the same
        // path in this very process contends like another process would.
        let back = FileLock::try_acquire(open(&path)).unwrap();
        let file = back.err().expect("held by the first lock");
        drop(held);
        let second = FileLock::try_acquire(file).unwrap();
        assert!(second.is_ok(), "free once the first lock is dropped");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}

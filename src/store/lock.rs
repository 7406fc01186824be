//! The state lock: one file in the state directory that every mutating
//! command holds (`flock`, exclusive) from before it reads the state until
//! it has settled what it did.
//!
//! It is what makes an unsettled row mean "its command died": only a lock
//! holder writes intents, and the kernel drops a dead process's `flock` at
//! once, whatever killed it. Read-only commands never take it.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Held for as long as the value lives.
pub struct StateLock {
    _file: File,
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
            .map_err(|e| Error::Other(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("berth.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::Other(format!("cannot open {}: {e}", path.display())))?;
        loop {
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                return Ok(StateLock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::Other(format!("cannot lock {}: {e}", path.display())));
            }
        }
    }
}

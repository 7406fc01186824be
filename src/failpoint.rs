//! Deliberate crashes at named points, for the crash-safety tests.
//!
//! `BERTH_FAILPOINT=NAME:N` makes the process kill itself with SIGKILL the
//! N-th time it reaches the point NAME (N defaults to 1). It is how the tests
//! prove that whatever instant a command dies at, the next command converges:
//! SIGKILL runs no destructor, no rollback and no `Drop`, exactly like
//! `kill -9` or a power cut. Points: `step` (before each kernel step of a
//! plan), `intent` (after the intent is committed, before the kernel is
//! touched) and `record` (after the kernel work, before the final commit).
//! Reading the variable costs one lookup per process.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms a failpoint.
pub const ENV: &str = "BERTH_FAILPOINT";

fn armed() -> Option<&'static (String, u32)> {
    static SPEC: OnceLock<Option<(String, u32)>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let spec = std::env::var(ENV).ok()?;
        let (name, n) = match spec.split_once(':') {
            Some((name, n)) => (name.to_string(), n.parse().ok()?),
            None => (spec, 1),
        };
        Some((name, n))
    })
    .as_ref()
}

/// Dies here if this is the armed point's N-th visit.
pub fn hit(name: &str) {
    static HITS: AtomicU32 = AtomicU32::new(0);
    let Some((armed, n)) = armed() else { return };
    if armed != name {
        return;
    }
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

//! One function per verb: load state, plan, apply, save. Each mutating
//! command runs in one state transaction, computes and validates its whole
//! plan before touching the kernel, and with `dry_run` only returns the plan.

pub mod bench;
pub mod bench_traffic;
pub mod demo;
pub mod endpoint;
pub mod maintain;
pub mod network;
pub mod run;

use std::path::PathBuf;

use crate::error::Result;
use crate::kernel::{Kernel, LiveKernel};
use crate::plan::Plan;
use crate::store::{StateLock, Store};

/// What every command gets: where the state lives and how to reach the kernel.
pub struct Context {
    pub state_dir: PathBuf,
    pub dry_run: bool,
    pub kernel: Box<dyn Kernel>,
    /// A store opened earlier in this command and handed on (opening one
    /// costs ~0.3 ms, more than the rest of the preflight).
    spare_store: std::cell::RefCell<Option<Store>>,
}

impl Context {
    pub fn new(state_dir: PathBuf, dry_run: bool) -> Context {
        Context {
            state_dir,
            dry_run,
            kernel: Box::new(LiveKernel::new()),
            spare_store: Default::default(),
        }
    }

    /// The state, read-write (created if needed); for a dry run, a private
    /// copy of it that nothing is ever written back from.
    pub fn store(&self) -> Result<Store> {
        if self.dry_run {
            return Store::scratch_copy(&self.state_dir);
        }
        match self.spare_store.borrow_mut().take() {
            Some(store) => Ok(store),
            None => Store::open(&self.state_dir),
        }
    }

    /// Keeps an open store for the next `store()` of this command.
    pub fn hand_on(&self, store: Store) {
        *self.spare_store.borrow_mut() = Some(store);
    }

    /// Where every mutating command starts: takes the state lock (held
    /// until the returned guard drops) and repairs whatever an earlier
    /// crash, a reboot or a foreign change left (`reconcile::preflight`).
    /// A dry run takes nothing and repairs nothing: it changes nothing.
    pub fn begin_change(&mut self) -> Result<Option<StateLock>> {
        let lock = self.lock()?;
        if lock.is_some() {
            crate::reconcile::preflight(self)?;
        }
        Ok(lock)
    }

    /// The state lock alone (for `up` and `gc`, which reconcile anyway);
    /// None for a dry run.
    pub fn lock(&mut self) -> Result<Option<StateLock>> {
        if self.dry_run {
            return Ok(None);
        }
        Ok(Some(StateLock::acquire(&self.state_dir)?))
    }

    /// The state for a command that only reads it: creates and writes
    /// nothing; `None` when there is no state yet.
    pub fn store_read_only(&self) -> Result<Option<Store>> {
        Store::open_read_only(&self.state_dir)
    }
}

/// The result of a mutating command: what it did, or with `--dry-run` what
/// it would do.
pub enum Outcome<T> {
    Planned(Plan),
    Done(T),
}

impl<T> Outcome<T> {
    /// The same outcome with the done value changed by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Planned(plan) => Outcome::Planned(plan),
            Outcome::Done(value) => Outcome::Done(f(value)),
        }
    }

    /// What was done, for callers that never ask for a dry run.
    pub fn applied(self) -> T {
        match self {
            Outcome::Done(value) => value,
            Outcome::Planned(_) => panic!("a dry run where none was asked for"),
        }
    }
}

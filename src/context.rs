//! What every command works with: where the state lives, the kernel, the
//! DNS server's control, and what the command has to tell the user.
//!
//! Commands never print. What a user should know (a warning, a repair the
//! preflight made first) is collected here as [`Notice`]s, and the front
//! door that called the command decides how to show them.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::kernel::{Kernel, LiveKernel};
use crate::store::Store;

/// The command's world.
pub struct Context {
    pub state_dir: PathBuf,
    /// Plan only: nothing is changed, the state is a private copy.
    pub dry_run: bool,
    pub kernel: Box<dyn Kernel>,
    /// The DNS server, brought in line after each change.
    pub names: Box<dyn NameService>,
    /// A store opened earlier in this command and handed on (opening one
    /// costs ~0.3 ms, more than the rest of the preflight).
    spare_store: RefCell<Option<Store>>,
    /// A read-only store handed back by a read, for the next one: a
    /// listing reads the state three or four times, and each open costs
    /// more than most of those reads.
    spare_read_only: RefCell<Option<Store>>,
    notices: Vec<Notice>,
}

/// Something the user should know about a command that succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The preflight found the kernel out of step with the state (a
    /// reboot, an interrupted command, a foreign change) and repaired it
    /// before the command did its own work.
    Repaired { reason: String, lines: Vec<String> },
    /// A condition the command could not fix and the user may want to.
    Warning(String),
}

/// Which of the DNS server's names a change touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DnsScope {
    /// One namespace's endpoints (connect, disconnect): the server
    /// re-reads that namespace's rows alone.
    Netns(u64),
    /// Networks came or went: the server re-reads everything.
    All,
}

/// The DNS server's control, behind a trait so that commands can be
/// tested without starting a server.
pub trait NameService {
    /// Makes the server match the state after a change (start, reload or
    /// let it exit); returns the server's warnings.
    fn sync(&mut self, state_dir: &Path, scope: DnsScope) -> Result<Vec<String>>;

    /// Tells the supervisor, which keeps the server running and reclaims
    /// what killed sandboxes leave, that the state changed (starting it
    /// when something needs watching), and how many endpoints' links the
    /// transaction left in the pending group for it to delete (starting it
    /// for those too), handing it `nft`, the transaction's nf_tables
    /// socket, to close later (see `Kernel::release_nft`). A stand-in does
    /// nothing (and `nft` is closed here).
    fn supervise(
        &mut self,
        _state_dir: &Path,
        _pending: usize,
        _nft: Option<std::os::fd::OwnedFd>,
    ) -> Result<()> {
        Ok(())
    }

    /// Counts `pending` more endpoints' links as waiting in the pending
    /// group; true when they reached the bound and the caller is to
    /// delete the group now (see `background::note_pending`). A stand-in
    /// counts nothing.
    fn note_pending(&mut self, _state_dir: &Path, _pending: usize) -> Result<bool> {
        Ok(false)
    }

    /// The caller deleted the pending group itself.
    fn pending_deleted(&mut self, _state_dir: &Path) {}
}

/// The real server (`berth-dns`, or `berth dns-server` without it),
/// started and notified over its control socket.
pub struct LiveNames;

impl NameService for LiveNames {
    fn sync(&mut self, state_dir: &Path, scope: DnsScope) -> Result<Vec<String>> {
        match scope {
            DnsScope::All => crate::dns::sync(state_dir),
            DnsScope::Netns(inode) => crate::dns::sync_netns(state_dir, inode),
        }
    }

    fn supervise(
        &mut self,
        state_dir: &Path,
        pending: usize,
        nft: Option<std::os::fd::OwnedFd>,
    ) -> Result<()> {
        crate::background::supervise(state_dir, pending, nft)
    }

    fn note_pending(&mut self, state_dir: &Path, pending: usize) -> Result<bool> {
        crate::background::note_pending(state_dir, pending)
    }

    fn pending_deleted(&mut self, state_dir: &Path) {
        crate::background::pending_deleted(state_dir)
    }
}

/// A stand-in for the DNS server, for tests: it records what it was asked.
#[derive(Default)]
pub struct RecordedNames {
    pub syncs: std::rc::Rc<std::cell::RefCell<Vec<DnsScope>>>,
    /// The pending links each transaction told the supervisor of.
    pub pending: std::rc::Rc<std::cell::RefCell<Vec<usize>>>,
}

impl NameService for RecordedNames {
    fn sync(&mut self, _state_dir: &Path, scope: DnsScope) -> Result<Vec<String>> {
        self.syncs.borrow_mut().push(scope);
        Ok(Vec::new())
    }

    fn supervise(
        &mut self,
        _state_dir: &Path,
        pending: usize,
        _nft: Option<std::os::fd::OwnedFd>,
    ) -> Result<()> {
        self.pending.borrow_mut().push(pending);
        Ok(())
    }
}

impl Context {
    pub fn new(state_dir: PathBuf, dry_run: bool) -> Context {
        Context::with(
            state_dir,
            dry_run,
            Box::new(LiveKernel::new()),
            Box::new(LiveNames),
        )
    }

    /// A context over another kernel and DNS control (tests).
    pub fn with(
        state_dir: PathBuf,
        dry_run: bool,
        kernel: Box<dyn Kernel>,
        names: Box<dyn NameService>,
    ) -> Context {
        Context {
            state_dir,
            dry_run,
            kernel,
            names,
            spare_store: Default::default(),
            spare_read_only: Default::default(),
            notices: Vec::new(),
        }
    }

    /// The state, read-write (created if needed); for a dry run, a private
    /// copy of it that nothing is ever written back from.
    pub fn store(&self) -> Result<Store> {
        // The spare is the real state: a dry run never writes to it.
        if self.dry_run {
            return Store::scratch_copy(&self.state_dir);
        }
        if let Some(store) = self.spare_store.borrow_mut().take() {
            return Ok(store);
        }
        crate::phases::timed(crate::phases::Phase::Open, || Store::open(&self.state_dir))
    }

    /// Keeps an open store for the next `store()` of this command.
    pub fn hand_on(&self, store: Store) {
        *self.spare_store.borrow_mut() = Some(store);
    }

    /// The state for a command that only reads it: creates and writes
    /// nothing; `None` when there is no state yet.
    pub fn store_read_only(&self) -> Result<Option<Store>> {
        if let Some(store) = self.spare_read_only.borrow_mut().take() {
            return Ok(Some(store));
        }
        Store::open_read_only(&self.state_dir)
    }

    /// Lets the process's exit end the read-only store, for a command
    /// whose process ends next: the kernel then drops the connection's
    /// locks, files and mappings with the rest of the process, where a
    /// close unmaps and closes each in turn (0.04 ms of a 0.9 ms `ps` at
    /// 100 endpoints). A read-only connection has nothing to write back
    /// (no checkpoint at close, see `Store::open_read_only`) and holds no
    /// transaction between reads, so nothing is lost.
    pub fn leave_read_only_to_exit(&self) {
        if let Some(store) = self.spare_read_only.borrow_mut().take() {
            std::mem::forget(store);
        }
    }

    /// Keeps a store from `store_read_only()` for the next one of this
    /// command. Each read is a transaction of its own, so the next one
    /// sees what was committed in between, as a fresh open would.
    pub fn hand_back_read_only(&self, store: Store) {
        *self.spare_read_only.borrow_mut() = Some(store);
    }

    pub fn notice(&mut self, notice: Notice) {
        self.notices.push(notice);
    }

    pub fn warn(&mut self, warning: impl Into<String>) {
        self.notices.push(Notice::Warning(warning.into()));
    }

    /// What the user should know, oldest first; the list is emptied.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }
}

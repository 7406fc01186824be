//! The one executor: every change berth makes to the host goes through
//! [`transaction`], which owns the crash-safety protocol (see
//! ARCHITECTURE.md, "Crash safety"):
//!
//! 1. take the state lock (held until the transaction ends);
//! 2. run the preflight, and reconcile first when it finds the kernel out
//!    of step with the state;
//! 3. for each change: let it decide ([`Change::prepare`]), commit its
//!    intent, apply its plan, and settle its rows; if the plan fails it has
//!    undone itself, and its rows are rolled back;
//! 4. when a later change of the transaction fails, take back the earlier
//!    ones (their compensations, newest first);
//! 5. record the nf_tables generation after berth's own firewall changes,
//!    bring the DNS server in line once, at the end, and tell the
//!    supervisor (see `background`) that the state changed.
//!
//! A dry run takes no lock and runs no preflight: it plans every change
//! against a private copy of the state (which each change's rows are
//! written to and settled in, so a later change of the transaction sees
//! them as a real run would) and returns the plans, in order.

use crate::change::{Change, Compensation, Outcome, Planned, Prepared};
use crate::context::{Context, DnsScope, Notice};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::phases::{self, Phase};
use crate::plan::Plan;
use crate::reconcile::{self, Reconcile, Scope};
use crate::store::{StateLock, Store};

/// Whether a transaction starts with the preflight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preflight {
    Run,
    /// `up` and `gc` reconcile everything anyway.
    Skip,
}

/// Runs `body` as one transaction under the state lock: every change it
/// applies through the [`Txn`] is protected by the intent protocol, and a
/// failure of the body takes back what its earlier changes did.
pub fn transaction<T>(
    ctx: &mut Context,
    preflight: Preflight,
    body: impl FnOnce(&mut Txn) -> Result<T>,
) -> Result<Outcome<T>> {
    let _lock = if ctx.dry_run {
        None
    } else {
        let lock = phases::timed(Phase::Lock, || StateLock::acquire(&ctx.state_dir));
        Some(lock?)
    };
    let store = ctx.store()?;
    let mut txn = Txn {
        ctx,
        store: Some(store),
        planned: Plan::new(),
        dns: Vec::new(),
        undo: Vec::new(),
        deferred: 0,
        deleted_nft: false,
    };
    if preflight == Preflight::Run && !txn.ctx.dry_run {
        phases::timed(Phase::Preflight, || txn.preflight())?;
    }
    let result = body(&mut txn);
    let value = match result {
        Ok(value) => value,
        Err(e) => {
            txn.compensate();
            txn.notify();
            txn.hand_on();
            return Err(e);
        }
    };
    txn.notify();
    let planned = std::mem::take(&mut txn.planned);
    let dry_run = txn.ctx.dry_run;
    txn.hand_on();
    Ok(if dry_run {
        Outcome::Planned(planned)
    } else {
        Outcome::Done(value)
    })
}

/// A transaction under way: what its body applies changes through.
pub struct Txn<'a> {
    ctx: &'a mut Context,
    /// The state for the whole transaction (a private copy in a dry run).
    /// Taken only while a change's own sub-transaction needs it.
    store: Option<Store>,
    /// A dry run's plans, in order.
    planned: Plan,
    /// The DNS names the applied changes touched.
    dns: Vec<DnsScope>,
    /// How to take back each applied change, oldest first.
    undo: Vec<Compensation>,
    /// How many endpoints' links the applied plans left in the pending
    /// group (`names::PENDING_GROUP`), for the supervisor to delete.
    deferred: usize,
    /// Whether an applied plan took something away from nftables (so the
    /// socket's last close would wait for it to be freed).
    deleted_nft: bool,
}

impl Txn<'_> {
    pub fn ctx(&mut self) -> &mut Context {
        self.ctx
    }

    pub fn dry_run(&self) -> bool {
        self.ctx.dry_run
    }

    /// Reads the state under the transaction's lock.
    pub fn read<R>(&mut self, f: impl FnOnce(&crate::store::Tx) -> Result<R>) -> Result<R> {
        let store = self
            .store
            .as_mut()
            .expect("the store is back between changes");
        let tx = store.begin()?;
        f(&tx)
    }

    /// Decides `change` and, unless this is a dry run, carries it out.
    pub fn apply<C: Change>(&mut self, mut change: C) -> Result<C::Output> {
        let mut repaired = false;
        loop {
            let mut store = self.store.take().expect("one change at a time");
            let result = self.apply_once(&mut store, &mut change, repaired);
            self.store = Some(store);
            match result? {
                Some(output) => return Ok(output),
                // The kernel lost something the change stands on.
                None => {
                    let lines = self.apply(Reconcile(Scope::default()))?;
                    if !lines.is_empty() {
                        self.ctx.notice(Notice::Repaired {
                            reason: "something this command stands on was gone".into(),
                            lines,
                        });
                    }
                    repaired = true;
                }
            }
        }
    }

    /// One attempt; None when the change asks for a repair first.
    fn apply_once<C: Change>(
        &mut self,
        store: &mut Store,
        change: &mut C,
        repaired: bool,
    ) -> Result<Option<C::Output>> {
        let tx = store.begin()?;
        let prepared = phases::timed(Phase::Decide, || change.prepare(self.ctx, &tx));
        let planned = match prepared? {
            Prepared::Repair if repaired || self.ctx.dry_run => {
                return Err(Error::Other(
                    "the kernel is out of step with berth's state and a reconcile did not repair it; run `berth gc`".into(),
                ))
            }
            Prepared::Repair => return Ok(None),
            Prepared::Unchanged(output) => {
                tx.commit()?;
                return Ok(Some(output));
            }
            Prepared::Change(planned) => planned,
        };
        let Planned {
            plan,
            intent,
            output,
            dns,
            warnings,
            undo,
        } = planned;
        if self.ctx.dry_run {
            // The private copy takes the change as done, its rows settled
            // as a real apply leaves them, so that the next change of the
            // transaction plans against what it would find (a network
            // removed before is gone, and the last one takes the table).
            intent.begin(&tx)?;
            intent.settle(&tx)?;
            tx.commit()?;
            self.planned.steps.extend(plan.steps);
            return Ok(Some(output));
        }
        // The intent, committed before the kernel is touched: a crash from
        // here on leaves rows that the next command's preflight finishes
        // or undoes.
        phases::timed(Phase::Record, || {
            intent.begin(&tx)?;
            tx.commit()
        })?;
        failpoint::hit("intent");
        if let Err(e) = plan.apply(self.ctx.kernel.as_mut()) {
            // The plan undid what it had done: the rows go back too.
            let tx = store.begin()?;
            intent.roll_back(&tx)?;
            tx.commit()?;
            return Err(e);
        }
        self.deferred += plan.deferred_deletes();
        self.deleted_nft |= plan.takes_away_nft();
        failpoint::hit("record");
        let started = std::time::Instant::now();
        let tx = store.begin()?;
        intent.settle(&tx)?;
        if plan.touches_nft() || intent.records_host() {
            reconcile::record_generation(self.ctx, &tx)?;
        }
        tx.commit()?;
        phases::add(Phase::Record, started);
        self.dns.extend(dns);
        for w in warnings {
            self.ctx.warn(w);
        }
        self.undo.extend(undo);
        Ok(Some(output))
    }

    /// The preflight: repairs whatever an earlier crash, a reboot or a
    /// foreign change left before the transaction's own changes.
    fn preflight(&mut self) -> Result<()> {
        let mut store = self.store.take().expect("the store is here");
        let reason = (|| {
            let tx = store.begin()?;
            let reason = reconcile::preflight(self.ctx, &tx)?;
            if reason.is_none() {
                tx.commit()?;
            }
            Ok::<_, Error>(reason)
        })();
        self.store = Some(store);
        if let Some(reason) = reason? {
            let lines = self.apply(Reconcile(Scope::default()))?;
            if !lines.is_empty() {
                self.ctx.notice(Notice::Repaired {
                    reason: reason.into(),
                    lines,
                });
            }
        }
        Ok(())
    }

    /// Takes back the applied changes, newest first. What cannot be taken
    /// back is reported; the next command's preflight sees nothing
    /// unsettled, so it stays until removed by hand.
    fn compensate(&mut self) {
        while let Some(undo) = self.undo.pop() {
            if let Err(e) = self.apply(undo) {
                self.ctx
                    .warn(format!("taking back an earlier change failed: {e}"));
            }
        }
    }

    /// Tells the DNS server and the supervisor what the transaction did.
    fn notify(&mut self) {
        let started = std::time::Instant::now();
        self.sync_dns();
        self.supervise();
        phases::add(Phase::Notify, started);
    }

    /// Brings the DNS server in line with what the transaction changed;
    /// a failure is a warning, since the changes are done and committed.
    fn sync_dns(&mut self) {
        if self.ctx.dry_run || self.dns.is_empty() {
            return;
        }
        let mut scopes = std::mem::take(&mut self.dns);
        scopes.sort();
        scopes.dedup();
        if scopes.contains(&DnsScope::All) {
            scopes = vec![DnsScope::All];
        }
        for scope in scopes {
            match self.ctx.names.sync(&self.ctx.state_dir, scope) {
                Ok(warnings) => {
                    for w in warnings {
                        // The same process forwards [::1]; its lines name
                        // the published port themselves.
                        if w.starts_with(crate::dns::FORWARD_WARNING) {
                            self.ctx.warn(w);
                        } else {
                            self.ctx.warn(format!("DNS: {w}"));
                        }
                    }
                }
                Err(e) => self.ctx.warn(format!("DNS server: {e}")),
            }
        }
    }

    /// Tells the supervisor that the state may have changed, so that it
    /// watches what is new (a sandbox's owner) and lets go of what is gone,
    /// and of the links left pending, which it deletes; a failure is a
    /// warning, like the DNS server's. With no supervisor to delete them,
    /// the transaction deletes the pending links itself (one request).
    fn supervise(&mut self) {
        if self.ctx.dry_run {
            return;
        }
        let pending = std::mem::take(&mut self.deferred);
        let dir = &self.ctx.state_dir;
        // Past the bound (or with the count unreadable), this command
        // deletes what waits: one request.
        let mut delete_now = self.ctx.names.note_pending(dir, pending).unwrap_or(true);
        // Closing it would wait for nf_tables to free what the batches
        // deleted: the supervisor closes it later.
        let nft = if self.deleted_nft {
            self.ctx.kernel.release_nft()
        } else {
            None
        };
        self.deleted_nft = false;
        if let Err(e) = self.ctx.names.supervise(dir, pending, nft) {
            self.ctx.warn(format!("supervisor: {e}"));
            delete_now = true;
        }
        if pending > 0 && delete_now {
            self.ctx.names.pending_deleted(&self.ctx.state_dir);
            let group = crate::model::names::PENDING_GROUP;
            if let Err(e) = self.ctx.kernel.delete_link_group(group) {
                self.ctx.warn(format!("deleting the pending links: {e}"));
            }
        }
    }

    /// The open store serves the caller's next command in this process (a
    /// dry run's private copy does not: the next command plans afresh).
    fn hand_on(&mut self) {
        if let Some(store) = self.store.take() {
            if !self.ctx.dry_run {
                self.ctx.hand_on(store);
            }
        }
    }
}

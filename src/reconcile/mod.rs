//! Reconcile: make the kernel match the state, whatever happened between
//! them (a command killed at any instant, a reboot, a flushed ruleset, a
//! deleted bridge or namespace).
//!
//! It is one mechanism in three parts: **observe** the state rows and the
//! kernel facts that matter, each read once ([`observe`]); **decide**, a pure
//! function from the two to a plan and the rows to drop ([`decide`]); **act**,
//! apply the plan (undone on failure) and then record. Running it again
//! after a crash at any point converges, because every decision is taken
//! from what exists now. `berth up` and `berth gc` are a reconcile of
//! everything; every mutating command first runs [`preflight`], which costs
//! a few lookups when nothing is wrong and a reconcile when something is.

pub mod decide;
pub mod observe;

use crate::commands::{Context, Outcome};
use crate::error::Result;
use crate::firewall;
use crate::kernel::Kernel;
use crate::store::{Status, Tx};

pub use decide::{decide, Decision, Desired, Observed, Scope};

/// Settings keys of the facts [`preflight`] compares.
const HOST_ID: &str = "host_id";
const NFT_GENERATION: &str = "nft_generation";

/// Reconciles everything (the caller holds the state lock). Returns what
/// was repaired or removed, one line each; with `dry_run`, the plan.
pub fn reconcile(ctx: &mut Context, scope: Scope) -> Result<Outcome<Vec<String>>> {
    let mut store = ctx.store()?;
    let desired = {
        let tx = store.begin()?;
        tx.instance_id()?;
        let desired = observe::desired(&tx)?;
        if !ctx.dry_run {
            tx.commit()?;
        }
        desired
    };
    let observed = observe::observe(ctx.kernel.as_mut(), &desired)?;
    if let Some(table) = &observed.table {
        check_owner(table, &desired.instance, ctx)?;
    }
    let decision = decide(&desired, &observed, scope);
    if ctx.dry_run {
        return Ok(Outcome::Planned(decision.plan));
    }
    decision.plan.apply(ctx.kernel.as_mut())?;
    crate::failpoint::hit("record");
    let tx = store.begin()?;
    tx.delete_endpoints(&decision.drop_endpoints)?;
    for id in &decision.drop_networks {
        tx.delete_network(*id)?;
    }
    for name in &decision.drop_sandboxes {
        tx.delete_sandbox(name)?;
    }
    record_host(ctx.kernel.as_ref(), &tx)?;
    record_generation(ctx, &tx)?;
    tx.commit()?;
    Ok(Outcome::Done(decision.report))
}

/// What every mutating command runs first, holding the state lock: it
/// notices a reboot (the host identity changed), a command that died (an
/// unsettled row), a `run` that was killed, or a ruleset changed by someone
/// else (the nf_tables generation moved and berth's table no longer has
/// the chains and rules the state describes), and reconciles before the
/// command does its own work. When nothing is wrong it costs a read of
/// the boot id, one socket option, one netlink round trip and two indexed
/// queries.
pub fn preflight(ctx: &mut Context) -> Result<()> {
    let mut store = ctx.store()?;
    let tx = store.begin()?;
    let host = ctx.kernel.host_identity();
    let facts = tx.preflight_facts()?;
    let generation = ctx.kernel.nft_generation()?.to_string();
    let moved = facts.generation.as_deref() != Some(generation.as_str());
    let reason = if facts.host.as_deref().is_some_and(|h| h != host) {
        Some("the host restarted (or its network namespace changed) since berth last ran")
    } else if facts.unsettled {
        Some("an earlier berth command was interrupted")
    } else if facts.sandboxes
        && tx
            .sandboxes()?
            .iter()
            .any(|s| !ctx.kernel.process_alive(s.owner_pid, s.owner_start))
    {
        Some("a `berth run` was killed")
    } else if moved && ruleset_differs(ctx, &tx)? {
        Some("berth's firewall table was changed by someone else")
    } else {
        None
    };
    match reason {
        None => {
            if facts.host.is_none() {
                record_host(ctx.kernel.as_ref(), &tx)?;
            }
            // A foreign change that left berth's table intact: remember the
            // new generation so the table is not compared again. Nothing is
            // written when nothing moved.
            if moved {
                tx.set_setting(NFT_GENERATION, &generation)?;
            }
            tx.commit()?;
            ctx.hand_on(store);
        }
        Some(reason) => {
            drop(tx);
            let dry_run = std::mem::replace(&mut ctx.dry_run, false);
            let done = reconcile(ctx, Scope::default());
            ctx.dry_run = dry_run;
            let lines = done?.applied();
            if !lines.is_empty() {
                eprintln!("berth: {reason}; repaired first:");
                for line in lines {
                    eprintln!("berth:   {line}");
                }
            }
        }
    }
    Ok(())
}

/// Whether berth's table differs from what the state describes; an error
/// when the table is another berth state's.
fn ruleset_differs(ctx: &mut Context, tx: &Tx) -> Result<bool> {
    let live: Vec<_> = tx
        .networks_with_status()?
        .into_iter()
        .filter(|(_, s)| *s == Status::Ready)
        .map(|(n, _)| n)
        .collect();
    let instance = tx.instance_id()?;
    let actual = ctx.kernel.nft_fingerprint(&firewall::table())?;
    if let Some(table) = &actual {
        check_owner(table, &instance, ctx)?;
    }
    Ok(actual != decide::expected_fingerprint(&live, &instance))
}

/// Refuses to touch a table another berth state made: two states on one
/// host would rebuild each other's networks away.
fn check_owner(table: &crate::kernel::NftFingerprint, ours: &str, ctx: &Context) -> Result<()> {
    match firewall::owner_of(table.keys()) {
        Some(owner) if owner != ours => Err(crate::error::Error::invalid(format!(
            "the firewall table inet {} belongs to another berth state (instance {owner}; this state, {}, is instance {ours}): one host runs one berth state, so use the --state-dir that made it",
            firewall::TABLE_NAME,
            ctx.state_dir.display()
        ))),
        _ => Ok(()),
    }
}

/// Records the nf_tables generation after berth's own change, so that the
/// next command can tell a foreign change from its own.
pub fn record_generation(ctx: &mut Context, tx: &Tx) -> Result<()> {
    let generation = ctx.kernel.nft_generation()?;
    tx.set_setting(NFT_GENERATION, &generation.to_string())
}

fn record_host(kernel: &dyn Kernel, tx: &Tx) -> Result<()> {
    tx.set_setting(HOST_ID, &kernel.host_identity())
}

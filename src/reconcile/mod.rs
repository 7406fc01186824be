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

use crate::change::{Change, Intent, Planned, Prepared, Settle};
use crate::context::{Context, DnsScope};
use crate::error::Result;
use crate::firewall;
use crate::store::{Status, Tx, NFT_GENERATION};

pub use decide::{decide, Decision, Desired, Observed, Scope};

/// A reconcile of everything berth owns, as a change: its output is what
/// was repaired or removed, one line each.
pub struct Reconcile(pub Scope);

impl Change for Reconcile {
    type Output = Vec<String>;

    fn prepare(&mut self, ctx: &mut Context, tx: &Tx) -> Result<Prepared<Vec<String>>> {
        // Made once and kept: it marks the firewall table as this state's.
        tx.instance_id()?;
        let desired = observe::desired(tx)?;
        let observed = observe::observe(ctx.kernel.as_mut(), &desired)?;
        if let Some(table) = &observed.table {
            check_owner(table, &desired.instance, ctx)?;
        }
        let decision = decide(&desired, &observed, self.0);
        let intent = Intent {
            rows: Vec::new(),
            settle: vec![
                Settle::DropEndpoints(decision.drop_endpoints),
                Settle::DropNetworks(decision.drop_networks),
                Settle::DropSandboxes(decision.drop_sandboxes),
                Settle::RecordHost(ctx.kernel.host_identity()),
            ],
        };
        let mut planned = Planned::new(decision.plan, intent, decision.report);
        // After a reboot the server is gone; after a repair its networks
        // may have come back or gone.
        planned.dns = Some(DnsScope::All);
        Ok(Prepared::Change(planned))
    }
}

/// What every mutating command checks first, holding the state lock: a
/// reboot (the host identity changed), a command that died (an unsettled
/// row), a `run` that was killed, or a ruleset changed by someone else
/// (the nf_tables generation moved and berth's table no longer has the
/// chains and rules the state describes). Returns why a reconcile is
/// needed, or None; when nothing is wrong it records what it learned in
/// `tx` and costs a read of the boot id, one socket option, one netlink
/// round trip and two indexed queries.
pub fn preflight(ctx: &mut Context, tx: &Tx) -> Result<Option<&'static str>> {
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
    } else if moved && ruleset_differs(ctx, tx)? {
        Some("berth's firewall table was changed by someone else")
    } else {
        None
    };
    if reason.is_none() {
        if facts.host.is_none() {
            tx.set_setting(crate::store::HOST_ID, &host)?;
        }
        // A foreign change that left berth's table intact: remember the
        // new generation so the table is not compared again. Nothing is
        // written when nothing moved.
        if moved {
            tx.set_setting(NFT_GENERATION, &generation)?;
        }
    }
    Ok(reason)
}

/// Whether berth's tables differ from what the state describes; an error
/// when the tables are another berth state's.
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
    let (routing, guard) = decide::expected_fingerprints(&live, &instance);
    if actual != routing {
        return Ok(true);
    }
    Ok(ctx.kernel.nft_fingerprint(&firewall::guard::table())? != guard)
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

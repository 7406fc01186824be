//! `up` and `gc`: a reconcile of everything berth owns, on demand.
//!
//! `up` rebuilds from the state what the kernel lost (after a reboot, or
//! when someone deleted a bridge or flushed the ruleset) and drops the
//! endpoints whose namespace did not survive. `gc` does the same and also
//! removes what berth made that no state row knows (leftovers of crashes
//! from before intents were recorded, or of a lost state). Both are
//! idempotent: a second run finds nothing to do.

use super::{Context, Outcome};
use crate::error::Result;
use crate::reconcile::{reconcile, Scope};

pub fn up(ctx: &mut Context) -> Result<Outcome<Vec<String>>> {
    let _lock = ctx.lock()?;
    let outcome = reconcile(ctx, Scope { sweep: false })?;
    sync_dns(ctx);
    Ok(outcome)
}

pub fn gc(ctx: &mut Context) -> Result<Outcome<Vec<String>>> {
    let _lock = ctx.lock()?;
    let outcome = reconcile(ctx, Scope { sweep: true })?;
    sync_dns(ctx);
    Ok(outcome)
}

/// The DNS server follows: started after a reboot, its listeners moved
/// with the networks that came back or went.
fn sync_dns(ctx: &Context) {
    if !ctx.dry_run {
        crate::dns::sync_or_warn(&ctx.state_dir);
    }
}

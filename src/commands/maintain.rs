//! `up` and `gc`: a reconcile of everything berth owns, on demand.
//!
//! `up` rebuilds from the state what the kernel lost (after a reboot, or
//! when someone deleted a bridge or flushed the ruleset) and drops the
//! endpoints whose namespace did not survive. `gc` does the same and also
//! removes what berth made that no state row knows (leftovers of crashes
//! from before intents were recorded, or of a lost state). Both are
//! idempotent: a second run finds nothing to do.

use crate::change::Outcome;
use crate::context::Context;
use crate::error::Result;
use crate::executor::{transaction, Preflight};
use crate::reconcile::{Reconcile, Scope};

pub fn up(ctx: &mut Context) -> Result<Outcome<Vec<String>>> {
    transaction(ctx, Preflight::Skip, |txn| {
        txn.apply(Reconcile(Scope { sweep: false }))
    })
}

pub fn gc(ctx: &mut Context) -> Result<Outcome<Vec<String>>> {
    transaction(ctx, Preflight::Skip, |txn| {
        txn.apply(Reconcile(Scope { sweep: true }))
    })
}

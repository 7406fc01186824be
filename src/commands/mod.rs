//! The verbs. Each change berth can make is a [`Change`] (it decides, from
//! what exists now, the plan and its intent) that the one executor
//! (`crate::executor`) carries out; the functions here run the common
//! single-change transactions for callers that need no more. Read-only
//! verbs (`ls`, `inspect`, `ps`) read the state without the lock.
//!
//! Commands never print: what they did comes back as values, and what the
//! user should know as notices on the [`Context`].
//!
//! [`Change`]: crate::change::Change

pub mod endpoint;
#[cfg(test)]
mod guard_tests;
pub mod jobs;
pub mod maintain;
pub mod network;
pub mod run;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_bandwidth;
#[cfg(test)]
mod tests_defer;
#[cfg(test)]
mod tests_guards;
#[cfg(test)]
mod tests_ipv6;

use crate::change::Outcome;
use crate::context::Context;
use crate::error::Result;
use crate::executor::{transaction, Preflight};
use crate::model::{Endpoint, Network};
use crate::request::{AttachRequest, DetachRequest, NetworkRequest};

pub use endpoint::{Attach, Detach, DetachAll, Disconnected};
pub use network::{CreateNetwork, EnsureNetwork, RemoveNetwork, Reset, ResetReport};

/// `network create`.
pub fn create_network(ctx: &mut Context, req: NetworkRequest) -> Result<Outcome<Network>> {
    transaction(ctx, Preflight::Run, |txn| {
        txn.apply(CreateNetwork::new(req))
    })
}

/// `network rm`.
pub fn remove_network(
    ctx: &mut Context,
    name: &str,
    force: bool,
) -> Result<Outcome<Vec<Endpoint>>> {
    transaction(ctx, Preflight::Run, |txn| {
        txn.apply(RemoveNetwork::new(name, force))
    })
}

/// `connect`.
pub fn connect(ctx: &mut Context, req: AttachRequest) -> Result<Outcome<(Endpoint, Network)>> {
    transaction(ctx, Preflight::Run, |txn| txn.apply(Attach(req)))
}

/// `disconnect`.
pub fn disconnect(ctx: &mut Context, req: DetachRequest) -> Result<Outcome<Disconnected>> {
    transaction(ctx, Preflight::Run, |txn| txn.apply(Detach(req)))
}

/// `reset`.
pub fn reset(ctx: &mut Context) -> Result<Outcome<ResetReport>> {
    transaction(ctx, Preflight::Run, |txn| txn.apply(Reset))
}

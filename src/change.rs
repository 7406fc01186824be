//! One change to the host as the executor runs it. A [`Change`] decides,
//! under the state lock, what to do: it checks its request against the
//! state and the kernel, writes the rows it is about to make into the open
//! transaction, and returns the [`Plan`] with its [`Intent`]. The executor
//! (`crate::executor`) does the rest the same way for every change: marks
//! the intent, applies the plan, rolls back or settles.
//!
//! The intent is what makes a crash at any instant recoverable: each
//! [`Row`] says what an unsettled row means and how the row is rolled back
//! (the plan failed and was undone) or settled (the plan was applied).

use crate::context::{Context, DnsScope};
use crate::error::Result;
use crate::plan::Plan;
use crate::store::{Status, Tx};

/// One change: a network made, an endpoint attached, a reconcile.
pub trait Change {
    /// What the caller learns when the change is done (or, in a dry run,
    /// would be).
    type Output;

    /// Decides the change from what exists now. Called with the state lock
    /// held (except in a dry run, which works on a private copy); writes
    /// into `tx` only the rows its intent names; touches no kernel state.
    fn prepare(&mut self, ctx: &mut Context, tx: &Tx) -> Result<Prepared<Self::Output>>;
}

/// The decision of [`Change::prepare`].
pub enum Prepared<T> {
    /// The kernel lost something the change stands on (the network's
    /// bridge, the namespace of a row it could clash with): the executor
    /// reconciles first and asks again.
    Repair,
    /// Nothing needs changing (the network exists and agrees; the endpoint
    /// to remove is already gone).
    Unchanged(T),
    Change(Planned<T>),
}

/// A change decided: the kernel steps, what the rows mean while they run,
/// and what follows.
pub struct Planned<T> {
    pub plan: Plan,
    pub intent: Intent,
    pub output: T,
    /// The DNS names the change touches, if any.
    pub dns: Option<DnsScope>,
    /// What the user should know once it is done.
    pub warnings: Vec<String>,
    /// The change that takes this one back, should a later change of the
    /// same transaction fail.
    pub undo: Option<Compensation>,
}

impl<T> Planned<T> {
    pub fn new(plan: Plan, intent: Intent, output: T) -> Planned<T> {
        Planned {
            plan,
            intent,
            output,
            dns: None,
            warnings: Vec::new(),
            undo: None,
        }
    }
}

/// A change whose output nobody reads: how a transaction takes back what
/// an earlier change of it did.
pub type Compensation = Box<dyn Change<Output = ()>>;

/// Wraps a change as a [`Compensation`].
pub fn compensation<C: Change + 'static>(change: C) -> Compensation {
    Box::new(Discard(change))
}

struct Discard<C>(C);

impl<C: Change> Change for Discard<C> {
    type Output = ();
    fn prepare(&mut self, ctx: &mut Context, tx: &Tx) -> Result<Prepared<()>> {
        Ok(match self.0.prepare(ctx, tx)? {
            Prepared::Repair => Prepared::Repair,
            Prepared::Unchanged(_) => Prepared::Unchanged(()),
            Prepared::Change(p) => Prepared::Change(Planned {
                plan: p.plan,
                intent: p.intent,
                output: (),
                dns: p.dns,
                warnings: p.warnings,
                undo: None,
            }),
        })
    }
}

impl<C: Change + ?Sized> Change for Box<C> {
    type Output = C::Output;
    fn prepare(&mut self, ctx: &mut Context, tx: &Tx) -> Result<Prepared<C::Output>> {
        (**self).prepare(ctx, tx)
    }
}

/// The rows a change works on, and what follows when it is done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intent {
    pub rows: Vec<Row>,
    /// Written when the plan was applied, after the rows settle.
    pub settle: Vec<Settle>,
}

/// A row whose meaning changes while the plan runs. Between the intent's
/// commit and the settle, the row's status says that a command is working
/// on it; a row found in that state by a lock holder belongs to a command
/// that died, and the reconcile finishes or undoes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Row {
    /// A network row written by `prepare`, `creating` until built.
    NewNetwork(i64),
    /// A network being taken down, `removing` until gone.
    GoingNetwork(i64),
    /// An endpoint row (with its lease, ports and names) written by
    /// `prepare`, `creating` until attached.
    NewEndpoint(i64),
    /// An endpoint being taken down, `removing` until gone.
    GoingEndpoint(i64),
    /// A `run` namespace recorded with its owner before it is made; the
    /// row itself is the intent (its owner's death means "undo").
    NewSandbox(String),
}

/// What the state records once the plan has been applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settle {
    /// This endpoint now gives its namespace the default route of this
    /// family.
    DefaultRoute(i64, crate::model::Family),
    DropEndpoints(Vec<i64>),
    DropNetworks(Vec<i64>),
    DropSandboxes(Vec<String>),
    /// Everything berth recorded goes (`reset`).
    ClearState,
    /// The host identity the kernel now matches (after a reconcile).
    RecordHost(String),
}

impl Intent {
    pub fn rows(rows: Vec<Row>) -> Intent {
        Intent {
            rows,
            settle: Vec::new(),
        }
    }

    /// Marks the rows as being worked on (committed before the kernel is
    /// touched).
    pub fn begin(&self, tx: &Tx) -> Result<()> {
        for row in &self.rows {
            match row {
                Row::NewNetwork(id) => tx.set_network_status(*id, Status::Creating)?,
                Row::GoingNetwork(id) => tx.set_network_status(*id, Status::Removing)?,
                Row::NewEndpoint(id) => tx.set_endpoint_status(*id, Status::Creating)?,
                Row::GoingEndpoint(id) => tx.set_endpoint_status(*id, Status::Removing)?,
                Row::NewSandbox(_) => {}
            }
        }
        Ok(())
    }

    /// The plan failed and was undone: the rows go back to what they were.
    pub fn roll_back(&self, tx: &Tx) -> Result<()> {
        for row in &self.rows {
            match row {
                Row::NewNetwork(id) => tx.delete_network(*id)?,
                Row::GoingNetwork(id) => tx.set_network_status(*id, Status::Ready)?,
                Row::NewEndpoint(id) => tx.delete_endpoint(*id)?,
                Row::GoingEndpoint(id) => tx.set_endpoint_status(*id, Status::Ready)?,
                Row::NewSandbox(name) => tx.delete_sandbox(name)?,
            }
        }
        Ok(())
    }

    /// The plan was applied: the rows say what now exists.
    pub fn settle(&self, tx: &Tx) -> Result<()> {
        for row in &self.rows {
            match row {
                Row::NewNetwork(id) => tx.set_network_status(*id, Status::Ready)?,
                Row::GoingNetwork(id) => tx.delete_network(*id)?,
                Row::NewEndpoint(id) => tx.set_endpoint_status(*id, Status::Ready)?,
                Row::GoingEndpoint(id) => tx.delete_endpoint(*id)?,
                Row::NewSandbox(_) => {}
            }
        }
        for s in &self.settle {
            match s {
                Settle::DefaultRoute(id, family) => tx.add_default_route_family(*id, *family)?,
                Settle::DropEndpoints(ids) => tx.delete_endpoints(ids)?,
                Settle::DropNetworks(ids) => {
                    for id in ids {
                        tx.delete_network(*id)?;
                    }
                }
                Settle::DropSandboxes(names) => {
                    for name in names {
                        tx.delete_sandbox(name)?;
                    }
                }
                Settle::ClearState => tx.clear()?,
                Settle::RecordHost(id) => tx.set_setting(crate::store::HOST_ID, id)?,
            }
        }
        Ok(())
    }

    /// Whether settling records the host (a reconcile), which goes with
    /// the nf_tables generation.
    pub fn records_host(&self) -> bool {
        self.settle
            .iter()
            .any(|s| matches!(s, Settle::RecordHost(_)))
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
    pub fn applied(self) -> crate::error::Result<T> {
        match self {
            Outcome::Done(value) => Ok(value),
            Outcome::Planned(_) => Err(crate::error::Error::Other(
                "a dry run where none was asked for".into(),
            )),
        }
    }
}

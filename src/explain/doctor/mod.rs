//! `berth doctor`: checks the host for what keeps container traffic from
//! flowing (forwarding off, a foreign firewall's drop, a route that shadows
//! a subnet, berth's own tables or devices drifted from the state, a dead
//! DNS server) and says, for each finding, how bad it is, why in one
//! sentence, and what to run. It reads only: no lock, no write, and it
//! works before any state exists.
//!
//! - `host`: sysctls (ip_forward, br_netfilter, rp_filter on uplinks).
//! - `firewall`: other tables' input/forward chains, berth's own tables.
//! - `links`: route clashes, bridges and veths, leftover namespaces, and
//!   the dry-run reconcile.
//! - `services`: the state database, the DNS server, the supervisor.

mod firewall;
mod host;
mod links;
mod services;

use serde::Serialize;

use crate::context::Context;
use crate::error::Result;
use crate::kernel::{FilterChain, NetnsDetails};
use crate::reconcile::{Desired, Observed};

/// How bad a finding is; the exit code is 1 when any is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One thing the doctor found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check: `ip_forward`, `br_netfilter`, `foreign_firewall`, ...
    pub check: &'static str,
    pub severity: Severity,
    /// One sentence: what is so and what it means for berth.
    pub summary: String,
    /// What to run (a berth command where one exists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Supporting lines: the rules, routes or repairs concerned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl Finding {
    pub fn new(check: &'static str, severity: Severity, summary: impl Into<String>) -> Finding {
        Finding {
            check,
            severity,
            summary: summary.into(),
            fix: None,
            details: Vec::new(),
        }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }

    pub fn details(mut self, details: Vec<String>) -> Finding {
        self.details = details;
        self
    }
}

/// Everything the doctor found, worst first within the order of checks.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn worst(&self) -> Severity {
        self.findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// 1 when something is broken, else 0.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.worst() == Severity::Error)
    }
}

/// What the checks share, each read once: the state (None before any
/// state exists), the reconcile's observation of it, the host's links,
/// routes and neighbours, and the input/forward chains of every table.
pub struct Facts {
    pub desired: Option<Desired>,
    pub observed: Option<Observed>,
    pub host: NetnsDetails,
    pub chains: Vec<FilterChain>,
}

impl Facts {
    pub fn networks(&self) -> impl Iterator<Item = &crate::model::Network> {
        self.desired
            .iter()
            .flat_map(|d| d.networks.iter())
            .filter(|(_, s)| *s == crate::store::Status::Ready)
            .map(|(n, _)| n)
    }
}

/// Runs every check.
pub fn run(ctx: &mut Context) -> Result<Report> {
    let mut findings = Vec::new();
    let desired = services::state(ctx, &mut findings)?;
    let observed = match &desired {
        Some(d) => Some(crate::reconcile::observe::observe(ctx.kernel.as_mut(), d)?),
        None => None,
    };
    let facts = Facts {
        desired,
        observed,
        host: ctx.kernel.netns_details(None)?,
        chains: ctx.kernel.filter_chains()?,
    };
    host::check(ctx, &facts, &mut findings)?;
    firewall::check(&facts, &mut findings);
    links::check(ctx, &facts, &mut findings);
    services::daemons(ctx, &facts, &mut findings);
    Ok(Report { findings })
}

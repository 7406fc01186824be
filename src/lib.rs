//! berth: single-host container networking for Linux. Networks (a bridge,
//! a subnet, a gateway) that network namespaces connect to, done over
//! netlink in-process, planned before applied, and shown as the equivalent
//! `ip`/`sysctl` commands on request.
//!
//! Layers, top uses bottom: `cli` → `commands` → `plan` → `model`, with
//! `kernel` (the only code that talks to the kernel) and `store` (SQLite
//! state) below. See ARCHITECTURE.md.

pub mod background;
pub mod change;
pub mod cli;
pub mod cni;
pub mod commands;
pub mod config;
pub mod context;
pub mod dns;
pub mod error;
pub mod executor;
pub mod explain;
pub mod failpoint;
pub mod firewall;
pub mod kernel;
pub mod model;
pub mod netavark;
pub mod phases;
pub mod plan;
pub mod portproxy;
pub mod reconcile;
pub mod request;
pub mod rootless;
pub mod store;
pub mod supervisor;

pub use error::{Error, Result};

//! What berth runs on: its state database (intact, owned and private),
//! and its two background processes, the DNS server (alive and answering
//! on each DNS network's gateway) and the supervisor.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{Facts, Finding, Severity};
use crate::background::SUPERVISOR_PID;
use crate::context::Context;
use crate::error::Result;
use crate::reconcile::{observe, Desired};
use crate::store::Store;

/// How many DNS networks get a real query (each is one round trip when
/// the server answers, up to 0.5 s when it does not).
const QUERIED: usize = 3;

/// Opens the state read-only, checks it, and reads what the reconcile
/// would want; None when there is no state (or it cannot be read, which
/// is then the finding).
pub fn state(ctx: &mut Context, out: &mut Vec<Finding>) -> Result<Option<Desired>> {
    let dir = ctx.state_dir.clone();
    let store = match Store::open_read_only(&dir) {
        Ok(Some(s)) => s,
        Ok(None) => {
            out.push(Finding::new(
                "state",
                Severity::Info,
                format!(
                    "there is no berth state in {} yet: berth has made nothing on this host",
                    dir.display()
                ),
            ));
            return Ok(None);
        }
        Err(e) => {
            out.push(
                Finding::new(
                    "state",
                    Severity::Error,
                    format!("the state cannot be read, so every berth command fails: {e}"),
                )
                .fix(format!("ls -la {}", dir.display())),
            );
            return Ok(None);
        }
    };
    let problems = store.integrity_problems()?;
    if problems.is_empty() {
        out.push(Finding::new(
            "state",
            Severity::Ok,
            format!(
                "the state database in {} passes SQLite's integrity check",
                dir.display()
            ),
        ));
    } else {
        out.push(
            Finding::new(
                "state",
                Severity::Error,
                format!("the state database in {} is damaged: berth may hand out addresses or delete devices wrongly", dir.display()),
            )
            .details(problems)
            .fix(format!("berth reset (after saving {})", dir.join("berth.db").display())),
        );
    }
    modes(&dir, out);
    let mut store = store;
    let tx = store.read()?;
    Ok(Some(observe::desired(&tx)?))
}

/// The modes berth gives its state: 0700 directory, 0600 database. The
/// read-only open already refuses what others could write; looser read
/// modes are only worth a note (berth narrows them at its next change).
fn modes(dir: &Path, out: &mut Vec<Finding>) {
    let mut loose = Vec::new();
    for (path, want) in [(dir.to_path_buf(), 0o700), (dir.join("berth.db"), 0o600)] {
        if let Ok(m) = std::fs::metadata(&path) {
            let mode = m.mode() & 0o777;
            if mode & !want != 0 {
                loose.push(format!(
                    "{} is {mode:o} (owner uid {})",
                    path.display(),
                    m.uid()
                ));
            }
        }
    }
    if !loose.is_empty() {
        out.push(
            Finding::new(
                "state",
                Severity::Info,
                "the state can be read by others than its owner: it names every container's namespace and address",
            )
            .details(loose)
            .fix(format!("chmod 700 {}; chmod 600 {}", dir.display(), dir.join("berth.db").display())),
        );
    }
}

/// The pid in `dir/file` when that process runs.
fn live_pid(ctx: &Context, dir: &Path, file: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join(file))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // A zombie (killed, not yet reaped) has ended.
    let start = ctx.kernel.process_start_time(pid)?;
    ctx.kernel.process_alive(pid, start).then_some(pid)
}

pub fn daemons(ctx: &mut Context, facts: &Facts, out: &mut Vec<Finding>) {
    let Some(desired) = &facts.desired else {
        return;
    };
    let dir = ctx.state_dir.clone();
    let dns: Vec<_> = facts.networks().filter(|n| n.policy.dns).collect();
    if !dns.is_empty() {
        let names: Vec<&str> = dns.iter().map(|n| n.name.as_str()).collect();
        match live_pid(ctx, &dir, crate::dns::PID_FILE) {
            None => out.push(
                Finding::new(
                    "dns",
                    Severity::Error,
                    format!("berth's DNS server is not running: containers of {} cannot resolve each other's names", names.join(", ")),
                )
                .fix("berth up"),
            ),
            Some(pid) => {
                let port = desired.dns_port;
                // Every gateway of the network: a dual-stack one has a
                // listener per family, and either may be the one lost.
                let silent: Vec<String> = dns
                    .iter()
                    .take(QUERIED)
                    .flat_map(|n| n.gateways().into_iter().map(move |g| (g, n)))
                    .filter(|(g, _)| !ctx.kernel.dns_answers(*g, port))
                    .map(|(g, n)| {
                        let at = std::net::SocketAddr::new(g, port);
                        format!("{at} (network {})", n.name)
                    })
                    .collect();
                if silent.is_empty() {
                    out.push(Finding::new(
                        "dns",
                        Severity::Ok,
                        format!("berth's DNS server (pid {pid}) answers on the gateway of {}", names.join(", ")),
                    ));
                } else {
                    out.push(
                        Finding::new(
                            "dns",
                            Severity::Error,
                            format!("berth's DNS server (pid {pid}) runs but does not answer a query on {}", silent.join(", ")),
                        )
                        .fix("berth up"),
                    );
                }
            }
        }
    }
    let watched = !desired.endpoints.is_empty() || !desired.sandboxes.is_empty() || !dns.is_empty();
    if !watched {
        return;
    }
    match live_pid(ctx, &dir, SUPERVISOR_PID) {
        Some(pid) => out.push(Finding::new(
            "supervisor",
            Severity::Ok,
            format!("berth's supervisor (pid {pid}) runs: what dies between commands is reclaimed within seconds"),
        )),
        None => out.push(
            Finding::new(
                "supervisor",
                Severity::Warning,
                "berth's supervisor is not running: a killed `run`, a deleted namespace or a dead DNS server is healed only at the next berth command",
            )
            .fix("berth up"),
        ),
    }
}

//! How `doctor` and `inspect` print: text for people, `--json` for tools.

use super::out::outln;
use super::show::json_error;
use crate::context::Context;
use crate::error::Result;
use crate::explain::doctor::{self, Severity};
use crate::explain::inspect::{self as inspecting, Inspection};

/// `berth doctor`: the findings, then a summary line; exit 1 on an error.
pub fn doctor(ctx: &mut Context, json: bool) -> Result<i32> {
    let report = doctor::run(ctx)?;
    if json {
        let mut v = serde_json::to_value(&report).map_err(json_error)?;
        v["errors"] = report.count(Severity::Error).into();
        v["warnings"] = report.count(Severity::Warning).into();
        outln!("{}", serde_json::to_string_pretty(&v).map_err(json_error)?);
        return Ok(report.exit_code());
    }
    for f in &report.findings {
        outln!("{:<8} {}: {}", f.severity.as_str(), f.check, f.summary);
        for d in &f.details {
            outln!("         {d}");
        }
        if let Some(fix) = &f.fix {
            outln!("         fix: {fix}");
        }
    }
    let (errors, warnings) = (
        report.count(Severity::Error),
        report.count(Severity::Warning),
    );
    if errors + warnings == 0 {
        outln!("doctor: no problems found");
    } else {
        outln!("doctor: {errors} error(s), {warnings} warning(s)");
    }
    Ok(report.exit_code())
}

/// `berth inspect TARGET`.
pub fn inspect(ctx: &mut Context, target: &str, json: bool) -> Result<i32> {
    let i = inspecting::inspect(ctx, target)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&i).map_err(json_error)?);
        return Ok(0);
    }
    print(&i);
    Ok(0)
}

fn print(i: &Inspection) {
    match i.inode {
        Some(inode) => outln!("namespace {} (inode {inode})", i.netns),
        None => outln!("namespace {}", i.netns),
    }
    outln!("links:");
    for l in &i.links {
        let mut line = format!(
            "  {} {} {} mtu {}",
            l.name,
            if l.kind.is_empty() { "-" } else { &l.kind },
            l.state,
            l.mtu
        );
        if let Some(mac) = &l.mac {
            line.push_str(&format!(" mac {mac}"));
        }
        if let Some(peer) = &l.peer {
            line.push_str(&format!(" peer {peer}"));
        }
        if let Some(master) = &l.master {
            line.push_str(&format!(" master {master}"));
        }
        outln!("{line}");
    }
    outln!("addresses:");
    for a in &i.addresses {
        outln!("  {} {}", a.dev, a.address);
    }
    outln!("routes:");
    for r in &i.routes {
        if r.table == 254 {
            outln!("  {}", r.route);
        } else {
            outln!("  {} table {}", r.route, r.table);
        }
    }
    outln!("neighbours:");
    if i.neighbours.is_empty() {
        outln!("  (none)");
    }
    for n in &i.neighbours {
        outln!(
            "  {} dev {} lladdr {} {}",
            n.address,
            n.dev,
            n.mac.as_deref().unwrap_or("-"),
            n.state
        );
    }
    outln!("berth endpoints:");
    if i.endpoints.is_empty() {
        outln!("  (none: berth has not connected this namespace)");
    }
    for e in &i.endpoints {
        outln!(
            "  {} on {}: {} mac {} dev {} (host side {}, gateway {})",
            e.name,
            e.network,
            e.address,
            e.mac,
            e.ifname,
            e.host_ifname,
            e.gateway
        );
        if !e.dns_names.is_empty() {
            outln!("    dns names: {}", e.dns_names.join(", "));
        }
    }
    outln!("published ports:");
    if i.published_ports.is_empty() {
        outln!("  (none)");
    }
    for p in &i.published_ports {
        outln!("  {p}");
    }
    match &i.resolver {
        Some(r) => outln!("resolver: berth's DNS server at {r}"),
        None => outln!("resolver: none of berth's (no network of this namespace has DNS)"),
    }
}

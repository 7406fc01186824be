//! Links, routes and namespaces: host routes that take a berth subnet's
//! traffic away from its bridge, bridges and veths missing or left over
//! (by berth's link groups), namespaces nothing owns any more, and the
//! reconcile `berth up` would run, as a dry run.

use std::collections::HashSet;

use super::{Facts, Finding, Severity};
use crate::context::Context;
use crate::model::names;
use crate::reconcile::{decide, Scope};
use crate::store::Status;

/// How many lines of a long list a finding shows.
const SHOWN: usize = 20;

pub fn check(ctx: &mut Context, facts: &Facts, out: &mut Vec<Finding>) {
    route_clashes(facts, out);
    devices(facts, out);
    namespaces(ctx, facts, out);
    reconcile(facts, out);
}

fn shorten(mut lines: Vec<String>) -> Vec<String> {
    if lines.len() > SHOWN {
        let more = lines.len() - SHOWN;
        lines.truncate(SHOWN);
        lines.push(format!("... and {more} more"));
    }
    lines
}

fn route_clashes(facts: &Facts, out: &mut Vec<Finding>) {
    let mut any = false;
    // A macvlan/ipvlan network's subnet is its parent's LAN: the host's
    // route to it is expected.
    for n in facts.networks().filter(|n| n.is_bridge()) {
        let bridge = facts
            .host
            .links
            .iter()
            .find(|l| l.name == n.bridge)
            .map(|l| l.index);
        for r in &facts.host.routes {
            // The main table decides for traffic that no `ip rule` sends
            // elsewhere; local and broadcast routes are the kernel's own.
            if r.table != 254
                || r.kind != "unicast"
                    && r.kind != "blackhole"
                    && r.kind != "unreachable"
                    && r.kind != "prohibit"
            {
                continue;
            }
            let Some(dst) = r.dst else { continue };
            // The route dump read here is IPv4's: the IPv4 subnet is judged.
            let Some(subnet4) = n.net4() else { continue };
            let net = crate::model::subnet::v4_truncating(dst, r.prefix_len);
            let overlap = net.contains(&subnet4.network()) || subnet4.contains(&net.network());
            if !overlap || (r.oif.is_some() && r.oif == bridge) {
                continue;
            }
            // A wider route loses to the bridge's own connected route; an
            // equal or narrower one takes (part of) the subnet.
            if r.prefix_len < subnet4.prefix_len() {
                continue;
            }
            any = true;
            let dev = r
                .oif
                .and_then(|i| facts.host.link_name(i))
                .map(|d| format!(" dev {d}"))
                .unwrap_or_default();
            let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
            let kind = if r.kind == "unicast" {
                String::new()
            } else {
                format!("{} ", r.kind)
            };
            let route = format!("{kind}{net}{via}{dev}");
            let (severity, how) = if r.prefix_len > subnet4.prefix_len() {
                (Severity::Error, "is more specific, so the host sends that part of the subnet there instead of to the containers")
            } else {
                (Severity::Error, "has the same prefix, so which one the host uses depends on the metric, not on berth")
            };
            out.push(
                Finding::new(
                    "route_clash",
                    severity,
                    format!("the host route {route} overlaps network {}'s subnet {} (bridge {}) and {how}", n.name, subnet4, n.bridge),
                )
                .fix(format!("ip route del {route}")),
            );
        }
    }
    if !any && facts.networks().next().is_some() {
        out.push(Finding::new(
            "route_clash",
            Severity::Ok,
            "no host route takes traffic of a berth subnet away from its bridge",
        ));
    }
}

fn devices(facts: &Facts, out: &mut Vec<Finding>) {
    let (Some(desired), Some(observed)) = (&facts.desired, &facts.observed) else {
        return;
    };
    let present: HashSet<&str> = observed.links.iter().map(|l| l.name.as_str()).collect();
    let mut known: HashSet<String> = HashSet::new();
    let mut problems = false;
    for n in facts.networks() {
        if let Some(parent) = n.driver.parent() {
            if !present.contains(parent) {
                problems = true;
                out.push(Finding::new(
                    "links",
                    Severity::Error,
                    format!("parent {parent} of {} network {} is missing: the kernel deleted its containers' interfaces with it", n.driver.name(), n.name),
                ));
            }
            continue;
        }
        known.insert(n.bridge.clone());
        if !present.contains(n.bridge.as_str()) {
            problems = true;
            out.push(
                Finding::new(
                    "links",
                    Severity::Error,
                    format!("bridge {} of network {} is missing: its containers are cut off from each other, the host and the outside", n.bridge, n.name),
                )
                .fix("berth up"),
            );
        }
    }
    let mut revivable = Vec::new();
    let mut gone = Vec::new();
    for (e, status) in &desired.endpoints {
        known.insert(e.host_ifname.clone());
        known.insert(names::ifb_name(&e.host_ifname));
        // A macvlan/ipvlan child lives in its namespace (the reconcile
        // finding says whether one is missing there).
        if *status != Status::Ready || present.contains(e.host_ifname.as_str()) || !e.has_veth() {
            continue;
        }
        let line = format!(
            "endpoint {} of network {} ({}, namespace {}): veth {} is missing",
            e.name,
            e.network,
            e.ips_text(),
            e.netns,
            e.host_ifname
        );
        if observed.netns_alive.contains(&e.id) {
            revivable.push(line);
        } else {
            gone.push(line);
        }
    }
    if !revivable.is_empty() {
        problems = true;
        out.push(
            Finding::new(
                "links",
                Severity::Error,
                format!("{} endpoint(s) lost their veth while their namespace still exists: they have no network", revivable.len()),
            )
            .details(shorten(revivable))
            .fix("berth up"),
        );
    }
    if !gone.is_empty() {
        problems = true;
        out.push(
            Finding::new(
                "links",
                Severity::Warning,
                format!("{} endpoint(s) belong to namespaces that are gone: their addresses and ports stay taken until berth drops them", gone.len()),
            )
            .details(shorten(gone))
            .fix("berth up"),
        );
    }
    let extra: Vec<String> = observed
        .links
        .iter()
        .filter(|l| names::is_berth_group(l.group) && !known.contains(&l.name))
        .map(|l| format!("{} ({}, group {:#x})", l.name, l.kind, l.group))
        .collect();
    if !extra.is_empty() {
        problems = true;
        out.push(
            Finding::new(
                "links",
                Severity::Warning,
                format!("{} link(s) in berth's link groups belong to no network or endpoint of the state: leftovers of a crash or of another state", extra.len()),
            )
            .details(shorten(extra))
            .fix("berth gc"),
        );
    }
    if !problems {
        out.push(Finding::new(
            "links",
            Severity::Ok,
            "every bridge and veth the state names exists, and berth's link groups hold nothing else",
        ));
    }
}

fn namespaces(ctx: &mut Context, facts: &Facts, out: &mut Vec<Finding>) {
    let named = ctx.kernel.named_netns();
    let sandboxes: Vec<_> = facts
        .desired
        .iter()
        .flat_map(|d| d.sandboxes.iter())
        .collect();
    let dead: HashSet<&String> = facts
        .observed
        .iter()
        .flat_map(|o| o.dead_sandboxes.iter())
        .collect();
    let mut lines = Vec::new();
    for s in &sandboxes {
        if dead.contains(&s.name) {
            lines.push(format!(
                "{} (sandbox of a `berth run` whose process {} has ended)",
                s.name, s.owner_pid
            ));
        }
    }
    // `run` names its namespaces run-PID; one of that shape with no row
    // was left by a run killed before it recorded it, or by another state.
    let recorded: HashSet<&str> = sandboxes.iter().map(|s| s.name.as_str()).collect();
    let orphans: Vec<&String> = named
        .iter()
        .filter(|n| {
            n.strip_prefix("run-")
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|n| !recorded.contains(n.as_str()))
        .collect();
    for n in &orphans {
        lines.push(format!(
            "{n} (shaped like a `berth run` sandbox, recorded nowhere)"
        ));
    }
    if lines.is_empty() {
        out.push(Finding::new(
            "namespaces",
            Severity::Ok,
            "no namespace is left over from a `berth run` that ended",
        ));
        return;
    }
    let fix = if orphans.is_empty() {
        "berth up".to_string()
    } else {
        let dels: Vec<String> = orphans
            .iter()
            .map(|n| format!("ip netns delete {n}"))
            .collect();
        if orphans.len() == lines.len() {
            dels.join("; ")
        } else {
            format!("berth up; {}", dels.join("; "))
        }
    };
    out.push(
        Finding::new(
            "namespaces",
            Severity::Warning,
            format!("{} namespace(s) are left over from `berth run`s that ended: they hold addresses and ports for nothing", lines.len()),
        )
        .details(shorten(lines))
        .fix(fix),
    );
}

/// The reconcile `berth up` would run now, as a dry run: anything in its
/// plan is drift between the kernel and the state.
fn reconcile(facts: &Facts, out: &mut Vec<Finding>) {
    let (Some(desired), Some(observed)) = (&facts.desired, &facts.observed) else {
        return;
    };
    let decision = decide(desired, observed, Scope::default());
    if decision.plan.is_empty() && decision.report.is_empty() {
        out.push(Finding::new(
            "reconcile",
            Severity::Ok,
            "the kernel matches the state: `berth up` would change nothing",
        ));
        return;
    }
    let mut details: Vec<String> = decision.report.iter().map(|l| format!("up: {l}")).collect();
    let steps = decision.plan.render();
    details.push(format!("{} kernel step(s):", steps.len()));
    details.extend(steps.into_iter().take(SHOWN));
    out.push(
        Finding::new(
            "reconcile",
            Severity::Error,
            format!("the kernel differs from berth's state: `berth up` would repair {} thing(s), reporting what follows", decision.report.len().max(1)),
        )
        .details(details)
        .fix("berth up"),
    );
}

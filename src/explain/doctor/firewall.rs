//! Firewalls: other tables' input and forward base chains that could drop
//! berth's traffic (a policy drop, or drop/reject rules, iptables-nft's
//! tables included: they are nf_tables tables too), and berth's own two
//! tables against what the state says they hold.

use super::{Facts, Finding, Severity};
use crate::firewall;
use crate::reconcile::decide::expected_fingerprints;

/// Whether `family table` is one of berth's own tables.
pub fn is_berths(family: &str, table: &str) -> bool {
    [firewall::table(), firewall::guard::table()]
        .iter()
        .any(|t| t.family.to_string() == family && t.name == table)
}

pub fn check(facts: &Facts, out: &mut Vec<Finding>) {
    foreign(facts, out);
    own(facts, out);
}

/// The commands that let berth's bridges through a foreign chain.
fn fix_for(family: &str, table: &str, chain: &str, hook: &str, bridges: &[String]) -> String {
    let shown: Vec<&String> = bridges.iter().take(3).collect();
    let more = if bridges.len() > 3 {
        " (and the same for each other berth bridge)"
    } else {
        ""
    };
    let iptables = match (family, table) {
        ("ip", "filter") => Some("iptables"),
        ("ip6", "filter") => Some("ip6tables"),
        _ => None,
    };
    let mut cmds = Vec::new();
    for b in shown {
        match (iptables, hook) {
            (Some(ipt), "forward") => {
                cmds.push(format!("{ipt} -I {chain} -i {b} -j ACCEPT"));
                cmds.push(format!("{ipt} -I {chain} -o {b} -j ACCEPT"));
            }
            (Some(ipt), _) => cmds.push(format!("{ipt} -I {chain} -i {b} -j ACCEPT")),
            (None, "forward") => {
                cmds.push(format!(
                    "nft insert rule {family} {table} {chain} iifname \"{b}\" accept"
                ));
                cmds.push(format!(
                    "nft insert rule {family} {table} {chain} oifname \"{b}\" accept"
                ));
            }
            (None, _) => cmds.push(format!(
                "nft insert rule {family} {table} {chain} iifname \"{b}\" accept"
            )),
        }
    }
    format!("{}{more}", cmds.join("; "))
}

fn foreign(facts: &Facts, out: &mut Vec<Finding>) {
    let bridges: Vec<String> = facts.networks().map(|n| n.bridge.clone()).collect();
    let dns = facts.networks().any(|n| n.policy.dns);
    let mut any = false;
    for c in &facts.chains {
        if is_berths(&c.family, &c.table) {
            continue;
        }
        let forward = c.hook == "forward";
        let name = format!(
            "table {} {} chain {} ({} hook, priority {})",
            c.family, c.table, c.chain, c.hook, c.priority
        );
        // Every table's base chain on a hook sees the packet, and a drop in
        // any of them is final: berth's accept cannot outvote it.
        let (severity, what) = if c.policy_drop {
            let severity = match (forward, bridges.is_empty(), dns) {
                (_, true, _) => Severity::Warning,
                (true, false, _) => Severity::Error,
                (false, false, true) => Severity::Warning,
                (false, false, false) => Severity::Info,
            };
            let what = if forward {
                "has policy drop: a drop in any table's forward chain is final, so containers' traffic to the outside, between networks and to published ports is dropped unless a rule there accepts it first"
            } else {
                "has policy drop: what containers send to the host itself (DNS on their gateway, host services) is dropped unless a rule there accepts it"
            };
            (severity, what.to_string())
        } else if !c.dropping_rules.is_empty() {
            let what = if forward {
                "has rules that drop or reject forwarded traffic; berth's traffic is dropped if it matches one"
            } else {
                "has rules that drop or reject traffic to the host; containers' DNS and host access are dropped if they match one"
            };
            (Severity::Warning, what.to_string())
        } else {
            continue;
        };
        any = true;
        let mut f = Finding::new("foreign_firewall", severity, format!("{name} {what}"))
            .details(c.dropping_rules.clone());
        if !bridges.is_empty() {
            f = f.fix(fix_for(&c.family, &c.table, &c.chain, &c.hook, &bridges));
        }
        out.push(f);
    }
    if !any {
        out.push(Finding::new(
            "foreign_firewall",
            Severity::Ok,
            "no other table's input or forward chain drops by policy or by rule",
        ));
    }
}

fn own(facts: &Facts, out: &mut Vec<Finding>) {
    let (Some(desired), Some(observed)) = (&facts.desired, &facts.observed) else {
        return;
    };
    let live: Vec<_> = facts.networks().cloned().collect();
    let (routing, guard) = expected_fingerprints(&live, &desired.instance);
    let tables = [
        (firewall::table(), routing, &observed.table),
        (firewall::guard::table(), guard, &observed.guard_table),
    ];
    for (table, want, have) in tables {
        let name = format!("table {} {}", table.family, table.name);
        let f = match (want, have) {
            (None, None) => continue,
            (Some(_), None) => Finding::new(
                "berth_tables",
                Severity::Error,
                format!("{name} is missing: without it nothing of berth's firewall applies (no masquerade, published ports, isolation)"),
            )
            .fix("berth up"),
            (None, Some(_)) => Finding::new(
                "berth_tables",
                Severity::Warning,
                format!("{name} exists but the state has no network: it is a leftover"),
            )
            .fix("berth up"),
            (Some(want), Some(have)) if &want != have => {
                let mut details = Vec::new();
                for (chain, n) in &want {
                    match have.get(chain) {
                        None => details.push(format!("chain {chain} is missing")),
                        Some(m) if m != n => {
                            details.push(format!("chain {chain} has {m} rules, the state says {n}"))
                        }
                        _ => {}
                    }
                }
                for chain in have.keys().filter(|c| !want.contains_key(*c)) {
                    details.push(format!("chain {chain} is not berth's"));
                }
                Finding::new(
                    "berth_tables",
                    Severity::Error,
                    format!("{name} differs from what the state says it holds: someone changed it"),
                )
                .details(details)
                .fix("berth up")
            }
            _ => Finding::new(
                "berth_tables",
                Severity::Ok,
                format!("{name} has the chains and rules the state says"),
            ),
        };
        out.push(f);
    }
}

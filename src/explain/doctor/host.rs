//! The host's sysctls that decide whether berth's traffic flows at all:
//! `ip_forward` and its IPv6 twin, br_netfilter's `bridge-nf-call-iptables`
//! and `bridge-nf-call-ip6tables` (and the per-bridge options berth sets),
//! and reverse-path filtering on `--uplink` interfaces.

use super::{Facts, Finding, Severity};
use crate::context::Context;
use crate::error::Result;
use crate::kernel::sysctl::Key;

pub fn check(ctx: &mut Context, facts: &Facts, out: &mut Vec<Finding>) -> Result<()> {
    // Only networks with IPv4 need it, as the reconcile decides (one
    // without addresses, IPAM "none", routes nothing).
    let networks = facts.networks().filter(|n| n.subnet4().is_some()).count();
    ip_forward(ctx, networks, out);
    let networks6 = facts.networks().filter(|n| n.subnet6().is_some()).count();
    ipv6_forwarding(ctx, networks6, out);
    br_netfilter(ctx, facts, out);
    br_netfilter6(ctx, facts, networks6, out);
    rp_filter(ctx, facts, out);
    Ok(())
}

fn read(ctx: &mut Context, key: &Key) -> Option<String> {
    ctx.kernel
        .read_sysctl(key)
        .ok()
        .map(|v| v.trim().to_string())
}

fn ip_forward(ctx: &mut Context, networks: usize, out: &mut Vec<Finding>) {
    let f = match read(ctx, &Key::ip_forward()).as_deref() {
        Some("1") => Finding::new(
            "ip_forward",
            Severity::Ok,
            "net.ipv4.ip_forward is 1: the host routes between its containers' networks and the outside",
        ),
        Some(v) if networks > 0 => Finding::new(
            "ip_forward",
            Severity::Error,
            format!("net.ipv4.ip_forward is {v}: the host does not route, so containers reach nothing beyond their own bridge and published ports do not answer from outside"),
        )
        .fix("berth up"),
        Some(v) => Finding::new(
            "ip_forward",
            Severity::Info,
            format!("net.ipv4.ip_forward is {v}: nothing needs it yet; berth turns it on with its first network"),
        ),
        None => Finding::new(
            "ip_forward",
            Severity::Warning,
            "net.ipv4.ip_forward cannot be read, so whether the host routes is unknown",
        ),
    };
    out.push(f);
}

/// `net.ipv6.conf.all.forwarding`, which `network create --ipv6` turns on
/// and the reconcile keeps on; reported only once IPv6 is in use, since a
/// host without IPv6 networks owes berth nothing here.
fn ipv6_forwarding(ctx: &mut Context, networks6: usize, out: &mut Vec<Finding>) {
    const CHECK: &str = "ipv6_forwarding";
    if networks6 == 0 {
        return;
    }
    let f = match read(ctx, &Key::ipv6_forwarding()).as_deref() {
        Some("1") => Finding::new(
            CHECK,
            Severity::Ok,
            "net.ipv6.conf.all.forwarding is 1: the host routes IPv6 between its containers' networks and the outside",
        ),
        Some(v) => Finding::new(
            CHECK,
            Severity::Error,
            format!("net.ipv6.conf.all.forwarding is {v}: the host does not route IPv6, so containers of {networks6} IPv6 network(s) reach nothing over IPv6 beyond their own bridge and published ports do not answer over IPv6 from outside"),
        )
        .fix("berth up"),
        None => Finding::new(
            CHECK,
            Severity::Warning,
            "net.ipv6.conf.all.forwarding cannot be read (IPv6 disabled?), so the host's IPv6 networks may route nothing",
        ),
    };
    out.push(f);
}

fn br_netfilter(ctx: &mut Context, facts: &Facts, out: &mut Vec<Finding>) {
    let key = Key::new(["net", "bridge", "bridge-nf-call-iptables"]);
    let foreign_drop = facts.chains.iter().any(|c| {
        c.hook == "forward" && c.policy_drop && !super::firewall::is_berths(&c.family, &c.table)
    });
    let f = match read(ctx, &key).as_deref() {
        None => Finding::new(
            "br_netfilter",
            Severity::Warning,
            "br_netfilter is not loaded (no net.bridge.bridge-nf-call-iptables): traffic between containers of one network never meets berth's forward chain, so --no-icc and isolation do not hold inside a network",
        )
        .fix("modprobe br_netfilter"),
        Some("1") if foreign_drop => Finding::new(
            "br_netfilter",
            Severity::Warning,
            "net.bridge.bridge-nf-call-iptables is 1: traffic between containers of one network passes the forward hook too, so the foreign forward drop reported here also drops it",
        )
        .fix("sysctl -w net.bridge.bridge-nf-call-iptables=0"),
        Some("1") => Finding::new(
            "br_netfilter",
            Severity::Info,
            "net.bridge.bridge-nf-call-iptables is 1: traffic between containers of one network passes the forward hook too, so any forward-hook firewall on this host sees it (berth's own rules accept it)",
        ),
        Some(v) => Finding::new(
            "br_netfilter",
            Severity::Info,
            format!("net.bridge.bridge-nf-call-iptables is {v}: traffic between containers of one network stays on its bridge and skips the forward hook, except on --no-icc networks, whose bridges berth makes call it (nf_call_iptables)"),
        ),
    };
    out.push(f);
    // berth sets the option on the bridges of --no-icc networks so that
    // the isolation holds whatever the sysctl says; without it, a sysctl
    // of 0 lets their containers reach each other past berth's rules.
    for n in facts.networks().filter(|n| !n.policy.icc) {
        let Some(link) = facts.host.links.iter().find(|l| l.name == n.bridge) else {
            continue;
        };
        if link.nf_call_iptables == Some(false) {
            out.push(
                Finding::new(
                    "br_netfilter",
                    Severity::Error,
                    format!("bridge {} of network {} has nf_call_iptables off: traffic between its containers skips berth's forward chain whenever bridge-nf-call-iptables is 0, so --no-icc does not hold", n.bridge, n.name),
                )
                .fix(format!("ip link set {} type bridge nf_call_iptables 1", n.bridge)),
            );
        }
    }
}

/// `bridge-nf-call-ip6tables`: the IPv6 half of br_netfilter, which may be
/// set apart from the IPv4 one; only worth a line when a network has IPv6.
fn br_netfilter6(ctx: &mut Context, facts: &Facts, networks6: usize, out: &mut Vec<Finding>) {
    const CHECK: &str = "br_netfilter6";
    if networks6 == 0 {
        return;
    }
    let key = Key::new(["net", "bridge", "bridge-nf-call-ip6tables"]);
    let foreign_drop = facts.chains.iter().any(|c| {
        c.hook == "forward" && c.policy_drop && !super::firewall::is_berths(&c.family, &c.table)
    });
    let f = match read(ctx, &key).as_deref() {
        // br_netfilter's absence is the IPv4 check's finding already.
        None => return,
        Some("1") if foreign_drop => Finding::new(
            CHECK,
            Severity::Warning,
            "net.bridge.bridge-nf-call-ip6tables is 1: IPv6 traffic between containers of one network passes the forward hook too, so the foreign forward drop reported here also drops it",
        )
        .fix("sysctl -w net.bridge.bridge-nf-call-ip6tables=0"),
        Some("1") => Finding::new(
            CHECK,
            Severity::Info,
            "net.bridge.bridge-nf-call-ip6tables is 1: IPv6 traffic between containers of one network passes the forward hook too, so any forward-hook firewall on this host sees it (berth's own rules accept it)",
        ),
        Some(v) => Finding::new(
            CHECK,
            Severity::Info,
            format!("net.bridge.bridge-nf-call-ip6tables is {v}: IPv6 traffic between containers of one network stays on its bridge and skips the forward hook, except on --no-icc networks, whose bridges berth makes call it (nf_call_ip6tables)"),
        ),
    };
    out.push(f);
    for n in facts
        .networks()
        .filter(|n| !n.policy.icc && n.subnet6().is_some())
    {
        let Some(link) = facts.host.links.iter().find(|l| l.name == n.bridge) else {
            continue;
        };
        if link.nf_call_ip6tables == Some(false) {
            out.push(
                Finding::new(
                    CHECK,
                    Severity::Error,
                    format!("bridge {} of network {} has nf_call_ip6tables off: IPv6 traffic between its containers skips berth's forward chain whenever bridge-nf-call-ip6tables is 0, so --no-icc does not hold over IPv6", n.bridge, n.name),
                )
                .fix(format!("ip link set {} type bridge nf_call_ip6tables 1", n.bridge)),
            );
        }
    }
}

fn rp_filter(ctx: &mut Context, facts: &Facts, out: &mut Vec<Finding>) {
    let all = read(ctx, &Key::ipv4_conf("all", "rp_filter"))
        .and_then(|v| v.parse::<u8>().ok())
        .unwrap_or(0);
    let mut seen = std::collections::BTreeSet::new();
    for n in facts.networks() {
        let Some(uplink) = &n.policy.uplink else {
            continue;
        };
        if !seen.insert(uplink.ifname.clone()) {
            continue;
        }
        let own = read(ctx, &Key::ipv4_conf(&uplink.ifname, "rp_filter"))
            .and_then(|v| v.parse::<u8>().ok())
            .unwrap_or(0);
        // The kernel uses the larger of `all` and the interface's own.
        let effective = own.max(all);
        let f = if effective == 1 {
            Finding::new(
                "rp_filter",
                Severity::Warning,
                format!("uplink {} of network {} has strict reverse-path filtering (rp_filter {effective}): replies that arrive on it for the network's policy-routed traffic fail the main table's reverse check and are dropped", uplink.ifname, n.name),
            )
            .fix(format!(
                "sysctl -w net.ipv4.conf.{}.rp_filter=2 net.ipv4.conf.all.rp_filter=2",
                uplink.ifname
            ))
        } else {
            Finding::new(
                "rp_filter",
                Severity::Ok,
                format!(
                    "uplink {} of network {} has rp_filter {effective} (not strict)",
                    uplink.ifname, n.name
                ),
            )
        };
        out.push(f);
    }
}

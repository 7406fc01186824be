//! `berth doctor`: each cause is made in a sandbox, and doctor must name
//! it with its severity and exit 1 for an error (0 otherwise); a clean
//! host exits 0.

mod util;

use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

/// `berth doctor --json`: its exit code and findings.
fn doctor(sb: &Sandbox) -> (i32, Vec<Value>) {
    let out = sb.berth(&["doctor", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json is not JSON ({e}): {}\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    let findings = v["findings"].as_array().cloned().unwrap_or_default();
    (out.status.code().unwrap_or(-1), findings)
}

/// The findings of `check` with `severity`.
fn found<'a>(findings: &'a [Value], check: &str, severity: &str) -> Vec<&'a Value> {
    findings
        .iter()
        .filter(|f| f["check"] == check && f["severity"] == severity)
        .collect()
}

fn problems(findings: &[Value]) -> Vec<&Value> {
    findings
        .iter()
        .filter(|f| f["severity"] == "error" || f["severity"] == "warning")
        .collect()
}

fn text(f: &Value) -> String {
    f.to_string()
}

/// Network `web` with c1 and c2.
fn web(sb: &Sandbox) {
    sb.create_network("web", "10.90.0.0/24");
    for ns in ["c1", "c2"] {
        sb.add_netns(ns);
        sb.connect("web", ns, &[]);
    }
}

/// Doctor of a host that berth set up and nobody touched: exit 0, no
/// warning or error.
fn assert_clean(sb: &Sandbox, when: &str) {
    let (code, findings) = doctor(sb);
    assert_eq!(
        problems(&findings),
        Vec::<&Value>::new(),
        "{when}: problems on a clean host"
    );
    assert_eq!(code, 0, "{when}: exit code");
}

#[test]
fn a_clean_host_exits_0_before_and_after_berth_made_something() {
    let sb = Sandbox::new();
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 0);
    let state = found(&findings, "state", "info");
    assert!(text(state[0]).contains("no berth state"), "{findings:#?}");
    web(&sb);
    assert_clean(&sb, "after web");
    let (_, findings) = doctor(&sb);
    for check in [
        "reconcile",
        "links",
        "dns",
        "supervisor",
        "state",
        "ip_forward",
    ] {
        assert_eq!(
            found(&findings, check, "ok").len(),
            1,
            "{check}: {findings:#?}"
        );
    }
    // The text form ends with its summary line.
    let out = sb.berth(&["doctor"]);
    assert!(
        stdout(&out).ends_with("doctor: no problems found\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn ip_forward_off_is_an_error_that_berth_up_fixes() {
    let sb = Sandbox::new();
    web(&sb);
    sb.sh_ok("sysctl -qw net.ipv4.ip_forward=0");
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 1);
    let f = found(&findings, "ip_forward", "error");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert!(text(f[0]).contains("ip_forward is 0"), "{}", text(f[0]));
    assert_eq!(f[0]["fix"], "berth up");
    // The dry-run reconcile sees it too.
    assert!(!found(&findings, "reconcile", "error").is_empty());
    sb.berth_ok(&["up"]);
    assert_clean(&sb, "after up");
}

#[test]
fn a_foreign_forward_drop_is_named_with_its_rule() {
    let sb = Sandbox::new();
    web(&sb);
    sb.sh_ok(
        "nft add table ip filter && \
         nft add chain ip filter FORWARD '{ type filter hook forward priority 0; policy drop; }' && \
         nft add rule ip filter FORWARD iifname \"eth9\" counter drop",
    );
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 1);
    let f = found(&findings, "foreign_firewall", "error");
    assert_eq!(f.len(), 1, "{findings:#?}");
    let t = text(f[0]);
    assert!(t.contains("table ip filter chain FORWARD"), "{t}");
    assert!(t.contains("policy drop"), "{t}");
    assert!(t.contains(r#"iifname \"eth9\" counter drop"#), "{t}");
    assert!(
        t.contains("iptables -I FORWARD -i berth-web -j ACCEPT"),
        "{t}"
    );
    // With bridge-nf-call-iptables on, the drop also hits traffic inside
    // the network.
    sb.sh_ok("sysctl -qw net.bridge.bridge-nf-call-iptables=1");
    let (_, findings) = doctor(&sb);
    assert_eq!(
        found(&findings, "br_netfilter", "warning").len(),
        1,
        "{findings:#?}"
    );
    sb.sh_ok("nft delete table ip filter");
    assert_clean(&sb, "after the foreign table went");
}

#[test]
fn a_foreign_reject_rule_without_drop_policy_is_a_warning() {
    let sb = Sandbox::new();
    web(&sb);
    // firewalld's shape: policy accept, a reject rule at the end.
    sb.sh_ok(
        "nft add table inet fw && \
         nft add chain inet fw filter_FORWARD '{ type filter hook forward priority 10; }' && \
         nft add rule inet fw filter_FORWARD ct state established,related accept && \
         nft add rule inet fw filter_FORWARD reject with icmpx admin-prohibited",
    );
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 0, "a warning only: {findings:#?}");
    let f = found(&findings, "foreign_firewall", "warning");
    assert_eq!(f.len(), 1, "{findings:#?}");
    let t = text(f[0]);
    assert!(t.contains("table inet fw chain filter_FORWARD"), "{t}");
    assert!(t.contains("reject"), "{t}");
}

#[test]
fn a_host_route_shadowing_a_subnet_is_an_error() {
    let sb = Sandbox::new();
    web(&sb);
    sb.add_veth("lan0", "lan1");
    sb.sh_ok("ip link set lan0 up && ip route add 10.0.0.0/8 dev lan0");
    // A wider route loses to the bridge's own: no clash.
    assert_clean(&sb, "with 10.0.0.0/8");
    sb.sh_ok("ip route add 10.90.0.128/25 dev lan0");
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 1);
    let f = found(&findings, "route_clash", "error");
    assert_eq!(f.len(), 1, "{findings:#?}");
    let t = text(f[0]);
    assert!(t.contains("10.90.0.128/25 dev lan0"), "{t}");
    assert!(t.contains("network web"), "{t}");
    assert_eq!(f[0]["fix"], "ip route del 10.90.0.128/25 dev lan0");
}

#[test]
fn a_deleted_bridge_is_an_error_that_berth_up_fixes() {
    let sb = Sandbox::new();
    web(&sb);
    sb.sh_ok("ip link del berth-web");
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 1);
    let f = found(&findings, "links", "error");
    assert!(
        f.iter()
            .any(|f| text(f).contains("bridge berth-web of network web is missing")),
        "{findings:#?}"
    );
    let r = found(&findings, "reconcile", "error");
    assert_eq!(r.len(), 1, "{findings:#?}");
    assert!(
        text(r[0]).contains("ip link add berth-web"),
        "{}",
        text(r[0])
    );
    sb.berth_ok(&["up"]);
    assert_clean(&sb, "after up");
}

#[test]
fn a_deleted_berth_table_is_an_error_that_berth_up_fixes() {
    let sb = Sandbox::new();
    web(&sb);
    for table in ["inet berth", "bridge berth"] {
        sb.sh_ok(&format!("nft delete table {table}"));
        let (code, findings) = doctor(&sb);
        assert_eq!(code, 1, "{table}");
        let f = found(&findings, "berth_tables", "error");
        assert_eq!(f.len(), 1, "{table}: {findings:#?}");
        assert!(
            text(f[0]).contains(&format!("table {table} is missing")),
            "{}",
            text(f[0])
        );
        assert_eq!(f[0]["fix"], "berth up");
        sb.berth_ok(&["up"]);
        assert_clean(&sb, &format!("after up ({table})"));
    }
    // A flushed chain is a difference, not an absence.
    sb.sh_ok("nft flush table inet berth");
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 1);
    let f = found(&findings, "berth_tables", "error");
    assert!(text(f[0]).contains("differs"), "{findings:#?}");
}

#[test]
fn br_netfilter_off_and_on_is_explained_and_a_no_icc_bridge_without_it_is_an_error() {
    let sb = Sandbox::new();
    web(&sb);
    for value in ["0", "1"] {
        sb.sh_ok(&format!(
            "sysctl -qw net.bridge.bridge-nf-call-iptables={value}"
        ));
        let (code, findings) = doctor(&sb);
        assert_eq!(code, 0, "{value}");
        let f = found(&findings, "br_netfilter", "info");
        assert_eq!(f.len(), 1, "{value}: {findings:#?}");
        assert!(
            text(f[0]).contains(&format!("bridge-nf-call-iptables is {value}")),
            "{}",
            text(f[0])
        );
    }
    sb.berth_ok(&[
        "network",
        "create",
        "iso",
        "--subnet",
        "10.91.0.0/24",
        "--no-icc",
    ]);
    assert_clean(&sb, "with a --no-icc network");
    let bridge = sb.network("iso")["bridge"].as_str().unwrap().to_string();
    sb.sh_ok(&format!(
        "ip link set {bridge} type bridge nf_call_iptables 0"
    ));
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 1);
    let f = found(&findings, "br_netfilter", "error");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert!(text(f[0]).contains(&bridge), "{}", text(f[0]));
}

fn pid_in(sb: &Sandbox, file: &str) -> Option<u32> {
    stdout(&sb.cmd("cat", &[&format!("{STATE_DIR}/{file}")]))
        .trim()
        .parse()
        .ok()
}

#[test]
fn a_killed_dns_server_is_an_error_until_it_runs_again() {
    let sb = Sandbox::new();
    web(&sb);
    let dns = pid_in(&sb, "dns.pid").expect("dns.pid");
    let supervisor = pid_in(&sb, "supervisor.pid").expect("supervisor.pid");
    // Killed together, neither restarts the other (each restarts the
    // other only while it lives), so the doctor sees both gone.
    sb.sh_ok(&format!("kill -KILL {dns} {supervisor}"));
    let t = Instant::now();
    while sb.processes().contains(&dns) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 1, "{findings:#?}");
    let f = found(&findings, "dns", "error");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert!(text(f[0]).contains("not running"), "{}", text(f[0]));
    assert_eq!(
        found(&findings, "supervisor", "warning").len(),
        1,
        "{findings:#?}"
    );
    // `berth up` starts both again.
    sb.berth_ok(&["up"]);
    let t = Instant::now();
    loop {
        let (code, findings) = doctor(&sb);
        if code == 0 && problems(&findings).is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "still broken after up: {findings:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_dns_server_that_does_not_answer_is_an_error() {
    let sb = Sandbox::new();
    web(&sb);
    // The server runs, but its gateway address is gone from the bridge:
    // a query to it cannot be answered.
    sb.sh_ok("ip addr del 10.90.0.1/24 dev berth-web");
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 1);
    let f = found(&findings, "dns", "error");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert!(text(f[0]).contains("does not answer"), "{}", text(f[0]));
}

#[test]
fn a_leftover_run_namespace_is_a_warning() {
    let sb = Sandbox::new();
    web(&sb);
    sb.add_netns("run-4242424");
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 0, "a warning only: {findings:#?}");
    let f = found(&findings, "namespaces", "warning");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert!(text(f[0]).contains("run-4242424"), "{}", text(f[0]));
    assert_eq!(f[0]["fix"], "ip netns delete run-4242424");
}

#[test]
fn an_extra_link_in_berths_group_is_a_warning() {
    let sb = Sandbox::new();
    web(&sb);
    // A veth of berth's shape and group that no row names: a crash's leftover.
    sb.sh_ok("ip link add vb0123456789ab group 1650786305 type veth peer name xx0");
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 0, "{findings:#?}");
    let f = found(&findings, "links", "warning");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert!(text(f[0]).contains("vb0123456789ab"), "{}", text(f[0]));
    assert_eq!(f[0]["fix"], "berth gc");
}

#[test]
fn doctor_reads_only() {
    let sb = Sandbox::new();
    web(&sb);
    let before = sb.snapshot();
    sb.berth(&["doctor"]);
    sb.snapshot().assert_same(&before, "doctor");
}

/// doctor with 1000 endpoints (ignored; run with --ignored --nocapture).
#[test]
#[ignore]
fn bench_doctor_at_1000_endpoints() {
    let sb = Sandbox::new();
    sb.create_network("big", "10.64.0.0/20");
    let n = 1000;
    let start = Instant::now();
    // Namespaces made in one shell; connects through berth, one process each.
    sb.sh_ok(&format!("for i in $(seq 1 {n}); do ip netns add b$i; done"));
    sb.sh_ok(&format!(
        "export BERTH_NFT_MAX_KERNEL={MIN_KERNEL} BERTH_STATE_DIR={STATE_DIR}; \
         for i in $(seq 1 {n}); do {BERTH} connect big b$i -p $((20000 + i)):80 >/dev/null || exit 1; done"
    ));
    eprintln!("setup: {n} endpoints in {:?}", start.elapsed());
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 0, "{:#?}", problems(&findings));
    let mut times = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let out = sb.berth(&["doctor", "--json"]);
        times.push(t.elapsed());
        assert_eq!(out.status.code(), Some(0));
    }
    times.sort();
    eprintln!(
        "doctor at {n} endpoints (whole process, nsenter included): min {:?}, median {:?}, max {:?}",
        times[0], times[5], times[9]
    );
    assert!(times[5] < Duration::from_millis(200), "{times:?}");
}

/// Network `web6`, dual stack, with d1 and d2.
fn web6(sb: &Sandbox) {
    sb.berth_ok(&[
        "network",
        "create",
        "web6",
        "--subnet",
        "10.92.0.0/24",
        "--subnet6",
        "fd00:92::/64",
    ]);
    for ns in ["d1", "d2"] {
        sb.add_netns(ns);
        sb.connect("web6", ns, &[]);
    }
}

#[test]
fn ipv6_forwarding_off_is_an_error_only_with_an_ipv6_network_and_berth_up_fixes_it() {
    let sb = Sandbox::new();
    web(&sb);
    sb.sh_ok("sysctl -qw net.ipv6.conf.all.forwarding=0");
    // No network has IPv6: nothing to say about it.
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 0, "{findings:#?}");
    assert!(
        !findings.iter().any(|f| f["check"] == "ipv6_forwarding"),
        "{findings:#?}"
    );
    web6(&sb);
    assert_clean(&sb, "with an IPv6 network");
    let (_, findings) = doctor(&sb);
    assert_eq!(
        found(&findings, "ipv6_forwarding", "ok").len(),
        1,
        "{findings:#?}"
    );
    sb.sh_ok("sysctl -qw net.ipv6.conf.all.forwarding=0");
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 1);
    let f = found(&findings, "ipv6_forwarding", "error");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert!(
        text(f[0]).contains("net.ipv6.conf.all.forwarding is 0"),
        "{}",
        text(f[0])
    );
    assert_eq!(f[0]["fix"], "berth up");
    sb.berth_ok(&["up"]);
    assert_clean(&sb, "after up");
    // An IPv6-only network needs it as much.
    sb.berth_ok(&["network", "rm", "--force", "web6"]);
    sb.berth_ok(&["network", "create", "six", "--ipv6", "--no-ipv4"]);
    sb.sh_ok("sysctl -qw net.ipv6.conf.all.forwarding=0");
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 1);
    assert_eq!(
        found(&findings, "ipv6_forwarding", "error").len(),
        1,
        "{findings:#?}"
    );
}

#[test]
fn bridge_nf_call_ip6tables_is_reported_and_a_no_icc_bridge_without_it_is_an_error() {
    let sb = Sandbox::new();
    web6(&sb);
    for value in ["0", "1"] {
        // The IPv4 half kept opposite, so the line read is the IPv6 one.
        let other = if value == "0" { "1" } else { "0" };
        sb.sh_ok(&format!(
            "sysctl -qw net.bridge.bridge-nf-call-ip6tables={value} net.bridge.bridge-nf-call-iptables={other}"
        ));
        let (code, findings) = doctor(&sb);
        assert_eq!(code, 0, "{value}");
        let f = found(&findings, "br_netfilter6", "info");
        assert_eq!(f.len(), 1, "{value}: {findings:#?}");
        assert!(
            text(f[0]).contains(&format!("bridge-nf-call-ip6tables is {value}")),
            "{}",
            text(f[0])
        );
    }
    sb.berth_ok(&[
        "network",
        "create",
        "iso",
        "--subnet",
        "10.91.0.0/24",
        "--subnet6",
        "fd00:91::/64",
        "--no-icc",
    ]);
    assert_clean(&sb, "with a dual-stack --no-icc network");
    let bridge = sb.network("iso")["bridge"].as_str().unwrap().to_string();
    // Only the IPv6 option off: the IPv4 check stays quiet.
    sb.sh_ok(&format!(
        "ip link set {bridge} type bridge nf_call_ip6tables 0"
    ));
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 1);
    let f = found(&findings, "br_netfilter6", "error");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert!(
        text(f[0]).contains(&bridge) && text(f[0]).contains("nf_call_ip6tables off"),
        "{}",
        text(f[0])
    );
    assert!(found(&findings, "br_netfilter", "error").is_empty());
}

#[test]
fn a_dns_server_that_does_not_answer_on_the_ipv6_gateway_is_an_error() {
    let sb = Sandbox::new();
    web6(&sb);
    let (_, findings) = doctor(&sb);
    assert_eq!(found(&findings, "dns", "ok").len(), 1, "{findings:#?}");
    // The IPv4 gateway still answers; the IPv6 one is gone.
    sb.sh_ok("ip addr del fd00:92::1/64 dev berth-web6");
    let (code, findings) = doctor(&sb);
    assert_eq!(code, 1);
    let f = found(&findings, "dns", "error");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert!(
        text(f[0]).contains("does not answer") && text(f[0]).contains("[fd00:92::1]:53"),
        "{}",
        text(f[0])
    );
    assert!(!text(f[0]).contains("10.92.0.1"), "{}", text(f[0]));
}

//! `berth trace` end to end: a known cause is made in a sandbox, trace
//! must name it, and a real probe must agree with its verdict.

mod util;

use util::*;

/// Runs `berth trace SRC DST --live` and returns (passes, the verdict
/// line). The static verdict and the kernel's (a real packet of the flow,
/// traced chain by chain) must agree, and the temporary trace tables must
/// be gone afterwards.
fn trace(sb: &Sandbox, src: &str, dst: &str) -> (bool, String) {
    let out = sb.berth(&["trace", src, dst, "--live"]);
    let text = stdout(&out);
    let line = |prefix: &[&str]| {
        text.lines()
            .find(|l| prefix.iter().any(|p| l.starts_with(p)))
            .unwrap_or_default()
            .to_string()
    };
    let verdict = line(&["PASS: ", "DROP: "]);
    let live = line(&["LIVE PASS: ", "LIVE DROP: ", "LIVE REFUSED: "]);
    let pass = match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!(
            "trace {src} {dst} --live: exit {other:?}\n{text}\n{}",
            stderr(&out)
        ),
    };
    assert!(
        verdict.starts_with(if pass { "PASS: " } else { "DROP: " }),
        "{text}\n{}",
        stderr(&out)
    );
    // A refusal (nothing listens at the destination) is the path open to
    // the destination's own stack, whatever the static verdict.
    let word = if pass { "PASS" } else { "DROP" };
    assert!(
        (live.starts_with(&format!("LIVE {word}: ")) || live.starts_with("LIVE REFUSED: "))
            && live.contains(&format!("; agrees with the static verdict ({word})")),
        "the kernel's verdict differs from the static walk's:\n{text}"
    );
    // The kernel saw the packet (the one rule matched the probe's flow),
    // unless it never left its namespace for want of a route.
    let traced = text
        .lines()
        .any(|l| l.trim_start().starts_with("1. ") && l.contains(" chain "));
    let no_route = text
        .lines()
        .any(|l| l.contains("route lookup in") && l.contains(": unreachable"));
    // A macvlan/ipvlan child's packets never enter the host's stack.
    let child = text.contains("no bridge and no firewall of berth's on its way");
    // Over IPv6 a dropped neighbour solicitation keeps the packet home.
    let unresolved = text.contains("never learns its link address");
    assert!(
        traced || (!pass && (no_route || unresolved)) || child,
        "no chain traced:\n{text}"
    );
    assert_no_trace_table(sb);
    (pass, verdict)
}

fn assert_no_trace_table(sb: &Sandbox) {
    let tables = stdout(&sb.sh_ok("nft list tables"));
    assert!(!tables.contains("berth-trace"), "left behind: {tables}");
}

/// The trace's verdict and a real TCP probe agree; returns the verdict line.
fn agrees_tcp(
    sb: &Sandbox,
    src: &str,
    from: Option<&str>,
    dst: &str,
    addr: &str,
) -> (bool, String) {
    let (pass, line) = trace(sb, src, dst);
    let probe = sb.tcp(from, addr).status.success();
    assert_eq!(
        pass,
        probe,
        "trace {src} {dst} says {line:?}, the probe to {addr} {}",
        if probe { "got through" } else { "did not" }
    );
    (pass, line)
}

fn agrees_ping(sb: &Sandbox, src: &str, from: Option<&str>, dst: &str, ip: &str) -> (bool, String) {
    let (pass, line) = trace(sb, src, dst);
    let probe = sb.ping(from, ip).status.success();
    assert_eq!(
        pass,
        probe,
        "trace {src} {dst} says {line:?}, the ping to {ip} {}",
        if probe { "got through" } else { "did not" }
    );
    (pass, line)
}

fn br_netfilter(sb: &Sandbox, on: bool) {
    sb.sh_ok(&format!(
        "sysctl -qw net.bridge.bridge-nf-call-iptables={}",
        u8::from(on)
    ));
}

#[test]
fn neighbours_pass_and_a_foreign_forward_drop_matters_only_with_br_netfilter() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    for ns in ["a", "b"] {
        sb.add_netns(ns);
        sb.connect("web", ns, &[]);
    }
    let _srv = sb.tcp_server(Some("b"), "0.0.0.0:80");
    for on in [false, true] {
        br_netfilter(&sb, on);
        let (pass, line) = agrees_tcp(&sb, "a", Some("a"), "b:80", "10.90.0.3:80");
        assert!(pass && line.contains("neighbours on network web"), "{line}");
    }
    sb.sh_ok("nft add table inet foreign && nft 'add chain inet foreign forward { type filter hook forward priority 0; policy drop; }'");
    br_netfilter(&sb, true);
    let (pass, line) = agrees_tcp(&sb, "a", Some("a"), "b:80", "10.90.0.3:80");
    assert!(
        !pass && line.contains("table inet foreign chain forward"),
        "{line}"
    );
    br_netfilter(&sb, false);
    let (pass, _) = agrees_tcp(&sb, "a", Some("a"), "b:80", "10.90.0.3:80");
    assert!(pass, "bridged without br_netfilter, no forward hook drops");
}

/// macvlan networks: children of one parent in mode bridge reach each
/// other, in mode private they do not, the LAN beyond the parent is
/// reached, and the host that holds the parent is not; `--live` and a real
/// probe agree each time.
#[test]
fn macvlan_children_reach_each_other_and_the_lan_but_not_their_host() {
    let sb = Sandbox::new();
    sb.add_netns("lan");
    sb.sh_ok(
        "ip link add up0 type veth peer name lan0 netns lan && ip link set up0 up \
         && ip -n lan link set lan0 up && ip -n lan addr add 192.168.50.1/24 dev lan0",
    );
    sb.berth_ok(&[
        "network",
        "create",
        "mv",
        "--driver",
        "macvlan",
        "--parent",
        "up0",
        "--subnet",
        "192.168.50.0/24",
        "--gateway",
        "192.168.50.1",
    ]);
    sb.berth_ok(&[
        "network",
        "create",
        "mp",
        "--driver",
        "macvlan",
        "--parent",
        "up0",
        "--mode",
        "private",
        "--subnet",
        "192.168.60.0/24",
    ]);
    for (net, ns) in [("mv", "a"), ("mv", "b"), ("mp", "c"), ("mp", "d")] {
        sb.add_netns(ns);
        sb.connect(net, ns, &[]);
    }
    let _srv = sb.tcp_server(Some("b"), "0.0.0.0:80");
    let (pass, line) = agrees_tcp(&sb, "a", Some("a"), "b:80", "192.168.50.3:80");
    assert!(pass && line.contains("macvlan mode bridge"), "{line}");
    let (pass, line) = agrees_ping(&sb, "c", Some("c"), "d", "192.168.60.3");
    assert!(!pass && line.contains("mode private"), "{line}");
    let (pass, line) = agrees_ping(&sb, "a", Some("a"), "192.168.50.1", "192.168.50.1");
    assert!(pass && line.contains("onto its LAN"), "{line}");
    sb.sh_ok("ip addr add 192.168.50.9/24 dev up0");
    let (pass, line) = agrees_ping(&sb, "a", Some("a"), "192.168.50.9", "192.168.50.9");
    assert!(!pass && line.contains("shim"), "{line}");
}

#[test]
fn isolation_no_icc_and_a_foreign_drop_on_routed_traffic() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.create_network("web", "10.90.0.0/24");
    sb.create_network("db", "10.91.0.0/24");
    sb.berth_ok(&[
        "network",
        "create",
        "quiet",
        "--subnet",
        "10.92.0.0/24",
        "--no-icc",
    ]);
    for (net, ns) in [("web", "a"), ("db", "c"), ("quiet", "q1"), ("quiet", "q2")] {
        sb.add_netns(ns);
        sb.connect(net, ns, &[]);
    }
    let (pass, line) = agrees_ping(&sb, "a", Some("a"), "c", "10.91.0.2");
    assert!(
        !pass && line.contains("networks web and db are isolated; connect a to db"),
        "{line}"
    );
    for on in [false, true] {
        br_netfilter(&sb, on);
        let (pass, line) = agrees_ping(&sb, "q1", Some("q1"), "q2", "10.92.0.3");
        assert!(!pass && line.contains("--no-icc"), "{line}");
    }
    let _srv = sb.tcp_server(Some(&inet.netns), "0.0.0.0:8080");
    let public = format!("{}:8080", inet.public_ip);
    let (pass, line) = agrees_tcp(&sb, "a", Some("a"), &public, &public);
    assert!(pass && line.contains("leaves by uplink0"), "{line}");
    sb.sh_ok("nft add table inet foreign && nft 'add chain inet foreign forward { type filter hook forward priority 0; policy drop; }'");
    let (pass, line) = agrees_tcp(&sb, "a", Some("a"), &public, &public);
    assert!(
        !pass && line.contains("table inet foreign chain forward"),
        "{line}"
    );
}

#[test]
fn internal_deny_egress_and_ip_forward_off_stop_egress() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    let _srv = sb.tcp_server(Some(&inet.netns), "0.0.0.0:8080");
    let public = format!("{}:8080", inet.public_ip);
    sb.create_network("web", "10.90.0.0/24");
    sb.berth_ok(&[
        "network",
        "create",
        "inside",
        "--subnet",
        "10.93.0.0/24",
        "--internal",
    ]);
    sb.berth_ok(&[
        "network",
        "create",
        "fenced",
        "--subnet",
        "10.94.0.0/24",
        "--deny-egress",
        "198.51.100.0/24",
    ]);
    for (net, ns) in [("web", "a"), ("inside", "i"), ("fenced", "f")] {
        sb.add_netns(ns);
        sb.connect(net, ns, &[]);
    }
    let (pass, line) = agrees_tcp(&sb, "i", Some("i"), &public, &public);
    assert!(
        !pass && line.contains("network inside is --internal"),
        "{line}"
    );
    let (pass, line) = agrees_tcp(&sb, "f", Some("f"), &public, &public);
    assert!(
        !pass && line.contains("denies egress to 198.51.100.0/24"),
        "{line}"
    );
    let (pass, _) = agrees_tcp(&sb, "a", Some("a"), &public, &public);
    assert!(pass);
    sb.sh_ok("sysctl -qw net.ipv4.ip_forward=0");
    let (pass, line) = agrees_tcp(&sb, "a", Some("a"), &public, &public);
    assert!(
        !pass
            && line.contains("net.ipv4.ip_forward is 0")
            && line.contains("berth up puts it back"),
        "{line}"
    );
}

#[test]
fn published_ports_from_the_host_and_from_outside() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("a");
    sb.connect("web", "a", &["-p", "8080:80"]);
    let _srv = sb.tcp_server(Some("a"), "0.0.0.0:80");
    let present = format!("{}:8080", inet.host_ip);
    let missing = format!("{}:8081", inet.host_ip);
    for (src, from) in [("host", None), ("internet", Some("internet"))] {
        let (pass, line) = agrees_tcp(&sb, src, from, &present, &present);
        assert!(
            pass && line.contains("published port 8080/tcp -> 10.90.0.2:80 of a"),
            "{src}: {line}"
        );
        let (pass, line) = agrees_tcp(&sb, src, from, &missing, &missing);
        assert!(
            !pass && line.contains("published port 8081/tcp not found"),
            "{src}: {line}"
        );
    }
    // Straight to the container's address from outside: no way in.
    let (pass, line) = agrees_tcp(&sb, "internet", Some("internet"), "a:80", "10.90.0.2:80");
    assert!(
        !pass && line.contains("from outside into network web are refused"),
        "{line}"
    );
}

#[test]
fn a_tampered_table_makes_the_verdict_untrusted_and_bad_input_is_one_line() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("a");
    sb.connect("web", "a", &[]);
    sb.sh_ok("nft flush chain inet berth web-out");
    let out = sb.berth(&["trace", "a", "10.90.0.1"]);
    assert!(stdout(&out).contains("untrusted"), "{}", stdout(&out));
    let out = sb.berth(&["trace", "nosuch", "a"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("\"nosuch\""), "{}", stderr(&out));
    let out = sb.berth(&["trace", "a", "host:99999"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn live_removes_its_table_on_ctrl_c_and_clears_one_a_killed_run_left() {
    use std::os::unix::process::ExitStatusExt;
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.create_network("db", "10.91.0.0/24");
    for (net, ns) in [("web", "a"), ("db", "c")] {
        sb.add_netns(ns);
        sb.connect(net, ns, &[]);
    }
    // Isolated: the probe waits its whole timeout for an answer.
    let mut bg = sb.spawn_berth(&["trace", "a", "c", "--live"], false);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let during = stdout(&sb.sh_ok("nft list tables"));
    assert!(during.contains("table inet berth-trace"), "{during}");
    bg.signal(nix::sys::signal::Signal::SIGINT);
    let status = bg
        .wait_timeout(std::time::Duration::from_secs(5))
        .expect("trace --live ends on SIGINT");
    assert_eq!(status.signal(), Some(libc::SIGINT), "{}", bg.stderr());
    assert_no_trace_table(&sb);
    // What a SIGKILL would leave is cleared by the next run.
    sb.sh_ok("nft add table inet berth-trace && nft add table bridge berth-trace");
    let (pass, line) = agrees_ping(&sb, "a", Some("a"), "c", "10.91.0.2");
    assert!(!pass && line.contains("isolated"), "{line}");
}

/// `berth trace` at 1000 endpoints (the target: under 50 ms).
/// `cargo test --release --test trace -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_trace_at_1000_endpoints() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.80.0.0/20");
    sb.create_network("db", "10.81.0.0/20");
    let berth = util::berth_under_test();
    // In batches of 100, each well within one command's timeout.
    for batch in 0..10 {
        sb.sh_ok(&format!(
            "export BERTH_STATE_DIR={STATE_DIR} BERTH_NFT_MAX_KERNEL={MIN_KERNEL}; \
             for i in $(seq {} {}); do ip netns add n$i; \
             if [ $i -le 500 ]; then net=web; else net=db; fi; \
             {berth} connect $net n$i -p $((10000+i)):80 >/dev/null || exit 1; done",
            batch * 100 + 1,
            batch * 100 + 100
        ));
    }
    assert_eq!(sb.endpoints().len(), 1000);
    for (src, dst) in [("n1", "n2:80"), ("n1", "n999"), ("host", "127.0.0.1:10500")] {
        let mut times = Vec::new();
        for _ in 0..11 {
            let start = std::time::Instant::now();
            let out = sb.berth(&["trace", src, dst]);
            times.push(start.elapsed());
            assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
        }
        times.sort();
        println!(
            "trace {src} {dst} at 1000 endpoints: median {:.1} ms, min {:.1} ms, max {:.1} ms",
            times[5].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[10].as_secs_f64() * 1e3
        );
        assert!(times[5].as_millis() < 50, "over 50 ms: {times:?}");
    }
}

/// The host's IPv6 address on the uplink, and the outside's.
const HOST6: &str = "2001:db8:1::1";
const OUTSIDE6: &str = "2001:db8:1::2";

/// The `internet` namespace with IPv6 on the uplink too, both ways
/// routed, and its link-local addresses past duplicate address detection.
fn internet6(sb: &Sandbox) -> Internet {
    let inet = sb.internet();
    sb.sh_ok(&format!(
        "ip -6 addr add {HOST6}/64 dev uplink0 nodad && \
         ip -n internet -6 addr add {OUTSIDE6}/64 dev eth0 nodad && \
         ip -n internet -6 route add default via {HOST6} && \
         ip -6 route add default via {OUTSIDE6}"
    ));
    sb.sh_ok(
        "for i in $(seq 100); do \
           [ -z \"$(ip -6 addr show dev uplink0 tentative)$(ip -n internet -6 addr show dev eth0 tentative)\" ] && exit 0; \
           sleep 0.05; done; exit 1",
    );
    inet
}

fn br_netfilter6(sb: &Sandbox, on: bool) {
    sb.sh_ok(&format!(
        "sysctl -qw net.bridge.bridge-nf-call-ip6tables={}",
        u8::from(on)
    ));
}

/// IPv6 flows walk the inet table's IPv6 rules: neighbours (both
/// br_netfilter modes, and --no-icc), isolation, the way out, a published
/// port over IPv6 (present and missing, from the host and from outside),
/// a container reached straight from outside, an IPv6-only network, and
/// IPv6 forwarding off; each verdict checked by --live and a real probe.
#[test]
fn ipv6_flows_pass_and_drop_for_the_same_reasons_as_ipv4() {
    let sb = Sandbox::new();
    internet6(&sb);
    let dual = |name: &str, third: u8, extra: &[&str]| {
        let v4 = format!("10.{third}.0.0/24");
        let v6 = format!("fd00:{third}::/64");
        let mut args = vec!["network", "create", name, "--subnet", &v4, "--subnet6", &v6];
        args.extend_from_slice(extra);
        sb.berth_ok(&args);
    };
    dual("web", 90, &[]);
    dual("db", 91, &[]);
    dual("quiet", 92, &["--no-icc"]);
    sb.berth_ok(&[
        "network",
        "create",
        "six",
        "--no-ipv4",
        "--subnet6",
        "fd00:93::/64",
    ]);
    for (net, ns) in [
        ("web", "a"),
        ("web", "b"),
        ("db", "c"),
        ("quiet", "q1"),
        ("quiet", "q2"),
        ("six", "s"),
    ] {
        sb.add_netns(ns);
        let extra: &[&str] = if ns == "a" { &["-p", "8080:80"] } else { &[] };
        sb.connect(net, ns, extra);
    }
    let _srv = sb.tcp_server(Some("a"), "[::]:80");
    for on in [false, true] {
        br_netfilter6(&sb, on);
        let (pass, line) = agrees_ping(&sb, "a", Some("a"), "fd00:90::3", "fd00:90::3");
        assert!(
            pass && line.contains("a and b are neighbours on network web"),
            "{line}"
        );
        let (pass, line) = agrees_ping(&sb, "q1", Some("q1"), "fd00:92::3", "fd00:92::3");
        assert!(!pass && line.contains("--no-icc"), "{line}");
    }
    let (pass, line) = agrees_ping(&sb, "a", Some("a"), "fd00:91::2", "fd00:91::2");
    assert!(
        !pass && line.contains("networks web and db are isolated; connect a to db"),
        "{line}"
    );
    // An IPv6-only network: trace between names takes IPv6.
    let (pass, line) = agrees_ping(&sb, "s", Some("s"), "a", "fd00:90::2");
    assert!(
        !pass && line.contains("networks six and web are isolated"),
        "{line}"
    );
    // Out to the world over IPv6.
    let _out = sb.tcp_server(Some("internet"), "[::]:8080");
    let public = format!("[{OUTSIDE6}]:8080");
    for src in ["a", "s"] {
        let (pass, line) = agrees_tcp(&sb, src, Some(src), &public, &public);
        assert!(pass && line.contains("leaves by uplink0"), "{src}: {line}");
    }
    // A published port over IPv6, from the host and from outside.
    let present = format!("[{HOST6}]:8080");
    let missing = format!("[{HOST6}]:8081");
    for (src, from) in [("host", None), ("internet", Some("internet"))] {
        let (pass, line) = agrees_tcp(&sb, src, from, &present, &present);
        assert!(
            pass && line.contains("published port 8080/tcp -> [fd00:90::2]:80 of a"),
            "{src}: {line}"
        );
        let (pass, line) = agrees_tcp(&sb, src, from, &missing, &missing);
        assert!(
            !pass && line.contains("published port 8081/tcp not found"),
            "{src}: {line}"
        );
    }
    let (pass, line) = agrees_tcp(
        &sb,
        "internet",
        Some("internet"),
        "[fd00:90::2]:80",
        "[fd00:90::2]:80",
    );
    assert!(
        !pass && line.contains("from outside into network web are refused"),
        "{line}"
    );
    // The static text names the IPv6 rules and commands.
    let out = sb.berth_ok(&["trace", "a", &public]);
    assert!(out.contains("ip -n a -6 route get"), "{out}");
    assert!(out.contains("ip6 saddr fd00:90::/64"), "{out}");
    sb.sh_ok("sysctl -qw net.ipv6.conf.all.forwarding=0");
    let (pass, line) = agrees_tcp(&sb, "a", Some("a"), &public, &public);
    assert!(
        !pass
            && line.contains("net.ipv6.conf.all.forwarding is 0")
            && line.contains("berth up puts it back"),
        "{line}"
    );
}

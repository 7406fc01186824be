//! End-to-end IPv6: dual-stack and IPv6-only networks in sandboxes, with
//! traffic over IPv6 checked by berth-probe and the kernel state by `ip -j`
//! and `nft -j`. Published ports on every path but [::1] (see the README),
//! NAT66 and `--no-masquerade`, isolation, `--internal`, `--no-icc`,
//! `--deny-egress`, anti-spoofing, both br_netfilter modes, the reconcile
//! of lost IPv6 state, and `reset` putting IPv6 forwarding back.

mod util;

use serde_json::Value;
use util::*;

/// The host's IPv6 address on the uplink, and the outside's.
const HOST6: &str = "2001:db8:1::1";
const OUTSIDE6: &str = "2001:db8:1::2";

/// The `internet` namespace with IPv6 on the uplink too: the host's
/// default IPv6 route goes there, and the outside routes back to it.
fn internet6(sb: &Sandbox) -> Internet {
    let inet = sb.internet();
    sb.sh_ok(&format!(
        "ip -6 addr add {HOST6}/64 dev uplink0 nodad && \
         ip -n internet -6 addr add {OUTSIDE6}/64 dev eth0 nodad && \
         ip -n internet -6 route add default via {HOST6} && \
         ip -6 route add default via {OUTSIDE6}"
    ));
    // The kernel forwards to a neighbour only once it can solicit it from
    // a link-local address that is no longer tentative: wait for the
    // uplink's (duplicate address detection, about a second).
    sb.sh_ok(
        "for i in $(seq 100); do \
           [ -z \"$(ip -6 addr show dev uplink0 tentative)$(ip -n internet -6 addr show dev eth0 tentative)\" ] && exit 0; \
           sleep 0.05; done; exit 1",
    );
    inet
}

fn dual(sb: &Sandbox, name: &str, v4: &str, v6: &str, extra: &[&str]) {
    let mut args = vec!["network", "create", name, "--subnet", v4, "--subnet6", v6];
    args.extend_from_slice(extra);
    sb.berth_ok(&args);
}

fn v6(addr: &str, port: u16) -> String {
    format!("[{addr}]:{port}")
}

/// The IPv6 addresses of `dev` in `netns`, as `ip -j` lists them, with
/// their flags.
fn addrs6(sb: &Sandbox, netns: Option<&str>, dev: &str) -> Vec<Value> {
    let v = sb.ip_json_in(netns, &["-6", "addr", "show", "dev", dev]);
    as_array(v)
        .into_iter()
        .flat_map(|l| as_array(l["addr_info"].clone()))
        .collect()
}

fn default6(sb: &Sandbox, netns: &str) -> Vec<String> {
    as_array(sb.ip_json_in(Some(netns), &["-6", "route", "show", "default"]))
        .iter()
        .filter_map(|r| r["gateway"].as_str().map(str::to_string))
        .collect()
}

/// All five paths to a published port over IPv6, with the client address
/// kept where IPv4 keeps it (from outside), and the IPv4 paths alongside.
fn five_paths6(br_netfilter: bool) {
    let sb = Sandbox::new();
    set_br_netfilter(&sb, br_netfilter);
    let inet = internet6(&sb);
    dual(&sb, "web", "10.90.0.0/24", "fd00:90::/64", &[]);
    dual(&sb, "other", "10.91.0.0/24", "fd00:91::/64", &[]);
    for ns in ["c", "n", "o"] {
        sb.add_netns(ns);
    }
    let ep = sb.connect("web", "c", &["-p", "8080:80", "-p", "8081:81/udp"]);
    assert_eq!(ep["ip6"], "fd00:90::2", "{ep}");
    sb.connect("web", "n", &[]);
    sb.connect("other", "o", &[]);
    let _tcp = sb.tcp_server(Some("c"), "[::]:80");
    let _udp = sb.udp_server(Some("c"), "[::]:81");
    for (port, udp) in [(8080, false), (8081, true)] {
        let check = |from: Option<&str>, ip: &str| -> String {
            let addr = v6(ip, port);
            if udp {
                sb.assert_udp(from, &addr)
            } else {
                sb.assert_tcp(from, &addr)
            }
        };
        // 1. Another machine, its address kept.
        assert_eq!(check(Some(&inet.netns), HOST6), OUTSIDE6, "source kept");
        // 2. The host, on its addresses.
        check(None, HOST6);
        check(None, "fd00:90::1");
        // 3. A neighbour. 4. The container itself. 5. Another network.
        check(Some("n"), HOST6);
        check(Some("c"), HOST6);
        check(Some("o"), HOST6);
        // IPv4 still answers, from outside with its source kept.
        let four = format!("{}:{port}", inet.host_ip);
        let seen = if udp {
            sb.assert_udp(Some(&inet.netns), &four)
        } else {
            sb.assert_tcp(Some(&inet.netns), &four)
        };
        assert_eq!(seen, inet.peer_ip);
    }
    // Isolation holds over IPv6: `o` cannot reach `c` directly; `n` can.
    assert!(!sb.tcp(Some("o"), &v6("fd00:90::2", 80)).status.success());
    sb.assert_tcp(Some("n"), &v6("fd00:90::2", 80));
}

#[test]
fn published_ports_answer_on_every_ipv6_path_with_br_netfilter() {
    five_paths6(true);
}

#[test]
fn published_ports_answer_on_every_ipv6_path_without_br_netfilter() {
    five_paths6(false);
}

/// `[2001:db8:1::1]:9000:80` answers on that address only, over IPv6
/// only; the container's IPv4 address is not involved.
#[test]
fn an_ipv6_host_ip_binds_the_mapping_to_that_address() {
    let sb = Sandbox::new();
    let inet = internet6(&sb);
    dual(&sb, "web", "10.90.0.0/24", "fd00:90::/64", &[]);
    sb.add_netns("c");
    sb.connect("web", "c", &["-p", &format!("[{HOST6}]:9000:80")]);
    let _srv = sb.tcp_server(Some("c"), "[::]:80");
    assert_eq!(sb.assert_tcp(Some(&inet.netns), &v6(HOST6, 9000)), OUTSIDE6);
    assert!(!sb.tcp(None, &v6("fd00:90::1", 9000)).status.success());
    assert!(!sb
        .tcp(Some(&inet.netns), &format!("{}:9000", inet.host_ip))
        .status
        .success());
}

/// An IPv6-only network: a ULA /64, addresses without DAD and no
/// link-local on the container's side, an IPv6 default route, NAT66 to the
/// outside, and nothing of IPv4 (no address, no ip_forward change).
#[test]
fn an_ipv6_only_network_works_without_ipv4() {
    let sb = Sandbox::new();
    let inet = internet6(&sb);
    let forward4 = sb.sysctl("net.ipv4.ip_forward");
    sb.berth_ok(&["network", "create", "six", "--ipv6", "--no-ipv4"]);
    let n = sb.network("six");
    let subnet = n["subnets"][0]["subnet"].as_str().unwrap().to_string();
    assert!(subnet.starts_with("fd") && subnet.ends_with("::/64"), "{n}");
    assert_eq!(n["subnets"].as_array().unwrap().len(), 1, "{n}");
    sb.add_netns("c");
    let ep = sb.connect("six", "c", &[]);
    let ip6 = ep["ip6"].as_str().unwrap().to_string();
    assert_eq!(ep["ip"], ip6, "the first address is the IPv6 one: {ep}");
    assert!(sb.ipv4_addrs(Some("c"), "eth0").is_empty());
    let addrs = addrs6(&sb, Some("c"), "eth0");
    assert_eq!(addrs.len(), 1, "no link-local: {addrs:?}");
    assert_eq!(addrs[0]["local"], ip6.as_str());
    assert_eq!(addrs[0]["nodad"], true, "{addrs:?}");
    let gw = n["gateway"].as_str().unwrap().to_string();
    assert_eq!(default6(&sb, "c"), std::slice::from_ref(&gw));
    sb.assert_ping(Some("c"), &gw);
    assert_eq!(sb.sysctl("net.ipv6.conf.all.forwarding"), "1");
    assert_eq!(sb.sysctl("net.ipv4.ip_forward"), forward4);
    // Out to the world, masqueraded to the host's address.
    let _srv = sb.tcp_server(Some(&inet.netns), "[::]:7000");
    assert_eq!(sb.assert_tcp(Some("c"), &v6(OUTSIDE6, 7000)), HOST6);
}

/// `--no-masquerade` for a routed prefix: the outside sees the container's
/// own address (it routes the prefix back to the host).
#[test]
fn no_masquerade_keeps_a_routed_prefix_visible() {
    let sb = Sandbox::new();
    let inet = internet6(&sb);
    sb.berth_ok(&[
        "network",
        "create",
        "routed",
        "--no-ipv4",
        "--subnet6",
        "2001:db8:77::/64",
        "--no-masquerade",
    ]);
    sb.sh_ok(&format!(
        "ip -n internet -6 route add 2001:db8:77::/64 via {HOST6}"
    ));
    sb.add_netns("c");
    sb.connect("routed", "c", &[]);
    let _srv = sb.tcp_server(Some(&inet.netns), "[::]:7000");
    assert_eq!(
        sb.assert_tcp(Some("c"), &v6(OUTSIDE6, 7000)),
        "2001:db8:77::2"
    );
}

/// Isolation, `--internal`, `--no-icc` and `--deny-egress` judge IPv6 as
/// they judge IPv4, in both br_netfilter modes.
fn policies6(br_netfilter: bool) {
    let sb = Sandbox::new();
    set_br_netfilter(&sb, br_netfilter);
    let inet = internet6(&sb);
    dual(
        &sb,
        "web",
        "10.90.0.0/24",
        "fd00:90::/64",
        &["--deny-egress", "2001:db8:1::2/128"],
    );
    dual(&sb, "quiet", "10.92.0.0/24", "fd00:92::/64", &["--no-icc"]);
    dual(
        &sb,
        "vault",
        "10.93.0.0/24",
        "fd00:93::/64",
        &["--internal"],
    );
    for ns in ["a", "b", "q1", "q2", "v"] {
        sb.add_netns(ns);
    }
    sb.connect("web", "a", &[]);
    sb.connect("web", "b", &[]);
    sb.connect("quiet", "q1", &[]);
    sb.connect("quiet", "q2", &[]);
    sb.connect("vault", "v", &[]);
    let _b = sb.tcp_server(Some("b"), "[::]:80");
    let _q2 = sb.tcp_server(Some("q2"), "[::]:80");
    let _out = sb.tcp_server(Some(&inet.netns), "[::]:7000");
    // Neighbours talk on web, not on the --no-icc network.
    sb.assert_tcp(Some("a"), &v6("fd00:90::3", 80));
    assert!(!sb.tcp(Some("q1"), &v6("fd00:92::3", 80)).status.success());
    // No network reaches another's containers.
    assert!(!sb.tcp(Some("q1"), &v6("fd00:90::3", 80)).status.success());
    // --deny-egress rejects the IPv6 range (at once, not by timeout).
    let denied = sb.tcp(Some("a"), &v6(OUTSIDE6, 7000));
    assert!(!denied.status.success());
    assert!(
        !stderr(&denied).contains("timed out"),
        "{}",
        stderr(&denied)
    );
    sb.assert_tcp(Some("q1"), &v6(OUTSIDE6, 7000));
    // --internal: no default route of either family, nothing leaves.
    assert!(default6(&sb, "v").is_empty());
    assert!(!sb.tcp(Some("v"), &v6(OUTSIDE6, 7000)).status.success());
}

#[test]
fn ipv6_policies_hold_with_br_netfilter() {
    policies6(true);
}

#[test]
fn ipv6_policies_hold_without_br_netfilter() {
    policies6(false);
}

/// A container that sends with a neighbour's IPv6 address or a foreign
/// one is dropped at its port; its own address passes (crafted frames
/// from a packet socket, watched on the victim's side), in both
/// br_netfilter modes.
fn spoofing6(br_netfilter: bool) {
    let sb = Sandbox::new();
    set_br_netfilter(&sb, br_netfilter);
    dual(&sb, "web", "10.90.0.0/24", "fd00:90::/64", &[]);
    for ns in ["a", "b", "victim"] {
        sb.add_netns(ns);
    }
    sb.connect("web", "a", &[]);
    sb.connect("web", "b", &[]);
    sb.connect("web", "victim", &[]);
    let victim_mac = mac(&sb, Some("victim"), "eth0");
    for (src, arrives) in [
        ("fd00:90::2", true),
        ("fd00:90::3", false),
        ("2001:db8:dead::1", false),
    ] {
        let token = format!("from-{src}");
        let mut watcher = sb.spawn_in_netns(
            Some("victim"),
            PROBE,
            &[
                "raw-recv",
                "eth0",
                "--timeout-ms",
                "2000",
                "--udp-dport",
                "7777",
                "--payload",
                &token,
            ],
            true,
        );
        let out = sb.probe(
            Some("a"),
            &[
                "raw-send",
                "eth0",
                "udp",
                "--src",
                src,
                "--dst",
                "fd00:90::4",
                "--dst-mac",
                &victim_mac,
                "--dport",
                "7777",
                "--payload",
                &token,
                "--count",
                "3",
            ],
        );
        assert_ok_ctx(&out, "raw-send");
        let seen = watcher
            .wait_timeout(std::time::Duration::from_secs(10))
            .expect("the watcher ends")
            .success();
        assert_eq!(seen, arrives, "a frame from a with source {src}");
    }
}

#[test]
fn spoofed_ipv6_sources_are_dropped_with_br_netfilter() {
    spoofing6(true);
}

#[test]
fn spoofed_ipv6_sources_are_dropped_without_br_netfilter() {
    spoofing6(false);
}

/// A neighbour advertisement may speak only for its port's own
/// addresses: one from `a` claiming `b`'s address (from a's own source
/// address) reaches no neighbour and does not move the host's entry for
/// b; one for a's own address passes. Both br_netfilter modes.
fn nd_spoofing(br_netfilter: bool) {
    let sb = Sandbox::new();
    set_br_netfilter(&sb, br_netfilter);
    dual(&sb, "web", "10.90.0.0/24", "fd00:90::/64", &[]);
    for ns in ["a", "b", "victim"] {
        sb.add_netns(ns);
    }
    sb.connect("web", "a", &[]);
    sb.connect("web", "b", &[]);
    sb.connect("web", "victim", &[]);
    let b_mac = mac(&sb, Some("b"), "eth0");
    // The host learns b's MAC first.
    sb.assert_ping(None, "fd00:90::3");
    for (target, arrives) in [
        ("fd00:90::2", true),
        ("fd00:90::3", false),
        ("fd00:90::1", false),
    ] {
        let mut watcher = sb.spawn_in_netns(
            Some("victim"),
            PROBE,
            &[
                "raw-recv",
                "eth0",
                "--nd",
                "--target",
                target,
                "--timeout-ms",
                "2000",
            ],
            true,
        );
        let out = sb.probe(
            Some("a"),
            &[
                "raw-send",
                "eth0",
                "na",
                "--src",
                "fd00:90::2",
                "--target",
                target,
                "--flags",
                "0x20",
                "--count",
                "3",
            ],
        );
        assert_ok_ctx(&out, "raw-send na");
        let seen = watcher
            .wait_timeout(std::time::Duration::from_secs(10))
            .expect("the watcher ends")
            .success();
        assert_eq!(seen, arrives, "an advertisement from a for {target}");
    }
    let neigh = sb.ip_json(&["-6", "neigh", "show", "fd00:90::3", "dev", "berth-web"]);
    assert_eq!(neigh[0]["lladdr"], b_mac.as_str(), "{neigh}");
    // b keeps its traffic, and the guard counted the forged ones.
    sb.assert_ping(None, "fd00:90::3");
    let out = sb.sh_ok("nft list chain bridge berth guard");
    let guard = String::from_utf8_lossy(&out.stdout).into_owned();
    let dropped = guard
        .lines()
        .find(|l| l.contains("nd-neighbor-advert"))
        .unwrap_or_else(|| panic!("no advertisement rule in {guard}"));
    assert!(!dropped.contains("packets 0 "), "{dropped}");
}

#[test]
fn forged_neighbour_advertisements_are_dropped_with_br_netfilter() {
    nd_spoofing(true);
}

#[test]
fn forged_neighbour_advertisements_are_dropped_without_br_netfilter() {
    nd_spoofing(false);
}

/// The reconcile puts back what was lost of a dual-stack network: the
/// bridge's IPv6 gateway and, with a re-created veth, both addresses and
/// both default routes; `reset` restores IPv6 forwarding.
#[test]
fn up_repairs_ipv6_and_reset_restores_forwarding() {
    let sb = Sandbox::new();
    sb.sh_ok("sysctl -qw net.ipv6.conf.all.forwarding=0");
    dual(&sb, "web", "10.90.0.0/24", "fd00:90::/64", &[]);
    sb.add_netns("c");
    let ep = sb.connect("web", "c", &[]);
    assert_eq!(sb.berth_ok(&["up", "--dry-run"]).trim(), "# nothing to do");
    let host_ifname = ep["host_ifname"].as_str().unwrap().to_string();
    sb.sh_ok(&format!(
        "ip -6 addr del fd00:90::1/64 dev berth-web && ip link del {host_ifname}"
    ));
    sb.berth_ok(&["up"]);
    let bridge: Vec<String> = addrs6(&sb, None, "berth-web")
        .iter()
        .filter_map(|a| a["local"].as_str().map(str::to_string))
        .collect();
    assert!(bridge.contains(&"fd00:90::1".to_string()), "{bridge:?}");
    assert_eq!(default6(&sb, "c"), ["fd00:90::1"]);
    sb.assert_ping(Some("c"), "fd00:90::1");
    sb.assert_ping(Some("c"), "10.90.0.1");
    assert_eq!(sb.berth_ok(&["up", "--dry-run"]).trim(), "# nothing to do");
    sb.berth_ok(&["reset"]);
    assert_eq!(sb.sysctl("net.ipv6.conf.all.forwarding"), "0");
}

/// A dual-stack network's `--dry-run` prints nft commands nft itself
/// accepts, every IPv6 rule and set included.
#[test]
fn a_dual_stack_dry_run_prints_valid_nft_commands() {
    let sb = Sandbox::new();
    let out = sb.berth_ok(&[
        "network",
        "create",
        "alpha",
        "--subnet",
        "10.90.0.0/24",
        "--subnet6",
        "fd00:90::/64",
        "--deny-egress",
        "2001:db8::/32",
        "--cluster-cidr",
        "fd00:244::/56",
        "--no-host-access",
        "--dry-run",
    ]);
    assert!(
        out.contains("ip -6 addr add fd00:90::1/64 dev berth-alpha nodad"),
        "{out}"
    );
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("nft '")).collect();
    assert!(lines.iter().any(|l| l.contains("published6_any")), "{out}");
    for line in lines {
        sb.sh_ok(line);
    }
    // A connect's guard elements too, the advertisement targets' integers
    // included, against the table a real create made.
    let sb = Sandbox::new();
    dual(&sb, "web", "10.90.0.0/24", "fd00:90::/64", &[]);
    sb.add_netns("c1");
    let out = sb.berth_ok(&["connect", "web", "c1", "--dry-run"]);
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("nft '")).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("targets6") && l.contains("0xfd000090000000000000000000000002")),
        "{out}"
    );
    for line in lines {
        sb.sh_ok(line);
    }
    let out = sb.sh_ok("nft list set bridge berth targets6");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("0xfd000090000000000000000000000002"),
        "{listed}"
    );
}

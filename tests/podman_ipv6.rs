//! Podman 4.3 with berth as its netavark on IPv6: `podman network create
//! --ipv6` (Podman picks both subnets), a dual-stack `--subnet` network
//! with traffic over both families (host, neighbour, a published port
//! reached over IPv6 from a namespace outside, DNS AAAA), a dual-stack
//! macvlan network with IPv6 traffic to its LAN, and `--ipam-driver none`. Skipped, loudly, when Podman is not installed.

mod util;

use serde_json::Value;
use util::podman::{podman_or_skip, skip, Podman, PodmanClient};
use util::*;

const TEST: &str = "podman_runs_ipv6_and_ipam_none_networks_on_berth";

/// The IPv6 address Podman recorded for container `name` on `network`.
fn ip6_of(p: &Podman, name: &str, network: &str) -> String {
    p.ok(&[
        "inspect",
        name,
        "--format",
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").GlobalIPv6Address}}}}"),
    ])
}

/// `ARGS` run with `nsenter` in container `name`'s network namespace.
fn in_container(p: &Podman, name: &str, args: &[&str]) -> std::process::Output {
    let net = format!("--net={}", p.netns_of(name));
    let mut all = vec![net.as_str()];
    all.extend_from_slice(args);
    p.sb.cmd("nsenter", &all)
}

/// The addresses (`ADDR/LEN`) of scope global on `eth0` of container `name`.
fn global_addresses(p: &Podman, name: &str) -> Vec<String> {
    let out = in_container(p, name, &["ip", "-j", "addr", "show", "eth0"]);
    assert_ok_ctx(&out, &format!("ip addr in {name}"));
    let links: Value = serde_json::from_str(&stdout(&out)).unwrap();
    links[0]["addr_info"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

/// The namespace `out6` (fd77::2) beside the host (fd77::1): a client
/// from outside that reaches the host over IPv6 only.
fn outside6(sb: &Sandbox) {
    sb.add_netns("out6");
    sb.sh_ok(
        "ip link add o6h type veth peer name eth0 netns out6 && \
         ip addr add fd77::1/64 dev o6h nodad && ip link set o6h up && \
         ip -n out6 addr add fd77::2/64 dev eth0 nodad && ip -n out6 link set eth0 up",
    );
}

#[test]
fn podman_runs_ipv6_and_ipam_none_networks_on_berth() {
    let Some(p) = podman_or_skip(TEST, BERTH) else {
        return;
    };
    let sb = &p.sb;

    // `--ipv6` alone: Podman picks an IPv4 subnet and an IPv6 ULA /64,
    // and berth's network has both, as Podman defined them.
    p.ok(&["network", "create", "--ipv6", "auto6"]);
    let def: Value = serde_json::from_str(&p.ok(&["network", "inspect", "auto6"])).unwrap();
    let podman_subnets: Vec<String> = def[0]["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subnet"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(podman_subnets.len(), 2, "{def}");
    let v6net = podman_subnets.iter().find(|s| s.contains(':')).unwrap();
    p.run_server("a1", &["--network", "auto6"], "tcp-serve", "[::]:80");
    let n = sb.network("auto6");
    assert_eq!(n["ipv6"], true, "{n}");
    let berth_subnets: Vec<String> = n["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subnet"].as_str().unwrap().to_string())
        .collect();
    let mut want = podman_subnets.clone();
    want.sort_by_key(|s| s.contains(':'));
    assert_eq!(berth_subnets, want, "{n}");
    let a1_6 = ip6_of(&p, "a1", "auto6");
    assert!(!a1_6.is_empty(), "Podman got no IPv6 address for a1");
    let len = v6net.rsplit_once('/').unwrap().1;
    assert!(
        global_addresses(&p, "a1").contains(&format!("{a1_6}/{len}")),
        "{:?}",
        global_addresses(&p, "a1")
    );
    // The host reaches it over IPv6 from its gateway address.
    sb.assert_tcp(None, &format!("[{a1_6}]:80"));

    // Dual stack with Podman's subnets given, a published port.
    p.ok(&[
        "network",
        "create",
        "--subnet",
        "10.90.0.0/24",
        "--subnet",
        "fd00:90::/64",
        "dual",
    ]);
    p.run_server(
        "srv",
        &[
            "--network",
            "dual",
            "--ip",
            "10.90.0.99",
            "--ip6",
            "fd00:90::99",
            "-p",
            "8080:80",
        ],
        "tcp-serve",
        "[::]:80",
    );
    p.run_server("nb", &["--network", "dual"], "tcp-serve", "[::]:7");
    let srv4 = p.ip_of("srv", "dual");
    let srv6 = ip6_of(&p, "srv", "dual");
    let nb6 = ip6_of(&p, "nb", "dual");
    // Podman's addresses, not the next free ones of berth's pool.
    assert_eq!(
        (srv4.as_str(), srv6.as_str()),
        ("10.90.0.99", "fd00:90::99")
    );
    assert!(nb6.starts_with("fd00:90::"), "{nb6}");
    // berth's endpoint carries both of Podman's addresses.
    let ep = sb
        .endpoints()
        .into_iter()
        .find(|e| e["network"] == "dual" && e["name"] == "srv")
        .expect("srv's endpoint");
    assert_eq!(ep["ip"], srv4.as_str(), "{ep}");
    assert_eq!(ep["ip6"], srv6.as_str(), "{ep}");
    // A default route per family, with netavark's metric.
    for (family, gw) in [("-4", "10.90.0.1"), ("-6", "fd00:90::1")] {
        let out = in_container(&p, "srv", &["ip", "-j", family, "route", "show", "default"]);
        assert_ok_ctx(&out, "ip route in srv");
        let routes: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(routes[0]["gateway"], gw, "{routes}");
        assert_eq!(routes[0]["metric"], 100, "{routes}");
    }
    // Both families from the host and from a neighbour; the neighbour's
    // IPv6 address is what the server sees.
    sb.assert_tcp(None, &format!("{srv4}:80"));
    sb.assert_tcp(None, &format!("[{srv6}]:80"));
    let out = p.probe_in(
        "nb",
        &[
            "tcp-connect",
            &format!("[{srv6}]:80"),
            "--timeout-ms",
            "2000",
        ],
    );
    assert_ok_ctx(&out, "nb -> srv over IPv6");
    assert_eq!(seen_source(&stdout(&out)), nb6);
    // The published port answers over IPv6 from outside the host, with
    // the client's address preserved.
    outside6(sb);
    assert_eq!(sb.assert_tcp(Some("out6"), "[fd77::1]:8080"), "fd77::2");
    // DNS: the name has an AAAA record with the container's IPv6 address,
    // answered on either gateway.
    if std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        for gw in ["10.90.0.1", "fd00:90::1"] {
            let out = in_container(
                &p,
                "nb",
                &[
                    "dig",
                    "+short",
                    "+time=2",
                    "+tries=1",
                    &format!("@{gw}"),
                    "srv.dns.podman",
                    "AAAA",
                ],
            );
            assert_ok_ctx(&out, &format!("dig AAAA at {gw}"));
            assert_eq!(stdout(&out).trim(), srv6, "AAAA at {gw}");
        }
    } else {
        skip(&format!(
            "{TEST}: `dig` is not installed (Debian: dnsutils); the AAAA answers were not checked"
        ));
    }

    // --ipam-driver none: the interface is up with its MAC, without
    // addresses or routes, and berth's endpoint has no address.
    p.ok(&["network", "create", "--ipam-driver", "none", "noipam"]);
    p.run_server("bare", &["--network", "noipam"], "tcp-serve", "127.0.0.1:7");
    assert!(
        global_addresses(&p, "bare").is_empty(),
        "{:?}",
        global_addresses(&p, "bare")
    );
    for family in ["-4", "-6"] {
        let out = in_container(&p, "bare", &["ip", family, "route", "show", "default"]);
        assert_ok_ctx(&out, "ip route in bare");
        assert_eq!(stdout(&out).trim(), "", "a default route {family}");
    }
    let out = in_container(&p, "bare", &["ip", "-j", "link", "show", "eth0"]);
    let link: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        link[0]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "UP"),
        "{link}"
    );
    let mac = p.ok(&[
        "inspect",
        "bare",
        "--format",
        "{{(index .NetworkSettings.Networks \"noipam\").MacAddress}}",
    ]);
    assert_eq!(link[0]["address"], mac.as_str(), "{link}");
    let ep = sb
        .endpoints()
        .into_iter()
        .find(|e| e["network"] == "noipam")
        .expect("bare's endpoint");
    assert!(ep["ips"].as_array().is_none_or(|a| a.is_empty()), "{ep}");
    assert_eq!(sb.network("noipam")["subnets"], serde_json::json!([]));

    // A dual-stack macvlan network: the container is on the parent's LAN
    // at Podman's addresses of both families, and reaches a host there
    // over IPv6.
    sb.add_netns("lan");
    sb.sh_ok(
        "ip link add up0 type veth peer name lanif netns lan && ip link set up0 up && \
         ip -n lan link set lanif up && ip -n lan addr add 192.168.50.1/24 dev lanif && \
         ip -n lan addr add fd50::1/64 dev lanif nodad",
    );
    p.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=up0",
        "--subnet",
        "192.168.50.0/24",
        "--gateway",
        "192.168.50.1",
        "--subnet",
        "fd50::/64",
        "--gateway",
        "fd50::1",
        "lan",
    ]);
    p.run_server(
        "mv",
        &["--network", "lan", "--ip6", "fd50::77"],
        "tcp-serve",
        "[::]:80",
    );
    assert_eq!(ip6_of(&p, "mv", "lan"), "fd50::77");
    assert!(
        global_addresses(&p, "mv").contains(&"fd50::77/64".to_string()),
        "{:?}",
        global_addresses(&p, "mv")
    );
    assert_eq!(sb.assert_tcp(Some("lan"), "[fd50::77]:80"), "fd50::1");
    let _lan_server = sb.tcp_server(Some("lan"), "[fd50::1]:8080");
    let out = p.probe_in(
        "mv",
        &["tcp-connect", "[fd50::1]:8080", "--timeout-ms", "2000"],
    );
    assert_ok_ctx(&out, "macvlan container -> LAN over IPv6");
    assert_eq!(seen_source(&stdout(&out)), "fd50::77");
    assert_eq!(sb.network("lan")["driver"], "macvlan");

    // Teardown takes every endpoint and, with the last, the networks.
    p.ok(&["rm", "-f", "-t", "0", "a1", "srv", "nb", "bare", "mv"]);
    assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
    assert!(sb.networks().is_empty(), "{:?}", sb.networks());
}

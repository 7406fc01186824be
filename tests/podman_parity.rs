//! Podman 4.3 with berth as its netavark where netavark's own behaviour
//! is the contract: a default route per network with its metric, network
//! names as long as Podman takes, netavark's error for an IPAM driver it
//! does not know, and a host whose /proc/sys is read-only (Podman inside
//! a container). Each scenario runs first with the stock netavark, which
//! proves the scenario (a failure there is the test's, not berth's), then
//! with berth. Skipped, loudly, when Podman is not installed.

mod util;

use util::podman::{podman_or_skip, Podman, PodmanClient, IMAGE, STOCK_NETAVARK};
use util::*;

/// Where the harness keeps Podman's network definitions.
const NETWORKS: &str = "/run/podman-test/networks";

/// Both netavarks, the stock one first; each scenario runs with each
/// that can run here (a missing one prints a SKIP line).
fn each_netavark(test: &str, scenario: impl Fn(&Podman, &str)) {
    for netavark in [STOCK_NETAVARK, BERTH] {
        if let Some(p) = podman_or_skip(test, netavark) {
            eprintln!("{test}: with {netavark}");
            scenario(&p, netavark);
        }
    }
}

/// Edits Podman's definition of `network` with a Python expression on `n`
/// (Podman 4.3's `network create` takes no `-o metric`, but it passes
/// what the definition holds on to netavark, as newer Podmans write it).
fn edit_network(p: &Podman, network: &str, python: &str) {
    p.sb.sh_ok(&format!(
        "python3 -c 'import json; f=\"{NETWORKS}/{network}.json\"; n=json.load(open(f)); {python}; json.dump(n, open(f, \"w\"))'"
    ));
}

/// The container's default routes as (gateway, device, metric), sorted,
/// read by busybox's `ip route` inside it.
fn default_routes(p: &Podman, container: &str) -> Vec<(String, String, u32)> {
    let text = p.ok(&["exec", container, "ip", "route"]);
    let mut out: Vec<(String, String, u32)> = text
        .lines()
        .filter(|l| l.starts_with("default "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let after = |k: &str| {
                w.iter()
                    .position(|x| *x == k)
                    .and_then(|i| w.get(i + 1))
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            };
            (
                after("via"),
                after("dev"),
                after("metric").parse().unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    out
}

fn route(gw: &str, dev: &str, metric: u32) -> (String, String, u32) {
    (gw.to_string(), dev.to_string(), metric)
}

/// Two networks, one with `metric` 200 in its options: two default
/// routes, with metrics 100 (netavark's default) and 200. Disconnecting
/// the first leaves the second, and the container still reaches the
/// outside through it; connecting again brings the route back.
#[test]
fn two_networks_give_two_default_routes_with_their_metrics() {
    each_netavark(
        "two_networks_give_two_default_routes_with_their_metrics",
        |p, netavark| {
            let sb = &p.sb;
            let inet = sb.internet();
            let _public = sb.tcp_server(Some(&inet.netns), &format!("{}:80", inet.public_ip));
            let public = format!("{}:80", inet.public_ip);
            p.ok(&["network", "create", "--subnet", "10.77.0.0/24", "web"]);
            p.ok(&["network", "create", "--subnet", "10.78.0.0/24", "far"]);
            edit_network(p, "far", "n[\"options\"]={\"metric\": \"200\"}");
            p.run_server("two", &["--network", "web,far"], "tcp-serve", "0.0.0.0:7");
            // Which network Podman names eth0 is its own choice; the
            // routes are one per network, each with its metric.
            let routes = default_routes(p, "two");
            let far_dev = if routes.iter().any(|r| r.0 == "10.78.0.1" && r.1 == "eth0") {
                ("eth0", "eth1")
            } else {
                ("eth1", "eth0")
            };
            assert_eq!(
                routes,
                {
                    let mut want = vec![
                        route("10.77.0.1", far_dev.1, 100),
                        route("10.78.0.1", far_dev.0, 200),
                    ];
                    want.sort();
                    want
                },
                "{netavark}"
            );
            assert_ok_ctx(&p.probe_in("two", &["tcp-connect", &public]), netavark);

            p.ok(&["network", "disconnect", "web", "two"]);
            assert_eq!(
                default_routes(p, "two"),
                [route("10.78.0.1", far_dev.0, 200)],
                "{netavark}: far's route stays"
            );
            assert_ok_ctx(
                &p.probe_in("two", &["tcp-connect", &public]),
                &format!("{netavark}: out through far"),
            );
            p.ok(&["network", "connect", "web", "two"]);
            let routes = default_routes(p, "two");
            let metrics: Vec<(String, u32)> =
                routes.iter().map(|(g, _, m)| (g.clone(), *m)).collect();
            assert_eq!(
                metrics,
                [
                    ("10.77.0.1".to_string(), 100),
                    ("10.78.0.1".to_string(), 200)
                ],
                "{netavark}: {routes:?}"
            );
            p.ok(&["rm", "-f", "-t", "0", "two"]);
        },
    );
}

/// A network name of 250 bytes, the longest Podman takes: containers
/// start on it, reach the outside and publish ports.
#[test]
fn a_network_name_as_long_as_podman_takes_works() {
    each_netavark(
        "a_network_name_as_long_as_podman_takes_works",
        |p, netavark| {
            let sb = &p.sb;
            let inet = sb.internet();
            let _public = sb.tcp_server(Some(&inet.netns), &format!("{}:80", inet.public_ip));
            let name = "l".repeat(250);
            p.ok(&["network", "create", "--subnet", "10.79.0.0/24", &name]);
            p.run_server(
                "lc",
                &["--network", &name, "-p", "8080:80"],
                "tcp-serve",
                "0.0.0.0:80",
            );
            assert_eq!(p.ip_of("lc", &name), "10.79.0.2", "{netavark}");
            assert_ok_ctx(
                &p.probe_in("lc", &["tcp-connect", &format!("{}:80", inet.public_ip)]),
                netavark,
            );
            sb.assert_tcp(None, &format!("{}:8080", inet.host_ip));
            p.ok(&["rm", "-f", "-t", "0", "lc"]);
        },
    );
}

/// An IPAM driver netavark does not know (Podman's own check refuses it at
/// `network create`; a definition written by another tool can hold one):
/// Podman shows netavark's error, and nothing is left behind.
#[test]
fn an_unknown_ipam_driver_fails_with_netavarks_error() {
    each_netavark(
        "an_unknown_ipam_driver_fails_with_netavarks_error",
        |p, netavark| {
            p.ok(&["network", "create", "--subnet", "10.80.0.0/24", "odd"]);
            edit_network(p, "odd", "n[\"ipam_options\"]={\"driver\": \"bogus\"}");
            let out = p.podman(&["run", "--rm", "--network", "odd", IMAGE, "true"]);
            assert_eq!(out.status.code(), Some(126), "{netavark}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("Error: netavark: IO error: unsupported ipam driver bogus"),
                "{netavark}: {}",
                stderr(&out)
            );
            if netavark == BERTH {
                assert!(p.sb.networks().is_empty(), "{:?}", p.sb.networks());
            }
        },
    );
}

/// Podman inside a container: /proc/sys is read-only, and ip_forward was
/// set before. Setup writes nothing it need not, so containers start and
/// reach the outside. With a published port berth goes further than the
/// stock netavark 1.4: that one writes the bridge's `route_localnet`
/// through /proc/sys and fails; berth sets it over rtnetlink, so the port
/// answers.
#[test]
fn a_read_only_proc_sys_is_no_obstacle() {
    each_netavark("a_read_only_proc_sys_is_no_obstacle", |p, netavark| {
        let sb = &p.sb;
        let inet = sb.internet();
        let _public = sb.tcp_server(Some(&inet.netns), &format!("{}:80", inet.public_ip));
        let public = format!("{}:80", inet.public_ip);
        p.ok(&["network", "create", "--subnet", "10.81.0.0/24", "web"]);
        sb.sh_ok(
            "sysctl -qw net.ipv4.ip_forward=1 && mount --bind /proc/sys /proc/sys && \
             mount -o remount,bind,ro /proc/sys",
        );
        let write = sb.sh("echo 1 > /proc/sys/net/ipv4/ip_forward");
        assert!(!write.status.success(), "/proc/sys is read-only");
        p.run_server("ro", &["--network", "web"], "tcp-serve", "0.0.0.0:80");
        assert_ok_ctx(&p.probe_in("ro", &["tcp-connect", &public]), netavark);
        if netavark == BERTH {
            p.run_server(
                "ports",
                &["--network", "web", "-p", "8080:80"],
                "tcp-serve",
                "0.0.0.0:80",
            );
            assert_ok_ctx(&p.probe_in("ports", &["tcp-connect", &public]), netavark);
            sb.assert_tcp(None, &format!("{}:8080", inet.host_ip));
            sb.assert_tcp(None, "127.0.0.1:8080");
            p.ok(&["rm", "-f", "-t", "0", "ports"]);
        }
        p.ok(&["rm", "-f", "-t", "0", "ro"]);
    });
}

//! Podman 4.3 with berth as its netavark on macvlan and ipvlan networks
//! (`podman network create -d macvlan -o parent=IF`): containers on the
//! parent's LAN, with traffic both ways to a namespace on the parent's
//! side. Skipped, loudly, when Podman is not installed.

mod util;

use util::podman::{podman_or_skip, PodmanClient};
use util::*;

/// The LAN namespace `lan` (192.168.50.1/24) behind the parent `up0`.
fn lan(sb: &Sandbox) {
    sb.add_netns("lan");
    sb.sh_ok(
        "ip link add up0 type veth peer name lanif netns lan && ip link set up0 up && \
         ip -n lan link set lanif up && ip -n lan addr add 192.168.50.1/24 dev lanif",
    );
}

fn podman_child_network(p: &util::podman::Podman, test: &str, driver: &str, mode: &str) {
    let sb = &p.sb;
    if driver == "ipvlan" {
        let out =
            sb.sh("ip link add ipvltest link up0 type ipvlan mode l2 && ip link del ipvltest");
        if !out.status.success() {
            crate::skip_line!(
                "SKIP {test}: this kernel cannot make ipvlan links ({})",
                stderr(&out).trim()
            );
            return;
        }
    }
    p.ok(&[
        "network",
        "create",
        "-d",
        driver,
        "-o",
        "parent=up0",
        "-o",
        &format!("mode={mode}"),
        "--subnet",
        "192.168.50.0/24",
        "--gateway",
        "192.168.50.1",
        "lan",
    ]);
    p.run_server("c1", &["--network", "lan"], "tcp-serve", "0.0.0.0:80");
    let ip = p.ip_of("c1", "lan");
    assert!(in_subnet(&ip, "192.168.50.0/24"), "{ip}");
    // The LAN reaches the container at its own address, and back.
    assert_eq!(
        sb.assert_tcp(Some("lan"), &format!("{ip}:80")),
        "192.168.50.1"
    );
    let _server = sb.tcp_server(Some("lan"), "192.168.50.1:8080");
    let out = p.probe_in(
        "c1",
        &["tcp-connect", "192.168.50.1:8080", "--timeout-ms", "2000"],
    );
    assert_ok_ctx(&out, "container -> LAN");
    assert_eq!(seen_source(&stdout(&out)), ip);
    let ps = sb.endpoints();
    assert_eq!(ps.len(), 1, "{ps:?}");
    let n = sb.network("lan");
    assert_eq!(n["driver"], driver, "{n}");
    assert_eq!(n["mode"], mode, "{n}");
    p.ok(&["rm", "-f", "-t", "0", "c1"]);
    assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
    assert!(
        sb.networks().is_empty(),
        "the last container takes the network"
    );
    let host = sb.link_names(None);
    assert!(host.iter().all(|l| !l.starts_with("vc")), "{host:?}");
    p.ok(&["network", "rm", "lan"]);
}

/// One Podman sandbox for both drivers (two at once in one test binary
/// trip over each other in runc).
#[test]
fn podman_runs_containers_on_macvlan_and_ipvlan_networks() {
    let test = "podman_runs_containers_on_macvlan_and_ipvlan_networks";
    let Some(p) = podman_or_skip(test, BERTH) else {
        return;
    };
    lan(&p.sb);
    podman_child_network(&p, test, "macvlan", "bridge");
    podman_child_network(&p, test, "ipvlan", "l2");
}

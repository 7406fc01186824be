//! Podman itself, driven as a user would, with berth installed as its
//! `netavark` (and once with the stock netavark, which validates the
//! harness: a failure there is the harness's, not berth's). Skipped, loudly,
//! when Podman is not installed. See tests/util/podman.rs.

mod util;

use util::podman::{podman_or_skip, STOCK_NETAVARK};
use util::*;

/// The harness works with the netavark Podman ships: a network, a
/// container with a published port, and traffic to it from the host.
#[test]
fn harness_runs_podman_with_stock_netavark() {
    let Some(p) = podman_or_skip("harness_runs_podman_with_stock_netavark", STOCK_NETAVARK) else {
        return;
    };
    p.ok(&["network", "create", "--subnet", "10.77.0.0/24", "n1"]);
    p.run_server(
        "c1",
        &["--network", "n1", "-p", "8080:80"],
        "tcp-serve",
        "0.0.0.0:80",
    );
    // From 127.0.0.1 the connection is masqueraded to the gateway.
    let seen = p.sb.assert_tcp(None, "127.0.0.1:8080");
    assert_eq!(seen, "10.77.0.1", "source the container saw");
    let ip = p.ip_of("c1", "n1");
    assert!(in_subnet(&ip, "10.77.0.0/24"), "{ip}");
    p.ok(&["rm", "-f", "-t", "0", "c1"]);
}

//! Rootless Podman 4.3 with berth as its netavark, as a user the test
//! makes: bridge networks, published ports, names, two networks, and
//! `podman rm -f` leaving nothing. The harness is checked first with the
//! stock netavark, so that a failure there is the harness's.
//!
//! The client address of a published port: rootless Podman 4.3 publishes
//! ports with its own `rootlessport` process, whatever the netavark. It
//! accepts the connection on the host and dials the container again from
//! inside the container's own network namespace (RootlessKit's builtin
//! port driver, its child started in the container's namespace), so the
//! container sees its own address as the client's, with the stock netavark
//! and with berth alike. netavark runs inside Podman's rootless network
//! namespace and has no hold on the host's ports, so no netavark can keep
//! the address there. The tests pin that down, so that a change of it
//! shows.

mod util;

use util::podman::{PodmanClient, STOCK_NETAVARK};
use util::podman_rootless::{missing, RootlessPodman};
use util::{stdout, Sandbox, BERTH};

/// The harness, or None after a SKIP line saying why.
fn podman_or_skip(test: &str, netavark: &str, name: &str, uid: u32) -> Option<RootlessPodman> {
    if let Some(why) = missing() {
        skip_line!("SKIP {test}: {why}; the rootless Podman scenario did not run");
        return None;
    }
    if !std::path::Path::new(netavark).exists() {
        skip_line!("SKIP {test}: {netavark} is not installed");
        return None;
    }
    Some(RootlessPodman::new(netavark, name, uid))
}

fn eventually(secs: u64, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if pred() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A published port from another namespace: reached, and what the
/// container saw as the client's address.
fn published_source(p: &RootlessPodman, inet: &util::Internet, port: u16) -> String {
    let target = format!("{}:{port}", inet.host_ip);
    assert!(
        eventually(10, || p.sb.tcp(Some(&inet.netns), &target).status.success()),
        "{target} never answered"
    );
    p.sb.assert_tcp(Some(&inet.netns), &target)
}

/// The harness itself, with the stock netavark: a rootless container on a
/// bridge network answers on its published port, and the client address
/// is the container's own (rootlessport).
#[test]
fn rootless_podman_harness_with_the_stock_netavark() {
    let Some(p) = podman_or_skip(
        "rootless_podman_harness_with_the_stock_netavark",
        STOCK_NETAVARK,
        "kim",
        61100,
    ) else {
        return;
    };
    let inet = p.sb.internet();
    p.ok(&["network", "create", "n1"]);
    p.run_server(
        "s1",
        &["--network", "n1", "-p", "8080:80"],
        "tcp-serve",
        "0.0.0.0:80",
    );
    let ip = p.ip_of("s1", "n1");
    assert_eq!(
        published_source(&p, &inet, 8080),
        ip,
        "rootlessport dials from the container"
    );
}

/// berth as rootless Podman's netavark: two networks, names, isolation, a
/// published port, and `podman rm -f` leaving nothing: no process of
/// berth's, no endpoint or network in berth's state, nothing in the host's
/// namespace.
#[test]
fn rootless_podman_on_berth() {
    let Some(p) = podman_or_skip("rootless_podman_on_berth", BERTH, "lee", 61110) else {
        return;
    };
    let inet = p.sb.internet();
    let before = p.sb.snapshot();
    p.ok(&["network", "create", "n1"]);
    p.ok(&["network", "create", "n2"]);
    p.run_server(
        "s1",
        &["--network", "n1", "-p", "8080:80"],
        "tcp-serve",
        "0.0.0.0:80",
    );
    p.run_server(
        "c2",
        &["--network", "n1", "--network", "n2"],
        "tcp-serve",
        "0.0.0.0:81",
    );
    p.run_server("o3", &["--network", "n2"], "tcp-serve", "0.0.0.0:82");
    let s1 = p.ip_of("s1", "n1");
    let c2_n2 = p.ip_of("c2", "n2");

    // The published port, through rootlessport.
    assert_eq!(
        published_source(&p, &inet, 8080),
        s1,
        "rootlessport dials from the container"
    );

    // Names: berth's DNS server answers for the containers of a network.
    let looked = p.podman(&["exec", "c2", "nslookup", "s1"]);
    assert!(
        stdout(&looked).contains(&s1),
        "c2 resolving s1: {} {}",
        stdout(&looked),
        util::stderr(&looked)
    );
    let looked = p.podman(&["exec", "o3", "nslookup", "c2"]);
    assert!(
        stdout(&looked).contains(&c2_n2),
        "o3 resolving c2: {}",
        stdout(&looked)
    );

    // Each network reaches its own, not the other's.
    let ok = p.probe_in("c2", &["tcp-connect", &format!("{s1}:80")]);
    util::assert_ok_ctx(&ok, "c2 -> s1 on n1");
    let ok = p.probe_in(
        "c2",
        &["tcp-connect", &format!("{}:82", p.ip_of("o3", "n2"))],
    );
    util::assert_ok_ctx(&ok, "c2 -> o3 on n2");
    let across = p.probe_in(
        "o3",
        &["tcp-connect", &format!("{s1}:80"), "--timeout-ms", "1000"],
    );
    assert!(!across.status.success(), "o3 on n2 reached s1 on n1");

    // berth keeps its state in the user's netavark directory (read here
    // as the user: it is the user's).
    let dir = p.berth_state_dir();
    let state = |args: &[&str]| {
        let mut all = vec!["--state-dir", dir.as_str()];
        all.extend_from_slice(args);
        p.user.run(&p.sb, BERTH, &all)
    };
    let ps = state(&["ps", "--json"]);
    util::assert_ok_ctx(&ps, "berth ps on the user's state");
    assert_eq!(
        util::as_array(util::parse_json(&ps, "ps")).len(),
        4,
        "four endpoints"
    );

    p.ok(&["rm", "-f", "-t", "0", "s1", "c2", "o3"]);
    let ps = state(&["ps", "--json"]);
    assert_eq!(
        util::as_array(util::parse_json(&ps, "ps")).len(),
        0,
        "endpoints left"
    );
    let ls = state(&["network", "ls", "--json"]);
    assert_eq!(
        util::as_array(util::parse_json(&ls, "ls")).len(),
        0,
        "networks left"
    );
    assert!(
        eventually(10, || !p.user.processes().iter().any(|pid| {
            Sandbox::cmdline(*pid).is_some_and(|c| c.contains(BERTH) || c.contains("slirp4netns"))
        })),
        "berth or slirp4netns still running: {:?}",
        p.user
            .processes()
            .iter()
            .map(|pid| Sandbox::cmdline(*pid))
            .collect::<Vec<_>>()
    );
    let target = format!("{}:8080", inet.host_ip);
    let closed = p.sb.probe(
        Some(&inet.netns),
        &["tcp-connect", &target, "--timeout-ms", "500"],
    );
    assert!(
        !closed.status.success(),
        "the published port outlived the container"
    );
    p.sb.snapshot()
        .assert_same(&before, "the host after podman rm -f");
}

//! End-to-end tests of `berth run` and `berth exec`: exit codes, signal
//! forwarding, cleanup, `--net none|host|NET`, each in its own sandbox.

mod util;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use util::*;

#[test]
fn run_propagates_the_exit_code() {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    let out = sb.berth(&["run", "--net", "alpha", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    sb.berth_ok(&["run", "--net", "alpha", "--", "true"]);
    assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
}

#[test]
fn run_connects_cmd_with_stdio_passed_through_and_cleans_up() {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    let links_before = sb.link_names(None);
    let netns_before = sb.netns_list();
    let out = sb.berth_out_ok(&[
        "run",
        "--net",
        "alpha",
        "--ip",
        "10.90.0.50",
        "--",
        "sh",
        "-c",
        "ip -4 -o addr show dev eth0; ip -4 route show default; echo to-stderr >&2",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("10.90.0.50/24"),
        "address inside run: {text:?}"
    );
    assert!(
        text.contains("default via 10.90.0.1"),
        "default route: {text:?}"
    );
    assert!(stderr(&out).contains("to-stderr"), "{out:?}");
    assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
    let deadline = Instant::now() + Duration::from_secs(5);
    while sb.link_names(None) != links_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sb.link_names(None), links_before, "veth left on the host");
    assert_eq!(sb.netns_list(), netns_before, "namespace left");
}

#[test]
fn run_without_net_creates_the_default_network_berth() {
    let sb = Sandbox::new();
    let out = sb.berth_out_ok(&["run", "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    let net = sb.network("berth");
    let subnet = field(&net, "subnet");
    let text = stdout(&out);
    let addr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no inet address in {text:?}"));
    let ip = addr.split('/').next().unwrap();
    assert!(in_subnet(ip, &subnet), "{ip} not in {subnet}");
    // Second run reuses it.
    sb.berth_ok(&["run", "--", "true"]);
    assert_eq!(sb.networks().len(), 1, "{:?}", sb.networks());
}

/// Starts `berth run --net alpha --name sleeper -- sleep`, sends `sig`, and
/// checks berth exits and leaves no namespace, endpoint, veth or process.
fn signal_cleans_up(sig: Signal) {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    let links_before = sb.link_names(None);
    let netns_before = sb.netns_list();
    let mut run = sb.spawn_berth(
        &[
            "run",
            "--net",
            "alpha",
            "--name",
            "sleeper",
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 100",
        ],
        true,
    );
    let ps = sb.endpoints();
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0]["name"], "sleeper", "{ps:?}");
    let host_if = field(&ps[0], "host_ifname");
    assert!(
        sb.link(None, &host_if).is_some(),
        "veth missing while running"
    );
    let ip = field(&ps[0], "ip");
    sb.assert_ping(None, &ip);
    let sleepers = sb.find_processes("sleep 100");
    assert_eq!(
        sleepers.len(),
        1,
        "the command is not running: {:?}",
        sb.process_cmdlines()
    );

    run.signal(sig);
    let status = run.wait_timeout(Duration::from_secs(10));
    assert!(
        status.is_some(),
        "berth run still running 10 s after {sig:?}; stderr: {}",
        run.stderr()
    );
    assert!(
        sb.endpoints().is_empty(),
        "endpoint left: {:?}",
        sb.endpoints()
    );
    assert!(
        sb.wait_link_gone(None, &host_if, Duration::from_secs(5)),
        "veth {host_if} still on the host 5 s after berth run exited"
    );
    assert_eq!(sb.link_names(None), links_before);
    assert_eq!(sb.netns_list(), netns_before, "namespace left");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Sandbox::cmdline(sleepers[0]).as_deref() == Some("sleep 100") {
        assert!(
            Instant::now() < deadline,
            "the command (pid {}) survived berth run",
            sleepers[0]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_to_run_cleans_up() {
    signal_cleans_up(Signal::SIGTERM);
}

#[test]
fn sigint_to_run_cleans_up() {
    signal_cleans_up(Signal::SIGINT);
}

#[test]
fn run_net_none_has_only_lo_up() {
    let sb = Sandbox::new();
    let out = sb.berth_out_ok(&["run", "--net", "none", "--", "ip", "-j", "link"]);
    let links = as_array(parse_json(&out, "ip -j link in --net none"));
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["ifname"], "lo", "{links:?}");
    assert!(
        links[0]["flags"].to_string().contains("\"UP\""),
        "{links:?}"
    );
    assert!(sb.networks().is_empty(), "--net none created a network");
}

#[test]
fn run_net_host_sees_the_hosts_links() {
    let sb = Sandbox::new();
    sb.add_veth("hostmark0", "hostmark1");
    let out = sb.berth_out_ok(&["run", "--net", "host", "--", "ip", "-j", "link"]);
    let links = as_array(parse_json(&out, "ip -j link in --net host"));
    assert!(
        links.iter().any(|l| l["ifname"] == "hostmark0"),
        "host link not visible: {links:?}"
    );
    assert!(sb.endpoints().is_empty());
}

#[test]
fn run_containers_reach_each_other() {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    let probe = PROBE;
    let _srv = sb.spawn_berth(
        &[
            "run",
            "--net",
            "alpha",
            "--ip",
            "10.90.0.10",
            "--",
            probe,
            "tcp-serve",
            "0.0.0.0:7000",
        ],
        true,
    );
    let out = sb.berth_out_ok(&[
        "run",
        "--net",
        "alpha",
        "--",
        probe,
        "tcp-connect",
        "10.90.0.10:7000",
    ]);
    let seen = seen_source(&stdout(&out));
    assert!(
        in_subnet(&seen, "10.90.0.0/24") && seen != "10.90.0.10",
        "{seen}"
    );
}

#[test]
fn exec_runs_in_the_targets_namespace() {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    sb.add_netns("a");
    let ep = sb.connect("alpha", "a", &[]);
    let out = sb.berth_out_ok(&[
        "exec", "a", "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0",
    ]);
    assert!(
        stdout(&out).contains(&format!("{}/24", field(&ep, "ip"))),
        "{out:?}"
    );
    let out = sb.berth(&["exec", "a", "--", "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
}

#[test]
fn run_passes_stdin_through_and_leaves_no_namespace() {
    let sb = Sandbox::new();
    let netns_before = sb.netns_list();
    let out = sb.sh(&format!(
        "echo hello-stdin | BERTH_STATE_DIR={STATE_DIR} {BERTH} run --net none -- cat"
    ));
    assert_ok_ctx(&out, "echo hello-stdin | berth run --net none -- cat");
    assert_eq!(stdout(&out), "hello-stdin\n");
    assert_eq!(sb.netns_list(), netns_before, "namespace left");
}

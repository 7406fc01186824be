//! What heals without a berth command: a killed DNS server comes back, a
//! killed supervisor comes back, and what a killed `run` or a deleted
//! namespace leaves is reclaimed within seconds, with nothing run in
//! between but the read-only `ps`.

mod util;

use std::time::{Duration, Instant};

use util::dns::*;
use util::*;

const GW: &str = "10.90.0.1";

/// Network `web` with c1 and c2.
fn web(sb: &Sandbox) {
    sb.create_network("web", "10.90.0.0/24");
    for ns in ["c1", "c2"] {
        sb.add_netns(ns);
        sb.connect("web", ns, &[]);
    }
}

fn supervisor_pid(sb: &Sandbox) -> Option<u32> {
    let out = sb.cmd("cat", &[&format!("{STATE_DIR}/supervisor.pid")]);
    let pid: u32 = stdout(&out).trim().parse().ok()?;
    let alive = Sandbox::cmdline(pid).is_some_and(|c| c.ends_with(" supervise"));
    (alive && sb.processes().contains(&pid)).then_some(pid)
}

/// Waits up to `limit` for `what` to hold; returns how long it took.
fn within(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed()
}

fn endpoint_names(sb: &Sandbox) -> Vec<String> {
    sb.endpoints()
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn kill9(sb: &Sandbox, pid: u32) {
    sb.sh_ok(&format!("kill -KILL {pid}"));
}

#[test]
fn a_killed_dns_server_answers_again_within_two_seconds() {
    if !have_dig("a_killed_dns_server_answers_again_within_two_seconds") {
        return;
    }
    let sb = Sandbox::new();
    web(&sb);
    let resolves = || {
        let out = dig(&sb, "c2", GW, &["+short", "+time=1", "c1"]);
        stdout(&out).trim() == "10.90.0.2"
    };
    assert!(resolves());
    for round in 0..3 {
        let pid = server_pid(&sb).expect("the server runs");
        let t = Instant::now();
        kill9(&sb, pid);
        // A new server first (a query to a dead one may wait out dig's
        // one-second timeout), then its answer, all within 2 s of the kill.
        within(Duration::from_secs(2), "a new server", || {
            server_pid(&sb).is_some_and(|p| p != pid)
        });
        let started = t.elapsed();
        within(
            Duration::from_secs(2).saturating_sub(t.elapsed()),
            "a name resolves again",
            resolves,
        );
        eprintln!(
            "round {round}: a new server after {started:?}, answering after {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn a_killed_supervisor_is_started_again_and_still_restarts_the_server() {
    if !have_dig("a_killed_supervisor_is_started_again_and_still_restarts_the_server") {
        return;
    }
    let sb = Sandbox::new();
    web(&sb);
    let first = {
        within(Duration::from_secs(3), "the supervisor runs", || {
            supervisor_pid(&sb).is_some()
        });
        supervisor_pid(&sb).unwrap()
    };
    // Time for it to find the server and hold its connection.
    std::thread::sleep(Duration::from_millis(300));
    kill9(&sb, first);
    let took = within(Duration::from_secs(3), "a new supervisor", || {
        supervisor_pid(&sb).is_some_and(|p| p != first)
    });
    eprintln!("the DNS server started a new supervisor after {took:?}");
    // And the new one keeps the server: it has connected to it by now.
    std::thread::sleep(Duration::from_millis(300));
    let server = server_pid(&sb).expect("the server runs");
    kill9(&sb, server);
    within(Duration::from_secs(2), "a name resolves again", || {
        let out = dig(&sb, "c2", GW, &["+short", "+time=1", "c1"]);
        stdout(&out).trim() == "10.90.0.2"
    });
    // Exactly one of each: the supervisor berth's (started by the server,
    // `berth-dns`, which runs berth for it), the server `berth-dns`.
    let count = |program: &str, tail: &str| {
        sb.process_cmdlines()
            .iter()
            .filter(|c| c.starts_with(&format!("{program} ")) && c.ends_with(tail))
            .count()
    };
    assert_eq!(count(BERTH, " supervise"), 1, "{:?}", sb.process_cmdlines());
    assert_eq!(
        count(BERTH_DNS, " dns-server"),
        1,
        "{:?}",
        sb.process_cmdlines()
    );
}

/// A `run` killed with SIGKILL, its namespace and endpoint reclaimed.
fn assert_reclaimed(sb: &Sandbox, name: &str, veth: &str, limit: Duration) -> Duration {
    let took = within(limit, "ps no longer shows it", || {
        !endpoint_names(sb).contains(&name.to_string())
    });
    assert!(
        !sb.netns_list().contains(&name.to_string()),
        "namespace {name} left"
    );
    assert!(
        sb.wait_link_gone(None, veth, Duration::from_secs(5)),
        "veth {veth} left"
    );
    took
}

#[test]
fn a_run_killed_with_sigkill_is_reclaimed_without_a_berth_command() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    // Detached.
    let out = sb.berth_ok(&[
        "run", "-d", "--net", "web", "--name", "r1", "-p", "9000:80", "--", "sleep", "300",
    ]);
    assert_eq!(out.trim(), "r1");
    let ps = sb.endpoints();
    assert_eq!(ps[0]["status"], "up", "{ps:?}");
    let veth = field(&ps[0], "host_ifname");
    let owner = sb.find_processes(&format!("{BERTH} --state-dir {STATE_DIR} run-detached"));
    assert_eq!(owner.len(), 1, "{:?}", sb.process_cmdlines());
    kill9(&sb, owner[0]);
    let took = assert_reclaimed(&sb, "r1", &veth, Duration::from_secs(5));
    eprintln!("run -d killed: reclaimed after {took:?}");
    // Its command died with it, and its port is free again.
    within(Duration::from_secs(5), "the command ends", || {
        sb.find_processes("sleep 300").is_empty()
    });
    // Attached, in the background.
    let mut run = sb.spawn_berth(
        &[
            "run",
            "--net",
            "web",
            "--name",
            "r2",
            "-p",
            "9000:80",
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 301",
        ],
        true,
    );
    let ps = sb.endpoints();
    let veth = field(&ps[0], "host_ifname");
    run.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(run.wait_timeout(Duration::from_secs(5)).is_some());
    let took = assert_reclaimed(&sb, "r2", &veth, Duration::from_secs(5));
    eprintln!("run killed: reclaimed after {took:?}");
    sb.add_netns("c1");
    sb.connect("web", "c1", &["-p", "9000:80"]);
}

#[test]
fn a_namespace_deleted_by_hand_takes_its_endpoint_and_name_with_it() {
    if !have_dig("a_namespace_deleted_by_hand_takes_its_endpoint_and_name_with_it") {
        return;
    }
    let sb = Sandbox::new();
    web(&sb);
    sb.add_netns("c3");
    let e = sb.connect("web", "c3", &["-p", "8080:80", "--alias", "third"]);
    let veth = field(&e, "host_ifname");
    assert_eq!(short(&sb, "c1", GW, &["third"]), vec!["10.90.0.4"]);
    sb.sh_ok("ip netns del c3");
    let took = within(Duration::from_secs(5), "ps no longer shows c3", || {
        !endpoint_names(&sb).contains(&"c3".to_string())
    });
    eprintln!("deleted namespace: endpoint reclaimed after {took:?}");
    assert!(sb.link(None, &veth).is_none());
    assert_eq!(status(&sb, "c1", GW, &["third"]), "NXDOMAIN");
    // Its published port is free again; the others are untouched.
    assert_eq!(endpoint_names(&sb), ["c1", "c2"]);
    sb.add_netns("c4");
    sb.connect("web", "c4", &["-p", "8080:80"]);
}

#[test]
fn the_supervisor_comes_when_something_needs_watching_and_goes_after() {
    let sb = Sandbox::new();
    // A network without DNS and without endpoints: nothing can die.
    sb.berth_ok(&[
        "network",
        "create",
        "quiet",
        "--no-dns",
        "--subnet",
        "10.94.0.0/24",
    ]);
    assert_eq!(supervisor_pid(&sb), None);
    sb.add_netns("q1");
    sb.connect("quiet", "q1", &[]);
    let pid = supervisor_pid(&sb).expect("an endpoint is watched");
    sb.berth_ok(&["disconnect", "quiet", "q1"]);
    within(Duration::from_secs(3), "the supervisor exits", || {
        !sb.processes().contains(&pid)
    });
    // A DNS network alone keeps it (its server may die); reset ends both.
    sb.create_network("web", "10.90.0.0/24");
    let pid = supervisor_pid(&sb).expect("the DNS server is watched");
    let server = server_pid(&sb).expect("the server runs");
    sb.berth_ok(&["reset"]);
    within(Duration::from_secs(3), "both exit", || {
        let procs = sb.processes();
        !procs.contains(&pid) && !procs.contains(&server)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(supervisor_pid(&sb), None, "{:?}", sb.process_cmdlines());
    assert_eq!(server_pid(&sb), None);
}

#[test]
fn a_stop_signal_is_not_a_death_and_the_next_command_starts_again() {
    let sb = Sandbox::new();
    web(&sb);
    let server = server_pid(&sb).expect("the server runs");
    let supervisor = supervisor_pid(&sb).expect("the supervisor runs");
    // The server says `bye` to the supervisor, which leaves it stopped.
    sb.sh_ok(&format!("kill -TERM {server}"));
    within(Duration::from_secs(3), "the server exits", || {
        !sb.processes().contains(&server)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server_pid(&sb), None, "{:?}", sb.process_cmdlines());
    // The supervisor says `bye` to the server it is connected to again,
    // which leaves it stopped.
    sb.add_netns("c3");
    sb.connect("web", "c3", &[]);
    let server = server_pid(&sb).expect("the command started the server");
    std::thread::sleep(Duration::from_millis(300));
    sb.sh_ok(&format!("kill -TERM {supervisor}"));
    within(Duration::from_secs(3), "the supervisor exits", || {
        !sb.processes().contains(&supervisor)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(supervisor_pid(&sb), None, "{:?}", sb.process_cmdlines());
    assert_eq!(server_pid(&sb), Some(server));
    sb.berth_ok(&["disconnect", "web", "c3"]);
    assert!(supervisor_pid(&sb).is_some_and(|p| p != supervisor));
}

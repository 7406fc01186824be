//! The deferred veth delete end to end: a disconnect returns with the veth
//! off the bridge and its names free, traffic to the old address stops at
//! once, the same name connects again at once, and the pending link is
//! gone within seconds (deleted by the supervisor); a supervisor killed
//! with links pending leaves them to the next one, `gc` and `up`; the
//! same holds for CNI DEL. The oracle is `ip -j`.

mod util;

use std::time::{Duration, Instant};

use util::*;

fn supervisor_pid(sb: &Sandbox) -> Option<u32> {
    let out = sb.cmd("cat", &[&format!("{STATE_DIR}/supervisor.pid")]);
    let pid: u32 = stdout(&out).trim().parse().ok()?;
    let alive = Sandbox::cmdline(pid).is_some_and(|c| c.ends_with(" supervise"));
    (alive && sb.processes().contains(&pid)).then_some(pid)
}

/// The `ip -j link` object of the host link `name`, with `-d` details.
fn link_details(sb: &Sandbox, name: &str) -> Option<serde_json::Value> {
    as_array(sb.ip_json_in(None, &["-d", "link"]))
        .into_iter()
        .find(|l| l["ifname"] == name)
}

#[test]
fn a_disconnect_frees_the_names_at_once_and_the_veth_goes_within_seconds() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    sb.add_netns("c2");
    let e = sb.connect("web", "c1", &["-p", "8080:80"]);
    sb.connect("web", "c2", &[]);
    let veth = field(&e, "host_ifname");
    let old_ip = field(&e, "ip");
    sb.assert_ping(Some("c2"), &old_ip);
    // The supervisor is what deletes; it is there for the endpoints.
    let supervisor = supervisor_pid(&sb).expect("the supervisor runs");

    // Stopped, it cannot delete: what the disconnect itself did is seen.
    sb.sh_ok(&format!("kill -STOP {supervisor}"));
    sb.berth_ok(&["disconnect", "web", "c1"]);
    assert!(sb.link(None, &veth).is_none(), "{veth} still there");
    assert!(sb.link(Some("c1"), "eth0").is_none(), "eth0 still in c1");
    let pending = sb.pending_links();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let waiting = link_details(&sb, &pending[0]).expect("the pending link");
    assert!(waiting["master"].is_null(), "{waiting}");
    assert_eq!(waiting["operstate"], "DOWN", "{waiting}");
    // berth's pending group (ip prints a group without a name as a number).
    assert_eq!(waiting["group"], "1650851839", "{waiting}");
    // Its peer in c1 is down and carries no route.
    let peer = sb.link(Some("c1"), &pending[0]).expect("the peer, renamed");
    assert!(
        !peer["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{peer}"
    );
    assert!(
        sb.routes(Some("c1")).is_empty(),
        "{:?}",
        sb.routes(Some("c1"))
    );
    // Traffic to the old address stops at once, both ways.
    assert!(!sb.ping(Some("c2"), &old_ip).status.success());
    assert!(!sb.ping(Some("c1"), "10.90.0.1").status.success());
    // Not an endpoint; the same name connects again at once.
    assert!(sb.endpoints().iter().all(|e| e["netns"] != "c1"));
    let again = sb.connect("web", "c1", &["-p", "8080:80"]);
    assert_eq!(field(&again, "host_ifname"), veth);
    sb.assert_ping(Some("c2"), &field(&again, "ip"));

    // Let go, the supervisor deletes it within seconds.
    sb.sh_ok(&format!("kill -CONT {supervisor}"));
    let started = Instant::now();
    assert!(
        sb.wait_no_pending(Duration::from_secs(5)),
        "still pending: {:?}",
        sb.pending_links()
    );
    eprintln!("pending link deleted {:?} after SIGCONT", started.elapsed());
    assert!(sb.link(Some("c1"), &pending[0]).is_none());
    assert!(sb.link(Some("c1"), "eth0").is_some(), "the new eth0 stays");

    // Without a stopped supervisor, from the disconnect's return.
    sb.berth_ok(&["disconnect", "web", "c1"]);
    let started = Instant::now();
    assert!(sb.wait_no_pending(Duration::from_secs(5)));
    eprintln!(
        "pending link deleted {:?} after disconnect",
        started.elapsed()
    );
    assert!(sb.berth_ok(&["gc"]).contains("already matches"));
}

#[test]
fn links_a_killed_supervisor_left_pending_are_deleted_by_the_next_one_and_by_gc() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    for ns in ["c1", "c2", "c3", "c4"] {
        sb.add_netns(ns);
        sb.connect("web", ns, &[]);
    }
    // Killed while links wait: no one deletes them until someone looks.
    let first = supervisor_pid(&sb).expect("the supervisor runs");
    sb.sh_ok(&format!("kill -STOP {first}"));
    sb.berth_ok(&["disconnect", "web", "c1"]);
    sb.berth_ok(&["disconnect", "web", "c2"]);
    assert_eq!(sb.pending_links().len(), 2);
    sb.sh_ok(&format!("kill -KILL {first}"));
    // `gc` is the backstop...
    let report = sb.berth_ok(&["gc"]);
    assert!(report.contains("left pending"), "{report}");
    assert_eq!(sb.pending_links(), Vec::<String>::new());
    assert!(sb
        .link_names(Some("c1"))
        .iter()
        .all(|n| !n.starts_with("vp")));

    // ...and so is the next supervisor, which the next command starts and
    // which looks for pending links when it starts.
    let second = loop {
        // A command after the kill starts a new one (if the DNS server has
        // not already).
        if let Some(pid) = supervisor_pid(&sb).filter(|p| *p != first) {
            break pid;
        }
        sb.berth_ok(&["ps"]);
        sb.berth_ok(&["up"]);
    };
    sb.sh_ok(&format!("kill -STOP {second}"));
    sb.berth_ok(&["disconnect", "web", "c3"]);
    assert_eq!(sb.pending_links().len(), 1);
    sb.sh_ok(&format!("kill -KILL {second}"));
    // The next disconnect finds no supervisor, starts one, and that one
    // deletes both.
    sb.berth_ok(&["disconnect", "web", "c4"]);
    assert!(
        sb.wait_no_pending(Duration::from_secs(5)),
        "{:?}",
        sb.pending_links()
    );
    assert!(sb.berth_ok(&["gc"]).contains("already matches"));
}

#[test]
fn network_rm_and_reset_leave_no_pending_link() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    sb.add_netns("c2");
    sb.connect("web", "c1", &[]);
    sb.connect("web", "c2", &[]);
    let supervisor = supervisor_pid(&sb).expect("the supervisor runs");
    sb.sh_ok(&format!("kill -STOP {supervisor}"));
    sb.berth_ok(&["disconnect", "web", "c1"]);
    assert_eq!(sb.pending_links().len(), 1);
    // With the bridge, in the same request.
    sb.berth_ok(&["network", "rm", "web", "--force"]);
    assert_eq!(sb.pending_links(), Vec::<String>::new());

    sb.create_network("web", "10.90.0.0/24");
    sb.connect("web", "c1", &[]);
    sb.connect("web", "c2", &[]);
    sb.berth_ok(&["disconnect", "web", "c1"]);
    assert_eq!(sb.pending_links().len(), 1);
    sb.berth_ok(&["reset"]);
    assert_eq!(sb.pending_links(), Vec::<String>::new());
    sb.sh_ok(&format!("kill -CONT {supervisor}"));
}

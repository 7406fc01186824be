//! Crash safety end to end: every mutating command killed (SIGKILL, through
//! `BERTH_FAILPOINT`) at every step converges on the next command to the
//! picture of "never ran" or "completed"; a reboot, a deleted table, a
//! flushed table, a deleted bridge or veth are repaired; a killed `run` is
//! reclaimed; a random kill -9 storm leaves no leak and no duplicate
//! address. The oracle is the kernel itself (`ip -j`, `nft -j`), not berth.

mod util;

use std::collections::{BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

/// What the kernel and berth's views say, without what changes when the
/// same configuration is rebuilt (handles, indexes, element order).
fn essence(sb: &Sandbox) -> BTreeMap {
    // A disconnect's veth is deleted a moment after it returns: the picture
    // is the one once it went (within seconds, or this fails).
    assert!(
        sb.wait_no_pending(Duration::from_secs(5)),
        "links still pending: {:?}",
        sb.pending_links()
    );
    let mut parts = BTreeMap::new();
    let mut spaces: Vec<Option<String>> = vec![None];
    spaces.extend(sb.netns_list().into_iter().map(Some));
    for ns in &spaces {
        let label = ns.clone().unwrap_or_else(|| "<host>".into());
        let ns = ns.as_deref();
        let links: Vec<String> = as_array(sb.ip_json_in(ns, &["link"]))
            .iter()
            .map(|l| {
                format!(
                    "{} master={} group={}",
                    l["ifname"].as_str().unwrap_or(""),
                    l["master"].as_str().unwrap_or("-"),
                    l["group"]
                )
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        parts.insert(format!("{label} links"), Value::from(links));
        let addrs: Vec<String> = as_array(sb.ip_json_in(ns, &["-4", "addr"]))
            .iter()
            .flat_map(|l| {
                let dev = l["ifname"].as_str().unwrap_or("").to_string();
                as_array(l["addr_info"].clone())
                    .into_iter()
                    .map(move |a| format!("{dev} {}/{}", a["local"], a["prefixlen"]))
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        parts.insert(format!("{label} addrs"), Value::from(addrs));
        let routes = scrub(sb.ip_json_in(ns, &["-4", "route"]));
        parts.insert(format!("{label} routes"), routes);
        // IPv6: the global addresses and the main table's routes but the
        // link-local ones (which the kernel makes with every link up).
        let addrs6: Vec<String> =
            as_array(sb.ip_json_in(ns, &["-6", "addr", "show", "scope", "global"]))
                .iter()
                .flat_map(|l| {
                    let dev = l["ifname"].as_str().unwrap_or("").to_string();
                    as_array(l["addr_info"].clone())
                        .into_iter()
                        .map(move |a| format!("{dev} {}/{}", a["local"], a["prefixlen"]))
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
        parts.insert(format!("{label} addrs6"), Value::from(addrs6));
        let routes6: Vec<String> = as_array(sb.ip_json_in(ns, &["-6", "route"]))
            .iter()
            .filter(|r| !r["dst"].as_str().unwrap_or("").starts_with("fe80:"))
            .map(|r| format!("{} via {} dev {}", r["dst"], r["gateway"], r["dev"]))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        parts.insert(format!("{label} routes6"), Value::from(routes6));
    }
    let nft = sb.cmd("nft", &["-j", "list", "ruleset"]);
    parts.insert("nft".into(), by_table(normalize(scrub(loose_json(&nft)))));
    let eps: Vec<String> = sb
        .endpoints()
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} {}",
                e["network"], e["name"], e["ip"], e["ip6"], e["status"]
            )
        })
        .collect();
    parts.insert("berth ps".into(), Value::from(eps));
    let nets: Vec<String> = sb
        .networks()
        .iter()
        .map(|n| format!("{} {}", n["name"], n["subnets"]))
        .collect();
    parts.insert("berth network ls".into(), Value::from(nets));
    parts
}

type BTreeMap = std::collections::BTreeMap<String, Value>;

/// Drops rule/set handles, sorts set elements (a rebuilt hash set lists
/// them in another order) and hides the owner mark's instance id (random
/// per state, so two sandboxes differ in it).
fn normalize(v: Value) -> Value {
    match v {
        Value::String(s) if s.starts_with("owner-") => Value::from("owner-*"),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| k != "handle")
                .map(|(k, v)| {
                    let v = normalize(v);
                    if k == "elem" {
                        if let Value::Array(mut a) = v {
                            a.sort_by_key(|x| x.to_string());
                            return (k, Value::Array(a));
                        }
                        return (k, v);
                    }
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        other => other,
    }
}

/// The ruleset's objects in a canonical order that keeps what matters:
/// by table, then its sets and maps, chains and rules, each by name (rules
/// by chain, in the kernel's order within it). A table built again lists
/// its objects in another order, which changes nothing.
fn by_table(v: Value) -> Value {
    let Value::Object(mut top) = v else {
        return v;
    };
    if let Some(Value::Array(items)) = top.get_mut("nftables") {
        let key = |item: &Value| -> (String, String, u8, String) {
            let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else {
                return Default::default();
            };
            let s = |k: &str| body[k].as_str().unwrap_or("").to_string();
            let family = s("family");
            match kind.as_str() {
                "table" => (family, s("name"), 0, String::new()),
                "set" | "map" => (family, s("table"), 1, s("name")),
                "chain" => (family, s("table"), 2, s("name")),
                "rule" => (family, s("table"), 3, s("chain")),
                _ => (family, s("table"), 4, String::new()),
            }
        };
        items.sort_by_key(|item| key(item));
    }
    Value::Object(top)
}

fn diff(a: &BTreeMap, b: &BTreeMap) -> String {
    let mut out = String::new();
    for k in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        if k == "nft" {
            // Element by element: the whole ruleset is too long to read.
            let items = |m: &BTreeMap| -> BTreeSet<String> {
                as_array(m.get(k).cloned().unwrap_or_default()["nftables"].clone())
                    .iter()
                    .map(|v| v.to_string())
                    .collect()
            };
            let (x, y) = (items(a), items(b));
            for only in x.symmetric_difference(&y) {
                let side = if x.contains(only) { "one" } else { "other" };
                out.push_str(&format!("  nft, only in {side}: {only}\n"));
            }
            continue;
        }
        if a.get(k) != b.get(k) {
            out.push_str(&format!(
                "  {k}:\n    one:   {}\n    other: {}\n",
                a.get(k).map(|v| v.to_string()).unwrap_or_default(),
                b.get(k).map(|v| v.to_string()).unwrap_or_default()
            ));
        }
    }
    out
}

/// Runs berth with a failpoint armed; true if it was killed there.
fn run_with_failpoint(sb: &Sandbox, args: &[&str], failpoint: &str) -> bool {
    let mut c = sb.berth_command(args);
    c.env("BERTH_FAILPOINT", failpoint);
    let out = run_timeout(c, CMD_TIMEOUT);
    match out.status.signal() {
        Some(9) => true,
        _ => {
            assert!(
                out.status.success(),
                "berth {args:?} with {failpoint} failed instead of dying: {}",
                stderr(&out)
            );
            false
        }
    }
}

/// The IPv4 and global IPv6 addresses of every namespace's interfaces:
/// no two equal.
fn assert_no_duplicate_address(sb: &Sandbox) {
    let mut seen: HashMap<String, String> = HashMap::new();
    for ns in sb.netns_list() {
        let v4 = as_array(sb.ip_json_in(Some(&ns), &["-4", "addr"]));
        let v6 = as_array(sb.ip_json_in(Some(&ns), &["-6", "addr", "show", "scope", "global"]));
        for l in v4.into_iter().chain(v6) {
            for a in as_array(l["addr_info"].clone()) {
                let ip = a["local"].as_str().unwrap_or("").to_string();
                if ip.starts_with("127.") {
                    continue;
                }
                if let Some(other) = seen.insert(ip.clone(), ns.clone()) {
                    panic!("address {ip} is held by both {other} and {ns}");
                }
            }
        }
    }
}

/// One mutating command, its setup, and the failpoints to try.
struct Case {
    name: &'static str,
    setup: fn(&Sandbox),
    args: &'static [&'static str],
}

fn setup_network(sb: &Sandbox) {
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c0");
    sb.add_netns("c1");
    sb.connect("web", "c0", &["-p", "8000:80"]);
}

fn setup_two_networks(sb: &Sandbox) {
    setup_network(sb);
    sb.create_network("db", "10.91.0.0/24");
}

/// `web6`, dual-stack, with c0 connected and publishing a port on both
/// families; c1 exists.
fn setup_dual(sb: &Sandbox) {
    sb.berth_ok(&[
        "network",
        "create",
        "web6",
        "--subnet",
        "10.94.0.0/24",
        "--subnet6",
        "fd00:94::/64",
    ]);
    sb.add_netns("c0");
    sb.add_netns("c1");
    sb.connect("web6", "c0", &["-p", "8000:80"]);
}

/// A macvlan network `lan` on the parent `up0` (a veth whose peer is in
/// the namespace `lanside`), with `c0` connected.
fn setup_macvlan(sb: &Sandbox) {
    sb.add_netns("lanside");
    sb.sh_ok("ip link add up0 type veth peer name lanif netns lanside && ip link set up0 up");
    sb.berth_ok(&[
        "network",
        "create",
        "lan",
        "--driver",
        "macvlan",
        "--parent",
        "up0",
        "--subnet",
        "192.168.60.0/24",
    ]);
    sb.add_netns("c0");
    sb.add_netns("c1");
    sb.connect("lan", "c0", &[]);
}

const CASES: &[Case] = &[
    Case {
        name: "macvlan connect",
        setup: setup_macvlan,
        args: &["connect", "lan", "c1"],
    },
    Case {
        name: "macvlan disconnect",
        setup: setup_macvlan,
        args: &["disconnect", "lan", "c0"],
    },
    Case {
        name: "macvlan network rm --force",
        setup: setup_macvlan,
        args: &["network", "rm", "lan", "--force"],
    },
    Case {
        name: "connect",
        setup: setup_network,
        args: &["connect", "web", "c1", "-p", "8080:80", "-p", "5353:53/udp"],
    },
    Case {
        name: "disconnect",
        setup: setup_network,
        args: &["disconnect", "web", "c0"],
    },
    Case {
        name: "network create",
        setup: setup_network,
        args: &[
            "network",
            "create",
            "db",
            "--subnet",
            "10.91.0.0/24",
            "--no-icc",
        ],
    },
    Case {
        name: "network rm --force",
        setup: setup_two_networks,
        args: &["network", "rm", "web", "--force"],
    },
    Case {
        name: "run",
        setup: setup_network,
        args: &[
            "run", "--net", "web", "--name", "r9", "-p", "8081:80", "--", "true",
        ],
    },
    Case {
        name: "reset",
        setup: setup_two_networks,
        args: &["reset"],
    },
    // A default route with a metric, beside the namespace's plain one.
    Case {
        name: "connect --metric",
        setup: setup_two_networks,
        args: &["connect", "db", "c0", "--metric", "200"],
    },
    Case {
        name: "disconnect of the plain route's network beside a metric",
        setup: setup_metric_beside,
        args: &["disconnect", "web", "c0"],
    },
    // Dual stack: both families' addresses, routes, ports and forwarding.
    Case {
        name: "dual-stack connect",
        setup: setup_dual,
        args: &[
            "connect",
            "web6",
            "c1",
            "-p",
            "8080:80",
            "-p",
            "5353:53/udp",
        ],
    },
    Case {
        name: "dual-stack disconnect",
        setup: setup_dual,
        args: &["disconnect", "web6", "c0"],
    },
    Case {
        name: "IPv6-only network create",
        setup: setup_dual,
        args: &[
            "network",
            "create",
            "six",
            "--no-ipv4",
            "--subnet6",
            "fd00:95::/64",
        ],
    },
    Case {
        name: "dual-stack network rm --force",
        setup: setup_dual,
        args: &["network", "rm", "web6", "--force"],
    },
];

/// c0 on web (the plain default route) and on db with its own, metric 200.
fn setup_metric_beside(sb: &Sandbox) {
    setup_two_networks(sb);
    sb.connect("db", "c0", &["--metric", "200"]);
}

#[test]
fn a_command_killed_at_any_step_converges_to_never_ran_or_completed() {
    for case in CASES {
        // The two pictures a crash may converge to.
        let sb = Sandbox::new();
        (case.setup)(&sb);
        let before = essence(&sb);
        sb.berth_ok(case.args);
        sb.berth_ok(&["gc"]);
        let completed = essence(&sb);
        drop(sb);

        let mut points = vec!["intent:1".to_string(), "record:1".to_string()];
        points.extend((1..=12).map(|k| format!("step:{k}")));
        let mut steps_seen = 0;
        for point in points {
            let sb = Sandbox::new();
            (case.setup)(&sb);
            if !run_with_failpoint(&sb, case.args, &point) {
                // The command has fewer steps than this: all were covered.
                assert!(
                    point.starts_with("step:"),
                    "{} never reached {point}",
                    case.name
                );
                break;
            }
            if point.starts_with("step:") {
                steps_seen += 1;
            }
            // The next command converges; gc reports and finds nothing more.
            let repaired = sb.berth_ok(&["gc"]);
            let now = essence(&sb);
            assert!(
                now == before || now == completed,
                "{} killed at {point} converged to neither picture (gc said: {repaired}):\nvs never ran:\n{}\nvs completed:\n{}",
                case.name,
                diff(&before, &now),
                diff(&completed, &now)
            );
            let again = sb.berth_ok(&["gc"]);
            assert!(
                again.contains("already matches"),
                "{} at {point}: a second gc still repaired: {again}",
                case.name
            );
            // And berth keeps working: a new endpoint gets an unused address.
            let names: Vec<Value> = sb.networks().iter().map(|n| n["name"].clone()).collect();
            if let Some(net) = ["web", "web6"]
                .into_iter()
                .find(|w| names.contains(&Value::from(*w)))
            {
                sb.add_netns("c9");
                sb.connect(net, "c9", &[]);
                assert_no_duplicate_address(&sb);
            }
        }
        assert!(
            steps_seen >= 1,
            "{}: no step failpoint was reached",
            case.name
        );
        eprintln!(
            "{}: killed at intent, record and {steps_seen} steps: all converged",
            case.name
        );
    }
}

#[test]
fn after_a_reboot_up_rebuilds_networks_and_drops_dead_endpoints() {
    let saved = std::env::temp_dir().join(format!("berth-reboot-{}", std::process::id()));
    let saved = saved.display().to_string();
    {
        let sb = Sandbox::new();
        sb.create_network("web", "10.90.0.0/24");
        sb.berth_ok(&[
            "network",
            "create",
            "iso",
            "--subnet",
            "10.92.0.0/24",
            "--internal",
        ]);
        sb.add_netns("c1");
        sb.connect("web", "c1", &["-p", "8080:80"]);
        sb.sh_ok(&format!("rm -rf {saved} && cp -a {STATE_DIR} {saved}"));
    }
    // A new "boot": fresh kernel state, the old state directory.
    let sb = Sandbox::new();
    sb.sh_ok(&format!("cp -a {saved} {STATE_DIR} && rm -rf {saved}"));
    let ps = sb.endpoints();
    assert_eq!(
        ps[0]["status"], "gone",
        "ps must not show a dead endpoint as live: {ps:?}"
    );
    let report = sb.berth_ok(&["up"]);
    assert!(report.contains("re-created bridge berth-web"), "{report}");
    assert!(report.contains("removed endpoint web/c1"), "{report}");
    assert!(sb.link(None, "berth-web").is_some() && sb.link(None, "berth-iso").is_some());
    assert_eq!(sb.ipv4_addrs(None, "berth-web"), vec!["10.90.0.1/24"]);
    assert_eq!(sb.sysctl("net.ipv4.ip_forward"), "1");
    let chains = stdout(&sb.cmd("nft", &["list", "table", "inet", "berth"]));
    assert!(
        chains.contains("chain web-out") && chains.contains("chain iso-out"),
        "{chains}"
    );
    assert!(sb.endpoints().is_empty());
    // Idempotent, and the network works: a published port answers.
    assert!(sb.berth_ok(&["up"]).contains("already matches"));
    sb.add_netns("c2");
    sb.connect("web", "c2", &["-p", "8080:80"]);
    let _server = sb.tcp_server(Some("c2"), "0.0.0.0:80");
    sb.assert_tcp(None, "127.0.0.1:8080");
}

#[test]
fn the_first_command_after_a_reboot_repairs_implicitly() {
    let saved = std::env::temp_dir().join(format!("berth-reboot2-{}", std::process::id()));
    let saved = saved.display().to_string();
    {
        let sb = Sandbox::new();
        sb.create_network("web", "10.90.0.0/24");
        sb.create_network("db", "10.91.0.0/24");
        sb.sh_ok(&format!("rm -rf {saved} && cp -a {STATE_DIR} {saved}"));
    }
    let sb = Sandbox::new();
    sb.sh_ok(&format!("cp -a {saved} {STATE_DIR} && rm -rf {saved}"));
    sb.add_netns("c1");
    let out = sb.berth_out_ok(&["connect", "web", "c1"]);
    assert!(stderr(&out).contains("restarted"), "{}", stderr(&out));
    // Isolation between the two networks came back with the table.
    let table = stdout(&sb.cmd("nft", &["list", "table", "inet", "berth"]));
    assert!(table.contains("chain db-out") && table.contains("chain web-out"));
}

#[test]
fn tampering_is_detected_by_the_next_command_and_repaired() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    sb.connect("web", "c1", &["-p", "8080:80"]);
    let _server = sb.tcp_server(Some("c1"), "0.0.0.0:80");
    sb.assert_tcp(None, "127.0.0.1:8080");
    let healthy = essence(&sb);

    for (what, script) in [
        ("deleted table", "nft delete table inet berth"),
        ("flushed table", "nft flush table inet berth"),
        ("flushed ruleset", "nft flush ruleset"),
    ] {
        sb.sh_ok(script);
        sb.add_netns("probe");
        let out = sb.berth_out_ok(&["connect", "web", "probe"]);
        assert!(
            stderr(&out).contains("changed by someone else"),
            "{what}: {}",
            stderr(&out)
        );
        sb.berth_ok(&["disconnect", "web", "probe"]);
        sb.sh_ok("ip netns del probe");
        assert_eq!(essence(&sb), healthy, "{what}: not restored exactly");
        sb.assert_tcp(None, "127.0.0.1:8080");
    }

    // A deleted bridge: the veths went with it; up rebuilds both.
    sb.sh_ok("ip link del berth-web");
    let report = sb.berth_ok(&["up"]);
    assert!(report.contains("re-created bridge"), "{report}");
    assert!(report.contains("re-attached the veth"), "{report}");
    assert_eq!(
        essence(&sb),
        healthy,
        "deleted bridge: not restored exactly"
    );
    sb.assert_tcp(None, "127.0.0.1:8080");
}

#[test]
fn a_namespace_deleted_by_hand_is_gone_and_its_inode_is_not_mistaken() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("a");
    let first = sb.connect("web", "a", &["-p", "8080:80"]);
    sb.sh_ok("ip netns del a");
    let veth = first["host_ifname"].as_str().unwrap().to_string();
    assert!(sb.wait_link_gone(None, &veth, Duration::from_secs(10)));
    // Shown as gone (never as up) until the supervisor reclaims it.
    let ps = sb.endpoints();
    assert!(ps.is_empty() || ps[0]["status"] == "gone", "{ps:?}");
    // Namespaces made now may get the dead one's inode; none is taken for it.
    // b takes a's port: the dead endpoint's claim was released.
    for (name, port) in [("b", "8080:80"), ("c", "8081:80"), ("a", "8082:80")] {
        sb.add_netns(name);
        sb.connect("web", name, &["-p", port]);
    }
    let names: BTreeSet<String> = sb
        .endpoints()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["a", "b", "c"].iter().map(|s| s.to_string()).collect()
    );
    assert_no_duplicate_address(&sb);
    assert!(sb.berth_ok(&["gc"]).contains("already matches"));
}

#[test]
fn a_killed_run_is_reclaimed_and_its_command_dies_with_it() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    let mut run = sb.spawn(
        sb.berth_command(&[
            "run", "--net", "web", "--name", "r1", "-p", "9000:80", "--", "sleep", "300",
        ]),
        false,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sb.find_processes("sleep 300").iter().any(|_| true) {
        assert!(Instant::now() < deadline, "run did not start its command");
        std::thread::sleep(Duration::from_millis(20));
    }
    run.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(run.wait_timeout(Duration::from_secs(10)).is_some());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sb.find_processes("sleep 300").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the command outlived its killed run"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The supervisor reclaims it, or else the next command does.
    let report = sb.berth_ok(&["gc"]);
    assert!(
        report.contains("reclaimed web/r1") || report.contains("already matches"),
        "{report}"
    );
    assert!(!sb.netns_list().contains(&"r1".to_string()));
    assert!(sb.endpoints().is_empty());
    // The port is free again.
    sb.add_netns("c1");
    sb.connect("web", "c1", &["-p", "9000:80"]);
}

#[test]
fn gc_removes_leftovers_berth_can_prove_it_made_and_nothing_else() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    // A veth and a bridge in berth's link groups that no row knows (as a
    // lost state would leave), and look-alikes that are not berth's.
    sb.sh_ok(
        "ip link add vb0123456789ab group 1650786309 type veth peer name vbpeer0 && \
         ip link add berth-old group 1650786304 type bridge && \
         ip link add vbffffffffffff type veth peer name other0 && \
         ip link add docker0 type bridge",
    );
    let dry = sb.berth_ok(&["--dry-run", "gc"]);
    assert!(
        dry.contains("ip link del vb0123456789ab") && dry.contains("ip link del berth-old"),
        "{dry}"
    );
    assert!(
        sb.link(None, "berth-old").is_some(),
        "--dry-run changed something"
    );
    let report = sb.berth_ok(&["gc"]);
    assert!(
        report.contains("vb0123456789ab") && report.contains("berth-old"),
        "{report}"
    );
    assert!(sb.link(None, "vb0123456789ab").is_none() && sb.link(None, "berth-old").is_none());
    for foreign in ["vbffffffffffff", "docker0", "berth-web"] {
        assert!(sb.link(None, foreign).is_some(), "gc removed {foreign}");
    }
}

#[test]
fn random_kill_storm_leaves_no_leak_and_no_duplicate_address() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    // db is dual-stack: the storm covers both families' leases.
    sb.berth_ok(&[
        "network",
        "create",
        "db",
        "--subnet",
        "10.91.0.0/24",
        "--subnet6",
        "fd00:91::/64",
    ]);
    sb.add_netns("lanside");
    sb.sh_ok("ip link add up0 type veth peer name lanif netns lanside && ip link set up0 up");
    sb.berth_ok(&[
        "network",
        "create",
        "mv",
        "--driver",
        "macvlan",
        "--parent",
        "up0",
        "--subnet",
        "192.168.60.0/24",
    ]);
    for i in 0..8 {
        sb.add_netns(&format!("n{i}"));
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let started = Instant::now();
    let (mut killed, mut total) = (0, 0);
    while total < 200 && started.elapsed() < Duration::from_secs(90) {
        total += 1;
        let ns = format!("n{}", next() % 8);
        let net = ["web", "db", "mv"][(next() % 3) as usize];
        let port = format!("{}:80", 8000 + next() % 6);
        let args: Vec<&str> = match next() % 5 {
            // No ports on a macvlan network.
            0 | 1 if net == "mv" => vec!["connect", net, &ns],
            0 | 1 => vec!["connect", net, &ns, "-p", &port],
            2 | 3 => vec!["disconnect", net, &ns],
            _ => vec![
                "network",
                "create",
                "tmp",
                "--subnet",
                "10.93.0.0/24",
                "--ipv6",
            ],
        };
        let args = if args[0] == "network" && next() % 2 == 0 {
            vec!["network", "rm", "tmp", "--force"]
        } else {
            args
        };
        let mut child = sb.berth_command(&args).spawn().expect("spawn berth");
        // 0-40 ms: some die before the kernel, some mid-way, some finish.
        std::thread::sleep(Duration::from_micros(next() % 40_000));
        if child.try_wait().unwrap().is_none() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            killed += 1;
        }
        let _ = child.wait();
    }
    eprintln!("storm: {total} commands, {killed} killed");
    sb.berth_ok(&["gc"]);
    // Links disconnects took out of service (killed or not) are deleted by
    // gc at the latest, their peers in the namespaces with them.
    assert_eq!(sb.pending_links(), Vec::<String>::new());
    for i in 0..8 {
        let ns = format!("n{i}");
        let left: Vec<String> = sb
            .link_names(Some(&ns))
            .into_iter()
            .filter(|n| n.starts_with("vp"))
            .collect();
        assert!(left.is_empty(), "{ns}: {left:?}");
    }
    // Kernel and state agree: every endpoint is live and owns its veth; no
    // berth veth is unaccounted for; no address is held twice.
    let eps = sb.endpoints();
    for e in &eps {
        assert_eq!(e["status"], "up", "{e}");
    }
    let veths: BTreeSet<String> = sb
        .link_names(None)
        .into_iter()
        .filter(|n| n.starts_with("vb"))
        .collect();
    let known: BTreeSet<String> = eps
        .iter()
        .map(|e| e["host_ifname"].as_str().unwrap().to_string())
        .filter(|n| n.starts_with("vb"))
        .collect();
    assert_eq!(
        veths, known,
        "veths without a state row, or rows without a veth"
    );
    // The same for the macvlan children, which live in the namespaces:
    // each namespace has a child exactly when the state has its endpoint,
    // and none is left under the name it is born with.
    let children: BTreeSet<String> = (0..8)
        .map(|i| format!("n{i}"))
        .filter(|ns| {
            let links = as_array(sb.ip_json_in(Some(ns), &["-d", "link"]));
            assert!(
                links
                    .iter()
                    .all(|l| !l["ifname"].as_str().unwrap_or("").starts_with("vc")),
                "{ns}: {links:?}"
            );
            let kinds = links
                .iter()
                .filter(|l| l["linkinfo"]["info_kind"] == "macvlan")
                .count();
            assert!(kinds <= 1, "{ns}: {links:?}");
            kinds == 1
        })
        .collect();
    let on_mv: BTreeSet<String> = eps
        .iter()
        .filter(|e| e["network"] == "mv")
        .map(|e| e["netns"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(children, on_mv, "macvlan children vs the state's endpoints");
    eprintln!(
        "storm: {} endpoints left on the macvlan network",
        on_mv.len()
    );
    assert_no_duplicate_address(&sb);
    assert!(sb.berth_ok(&["gc"]).contains("already matches"));
    // Every later command works.
    for i in 0..8 {
        sb.berth_ok(&["disconnect", "web", &format!("n{i}"), "--force"]);
        sb.berth_ok(&["disconnect", "db", &format!("n{i}"), "--force"]);
        sb.berth_ok(&["disconnect", "mv", &format!("n{i}"), "--force"]);
    }
    sb.berth_ok(&["reset"]);
    assert_eq!(sb.pending_links(), Vec::<String>::new(), "after reset");
}

#[test]
fn a_second_state_dir_on_one_host_is_refused_and_harms_nothing() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    sb.connect("web", "c1", &[]);
    let before = essence(&sb);
    let other = |args: &[&str]| {
        let mut c = sb.berth_command(args);
        c.env("BERTH_STATE_DIR", "/run/berth-other");
        run_timeout(c, CMD_TIMEOUT)
    };
    // A second state with no network of its own must not take the table
    // away (as "no network is left") nor add to it.
    for args in [
        &["network", "create", "db", "--subnet", "10.91.0.0/24"][..],
        &["up"][..],
        &["gc"][..],
    ] {
        let out = other(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "berth {args:?}: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(err.contains("belongs to another berth state"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert_eq!(
        essence(&sb),
        before,
        "the first state's networks were touched"
    );
}

#[test]
fn bad_values_are_refused_in_one_line_and_change_nothing() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    sb.add_netns("c2");
    sb.connect("web", "c1", &["--mac", "02:00:00:00:00:01"]);
    let holder = format!("pid:{}", sb.pid());
    let cases: [(&[&str], &str); 4] = [
        // The host's own namespace, named three ways.
        (
            &["connect", "web", "/proc/self/ns/net"],
            "host's own network namespace",
        ),
        (&["connect", "web", &holder], "host's own network namespace"),
        (
            &["connect", "web", &sb.host_netns_path()],
            "host's own network namespace",
        ),
        // A MAC another endpoint of the network has.
        (
            &["connect", "web", "c2", "--mac", "02:00:00:00:00:01"],
            "02:00:00:00:00:01",
        ),
    ];
    for (args, names) in cases {
        sb.assert_refused(args, names);
    }
}

#[test]
fn disconnect_by_endpoint_name_and_dry_run_exec_runs_nothing() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    sb.connect("web", "c1", &["--name", "api"]);
    // `ps` shows the endpoint as "api": that name disconnects it.
    sb.berth_ok(&["disconnect", "web", "api"]);
    assert!(sb.endpoints().is_empty());

    sb.connect("web", "c1", &[]);
    let before = sb.snapshot();
    let out = sb.berth_out_ok(&[
        "--dry-run",
        "exec",
        "c1",
        "--",
        "ip",
        "link",
        "set",
        "eth0",
        "down",
    ]);
    assert_eq!(
        stdout(&out).trim(),
        "nsenter --net=/run/netns/c1 -- ip link set eth0 down"
    );
    let out = sb.berth_out_ok(&[
        "--dry-run",
        "exec",
        "c1",
        "--",
        "touch",
        "/run/berth-dry-run-file",
    ]);
    assert!(stdout(&out).contains("touch"));
    assert!(
        !sb.sh("test -e /run/berth-dry-run-file").status.success(),
        "--dry-run exec ran the command"
    );
    sb.snapshot().assert_same(&before, "--dry-run exec");
}

#[test]
fn the_default_route_moves_to_another_network_when_its_network_is_disconnected() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.create_network("db", "10.91.0.0/24");
    sb.berth_ok(&[
        "network",
        "create",
        "iso",
        "--subnet",
        "10.92.0.0/24",
        "--internal",
    ]);
    sb.add_netns("c1");
    sb.connect("web", "c1", &[]);
    sb.connect("iso", "c1", &[]);
    sb.connect("db", "c1", &[]);
    let default_via = |sb: &Sandbox| -> Vec<String> {
        sb.routes(Some("c1"))
            .iter()
            .filter(|r| r["dst"] == "default")
            .map(|r| r["gateway"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(default_via(&sb), vec!["10.90.0.1"]);
    // web provided it: db (not the internal iso) takes over.
    sb.berth_ok(&["disconnect", "web", "c1"]);
    assert_eq!(default_via(&sb), vec!["10.91.0.1"]);
    // and db's endpoint now owns it: its disconnect leaves none (iso is internal).
    sb.berth_ok(&["disconnect", "db", "c1"]);
    assert!(default_via(&sb).is_empty());
    // Up after all that (once the supervisor deleted the veths the
    // disconnects left pending) finds nothing to repair.
    assert!(sb.wait_no_pending(Duration::from_secs(5)));
    assert!(sb.berth_ok(&["up"]).contains("already matches"));
}

#[test]
fn reserved_network_names_and_taken_interface_names_are_refused() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    for (args, names) in [
        (&["network", "create", "host"][..], "\"host\" is reserved"),
        (&["network", "create", "none"][..], "\"none\" is reserved"),
        (&["network", "create", "berth"][..], "\"berth\" is reserved"),
        (
            &["connect", "web", "c1", "--ifname", "lo"][..],
            "interface named \"lo\"",
        ),
    ] {
        sb.assert_refused(args, names);
    }
}

#[test]
fn a_connect_to_a_network_whose_bridge_was_deleted_rebuilds_it_first() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    sb.add_netns("c2");
    let c1 = sb.connect("web", "c1", &[]);
    sb.sh_ok("ip link del berth-web");
    let out = sb.berth_out_ok(&["connect", "web", "c2"]);
    let said = stderr(&out);
    assert!(said.contains("re-created bridge berth-web"), "{said}");
    assert!(said.contains("re-attached the veth"), "{said}");
    // c1's veth is a port of the new bridge again, and the two talk.
    let veth = sb.link(None, c1["host_ifname"].as_str().unwrap()).unwrap();
    assert_eq!(veth["master"], "berth-web");
    let _srv = sb.tcp_server(Some("c1"), "10.90.0.2:7000");
    sb.assert_tcp(Some("c2"), "10.90.0.2:7000");
}

//! Bandwidth limits end to end, each test in its own sandbox: a TCP stream
//! through a limited endpoint runs within 10% of the limit both ways (and
//! an unlimited neighbour well above it, so the limit is what holds it);
//! the limits in `ps`, `network inspect` and their JSON, in tc's view of
//! the kernel, in a dry run; the ifb goes with the endpoint; `up` shapes a
//! veth it re-creates and re-creates a lost ifb; `run` limits its sandbox;
//! bad rates are refused.

mod util;

use serde_json::Value;
use util::*;

/// How far a measured rate may be from the limit.
const TOLERANCE: f64 = 0.10;

/// Receives from a `tcp-source` at `addr` for 3 s in `netns`; Mbit/s.
fn download(sb: &Sandbox, netns: &str, addr: &str) -> f64 {
    let out = sb.probe(Some(netns), &["tcp-download", addr, "--seconds", "3"]);
    assert_ok_ctx(&out, &format!("download {netns} <- {addr}"));
    let text = stdout(&out);
    text.trim()
        .strip_prefix("mbit_per_sec ")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {text:?}"))
}

/// Measures and checks a rate against `limit_mbit`. Above the limit fails
/// at once (the limit did not hold). Below it, one more measurement is
/// taken before failing: two cores shared with other work can hold a
/// stream under the rate for reasons of their own. Both figures are
/// printed (`--nocapture`).
fn assert_near(what: &str, limit_mbit: f64, mut measure: impl FnMut() -> f64) -> f64 {
    let mut rate = measure();
    println!("{what}: {rate:.2} Mbit/s (limit {limit_mbit} Mbit/s)");
    assert!(
        rate <= limit_mbit * (1.0 + TOLERANCE),
        "{what}: {rate:.2} Mbit/s is above the {limit_mbit} Mbit/s limit"
    );
    if rate < limit_mbit * (1.0 - TOLERANCE) {
        rate = measure();
        println!("{what}, measured again: {rate:.2} Mbit/s");
    }
    assert!(
        (rate - limit_mbit).abs() <= limit_mbit * TOLERANCE,
        "{what}: {rate:.2} Mbit/s is not within 10% of {limit_mbit} Mbit/s"
    );
    rate
}

fn tc_json(sb: &Sandbox, args: &[&str]) -> Value {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    let out = sb.cmd("tc", &all);
    assert_ok_ctx(&out, &format!("tc {args:?}"));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The root token bucket of `dev`: its rate in bytes per second.
fn tbf_rate(sb: &Sandbox, dev: &str) -> Option<u64> {
    tc_json(sb, &["qdisc", "show", "dev", dev])
        .as_array()?
        .iter()
        .find(|q| q["kind"] == "tbf" && q["root"] == true)
        .and_then(|q| q["options"]["rate"].as_u64())
}

/// Where the ingress filter of `dev` redirects to, if anywhere.
fn redirect_of(sb: &Sandbox, dev: &str) -> Option<String> {
    let filters = tc_json(sb, &["filter", "show", "dev", dev, "ingress"]);
    filters.as_array()?.iter().find_map(|f| {
        f["options"]["actions"].as_array()?.iter().find_map(|a| {
            (a["kind"] == "mirred" && a["mirred_action"] == "redirect")
                .then(|| a["to_dev"].as_str().map(str::to_string))
                .flatten()
        })
    })
}

fn ifb_of(host_veth: &str) -> String {
    format!("ib{}", &host_veth[2..])
}

#[test]
fn a_tcp_stream_through_a_limited_endpoint_runs_within_ten_percent_of_the_limit_both_ways() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    sb.add_netns("c2");
    sb.connect(
        "web",
        "c1",
        &[
            "--bandwidth-in",
            "20mbit",
            "--bandwidth-out",
            "8mbit",
            "-p",
            "5001:5001",
        ],
    );
    // Its neighbour is not limited: the control.
    sb.connect("web", "c2", &["-p", "5002:5001"]);
    let outside = format!("{}:5000", inet.public_ip);
    let _from_outside = sb.spawn_in_netns(Some("internet"), PROBE, &["tcp-source", &outside], true);
    let _from_c1 = sb.spawn_in_netns(Some("c1"), PROBE, &["tcp-source", "0.0.0.0:5001"], true);
    let _from_c2 = sb.spawn_in_netns(Some("c2"), PROBE, &["tcp-source", "0.0.0.0:5001"], true);

    // Towards the container: the bucket on the host veth's egress.
    assert_near("towards c1", 20.0, || download(&sb, "c1", &outside));
    // From the container, through a published port: the ifb's bucket.
    let published = format!("{}:5001", inet.host_ip);
    assert_near("from c1", 8.0, || download(&sb, "internet", &published));

    // Unlimited, the same paths run far above both limits.
    let free_in = download(&sb, "c2", &outside);
    let free_out = download(&sb, "internet", &format!("{}:5002", inet.host_ip));
    println!("unlimited c2: towards {free_in:.1} Mbit/s, from {free_out:.1} Mbit/s");
    assert!(free_in > 40.0, "towards c2: {free_in:.1} Mbit/s");
    assert!(free_out > 16.0, "from c2: {free_out:.1} Mbit/s");
}

#[test]
fn limits_are_shown_live_in_the_kernel_go_with_the_endpoint_and_come_back_with_up() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");

    // A dry run prints the tc commands and changes nothing.
    let before = sb.snapshot();
    let plan = sb.berth_ok(&[
        "connect",
        "--dry-run",
        "web",
        "c1",
        "--bandwidth-in",
        "1.5gbit",
        "--bandwidth-out",
        "500kbit",
    ]);
    for line in [
        "tc qdisc replace dev vb6c39f18610fe root handle 1: tbf rate 1.5gbit burst 750000b limit 10125000b",
        "ip link add ib6c39f18610fe mtu 1500 group 1650786305 type ifb",
        "tc qdisc replace dev ib6c39f18610fe root handle 1: tbf rate 500kbit burst 16384b limit 19509b",
        "tc filter replace dev vb6c39f18610fe parent ffff: protocol all prio 1 handle 800::800 u32 match u32 0 0 action mirred egress redirect dev ib6c39f18610fe",
    ] {
        assert!(plan.contains(line), "{line}\nnot in:\n{plan}");
    }
    sb.snapshot().assert_same(&before, "connect --dry-run");

    let e = sb.connect(
        "web",
        "c1",
        &["--bandwidth-in", "1.5gbit", "--bandwidth-out", "500kbit"],
    );
    let veth = e["host_ifname"].as_str().unwrap().to_string();
    let ifb = ifb_of(&veth);
    assert_eq!(e["bandwidth"]["in"]["rate"], 1_500_000_000, "{e}");
    assert_eq!(e["bandwidth"]["out"]["rate"], 500_000, "{e}");

    // The kernel, through tc: bytes per second.
    let shaped = |sb: &Sandbox| {
        (
            tbf_rate(sb, &veth),
            tbf_rate(sb, &ifb),
            redirect_of(sb, &veth),
        )
    };
    let want = (Some(187_500_000), Some(62_500), Some(ifb.clone()));
    assert_eq!(shaped(&sb), want);
    let link = sb.link(None, &ifb).expect("the ifb");
    assert_eq!(link["group"], "1650786305", "{link}");

    // ps and inspect, text and JSON.
    let ps = sb.berth_ok(&["ps"]);
    assert!(ps.contains("BANDWIDTH"), "{ps}");
    assert!(ps.contains("in 1.5gbit, out 500kbit"), "{ps}");
    let listed = sb.endpoints();
    assert_eq!(listed[0]["bandwidth"]["out"]["burst"], 16_384, "{listed:?}");
    let inspect = sb.berth_ok(&["network", "inspect", "web"]);
    assert!(inspect.contains("in 1.5gbit, out 500kbit"), "{inspect}");
    let inspected = sb.berth_json(&["network", "inspect", "web", "--json"]);
    assert_eq!(
        inspected[0]["endpoints"][0]["bandwidth"]["in"]["rate"],
        1_500_000_000
    );
    let formatted = sb.berth_ok(&["ps", "--format", "{{.Name}} {{.Limits}}"]);
    assert_eq!(formatted.trim(), "c1 in 1.5gbit, out 500kbit");

    // The veth deleted by hand: `up` re-creates it shaped as before, with
    // the ifb that outlived it.
    sb.sh_ok(&format!("ip link del {veth}"));
    assert!(sb.wait_link_gone(None, &veth, std::time::Duration::from_secs(5)));
    let up = sb.berth_ok(&["up"]);
    assert!(up.contains("re-created the veth"), "{up}");
    assert_eq!(shaped(&sb), want, "after up");
    // The ifb deleted by hand: the container's traffic would go nowhere;
    // `up` makes it again and points the redirect at it.
    sb.sh_ok(&format!("ip link del {ifb}"));
    let up = sb.berth_ok(&["up"]);
    assert!(up.contains(&format!("re-created the ifb {ifb}")), "{up}");
    assert_eq!(shaped(&sb), want, "after the second up");
    sb.assert_ping(Some("c1"), "10.90.0.1");

    // The endpoint goes, and its ifb with it.
    sb.berth_ok(&["disconnect", "web", "c1"]);
    assert!(sb.link(None, &veth).is_none());
    assert!(
        sb.link(None, &ifb).is_none(),
        "the ifb outlived its endpoint"
    );
}

#[test]
fn a_deleted_namespace_takes_its_veth_and_the_next_command_its_ifb() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    let e = sb.connect("web", "c1", &["--bandwidth-out", "10mbit"]);
    let veth = e["host_ifname"].as_str().unwrap().to_string();
    let ifb = ifb_of(&veth);
    assert!(sb.link(None, &ifb).is_some());
    sb.sh_ok("ip netns del c1");
    assert!(sb.wait_link_gone(None, &veth, std::time::Duration::from_secs(10)));
    // The ifb is the host's: still there until berth looks.
    assert!(sb.link(None, &ifb).is_some());
    let gc = sb.berth_ok(&["gc"]);
    assert!(gc.contains("its namespace is gone"), "{gc}");
    assert!(sb.link(None, &ifb).is_none(), "{gc}");
    assert!(sb.endpoints().is_empty());
}

#[test]
fn run_limits_its_sandbox_and_takes_the_ifb_away() {
    let sb = Sandbox::new();
    let name = sb.berth_ok(&[
        "run",
        "-d",
        "--name",
        "r1",
        "--bandwidth-in",
        "30mbit",
        "--bandwidth-out",
        "3mbit",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(name.trim(), "r1");
    let e = sb
        .endpoints()
        .into_iter()
        .find(|e| e["name"] == "r1")
        .expect("r1 listed");
    let veth = e["host_ifname"].as_str().unwrap().to_string();
    let ifb = ifb_of(&veth);
    assert_eq!(tbf_rate(&sb, &veth), Some(3_750_000));
    assert_eq!(tbf_rate(&sb, &ifb), Some(375_000));
    assert_eq!(redirect_of(&sb, &veth), Some(ifb.clone()));
    sb.berth_ok(&["stop", "r1"]);
    assert!(sb.link(None, &ifb).is_none(), "the run's ifb stayed");
    assert!(sb.endpoints().is_empty());
}

#[test]
fn bad_rates_are_refused_with_one_line_and_nothing_changed() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    for (args, needle) in [
        (
            vec!["connect", "web", "c1", "--bandwidth-in", "10furlongs"],
            "10furlongs",
        ),
        (
            vec!["connect", "web", "c1", "--bandwidth-out", "0"],
            "\"0\"",
        ),
        (
            vec!["connect", "web", "c1", "--bandwidth-in=-1mbit"],
            "-1mbit",
        ),
        (
            vec!["connect", "web", "c1", "--bandwidth-in", "99tbit"],
            "99tbit",
        ),
        (
            vec![
                "run",
                "--net",
                "none",
                "--bandwidth-in",
                "1mbit",
                "--",
                "true",
            ],
            "--net none",
        ),
        (
            vec![
                "run",
                "--net",
                "host",
                "--bandwidth-out",
                "1mbit",
                "--",
                "true",
            ],
            "--net host",
        ),
    ] {
        sb.assert_refused(&args, needle);
    }
}

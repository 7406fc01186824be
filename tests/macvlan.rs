//! End-to-end tests of macvlan and ipvlan networks through the CLI: the
//! parent is one end of a veth whose peer is in a "LAN" namespace (this
//! kernel has no dummy links), containers are namespaces with a child of
//! the parent. Traffic container <-> LAN and container <-> container,
//! the kernel's own view of the children (kind, mode, group, MAC), the
//! refusals, the reconcile's view of a lost parent or child, and a
//! teardown that leaves the sandbox as it was.

mod util;

use serde_json::Value;
use util::*;

const LAN_IP: &str = "192.168.50.1";
const SUBNET: &str = "192.168.50.0/24";

/// The LAN: namespace `lan` with `lanif` (192.168.50.1/24, the network's
/// gateway) whose peer `up0` is the parent, up, in the sandbox host; and
/// the container namespaces `c1` and `c2`.
fn lan() -> Sandbox {
    let sb = Sandbox::new();
    sb.add_netns("lan");
    sb.add_netns("c1");
    sb.add_netns("c2");
    sb.sh_ok(&format!(
        "ip link add up0 type veth peer name lanif netns lan && ip link set up0 up && \
         ip -n lan link set lanif up && ip -n lan addr add {LAN_IP}/24 dev lanif"
    ));
    sb
}

/// `ip -d -j link show DEV` in `netns`.
fn details(sb: &Sandbox, netns: &str, dev: &str) -> Value {
    sb.ip_json_in(Some(netns), &["-d", "link", "show", dev])[0].clone()
}

fn create(sb: &Sandbox, name: &str, driver: &str, mode: Option<&str>) {
    let mut args = vec![
        "network",
        "create",
        name,
        "--driver",
        driver,
        "--parent",
        "up0",
        "--subnet",
        SUBNET,
        "--gateway",
        LAN_IP,
    ];
    if let Some(m) = mode {
        args.extend(["--mode", m]);
    }
    sb.berth_ok(&args);
}

/// Checks a child as the kernel shows it and returns its address.
fn check_child(sb: &Sandbox, netns: &str, ep: &Value, kind: &str, mode: &str) -> String {
    assert_eq!(ep["ifname"], "eth0", "{ep}");
    let link = details(sb, netns, "eth0");
    assert_eq!(link["linkinfo"]["info_kind"], kind, "{link}");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], mode, "{link}");
    assert!(link["flags"].to_string().contains("\"UP\""), "{link}");
    assert_eq!(link["address"], ep["mac"], "MAC reported vs kernel: {link}");
    // berth's link group marks it as berth's (the network's group).
    let group = link["group"].as_str().unwrap_or_default().to_string();
    assert!(group != "default" && !group.is_empty(), "{link}");
    let ip = field(ep, "ip");
    assert_eq!(sb.ipv4_addrs(Some(netns), "eth0"), vec![format!("{ip}/24")]);
    let defaults: Vec<Value> = sb
        .routes(Some(netns))
        .into_iter()
        .filter(|r| r["dst"] == "default")
        .collect();
    assert_eq!(defaults.len(), 1, "{defaults:?}");
    assert_eq!(defaults[0]["gateway"], LAN_IP, "{defaults:?}");
    let autoconf = sb.in_netns(netns, "cat", &["/proc/sys/net/ipv6/conf/eth0/autoconf"]);
    assert_eq!(stdout(&autoconf).trim(), "0", "IPv6 autoconf stays off");
    // Nothing of it on the host: no veth, no bridge.
    let host = sb.link_names(None);
    assert!(
        host.iter()
            .all(|l| !l.starts_with("vb") && !l.starts_with("vc") && !l.starts_with("berth")),
        "{host:?}"
    );
    ip
}

/// TCP both ways between a container and the LAN, and between the two
/// containers; the LAN sees the containers' own addresses.
fn traffic(sb: &Sandbox, ip1: &str, ip2: &str) {
    let _lan = sb.tcp_server(Some("lan"), &format!("{LAN_IP}:8080"));
    let _c1 = sb.tcp_server(Some("c1"), &format!("{ip1}:8081"));
    let _c2 = sb.tcp_server(Some("c2"), &format!("{ip2}:8082"));
    assert_eq!(sb.assert_tcp(Some("c1"), &format!("{LAN_IP}:8080")), ip1);
    assert_eq!(sb.assert_tcp(Some("c2"), &format!("{LAN_IP}:8080")), ip2);
    assert_eq!(sb.assert_tcp(Some("lan"), &format!("{ip1}:8081")), LAN_IP);
    assert_eq!(sb.assert_tcp(Some("c1"), &format!("{ip2}:8082")), ip1);
    assert_eq!(sb.assert_tcp(Some("c2"), &format!("{ip1}:8081")), ip2);
}

/// Whether the kernel can make ipvlan links (CONFIG_IPVLAN); a SKIP line
/// says so when it cannot.
fn ipvlan_supported(sb: &Sandbox, test: &str) -> bool {
    let out = sb.sh("ip link add ipvltest link up0 type ipvlan mode l2 && ip link del ipvltest");
    if !out.status.success() {
        crate::skip_line!(
            "SKIP {test}: this kernel cannot make ipvlan links ({})",
            stderr(&out).trim()
        );
        return false;
    }
    true
}

fn round_trip(driver: &str, mode: Option<&str>, kernel_mode: &str) {
    let sb = lan();
    if driver == "ipvlan" && !ipvlan_supported(&sb, "ipvlan round trip") {
        return;
    }
    let before = sb.snapshot();
    create(&sb, "lan", driver, mode);
    let n = sb.network("lan");
    assert_eq!(n["driver"], driver, "{n}");
    assert_eq!(n["parent"], "up0", "{n}");
    assert_eq!(n["mode"], kernel_mode, "{n}");
    assert_eq!(n["dns"], false, "no DNS on a {driver} network: {n}");
    let e1 = sb.connect("lan", "c1", &[]);
    let e2 = sb.connect("lan", "c2", &[]);
    let ip1 = check_child(&sb, "c1", &e1, driver, kernel_mode);
    let ip2 = check_child(&sb, "c2", &e2, driver, kernel_mode);
    assert_eq!(
        (ip1.as_str(), ip2.as_str()),
        ("192.168.50.2", "192.168.50.3")
    );
    if driver == "ipvlan" {
        let parent = sb.link(None, "up0").unwrap();
        assert_eq!(
            e1["mac"], parent["address"],
            "an ipvlan child has its parent's MAC"
        );
    }
    let ps = sb.endpoints();
    assert!(
        ps.iter()
            .all(|e| e["status"] == "up" || e.get("status").is_none()),
        "{ps:?}"
    );
    let ls = sb.berth_ok(&["network", "ls"]);
    assert!(
        ls.contains(&format!("{driver} {kernel_mode} on up0")),
        "{ls}"
    );
    traffic(&sb, &ip1, &ip2);
    // No firewall for these networks, as netavark gives them none.
    let nft = sb.cmd("nft", &["list", "ruleset"]);
    assert!(!stdout(&nft).contains("berth"), "{}", stdout(&nft));

    sb.berth_ok(&["disconnect", "lan", "c1"]);
    assert!(
        sb.link(Some("c1"), "eth0").is_none(),
        "disconnect deletes the child"
    );
    sb.berth_ok(&["network", "rm", "-f", "lan"]);
    assert!(
        sb.link(Some("c2"), "eth0").is_none(),
        "network rm -f deletes the children"
    );
    sb.snapshot().assert_same(&before, "after teardown");
}

#[test]
fn macvlan_containers_reach_the_lan_and_each_other_and_teardown_leaves_nothing() {
    round_trip("macvlan", None, "bridge");
}

#[test]
fn ipvlan_l2_containers_reach_the_lan_and_each_other() {
    round_trip("ipvlan", Some("l2"), "l2");
}

#[test]
fn ipvlan_l3_containers_reach_each_other_and_a_routed_lan() {
    let sb = lan();
    if !ipvlan_supported(&sb, "ipvlan l3") {
        return;
    }
    let before = sb.snapshot();
    sb.berth_ok(&[
        "network",
        "create",
        "l3",
        "--driver",
        "ipvlan",
        "--parent",
        "up0",
        "--mode",
        "l3",
        "--subnet",
        "10.77.0.0/24",
    ]);
    let e1 = sb.connect("l3", "c1", &[]);
    let e2 = sb.connect("l3", "c2", &[]);
    let link = details(&sb, "c1", "eth0");
    assert_eq!(link["linkinfo"]["info_kind"], "ipvlan", "{link}");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "l3", "{link}");
    let (ip1, ip2) = (field(&e1, "ip"), field(&e2, "ip"));
    let _c2 = sb.tcp_server(Some("c2"), &format!("{ip2}:8082"));
    assert_eq!(sb.assert_tcp(Some("c1"), &format!("{ip2}:8082")), ip1);
    // In l3 mode the parent's namespace routes for its children: the LAN
    // reaches them through the host, which reaches the LAN on the parent.
    sb.sh_ok(
        "ip addr add 192.168.50.254/24 dev up0 && ip -n lan route add 10.77.0.0/24 via 192.168.50.254",
    );
    let _lan = sb.tcp_server(Some("lan"), &format!("{LAN_IP}:8080"));
    assert_eq!(sb.assert_tcp(Some("c1"), &format!("{LAN_IP}:8080")), ip1);
    sb.sh_ok("ip addr del 192.168.50.254/24 dev up0");
    sb.berth_ok(&["network", "rm", "-f", "l3"]);
    sb.snapshot().assert_same(&before, "after teardown");
}

#[test]
fn bad_parents_modes_and_published_ports_are_refused_in_one_line() {
    let sb = lan();
    for (args, names) in [
        (vec!["--driver", "macvlan"], "parent"),
        (
            vec!["--driver", "macvlan", "--parent", "nosuch0"],
            "nosuch0",
        ),
        (
            vec!["--driver", "macvlan", "--parent", "up0", "--mode", "l2"],
            "l2",
        ),
        (
            vec!["--driver", "ipvlan", "--parent", "up0", "--mode", "vepa"],
            "vepa",
        ),
        (vec!["--driver", "bridge", "--parent", "up0"], "up0"),
        (
            vec!["--driver", "macvlan", "--parent", "up0", "--uplink", "up0"],
            "--uplink",
        ),
        (vec!["--driver", "overlay", "--parent", "up0"], "overlay"),
    ] {
        let mut all = vec!["network", "create", "x", "--subnet", SUBNET];
        all.extend(args);
        sb.assert_refused(&all, names);
    }
    create(&sb, "mv", "macvlan", None);
    sb.assert_refused(&["connect", "mv", "c1", "-p", "8080:80"], "\"mv\"");
    sb.assert_refused(
        &["connect", "mv", "c1", "--bandwidth-in", "10mbit"],
        "\"mv\"",
    );
}

#[test]
fn the_reconcile_recreates_a_lost_child_and_drops_endpoints_whose_parent_or_namespace_went() {
    let sb = lan();
    create(&sb, "mv", "macvlan", None);
    let e1 = sb.connect("mv", "c1", &[]);
    sb.connect("mv", "c2", &[]);
    // A child deleted by hand is re-created, as a lost veth is.
    sb.sh_ok("ip -n c1 link del eth0");
    let up = sb.berth_ok(&["up"]);
    assert!(
        up.contains("re-created the macvlan interface eth0 of mv/c1"),
        "{up}"
    );
    let link = details(&sb, "c1", "eth0");
    assert_eq!(link["address"], e1["mac"], "{link}");
    assert_eq!(
        sb.ipv4_addrs(Some("c1"), "eth0"),
        vec![format!("{}/24", field(&e1, "ip"))]
    );
    // A namespace that is gone takes its endpoint with it.
    sb.sh_ok("ip netns del c2");
    let up = sb.berth_ok(&["up"]);
    assert!(
        up.contains("removed endpoint mv/c2: its namespace is gone"),
        "{up}"
    );
    // The kernel deletes the children with their parent; the endpoints go.
    sb.sh_ok("ip link del up0");
    assert!(sb.link(Some("c1"), "eth0").is_none());
    let up = sb.berth_ok(&["up"]);
    assert!(
        up.contains("removed endpoint mv/c1: its parent interface up0 is gone"),
        "{up}"
    );
    assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
    let ls = sb.berth_ok(&["network", "ls"]);
    assert!(ls.contains("parent missing"), "{ls}");
    // A connect says the parent is missing rather than making anything.
    sb.assert_refused(&["connect", "mv", "c1"], "up0");
}

/// berth as a CNI plugin with `"driver": "macvlan"`: ADD makes the child
/// and answers with it as the only interface; CHECK accepts it; DEL takes
/// it and its lease away.
#[test]
fn cni_add_check_and_del_of_a_macvlan_attachment() {
    use std::io::Write;
    let sb = lan();
    let before = sb.snapshot();
    let conf = |prev: Option<&Value>| {
        let mut c = serde_json::json!({
            "cniVersion": "1.0.0", "name": "lan", "type": "berth",
            "driver": "macvlan", "parent": "up0", "mode": "vepa",
            "subnet": SUBNET, "gateway": LAN_IP
        });
        if let Some(p) = prev {
            c["prevResult"] = p.clone();
        }
        c.to_string()
    };
    let run = |command: &str, stdin: String| {
        let mut c = sb.berth_command(&[]);
        c.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", "c1id")
            .env("CNI_NETNS", "/run/netns/c1")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("ADD", conf(None));
    assert_ok_ctx(&out, "CNI ADD");
    let result: Value = parse_json(&out, "ADD result");
    let ifs = result["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 1, "only the child: {result}");
    assert_eq!(ifs[0]["name"], "eth0", "{result}");
    assert_eq!(result["ips"][0]["interface"], 0, "{result}");
    assert_eq!(result["ips"][0]["address"], "192.168.50.2/24", "{result}");
    assert_eq!(result["ips"][0]["gateway"], LAN_IP, "{result}");
    let link = details(&sb, "c1", "eth0");
    assert_eq!(link["linkinfo"]["info_kind"], "macvlan", "{link}");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "vepa", "{link}");
    assert_eq!(link["address"], ifs[0]["mac"], "{link}");
    let _lan = sb.tcp_server(Some("lan"), &format!("{LAN_IP}:8080"));
    assert_eq!(
        sb.assert_tcp(Some("c1"), &format!("{LAN_IP}:8080")),
        "192.168.50.2"
    );
    assert_ok_ctx(&run("CHECK", conf(Some(&result))), "CNI CHECK");
    assert_ok_ctx(&run("DEL", conf(None)), "CNI DEL");
    assert!(sb.link(Some("c1"), "eth0").is_none());
    assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
    sb.berth_ok(&["network", "rm", "lan"]);
    sb.snapshot().assert_same(&before, "after DEL");
}

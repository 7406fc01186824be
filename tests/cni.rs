//! berth as a CNI plugin, driven the way a runtime drives it: the `CNI_*`
//! environment and the network configuration on stdin, one process per
//! verb. Every verb and version, the error codes, published ports from
//! outside and from the host, GC, and concurrent ADDs; dual-stack and
//! IPv6-only networks with traffic over IPv6, in both br_netfilter
//! modes. Each test runs in its own sandbox.

mod util;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::cni::{cni, internet6, Run, HOST6, OUTSIDE6};
use util::*;

const HOST: &str = "203.0.113.1";

fn conf(version: &str, extra: Value) -> String {
    let mut c = json!({
        "cniVersion": version,
        "name": "cnet",
        "type": "berth",
        "subnet": "10.77.0.0/24",
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

/// ADD of container `id` in `/run/netns/NETNS` as eth0.
fn add(sb: &Sandbox, id: &str, netns: &str, conf: &str) -> Run {
    let path = format!("/run/netns/{netns}");
    cni(
        sb,
        "ADD",
        &[
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", &path),
            ("CNI_IFNAME", "eth0"),
        ],
        conf,
    )
}

fn add_ok(sb: &Sandbox, id: &str, netns: &str, conf: &str) -> Value {
    let r = add(sb, id, netns, conf);
    assert_eq!(r.code, 0, "ADD {id}: {} {}", r.out, r.err);
    // berth's DNS server, started by the plugin, must not take itself for
    // a plugin (the CNI_* variables are not passed on).
    assert!(!r.err.contains("did not start"), "ADD {id}: {}", r.err);
    r.out
}

fn del(sb: &Sandbox, id: &str, netns: &str, conf: &str) -> Run {
    let path = format!("/run/netns/{netns}");
    cni(
        sb,
        "DEL",
        &[
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", &path),
            ("CNI_IFNAME", "eth0"),
        ],
        conf,
    )
}

fn assert_error(r: &Run, code: u64, what: &str) {
    assert_ne!(r.code, 0, "{what}: expected failure, got {}", r.out);
    assert_eq!(r.out["code"], code, "{what}: {}", r.out);
    assert!(
        r.out["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {}",
        r.out
    );
    assert!(r.out["cniVersion"].is_string(), "{what}: {}", r.out);
}

/// berth's published-port map elements, all maps of both families
/// together.
fn map_elements(sb: &Sandbox) -> usize {
    map_elements_of(sb, &["4", "6"])
}

/// The elements of the published-port maps of the families named (`4`,
/// `6`).
fn map_elements_of(sb: &Sandbox, families: &[&str]) -> usize {
    families
        .iter()
        .flat_map(|f| {
            ["", "_any", "_ranges"]
                .into_iter()
                .map(move |k| format!("published{f}{k}"))
        })
        .map(|m| {
            let out = sb.cmd("nft", &["-j", "list", "map", "inet", "berth", &m]);
            if !out.status.success() {
                return 0;
            }
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            v["nftables"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|o| o.get("map"))
                .and_then(|m| m.get("elem"))
                .and_then(|e| e.as_array().map(|a| a.len()))
                .unwrap_or(0)
        })
        .sum()
}

fn cni_endpoints(sb: &Sandbox) -> Vec<Value> {
    sb.endpoints()
        .into_iter()
        .filter(|e| e["owner"] == "cni")
        .collect()
}

#[test]
fn version_lists_the_supported_versions() {
    let sb = Sandbox::new();
    let r = cni(&sb, "VERSION", &[], r#"{"cniVersion":"1.0.0"}"#);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out["cniVersion"], "1.0.0");
    assert_eq!(
        r.out["supportedVersions"],
        json!(["0.4.0", "1.0.0", "1.1.0"])
    );
}

#[test]
fn add_result_has_the_shape_of_each_version() {
    let sb = Sandbox::new();
    for (i, version) in ["0.4.0", "1.0.0", "1.1.0"].iter().enumerate() {
        let netns = format!("c{i}");
        sb.add_netns(&netns);
        let c = conf(version, json!({}));
        let out = add_ok(&sb, &format!("id{i}"), &netns, &c);
        assert_eq!(out["cniVersion"], *version);
        let ifs = out["interfaces"].as_array().unwrap();
        assert_eq!(ifs.len(), 2, "{out}");
        assert!(ifs[0]["name"].as_str().unwrap().starts_with("vb"));
        assert!(ifs[0]["sandbox"].is_null());
        assert_eq!(ifs[1]["name"], "eth0");
        assert_eq!(ifs[1]["sandbox"], format!("/run/netns/{netns}"));
        let ip = &out["ips"][0];
        let address = ip["address"].as_str().unwrap();
        assert!(
            address.starts_with("10.77.0.") && address.ends_with("/24"),
            "{out}"
        );
        assert_eq!(ip["gateway"], "10.77.0.1");
        assert_eq!(ip["interface"], 1);
        // 0.4.0 tags each address with its family; 1.0.0 dropped the field.
        if *version == "0.4.0" {
            assert_eq!(ip["version"], "4");
        } else {
            assert!(ip.get("version").is_none(), "{out}");
        }
        assert_eq!(
            out["routes"],
            json!([{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}])
        );
        assert!(out["dns"].is_object());
        // The kernel agrees with the result.
        assert_eq!(
            sb.ipv4_addrs(Some(&netns), "eth0"),
            vec![address.to_string()]
        );
        let mac = sb.link(Some(&netns), "eth0").unwrap()["address"].clone();
        assert_eq!(mac, ifs[1]["mac"]);
        let host = sb.link(None, ifs[0]["name"].as_str().unwrap()).unwrap();
        assert_eq!(host["address"], ifs[0]["mac"]);
    }
    // Attachments are ordinary endpoints, marked with the runtime's key.
    let eps = cni_endpoints(&sb);
    assert_eq!(eps.len(), 3);
    assert_eq!(eps[0]["ifname"], "eth0");
    assert!(eps.iter().any(|e| e["container_id"] == "id1"));
    let inspected = sb.berth_json(&["network", "inspect", "cnet", "--json"])[0].clone();
    assert_eq!(inspected["endpoints"].as_array().unwrap().len(), 3);
    assert_eq!(inspected["endpoints"][0]["ifname"], "eth0");
    sb.assert_ping(Some("c0"), "10.77.0.1");
}

#[test]
fn add_twice_fails_and_del_is_idempotent() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    let c = conf("1.0.0", json!({}));
    let out = add_ok(&sb, "abc", "c1", &c);
    let veth = out["interfaces"][0]["name"].as_str().unwrap().to_string();
    let again = add(&sb, "abc", "c1", &c);
    assert_error(&again, 102, "second ADD");
    assert_eq!(cni_endpoints(&sb).len(), 1);

    let r = del(&sb, "abc", "c1", &c);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert!(r.out.is_null());
    assert!(sb.link(None, &veth).is_none(), "veth {veth} left behind");
    assert!(sb.link(Some("c1"), "eth0").is_none());
    assert!(sb.endpoints().is_empty());
    let r = del(&sb, "abc", "c1", &c);
    assert_eq!(r.code, 0, "second DEL: {} {}", r.out, r.err);
    // DEL of something never added, and DEL with no state at all.
    assert_eq!(del(&sb, "never", "c1", &c).code, 0);
}

#[test]
fn del_succeeds_when_the_netns_is_gone() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    let c = conf("1.1.0", json!({}));
    add_ok(&sb, "gone1", "c1", &c);
    sb.sh_ok("ip netns del c1");
    let r = del(&sb, "gone1", "c1", &c);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert!(sb.endpoints().is_empty());
    // And with CNI_NETNS unset, as runtimes do once the namespace is gone.
    sb.add_netns("c2");
    add_ok(&sb, "gone2", "c2", &c);
    sb.sh_ok("ip netns del c2");
    let r = cni(
        &sb,
        "DEL",
        &[("CNI_CONTAINERID", "gone2"), ("CNI_IFNAME", "eth0")],
        &c,
    );
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert!(sb.endpoints().is_empty());
    // The address is free again.
    sb.add_netns("c3");
    add_ok(&sb, "again", "c3", &c);
}

#[test]
fn gc_keeps_exactly_the_valid_attachments() {
    let sb = Sandbox::new();
    let c = conf("1.1.0", json!({}));
    let mut veths = Vec::new();
    for i in 0..5 {
        let netns = format!("g{i}");
        sb.add_netns(&netns);
        let out = add_ok(
            &sb,
            &format!("ctr{i}"),
            &netns,
            &conf(
                "1.1.0",
                json!({"runtimeConfig": {"portMappings": [
                    {"hostPort": 9000 + i, "containerPort": 80, "protocol": "tcp"}]}}),
            ),
        );
        veths.push(out["interfaces"][0]["name"].as_str().unwrap().to_string());
    }
    assert_eq!(map_elements(&sb), 5);
    // One of the stale ones has lost its namespace already.
    sb.sh_ok("ip netns del g4");
    let gc = json!({
        "cniVersion": "1.1.0", "name": "cnet", "type": "berth",
        "cni.dev/valid-attachments": [
            {"containerID": "ctr1", "ifname": "eth0"},
            {"containerID": "ctr3", "ifname": "eth0"},
        ]
    });
    let r = cni(&sb, "GC", &[], &gc.to_string());
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    let mut kept: Vec<String> = cni_endpoints(&sb)
        .iter()
        .map(|e| e["container_id"].as_str().unwrap().to_string())
        .collect();
    kept.sort();
    assert_eq!(kept, ["ctr1", "ctr3"]);
    for (i, veth) in veths.iter().enumerate() {
        assert_eq!(
            sb.link(None, veth).is_some(),
            i == 1 || i == 3,
            "veth {veth} of ctr{i}"
        );
    }
    assert_eq!(map_elements(&sb), 2);
    // A second GC finds nothing; the older key is understood too.
    let old = json!({
        "cniVersion": "1.1.0", "name": "cnet", "type": "berth",
        "cni.dev/attachments": [{"containerID": "ctr1", "ifname": "eth0"}]
    });
    assert_eq!(cni(&sb, "GC", &[], &old.to_string()).code, 0);
    assert_eq!(cni_endpoints(&sb).len(), 1);
    // Removed attachments' addresses are leased again.
    let r = del(&sb, "ctr1", "g1", &c);
    assert_eq!(r.code, 0);
    assert!(sb.endpoints().is_empty());
}

#[test]
fn gc_of_1000_stale_attachments_takes_under_2_seconds() {
    let sb = Sandbox::new();
    let n = 1000;
    sb.sh_ok(&format!("for i in $(seq 1 {n}); do ip netns add s$i; done"));
    let c = conf("1.1.0", json!({"subnet": "10.78.0.0/20"}));
    // One ADD after another (in parallel they only queue on berth's lock).
    let script = format!(
        "for i in $(seq 1 {n}); do printf '%s' '{c}' | CNI_COMMAND=ADD CNI_CONTAINERID=stale$i \
         CNI_NETNS=/run/netns/s$i CNI_IFNAME=eth0 BERTH_STATE_DIR={STATE_DIR} \
         BERTH_NFT_MAX_KERNEL={MIN_KERNEL} {BERTH} >/dev/null || echo FAIL$i; done"
    );
    let out = run_timeout(
        sb.command(None, "sh", &["-c", &script]),
        Duration::from_secs(600),
    );
    assert!(
        !stdout(&out).contains("FAIL"),
        "ADD failed: {}",
        stdout(&out)
    );
    assert_eq!(cni_endpoints(&sb).len(), n);
    let gc = json!({"cniVersion": "1.1.0", "name": "cnet", "type": "berth",
                    "cni.dev/valid-attachments": []});
    let start = Instant::now();
    let r = cni(&sb, "GC", &[], &gc.to_string());
    let took = start.elapsed();
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    eprintln!("GC of {n} stale attachments (veths alive): {took:?}");
    assert!(sb.endpoints().is_empty());
    assert_eq!(sb.host_veth_count(), 0);
    assert!(took < Duration::from_secs(2), "GC took {took:?}");
}

#[test]
fn status_reports_whether_berth_can_serve() {
    let sb = Sandbox::new();
    let c = conf("1.1.0", json!({}));
    let r = cni(&sb, "STATUS", &[], &c);
    assert_eq!(r.code, 0, "no state yet: {} {}", r.out, r.err);
    sb.add_netns("c1");
    add_ok(&sb, "s1", "c1", &c);
    assert_eq!(cni(&sb, "STATUS", &[], &c).code, 0);
    sb.sh_ok("nft delete table inet berth");
    let r = cni(&sb, "STATUS", &[], &c);
    assert_error(&r, 50, "STATUS without the table");
    sb.berth_ok(&["up"]);
    assert_eq!(cni(&sb, "STATUS", &[], &c).code, 0);
    // The anti-spoofing table too.
    sb.sh_ok("nft delete table bridge berth");
    let r = cni(&sb, "STATUS", &[], &c);
    assert_error(&r, 50, "anti-spoofing table is missing");
    sb.berth_ok(&["up"]);
    assert_eq!(cni(&sb, "STATUS", &[], &c).code, 0);
}

#[test]
fn check_verifies_the_attachment_against_prev_result() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    let ports =
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let c = conf("1.0.0", json!({"runtimeConfig": ports}));
    let result = add_ok(&sb, "chk", "c1", &c);
    let env = [
        ("CNI_CONTAINERID", "chk"),
        ("CNI_NETNS", "/run/netns/c1"),
        ("CNI_IFNAME", "eth0"),
    ];
    let with_prev = conf(
        "1.0.0",
        json!({"runtimeConfig": ports, "prevResult": result}),
    );
    let r = cni(&sb, "CHECK", &env, &with_prev);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    // Without prevResult the config is incomplete.
    assert_error(&cni(&sb, "CHECK", &env, &c), 7, "CHECK without prevResult");
    // A mapping the runtime asks for that berth does not publish.
    let other = conf(
        "1.0.0",
        json!({"runtimeConfig": {"portMappings": []}, "prevResult": result}),
    );
    assert_error(
        &cni(&sb, "CHECK", &env, &other),
        103,
        "CHECK with other ports",
    );
    // A map element deleted by hand.
    sb.sh_ok("nft delete element inet berth published4_any '{ tcp . 8080 }'");
    let r = cni(&sb, "CHECK", &env, &with_prev);
    assert_error(&r, 103, "CHECK without the map element");
    assert!(
        r.out["msg"].as_str().unwrap().contains("published4_any"),
        "{}",
        r.out
    );
    sb.berth_ok(&["up"]);
    let r = cni(&sb, "CHECK", &env, &with_prev);
    assert_eq!(r.code, 0, "after up: {} {}", r.out, r.err);
    // The address removed inside the container.
    let address = result["ips"][0]["address"].as_str().unwrap();
    sb.sh_ok(&format!("ip -n c1 addr del {address} dev eth0"));
    assert_error(
        &cni(&sb, "CHECK", &env, &with_prev),
        103,
        "CHECK after addr del",
    );
    // An attachment berth does not know.
    let unknown = [
        ("CNI_CONTAINERID", "nope"),
        ("CNI_NETNS", "/run/netns/c1"),
        ("CNI_IFNAME", "eth0"),
    ];
    assert_error(
        &cni(&sb, "CHECK", &unknown, &with_prev),
        3,
        "CHECK of unknown",
    );
}

#[test]
fn cni_args_and_runtime_config_give_static_address_and_mac() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    sb.add_netns("c2");
    sb.add_netns("c3");
    let c = conf("1.0.0", json!({}));
    let r = cni(
        &sb,
        "ADD",
        &[
            ("CNI_CONTAINERID", "a1"),
            ("CNI_NETNS", "/run/netns/c1"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.77.0.50;MAC=02:00:00:aa:bb:cc",
            ),
        ],
        &c,
    );
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert_eq!(r.out["ips"][0]["address"], "10.77.0.50/24");
    assert_eq!(r.out["interfaces"][1]["mac"], "02:00:00:aa:bb:cc");
    assert_eq!(sb.ipv4_addrs(Some("c1"), "eth0"), ["10.77.0.50/24"]);
    // An unknown key without IgnoreUnknown is refused, and nothing is made.
    let r = cni(
        &sb,
        "ADD",
        &[
            ("CNI_CONTAINERID", "a2"),
            ("CNI_NETNS", "/run/netns/c2"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "K8S_POD_NAMESPACE=default"),
        ],
        &c,
    );
    assert_error(&r, 4, "unknown CNI_ARGS key");
    assert!(sb.link(Some("c2"), "eth0").is_none());
    // The capabilities' way: runtimeConfig ips and mac.
    let rc = conf(
        "1.0.0",
        json!({"runtimeConfig": {"ips": ["10.77.0.60/24"], "mac": "02:00:00:00:00:60"}}),
    );
    let out = add_ok(&sb, "a3", "c3", &rc);
    assert_eq!(out["ips"][0]["address"], "10.77.0.60/24");
    assert_eq!(out["interfaces"][1]["mac"], "02:00:00:00:00:60");
    // An address already leased is refused with berth's own code.
    sb.add_netns("c4");
    let dup = conf(
        "1.0.0",
        json!({"runtimeConfig": {"ips": ["10.77.0.60/24"]}}),
    );
    assert_error(&add(&sb, "a4", "c4", &dup), 101, "duplicate static address");
}

#[test]
fn port_mappings_answer_from_outside_and_from_the_host() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.add_netns("web");
    let c = conf(
        "0.4.0",
        json!({"runtimeConfig": {"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "::"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]}}),
    );
    let out = add_ok(&sb, "web1", "web", &c);
    let ip = out["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let _srv = sb.tcp_server(Some("web"), "0.0.0.0:80");
    let _udp = sb.udp_server(Some("web"), "0.0.0.0:53");
    // From outside, the client's address is preserved.
    let seen = sb.assert_tcp(Some(&inet.netns), &format!("{HOST}:8080"));
    assert_eq!(seen, inet.peer_ip);
    sb.assert_udp(Some(&inet.netns), &format!("{HOST}:5353"));
    // From the host, through its address and through 127.0.0.1.
    sb.assert_tcp(None, &format!("{HOST}:8080"));
    sb.assert_tcp(None, "127.0.0.1:8080");
    // The container itself is reachable at its address from the host.
    sb.assert_tcp(None, &format!("{ip}:80"));
    assert_eq!(map_elements(&sb), 2);
    let r = del(&sb, "web1", "web", &c);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert_eq!(map_elements(&sb), 0);
    assert!(
        sb.tcp(Some(&inet.netns), &format!("{HOST}:8080"))
            .status
            .code()
            != Some(0)
    );
}

#[test]
fn bad_requests_get_the_spec_error_codes() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    let env = [
        ("CNI_CONTAINERID", "x"),
        ("CNI_NETNS", "/run/netns/c1"),
        ("CNI_IFNAME", "eth0"),
    ];
    assert_error(&cni(&sb, "ADD", &env, "{not json"), 6, "malformed JSON");
    let old = conf("0.3.1", json!({}));
    let r = cni(&sb, "ADD", &env, &old);
    assert_error(&r, 1, "unsupported version");
    let r = cni(&sb, "ADD", &env, &conf("2.0.0", json!({})));
    assert_error(&r, 1, "unknown version");
    let c = conf("1.0.0", json!({}));
    let r = cni(
        &sb,
        "ADD",
        &[("CNI_CONTAINERID", "x"), ("CNI_IFNAME", "eth0")],
        &c,
    );
    assert_error(&r, 4, "ADD without CNI_NETNS");
    assert_eq!(r.out["cniVersion"], "1.0.0");
    let r = cni(
        &sb,
        "ADD",
        &[
            ("CNI_CONTAINERID", "x"),
            ("CNI_NETNS", "/run/netns/missing"),
            ("CNI_IFNAME", "eth0"),
        ],
        &c,
    );
    assert_error(&r, 4, "ADD with a missing namespace");
    assert_error(
        &cni(&sb, "ADD", &env, &conf("1.0.0", json!({"type": "bridge"}))),
        7,
        "wrong type",
    );
    assert_error(
        &cni(
            &sb,
            "ADD",
            &env,
            &conf("1.0.0", json!({"subnet": "10.77.0.0/33"})),
        ),
        7,
        "bad subnet",
    );
    assert_error(&cni(&sb, "FROB", &env, &c), 4, "unknown command");
    // Nothing was made by any of them.
    assert!(sb.networks().is_empty());
    assert!(sb.endpoints().is_empty());
}

#[test]
fn a_config_contradicting_the_network_is_code_7() {
    let sb = Sandbox::new();
    sb.add_netns("c1");
    sb.add_netns("c2");
    add_ok(&sb, "k1", "c1", &conf("1.0.0", json!({"ipMasq": false})));
    let n = sb.network("cnet");
    assert_eq!(n["subnet"], "10.77.0.0/24");
    let r = add(
        &sb,
        "k2",
        "c2",
        &conf("1.0.0", json!({"subnet": "10.79.0.0/24"})),
    );
    assert_error(&r, 7, "other subnet");
    let r = add(&sb, "k2", "c2", &conf("1.0.0", json!({})));
    assert_error(&r, 7, "ipMasq true against false");
    add_ok(&sb, "k2", "c2", &conf("1.0.0", json!({"ipMasq": false})));
    // Without a subnet, the network is made with one berth picks.
    sb.add_netns("c3");
    let auto = json!({"cniVersion": "1.0.0", "name": "auto", "type": "berth"}).to_string();
    let out = add_ok(&sb, "k3", "c3", &auto);
    assert!(out["ips"][0]["address"]
        .as_str()
        .unwrap()
        .starts_with("10.89.0."));
}

#[test]
fn concurrent_adds_get_distinct_addresses() {
    let sb = Sandbox::new();
    let n = 24;
    sb.sh_ok(&format!("for i in $(seq 1 {n}); do ip netns add p$i; done"));
    let c = conf("1.0.0", json!({}));
    let script: Vec<String> = (1..=n)
        .map(|i| {
            format!(
                "printf '%s' '{c}' | CNI_COMMAND=ADD CNI_CONTAINERID=par{i} CNI_NETNS=/run/netns/p{i} CNI_IFNAME=eth0 \
                 BERTH_STATE_DIR={STATE_DIR} BERTH_NFT_MAX_KERNEL={MIN_KERNEL} {BERTH} > /run/out{i} &"
            )
        })
        .collect();
    sb.sh_ok(&format!("{}\nwait", script.join("\n")));
    let mut addrs = Vec::new();
    for i in 1..=n {
        let out = sb.sh_ok(&format!("cat /run/out{i}"));
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("ADD {i}: {}", String::from_utf8_lossy(&out.stdout)));
        addrs.push(v["ips"][0]["address"].as_str().unwrap().to_string());
    }
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), n);
    assert_eq!(cni_endpoints(&sb).len(), n);
    // And all DELs at once, each twice.
    let script: Vec<String> = (1..=n)
        .flat_map(|i| [i, i])
        .map(|i| {
            format!(
                "printf '%s' '{c}' | CNI_COMMAND=DEL CNI_CONTAINERID=par{i} CNI_NETNS=/run/netns/p{i} CNI_IFNAME=eth0 \
                 BERTH_STATE_DIR={STATE_DIR} BERTH_NFT_MAX_KERNEL={MIN_KERNEL} {BERTH} || echo FAIL{i} &"
            )
        })
        .collect();
    let out = sb.sh_ok(&format!("{}\nwait", script.join("\n")));
    assert!(!stdout(&out).contains("FAIL"), "{}", stdout(&out));
    assert!(sb.endpoints().is_empty());
    assert_eq!(sb.host_veth_count(), 0);
}

/// A node starting its pods: 50 ADDs with 4 published ports each, all at
/// once, then their 50 DELs at once. Every ADD succeeds with its own
/// address; the state and the kernel agree (one veth, one address inside,
/// four map elements and four port rows each); nothing is left after the
/// DELs (no endpoint, veth, map element or lease).
#[test]
fn fifty_parallel_adds_then_dels_leave_nothing_behind() {
    let sb = Sandbox::new();
    let n = 50;
    sb.sh_ok(&format!("for i in $(seq 1 {n}); do ip netns add q$i; done"));
    let dir = format!("/run/par-{}", sb.pid());
    sb.sh_ok(&format!("mkdir -p {dir}"));
    let conf_of = |i: usize| {
        let ports: Vec<Value> = (0..4)
            .map(|p| json!({"hostPort": 30000 + i * 4 + p, "containerPort": 80 + p, "protocol": "tcp"}))
            .collect();
        conf(
            "1.0.0",
            json!({"subnet": "10.78.0.0/16", "runtimeConfig": {"portMappings": ports}}),
        )
    };
    let all = |verb: &str| {
        let script: Vec<String> = (1..=n)
            .map(|i| {
                format!(
                    "printf '%s' '{}' | CNI_COMMAND={verb} CNI_CONTAINERID=par{i} CNI_NETNS=/run/netns/q{i} \
                     CNI_IFNAME=eth0 BERTH_STATE_DIR={STATE_DIR} BERTH_NFT_MAX_KERNEL={MIN_KERNEL} {BERTH} \
                     > {dir}/{verb}{i} 2>&1 || echo FAIL{i} &",
                    conf_of(i)
                )
            })
            .collect();
        let out = sb.sh_ok(&format!("{}\nwait", script.join("\n")));
        assert!(!stdout(&out).contains("FAIL"), "{verb}: {}", stdout(&out));
    };
    all("ADD");
    let mut addrs = Vec::new();
    for i in 1..=n {
        let out = sb.sh_ok(&format!("cat {dir}/ADD{i}"));
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("ADD {i}: {}", String::from_utf8_lossy(&out.stdout)));
        let cidr = v["ips"][0]["address"].as_str().unwrap().to_string();
        // The kernel holds what the result says, inside the namespace.
        let ip = cidr.split('/').next().unwrap();
        assert_eq!(
            sb.ipv4_addrs(Some(&format!("q{i}")), "eth0"),
            std::slice::from_ref(&cidr),
            "q{i}"
        );
        assert!(in_subnet(ip, "10.78.0.0/16"), "{cidr}");
        addrs.push(cidr);
    }
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), n, "no duplicate address");
    let endpoints = cni_endpoints(&sb);
    assert_eq!(endpoints.len(), n);
    assert!(
        endpoints.iter().all(|e| e["status"] == "up"),
        "{endpoints:?}"
    );
    let ports: usize = endpoints
        .iter()
        .map(|e| e["ports"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(ports, 4 * n, "four port rows each");
    assert_eq!(map_elements(&sb), 4 * n, "four map elements each");
    assert_eq!(sb.host_veth_count(), n);

    all("DEL");
    assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
    assert_eq!(map_elements(&sb), 0);
    assert_eq!(sb.host_veth_count(), 0);
    for i in 1..=n {
        assert!(sb.link(Some(&format!("q{i}")), "eth0").is_none(), "q{i}");
    }
    // The leases went with the rows: the first container's address can
    // be asked for again.
    sb.add_netns("again");
    let first = addrs[0].split('/').next().unwrap().to_string();
    let r = cni(
        &sb,
        "ADD",
        &[
            ("CNI_CONTAINERID", "again"),
            ("CNI_NETNS", "/run/netns/again"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", &format!("IP={first}")),
        ],
        &conf("1.0.0", json!({"subnet": "10.78.0.0/16"})),
    );
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert_eq!(r.out["ips"][0]["address"], addrs[0].as_str(), "{}", r.out);
}

#[test]
fn a_gc_killed_after_its_intent_is_finished_by_the_next_command() {
    let sb = Sandbox::new();
    let mut veths = Vec::new();
    for i in 0..3 {
        let netns = format!("k{i}");
        sb.add_netns(&netns);
        let out = add_ok(&sb, &format!("kill{i}"), &netns, &conf("1.1.0", json!({})));
        veths.push(out["interfaces"][0]["name"].as_str().unwrap().to_string());
    }
    let gc = json!({"cniVersion": "1.1.0", "name": "cnet", "type": "berth",
                    "cni.dev/valid-attachments": [{"containerID": "kill0", "ifname": "eth0"}]});
    let mut c = sb.berth_command(&[]);
    c.env("CNI_COMMAND", "GC")
        .env("BERTH_FAILPOINT", "intent:1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(gc.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "GC was to be killed at its intent");
    // The rows are marked; the veths are still there.
    assert!(sb.link(None, &veths[1]).is_some());
    sb.berth_ok(&["gc"]);
    let kept: Vec<Value> = cni_endpoints(&sb);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["container_id"], "kill0");
    assert!(sb.link(None, &veths[0]).is_some());
    assert!(sb.link(None, &veths[1]).is_none());
    assert!(sb.link(None, &veths[2]).is_none());
}

fn v6(addr: &str, port: u16) -> String {
    format!("[{addr}]:{port}")
}

/// The address part of a result's `ips` entry of the family (`:` in it
/// or not).
fn result_ip(out: &Value, ipv6: bool) -> Option<String> {
    out["ips"]
        .as_array()?
        .iter()
        .filter_map(|i| i["address"].as_str())
        .find(|a| a.contains(':') == ipv6)
        .map(|a| a.split('/').next().unwrap().to_string())
}

/// The IPv6 addresses (`addr/len`, link-local ones left out) of `dev` in
/// `netns`.
fn ipv6_addrs(sb: &Sandbox, netns: &str, dev: &str) -> Vec<String> {
    let v = sb.ip_json_in(Some(netns), &["-6", "addr", "show", "dev", dev]);
    as_array(v)
        .into_iter()
        .flat_map(|l| as_array(l["addr_info"].clone()))
        .filter(|a| a["scope"] != "link")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn default6(sb: &Sandbox, netns: &str) -> Vec<String> {
    as_array(sb.ip_json_in(Some(netns), &["-6", "route", "show", "default"]))
        .iter()
        .filter_map(|r| r["gateway"].as_str().map(str::to_string))
        .collect()
}

/// One CNI scenario on a dual-stack (`dual`) or IPv6-only network, as a
/// runtime drives it: ADD with host-local's `ranges`, a static IPv6
/// address from the `ips` capability and port mappings on every address,
/// `::` and one IPv6 host address; the result and the kernel agree; pod
/// to pod, published ports (from outside with the client address kept,
/// from the host, from a neighbour) and masqueraded egress over IPv6;
/// CHECK comparing the IPv6 side; DEL and GC releasing both families.
fn stack_scenario(dual: bool, br_netfilter: bool) {
    let sb = Sandbox::new();
    set_br_netfilter(&sb, br_netfilter);
    let inet = internet6(&sb);
    let ranges = if dual {
        json!([[{"subnet": "10.77.0.0/24"}], [{"subnet": "fd00:77::/64"}]])
    } else {
        json!([[{"subnet": "fd00:77::/64"}]])
    };
    let base = json!({
        "cniVersion": "1.0.0", "name": "cnet", "type": "berth",
        "ipam": {"type": "host-local", "ranges": ranges},
    });
    let with_rc = |rc: Value| {
        let mut c = base.clone();
        c["runtimeConfig"] = rc;
        c.to_string()
    };
    let ports = json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "::"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "::"},
        {"hostPort": 9000, "containerPort": 80, "protocol": "tcp", "hostIP": HOST6}]);
    let web_conf = with_rc(json!({"portMappings": ports, "ips": ["fd00:77::80/64"]}));
    for ns in ["web", "peer"] {
        sb.add_netns(ns);
    }
    let web = add_ok(&sb, "web", "web", &web_conf);
    let peer = add_ok(&sb, "peer", "peer", &base.to_string());

    // The result: one entry per family, with its gateway and route.
    assert_eq!(
        result_ip(&web, true).as_deref(),
        Some("fd00:77::80"),
        "{web}"
    );
    let want_ips = if dual { 2 } else { 1 };
    assert_eq!(web["ips"].as_array().unwrap().len(), want_ips, "{web}");
    let six = web["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["address"] == "fd00:77::80/64")
        .unwrap()
        .clone();
    assert_eq!(six["gateway"], "fd00:77::1");
    assert_eq!(six["interface"], 1);
    let routes = web["routes"].as_array().unwrap();
    assert!(
        routes.contains(&json!({"dst": "::/0", "gw": "fd00:77::1"})),
        "{web}"
    );
    assert_eq!(routes.len(), want_ips, "{web}");
    // The kernel agrees.
    assert_eq!(ipv6_addrs(&sb, "web", "eth0"), ["fd00:77::80/64"]);
    assert_eq!(default6(&sb, "web"), ["fd00:77::1"]);
    let web4 = result_ip(&web, false);
    assert_eq!(web4.is_some(), dual, "{web}");
    let want4: Vec<String> = web4.iter().map(|ip| format!("{ip}/24")).collect();
    assert_eq!(sb.ipv4_addrs(Some("web"), "eth0"), want4);
    let peer6 = result_ip(&peer, true).unwrap();
    assert!(peer6.starts_with("fd00:77::"), "{peer}");

    // Pod to pod over IPv6, both ways, addresses kept.
    let _tcp = sb.tcp_server(Some("web"), "[::]:80");
    let _udp = sb.udp_server(Some("web"), "[::]:53");
    let _peer_srv = sb.tcp_server(Some("peer"), "[::]:7000");
    assert_eq!(sb.assert_tcp(Some("peer"), &v6("fd00:77::80", 80)), peer6);
    assert_eq!(sb.assert_tcp(Some("web"), &v6(&peer6, 7000)), "fd00:77::80");
    // Published over IPv6: from outside (source kept), from the host, from
    // a neighbour; UDP on `::`; the port bound to the host's address.
    assert_eq!(sb.assert_tcp(Some(&inet.netns), &v6(HOST6, 8080)), OUTSIDE6);
    assert_eq!(sb.assert_udp(Some(&inet.netns), &v6(HOST6, 5353)), OUTSIDE6);
    assert_eq!(sb.assert_tcp(Some(&inet.netns), &v6(HOST6, 9000)), OUTSIDE6);
    sb.assert_tcp(None, &v6(HOST6, 8080));
    sb.assert_tcp(Some("peer"), &v6(HOST6, 8080));
    // 9000 is bound to HOST6 alone, over IPv6 alone.
    assert!(!sb.tcp(None, &v6("fd00:77::1", 9000)).status.success());
    assert!(!sb
        .tcp(Some(&inet.netns), &format!("{}:9000", inet.host_ip))
        .status
        .success());
    // Over IPv4, the mapping on every address answers on a dual-stack
    // network (with the client kept); the IPv6-only network has no IPv4.
    let four = sb.tcp(Some(&inet.netns), &format!("{}:8080", inet.host_ip));
    if dual {
        assert_eq!(seen_source(&stdout(&four)), inet.peer_ip, "{four:?}");
    } else {
        assert!(!four.status.success(), "IPv4 on an IPv6-only network");
    }
    // Egress masqueraded to the host's IPv6 address.
    let _out = sb.tcp_server(Some(&inet.netns), "[::]:7001");
    assert_eq!(sb.assert_tcp(Some("web"), &v6(OUTSIDE6, 7001)), HOST6);
    // The maps: 8080 (any), 5353 (IPv6 any), 9000 (one address) in IPv6;
    // 8080 in IPv4 on the dual-stack network.
    assert_eq!(map_elements_of(&sb, &["6"]), 3);
    assert_eq!(map_elements_of(&sb, &["4"]), if dual { 1 } else { 0 });

    // CHECK compares the IPv6 side too.
    let env = [
        ("CNI_CONTAINERID", "web"),
        ("CNI_NETNS", "/run/netns/web"),
        ("CNI_IFNAME", "eth0"),
    ];
    let mut with_prev: Value = serde_json::from_str(&web_conf).unwrap();
    with_prev["prevResult"] = web.clone();
    let with_prev = with_prev.to_string();
    let r = cni(&sb, "CHECK", &env, &with_prev);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    sb.sh_ok("nft delete element inet berth published6_any '{ udp . 5353 }'");
    let r = cni(&sb, "CHECK", &env, &with_prev);
    assert_error(&r, 103, "CHECK without the IPv6 map element");
    assert!(
        r.out["msg"].as_str().unwrap().contains("published6_any"),
        "{}",
        r.out
    );
    sb.berth_ok(&["up"]);
    assert_eq!(cni(&sb, "CHECK", &env, &with_prev).code, 0);
    sb.sh_ok("ip -n web -6 route del default");
    let r = cni(&sb, "CHECK", &env, &with_prev);
    assert_error(&r, 103, "CHECK without the IPv6 default route");
    assert!(
        r.out["msg"].as_str().unwrap().contains("fd00:77::1"),
        "{}",
        r.out
    );
    sb.sh_ok("ip -n web -6 route add default via fd00:77::1");
    sb.sh_ok("ip -n web -6 addr del fd00:77::80/64 dev eth0");
    let r = cni(&sb, "CHECK", &env, &with_prev);
    assert_error(&r, 103, "CHECK without the IPv6 address");
    assert!(
        r.out["msg"].as_str().unwrap().contains("fd00:77::80"),
        "{}",
        r.out
    );

    // DEL releases both families: the maps empty, the static address free.
    let r = del(&sb, "web", "web", &web_conf);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert_eq!(map_elements(&sb), 0);
    assert!(!sb.tcp(Some(&inet.netns), &v6(HOST6, 8080)).status.success());
    // The same static addresses, of both families, are free again.
    let mut statics = vec!["fd00:77::80/64".to_string()];
    statics.extend(web4.iter().map(|ip| format!("{ip}/24")));
    let same_conf = with_rc(json!({"portMappings": ports, "ips": statics}));
    sb.add_netns("web2");
    let again = add_ok(&sb, "web2", "web2", &same_conf);
    assert_eq!(result_ip(&again, true).as_deref(), Some("fd00:77::80"));
    assert_eq!(result_ip(&again, false), web4);
    // GC too.
    let gc = json!({"cniVersion": "1.1.0", "name": "cnet", "type": "berth",
                    "cni.dev/valid-attachments": [{"containerID": "peer", "ifname": "eth0"}]});
    let r = cni(&sb, "GC", &[], &gc.to_string());
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert_eq!(map_elements(&sb), 0);
    let kept: Vec<Value> = cni_endpoints(&sb);
    assert_eq!(kept.len(), 1, "{kept:?}");
    sb.add_netns("web3");
    let third = add_ok(&sb, "web3", "web3", &same_conf);
    assert_eq!(result_ip(&third, true).as_deref(), Some("fd00:77::80"));
    assert_eq!(result_ip(&third, false), web4);
    let _third = sb.tcp_server(Some("web3"), "[::]:80");
    assert_eq!(sb.assert_tcp(Some(&inet.netns), &v6(HOST6, 9000)), OUTSIDE6);
}

#[test]
fn dual_stack_attachments_with_br_netfilter() {
    stack_scenario(true, true);
}

#[test]
fn dual_stack_attachments_without_br_netfilter() {
    stack_scenario(true, false);
}

#[test]
fn ipv6_only_attachments_with_br_netfilter() {
    stack_scenario(false, true);
}

#[test]
fn ipv6_only_attachments_without_br_netfilter() {
    stack_scenario(false, false);
}

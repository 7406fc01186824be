//! The CNI input of each runtime, spelled as that runtime writes it, fed
//! to ADD, CHECK and DEL: containerd's go-cni (Go field names in
//! `portMappings`), CRI-O's ocicni, Podman's CNI backend (libcni, from
//! containers/common) and Multus (JSON tag names, with the static address
//! and MAC in `CNI_ARGS` or in `runtimeConfig`), and keys in any case, as
//! Go's encoding/json accepts them. Each row must publish exactly its
//! ports (TCP, UDP, one bound to a single host address) and exactly its
//! bandwidth limits (go-cni's `IngressRate`..., the plugins'
//! `ingressRate`..., in any case), pass CHECK, and leave nothing after
//! DEL. Then DEL with broken input: it still removes the attachment, and
//! fails only when it cannot tell which one it is. The same runtimes'
//! spellings of a dual-stack pod: IPv6 ranges (host-local's `ipam.ranges`
//! in any case), IPv6 static addresses (`CNI_ARGS IP=a,b`,
//! `runtimeConfig.ips` with and without prefix lengths) and IPv6 host
//! addresses of port mappings (`::`, one address).

mod util;

use serde_json::{json, Value};
use util::cni::{cni, internet6, HOST6, OUTSIDE6};
use util::*;

const HOST: &str = "203.0.113.1";
const HOST_OTHER: &str = "203.0.113.10";

/// What one runtime sends for a pod publishing TCP 8080->80, UDP
/// 5353->53 and TCP 8081->80 on [`HOST`] only.
struct Row {
    runtime: &'static str,
    /// The network configuration as the plugin receives it (without
    /// `runtimeConfig`).
    conf: Value,
    runtime_config: Value,
    /// `CNI_ARGS`.
    args: String,
    ifname: &'static str,
    /// The address and MAC the runtime asks for, if it asks.
    ip: Option<&'static str>,
    mac: Option<&'static str>,
    /// The limits the runtime asks for, in bits per second: towards the
    /// container (ingress) and from it (egress).
    bandwidth: Option<(u64, u64)>,
}

fn base_conf() -> Value {
    json!({"cniVersion": "1.0.0", "name": "pods", "type": "berth",
           "subnet": "10.77.0.0/24", "stateDir": STATE_DIR,
           "capabilities": {"portMappings": true, "ips": true, "mac": true, "bandwidth": true}})
}

fn k8s_args(id: &str, ignore_unknown: &str) -> String {
    format!(
        "IgnoreUnknown={ignore_unknown};K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;\
         K8S_POD_INFRA_CONTAINER_ID={id};K8S_POD_UID=6f1c0c3e-0d4b-4bd5-9a57-0c7a9d2d1e01"
    )
}

fn rows(id: &str) -> Vec<Row> {
    vec![
        // go-cni's PortMapping has no JSON tags: Go's field names. The
        // CRI sends the protocol lower-cased and HostIP "" for any address.
        Row {
            runtime: "containerd (go-cni)",
            conf: base_conf(),
            runtime_config: json!({
                "portMappings": [
                    {"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""},
                    {"HostPort": 5353, "ContainerPort": 53, "Protocol": "udp", "HostIP": ""},
                    {"HostPort": 8081, "ContainerPort": 80, "Protocol": "tcp", "HostIP": HOST}],
                "ipRanges": [[{"Subnet": "10.77.0.0/24", "RangeStart": "", "RangeEnd": "", "Gateway": ""}]],
                // go-cni's BandWidth has no JSON tags either; the CRI
                // sends 2^32 - 1 as the burst of a pod's annotations.
                "bandwidth": {"IngressRate": 20_000_000u64, "IngressBurst": 4_294_967_295u64,
                              "EgressRate": 10_000_000u64, "EgressBurst": 4_294_967_295u64},
                "io.kubernetes.cri.pod-annotations": {"kubernetes.io/config.source": "api"}}),
            args: k8s_args(id, "1"),
            ifname: "eth0",
            ip: None,
            mac: None,
            bandwidth: Some((20_000_000, 10_000_000)),
        },
        // ocicni's PortMapping has tags (hostPort, ...); the static
        // address and MAC travel in CNI_ARGS.
        Row {
            runtime: "CRI-O (ocicni)",
            conf: base_conf(),
            runtime_config: json!({
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
                    {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": ""},
                    {"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": HOST}],
                "bandwidth": {"ingressRate": 30_000_000u64, "ingressBurst": 2_147_483_647u64,
                              "egressRate": 0, "egressBurst": 0},
                "cgroupPath": "/kubepods/besteffort/pod6f1c0c3e"}),
            args: format!("{};IP=10.77.0.50;MAC=02:00:00:77:00:50", k8s_args(id, "1")),
            ifname: "eth0",
            ip: Some("10.77.0.50"),
            mac: Some("02:00:00:77:00:50"),
            bandwidth: Some((30_000_000, 0)),
        },
        // containers/common's CNI backend: tags, hostIP omitted when
        // empty, several static addresses in runtimeConfig.ips, network
        // aliases for the dnsname plugin.
        Row {
            runtime: "Podman (libcni, containers/common)",
            conf: json!({"cniVersion": "0.4.0", "name": "pods", "type": "berth",
                         "subnet": "10.77.0.0/24", "stateDir": STATE_DIR,
                         "capabilities": {"portMappings": true, "ips": true}}),
            runtime_config: json!({
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                    {"hostPort": 5353, "containerPort": 53, "protocol": "udp"},
                    {"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": HOST}],
                "ips": ["10.77.0.60"],
                "aliases": {"pods": ["web"]}}),
            args: format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID={id}"
            ),
            ifname: "eth0",
            ip: Some("10.77.0.60"),
            mac: None,
            bandwidth: None,
        },
        // Multus hands a delegate what the network-selection annotation
        // asked for: tags, addresses with a prefix length, a MAC, a
        // protocol as the user wrote it, a secondary interface name.
        Row {
            runtime: "Multus",
            conf: base_conf(),
            runtime_config: json!({
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "TCP"},
                    {"hostPort": 5353, "containerPort": 53, "protocol": "UDP"},
                    {"hostPort": 8081, "containerPort": 80, "protocol": "TCP", "hostIP": HOST}],
                "ips": ["10.77.0.70/24"],
                "mac": "02:00:00:77:00:70",
                "bandwidth": {"ingressRate": 40_000_000u64, "ingressBurst": 400_000u64,
                              "egressRate": 15_000_000u64, "egressBurst": 150_000u64},
                "deviceID": "0000:00:00.0"}),
            args: k8s_args(id, "true"),
            ifname: "net1",
            ip: Some("10.77.0.70"),
            mac: Some("02:00:00:77:00:70"),
            bandwidth: Some((40_000_000, 15_000_000)),
        },
        // Every key in another case, as Go's decoder accepts them.
        Row {
            runtime: "any case (Go's encoding/json)",
            conf: json!({"CNIVersion": "1.0.0", "Name": "pods", "TYPE": "berth",
                         "Subnet": "10.77.0.0/24", "StateDir": STATE_DIR}),
            runtime_config: json!({
                "PortMappings": [
                    {"HOSTPORT": 8080, "containerport": 80, "PROTOCOL": "TCP"},
                    {"hostport": 5353, "ContainerPort": 53, "protocol": "UDP", "HOSTIP": ""},
                    {"HostPort": 8081, "CONTAINERPORT": 80, "Protocol": "Tcp", "hostip": HOST}],
                "IPs": ["10.77.0.80"],
                "Mac": "02:00:00:77:00:80",
                "BANDWIDTH": {"INGRESSRATE": 25_000_000u64, "egressrate": 5_000_000u64}}),
            args: k8s_args(id, "1"),
            ifname: "eth0",
            ip: Some("10.77.0.80"),
            mac: Some("02:00:00:77:00:80"),
            bandwidth: Some((25_000_000, 5_000_000)),
        },
    ]
}

/// `conf` with `key` set to `value` (the runtime adds `runtimeConfig`
/// and, for CHECK, `prevResult` this way).
fn with(conf: &Value, key: &str, value: Value) -> Value {
    let mut c = conf.clone();
    c[key] = value;
    c
}

fn env<'a>(id: &'a str, netns: &'a str, row: &'a Row) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", row.ifname),
        ("CNI_ARGS", &row.args),
    ]
}

/// The rate (bytes per second) of the token bucket at the root of `dev`,
/// as tc reports it; 0 when there is none (or no such link).
fn tbf_rate(sb: &Sandbox, dev: &str) -> u64 {
    let out = sb.cmd("tc", &["-j", "qdisc", "show", "dev", dev]);
    let qdiscs: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    qdiscs
        .as_array()
        .into_iter()
        .flatten()
        .find(|q| q["kind"] == "tbf" && q["root"] == true)
        .and_then(|q| q["options"]["rate"].as_u64())
        .unwrap_or(0)
}

fn map_elements(sb: &Sandbox) -> String {
    stdout(&sb.cmd(
        "sh",
        &["-c", "nft list table inet berth 2>/dev/null || true"],
    ))
}

#[test]
fn each_runtimes_spelling_publishes_checks_and_deletes() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.sh_ok(&format!("ip addr add {HOST_OTHER}/24 dev uplink0"));
    let _public = sb.tcp_server(Some(&inet.netns), &format!("{}:80", inet.public_ip));
    for i in 0..rows("").len() {
        let id = format!("{:064x}", 0xc0ffee00 + i);
        let row = rows(&id).remove(i);
        let what = row.runtime;
        let ns_name = format!("pod{i}");
        sb.add_netns(&ns_name);
        let netns = format!("/run/netns/{ns_name}");
        let conf = with(&row.conf, "runtimeConfig", row.runtime_config.clone());
        let conf_text = conf.to_string();

        let add = cni(&sb, "ADD", &env(&id, &netns, &row), &conf_text);
        assert_eq!(add.code, 0, "{what}: ADD {} {}", add.out, add.err);
        let address = add.out["ips"][0]["address"].as_str().unwrap().to_string();
        let ip = address.split('/').next().unwrap().to_string();
        if let Some(want) = row.ip {
            assert_eq!(ip, want, "{what}: address");
        }
        if let Some(mac) = row.mac {
            let link = sb.link(Some(&ns_name), row.ifname).expect("the interface");
            assert_eq!(link["address"], mac, "{what}: MAC");
        }

        // Exactly the ports asked for, each with its protocol and address.
        let _tcp = sb.tcp_server(Some(&ns_name), "0.0.0.0:80");
        let _udp = sb.udp_server(Some(&ns_name), "0.0.0.0:53");
        let seen = sb.assert_tcp(Some(&inet.netns), &format!("{HOST}:8080"));
        assert_eq!(seen, inet.peer_ip, "{what}: TCP 8080 from outside");
        let seen = sb.assert_udp(Some(&inet.netns), &format!("{HOST}:5353"));
        assert_eq!(seen, inet.peer_ip, "{what}: UDP 5353 from outside");
        assert!(
            !sb.tcp(Some(&inet.netns), &format!("{HOST}:5353"))
                .status
                .success(),
            "{what}: 5353 is UDP only, yet TCP answered"
        );
        let seen = sb.assert_tcp(Some(&inet.netns), &format!("{HOST}:8081"));
        assert_eq!(seen, inet.peer_ip, "{what}: 8081 on {HOST}");
        assert!(
            !sb.tcp(Some(&inet.netns), &format!("{HOST_OTHER}:8081"))
                .status
                .success(),
            "{what}: 8081 is bound to {HOST}, yet {HOST_OTHER}:8081 answered"
        );

        // CHECK with the result as prevResult and the same runtimeConfig.
        let check_conf = with(&conf, "prevResult", add.out.clone()).to_string();
        let check = cni(&sb, "CHECK", &env(&id, &netns, &row), &check_conf);
        assert_eq!(check.code, 0, "{what}: CHECK {} {}", check.out, check.err);

        // The limits asked for, in the kernel: a bucket on the host veth
        // for what goes in, one on an ifb for what comes out.
        let host_veth = add.out["interfaces"][0]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let ifb = format!("ib{}", &host_veth[2..]);
        let (ingress, egress) = row.bandwidth.unwrap_or((0, 0));
        assert_eq!(
            tbf_rate(&sb, &host_veth),
            ingress / 8,
            "{what}: towards the pod"
        );
        assert_eq!(tbf_rate(&sb, &ifb), egress / 8, "{what}: from the pod");
        assert_eq!(
            sb.link(None, &ifb).is_some(),
            egress > 0,
            "{what}: ifb {ifb}"
        );

        // DEL with the same input leaves nothing.
        let del = cni(&sb, "DEL", &env(&id, &netns, &row), &conf_text);
        assert_eq!(del.code, 0, "{what}: DEL {} {}", del.out, del.err);
        assert!(sb.endpoints().is_empty(), "{what}: {:?}", sb.endpoints());
        assert!(sb.link(None, &host_veth).is_none(), "{what}: veth left");
        assert!(sb.link(None, &ifb).is_none(), "{what}: ifb left");
        let nft = map_elements(&sb);
        for port in ["8080", "5353", "8081"] {
            assert!(!nft.contains(port), "{what}: element {port} left:\n{nft}");
        }
        sb.sh_ok(&format!("ip netns del {ns_name}"));
    }
}

/// `prevResult` is read with Go's rules too: CHECK accepts a result whose
/// keys are in another case.
#[test]
fn check_reads_prev_result_keys_in_any_case() {
    let sb = Sandbox::new();
    sb.internet();
    sb.add_netns("c1");
    let id = "a".repeat(64);
    // CRI-O's row: its runtimeConfig is in the plugins' own spelling.
    let row = rows(&id).remove(1);
    let conf = with(&row.conf, "runtimeConfig", row.runtime_config.clone());
    let add = cni(
        &sb,
        "ADD",
        &env(&id, "/run/netns/c1", &row),
        &conf.to_string(),
    );
    assert_eq!(add.code, 0, "ADD {} {}", add.out, add.err);
    let prev = json!({
        "CNIVersion": add.out["cniVersion"],
        "Interfaces": add.out["interfaces"].as_array().unwrap().iter()
            .map(|i| json!({"Name": i["name"], "MAC": i["mac"], "Sandbox": i["sandbox"]}))
            .collect::<Vec<_>>(),
        "IPs": add.out["ips"].as_array().unwrap().iter()
            .map(|i| json!({"Address": i["address"], "Gateway": i["gateway"], "Interface": i["interface"]}))
            .collect::<Vec<_>>(),
    });
    let check = cni(
        &sb,
        "CHECK",
        &env(&id, "/run/netns/c1", &row),
        &with(&conf, "prevResult", prev).to_string(),
    );
    assert_eq!(check.code, 0, "CHECK {} {}", check.out, check.err);
}

/// DEL removes the attachment whatever else is wrong with its input; it
/// fails only when it cannot tell which attachment (or which state) is
/// meant. CHECK with the same broken input stays strict.
#[test]
fn del_cleans_up_despite_broken_input() {
    let sb = Sandbox::new();
    let good = json!({"cniVersion": "1.0.0", "name": "pods", "type": "berth",
                      "subnet": "10.77.0.0/24", "stateDir": STATE_DIR,
                      "runtimeConfig": {"portMappings": [
                          {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}});
    // (what is wrong, the DEL's input, whether CHECK refuses that input)
    let broken: Vec<(&str, Value, bool)> = vec![
        (
            "a host port that is a string",
            with(
                &good,
                "runtimeConfig",
                json!({"portMappings": [
                {"HostPort": "8080", "ContainerPort": 80, "Protocol": "tcp"}]}),
            ),
            true,
        ),
        (
            "a port mapping without ports",
            with(
                &good,
                "runtimeConfig",
                json!({"portMappings": [{"Protocol": "tcp"}]}),
            ),
            true,
        ),
        (
            "runtimeConfig that is not an object",
            with(&good, "runtimeConfig", json!(5)),
            true,
        ),
        (
            "a prevResult that is not a result",
            with(&good, "prevResult", json!("garbage")),
            true,
        ),
        (
            "a subnet other than the network's",
            with(&good, "subnet", json!("10.99.0.0/24")),
            false,
        ),
        (
            "another plugin type",
            with(&good, "type", json!("bridge")),
            true,
        ),
        (
            "an mtu that is not a number",
            with(&good, "mtu", json!("big")),
            true,
        ),
        (
            "a version berth does not speak",
            with(&good, "cniVersion", json!("0.3.1")),
            true,
        ),
    ];
    for (i, (what, conf, check_refuses)) in broken.iter().enumerate() {
        let id = format!("{:064x}", 0xde1000 + i);
        let ns_name = format!("d{i}");
        sb.add_netns(&ns_name);
        let netns = format!("/run/netns/{ns_name}");
        let env = [
            ("CNI_CONTAINERID", id.as_str()),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
        ];
        let add = cni(&sb, "ADD", &env, &good.to_string());
        assert_eq!(add.code, 0, "ADD {} {}", add.out, add.err);
        let host_veth = add.out["interfaces"][0]["name"]
            .as_str()
            .unwrap()
            .to_string();
        // CHECK stays strict: the same input is refused.
        if *check_refuses {
            let check_conf = if conf.get("prevResult").is_some() {
                conf.clone()
            } else {
                with(conf, "prevResult", add.out.clone())
            };
            let check = cni(&sb, "CHECK", &env, &check_conf.to_string());
            assert_ne!(check.code, 0, "CHECK with {what} passed: {}", check.out);
        }
        // One DEL with the namespace already gone.
        if i % 2 == 1 {
            sb.sh_ok(&format!("ip netns del {ns_name}"));
        }
        let del = cni(&sb, "DEL", &env, &conf.to_string());
        assert_eq!(del.code, 0, "DEL with {what}: {} {}", del.out, del.err);
        assert!(sb.endpoints().is_empty(), "{what}: {:?}", sb.endpoints());
        assert!(sb.link(None, &host_veth).is_none(), "{what}: veth left");
        assert!(!map_elements(&sb).contains("8080"), "{what}: element left");
        if i % 2 == 0 {
            sb.sh_ok(&format!("ip netns del {ns_name}"));
        }
    }

    // DELs that cannot tell which attachment is meant fail, and touch
    // nothing.
    sb.add_netns("keep");
    let id = "b".repeat(64);
    let env = [
        ("CNI_CONTAINERID", id.as_str()),
        ("CNI_NETNS", "/run/netns/keep"),
        ("CNI_IFNAME", "eth0"),
    ];
    let add = cni(&sb, "ADD", &env, &good.to_string());
    assert_eq!(add.code, 0, "ADD {} {}", add.out, add.err);
    // (what is missing or wrong, environment, stdin, the error code)
    type Unidentified<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u64);
    let unidentified: Vec<Unidentified> = vec![
        (
            "no CNI_CONTAINERID",
            vec![("CNI_NETNS", "/run/netns/keep"), ("CNI_IFNAME", "eth0")],
            good.to_string(),
            4,
        ),
        (
            "no CNI_IFNAME",
            vec![("CNI_CONTAINERID", &id), ("CNI_NETNS", "/run/netns/keep")],
            good.to_string(),
            4,
        ),
        (
            "input that is not JSON",
            env.to_vec(),
            "{not json".into(),
            6,
        ),
        (
            "a stateDir that is not a string",
            env.to_vec(),
            with(&good, "stateDir", json!(5)).to_string(),
            7,
        ),
    ];
    for (what, env, stdin, code) in unidentified {
        let del = cni(&sb, "DEL", &env, &stdin);
        assert_ne!(del.code, 0, "DEL with {what} succeeded");
        assert_eq!(del.out["code"], code, "DEL with {what}: {}", del.out);
        assert_eq!(sb.endpoints().len(), 1, "DEL with {what} removed something");
    }
    let del = cni(&sb, "DEL", &env, &good.to_string());
    assert_eq!(del.code, 0, "{} {}", del.out, del.err);
    assert!(sb.endpoints().is_empty());
}

/// A second IPv6 address of the host, where a mapping bound to [`HOST6`]
/// must not answer.
const HOST6_OTHER: &str = "2001:db8:1::10";

/// Each runtime's spelling of a dual-stack pod: the network's two ranges,
/// the pod's static addresses of both families, and TCP 8080->80 on
/// every address, UDP 5353->53 on every IPv6 address (`::`), TCP
/// 8081->80 on [`HOST6`] only.
fn rows6(id: &str) -> Vec<Row> {
    let ranges = json!([[{"subnet": "10.77.0.0/24"}], [{"subnet": "fd00:77::/64"}]]);
    let conf = json!({"cniVersion": "1.0.0", "name": "pods", "type": "berth",
                      "stateDir": STATE_DIR,
                      "ipam": {"type": "host-local", "ranges": ranges,
                               "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]},
                      "capabilities": {"portMappings": true, "ips": true}});
    vec![
        Row {
            runtime: "containerd (go-cni), dual-stack",
            conf: conf.clone(),
            runtime_config: json!({
                "portMappings": [
                    {"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""},
                    {"HostPort": 5353, "ContainerPort": 53, "Protocol": "udp", "HostIP": "::"},
                    {"HostPort": 8081, "ContainerPort": 80, "Protocol": "tcp", "HostIP": HOST6}],
                "ipRanges": [[{"Subnet": "10.77.0.0/24"}], [{"Subnet": "fd00:77::/64"}]]}),
            args: k8s_args(id, "1"),
            ifname: "eth0",
            ip: None,
            mac: None,
            bandwidth: None,
        },
        Row {
            runtime: "CRI-O (ocicni), dual-stack, IP in CNI_ARGS",
            conf: conf.clone(),
            runtime_config: json!({
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
                    {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "::"},
                    {"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": HOST6}]}),
            args: format!("{};IP=10.77.0.50,fd00:77::50", k8s_args(id, "1")),
            ifname: "eth0",
            ip: Some("fd00:77::50"),
            mac: None,
            bandwidth: None,
        },
        Row {
            runtime: "Podman (libcni), dual-stack",
            conf: conf.clone(),
            runtime_config: json!({
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "::"},
                    {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "::"},
                    {"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": HOST6}],
                "ips": ["10.77.0.60", "fd00:77::60"]}),
            args: format!("IgnoreUnknown=1;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID={id}"),
            ifname: "eth0",
            ip: Some("fd00:77::60"),
            mac: None,
            bandwidth: None,
        },
        Row {
            runtime: "Multus, dual-stack",
            conf: conf.clone(),
            runtime_config: json!({
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "TCP"},
                    {"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "::"},
                    {"hostPort": 8081, "containerPort": 80, "protocol": "TCP", "hostIP": HOST6}],
                "ips": ["fd00:77::70/64", "10.77.0.70/24"]}),
            args: k8s_args(id, "true"),
            ifname: "net1",
            ip: Some("fd00:77::70"),
            mac: None,
            bandwidth: None,
        },
        Row {
            runtime: "any case (Go's encoding/json), dual-stack",
            conf: json!({"CNIVersion": "1.0.0", "Name": "pods", "TYPE": "berth",
                         "StateDir": STATE_DIR,
                         "IPAM": {"Type": "host-local",
                                  "RANGES": [[{"SUBNET": "10.77.0.0/24"}], [{"Subnet": "fd00:77::/64"}]]}}),
            runtime_config: json!({
                "PortMappings": [
                    {"HOSTPORT": 8080, "containerport": 80, "PROTOCOL": "TCP"},
                    {"hostport": 5353, "ContainerPort": 53, "protocol": "UDP", "HOSTIP": "::"},
                    {"HostPort": 8081, "CONTAINERPORT": 80, "Protocol": "Tcp", "hostip": HOST6}],
                "IPs": ["fd00:77::80"]}),
            args: k8s_args(id, "1"),
            ifname: "eth0",
            ip: Some("fd00:77::80"),
            mac: None,
            bandwidth: None,
        },
    ]
}

#[test]
fn each_runtimes_ipv6_spelling_publishes_checks_and_deletes() {
    let sb = Sandbox::new();
    let inet = internet6(&sb);
    sb.sh_ok(&format!(
        "ip -6 addr add {HOST6_OTHER}/64 dev uplink0 nodad"
    ));
    let v6 = |a: &str, p: u16| format!("[{a}]:{p}");
    for i in 0..rows6("").len() {
        let id = format!("{:064x}", 0x6000 + i);
        let row = rows6(&id).remove(i);
        let what = row.runtime;
        let ns_name = format!("pod{i}");
        sb.add_netns(&ns_name);
        let netns = format!("/run/netns/{ns_name}");
        let conf = with(&row.conf, "runtimeConfig", row.runtime_config.clone());
        let conf_text = conf.to_string();

        let add = cni(&sb, "ADD", &env(&id, &netns, &row), &conf_text);
        assert_eq!(add.code, 0, "{what}: ADD {} {}", add.out, add.err);
        let ips: Vec<&str> = add.out["ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["address"].as_str().unwrap())
            .collect();
        assert_eq!(ips.len(), 2, "{what}: one address per family: {}", add.out);
        assert!(ips[0].starts_with("10.77.0."), "{what}: {ips:?}");
        assert!(ips[1].starts_with("fd00:77::"), "{what}: {ips:?}");
        if let Some(want) = row.ip {
            assert_eq!(ips[1], format!("{want}/64"), "{what}: IPv6 address");
        }
        let routes = add.out["routes"].as_array().unwrap();
        assert!(
            routes.contains(&json!({"dst": "::/0", "gw": "fd00:77::1"})),
            "{what}: {}",
            add.out
        );

        // Exactly the ports asked for, each with its family and address.
        let _tcp = sb.tcp_server(Some(&ns_name), "[::]:80");
        let _udp = sb.udp_server(Some(&ns_name), "[::]:53");
        let seen = sb.assert_tcp(Some(&inet.netns), &v6(HOST6, 8080));
        assert_eq!(seen, OUTSIDE6, "{what}: TCP 8080 from outside over IPv6");
        let seen = sb.assert_tcp(Some(&inet.netns), &format!("{HOST}:8080"));
        assert_eq!(
            seen, inet.peer_ip,
            "{what}: TCP 8080 from outside over IPv4"
        );
        let seen = sb.assert_udp(Some(&inet.netns), &v6(HOST6, 5353));
        assert_eq!(seen, OUTSIDE6, "{what}: UDP 5353 on ::");
        assert!(
            !sb.udp(Some(&inet.netns), &format!("{HOST}:5353"))
                .status
                .success(),
            "{what}: 5353 is on :: only, yet IPv4 answered"
        );
        let seen = sb.assert_tcp(Some(&inet.netns), &v6(HOST6, 8081));
        assert_eq!(seen, OUTSIDE6, "{what}: 8081 on {HOST6}");
        assert!(
            !sb.tcp(Some(&inet.netns), &v6(HOST6_OTHER, 8081))
                .status
                .success(),
            "{what}: 8081 is bound to {HOST6}, yet {HOST6_OTHER} answered"
        );

        let check_conf = with(&conf, "prevResult", add.out.clone()).to_string();
        let check = cni(&sb, "CHECK", &env(&id, &netns, &row), &check_conf);
        assert_eq!(check.code, 0, "{what}: CHECK {} {}", check.out, check.err);

        let del = cni(&sb, "DEL", &env(&id, &netns, &row), &conf_text);
        assert_eq!(del.code, 0, "{what}: DEL {} {}", del.out, del.err);
        assert!(sb.endpoints().is_empty(), "{what}: {:?}", sb.endpoints());
        let nft = map_elements(&sb);
        for port in ["8080", "5353", "8081"] {
            assert!(!nft.contains(port), "{what}: element {port} left:\n{nft}");
        }
        sb.sh_ok(&format!("ip netns del {ns_name}"));
    }
}

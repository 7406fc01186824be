//! What nothing may reach, end to end: a port published on 127.0.0.1 from
//! anywhere but the host (crafted frames to the host's MAC with a loopback
//! destination, from the LAN, another network and an `--internal` one);
//! berth's DNS listeners from a runtime's container that publishes port
//! 53 (CNI, netavark, and the CLI with --force-publish); the host's own
//! services from a `--no-host-access` network; other networks' published
//! ports from an `--internal` one.

mod util;

use std::io::Write;
use std::process::Stdio;

use serde_json::{json, Value};
use util::*;

/// The host's address on the "LAN" (the internet namespace's uplink).
const HOST: &str = "203.0.113.1";
fn fails(sb: &Sandbox, from: &str, addr: &str) {
    let out = sb.tcp(Some(from), addr);
    assert!(
        !out.status.success(),
        "{from} -> {addr} should be blocked: {}",
        stdout(&out)
    );
}

/// c on web publishes 127.0.0.1:9000->80/udp and 0.0.0.0:9001->81/udp;
/// frames to a loopback destination come from the LAN (internet), from o
/// on another network and from i on an --internal one, each sent to the
/// MAC the host has on its side.
fn loopback_ports_answer_to_the_host_alone(br_netfilter: bool) {
    let sb = Sandbox::new();
    set_br_netfilter(&sb, br_netfilter);
    let inet = sb.internet();
    sb.create_network("web", "10.90.0.0/24");
    sb.create_network("other", "10.91.0.0/24");
    sb.berth_ok(&[
        "network",
        "create",
        "vault",
        "--subnet",
        "10.93.0.0/24",
        "--internal",
    ]);
    for (net, ns) in [("other", "o"), ("vault", "i")] {
        sb.add_netns(ns);
        sb.connect(net, ns, &[]);
    }
    sb.add_netns("c");
    sb.connect(
        "web",
        "c",
        &["-p", "127.0.0.1:9000:80/udp", "-p", "9001:81/udp"],
    );
    let _udp = sb.udp_server(Some("c"), "0.0.0.0:80");
    let _udp81 = sb.udp_server(Some("c"), "0.0.0.0:81");
    // The host itself reaches both, as before.
    sb.assert_udp(None, "127.0.0.1:9000");
    sb.assert_udp(None, "127.0.0.1:9001");

    let attackers = [
        (
            inet.netns.as_str(),
            inet.peer_ip.as_str(),
            mac(&sb, None, "uplink0"),
        ),
        ("o", "10.91.0.2", mac(&sb, None, "berth-other")),
        ("i", "10.93.0.2", mac(&sb, None, "berth-vault")),
    ];
    let mut wrong = Vec::new();
    for (from, src, host_mac) in &attackers {
        for (dst, port, inside) in [("127.0.0.1", "9000", "80"), ("127.0.0.5", "9001", "81")] {
            let token = format!("lo-{from}-{dst}");
            let frame = [
                "udp",
                "--src",
                src,
                "--dst",
                dst,
                "--dst-mac",
                host_mac,
                "--dport",
                port,
                "--payload",
                &token,
            ];
            let (got, seen) = arrives(
                &sb,
                "c",
                &["--udp-dport", inside, "--payload", &token],
                from,
                &frame,
            );
            if got {
                wrong.push(format!("{from} reached {dst}:{port}: {seen}"));
            }
        }
    }
    // The same crafting to the host's real address does arrive.
    let frame = [
        "udp",
        "--src",
        &inet.peer_ip,
        "--dst",
        HOST,
        "--dst-mac",
        &attackers[0].2,
        "--dport",
        "9001",
        "--payload",
        "lan-real",
    ];
    let (got, seen) = arrives(
        &sb,
        "c",
        &["--udp-dport", "81", "--payload", "lan-real"],
        &inet.netns,
        &frame,
    );
    assert!(
        got,
        "the control frame to {HOST}:9001 did not arrive: {seen}"
    );
    assert!(
        wrong.is_empty(),
        "br_netfilter {br_netfilter}:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn loopback_ports_answer_to_the_host_alone_with_br_netfilter() {
    loopback_ports_answer_to_the_host_alone(true);
}

#[test]
fn loopback_ports_answer_to_the_host_alone_without_br_netfilter() {
    loopback_ports_answer_to_the_host_alone(false);
}

/// Whether `dig` is installed; prints a loud SKIP line if not.
fn have_dig(test: &str) -> bool {
    let ok = std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        crate::skip_line!("SKIP {test}: `dig` is not installed (Debian: dnsutils)");
    }
    ok
}

/// `dig +short` for `name` at `server` from `netns`, over UDP or TCP.
fn lookup(sb: &Sandbox, netns: &str, server: &str, name: &str, tcp: bool) -> Vec<String> {
    let at = format!("@{server}");
    let mut args = vec!["+short", "+time=2", "+tries=1", at.as_str(), name];
    if tcp {
        args.push("+tcp");
    }
    let out = sb.in_netns(netns, "dig", &args);
    stdout(&out).lines().map(str::to_string).collect()
}

/// A container `x` on `net` (gateway `gw`) publishes 53/udp and 53/tcp
/// on every address and runs a DNS server of its own that answers
/// 192.0.2.10 for everything; `y` asks its gateway for `name`, which
/// berth's server knows as `want`. Both must hear berth; the LAN asking
/// the host's address hears x.
fn dns_stays_berths(sb: &Sandbox, inet: &Internet, gw: &str, name: &str, want: &str) {
    let fake = sb.spawn_in_netns(Some("x"), PROBE, &["dns-serve", "0.0.0.0:53"], true);
    for tcp in [false, true] {
        for from in ["y", "x"] {
            let got = lookup(sb, from, gw, name, tcp);
            assert_eq!(got, [want], "{from} asked {gw} (tcp {tcp}): {got:?}");
        }
    }
    assert!(
        !fake.stdout().contains("query"),
        "queries to the gateway reached the container: {}",
        fake.stdout()
    );
    // The published port itself still answers on the host's other
    // addresses.
    assert_eq!(
        lookup(sb, &inet.netns, HOST, "anything.example", false),
        ["192.0.2.10"]
    );
    assert_eq!(
        lookup(sb, &inet.netns, HOST, "anything.example", true),
        ["192.0.2.10"]
    );
}

/// `CNI_COMMAND=ADD` of container `id` in /run/netns/NETNS, with `conf`.
fn cni_add(sb: &Sandbox, id: &str, netns: &str, conf: &Value) -> (Value, String) {
    let mut c = sb.berth_command(&[]);
    c.env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", format!("/run/netns/{netns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn berth");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ok_ctx(&out, &format!("CNI ADD {id}"));
    (parse_json(&out, "CNI result"), stderr(&out))
}

#[test]
fn a_cni_container_publishing_53_does_not_take_its_networks_dns() {
    if !have_dig("a_cni_container_publishing_53_does_not_take_its_networks_dns") {
        return;
    }
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.add_netns("x");
    sb.add_netns("y");
    let conf = |ports: Value| {
        json!({
            "cniVersion": "1.0.0", "name": "pods", "type": "berth",
            "subnet": "10.88.0.0/24",
            "runtimeConfig": {"portMappings": ports}
        })
    };
    let (_, err) = cni_add(
        &sb,
        "x",
        "x",
        &conf(json!([
            {"hostPort": 53, "containerPort": 53, "protocol": "udp"},
            {"hostPort": 53, "containerPort": 53, "protocol": "tcp"}
        ])),
    );
    let (y, _) = cni_add(&sb, "y", "y", &conf(json!([])));
    let y_ip = field(&y["ips"][0], "address");
    let y_ip = y_ip.split('/').next().unwrap();
    dns_stays_berths(&sb, &inet, "10.88.0.1", "cni-y-eth0", y_ip);
    assert!(
        err.contains("except the gateways of berth's DNS networks (10.88.0.1)"),
        "the runtime's log says what happened: {err}"
    );
}

/// netavark's setup request for container `name` on `net` (DNS on).
fn podman_request(name: &str, ip: &str, ports: Value) -> Value {
    json!({
        "container_id": format!("{name}0000000000000000000000000000000000000000000000000000000000"),
        "container_name": name,
        "port_mappings": ports,
        "networks": {"podnet": {"static_ips": [ip], "aliases": [name], "interface_name": "eth0"}},
        "network_info": {"podnet": {
            "name": "podnet", "id": "cd7104c31a8bee1e", "driver": "bridge",
            "network_interface": "podman9",
            "subnets": [{"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}],
            "ipv6_enabled": false, "internal": false, "dns_enabled": true,
            "ipam_options": {"driver": "host-local"}
        }}
    })
}

fn netavark_setup(sb: &Sandbox, netns: &str, req: &Value) -> std::process::Output {
    let path = std::env::temp_dir().join(format!(
        "berth-guards-netavark-{}-{}-{netns}.json",
        std::process::id(),
        sb.pid()
    ));
    std::fs::write(&path, req.to_string()).unwrap();
    let file = path.to_str().unwrap().to_string();
    let target = format!("/run/netns/{netns}");
    let out = sb.berth(&[
        "netavark",
        "--config",
        "/run/containers/networks",
        "--rootless=false",
        "--file",
        &file,
        "setup",
        &target,
    ]);
    let _ = std::fs::remove_file(&path);
    out
}

#[test]
fn a_podman_container_publishing_53_does_not_take_its_networks_dns() {
    if !have_dig("a_podman_container_publishing_53_does_not_take_its_networks_dns") {
        return;
    }
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.add_netns("x");
    sb.add_netns("y");
    let ports = json!([{"host_ip": "", "container_port": 53, "host_port": 53, "range": 1, "protocol": "tcp,udp"}]);
    let x = netavark_setup(&sb, "x", &podman_request("x", "10.77.0.2", ports));
    assert_ok_ctx(&x, "netavark setup x");
    let out = netavark_setup(&sb, "y", &podman_request("y", "10.77.0.3", json!([])));
    assert_ok_ctx(&out, "netavark setup y");
    dns_stays_berths(&sb, &inet, "10.77.0.1", "y.dns.podman", "10.77.0.3");
    assert!(
        stderr(&x).contains("except the gateways of berth's DNS networks (10.77.0.1)"),
        "{}",
        stderr(&x)
    );
    // A mapping bound to the DNS gateway itself could only shadow it: refused.
    sb.add_netns("z");
    let bound = json!([{"host_ip": "10.77.0.1", "container_port": 53, "host_port": 53, "range": 1, "protocol": "udp"}]);
    let out = netavark_setup(&sb, "z", &podman_request("z", "10.77.0.4", bound));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("berth's DNS server"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_cli_refuses_port_53_on_a_dns_gateway_and_forced_keeps_dns() {
    if !have_dig("the_cli_refuses_port_53_on_a_dns_gateway_and_forced_keeps_dns") {
        return;
    }
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.create_network("web", "10.90.0.0/24");
    for ns in ["x", "y", "z"] {
        sb.add_netns(ns);
    }
    sb.connect("web", "y", &[]);
    let out = sb.berth_out_ok(&[
        "connect",
        "web",
        "x",
        "-p",
        "53:53/udp",
        "-p",
        "53:53/tcp",
        "--force-publish",
    ]);
    dns_stays_berths(&sb, &inet, "10.90.0.1", "y", "10.90.0.2");
    assert!(
        stderr(&out).contains("except the gateways"),
        "{}",
        stderr(&out)
    );
    sb.assert_refused(
        &[
            "connect",
            "web",
            "z",
            "-p",
            "10.90.0.1:53:53/udp",
            "--force-publish",
        ],
        "berth's DNS server answers for network \"web\"",
    );
}

/// vault (--no-host-access, DNS on) with v1, v2; web with w1 and s, which
/// publishes 8080; a host service on every address, port 7100.
#[test]
fn no_host_access_leaves_containers_dns_and_replies_only() {
    let sb = Sandbox::new();
    let inet = sb.internet();
    sb.berth_ok(&[
        "network",
        "create",
        "vault",
        "--subnet",
        "10.93.0.0/24",
        "--no-host-access",
    ]);
    sb.create_network("web", "10.90.0.0/24");
    let listed = sb.network("vault");
    assert_eq!(listed["host_access"], false, "{listed}");
    assert!(
        field(&listed, "policy").contains("no-host-access"),
        "{listed}"
    );
    for (net, ns) in [("vault", "v1"), ("vault", "v2"), ("web", "w1")] {
        sb.add_netns(ns);
        sb.connect(net, ns, &[]);
    }
    sb.add_netns("s");
    sb.connect("web", "s", &["-p", "8080:80"]);
    let _host = sb.tcp_server(None, "0.0.0.0:7100");
    let _v2 = sb.tcp_server(Some("v2"), "0.0.0.0:7000");
    let _s = sb.tcp_server(Some("s"), "0.0.0.0:80");
    // The default (Docker's): the host's services on any of its addresses.
    for addr in ["10.90.0.1", HOST, "10.93.0.1"] {
        sb.assert_tcp(Some("w1"), &format!("{addr}:7100"));
    }
    // --no-host-access: none of them, and no ping either...
    for addr in ["10.93.0.1", HOST, "10.90.0.1"] {
        fails(&sb, "v1", &format!("{addr}:7100"));
    }
    assert!(!sb.ping(Some("v1"), "10.93.0.1").status.success());
    // ...but neighbours, published ports, the world, and the host
    // reaching in (its replies come back).
    assert_eq!(sb.assert_tcp(Some("v1"), "10.93.0.3:7000"), "10.93.0.2");
    sb.assert_tcp(Some("v1"), &format!("{HOST}:8080"));
    let _world = sb.tcp_server(Some(&inet.netns), "0.0.0.0:7200");
    sb.assert_tcp(Some("v1"), &format!("{}:7200", inet.peer_ip));
    assert_eq!(sb.assert_tcp(None, "10.93.0.3:7000"), "10.93.0.1");
    // DNS on the gateway.
    if have_dig("no_host_access_leaves_containers_dns_and_replies_only (DNS part)") {
        assert_eq!(lookup(&sb, "v1", "10.93.0.1", "v2", false), ["10.93.0.3"]);
        assert_eq!(lookup(&sb, "v1", "10.93.0.1", "v2", true), ["10.93.0.3"]);
    }
}

fn internal_reaches_no_published_port(br_netfilter: bool) {
    let sb = Sandbox::new();
    set_br_netfilter(&sb, br_netfilter);
    let inet = sb.internet();
    sb.berth_ok(&[
        "network",
        "create",
        "vault",
        "--subnet",
        "10.93.0.0/24",
        "--internal",
    ]);
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("i1");
    sb.connect("vault", "i1", &[]);
    sb.add_netns("s");
    sb.connect("web", "s", &["-p", "8080:80", "-p", "127.0.0.1:8081:80"]);
    let _s = sb.tcp_server(Some("s"), "0.0.0.0:80");
    // The port works for everyone else.
    sb.assert_tcp(Some(&inet.netns), &format!("{HOST}:8080"));
    // Not from the internal network, through any host address.
    sb.sh_ok("ip -n i1 route add default via 10.93.0.1");
    for addr in ["10.93.0.1", "10.90.0.1", HOST] {
        fails(&sb, "i1", &format!("{addr}:8080"));
    }
    // Its own gateway's services are the host's (Docker's default).
    let _h = sb.tcp_server(None, "10.93.0.1:7100");
    sb.assert_tcp(Some("i1"), "10.93.0.1:7100");
}

#[test]
fn an_internal_network_reaches_no_published_port_with_br_netfilter() {
    internal_reaches_no_published_port(true);
}

#[test]
fn an_internal_network_reaches_no_published_port_without_br_netfilter() {
    internal_reaches_no_published_port(false);
}

//! Podman 4.x with its CNI backend and a conflist of type berth, driven as
//! a user would (at cniVersion 0.4.0 and 1.0.0), and the same scenario once
//! with the stock bridge + host-local + portmap plugins, which validates
//! the harness. Skipped, loudly, when Podman is not installed.

#[path = "util/podman_cni.rs"]
mod podman_cni;
mod util;

use podman_cni::PodmanCni;
use util::podman::PodmanClient;
use util::*;

const HOST: &str = "203.0.113.1";

fn berth_conflist(version: &str) -> String {
    format!(
        r#"{{"cniVersion": "{version}", "name": "bnet", "plugins": [
  {{"type": "berth", "subnet": "10.77.0.0/24", "stateDir": "{STATE_DIR}",
    "capabilities": {{"portMappings": true, "ips": true, "mac": true}}}}
]}}"#
    )
}

const STOCK_CONFLIST: &str = r#"{"cniVersion": "0.4.0", "name": "bnet", "plugins": [
  {"type": "bridge", "bridge": "cni-bnet", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
            "ranges": [[{"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}]]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}"#;

/// The scenario; `berth` says whether berth is the plugin (then its state
/// is checked too).
fn scenario(p: &PodmanCni, inet: &Internet, berth: bool) {
    let sb = &p.sb;
    p.run_server(
        "web",
        &["--network", "bnet", "-p", "8080:80"],
        "tcp-serve",
        "0.0.0.0:80",
    );
    let ip = p.ip_of("web", "bnet");
    assert!(in_subnet(&ip, "10.77.0.0/24"), "address {ip}");
    eprintln!("podman gave web {ip} (berth: {berth})");
    // The published port from outside (client address kept), from the
    // host through its address and through 127.0.0.1.
    let seen = sb.assert_tcp(Some(&inet.netns), &format!("{HOST}:8080"));
    assert_eq!(seen, inet.peer_ip, "source seen from outside");
    sb.assert_tcp(None, &format!("{HOST}:8080"));
    sb.assert_tcp(None, "127.0.0.1:8080");
    // A second container with a static address reaches the first, and
    // the outside.
    p.run_server(
        "db",
        &["--network", "bnet", "--ip", "10.77.0.77"],
        "tcp-serve",
        "0.0.0.0:5432",
    );
    assert_eq!(p.ip_of("db", "bnet"), "10.77.0.77");
    let out = p.probe_in(
        "db",
        &["tcp-connect", &format!("{ip}:80"), "--timeout-ms", "2000"],
    );
    assert_ok_ctx(&out, "db -> web");
    let out = p.probe_in(
        "web",
        &["tcp-connect", "10.77.0.77:5432", "--timeout-ms", "2000"],
    );
    assert_ok_ctx(&out, "web -> db");
    let out = p.probe_in(
        "web",
        &[
            "tcp-connect",
            &format!("{}:80", inet.public_ip),
            "--timeout-ms",
            "2000",
        ],
    );
    assert_ok_ctx(&out, "web -> outside");
    if berth {
        let eps = sb.endpoints();
        assert_eq!(eps.len(), 2, "{eps:?}");
        assert!(eps.iter().all(|e| e["owner"] == "cni"), "{eps:?}");
    }
    let veths_before = sb.link_names(None).len();
    p.ok(&["rm", "-f", "-t", "0", "web", "db"]);
    // Nothing left: veths, map elements, leases.
    let veths: Vec<String> = sb
        .link_names(None)
        .into_iter()
        .filter(|l| l.starts_with("vb") || l.starts_with("veth"))
        .collect();
    assert!(
        veths.is_empty(),
        "veths left: {veths:?} (had {veths_before} links)"
    );
    if berth {
        assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
        let nft = stdout(&sb.cmd("nft", &["list", "table", "inet", "berth"]));
        assert!(!nft.contains("8080"), "map element left:\n{nft}");
    } else {
        let leases = stdout(&p.run(
            "sh",
            &[
                "-c",
                "ls /var/lib/cni/networks/bnet 2>/dev/null | grep -c '^10\\.' || true",
            ],
        ));
        assert_eq!(leases.trim(), "0", "host-local leases left");
    }
    assert!(
        sb.tcp(Some(&inet.netns), &format!("{HOST}:8080"))
            .status
            .code()
            != Some(0)
    );
}

fn run(test: &str, conflist: &str, berth: bool) {
    let mut inet = None;
    let Some(p) = PodmanCni::new_or_skip(test, |sb| inet = Some(sb.internet())) else {
        return;
    };
    let inet = inet.unwrap();
    let _public =
        p.sb.tcp_server(Some(&inet.netns), &format!("{}:80", inet.public_ip));
    p.write_conflist("bnet", conflist);
    scenario(&p, &inet, berth);
}

#[test]
fn podman_cni_backend_with_berth_at_0_4_0() {
    run(
        "podman_cni_backend_with_berth_at_0_4_0",
        &berth_conflist("0.4.0"),
        true,
    );
}

#[test]
fn podman_cni_backend_with_berth_at_1_0_0() {
    run(
        "podman_cni_backend_with_berth_at_1_0_0",
        &berth_conflist("1.0.0"),
        true,
    );
}

#[test]
fn podman_cni_backend_with_stock_bridge_and_portmap() {
    run(
        "podman_cni_backend_with_stock_bridge_and_portmap",
        STOCK_CONFLIST,
        false,
    );
}

/// With the `aliases` capability (Podman's way to name containers for the
/// dnsname plugin), a container answers on berth's DNS to its name
/// (K8S_POD_NAME), its `--network-alias` values and its short id, and a
/// reverse lookup gives those after the endpoint's own name, in Podman's
/// order.
#[test]
fn podman_cni_names_and_aliases_answer_on_berths_dns() {
    let test = "podman_cni_names_and_aliases_answer_on_berths_dns";
    if !std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        crate::skip_line!("SKIP {test}: `dig` is not installed (Debian: dnsutils)");
        return;
    }
    let Some(p) = PodmanCni::new_or_skip(test, |_| {}) else {
        return;
    };
    p.write_conflist(
        "bnet",
        &format!(
            r#"{{"cniVersion": "1.0.0", "name": "bnet", "plugins": [
  {{"type": "berth", "subnet": "10.77.0.0/24", "stateDir": "{STATE_DIR}",
    "capabilities": {{"portMappings": true, "ips": true, "mac": true, "aliases": true}}}}
]}}"#
        ),
    );
    let idle = ["tcp-serve", "0.0.0.0:7"];
    p.run_server(
        "web",
        &["--network", "bnet", "--network-alias", "www"],
        idle[0],
        idle[1],
    );
    p.run_server("db", &["--network", "bnet"], idle[0], idle[1]);
    let web_ip = p.ip_of("web", "bnet");
    let web_id = p.ok(&["inspect", "web", "--format", "{{.Id}}"])[..12].to_string();
    let db_ns = p.ok(&[
        "inspect",
        "db",
        "--format",
        "{{.NetworkSettings.SandboxKey}}",
    ]);
    let dig = |args: &[&str]| -> Vec<String> {
        let net = format!("--net={db_ns}");
        let mut all = vec![
            net.as_str(),
            "dig",
            "+short",
            "+time=2",
            "+tries=1",
            "@10.77.0.1",
        ];
        all.extend_from_slice(args);
        let out = p.run("nsenter", &all);
        assert_ok_ctx(&out, &format!("dig {args:?} from db"));
        stdout(&out).lines().map(str::to_string).collect()
    };
    for name in ["web", "www", &web_id, "WEB.dns.podman"] {
        assert_eq!(dig(&[name]), std::slice::from_ref(&web_ip), "{name}");
    }
    let aliases = p.ok(&[
        "inspect",
        "web",
        "--format",
        "{{range .NetworkSettings.Networks.bnet.Aliases}}{{.}} {{end}}",
    ]);
    let ptr = dig(&["-x", &web_ip]);
    eprintln!("PTR {web_ip}: {ptr:?} (Podman's aliases: {aliases})");
    // The endpoint's own name, then the container's name and Podman's
    // aliases in its order (once each).
    assert!(ptr[0].starts_with("cni-"), "{ptr:?}");
    let mut expected = vec!["web".to_string()];
    for a in aliases.split_whitespace() {
        if !expected.iter().any(|e| e == a) {
            expected.push(a.to_string());
        }
    }
    let got: Vec<String> = ptr[1..]
        .iter()
        .map(|n| n.trim_end_matches(".dns.berth.").to_string())
        .collect();
    assert_eq!(got, expected, "{ptr:?}");
    assert!(got.contains(&web_id), "no short id in {got:?}");
    p.ok(&["rm", "-f", "-t", "0", "web", "db"]);
    assert!(p.sb.endpoints().is_empty());
}

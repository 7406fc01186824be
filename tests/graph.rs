//! End-to-end tests of `berth graph`: the picture names everything the
//! host has (checked against `ip -j` in each namespace and `berth ps`),
//! in all three formats; SVG parses as XML, DOT has a node and an edge
//! for everything; a host with 1000 endpoints gives a bounded picture
//! that names how many it left out; an empty host says so.

mod util;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::json;
use util::*;

/// Every text of an SVG document (its `<text>` elements), after checking
/// that it parses as XML with an `svg` root in the SVG namespace.
fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg)
        .unwrap_or_else(|e| panic!("graph --format svg is not XML: {e}\n{svg}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    for attr in ["width", "height", "viewBox"] {
        assert!(root.attribute(attr).is_some(), "svg without {attr}");
    }
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().to_string())
        .collect()
}

/// A loose reading of DOT: the quoted ids of declared nodes, and each
/// edge `"a" -> "b"` with its label.
struct Dot {
    nodes: BTreeSet<String>,
    edges: Vec<(String, String, String)>,
}

fn quoted(s: &str) -> Option<(String, &str)> {
    let rest = s.trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    out.push(if n == 'n' { '\n' } else { n });
                }
            }
            '"' => return Some((out, &rest[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

fn parse_dot(dot: &str) -> Dot {
    let trimmed = dot.trim();
    assert!(
        trimmed.starts_with("digraph berth {") && trimmed.ends_with('}'),
        "not a digraph: {dot}"
    );
    let mut nodes = BTreeSet::new();
    let mut edges = Vec::new();
    for line in dot.lines() {
        let Some((a, rest)) = quoted(line) else {
            continue;
        };
        let label = rest
            .find("label=")
            .and_then(|i| quoted(&rest[i + 6..]))
            .map(|(l, _)| l)
            .unwrap_or_default();
        match rest.trim_start().strip_prefix("->") {
            Some(rest) => {
                let (b, _) = quoted(rest).unwrap_or_else(|| panic!("bad edge line: {line}"));
                edges.push((a, b, label));
            }
            None => {
                assert!(rest.trim_start().starts_with('['), "bad node line: {line}");
                nodes.insert(a);
            }
        }
    }
    for (a, b, _) in &edges {
        assert!(
            nodes.contains(a) && nodes.contains(b),
            "edge {a} -> {b} to an undeclared node"
        );
    }
    Dot { nodes, edges }
}

/// Graphviz's own parser accepts `dot` (where Graphviz is installed;
/// berth does not need it, so its absence is a SKIP, said aloud).
fn graphviz_accepts(dot: &str) {
    use std::io::Write;
    let child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        crate::skip_line!("SKIP graphviz check: no `dot` program on this machine");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dot refused the graph: {}\n{dot}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asks Podman's question as Podman 4.3 words it: container `name` on
/// network `net`, with `ip`, owned by Podman.
fn podman_setup(sb: &Sandbox, name: &str, net: &str, subnet: &str, ip: &str) -> String {
    let id = format!("{name:0<64}");
    let req = json!({
        "container_id": id,
        "container_name": name,
        "port_mappings": [{"host_ip": "", "container_port": 80, "host_port": 8088, "range": 1, "protocol": "tcp"}],
        "networks": {net: {"static_ips": [ip], "aliases": [name], "interface_name": "eth0"}},
        "network_info": {net: {
            "name": net, "id": "cd7104c31a8bee1e", "driver": "bridge",
            "network_interface": format!("pm-{net}"),
            "created": "2026-11-24T16:28:23.426817946Z",
            "subnets": [{"subnet": subnet, "gateway": subnet.replace("0/24", "1")}],
            "ipv6_enabled": false, "internal": false, "dns_enabled": false,
            "ipam_options": {"driver": "host-local"}
        }}
    });
    let path = format!("/run/podman-{name}.json");
    sb.sh_ok(&format!("cat > {path} <<'X'\n{req}\nX"));
    sb.add_netns(name);
    let out = sb.berth(&[
        "netavark",
        "--config",
        "/run/containers/networks",
        "--rootless=false",
        "--file",
        &path,
        "setup",
        &format!("/run/netns/{name}"),
    ]);
    assert_ok_ctx(&out, "netavark setup");
    id
}

/// What the kernel says an endpoint is: address with prefix, and MAC.
fn kernel_side(sb: &Sandbox, netns: &str, ifname: &str) -> (String, String) {
    let v = sb.ip_json_in(Some(netns), &["addr", "show", "dev", ifname]);
    let link = &v[0];
    let addr = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .expect("an IPv4 address");
    (addr, link["address"].as_str().unwrap().to_string())
}

#[test]
fn two_networks_a_shared_namespace_ports_and_an_internal_network() {
    let sb = Sandbox::new();
    sb.add_veth("eth9", "lan9");
    sb.sh_ok(
        "ip addr add 192.168.7.20/24 dev eth9 && ip link set eth9 up && ip link set lan9 up \
         && ip route add default via 192.168.7.1",
    );
    sb.create_network("web", "10.90.0.0/24");
    sb.berth_ok(&[
        "network",
        "create",
        "db",
        "--subnet",
        "10.91.0.0/24",
        "--internal",
        "--no-icc",
    ]);
    for ns in ["front", "api", "pg"] {
        sb.add_netns(ns);
    }
    sb.connect(
        "web",
        "front",
        &["-p", "8080:80", "-p", "127.0.0.1:9000-9001:9000-9001/udp"],
    );
    sb.connect("web", "api", &["-p", "5432:5432"]);
    sb.connect("db", "api", &["--ifname", "eth1"]);
    sb.connect("db", "pg", &[]);
    let podman_id = podman_setup(&sb, "pod1", "pnet", "10.77.0.0/24", "10.77.0.50");

    // The oracle: what the kernel holds in each namespace.
    let expected: Vec<(&str, &str, &str)> = vec![
        ("front", "eth0", "web"),
        ("api", "eth0", "web"),
        ("api", "eth1", "db"),
        ("pg", "eth0", "db"),
        ("pod1", "eth0", "pnet"),
    ];
    let facts: Vec<(String, String)> = expected
        .iter()
        .map(|(ns, ifname, _)| kernel_side(&sb, ns, ifname))
        .collect();
    let ports = [
        "0.0.0.0:8080 -> 80/tcp",
        "127.0.0.1:9000-9001 -> 9000-9001/udp",
        "0.0.0.0:5432 -> 5432/tcp",
        "0.0.0.0:8088 -> 80/tcp",
    ];
    let names: Vec<String> = sb
        .endpoints()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");

    // SVG.
    let svg = sb.berth_ok(&["graph", "--format", "svg"]);
    let texts = svg_texts(&svg).join("\n");
    for name in &names {
        assert!(
            texts.contains(name.as_str()),
            "svg lacks endpoint {name}:\n{texts}"
        );
    }
    for net in ["web", "db", "pnet"] {
        assert!(texts.contains(&format!("network {net}")), "svg lacks {net}");
    }
    for (addr, mac) in &facts {
        assert!(texts.contains(addr.as_str()), "svg lacks {addr}:\n{texts}");
        assert!(texts.contains(mac.as_str()), "svg lacks {mac}");
    }
    for p in ports {
        let (host, inside) = p.split_once(" -> ").unwrap();
        assert!(
            texts
                .lines()
                .any(|l| l.contains(host) && l.contains(inside)),
            "svg lacks published {p}:\n{texts}"
        );
    }
    assert!(texts.contains("uplink eth9 192.168.7.20/24"), "{texts}");
    assert!(texts.contains("internal"), "{texts}");
    assert!(
        texts.contains(&format!("podman {}", &podman_id[..12])),
        "{texts}"
    );
    // The namespace on two networks is drawn once, with both endpoints.
    assert_eq!(texts.matches("netns api").count(), 1, "{texts}");
    assert!(texts.contains("isolated"), "{texts}");

    // DOT: a node per uplink, network and namespace; an edge per endpoint
    // and per published port.
    let dot_text = sb.berth_ok(&["graph", "--format", "dot"]);
    graphviz_accepts(&dot_text);
    let dot = parse_dot(&dot_text);
    let ns_of = |d: &Dot, label_part: &str| -> Vec<String> {
        d.edges
            .iter()
            .filter(|(a, _, l)| a.starts_with("net:") && l.contains(label_part))
            .map(|(_, b, _)| b.clone())
            .collect()
    };
    for n in ["host", "uplink:eth9", "net:web", "net:db", "net:pnet"] {
        assert!(dot.nodes.contains(n), "dot lacks node {n}: {:?}", dot.nodes);
    }
    let ns_nodes: Vec<&String> = dot.nodes.iter().filter(|n| n.starts_with("ns:")).collect();
    assert_eq!(ns_nodes.len(), 4, "one node per namespace: {ns_nodes:?}");
    for ((_, _, net), (addr, mac)) in expected.iter().zip(&facts) {
        let edge = dot
            .edges
            .iter()
            .find(|(a, _, l)| a == &format!("net:{net}") && l.contains(addr.as_str()))
            .unwrap_or_else(|| panic!("dot lacks the edge of {addr} on {net}"));
        assert!(edge.2.contains(mac.as_str()), "{edge:?}");
    }
    let api_web = ns_of(&dot, &facts[1].0);
    let api_db = ns_of(&dot, &facts[2].0);
    assert_eq!(
        api_web, api_db,
        "api is one node with an edge to each network"
    );
    for p in ports {
        assert!(
            dot.edges
                .iter()
                .any(|(a, b, l)| a == "host" && b.starts_with("ns:") && l.contains(p)),
            "dot lacks the port edge {p}"
        );
    }
    assert!(
        dot.edges
            .iter()
            .any(|(a, b, l)| a == "host" && b == "net:db" && l.contains("internal")),
        "{:?}",
        dot.edges
    );

    // Text.
    let text = sb.berth_ok(&["graph"]);
    for name in &names {
        assert!(text.contains(name.as_str()), "text lacks {name}:\n{text}");
    }
    for (addr, mac) in &facts {
        assert!(
            text.contains(addr.as_str()) && text.contains(mac.as_str()),
            "{text}"
        );
    }
    for p in ports {
        assert!(
            text.contains(&format!("published {p}")),
            "text lacks {p}:\n{text}"
        );
    }
    for line in [
        "network db  bridge berth-db  subnet 10.91.0.0/24  gateway 10.91.0.1  [internal, no-icc, dns]",
        "uplink eth9 192.168.7.20/24, default via 192.168.7.1",
        "api: db (eth1 ",
    ] {
        assert!(text.contains(line), "text lacks {line:?}:\n{text}");
    }

    // A bridge deleted under berth shows as such (nothing heals a lost
    // bridge without a command).
    assert!(!text.contains("missing or down"), "{text}");
    sb.sh_ok("ip link del berth-web");
    let text = sb.berth_ok(&["graph"]);
    assert!(
        text.contains("bridge berth-web (missing or down)"),
        "{text}"
    );
}

#[test]
fn output_file_format_is_taken_from_its_name() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.berth_ok(&["graph", "-o", "/run/g.svg"]);
    svg_texts(&stdout(&sb.sh_ok("cat /run/g.svg")));
    sb.berth_ok(&["graph", "-o", "/run/g.dot"]);
    parse_dot(&stdout(&sb.sh_ok("cat /run/g.dot")));
    sb.berth_ok(&["graph", "-o", "/run/g.png", "--format", "text"]);
    assert!(stdout(&sb.sh_ok("cat /run/g.png")).starts_with("host\n"));
    let out = sb.berth(&["graph", "-o", "/run/g.png"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/run/g.png"), "{err}");
    let out = sb.berth(&["graph", "--format", "png"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("png"), "{}", stderr(&out));
}

#[test]
fn an_empty_host_renders_a_clear_no_networks_graph_and_creates_no_state() {
    let sb = Sandbox::new();
    let text = sb.berth_ok(&["graph"]);
    assert!(text.contains("no state yet"), "{text}");
    assert!(text.contains("no networks"), "{text}");
    let texts = svg_texts(&sb.berth_ok(&["graph", "--format", "svg"]));
    assert!(texts.iter().any(|t| t == "no networks"), "{texts:?}");
    let dot = parse_dot(&sb.berth_ok(&["graph", "--format", "dot"]));
    assert!(dot.nodes.contains("none"), "{:?}", dot.nodes);
    let out = sb.sh(&format!("test -e {STATE_DIR}"));
    assert!(!out.status.success(), "graph created the state directory");

    // With state but no network left: still a clear picture.
    sb.create_network("gone", "10.90.0.0/24");
    sb.berth_ok(&["network", "rm", "gone"]);
    let text = sb.berth_ok(&["graph"]);
    assert!(
        text.contains("no networks") && !text.contains("no state"),
        "{text}"
    );
}

/// Connects `n` fresh namespaces to `net`, one berth process after another.
fn connect_many(sb: &Sandbox, net: &str, n: usize) {
    let script = format!(
        "for i in $(seq 1 {n}); do ip netns add s$i && \
         BERTH_STATE_DIR={STATE_DIR} BERTH_NFT_MAX_KERNEL={MIN_KERNEL} {BERTH} connect {net} s$i \
         --name e$i -p $((20000+i)):80 >/dev/null || echo FAIL$i; done"
    );
    let out = run_timeout(
        sb.command(None, "sh", &["-c", &script]),
        Duration::from_secs(900),
    );
    assert!(
        !stdout(&out).contains("FAIL"),
        "connect failed: {}",
        stdout(&out)
    );
}

#[test]
fn a_thousand_endpoints_stay_bounded_and_name_what_is_left_out() {
    let sb = Sandbox::new();
    sb.create_network("big", "10.80.0.0/20");
    sb.create_network("small", "10.81.0.0/24");
    sb.add_netns("lone");
    sb.connect("small", "lone", &[]);
    let n = 1000;
    connect_many(&sb, "big", n);
    assert_eq!(sb.endpoints().len(), n + 1);

    let mut sizes = HashMap::new();
    for format in ["text", "dot", "svg"] {
        let start = Instant::now();
        let out = sb.berth_ok(&["graph", "--format", format]);
        eprintln!(
            "graph --format {format} with {} endpoints: {:?}, {} bytes",
            n + 1,
            start.elapsed(),
            out.len()
        );
        let hidden = n - 8;
        assert!(
            out.contains(&format!("and {hidden} more")),
            "{format} does not name the {hidden} left out"
        );
        assert!(out.contains("berth ps --filter network=big"), "{format}");
        assert!(
            out.contains(&format!("{hidden} published port(s)")),
            "{format} does not count the ports of those left out"
        );
        assert!(
            out.contains("lone"),
            "{format}: the small network is shown whole"
        );
        sizes.insert(format, out.len());
        match format {
            "svg" => {
                let texts = svg_texts(&out);
                assert!(texts.len() < 400, "{} texts", texts.len());
            }
            "dot" => {
                let dot = parse_dot(&out);
                assert!(dot.nodes.len() < 30, "{} nodes", dot.nodes.len());
            }
            _ => assert!(out.lines().count() < 60, "{out}"),
        }
    }
    assert!(sizes["text"] < 8_000, "{sizes:?}");
    assert!(sizes["dot"] < 12_000, "{sizes:?}");
    assert!(sizes["svg"] < 40_000, "{sizes:?}");

    // --all shows every endpoint.
    let all = sb.berth_ok(&["graph", "--all"]);
    for i in [1, 500, n] {
        assert!(
            all.contains(&format!("e{i}  netns s{i} ")),
            "e{i} missing from --all"
        );
    }
    assert!(!all.contains("more ("), "--all summarised something");
    let svg = sb.berth_ok(&["graph", "--all", "--format", "svg"]);
    let texts = svg_texts(&svg);
    assert!(
        texts
            .iter()
            .filter(|t| t.starts_with('e') && t[1..].parse::<u32>().is_ok())
            .count()
            == n
    );
}

/// Every address `ip -j` shows on `ifname` in `netns`, IPv6 link-local
/// ones left out, as `addr/len`.
fn kernel_addresses(sb: &Sandbox, netns: &str, ifname: &str) -> Vec<String> {
    let v = sb.ip_json_in(Some(netns), &["addr", "show", "dev", ifname]);
    v[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] != "link")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

#[test]
fn ipv6_subnets_addresses_ports_and_uplink_in_every_format() {
    let sb = Sandbox::new();
    sb.add_veth("eth9", "lan9");
    sb.sh_ok(
        "ip addr add 192.168.7.20/24 dev eth9 && ip -6 addr add 2001:db8:7::20/64 dev eth9 nodad \
         && ip link set eth9 up && ip link set lan9 up \
         && ip route add default via 192.168.7.1 && ip -6 route add default via 2001:db8:7::1",
    );
    sb.berth_ok(&[
        "network",
        "create",
        "dual",
        "--subnet",
        "10.90.0.0/24",
        "--subnet6",
        "fd00:90::/64",
    ]);
    sb.berth_ok(&[
        "network",
        "create",
        "six",
        "--no-ipv4",
        "--subnet6",
        "fd00:91::/64",
    ]);
    for ns in ["a", "b"] {
        sb.add_netns(ns);
    }
    sb.connect("dual", "a", &["-p", "8080:80", "-p", "[::1]:9000:90"]);
    sb.connect("six", "b", &["-p", "[::]:7000:70/udp"]);
    // The oracle: the kernel's addresses in each namespace.
    let a = kernel_addresses(&sb, "a", "eth0");
    let b = kernel_addresses(&sb, "b", "eth0");
    assert_eq!(a, vec!["10.90.0.2/24", "fd00:90::2/64"], "{a:?}");
    assert_eq!(b, vec!["fd00:91::2/64"], "{b:?}");
    let subnets = ["10.90.0.0/24", "fd00:90::/64", "fd00:91::/64"];
    let gateways = ["10.90.0.1", "fd00:90::1", "fd00:91::1"];
    let ports = [
        ("0.0.0.0:8080", "80/tcp"),
        ("[::1]:9000", "90/tcp"),
        ("[::]:7000", "70/udp"),
    ];
    let check = |what: &str, text: &str| {
        for s in subnets.iter().chain(&gateways) {
            assert!(text.contains(s), "{what} lacks {s}:\n{text}");
        }
        for addr in a.iter().chain(&b) {
            assert!(text.contains(addr.as_str()), "{what} lacks {addr}:\n{text}");
        }
        for (host, inside) in ports {
            assert!(
                text.lines().any(|l| l.contains(host) && l.contains(inside)),
                "{what} lacks published {host} -> {inside}:\n{text}"
            );
        }
        assert!(text.contains("2001:db8:7::20/64"), "{what}: {text}");
        assert!(text.contains("2001:db8:7::1"), "{what}: {text}");
    };
    let svg = sb.berth_ok(&["graph", "--format", "svg"]);
    check("svg", &svg_texts(&svg).join("\n"));
    let text = sb.berth_ok(&["graph", "--format", "text"]);
    check("text", &text);
    let dot = sb.berth_ok(&["graph", "--format", "dot"]);
    let parsed = parse_dot(&dot);
    let labels: Vec<String> = parsed
        .edges
        .iter()
        .map(|(_, _, l)| l.clone())
        .chain(parsed.nodes.iter().cloned())
        .collect();
    check("dot", &format!("{}\n{}", labels.join("\n"), dot));
    graphviz_accepts(&dot);
}

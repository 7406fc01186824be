//! Two Kubernetes-style "nodes" in one sandbox, each a network namespace
//! with its own berth state and its own dual-stack pod subnets (one IPv4,
//! one IPv6, as host-local's `ranges` name them), joined by an underlay
//! veth with addresses of both families, with a route to each other's pod
//! subnets (kubenet / flannel host-gw style). berth is each node's CNI
//! plugin. Pods reach pods on the other node over both families with
//! their own address as the source (`clusterCIDR` of both families: no
//! masquerade inside the cluster, new connections from it accepted),
//! while traffic leaving the cluster is still masqueraded, in both
//! families.

mod util;

use std::io::Write;
use std::process::Stdio;

use serde_json::{json, Value};
use util::*;

const CLUSTER: &str = "10.244.0.0/16";
const CLUSTER6: &str = "fd00:244::/48";

/// Runs the berth CNI plugin as node `node`'s runtime would: inside the
/// node's namespace, with the node's own state directory.
fn cni_on(sb: &Sandbox, node: &str, command: &str, env: &[(&str, &str)], stdin: &str) -> Value {
    let mut c = sb.command(Some(node), BERTH, &[]);
    c.env("BERTH_STATE_DIR", format!("/run/berth-{node}"))
        .env("BERTH_NFT_MAX_KERNEL", MIN_KERNEL)
        .env("CNI_COMMAND", command);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{command} on {node}: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A node's pod network: its two pod subnets as a CRI runtime's template
/// fills host-local's `ranges` (the node's IPv4 and IPv6 pod CIDRs).
fn pod_conf(subnet: &str, subnet6: &str) -> String {
    json!({
        "cniVersion": "1.0.0", "name": "pods", "type": "berth",
        "clusterCIDR": [CLUSTER, CLUSTER6],
        "ipam": {"type": "host-local",
                 "ranges": [[{"subnet": subnet}], [{"subnet": subnet6}]],
                 "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]},
    })
    .to_string()
}

/// The address of the family (`ipv6`) in an ADD result.
fn address_of(out: &Value, ipv6: bool) -> String {
    let address = out["ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["address"].as_str())
        .find(|a| a.contains(':') == ipv6)
        .unwrap_or_else(|| panic!("no address of the family in {out}"));
    address.split('/').next().unwrap().to_string()
}

fn v6(addr: &str, port: u16) -> String {
    format!("[{addr}]:{port}")
}

/// ADD of pod `pod` on `node`; returns its IPv4 and IPv6 addresses.
fn add_pod(sb: &Sandbox, node: &str, pod: &str, subnet: &str, subnet6: &str) -> (String, String) {
    sb.add_netns(pod);
    let path = format!("/run/netns/{pod}");
    let out = cni_on(
        sb,
        node,
        "ADD",
        &[
            ("CNI_CONTAINERID", pod),
            ("CNI_NETNS", &path),
            ("CNI_IFNAME", "eth0"),
        ],
        &pod_conf(subnet, subnet6),
    );
    (address_of(&out, false), address_of(&out, true))
}

#[test]
fn pods_on_two_nodes_talk_with_their_own_addresses() {
    let sb = Sandbox::new();
    sb.add_netns("nodeA");
    sb.add_netns("nodeB");
    // The underlay: one link between the nodes, with addresses of both
    // families, and host-gw routes to each other's pod subnets.
    sb.sh_ok(
        "ip link add under netns nodeA type veth peer name under netns nodeB && \
         ip -n nodeA addr add 192.168.100.1/24 dev under && \
         ip -n nodeA -6 addr add fd00:100::1/64 dev under nodad && ip -n nodeA link set under up && \
         ip -n nodeB addr add 192.168.100.2/24 dev under && \
         ip -n nodeB -6 addr add fd00:100::2/64 dev under nodad && ip -n nodeB link set under up && \
         ip -n nodeA route add 10.244.2.0/24 via 192.168.100.2 && \
         ip -n nodeB route add 10.244.1.0/24 via 192.168.100.1 && \
         ip -n nodeA -6 route add fd00:244:0:2::/64 via fd00:100::2 && \
         ip -n nodeB -6 route add fd00:244:0:1::/64 via fd00:100::1",
    );
    // A node forwards to its IPv6 neighbour once it can solicit it from a
    // link-local address past duplicate address detection (about 1 s).
    sb.sh_ok(
        "for i in $(seq 100); do \
           [ -z \"$(ip -n nodeA -6 addr show dev under tentative)$(ip -n nodeB -6 addr show dev under tentative)\" ] && exit 0; \
           sleep 0.05; done; exit 1",
    );
    let (a1, a16) = add_pod(&sb, "nodeA", "a1", "10.244.1.0/24", "fd00:244:0:1::/64");
    let (b1, b16) = add_pod(&sb, "nodeB", "b1", "10.244.2.0/24", "fd00:244:0:2::/64");
    assert!(a1.starts_with("10.244.1."), "{a1}");
    assert!(b1.starts_with("10.244.2."), "{b1}");
    assert!(a16.starts_with("fd00:244:0:1::"), "{a16}");
    assert!(b16.starts_with("fd00:244:0:2::"), "{b16}");

    // Pod to pod across the nodes, both ways, in both families: the
    // client address is kept.
    let _sb1 = sb.tcp_server(Some("b1"), "[::]:7000");
    let _sa1 = sb.tcp_server(Some("a1"), "[::]:7000");
    assert_eq!(sb.assert_tcp(Some("a1"), &format!("{b1}:7000")), a1);
    assert_eq!(sb.assert_tcp(Some("b1"), &format!("{a1}:7000")), b1);
    assert_eq!(sb.assert_tcp(Some("a1"), &v6(&b16, 7000)), a16);
    assert_eq!(sb.assert_tcp(Some("b1"), &v6(&a16, 7000)), b16);
    sb.assert_ping(Some("a1"), &b1);
    sb.assert_ping(Some("a1"), &b16);

    // Leaving the cluster (here: to the other node's own addresses) is
    // still masqueraded to the node's address, in each family.
    let _node = sb.tcp_server(Some("nodeB"), "[::]:7001");
    assert_eq!(
        sb.assert_tcp(Some("a1"), "192.168.100.2:7001"),
        "192.168.100.1"
    );
    assert_eq!(
        sb.assert_tcp(Some("a1"), &v6("fd00:100::2", 7001)),
        "fd00:100::1"
    );
    // The other node's host is not in the cluster ranges: it cannot open
    // connections to pods (the default-deny for new inbound connections).
    assert_ne!(
        sb.tcp(Some("nodeB"), &format!("{a1}:7000")).status.code(),
        Some(0)
    );
    assert_ne!(
        sb.tcp(Some("nodeB"), &v6(&a16, 7000)).status.code(),
        Some(0)
    );

    // Each node's berth knows only its own pod; the real host is untouched.
    for (node, pod) in [("nodeA", "a1"), ("nodeB", "b1")] {
        let out = sb.command(Some(node), BERTH, &["ps", "--json"]);
        let mut out = out;
        out.env("BERTH_STATE_DIR", format!("/run/berth-{node}"));
        let out = run_timeout(out, CMD_TIMEOUT);
        let eps: Value = parse_json(&out, "ps");
        let eps = eps.as_array().unwrap();
        assert_eq!(eps.len(), 1, "{node}: {eps:?}");
        assert_eq!(eps[0]["container_id"], pod);
    }
}

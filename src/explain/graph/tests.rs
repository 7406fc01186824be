//! The renderers on a hand-made graph (snapshots a reviewer reads as a
//! diff), and the builder on hand-made rows and host facts.

use std::net::Ipv4Addr;

use expect_test::{expect, expect_file};

use super::build::{self, Rows};
use super::model::*;
use super::{render, Format};
use crate::kernel::{AddrFact, LinkFact, NetnsFacts};
use crate::model::{Endpoint, EndpointMark, Network, NetworkPolicy, PortMapping, Proto};
use crate::store::{Owners, Status};

fn endpoint(name: &str, netns_key: &str, ifname: &str, address: &str, mac: &str) -> EndpointNode {
    EndpointNode {
        name: name.into(),
        netns: name.into(),
        netns_key: netns_key.into(),
        ifname: ifname.into(),
        address: address.into(),
        mac: mac.into(),
        host_ifname: format!("vb{name}"),
        status: "up".into(),
        ..Default::default()
    }
}

/// Two networks (one internal), a namespace on both, published ports, a
/// Podman endpoint, a name that needs escaping.
fn sample() -> Graph {
    let mut web1 = endpoint("web1", "a", "eth0", "10.90.0.2/24", "02:42:0a:5a:00:02");
    web1.ports = vec![
        Port {
            host: "0.0.0.0:8080".into(),
            inside: "80/tcp".into(),
        },
        Port {
            host: "127.0.0.1:9000-9001".into(),
            inside: "9000-9001/udp".into(),
        },
    ];
    let mut pod = endpoint("pod<&>", "p", "eth0", "10.90.0.4/24", "02:42:0a:5a:00:04");
    pod.owner = Some("podman".into());
    pod.container = Some("0123456789ab".into());
    pod.netns = "/run/netns/pod".into();
    let mut lost = endpoint("lost", "l", "eth0", "10.91.0.3/24", "02:42:0a:5b:00:03");
    lost.status = "veth gone".into();
    Graph {
        no_state: None,
        facts_missing: None,
        uplinks: vec![Uplink {
            ifname: "eth0".into(),
            addresses: vec!["192.168.1.20/24".into()],
            default_via: Some("192.168.1.1".into()),
            networks: Vec::new(),
            up: Some(true),
        }],
        networks: vec![
            NetworkNode {
                name: "web".into(),
                bridge: "berth-web".into(),
                subnet: "10.90.0.0/24".into(),
                gateway: "10.90.0.1".into(),
                bridge_up: Some(true),
                flags: Flags {
                    dns: true,
                    ..Default::default()
                },
                endpoints: vec![
                    web1,
                    endpoint("app", "b", "eth0", "10.90.0.3/24", "02:42:0a:5a:00:03"),
                    pod,
                ],
                ..Default::default()
            },
            NetworkNode {
                name: "db".into(),
                bridge: "berth-db".into(),
                subnet: "10.91.0.0/24".into(),
                gateway: "10.91.0.1".into(),
                bridge_up: Some(false),
                flags: Flags {
                    internal: true,
                    no_icc: true,
                    deny_egress: vec!["10.0.0.0/8".into()],
                    no_host_access: true,
                    ..Default::default()
                },
                endpoints: vec![
                    endpoint("app", "b", "eth1", "10.91.0.2/24", "02:42:0a:5b:00:02"),
                    lost,
                ],
                ..Default::default()
            },
        ],
    }
}

#[test]
fn text_tree() {
    expect![[r#"
        host
        ├── uplink eth0 192.168.1.20/24, default via 192.168.1.1
        ├── network web  bridge berth-web  subnet 10.90.0.0/24  gateway 10.90.0.1  [dns]
        │   ├── web1  eth0 10.90.0.2/24  mac 02:42:0a:5a:00:02
        │   │   ├── published 0.0.0.0:8080 -> 80/tcp
        │   │   └── published 127.0.0.1:9000-9001 -> 9000-9001/udp
        │   ├── app  eth0 10.90.0.3/24  mac 02:42:0a:5a:00:03  (its namespace is also on db)
        │   └── pod<&>  netns /run/netns/pod  eth0 10.90.0.4/24  mac 02:42:0a:5a:00:04  [podman 0123456789ab]
        └── network db  bridge berth-db (missing or down)  subnet 10.91.0.0/24  gateway 10.91.0.1  [internal, no-icc, deny-egress 10.0.0.0/8, no-host-access]
            ├── app  eth1 10.91.0.2/24  mac 02:42:0a:5b:00:02  (its namespace is also on web)
            └── lost  eth0 10.91.0.3/24  mac 02:42:0a:5b:00:03  (veth gone)
        namespaces on several networks:
          app: web (eth0 10.90.0.3/24), db (eth1 10.91.0.2/24)
        networks are isolated from each other: only a namespace with an endpoint on both reaches both
    "#]]
    .assert_eq(&render(&sample(), Format::Text));
}

#[test]
fn dot_graph() {
    expect_file!["../../../tests/snapshots/graph_sample.dot"]
        .assert_eq(&render(&sample(), Format::Dot));
}

#[test]
fn svg_picture() {
    expect_file!["../../../tests/snapshots/graph_sample.svg"]
        .assert_eq(&render(&sample(), Format::Svg));
}

#[test]
fn svg_escapes_what_xml_gives_a_meaning_to() {
    assert_eq!(
        crate::explain::graph::svg::escape(r#"a<b>&"c'"#),
        "a&lt;b&gt;&amp;&quot;c&apos;"
    );
    let svg = render(&sample(), Format::Svg);
    assert!(svg.contains(">pod&lt;&amp;&gt;</text>"), "{svg}");
    assert!(!svg.contains("pod<&>"));
}

#[test]
fn collapse_keeps_the_first_few_and_counts_the_rest() {
    let mut g = sample();
    g.networks[0].endpoints = (0..1000)
        .map(|i| {
            endpoint(
                &format!("e{i}"),
                &format!("k{i}"),
                "eth0",
                "10.90.0.9/24",
                "m",
            )
        })
        .collect();
    g.collapse(Some(DEFAULT_LIMIT));
    assert_eq!(g.networks[0].endpoints.len(), SHOWN_WHEN_COLLAPSED);
    assert_eq!(g.networks[0].hidden, 1000 - SHOWN_WHEN_COLLAPSED);
    assert_eq!(g.networks[1].hidden, 0, "a small network stays whole");
    assert_eq!(g.endpoint_count(), 1002);
    let text = render(&g, Format::Text);
    assert!(text.contains(&format!(
        "... and {} more (berth ps --filter network=web)",
        1000 - SHOWN_WHEN_COLLAPSED
    )));
    let dot = render(&g, Format::Dot);
    assert!(
        dot.contains("\"more:web\" [label=\"... and 992 more\\nberth ps --filter network=web\"")
    );
    assert!(render(&g, Format::Svg).contains(">... and 992 more</text>"));
    // Up to the limit, nothing is summarised; None keeps everything.
    let mut g = sample();
    g.collapse(Some(3));
    assert_eq!(g.networks[0].hidden, 0);
    g.collapse(None);
    assert_eq!(g.networks[0].endpoints.len(), 3);
}

#[test]
fn an_empty_host() {
    let g = Graph {
        no_state: Some("/var/lib/berth".into()),
        ..Graph::default()
    };
    expect![[r#"
        berth has no state yet (/var/lib/berth): nothing made so far
        host
        └── no networks (`berth network create NAME` makes one)
    "#]]
    .assert_eq(&render(&g, Format::Text));
    assert!(render(&g, Format::Dot).contains("\"none\" [label=\"no networks\""));
    assert!(render(&g, Format::Svg).contains(">no networks</text>"));
}

fn link(name: &str, index: u32, up: bool) -> LinkFact {
    LinkFact {
        name: name.into(),
        index,
        group: 0,
        kind: String::new(),
        master: None,
        up,
        mac: None,
    }
}

#[test]
fn the_builder_reads_uplinks_owners_and_link_states() {
    let net = |id: i64, name: &str, subnet: &str, policy: NetworkPolicy| Network {
        id,
        name: name.into(),
        subnets: vec![crate::model::Subnet {
            net: subnet.parse().unwrap(),
            gateway: Some(subnet.replace("0/24", "1").parse().unwrap()),
        }],
        bridge: format!("berth-{name}"),
        mtu: 1500,
        link_group: 0,
        route_table: 0,
        policy,
        driver: Default::default(),
    };
    let routed = NetworkPolicy {
        uplink: Some(crate::model::Uplink {
            ifname: "eth1".into(),
            gateway: Ipv4Addr::new(172, 20, 0, 1).into(),
        }),
        ..NetworkPolicy::default()
    };
    let ep = |id: i64, network: &str, name: &str, inode: u64, ip: [u8; 4]| Endpoint {
        id,
        network: network.into(),
        name: name.into(),
        netns: name.into(),
        netns_inode: inode,
        ips: vec![std::net::IpAddr::V4(ip.into())],
        mac: "02:42:0a:00:00:02".parse().unwrap(),
        ifname: "eth0".into(),
        host_ifname: format!("vb{name}"),
        default_route: crate::model::Families::V4,
        metric: None,
        ports: Vec::new(),
        bandwidth: Default::default(),
        allow_spoofing: false,
    };
    let mut a = ep(1, "web", "a", 7, [10, 90, 0, 2]);
    a.ports.push(PortMapping {
        host_ip: Ipv4Addr::UNSPECIFIED.into(),
        host_port: 8080,
        container_port: 80,
        count: 1,
        proto: Proto::Tcp,
    });
    let mut owners = Owners::default();
    owners.networks.insert("web".into(), "podman".into());
    owners.endpoints.insert(
        1,
        EndpointMark {
            owner: Some("podman".into()),
            container_id: Some("0123456789abcdef".into()),
        },
    );
    let rows = Rows {
        networks: vec![
            net(1, "web", "10.90.0.0/24", NetworkPolicy::default()),
            net(2, "out", "10.92.0.0/24", routed),
        ],
        endpoints: vec![
            (a, Status::Ready),
            (ep(2, "web", "b", 8, [10, 90, 0, 3]), Status::Ready),
            (ep(3, "out", "a2", 7, [10, 92, 0, 2]), Status::Creating),
        ],
        owners,
    };
    let facts = NetnsFacts {
        links: vec![
            link("eth0", 2, true),
            link("eth1", 3, false),
            link("berth-web", 4, true),
            link("vba", 5, true),
        ],
        addrs: vec![AddrFact {
            index: 2,
            ip: Ipv4Addr::new(192, 168, 1, 20),
            prefix_len: 24,
        }],
        default_gateways: vec![Ipv4Addr::new(192, 168, 1, 1)],
        ..Default::default()
    };
    let g = build::graph(&rows, Some(&facts));
    expect![[r#"
        host
        ├── uplink eth0 192.168.1.20/24, default via 192.168.1.1
        ├── uplink eth1, uplink of out (missing or down)
        ├── network web  bridge berth-web  subnet 10.90.0.0/24  gateway 10.90.0.1  [dns, owner podman]
        │   ├── a  eth0 10.90.0.2/24  mac 02:42:0a:00:00:02  [podman 0123456789ab]  (its namespace is also on out)
        │   │   └── published 0.0.0.0:8080 -> 80/tcp
        │   └── b  eth0 10.90.0.3/24  mac 02:42:0a:00:00:02  (veth gone)
        └── network out  bridge berth-out (missing or down)  subnet 10.92.0.0/24  gateway 10.92.0.1  [dns, uplink eth1 via 172.20.0.1]
            └── a2  eth0 10.92.0.2/24  mac 02:42:0a:00:00:02  (creating)  (its namespace is also on web)
        namespaces on several networks:
          a: web (eth0 10.90.0.2/24), out (eth0 10.92.0.2/24)
        networks are isolated from each other: only a namespace with an endpoint on both reaches both
    "#]]
    .assert_eq(&render(&g, Format::Text));
    // Without the kernel's facts, no link is called missing.
    let g = build::graph(&rows, None);
    assert!(g.uplinks.iter().all(|u| u.up.is_none()), "{:?}", g.uplinks);
    assert!(g.networks.iter().all(|n| n.bridge_up.is_none()));
    assert_eq!(g.networks[0].endpoints[1].status, "up");
}

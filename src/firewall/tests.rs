use super::*;
use crate::model::{NetworkPolicy, Uplink};

fn net(name: &str, policy: NetworkPolicy) -> Network {
    Network {
        id: 1,
        name: name.into(),
        subnet: "10.90.0.0/24".parse().unwrap(),
        gateway: "10.90.0.1".parse().unwrap(),
        bridge: format!("berth-{name}"),
        mtu: 1500,
        link_group: 1,
        route_table: 2,
        policy,
    }
}

#[test]
fn first_network_brings_the_table_and_its_undo_removes_it() {
    let c = add_network(&net("web", NetworkPolicy::default()), false);
    let lines = c.batch.render();
    assert_eq!(lines[0], "add table inet berth");
    assert!(lines.contains(&"add rule inet berth forward iifname vmap @fwd_from".to_string()));
    assert!(lines.contains(
        &"add rule inet berth web-nat ip saddr 10.90.0.0/24 oifname != \"berth-web\" masquerade"
            .to_string()
    ));
    assert_eq!(c.undo.render(), vec!["destroy table inet berth"]);
}

#[test]
fn later_networks_add_only_their_part() {
    let c = add_network(&net("web", NetworkPolicy::default()), true);
    let lines = c.batch.render();
    assert!(lines.iter().all(|l| !l.contains("add table")), "{lines:?}");
    assert!(lines
        .iter()
        .all(|l| l.contains("web-") || l.contains("berth-web")));
    assert_eq!(
        c.undo,
        remove_network(&net("web", NetworkPolicy::default()), false).batch
    );
}

#[test]
fn options_shape_the_out_chain() {
    let policy = NetworkPolicy {
        masquerade: true,
        icc: false,
        internal: true,
        deny_egress: vec!["10.0.0.0/8".parse().unwrap()],
        uplink: Some(Uplink {
            ifname: "eth1".into(),
            gateway: "192.0.2.1".parse().unwrap(),
        }),
        log_drops: true,
    };
    let lines = add_network(&net("db", policy), true).batch.render();
    let out: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("add rule inet berth db-out"))
        .collect();
    assert_eq!(
        out,
        vec![
            "add rule inet berth db-out ct state invalid goto db-drop",
            "add rule inet berth db-out oifname \"berth-db\" goto db-drop",
            "add rule inet berth db-out ip daddr 10.0.0.0/8 goto db-reject",
            "add rule inet berth db-out goto db-drop",
        ]
    );
    // Internal networks are not masqueraded.
    assert!(lines.iter().all(|l| !l.contains("masquerade")), "{lines:?}");
    assert!(lines
        .iter()
        .any(|l| l.contains("log prefix \"berth db drop: \"")));
}

#[test]
fn removing_the_last_network_removes_the_table_and_undo_rebuilds_it() {
    let n = net("web", NetworkPolicy::default());
    let c = remove_network(&n, true);
    assert_eq!(c.batch.render(), vec!["destroy table inet berth"]);
    assert_eq!(c.undo, add_network(&n, false).batch);
}

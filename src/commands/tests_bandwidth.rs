//! Bandwidth limits through the commands, against the fake kernel: a
//! connect shapes the host veth and an ifb, the limits are recorded and
//! listed, a failed connect takes its ifb back, disconnect and a runtime's
//! GC delete the ifb with the veth, and `up` shapes a re-created veth.

use super::tests::{attach, host, Host};
use super::*;
use crate::kernel::Kernel;
use crate::model::{names, Bandwidth, Limit};

fn limits() -> Bandwidth {
    Bandwidth {
        inbound: Some(Limit::at_rate(20_000_000)),
        outbound: Some(Limit::at_rate(5_000_000)),
    }
}

fn connect_limited(h: &mut Host, netns: &str) -> Endpoint {
    let mut req = attach("web", netns, &[]);
    req.bandwidth = limits();
    connect(&mut h.ctx, req).unwrap().applied().unwrap().0
}

#[test]
fn connect_shapes_both_ways_and_records_the_limits() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    let e = connect_limited(&mut h, "c1");
    let ifb = names::ifb_name(&e.host_ifname);
    assert_eq!(
        h.fake().tc_of(&e.host_ifname),
        [format!("redirect {ifb}"), "tbf 20mbit".into()]
    );
    assert_eq!(h.fake().tc_of(&ifb), ["tbf 5mbit"]);
    let link = h.fake().link_in(None, &ifb).cloned().expect("the ifb");
    assert_eq!(
        (link.fact.kind.as_str(), link.fact.group, link.fact.up),
        ("ifb", names::network_link_group(1), true)
    );
    // What `ps` lists is what the state holds.
    let listed = endpoint::list(&mut h.ctx).unwrap();
    assert_eq!(listed[0].0.bandwidth, limits());
    assert_eq!(listed[0].0.bandwidth.summary(), "in 20mbit, out 5mbit");
}

#[test]
fn limits_out_of_range_are_refused_before_anything_is_made() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    let before = (h.rows(), h.host_links());
    let mut req = attach("web", "c1", &[]);
    req.bandwidth.inbound = Some(Limit { rate: 1, burst: 10 });
    let err = connect(&mut h.ctx, req).err().expect("refused");
    assert!(err.to_string().contains("inbound limit"), "{err}");
    assert_eq!((h.rows(), h.host_links()), before);
}

#[test]
fn a_failed_connect_takes_its_ifb_back() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    h.fake().fail_on = Some("redirect_ingress".into());
    let mut req = attach("web", "c1", &[]);
    req.bandwidth = limits();
    assert!(connect(&mut h.ctx, req).is_err());
    h.fake().fail_on = None;
    assert_eq!(h.host_links(), ["berth-web"], "veth and ifb undone");
    assert_eq!(h.rows(), ["network web 10.90.0.0/24 ready"]);
}

#[test]
fn disconnect_and_a_runtimes_gc_delete_the_ifb_with_the_veth() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    h.netns("c2");
    h.netns("c3");
    let e1 = connect_limited(&mut h, "c1");
    let e2 = connect_limited(&mut h, "c2");
    let e3 = connect_limited(&mut h, "c3");
    h.disconnect("web", "c1");
    let gone = |h: &mut Host, e: &Endpoint| {
        let links = h.host_links();
        !links.contains(&e.host_ifname) && !links.contains(&names::ifb_name(&e.host_ifname))
    };
    assert!(gone(&mut h, &e1), "{:?}", h.host_links());
    assert!(!gone(&mut h, &e2));
    crate::executor::transaction(&mut h.ctx, crate::executor::Preflight::Run, |txn| {
        txn.apply(DetachAll {
            ids: vec![e2.id, e3.id],
        })
    })
    .unwrap()
    .applied()
    .unwrap();
    assert!(
        gone(&mut h, &e2) && gone(&mut h, &e3),
        "{:?}",
        h.host_links()
    );
    assert_eq!(h.host_links(), ["berth-web"]);
}

#[test]
fn up_shapes_a_recreated_veth_again() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    let e = connect_limited(&mut h, "c1");
    // Someone deletes the veth (its peer goes with it); the ifb stays.
    h.fake().delete_link(&e.host_ifname).unwrap();
    assert!(h.fake().tc_of(&e.host_ifname).is_empty());
    let report = maintain::up(&mut h.ctx).unwrap().applied().unwrap();
    assert!(
        report.iter().any(|l| l.contains("re-created the veth")),
        "{report:?}"
    );
    let ifb = names::ifb_name(&e.host_ifname);
    assert_eq!(
        h.fake().tc_of(&e.host_ifname),
        [format!("redirect {ifb}"), "tbf 20mbit".into()]
    );
    assert_eq!(h.fake().tc_of(&ifb), ["tbf 5mbit"]);
    // The ifb outlived the veth and was used again.
    let creations = h
        .fake()
        .log
        .iter()
        .filter(|l| l.starts_with("create_ifb"))
        .count();
    assert_eq!(creations, 1);
}

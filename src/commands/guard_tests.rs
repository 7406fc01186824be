//! The guards' decisions against the fake kernel: anti-spoofing elements
//! that follow every connect, disconnect, network removal, reconcile and
//! reset; a DNS listener no published port may take; `--no-host-access`.

use super::tests::{attach, host, Host};
use super::*;
use crate::context::Notice;
use crate::error::Error;
use crate::firewall::guard;
use crate::request::{DetachRequest, EndpointRef};

/// The guard's elements as the fake kernel holds them, sorted.
fn held(h: &mut Host) -> Vec<String> {
    let mut v: Vec<String> = h
        .fake()
        .guard_elements
        .iter()
        .map(|(set, e)| format!("{set} {}", e.render()))
        .collect();
    v.sort();
    v
}

/// The guard's elements the state asks for, sorted.
fn wanted(h: &mut Host) -> Vec<String> {
    let mut store = h.ctx.store_read_only().unwrap().expect("a state");
    let tx = store.read().unwrap();
    let endpoints: Vec<Endpoint> = tx
        .endpoints_with_status()
        .unwrap()
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    let e = guard::elements(&endpoints);
    let mut v: Vec<String> = [(guard::GUARDED, &e.guarded), (guard::ALLOWED4, &e.allowed4)]
        .into_iter()
        .flat_map(|(set, els)| els.iter().map(move |x| format!("{set} {}", x.render())))
        .collect();
    v.sort();
    v
}

/// One change of a scripted sequence.
type Step = Box<dyn Fn(&mut Host)>;

fn detach(h: &mut Host, network: &str, target: &str) {
    disconnect(
        &mut h.ctx,
        DetachRequest::new(network, EndpointRef::Target(target.into())),
    )
    .unwrap()
    .applied()
    .unwrap();
}

#[test]
fn guard_elements_follow_every_change_of_the_endpoints() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.network("db", "10.91.0.0/24");
    assert!(
        h.fake().guard_chains.is_some(),
        "the table came with the first network"
    );
    for ns in ["c1", "c2", "r"] {
        h.netns(ns);
    }
    let mut steps: Vec<Step> = vec![
        Box::new(|h| drop(h.connect("web", "c1", &["8080:80"]))),
        Box::new(|h| drop(h.connect("web", "c2", &[]))),
        // c1 on a second network: each of its ports may send with both
        // of its addresses.
        Box::new(|h| drop(h.connect("db", "c1", &[]))),
        Box::new(|h| {
            let mut req = attach("db", "r", &[]);
            req.allow_spoofing = true;
            connect(&mut h.ctx, req).unwrap().applied().unwrap();
        }),
        Box::new(|h| detach(h, "web", "c1")),
        Box::new(|h| drop(h.connect("web", "r", &[]))),
        Box::new(|h| {
            drop(
                remove_network(&mut h.ctx, "db", true)
                    .unwrap()
                    .applied()
                    .unwrap(),
            )
        }),
        Box::new(|h| detach(h, "web", "c2")),
    ];
    for (i, step) in steps.drain(..).enumerate() {
        step(&mut h);
        assert_eq!(held(&mut h), wanted(&mut h), "after step {i}");
    }
    // What is left: r's port on web, with its address there only (its db
    // endpoint went with db).
    let veth = crate::model::names::host_veth_name("web", "r");
    assert_eq!(
        held(&mut h),
        [
            format!("allowed4 \"{veth}\" . 02:42:0a:5a:00:04 . 10.90.0.4"),
            format!("guarded \"{veth}\"")
        ]
    );
    // The last network takes the table with it; reset finds nothing.
    remove_network(&mut h.ctx, "web", true)
        .unwrap()
        .applied()
        .unwrap();
    assert!(h.fake().guard_chains.is_none());
    assert!(h.fake().guard_elements.is_empty());
}

#[test]
fn a_new_port_is_guarded_before_it_exists() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    let plan = h.plan(|ctx| connect(ctx, attach("web", "c1", &[])));
    let lines: Vec<&str> = plan.lines().collect();
    let guard = lines
        .iter()
        .position(|l| l.contains("add element bridge berth guarded"))
        .expect("the guard");
    let veth = lines
        .iter()
        .position(|l| l.starts_with("ip link add"))
        .expect("the veth");
    assert!(guard < veth, "{plan}");
    // --allow-spoofing: no element, and (without ports) no nft message.
    let mut req = attach("web", "c1", &[]);
    req.allow_spoofing = true;
    let plan = h.plan(|ctx| connect(ctx, req));
    assert!(!plan.contains("nft"), "{plan}");
}

#[test]
fn the_reconcile_rebuilds_the_guard_and_reset_removes_it() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    h.netns("c2");
    h.connect("web", "c1", &[]);
    h.connect("web", "c2", &[]);
    let before = held(&mut h);
    assert_eq!(before.len(), 4);
    // Someone deleted the table.
    h.fake().guard_chains = None;
    h.fake().guard_elements.clear();
    let report = maintain::up(&mut h.ctx).unwrap().applied().unwrap();
    assert!(
        report
            .iter()
            .any(|l| l == "re-created the anti-spoofing table"),
        "{report:?}"
    );
    assert_eq!(held(&mut h), before);
    let fp = h.fake().guard_chains.clone().expect("the table");
    assert_eq!(fp.get("guard"), Some(&5), "{fp:?}");
    reset(&mut h.ctx).unwrap().applied().unwrap();
    assert!(h.fake().guard_chains.is_none());
    assert!(!h.fake().nft_table);
}

#[test]
fn a_dns_listener_is_never_published_over() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    h.netns("c2");
    // Bound to the gateway: it could only shadow the DNS server.
    for spec in ["10.90.0.1:53:53/udp", "10.90.0.1:50-60:50-60"] {
        let mut req = attach("web", "c1", &[spec]);
        req.force_publish = true;
        let err = connect(&mut h.ctx, req).err().expect("refused");
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert!(err.to_string().contains("berth's DNS server"), "{err}");
    }
    // On every address: published, kept off the gateways, and said so.
    let mut req = attach("web", "c1", &["53:53/udp"]);
    req.force_publish = true;
    connect(&mut h.ctx, req).unwrap().applied().unwrap();
    let warnings: Vec<String> = h
        .ctx
        .take_notices()
        .into_iter()
        .filter_map(|n| match n {
            Notice::Warning(w) => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("except the gateways of berth's DNS networks (10.90.0.1)"),
        "{warnings:?}"
    );
    // Other ports, and 53 on a network without DNS, say nothing.
    let mut quiet = NetworkRequest::new("quiet");
    quiet.subnets = Some(vec![crate::request::SubnetRequest::given(
        "10.91.0.0/24".parse().unwrap(),
        None,
    )]);
    quiet.dns = false;
    create_network(&mut h.ctx, quiet)
        .unwrap()
        .applied()
        .unwrap();
    h.ctx.take_notices();
    let mut req = attach("quiet", "c2", &["10.91.0.1:53:53/tcp"]);
    req.force_publish = true;
    connect(&mut h.ctx, req).unwrap().applied().unwrap();
    assert!(h.ctx.take_notices().is_empty());
}

#[test]
fn no_host_access_is_recorded_and_planned() {
    let mut h = host();
    let mut req = NetworkRequest::new("vault");
    req.subnets = Some(vec![crate::request::SubnetRequest::given(
        "10.93.0.0/24".parse().unwrap(),
        None,
    )]);
    req.host_access = false;
    let plan = h.plan(|ctx| create_network(ctx, req.clone()));
    assert!(
        plan.contains("add element inet berth input_from { \"berth-vault\" : jump vault-host }"),
        "{plan}"
    );
    let n = create_network(&mut h.ctx, req).unwrap().applied().unwrap();
    assert!(!n.policy.host_access);
    let (listed, _) = network::inspect(&h.ctx, "vault").unwrap();
    assert!(!listed.policy.host_access);
    assert!(listed.policy.summary().contains("no-host-access"));
}

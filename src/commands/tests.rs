//! The commands' decisions, run against the fake kernel and a temporary
//! state, without root: what each change plans (snapshots of the rendered
//! plan, which a reviewer reads as a diff of commands), what the state and
//! the "kernel" hold afterwards, and the executor's rollback and
//! compensation branches.

use std::any::Any;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use expect_test::{expect, Expect};

use super::endpoint::Disconnected;
use super::network::RemoveNetwork;
use super::run::{CreateSandbox, RemoveSandbox};
use super::*;
use crate::change::{Change, Outcome};
use crate::context::{DnsScope, Notice, RecordedNames};
use crate::error::Error;
use crate::executor::{transaction, Preflight};
use crate::kernel::fake::FakeKernel;
use crate::kernel::Kernel;
use crate::request::{AttachRequest, DetachRequest, EndpointRef, NetworkRequest};
use crate::store::Status;

/// A host made of the fake kernel and a state directory of its own.
pub struct Host {
    pub ctx: Context,
    pub syncs: Rc<RefCell<Vec<DnsScope>>>,
    /// The pending links each transaction told the supervisor of.
    pub pending: Rc<RefCell<Vec<usize>>>,
    dir: PathBuf,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn host() -> Host {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "berth-unit-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let kernel = FakeKernel {
        sysctl_value: "0".into(),
        // This process owns the sandboxes `run` records.
        processes: vec![(std::process::id(), 7)],
        ..Default::default()
    };
    let names = RecordedNames::default();
    let syncs = names.syncs.clone();
    let pending = names.pending.clone();
    Host {
        ctx: Context::with(dir.clone(), false, Box::new(kernel), Box::new(names)),
        syncs,
        pending,
        dir,
    }
}

impl Host {
    pub fn fake(&mut self) -> &mut FakeKernel {
        let kernel: &mut dyn Any = self.ctx.kernel.as_mut();
        kernel.downcast_mut().expect("the fake kernel")
    }

    /// The plan of `f` as a dry run would print it.
    pub fn plan<T>(&mut self, f: impl FnOnce(&mut Context) -> Result<Outcome<T>>) -> String {
        self.ctx.dry_run = true;
        let outcome = f(&mut self.ctx);
        self.ctx.dry_run = false;
        match outcome.expect("the dry run succeeds") {
            Outcome::Planned(plan) => plan.render().join("\n") + "\n",
            Outcome::Done(_) => panic!("a dry run that did something"),
        }
    }

    pub fn network(&mut self, name: &str, subnet: &str) -> Network {
        let mut req = NetworkRequest::new(name);
        req.subnets = Some(vec![crate::request::SubnetRequest::given(
            subnet.parse().unwrap(),
            None,
        )]);
        create_network(&mut self.ctx, req)
            .unwrap()
            .applied()
            .unwrap()
    }

    /// A namespace someone else made, as `ip netns add` would.
    pub fn netns(&mut self, name: &str) -> u64 {
        self.fake().add_namespace(format!("/run/netns/{name}"))
    }

    pub fn connect(&mut self, network: &str, target: &str, ports: &[&str]) -> Endpoint {
        connect(&mut self.ctx, attach(network, target, ports))
            .unwrap()
            .applied()
            .unwrap()
            .0
    }

    /// `disconnect NETWORK TARGET`, asserted to succeed.
    pub fn disconnect(&mut self, network: &str, target: &str) -> Disconnected {
        disconnect(
            &mut self.ctx,
            DetachRequest::new(network, EndpointRef::Target(target.into())),
        )
        .unwrap()
        .applied()
        .unwrap()
    }

    /// Every network and endpoint row with its status.
    pub fn rows(&mut self) -> Vec<String> {
        let mut store = self.ctx.store_read_only().unwrap().expect("a state");
        let tx = store.read().unwrap();
        let mut out: Vec<String> = tx
            .networks_with_status()
            .unwrap()
            .into_iter()
            .map(|(n, s)| {
                let subnets: Vec<String> = n.subnets.iter().map(|s| s.net.to_string()).collect();
                format!("network {} {} {}", n.name, subnets.join(","), s.as_str())
            })
            .collect();
        out.extend(
            tx.endpoints_with_status()
                .unwrap()
                .into_iter()
                .map(|(e, s)| {
                    let ips: Vec<String> = e.ips.iter().map(|ip| ip.to_string()).collect();
                    format!(
                        "endpoint {}/{} {} {}",
                        e.network,
                        e.name,
                        ips.join(","),
                        s.as_str()
                    )
                }),
        );
        out
    }

    /// The host's links, with their group and master, sorted.
    pub fn host_links(&mut self) -> Vec<String> {
        let mut links: Vec<String> = self
            .fake()
            .links
            .iter()
            .filter(|l| l.netns.is_none())
            .map(|l| l.fact.name.clone())
            .collect();
        links.sort();
        links
    }
}

pub fn attach(network: &str, target: &str, ports: &[&str]) -> AttachRequest {
    AttachRequest {
        network: network.into(),
        target: target.into(),
        ports: ports
            .iter()
            .map(|p| crate::request::parse_port(p).unwrap())
            .collect(),
        ..Default::default()
    }
}

fn check(actual: String, expect: Expect) {
    expect.assert_eq(&actual);
}

#[test]
fn network_create_plans_bridge_address_forwarding_and_its_firewall_part() {
    let mut h = host();
    let mut req = NetworkRequest::new("web");
    req.subnets = Some(vec![crate::request::SubnetRequest::given(
        "10.90.0.0/24".parse().unwrap(),
        None,
    )]);
    let plan = h.plan(|ctx| create_network(ctx, req.clone()));
    check(
        plan.lines()
            .filter(|l| !l.starts_with("nft "))
            .collect::<Vec<_>>()
            .join("\n"),
        expect![[r#"
            ip link add berth-web mtu 1500 address 02:42:0a:5a:00:01 group 1650786304 up type bridge mcast_snooping 0
            ip addr add 10.90.0.1/24 brd 10.90.0.255 dev berth-web
            sysctl -w net.ipv4.conf.berth-web.route_localnet=1
            sysctl -w net.ipv4.ip_forward=1"#]],
    );
    assert!(plan.contains("nft 'add table inet berth'"), "{plan}");
    // The dry run wrote nothing.
    assert!(h.ctx.store_read_only().unwrap().is_none());
    assert!(h.host_links().is_empty());

    let n = create_network(&mut h.ctx, req).unwrap().applied().unwrap();
    assert_eq!(
        (n.bridge.as_str(), n.gateways()[0].to_string().as_str()),
        ("berth-web", "10.90.0.1")
    );
    assert_eq!(h.rows(), ["network web 10.90.0.0/24 ready"]);
    assert_eq!(h.host_links(), ["berth-web"]);
    assert!(h.fake().nft_table);
    assert_eq!(*h.syncs.borrow(), [DnsScope::All]);
}

#[test]
fn bad_network_requests_change_nothing() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    let before = (h.rows(), h.host_links(), h.fake().log.len());
    for (req, needle) in [
        (("web", "10.91.0.0/24"), "already exists"),
        (("db", "10.90.0.128/25"), "overlaps network \"web\""),
        (("host", "10.92.0.0/24"), "reserved"),
        (("db", "fd00::/121"), "fd00::/121"),
        (("db", "fe80::/64"), "link-local"),
    ] {
        let mut r = NetworkRequest::new(req.0);
        r.subnets = Some(vec![crate::request::SubnetRequest::given(
            req.1.parse().unwrap(),
            None,
        )]);
        let err = create_network(&mut h.ctx, r).err().expect("refused");
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    let kernel_changes = h
        .fake()
        .log
        .iter()
        .skip(before.2)
        .filter(|l| !l.starts_with("read_sysctl") && !l.starts_with("link_exists"))
        .count();
    let log: Vec<String> = h.fake().log.iter().skip(before.2).cloned().collect();
    assert_eq!(
        (h.rows(), h.host_links(), kernel_changes),
        (before.0, before.1, 0),
        "{log:?}"
    );
}

#[test]
fn a_failed_plan_is_undone_and_its_rows_rolled_back() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    // The second network's firewall batch fails after its bridge exists.
    h.fake().fail_on = Some("nft".into());
    let mut r = NetworkRequest::new("db");
    r.subnets = Some(vec![crate::request::SubnetRequest::given(
        "10.91.0.0/24".parse().unwrap(),
        None,
    )]);
    let err = create_network(&mut h.ctx, r).err().expect("it fails");
    assert!(matches!(err, Error::Apply { .. }), "{err}");
    h.fake().fail_on = None;
    assert_eq!(h.rows(), ["network web 10.90.0.0/24 ready"]);
    assert_eq!(
        h.host_links(),
        ["berth-web"],
        "the new bridge was deleted again"
    );
}

#[test]
fn connect_plans_a_veth_its_inside_and_its_ports() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    let plan = h.plan(|ctx| connect(ctx, attach("web", "c1", &["8080:80", "5353:53/udp"])));
    check(
        plan,
        expect![[r#"
            nft 'add element bridge berth guarded { "vb6c39f18610fe" }'
            nft 'add element bridge berth allowed4 { "vb6c39f18610fe" . 02:42:0a:5a:00:02 . 10.90.0.2 }'
            nft 'add element inet berth published4_any { tcp . 8080 : 10.90.0.2 . 80, udp . 5353 : 10.90.0.2 . 53 }'
            ip link add vb6c39f18610fe mtu 1500 group 1650786305 master berth-web up type veth peer name eth0 mtu 1500 address 02:42:0a:5a:00:02 netns c1
            ip link set vb6c39f18610fe addrgenmode none
            ip -n c1 link set lo up
            ip -n c1 link set eth0 addrgenmode none
            ip -n c1 link set eth0 up
            ip -n c1 addr add 10.90.0.2/24 brd 10.90.0.255 dev eth0
            ip -n c1 route add default via 10.90.0.1
            ip link set vb6c39f18610fe type bridge_slave hairpin on
            conntrack -D -p udp --orig-port-dst 5353
        "#]],
    );
    let e = h.connect("web", "c1", &["8080:80"]);
    assert_eq!(e.ips_text(), "10.90.0.2");
    let inside = h
        .fake()
        .link_in(Some(std::path::Path::new("/run/netns/c1")), "eth0")
        .map(|l| l.fact.up);
    assert_eq!(inside, Some(true));
    assert_eq!(
        h.rows()[1..],
        ["endpoint web/c1 10.90.0.2 ready".to_string()]
    );
    let inode = h.fake().namespaces[0].1;
    assert_eq!(h.syncs.borrow().last(), Some(&DnsScope::Netns(inode)));
}

#[test]
fn connect_refuses_what_clashes_before_anything_is_made() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    h.netns("c2");
    h.connect("web", "c1", &["8080:80"]);
    let before = (h.rows(), h.host_links());
    let mut same_ip = attach("web", "c2", &[]);
    same_ip.ips = vec!["10.90.0.2".parse().unwrap()];
    let mut v6 = attach("web", "c2", &[]);
    v6.ips = vec!["fd00::2".parse().unwrap()];
    for (req, needle) in [
        (attach("web", "c1", &[]), "already connected"),
        (same_ip, "already taken by endpoint \"c1\""),
        (
            attach("web", "c2", &["8080:81"]),
            "already published by endpoint",
        ),
        (attach("nosuch", "c2", &[]), "no such network"),
        (attach("web", "c9", &[]), "not a network namespace"),
        (v6, "fd00::2"),
    ] {
        let err = connect(&mut h.ctx, req).err().expect("refused");
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert_eq!((h.rows(), h.host_links()), before);
}

/// A metric gives the endpoint a default route of its own beside the
/// namespace's plain one; it is no heir and hands nothing on, and the
/// plain one moves only between endpoints without a metric.
#[test]
fn a_metric_gives_an_own_default_route_that_goes_with_its_endpoint() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.network("db", "10.91.0.0/24");
    h.network("app", "10.92.0.0/24");
    h.netns("c1");
    let web = h.connect("web", "c1", &[]);
    let mut req = attach("db", "c1", &[]);
    req.metric = Some(200);
    let db = connect(&mut h.ctx, req).unwrap().applied().unwrap().0;
    assert!(web.default_route.any() && web.metric.is_none());
    assert!(db.default_route.any() && db.metric == Some(200));
    let app = h.connect("app", "c1", &[]);
    assert!(
        !app.default_route.any(),
        "the namespace has its plain route already"
    );
    // web goes: its plain route moves to app, not to db (which has its own).
    let plan = h.plan(|ctx| {
        disconnect(
            ctx,
            DetachRequest::new("web", EndpointRef::Target("c1".into())),
        )
    });
    assert!(
        plan.ends_with("ip -n c1 route replace default via 10.92.0.1\n"),
        "{plan}"
    );
    // db goes: nothing is handed on.
    let plan = h.plan(|ctx| {
        disconnect(
            ctx,
            DetachRequest::new("db", EndpointRef::Target("c1".into())),
        )
    });
    assert!(!plan.contains("route"), "{plan}");
}

#[test]
fn disconnect_withdraws_ports_then_the_veth_and_hands_the_default_route_on() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.network("db", "10.91.0.0/24");
    h.netns("c1");
    let e = h.connect("web", "c1", &["8080:80"]);
    h.connect("db", "c1", &[]);
    let plan = h.plan(|ctx| {
        disconnect(
            ctx,
            DetachRequest::new("web", EndpointRef::Target("c1".into())),
        )
    });
    check(
        plan,
        expect![[r#"
            nft 'delete element inet berth published4_any { tcp . 8080 : 10.90.0.2 . 80 }'
            ip -n c1 link set eth0 down
            ip -n c1 link set eth0 name vp6c39f18610fe
            ip link set vb6c39f18610fe down nomaster
            ip link set vb6c39f18610fe group 1650851839 name vp6c39f18610fe
            nft 'delete element bridge berth guarded { "vb6c39f18610fe" }'
            nft 'delete element bridge berth allowed4 { "vb6c39f18610fe" . 02:42:0a:5a:00:02 . 10.90.0.2, "vb6c39f18610fe" . 02:42:0a:5a:00:02 . 10.91.0.2, "vb214d68d66cfc" . 02:42:0a:5b:00:02 . 10.90.0.2 }'
            ip -n c1 route replace default via 10.91.0.1
        "#]],
    );
    let done = h.disconnect("web", "c1");
    assert!(matches!(done, Disconnected::Removed(ref r) if r.id == e.id));
    assert!(!h.host_links().contains(&e.host_ifname));
    let rows = h.rows();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[2].starts_with("endpoint db/c1"), "{rows:?}");
    // The namespace's way out is now db's gateway.
    let routes = &h.fake().default_routes;
    assert!(
        routes.iter().any(|(_, gw)| gw.to_string() == "10.91.0.1"),
        "{routes:?}"
    );
    // By name, with --force, an endpoint that is not there is no error.
    let mut again = DetachRequest::new("web", EndpointRef::Target("c1".into()));
    again.force = true;
    let done = disconnect(&mut h.ctx, again).unwrap().applied().unwrap();
    assert!(matches!(done, Disconnected::NothingToDo));
}

#[test]
fn connect_repairs_first_when_its_bridge_is_gone() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    h.netns("c2");
    h.connect("web", "c1", &[]);
    h.fake().delete_link("berth-web").unwrap();
    h.connect("web", "c2", &[]);
    let notices = h.ctx.take_notices();
    let Some(Notice::Repaired { lines, .. }) = notices.first() else {
        panic!("no repair reported: {notices:?}")
    };
    assert!(
        lines
            .iter()
            .any(|l| l.contains("re-created bridge berth-web")),
        "{lines:?}"
    );
    // The surviving veth is a port of the new bridge again.
    let bridge = h.fake().link_in(None, "berth-web").map(|l| l.fact.index);
    let ports = h
        .fake()
        .links
        .iter()
        .filter(|l| l.netns.is_none() && l.fact.master == bridge)
        .count();
    assert_eq!(ports, 2);
}

#[test]
fn a_failed_change_takes_back_the_earlier_changes_of_its_transaction() {
    let mut h = host();
    h.netns("c1");
    let mut net = NetworkRequest::new("web");
    net.subnets = Some(vec![crate::request::SubnetRequest::given(
        "10.90.0.0/24".parse().unwrap(),
        None,
    )]);
    let mut bad = attach("web", "c1", &[]);
    bad.ips = vec!["10.99.0.5".parse().unwrap()];
    let err = transaction(&mut h.ctx, Preflight::Run, |txn| {
        txn.apply(CreateNetwork::new(net))?;
        txn.apply(Attach(bad))
    })
    .err()
    .expect("the attach is refused");
    assert!(err.to_string().contains("10.99.0.5"), "{err}");
    assert!(h.rows().is_empty(), "{:?}", h.rows());
    assert!(h.host_links().is_empty(), "the bridge went again");
    assert!(!h.fake().nft_table, "and the table with it");
}

#[test]
fn network_rm_force_takes_every_veth_in_one_request() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.network("db", "10.91.0.0/24");
    for c in ["c1", "c2"] {
        h.netns(c);
        h.connect("web", c, &[]);
    }
    let plan = h.plan(|ctx| remove_network(ctx, "web", true));
    check(
        plan,
        expect![[r#"
            nft 'delete element inet berth fwd_from { "berth-web" }'
            nft 'delete element inet berth fwd_to { "berth-web" }'
            nft 'delete element inet berth nat_from { "berth-web" }'
            nft 'delete element inet berth dns4 { 10.90.0.1 . udp . 53, 10.90.0.1 . tcp . 53 }'
            nft 'delete element inet berth bridges { "berth-web" }'
            nft 'delete element inet berth subnets4 { 10.90.0.0/24 }'
            nft 'delete chain inet berth web-out'
            nft 'delete chain inet berth web-in'
            nft 'delete chain inet berth web-nat'
            ip link del group 1650786305  # the 2 veth(s) of network web
            ip link set berth-web group 1650851839
            ip link del group 1650851839
            nft 'delete element bridge berth guarded { "vb6c39f18610fe", "vb6b39f1860f4b" }'
            nft 'delete element bridge berth allowed4 { "vb6c39f18610fe" . 02:42:0a:5a:00:02 . 10.90.0.2, "vb6b39f1860f4b" . 02:42:0a:5a:00:03 . 10.90.0.3 }'
        "#]],
    );
    let err = remove_network(&mut h.ctx, "web", false)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("still has 2 endpoint(s)"), "{err}");
    let gone = remove_network(&mut h.ctx, "web", true)
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(gone.len(), 2);
    assert_eq!(h.rows(), ["network db 10.91.0.0/24 ready"]);
    assert_eq!(h.host_links(), ["berth-db"]);
}

#[test]
fn an_interrupted_change_is_finished_or_undone_by_the_next_preflight() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    h.netns("c2");
    let e = h.connect("web", "c1", &[]);
    // As if a disconnect died after its intent: the row says `removing`.
    {
        let mut store = h.ctx.store().unwrap();
        let tx = store.begin().unwrap();
        tx.set_endpoint_status(e.id, Status::Removing).unwrap();
        tx.commit().unwrap();
    }
    h.connect("web", "c2", &[]);
    let notices = h.ctx.take_notices();
    assert!(
        matches!(notices.first(), Some(Notice::Repaired { reason, .. }) if reason.contains("interrupted")),
        "{notices:?}"
    );
    let rows = h.rows();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[1].starts_with("endpoint web/c2"), "{rows:?}");
    assert!(!h.host_links().contains(&e.host_ifname));
}

#[test]
fn run_records_its_sandbox_before_making_it_and_removes_both() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    let plan = h.plan(|ctx| {
        transaction(ctx, Preflight::Run, |txn| {
            txn.apply(CreateSandbox {
                name: "r1".into(),
                loopback_only: false,
            })?;
            txn.apply(Attach(attach("web", "r1", &[])))
        })
    });
    check(
        plan,
        expect![[r#"
            ip netns add r1
            nft 'add element bridge berth guarded { "vbe839f1556b6b" }'
            nft 'add element bridge berth allowed4 { "vbe839f1556b6b" . 02:42:0a:5a:00:02 . 10.90.0.2 }'
            ip link add vbe839f1556b6b mtu 1500 group 1650786305 master berth-web up type veth peer name eth0 mtu 1500 address 02:42:0a:5a:00:02 netns r1
            ip link set vbe839f1556b6b addrgenmode none
            ip -n r1 link set lo up
            ip -n r1 link set eth0 addrgenmode none
            ip -n r1 link set eth0 up
            ip -n r1 addr add 10.90.0.2/24 brd 10.90.0.255 dev eth0
            ip -n r1 route add default via 10.90.0.1
        "#]],
    );
    transaction(&mut h.ctx, Preflight::Run, |txn| {
        txn.apply(CreateSandbox {
            name: "r1".into(),
            loopback_only: false,
        })?;
        txn.apply(Attach(attach("web", "r1", &[])))
    })
    .unwrap();
    assert_eq!(h.rows().len(), 2);
    // The owner dies: the next command reclaims its sandbox.
    h.fake().processes.clear();
    h.netns("c1");
    h.connect("web", "c1", &[]);
    let rows = h.rows();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[1].starts_with("endpoint web/c1"), "{rows:?}");
    assert!(!h.fake().namespaces.iter().any(|(p, _)| p.ends_with("r1")));
    // A removal of a sandbox that is recorded: the namespace and the row.
    h.fake().processes.push((std::process::id(), 7));
    transaction(&mut h.ctx, Preflight::Run, |txn| {
        txn.apply(CreateSandbox {
            name: "r2".into(),
            loopback_only: true,
        })?;
        txn.apply(RemoveSandbox { name: "r2".into() })
    })
    .unwrap();
    assert!(!h.fake().namespaces.iter().any(|(p, _)| p.ends_with("r2")));
}

#[test]
fn reset_removes_everything_and_rolls_back_when_it_fails() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    h.connect("web", "c1", &["8080:80"]);
    h.fake().fail_on = Some("delete_links_together berth-web".into());
    assert!(reset(&mut h.ctx).is_err());
    h.fake().fail_on = None;
    assert!(
        h.rows().iter().all(|r| r.ends_with("ready")),
        "a failed reset leaves its rows as they were: {:?}",
        h.rows()
    );
    let report = reset(&mut h.ctx).unwrap().applied().unwrap();
    assert_eq!((report.networks, report.endpoints), (1, 1));
    assert!(h.rows().is_empty());
    assert!(h.host_links().is_empty());
    assert!(!h.fake().nft_table);
}

#[test]
fn ensure_network_uses_an_agreeing_network_and_refuses_a_contradicting_one() {
    let mut h = host();
    let mut req = NetworkRequest::new("web");
    req.subnets = Some(vec![crate::request::SubnetRequest::given(
        "10.90.0.0/24".parse().unwrap(),
        None,
    )]);
    let (n, made) = transaction(&mut h.ctx, Preflight::Run, |txn| {
        txn.apply(EnsureNetwork::new(req.clone(), Box::new(|_, _| Ok(()))))
    })
    .unwrap()
    .applied()
    .unwrap();
    assert!(made);
    let (again, made) = transaction(&mut h.ctx, Preflight::Run, |txn| {
        txn.apply(EnsureNetwork::new(req.clone(), Box::new(|_, _| Ok(()))))
    })
    .unwrap()
    .applied()
    .unwrap();
    assert!(!made);
    assert_eq!(again, n);
    let err = transaction(&mut h.ctx, Preflight::Run, |txn| {
        txn.apply(EnsureNetwork::new(
            req,
            Box::new(|_, _| Err(Error::invalid("not ours"))),
        ))
    })
    .err()
    .unwrap();
    assert_eq!(err.to_string(), "not ours");
    // Removing only what the owner made and left empty.
    h.netns("c1");
    h.connect("web", "c1", &[]);
    let kept = transaction(&mut h.ctx, Preflight::Run, |txn| {
        txn.apply(RemoveNetwork::if_unused("web", "podman"))
    })
    .unwrap()
    .applied()
    .unwrap();
    assert!(kept.is_empty());
    assert_eq!(h.rows().len(), 2);
}

/// The Change trait object form the executor's compensations use.
#[test]
fn a_boxed_change_prepares_like_the_change() {
    let mut h = host();
    let boxed: Box<dyn Change<Output = Network>> = Box::new(CreateNetwork::new({
        let mut r = NetworkRequest::new("web");
        r.subnets = Some(vec![crate::request::SubnetRequest::given(
            "10.90.0.0/24".parse().unwrap(),
            None,
        )]);
        r
    }));
    let n = transaction(&mut h.ctx, Preflight::Run, |txn| txn.apply(boxed))
        .unwrap()
        .applied()
        .unwrap();
    assert_eq!(n.name, "web");
}

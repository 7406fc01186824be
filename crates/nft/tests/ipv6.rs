//! IPv6 counterparts of berth's IPv4 primitives, each in its own network
//! namespace: what the builder sends must be what `nft -f` installs from
//! the builder's own text (JSON listing, and the kernel's expressions where
//! nft and the builder encode alike), elements must list back as added, and
//! a dual-stack DNAT must carry real connections over both families.

mod common;

use berth_nft::*;
use common::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

const KEY6: [DataType; 3] = [
    DataType::Ipv6Addr,
    DataType::InetProto,
    DataType::InetService,
];
const TARGET6: [DataType; 2] = [DataType::Ipv6Addr, DataType::InetService];

/// Applies `b` with the builder, then `b`'s rendering with `nft -f`, each in a
/// fresh namespace; returns both JSON listings and `nft --debug=netlink`
/// expression dumps.
fn ours_and_theirs(b: &Batch) -> ((serde_json::Value, String), (serde_json::Value, String)) {
    let script = b.render().join("\n") + "\n";
    let expressions = || run_in_ns(&["nft", "--debug=netlink", "list", "ruleset"], None);
    let ours = {
        let b = b.clone();
        in_netns(move || {
            Nft::open().unwrap().apply(&b).unwrap();
            (
                normalize(serde_json::Value::Array(nft_json(&["ruleset"]))),
                expressions(),
            )
        })
    };
    let theirs = in_netns(move || {
        run_in_ns(&["nft", "-f", "-"], Some(&script));
        (
            normalize(serde_json::Value::Array(nft_json(&["ruleset"]))),
            expressions(),
        )
    });
    (ours, theirs)
}

fn assert_same_listing(a: &serde_json::Value, b: &serde_json::Value) {
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b.iter()) {
        assert_eq!(x, y, "netlink vs nft -f differ");
    }
}

/// The expression dump without what legitimately differs between the two:
/// the blocks of `skip_chain` (nft loads only a prefix's bytes where the
/// builder masks the whole address; both list as the same prefix), set
/// elements (the kernel's hash order varies between two namespaces, and nft
/// adds an interval end at address 0 that changes no lookup; the JSON
/// listings compare the elements), and byte-order swaps of 1-byte units
/// (nft swaps `meta l4proto` in interval keys, which changes no byte).
fn comparable(dump: &str, skip_chain: &str) -> String {
    dump.split("\n\n")
        .filter(|block| !block.trim_start().starts_with(skip_chain))
        .flat_map(|block| block.lines().chain(std::iter::once("")))
        .filter(|l| !l.trim_start().starts_with("element "))
        .filter(|l| !(l.contains("byteorder") && l.ends_with(", 1) ]")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `inet` primitives: ip6 address and prefix matches, ipv6 interval
/// sets, concatenations with ipv6_addr in NAT maps, dnat/snat ip6 with and
/// without port, masquerade, meta nfproto ipv6, ip6 nexthdr, icmpv6 types
/// (neighbour discovery), ct original ip6 addresses and fib for IPv6.
#[test]
fn inet_ipv6_rules_render_as_nft_would_install() {
    let t = Table::new(Family::Inet, "berth");
    let pre = Chain::base(
        &t,
        "prerouting",
        ChainType::Nat,
        Hook::Prerouting,
        priority::DSTNAT,
    );
    let post = Chain::base(
        &t,
        "postrouting",
        ChainType::Nat,
        Hook::Postrouting,
        priority::SRCNAT,
    );
    let inp = Chain::base(
        &t,
        "input",
        ChainType::Filter,
        Hook::Input,
        priority::FILTER,
    )
    .policy(Policy::Accept);
    let prefixes = Chain::regular(&t, "prefixes");
    let published = Set::map(&t, "published6", &KEY6, &TARGET6);
    let any = Set::map(&t, "published6_any", &KEY6[1..], &TARGET6);
    let ranges = Set::map(&t, "published6_ranges", &KEY6, &[DataType::Ipv6Addr]).interval();
    let subnets = Set::new(&t, "subnets6", &[DataType::Ipv6Addr]).interval();
    let dns = Set::new(&t, "dns6", &KEY6);
    let key = [Field::Ip6Daddr, Field::L4Proto, Field::ThDport];
    let mut b = Batch::new();
    b.add_table(&t)
        .add_set(&published)
        .add_set(&any)
        .add_set(&ranges)
        .add_set(&subnets)
        .add_set(&dns)
        .add_chain(&pre)
        .add_chain(&post)
        .add_chain(&inp)
        .add_chain(&prefixes)
        .add_elements(
            &published,
            vec![
                Element::new([v6("fd00:1::1").into(), L4Proto::Tcp.into(), 8080u16.into()])
                    .to([v6("fd00:2::2").into(), 80u16.into()]),
            ],
        )
        .add_elements(
            &any,
            vec![Element::new([L4Proto::Udp.into(), 5353u16.into()])
                .to([v6("fd00:2::3").into(), 53u16.into()])],
        )
        .add_elements(
            &ranges,
            vec![
                Element::new([
                    KeyPart::Prefix(Ipv6Addr::UNSPECIFIED.into(), 0),
                    L4Proto::Tcp.into(),
                    KeyPart::Range(9000u16.into(), 9009u16.into()),
                ])
                .to([v6("fd00:2::4").into()]),
                Element::new([
                    KeyPart::Single(v6("fd00:1::1").into()),
                    L4Proto::Udp.into(),
                    KeyPart::Range(7000u16.into(), 7001u16.into()),
                ])
                .to([v6("fd00:2::5").into()]),
            ],
        )
        .add_elements(
            &subnets,
            vec![
                Element::prefix(v6("fd00:2::77"), 64).unwrap(),
                Element::prefix(v6("fd00:3::"), 48).unwrap(),
                Element::prefix(v6("2001:db8::9"), 128).unwrap(),
            ],
        )
        .add_elements(
            &dns,
            vec![Element::new([
                v6("fd00:2::1").into(),
                L4Proto::Udp.into(),
                53u16.into(),
            ])],
        )
        .add_rule(&pre, Rule::new().daddr(Ipv6Addr::LOCALHOST.into()).ret())
        .add_rule(&pre, Rule::new().jump("prefixes"))
        .add_rule(
            &pre,
            Rule::new()
                .l4proto(L4Proto::Tcp)
                .fib_daddr_local()
                .dnat_ip6_map(&key, "published6", true),
        )
        .add_rule(&pre, Rule::new().lookup(&key, "dns6").ret())
        .add_rule(
            &pre,
            Rule::new()
                .l4proto(L4Proto::Udp)
                .fib_daddr_local()
                .dnat_map(Family::Ip6, &key[1..], "published6_any", true),
        )
        .add_rule(
            &pre,
            Rule::new()
                .l4proto(L4Proto::Tcp)
                .fib_daddr_local()
                .dnat_ip6_map(&key, "published6_ranges", false),
        )
        .add_rule(
            &pre,
            Rule::new()
                .nfproto(Family::Ip6)
                .l4proto(L4Proto::Tcp)
                .th_dport(81)
                .dnat_ip6(v6("fd00:2::2"), Some(8080)),
        )
        .add_rule(
            &pre,
            Rule::new()
                .l4proto(L4Proto::Tcp)
                .th_dport(82)
                .dnat_to(v6("fd00:2::2").into(), None),
        )
        .add_rule(
            &pre,
            Rule::new()
                .l4proto(L4Proto::Tcp)
                .th_dport(83)
                .dnat_to(Ipv4Addr::new(10, 0, 0, 2).into(), Some(80)),
        )
        .add_rule(
            &post,
            Rule::new()
                .ct_status(&[CtStatus::Dnat])
                .lookup(&[Field::Ip6Saddr], "subnets6")
                .lookup(&[Field::Ip6Daddr], "subnets6")
                .masquerade(),
        )
        .add_rule(
            &post,
            Rule::new().oifname("eth0").snat_ip6(v6("2001:db8::1")),
        )
        .add_rule(
            &post,
            Rule::new()
                .oifname("eth1")
                .snat_to(v6("2001:db8::2").into()),
        )
        .add_rule(&post, Rule::new().nfproto(Family::Ip6).masquerade())
        .add_rule(&inp, Rule::new().icmpv6_type(135).accept())
        .add_rule(&inp, Rule::new().icmpv6_type_range(133, 137).accept())
        .add_rule(&inp, Rule::new().icmpv6_type_ne(128).counter())
        .add_rule(
            &inp,
            Rule::new().ct_original_daddr(v6("fd00:2::9").into()).drop(),
        )
        .add_rule(
            &inp,
            Rule::new().ct_original_saddr(v6("fd00:2::8").into()).drop(),
        )
        .add_rule(
            &inp,
            Rule::new()
                .ct_original_saddr(Ipv4Addr::new(10, 0, 0, 8).into())
                .drop(),
        )
        .add_rule(&inp, Rule::new().ip6_nexthdr(L4Proto::Tcp).accept())
        // The guard of published [::1] ports: only replies may reach ::1
        // from a bridge.
        .add_rule(
            &inp,
            Rule::new()
                .iifname("br0")
                .daddr(Ipv6Addr::LOCALHOST.into())
                .ct_direction(false)
                .drop(),
        )
        .add_rule(&inp, Rule::new().ct_direction(true).accept())
        .add_rule(
            &inp,
            Rule::new()
                .ip6_saddr(v6("fe80::1"))
                .ip6_daddr(v6("ff02::1"))
                .accept(),
        )
        .add_rule(
            &inp,
            Rule::new()
                .nfproto(Family::Ip6)
                .fib_daddr_not_local()
                .drop(),
        )
        .add_rule(
            &prefixes,
            Rule::new()
                .saddr_prefix(v6("fd00:2::1234").into(), 64)
                .oifname_ne("br0")
                .ret(),
        )
        .add_rule(
            &prefixes,
            Rule::new().daddr_prefix(v6("fd00:2::").into(), 60).ret(),
        )
        .add_rule(
            &prefixes,
            Rule::new().saddr_prefix_ne(v6("fc00::").into(), 7).ret(),
        )
        .add_rule(
            &prefixes,
            Rule::new()
                .daddr_prefix_ne(Ipv4Addr::new(10, 1, 2, 3).into(), 8)
                .ret(),
        )
        .add_rule(
            &prefixes,
            Rule::new().daddr_prefix(v6("::1").into(), 128).ret(),
        );
    let script = b.render().join("\n");
    for want in [
        "dnat ip6 to ip6 daddr . meta l4proto . th dport map @published6",
        "dnat ip6 to [fd00:2::2]:8080",
        "dnat ip6 to fd00:2::2",
        "dnat ip to 10.0.0.2:80",
        "snat ip6 to 2001:db8::1",
        "icmpv6 type nd-neighbor-solicit accept",
        "icmpv6 type 133-137 accept",
        "ct original ip6 daddr fd00:2::9",
        "iifname \"br0\" ip6 daddr ::1 ct direction original drop",
        "ip6 saddr fd00:2::/64",
        "fd00:2::/64",
    ] {
        assert!(script.contains(want), "{want} missing in\n{script}");
    }
    let ((ours, our_exprs), (theirs, their_exprs)) = ours_and_theirs(&b);
    assert_same_listing(&ours, &theirs);
    let (a, b) = (
        comparable(&our_exprs, "inet berth prefixes"),
        comparable(&their_exprs, "inet berth prefixes"),
    );
    assert!(a.contains("nat dnat ip6"), "{a}");
    assert!(a.contains("ct load dst_ip6"), "{a}");
    assert_eq!(a, b, "the expressions differ");
}

/// IPv6 anti-spoofing in a `bridge` table: MAC . ip6 saddr keys and the
/// neighbour advertisements a guard must see.
#[test]
fn bridge_ipv6_guard_renders_as_nft_would_install() {
    let t = Table::new(Family::Bridge, "berth");
    let guard = Chain::regular(&t, "guard");
    let allowed6 = Set::new(
        &t,
        "allowed6",
        &[DataType::Ifname, DataType::EtherAddr, DataType::Ipv6Addr],
    );
    let mac = [0x02, 0x42, 0x0a, 0x5a, 0x00, 0x02];
    let elems = vec![
        Element::new([
            Value::Ifname("vb0123456789ab".into()).into(),
            Value::Ether(mac).into(),
            v6("fd00:2::2").into(),
        ]),
        Element::new([
            Value::Ifname("vb0123456789ab".into()).into(),
            Value::Ether(mac).into(),
            v6("fe80::42:aff:fe5a:2").into(),
        ]),
    ];
    let mut b = Batch::new();
    b.add_table(&t)
        .add_set(&allowed6)
        .add_chain(&guard)
        .add_elements(&allowed6, elems.clone())
        .add_rule(
            &guard,
            Rule::new()
                .ether_type(0x86dd)
                .icmpv6_type(136)
                .cmp(
                    Field::EtherSaddr,
                    CmpOp::Neq,
                    Value::Ether([0x02, 0x42, 0x0a, 0x5a, 0x00, 0x02]),
                )
                .counter()
                .drop(),
        )
        .add_rule(
            &guard,
            Rule::new()
                .ether_type(0x86dd)
                .lookup(
                    &[Field::Iifname, Field::EtherSaddr, Field::Ip6Saddr],
                    "allowed6",
                )
                .ret(),
        )
        .add_rule(
            &guard,
            Rule::new()
                .ether_type(0x86dd)
                .ip6_saddr(Ipv6Addr::UNSPECIFIED)
                .icmpv6_type(135)
                .ret(),
        )
        .add_rule(&guard, Rule::new().counter().drop());
    let ((ours, our_exprs), (theirs, their_exprs)) = ours_and_theirs(&b);
    assert_same_listing(&ours, &theirs);
    assert_eq!(
        comparable(&our_exprs, "-"),
        comparable(&their_exprs, "-"),
        "the expressions differ"
    );
    let listed: Vec<String> = in_netns(move || {
        let mut nft = Nft::open().unwrap();
        nft.apply(&b).unwrap();
        nft.list_elements(&t, "allowed6")
            .unwrap()
            .iter()
            .map(Element::render)
            .collect()
    });
    let mut want: Vec<String> = elems.iter().map(Element::render).collect();
    let mut got = listed;
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

/// A set declared with `typeof` and a raw payload field (a neighbour
/// advertisement's target): the builder's table lists as `nft -f` of its
/// own text installs it, nft prints the declaration and the elements back,
/// that listing is itself accepted by `nft -f`, and the builder lists the
/// elements back as added (the integer's width from the kernel's field
/// lengths) and deletes them.
#[test]
fn a_typeof_set_with_a_raw_payload_lists_back_and_reloads() {
    let t = Table::new(Family::Bridge, "berth");
    let guard = Chain::regular(&t, "guard");
    let key = [Field::Iifname, Field::EtherSaddr, Field::NdTarget];
    let targets = Set::typed_by(&t, "targets6", &key);
    let mac = [0x02, 0x42, 0x0a, 0x5a, 0x00, 0x02];
    let element = move |ip: &str| {
        Element::new([
            Value::Ifname("vb0123456789ab".into()).into(),
            Value::Ether(mac).into(),
            Value::Integer(v6(ip).octets().to_vec()).into(),
        ])
    };
    let elems = vec![element("fd00:2::2"), element("::1")];
    let mut b = Batch::new();
    b.add_table(&t)
        .add_set(&targets)
        .add_chain(&guard)
        .add_elements(&targets, elems.clone())
        .add_rule(
            &guard,
            Rule::new()
                .ether_type(0x86dd)
                .icmpv6_type(136)
                .lookup_ne(&key, "targets6")
                .counter()
                .drop(),
        );
    let script = b.render().join("\n");
    assert!(
        script.contains(
            "add set bridge berth targets6 { typeof iifname . ether saddr . @th,64,128; }"
        ),
        "{script}"
    );
    let ((ours, our_exprs), (theirs, their_exprs)) = ours_and_theirs(&b);
    assert_same_listing(&ours, &theirs);
    assert_eq!(
        comparable(&our_exprs, "-"),
        comparable(&their_exprs, "-"),
        "the expressions differ"
    );
    let (text, reloaded, listed, left) = in_netns(move || {
        let mut nft = Nft::open().unwrap();
        nft.apply(&b).unwrap();
        let text = nft_text(&["ruleset"]);
        let listed: Vec<String> = nft
            .list_elements(&t, "targets6")
            .unwrap()
            .iter()
            .map(Element::render)
            .collect();
        let mut del = Batch::new();
        del.elements(&targets, ElemOp::Delete, vec![element("::1")]);
        nft.apply(&del).unwrap();
        let left: Vec<String> = nft
            .list_elements(&t, "targets6")
            .unwrap()
            .iter()
            .map(Element::render)
            .collect();
        run_in_ns(&["nft", "flush", "ruleset"], None);
        run_in_ns(&["nft", "-f", "-"], Some(&text));
        (text, nft_text(&["ruleset"]), listed, left)
    });
    assert!(
        text.contains("typeof iifname . ether saddr . @th,64,128"),
        "{text}"
    );
    assert!(
        text.contains(
            "\"vb0123456789ab\" . 02:42:0a:5a:00:02 . 0xfd000002000000000000000000000002"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "icmpv6 type nd-neighbor-advert iifname . ether saddr . @th,64,128 != @targets6"
        ),
        "{text}"
    );
    assert_eq!(reloaded, text, "nft -f of nft's own listing");
    let mut want: Vec<String> = elems.iter().map(Element::render).collect();
    let mut got = listed;
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(left, vec![element("fd00:2::2").render()]);
}

/// Elements with IPv6 parts (a concatenated map, an interval set of
/// prefixes) list back as they were added, and can be deleted.
#[test]
fn ipv6_elements_list_back_and_delete() {
    in_netns(|| {
        let t = Table::new(Family::Inet, "berth");
        let map = Set::map(&t, "published6", &KEY6, &TARGET6);
        let subnets = Set::new(&t, "subnets6", &[DataType::Ipv6Addr]).interval();
        let e1 = Element::new([v6("fd00:1::1").into(), L4Proto::Tcp.into(), 8080u16.into()])
            .to([v6("fd00:2::2").into(), 80u16.into()]);
        let e2 = Element::new([v6("::").into(), L4Proto::Sctp.into(), 9u16.into()])
            .to([v6("fd00:2::3").into(), 9u16.into()]);
        let mut nft = Nft::open().unwrap();
        let mut b = Batch::new();
        b.add_table(&t)
            .add_set(&map)
            .add_set(&subnets)
            .add_elements(&map, vec![e1.clone(), e2.clone()])
            .add_elements(
                &subnets,
                vec![
                    Element::prefix(v6("fd00:2::"), 64).unwrap(),
                    Element::prefix(v6("fd00:9::1"), 128).unwrap(),
                ],
            );
        nft.apply(&b).unwrap();
        let mut got: Vec<String> = nft
            .list_elements(&t, "published6")
            .unwrap()
            .iter()
            .map(Element::render)
            .collect();
        got.sort();
        let mut want = vec![e1.render(), e2.render()];
        want.sort();
        assert_eq!(got, want);
        let text = nft_text(&["set", "inet", "berth", "subnets6"]);
        assert!(text.contains("fd00:2::/64"), "{text}");
        assert!(text.contains("fd00:9::1"), "{text}");
        let mut del = Batch::new();
        del.elements(&map, ElemOp::Delete, vec![e1]);
        nft.apply(&del).unwrap();
        let left: Vec<String> = nft
            .list_elements(&t, "published6")
            .unwrap()
            .iter()
            .map(Element::render)
            .collect();
        assert_eq!(left, vec![e2.render()]);
    });
}

#[test]
fn mixed_family_keys_and_bad_prefixes_are_refused() {
    let t = Table::new(Family::Inet, "berth");
    let c = Chain::regular(&t, "c");
    for r in [
        Rule::new().lookup(&[Field::IpSaddr, Field::Ip6Daddr], "s"),
        Rule::new()
            .saddr(v6("fd00::1").into())
            .daddr(Ipv4Addr::LOCALHOST.into()),
        Rule::new().nfproto(Family::Ip).icmpv6_type(135),
        Rule::new().saddr_prefix(v6("fd00::").into(), 129),
        Rule::new().daddr_prefix(Ipv4Addr::LOCALHOST.into(), 33),
        Rule::new().cmp(Field::Ip6Saddr, CmpOp::Eq, Ipv4Addr::LOCALHOST),
        Rule::new().cmp(Field::IpSaddr, CmpOp::Eq, Ipv6Addr::LOCALHOST),
        Rule::new().icmpv6_type_range(137, 133),
        Rule::new().dnat_map(Family::Inet, &[Field::ThDport], "m", false),
    ] {
        let mut b = Batch::new();
        b.add_table(&t)
            .add_chain(&c)
            .add_rule(&c, r.clone().accept());
        let err = in_netns(move || Nft::open().unwrap().apply(&b).unwrap_err());
        assert!(
            matches!(err, NftError::Invalid(_)),
            "{} gave {err}",
            r.render()
        );
    }
}

/// A namespace held by a parked thread, for the duration of a test.
struct Netns {
    path: String,
    stop: mpsc::Sender<Box<dyn FnOnce() + Send>>,
    done: Option<std::thread::JoinHandle<()>>,
}

impl Netns {
    /// A new, empty network namespace whose thread runs the jobs it is sent.
    fn new() -> Netns {
        let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let (ptx, prx) = mpsc::channel();
        let done = std::thread::spawn(move || {
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            ptx.send(my_netns()).unwrap();
            for job in rx {
                job();
            }
        });
        Netns {
            path: prx.recv().unwrap(),
            stop: tx,
            done: Some(done),
        }
    }

    /// Runs `f` on the namespace's thread and waits for its result.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        self.stop
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .unwrap();
        rx.recv().expect("job panicked")
    }

    fn sh(&self, cmd: &str) {
        let cmd = cmd.to_string();
        self.run(move || run_in_ns(&["sh", "-ec", &cmd], None));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.stop, tx));
        if let Some(d) = self.done.take() {
            let _ = d.join();
        }
    }
}

/// Connects to `to` and returns what the server said (its view of our
/// address), or the connect error.
fn ask(to: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Dual-stack DNAT end to end: a client namespace reaches a "container"
/// namespace's port 80 through the host's published port 8080 over IPv4
/// (published4) and IPv6 (published6 by address, published6_any, a fixed
/// `dnat ip6 to [..]:80`), from outside (prerouting) and from the host
/// (output); the container sees the client's own address. Before the
/// elements exist, the same connections are refused: the DNAT does the work.
#[test]
fn dual_stack_dnat_carries_connections_over_both_families() {
    let host = Netns::new();
    let client = Netns::new();
    let ctr = Netns::new();
    host.sh(&format!(
        "ip link add vc type veth peer name eth0 netns {client}
         ip link add vb type veth peer name eth0 netns {ctr}
         ip link set lo up; ip link set vc up; ip link set vb up
         ip addr add 10.1.0.1/24 dev vc; ip -6 addr add fd00:1::1/64 dev vc nodad
         ip addr add 10.2.0.1/24 dev vb; ip -6 addr add fd00:2::1/64 dev vb nodad
         sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
        client = client.path,
        ctr = ctr.path
    ));
    client.sh("ip link set lo up; ip link set eth0 up
         ip addr add 10.1.0.2/24 dev eth0; ip -6 addr add fd00:1::2/64 dev eth0 nodad
         ip route add default via 10.1.0.1; ip -6 route add default via fd00:1::1");
    ctr.sh("ip link set lo up; ip link set eth0 up
         ip addr add 10.2.0.2/24 dev eth0; ip -6 addr add fd00:2::2/64 dev eth0 nodad
         ip route add default via 10.2.0.1; ip -6 route add default via fd00:2::1");
    // The container answers every connection with the peer's address.
    ctr.run(|| {
        for addr in ["0.0.0.0:80", "[::]:80"] {
            let sock = socket_v6only(addr);
            std::thread::spawn(move || {
                for c in sock.incoming() {
                    let mut c = c.unwrap();
                    let peer = c.peer_addr().unwrap().ip();
                    let _ = c.write_all(peer.to_string().as_bytes());
                }
            });
        }
    });
    let t = Table::new(Family::Inet, "berth");
    let pre = Chain::base(
        &t,
        "prerouting",
        ChainType::Nat,
        Hook::Prerouting,
        priority::DSTNAT,
    );
    let out = Chain::base(&t, "output", ChainType::Nat, Hook::Output, priority::DSTNAT);
    let p4 = Set::map(
        &t,
        "published4",
        &[
            DataType::Ipv4Addr,
            DataType::InetProto,
            DataType::InetService,
        ],
        &[DataType::Ipv4Addr, DataType::InetService],
    );
    let p6 = Set::map(&t, "published6", &KEY6, &TARGET6);
    let p6any = Set::map(&t, "published6_any", &KEY6[1..], &TARGET6);
    let key4 = [Field::IpDaddr, Field::L4Proto, Field::ThDport];
    let key6 = [Field::Ip6Daddr, Field::L4Proto, Field::ThDport];
    let mut b = Batch::new();
    b.add_table(&t)
        .add_set(&p4)
        .add_set(&p6)
        .add_set(&p6any)
        .add_chain(&pre)
        .add_chain(&out);
    for c in [&pre, &out] {
        b.add_rule(
            c,
            Rule::new()
                .l4proto(L4Proto::Tcp)
                .fib_daddr_local()
                .dnat_ip_map(&key4, "published4", true),
        )
        .add_rule(
            c,
            Rule::new()
                .l4proto(L4Proto::Tcp)
                .fib_daddr_local()
                .dnat_ip6_map(&key6, "published6", true),
        )
        .add_rule(
            c,
            Rule::new()
                .l4proto(L4Proto::Tcp)
                .fib_daddr_local()
                .dnat_ip6_map(&key6[1..], "published6_any", true),
        )
        .add_rule(
            c,
            Rule::new()
                .l4proto(L4Proto::Tcp)
                .th_dport(8082)
                .fib_daddr_local()
                .dnat_to(v6("fd00:2::2").into(), Some(80)),
        );
    }
    host.run(move || Nft::open().unwrap().apply(&b).unwrap());
    let via4: SocketAddr = "10.1.0.1:8080".parse().unwrap();
    let via6: SocketAddr = "[fd00:1::1]:8080".parse().unwrap();
    let via6_any: SocketAddr = "[fd00:2::1]:8081".parse().unwrap();
    let fixed6: SocketAddr = "[fd00:1::1]:8082".parse().unwrap();
    // Before the mappings: nothing listens on the host, the client is refused.
    for to in [via4, via6, via6_any] {
        let r = client.run(move || ask(to));
        assert!(r.is_err(), "{to} answered before it was published: {r:?}");
    }
    let mut els = Batch::new();
    els.add_elements(
        &p4,
        vec![Element::new([
            Ipv4Addr::new(10, 1, 0, 1).into(),
            L4Proto::Tcp.into(),
            8080u16.into(),
        ])
        .to([Ipv4Addr::new(10, 2, 0, 2).into(), 80u16.into()])],
    )
    .add_elements(
        &p6,
        vec![
            Element::new([v6("fd00:1::1").into(), L4Proto::Tcp.into(), 8080u16.into()])
                .to([v6("fd00:2::2").into(), 80u16.into()]),
        ],
    )
    .add_elements(
        &p6any,
        vec![Element::new([L4Proto::Tcp.into(), 8081u16.into()])
            .to([v6("fd00:2::2").into(), 80u16.into()])],
    );
    host.run(move || Nft::open().unwrap().apply(&els).unwrap());
    let seen = |ns: &Netns, to: SocketAddr| {
        ns.run(move || ask(to))
            .unwrap_or_else(|e| panic!("{to}: {e}"))
    };
    assert_eq!(seen(&client, via4), "10.1.0.2");
    assert_eq!(seen(&client, via6), "fd00:1::2");
    assert_eq!(seen(&client, via6_any), "fd00:1::2");
    assert_eq!(seen(&client, fixed6), "fd00:1::2");
    // From the host itself (output hook): the source is the host address
    // the connection was made to.
    assert_eq!(seen(&host, via6), "fd00:1::1");
    assert_eq!(seen(&host, via4), "10.1.0.1");
    // A port that is published on neither family stays refused.
    let unpublished: SocketAddr = "[fd00:1::1]:8089".parse().unwrap();
    assert!(client.run(move || ask(unpublished)).is_err());
}

/// A listening socket on `addr`; an IPv6 one is IPv6-only, so that the
/// IPv4 and IPv6 listeners of the same port can coexist.
fn socket_v6only(addr: &str) -> TcpListener {
    use std::os::fd::FromRawFd;
    let sa: SocketAddr = addr.parse().unwrap();
    if sa.is_ipv4() {
        return TcpListener::bind(sa).unwrap();
    }
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let one: libc::c_int = 1;
        let sz = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let p = &one as *const _ as *const libc::c_void;
        libc::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, p, sz);
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, p, sz);
        let mut sin6: libc::sockaddr_in6 = std::mem::zeroed();
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = sa.port().to_be();
        let len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        let r = libc::bind(fd, &sin6 as *const _ as *const libc::sockaddr, len);
        assert_eq!(r, 0, "bind {addr}: {}", std::io::Error::last_os_error());
        assert_eq!(libc::listen(fd, 128), 0);
        TcpListener::from_raw_fd(fd)
    }
}

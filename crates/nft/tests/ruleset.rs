//! Integration tests against the kernel, each in its own network namespace, with
//! `nft` as the oracle.

mod common;

use berth_nft::*;
use common::*;
use serde_json::json;
use std::net::Ipv4Addr;

struct Berth {
    t: Table,
    pre: Chain,
    out: Chain,
    post: Chain,
    fwd: Chain,
    isolate: Chain,
    published: Set,
    subnets: Set,
    ports: Set,
}

fn berth() -> Berth {
    let t = Table::new(Family::Inet, "berth");
    Berth {
        pre: Chain::base(
            &t,
            "prerouting",
            ChainType::Nat,
            Hook::Prerouting,
            priority::DSTNAT,
        ),
        out: Chain::base(&t, "output", ChainType::Nat, Hook::Output, priority::DSTNAT),
        post: Chain::base(
            &t,
            "postrouting",
            ChainType::Nat,
            Hook::Postrouting,
            priority::SRCNAT,
        ),
        fwd: Chain::base(
            &t,
            "forward",
            ChainType::Filter,
            Hook::Forward,
            priority::FILTER,
        )
        .policy(Policy::Accept),
        isolate: Chain::regular(&t, "isolate"),
        published: Set::map(
            &t,
            "published4",
            &[
                DataType::Ipv4Addr,
                DataType::InetProto,
                DataType::InetService,
            ],
            &[DataType::Ipv4Addr, DataType::InetService],
        ),
        subnets: Set::new(&t, "subnets4", &[DataType::Ipv4Addr]).interval(),
        ports: Set::new(&t, "blocked", &[DataType::Ipv4Addr, DataType::InetService]).interval(),
        t,
    }
}

fn pub_elem(host: Ipv4Addr, proto: L4Proto, hport: u16, dst: Ipv4Addr, dport: u16) -> Element {
    Element::new([host.into(), proto.into(), hport.into()]).to([dst.into(), dport.into()])
}

fn setup_batch(b: &Berth) -> Batch {
    let keys = [Field::IpDaddr, Field::L4Proto, Field::ThDport];
    let mut batch = Batch::new();
    batch
        .add_table(&b.t)
        .add_chain(&b.pre)
        .add_chain(&b.out)
        .add_chain(&b.post)
        .add_chain(&b.fwd)
        .add_chain(&b.isolate)
        .add_set(&b.published)
        .add_set(&b.subnets)
        .add_set(&b.ports)
        .add_rule(
            &b.pre,
            Rule::new()
                .fib_daddr_local()
                .dnat_ip_map(&keys, "published4", true),
        )
        .add_rule(
            &b.out,
            Rule::new()
                .fib_daddr_local()
                .counter()
                .dnat_ip_map(&keys, "published4", true),
        )
        .add_rule(
            &b.post,
            Rule::new()
                .ip_saddr_prefix(Ipv4Addr::new(10, 90, 0, 0), 24)
                .oifname_ne("br0")
                .counter()
                .masquerade(),
        )
        .add_rule(
            &b.post,
            Rule::new()
                .ct_status(&[CtStatus::Dnat])
                .ip_saddr_in_subnets()
                .masquerade(),
        )
        .add_rule(
            &b.fwd,
            Rule::new()
                .ct_state(&[CtState::Established, CtState::Related])
                .accept(),
        )
        .add_rule(
            &b.fwd,
            Rule::new().ct_state(&[CtState::Invalid]).counter().drop(),
        )
        .add_rule(&b.fwd, Rule::new().iifname("br0").jump("isolate"))
        .add_rule(
            &b.fwd,
            Rule::new().iifname("br0").oifname_ne("br0").accept(),
        )
        .add_rule(
            &b.fwd,
            Rule::new()
                .oifname("br0")
                .ct_status(&[CtStatus::Dnat])
                .accept()
                .comment("published ports"),
        )
        .add_rule(
            &b.isolate,
            Rule::new()
                .lookup(&[Field::IpDaddr, Field::ThDport], "blocked")
                .reject_tcp_reset(),
        )
        .add_rule(
            &b.isolate,
            Rule::new()
                .lookup_ne(&[Field::IpSaddr], "subnets4")
                .limit(10, RateUnit::Second, 5)
                .log(LogOptions {
                    prefix: Some("berth-drop: ".into()),
                    level: Some(LogLevel::Info),
                    group: None,
                })
                .reject_icmpx(IcmpxCode::AdminProhibited),
        )
        .add_rule(
            &b.isolate,
            Rule::new().l4proto(L4Proto::Udp).th_dport(53).reject(),
        )
        .add_rule(&b.isolate, Rule::new().ret())
        .add_elements(
            &b.published,
            vec![
                pub_elem(
                    Ipv4Addr::UNSPECIFIED,
                    L4Proto::Tcp,
                    8080,
                    Ipv4Addr::new(10, 90, 0, 2),
                    80,
                ),
                pub_elem(
                    Ipv4Addr::new(192, 0, 2, 1),
                    L4Proto::Udp,
                    5353,
                    Ipv4Addr::new(10, 90, 0, 3),
                    53,
                ),
            ],
        )
        .add_elements(
            &b.subnets,
            vec![
                Element::prefix(Ipv4Addr::new(10, 90, 0, 0), 24).unwrap(),
                Element::prefix(Ipv4Addr::new(172, 20, 0, 0), 16).unwrap(),
            ],
        )
        .add_elements(
            &b.ports,
            vec![Element::new([
                KeyPart::Prefix(Ipv4Addr::new(10, 90, 0, 0).into(), 24),
                KeyPart::Range(22u16.into(), 25u16.into()),
            ])],
        );
    batch
}

trait SubnetExt {
    fn ip_saddr_in_subnets(self) -> Self;
}
impl SubnetExt for Rule {
    fn ip_saddr_in_subnets(self) -> Self {
        self.lookup(&[Field::IpSaddr], "subnets4")
    }
}

#[test]
fn berth_ruleset_is_installed_as_meant() {
    in_netns(|| {
        let b = berth();
        let batch = setup_batch(&b);
        let mut nft = Nft::open().unwrap();
        nft.apply(&batch).unwrap();

        let list = nft_json(&["table", "inet", "berth"]);
        let chains = objects(&list, "chain");
        let find = |n: &str| chains.iter().find(|c| c["name"] == n).cloned().unwrap();
        let fwd = find("forward");
        assert_eq!(
            (
                fwd["type"].clone(),
                fwd["hook"].clone(),
                fwd["prio"].clone(),
                fwd["policy"].clone()
            ),
            (json!("filter"), json!("forward"), json!(0), json!("accept"))
        );
        let pre = find("prerouting");
        assert_eq!(
            (
                pre["type"].clone(),
                pre["hook"].clone(),
                pre["prio"].clone()
            ),
            (json!("nat"), json!("prerouting"), json!(-100))
        );
        let post = find("postrouting");
        assert_eq!(
            (post["hook"].clone(), post["prio"].clone()),
            (json!("postrouting"), json!(100))
        );
        assert!(find("isolate").get("hook").is_none());

        let maps = objects(&list, "map");
        assert_eq!(maps.len(), 1);
        assert_eq!(
            maps[0]["type"],
            json!(["ipv4_addr", "inet_proto", "inet_service"])
        );
        // nft 1.0.6 prints a concatenated data type as one string.
        assert_eq!(maps[0]["map"], json!("ipv4_addr . inet_service"));
        let elems = maps[0]["elem"].as_array().unwrap();
        assert_eq!(elems.len(), 2);
        assert!(
            elems.contains(
                &json!([{"concat": ["0.0.0.0", "tcp", 8080]}, {"concat": ["10.90.0.2", 80]}])
            ),
            "{elems:?}"
        );

        let sets = objects(&list, "set");
        let subnets = sets.iter().find(|s| s["name"] == "subnets4").unwrap();
        assert_eq!(subnets["flags"], json!(["interval"]));
        let mut got = subnets["elem"].as_array().unwrap().clone();
        got.sort_by_key(|v| v.to_string());
        assert_eq!(
            got,
            vec![
                json!({"prefix": {"addr": "10.90.0.0", "len": 24}}),
                json!({"prefix": {"addr": "172.20.0.0", "len": 16}}),
            ]
        );
        let blocked = sets.iter().find(|s| s["name"] == "blocked").unwrap();
        assert_eq!(
            blocked["elem"],
            json!([{"concat": [{"prefix": {"addr": "10.90.0.0", "len": 24}}, {"range": [22, 25]}]}])
        );

        let rules = objects(&list, "rule");
        assert_eq!(rules.len(), 13);

        // The text listing shows what berth means, statement by statement.
        let text = nft_text(&["table", "inet", "berth"]);
        for want in [
            "fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @published4",
            "ip saddr 10.90.0.0/24 oifname != \"br0\" counter packets 0 bytes 0 masquerade",
            "ct state established,related accept",
            "iifname \"br0\" oifname != \"br0\" accept",
            "iifname \"br0\" jump isolate",
            "comment \"published ports\"",
            // nft hides the default burst and folds l4proto + th into udp/tcp.
            "ip saddr != @subnets4 limit rate 10/second log prefix \"berth-drop: \" level info reject with icmpx admin-prohibited",
            "udp dport 53 reject",
            "ip daddr . tcp dport @blocked reject with tcp reset",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }

        // Our own readers agree with nft.
        assert!(nft.table_exists(Family::Inet, "berth").unwrap());
        assert!(!nft.table_exists(Family::Ip, "berth").unwrap());
        let mine = nft.list_chains().unwrap();
        assert_eq!(mine.len(), 5);
        let f = mine.iter().find(|c| c.name == "forward").unwrap();
        assert_eq!(
            (f.hook, f.priority, f.policy, f.ty),
            (
                Some(Hook::Forward),
                Some(0),
                Some(Policy::Accept),
                Some(ChainType::Filter)
            )
        );
        let mut els = nft.list_elements(&b.t, "published4").unwrap();
        els.sort_by_key(|e| e.render());
        assert_eq!(
            els.iter().map(Element::render).collect::<Vec<_>>(),
            vec![
                "0.0.0.0 . tcp . 8080 : 10.90.0.2 . 80",
                "192.0.2.1 . udp . 5353 : 10.90.0.3 . 53",
            ]
        );
        let mut nets: Vec<String> = nft
            .list_elements(&b.t, "subnets4")
            .unwrap()
            .iter()
            .map(Element::render)
            .collect();
        nets.sort();
        assert_eq!(nets, vec!["10.90.0.0/24", "172.20.0.0/16"]);
        let blocked: Vec<String> = nft
            .list_elements(&b.t, "blocked")
            .unwrap()
            .iter()
            .map(Element::render)
            .collect();
        assert_eq!(blocked, vec!["10.90.0.0/24 . 22-25"]);
    });
}

#[test]
fn rendering_is_what_nft_would_install() {
    let b = berth();
    let batch = setup_batch(&b);
    let script = batch.render().join("\n") + "\n";
    let ours = {
        let batch = batch.clone();
        in_netns(move || {
            Nft::open().unwrap().apply(&batch).unwrap();
            normalize(serde_json::Value::Array(nft_json(&["ruleset"])))
        })
    };
    let theirs = in_netns(move || {
        run_in_ns(&["nft", "-f", "-"], Some(&script));
        normalize(serde_json::Value::Array(nft_json(&["ruleset"])))
    });
    let (a, b) = (ours.as_array().unwrap(), theirs.as_array().unwrap());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b.iter()) {
        assert_eq!(x, y, "netlink vs nft -f differ");
    }
}

#[test]
fn elements_change_in_later_batches() {
    in_netns(|| {
        let b = berth();
        let mut nft = Nft::open().unwrap();
        nft.apply(&setup_batch(&b)).unwrap();
        let e1 = pub_elem(
            Ipv4Addr::UNSPECIFIED,
            L4Proto::Tcp,
            9000,
            Ipv4Addr::new(10, 90, 0, 9),
            9000,
        );
        let mut add = Batch::new();
        add.create_elements(&b.published, vec![e1.clone()])
            .add_elements(
                &b.subnets,
                vec![Element::prefix(Ipv4Addr::new(10, 91, 0, 0), 24).unwrap()],
            );
        nft.apply(&add).unwrap();
        let m = &objects(&nft_json(&["map", "inet", "berth", "published4"]), "map")[0];
        assert_eq!(m["elem"].as_array().unwrap().len(), 3);
        assert!(m["elem"].as_array().unwrap().contains(
            &json!([{"concat": ["0.0.0.0", "tcp", 9000]}, {"concat": ["10.90.0.9", 9000]}])
        ));

        let mut del = Batch::new();
        del.delete_elements(
            &b.published,
            vec![Element::new([
                Ipv4Addr::UNSPECIFIED.into(),
                L4Proto::Tcp.into(),
                8080u16.into(),
            ])],
        )
        .delete_elements(
            &b.subnets,
            vec![Element::prefix(Ipv4Addr::new(10, 90, 0, 0), 24).unwrap()],
        );
        nft.apply(&del).unwrap();
        let mut keys: Vec<String> = nft
            .list_elements(&b.t, "published4")
            .unwrap()
            .iter()
            .map(Element::render_key)
            .collect();
        keys.sort();
        assert_eq!(keys, vec!["0.0.0.0 . tcp . 9000", "192.0.2.1 . udp . 5353"]);
        let s = &objects(&nft_json(&["set", "inet", "berth", "subnets4"]), "set")[0];
        let mut got = s["elem"].as_array().unwrap().clone();
        got.sort_by_key(|v| v.to_string());
        assert_eq!(
            got,
            vec![
                json!({"prefix": {"addr": "10.91.0.0", "len": 24}}),
                json!({"prefix": {"addr": "172.20.0.0", "len": 16}}),
            ]
        );

        // Destroy is delete-if-exists: missing elements are fine.
        let mut d = Batch::new();
        d.elements(&b.published, ElemOp::Destroy, vec![e1.clone(), e1.clone()]);
        nft.apply(&d).unwrap();
        assert_eq!(nft.list_elements(&b.t, "published4").unwrap().len(), 1);

        // Flush chain and set.
        let mut f = Batch::new();
        f.flush_chain(&b.fwd).flush_set(&b.published);
        nft.apply(&f).unwrap();
        assert!(nft.list_elements(&b.t, "published4").unwrap().is_empty());
        let list = nft_json(&["chain", "inet", "berth", "forward"]);
        assert!(objects(&list, "rule").is_empty());
    });
}

#[test]
fn failing_batch_changes_nothing_and_names_the_object() {
    in_netns(|| {
        let b = berth();
        let mut nft = Nft::open().unwrap();
        nft.apply(&setup_batch(&b)).unwrap();
        let before = nft_json(&["ruleset"]);

        let dup = pub_elem(
            Ipv4Addr::new(192, 0, 2, 1),
            L4Proto::Udp,
            5353,
            Ipv4Addr::new(10, 90, 0, 3),
            53,
        );
        let mut batch = Batch::new();
        batch
            .add_rule(&b.fwd, Rule::new().iifname("br1").accept())
            .create_elements(
                &b.published,
                vec![
                    pub_elem(
                        Ipv4Addr::UNSPECIFIED,
                        L4Proto::Tcp,
                        1,
                        Ipv4Addr::new(10, 90, 0, 4),
                        1,
                    ),
                    pub_elem(
                        Ipv4Addr::UNSPECIFIED,
                        L4Proto::Tcp,
                        2,
                        Ipv4Addr::new(10, 90, 0, 4),
                        2,
                    ),
                    dup,
                    pub_elem(
                        Ipv4Addr::UNSPECIFIED,
                        L4Proto::Tcp,
                        3,
                        Ipv4Addr::new(10, 90, 0, 4),
                        3,
                    ),
                ],
            );
        let err = nft.apply(&batch).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EEXIST));
        assert_eq!(
            err.to_string(),
            "adding element 192.0.2.1 . udp . 5353 to map inet berth published4: File exists (EEXIST)"
        );
        assert_eq!(nft_json(&["ruleset"]), before);

        let missing = Chain::regular(&b.t, "nope");
        let mut batch = Batch::new();
        batch
            .add_elements(
                &b.subnets,
                vec![Element::prefix(Ipv4Addr::new(10, 99, 0, 0), 16).unwrap()],
            )
            .add_rule(&missing, Rule::new().counter().accept());
        let err = nft.apply(&batch).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOENT));
        assert_eq!(
            err.to_string(),
            "adding rule \"counter accept\" to chain inet berth nope: No such file or directory (ENOENT)"
        );
        assert_eq!(nft_json(&["ruleset"]), before);

        // A duplicate table with EXCL semantics is not used by `add`; `delete` of a
        // missing table must fail and name it.
        let mut batch = Batch::new();
        batch.delete_table(&Table::new(Family::Ip, "ghost"));
        let err = nft.apply(&batch).unwrap_err();
        assert_eq!(
            err.to_string(),
            "deleting table ip ghost: No such file or directory (ENOENT)"
        );

        // The socket stays usable after errors.
        let mut ok = Batch::new();
        ok.destroy_table(&Table::new(Family::Ip, "ghost"));
        nft.apply(&ok).unwrap();
    });
}

#[test]
fn ten_thousand_map_elements_in_one_batch() {
    in_netns(|| {
        let b = berth();
        let mut nft = Nft::open().unwrap();
        nft.apply(&setup_batch(&b)).unwrap();
        let elems: Vec<Element> = (0..10_000u32)
            .map(|i| {
                pub_elem(
                    Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8),
                    if i % 2 == 0 {
                        L4Proto::Tcp
                    } else {
                        L4Proto::Udp
                    },
                    (1000 + i % 50_000) as u16,
                    Ipv4Addr::new(10, 90, (i >> 8) as u8, i as u8),
                    80,
                )
            })
            .collect();
        let mut batch = Batch::new();
        batch.create_elements(&b.published, elems);
        nft.apply(&batch).unwrap();
        assert_eq!(nft.list_elements(&b.t, "published4").unwrap().len(), 10_002);
        let m = &objects(&nft_json(&["map", "inet", "berth", "published4"]), "map")[0];
        assert_eq!(m["elem"].as_array().unwrap().len(), 10_002);

        // Failing at the very end of a big batch still names the element.
        let mut batch = Batch::new();
        let mut elems: Vec<Element> = (0..5000u32)
            .map(|i| {
                pub_elem(
                    Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8),
                    L4Proto::Tcp,
                    1,
                    Ipv4Addr::new(10, 0, 0, 1),
                    1,
                )
            })
            .collect();
        elems.push(pub_elem(
            Ipv4Addr::new(198, 18, 0, 7),
            L4Proto::Udp,
            1007,
            Ipv4Addr::new(10, 0, 0, 1),
            1,
        ));
        batch.create_elements(&b.published, elems);
        let err = nft.apply(&batch).unwrap_err();
        assert_eq!(err.to_string(), "adding element 198.18.0.7 . udp . 1007 to map inet berth published4: File exists (EEXIST)");
        assert_eq!(nft.list_elements(&b.t, "published4").unwrap().len(), 10_002);
    });
}

#[test]
fn tables_and_foreign_chains_are_listed() {
    in_netns(|| {
        let mut nft = Nft::open().unwrap();
        assert!(nft.list_tables().unwrap().is_empty());
        // A foreign firewall, installed by nft itself.
        run_in_ns(&["nft", "-f", "-"], Some("add table ip fw\nadd chain ip fw fwdx { type filter hook forward priority 10; policy drop; }\nadd chain ip fw other\n"));
        let b = berth();
        nft.apply(&setup_batch(&b)).unwrap();
        let tables = nft.list_tables().unwrap();
        let mut names: Vec<String> = tables.iter().map(|t| t.table.spec()).collect();
        names.sort();
        assert_eq!(names, vec!["inet berth", "ip fw"]);
        let chains = nft.list_chains().unwrap();
        let bad: Vec<_> = chains
            .iter()
            .filter(|c| c.is_dropping_forward_hook())
            .collect();
        assert_eq!(bad.len(), 1);
        assert_eq!(
            (
                bad[0].family,
                bad[0].table.as_str(),
                bad[0].name.as_str(),
                bad[0].priority
            ),
            (Family::Ip, "fw", "fwdx", Some(10))
        );
        let other = chains.iter().find(|c| c.name == "other").unwrap();
        assert_eq!((other.hook, other.policy), (None, None));

        // destroy is idempotent; delete is not.
        let mut d = Batch::new();
        d.destroy_table(&b.t);
        nft.apply(&d).unwrap();
        nft.apply(&d).unwrap();
        assert!(!nft.table_exists(Family::Inet, "berth").unwrap());
        let text = nft_text(&["ruleset"]);
        assert!(!text.contains("berth"), "{text}");
    });
}

#[test]
fn more_statements_render_as_nft_would_install() {
    let t = Table::new(Family::Inet, "x");
    let pre = Chain::base(
        &t,
        "pre",
        ChainType::Nat,
        Hook::Prerouting,
        priority::DSTNAT,
    );
    let post = Chain::base(
        &t,
        "post",
        ChainType::Nat,
        Hook::Postrouting,
        priority::SRCNAT + 5,
    );
    let inp = Chain::base(
        &t,
        "in",
        ChainType::Filter,
        Hook::Input,
        priority::FILTER - 10,
    )
    .policy(Policy::Drop);
    let c = Chain::regular(&t, "c");
    let vmap = Set::map(&t, "ifs", &[DataType::Ifname], &[DataType::Verdict]);
    let marks = Set::new(&t, "marks", &[DataType::Mark])
        .with_timeout(Some(std::time::Duration::from_secs(30)));
    let v6 = Set::new(&t, "v6", &[DataType::Ipv6Addr, DataType::InetProto]);
    let dn = Set::map(&t, "dn", &[DataType::InetService], &[DataType::Ipv4Addr]).interval();
    let ifnames = Set::new(&t, "ifnames", &[DataType::Ifname]);
    let mut b = Batch::new();
    b.add_table(&t)
        .add_chain(&pre)
        .add_chain(&post)
        .add_chain(&inp)
        .add_chain(&c)
        .add_set(&vmap)
        .add_set(&marks)
        .add_set(&v6)
        .add_set(&dn)
        .add_set(&ifnames)
        .add_elements(
            &vmap,
            vec![
                Element::of(Value::Ifname("eth0".into()))
                    .to([Value::Verdict(Verdict::Jump("c".into()))]),
                Element::of(Value::Ifname("br0".into())).to([Value::Verdict(Verdict::Accept)]),
            ],
        )
        .add_elements(
            &marks,
            vec![Element::of(Value::Mark(7)).timeout(std::time::Duration::from_secs(60))],
        )
        .add_elements(
            &v6,
            vec![Element::new([
                "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().into(),
                L4Proto::Tcp.into(),
            ])],
        )
        .add_elements(
            &dn,
            vec![
                Element::new([KeyPart::Range(1000u16.into(), 1999u16.into())])
                    .to([Ipv4Addr::new(10, 0, 0, 1).into()]),
            ],
        )
        .add_rule(&inp, Rule::new().iifname("lo").accept())
        .add_rule(&inp, Rule::new().vmap(&[Field::Iifname], "ifs"))
        .add_rule(
            &inp,
            Rule::new()
                .lookup(&[Field::Mark], "marks")
                .counter()
                .accept(),
        )
        .add_rule(
            &inp,
            Rule::new()
                .lookup(&[Field::Ip6Saddr, Field::L4Proto], "v6")
                .accept(),
        )
        .add_rule(
            &inp,
            Rule::new()
                .ct_original_ip_daddr(Ipv4Addr::new(10, 0, 0, 9))
                .drop(),
        )
        .add_rule(
            &inp,
            Rule::new()
                .ip_daddr_prefix_ne(Ipv4Addr::new(10, 0, 0, 0), 8)
                .fib_daddr_not_local()
                .drop(),
        )
        .add_rule(
            &inp,
            Rule::new()
                .lookup(&[Field::Iifname], "ifnames")
                .ip_daddr_prefix(Ipv4Addr::new(127, 0, 0, 0), 8)
                .ct_status_none(&[CtStatus::Dnat])
                .drop(),
        )
        .add_rule(
            &inp,
            Rule::new()
                .ct_status_none(&[CtStatus::Dnat, CtStatus::Snat])
                .accept(),
        )
        .add_rule(
            &inp,
            Rule::new()
                .log(LogOptions {
                    group: Some(3),
                    prefix: Some("g".into()),
                    level: None,
                })
                .limit_over(5, RateUnit::Minute, 10)
                .drop(),
        )
        .insert_rule(
            &inp,
            Rule::new()
                .ct_state(&[CtState::Established, CtState::Related, CtState::New])
                .accept(),
        )
        .add_rule(
            &c,
            Rule::new()
                .set_mark(0x10)
                .goto("c2_missing_is_not_used")
                .comment("x"),
        )
        .add_rule(
            &pre,
            Rule::new()
                .l4proto(L4Proto::Tcp)
                .th_dport(80)
                .dnat_ip(Ipv4Addr::new(10, 0, 0, 2), Some(8080)),
        )
        .add_rule(
            &pre,
            Rule::new().dnat_ip_map(&[Field::ThDport], "dn", false),
        )
        .add_rule(
            &post,
            Rule::new()
                .oifname("eth0")
                .snat_ip(Ipv4Addr::new(192, 0, 2, 1)),
        );
    // A goto to a missing chain would fail; add that chain first.
    let mut full = Batch::new();
    full.push(b.ops()[0].clone())
        .add_chain(&Chain::regular(&t, "c2_missing_is_not_used"));
    for op in &b.ops()[1..] {
        full.push(op.clone());
    }
    let script = full.render().join("\n") + "\n";
    let ours = {
        let full = full.clone();
        in_netns(move || {
            Nft::open().unwrap().apply(&full).unwrap();
            normalize(serde_json::Value::Array(nft_json(&["ruleset"])))
        })
    };
    let theirs = in_netns(move || {
        run_in_ns(&["nft", "-f", "-"], Some(&script));
        normalize(serde_json::Value::Array(nft_json(&["ruleset"])))
    });
    let (a, b) = (ours.as_array().unwrap(), theirs.as_array().unwrap());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b.iter()) {
        assert_eq!(x, y, "netlink vs nft -f differ");
    }
}

/// A bridge table of the kind berth's anti-spoofing uses: concatenated keys
/// of interface name, MAC and address, `ether type` matches standing for
/// nft's protocol dependencies, ARP fields and bridge priorities.
#[test]
fn bridge_tables_render_as_nft_would_install() {
    let t = Table::new(Family::Bridge, "g");
    let pre = Chain::base(
        &t,
        "prerouting",
        ChainType::Filter,
        Hook::Prerouting,
        priority::BRIDGE_FILTER,
    )
    .policy(Policy::Accept);
    let guard = Chain::regular(&t, "guard");
    let guarded = Set::new(&t, "guarded", &[DataType::Ifname]);
    let key4 = [DataType::Ifname, DataType::EtherAddr, DataType::Ipv4Addr];
    let key6 = [DataType::Ifname, DataType::EtherAddr, DataType::Ipv6Addr];
    let allowed4 = Set::new(&t, "allowed4", &key4);
    let allowed6 = Set::new(&t, "allowed6", &key6);
    let mac = [0x02, 0x42, 0x0a, 0x5a, 0x00, 0x02];
    let elem4 = Element::new([
        Value::Ifname("vb0123456789ab".into()).into(),
        Value::Ether(mac).into(),
        Ipv4Addr::new(10, 90, 0, 2).into(),
    ]);
    let mut b = Batch::new();
    b.add_table(&t)
        .add_set(&guarded)
        .add_set(&allowed4)
        .add_set(&allowed6)
        .add_chain(&pre)
        .add_chain(&guard)
        .add_elements(
            &guarded,
            vec![Element::of(Value::Ifname("vb0123456789ab".into()))],
        )
        .add_elements(&allowed4, vec![elem4.clone()])
        .add_rule(
            &pre,
            Rule::new()
                .lookup(&[Field::Iifname], "guarded")
                .jump("guard"),
        )
        .add_rule(
            &guard,
            Rule::new()
                .ether_type(0x0800)
                .lookup(
                    &[Field::Iifname, Field::EtherSaddr, Field::IpSaddr],
                    "allowed4",
                )
                .ret(),
        )
        .add_rule(
            &guard,
            Rule::new()
                .ether_type(0x0806)
                .lookup(
                    &[Field::Iifname, Field::EtherSaddr, Field::ArpSaddrIp],
                    "allowed4",
                )
                .lookup(
                    &[Field::Iifname, Field::ArpSaddrEther, Field::ArpSaddrIp],
                    "allowed4",
                )
                .ret(),
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
        // Without an explicit `ether type`, nft's own dependencies.
        .add_rule(
            &guard,
            Rule::new().ip_saddr(Ipv4Addr::new(10, 90, 0, 9)).drop(),
        )
        .add_rule(
            &guard,
            Rule::new()
                .cmp(Field::ArpSaddrIp, CmpOp::Eq, Ipv4Addr::new(10, 90, 0, 9))
                .drop(),
        )
        .add_rule(
            &guard,
            Rule::new()
                .cmp(Field::EtherSaddr, CmpOp::Neq, Value::Ether(mac))
                .counter()
                .drop(),
        )
        .add_rule(&guard, Rule::new().counter().drop());
    let script = b.render().join("\n") + "\n";
    assert!(
        script.contains("type filter hook prerouting priority filter;"),
        "{script}"
    );
    assert!(
        script.contains("\"vb0123456789ab\" . 02:42:0a:5a:00:02 . 10.90.0.2"),
        "{script}"
    );
    // The kernel's expressions, as `nft --debug=netlink` prints them: the
    // JSON listing hides implicit dependencies, this does not.
    let expressions = || run_in_ns(&["nft", "--debug=netlink", "list", "ruleset"], None);
    let (ours, listed, our_exprs) = {
        let b = b.clone();
        in_netns(move || {
            let mut nft = Nft::open().unwrap();
            nft.apply(&b).unwrap();
            let listed: Vec<String> = nft
                .list_elements(&Table::new(Family::Bridge, "g"), "allowed4")
                .unwrap()
                .iter()
                .map(Element::render)
                .collect();
            (
                normalize(serde_json::Value::Array(nft_json(&["ruleset"]))),
                listed,
                expressions(),
            )
        })
    };
    assert_eq!(listed, vec![elem4.render()]);
    let (theirs, their_exprs) = in_netns(move || {
        run_in_ns(&["nft", "-f", "-"], Some(&script));
        (
            normalize(serde_json::Value::Array(nft_json(&["ruleset"]))),
            expressions(),
        )
    });
    let (a, b) = (ours.as_array().unwrap(), theirs.as_array().unwrap());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b.iter()) {
        assert_eq!(x, y, "netlink vs nft -f differ");
    }
    assert!(our_exprs.contains("meta load protocol"), "{our_exprs}");
    assert_eq!(our_exprs, their_exprs, "the expressions differ");
}

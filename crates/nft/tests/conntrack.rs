//! ctnetlink cleanup, in a private network namespace with loopback traffic only.

mod common;

use berth_nft::*;
use common::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Brings up lo and makes conntrack track this namespace (any ct expression
/// in a base chain does).
fn track_this_netns() {
    run_in_ns(&["ip", "link", "set", "lo", "up"], None);
    let t = Table::new(Family::Inet, "berth");
    let out = Chain::base(
        &t,
        "output",
        ChainType::Filter,
        Hook::Output,
        priority::FILTER,
    );
    let mut b = Batch::new();
    b.add_table(&t)
        .add_chain(&out)
        .add_rule(&out, Rule::new().ct_state(&[CtState::New]).counter());
    Nft::open().unwrap().apply(&b).unwrap();
}

fn udp(dst: Ipv4Addr, dport: u16) -> CtMatch {
    CtMatch {
        proto: L4Proto::Udp,
        dst: Some(dst),
        dport,
    }
}

fn any(proto: L4Proto, dport: u16) -> CtMatch {
    CtMatch {
        proto,
        dst: None,
        dport,
    }
}

const LO2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Entries: udp 127.0.0.1:5353 from two sources, udp 127.0.0.1:5454,
/// udp 127.0.0.2:5353 and tcp 127.0.0.1:5353 (an open connection, returned to
/// be kept open).
fn make_entries(ct: &mut Conntrack) -> (TcpListener, TcpStream) {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    s.send_to(b"x", (Ipv4Addr::LOCALHOST, 5353)).unwrap();
    s.send_to(b"x", (Ipv4Addr::LOCALHOST, 5454)).unwrap();
    s.send_to(b"x", (LO2, 5353)).unwrap();
    let other = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    other.send_to(b"x", (Ipv4Addr::LOCALHOST, 5353)).unwrap();
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 5353)).unwrap();
    let c = TcpStream::connect((Ipv4Addr::LOCALHOST, 5353)).unwrap();
    assert_eq!(ct.count(&udp(Ipv4Addr::LOCALHOST, 5353)).unwrap(), 2);
    assert_eq!(ct.count(&any(L4Proto::Udp, 5454)).unwrap(), 1);
    assert_eq!(ct.count(&udp(LO2, 5353)).unwrap(), 1);
    assert_eq!(ct.count(&any(L4Proto::Udp, 5353)).unwrap(), 3);
    assert_eq!(ct.count(&any(L4Proto::Tcp, 5353)).unwrap(), 1);
    (l, c)
}

/// The surviving entries after deleting udp 127.0.0.1:5353:
/// (udp to port 5454, udp 127.0.0.2:5353, tcp 127.0.0.1:5353).
fn survivors(ct: &mut Conntrack) -> (usize, usize, usize) {
    (
        ct.count(&any(L4Proto::Udp, 5454)).unwrap(),
        ct.count(&udp(LO2, 5353)).unwrap(),
        ct.count(&any(L4Proto::Tcp, 5353)).unwrap(),
    )
}

#[test]
fn deletes_only_matching_udp_entries() {
    in_netns(|| {
        track_this_netns();
        let mut ct = Conntrack::open().unwrap();
        let _tcp = make_entries(&mut ct);

        // Nothing matches: nothing goes.
        let wrong_dst = udp(Ipv4Addr::new(10, 0, 0, 1), 5353);
        ct.delete(&wrong_dst).unwrap();
        ct.delete(&udp(Ipv4Addr::LOCALHOST, 5355)).unwrap();
        assert_eq!(ct.count(&any(L4Proto::Udp, 5353)).unwrap(), 3);
        assert_eq!(survivors(&mut ct), (1, 1, 1));

        // The two entries to 127.0.0.1:5353 go, the others stay.
        ct.delete(&udp(Ipv4Addr::LOCALHOST, 5353)).unwrap();
        assert_eq!(ct.count(&udp(Ipv4Addr::LOCALHOST, 5353)).unwrap(), 0);
        assert_eq!(survivors(&mut ct), (1, 1, 1));
        ct.delete(&udp(Ipv4Addr::LOCALHOST, 5353)).unwrap();

        // Any destination: the udp entry to 127.0.0.2 goes, tcp stays.
        ct.delete(&any(L4Proto::Udp, 5353)).unwrap();
        assert_eq!(survivors(&mut ct), (1, 0, 1));
        ct.delete(&any(L4Proto::Tcp, 5353)).unwrap();
        assert_eq!(survivors(&mut ct), (1, 0, 0));
        ct.delete(&any(L4Proto::Udp, 5454)).unwrap();
        assert_eq!(survivors(&mut ct), (0, 0, 0));
    });
}

#[test]
fn this_kernel_flushes_with_a_filter() {
    // 6.18 (and any kernel whose ctnetlink_del_conntrack honours CTA_FILTER)
    // deletes in one request and reports no count; the dump fallback would
    // answer Some(n).
    in_netns(|| {
        track_this_netns();
        let mut ct = Conntrack::open().unwrap();
        let _tcp = make_entries(&mut ct);
        assert_eq!(ct.delete(&udp(Ipv4Addr::LOCALHOST, 5353)).unwrap(), None);
        assert_eq!(ct.count(&any(L4Proto::Udp, 5353)).unwrap(), 1);
    });
}

#[test]
fn dump_fallback_deletes_only_matching_entries() {
    in_netns(|| {
        track_this_netns();
        let mut ct = Conntrack::open().unwrap();
        let _tcp = make_entries(&mut ct);
        let wrong_dst = udp(Ipv4Addr::new(10, 0, 0, 1), 5353);
        assert_eq!(ct.delete_by_dump(&wrong_dst).unwrap(), 0);
        assert_eq!(ct.delete_by_dump(&any(L4Proto::Sctp, 5353)).unwrap(), 0);
        let m = udp(Ipv4Addr::LOCALHOST, 5353);
        assert_eq!(ct.delete_by_dump(&m).unwrap(), 2);
        assert_eq!(ct.delete_by_dump(&m).unwrap(), 0);
        assert_eq!(survivors(&mut ct), (1, 1, 1));
        assert_eq!(ct.delete_by_dump(&any(L4Proto::Udp, 5353)).unwrap(), 1);
        assert_eq!(survivors(&mut ct), (1, 0, 1));
    });
}

/// IPv6 entries next to IPv4 ones: udp [::1]:5353 from two sources, tcp
/// [::1]:5353 (returned to be kept open) and udp 127.0.0.1:5353.
fn make_dual_entries() -> (TcpListener, TcpStream) {
    let lo6 = Ipv6Addr::LOCALHOST;
    let a = UdpSocket::bind((lo6, 0)).unwrap();
    let b = UdpSocket::bind((lo6, 0)).unwrap();
    a.send_to(b"x", (lo6, 5353)).unwrap();
    b.send_to(b"x", (lo6, 5353)).unwrap();
    let v4 = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    v4.send_to(b"x", (Ipv4Addr::LOCALHOST, 5353)).unwrap();
    let l = TcpListener::bind((lo6, 5353)).unwrap();
    let c = TcpStream::connect((lo6, 5353)).unwrap();
    (l, c)
}

const LO6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Queries by family: an IPv6 destination matches IPv6 entries only, `any`
/// reads one family or both, and the IPv4-only `CtMatch` still sees IPv4
/// alone; deletes (kernel filter, then dump) take exactly the matches.
#[test]
fn ipv6_entries_are_counted_and_deleted_by_family() {
    for by_dump in [false, true] {
        in_netns(move || {
            track_this_netns();
            let mut ct = Conntrack::open().unwrap();
            let _tcp = make_dual_entries();
            let udp6 = CtQuery::to(L4Proto::Udp, LO6, 5353);
            let any6 = CtQuery::any(Family::Ip6, L4Proto::Udp, 5353);
            let both = CtQuery::any(Family::Inet, L4Proto::Udp, 5353);
            assert_eq!(ct.count(&udp6).unwrap(), 2);
            assert_eq!(ct.count(&any6).unwrap(), 2);
            assert_eq!(ct.count(&both).unwrap(), 3);
            assert_eq!(ct.count(&any(L4Proto::Udp, 5353)).unwrap(), 1);
            assert_eq!(
                ct.count(&CtQuery::to(L4Proto::Udp, "fd00::1".parse().unwrap(), 5353))
                    .unwrap(),
                0
            );
            assert_eq!(
                ct.count(&CtQuery::any(Family::Ip6, L4Proto::Tcp, 5353))
                    .unwrap(),
                1
            );
            let del = |ct: &mut Conntrack, q: CtQuery| {
                if by_dump {
                    ct.delete_by_dump(&q).unwrap();
                } else {
                    ct.delete(&q).unwrap();
                }
            };
            // A wrong address takes nothing.
            del(
                &mut ct,
                CtQuery::to(L4Proto::Udp, "fd00::1".parse().unwrap(), 5353),
            );
            assert_eq!(ct.count(&both).unwrap(), 3);
            // [::1]:5353 goes, 127.0.0.1:5353 and the tcp entry stay.
            del(&mut ct, udp6);
            assert_eq!(ct.count(&any6).unwrap(), 0);
            assert_eq!(ct.count(&both).unwrap(), 1);
            assert_eq!(
                ct.count(&CtQuery::any(Family::Ip6, L4Proto::Tcp, 5353))
                    .unwrap(),
                1
            );
            // Both families at once.
            let v6 = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
            v6.send_to(b"x", (Ipv6Addr::LOCALHOST, 5353)).unwrap();
            assert_eq!(ct.count(&both).unwrap(), 2);
            if !by_dump {
                // No address: the kernel filters both families itself.
                assert_eq!(ct.delete(&both).unwrap(), None);
            } else {
                assert_eq!(ct.delete_by_dump(&both).unwrap(), 2);
            }
            assert_eq!(ct.count(&both).unwrap(), 0);
            assert_eq!(
                ct.count(&CtQuery::any(Family::Ip6, L4Proto::Tcp, 5353))
                    .unwrap(),
                1
            );
        });
    }
}

/// Cost of one flush, filtered in the kernel vs dump + delete, with no entry
/// in the namespace and with ~1000 non-matching ones. Prints, asserts nothing
/// about time: `cargo test -p berth-nft --test conntrack -- --ignored --nocapture`.
#[test]
#[ignore]
fn flush_cost() {
    in_netns(|| {
        track_this_netns();
        let mut ct = Conntrack::open().unwrap();
        let m = udp(Ipv4Addr::LOCALHOST, 9);
        let time = |ct: &mut Conntrack, label: &str, filtered: bool| {
            const N: u32 = 100;
            let start = Instant::now();
            for _ in 0..N {
                if filtered {
                    ct.delete(&m).unwrap();
                } else {
                    ct.delete_by_dump(&m).unwrap();
                }
            }
            let per = start.elapsed() / N;
            println!("{label:<40} {:>9.3} ms/flush", per.as_secs_f64() * 1e3);
            per
        };
        time(&mut ct, "empty netns, dump + delete", false);
        time(&mut ct, "empty netns, kernel filter", true);
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        for port in 20000..21000 {
            s.send_to(b"x", (Ipv4Addr::LOCALHOST, port)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        let n = ct.count(&any(L4Proto::Udp, 20500)).unwrap();
        assert_eq!(n, 1);
        time(&mut ct, "1000 entries, dump + delete", false);
        time(&mut ct, "1000 entries, kernel filter", true);
        // Still there: the flushes matched nothing.
        assert_eq!(ct.count(&any(L4Proto::Udp, 20500)).unwrap(), 1);
    });
}

//! ctnetlink cleanup, in a private network namespace with loopback traffic only.

mod common;

use berth_nft::*;
use common::*;
use std::net::{Ipv4Addr, UdpSocket};

#[test]
fn deletes_only_matching_udp_entries() {
    in_netns(|| {
        run_in_ns(&["ip", "link", "set", "lo", "up"], None);
        // Any ct expression in a base chain makes conntrack track this namespace.
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

        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        s.send_to(b"x", (Ipv4Addr::LOCALHOST, 5353)).unwrap();
        s.send_to(b"x", (Ipv4Addr::LOCALHOST, 5454)).unwrap();
        let other = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        other.send_to(b"x", (Ipv4Addr::LOCALHOST, 5353)).unwrap();

        let mut ct = Conntrack::open().unwrap();
        let wrong_dst = CtMatch {
            proto: L4Proto::Udp,
            dst: Some(Ipv4Addr::new(10, 0, 0, 1)),
            dport: 5353,
        };
        assert_eq!(ct.delete(&wrong_dst).unwrap(), 0);
        let wrong_proto = CtMatch {
            proto: L4Proto::Tcp,
            dst: None,
            dport: 5353,
        };
        assert_eq!(ct.delete(&wrong_proto).unwrap(), 0);

        let m = CtMatch {
            proto: L4Proto::Udp,
            dst: Some(Ipv4Addr::LOCALHOST),
            dport: 5353,
        };
        assert_eq!(ct.delete(&m).unwrap(), 2);
        assert_eq!(ct.delete(&m).unwrap(), 0);
        // The entry for the other port survived.
        let any = CtMatch {
            proto: L4Proto::Udp,
            dst: None,
            dport: 5454,
        };
        assert_eq!(ct.delete(&any).unwrap(), 1);
        assert_eq!(ct.delete(&any).unwrap(), 0);
    });
}

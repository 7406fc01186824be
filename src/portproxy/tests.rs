use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};

use super::*;
use crate::model::PortMapping;

fn row(
    inode: u64,
    host: u16,
    container: u16,
    count: u16,
    proto: Proto,
    target: &str,
) -> LoopbackForward {
    LoopbackForward {
        netns_inode: inode,
        endpoint: format!("web/c{inode}"),
        target: target.parse().unwrap(),
        mapping: PortMapping {
            host_ip: "0.0.0.0".parse().unwrap(),
            host_port: host,
            container_port: container,
            count,
            proto,
        },
    }
}

#[test]
fn a_range_is_one_forward_per_port() {
    let fw = expand(&[row(7, 8000, 9000, 3, Proto::Udp, "fd00::2")]);
    let got: Vec<String> = fw
        .iter()
        .map(|(k, t)| format!("{}/{} {}", k.port, k.proto.as_str(), t.addr))
        .collect();
    assert_eq!(
        got,
        [
            "8000/udp [fd00::2]:9000",
            "8001/udp [fd00::2]:9001",
            "8002/udp [fd00::2]:9002"
        ]
    );
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv6Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The relays run on a runtime thread of their own; the test talks to
/// them with blocking sockets from this one.
fn serve(rows: Vec<LoopbackForward>) -> std::sync::mpsc::Receiver<Vec<String>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let mut p = Proxy::default();
            for r in rows {
                p.rows.entry(r.netns_inode).or_default().push(r);
            }
            tx.send(p.apply_all()).unwrap();
            std::future::pending::<()>().await;
        })
    });
    rx
}

#[test]
fn relays_tcp_and_udp_from_loopback() {
    // The "container": echo servers on ::1 at other ports.
    let echo = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in echo.incoming() {
            let mut s = s.unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let uecho = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
    let uecho_port = uecho.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok((n, peer)) = uecho.recv_from(&mut buf) {
            let _ = uecho.send_to(&buf[..n], peer);
        }
    });
    let (tport, uport) = (free_port(), free_port());
    let rows = vec![
        row(1, tport, echo_port, 1, Proto::Tcp, "::1"),
        row(1, uport, uecho_port, 1, Proto::Udp, "::1"),
    ];
    let warnings = serve(rows).recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut c = TcpStream::connect((Ipv6Addr::LOCALHOST, tport)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for msg in [&b"hello"[..], b"again"] {
        c.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
    let u = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    u.send_to(b"ping", (Ipv6Addr::LOCALHOST, uport)).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = u.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    assert_eq!(
        from.port(),
        uport,
        "the reply comes from the published port"
    );
}

#[test]
fn a_port_held_by_another_process_is_reported_once() {
    let held = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
    let port = held.local_addr().unwrap().port();
    let rows = vec![row(3, port, 80, 1, Proto::Tcp, "fd00::3")];
    runtime().block_on(async move {
        let mut p = Proxy::default();
        for r in rows {
            p.rows.entry(r.netns_inode).or_default().push(r);
        }
        let w = p.apply_all();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with(WARNING_PREFIX), "{w:?}");
        assert!(
            w[0].contains(&format!("[::1]:{port}/tcp of web/c3"))
                && w[0].contains("another process holds that port"),
            "{w:?}"
        );
        assert!(p.retry().is_empty(), "warned once");
        assert!(p.has_failed() && !p.is_empty());
        drop(held);
        assert!(p.retry().is_empty());
        assert!(!p.has_failed(), "bound once the port is free");
        assert_eq!(p.listeners.len(), 1);
        p.rows.clear();
        p.apply_all();
        assert!(p.is_empty());
    });
}

#[test]
fn a_namespace_sync_touches_only_that_namespaces_ports() {
    let (a, b) = (free_port(), free_port());
    runtime().block_on(async move {
        let mut p = Proxy::default();
        let w = p.update_netns(1, vec![row(1, a, 80, 1, Proto::Tcp, "fd00::2")]);
        assert!(w.is_empty(), "{w:?}");
        let w = p.update_netns(2, vec![row(2, b, 80, 1, Proto::Tcp, "fd00::3")]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(p.forwarded(), 2);
        // Namespace 1 goes: its port closes, namespace 2's stays open.
        assert!(p.update_netns(1, Vec::new()).is_empty());
        let open: Vec<u16> = p.listeners.keys().map(|k| k.port).collect();
        assert_eq!(open, [b]);
        // An aborted listener task lets go of its socket when next polled.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert!(
            TcpListener::bind((Ipv6Addr::LOCALHOST, a)).is_ok(),
            "port {a} released"
        );
        // A port that moved to namespace 3 is not closed by namespace 2's
        // later sync.
        p.update_netns(3, vec![row(3, b, 81, 1, Proto::Tcp, "fd00::4")]);
        p.update_netns(2, Vec::new());
        assert_eq!(p.forwarded(), 1);
        assert_eq!(
            p.listeners[&Key {
                proto: Proto::Tcp,
                port: b
            }]
                .target
                .netns_inode,
            3
        );
    });
}

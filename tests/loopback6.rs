//! Published ports on `[::1]`, which berth's background server forwards in
//! user space (see `portproxy` in ARCHITECTURE.md): TCP, UDP and ranges on
//! a dual-stack network and on an IPv6-only one without DNS, in both
//! br_netfilter modes; the listeners' life with their endpoint; the
//! server's kill -9; a port another process holds on `[::1]`.

mod util;

use std::time::{Duration, Instant};

use util::dns::server_pid;
use util::*;

fn lo(port: u16) -> String {
    format!("[::1]:{port}")
}

/// Whether something listens on `[::1]:port` (TCP or UDP), as `ss` sees it.
fn listening(sb: &Sandbox, proto: &str, port: u16) -> bool {
    let flag = if proto == "udp" { "-Hnul" } else { "-Hntl" };
    let out = sb.sh_ok(&format!("ss {flag} 'sport = :{port}'"));
    stdout(&out).contains(&format!("[::1]:{port}"))
}

/// Waits up to `limit` for `what` to hold.
fn within(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed()
}

fn loopback(br_netfilter: bool) {
    let sb = Sandbox::new();
    set_br_netfilter(&sb, br_netfilter);
    sb.berth_ok(&[
        "network",
        "create",
        "web",
        "--subnet",
        "10.90.0.0/24",
        "--subnet6",
        "fd00:90::/64",
    ]);
    // IPv6-only and without DNS: the forwarder is its only way from [::1],
    // and no DNS network keeps the background server running.
    sb.berth_ok(&[
        "network",
        "create",
        "six",
        "--subnet6",
        "fd00:92::/64",
        "--no-ipv4",
        "--no-dns",
    ]);
    sb.add_netns("c");
    sb.add_netns("s");
    sb.connect(
        "web",
        "c",
        &[
            "-p",
            "8080:80",
            "-p",
            "8081:81/udp",
            "-p",
            "9000-9002:9000-9002",
            "-p",
            "[::1]:8088:80",
        ],
    );
    let _servers: Vec<Bg> = vec![
        sb.tcp_server(Some("c"), "[::]:80"),
        sb.udp_server(Some("c"), "[::]:81"),
        sb.tcp_server(Some("c"), "[::]:9000"),
        sb.tcp_server(Some("c"), "[::]:9001"),
        sb.tcp_server(Some("c"), "[::]:9002"),
        sb.tcp_server(Some("s"), "[::]:80"),
        sb.udp_server(Some("s"), "[::]:81"),
    ];
    // The container sees the bridge's address, as 127.0.0.1 clients show
    // as the IPv4 gateway.
    assert_eq!(sb.assert_tcp(None, &lo(8080)), "fd00:90::1");
    assert_eq!(sb.assert_udp(None, &lo(8081)), "fd00:90::1");
    for port in 9000..=9002 {
        assert_eq!(sb.assert_tcp(None, &lo(port)), "fd00:90::1", "{port}");
    }
    // A mapping on [::1] alone answers there and nowhere else.
    assert_eq!(sb.assert_tcp(None, &lo(8088)), "fd00:90::1");
    assert!(!sb.tcp(None, "[fd00:90::1]:8088").status.success());
    // The in-kernel paths still answer beside it.
    sb.assert_tcp(None, "[fd00:90::1]:8080");
    sb.assert_tcp(None, "127.0.0.1:8080");

    sb.connect("six", "s", &["-p", "8090:80", "-p", "8091:81/udp"]);
    assert_eq!(sb.assert_tcp(None, &lo(8090)), "fd00:92::1");
    assert_eq!(sb.assert_udp(None, &lo(8091)), "fd00:92::1");

    // A disconnect closes the listeners of its endpoint, and only those.
    sb.berth_ok(&["disconnect", "web", "c"]);
    for (proto, port) in [
        ("tcp", 8080),
        ("udp", 8081),
        ("tcp", 9000),
        ("tcp", 9002),
        ("tcp", 8088),
    ] {
        assert!(!listening(&sb, proto, port), "{proto} {port} still open");
    }
    assert!(!sb.tcp(None, &lo(8080)).status.success());
    assert!(listening(&sb, "tcp", 8090) && listening(&sb, "udp", 8091));
    sb.assert_tcp(None, &lo(8090));

    // The last mapping gone (and no DNS network left), the server goes.
    sb.berth_ok(&["disconnect", "six", "s"]);
    sb.berth_ok(&["network", "rm", "web"]);
    assert!(!listening(&sb, "tcp", 8090));
    within(Duration::from_secs(3), "the server exits", || {
        server_pid(&sb).is_none()
    });
}

#[test]
fn loopback_ports_answer_with_br_netfilter() {
    loopback(true);
}

#[test]
fn loopback_ports_answer_without_br_netfilter() {
    loopback(false);
}

/// Killed with SIGKILL, the server is started again by the supervisor and
/// opens its listeners again, with no berth command in between.
#[test]
fn a_killed_server_forwards_again() {
    let sb = Sandbox::new();
    set_br_netfilter(&sb, true);
    sb.berth_ok(&[
        "network",
        "create",
        "six",
        "--subnet6",
        "fd00:92::/64",
        "--no-ipv4",
        "--no-dns",
    ]);
    sb.add_netns("s");
    sb.connect("six", "s", &["-p", "8090:80", "-p", "8091:81/udp"]);
    let _tcp = sb.tcp_server(Some("s"), "[::]:80");
    let _udp = sb.udp_server(Some("s"), "[::]:81");
    sb.assert_tcp(None, &lo(8090));
    for round in 0..2 {
        let pid = server_pid(&sb).expect("the server runs for the forwards");
        sb.sh_ok(&format!("kill -KILL {pid}"));
        let took = within(Duration::from_secs(5), "forwarding again", || {
            server_pid(&sb).is_some_and(|p| p != pid) && sb.tcp(None, &lo(8090)).status.success()
        });
        sb.assert_udp(None, &lo(8091));
        eprintln!("round {round}: [::1] answers again {took:?} after the kill");
    }
}

/// A host port another process holds on `[::1]`: berth refuses to publish
/// it unless told to (`--force-publish`); told to, the connect says in one
/// line that `[::1]` is not forwarded, naming the port and the endpoint; the holder keeps its port,
/// the mapping answers on the other addresses, and once the holder lets
/// go the server takes the port over without a berth command.
#[test]
fn a_port_held_on_loopback_is_reported() {
    let sb = Sandbox::new();
    sb.berth_ok(&[
        "network",
        "create",
        "web",
        "--subnet",
        "10.90.0.0/24",
        "--subnet6",
        "fd00:90::/64",
    ]);
    sb.add_netns("c");
    let mut holder = sb.tcp_server(None, "[::1]:8085");
    let _srv = sb.tcp_server(Some("c"), "[::]:80");
    let out = sb.berth_out_ok(&["connect", "web", "c", "-p", "8085:80", "--force-publish"]);
    let err = stderr(&out);
    assert!(
        err.contains("published port [::1]:8085/tcp of web/c does not answer on [::1]")
            && err.contains("another process holds that port on [::1]"),
        "{err}"
    );
    assert!(!err.contains("DNS: published port"), "{err}");
    // The holder still answers there (it sees the host's own ::1).
    assert_eq!(sb.assert_tcp(None, &lo(8085)), "::1");
    sb.assert_tcp(None, "[fd00:90::1]:8085");
    holder.signal(nix::sys::signal::Signal::SIGKILL);
    holder.wait_timeout(Duration::from_secs(2));
    within(Duration::from_secs(10), "the server takes the port", || {
        sb.tcp(None, &lo(8085)).status.success()
            && seen_source(&stdout(&sb.tcp(None, &lo(8085)))) == "fd00:90::1"
    });
}

//! berth's DNS server end to end: `dig` from inside namespaces of a sandbox
//! against the server berth starts on each network's gateway, with a fake
//! upstream resolver (`berth-probe dns-serve`) in the sandbox's "internet"
//! namespace or on the sandbox host's 127.0.0.53.

mod util;

use std::process::Output;
use std::time::{Duration, Instant};

use util::*;

/// Whether `dig` is installed; prints a loud SKIP line if not.
fn have_dig(test: &str) -> bool {
    let ok = std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        crate::skip_line!("SKIP {test}: `dig` is not installed (Debian: dnsutils)");
    }
    ok
}

fn dig(sb: &Sandbox, netns: &str, server: &str, args: &[&str]) -> Output {
    let at = format!("@{server}");
    let mut all = vec![at.as_str(), "+time=2", "+tries=1"];
    all.extend_from_slice(args);
    sb.in_netns(netns, "dig", &all)
}

/// `dig +short`: the answer's data lines.
fn short(sb: &Sandbox, netns: &str, server: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["+short"];
    all.extend_from_slice(args);
    let out = dig(sb, netns, server, &all);
    assert_ok_ctx(&out, &format!("dig {args:?} from {netns}"));
    stdout(&out).lines().map(str::to_string).collect()
}

/// The reply's status (NOERROR, NXDOMAIN, SERVFAIL, ...), or the dig
/// failure (e.g. "no reply").
fn status(sb: &Sandbox, netns: &str, server: &str, args: &[&str]) -> String {
    let out = dig(sb, netns, server, args);
    let text = stdout(&out);
    text.lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .unwrap_or_else(|| format!("no reply: {}", text.trim()))
}

/// Network `web` (10.90.0.0/24) with c1 (aliases backend, v1.backend) and c2.
fn web(sb: &Sandbox) {
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    sb.add_netns("c2");
    sb.connect(
        "web",
        "c1",
        &["--alias", "backend", "--alias", "v1.backend"],
    );
    sb.connect("web", "c2", &[]);
}

const GW: &str = "10.90.0.1";

/// Points the sandbox host's /etc/resolv.conf (a bind mount inside the
/// sandbox only) at `server`.
fn host_resolv(sb: &Sandbox, text: &str) {
    sb.sh_ok(&format!(
        "printf '{text}' > /run/test-resolv.conf && \
         (mountpoint -q /etc/resolv.conf || mount --bind /run/test-resolv.conf /etc/resolv.conf)"
    ));
}

fn server_pid(sb: &Sandbox) -> Option<u32> {
    let out = sb.cmd("cat", &[&format!("{STATE_DIR}/dns.pid")]);
    let pid: u32 = stdout(&out).trim().parse().ok()?;
    sb.processes().contains(&pid).then_some(pid)
}

#[test]
fn names_aliases_any_case_ptr_and_tcp() {
    if !have_dig("names_aliases_any_case_ptr_and_tcp") {
        return;
    }
    let sb = Sandbox::new();
    web(&sb);
    for name in [
        "c1",
        "C1",
        "backend",
        "BackEnd",
        "v1.backend",
        "c1.dns.berth",
    ] {
        assert_eq!(short(&sb, "c2", GW, &[name]), vec!["10.90.0.2"], "{name}");
    }
    assert_eq!(short(&sb, "c1", GW, &["c2"]), vec!["10.90.0.3"]);
    assert_eq!(
        short(&sb, "c2", GW, &["+tcp", "backend"]),
        vec!["10.90.0.2"]
    );
    // Every name of the address: its own, then the aliases as given.
    assert_eq!(
        short(&sb, "c2", GW, &["-x", "10.90.0.2"]),
        vec![
            "c1.dns.berth.",
            "backend.dns.berth.",
            "v1.backend.dns.berth."
        ]
    );
    assert_eq!(
        short(&sb, "c2", GW, &["+tcp", "-x", "10.90.0.3"]),
        vec!["c2.dns.berth."]
    );
    // The name exists, with no IPv6 address: NOERROR and no answer.
    assert_eq!(status(&sb, "c2", GW, &["AAAA", "c1"]), "NOERROR");
    assert!(short(&sb, "c2", GW, &["AAAA", "c1"]).is_empty());
    // An address of the subnet that nobody holds.
    assert_eq!(status(&sb, "c2", GW, &["-x", "10.90.0.99"]), "NXDOMAIN");
    // The network shows DNS on, and the aliases.
    assert_eq!(sb.network("web")["dns"], true);
    let inspect = sb.berth_ok(&["network", "inspect", "web"]);
    assert!(inspect.contains("dns:       on"), "{inspect}");
    assert!(
        inspect.contains("ALIASES") && inspect.contains("backend, v1.backend"),
        "{inspect}"
    );
    let json = sb.berth_json(&["network", "inspect", "web", "--json"])[0].clone();
    assert_eq!(json["endpoints"][0]["aliases"][1], "v1.backend");
}

#[test]
fn a_namespace_sees_the_names_of_its_networks_and_no_others() {
    if !have_dig("a_namespace_sees_the_names_of_its_networks_and_no_others") {
        return;
    }
    let sb = Sandbox::new();
    sb.create_network("a", "10.91.0.0/24");
    sb.create_network("b", "10.92.0.0/24");
    for ns in ["both", "onlya", "onlyb"] {
        sb.add_netns(ns);
    }
    sb.connect("a", "both", &[]);
    sb.connect("b", "both", &["--alias", "bside"]);
    sb.connect("a", "onlya", &[]);
    sb.connect("b", "onlyb", &[]);
    // `both` asks a's gateway and sees b's names as well.
    assert_eq!(
        short(&sb, "both", "10.91.0.1", &["onlyb"]),
        vec!["10.92.0.3"]
    );
    assert_eq!(
        short(&sb, "both", "10.91.0.1", &["onlya"]),
        vec!["10.91.0.3"]
    );
    // A name that lives only on another network is NXDOMAIN.
    assert_eq!(status(&sb, "onlya", "10.91.0.1", &["onlyb"]), "NXDOMAIN");
    assert_eq!(status(&sb, "onlya", "10.91.0.1", &["bside"]), "NXDOMAIN");
    assert_eq!(status(&sb, "onlyb", "10.92.0.1", &["onlya"]), "NXDOMAIN");
    assert_eq!(
        short(&sb, "onlyb", "10.92.0.1", &["bside"]),
        vec!["10.92.0.2"]
    );
    // A name on both networks: each neighbour gets the address on the
    // network it shares with it; `both` itself gets both, the network
    // it asks first, as aardvark-dns answers.
    assert_eq!(
        short(&sb, "onlyb", "10.92.0.1", &["both"]),
        vec!["10.92.0.2"]
    );
    assert_eq!(
        short(&sb, "onlya", "10.91.0.1", &["both"]),
        vec!["10.91.0.2"]
    );
    assert_eq!(
        short(&sb, "both", "10.91.0.1", &["both"]),
        vec!["10.91.0.2", "10.92.0.2"]
    );
    assert_eq!(
        short(&sb, "both", "10.92.0.1", &["both.dns.berth"]),
        vec!["10.92.0.2", "10.91.0.2"]
    );
    assert_eq!(
        short(&sb, "both", "10.92.0.1", &["+tcp", "both"]),
        vec!["10.92.0.2", "10.91.0.2"]
    );
    // A third namespace on both networks sees both addresses too, and an
    // alias lives only on its own network.
    sb.add_netns("third");
    sb.connect("a", "third", &[]);
    sb.connect("b", "third", &[]);
    assert_eq!(
        short(&sb, "third", "10.91.0.1", &["both"]),
        vec!["10.91.0.2", "10.92.0.2"]
    );
    assert_eq!(
        short(&sb, "third", "10.91.0.1", &["bside"]),
        vec!["10.92.0.2"]
    );
    // PTR: the names on the network of the address.
    assert_eq!(
        short(&sb, "third", "10.91.0.1", &["-x", "10.92.0.2"]),
        vec!["both.dns.berth.", "bside.dns.berth."]
    );
    assert_eq!(
        short(&sb, "third", "10.91.0.1", &["-x", "10.91.0.2"]),
        vec!["both.dns.berth."]
    );
    // After a disconnect, one address again.
    sb.berth_ok(&["disconnect", "b", "both"]);
    assert_eq!(
        short(&sb, "third", "10.92.0.1", &["both"]),
        vec!["10.91.0.2"]
    );
    // Asking another network's gateway: refused (the server would
    // otherwise answer whoever can route to it).
    assert_eq!(status(&sb, "onlyb", "10.91.0.1", &["onlya"]), "REFUSED");
    // PTR across networks follows the same rule.
    assert_eq!(
        status(&sb, "onlya", "10.91.0.1", &["-x", "10.92.0.3"]),
        "NXDOMAIN"
    );
}

#[test]
fn names_clash_case_insensitively_and_bad_aliases_are_refused() {
    let sb = Sandbox::new();
    web(&sb);
    sb.add_netns("c3");
    let before = sb.snapshot();
    let out = sb.berth(&["connect", "web", "c3", "--alias", "BACKEND"]);
    assert_fails_with(
        &out,
        2,
        "\"BACKEND\" is already taken on network \"web\" by endpoint \"c1\"",
    );
    let out = sb.berth(&["connect", "web", "c3", "--name", "C2"]);
    assert_fails_with(&out, 2, "by endpoint \"c2\"");
    let out = sb.berth(&["connect", "web", "c3", "--alias", "bad name"]);
    assert_fails_with(&out, 2, "invalid alias \"bad name\"");
    let out = sb.berth(&["connect", "web", "c3", "--alias", "x", "--alias", "X"]);
    assert_fails_with(&out, 2, "alias \"X\" is given twice");
    sb.snapshot().assert_same(&before, "refused connects");
    // The same name on another network is fine.
    sb.create_network("other", "10.93.0.0/24");
    sb.connect("other", "c3", &["--name", "c1", "--alias", "backend"]);
}

#[test]
fn forwards_other_names_upstream_with_tcp_retry_and_servfail_on_timeout() {
    if !have_dig("forwards_other_names_upstream_with_tcp_retry_and_servfail_on_timeout") {
        return;
    }
    let sb = Sandbox::new();
    let inet = sb.internet();
    let upstream = sb.spawn_in_netns(
        Some(&inet.netns),
        PROBE,
        &["dns-serve", &format!("{}:53", inet.public_ip)],
        true,
    );
    host_resolv(&sb, &format!("nameserver {}\\n", inet.public_ip));
    web(&sb);
    assert_eq!(
        short(&sb, "c2", GW, &["www.example.com"]),
        vec!["192.0.2.10"]
    );
    // The reply keeps the client's ID and RD flag: dig checks the ID.
    let out = dig(&sb, "c2", GW, &["+norecurse", "www.example.com"]);
    assert!(stdout(&out).contains("status: NOERROR"), "{}", stdout(&out));
    // Truncated upstream over UDP: the server asks again over TCP.
    let big = short(&sb, "c2", GW, &["big.example.com"]);
    assert_eq!(big.len(), 40, "{big:?}");
    assert!(upstream.stdout().contains("query big.example.com tcp"));
    // Over TCP from the client too.
    assert_eq!(
        short(&sb, "c2", GW, &["+tcp", "www.example.com"]),
        vec!["192.0.2.10"]
    );
    // An upstream that never answers: SERVFAIL, not silence.
    let t = Instant::now();
    let out = dig(&sb, "c2", GW, &["+time=8", "slow.example.com"]);
    assert!(
        stdout(&out).contains("status: SERVFAIL"),
        "{}",
        stdout(&out)
    );
    assert!(t.elapsed() < Duration::from_secs(7), "{:?}", t.elapsed());
    // Unknown single labels stay here.
    assert_eq!(status(&sb, "c2", GW, &["nosuchname"]), "NXDOMAIN");
    assert_eq!(status(&sb, "c2", GW, &["nosuch.dns.berth"]), "NXDOMAIN");
    assert!(
        !upstream.stdout().contains("nosuch"),
        "{}",
        upstream.stdout()
    );
    // Names of the network itself never go upstream either.
    assert!(!upstream.stdout().contains("query c1"));
    // Nothing leaves an internal network, DNS included: REFUSED, while its
    // own names answer.
    sb.berth_ok(&[
        "network",
        "create",
        "int",
        "--internal",
        "--subnet",
        "10.96.0.0/24",
    ]);
    sb.add_netns("i1");
    sb.connect("int", "i1", &[]);
    assert_eq!(
        status(&sb, "i1", "10.96.0.1", &["internal.example.com"]),
        "REFUSED"
    );
    assert_eq!(short(&sb, "i1", "10.96.0.1", &["i1"]), vec!["10.96.0.2"]);
    assert!(!upstream.stdout().contains("internal.example.com"));
}

#[test]
fn a_host_stub_resolver_on_127_0_0_53_works_for_containers() {
    if !have_dig("a_host_stub_resolver_on_127_0_0_53_works_for_containers") {
        return;
    }
    let sb = Sandbox::new();
    web(&sb);
    // First without any reachable upstream: SERVFAIL at once.
    host_resolv(&sb, "nameserver 127.0.0.53\\n");
    assert_eq!(status(&sb, "c2", GW, &["www.example.com"]), "SERVFAIL");
    let _stub = sb.spawn_in_netns(None, PROBE, &["dns-serve", "127.0.0.53:53"], true);
    assert_eq!(
        short(&sb, "c2", GW, &["www.example.com"]),
        vec!["192.0.2.10"]
    );
    // The file is followed when it changes.
    let _other = sb.spawn_in_netns(None, PROBE, &["dns-serve", "127.0.0.54:53"], true);
    host_resolv(&sb, "nameserver 127.0.0.99\\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&sb, "c2", GW, &["www.example.com"]) != "SERVFAIL" {
        assert!(Instant::now() < deadline, "resolv.conf change not followed");
        std::thread::sleep(Duration::from_millis(300));
    }
    host_resolv(&sb, "nameserver 127.0.0.54\\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&sb, "c2", GW, &["www.example.com"]) != "NOERROR" {
        assert!(Instant::now() < deadline, "resolv.conf change not followed");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_name_resolves_when_connect_returns_and_is_gone_when_disconnect_returns() {
    if !have_dig("a_name_resolves_when_connect_returns_and_is_gone_when_disconnect_returns") {
        return;
    }
    let sb = Sandbox::new();
    web(&sb);
    sb.add_netns("c3");
    for i in 0..5 {
        let alias = format!("round{i}");
        let ip = field(&sb.connect("web", "c3", &["--alias", &alias]), "ip");
        assert_eq!(short(&sb, "c2", GW, &[&alias]), vec![ip], "round {i}");
        sb.berth_ok(&["disconnect", "web", "c3"]);
        assert_eq!(status(&sb, "c2", GW, &[&alias]), "NXDOMAIN", "round {i}");
        assert_eq!(status(&sb, "c2", GW, &["c3"]), "NXDOMAIN", "round {i}");
    }
}

#[test]
fn run_and_exec_get_a_resolv_conf_naming_the_gateway() {
    if !have_dig("run_and_exec_get_a_resolv_conf_naming_the_gateway") {
        return;
    }
    let sb = Sandbox::new();
    web(&sb);
    let host_before = stdout(&sb.cmd("cat", &["/etc/resolv.conf"]));
    let out = sb.berth_ok(&["run", "--net", "web", "--", "cat", "/etc/resolv.conf"]);
    assert!(out.contains(&format!("nameserver {GW}\n")), "{out}");
    assert!(out.contains("search dns.berth"), "{out}");
    // The process resolves its neighbours by name, and its own alias.
    let out = sb.berth_ok(&[
        "run",
        "--net",
        "web",
        "--alias",
        "job",
        "--",
        "sh",
        "-c",
        "getent hosts c1 && getent hosts job && dig +short +time=2 +tries=1 backend",
    ]);
    assert!(out.contains("10.90.0.2"), "{out}");
    assert!(out.lines().any(|l| l.ends_with("job.dns.berth")), "{out}");
    let out = sb.berth_ok(&[
        "run",
        "--net",
        "web",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "x.example",
        "--",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(
        out.contains("nameserver 192.0.2.53\n") && !out.contains(GW),
        "{out}"
    );
    assert!(out.contains("search x.example\n"), "{out}");
    let out = sb.berth(&["run", "--net", "web", "--dns", "nope", "--", "true"]);
    assert_fails_with(&out, 2, "invalid --dns \"nope\"");
    // exec --dns does the same in an existing namespace.
    let out = sb.berth_ok(&["exec", "--dns", "c2", "--", "cat", "/etc/resolv.conf"]);
    assert!(out.contains(&format!("nameserver {GW}\n")), "{out}");
    let out = sb.berth_ok(&["exec", "--dns", "c2", "--", "getent", "hosts", "backend"]);
    assert!(out.contains("10.90.0.2"), "{out}");
    // The host's file is untouched, and nothing is left in the state dir.
    assert_eq!(stdout(&sb.cmd("cat", &["/etc/resolv.conf"])), host_before);
    let left = stdout(&sb.cmd("ls", &[&format!("{STATE_DIR}/resolv")]));
    assert!(left.trim().is_empty(), "{left}");
}

#[test]
fn no_dns_networks_have_no_server() {
    if !have_dig("no_dns_networks_have_no_server") {
        return;
    }
    let sb = Sandbox::new();
    sb.berth_ok(&[
        "network",
        "create",
        "quiet",
        "--no-dns",
        "--subnet",
        "10.94.0.0/24",
    ]);
    sb.add_netns("q1");
    sb.connect("quiet", "q1", &[]);
    assert_eq!(sb.network("quiet")["dns"], false);
    assert!(sb
        .berth_ok(&["network", "inspect", "quiet"])
        .contains("dns:       off"));
    assert_eq!(server_pid(&sb), None);
    assert!(status(&sb, "q1", "10.94.0.1", &["q1"]).starts_with("no reply"));
    let out = sb.berth_ok(&["run", "--net", "quiet", "--", "cat", "/etc/resolv.conf"]);
    assert!(!out.contains("10.94.0.1"), "{out}");
    // A DNS network next to it gets a server that still does not answer on
    // the quiet network's gateway.
    web(&sb);
    assert!(server_pid(&sb).is_some());
    assert!(status(&sb, "q1", "10.94.0.1", &["q1"]).starts_with("no reply"));
    let out = sb.berth(&["exec", "--dns", "q1", "--", "true"]);
    assert_fails_with(&out, 2, "q1 is on no network with DNS");
    // `reset` takes the server away with everything else.
    let pid = server_pid(&sb).expect("server runs");
    sb.berth_ok(&["reset"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while sb.processes().contains(&pid) {
        assert!(Instant::now() < deadline, "server still runs after reset");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_server_is_brought_back_by_the_next_command_and_exits_when_unneeded() {
    if !have_dig("a_killed_server_is_brought_back_by_the_next_command_and_exits_when_unneeded") {
        return;
    }
    let sb = Sandbox::new();
    web(&sb);
    let pid = server_pid(&sb).expect("server runs");
    sb.sh_ok(&format!("kill -KILL {pid}"));
    assert!(status(&sb, "c2", GW, &["c1"]).starts_with("no reply"));
    sb.add_netns("c3");
    sb.connect("web", "c3", &[]);
    let again = server_pid(&sb).expect("server back");
    assert_ne!(again, pid);
    // Nothing was lost: the names come from berth's state.
    assert_eq!(short(&sb, "c2", GW, &["backend"]), vec!["10.90.0.2"]);
    assert_eq!(short(&sb, "c1", GW, &["c3"]), vec!["10.90.0.4"]);
    // A second network gets a listener without a restart of the server.
    sb.create_network("db", "10.95.0.0/24");
    sb.add_netns("d1");
    sb.connect("db", "d1", &[]);
    assert_eq!(server_pid(&sb), Some(again));
    assert_eq!(short(&sb, "d1", "10.95.0.1", &["d1"]), vec!["10.95.0.2"]);
    sb.berth_ok(&["network", "rm", "--force", "db"]);
    assert_eq!(server_pid(&sb), Some(again));
    assert_eq!(short(&sb, "c2", GW, &["c3"]), vec!["10.90.0.4"]);
    // No network needs it any more: it exits.
    sb.berth_ok(&["network", "rm", "--force", "web"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server_pid(&sb).is_some() {
        assert!(
            Instant::now() < deadline,
            "server still runs with no network"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// berth starts its server as `berth-dns` (the server's code alone) when
/// that sits beside berth's executable, and runs it itself (`berth
/// dns-server`) when berth stands alone; both answer alike.
#[test]
fn the_server_is_berth_dns_beside_berth_and_berth_itself_alone() {
    if !have_dig("the_server_is_berth_dns_beside_berth_and_berth_itself_alone") {
        return;
    }
    let sb = Sandbox::new();
    web(&sb);
    let pid = server_pid(&sb).expect("server runs");
    assert_eq!(
        Sandbox::cmdline(pid).as_deref(),
        Some(format!("{BERTH_DNS} --state-dir {STATE_DIR} dns-server").as_str())
    );
    assert_eq!(short(&sb, "c2", GW, &["backend"]), vec!["10.90.0.2"]);

    // The same berth in a directory of its own (a bind mount of the file,
    // private to the sandbox): nothing beside it.
    let alone = Sandbox::new();
    let lone = "/run/alone/berth";
    alone.sh_ok(&format!(
        "mkdir -p /run/alone && touch {lone} && mount --bind {BERTH} {lone}"
    ));
    let berth = |args: &[&str]| {
        let mut c = alone.command(None, lone, args);
        c.env("BERTH_STATE_DIR", STATE_DIR)
            .env("BERTH_NFT_MAX_KERNEL", MIN_KERNEL);
        assert_ok_ctx(&run_timeout(c, CMD_TIMEOUT), &args.join(" "));
    };
    berth(&["network", "create", "web", "--subnet", "10.90.0.0/24"]);
    alone.add_netns("c1");
    alone.add_netns("c2");
    berth(&["connect", "web", "c1", "--alias", "backend"]);
    berth(&["connect", "web", "c2"]);
    let pid = server_pid(&alone).expect("server runs");
    assert_eq!(
        Sandbox::cmdline(pid).as_deref(),
        Some(format!("{lone} --state-dir {STATE_DIR} dns-server").as_str())
    );
    assert_eq!(short(&alone, "c2", GW, &["backend"]), vec!["10.90.0.2"]);
    let dns = alone
        .process_cmdlines()
        .into_iter()
        .filter(|c| c.starts_with(BERTH_DNS))
        .collect::<Vec<_>>();
    assert!(dns.is_empty(), "{dns:?}");
}

/// A `berth-dns` started by a berth of another build (berth upgraded
/// alone) hands over to that berth, with the same arguments: here `echo`
/// stands for that berth and shows what it was given.
#[test]
fn berth_dns_of_another_build_hands_over_to_the_berth_that_started_it() {
    let sb = Sandbox::new();
    let args = ["--state-dir", "/run/elsewhere", "dns-server"];
    let mut c = sb.command(None, BERTH_DNS, &args);
    c.env("BERTH_EXE", "/bin/echo")
        .env("BERTH_BUILD", "another build");
    let out = run_timeout(c, CMD_TIMEOUT);
    assert_ok_ctx(&out, "berth-dns");
    assert_eq!(stdout(&out).trim(), args.join(" "));
    assert!(
        stderr(&out).contains("built apart from /bin/echo (another build"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn malformed_packets_get_formerr_or_nothing_and_never_a_crash() {
    if !have_dig("malformed_packets_get_formerr_or_nothing_and_never_a_crash") {
        return;
    }
    let sb = Sandbox::new();
    web(&sb);
    let pid = server_pid(&sb).expect("server runs");
    let addr = format!("{GW}:53");
    // Junk with a readable header: FORMERR (the probe sees a reply that is
    // not its payload echoed back, and says so).
    let out = sb.probe(
        Some("c2"),
        &[
            "udp-send",
            &addr,
            "--payload",
            "junk-junk-junk-junk-junk",
            "--timeout-ms",
            "1000",
        ],
    );
    assert!(stderr(&out).contains("mismatch"), "{}", stderr(&out));
    // Too short to carry an ID: ignored.
    let out = sb.probe(
        Some("c2"),
        &["udp-send", &addr, "--payload", "abc", "--timeout-ms", "500"],
    );
    assert!(stderr(&out).contains("timeout"), "{}", stderr(&out));
    // Junk over TCP: the connection ends, the server goes on.
    let _ = sb.probe(Some("c2"), &["tcp-connect", &addr, "--timeout-ms", "500"]);
    assert_eq!(server_pid(&sb), Some(pid));
    assert_eq!(short(&sb, "c2", GW, &["c1"]), vec!["10.90.0.2"]);
}

#[test]
fn changing_names_drops_no_query_in_flight() {
    if !have_dig("changing_names_drops_no_query_in_flight") {
        return;
    }
    if std::process::Command::new("dnsperf")
        .arg("-h")
        .output()
        .is_err()
    {
        crate::skip_line!(
            "SKIP changing_names_drops_no_query_in_flight: `dnsperf` is not installed"
        );
        return;
    }
    let sb = Sandbox::new();
    web(&sb);
    sb.add_netns("churn");
    sb.sh_ok("printf 'c1 A\nbackend A\nc2 A\n' > /run/queries.txt");
    // 2000 queries/s for 4 s while names come and go.
    let perf = sb.spawn_in_netns(
        Some("c2"),
        "dnsperf",
        &[
            "-s",
            GW,
            "-d",
            "/run/queries.txt",
            "-l",
            "4",
            "-Q",
            "2000",
            "-t",
            "1",
        ],
        false,
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut rounds = 0;
    while Instant::now() < deadline {
        sb.connect("web", "churn", &["--alias", &format!("churn{rounds}")]);
        sb.berth_ok(&["disconnect", "web", "churn"]);
        rounds += 1;
    }
    let mut perf = perf;
    perf.wait_timeout(Duration::from_secs(10));
    let out = perf.stdout();
    let lost = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries lost:"))
        .unwrap_or_else(|| panic!("no dnsperf summary: {out}"));
    assert!(
        lost.trim().starts_with("0 "),
        "{rounds} reloads; dnsperf:\n{out}"
    );
    eprintln!(
        "{rounds} connect/disconnect rounds during the run; {}",
        out.lines()
            .find(|l| l.contains("Average Latency"))
            .unwrap_or("")
            .trim()
    );
}

#[test]
fn concurrent_connects_all_resolve_when_they_return() {
    if !have_dig("concurrent_connects_all_resolve_when_they_return") {
        return;
    }
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    // The server is killed: the concurrent commands race to start it again,
    // and exactly one does.
    let pid = server_pid(&sb).expect("server runs");
    sb.sh_ok(&format!("kill -KILL {pid}"));
    let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    for n in &names {
        sb.add_netns(n);
    }
    sb.add_netns("client");
    let cmds = names
        .iter()
        .map(|n| sb.berth_command(&["connect", "web", n, "--alias", &format!("{n}-alias")]))
        .collect();
    for out in run_all(cmds, CMD_TIMEOUT) {
        assert_ok_ctx(&out, "concurrent connect");
    }
    sb.connect("web", "client", &[]);
    let servers = sb.find_processes(&format!("{BERTH_DNS} --state-dir {STATE_DIR} dns-server"));
    assert_eq!(servers.len(), 1, "{:?}", sb.process_cmdlines());
    for n in &names {
        assert_eq!(short(&sb, "client", GW, &[n]).len(), 1, "{n}");
        assert_eq!(
            short(&sb, "client", GW, &[&format!("{n}-alias")]).len(),
            1,
            "{n}"
        );
    }
    // And all go at once.
    let cmds = names
        .iter()
        .map(|n| sb.berth_command(&["disconnect", "web", n]))
        .collect();
    for out in run_all(cmds, CMD_TIMEOUT) {
        assert_ok_ctx(&out, "concurrent disconnect");
    }
    for n in &names {
        assert_eq!(status(&sb, "client", GW, &[n]), "NXDOMAIN", "{n}");
    }
}

/// The upstream resolver's address for the IPv6 scenario: on a namespace
/// wired to the sandbox host by IPv6 alone, so a query that reaches it
/// went over IPv6.
const UPSTREAM6: &str = "2001:db8:53::2";

/// Makes the namespace `up6` (host `up6h` 2001:db8:53::1/64, `eth0`
/// UPSTREAM6/64, no IPv4 at all), starts the fake resolver on it and
/// points the host's resolv.conf at it.
fn upstream6(sb: &Sandbox) -> Bg {
    sb.add_netns("up6");
    sb.sh_ok(&format!(
        "ip link add up6h type veth peer name eth0 netns up6 && \
         ip -6 addr add 2001:db8:53::1/64 dev up6h nodad && ip link set up6h up && \
         ip -n up6 -6 addr add {UPSTREAM6}/64 dev eth0 nodad && \
         ip -n up6 link set eth0 up && ip -n up6 link set lo up"
    ));
    // Neighbour discovery needs a link-local source that is no longer
    // tentative (about a second of DAD).
    sb.sh_ok(
        "for i in $(seq 100); do \
           [ -z \"$(ip -6 addr show dev up6h tentative)$(ip -n up6 -6 addr show dev eth0 tentative)\" ] && exit 0; \
           sleep 0.05; done; exit 1",
    );
    let bg = sb.spawn_in_netns(
        Some("up6"),
        PROBE,
        &["dns-serve", &format!("[{UPSTREAM6}]:53")],
        true,
    );
    host_resolv(sb, &format!("nameserver {UPSTREAM6}\\n"));
    bg
}

/// DNS over IPv6 on a dual-stack and an IPv6-only network: AAAA and A by
/// name and alias from the IPv6 gateway, ip6.arpa PTR, forwarding to an
/// upstream reachable only over IPv6, and the resolv.conf `run` writes.
fn dns_over_ipv6(br_netfilter: bool) {
    let sb = Sandbox::new();
    set_br_netfilter(&sb, br_netfilter);
    let upstream = upstream6(&sb);
    sb.berth_ok(&[
        "network",
        "create",
        "web",
        "--subnet",
        "10.90.0.0/24",
        "--subnet6",
        "fd00:90::/64",
    ]);
    sb.berth_ok(&[
        "network",
        "create",
        "six",
        "--no-ipv4",
        "--subnet6",
        "fd00:91::/64",
    ]);
    for ns in ["c1", "c2", "s1", "s2"] {
        sb.add_netns(ns);
    }
    sb.connect("web", "c1", &["--alias", "backend"]);
    sb.connect("web", "c2", &[]);
    sb.connect("six", "s1", &["--alias", "store"]);
    sb.connect("six", "s2", &[]);
    let gw6 = "fd00:90::1";
    // Dual stack: AAAA and A of a name and an alias, from either gateway.
    for name in ["c1", "backend", "BACKEND.dns.berth"] {
        assert_eq!(
            short(&sb, "c2", gw6, &["AAAA", name]),
            vec!["fd00:90::2"],
            "{name}"
        );
        assert_eq!(
            short(&sb, "c2", gw6, &["A", name]),
            vec!["10.90.0.2"],
            "{name}"
        );
        assert_eq!(
            short(&sb, "c2", GW, &["AAAA", name]),
            vec!["fd00:90::2"],
            "{name}"
        );
    }
    assert_eq!(
        short(&sb, "c1", gw6, &["+tcp", "AAAA", "c2"]),
        vec!["fd00:90::3"]
    );
    // ip6.arpa: every name of the address, own name first.
    assert_eq!(
        short(&sb, "c2", gw6, &["-x", "fd00:90::2"]),
        vec!["c1.dns.berth.", "backend.dns.berth."]
    );
    assert_eq!(status(&sb, "c2", gw6, &["-x", "fd00:90::99"]), "NXDOMAIN");
    // IPv6 only: AAAA answers, A is an empty NOERROR.
    let gw6o = "fd00:91::1";
    for name in ["s1", "store"] {
        assert_eq!(
            short(&sb, "s2", gw6o, &["AAAA", name]),
            vec!["fd00:91::2"],
            "{name}"
        );
    }
    assert_eq!(status(&sb, "s2", gw6o, &["A", "s1"]), "NOERROR");
    assert!(short(&sb, "s2", gw6o, &["A", "s1"]).is_empty());
    assert_eq!(
        short(&sb, "s2", gw6o, &["-x", "fd00:91::2"]),
        vec!["s1.dns.berth.", "store.dns.berth."]
    );
    // Names of the other network stay unseen.
    assert_eq!(status(&sb, "s2", gw6o, &["AAAA", "c1"]), "NXDOMAIN");
    // Forwarding: the upstream is reachable over IPv6 only.
    for (ns, gw) in [("c2", gw6), ("c2", GW), ("s2", gw6o)] {
        assert_eq!(
            short(&sb, ns, gw, &["www.example.com"]),
            vec!["192.0.2.10"],
            "{ns} via {gw}"
        );
        assert_eq!(
            short(&sb, ns, gw, &["+tcp", "www.example.com"]),
            vec!["192.0.2.10"],
            "{ns} via {gw} over TCP"
        );
    }
    assert!(
        upstream.stdout().contains("query www.example.com udp"),
        "{}",
        upstream.stdout()
    );
    assert!(!upstream.stdout().contains("query c1"));
    // Port 53 published on every address (a container's own resolver)
    // stays off the IPv6 gateways too; bound to one, it is refused.
    sb.add_netns("r");
    let out = sb.berth_out_ok(&[
        "connect",
        "web",
        "r",
        "-p",
        "53:53/udp",
        "-p",
        "53:53/tcp",
        "--force-publish",
    ]);
    assert!(
        stderr(&out).contains(gw6) && stderr(&out).contains(gw6o),
        "{}",
        stderr(&out)
    );
    let _shadow = sb.spawn_in_netns(Some("r"), PROBE, &["dns-serve", "[::]:53"], true);
    assert_eq!(
        short(&sb, "c2", gw6, &["AAAA", "backend"]),
        vec!["fd00:90::2"]
    );
    assert_eq!(
        short(&sb, "c2", gw6, &["+tcp", "AAAA", "backend"]),
        vec!["fd00:90::2"]
    );
    sb.add_netns("z");
    sb.assert_refused(
        &[
            "connect",
            "six",
            "z",
            "-p",
            "[fd00:91::1]:53:53/udp",
            "--force-publish",
        ],
        "berth's DNS server answers for network \"six\"",
    );
    // The resolv.conf of a run: both gateways, IPv4 first; the IPv6-only
    // network's gateway alone.
    let out = sb.berth_ok(&["run", "--net", "web", "--", "cat", "/etc/resolv.conf"]);
    let servers: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("nameserver "))
        .collect();
    assert_eq!(
        servers,
        vec!["nameserver 10.90.0.1", "nameserver fd00:90::1"],
        "{out}"
    );
    let out = sb.berth_ok(&["run", "--net", "six", "--", "cat", "/etc/resolv.conf"]);
    let servers: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("nameserver "))
        .collect();
    assert_eq!(servers, vec!["nameserver fd00:91::1"], "{out}");
    // And the libc resolver inside uses it: over IPv6 only on `six`.
    let out = sb.berth_ok(&["run", "--net", "six", "--", "getent", "ahostsv6", "store"]);
    assert!(out.contains("fd00:91::2"), "{out}");
    let out = sb.berth_ok(&["exec", "--dns", "s2", "--", "cat", "/etc/resolv.conf"]);
    assert!(out.contains("nameserver fd00:91::1\n"), "{out}");
    // A dry run names the same servers.
    let out = sb.berth_ok(&["run", "--dry-run", "--net", "web", "--", "true"]);
    assert!(
        out.contains("resolv.conf naming 10.90.0.1 and fd00:90::1 "),
        "{out}"
    );
    let out = sb.berth_ok(&["run", "--dry-run", "--net", "six", "--", "true"]);
    assert!(out.contains("resolv.conf naming fd00:91::1 "), "{out}");
}

#[test]
fn ipv6_names_ptr_forwarding_and_resolv_conf_br_netfilter_off() {
    if !have_dig("ipv6_names_ptr_forwarding_and_resolv_conf_br_netfilter_off") {
        return;
    }
    dns_over_ipv6(false);
}

#[test]
fn ipv6_names_ptr_forwarding_and_resolv_conf_br_netfilter_on() {
    if !have_dig("ipv6_names_ptr_forwarding_and_resolv_conf_br_netfilter_on") {
        return;
    }
    dns_over_ipv6(true);
}

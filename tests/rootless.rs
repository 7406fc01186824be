//! berth as an ordinary user, in sandboxes, as users the tests make
//! (`tests/util/users.rs`).

mod util;

use util::users::{add_user, User};
use util::{stderr, Sandbox};

/// A sandbox with one ordinary user (each test its own uid: tests look
/// for the user's processes machine-wide).
fn sandbox_with_user(uid: u32) -> (Sandbox, User) {
    let sb = Sandbox::new();
    let user = add_user(&sb, "alice", uid);
    (sb, user)
}

/// Without root and without `$XDG_RUNTIME_DIR` (no login session, so no
/// place for the user's own networks), every command that needs root is
/// refused in one line naming the rootless alternative, exit 2, and
/// changes nothing: not the kernel, not root's state. `demo` and `bench`
/// need root whatever the user has.
#[test]
fn commands_that_need_root_say_so_and_name_the_alternative() {
    let (sb, user) = sandbox_with_user(61000);
    sb.create_network("roots", "10.77.0.0/24");
    sb.add_netns("ns1");
    let refused: &[&[&str]] = &[
        &["network", "create", "mine", "--subnet", "10.78.0.0/24"],
        &["network", "rm", "roots"],
        &["network", "prune", "-f"],
        &["network", "connect", "roots", "ns1"],
        &["connect", "roots", "ns1"],
        &["disconnect", "roots", "ns1"],
        &["run", "--net", "roots", "--", "true"],
        &["up"],
        &["gc"],
        &["reset"],
        &["exec", "ns1", "--", "true"],
        &["stop", "job"],
        &["rm", "job"],
        &["demo"],
        &["bench"],
        &["--state-dir", util::STATE_DIR, "network", "rm", "roots"],
    ];
    let before = sb.snapshot();
    for args in refused {
        let with_session = matches!(args[0], "demo" | "bench");
        let mut cmd = user.berth_command(&sb, args);
        if !with_session {
            cmd.env_remove("XDG_RUNTIME_DIR");
        }
        let out = util::run_timeout(cmd, util::CMD_TIMEOUT);
        let err = stderr(&out);
        let args: Vec<&str> = args
            .iter()
            .copied()
            .filter(|a| !a.starts_with("--state-dir") && *a != util::STATE_DIR)
            .collect();
        let words: Vec<&str> = args
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .copied()
            .collect();
        let words = if words[0] == "network" || words.len() == 1 {
            words[..words.len().min(2)].join(" ")
        } else {
            words[0].to_string()
        };
        assert_eq!(out.status.code(), Some(2), "berth {args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "berth {args:?}: {err}");
        assert!(
            err.contains(&format!("`berth {words}` needs root"))
                && err.contains("`berth run [-p HOST:CTR] -- CMD`"),
            "berth {args:?}: {err}"
        );
    }
    sb.snapshot()
        .assert_same(&before, "refused rootless commands");
    let left = sb.sh_ok(&format!("ls -A {}", user.runtime_dir));
    assert_eq!(
        util::stdout(&left).trim(),
        "",
        "runtime dir must stay empty"
    );
    assert!(
        user.processes().is_empty(),
        "a refused command left a process"
    );
}

/// The helpers installed here, each with its name (a missing one is said
/// in a SKIP line).
fn helpers() -> Vec<&'static str> {
    let mut found = Vec::new();
    for h in ["pasta", "slirp4netns"] {
        let there = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {h}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if there {
            found.push(h);
        } else {
            skip_line!("SKIP rootless tests with {h}: {h} is not installed");
        }
    }
    found
}

/// Waits until `pred` holds, up to `secs` seconds.
/// What each of `pids` runs, for messages.
fn described(pids: &[u32]) -> Vec<String> {
    pids.iter()
        .map(|p| {
            let raw = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            format!("{p}: {}", String::from_utf8_lossy(&raw).replace('\0', " "))
        })
        .collect()
}

fn eventually(secs: u64, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if pred() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `berth run -p` as an ordinary user: a client in another namespace
/// reaches the command through the host's port and the command sees the
/// client's own address; the helper used is named; when the command ends,
/// nothing of it is left (processes, links, the port).
#[test]
fn rootless_run_publishes_a_port_with_the_client_address_kept() {
    for (i, helper) in helpers().into_iter().enumerate() {
        let sb = Sandbox::new();
        let user = add_user(&sb, "bob", 61010 + i as u32);
        let inet = sb.internet();
        let before = sb.snapshot();
        let mut cmd = user.berth_command(
            &sb,
            &[
                "run",
                "-p",
                "8080:80",
                "--",
                util::PROBE,
                "tcp-serve",
                "0.0.0.0:80",
            ],
        );
        cmd.env("BERTH_ROOTLESS_NET", helper);
        let mut run = sb.spawn(cmd, true);
        assert!(
            run.stderr().contains(&format!(
                "berth: rootless sandbox, network through {helper}"
            )),
            "{helper}: {}",
            run.stderr()
        );
        let reply = sb.assert_tcp(Some(&inet.netns), &format!("{}:8080", inet.host_ip));
        assert_eq!(reply, inet.peer_ip, "{helper}: the client address");
        if helper == "pasta" {
            // From the host's loopback pasta splices to the namespace's
            // loopback: the client is 127.0.0.1, as it was.
            assert_eq!(sb.assert_tcp(None, "127.0.0.1:8080"), "127.0.0.1");
        }
        // The command's namespace is not the host's: nothing listens there.
        let host_side = sb.probe(
            None,
            &["tcp-connect", "127.0.0.1:80", "--timeout-ms", "500"],
        );
        assert!(!host_side.status.success(), "{helper}: port 80 on the host");
        run.signal(nix::sys::signal::Signal::SIGTERM);
        let status = run.wait_timeout(std::time::Duration::from_secs(10));
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(128 + 15),
            "{helper}: the command's SIGTERM is berth's exit code"
        );
        assert!(
            eventually(5, || user.processes().is_empty()),
            "{helper}: left running: {:?}",
            user.processes()
        );
        let after = sb.probe(
            Some(&inet.netns),
            &[
                "tcp-connect",
                &format!("{}:8080", inet.host_ip),
                "--timeout-ms",
                "500",
            ],
        );
        assert!(
            !after.status.success(),
            "{helper}: the port outlived the run"
        );
        sb.snapshot()
            .assert_same(&before, &format!("{helper}: after the run"));
    }
}

/// The host's DNS from a rootless sandbox, with a resolver on another
/// host and with one on the host's loopback (which the sandbox cannot
/// reach directly: the helper forwards to it).
#[test]
fn rootless_run_uses_the_hosts_dns() {
    for (i, helper) in helpers().into_iter().enumerate() {
        let sb = Sandbox::new();
        let user = add_user(&sb, "carol", 61020 + i as u32);
        let inet = sb.internet();
        let _far = sb.spawn_in_netns(
            Some(&inet.netns),
            util::PROBE,
            &["dns-serve", &format!("{}:53", inet.peer_ip)],
            true,
        );
        let _near = sb.spawn_in_netns(None, util::PROBE, &["dns-serve", "127.0.0.1:53"], true);
        for resolver in [inet.peer_ip.as_str(), "127.0.0.1"] {
            sb.sh_ok(&format!(
                "echo 'nameserver {resolver}' > /run/test-resolv.conf && \
                 (mountpoint -q /etc/resolv.conf || mount --bind /run/test-resolv.conf /etc/resolv.conf)"
            ));
            let mut cmd = user.berth_command(
                &sb,
                &[
                    "run",
                    "-q",
                    "--",
                    "dig",
                    "+short",
                    "+tries=1",
                    "+time=3",
                    "name.test",
                ],
            );
            cmd.env("BERTH_ROOTLESS_NET", helper);
            let out = util::run_timeout(cmd, util::CMD_TIMEOUT);
            util::assert_ok_ctx(&out, &format!("{helper} with resolver {resolver}"));
            assert_eq!(
                util::stdout(&out).trim(),
                "192.0.2.10",
                "{helper} with resolver {resolver}: {}",
                stderr(&out)
            );
        }
    }
}

/// `--net none`: only `lo`, the command's host name and exit code, the
/// user is root inside, and no helper runs.
#[test]
fn rootless_run_net_none() {
    let (sb, user) = sandbox_with_user(61001);
    let out = user.berth(
        &sb,
        &[
            "run",
            "--net",
            "none",
            "--hostname",
            "boat",
            "--",
            "sh",
            "-c",
            "hostname; id -u; ls /sys/class/net; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(util::stdout(&out), "boat\n0\nlo\n");
    assert_eq!(stderr(&out).trim(), "berth: rootless sandbox, --net none");
    let missing = user.berth(&sb, &["run", "--net", "none", "--", "no-such-command"]);
    assert_eq!(missing.status.code(), Some(127), "{}", stderr(&missing));
    for (args, says) in [
        (&["run", "-d", "--", "true"][..], "-d: without root"),
        (&["run", "-p", "80", "--", "true"], "needs its host port"),
    ] {
        let out = user.berth(&sb, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// kill -9 of a rootless `berth run`: its command and its helper die with
/// it, its port closes, and nothing is left on the host (links, files).
#[test]
fn rootless_run_killed_leaves_nothing() {
    for (i, helper) in helpers().into_iter().enumerate() {
        let sb = Sandbox::new();
        let user = add_user(&sb, "dave", 61030 + i as u32);
        let inet = sb.internet();
        let before = sb.snapshot();
        let mut cmd = user.berth_command(
            &sb,
            &[
                "run",
                "-p",
                "8080:80",
                "--",
                util::PROBE,
                "tcp-serve",
                "0.0.0.0:80",
            ],
        );
        cmd.env("BERTH_ROOTLESS_NET", helper);
        let mut run = sb.spawn(cmd, true);
        sb.assert_tcp(Some(&inet.netns), &format!("{}:8080", inet.host_ip));
        assert!(
            user.processes().len() >= 3,
            "{helper}: berth, command, helper"
        );
        run.signal(nix::sys::signal::Signal::SIGKILL);
        run.wait_timeout(std::time::Duration::from_secs(5));
        assert!(
            eventually(5, || user.processes().is_empty()),
            "{helper}: left running after kill -9: {:?}",
            described(&user.processes())
        );
        let after = sb.probe(
            Some(&inet.netns),
            &[
                "tcp-connect",
                &format!("{}:8080", inet.host_ip),
                "--timeout-ms",
                "500",
            ],
        );
        assert!(!after.status.success(), "{helper}: the port outlived berth");
        sb.snapshot()
            .assert_same(&before, &format!("{helper}: after kill -9"));
        let left = sb.sh_ok(&format!("ls -A {}", user.runtime_dir));
        assert_eq!(util::stdout(&left).trim(), "", "{helper}: runtime dir");
    }
}

// Rootless networks: the user's bridges in the user's own namespace.

/// A sandbox with its own PID namespace (what the user's keeper leaves
/// running in the user's namespace ends with it) and one user.
fn network_sandbox(name: &str, uid: u32) -> (Sandbox, User) {
    let sb = Sandbox::with_pid_namespace();
    let user = add_user(&sb, name, uid);
    (sb, user)
}

/// The address of endpoint `name` as the user's `ps --json` shows it.
fn endpoint_ip(sb: &Sandbox, user: &User, name: &str) -> String {
    let ps = user.berth_json(sb, &["ps", "--json"]);
    let e = util::as_array(ps)
        .into_iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the user's ps"));
    util::field(&e, "ip").split('/').next().unwrap().to_string()
}

/// Runs `berth-probe ARGS` in the user's endpoint `name` (`berth exec`).
fn probe_in(sb: &Sandbox, user: &User, name: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["exec", name, "--", util::PROBE];
    all.extend_from_slice(args);
    user.berth(sb, &all)
}

/// Two rootless networks of one user: each one's containers reach each
/// other, not the other network's; the host's namespace holds none of it
/// (no link, no address, no route, no rule); removing them leaves nothing
/// running.
#[test]
fn rootless_networks_are_isolated_and_leave_nothing_on_the_host() {
    let (sb, user) = network_sandbox("erin", 61040);
    let before = sb.snapshot();
    user.berth_ok(
        &sb,
        &["network", "create", "red", "--subnet", "10.61.0.0/24"],
    );
    user.berth_ok(
        &sb,
        &["network", "create", "blue", "--subnet", "10.62.0.0/24"],
    );
    for (name, net) in [("r1", "red"), ("r2", "red"), ("b1", "blue")] {
        user.berth_ok(
            &sb,
            &[
                "run",
                "-d",
                "--net",
                net,
                "--name",
                name,
                "--",
                util::PROBE,
                "tcp-serve",
                "0.0.0.0:7000",
            ],
        );
    }
    let r1 = endpoint_ip(&sb, &user, "r1");
    let b1 = endpoint_ip(&sb, &user, "b1");
    assert!(
        eventually(5, || probe_in(
            &sb,
            &user,
            "r2",
            &["tcp-connect", &format!("{r1}:7000")]
        )
        .status
        .success()),
        "r2 -> r1 on red"
    );
    let across = probe_in(
        &sb,
        &user,
        "b1",
        &["tcp-connect", &format!("{r1}:7000"), "--timeout-ms", "1000"],
    );
    assert!(
        !across.status.success(),
        "blue reached red: {}",
        util::stdout(&across)
    );
    let back = probe_in(
        &sb,
        &user,
        "r1",
        &["tcp-connect", &format!("{b1}:7000"), "--timeout-ms", "1000"],
    );
    assert!(
        !back.status.success(),
        "red reached blue: {}",
        util::stdout(&back)
    );
    // The host's namespace is as it was: the bridges are in the user's.
    sb.snapshot()
        .assert_same(&before, "the host with two rootless networks");
    let links = sb.link_names(None);
    assert!(
        !links
            .iter()
            .any(|l| l.starts_with("berth") || l.starts_with("vb")),
        "{links:?}"
    );
    for name in ["r1", "r2", "b1"] {
        user.berth_ok(&sb, &["stop", "-t", "1", name]);
    }
    user.berth_ok(&sb, &["network", "rm", "red", "blue"]);
    assert!(
        eventually(5, || user.processes().is_empty()),
        "left running: {:?}",
        described(&user.processes())
    );
    sb.snapshot()
        .assert_same(&before, "the host after the rootless networks");
}

/// Containers on a rootless network find each other by name through
/// berth's DNS server in the user's namespace.
#[test]
fn rootless_containers_resolve_each_other() {
    let (sb, user) = network_sandbox("frank", 61050);
    user.berth_ok(
        &sb,
        &["network", "create", "app", "--subnet", "10.63.0.0/24"],
    );
    user.berth_ok(
        &sb,
        &[
            "run",
            "-d",
            "--net",
            "app",
            "--name",
            "db",
            "--alias",
            "store",
            "--",
            util::PROBE,
            "tcp-serve",
            "0.0.0.0:5432",
        ],
    );
    user.berth_ok(
        &sb,
        &[
            "run", "-d", "--net", "app", "--name", "web", "--", "sleep", "600",
        ],
    );
    let db = endpoint_ip(&sb, &user, "db");
    // A user's network takes pasta's MTU unless told otherwise.
    // (Through netlink: /sys inside is the mount namespace's, not the
    // container's network namespace's.)
    let link = user.berth_ok(
        &sb,
        &["exec", "web", "--", "ip", "-o", "link", "show", "eth0"],
    );
    assert!(link.contains(" mtu 65520 "), "{link}");
    for name in ["db", "store", "db.dns.berth"] {
        let out = user.berth(
            &sb,
            &[
                "exec", "--dns", "web", "--", "dig", "+short", "+tries=1", "+time=3", name,
            ],
        );
        util::assert_ok_ctx(&out, &format!("dig {name}"));
        assert_eq!(util::stdout(&out).trim(), db, "{name}: {}", stderr(&out));
    }
    let unknown = user.berth(
        &sb,
        &[
            "exec", "--dns", "web", "--", "dig", "+tries=1", "+time=3", "nosuch",
        ],
    );
    assert!(
        util::stdout(&unknown).contains("NXDOMAIN"),
        "{}",
        util::stdout(&unknown)
    );
}

/// A port published from a rootless network: a client in another
/// namespace reaches the container through the host's port, and the
/// container sees the client's own address (pasta's tap path into the
/// user's namespace, then berth's DNAT). The port closes with the endpoint.
#[test]
fn rootless_network_ports_keep_the_client_address() {
    if !helpers().contains(&"pasta") {
        return;
    }
    let (sb, user) = network_sandbox("grace", 61060);
    let inet = sb.internet();
    user.berth_ok(
        &sb,
        &["network", "create", "pub", "--subnet", "10.64.0.0/24"],
    );
    user.berth_ok(
        &sb,
        &[
            "run",
            "-d",
            "--net",
            "pub",
            "--name",
            "srv",
            "-p",
            "8080:80",
            "--",
            util::PROBE,
            "tcp-serve",
            "0.0.0.0:80",
        ],
    );
    let target = format!("{}:8080", inet.host_ip);
    assert!(
        eventually(10, || sb.tcp(Some(&inet.netns), &target).status.success()),
        "the published port never answered"
    );
    assert_eq!(
        sb.assert_tcp(Some(&inet.netns), &target),
        inet.peer_ip,
        "client address"
    );
    assert_pasta_link_paced(&sb, &user);
    user.berth_ok(&sb, &["stop", "-t", "1", "srv"]);
    assert!(
        eventually(10, || !sb
            .probe(
                Some(&inet.netns),
                &["tcp-connect", &target, "--timeout-ms", "300"]
            )
            .status
            .success()),
        "the port outlived its endpoint"
    );
}

/// The root qdisc of pasta's interface in the user's namespace (the
/// holder's, entered with `nsenter`; seen with `tc -j`) is the keeper's
/// token bucket: 12 Gbit/s, a 2 MiB bucket, a queue of 20 ms at the rate
/// plus the bucket.
fn assert_pasta_link_paced(sb: &Sandbox, user: &User) {
    if !sb.sh("command -v tc").status.success() {
        skip_line!("SKIP the pacing check: tc (iproute2) is not installed");
        return;
    }
    let keeper_file = format!("{}/berth/keeper.json", user.runtime_dir);
    let keeper: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("/proc/{}/root{keeper_file}", sb.pid()))
            .expect("keeper.json"),
    )
    .unwrap();
    let holder = keeper["holder"].as_i64().unwrap();
    let route = sb.sh_ok(&format!("nsenter -t {holder} -n ip -j route show default"));
    let routes = util::as_array(serde_json::from_slice(&route.stdout).unwrap());
    let dev = util::field(routes.first().expect("a default route"), "dev");
    let show = format!("nsenter -t {holder} -n tc -j qdisc show dev {dev} root");
    let mut last = String::new();
    let paced = eventually(5, || {
        last = util::stdout(&sb.sh_ok(&show));
        last.contains("\"tbf\"")
    });
    assert!(paced, "no bucket on {dev}: {last}");
    let qdiscs = util::as_array(serde_json::from_str(&last).unwrap());
    assert_eq!(qdiscs.len(), 1, "{last}");
    let q = &qdiscs[0];
    assert_eq!(q["kind"], "tbf", "{last}");
    assert_eq!(q["root"], true, "{last}");
    // The same bucket as tc makes it from its own arguments, on a veth of
    // the sandbox's host: what the kernel reports back must match.
    sb.sh_ok(
        "ip link add pacecmp type veth peer name pacecmp1 && \
         tc qdisc replace dev pacecmp root tbf rate 12gbit burst 2mb latency 20ms",
    );
    let theirs = util::stdout(&sb.sh_ok("tc -j qdisc show dev pacecmp root"));
    sb.sh_ok("ip link del pacecmp");
    let theirs = util::as_array(serde_json::from_str(&theirs).unwrap());
    assert_eq!(q["options"], theirs[0]["options"], "berth's vs tc's");
    assert_eq!(q["options"]["rate"].as_u64(), Some(1_500_000_000), "{last}");
    assert_eq!(q["options"]["lat"].as_u64(), Some(20_000), "µs: {last}");
}

/// Two users never see each other's networks: the same name and subnet
/// are each user's own.
#[test]
fn two_users_never_see_each_others_networks() {
    let (sb, alice) = network_sandbox("heidi", 61070);
    let bob = add_user(&sb, "ivan", 61071);
    alice.berth_ok(
        &sb,
        &["network", "create", "home", "--subnet", "10.65.0.0/24"],
    );
    let ls = bob.berth_json(&sb, &["network", "ls", "--json"]);
    assert_eq!(util::as_array(ls).len(), 0, "bob sees alice's networks");
    bob.berth_ok(
        &sb,
        &["network", "create", "home", "--subnet", "10.65.0.0/24"],
    );
    bob.berth_ok(
        &sb,
        &["network", "create", "attic", "--subnet", "10.66.0.0/24"],
    );
    let names = |u: &User| -> Vec<String> {
        util::as_array(u.berth_json(&sb, &["network", "ls", "--json"]))
            .iter()
            .map(|n| util::field(n, "name"))
            .collect()
    };
    assert_eq!(names(&alice), vec!["home"]);
    assert_eq!(names(&bob), vec!["attic", "home"]);
    let rm = alice.berth(&sb, &["network", "rm", "attic"]);
    assert!(!rm.status.success(), "alice removed bob's network");
    assert_eq!(names(&bob), vec!["attic", "home"]);
}

/// kill -9: of a rootless `run` (its container and its port go, through
/// berth's own reclaiming), and of the keeper itself (the next command
/// starts a new namespace, ends what ran in the old one and rebuilds the
/// user's networks, as after a reboot).
#[test]
fn rootless_networks_converge_after_kill_9() {
    if !helpers().contains(&"pasta") {
        return;
    }
    let (sb, user) = network_sandbox("judy", 61080);
    let inet = sb.internet();
    user.berth_ok(&sb, &["network", "create", "k", "--subnet", "10.67.0.0/24"]);
    let target = format!("{}:8081", inet.host_ip);
    let mut run = user.spawn_berth(
        &sb,
        &[
            "run",
            "--net",
            "k",
            "--name",
            "fg",
            "-p",
            "8081:80",
            "--",
            util::PROBE,
            "tcp-serve",
            "0.0.0.0:80",
        ],
        true,
    );
    assert!(eventually(10, || sb
        .tcp(Some(&inet.netns), &target)
        .status
        .success()));
    // The berth the user started (not nsenter's fork of it, nor the berth
    // it runs inside the user's namespace): the one in the host's netns.
    let host_net = std::fs::metadata(sb.host_netns_path()).unwrap();
    let outer: Vec<u32> = user
        .processes()
        .into_iter()
        .filter(|p| {
            Sandbox::cmdline(*p).is_some_and(|c| c.contains("--name fg"))
                && std::fs::metadata(format!("/proc/{p}/ns/net")).is_ok_and(|m| {
                    use std::os::unix::fs::MetadataExt;
                    m.ino() == host_net.ino() && m.dev() == host_net.dev()
                })
        })
        .collect();
    assert_eq!(outer.len(), 1, "the user's berth run: {outer:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(outer[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    run.wait_timeout(std::time::Duration::from_secs(5));
    assert!(
        eventually(10, || {
            util::as_array(user.berth_json(&sb, &["ps", "--json"])).is_empty()
        }),
        "the killed run's endpoint was not reclaimed"
    );
    assert!(
        eventually(10, || !sb
            .probe(
                Some(&inet.netns),
                &["tcp-connect", &target, "--timeout-ms", "300"]
            )
            .status
            .success()),
        "the killed run's port stayed open"
    );

    user.berth_ok(
        &sb,
        &[
            "run",
            "-d",
            "--net",
            "k",
            "--name",
            "bg",
            "--",
            util::PROBE,
            "tcp-serve",
            "0.0.0.0:80",
        ],
    );
    let keeper_file = format!("{}/berth/keeper.json", user.runtime_dir);
    let keeper: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("/proc/{}/root{keeper_file}", sb.pid()))
            .expect("keeper.json"),
    )
    .unwrap();
    let old_inode = keeper["netns_inode"].as_u64().unwrap();
    let keeper_pid = keeper["keeper"].as_i64().unwrap();
    // The keeper's PID is the sandbox's; find it from outside by its netns.
    let outside: Vec<u32> = user
        .processes()
        .into_iter()
        .filter(|p| {
            Sandbox::cmdline(*p).is_some_and(|c| c.contains("rootless-keeper"))
                && std::fs::read_to_string(format!("/proc/{p}/status"))
                    .unwrap_or_default()
                    .lines()
                    .any(|l| {
                        l.starts_with("NSpid:")
                            && l.trim_end().ends_with(&format!("\t{keeper_pid}"))
                    })
        })
        .collect();
    assert_eq!(outside.len(), 1, "the keeper {keeper_pid}: {outside:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(outside[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The next command converges: the network is back in a new namespace,
    // the old namespace's processes are gone, a new run works.
    user.berth_ok(&sb, &["up"]);
    user.berth_ok(&sb, &["gc"]);
    let keeper: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("/proc/{}/root{keeper_file}", sb.pid()))
            .expect("keeper.json"),
    )
    .unwrap();
    assert_ne!(keeper["netns_inode"].as_u64().unwrap(), old_inode);
    let in_old: Vec<u32> = user
        .processes()
        .into_iter()
        .filter(|p| {
            std::fs::metadata(format!("/proc/{p}/ns/net"))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m) == old_inode)
                .unwrap_or(false)
        })
        .collect();
    assert!(in_old.is_empty(), "still in the old namespace: {in_old:?}");
    let nets = util::as_array(user.berth_json(&sb, &["network", "ls", "--json"]));
    assert_eq!(nets.len(), 1);
    user.berth_ok(
        &sb,
        &[
            "run",
            "-d",
            "--net",
            "k",
            "--name",
            "again",
            "-p",
            "8082:80",
            "--",
            util::PROBE,
            "tcp-serve",
            "0.0.0.0:80",
        ],
    );
    let again = format!("{}:8082", inet.host_ip);
    assert!(
        eventually(10, || sb.tcp(Some(&inet.netns), &again).status.success()),
        "a new run after the keeper's death"
    );
    assert_eq!(sb.assert_tcp(Some(&inet.netns), &again), inet.peer_ip);
}

/// A rootless `connect` killed (SIGKILL, berth's failpoints) at its intent,
/// at each kernel step and before its final commit: the next command
/// converges, inside the user's namespace as on the host, and a connect
/// then works and carries traffic.
#[test]
fn rootless_connect_killed_at_every_step_converges() {
    let (sb, user) = network_sandbox("kate", 61090);
    user.berth_ok(
        &sb,
        &["network", "create", "fp", "--subnet", "10.68.0.0/24"],
    );
    user.berth_ok(
        &sb,
        &[
            "run",
            "-d",
            "--net",
            "fp",
            "--name",
            "srv",
            "--",
            util::PROBE,
            "tcp-serve",
            "0.0.0.0:7000",
        ],
    );
    user.berth_ok(
        &sb,
        &[
            "run", "-d", "--net", "fp", "--name", "x", "--", "sleep", "600",
        ],
    );
    let srv = endpoint_ip(&sb, &user, "srv");
    let mut points = vec!["intent".to_string(), "record".to_string()];
    points.extend((1..=8).map(|k| format!("step:{k}")));
    let mut killed = 0;
    for point in &points {
        user.berth_ok(&sb, &["disconnect", "fp", "x"]);
        let mut c = user.berth_command(&sb, &["connect", "fp", "x", "-p", "9090:7000"]);
        c.env("BERTH_FAILPOINT", point);
        let out = util::run_timeout(c, util::CMD_TIMEOUT);
        if out.status.code() == Some(137) {
            killed += 1;
        } else {
            // Past the plan's last step: the connect completed.
            util::assert_ok_ctx(&out, &format!("connect with {point}"));
        }
        user.berth_ok(&sb, &["up"]);
        let ps = util::as_array(user.berth_json(&sb, &["ps", "--json"]));
        // `run -d`'s job shows too, without an address, once its
        // endpoint is gone.
        let xs: Vec<_> = ps
            .iter()
            .filter(|e| e["name"] == "x" && e["ip"].as_str().is_some_and(|ip| !ip.is_empty()))
            .collect();
        assert!(xs.len() <= 1, "{point}: {ps:?}");
        if xs.is_empty() {
            user.berth_ok(&sb, &["connect", "fp", "x", "-p", "9090:7000"]);
        }
        let reach = probe_in(&sb, &user, "x", &["tcp-connect", &format!("{srv}:7000")]);
        util::assert_ok_ctx(&reach, &format!("x -> srv after {point}"));
    }
    assert!(killed >= 3, "the failpoints killed only {killed} connects");
}

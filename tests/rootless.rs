//! berth as an ordinary user, in sandboxes, as users the tests make
//! (`tests/util/users.rs`).

mod util;

use util::users::{add_user, User};
use util::{stderr, Sandbox};

/// A sandbox with a root-made network and one ordinary user.
fn sandbox_with_user() -> (Sandbox, User) {
    let sb = Sandbox::new();
    let user = add_user(&sb, "alice", 4242);
    (sb, user)
}

/// Every command that needs root, run by an ordinary user, is refused in
/// one line naming the rootless alternative, exit 2, and changes nothing:
/// not the kernel, not root's state, not the user's runtime directory.
#[test]
fn commands_that_need_root_say_so_and_name_the_alternative() {
    let (sb, user) = sandbox_with_user();
    sb.create_network("roots", "10.77.0.0/24");
    sb.add_netns("ns1");
    let refused: &[&[&str]] = &[
        &["network", "create", "mine", "--subnet", "10.78.0.0/24"],
        &["network", "rm", "roots"],
        &["network", "prune", "-f"],
        &["network", "connect", "roots", "ns1"],
        &["connect", "roots", "ns1"],
        &["disconnect", "roots", "ns1"],
        &["up"],
        &["gc"],
        &["reset"],
        &["exec", "ns1", "--", "true"],
        &["stop", "job"],
        &["rm", "job"],
        &["demo"],
    ];
    let before = sb.snapshot();
    for args in refused {
        let mut full = vec!["--state-dir", util::STATE_DIR];
        full.extend_from_slice(args);
        let out = user.berth(&sb, &full);
        let err = stderr(&out);
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
                && err.contains("without root, `berth run"),
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
    let (sb, user) = sandbox_with_user();
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
        (&["run", "--net", "mynet", "--", "true"][..], "needs root"),
        (&["run", "-d", "--", "true"], "-d: without root"),
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
            user.processes()
                .iter()
                .map(|p| Sandbox::cmdline(*p))
                .collect::<Vec<_>>()
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

//! Bad input: each case exits 2 with one line on stderr naming the bad
//! value and leaves the sandbox unchanged (links, addresses, routes,
//! /run/netns, nftables and berth's state).

mod util;

use util::*;

/// A sandbox with network `alpha` (10.90.0.0/24) and namespace `a`
/// connected to it (10.90.0.2); namespace `b` exists, unconnected.
fn setup() -> Sandbox {
    let sb = Sandbox::new();
    sb.create_network("alpha", "10.90.0.0/24");
    sb.add_netns("a");
    sb.add_netns("b");
    let ep = sb.connect("alpha", "a", &[]);
    assert_eq!(ep["ip"], "10.90.0.2", "{ep}");
    sb
}

/// Runs each case, expecting exit 2, one line naming `needle`, no change.
fn check_cases(sb: &Sandbox, cases: &[(&[&str], &str)]) {
    let before = sb.snapshot();
    let mut failures = vec![];
    for (args, needle) in cases {
        let out = sb.berth(args);
        let err = stderr(&out);
        let ok = out.status.code() == Some(2)
            && err.contains(needle)
            && err.trim_end().lines().count() == 1;
        if !ok {
            failures.push(format!(
                "berth {}: expected exit 2 and one stderr line naming {needle:?}; \
                 got {:?}, stderr {err:?}, stdout {:?}",
                args.join(" "),
                out.status.code(),
                stdout(&out)
            ));
        }
        let after = sb.snapshot();
        if after != before {
            // Report which case changed things, then stop: later cases
            // would compare against a different state.
            after.assert_same(&before, &format!("berth {}", args.join(" ")));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn bad_subnets() {
    let sb = setup();
    check_cases(
        &sb,
        &[
            (
                &["network", "create", "n", "--subnet", "10.0.0.0/33"],
                "10.0.0.0/33",
            ),
            (&["network", "create", "n", "--subnet", "banana"], "banana"),
            (
                &["network", "create", "n", "--subnet", "10.91.0.0/31"],
                "10.91.0.0/31",
            ),
            (
                &["network", "create", "n", "--subnet", "10.91.0.0/32"],
                "10.91.0.0/32",
            ),
            (
                &["network", "create", "n", "--subnet", "300.1.2.0/24"],
                "300.1.2.0/24",
            ),
            (
                &[
                    "network",
                    "create",
                    "n",
                    "--subnet",
                    "10.91.0.0/24",
                    "--gateway",
                    "10.92.0.1",
                ],
                "10.92.0.1",
            ),
            (
                &[
                    "network",
                    "create",
                    "n",
                    "--subnet",
                    "10.91.0.0/24",
                    "--gateway",
                    "nope",
                ],
                "nope",
            ),
            (
                &[
                    "network",
                    "create",
                    "n",
                    "--subnet",
                    "10.91.0.0/24",
                    "--gateway",
                    "10.91.0.0",
                ],
                "10.91.0.0",
            ),
            (
                &[
                    "network",
                    "create",
                    "n",
                    "--subnet",
                    "10.91.0.0/24",
                    "--gateway",
                    "10.91.0.255",
                ],
                "10.91.0.255",
            ),
            (
                &[
                    "network",
                    "create",
                    "n",
                    "--subnet",
                    "10.91.0.0/24",
                    "--mtu",
                    "0",
                ],
                "0",
            ),
            (
                &[
                    "network",
                    "create",
                    "n",
                    "--subnet",
                    "10.91.0.0/24",
                    "--mtu",
                    "70000",
                ],
                "70000",
            ),
        ],
    );
}

#[test]
fn bad_names() {
    let sb = setup();
    check_cases(
        &sb,
        &[
            (
                &[
                    "network",
                    "create",
                    "n",
                    "--subnet",
                    "10.91.0.0/24",
                    "--bridge",
                    "averyveryverylongname",
                ],
                "averyveryverylongname",
            ),
            (
                &["connect", "alpha", "b", "--ifname", "averyveryverylongname"],
                "averyveryverylongname",
            ),
            (
                &["network", "create", "alpha", "--subnet", "10.91.0.0/24"],
                "alpha",
            ),
            (&["connect", "nosuchnet", "b"], "nosuchnet"),
            (
                &["network", "create", "a/b", "--subnet", "10.91.0.0/24"],
                "a/b",
            ),
            (&["connect", "alpha", "b", "--ifname", "a/b"], "a/b"),
            (&["network", "inspect", "nosuchnet"], "nosuchnet"),
            (&["network", "rm", "nosuchnet"], "nosuchnet"),
            (&["disconnect", "nosuchnet", "a"], "nosuchnet"),
            (&["run", "--net", "nosuchnet", "--", "true"], "nosuchnet"),
        ],
    );
}

#[test]
fn bad_targets() {
    let sb = setup();
    check_cases(
        &sb,
        &[
            (&["connect", "alpha", "/etc/hostname"], "/etc/hostname"),
            (&["connect", "alpha", "pid:999999999"], "999999999"),
            (&["connect", "alpha", "pid:banana"], "banana"),
            (&["connect", "alpha", "nosuchns"], "nosuchns"),
            (&["exec", "nosuchns", "--", "true"], "nosuchns"),
        ],
    );
}

#[test]
fn bad_addresses() {
    let sb = setup();
    check_cases(
        &sb,
        &[
            (&["connect", "alpha", "b", "--ip", "10.99.0.5"], "10.99.0.5"),
            (&["connect", "alpha", "b", "--ip", "10.90.0.2"], "10.90.0.2"),
            (&["connect", "alpha", "b", "--ip", "10.90.0.1"], "10.90.0.1"),
            (&["connect", "alpha", "b", "--ip", "10.90.0.0"], "10.90.0.0"),
            (
                &["connect", "alpha", "b", "--ip", "10.90.0.255"],
                "10.90.0.255",
            ),
            (
                &["connect", "alpha", "b", "--ip", "10.90.0.256"],
                "10.90.0.256",
            ),
        ],
    );
}

#[test]
fn bad_macs() {
    let sb = setup();
    check_cases(
        &sb,
        &[
            (
                &["connect", "alpha", "b", "--mac", "zz:00:00:00:00:01"],
                "zz:00:00:00:00:01",
            ),
            (
                &["connect", "alpha", "b", "--mac", "01:00:5e:00:00:01"],
                "01:00:5e:00:00:01",
            ),
            (
                &["connect", "alpha", "b", "--mac", "02:00:00:00:01"],
                "02:00:00:00:01",
            ),
        ],
    );
}

#[test]
fn not_root_is_refused() {
    let sb = Sandbox::new();
    // The binary must be reachable by an unprivileged user for this check.
    let probe = sb.cmd(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "test",
            "-x",
            BERTH,
        ],
    );
    if !probe.status.success() {
        eprintln!("skipping not_root_is_refused: {BERTH} is not executable by uid 65534");
        return;
    }
    let before = sb.snapshot();
    let mut cmd = sb.command(
        None,
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BERTH,
            "network",
            "create",
            "n",
            "--subnet",
            "10.91.0.0/24",
        ],
    );
    cmd.env("BERTH_STATE_DIR", STATE_DIR);
    let out = run_timeout(cmd, CMD_TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(
        err.to_lowercase().contains("root"),
        "should say root is needed: {err:?}"
    );
    sb.snapshot()
        .assert_same(&before, "non-root network create");
}

#[test]
fn reserved_subnets_are_refused() {
    let sb = setup();
    let mut cases: Vec<(Vec<&str>, &str)> = vec![];
    for (subnet, range) in [
        ("127.0.0.0/8", "127.0.0.0/8"),
        ("127.0.5.0/24", "127.0.0.0/8"),
        ("0.0.0.0/8", "0.0.0.0/8"),
        ("169.254.1.0/24", "169.254.0.0/16"),
        ("224.0.0.0/24", "224.0.0.0/4"),
        ("239.1.0.0/16", "224.0.0.0/4"),
        ("240.0.0.0/8", "240.0.0.0/4"),
        ("255.255.255.252/30", "240.0.0.0/4"),
    ] {
        cases.push((vec!["network", "create", "n", "--subnet", subnet], subnet));
        cases.push((vec!["network", "create", "n", "--subnet", subnet], range));
    }
    let cases: Vec<(&[&str], &str)> = cases.iter().map(|(a, n)| (a.as_slice(), *n)).collect();
    check_cases(&sb, &cases);
}

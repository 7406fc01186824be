//! Bad input: each case exits 2 with one line on stderr naming the bad
//! value and leaves the sandbox unchanged (links, addresses, routes,
//! /run/netns, nftables and berth's state). The tables cover every
//! command: clap's usage errors, each option's values, lists' filters and
//! formats, `run`/`exec`/jobs, and a state that is not a directory or not
//! a database.

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

/// Command lines clap refuses: one line naming what is wrong (the value,
/// the missing argument, the unknown word), never clap's multi-line usage.
#[test]
fn usage_errors_are_one_line_naming_the_bad_word() {
    let sb = setup();
    check_cases(
        &sb,
        &[
            (&[], "`berth` needs a command: network, connect"),
            (&["network"], "`berth network` needs a command: create, ls"),
            (&["bogus"], "bogus"),
            (&["network", "bogus"], "bogus"),
            (&["network", "create"], "<NAME>"),
            (&["network", "create", "n", "--subnet"], "--subnet"),
            (&["network", "create", "n", "--mtu", "-1"], "-1"),
            (&["network", "create", "n", "--mtu", "abc"], "abc"),
            (
                &["network", "create", "n", "--mtu", "99999999999"],
                "99999999999",
            ),
            (&["network", "create", "n", "--bogus"], "--bogus"),
            (
                &["network", "create", "n", "--uplink-gateway", "10.0.0.1"],
                "--uplink",
            ),
            (&["network", "inspect"], "<NAMES>"),
            (&["network", "rm"], "<NAMES>"),
            (&["network", "prune", "-x"], "-x"),
            (&["connect"], "<NETWORK>"),
            (&["connect", "alpha"], "<TARGET>"),
            (&["connect", "alpha", "b", "-p"], "--publish"),
            (&["connect", "alpha", "b", "extra"], "extra"),
            (&["disconnect"], "<NETWORK>"),
            (&["disconnect", "alpha"], "<TARGET>"),
            (&["ps", "--format"], "--format"),
            (&["ps", "--bogus"], "--bogus"),
            (&["ps", "--json", "--format", "json"], "--json"),
            (&["network", "ls", "--json", "--format", "json"], "--json"),
            (
                &["network", "inspect", "alpha", "--json", "-f", "json"],
                "--json",
            ),
            (&["port"], "<NAME>"),
            (&["run"], "berth run"),
            (&["run", "true"], "--"),
            (&["run", "--net"], "--net"),
            (&["exec"], "berth exec"),
            (&["exec", "a"], "berth exec"),
            (&["exec", "a", "ip", "route"], "berth exec"),
            (&["stop"], "<NAMES>"),
            (&["stop", "-t", "x", "j"], "x"),
            (&["logs"], "<NAME>"),
            (&["rm"], "<NAMES>"),
            (&["completions", "tcsh"], "tcsh"),
            (&["man"], "<DIR>"),
            (&["bench", "--count", "x"], "x"),
            (&["--state-dir"], "--state-dir"),
            (&["up", "extra"], "extra"),
            (&["reset", "--force"], "--force"),
            (&["--dry-run", "bench"], "bench"),
            (&["--dry-run", "dns-server"], "dns-server"),
            (&["--dry-run", "netavark"], "netavark"),
        ],
    );
}

/// Values every command takes, each wrong in its own way.
#[test]
fn bad_values_are_named() {
    let sb = setup();
    check_cases(
        &sb,
        &[
            (&["network", "create", "n", "--mtu", "67"], "67"),
            (
                &["network", "create", "n", "--uplink", "nosuchif"],
                "nosuchif",
            ),
            (
                &[
                    "network",
                    "create",
                    "n",
                    "--uplink",
                    "lo",
                    "--uplink-gateway",
                    "banana",
                ],
                "banana",
            ),
            (&["network", "create", "n", "--deny-egress", "foo"], "foo"),
            (
                &["network", "create", "n", "--deny-egress", "10.0.0.0/33"],
                "10.0.0.0/33",
            ),
            (&["network", "create", "n", "--cluster-cidr", "foo"], "foo"),
            (
                &["network", "create", "n", "--cluster-cidr", "10.0.0.1/8"],
                "10.0.0.1/8",
            ),
            (&["network", "create", "host"], "host"),
            (&["network", "create", "none"], "none"),
            (&["network", "create", "-x"], "-x"),
            (
                &["network", "create", "n", "--subnet", "10.90.0.0/24"],
                "10.90.0.0/24",
            ),
            (
                &["network", "create", "n", "--subnet", "10.90.0.0/16"],
                "10.90.0.0/16",
            ),
            (&["network", "create", "n", "--bridge", "lo"], "lo"),
            (
                &["network", "create", "n", "--bridge", "berth-alpha"],
                "berth-alpha",
            ),
            (
                &["network", "create", "n", "--gateway", "10.91.0.1"],
                "10.91.0.1",
            ),
            (&["connect", "alpha", "a"], "\"a\""),
            (&["connect", "alpha", "b", "-p", "0"], "0"),
            (&["connect", "alpha", "b", "-p", "1-65535"], "1-65535"),
            (&["connect", "alpha", "b", "-p", "abc"], "abc"),
            (&["connect", "alpha", "b", "-p", "80/icmp"], "icmp"),
            (
                &["connect", "alpha", "b", "-p", "8080:80/tcp/udp"],
                "8080:80/tcp/udp",
            ),
            (&["connect", "alpha", "b", "-p", "-5"], "-5"),
            (
                &["connect", "alpha", "b", "-p", "80-90:80-85"],
                "80-90:80-85",
            ),
            (
                &["connect", "alpha", "b", "-p", "1.2.3.4.5:80:80"],
                "1.2.3.4.5",
            ),
            (
                &["connect", "alpha", "b", "-p", "[::1]:80:80"],
                "cannot publish on [::1]: network \"alpha\" has no IPv6 subnet",
            ),
            (&["connect", "alpha", "b", "--ip", "abc"], "abc"),
            (&["connect", "alpha", "b", "--ip", "::1"], "::1"),
            (
                &["connect", "alpha", "b", "--mac", "ff:ff:ff:ff:ff:ff"],
                "ff:ff:ff:ff:ff:ff",
            ),
            (
                &["connect", "alpha", "b", "--mac", "00:00:00:00:00:00"],
                "00:00:00:00:00:00",
            ),
            (&["connect", "alpha", "b", "--name", "a/b"], "a/b"),
            (&["connect", "alpha", "b", "--name", "a"], "\"a\""),
            (&["connect", "alpha", "b", "--ifname", "lo"], "lo"),
            (&["connect", "alpha", "b", "--alias", "a b"], "a b"),
            (&["connect", "alpha", "b", "--alias", "-x"], "-x"),
            (&["connect", "alpha", ""], "\"\""),
            (&["disconnect", "alpha", "b"], "b"),
            (&["disconnect", "alpha", "nosuchns"], "nosuchns"),
            (&["port", "nosuch"], "nosuch"),
            (&["port", "a", "abc"], "abc"),
            (&["port", "a", "80/tcp"], "80/tcp"),
            (&["network", "rm", "alpha"], "alpha"),
            (&["--state-dir", "/etc/hostname", "ps"], "/etc/hostname"),
            (
                &["--state-dir", "/etc/hostname", "network", "create", "n"],
                "/etc/hostname",
            ),
        ],
    );
}

/// Lists: filters, formats and templates that cannot be shown.
#[test]
fn bad_list_options_are_named() {
    let sb = setup();
    check_cases(
        &sb,
        &[
            (&["ps", "--filter", "colour=red"], "colour"),
            (&["ps", "--filter", "name"], "name"),
            (&["ps", "--format", "yaml"], "yaml"),
            (&["ps", "-q", "--format", "yaml"], "yaml"),
            (&["ps", "--format", "{{.Nope}}"], "Nope"),
            (&["ps", "--format", "{{range .}}"], "range"),
            (&["ps", "--format", "table {{"], "{{"),
            (&["ps", "-a", "--format", "{{json .Nope}}"], "Nope"),
            (&["network", "ls", "--filter", "bad"], "bad"),
            (&["network", "ls", "--format", "yaml"], "yaml"),
            (&["network", "ls", "--format", "{{.Nope}}"], "Nope"),
            (&["network", "inspect", "nosuch"], "nosuch"),
            (&["network", "inspect", "alpha", "--format", "yaml"], "yaml"),
            (
                &["network", "inspect", "alpha", "--format", "{{.Nope}}"],
                "Nope",
            ),
        ],
    );
}

/// `run`, `exec` and the jobs of `run -d`.
#[test]
fn bad_runs_execs_and_jobs_are_named() {
    let sb = setup();
    check_cases(
        &sb,
        &[
            (&["run", "--net", "nosuch", "--", "true"], "nosuch"),
            (
                &["run", "--net", "none", "--ip", "10.90.0.9", "--", "true"],
                "--ip",
            ),
            (&["run", "--net", "none", "-p", "80", "--", "true"], "-p"),
            (
                &["run", "--net", "host", "--alias", "x", "--", "true"],
                "--alias",
            ),
            (
                &["run", "--net", "host", "--hostname", "box", "--", "true"],
                "--hostname",
            ),
            (
                &["run", "--net", "host", "--name", "x", "--", "true"],
                "\"x\"",
            ),
            (
                &["run", "--net", "host", "--dns", "10.0.0.1", "--", "true"],
                "--dns",
            ),
            (&["run", "--hostname", "bad name", "--", "true"], "bad name"),
            (&["run", "--name", "a/b", "--", "true"], "a/b"),
            (&["run", "--name", "a", "--", "true"], "\"a\""),
            (&["run", "--dns", "foo", "--", "true"], "foo"),
            (&["run", "--expose", "foo", "--", "true"], "foo"),
            (
                &["run", "--net", "alpha", "--ip", "10.90.0.2", "--", "true"],
                "10.90.0.2",
            ),
            (
                &["run", "--dry-run", "--net", "nosuch", "--", "true"],
                "nosuch",
            ),
            (&["run", "-d", "--net", "nosuch", "--", "true"], "nosuch"),
            (&["run", "-d", "--name", "a", "--", "true"], "\"a\""),
            (
                &[
                    "run",
                    "-d",
                    "--net",
                    "alpha",
                    "--ip",
                    "10.90.0.2",
                    "--",
                    "true",
                ],
                "10.90.0.2",
            ),
            (&["exec", "nosuchns", "--", "true"], "nosuchns"),
            (&["exec", "--dns", "b", "--", "true"], "b"),
            (&["stop", "nosuch"], "nosuch"),
            (&["stop", "--dry-run", "nosuch"], "nosuch"),
            (&["logs", "nosuch"], "nosuch"),
            (&["logs", "-f", "nosuch"], "nosuch"),
            (&["rm", "nosuch"], "nosuch"),
            (&["rm", "--dry-run", "nosuch"], "nosuch"),
        ],
    );
}

/// A state database that is not one: named, exit 2, nothing touched.
#[test]
fn a_corrupt_state_is_named() {
    let sb = setup();
    sb.sh_ok(
        "mkdir -m 700 /run/corrupt && printf 'not a database, not at all, no' > /run/corrupt/berth.db \
         && chmod 600 /run/corrupt/berth.db",
    );
    let db = "/run/corrupt/berth.db is corrupt";
    check_cases(
        &sb,
        &[
            (&["--state-dir", "/run/corrupt", "ps"], db),
            (&["--state-dir", "/run/corrupt", "network", "ls"], db),
            (
                &["--state-dir", "/run/corrupt", "network", "create", "n"],
                db,
            ),
            (
                &["--state-dir", "/run/corrupt", "connect", "alpha", "b"],
                db,
            ),
            (
                &[
                    "--state-dir",
                    "/run/corrupt",
                    "--dry-run",
                    "connect",
                    "alpha",
                    "b",
                ],
                db,
            ),
            (&["--state-dir", "/run/corrupt", "up"], db),
            (&["--state-dir", "/run/corrupt", "run", "--", "true"], db),
            (
                &["--state-dir", "/run/corrupt", "run", "-d", "--", "true"],
                db,
            ),
        ],
    );
}

/// IPv6 values a network, a connect or a mapping cannot take: each named
/// in one line, exit 2, nothing changed (`alpha` is IPv4-only, `six`
/// dual-stack).
#[test]
fn bad_ipv6_input() {
    let sb = setup();
    sb.berth_ok(&[
        "network",
        "create",
        "six",
        "--subnet",
        "10.91.0.0/24",
        "--subnet6",
        "fd00:91::/64",
    ]);
    check_cases(
        &sb,
        &[
            (
                &["network", "create", "n", "--subnet6", "fd00:::/64"],
                "fd00:::/64",
            ),
            (
                &["network", "create", "n", "--subnet6", "fd00:5::/121"],
                "fd00:5::/121",
            ),
            (
                &[
                    "network",
                    "create",
                    "n",
                    "--subnet6",
                    "fd00:5::/64",
                    "--gateway6",
                    "fd00:6::1",
                ],
                "fd00:6::1",
            ),
            (
                &["network", "create", "n", "--subnet6", "fd00:5::1/64"],
                "fd00:5::/64",
            ),
            (
                &["network", "create", "n", "--subnet6", "10.92.0.0/24"],
                "10.92.0.0/24",
            ),
            (
                &["network", "create", "n", "--ipv6", "--subnet6", "fe80::/64"],
                "link-local",
            ),
            (
                &[
                    "network",
                    "create",
                    "n",
                    "--subnet6",
                    "fd00:91:0:0:8000::/65",
                ],
                "overlaps network \"six\"",
            ),
            (&["network", "create", "n", "--no-ipv4"], "--no-ipv4"),
            (
                &["network", "create", "n", "--gateway6", "10.0.0.1"],
                "10.0.0.1",
            ),
            (
                &["connect", "alpha", "b", "--ip6", "fd00:90::5"],
                "no IPv6 subnet",
            ),
            (&["connect", "six", "b", "--ip6", "10.91.0.9"], "10.91.0.9"),
            (
                &["connect", "six", "b", "--ip6", "fd00:99::5"],
                "fd00:99::5",
            ),
            (&["connect", "six", "b", "--ip6", "fd00:91::"], "fd00:91::"),
            (&["connect", "six", "b", "--ip6", "fd00:91::1"], "gateway"),
            (
                &["connect", "alpha", "b", "-p", "[2001:db8::1]:8080:80"],
                "[2001:db8::1]",
            ),
            (
                &["connect", "six", "b", "-p", "[fd00::zz]:80:80"],
                "fd00::zz",
            ),
            (
                &["run", "--net", "alpha", "--ip6", "fd00:90::5", "--", "true"],
                "no IPv6 subnet",
            ),
        ],
    );
}

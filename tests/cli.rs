//! The command line as a Docker or Podman user meets it: `run` saying what
//! it made, `-d`/`stop`, `--hostname`, `-P`; Docker's `network connect`,
//! `rm A B`, `inspect A B`, `prune`, `port`; `ps`/`ls` with `-q`,
//! `--filter`, `--format`; and the hint for a `run` without `--`.

mod util;

use std::time::{Duration, Instant};

use util::*;

#[test]
fn run_says_what_it_made_unless_quiet_and_sets_the_hostname() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    let out = sb.berth_out_ok(&[
        "run",
        "--network",
        "web",
        "--name",
        "r1",
        "-p",
        "80",
        "--hostname",
        "box",
        "--",
        "hostname",
    ]);
    let err = stderr(&out);
    assert!(
        err.contains("r1 on network web: 10.90.0.2/24 via 10.90.0.1"),
        "{err}"
    );
    assert!(err.contains("published 0.0.0.0:49153->80/tcp"), "{err}");
    assert_eq!(stdout(&out).trim(), "box");
    let out = sb.berth_out_ok(&["run", "--net", "web", "-q", "--", "true"]);
    assert_eq!(stderr(&out), "", "--quiet printed something");
    // -P publishes the --expose ports on ports berth picks.
    let out = sb.berth_out_ok(&[
        "run", "--net", "web", "-P", "--expose", "80", "--expose", "53/udp", "--", "true",
    ]);
    let err = stderr(&out);
    assert!(
        err.contains("->80/tcp") && err.contains("->53/udp"),
        "{err}"
    );
}

#[test]
fn run_detached_then_stop_cleans_up() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    let out = sb.berth_out_ok(&[
        "run", "-d", "--net", "web", "--name", "bg", "-p", "8080:80", "--", "sleep", "300",
    ]);
    assert_eq!(stdout(&out).trim(), "bg");
    let ps = sb.endpoints();
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0]["status"], "up");
    assert!(!sb.find_processes("sleep 300").is_empty());
    sb.berth_ok(&["stop", "bg"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sb.find_processes("sleep 300").is_empty() {
        assert!(Instant::now() < deadline, "the command outlived stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sb.endpoints().is_empty());
    assert!(!sb.netns_list().contains(&"bg".to_string()));
    // Stopping it again is no error, as with Docker; an unknown name is.
    assert_eq!(sb.berth_ok(&["stop", "bg"]), "bg\n");
    assert_fails_with(&sb.berth(&["stop", "nosuch"]), 2, "no job named \"nosuch\"");
}

#[test]
fn run_without_double_dash_gets_a_hint() {
    let sb = Sandbox::new();
    let out = sb.berth(&["run", "--net", "web", "sh", "-c", "true"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("put the command after `--`"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn docker_shaped_network_commands() {
    let sb = Sandbox::new();
    for (n, subnet) in [
        ("a", "10.90.0.0/24"),
        ("b", "10.91.0.0/24"),
        ("c", "10.92.0.0/24"),
    ] {
        sb.create_network(n, subnet);
    }
    sb.add_netns("x");
    sb.berth_ok(&[
        "network",
        "connect",
        "a",
        "x",
        "-p",
        "8080:80",
        "-p",
        "5353:53/udp",
    ]);
    assert_eq!(
        sb.berth_ok(&["port", "x"]),
        "80/tcp -> 0.0.0.0:8080\n53/udp -> 0.0.0.0:5353\n"
    );
    assert_eq!(
        sb.berth_ok(&["port", "x", "53/udp"]),
        "53/udp -> 0.0.0.0:5353\n"
    );
    // inspect: always an array with --json, each name on its own.
    let inspected = sb.berth_json(&["network", "inspect", "a", "b", "--json"]);
    assert_eq!(
        inspected.as_array().map(|a| a.len()),
        Some(2),
        "{inspected}"
    );
    let one = sb.berth_json(&["network", "inspect", "a", "--json"]);
    assert_eq!(one.as_array().map(|a| a.len()), Some(1), "{one}");
    let out = sb.berth(&["network", "inspect", "a", "nosuch", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(parse_json(&out, "inspect a nosuch")[0]["name"], "a");
    assert!(stderr(&out).contains("\"nosuch\"") && stderr(&out).lines().count() == 1);
    let out = sb.berth(&["network", "inspect", "nosuch", "b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).starts_with("name:      b\n"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        sb.berth_ok(&[
            "network",
            "inspect",
            "a",
            "b",
            "--format",
            "{{.Name}} {{.Subnet}} {{.EndpointCount}}"
        ]),
        "a 10.90.0.0/24 1\nb 10.91.0.0/24 0\n"
    );
    let eps = sb.berth_ok(&["network", "inspect", "a", "-f", "{{json .Endpoints}}"]);
    let eps: serde_json::Value = serde_json::from_str(&eps).expect("JSON");
    assert_eq!(eps[0]["name"], "x", "{eps}");
    // rm: each name on its own; the missing one reported, exit 2.
    let out = sb.berth(&["network", "rm", "b", "nosuch", "c"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "removed network b\nremoved network c\n");
    assert!(stderr(&out).contains("\"nosuch\"") && stderr(&out).lines().count() == 1);
    assert_eq!(sb.networks().len(), 1);
    // prune asks first; without a yes (stdin is not a terminal here, and
    // empty) it removes nothing; `y` or -f go ahead.
    sb.create_network("d", "10.93.0.0/24");
    sb.create_network("e", "10.94.0.0/24");
    let out = sb.berth(&["network", "prune"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("[y/N]") && stderr(&out).contains("not confirmed"));
    assert_eq!(sb.networks().len(), 3);
    let out = sb.sh(&format!(
        "echo n | BERTH_STATE_DIR={STATE_DIR} {BERTH} network prune"
    ));
    assert_eq!(out.status.code(), Some(2));
    let out = sb.sh_ok(&format!(
        "echo y | BERTH_STATE_DIR={STATE_DIR} {BERTH} network prune"
    ));
    assert_eq!(stdout(&out), "removed network d\nremoved network e\n");
    sb.create_network("d", "10.93.0.0/24");
    assert_eq!(
        sb.berth_ok(&["network", "prune", "-f"]),
        "removed network d\n"
    );
    sb.berth_ok(&["network", "disconnect", "a", "x"]);
    assert!(sb.endpoints().is_empty());
}

#[test]
fn lists_take_quiet_filter_and_format() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.berth_ok(&[
        "network",
        "create",
        "iso",
        "--subnet",
        "10.91.0.0/24",
        "--internal",
        "--no-icc",
    ]);
    sb.add_netns("c1");
    sb.add_netns("c2");
    sb.connect("web", "c1", &[]);
    sb.connect("iso", "c2", &[]);
    assert_eq!(sb.berth_ok(&["network", "ls", "-q"]), "iso\nweb\n");
    assert_eq!(
        sb.berth_ok(&["network", "ls", "-q", "--filter", "internal=true"]),
        "iso\n"
    );
    assert_eq!(
        sb.berth_ok(&[
            "ps",
            "--format",
            "{{.Name}} {{.IP}} {{.Status}}",
            "-f",
            "network=web"
        ]),
        "c1 10.90.0.2 up\n"
    );
    let table = sb.berth_ok(&["network", "ls"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME   SUBNET"),
        "columns fit their content: {table}"
    );
    assert!(
        table.contains("internal, no-icc") && table.contains("nat, icc"),
        "{table}"
    );
    let out = sb.berth(&["ps", "--filter", "colour=red"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown filter key \"colour\""));
    let inspect = sb.berth_ok(&["network", "inspect", "iso"]);
    assert!(inspect.contains("policy:    internal, no-icc"), "{inspect}");
}

/// `ps` makes its default table from the endpoints directly rather than
/// from the JSON rows that filters and templates read: it must be the
/// table `--format table` makes from those rows.
#[test]
fn the_default_ps_table_is_the_one_its_rows_make() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    for ns in ["c1", "c2", "c3"] {
        sb.add_netns(ns);
    }
    sb.connect("web", "c1", &["-p", "8080:80", "-p", "5353:53/udp"]);
    sb.connect("web", "c2", &["--bandwidth-in", "10mbit"]);
    let c3 = sb.connect("web", "c3", &[]);
    // Its veth goes at once (a deleted namespace takes its veth with it
    // later, in the background).
    let veth = c3["host_ifname"].as_str().expect("a host side");
    assert!(sb.cmd("ip", &["link", "del", veth]).status.success());
    sb.berth_ok(&[
        "run", "-d", "--net", "none", "--name", "bg", "--", "sleep", "300",
    ]);
    // The job's row is `starting` until its process has recorded itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sb
        .berth_ok(&["ps"])
        .lines()
        .any(|l| l.starts_with("bg") && l.contains(" up "))
    {
        assert!(Instant::now() < deadline, "the job never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let plain = sb.berth_ok(&["ps"]);
    assert_eq!(plain, sb.berth_ok(&["ps", "--format", "table"]));
    let lines: Vec<&str> = plain.lines().collect();
    assert_eq!(lines.len(), 5, "a heading, three endpoints, a job: {plain}");
    for (name, shows) in [
        ("c1", "8080"),
        ("c2", "in 10"),
        ("c3", "gone"),
        ("bg", "none"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(name) && l.contains(shows)),
            "{name} with {shows}: {plain}"
        );
    }
    sb.berth_ok(&["stop", "bg"]);
}

#[test]
fn verbose_logs_each_step_with_its_duration() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    let out = sb.berth_out_ok(&["connect", "web", "c1", "-v"]);
    let err = stderr(&out);
    let step = err
        .lines()
        .find(|l| l.contains("ip link add vb"))
        .unwrap_or_else(|| panic!("no step logged: {err}"));
    assert!(step.contains(" ms)"), "{step}");
    // RUST_LOG works without -v; without either, nothing is logged.
    let mut c = sb.berth_command(&["disconnect", "web", "c1"]);
    c.env("RUST_LOG", "berth=info");
    let out = run_timeout(c, CMD_TIMEOUT);
    assert!(
        stderr(&out).contains("ip link set vb") && stderr(&out).contains("down nomaster"),
        "{}",
        stderr(&out)
    );
    sb.add_netns("c2");
    let out = sb.berth_out_ok(&["connect", "web", "c2"]);
    assert_eq!(stderr(&out), "");
}

#[test]
fn dry_run_works_for_a_user_who_can_only_read_the_state() {
    let sb = Sandbox::new();
    sb.berth_ok(&[
        "network",
        "create",
        "web",
        "--subnet",
        "10.90.0.0/24",
        "--no-dns",
    ]);
    sb.add_netns("c1");
    // Readable by everyone, writable by root only.
    sb.sh_ok(&format!(
        "chmod 755 {STATE_DIR} && chmod 644 {STATE_DIR}/berth.db"
    ));
    let before = sb.snapshot();
    let as_nobody = |args: &[&str]| {
        let mut all = vec!["--reuid=65534", "--regid=65534", "--clear-groups", BERTH];
        all.extend_from_slice(args);
        let mut c = sb.command(None, "setpriv", &all);
        c.env("BERTH_STATE_DIR", STATE_DIR);
        run_timeout(c, CMD_TIMEOUT)
    };
    let out = as_nobody(&["--dry-run", "connect", "web", "c1", "-p", "8080:80"]);
    assert_ok_ctx(&out, "dry-run connect as nobody");
    assert!(
        stdout(&out).contains("ip -n c1 addr add 10.90.0.2/24"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("published4_any"), "{}", stdout(&out));
    let out = as_nobody(&[
        "network",
        "create",
        "db",
        "--subnet",
        "10.91.0.0/24",
        "--dry-run",
    ]);
    assert_ok_ctx(&out, "dry-run network create as nobody");
    assert!(
        stdout(&out).contains("ip link add berth-db"),
        "{}",
        stdout(&out)
    );
    sb.snapshot()
        .assert_same(&before, "dry runs as a user who can only read");
}

#[test]
fn format_templates_and_tables_are_docker_s() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    sb.connect("web", "c1", &["-p", "8080:80"]);
    assert_eq!(
        sb.berth_ok(&["ps", "--format", "{{.Subnet}}"]),
        "10.90.0.0/24\n"
    );
    // {{.Ports}} is what the PORTS column shows; {{json .Ports}} the data.
    assert_eq!(
        sb.berth_ok(&["ps", "--format", "{{.Name}} {{.Ports}}"]),
        "c1 0.0.0.0:8080->80/tcp\n"
    );
    // `table` templates are aligned, with the default table's headings.
    let table = sb.berth_ok(&[
        "ps",
        "--format",
        "table {{.Name}}\\t{{.Subnet}}\\t{{json .Ports}}",
    ]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(!table.contains('\t'), "{table:?}");
    assert!(
        lines[0].starts_with("NAME   SUBNET         PORTS"),
        "{table}"
    );
    assert_eq!(
        lines[0].find("SUBNET"),
        lines[1].find("10.90.0.0/24"),
        "{table}"
    );
    assert!(lines[1].contains("\"host_port\":8080"), "{table}");
    let ls = sb.berth_ok(&[
        "network",
        "ls",
        "--format",
        "table {{.Name}}\t{{.EndpointCount}}",
    ]);
    assert_eq!(ls, "NAME   ENDPOINTS\nweb    1\n");
    assert_eq!(
        sb.berth_ok(&["network", "ls", "--format", "table"]),
        sb.berth_ok(&["network", "ls"])
    );
    // The examples of `--help` work for both lists.
    let help = sb.berth_ok(&["ps", "--help"]);
    assert!(help.contains("table {{.Name}}\\t{{.Status}}"), "{help}");
    for list in [&["ps"][..], &["network", "ls"]] {
        let mut args = list.to_vec();
        args.extend(["--format", "table {{.Name}}\\t{{.Status}}"]);
        let out = sb.berth_ok(&args);
        assert!(out.starts_with("NAME   STATUS\n"), "{out}");
        assert!(out.contains("   up\n"), "{out}");
    }
    // What cannot be shown is refused, in one line naming it.
    for (args, names) in [
        (&["ps", "--format", "yaml"][..], "\"yaml\""),
        (&["network", "ls", "--format", "{{.Colour}}"], "\"Colour\""),
        (&["ps", "--format", "{{range .Ports}}x{{end}}"], "range"),
        (&["ps", "--json", "--format", "json"], "--json"),
        (
            &["network", "inspect", "web", "--json", "--format", "json"],
            "--json",
        ),
    ] {
        sb.assert_refused(args, names);
    }
}

#[test]
fn docker_habits_get_true_answers() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    sb.connect("web", "c1", &[]);
    // -i, -t and --rm are what berth does anyway.
    let out = sb.berth_out_ok(&[
        "run", "-it", "--rm", "-q", "--net", "web", "--", "echo", "ok",
    ]);
    assert_eq!(stdout(&out), "ok\n");
    let help = sb.berth_ok(&["run", "--help"]);
    assert!(help.contains("stdin always passes through"), "{help}");
    // A command without `--` gets the shape, for exec as for run.
    let out = sb.berth(&["exec", "c1", "ip", "route"]);
    assert_fails_with(&out, 2, "put the command after `--`");
    assert!(stderr(&out).contains("berth exec"), "{}", stderr(&out));
    // A command that cannot start: 127 not found, 126 not executable.
    sb.sh_ok("printf '#!/bin/sh\\ntrue\\n' > /run/plain && chmod 644 /run/plain");
    for (args, code) in [
        (
            &["run", "-q", "--net", "web", "--", "/no/such/cmd"][..],
            127,
        ),
        (&["run", "-q", "--net", "none", "--", "/run/plain"], 126),
        (&["exec", "c1", "--", "/no/such/cmd"], 127),
    ] {
        let out = sb.berth(args);
        let program = args.last().unwrap();
        assert_fails_with(&out, code, program);
    }
    assert!(sb.endpoints().len() == 1, "{:?}", sb.endpoints());
    let out = sb.berth(&["network", "create", "n", "--cluster-cidr", "foo"]);
    assert_fails_with(&out, 2, "expected a CIDR like 10.0.0.0/8");
    sb.assert_refused(
        &["run", "--net", "host", "--name", "x", "--", "true"],
        "\"x\"",
    );
    // A network with many endpoints: a few names, and how many more.
    for i in 0..8 {
        let ns = format!("m{i}");
        sb.add_netns(&ns);
        sb.connect("web", &ns, &[]);
    }
    let out = sb.berth(&["network", "rm", "web"]);
    assert_fails_with(&out, 2, "and 4 more");
    assert!(stderr(&out).len() < 200, "{}", stderr(&out));
}

#[test]
fn a_user_who_may_not_read_the_state_gets_exit_2_in_one_line() {
    let sb = Sandbox::new();
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
        crate::skip_line!(
            "SKIP a_user_who_may_not_read_the_state: {BERTH} is not executable by uid 65534"
        );
        return;
    }
    sb.create_network("web", "10.90.0.0/24");
    sb.berth_ok(&["run", "-d", "--net", "none", "--name", "j", "--", "true"]);
    let before = sb.snapshot();
    let as_nobody = |args: &[&str]| {
        let mut all = vec!["--reuid=65534", "--regid=65534", "--clear-groups", BERTH];
        all.extend_from_slice(args);
        let mut c = sb.command(None, "setpriv", &all);
        c.env("BERTH_STATE_DIR", STATE_DIR);
        run_timeout(c, CMD_TIMEOUT)
    };
    // What only reads the state names it and says who may read it.
    for args in [
        &["ps"][..],
        &["ps", "-a"],
        &["network", "ls"],
        &["network", "inspect", "web"],
        &["logs", "j"],
        &["stop", "--dry-run", "j"],
        &["connect", "--dry-run", "web", "c1"],
    ] {
        let out = as_nobody(args);
        assert_fails_with(&out, 2, STATE_DIR);
        assert!(
            stderr(&out).contains("as root"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // What changes something says root is needed before it looks.
    for args in [&["stop", "j"][..], &["rm", "j"], &["up"]] {
        assert_fails_with(&as_nobody(args), 2, "needs root");
    }
    sb.snapshot().assert_same(&before, "refused reads");
}

/// Processes of `berth bench`'s private sandbox: its state directory is
/// on their command line.
fn bench_processes() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                c.split(|b| *b == 0)
                    .any(|a| a == b"/run/berth-bench-state".as_slice())
            })
        })
        .collect()
}

/// The IPv6 traffic benchmark publishes ports on endpoints with IPv6, whose
/// `[::1]` forwards start the background server even without DNS; nothing
/// of the benchmark's sandbox may outlive it.
#[test]
fn bench_leaves_no_background_process() {
    let before = bench_processes();
    let out = std::process::Command::new(BERTH)
        .args(["bench", "--traffic", "--ipv6", "--seconds", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut left: Vec<u32>;
    loop {
        left = bench_processes()
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(left.is_empty(), "left running: {left:?}");
}

/// A benchmark killed before it could stop its background processes:
/// nothing can reach its sandbox any more, so they end themselves.
#[test]
fn a_killed_bench_leaves_no_background_process() {
    let before = bench_processes();
    let mut bench = std::process::Command::new(BERTH)
        .args(["bench", "--count", "300", "--ports", "1", "--cli"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let bench_pid = bench.id();
    let new = |before: &[u32]| -> Vec<u32> {
        bench_processes()
            .into_iter()
            .filter(|p| !before.contains(p) && *p != bench_pid)
            .collect()
    };
    // Killed once its supervisor runs (the connects start it).
    let deadline = Instant::now() + Duration::from_secs(60);
    let supervisor = loop {
        let found: Vec<u32> = new(&before)
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"supervise"))
            })
            // This bench's: another test's benchmark, started meanwhile,
            // has a supervisor of its own that rightly stays.
            .filter(|p| sandbox_owner(*p) == Some(bench_pid))
            .collect();
        // One that stays: the first may be on its way out (nothing to
        // watch yet).
        if let Some(p) = found.first() {
            std::thread::sleep(Duration::from_millis(1500));
            if std::path::Path::new(&format!("/proc/{p}")).exists() {
                break *p;
            }
        }
        assert!(
            Instant::now() < deadline && bench.try_wait().unwrap().is_none(),
            "no supervisor appeared while the bench ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Another test's benchmark may run meanwhile: only this sandbox's
    // processes count.
    let netns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    let sandbox = netns(supervisor).expect("the supervisor's namespace");
    let ours = || -> Vec<u32> {
        new(&before)
            .into_iter()
            .filter(|p| netns(*p).as_ref() == Some(&sandbox))
            .collect()
    };
    bench.kill().unwrap();
    bench.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = ours();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = ours();
    }
    assert!(
        left.is_empty(),
        "left running after the bench was killed (supervisor {supervisor}):\n{}",
        left.iter()
            .map(|p| describe_process(*p))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The sandbox owner a background process was started under
/// (`BERTH_SANDBOX_OWNER` in its environment): the bench that made it.
fn sandbox_owner(pid: u32) -> Option<u32> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .ok()?
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"BERTH_SANDBOX_OWNER="))
        .and_then(|o| std::str::from_utf8(o).ok()?.parse().ok())
}

/// What a process is doing, for a failure message: its command line,
/// state and kernel wait channel, and the tail of the supervisor's log
/// in the benchmark's private state directory (seen through its root).
fn describe_process(pid: u32) -> String {
    let read =
        |what: &str| std::fs::read_to_string(format!("/proc/{pid}/{what}")).unwrap_or_default();
    let state = read("stat")
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let log = read("root/run/berth-bench-state/supervisor.log");
    let owner = sandbox_owner(pid)
        .map(|o| {
            let stat = std::fs::read_to_string(format!("/proc/{o}/stat")).unwrap_or_default();
            format!("{o} ({})", stat.trim())
        })
        .unwrap_or_else(|| "none".into());
    let tail: Vec<&str> = log.lines().rev().take(8).collect();
    format!(
        "  {pid} [{state}, wchan {}, sandbox owner {owner}] {}\n    supervisor.log: {}",
        read("wchan"),
        read("cmdline").replace('\0', " "),
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    )
}

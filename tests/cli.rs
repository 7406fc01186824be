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
    let out = sb.berth(&["stop", "bg"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no running sandbox named \"bg\""),
        "{}",
        stderr(&out)
    );
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
    let inspected = sb.berth_json(&["network", "inspect", "a", "b", "--json"]);
    assert_eq!(
        inspected.as_array().map(|a| a.len()),
        Some(2),
        "{inspected}"
    );
    // rm with a name that does not exist removes nothing.
    let out = sb.berth(&["network", "rm", "b", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(sb.networks().len(), 3);
    sb.berth_ok(&["network", "rm", "b", "c"]);
    sb.create_network("d", "10.93.0.0/24");
    // prune takes the empty networks and leaves the used one.
    assert_eq!(sb.berth_ok(&["network", "prune"]), "removed network d\n");
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
    assert!(stderr(&out).contains("ip link del vb"), "{}", stderr(&out));
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

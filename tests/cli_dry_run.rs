//! `--dry-run` prints exactly what the command would do: for every command
//! that takes it, the plan it prints is the list of steps the real command
//! then applies (read back from `-vv`, which logs each applied step), the
//! sandbox is unchanged by the dry run, and with nothing to do it says so.

mod util;

use std::collections::BTreeMap;

use util::*;

/// A state's first change makes its random instance id, which names a
/// chain of the table (`owner-<16 hex>`): a dry run on a state without one
/// cannot know the id the real command will draw.
fn without_instance(line: &str) -> String {
    match line.find("owner-") {
        Some(i) if line[i + 6..].len() >= 16 => {
            format!("{}owner-<id>{}", &line[..i], &line[i + 22..])
        }
        _ => line.to_string(),
    }
}

/// The steps a command applied, as `-vv` logs them: one `INFO` line per
/// step, `LINE && LINE ... (N ms)`, split back into the plan's lines.
fn applied_steps(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("INFO "))
        .filter(|l| l.ends_with(" ms)") && !l.starts_with("undo"))
        .flat_map(|l| {
            let body = &l[..l.rfind(" (").expect("a duration")];
            body.split(" && ").map(without_instance).collect::<Vec<_>>()
        })
        .collect()
}

/// The plan lines of a dry run's output (comments and the command `run`
/// would start are not steps).
fn planned_steps(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("ip netns exec "))
        .map(without_instance)
        .collect()
}

/// Runs `berth --dry-run ARGS` (the sandbox must not change), then `berth
/// -vv ARGS`, and checks that the dry run printed exactly the steps the
/// real command applied, in order. Returns the dry run's output.
fn dry_run_matches_the_act(sb: &Sandbox, args: &[&str]) -> String {
    let before = sb.snapshot();
    // Before a `--`, after which everything is the command's.
    let mut dry = args.to_vec();
    let at = dry.iter().position(|a| *a == "--").unwrap_or(dry.len());
    dry.insert(at, "--dry-run");
    let planned = sb.berth_ok(&dry);
    sb.snapshot()
        .assert_same(&before, &format!("berth {}", dry.join(" ")));
    let mut real = vec!["-vv"];
    real.extend_from_slice(args);
    let out = sb.berth_out_ok(&real);
    let applied = applied_steps(&stderr(&out));
    assert!(
        !applied.is_empty(),
        "berth {}: no step logged: {}",
        real.join(" "),
        stderr(&out)
    );
    assert_eq!(
        planned_steps(&planned),
        applied,
        "berth {}: the dry run's plan is not what was done",
        args.join(" ")
    );
    planned
}

#[test]
fn every_dry_run_prints_the_steps_the_command_then_takes() {
    let sb = Sandbox::new();
    // The default network on first use, with the whole firewall table.
    let run = dry_run_matches_the_act(&sb, &["run", "--name", "r1", "-p", "8080:80", "--", "true"]);
    assert!(run.contains("ip netns exec r1 true"), "{run}");
    assert!(run.contains("ip netns del r1"), "{run}");
    dry_run_matches_the_act(
        &sb,
        &["network", "create", "web", "--subnet", "10.90.0.0/24"],
    );
    sb.add_netns("c1");
    sb.add_netns("c2");
    dry_run_matches_the_act(&sb, &["connect", "web", "c1", "-p", "5353:53/udp"]);
    dry_run_matches_the_act(&sb, &["network", "connect", "web", "c2"]);
    // A run on an existing network, with its published port's teardown.
    dry_run_matches_the_act(
        &sb,
        &[
            "run", "--net", "web", "--name", "r2", "-p", "9090:80", "--", "true",
        ],
    );
    dry_run_matches_the_act(&sb, &["disconnect", "web", "c1"]);
    dry_run_matches_the_act(&sb, &["network", "rm", "web", "--force"]);
    dry_run_matches_the_act(
        &sb,
        &["network", "create", "db", "--subnet", "10.91.0.0/24"],
    );
    dry_run_matches_the_act(&sb, &["network", "prune", "-f"]);
    dry_run_matches_the_act(
        &sb,
        &["network", "create", "db", "--subnet", "10.91.0.0/24"],
    );
    dry_run_matches_the_act(&sb, &["reset"]);
}

/// The table as the kernel numbers it: a rebuild gives every object new
/// handles, so equal handles mean the table was left alone.
fn table_handles(sb: &Sandbox) -> String {
    stdout(&sb.cmd("nft", &["-a", "-j", "list", "table", "inet", "berth"]))
}

#[test]
fn up_with_nothing_to_repair_plans_nothing_and_changes_nothing() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.berth_ok(&[
        "network",
        "create",
        "iso",
        "--subnet",
        "10.91.0.0/24",
        "--internal",
    ]);
    sb.add_netns("c1");
    sb.connect(
        "web",
        "c1",
        &["-p", "8080:80", "-p", "9000-9002:9000-9002/udp"],
    );
    let handles = table_handles(&sb);
    assert!(handles.contains("\"handle\""), "{handles}");
    for verb in ["up", "gc"] {
        assert_eq!(
            sb.berth_ok(&[verb, "--dry-run"]),
            "# nothing to do\n",
            "{verb}"
        );
        assert_eq!(
            sb.berth_ok(&[verb]),
            format!("{verb}: the kernel already matches the state\n")
        );
        assert_eq!(
            table_handles(&sb),
            handles,
            "{verb} rewrote a table that matched"
        );
    }

    // What was taken by hand, and only that, is planned and put back.
    sb.sh_ok("nft delete element inet berth published4_any '{ tcp . 8080 }'");
    sb.sh_ok("ip addr del 10.91.0.1/24 dev berth-iso");
    let planned = sb.berth_ok(&["up", "--dry-run"]);
    assert!(
        planned.contains("ip addr replace 10.91.0.1/24"),
        "{planned}"
    );
    // The one element, not the whole table.
    assert!(
        planned.contains("add element inet berth published4_any { tcp . 8080 : 10.90.0.2 . 80 }"),
        "{planned}"
    );
    assert!(!planned.contains("delete table inet berth"), "{planned}");
    assert!(
        !planned.contains("10.90.0.1/24"),
        "web's address is there: {planned}"
    );
    let report = sb.berth_ok(&["up"]);
    assert!(
        report.contains("gateway address 10.91.0.1 back"),
        "{report}"
    );
    assert!(
        report.contains("put the elements of berth's sets and maps back"),
        "{report}"
    );
    let elements = stdout(&sb.cmd("nft", &["list", "map", "inet", "berth", "published4_any"]));
    assert!(
        elements.contains("tcp . 8080 : 10.90.0.2 . 80"),
        "{elements}"
    );
    assert_eq!(sb.berth_ok(&["up", "--dry-run"]), "# nothing to do\n");
}

#[test]
fn run_stop_rm_and_demo_take_dry_run_and_change_nothing() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.berth_ok(&[
        "run", "-d", "--net", "web", "--name", "job", "--", "sleep", "300",
    ]);
    let before = sb.snapshot();
    let jobs_before = sb.berth_ok(&["ps", "-a", "--json"]);
    let mut outputs = BTreeMap::new();
    for args in [
        &["stop", "job", "--dry-run"][..],
        &["rm", "-f", "job", "--dry-run"],
        &[
            "--dry-run",
            "run",
            "--net",
            "none",
            "--name",
            "n",
            "--",
            "true",
        ],
        &["run", "--net", "host", "--dry-run", "--", "true"],
        &["demo", "--dry-run"],
    ] {
        outputs.insert(args.join(" "), sb.berth_ok(args));
        sb.snapshot().assert_same(&before, &args.join(" "));
        assert_eq!(
            sb.berth_ok(&["ps", "-a", "--json"]),
            jobs_before,
            "{args:?}"
        );
    }
    let stop = &outputs["stop job --dry-run"];
    assert!(stop.starts_with("kill -TERM "), "{stop}");
    let rm = &outputs["rm -f job --dry-run"];
    assert!(
        rm.contains("kill -TERM ") && rm.contains("logs/job.log"),
        "{rm}"
    );
    let none = &outputs["--dry-run run --net none --name n -- true"];
    assert!(
        none.contains("ip netns add n\n") && none.contains("ip -n n link set lo up"),
        "{none}"
    );
    assert!(outputs["run --net host --dry-run -- true"].ends_with("\ntrue\n"));
    let demo = &outputs["demo --dry-run"];
    for step in [
        "ip link add berth-demo",
        "ip netns add alpha",
        "ip netns add beta",
        "netns beta",
    ] {
        assert!(demo.contains(step), "{step}: {demo}");
    }
    // The job still runs: the dry runs stopped and removed nothing.
    assert!(!sb.find_processes("sleep 300").is_empty());
}

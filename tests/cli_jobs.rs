//! Detached runs as a `docker run -d` user expects them: a name clash is
//! refused (exit 2) without touching the running job or its log; every
//! mode (a network, `--net none`, `--net host`) runs in the background and
//! stops with `stop`; `logs [-f]`; `ps -a` shows finished jobs with their
//! exit status until `rm`; a job that cannot start fails `run -d` itself.

mod util;

use std::time::{Duration, Instant};

use util::*;

/// Waits until `berth ps -a --json` shows `name` with `status`.
fn wait_status(sb: &Sandbox, name: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = as_array(sb.berth_json(&["ps", "-a", "--json"]));
        if rows
            .iter()
            .any(|r| r["name"] == name && r["status"] == status)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {status:?}: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `ps` row of `name` (`-a`: finished jobs too), if any.
fn row(sb: &Sandbox, all: bool, name: &str) -> Option<serde_json::Value> {
    let args: &[&str] = if all {
        &["ps", "-a", "--json"]
    } else {
        &["ps", "--json"]
    };
    as_array(sb.berth_json(args))
        .into_iter()
        .find(|r| r["name"] == name)
}

#[test]
fn a_name_clash_is_refused_and_the_running_job_keeps_its_log() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    let first = [
        "run",
        "-d",
        "--net",
        "web",
        "--name",
        "api",
        "--",
        "sh",
        "-c",
        "echo first; exec sleep 300",
    ];
    assert_eq!(sb.berth_ok(&first), "api\n");
    wait_for_log(&sb, "api", "first\n");
    let before = sb.snapshot();
    for net in ["web", "none", "host"] {
        sb.assert_refused(
            &[
                "run", "-d", "--net", net, "--name", "api", "--", "echo", "second",
            ],
            "\"api\"",
        );
        // A foreground run cannot take the name either.
        sb.assert_refused(
            &["run", "--net", net, "--name", "api", "--", "true"],
            "\"api\"",
        );
    }
    sb.snapshot().assert_same(&before, "refused clashes");
    assert_eq!(
        sb.berth_ok(&["logs", "api"]),
        "first\n",
        "the log was touched"
    );
    assert_eq!(sb.find_processes("sleep 300").len(), 1);

    // A finished job keeps its name until it is removed.
    sb.berth_ok(&["stop", "api"]);
    let out = sb.berth(&["run", "-d", "--net", "web", "--name", "api", "--", "true"]);
    assert_fails_with(&out, 2, "berth rm api");
    assert_eq!(sb.berth_ok(&["rm", "api"]), "api\n");
    assert_eq!(
        sb.berth_ok(&["run", "-d", "--net", "web", "--name", "api", "--", "true"]),
        "api\n"
    );
}

fn wait_for_log(sb: &Sandbox, name: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sb.berth_ok(&["logs", name]) != want {
        assert!(
            Instant::now() < deadline,
            "log of {name}: {:?}",
            sb.berth_ok(&["logs", name])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_mode_runs_detached_shows_in_ps_and_stops() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    let links = sb.link_names(None);
    for (net, name) in [("web", "jw"), ("none", "jn"), ("host", "jh")] {
        let began = Instant::now();
        let out = sb.berth_out_ok(&[
            "run", "-d", "--net", net, "--name", name, "--", "sleep", "301",
        ]);
        assert_eq!(stdout(&out), format!("{name}\n"));
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "{net}: run -d took {:?}",
            began.elapsed()
        );
        let r = row(&sb, false, name).unwrap_or_else(|| panic!("{name} not in ps"));
        assert_eq!(r["status"], "up", "{r}");
        assert_eq!(r["network"], net, "{r}");
    }
    assert_eq!(sb.find_processes("sleep 301").len(), 3);
    assert!(sb.netns_list().contains(&"jn".to_string()));
    // The host job runs in the sandbox host's own namespace.
    let host_job = sb.find_processes("sleep 301");
    assert!(
        host_job.iter().any(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/net")).ok()
                == std::fs::read_link(sb.host_netns_path()).ok()
        }),
        "no sleep in the host's namespace"
    );
    assert_eq!(sb.berth_ok(&["stop", "jw", "jn", "jh"]), "jw\njn\njh\n");
    assert!(sb.find_processes("sleep 301").is_empty());
    for name in ["jw", "jn", "jh"] {
        assert!(row(&sb, false, name).is_none(), "{name} still in ps");
        // Stopped by SIGTERM, forwarded to the command.
        assert_eq!(
            row(&sb, true, name).expect("in ps -a")["status"],
            "exited (143)"
        );
    }
    assert!(sb.netns_list().is_empty(), "{:?}", sb.netns_list());
    // The kernel deletes a namespace's veth in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sb.link_names(None) != links {
        assert!(
            Instant::now() < deadline,
            "a veth was left: {:?}",
            sb.link_names(None)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Stopping what has ended is no error (as Docker's).
    assert_eq!(sb.berth_ok(&["stop", "jw"]), "jw\n");
    let out = sb.berth(&["stop", "nosuch"]);
    assert_fails_with(&out, 2, "\"nosuch\"");
}

#[test]
fn logs_follow_and_a_finished_job_stays_until_rm() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.berth_ok(&[
        "run",
        "-d",
        "--net",
        "web",
        "--name",
        "talk",
        "--",
        "sh",
        "-c",
        "echo one; echo err >&2; sleep 1; echo two; exit 3",
    ]);
    let began = Instant::now();
    let followed = sb.berth_ok(&["logs", "-f", "talk"]);
    assert!(
        began.elapsed() >= Duration::from_millis(500),
        "logs -f did not follow"
    );
    assert_eq!(followed, "one\nerr\ntwo\n");
    wait_status(&sb, "talk", "exited (3)");
    // Not a running job: only `ps -a` shows it, with its status.
    assert!(row(&sb, false, "talk").is_none());
    let table = sb.berth_ok(&["ps", "-a"]);
    let line = table
        .lines()
        .find(|l| l.starts_with("talk "))
        .expect("talk in ps -a");
    assert!(
        line.contains("exited (3)") && line.contains("web"),
        "{line}"
    );
    // Kept: the log too, until rm.
    assert_eq!(sb.berth_ok(&["logs", "talk"]), "one\nerr\ntwo\n");
    assert_eq!(sb.berth_ok(&["rm", "talk"]), "talk\n");
    assert!(row(&sb, true, "talk").is_none());
    assert_fails_with(&sb.berth(&["logs", "talk"]), 2, "\"talk\"");
    assert_fails_with(&sb.berth(&["rm", "talk"]), 2, "\"talk\"");

    // A running job is not removed without -f; with -f it is stopped first.
    sb.berth_ok(&[
        "run", "-d", "--net", "none", "--name", "busy", "--", "sleep", "302",
    ]);
    assert_fails_with(&sb.berth(&["rm", "busy"]), 2, "rm -f busy");
    assert_eq!(sb.berth_ok(&["rm", "-f", "busy"]), "busy\n");
    assert!(sb.find_processes("sleep 302").is_empty());
    assert!(row(&sb, true, "busy").is_none());

    // --rm: the job goes by itself when it ends.
    sb.berth_ok(&[
        "run", "-d", "--rm", "--net", "web", "--name", "once", "--", "true",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while row(&sb, true, "once").is_some() {
        assert!(Instant::now() < deadline, "--rm left the job");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(sb.endpoints().is_empty(), "{:?}", sb.endpoints());
}

#[test]
fn a_job_that_cannot_start_fails_run_d_and_leaves_nothing() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    let before = sb.snapshot();
    let jobs = sb.berth_ok(&["ps", "-a", "--json"]);
    let out = sb.berth(&[
        "run",
        "-d",
        "--net",
        "web",
        "--name",
        "x",
        "--",
        "/no/such/cmd",
    ]);
    assert_fails_with(&out, 127, "/no/such/cmd");
    let out = sb.berth(&["run", "-d", "--net", "nosuch", "--name", "y", "--", "true"]);
    assert_fails_with(&out, 2, "\"nosuch\"");
    let out = sb.berth(&[
        "run",
        "-d",
        "--net",
        "web",
        "--ip",
        "10.99.0.5",
        "--",
        "true",
    ]);
    assert_fails_with(&out, 2, "10.99.0.5");
    // The kernel deletes the namespace's veth in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sb.snapshot() != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    sb.snapshot()
        .assert_same(&before, "jobs that could not start");
    assert_eq!(sb.berth_ok(&["ps", "-a", "--json"]), jobs);
    let logs = sb.cmd("ls", &[&format!("{STATE_DIR}/logs")]);
    assert_eq!(stdout(&logs), "", "logs left behind");
}

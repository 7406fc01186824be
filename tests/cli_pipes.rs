//! Every command that prints ends quietly when its reader goes away, as
//! `ip` and `docker` do: killed by SIGPIPE (status 141 in a shell), with
//! nothing on stderr, never a panic. And what a command did before it
//! found the pipe closed is done: the next command finds the state whole.

mod util;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use util::*;

/// How the reader of a command's stdout goes away.
#[derive(Clone, Copy, Debug)]
enum Reader {
    /// Closes the pipe before the command writes anything (`| true`).
    Gone,
    /// Reads a line, then closes it (`| head -1`).
    OneLine,
}

/// Runs `berth ARGS` with its stdout a pipe that `reader` closes early;
/// returns its status and its stderr.
fn with_reader(sb: &Sandbox, args: &[&str], reader: Reader) -> (ExitStatus, String) {
    let mut cmd = sb.berth_command(args);
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    let mut child = match reader {
        // The reading end is closed before the command starts, so its
        // first write finds no reader, however fast it is.
        Reader::Gone => {
            let (read, write) = std::io::pipe().expect("a pipe");
            drop(read);
            cmd.stdout(write);
            cmd.spawn().expect("spawn berth")
        }
        Reader::OneLine => {
            cmd.stdout(Stdio::piped());
            let mut child = cmd.spawn().expect("spawn berth");
            let out = child.stdout.take().unwrap();
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            child
        }
    };
    let mut err = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CMD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "berth {args:?} did not end");
        std::thread::sleep(Duration::from_millis(5));
    };
    (status, errors.join().unwrap())
}

/// The command ended as `ip` does on a closed pipe: by SIGPIPE, quietly.
/// With `OneLine` the command may also have written everything before the
/// reader left, and ended normally.
fn assert_quiet(sb: &Sandbox, args: &[&str], reader: Reader) {
    let (status, err) = with_reader(sb, args, reader);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "berth {args:?} ({reader:?}): {err}"
    );
    let by_sigpipe = status.signal() == Some(libc::SIGPIPE);
    match reader {
        Reader::Gone => assert!(
            by_sigpipe,
            "berth {args:?}: expected death by SIGPIPE, got {status:?}; stderr {err:?}"
        ),
        Reader::OneLine => assert!(
            by_sigpipe || status.success(),
            "berth {args:?} (one line read): {status:?}; stderr {err:?}"
        ),
    }
}

#[test]
fn every_printing_command_ends_quietly_when_its_reader_goes() {
    let sb = Sandbox::new();
    sb.create_network("web", "10.90.0.0/24");
    sb.add_netns("c1");
    sb.add_netns("c2");
    sb.connect("web", "c1", &["-p", "8080:80"]);
    for job in ["job", "quiet"] {
        sb.berth_ok(&[
            "run",
            "-d",
            "--net",
            "web",
            "--name",
            job,
            "--",
            "sh",
            "-c",
            "echo hi; exec sleep 300",
        ]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while sb.berth_ok(&["logs", job]) != "hi\n" {
            assert!(Instant::now() < deadline, "{job} wrote nothing");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // In order: each may change the state, and the next must find it whole.
    let commands: &[&[&str]] = &[
        &["--help"],
        &["--version"],
        &["network", "--help"],
        &["network", "create", "n1", "--subnet", "10.91.0.0/24"],
        &[
            "network",
            "create",
            "n2",
            "--subnet",
            "10.92.0.0/24",
            "--dry-run",
        ],
        &["network", "ls"],
        &["network", "ls", "--json"],
        &["network", "ls", "-q"],
        &["network", "ls", "--format", "table {{.Name}}\t{{.Subnet}}"],
        &["network", "inspect", "web"],
        &["network", "inspect", "web", "n1", "--json"],
        &["network", "inspect", "web", "--format", "{{.Subnet}}"],
        &["connect", "web", "c2", "-p", "8081:80"],
        &["connect", "n1", "c2", "--json"],
        &["--dry-run", "connect", "n1", "c1"],
        &["ps"],
        &["ps", "-a", "--json"],
        &["port", "c1"],
        &["logs", "job"],
        &["logs", "-f", "job"],
        &["run", "--dry-run", "--net", "web", "--", "true"],
        &[
            "run", "-d", "--net", "none", "--name", "j2", "--", "sleep", "300",
        ],
        &["stop", "--dry-run", "job"],
        &["stop", "j2"],
        &["rm", "--dry-run", "j2"],
        &["rm", "j2"],
        &["exec", "--dry-run", "c1", "--", "ip", "route"],
        &["disconnect", "n1", "c2"],
        &["network", "disconnect", "web", "c2"],
        &["up", "--dry-run"],
        &["up"],
        &["gc"],
        &["network", "rm", "n1"],
        &["network", "create", "n3", "--subnet", "10.93.0.0/24"],
        &["network", "prune", "-f"],
        &["completions", "bash"],
        &["man", "/run/man"],
        &["demo", "--dry-run"],
        &["demo"],
        &["stop", "job"],
        &["reset", "--dry-run"],
    ];
    for args in commands {
        assert_quiet(&sb, args, Reader::Gone);
        sb.berth_ok(&["ps", "-a"]);
    }
    for args in [
        &["--help"][..],
        &["network", "ls"],
        &["ps", "-a"],
        &["completions", "bash"],
        &[
            "network",
            "create",
            "n4",
            "--subnet",
            "10.94.0.0/24",
            "--dry-run",
        ],
        &["demo", "-v"],
        // Its job writes nothing more: `logs -f` must notice on its own
        // that its reader went (`docker logs -f` waits for a write).
        &["logs", "-f", "quiet"],
        &["stop", "quiet"],
        &["reset"],
    ] {
        assert_quiet(&sb, args, Reader::OneLine);
    }
    // `run` and `exec` pass the pipe to their command, which the closed
    // pipe ends by SIGPIPE in turn: `run` exits with its status, 128+13;
    // `exec` has become the command.
    let run = [
        "run",
        "-q",
        "--net",
        "none",
        "--",
        "sh",
        "-c",
        "sleep 0.2; echo a",
    ];
    let (status, err) = with_reader(&sb, &run, Reader::Gone);
    assert_eq!(status.code(), Some(128 + libc::SIGPIPE), "run: {err}");
    let exec = ["exec", "c1", "--", "sh", "-c", "sleep 0.2; echo a"];
    let (status, err) = with_reader(&sb, &exec, Reader::Gone);
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "exec: {err}");
    // What the commands did before their reader left was done.
    assert!(sb.networks().is_empty(), "reset: {:?}", sb.networks());
    assert!(sb.netns_list().iter().all(|n| n == "c1" || n == "c2"));
}

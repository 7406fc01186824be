//! Runs one bats file in a private sandbox with `$NETAVARK` pointing at
//! the binary under test.
//!
//! The sandbox (fresh network and mount namespaces, tmpfs on /run) plays
//! the machine the suite expects to own: every test of the file makes its
//! own "host" and "container" namespaces inside it. bats runs as the init
//! of a PID namespace of its own, so every process the suite leaves behind
//! (namespace holders, aardvark-dns, berth's DNS server, ncat) dies with
//! it, and, as a real host's init does, bats reaps the daemons the tests
//! stop: one test checks with `ps PID` that teardown ended aardvark-dns,
//! and an unreaped zombie would still be listed.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::tap::{self, Tap};
use crate::util::{run_timeout, stdout, Sandbox, MIN_KERNEL};

/// Bound for one bats file (the slowest, 100-bridge-iptables, takes about
/// 25 s with the stock netavark on a 2-core machine).
const FILE_TIMEOUT: Duration = Duration::from_secs(180);
/// berth's state directory inside each test host; `harness/netavark`
/// mounts a tmpfs there per host.
const STATE_DIR: &str = "/run/berth-state";

/// Programs the suite calls, with the Debian package that has each. ncat
/// is required (not any `nc`): the suite passes ncat's `--udp`/`--sctp`.
pub const TOOLS: [(&str, &str); 11] = [
    ("bats", "bats"),
    ("jq", "jq"),
    ("ncat", "ncat"),
    ("ping", "iputils-ping"),
    ("iptables", "iptables"),
    ("ip6tables", "iptables"),
    ("dig", "dnsutils"),
    ("ps", "procps"),
    ("sysctl", "procps"),
    ("mountpoint", "util-linux"),
    ("nsenter", "util-linux"),
];

/// Why the suite cannot run on this machine, if it cannot.
pub fn missing_tool() -> Option<String> {
    for (tool, package) in TOOLS {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("`{tool}` is not installed (Debian: {package})"));
        }
    }
    // The suite's `nc` must be ncat.
    let nc = Command::new("nc").arg("--version").output();
    let is_ncat = nc.is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout).contains("Ncat")
            || String::from_utf8_lossy(&o.stderr).contains("Ncat")
    });
    if !is_ncat {
        return Some("`nc` is not ncat (Debian: ncat provides it)".into());
    }
    None
}

pub struct FileRun {
    pub tap: Tap,
    /// bats' whole output, for when the results cannot be trusted.
    pub raw: String,
    /// bats' exit code: 0 when every test passed or was skipped.
    pub status: i32,
    pub elapsed: Duration,
}

/// Runs `tests_dir/FILE` with the scripts of `harness` (`tests/netavark_bats/harness`) and
/// `target` as the netavark binary.
pub fn run_file(tests_dir: &Path, harness: &Path, target: &Path, file: &str) -> FileRun {
    let sb = Sandbox::new();
    // The suite decides it runs rootless when the system bus socket is
    // missing, and the sandbox's empty /run hides the machine's. We are
    // real root, so a placeholder restores the answer it would get; the
    // suite blanks DBUS_SYSTEM_BUS_ADDRESS, so nothing connects to it.
    sb.sh_ok(&format!(
        "mkdir -p {STATE_DIR} /run/bats-tmp /run/dbus && : > /run/dbus/system_bus_socket"
    ));
    let path = std::env::var("PATH").unwrap_or_default();
    let bats_file = tests_dir.join(file);
    let mut cmd = sb.command(
        None,
        "unshare",
        &[
            "--pid",
            "--fork",
            "--mount-proc",
            // Killed (e.g. on timeout), unshare takes the namespace down.
            "--kill-child",
            "bats",
            "--tap",
            bats_file.to_str().expect("UTF-8 path"),
        ],
    );
    cmd.env("PATH", format!("{}:{path}", harness.join("bin").display()))
        .env("TMPDIR", "/run/bats-tmp")
        .env("NETAVARK", harness.join("netavark"))
        .env("BATS_NETAVARK_TARGET", target)
        .env("BERTH_STATE_DIR", STATE_DIR)
        // As every end-to-end test: berth must work on the oldest kernel
        // it supports.
        .env("BERTH_NFT_MAX_KERNEL", MIN_KERNEL)
        // The suite reads stdout as JSON; log lines on it break that.
        .env_remove("RUST_LOG")
        .env_remove("NETAVARK_DNS_PORT");
    let start = Instant::now();
    let out = run_timeout(cmd, FILE_TIMEOUT);
    let elapsed = start.elapsed();
    let raw = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    let status = out.status.code().unwrap_or_else(|| {
        panic!("bats {file} did not finish (killed after {FILE_TIMEOUT:?}?):\n{raw}")
    });
    let tap = tap::parse(&stdout(&out));
    FileRun {
        tap,
        raw,
        status,
        elapsed,
    }
}

//! Ordinary users inside a test's sandbox: accounts added to private
//! copies of /etc/passwd, /etc/group, /etc/shadow, /etc/subuid and
//! /etc/subgid bind-mounted over the real ones in the sandbox's mount
//! namespace (the real /etc is never written), a 0666 /dev/net/tun of the
//! sandbox's own (the host's is 0600, and pasta and slirp4netns open it as
//! the user), and a `$XDG_RUNTIME_DIR` on the sandbox's /run.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use super::{run_timeout, Sandbox, CMD_TIMEOUT};

/// A user made in a sandbox.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// `$XDG_RUNTIME_DIR` (`/run/user/UID`, 0700, the user's).
    pub runtime_dir: String,
}

/// The files a user's account lives in.
const ACCOUNT_FILES: &[&str] = &["passwd", "group", "shadow", "subuid", "subgid"];

/// Where the private copies live, inside the sandbox's /run tmpfs.
const PRIVATE_ETC: &str = "/run/test-etc";

/// Makes the private account files and the tun node, once per sandbox.
fn prepare(sb: &Sandbox) {
    let mut script = format!(
        "set -e; if [ ! -d {PRIVATE_ETC} ]; then mkdir -p {PRIVATE_ETC}; \
         mkdir -p /run/test-dev && mknod -m 0666 /run/test-dev/tun c 10 200 && \
         mount --bind /run/test-dev/tun /dev/net/tun;"
    );
    for f in ACCOUNT_FILES {
        script.push_str(&format!(
            " touch {PRIVATE_ETC}/{f}; [ -e /etc/{f} ] && cat /etc/{f} > {PRIVATE_ETC}/{f}; \
             [ -e /etc/{f} ] || touch /etc/{f} 2>/dev/null || true; \
             mount --bind {PRIVATE_ETC}/{f} /etc/{f};"
        ));
    }
    script.push_str(" fi");
    let out = sb.sh(&script);
    if out.status.signal() == Some(9) {
        // Seen rarely in full-suite runs (several tests' first step at
        // once): name every process alive then, to find what kills.
        let ps = Command::new("ps")
            .args(["-eo", "pid,ppid,user,etimes,args"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!(
            "preparing the sandbox's users was killed (SIGKILL; stderr: {}); processes then:\n{ps}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    super::assert_ok_ctx(&out, &script);
}

/// Adds user `name` with `uid` (group of the same number) and a range of
/// 65536 subordinate ids each from `uid * 65536`.
pub fn add_user(sb: &Sandbox, name: &str, uid: u32) -> User {
    prepare(sb);
    let sub = u64::from(uid) * 65536;
    let runtime_dir = format!("/run/user/{uid}");
    sb.sh_ok(&format!(
        "set -e; \
         echo '{name}:x:{uid}:{uid}::/nonexistent:/bin/sh' >> {PRIVATE_ETC}/passwd; \
         echo '{name}:x:{uid}:' >> {PRIVATE_ETC}/group; \
         echo '{name}:!:19000:0:99999:7:::' >> {PRIVATE_ETC}/shadow; \
         echo '{name}:{sub}:65536' >> {PRIVATE_ETC}/subuid; \
         echo '{name}:{sub}:65536' >> {PRIVATE_ETC}/subgid; \
         mkdir -p {runtime_dir} && chown {uid}:{uid} {runtime_dir} && chmod 0700 {runtime_dir}"
    ));
    User {
        name: name.to_string(),
        uid,
        gid: uid,
        runtime_dir,
    }
}

impl User {
    /// `program args` as this user in the sandbox host, with the
    /// environment a login gives (and nothing of the test's berth state).
    pub fn command(&self, sb: &Sandbox, program: &str, args: &[&str]) -> Command {
        let uid = self.uid.to_string();
        let gid = self.gid.to_string();
        let mut all = vec![
            "--reuid",
            uid.as_str(),
            "--regid",
            gid.as_str(),
            "--init-groups",
            "--",
            program,
        ];
        all.extend_from_slice(args);
        let mut c = sb.command(None, "setpriv", &all);
        c.env_remove("BERTH_STATE_DIR")
            .env("HOME", "/")
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .env("BERTH_NFT_MAX_KERNEL", super::MIN_KERNEL);
        c
    }

    /// `berth ARGS` as this user (the binary named by `BERTH_UNDER_TEST`,
    /// if set).
    pub fn berth_command(&self, sb: &Sandbox, args: &[&str]) -> Command {
        let bin = super::berth_under_test();
        self.command(sb, &bin, args)
    }

    /// Runs `berth ARGS` as this user.
    pub fn berth(&self, sb: &Sandbox, args: &[&str]) -> Output {
        run_timeout(self.berth_command(sb, args), CMD_TIMEOUT)
    }

    /// Spawns `berth ARGS` as this user in the background; with
    /// `wait_ready`, until its command prints `ready`.
    pub fn spawn_berth(&self, sb: &Sandbox, args: &[&str], wait_ready: bool) -> super::Bg {
        sb.spawn(self.berth_command(sb, args), wait_ready)
    }

    /// PIDs of every live process this user runs (on the whole machine:
    /// the tests' uids are used by nothing else).
    pub fn processes(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_string));
            // A zombie has ended; reaping it is its parent's business (in
            // a sandbox with its own PID namespace, a `sleep` that reaps
            // nothing).
            let zombie = status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'));
            if !zombie && uid.as_deref() == Some(self.uid.to_string().as_str()) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Runs `berth ARGS` as this user and asserts it succeeded; returns
    /// stdout.
    pub fn berth_ok(&self, sb: &Sandbox, args: &[&str]) -> String {
        let out = self.berth(sb, args);
        super::assert_ok_ctx(&out, &format!("{}: berth {}", self.name, args.join(" ")));
        super::stdout(&out)
    }

    /// `berth ARGS --json` as this user, parsed.
    pub fn berth_json(&self, sb: &Sandbox, args: &[&str]) -> serde_json::Value {
        let out = self.berth(sb, args);
        let what = format!("{}: berth {}", self.name, args.join(" "));
        super::assert_ok_ctx(&out, &what);
        super::parse_json(&out, &what)
    }

    /// Runs `program args` as this user.
    pub fn run(&self, sb: &Sandbox, program: &str, args: &[&str]) -> Output {
        run_timeout(self.command(sb, program, args), CMD_TIMEOUT)
    }
}

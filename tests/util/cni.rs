//! Running berth as a CNI plugin the way a runtime does: `CNI_*` variables,
//! the network config on stdin, the result (or error) as JSON on stdout;
//! and the IPv6 outside world the CNI tests publish to.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Internet, Sandbox, CMD_TIMEOUT};

/// The result of one plugin run: exit code, stdout as JSON (Null when
/// empty), stderr.
pub struct Run {
    pub code: i32,
    pub out: Value,
    pub err: String,
}

/// Runs the berth plugin with `CNI_COMMAND=command`, the `CNI_*` variables
/// in `env` and `stdin`, in the sandbox host.
pub fn cni(sb: &Sandbox, command: &str, env: &[(&str, &str)], stdin: &str) -> Run {
    let mut c = sb.berth_command(&[]);
    c.env("CNI_COMMAND", command)
        .env("CNI_PATH", "/usr/lib/cni");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn berth");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let deadline = Instant::now() + CMD_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("berth {command} timed out");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
    };
    Run {
        code: out.status.code().unwrap_or(-1),
        out: value,
        err: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// The host's IPv6 address on the uplink, and the outside's.
pub const HOST6: &str = "2001:db8:1::1";
pub const OUTSIDE6: &str = "2001:db8:1::2";

/// The `internet` namespace with IPv6 on the uplink too: the host's IPv6
/// default route goes there, and the outside routes back to the host.
pub fn internet6(sb: &Sandbox) -> Internet {
    let inet = sb.internet();
    sb.sh_ok(&format!(
        "ip -6 addr add {HOST6}/64 dev uplink0 nodad && \
         ip -n internet -6 addr add {OUTSIDE6}/64 dev eth0 nodad && \
         ip -n internet -6 route add default via {HOST6} && \
         ip -6 route add default via {OUTSIDE6}"
    ));
    // Forwarding to a neighbour waits for the link-local addresses to
    // leave their tentative state (DAD, about a second).
    sb.sh_ok(
        "for i in $(seq 100); do \
           [ -z \"$(ip -6 addr show dev uplink0 tentative)$(ip -n internet -6 addr show dev eth0 tentative)\" ] && exit 0; \
           sleep 0.05; done; exit 1",
    );
    inet
}

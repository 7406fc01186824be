//! Asking berth's DNS server from inside a sandbox: `dig` from a namespace,
//! the reply's status, the host's resolv.conf pointed at a fake upstream,
//! and the server's PID and CPU time.

use std::process::Output;

use super::{assert_ok_ctx, stdout, Sandbox, STATE_DIR};

/// Whether `dig` is installed; prints a loud SKIP line if not.
pub fn have_dig(test: &str) -> bool {
    let ok = std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        crate::skip_line!("SKIP {test}: `dig` is not installed (Debian: dnsutils)");
    }
    ok
}

/// `dig @SERVER ARGS` from `netns` (one try, 2 s unless ARGS say otherwise).
pub fn dig(sb: &Sandbox, netns: &str, server: &str, args: &[&str]) -> Output {
    let at = format!("@{server}");
    let mut all = vec![at.as_str(), "+time=2", "+tries=1"];
    all.extend_from_slice(args);
    sb.in_netns(netns, "dig", &all)
}

/// `dig +short`: the answer's data lines.
pub fn short(sb: &Sandbox, netns: &str, server: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["+short"];
    all.extend_from_slice(args);
    let out = dig(sb, netns, server, &all);
    assert_ok_ctx(&out, &format!("dig {args:?} from {netns}"));
    stdout(&out).lines().map(str::to_string).collect()
}

/// The reply's status (NOERROR, NXDOMAIN, SERVFAIL, ...), or "no reply: ..."
/// with what dig said.
pub fn status(sb: &Sandbox, netns: &str, server: &str, args: &[&str]) -> String {
    let out = dig(sb, netns, server, args);
    let text = stdout(&out);
    text.lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .unwrap_or_else(|| format!("no reply: {}", text.trim()))
}

/// Points the sandbox host's /etc/resolv.conf (a bind mount inside the
/// sandbox only) at what `text` says (`\\n` for newlines).
pub fn host_resolv(sb: &Sandbox, text: &str) {
    sb.sh_ok(&format!(
        "printf '{text}' > /run/test-resolv.conf && \
         (mountpoint -q /etc/resolv.conf || mount --bind /run/test-resolv.conf /etc/resolv.conf)"
    ));
}

/// The PID of the sandbox's DNS server, if one runs.
pub fn server_pid(sb: &Sandbox) -> Option<u32> {
    let out = sb.cmd("cat", &[&format!("{STATE_DIR}/dns.pid")]);
    let pid: u32 = stdout(&out).trim().parse().ok()?;
    sb.processes().contains(&pid).then_some(pid)
}

/// User plus system CPU time of process `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line.
    field(11) + field(12)
}

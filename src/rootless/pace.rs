//! Paces what the user's namespace sends to pasta: a token bucket as the
//! root qdisc of pasta's interface in that namespace.
//!
//! The pasta of Debian 12 passes a namespace's TCP segments on to its own
//! host socket and discards what that socket cannot take at once, without
//! a trace in any kernel counter; the sender learns of it only by a
//! retransmission timeout, and a container sending out of a user's network
//! ran at 20 to 500 Mbit/s through 3 to 6 of them per 3 s. Forwarded
//! traffic reaches pasta in bursts as fast as the bridge can pass them;
//! held to a rate pasta keeps up with, the same upload ran with no timeout
//! at that rate (8 Gbit/s at 8, 10 to 12 at 12, measured on a 2-core
//! machine). Only the way out is paced: published ports and downloads
//! arrive from pasta on the interface's other side, where nothing queues.

use std::process::{Command, Stdio};

use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::kernel::userns;

/// The rate of the bucket: below what pasta passes on at once, above what
/// it averaged without it (see above).
pub const RATE: &str = "12gbit";
/// How much may leave at once: a few of pasta's 65520-byte frames.
const BURST: &str = "2mb";
/// How long a frame may wait in the bucket before it is dropped: the
/// queue's length, large enough that TCP backs off before it fills.
const LATENCY: &str = "20ms";

/// The interface of the default route in the namespace of `pid` (pasta's,
/// which takes the host's name), read from /proc without privilege.
fn uplink(pid: Pid) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/route")).ok()?;
    text.lines().skip(1).find_map(|l| {
        let mut f = l.split_whitespace();
        let name = f.next()?;
        (f.next() == Some("00000000")).then(|| name.to_string())
    })
}

/// The `tc` arguments that make the bucket the root qdisc of `ifname`.
pub fn tc_args(ifname: &str) -> Vec<String> {
    [
        "qdisc", "replace", "dev", ifname, "root", "tbf", "rate", RATE, "burst", BURST, "latency",
        LATENCY,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Paces pasta's interface in the namespace held by `holder` (run again
/// after each start of pasta, whose interface is new each time).
pub fn pace(holder: Pid) -> Result<()> {
    let ifname = uplink(holder)
        .ok_or_else(|| Error::Other("pasta's interface has no default route".into()))?;
    let mut cmd = Command::new("tc");
    cmd.args(tc_args(&ifname))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    userns::enter_holder(&mut cmd, holder)?;
    let out = cmd
        .output()
        .map_err(|e| Error::Other(format!("tc (iproute2): {e}")))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "tc on {ifname}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_replaces_the_root_of_the_named_link() {
        let line = tc_args("eth0").join(" ");
        assert_eq!(
            line,
            "qdisc replace dev eth0 root tbf rate 12gbit burst 2mb latency 20ms"
        );
    }
}

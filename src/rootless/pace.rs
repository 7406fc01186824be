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

use std::time::Duration;

use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::kernel::userns::Holder;
use crate::model::Limit;

/// The bucket: a rate below what pasta passes on at once, above what it
/// averaged without it (see above), and a burst of a few of pasta's
/// 65520-byte frames.
pub const LIMIT: Limit = Limit {
    rate: 12_000_000_000,
    burst: 2 << 20,
};
/// How long a frame may wait in the bucket before it is dropped: the
/// queue's length, large enough that TCP backs off before it fills.
pub const LATENCY: Duration = Duration::from_millis(20);

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

/// Paces pasta's interface in the namespace of `holder` (run again after
/// each start of pasta, whose interface is new each time), through the
/// holder's own rtnetlink socket: no process, no `tc`.
pub fn pace(holder: &mut Holder) -> Result<()> {
    let ifname = uplink(holder.pid())
        .ok_or_else(|| Error::Other("pasta's interface has no default route".into()))?;
    pace_link(holder, &ifname)
}

/// Makes the bucket the root qdisc of `ifname` in the holder's namespace.
fn pace_link(holder: &mut Holder, ifname: &str) -> Result<()> {
    holder
        .shape_egress(ifname, &LIMIT, LATENCY)
        .map_err(|e| Error::kernel(format!("pacing {ifname}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake_rtnl::{self, Answer};
    use crate::kernel::tc;

    /// What `tc qdisc replace dev IF root tbf rate 12gbit burst 2mb
    /// latency 20ms` asks for: 1.5 GB/s, a 2 MiB bucket, a queue of the
    /// rate for 20 ms plus the bucket (the message itself:
    /// `kernel::userns` and `kernel::tc` tests).
    #[test]
    fn the_bucket_is_tcs_12gbit_2mb_20ms() {
        assert_eq!(LIMIT.bytes_per_sec(), 1_500_000_000);
        assert_eq!(LIMIT.burst_u32(), 2 * 1024 * 1024);
        assert_eq!(tc::queue_within(&LIMIT, LATENCY), 30_000_000 + 2_097_152);
    }

    #[test]
    fn a_missing_link_is_an_error_not_a_request() {
        let (rtnl, sent) = fake_rtnl::rtnl(vec![Answer::Errno(libc::ENODEV)]);
        let mut holder = Holder::over(Pid::from_raw(1), rtnl);
        let err = pace_link(&mut holder, "eth9").unwrap_err();
        assert!(err.to_string().contains("eth9"), "{err}");
        assert_eq!(sent.sent().len(), 1, "only the lookup");
    }
}

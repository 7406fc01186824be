//! The supervisor's decisions, pure: what in the state is dead (a `run`
//! whose owner is gone, a ready endpoint whose veth is gone), and how long
//! to wait before a dead DNS server is started again.

use std::collections::HashSet;
use std::time::Duration;

use crate::model::Endpoint;
use crate::store::{Sandbox, Status};

/// What the supervisor reads of the state after each change: small
/// whatever the number of endpoints (a change costs it no more with 1000
/// containers than with one).
#[derive(Clone, Debug, Default)]
pub struct Watched {
    pub sandboxes: Vec<Sandbox>,
    pub dns_networks: usize,
    /// Whether some published port is forwarded from `[::1]`, which the
    /// DNS server's process does: it is kept running for that too.
    pub loopback_forwards: bool,
    /// Whether anything can die behind berth's back (see
    /// `Tx::anything_to_watch`).
    pub anything: bool,
}

/// What a look for lost things reads: the sandboxes and every endpoint.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub sandboxes: Vec<Sandbox>,
    pub endpoints: Vec<(Endpoint, Status)>,
}

/// What no one is left to take away, one line each: sandboxes whose `run`
/// is gone (`alive` says whether an owner still runs), and ready endpoints
/// whose host veth is gone (`links` are the names present), which means
/// their namespace went (or the veth was deleted by hand). Rows a command
/// is working on (`creating`, `removing`) are that command's.
pub fn lost(
    snapshot: &Snapshot,
    links: &HashSet<String>,
    alive: impl Fn(&Sandbox) -> bool,
) -> Vec<String> {
    let dead: HashSet<&str> = snapshot
        .sandboxes
        .iter()
        .filter(|s| !alive(s))
        .map(|s| s.name.as_str())
        .collect();
    let mut out: Vec<String> = snapshot
        .sandboxes
        .iter()
        .filter(|s| dead.contains(s.name.as_str()))
        .map(|s| {
            format!(
                "the `run` of sandbox {} (pid {}) ended without taking it away",
                s.name, s.owner_pid
            )
        })
        .collect();
    for (e, status) in &snapshot.endpoints {
        // A macvlan/ipvlan child is in its namespace, not in the host's
        // links: the next command's reconcile looks after it.
        if *status == Status::Ready
            && e.has_veth()
            && !links.contains(&e.host_ifname)
            && !dead.contains(e.netns.as_str())
        {
            out.push(format!(
                "the veth {} of {}/{} is gone",
                e.host_ifname, e.network, e.name
            ));
        }
    }
    out
}

/// How long to wait before starting the DNS server again after it died,
/// given how long it had run and how many times in a row it died young
/// before: a tenth of a second (so that everything a teardown kills is
/// gone first) for the first three young deaths in a row, then doubling up
/// to 30 s, so that a server that cannot start does not spin. A run of 10 s
/// or more starts the count again. Returns the delay and the new count.
pub fn restart_delay(ran: Duration, young_deaths: u32) -> (Duration, u32) {
    const FIRST: Duration = Duration::from_millis(100);
    const MOST: Duration = Duration::from_secs(30);
    let deaths = if ran >= Duration::from_secs(10) {
        1
    } else {
        young_deaths + 1
    };
    let doublings = deaths.saturating_sub(3).min(16);
    ((FIRST * 2u32.pow(doublings)).min(MOST), deaths)
}

/// How many endpoints' links a command's line says it left pending
/// (`pending N`); None for any other line (`changed`).
pub fn pending_told(line: &str) -> Option<usize> {
    line.trim()
        .strip_prefix("pending ")
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_line_counts_and_others_do_not() {
        assert_eq!(pending_told("pending 3\n"), Some(3));
        assert_eq!(pending_told("changed\n"), None);
        assert_eq!(pending_told("pending x\n"), None);
        assert_eq!(pending_told(""), None);
    }
    use crate::model::Mac;

    fn endpoint(name: &str, netns: &str, veth: &str) -> Endpoint {
        Endpoint {
            id: 1,
            network: "web".into(),
            name: name.into(),
            netns: netns.into(),
            netns_inode: 7,
            ips: vec!["10.0.0.2".parse().unwrap()],
            mac: Mac([2, 0, 0, 0, 0, 2]),
            ifname: "eth0".into(),
            host_ifname: veth.into(),
            default_route: crate::model::Families::V4,
            metric: None,
            ports: Vec::new(),
            bandwidth: Default::default(),
            allow_spoofing: false,
        }
    }

    fn sandbox(name: &str, pid: u32) -> Sandbox {
        Sandbox {
            name: name.into(),
            owner_pid: pid,
            owner_start: 1,
        }
    }

    #[test]
    fn dead_owners_and_lost_veths_of_ready_rows_are_lost_and_nothing_else() {
        let snapshot = Snapshot {
            sandboxes: vec![sandbox("r1", 10), sandbox("r2", 20)],
            endpoints: vec![
                (endpoint("a", "na", "vbaaaaaaaaaaaa"), Status::Ready),
                (endpoint("b", "nb", "vbbbbbbbbbbbbb"), Status::Ready),
                // A command is taking it down: its veth may be gone.
                (endpoint("c", "nc", "vbcccccccccccc"), Status::Removing),
                // The sandbox's own endpoint goes with the sandbox.
                (endpoint("r1", "r1", "vbdddddddddddd"), Status::Ready),
                // A macvlan child has no host link to miss.
                (endpoint("m", "nm", "vceeeeeeeeeeee"), Status::Ready),
            ],
        };
        let links: HashSet<String> = ["vbaaaaaaaaaaaa".to_string()].into();
        let lost = lost(&snapshot, &links, |s| s.owner_pid == 20);
        assert_eq!(
            lost,
            [
                "the `run` of sandbox r1 (pid 10) ended without taking it away",
                "the veth vbbbbbbbbbbbbb of web/b is gone",
            ]
        );
        let everything: HashSet<String> = ["vbaaaaaaaaaaaa", "vbbbbbbbbbbbbb", "vbdddddddddddd"]
            .map(String::from)
            .into();
        assert!(super::lost(&snapshot, &everything, |_| true).is_empty());
    }

    #[test]
    fn a_server_that_keeps_dying_young_is_restarted_ever_later() {
        let mut deaths = 0;
        let mut seen = Vec::new();
        for _ in 0..14 {
            let (delay, n) = restart_delay(Duration::from_millis(50), deaths);
            deaths = n;
            seen.push(delay.as_millis());
        }
        assert_eq!(&seen[..6], [100, 100, 100, 200, 400, 800]);
        assert_eq!(*seen.last().unwrap(), 30_000);
        // A run of ten seconds or more: at once again.
        assert_eq!(
            restart_delay(Duration::from_secs(60), deaths),
            (Duration::from_millis(100), 1)
        );
    }
}

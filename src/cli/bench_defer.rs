//! `berth bench`'s disconnect figures: every disconnect timed next to a
//! bare veth delete in the same run (one RTM_DELLINK of a veth made as
//! berth makes them, on the same bridge, with its peer in a namespace:
//! what any tool pays, since the kernel waits for an RCU grace period when
//! a device goes), and the links disconnects leave pending: how many wait
//! after each one, and how long until none does once the burst is over.
//! Then the same burst without the supervisor, to show the bound the
//! disconnects keep themselves.

use std::path::Path;
use std::time::{Duration, Instant};

use super::bench::Figures;
use super::out::outln;
use crate::context::{Context, DnsScope, NameService};
use crate::error::Result;
use crate::kernel::{netns, Kernel, VethPair};
use crate::model::{names, Mac};

/// How many links wait in the pending group now (their names are enough,
/// read cheaply from /proc).
fn pending_now(kernel: &mut dyn Kernel) -> Result<usize> {
    Ok(kernel
        .link_names()?
        .iter()
        .filter(|n| names::is_pending_name(n))
        .count())
}

/// Polls until no link waits; None after 10 s.
fn time_until_none(kernel: &mut dyn Kernel) -> Result<Option<Duration>> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if pending_now(kernel)? == 0 {
            return Ok(Some(start.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(None)
}

/// One bare veth delete: a pair made as berth makes one (untimed), then
/// deleted with one request (timed).
fn bare_delete(kernel: &mut dyn Kernel, bridge: &str, netns_name: &str) -> Result<Duration> {
    let pair = VethPair {
        host_ifname: "bref0".into(),
        bridge: bridge.into(),
        link_group: 0,
        netns: netns::named_path(netns_name),
        ifname: "bref0".into(),
        mac: Mac([2, 0x42, 10, 199, 0, 2]),
        mtu: 1500,
    };
    kernel.create_veth(&pair)?;
    let start = Instant::now();
    kernel.delete_link(&pair.host_ifname)?;
    Ok(start.elapsed())
}

/// Disconnects every namespace of `names` (with `disconnect`, timed),
/// every few of them timing a bare veth delete too, and reports both, the
/// pending links seen and how long the last took to go.
pub fn disconnects(
    ctx: &mut Context,
    names: &[String],
    bridge: &str,
    mut disconnect: impl FnMut(&mut Context, &str) -> Result<()>,
) -> Result<()> {
    // A bare delete every `every` disconnects: ~50 samples, interleaved.
    let every = (names.len() / 50).max(1);
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    let mut most = 0;
    for (i, name) in names.iter().enumerate() {
        let start = Instant::now();
        disconnect(ctx, name)?;
        ours.push(start.elapsed());
        most = most.max(pending_now(ctx.kernel.as_mut())?);
        if i % every == 0 {
            bare.push(bare_delete(ctx.kernel.as_mut(), bridge, name)?);
        }
    }
    let after = pending_now(ctx.kernel.as_mut())?;
    let gone = time_until_none(ctx.kernel.as_mut())?;
    let ours = Figures { samples: ours };
    let bare = Figures { samples: bare };
    outln!("{}", ours.summary("disconnect"));
    outln!(
        "{}",
        bare.summary("bare veth delete (one RTM_DELLINK, in-process)")
    );
    outln!(
        "disconnect / bare veth delete, medians: x{:.3}",
        ours.median() / bare.median()
    );
    outln!(
        "links pending: at most {most} after a disconnect (bound {}), {after} after the last; none {}",
        crate::background::PENDING_BOUND,
        match gone {
            Some(d) => format!("{:.0} ms later", Figures::ms(d)),
            None => "after 10 s (!)".into(),
        }
    );
    Ok(())
}

/// The DNS server's control without the supervisor: the disconnects only
/// count what they leave pending, so the bound is all that keeps the
/// group small.
struct WithoutSupervisor;

impl NameService for WithoutSupervisor {
    fn sync(&mut self, state_dir: &Path, scope: DnsScope) -> Result<Vec<String>> {
        crate::context::LiveNames.sync(state_dir, scope)
    }

    fn note_pending(&mut self, state_dir: &Path, pending: usize) -> Result<bool> {
        crate::background::note_pending(state_dir, pending)
    }

    fn pending_deleted(&mut self, state_dir: &Path) {
        crate::background::pending_deleted(state_dir)
    }
}

/// The burst again with the supervisor frozen (SIGSTOP: alive, so no one
/// starts another, but deleting nothing) and not told: the disconnects'
/// own bound is all that keeps the group small. The most links seen
/// waiting, what is left, and `up` deleting that.
pub fn burst_without_supervisor(ctx: &mut Context, names: &[String]) -> Result<()> {
    for name in names {
        let req = crate::request::AttachRequest {
            network: "bench".into(),
            target: name.clone(),
            ..Default::default()
        };
        crate::commands::connect(ctx, req)?;
    }
    let frozen = Frozen::supervisor(&ctx.state_dir);
    let live = std::mem::replace(&mut ctx.names, Box::new(WithoutSupervisor));
    let mut most = 0;
    let start = Instant::now();
    let result = (|| -> Result<()> {
        for name in names {
            let req = crate::request::DetachRequest::new(
                "bench",
                crate::request::EndpointRef::Target(name.clone()),
            );
            crate::commands::disconnect(ctx, req)?;
            most = most.max(pending_now(ctx.kernel.as_mut())?);
        }
        Ok(())
    })();
    let took = start.elapsed();
    ctx.names = live;
    drop(frozen);
    result?;
    let after = pending_now(ctx.kernel.as_mut())?;
    let start = Instant::now();
    crate::commands::maintain::up(ctx)?;
    outln!(
        "with the supervisor frozen, {} disconnects (no ports) in {:.0} ms: at most {most} links pending (bound {}), {after} after the last; `up` deleted them in {:.0} ms",
        names.len(),
        Figures::ms(took),
        crate::background::PENDING_BOUND,
        Figures::ms(start.elapsed())
    );
    Ok(())
}

/// The supervisor, stopped (SIGSTOP) until dropped.
struct Frozen(Option<nix::unistd::Pid>);

impl Frozen {
    fn supervisor(state_dir: &Path) -> Frozen {
        let pid = std::fs::read_to_string(state_dir.join(crate::background::SUPERVISOR_PID))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .filter(|p| *p > 1)
            .map(nix::unistd::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP);
        }
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
        }
    }
}

//! `berth trace --live`, the kernel side: temporary tables whose one rule
//! marks exactly one flow with `meta nftrace set 1`, a listener on the
//! nf_tables trace group, a real probe sent while it listens, and the
//! tables taken out again whatever happens. SIGINT, SIGTERM, SIGHUP and
//! SIGQUIT are held back for the few seconds this takes, so that Ctrl-C
//! ends the capture early and still leaves no table behind; the signal is
//! let through afterwards and ends the process as usual.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_nft::{Batch, Nft, TraceEvent, TraceListener};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};

use super::process::spawn_in_netns;
use crate::error::{Error, Result};

/// What to set up, what to send, for how long.
#[derive(Debug, Clone)]
pub struct LivePlan {
    /// Creates the temporary tables and their rules.
    pub setup: Batch,
    /// Removes them (whether they exist or not): run before, to clear what
    /// a killed run left, and after, always.
    pub remove: Batch,
    /// The probe: program and arguments, and the namespace it runs in
    /// (None: berth's own).
    pub program: PathBuf,
    pub args: Vec<String>,
    pub netns: Option<PathBuf>,
    /// How long the probe may run before it is killed.
    pub deadline: Duration,
    /// How long to keep listening once it has ended.
    pub settle: Duration,
}

/// What the kernel said while the probe ran.
#[derive(Debug, Clone, Default)]
pub struct LiveCapture {
    pub events: Vec<TraceEvent>,
    /// Whether the probe got its answer, and its last line of output.
    pub probe_ok: bool,
    pub probe_said: String,
    /// The destination refused the probe (nothing listens there).
    pub refused: bool,
    /// A signal asked to stop before the probe ended.
    pub interrupted: bool,
    pub elapsed: Duration,
}

fn held_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    set
}

/// Whether one of the held signals is waiting.
fn stop_asked(held: &SigSet) -> bool {
    // SAFETY: sigemptyset and sigpending fill the set they are given;
    // sigismember only reads it.
    unsafe {
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pending);
        libc::sigpending(&mut pending) == 0
            && held
                .iter()
                .any(|s| libc::sigismember(&pending, s as libc::c_int) == 1)
    }
}

/// The tables come out when this is dropped: on return, on error, and on
/// a panic's unwinding.
struct Removal<'a> {
    nft: &'a mut Nft,
    remove: &'a Batch,
}

impl Drop for Removal<'_> {
    fn drop(&mut self) {
        // Once more after a failure: a busy netlink socket is the likely
        // cause, and a table left behind would trace every later packet.
        if self.nft.apply(self.remove).is_err() {
            let _ = self.nft.apply(self.remove);
        }
    }
}

/// Runs the plan in berth's own namespace.
pub fn run(nft: &mut Nft, plan: &LivePlan) -> Result<LiveCapture> {
    let held = held_signals();
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&held), Some(&mut old))
        .map_err(|e| Error::kernel("holding back signals", e.into()))?;
    let result = capture(nft, plan, &held);
    // A signal that came meanwhile is delivered here, with the tables gone.
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    result
}

fn nft_error(what: &str, e: berth_nft::NftError) -> Error {
    Error::kernel(what, std::io::Error::other(e.to_string()))
}

fn capture(nft: &mut Nft, plan: &LivePlan, held: &SigSet) -> Result<LiveCapture> {
    let start = Instant::now();
    nft.apply(&plan.remove)
        .map_err(|e| nft_error("removing an old trace table", e))?;
    // Listening first: the kernel sends trace events only while someone
    // listens.
    let listener = TraceListener::open().map_err(|e| nft_error("joining the trace group", e))?;
    let cleanup = Removal {
        nft,
        remove: &plan.remove,
    };
    cleanup
        .nft
        .apply(&plan.setup)
        .map_err(|e| nft_error("adding the trace table", e))?;
    let mut out = LiveCapture::default();
    let mut child = spawn_probe(plan)?;
    let deadline = start + plan.deadline;
    let status = loop {
        out.events.extend(
            listener
                .read(Duration::from_millis(5))
                .map_err(|e| nft_error("reading trace events", e))?,
        );
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if stop_asked(held) {
            out.interrupted = true;
            break None;
        }
        if Instant::now() >= deadline {
            break None;
        }
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    out.events.extend(
        listener
            .read(plan.settle)
            .map_err(|e| nft_error("reading trace events", e))?,
    );
    drop(cleanup);
    let mut said = String::new();
    for pipe in [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut text = String::new();
        let _ = { pipe }.read_to_string(&mut text);
        said += &text;
    }
    out.probe_ok = status.is_some_and(|s| s.success());
    // A refusal (a TCP reset, an ICMP port unreachable) is the
    // destination's own answer: the packet got there and nothing listens.
    out.refused = said.lines().any(|l| l.starts_with("berth-probe: refused"));
    out.probe_said = said
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(if status.is_none() {
            "stopped before it ended"
        } else {
            ""
        })
        .to_string();
    out.elapsed = start.elapsed();
    Ok(out)
}

fn spawn_probe(plan: &LivePlan) -> Result<Child> {
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawned = match &plan.netns {
        None => cmd.spawn(),
        Some(path) => {
            let ns = std::fs::File::open(path)
                .map_err(|e| Error::kernel(format!("opening {}", path.display()), e))?;
            spawn_in_netns(&mut cmd, &ns, None, || Ok(()))
        }
    };
    spawned.map_err(|source| Error::Exec {
        program: plan.program.display().to_string(),
        source,
    })
}

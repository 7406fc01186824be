//! Where a command's time goes, for `berth bench --cli`: the kernel steps
//! of its plan, opening the state, the lock, and telling the DNS server
//! and the supervisor, each summed over the command. A benchmark asks for
//! them with `BERTH_PHASES` set in the environment and reads one line from
//! stderr; the rest of the time in the process is berth's own work
//! (parsing, SQL, planning, the rows), and what lies outside it is process
//! start and exit.
//!
//! Always recorded (a clock read costs ~20 ns, less than an environment
//! lookup per step), printed only when asked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that asks for the line.
pub const ENV: &str = "BERTH_PHASES";

/// The line's first word, for the reader.
pub const PREFIX: &str = "berth-phases:";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The plan's steps (what `-v` prints, one line each).
    Kernel = 0,
    /// Opening the state database (the schema is read here).
    Open = 1,
    /// Waiting for and taking the state lock.
    Lock = 2,
    /// Bringing the DNS server in line and notifying the supervisor.
    Notify = 3,
    /// The preflight's checks (a repair it starts counts here too).
    Preflight = 4,
    /// A change deciding its plan and writing its rows (`prepare`: the
    /// state's lookups and the kernel's, the planning, the inserts).
    Decide = 5,
    /// The intent's commit and, after the plan, the rows settled and
    /// committed (with the nf_tables generation).
    Record = 6,
}

const NAMES: [&str; 7] = [
    "kernel",
    "open",
    "lock",
    "notify",
    "preflight",
    "decide",
    "record",
];

static NANOS: [AtomicU64; 7] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];

/// Adds the time since `started` to `phase`.
pub fn add(phase: Phase, started: Instant) {
    let nanos = started.elapsed().as_nanos() as u64;
    NANOS[phase as usize].fetch_add(nanos, Ordering::Relaxed);
}

/// The time recorded for `phase` so far in this process (`berth bench
/// --spread` reads the kernel's share of each in-process connect).
pub fn so_far(phase: Phase) -> Duration {
    Duration::from_nanos(NANOS[phase as usize].load(Ordering::Relaxed))
}

/// Times `f` as `phase`.
pub fn timed<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = f();
    add(phase, started);
    value
}

/// Prints the line to stderr when the environment asks for it: `main`
/// (the time from entering berth's `main` to now), then each phase, in
/// nanoseconds.
pub fn report(main: Duration) {
    if std::env::var_os(ENV).is_none() {
        return;
    }
    let mut line = format!("{PREFIX} main={}", main.as_nanos());
    for (name, n) in NAMES.iter().zip(&NANOS) {
        line.push_str(&format!(" {name}={}", n.load(Ordering::Relaxed)));
    }
    eprintln!("{line}");
}

/// One process's phases, read back from its stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reported {
    pub main: Duration,
    pub kernel: Duration,
    pub open: Duration,
    pub lock: Duration,
    pub notify: Duration,
    pub preflight: Duration,
    pub decide: Duration,
    pub record: Duration,
}

impl Reported {
    /// Reads the line `report` printed, if `stderr` has one.
    pub fn parse(stderr: &str) -> Option<Reported> {
        let line = stderr.lines().find(|l| l.starts_with(PREFIX))?;
        let mut r = Reported::default();
        for word in line[PREFIX.len()..].split_whitespace() {
            let (key, value) = word.split_once('=')?;
            let d = Duration::from_nanos(value.parse().ok()?);
            match key {
                "main" => r.main = d,
                "kernel" => r.kernel = d,
                "open" => r.open = d,
                "lock" => r.lock = d,
                "notify" => r.notify = d,
                "preflight" => r.preflight = d,
                "decide" => r.decide = d,
                "record" => r.record = d,
                _ => {}
            }
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_reads_back() {
        let r = Reported::parse(
            "a warning\nberth-phases: main=2000000 kernel=700000 open=150000 lock=3000 notify=40000 preflight=50000 decide=300000 record=60000\n",
        )
        .expect("a line");
        assert_eq!(r.main, Duration::from_micros(2000));
        assert_eq!(r.kernel, Duration::from_micros(700));
        assert_eq!(r.open, Duration::from_micros(150));
        assert_eq!(r.lock, Duration::from_micros(3));
        assert_eq!(r.notify, Duration::from_micros(40));
        assert_eq!(r.preflight, Duration::from_micros(50));
        assert_eq!(r.decide, Duration::from_micros(300));
        assert_eq!(r.record, Duration::from_micros(60));
        assert_eq!(Reported::parse("no line here"), None);
    }
}

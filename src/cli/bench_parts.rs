//! `bench --cli`'s decomposition of a connect: its wall time split into
//! process start and exit, the kernel steps, and berth's own bookkeeping
//! (each connect reports its parts, see `phases`), and the bound this
//! puts on any one-process connect: one process start plus the kernel's
//! work, and with the least record SQLite allows added (`bench_record`),
//! next to the floor of the same run.

use std::time::Duration;

use super::bench::Figures;
use super::out::outln;
use crate::phases::Reported;

/// The target of issue 23: a connect at 0.6x the floor.
const TARGET: f64 = 0.6;

/// Prints the medians of each part of the connects in `parts` (each with
/// its wall time), and "one process start + the kernel's work" against
/// `floor`, all in ms; `version` and `truth` are the medians of
/// `berth --version` and `/bin/true` of the same run, `least` that of
/// SQLite's least record on a copy of the same state.
pub fn where_the_time_goes(
    parts: &[(Duration, Reported)],
    floor: f64,
    version: f64,
    truth: f64,
    least: f64,
) {
    if parts.is_empty() {
        outln!("where a connect's time goes: no connect reported its parts");
        return;
    }
    let median = |f: &dyn Fn(&(Duration, Reported)) -> Duration| {
        Figures::median_of(&parts.iter().map(f).collect::<Vec<_>>())
    };
    let wall = median(&|(w, _)| *w);
    let outside = median(&|(w, r)| w.saturating_sub(r.main));
    let main = median(&|(_, r)| r.main);
    let kernel = median(&|(_, r)| r.kernel);
    let own = median(&|(_, r)| r.main.saturating_sub(r.kernel));
    let open = median(&|(_, r)| r.open);
    let lock = median(&|(_, r)| r.lock);
    let notify = median(&|(_, r)| r.notify);
    let preflight = median(&|(_, r)| r.preflight);
    let decide = median(&|(_, r)| r.decide);
    let record = median(&|(_, r)| r.record);
    let rest = median(&|(_, r)| {
        r.main.saturating_sub(
            r.kernel + r.open + r.lock + r.notify + r.preflight + r.decide + r.record,
        )
    });
    outln!(
        "where a connect's time goes (medians of {} connects, each part on its own): wall {wall:.2} ms = process start and exit {outside:.2} ms (outside berth's main) + berth's main {main:.2} ms",
        parts.len()
    );
    outln!(
        "  berth's main = the kernel steps {kernel:.2} ms (the plan's, as -v times them) + berth's own bookkeeping {own:.2} ms"
    );
    outln!(
        "  bookkeeping: opening the state {open:.2} ms, the lock {lock:.3} ms, the preflight {preflight:.3} ms, deciding (lookups, planning, the rows) {decide:.2} ms, the intent and settled rows committed {record:.3} ms, DNS server and supervisor {notify:.3} ms, the rest (arguments, setup, output, exit from main) {rest:.2} ms"
    );
    for (what, start) in [("/bin/true", truth), ("berth --version", version)] {
        let bound = start + kernel;
        outln!(
            "one process start ({what} {start:.2} ms) + the kernel's work ({kernel:.2} ms) = {bound:.2} ms = x{:.2} the floor ({floor:.2} ms){}",
            bound / floor,
            beyond_target(bound / floor, &format!("a connect whose process starts like {what}"))
        );
    }
    let bound = version + kernel + least;
    outln!(
        "one process start (berth --version {version:.2} ms) + the kernel's work ({kernel:.2} ms) + SQLite's least record ({least:.3} ms: open and schema read, intent committed, settled committed, close; median, in process) = {bound:.2} ms = x{:.2} the floor ({floor:.2} ms){}",
        bound / floor,
        beyond_target(
            bound / floor,
            "a process that starts like berth and records its state in SQLite"
        )
    );
}

/// The verdict on a lower bound `ratio` of the floor: that `who` cannot
/// reach the target here, when the bound alone is above it.
fn beyond_target(ratio: f64, who: &str) -> String {
    if ratio > TARGET {
        format!(": above x{TARGET}, so {who} cannot reach x{TARGET} here")
    } else {
        String::new()
    }
}

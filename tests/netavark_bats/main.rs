//! netavark v1.4.0's own bats suite (`001-basic.bats`,
//! `100-bridge-iptables.bats`, `300-macvlan.bats`) run against berth acting
//! as netavark: the contract Podman 4.3 relies on.
//!
//! The suite is fetched from crates.io (`suite.rs`), each file runs in a
//! sandbox of its own (`runner.rs`), and the results are judged against
//! `tests/netavark-bats-exclusions.md` (`expectations.rs`): every test
//! passes except those the list excludes (category `a`: tests that read
//! netavark's own iptables rules, logs and aardvark-dns files). The strict
//! test is ignored while the list names no counted gap, since it then
//! judges as the CI test does; `cargo test --test netavark_bats -- --ignored`
//! runs it and names each failing test with its category and reason.
//!
//! `BATS_NETAVARK=/usr/lib/podman/netavark` runs the same suite against
//! the stock netavark instead, which proves the harness: with it, every
//! test passes except the `stock` rows of the list.
//!
//! The harness adapts only the environment, never a test; see
//! `tests/netavark_bats/README.md` for each adaptation.

#[path = "../util/mod.rs"]
mod util;

mod expectations;
mod runner;
mod suite;
mod tap;

use std::io::Write;
use std::path::{Path, PathBuf};

use expectations::{Entry, Target};
use tap::Outcome;

const LIST: &str = "tests/netavark-bats-exclusions.md";

/// Writes to the real stderr: `eprintln!` is captured, and so hidden, when
/// the test passes, and SKIP lines must be seen.
fn loud(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test: `BATS_NETAVARK`, or berth through a symlink
/// named `netavark` (berth answers as netavark under that name).
fn target() -> (Target, PathBuf) {
    if let Some(p) = std::env::var_os("BATS_NETAVARK") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "BATS_NETAVARK={} is not a file", p.display());
        return (Target::Netavark, p);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("netavark-bats/berth-as-netavark");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("netavark");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(util::BERTH, &link).unwrap();
    (Target::Berth, link)
}

/// What judging the files found, over all of them.
#[derive(Default)]
struct Verdict {
    /// Tests that had to pass and did not, with what to print for each.
    failures: Vec<String>,
    /// Listed (b/c/d) tests that now pass: their rows are stale.
    now_passing: Vec<String>,
    /// Listed (b/c/d) tests that failed, as expected until their issue
    /// lands.
    known: Vec<String>,
}

/// Judges one file's results into `verdict`; prints a line for each
/// excluded or skipped test and the file's counts.
fn judge(
    file: &str,
    run: &runner::FileRun,
    entries: &[Entry],
    target: Target,
    verdict: &mut Verdict,
) {
    let results = &run.tap.results;
    let failed = results
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Fail { .. }));
    assert_eq!(
        run.status,
        if failed { 1 } else { 0 },
        "{file}: bats' exit code disagrees with its results; its output:\n{}",
        run.raw
    );
    assert!(
        !results.is_empty() && run.tap.planned == Some(results.len()),
        "{file}: bats planned {:?} tests and reported {}; its output:\n{}",
        run.tap.planned,
        results.len(),
        run.raw
    );
    let (mut pass, mut fail, mut skip) = (0, 0, 0);
    for r in results {
        let entry = expectations::find(entries, file, &r.name, target);
        let excluded = entry.is_some_and(|e| e.category.excluded());
        let label = match entry {
            Some(e) => format!("({}) {}", e.category.code(), e.reason),
            None => "not in the list".to_string(),
        };
        match &r.outcome {
            Outcome::Pass => {
                pass += 1;
                if excluded {
                    loud(&format!(
                        "  excluded, passes: {file}: {} -- {label}",
                        r.name
                    ));
                } else if entry.is_some() {
                    verdict.now_passing.push(format!("{file}: {}", r.name));
                }
            }
            Outcome::Skip { reason } => {
                skip += 1;
                loud(&format!(
                    "SKIP {file}: {}: the suite skipped it: {reason}",
                    r.name
                ));
            }
            Outcome::Fail { detail } => {
                fail += 1;
                let line = format!("{file}: {} -- {label}", r.name);
                if excluded {
                    loud(&format!("  excluded, fails: {line}"));
                } else {
                    if entry.is_some() {
                        verdict.known.push(line.clone());
                    }
                    let mut msg = line;
                    for d in detail {
                        msg.push_str(&format!("\n      | {d}"));
                    }
                    verdict.failures.push(msg);
                }
            }
        }
    }
    loud(&format!(
        "{file}: {pass} passed, {fail} failed, {skip} skipped of {} ({:.1} s)",
        results.len(),
        run.elapsed.as_secs_f64()
    ));
}

#[test]
#[ignore = "with no gap (b/c/d) listed this judges as netavark_bats_suite_without_the_listed_gaps \
            does; run with -- --ignored, \
            or with BATS_NETAVARK=/usr/lib/podman/netavark to check the harness"]
fn netavark_bats_suite() {
    run_suite(true);
}

/// The suite as CI runs it until berth passes it whole: every test that is
/// not listed must pass, each listed gap that fails is printed as a known
/// failure, and a listed test that passes fails the run (its row must go),
/// so the list can only shrink.
#[test]
fn netavark_bats_suite_without_the_listed_gaps() {
    run_suite(false);
}

/// Runs the three files against the binary under test and judges them:
/// `strict`, every counted test must pass; otherwise the listed gaps may
/// fail (and are printed).
fn run_suite(strict: bool) {
    if let Some(why) = runner::missing_tool() {
        loud(&format!(
            "SKIP netavark_bats_suite: {why}; the suite did not run"
        ));
        return;
    }
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("netavark-bats");
    let tests_dir = match suite::fetch(&cache) {
        Ok(dir) => dir,
        Err(why) => {
            loud(&format!(
                "SKIP netavark_bats_suite: netavark {} could not be fetched: {why}; the suite did not run",
                suite::VERSION
            ));
            return;
        }
    };
    let entries = expectations::load(&repo().join(LIST));
    let (target, binary) = target();
    let harness = repo().join("tests/netavark_bats/harness");
    loud(&format!(
        "netavark {} bats suite against {} ({:?})",
        suite::VERSION,
        binary.display(),
        target
    ));

    let mut verdict = Verdict::default();
    let mut names: Vec<(String, String)> = vec![];
    for file in suite::FILES {
        let run = runner::run_file(&tests_dir, &harness, &binary, file);
        judge(file, &run, &entries, target, &mut verdict);
        names.extend(
            run.tap
                .results
                .iter()
                .map(|r| (file.to_string(), r.name.clone())),
        );
    }

    // A row that names no test of the suite is a typo or a renamed test,
    // and would exclude nothing while looking as if it did.
    let stale: Vec<String> = entries
        .iter()
        .filter(|e| !names.iter().any(|(f, t)| *f == e.file && *t == e.test))
        .map(|e| format!("{} / {}", e.file, e.test))
        .collect();
    assert!(
        stale.is_empty(),
        "{LIST} names tests the suite does not have: {stale:#?}"
    );

    for t in &verdict.now_passing {
        loud(&format!("NOW PASSES (remove its row from {LIST}): {t}"));
    }
    if !strict {
        for t in &verdict.known {
            loud(&format!("KNOWN FAILURE (listed in {LIST}): {t}"));
        }
        assert!(
            verdict.now_passing.is_empty(),
            "listed tests now pass; remove their rows from {LIST}: {:#?}",
            verdict.now_passing
        );
        let known = &verdict.known;
        verdict
            .failures
            .retain(|f| !known.iter().any(|k| f.starts_with(k.as_str())));
    }
    assert!(
        verdict.failures.is_empty(),
        "{} bats test(s) that must pass failed:\n  {}",
        verdict.failures.len(),
        verdict.failures.join("\n  ")
    );
}

#[test]
fn the_list_is_well_formed_and_names_only_the_three_files() {
    let entries = expectations::load(&repo().join(LIST));
    assert!(!entries.is_empty());
    for e in &entries {
        assert!(
            suite::FILES.contains(&e.file.as_str()),
            "{LIST}: {} is not one of the files the harness runs",
            e.file
        );
    }
}

//! Reads what `bats --tap` prints: the plan, one result line per test and
//! the `# ...` diagnostics bats prints under a failed test.

/// How one bats test ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass,
    /// `detail`: the diagnostic lines that say what went wrong.
    Fail {
        detail: Vec<String>,
    },
    /// The suite skipped the test itself (`skip REASON`).
    Skip {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    pub name: String,
    pub outcome: Outcome,
}

/// One bats file's results.
#[derive(Debug, Default)]
pub struct Tap {
    /// N of the `1..N` plan line, if bats printed one.
    pub planned: Option<usize>,
    pub results: Vec<TestResult>,
}

/// Diagnostics worth showing for a failure: bats' own failure lines, the
/// suite's assertion messages and netavark-style error answers.
const TELLING: [&str; 6] = [
    "FAIL:",
    "expected:",
    "actual:",
    "EXPECTED",
    "\"error\"",
    "failed",
];
/// At most this many diagnostic lines per failure.
const DETAIL_LINES: usize = 6;

pub fn parse(text: &str) -> Tap {
    let mut tap = Tap::default();
    let mut diag: Vec<String> = vec![];
    let finish = |tap: &mut Tap, diag: &mut Vec<String>| {
        if let Some(TestResult {
            outcome: Outcome::Fail { detail },
            ..
        }) = tap.results.last_mut()
        {
            let telling: Vec<String> = diag
                .iter()
                .filter(|l| TELLING.iter().any(|t| l.contains(t)))
                .take(DETAIL_LINES)
                .cloned()
                .collect();
            *detail = if telling.is_empty() {
                diag.iter().take(DETAIL_LINES).cloned().collect()
            } else {
                telling
            };
        }
        diag.clear();
    };
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("1..") {
            tap.planned = n.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("not ok ") {
            finish(&mut tap, &mut diag);
            tap.results.push(TestResult {
                name: name_after_number(rest).to_string(),
                outcome: Outcome::Fail { detail: vec![] },
            });
        } else if let Some(rest) = line.strip_prefix("ok ") {
            finish(&mut tap, &mut diag);
            let rest = name_after_number(rest);
            let result = match rest.split_once(" # skip") {
                Some((name, reason)) => TestResult {
                    name: name.trim().to_string(),
                    outcome: Outcome::Skip {
                        reason: reason.trim().to_string(),
                    },
                },
                None => TestResult {
                    name: rest.to_string(),
                    outcome: Outcome::Pass,
                },
            };
            tap.results.push(result);
        } else if let Some(d) = line.strip_prefix('#') {
            diag.push(d.trim().to_string());
        }
    }
    finish(&mut tap, &mut diag);
    tap
}

/// `NAME` of `N NAME`, trimmed (one upstream name starts with a space).
fn name_after_number(rest: &str) -> &str {
    rest.split_once(' ').map(|(_, n)| n).unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_passes_failures_with_their_reason_and_skips() {
        let text = "1..4\n\
            ok 1 simple\n\
            not ok 2 iptables - two networks\n\
            # (in test file x.bats, line 3)\n\
            #  nsenter -n -m -w -t 43 netavark setup\n\
            # {\"error\":\"no\"}\n\
            # #|     FAIL: eth0 port fw rule exists\n\
            ok 3 port forwarding ipv4 - sctp # skip cannot load sctp kernel module\n\
            ok 4  - default route metric\n";
        let tap = parse(text);
        assert_eq!(tap.planned, Some(4));
        assert_eq!(
            tap.results,
            vec![
                TestResult {
                    name: "simple".into(),
                    outcome: Outcome::Pass
                },
                TestResult {
                    name: "iptables - two networks".into(),
                    outcome: Outcome::Fail {
                        detail: vec![
                            "{\"error\":\"no\"}".into(),
                            "#|     FAIL: eth0 port fw rule exists".into()
                        ]
                    }
                },
                TestResult {
                    name: "port forwarding ipv4 - sctp".into(),
                    outcome: Outcome::Skip {
                        reason: "cannot load sctp kernel module".into()
                    }
                },
                TestResult {
                    name: "- default route metric".into(),
                    outcome: Outcome::Pass
                },
            ]
        );
    }

    #[test]
    fn a_failure_without_telling_lines_keeps_its_first_diagnostics() {
        let tap = parse("1..1\nnot ok 1 t\n# line one\n# line two\n");
        assert_eq!(
            tap.results[0].outcome,
            Outcome::Fail {
                detail: vec!["line one".into(), "line two".into()]
            }
        );
    }
}

//! The list of bats tests that are excluded or known to fail, with the
//! reason for each: the table in `tests/netavark-bats-exclusions.md`.
//!
//! A row is `| FILE | `TEST NAME` | CATEGORY | REASON |`. `stock` rows are
//! about runs of the stock netavark, all others about berth's; a test may
//! have one row of each. Only `stock` and `a` rows exclude a test; `b`, `c`
//! and `d` rows name gaps berth has yet to close, so those tests still
//! count, and the row only lets the report say why they fail.

use std::path::Path;

/// Which binary the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// berth, as `netavark`.
    Berth,
    /// A netavark build (the stock one proves the harness).
    Netavark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Fails with Debian's netavark build for a reason of that build, not
    /// of the harness; excluded when the stock binary runs.
    Stock,
    /// (a) reads netavark's iptables rules, its log lines or the
    /// aardvark-dns files it writes: excluded for berth.
    NetavarkInternals,
    /// (b) needs IPv6 (issue 17).
    Ipv6,
    /// (c) needs macvlan or ipvlan (issue 18).
    Macvlan,
    /// (d) another berth gap (issue 18).
    Gap,
}

impl Category {
    fn parse(code: &str) -> Option<Category> {
        Some(match code {
            "stock" => Category::Stock,
            "a" => Category::NetavarkInternals,
            "b" => Category::Ipv6,
            "c" => Category::Macvlan,
            "d" => Category::Gap,
            _ => return None,
        })
    }

    pub fn code(self) -> &'static str {
        match self {
            Category::Stock => "stock",
            Category::NetavarkInternals => "a",
            Category::Ipv6 => "b",
            Category::Macvlan => "c",
            Category::Gap => "d",
        }
    }

    /// The binary whose runs a row of this category is about: `stock`
    /// rows describe the stock netavark, all others berth.
    pub fn target(self) -> Target {
        match self {
            Category::Stock => Target::Netavark,
            _ => Target::Berth,
        }
    }

    /// Whether the test is left out of the verdict (for [`Self::target`]);
    /// otherwise the row only says why it fails today.
    pub fn excluded(self) -> bool {
        matches!(self, Category::Stock | Category::NetavarkInternals)
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub file: String,
    pub test: String,
    pub category: Category,
    pub reason: String,
}

/// The entries of the table in `path`; panics on a malformed row, so a
/// typo in the list cannot silently un-exclude or mislabel a test.
pub fn load(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse(&text)
}

pub fn parse(text: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = vec![];
    for line in text.lines().map(str::trim) {
        if !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        // The header and the separator row.
        if cells
            .first()
            .is_some_and(|c| *c == "file" || c.starts_with("---"))
        {
            continue;
        }
        assert_eq!(cells.len(), 4, "a row needs 4 cells: {line}");
        let category = Category::parse(cells[2])
            .unwrap_or_else(|| panic!("unknown category {:?} in: {line}", cells[2]));
        let entry = Entry {
            file: cells[0].to_string(),
            test: cells[1].trim_matches('`').to_string(),
            category,
            reason: cells[3].to_string(),
        };
        assert!(
            !entry.reason.is_empty(),
            "{} / {}: a reason is required",
            entry.file,
            entry.test
        );
        assert!(
            find(&entries, &entry.file, &entry.test, category.target()).is_none(),
            "{} / {} is listed twice for {:?}",
            entry.file,
            entry.test,
            category.target()
        );
        entries.push(entry);
    }
    entries
}

/// The row for `test` of `file` in runs of `target`, if listed.
pub fn find<'a>(entries: &'a [Entry], file: &str, test: &str, target: Target) -> Option<&'a Entry> {
    entries
        .iter()
        .find(|e| e.file == file && e.test == test && e.category.target() == target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_entries_for_their_target_and_only_stock_and_a_exclude() {
        let text = "intro\n\n| file | test | category | reason |\n|---|---|---|---|\n\
                    | 001-basic.bats | `netavark version` | stock | no commit |\n\
                    | 001-basic.bats | `netavark version` | d | berth's version |\n\
                    | 100-bridge-iptables.bats | `iptables - simple bridge` | a | reads iptables |\n\
                    | 300-macvlan.bats | `macvlan modes` | c | no macvlan |\n";
        let e = parse(text);
        assert_eq!(e.len(), 4);
        assert_eq!(e[2].test, "iptables - simple bridge");
        assert_eq!(e[2].category, Category::NetavarkInternals);
        let version = |t| find(&e, "001-basic.bats", "netavark version", t).unwrap();
        assert_eq!(version(Target::Netavark).category, Category::Stock);
        assert_eq!(version(Target::Berth).category, Category::Gap);
        assert!(Category::Stock.excluded() && Category::NetavarkInternals.excluded());
        assert!(!Category::Ipv6.excluded() && !Category::Macvlan.excluded());
        assert!(!Category::Gap.excluded());
        // With the stock netavark, an `a` test counts.
        assert!(find(
            &e,
            "100-bridge-iptables.bats",
            "iptables - simple bridge",
            Target::Netavark
        )
        .is_none());
        assert!(find(&e, "001-basic.bats", "macvlan modes", Target::Berth).is_none());
    }

    #[test]
    #[should_panic(expected = "unknown category")]
    fn an_unknown_category_is_refused() {
        parse("| 001-basic.bats | `x` | e | why |\n");
    }

    #[test]
    #[should_panic(expected = "listed twice")]
    fn a_test_listed_twice_for_one_target_is_refused() {
        parse("| f | `x` | a | why |\n| f | `x` | b | why |\n");
    }
}

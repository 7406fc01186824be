//! Architecture invariants, checked by reading the source tree (no build of
//! berth, no root): each holds for the code as it is, and a change that
//! breaks one fails here with the file that broke it.
//!
//! - Kernel I/O (netlink, raw and netlink sockets, namespace switching)
//!   appears only in `src/kernel/` and `crates/nft`.
//! - One flock helper: `libc::flock` appears only in `src/store/lock.rs`.
//! - Layering: a top-level module uses (through `crate::`, `super::` or
//!   `$crate::` paths) only the modules the table below lets it.
//!
//! The scanner drops comments and the contents of string and character
//! literals first, so prose and messages never count. Its own behaviour is
//! tested at the end, and each check also asserts that it saw what must be
//! there, so an empty scan cannot pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where kernel I/O is at home.
const KERNEL_HOMES: &[&str] = &["src/kernel/", "crates/nft/"];

/// What kernel I/O looks like in Rust source.
const KERNEL_IO: &[&str] = &[
    "netlink_packet",
    "netlink_sys",
    "NETLINK_",
    "AF_NETLINK",
    "Rtnl",
    "Nft::open",
    "Conntrack::open",
    "libc::socket",
    "SOCK_RAW",
    "getsockopt",
    "setsockopt",
    "setns",
    "CLONE_NEWNET",
    "socket2",
];

/// Files outside the homes that may use some of it, and why.
const KERNEL_IO_ALLOWED: &[(&str, &[&str], &str)] = &[
    (
        "src/bin/berth-probe.rs",
        KERNEL_IO,
        "the traffic probe the tests run inside namespaces: a separate binary, \
         std-only by design, never on berth's own code paths (it opens raw \
         ICMP and SCTP sockets to measure)",
    ),
    (
        "src/bin/probe/",
        KERNEL_IO,
        "the probe's crafted Ethernet frames (packet sockets), a module of \
         the probe binary above, for the same reason",
    ),
    (
        "src/portproxy/",
        &["socket2"],
        "the [::1] forwarder's ordinary TCP/UDP listeners, which need \
         IPV6_V6ONLY and SO_REUSEADDR before binding, and a reset on a \
         failed relay: no netlink, no raw socket",
    ),
    (
        "src/dns/",
        &["socket2"],
        "the DNS server's ordinary UDP/TCP listeners, which need \
         IP_FREEBIND and SO_REUSEADDR before binding: no netlink, no raw socket",
    ),
];

/// Which top-level modules each one may use. `cli`, `cni` and `netavark`
/// are the front doors and may use anything; `main.rs` and `lib.rs` are the
/// crate root. `failpoint` is a leaf (it kills the process at a named point),
/// visited by the plan's step loop as well as by the executor. From the
/// bottom up: pure values; the kernel, the state, the firewall; the DNS
/// server and its control (and `background`, which starts it and the
/// supervisor); the plan; what a command works with (`context`) and the
/// shape of one change (`change`); the reconcile; the executor; the
/// commands; the supervisor, which reconciles through them.
const LAYERS: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("failpoint", &[]),
    ("phases", &[]),
    ("model", &["error"]),
    ("request", &["model", "error"]),
    ("config", &["model", "error"]),
    ("kernel", &["model", "error"]),
    ("store", &["model", "error"]),
    ("firewall", &["model", "error"]),
    ("background", &["store", "model", "error"]),
    ("portproxy", &["store", "model", "error"]),
    (
        "dns",
        &["background", "portproxy", "store", "model", "error"],
    ),
    (
        "plan",
        &[
            "kernel",
            "firewall",
            "model",
            "error",
            "failpoint",
            "phases",
        ],
    ),
    (
        "context",
        &[
            "kernel",
            "store",
            "dns",
            "background",
            "model",
            "error",
            "phases",
        ],
    ),
    ("change", &["context", "plan", "store", "model", "error"]),
    (
        "reconcile",
        &[
            "change",
            "context",
            "plan",
            "kernel",
            "firewall",
            "model",
            "error",
            "store",
            "dns",
            "failpoint",
        ],
    ),
    (
        "executor",
        &[
            "reconcile",
            "change",
            "context",
            "plan",
            "kernel",
            "firewall",
            "model",
            "error",
            "store",
            "dns",
            "failpoint",
            "phases",
        ],
    ),
    (
        "commands",
        &[
            "executor",
            "reconcile",
            "change",
            "context",
            "request",
            "plan",
            "kernel",
            "firewall",
            "model",
            "error",
            "store",
            "dns",
            "failpoint",
            "config",
        ],
    ),
    (
        "explain",
        &[
            "commands",
            "reconcile",
            "context",
            "kernel",
            "firewall",
            "model",
            "error",
            "store",
            "dns",
            "background",
            "request",
        ],
    ),
    (
        "rootless",
        &[
            "commands",
            "background",
            "store",
            "kernel",
            "model",
            "request",
            "error",
        ],
    ),
    (
        "supervisor",
        &[
            "commands",
            "executor",
            "change",
            "context",
            "kernel",
            "model",
            "error",
            "store",
            "dns",
            "background",
        ],
    ),
];

/// The front doors: anything goes.
const FRONT_DOORS: &[&str] = &["cli", "cni", "netavark"];

/// Edges that break the layering and are being taken out, as
/// `(from, to)`. Empty now: `reconcile -> commands` (`Context`, `Outcome`)
/// went when `context` and `change` became modules of their own. A new
/// entry must come with the work that removes it; the test fails when an
/// entry no longer matches the code.
const KNOWN_VIOLATIONS_TO_REMOVE: &[(&str, &str)] = &[];

/// Items of the crate root that are re-exports, by the module they are from.
const ROOT_REEXPORTS: &[(&str, &str)] = &[("Error", "error"), ("Result", "error")];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, as paths relative to the repository.
fn rust_files(dir: &str) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable source tree") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join(dir), &mut out);
    let mut rel: Vec<String> = out
        .iter()
        .map(|p| {
            p.strip_prefix(root())
                .expect("under the root")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    rel.sort();
    rel
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).expect("readable file")
}

/// The code of a Rust file without comments, and with the contents of
/// string, byte-string and character literals emptied (their quotes stay).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == b'r'
            && matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
            && (!is_ident_byte(i.checked_sub(1).map(|p| b[p]))
                || (i >= 1 && b[i - 1] == b'b' && !is_ident_byte(i.checked_sub(2).map(|p| b[p]))))
        {
            // r"..." or r#"..."#: no escapes, ended by the same hashes.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && (0..hashes).all(|h| b.get(j + 1 + h) == Some(&b'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                } else if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let close = if b.get(i + 1) == Some(&b'\\') {
                (i + 2..b.len().min(i + 12)).find(|&k| b[k] == b'\'')
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                // Multi-byte UTF-8 characters.
                (i + 2..b.len().min(i + 6))
                    .find(|&k| b[k] == b'\'')
                    .filter(|&k| {
                        std::str::from_utf8(&b[i + 1..k]).is_ok_and(|s| s.chars().count() == 1)
                    })
            };
            match close {
                Some(k) => {
                    out.push_str("''");
                    i = k + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let len = utf8_len(c);
            out.push_str(&src[i..i + len]);
            i += len;
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

fn is_ident_byte(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The module path of a file under `src/` (`src/store/names.rs` is
/// `[store, names]`, `src/store/mod.rs` is `[store]`); None for the crate
/// root and for the separate binaries in `src/bin/`.
fn module_path(rel: &str) -> Option<Vec<String>> {
    let inner = rel.strip_prefix("src/")?.strip_suffix(".rs")?;
    if inner == "main" || inner == "lib" || inner.starts_with("bin/") {
        return None;
    }
    let mut parts: Vec<String> = inner.split('/').map(String::from).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    Some(parts)
}

/// The top-level modules that the paths in `code` (a file of module
/// `path`, comments and literals removed) reach, each with its line.
fn uses(path: &[String], code: &str) -> Vec<(String, usize)> {
    let b = code.as_bytes();
    let mut found = Vec::new();
    // Inline modules (`mod tests { ... }`) open at a brace depth.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut line = 1;
    let mut i = 0;
    let ident_at = |i: usize| -> (String, usize) {
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        (code[i..j].to_string(), j)
    };
    while i < b.len() {
        match b[i] {
            b'\n' => {
                line += 1;
                i += 1;
                continue;
            }
            b'{' => {
                depth += 1;
                i += 1;
                continue;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                while inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        let starts_word = !is_ident_byte(i.checked_sub(1).map(|p| b[p]));
        if !starts_word || !(b[i].is_ascii_alphabetic() || b[i] == b'$') {
            i += 1;
            continue;
        }
        let (word, end) = if b[i] == b'$' {
            let (w, e) = ident_at(i + 1);
            (format!("${w}"), e)
        } else {
            ident_at(i)
        };
        if word == "mod" {
            let mut j = end;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let (name, after) = ident_at(j);
            let mut k = after;
            while k < b.len() && b[k].is_ascii_whitespace() {
                k += 1;
            }
            if !name.is_empty() && b.get(k) == Some(&b'{') {
                inline.push((name, depth + 1));
            }
            i = end;
            continue;
        }
        if !matches!(word.as_str(), "crate" | "$crate" | "super" | "self")
            || !code[end..].starts_with("::")
        {
            i = end;
            continue;
        }
        let mut here: Vec<String> = path.to_vec();
        here.extend(inline.iter().map(|(n, _)| n.clone()));
        let mut base: Option<Vec<String>> = match word.as_str() {
            "crate" | "$crate" => Some(Vec::new()),
            "super" => here.split_last().map(|(_, rest)| rest.to_vec()),
            _ => Some(here.clone()),
        };
        let mut j = end + 2;
        // Further `super::` segments.
        while code[j..].starts_with("super::") {
            base = base.and_then(|b| b.split_last().map(|(_, rest)| rest.to_vec()));
            j += "super::".len();
        }
        let Some(base) = base else {
            panic!("a path above the crate root at line {line} of {path:?}");
        };
        let mut targets = Vec::new();
        if let Some(top) = base.first() {
            targets.push(top.clone());
        } else if b.get(j) == Some(&b'{') {
            // `crate::{a, b::c, d::{e, f}}`: the first name of each item.
            let mut k = j + 1;
            let mut level = 1;
            let mut expect_name = true;
            while k < b.len() && level > 0 {
                match b[k] {
                    b'{' => level += 1,
                    b'}' => level -= 1,
                    b',' if level == 1 => expect_name = true,
                    c if expect_name && (c.is_ascii_alphabetic() || c == b'_') => {
                        let (name, e) = ident_at(k);
                        targets.push(name);
                        expect_name = false;
                        k = e;
                        continue;
                    }
                    _ => {}
                }
                k += 1;
            }
        } else {
            let (name, _) = ident_at(j);
            targets.push(name);
        }
        for t in targets {
            let t = ROOT_REEXPORTS
                .iter()
                .find(|(item, _)| *item == t)
                .map_or(t.clone(), |(_, m)| m.to_string());
            found.push((t, line));
        }
        i = j;
    }
    found
}

/// (from, to) -> where, for every edge between two top-level modules.
fn edges() -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for rel in rust_files("src") {
        let Some(path) = module_path(&rel) else {
            continue;
        };
        let from = path[0].clone();
        for (to, line) in uses(&path, &code_only(&read(&rel))) {
            if to != from {
                out.entry((from.clone(), to))
                    .or_default()
                    .push(format!("{rel}:{line}"));
            }
        }
    }
    out
}

#[test]
fn kernel_io_lives_in_the_kernel_layer_and_berth_nft() {
    let mut offences = Vec::new();
    let mut seen_at_home = BTreeSet::new();
    for rel in rust_files("src").into_iter().chain(rust_files("crates")) {
        let code = code_only(&read(&rel));
        let home = KERNEL_HOMES.iter().any(|h| rel.starts_with(h));
        for token in KERNEL_IO {
            if !code.contains(token) {
                continue;
            }
            if home {
                seen_at_home.insert(*token);
                continue;
            }
            let allowed = KERNEL_IO_ALLOWED
                .iter()
                .any(|(prefix, tokens, _)| rel.starts_with(prefix) && tokens.contains(token));
            if !allowed {
                let line = code
                    .lines()
                    .position(|l| l.contains(token))
                    .map_or(0, |n| n + 1);
                offences.push(format!("{rel}:{line}: {token}"));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "kernel I/O outside src/kernel/ and crates/nft (move it behind the Kernel trait):\n{}",
        offences.join("\n")
    );
    // The scan sees kernel I/O where it is: it is not blind.
    for token in ["Rtnl", "netlink_packet", "setns", "getsockopt", "Nft::open"] {
        assert!(
            seen_at_home.contains(token),
            "{token} not found in its home"
        );
    }
}

#[test]
fn one_flock_helper() {
    let users: Vec<String> = rust_files("src")
        .into_iter()
        .filter(|rel| code_only(&read(rel)).contains("libc::flock"))
        .collect();
    assert_eq!(
        users,
        ["src/store/lock.rs"],
        "flock belongs to store::FileLock"
    );
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let table: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut top_levels = BTreeSet::new();
    for rel in rust_files("src") {
        if let Some(path) = module_path(&rel) {
            top_levels.insert(path[0].clone());
        }
    }
    let unplaced: Vec<&String> = top_levels
        .iter()
        .filter(|m| !table.contains_key(m.as_str()) && !FRONT_DOORS.contains(&m.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "put each top-level module in LAYERS or FRONT_DOORS: {unplaced:?}"
    );

    let edges = edges();
    let mut violations = BTreeMap::new();
    for ((from, to), places) in &edges {
        if !top_levels.contains(to) {
            panic!("{from} uses crate::{to}, which is no module: {places:?}");
        }
        if FRONT_DOORS.contains(&from.as_str()) {
            continue;
        }
        if !table[from.as_str()].contains(&to.as_str()) {
            violations.insert((from.as_str(), to.as_str()), places);
        }
    }
    let unknown: Vec<String> = violations
        .iter()
        .filter(|(edge, _)| !KNOWN_VIOLATIONS_TO_REMOVE.contains(edge))
        .map(|((from, to), places)| format!("{from} -> {to} at {}", places.join(", ")))
        .collect();
    assert!(
        unknown.is_empty(),
        "modules using a layer above them:\n{}",
        unknown.join("\n")
    );
    let stale: Vec<&(&str, &str)> = KNOWN_VIOLATIONS_TO_REMOVE
        .iter()
        .filter(|edge| !violations.contains_key(*edge))
        .collect();
    assert!(
        stale.is_empty(),
        "gone from the code, so take them out of KNOWN_VIOLATIONS_TO_REMOVE: {stale:?}"
    );
    // The scan sees the edges that must be there: it is not blind.
    for edge in [
        ("commands", "kernel"),
        ("kernel", "model"),
        ("reconcile", "plan"),
        ("cli", "commands"),
        ("store", "error"),
    ] {
        assert!(
            edges.contains_key(&(edge.0.to_string(), edge.1.to_string())),
            "edge {edge:?} not seen"
        );
    }
}

#[test]
fn the_scanner_drops_comments_and_literals_and_resolves_paths() {
    let code = code_only(
        "// crate::cli in a comment\nlet s = \"crate::cli\"; /* setns */ let r = r#\"Rtnl\"#;\nlet c = '\"'; let l: &'a str = x; use crate::model::Mac;\n",
    );
    assert!(!code.contains("cli"), "{code}");
    assert!(!code.contains("setns") && !code.contains("Rtnl"), "{code}");
    assert!(code.contains("crate::model::Mac"), "{code}");
    assert_eq!(code.lines().count(), 3);

    let path = vec!["store".to_string(), "names".to_string()];
    let src = "use crate::{error::Result, model::{Mac, Network}, Error};\n\
               use super::Tx;\n\
               mod tests { use super::super::Store; use super::super::super::kernel::X; }\n\
               fn f() -> $crate::dns::Y {}\n";
    let found: Vec<(String, usize)> = uses(&path, &code_only(src));
    let names: Vec<&str> = found.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        names,
        ["error", "model", "error", "store", "store", "kernel", "dns"]
    );
    assert_eq!(found[5].1, 3, "line numbers");
}

/// The layers below the front doors that must not print: what a command
/// did comes back as values, and what the user should know as notices,
/// which only the front doors (cli, cni, netavark) show.
const SILENT: &[&str] = &[
    "src/commands/",
    "src/executor.rs",
    "src/change.rs",
    "src/context.rs",
    "src/request.rs",
    "src/reconcile/",
    "src/plan/",
    "src/model/",
    "src/store/",
    "src/kernel/",
    "src/firewall/",
    "src/config.rs",
    "src/dns/control.rs",
    "src/background.rs",
    "src/explain/",
];

const PRINTING: &[&str] = &[
    "println!",
    "print!",
    "eprintln!",
    "eprint!",
    "io::stdout",
    "io::stderr",
    "dbg!",
];

/// The code of a file without its unit-test module (tests may print what
/// they measure).
fn code_without_tests(rel: &str) -> String {
    let code = code_only(&read(rel));
    match code.find("#[cfg(test)]") {
        Some(i) => code[..i].to_string(),
        None => code,
    }
}

#[test]
fn commands_and_the_layers_below_never_print() {
    let mut offences = Vec::new();
    let mut scanned = 0;
    for rel in rust_files("src") {
        if !SILENT.iter().any(|s| rel.starts_with(s)) {
            continue;
        }
        scanned += 1;
        let code = code_without_tests(&rel);
        for token in PRINTING {
            if let Some(pos) = code.find(token) {
                let line = code[..pos].lines().count();
                offences.push(format!("{rel}:{line}: {token}"));
            }
        }
    }
    assert!(scanned > 20, "the scan found only {scanned} files");
    assert!(
        offences.is_empty(),
        "printing below the front doors (return it, or make it a Notice):\n{}",
        offences.join("\n")
    );
    // Not blind: the front doors do print (the CLI through `cli/out.rs`).
    assert!(PRINTING
        .iter()
        .any(|t| code_without_tests("src/cli/out.rs").contains(t)));
}

/// The crash-safety protocol has one home: the executor is the only code
/// that commits an intent and settles it.
#[test]
fn the_intent_and_record_failpoints_appear_once() {
    for point in ["intent", "record"] {
        let needle = format!("hit(\"{point}\")");
        let places: Vec<String> = rust_files("src")
            .into_iter()
            .filter(|rel| read(rel).contains(&needle))
            .collect();
        assert_eq!(
            places,
            ["src/executor.rs"],
            "the {point:?} failpoint belongs to the executor alone"
        );
        assert_eq!(
            read("src/executor.rs").matches(&needle).count(),
            1,
            "the executor hits {point:?} once"
        );
    }
}

/// The CLI prints only through `cli/out.rs`, whose writes end the process
/// by SIGPIPE when the reader has gone: a `println!` would panic instead.
#[test]
fn the_cli_prints_through_its_sigpipe_aware_writers() {
    let mut offences = Vec::new();
    let mut scanned = 0;
    for rel in rust_files("src/cli") {
        if rel == "src/cli/out.rs" {
            continue;
        }
        scanned += 1;
        let code = code_without_tests(&rel);
        for token in ["println!", "print!", "eprintln!", "eprint!"] {
            for (pos, _) in code.match_indices(token) {
                // `outln!`/`errln!` end in the same letters: only the
                // macro itself, not a name that ends with it, counts.
                let before = code[..pos].chars().last();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let line = code[..pos].lines().count();
                offences.push(format!("{rel}:{line}: {token}"));
            }
        }
    }
    assert!(scanned >= 8, "the scan found only {scanned} files");
    assert!(
        offences.is_empty(),
        "print through cli/out.rs (outln!, out!, errln!):\n{}",
        offences.join("\n")
    );
}

//! The README as a test: its walkthrough is run command by command in a
//! sandbox and each command's output compared with what the README shows,
//! so the README and the binary cannot drift apart; and the README's
//! promises about itself (install first, the options where the commands
//! are, man pages, `--help`) hold.

mod util;

use std::time::Duration;

use util::*;

const README: &str = include_str!("../README.md");

/// One `$ command` of the walkthrough and the lines it prints.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The `console` block of the README's "Walkthrough" section.
fn walkthrough() -> Vec<Step> {
    let section = README
        .split("\n### Walkthrough\n")
        .nth(1)
        .expect("the README has a Walkthrough section");
    let section = section.split("\n## ").next().unwrap();
    let block = section
        .split("```console\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the Walkthrough has a console block");
    let mut steps: Vec<Step> = Vec::new();
    for line in block.lines() {
        match line.strip_prefix("$ ") {
            Some(command) => steps.push(Step {
                command: command.to_string(),
                expected: Vec::new(),
            }),
            None => steps
                .last_mut()
                .expect("the block starts with a command")
                .expected
                .push(line.to_string()),
        }
    }
    steps
}

/// Whether `actual` is what `expected` shows, `...` standing for any text.
fn line_matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split("...").collect();
    if parts.len() == 1 {
        return expected == actual;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first) || actual.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    if !actual.ends_with(last) {
        return false;
    }
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn the_matcher_takes_dots_for_any_text() {
    assert!(line_matches("a [...] b", "a [06/Dec/2026 02:11:36] b"));
    assert!(line_matches("x ...", "x ..."));
    assert!(line_matches("same", "same"));
    assert!(!line_matches("a [...] b", "a [1] c"));
    assert!(!line_matches("same", "other"));
    assert!(!line_matches("ab...ba", "aba"));
}

#[test]
fn the_walkthrough_runs_as_the_readme_shows() {
    let steps = walkthrough();
    assert!(steps.len() > 20, "{steps:?}");
    let sb = Sandbox::new();
    for tool in ["ip", "curl", "python3"] {
        if !sb.sh(&format!("command -v {tool}")).status.success() {
            crate::skip_line!(
                "SKIP the_walkthrough_runs_as_the_readme_shows: {tool} is not installed"
            );
            return;
        }
    }
    // `berth` on the PATH, as the README's install step puts it there.
    sb.sh_ok(&format!(
        "mkdir -p /run/bin && ln -s {BERTH} /run/bin/berth"
    ));
    let path = format!("/run/bin:{}", std::env::var("PATH").unwrap_or_default());
    for step in &steps {
        let mut cmd = sb.command(None, "sh", &["-c", &format!("{} 2>&1", step.command)]);
        cmd.env("PATH", &path)
            .env("BERTH_STATE_DIR", STATE_DIR)
            .env("BERTH_NFT_MAX_KERNEL", MIN_KERNEL)
            .current_dir("/");
        let out = run_timeout(cmd, Duration::from_secs(60));
        let printed = stdout(&out);
        let actual: Vec<&str> = printed.lines().map(str::trim_end).collect();
        assert!(
            out.status.success(),
            "README step `{}` failed ({:?}):\n{printed}",
            step.command,
            out.status
        );
        let same = actual.len() == step.expected.len()
            && step
                .expected
                .iter()
                .zip(&actual)
                .all(|(e, a)| line_matches(e, a));
        assert!(
            same,
            "README step `{}` printed something else.\n--- README ---\n{}\n--- berth ---\n{}",
            step.command,
            step.expected.join("\n"),
            actual.join("\n")
        );
    }
}

/// A section of the README by its heading, up to the next one.
fn section(heading: &str) -> &'static str {
    let start = README
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let body = &README[start + heading.len() + 2..];
    let end = body.find("\n## ").unwrap_or(body.len());
    &body[..end]
}

#[test]
fn the_readme_installs_first_and_documents_options_where_the_commands_are() {
    // berth is on the PATH before the first command that calls it.
    let install = README
        .find("install -m 0755 target/x86_64-unknown-linux-gnu/release/berth /usr/local/bin/berth")
        .expect("an install step");
    let using = README.find("\n## Using it\n").expect("a Using it section");
    assert!(install < using, "the install step comes after `Using it`");
    let using_it = section("## Using it");
    for promise in [
        "`-q`",
        "--filter",
        "--format",
        "berth port NAME",
        "berth run -d",
        "berth logs",
        "berth stop",
        "berth ps -a",
        "berth rm",
    ] {
        assert!(using_it.contains(promise), "`Using it` lacks {promise}");
    }
    let completion = section("## Shell completion and man pages");
    for misplaced in ["--format", "run -d", "berth stop"] {
        assert!(
            !completion.contains(misplaced),
            "{misplaced} is described under shell completion"
        );
    }
    // The walkthrough does not use a namespace right after disconnecting it.
    let steps = walkthrough();
    for (i, step) in steps.iter().enumerate() {
        if let Some(target) = step.command.strip_prefix("berth disconnect web ") {
            for later in &steps[i + 1..] {
                assert!(
                    !later.command.contains(&format!("exec {target}")),
                    "`{}` after `{}`",
                    later.command,
                    step.command
                );
            }
        }
    }
}

#[test]
fn man_pages_show_the_command_as_typed_and_help_the_fallback_pools() {
    let sb = Sandbox::new();
    sb.berth_ok(&["man", "/run/man"]);
    let page = stdout(&sb.cmd("cat", &["/run/man/berth-network-create.1"]));
    let synopsis = page
        .split(".SH SYNOPSIS")
        .nth(1)
        .expect("a SYNOPSIS")
        .lines()
        .nth(1)
        .unwrap_or_default();
    assert!(
        synopsis.contains("berth network create"),
        "SYNOPSIS: {synopsis}"
    );
    assert!(
        !synopsis.contains("berth-network-create"),
        "SYNOPSIS: {synopsis}"
    );
    let help = sb.berth_ok(&["network", "create", "--help"]);
    for pool in ["10.89.0.0", "172.17.0.0", "192.168.0.0"] {
        assert!(help.contains(pool), "--help lacks {pool}: {help}");
    }
}

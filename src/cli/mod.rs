//! Command-line surface: parses arguments into typed requests, calls the
//! commands, prints text or JSON and what the commands want the user to
//! know, and maps errors to exit codes (2: bad input or missing
//! privilege, 1: a failure while doing a valid request).
//!
//! - `args`: the clap definitions and the typed values they parse into.
//! - `show`: how results, plans and notices are printed.
//! - `listing`: tables, filters and `--format` for `ps`, `network ls` and
//!   `network inspect`.
//! - `jobs`: `run` in the foreground and detached, and its jobs: `stop`,
//!   `logs`, `rm`.
//! - `out`: printing that ends quietly (by SIGPIPE) when the reader goes.
//! - `demo`, `bench`, `bench_traffic`: the walkthrough and the benchmarks
//!   (`bench_record`: SQLite's least record, the floor's last part).
//! - `explain`: how `doctor` and `inspect` print.

mod args;
pub mod bench;
mod bench_defer;
mod bench_parts;
mod bench_record;
mod bench_scale;
mod bench_traffic;
pub mod demo;
mod explain;
mod jobs;
pub mod listing;
mod out;
mod show;

use std::path::PathBuf;

use crate::commands::run;
use crate::commands::{self, maintain, network, Disconnected, RemoveNetwork};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::executor::{transaction, Preflight};
use crate::request::{DetachRequest, EndpointRef};
use args::{Cli, Command, DisconnectArgs, NetworkCommand};
use bench::BenchOptions;
use out::{errln, out, outln};
use show::*;

/// Parses the arguments, runs the command, returns the exit code.
pub fn main() -> i32 {
    let started = std::time::Instant::now();
    let code = main_timed();
    crate::phases::report(started.elapsed());
    code
}

fn main_timed() -> i32 {
    one_malloc_arena();
    // Started by a container runtime as its CNI plugin.
    if crate::cni::is_plugin() {
        return crate::cni::main();
    }
    // Podman runs berth as `netavark` (a symlink), or a user as `berth netavark`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if crate::netavark::invoked_as_netavark() {
        return crate::netavark::main(args.split_off(1), None);
    }
    if args.get(1).is_some_and(|a| a == "netavark") {
        return crate::netavark::main(args.split_off(2), None);
    }
    let cli = match Cli::parse_args() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            errln!("berth: {e}");
            e.exit_code()
        }
    }
}

/// Threads share the main thread's malloc arena. A connect's work inside
/// the container's namespace runs on a thread of its own (`netns::run_in`),
/// and glibc would make that thread a new arena at its first allocation
/// (a 64 MiB mapping, trimmed and unmapped again): system calls and page
/// faults for a thread that lives a fraction of a millisecond.
fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt changes a tunable of glibc's allocator; called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// A command line clap refused: one line naming what is wrong, exit 2
/// (`--help` and `--version` print as clap does, exit 0).
fn usage_error(e: clap::Error) -> i32 {
    if !e.use_stderr() {
        let text = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            e.render().ansi().to_string()
        } else {
            e.render().to_string()
        };
        // `--version` renders without the line's end.
        let end = if text.ends_with('\n') { "" } else { "\n" };
        out!("{text}{end}");
        return 0;
    }
    let args: Vec<String> = std::env::args().collect();
    if matches!(
        e.kind(),
        clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            | clap::error::ErrorKind::MissingSubcommand
    ) {
        errln!("berth: {}", missing_command(&args));
        return 2;
    }
    let verb = args.iter().skip(1).find(|a| !a.starts_with('-'));
    if let Some(verb @ ("run" | "exec")) = verb.map(String::as_str) {
        if !args.iter().any(|a| a == "--")
            && matches!(
                e.kind(),
                clap::error::ErrorKind::UnknownArgument
                    | clap::error::ErrorKind::MissingRequiredArgument
            )
        {
            let shape = if verb == "run" {
                "berth run [--net NET] [OPTIONS] -- COMMAND [ARGS...]"
            } else {
                "berth exec [--dns] TARGET -- COMMAND [ARGS...]"
            };
            errln!("berth: put the command after `--`, as in: {shape}");
            return 2;
        }
    }
    errln!("berth: {}", one_line(&e));
    2
}

/// `berth` or `berth network` alone: which commands may follow, in one
/// line (clap would print the whole help, or list the hidden ones too).
fn missing_command(args: &[String]) -> String {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut path = vec!["berth".to_string()];
    for a in args.iter().skip(1).filter(|a| !a.starts_with('-')) {
        match cmd.find_subcommand(a).cloned() {
            Some(sub) => {
                path.push(a.clone());
                cmd = sub;
            }
            None => break,
        }
    }
    let subs: Vec<&str> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name())
        .collect();
    let path = path.join(" ");
    format!(
        "`{path}` needs a command: {} (see `{path} --help`)",
        subs.join(", ")
    )
}

/// clap's message folded into one line: its first line, the argument a
/// "missing" error names on the next, and its tips in parentheses.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .collect();
    let Some(first) = lines.first() else {
        return "invalid arguments (see `berth --help`)".into();
    };
    let mut line = first.strip_prefix("error: ").unwrap_or(first).to_string();
    let mut tips = Vec::new();
    for l in &lines[1..] {
        match l.strip_prefix("tip: ") {
            Some(tip) => tips.push(tip.to_string()),
            // clap names a missing argument on the line after its header.
            None => {
                line.push(' ');
                line.push_str(l);
            }
        }
    }
    if !tips.is_empty() {
        line.push_str(&format!(" ({})", tips.join("; ")));
    }
    line + " (see `berth --help`)"
}

/// Logs to stderr: what `-v` asks for, or what RUST_LOG says.
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match (std::env::var("RUST_LOG"), verbose) {
        (Ok(spec), _) => EnvFilter::new(spec),
        (Err(_), 0) => return,
        (Err(_), 1) => EnvFilter::new("berth=info"),
        (Err(_), _) => EnvFilter::new("berth=debug"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Commands that change nothing, so need no privilege and honour a global
/// `--dry-run` by doing what they always do.
fn reads_only(command: &Command) -> bool {
    matches!(
        command,
        Command::Ps { .. }
            | Command::Port { .. }
            | Command::Logs { .. }
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::Graph(_)
            | Command::Network(NetworkCommand::Ls { .. } | NetworkCommand::Inspect { .. })
    )
}

/// The name of a command that cannot plan without acting, for the global
/// `--dry-run`.
fn cannot_dry_run(command: &Command) -> Option<&'static str> {
    match command {
        Command::Netavark { .. } => Some("netavark"),
        Command::Bench { .. } => Some("bench"),
        Command::DnsServer { .. } => Some("dns-server"),
        Command::RunDetached => Some(crate::commands::jobs::DETACHED_COMMAND),
        Command::RootlessKeeper => Some(crate::rootless::keeper::KEEPER_COMMAND),
        _ => None,
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    if !matches!(cli.command, Command::Demo(_)) {
        init_logging(cli.globals.verbose);
    }
    let dry_run = cli.globals.dry_run || cli.command.dry_run();
    if let (true, Some(name)) = (dry_run, cannot_dry_run(&cli.command)) {
        return Err(Error::invalid(format!("{name} does not support --dry-run")));
    }
    // The demo builds its own sandbox, which needs the privileges whatever
    // it is asked to show.
    let needs_root =
        matches!(cli.command, Command::Demo(_)) || (!reads_only(&cli.command) && !dry_run);
    let mut state_dir = cli.globals.state_dir;
    if let Command::RootlessKeeper = cli.command {
        return crate::rootless::keeper::keep(&state_dir);
    }
    if !crate::rootless::refusal::privileged() {
        match rootless(&cli.command, needs_root, dry_run)? {
            Rootless::Done(code) => return Ok(code),
            Rootless::Here(dir) => state_dir = dir,
            Rootless::Root => {}
        }
    }
    let mut ctx = Context::new(state_dir, dry_run);
    let result = run_command(&mut ctx, cli.command, cli.globals.verbose);
    // What the user should know of what was done, also when a later part
    // of the command failed.
    notices(&mut ctx);
    // The process exits next.
    ctx.leave_read_only_to_exit();
    result
}

/// Errors of commands that take several names and handle each on its own
/// (as Docker does): each is reported when it happens, the others go on,
/// and the exit code says the worst.
#[derive(Default)]
struct Failures {
    code: i32,
}

impl Failures {
    fn report(&mut self, e: Error) {
        errln!("berth: {e}");
        self.code = match (self.code, e.exit_code()) {
            (0, code) => code,
            (2, 2) => 2,
            _ => 1,
        };
    }
}

fn run_command(ctx: &mut Context, command: Command, verbose: u8) -> Result<i32> {
    match command {
        Command::Network(NetworkCommand::Create(a)) => {
            if let Some(n) = done(commands::create_network(ctx, a.request()?)?) {
                notices(ctx);
                match n.driver.parent() {
                    None => outln!(
                        "created network {}: {}, bridge {}",
                        n.name,
                        show::subnet_words(&n),
                        n.bridge
                    ),
                    Some(_) => outln!(
                        "created network {}: {}, {}",
                        n.name,
                        show::subnet_words(&n),
                        n.driver
                    ),
                }
            }
        }
        Command::Network(NetworkCommand::Ls(a)) => {
            out!("{}", list_networks(ctx, &a.options())?)
        }
        Command::Network(NetworkCommand::Inspect {
            names,
            json,
            format,
        }) => {
            let mut failures = Failures::default();
            if !json && format.is_none() {
                let mut shown = Vec::new();
                for name in &names {
                    match show::network_text(ctx, name) {
                        Ok(text) => shown.push(text),
                        Err(e @ Error::Invalid(_)) => failures.report(e),
                        Err(e) => return Err(e),
                    }
                }
                for (i, network) in shown.iter().enumerate() {
                    if i > 0 {
                        outln!();
                    }
                    network.print();
                }
                return Ok(failures.code);
            }
            let mut found = Vec::new();
            let mut owners = crate::store::Owners::default();
            for name in &names {
                match network::inspect_full(ctx, name) {
                    Ok((n, endpoints, aliases, marks)) => {
                        owners.networks.extend(marks.networks);
                        owners.endpoints.extend(marks.endpoints);
                        found.push((n, endpoints, aliases));
                    }
                    Err(e @ Error::Invalid(_)) => failures.report(e),
                    Err(e) => return Err(e),
                }
            }
            let how = match &format {
                Some(f) => InspectAs::Format(f),
                None => InspectAs::Json,
            };
            print_networks_inspected(&found, &owners, how)?;
            return Ok(failures.code);
        }
        Command::Network(NetworkCommand::Rm { names, force, .. }) => {
            if ctx.dry_run {
                return plan_removals(ctx, &names, force);
            }
            let mut failures = Failures::default();
            for name in &names {
                match commands::remove_network(ctx, name, force) {
                    Ok(outcome) => {
                        if let Some(endpoints) = done(outcome) {
                            match endpoints.len() {
                                0 => outln!("removed network {name}"),
                                n => outln!(
                                    "removed network {name} and disconnected {n} endpoint(s)"
                                ),
                            }
                        }
                    }
                    Err(e) => failures.report(e),
                }
            }
            return Ok(failures.code);
        }
        Command::Network(NetworkCommand::Prune { force, .. }) => {
            let empty: Vec<String> = network::list(ctx)?
                .into_iter()
                .filter(|(_, count)| *count == 0)
                .map(|(n, _)| n.name)
                .collect();
            if !empty.is_empty() && !force && !ctx.dry_run {
                let question = format!(
                    "remove every network without endpoints ({})?",
                    empty.join(", ")
                );
                if !confirm(&question)? {
                    return Err(Error::invalid(
                        "network prune was not confirmed and removed nothing (answer y, or use -f)",
                    ));
                }
            }
            if ctx.dry_run {
                return plan_removals(ctx, &empty, false);
            }
            for name in &empty {
                if done(commands::remove_network(ctx, name, false)?).is_some() {
                    outln!("removed network {name}");
                }
            }
        }
        Command::Network(NetworkCommand::Connect(a)) | Command::Connect(a) => {
            let request = a.request();
            if let Some((e, n)) = done(commands::connect(ctx, request.clone())?) {
                notices(ctx);
                if a.json {
                    outln!(
                        "{}",
                        serde_json::to_string_pretty(&e.view(&n)).map_err(json_error)?
                    );
                } else if !e.has_veth() {
                    outln!(
                        "connected {} to {}: {} mac {} dev {} ({} of {}, gateway {})",
                        e.name,
                        n.name,
                        show::address_list(&e, &n),
                        e.mac,
                        e.ifname,
                        n.driver.name(),
                        n.driver.parent().unwrap_or_default(),
                        show::gateway_list(&n)
                    );
                } else {
                    outln!(
                        "connected {} to {}: {} mac {} dev {} (host side {}, gateway {})",
                        e.name,
                        n.name,
                        show::address_list(&e, &n),
                        e.mac,
                        e.ifname,
                        e.host_ifname,
                        show::gateway_list(&n)
                    );
                    for p in &e.ports {
                        outln!("published {p}");
                    }
                    if !e.bandwidth.is_unlimited() {
                        outln!("limited {}", e.bandwidth.summary());
                    }
                    if !request.aliases.is_empty() {
                        outln!("aliases {}", request.aliases.join(", "));
                    }
                }
            }
        }
        Command::Network(NetworkCommand::Disconnect(DisconnectArgs {
            network,
            target,
            force,
            ..
        }))
        | Command::Disconnect(DisconnectArgs {
            network,
            target,
            force,
            ..
        }) => {
            let mut request = DetachRequest::new(&network, EndpointRef::Target(target.clone()));
            request.force = force;
            match done(commands::disconnect(ctx, request)?) {
                Some(Disconnected::Removed(e)) => {
                    outln!(
                        "disconnected {} from {network} (released {})",
                        e.name,
                        e.ips_text()
                    );
                    for p in &e.ports {
                        outln!("unpublished {p}");
                    }
                }
                Some(Disconnected::NothingToDo) => {
                    outln!("nothing to do: {target} is not connected to {network}")
                }
                None => {}
            }
        }
        Command::Ps(a) => list_endpoints(ctx, &a.list.options(), a.all)?,
        Command::Port(args::PortArgs { name, private_port }) => {
            out!("{}", ports_of(ctx, &name, private_port.as_deref())?)
        }
        Command::Run(a) => return jobs::run(ctx, &a),
        Command::RunDetached => return jobs::carry_out(ctx),
        Command::RootlessKeeper => return crate::rootless::keeper::keep(&ctx.state_dir),
        Command::Stop { names, time, .. } => {
            return jobs::stop(ctx, &names, std::time::Duration::from_secs(time))
        }
        Command::Logs { name, follow } => return jobs::logs(ctx, &name, follow),
        Command::Rm { names, force, .. } => return jobs::remove(ctx, &names, force),
        Command::Exec {
            target,
            dns,
            command,
            ..
        } => {
            if ctx.dry_run {
                // Nothing runs: the command is shown as the `nsenter` line
                // that would run it.
                outln!("{}", run::exec_plan(ctx, &target, &command)?);
                return Ok(0);
            }
            return run::exec(ctx, &target, dns, &command);
        }
        Command::DnsServer { stay } => return crate::dns::serve(&ctx.state_dir, stay),
        Command::Supervise => return crate::supervisor::serve(&ctx.state_dir),
        Command::Reset(_) => {
            if let Some(r) = done(commands::reset(ctx)?) {
                outln!(
                    "reset: removed {} network(s) and {} endpoint(s)",
                    r.networks,
                    r.endpoints
                );
            }
        }
        Command::Up(_) => print_report("up", maintain::up(ctx)?),
        Command::Gc(_) => print_report("gc", maintain::gc(ctx)?),
        Command::Demo(_) => demo::demo(verbose > 0, ctx.dry_run)?,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into a buffer first: clap_complete panics on a closed pipe
            // (`berth completions bash | head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "berth", &mut script);
            out::stdout_bytes(&script);
        }
        Command::Man { dir } => {
            for page in write_man_pages(&dir)? {
                outln!("{}", page.display());
            }
        }
        Command::Graph(a) => graph(ctx, &a)?,
        // Reached only with global options first (`berth --state-dir D netavark`).
        Command::Netavark { args } => {
            return Ok(crate::netavark::main(args, Some(ctx.state_dir.clone())));
        }
        Command::Trace(a) => {
            let trace = crate::explain::trace::trace(ctx, &a.src, &a.dst, a.live)?;
            if a.json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&trace).map_err(show::json_error)?
                );
            } else {
                for line in trace.render() {
                    outln!("{line}");
                }
            }
            // A drop is an answer, not a failure of the command: 1, as
            // `grep` says "not found".
            return Ok(if trace.verdict.pass { 0 } else { 1 });
        }
        Command::Bench {
            count,
            networks,
            cli,
            ports,
            traffic,
            seconds,
            ipv6,
            spread,
        } => bench::bench(&BenchOptions {
            count,
            extra_networks: networks,
            via_cli: cli,
            ports,
            traffic,
            seconds,
            ipv6,
            spread,
        })?,
        Command::Doctor { json } => return explain::doctor(ctx, json),
        Command::Inspect { target, json } => return explain::inspect(ctx, &target, json),
    }
    Ok(0)
}

/// `graph`: the picture drawn in the format asked for (or the one the
/// output file's name says), to stdout or the file.
fn graph(ctx: &mut Context, a: &args::GraphArgs) -> Result<()> {
    use crate::explain::graph::{self, Format};
    let format = match (a.format, &a.output) {
        (Some(args::GraphFormat::Text), _) => Format::Text,
        (Some(args::GraphFormat::Dot), _) => Format::Dot,
        (Some(args::GraphFormat::Svg), _) => Format::Svg,
        (None, None) => Format::Text,
        (None, Some(path)) => match path.extension().and_then(|e| e.to_str()) {
            Some("svg") => Format::Svg,
            Some("dot" | "gv") => Format::Dot,
            Some("txt") => Format::Text,
            _ => {
                return Err(Error::invalid(format!(
                    "cannot tell the format of {} from its name: add --format svg, dot or text",
                    path.display()
                )))
            }
        },
    };
    let limit = (!a.all).then_some(graph::DEFAULT_LIMIT);
    let drawn = graph::render(&graph::read(ctx, limit)?, format);
    match &a.output {
        Some(path) => std::fs::write(path, drawn)
            .map_err(|e| Error::Other(format!("cannot write {}: {e}", path.display())))?,
        None => out!("{drawn}"),
    }
    Ok(())
}

/// `network rm A B --dry-run` (and prune's): the removals planned as one
/// transaction, so that each sees the ones before it (the last network's
/// removal also removes berth's table), as the real ones, one after the
/// other, would. A name that cannot be removed is reported and skipped.
fn plan_removals(ctx: &mut Context, names: &[String], force: bool) -> Result<i32> {
    let mut failed = Vec::new();
    let outcome = transaction(ctx, Preflight::Run, |txn| {
        for name in names {
            if let Err(e) = txn.apply(RemoveNetwork::new(name, force)) {
                failed.push(e);
            }
        }
        Ok(())
    })?;
    done(outcome);
    let mut failures = Failures::default();
    for e in failed {
        failures.report(e);
    }
    Ok(failures.code)
}

/// Asks a yes/no question on stderr and reads the answer from stdin, as
/// Docker's prompts do (whether or not stdin is a terminal): only `y` or
/// `yes` is a yes; end of input is a no.
fn confirm(question: &str) -> Result<bool> {
    use std::io::{BufRead, IsTerminal};
    // On a terminal the answer ends the line; otherwise it is not echoed.
    let end = if std::io::stdin().is_terminal() {
        ""
    } else {
        "\n"
    };
    out::stderr(format_args!("berth: {question} [y/N] {end}"));
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Writes one man page per command and subcommand; returns their paths.
fn write_man_pages(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Other(format!("cannot create {}: {e}", dir.display())))?;
    let mut written = Vec::new();
    fn walk(
        cmd: clap::Command,
        prefix: &str,
        typed_prefix: &str,
        dir: &std::path::Path,
        out: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let name = if prefix.is_empty() {
            cmd.get_name().to_string()
        } else {
            format!("{prefix}-{}", cmd.get_name())
        };
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        // The page is berth-network-create(1); its SYNOPSIS is what one
        // types, `berth network create`.
        let typed = if typed_prefix.is_empty() {
            cmd.get_name().to_string()
        } else {
            format!("{typed_prefix} {}", cmd.get_name())
        };
        clap_mangen::Man::new(
            cmd.clone()
                .name(name.clone())
                .display_name(name.clone())
                .bin_name(typed.clone()),
        )
        .render(&mut page)
        .map_err(Error::Io)?;
        std::fs::write(&path, page).map_err(Error::Io)?;
        out.push(path);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), &name, &typed, dir, out)?;
        }
        Ok(())
    }
    // clap_mangen builds each page's command on its own (which also
    // builds its deferred arguments), without the tree's global options.
    walk(
        <Cli as clap::CommandFactory>::command(),
        "",
        "",
        dir,
        &mut written,
    )?;
    Ok(written)
}

/// What an ordinary user's command becomes.
enum Rootless {
    /// It ran (inside the user's namespaces, or rootless on its own).
    Done(i32),
    /// It reads the user's rootless state here (no keeper runs).
    Here(PathBuf),
    /// It needs nothing of root.
    Root,
}

/// An ordinary user's command: `run` without a network of berth's in a
/// namespace of its own; what works on the user's networks inside the
/// user's namespaces; what only root can do refused in one line.
fn rootless(command: &Command, needs_root: bool, dry_run: bool) -> Result<Rootless> {
    use crate::rootless::enter;
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match command {
        Command::Run(a) if !a.names_a_network() => {
            return rootless_run(a, dry_run).map(Rootless::Done)
        }
        Command::Demo(_) | Command::Bench { .. } | Command::Netavark { .. } if needs_root => {
            return Err(crate::rootless::refusal::needs_root(&subcommand_words()));
        }
        Command::Completions { .. } | Command::Man { .. } => return Ok(Rootless::Root),
        _ => {}
    }
    // A state directory named by the user is the user's business.
    if std::env::var_os("BERTH_STATE_DIR").is_some()
        || args
            .iter()
            .any(|a| a.to_string_lossy().starts_with("--state-dir"))
    {
        if needs_root {
            return Err(crate::rootless::refusal::needs_root(&subcommand_words()));
        }
        return Ok(Rootless::Root);
    }
    let dir = enter::state_dir(&subcommand_words())?;
    let start = needs_root && !dry_run;
    let mut args = args;
    if let Command::Network(NetworkCommand::Create(a)) = command {
        if !a.has_mtu() {
            // The user's bridges take pasta's MTU: TCP crosses pasta in
            // segments 43 times as large (into a container through a
            // published port: 1.1 Gbit/s at 1500, 5 Gbit/s at 65520).
            args.extend([
                "--mtu".into(),
                crate::rootless::net::PASTA_MTU.to_string().into(),
            ]);
        }
    }
    Ok(match enter::inside(&args, &dir, start)? {
        Some(code) => Rootless::Done(code),
        None => Rootless::Here(dir),
    })
}

/// `run` by an ordinary user: in a user namespace of its own.
fn rootless_run(a: &args::RunArgs, dry_run: bool) -> Result<i32> {
    use crate::rootless::run::RunFlags;
    let flags = RunFlags {
        detach: a.detach,
        quiet: a.quiet,
    };
    if dry_run {
        for line in crate::rootless::run::dry_run(&a.request(), flags)? {
            outln!("{line}");
        }
        return Ok(0);
    }
    crate::rootless::run::run(&a.request(), flags)
}

/// The subcommand path this process was asked for (`network create`),
/// for messages that name the command.
fn subcommand_words() -> String {
    let mut words = Vec::new();
    if let Ok(m) = <Cli as clap::CommandFactory>::command().try_get_matches() {
        let mut m = &m;
        while let Some((name, sub)) = m.subcommand() {
            words.push(name.to_string());
            m = sub;
        }
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every option and argument of every command says what it is for.
    #[test]
    fn every_option_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::tree(), "berth", &mut missing);
        assert!(missing.is_empty(), "options without help: {missing:#?}");
        Cli::tree().debug_assert();
    }

    /// `--dry-run` is offered exactly where it holds.
    #[test]
    fn dry_run_is_offered_only_where_it_holds() {
        let cmd = Cli::tree();
        let offers = |path: &[&str]| {
            let mut c = &cmd;
            for p in path {
                c = c.find_subcommand(p).expect("subcommand");
            }
            c.get_arguments().any(|a| a.get_id() == "dry_run")
        };
        for yes in [
            &["connect"][..],
            &["disconnect"],
            &["exec"],
            &["reset"],
            &["up"],
            &["gc"],
            &["network", "create"],
            &["network", "rm"],
            &["network", "prune"],
            &["network", "connect"],
            &["run"],
            &["stop"],
            &["rm"],
            &["demo"],
        ] {
            assert!(offers(yes), "{yes:?} should offer --dry-run");
        }
        for no in [
            &["ps"][..],
            &["port"],
            &["logs"],
            &["network", "ls"],
            &["network", "inspect"],
        ] {
            assert!(!offers(no), "{no:?} must not offer --dry-run");
        }
    }

    #[test]
    fn top_level_help() {
        let help = Cli::command().render_help().to_string();
        expect_test::expect_file!["../../tests/snapshots/help.txt"].assert_eq(&help);
    }
}

//! Command-line surface: parses arguments into typed requests, calls the
//! commands, prints text or JSON and what the commands want the user to
//! know, and maps errors to exit codes (2: bad input or missing
//! privilege, 1: a failure while doing a valid request).
//!
//! - `args`: the clap definitions and the typed values they parse into.
//! - `show`: how results, plans and notices are printed.
//! - `listing`: tables, filters and `--format` for `ps` and `network ls`.
//! - `demo`, `bench`, `bench_traffic`: the walkthrough and the benchmarks.

mod args;
pub mod bench;
mod bench_traffic;
pub mod demo;
pub mod listing;
mod show;

use std::path::PathBuf;

use clap::Parser;

use crate::commands::run::{self, Start};
use crate::commands::{self, maintain, network, Disconnected};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::request::{DetachRequest, EndpointRef};
use args::{Cli, Command, DisconnectArgs, NetworkCommand};
use bench::BenchOptions;
use show::*;

/// Parses the arguments, runs the command, returns the exit code.
pub fn main() -> i32 {
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e}");
            e.exit_code()
        }
    }
}

/// A command line clap refused: one line naming what is wrong, exit 2
/// (`--help` and `--version` print as clap does, exit 0).
fn usage_error(e: clap::Error) -> i32 {
    if !e.use_stderr() {
        let _ = e.print();
        return 0;
    }
    let args: Vec<String> = std::env::args().collect();
    let is_run = args.iter().skip(1).find(|a| !a.starts_with('-')) == Some(&"run".to_string());
    if is_run
        && !args.iter().any(|a| a == "--")
        && matches!(
            e.kind(),
            clap::error::ErrorKind::UnknownArgument
                | clap::error::ErrorKind::MissingRequiredArgument
        )
    {
        eprintln!(
            "berth: put the command after `--`, as in: berth run [--net NET] [OPTIONS] -- COMMAND [ARGS...]"
        );
        return 2;
    }
    let text = e.render().to_string();
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // clap names a missing argument on the line after its header.
    let detail = if e.kind() == clap::error::ErrorKind::MissingRequiredArgument {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .nth(1)
            .filter(|l| !l.starts_with("Usage:"))
            .map(|l| format!(" {l}"))
            .unwrap_or_default()
    } else {
        String::new()
    };
    eprintln!("berth: {first}{detail} (see `berth --help`)");
    2
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

fn dispatch(cli: Cli) -> Result<i32> {
    if !matches!(cli.command, Command::Demo) {
        init_logging(cli.verbose);
    }
    let mutates = !matches!(
        cli.command,
        Command::Ps { .. }
            | Command::Port { .. }
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::Network(NetworkCommand::Ls { .. } | NetworkCommand::Inspect { .. })
    );
    let dry_run = cli.dry_run || cli.command.dry_run();
    if mutates && !dry_run {
        require_privileges()?;
    }
    let mut ctx = Context::new(cli.state_dir, dry_run);
    let result = run_command(&mut ctx, cli.command, cli.dry_run, cli.verbose);
    // What the user should know of what was done, also when a later part
    // of the command failed.
    notices(&mut ctx);
    result
}

fn run_command(
    ctx: &mut Context,
    command: Command,
    global_dry_run: bool,
    verbose: u8,
) -> Result<i32> {
    match command {
        Command::Network(NetworkCommand::Create(a)) => {
            if let Some(n) = done(commands::create_network(ctx, a.request())?) {
                notices(ctx);
                println!(
                    "created network {}: subnet {}, gateway {}, bridge {}",
                    n.name, n.subnet, n.gateway, n.bridge
                );
            }
        }
        Command::Network(NetworkCommand::Ls(a)) => {
            print!("{}", list_networks(ctx, &a.options())?)
        }
        Command::Network(NetworkCommand::Inspect { names, json }) => {
            let mut found = Vec::new();
            for name in &names {
                let (n, endpoints) = network::inspect(ctx, name)?;
                let aliases = crate::dns::aliases(&ctx.state_dir, &endpoints)?; // DNS
                found.push((n, endpoints, aliases));
            }
            print_networks_inspected(&found, &owners(ctx)?, json)?;
        }
        Command::Network(NetworkCommand::Rm { names, force, .. }) => {
            // Checked first, so a typo in the third name removes nothing.
            for name in &names {
                network::inspect(ctx, name)?;
            }
            for name in &names {
                if let Some(endpoints) = done(commands::remove_network(ctx, name, force)?) {
                    match endpoints.len() {
                        0 => println!("removed network {name}"),
                        n => println!("removed network {name} and disconnected {n} endpoint(s)"),
                    }
                }
            }
        }
        Command::Network(NetworkCommand::Prune(_)) => {
            let empty: Vec<String> = network::list(ctx)?
                .into_iter()
                .filter(|(_, count)| *count == 0)
                .map(|(n, _)| n.name)
                .collect();
            for name in &empty {
                if done(commands::remove_network(ctx, name, false)?).is_some() {
                    println!("removed network {name}");
                }
            }
        }
        Command::Network(NetworkCommand::Connect(a)) | Command::Connect(a) => {
            let request = a.request();
            if let Some((e, n)) = done(commands::connect(ctx, request.clone())?) {
                notices(ctx);
                if a.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&e.view(&n)).map_err(json_error)?
                    );
                } else {
                    println!(
                        "connected {} to {}: {}/{} mac {} dev {} (host side {}, gateway {})",
                        e.name,
                        n.name,
                        e.ip,
                        n.subnet.prefix_len(),
                        e.mac,
                        e.ifname,
                        e.host_ifname,
                        n.gateway
                    );
                    for p in &e.ports {
                        println!("published {p}");
                    }
                    if !request.aliases.is_empty() {
                        println!("aliases {}", request.aliases.join(", "));
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
                    println!("disconnected {} from {network} (released {})", e.name, e.ip);
                    for p in &e.ports {
                        println!("unpublished {p}");
                    }
                }
                Some(Disconnected::NothingToDo) => {
                    println!("nothing to do: {target} is not connected to {network}")
                }
                None => {}
            }
        }
        Command::Ps(a) => print!("{}", list_endpoints(ctx, &a.options())?),
        Command::Port { name, private_port } => {
            print!("{}", ports_of(ctx, &name, private_port.as_deref())?)
        }
        Command::Run(a) => {
            if global_dry_run {
                return Err(Error::invalid("run does not support --dry-run"));
            }
            let request = a.request();
            if a.detach {
                let name = run::detach(ctx, &request)?;
                println!("{name}");
                return Ok(0);
            }
            return run_attached(ctx, &request, a.quiet);
        }
        Command::RunDetached => {
            let request = run::read_detached_request()?;
            return run_attached(ctx, &request, false);
        }
        Command::Stop { names } => {
            for name in &names {
                run::stop(ctx, name)?;
                println!("{name}");
            }
        }
        Command::Exec {
            target,
            dns,
            command,
            ..
        } => {
            if ctx.dry_run {
                // Nothing runs: the command is shown as the `nsenter` line
                // that would run it.
                println!("{}", run::exec_plan(ctx, &target, &command)?);
                return Ok(0);
            }
            return run::exec(ctx, &target, dns, &command);
        }
        Command::DnsServer { stay } => return crate::dns::serve(&ctx.state_dir, stay),
        Command::Supervise => return crate::supervisor::serve(&ctx.state_dir),
        Command::Reset(_) => {
            if let Some(r) = done(commands::reset(ctx)?) {
                println!(
                    "reset: removed {} network(s) and {} endpoint(s)",
                    r.networks, r.endpoints
                );
            }
        }
        Command::Up(_) => print_report("up", maintain::up(ctx)?),
        Command::Gc(_) => print_report("gc", maintain::gc(ctx)?),
        Command::Demo => demo::demo(verbose > 0)?,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into a buffer first: clap_complete panics on a closed pipe
            // (`berth completions bash | head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "berth", &mut script);
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
        }
        Command::Man { dir } => {
            for page in write_man_pages(&dir)? {
                println!("{}", page.display());
            }
        }
        // Reached only with global options first (`berth --dry-run netavark`).
        Command::Netavark { args } => {
            if ctx.dry_run {
                return Err(Error::invalid("netavark does not support --dry-run"));
            }
            return Ok(crate::netavark::main(args, Some(ctx.state_dir.clone())));
        }
        Command::Bench {
            count,
            networks,
            cli,
            ports,
            traffic,
            seconds,
        } => bench::bench(&BenchOptions {
            count,
            extra_networks: networks,
            via_cli: cli,
            ports,
            traffic,
            seconds,
        })?,
    }
    Ok(0)
}

/// `run` in the foreground: makes the sandbox, says what it made (before
/// the command starts, so it is the first thing seen, picked host ports
/// included), runs the command, and returns its exit code.
fn run_attached(ctx: &mut Context, request: &run::RunRequest, quiet: bool) -> Result<i32> {
    let started = match run::start(ctx, request)? {
        Start::Host => return Err(run::exec_on_host(request)),
        Start::Sandbox(s) => *s,
    };
    notices(ctx);
    if let (false, Some((e, n))) = (quiet, &started.attached) {
        eprintln!(
            "berth: {} on network {}: {}/{} via {}",
            e.name,
            n.name,
            e.ip,
            n.subnet.prefix_len(),
            n.gateway
        );
        for p in &e.ports {
            eprintln!("berth: published {p}");
        }
    }
    run::wait(ctx, started, request)
}

/// Writes one man page per command and subcommand; returns their paths.
fn write_man_pages(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Other(format!("cannot create {}: {e}", dir.display())))?;
    let mut written = Vec::new();
    fn walk(
        cmd: clap::Command,
        prefix: &str,
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
        clap_mangen::Man::new(cmd.clone().name(name.clone()))
            .render(&mut page)
            .map_err(Error::Io)?;
        std::fs::write(&path, page).map_err(Error::Io)?;
        out.push(path);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), &name, dir, out)?;
        }
        Ok(())
    }
    walk(
        <Cli as clap::CommandFactory>::command(),
        "",
        dir,
        &mut written,
    )?;
    Ok(written)
}

/// berth changes links, routes and namespaces: it needs CAP_NET_ADMIN and
/// CAP_SYS_ADMIN. Checked up front so the user gets one clear line, not an
/// EPERM from the middle of a plan.
fn require_privileges() -> Result<()> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_NET_ADMIN) && has(CAP_SYS_ADMIN) {
        Ok(())
    } else {
        Err(Error::Privilege(
            "this command needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); run it with sudo".into(),
        ))
    }
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
        walk(&Cli::command(), "berth", &mut missing);
        assert!(missing.is_empty(), "options without help: {missing:#?}");
        Cli::command().debug_assert();
    }

    /// `--dry-run` is offered exactly where it holds.
    #[test]
    fn dry_run_is_offered_only_where_it_holds() {
        let cmd = Cli::command();
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
        ] {
            assert!(offers(yes), "{yes:?} should offer --dry-run");
        }
        for no in [
            &["run"][..],
            &["ps"],
            &["port"],
            &["stop"],
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

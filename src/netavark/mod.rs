//! berth as Podman's network backend: a netavark-compatible command line.
//!
//! Podman (4.x) does not wire networks itself; it runs a helper called
//! `netavark` with the request as JSON on stdin:
//!
//! ```text
//! netavark --config DIR [--rootless BOOL] [--aardvark-binary PATH] [--file FILE] setup|teardown NETNS
//! netavark [--config DIR] update NETWORK --network-dns-servers A,B
//! netavark firewall-reload
//! netavark firewalld-reload
//! netavark version
//! netavark --version
//! ```
//!
//! That is netavark 1.4's command line (its `update` is what Podman 4.7
//! and later use for `podman network update`) with, of later netavarks,
//! `firewalld-reload` (netavark 1.9) and `firewall-reload` (netavark
//! 1.17). Their options `--firewall-driver` and `--plugin-directory` are
//! accepted and unused.
//!
//! berth answers as netavark when its binary is invoked under that name
//! (a symlink in Podman's `helper_binaries_dir`) and as `berth netavark`.
//! Podman decodes the answer strictly: on success the `StatusBlock` map (or
//! nothing, for teardown) on stdout; on failure exactly `{"error":"..."}` on
//! stdout and exit code 1. `types.rs` is the wire format, `setup.rs` the
//! translation onto berth's networks and endpoints.
//!
//! State is berth's own (`BERTH_STATE_DIR`, default /var/lib/berth, or for
//! rootless Podman `berth` in the `--config` directory);
//! `--aardvark-binary` is accepted and unused.
//! Each request is one transaction under berth's state lock, so "first
//! container makes the network, last one removes it" holds when Podman
//! starts and stops containers in parallel.

pub mod reload;
pub mod setup;
pub mod types;
pub mod update;

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Parser, Subcommand};

use crate::context::{Context, Notice};
use crate::error::{Error, Result};
use crate::store;

/// The netavark release whose command line, JSON and behaviour berth
/// implements (the one Podman 4.3 ships with).
const NETAVARK_VERSION: &str = "1.4.0";

#[derive(Parser)]
#[command(
    name = "netavark",
    version = concat!("1.4.0 (berth ", env!("CARGO_PKG_VERSION"), ")"),
    about = "berth acting as Podman's netavark network backend"
)]
struct Args {
    /// netavark's configuration directory (with --rootless true, berth's
    /// state goes in `berth` under it, unless BERTH_STATE_DIR names one).
    #[arg(short, long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// Podman runs rootless: netavark runs as root of the user's namespace,
    /// in Podman's rootless network namespace.
    #[arg(short, long, action = ArgAction::Set, value_name = "BOOL")]
    rootless: Option<bool>,
    /// aardvark-dns's path (accepted, unused).
    #[arg(short, long, value_name = "PATH")]
    aardvark_binary: Option<PathBuf>,
    /// Read the options JSON from FILE instead of stdin.
    #[arg(short, long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// netavark's firewall driver (accepted, unused: berth has its own).
    #[arg(long, value_name = "DRIVER")]
    firewall_driver: Option<String>,
    /// netavark's plugin directories (accepted, unused).
    #[arg(long = "plugin-directory", value_name = "DIR")]
    plugin_directories: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach the container in NETNS to its networks.
    Setup { netns: String },
    /// Detach the container in NETNS from its networks.
    Teardown { netns: String },
    /// Set the upstream DNS servers of NETWORK's containers (comma-separated;
    /// "" for the host's resolvers).
    Update {
        network_name: String,
        #[arg(long, required = true, value_name = "SERVERS")]
        network_dns_servers: Vec<String>,
    },
    /// Restore berth's firewall rules from its state, once.
    #[command(name = "firewall-reload")]
    FirewallReload,
    /// Restore berth's firewall rules now and whenever the ruleset changes
    /// (a firewall reload), until killed.
    #[command(name = "firewalld-reload")]
    FirewalldReload,
    /// Print version information as JSON.
    Version,
}

/// Whether the process was started under the name `netavark`.
pub fn invoked_as_netavark() -> bool {
    std::env::args_os()
        .next()
        .and_then(|a| Path::new(&a).file_name().map(|f| f == "netavark"))
        .unwrap_or(false)
}

/// Runs one netavark command line (`args` without the program name) and
/// returns the exit code. The state lives in `state_dir`, by default in
/// `BERTH_STATE_DIR` or berth's default directory.
pub fn main(args: Vec<OsString>, state_dir: Option<PathBuf>) -> i32 {
    let argv = std::iter::once(OsString::from("netavark")).chain(args);
    let parsed = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return 0;
        }
        Err(e) => return fail(&e.render().to_string()),
    };
    let state_dir = state_dir
        .or_else(|| std::env::var_os("BERTH_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| default_state_dir(&parsed));
    match run(parsed, state_dir) {
        Ok(Some(out)) => {
            println!("{out}");
            0
        }
        Ok(None) => 0,
        Err(e) => fail(&in_netavarks_words(&e).unwrap_or_else(|| e.to_string())),
    }
}

/// Where berth keeps its state when nothing names a directory: berth's
/// default for rootful Podman; for rootless Podman (which runs netavark as
/// root of the user's namespace, inside its rootless network namespace,
/// where the host's /var/lib is not the user's to write) a `berth`
/// directory in netavark's `--config` directory, which is the user's own
/// (`$XDG_RUNTIME_DIR/containers/networks`).
fn default_state_dir(args: &Args) -> PathBuf {
    match (args.rootless, &args.config) {
        (Some(true), Some(config)) => config.join("berth"),
        _ => PathBuf::from(store::DEFAULT_DIR),
    }
}

/// netavark's words for a failure Podman users know it by, where berth's
/// differ only in wording.
fn in_netavarks_words(e: &Error) -> Option<String> {
    match e {
        Error::Apply { step, cause, .. }
            if step.trim_start_matches('`').starts_with("sysctl -w ") =>
        {
            match &**cause {
                Error::Kernel { source, .. } => Some(format!("Sysctl error: IO Error: {source}")),
                _ => None,
            }
        }
        // The kernel refuses IPv6 addresses where IPv6 is disabled
        // (`disable_ipv6`); the first one berth adds is the bridge's.
        Error::Apply { step, cause, .. }
            if step.trim_start_matches('`').starts_with("ip -6 addr ") =>
        {
            match &**cause {
                Error::Kernel { source, .. } if source.raw_os_error() == Some(libc::EACCES) => {
                    Some(format!(
                        "add ip addr to bridge: failed to add ipv6 address, is ipv6 enabled in the kernel?: Netlink error: {source}"
                    ))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Prints the error the way netavark does (Podman parses it) and returns
/// the exit code.
fn fail(message: &str) -> i32 {
    let first = message
        .trim()
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ");
    let json = serde_json::json!({ "error": first });
    println!("{json}");
    1
}

fn run(args: Args, state_dir: PathBuf) -> Result<Option<String>> {
    let (netns, setup) = match &args.command {
        Command::Version => {
            let v = types::Version {
                version: NETAVARK_VERSION.into(),
                berth: env!("CARGO_PKG_VERSION").into(),
                commit: option_env!("BERTH_COMMIT").unwrap_or("unknown").into(),
                build_time: option_env!("BERTH_BUILD_TIME").unwrap_or("unknown").into(),
                target: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            };
            return Ok(Some(to_json(&v)?));
        }
        Command::Setup { netns } => (netns, true),
        Command::Teardown { netns } => (netns, false),
        Command::Update {
            network_name,
            network_dns_servers,
        } => {
            let servers = update::parse_servers(network_dns_servers)?;
            let mut ctx = Context::new(state_dir, false);
            let result = update::update(&mut ctx, network_name, servers);
            print_notices(&mut ctx);
            return result.map(|()| None);
        }
        Command::FirewallReload => {
            let mut ctx = Context::new(state_dir, false);
            let result = reload::reload_once(&mut ctx);
            print_notices(&mut ctx);
            for line in result? {
                eprintln!("berth: {line}");
            }
            return Ok(None);
        }
        Command::FirewalldReload => {
            let mut ctx = Context::new(state_dir, false);
            reload::watch(&mut ctx, |result| match result {
                Ok(lines) => lines.iter().for_each(|l| eprintln!("berth: {l}")),
                Err(e) => eprintln!("berth: reloading the firewall failed: {e}"),
            });
        }
    };
    // netavark's words for a missing namespace or options file, which
    // Podman shows.
    // (Teardown goes on without it: what berth recorded still goes.)
    // Nothing goes to stderr with them: Podman and netavark's own tests
    // read stdout and stderr together as the one JSON error (Podman knows
    // the paths it passed).
    if setup {
        std::fs::metadata(netns)
            .map_err(|e| Error::invalid(format!("invalid namespace path: IO error: {e}")))?;
    }
    let mut text = String::new();
    match &args.file {
        Some(f) => File::open(f)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| {
                Error::invalid(format!("failed to load network options: IO error: {e}"))
            })?,
        None => std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::invalid(format!("cannot read the options from stdin: {e}")))?,
    };
    let opts: types::NetworkOptions = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("invalid network options JSON: {e}")))?;
    let mut ctx = Context::new(state_dir, false);
    let result = if setup {
        setup::setup(&mut ctx, netns, &opts).and_then(|status| Ok(Some(to_json(&status)?)))
    } else {
        setup::teardown(&mut ctx, netns, &opts).map(|()| None)
    };
    print_notices(&mut ctx);
    result
}

/// Podman reads stdout as JSON; what the user should know goes to
/// stderr, which Podman logs.
fn print_notices(ctx: &mut Context) {
    for n in ctx.take_notices() {
        match n {
            Notice::Repaired { reason, lines } => {
                eprintln!("berth: {reason}; repaired first: {}", lines.join("; "))
            }
            Notice::Warning(w) => eprintln!("berth: warning: {w}"),
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Other(format!("encoding JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_sysctl_write_is_reported_in_netavarks_words() {
        let e = Error::Apply {
            step: "`sysctl -w net.ipv4.ip_forward=1`".into(),
            cause: Box::new(Error::kernel(
                "setting sysctl net.ipv4.ip_forward=1",
                std::io::Error::from_raw_os_error(libc::EROFS),
            )),
            undo: String::new(),
        };
        assert_eq!(
            in_netavarks_words(&e).as_deref(),
            Some("Sysctl error: IO Error: Read-only file system (os error 30)")
        );
        assert_eq!(in_netavarks_words(&Error::invalid("x")), None);
    }

    #[test]
    fn ipv6_refused_by_the_kernel_is_reported_in_netavarks_words() {
        let refused = |errno| Error::Apply {
            step: "`ip -6 addr add fd10:88:a::1/64 dev podman1 nodad`".into(),
            cause: Box::new(Error::kernel(
                "adding fd10:88:a::1/64 to podman1",
                std::io::Error::from_raw_os_error(errno),
            )),
            undo: String::new(),
        };
        assert_eq!(
            in_netavarks_words(&refused(libc::EACCES)).as_deref(),
            Some("add ip addr to bridge: failed to add ipv6 address, is ipv6 enabled in the kernel?: Netlink error: Permission denied (os error 13)")
        );
        // Another failure keeps berth's own words.
        assert_eq!(in_netavarks_words(&refused(libc::ENODEV)), None);
    }

    #[test]
    fn version_names_the_netavark_interface_and_berths_own() {
        let out = run(
            Args::try_parse_from(["netavark", "version"]).unwrap(),
            PathBuf::from("/nonexistent"),
        )
        .unwrap()
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["version"], NETAVARK_VERSION);
        assert_eq!(v["berth"], env!("CARGO_PKG_VERSION"));
        assert!(v["build_time"].as_str().unwrap().starts_with("20"), "{v}");
    }
}

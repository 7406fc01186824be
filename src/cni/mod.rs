//! berth as a CNI plugin (specification 1.1.0; versions 0.4.0, 1.0.0 and
//! 1.1.0). The berth binary becomes the plugin when `CNI_COMMAND` is set,
//! so `/opt/cni/bin/berth` can be a symlink to it.
//!
//! An attachment is an ordinary berth endpoint, made and removed by the
//! same `connect`/`disconnect` as the CLI's (so it has berth's intents,
//! lock and reconcile), plus a row keyed by container ID and interface
//! name (`store/attachments.rs`). The network is the configuration's
//! `name`, created on the first ADD.
//!
//! - [`config`]: the environment and the JSON on stdin, checked.
//! - [`verbs`]: ADD, DEL, CHECK, STATUS, VERSION.
//! - [`gc`]: GC, removing every attachment the runtime no longer lists.
//! - [`result`]: the ADD result in the requested version.
//! - [`error`]: the spec's error object and codes.

pub mod config;
pub mod error;
pub mod gc;
pub mod result;
#[cfg(test)]
mod tests;
pub mod verbs;

use std::io::{Read, Write};
use std::path::PathBuf;

use crate::context::{Context, Notice};
use config::{Env, NetConf, LATEST};
use error::{CniError, CODE_BAD_ENV};

/// Whether this process was started as a CNI plugin.
pub fn is_plugin() -> bool {
    std::env::var_os("CNI_COMMAND").is_some()
}

/// Runs one CNI verb: reads stdin, writes the result or the error object
/// to stdout, returns the exit code.
pub fn main() -> i32 {
    let env = Env::from_process();
    // berth may start itself again (its DNS server): that process must not
    // take itself for a plugin. Still single-threaded here.
    for key in [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
        "CNI_PATH",
    ] {
        std::env::remove_var(key);
    }
    let mut stdin = Vec::new();
    if env.command != "VERSION" || !is_terminal_stdin() {
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    // Errors are encoded in the version the request names, when berth
    // speaks it.
    let version = config::version_of(&stdin)
        .ok()
        .filter(|v| config::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST.to_string());
    let out = match run(&env, &stdin) {
        Ok(None) => return 0,
        Ok(Some(value)) => value.to_string(),
        Err(e) => {
            let _ = writeln!(std::io::stdout(), "{}", e.to_json(&version));
            return 1;
        }
    };
    let _ = writeln!(std::io::stdout(), "{out}");
    0
}

fn is_terminal_stdin() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}

fn run(env: &Env, stdin: &[u8]) -> Result<Option<serde_json::Value>, CniError> {
    if env.command == "VERSION" {
        return Ok(Some(verbs::version(stdin)));
    }
    let conf = match env.command.as_str() {
        "DEL" => config::parse_for_del(stdin)?,
        "ADD" | "CHECK" | "GC" | "STATUS" => config::parse(stdin)?,
        other => {
            return Err(CniError::new(
                CODE_BAD_ENV,
                format!(
                    "unknown CNI_COMMAND {other:?}: expected ADD, CHECK, DEL, GC, STATUS or VERSION"
                ),
            ))
        }
    };
    let mut ctx = context(&conf);
    let result = verb(&mut ctx, env, &conf);
    // What the user should know goes to stderr, which the runtime logs.
    for n in ctx.take_notices() {
        match n {
            Notice::Repaired { reason, lines } => {
                eprintln!("berth: {reason}; repaired first: {}", lines.join("; "))
            }
            Notice::Warning(w) => eprintln!("berth: warning: {w}"),
        }
    }
    result
}

/// One verb on a parsed configuration.
pub fn verb(
    ctx: &mut Context,
    env: &Env,
    conf: &NetConf,
) -> Result<Option<serde_json::Value>, CniError> {
    match env.command.as_str() {
        "ADD" => verbs::add(ctx, env, conf).map(Some),
        "DEL" => verbs::del(ctx, env).map(|()| None),
        "CHECK" => verbs::check(ctx, env, conf).map(|()| None),
        "GC" => gc::gc(ctx, conf).map(|_| None),
        "STATUS" => verbs::status(ctx).map(|()| None),
        other => Err(CniError::new(
            CODE_BAD_ENV,
            format!("unknown CNI_COMMAND {other:?}"),
        )),
    }
}

/// The context for a config: its `stateDir`, else `BERTH_STATE_DIR`, else
/// berth's default.
pub fn context(conf: &NetConf) -> Context {
    let dir = conf
        .state_dir
        .clone()
        .or_else(|| std::env::var("BERTH_STATE_DIR").ok())
        .unwrap_or_else(|| crate::store::DEFAULT_DIR.to_string());
    Context::new(PathBuf::from(dir), false)
}

//! `berth-dns`, the server's own executable: `berth-dns [--state-dir DIR]
//! dns-server [--stay]`, the arguments of `berth dns-server`. It holds
//! none of berth's commands, so the code the server runs lies in a few
//! pages (see `background::DNS_EXECUTABLE`); its arguments are read by
//! hand for the same reason. Started by a berth of another build (berth
//! upgraded alone), it hands over to that berth, which serves itself.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::background::{self, BERTH_BUILD_ENV, BERTH_EXE_ENV, DNS_SUBCOMMAND};
use crate::store::DEFAULT_DIR;

/// What the arguments ask for.
#[derive(Debug, PartialEq)]
struct Args {
    state_dir: PathBuf,
    stay: bool,
}

/// Runs the server; the process's exit code.
pub fn main() -> i32 {
    let args = match parse(
        std::env::args_os().skip(1),
        std::env::var_os("BERTH_STATE_DIR"),
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth-dns: {e}");
            eprintln!("usage: berth-dns [--state-dir DIR] {DNS_SUBCOMMAND} [--stay]");
            return 2;
        }
    };
    if let Some(exe) = std::env::var_os(BERTH_EXE_ENV) {
        let build = std::env::var(BERTH_BUILD_ENV).ok();
        if stale(&background::build_stamp(), build.as_deref()) {
            hand_over(PathBuf::from(exe), build.unwrap_or_default());
        }
    }
    // The supervisor, which the server starts again when it dies, is
    // berth's: the one that started this process, or the one beside it.
    let berth = match std::env::var_os(BERTH_EXE_ENV) {
        Some(exe) => PathBuf::from(exe),
        None => std::env::current_exe()
            .map(|e| e.with_file_name("berth"))
            .unwrap_or_else(|_| PathBuf::from("berth")),
    };
    background::set_berth_exe(berth);
    match super::serve(&args.state_dir, args.stay) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth-dns: {e}");
            e.exit_code()
        }
    }
}

/// Whether this executable comes from another build than the berth that
/// started it (`berth`: its stamp, when it said): berth-dns reads berth's
/// state, so only its own build's schema is sure to be understood.
fn stale(own: &str, berth: Option<&str>) -> bool {
    berth.is_some_and(|b| b != own)
}

/// Runs berth itself as the server instead (`berth dns-server`, the same
/// arguments, the same process); returns only if it cannot, and then this
/// executable serves after all.
fn hand_over(berth: PathBuf, build: String) {
    use std::os::unix::process::CommandExt;
    eprintln!(
        "berth-dns: built apart from {} ({build}, this {}); it serves instead",
        berth.display(),
        background::build_stamp()
    );
    let err = std::process::Command::new(&berth)
        .args(std::env::args_os().skip(1))
        .env_remove(BERTH_EXE_ENV)
        .env_remove(BERTH_BUILD_ENV)
        .exec();
    eprintln!("berth-dns: running {}: {err}", berth.display());
}

/// Reads `[--state-dir DIR | --state-dir=DIR] dns-server [--stay]`, in
/// any order, as berth does; the state directory defaults to `env`
/// (BERTH_STATE_DIR), then berth's default.
fn parse(args: impl IntoIterator<Item = OsString>, env: Option<OsString>) -> Result<Args, String> {
    let mut state_dir = env.map(PathBuf::from);
    let mut stay = false;
    let mut subcommand = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--state-dir" {
            let dir = args.next().ok_or("--state-dir needs a directory")?;
            state_dir = Some(dir.into());
        } else if let Some(dir) = text.strip_prefix("--state-dir=") {
            state_dir = Some(dir.into());
        } else if text == "--stay" {
            stay = true;
        } else if text == DNS_SUBCOMMAND && !subcommand {
            subcommand = true;
        } else {
            return Err(format!("unexpected argument {text:?}"));
        }
    }
    if !subcommand {
        return Err(format!("the subcommand {DNS_SUBCOMMAND} is missing"));
    }
    Ok(Args {
        state_dir: state_dir.unwrap_or_else(|| DEFAULT_DIR.into()),
        stay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn reads_the_arguments_berth_gives_its_server() {
        assert_eq!(
            parse(args(&["--state-dir", "/run/b", "dns-server"]), None),
            Ok(Args {
                state_dir: "/run/b".into(),
                stay: false
            })
        );
        assert_eq!(
            parse(
                args(&["dns-server", "--stay", "--state-dir=/x"]),
                Some("/env".into())
            ),
            Ok(Args {
                state_dir: "/x".into(),
                stay: true
            })
        );
        assert_eq!(
            parse(args(&["dns-server"]), Some("/env".into()))
                .unwrap()
                .state_dir,
            PathBuf::from("/env")
        );
        assert_eq!(
            parse(args(&["dns-server"]), None).unwrap().state_dir,
            PathBuf::from(DEFAULT_DIR)
        );
    }

    #[test]
    fn only_a_berth_of_another_build_takes_over() {
        let own = background::build_stamp();
        assert!(!stale(&own, Some(&own)));
        assert!(!stale(&own, None));
        assert!(stale(&own, Some("0123abc 2026-01-01T00:00:00+00:00")));
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            &[][..],
            &["--stay"],
            &["dns-server", "--state-dir"],
            &["dns-server", "dns-server"],
            &["dns-server", "--verbose"],
            &["supervise"],
        ] {
            assert!(parse(args(bad), None).is_err(), "{bad:?}");
        }
    }
}

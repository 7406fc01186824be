//! Records the commit and the time of the build, which `netavark version`
//! reports (Podman's `podman info` shows them).
//! Outside a git checkout the commit is left unknown.

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    if let Some(commit) = output("git", &["rev-parse", "HEAD"]) {
        println!("cargo:rustc-env=BERTH_COMMIT={commit}");
    }
    // Rebuild the stamp when the checked-out commit moves, not on every build.
    for path in ["HEAD", "logs/HEAD"] {
        if let Some(p) = output("git", &["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    // SOURCE_DATE_EPOCH (reproducible builds) wins over the clock.
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let mut args = vec!["-u", "+%Y-%m-%dT%H:%M:%S+00:00"];
    let at;
    if let Some(e) = &epoch {
        at = format!("@{e}");
        args.extend(["-d", at.as_str()]);
    }
    if let Some(time) = output("date", &args) {
        println!("cargo:rustc-env=BERTH_BUILD_TIME={time}");
    }
}

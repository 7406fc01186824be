//! netavark v1.4.0's bats files, fetched from crates.io at test time.
//!
//! The suite is not part of berth's repository: the published crate
//! carries `test/*.bats`, `test/helpers.bash` and `test/testfiles/`, so the
//! test downloads it once into a cache under the target directory, checks
//! it against the checksum crates.io's index gives for that version, and
//! extracts `test/` afresh for every run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The netavark release Debian 12's Podman 4.3.1 speaks.
pub const VERSION: &str = "1.4.0";
const URL: &str = "https://static.crates.io/crates/netavark/netavark-1.4.0.crate";
/// `cksum` of version 1.4.0 in https://index.crates.io/ne/ta/netavark.
const SHA256: &str = "da8e3484317cc3c6b1fef5acc20da2e34ff021828e1133759f001ecf311391d4";

/// The bats files the harness runs, in order.
pub const FILES: [&str; 3] = [
    "001-basic.bats",
    "100-bridge-iptables.bats",
    "300-macvlan.bats",
];

/// The extracted `test/` directory, or why the suite cannot be had here
/// (the caller prints that as a SKIP line). A download whose checksum is
/// wrong is an error, not a reason to skip.
pub fn fetch(cache: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(cache)
        .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let crate_file = cache.join(format!("netavark-{VERSION}.crate"));
    // A cached copy is reused only when it still has the right checksum
    // (an interrupted earlier run may have left anything there).
    if !crate_file.exists() || sha256(&crate_file)? != SHA256 {
        download(&crate_file)?;
        let got = sha256(&crate_file)?;
        assert_eq!(
            got, SHA256,
            "{URL} has sha256 {got}, crates.io's index says {SHA256}; refusing to run it"
        );
    }
    let tree = cache.join("extracted");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).map_err(|e| format!("cannot create {}: {e}", tree.display()))?;
    let inner = format!("netavark-{VERSION}/test");
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(&crate_file)
        .arg("-C")
        .arg(&tree)
        .arg(&inner)
        .output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    assert!(
        out.status.success(),
        "extracting {inner} from {}: {}",
        crate_file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tree.join(&inner);
    for f in FILES.iter().chain(&["helpers.bash"]) {
        assert!(
            dir.join(f).is_file(),
            "{} lacks test/{f}",
            crate_file.display()
        );
    }
    Ok(dir)
}

/// Downloads the crate to `dest` (through a temporary name, so a failed
/// download never looks like a cached one).
fn download(dest: &Path) -> Result<(), String> {
    let part = dest.with_extension("part");
    let out = Command::new("curl")
        .args([
            "-fsSL",
            "--retry",
            "2",
            "--connect-timeout",
            "10",
            "--max-time",
            "120",
        ])
        .arg("-o")
        .arg(&part)
        .arg(URL)
        .output()
        .map_err(|e| format!("cannot run curl ({e}); Debian: apt-get install curl"))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&part);
        return Err(format!(
            "cannot download {URL}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::rename(&part, dest).map_err(|e| format!("cannot move {}: {e}", part.display()))
}

fn sha256(file: &Path) -> Result<String, String> {
    let out = Command::new("sha256sum")
        .arg(file)
        .output()
        .map_err(|e| format!("cannot run sha256sum: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sha256sum {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string())
}

//! Test harness: runs closures in a private network namespace (one thread that
//! unshared CLONE_NEWNET) and runs the `nft` oracle inside that namespace only.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `f` on a fresh thread inside a new, empty network namespace.
pub fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            r,
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Path of the calling thread's network namespace.
pub fn my_netns() -> String {
    let tid = unsafe { libc::gettid() };
    format!("/proc/{}/task/{}/ns/net", std::process::id(), tid)
}

/// Runs a command inside the calling thread's namespace via nsenter.
pub fn run_in_ns(args: &[&str], stdin: Option<&str>) -> String {
    let ns = my_netns();
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={ns}")).args(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn nsenter");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stdin.unwrap_or("")
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `nft -j list <what>` parsed, with the `nftables` array.
pub fn nft_json(what: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["nft", "-j", "list"];
    args.extend_from_slice(what);
    let out = run_in_ns(&args, None);
    let v: serde_json::Value = serde_json::from_str(&out).expect("nft json");
    v["nftables"].as_array().cloned().unwrap_or_default()
}

/// `nft list <what>` text.
pub fn nft_text(what: &[&str]) -> String {
    let mut args = vec!["nft", "list"];
    args.extend_from_slice(what);
    run_in_ns(&args, None)
}

/// Objects of one kind (`"chain"`, `"rule"`, `"set"`, `"map"`) from a JSON listing.
pub fn objects(list: &[serde_json::Value], kind: &str) -> Vec<serde_json::Value> {
    list.iter().filter_map(|o| o.get(kind).cloned()).collect()
}

/// Removes fields that legitimately differ between two identical rulesets
/// (an element's `expires` counts down by the second, so two listings a
/// moment apart may differ by one).
pub fn normalize(mut v: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("handle");
                m.remove("metainfo");
                // The seconds an element with a timeout has left: a clock
                // reading, which two listings a moment apart may differ in.
                m.remove("expires");
                for (_, x) in m.iter_mut() {
                    walk(x);
                }
            }
            serde_json::Value::Array(a) => {
                a.retain(|x| x.get("metainfo").is_none());
                for x in a.iter_mut() {
                    walk(x);
                }
            }
            _ => {}
        }
    }
    walk(&mut v);
    v
}

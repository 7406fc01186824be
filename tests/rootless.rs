//! berth as an ordinary user, in sandboxes, as users the tests make
//! (`tests/util/users.rs`).

mod util;

use util::users::{add_user, User};
use util::{stderr, Sandbox};

/// A sandbox with a root-made network and one ordinary user.
fn sandbox_with_user() -> (Sandbox, User) {
    let sb = Sandbox::new();
    let user = add_user(&sb, "alice", 4242);
    (sb, user)
}

/// Every command that needs root, run by an ordinary user, is refused in
/// one line naming the rootless alternative, exit 2, and changes nothing:
/// not the kernel, not root's state, not the user's runtime directory.
#[test]
fn commands_that_need_root_say_so_and_name_the_alternative() {
    let (sb, user) = sandbox_with_user();
    sb.create_network("roots", "10.77.0.0/24");
    sb.add_netns("ns1");
    let refused: &[&[&str]] = &[
        &["network", "create", "mine", "--subnet", "10.78.0.0/24"],
        &["network", "rm", "roots"],
        &["network", "prune", "-f"],
        &["network", "connect", "roots", "ns1"],
        &["connect", "roots", "ns1"],
        &["disconnect", "roots", "ns1"],
        &["up"],
        &["gc"],
        &["reset"],
        &["exec", "ns1", "--", "true"],
        &["stop", "job"],
        &["rm", "job"],
        &["demo"],
    ];
    let before = sb.snapshot();
    for args in refused {
        let mut full = vec!["--state-dir", util::STATE_DIR];
        full.extend_from_slice(args);
        let out = user.berth(&sb, &full);
        let err = stderr(&out);
        let words: Vec<&str> = args
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .copied()
            .collect();
        let words = if words[0] == "network" || words.len() == 1 {
            words[..words.len().min(2)].join(" ")
        } else {
            words[0].to_string()
        };
        assert_eq!(out.status.code(), Some(2), "berth {args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "berth {args:?}: {err}");
        assert!(
            err.contains(&format!("`berth {words}` needs root"))
                && err.contains("without root, `berth run"),
            "berth {args:?}: {err}"
        );
    }
    sb.snapshot()
        .assert_same(&before, "refused rootless commands");
    let left = sb.sh_ok(&format!("ls -A {}", user.runtime_dir));
    assert_eq!(
        util::stdout(&left).trim(),
        "",
        "runtime dir must stay empty"
    );
}

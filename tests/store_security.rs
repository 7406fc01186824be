//! The state directory and database: created 0700/0600 whatever the umask,
//! narrowed when berth's own, refused when another user owns them or others
//! may write them; a corrupt database found before the kernel is touched;
//! read-only commands that create nothing and work on a read-only state
//! and for a user who can only read it.

mod util;

use std::process::Output;

use util::*;

fn mode(sb: &Sandbox, path: &str) -> String {
    let out = sb.cmd("stat", &["-c", "%a %u", path]);
    assert_ok_ctx(&out, &format!("stat {path}"));
    stdout(&out).trim().to_string()
}

fn db() -> String {
    format!("{STATE_DIR}/berth.db")
}

/// `berth ARGS` run by `sh -c` after `umask 000`.
fn berth_umask0(sb: &Sandbox, args: &str) -> Output {
    sb.sh(&format!(
        "umask 000 && BERTH_STATE_DIR={STATE_DIR} BERTH_NFT_MAX_KERNEL={MIN_KERNEL} {BERTH} {args}"
    ))
}

#[test]
fn state_is_private_whatever_the_umask() {
    let sb = Sandbox::new();
    let out = berth_umask0(&sb, "network create web --subnet 10.90.0.0/24");
    assert_ok_ctx(&out, "network create under umask 000");
    assert_eq!(mode(&sb, STATE_DIR), "700 0");
    assert_eq!(mode(&sb, &db()), "600 0");
    for suffix in ["-wal", "-shm"] {
        let p = format!("{}{suffix}", db());
        if sb.sh(&format!("test -e {p}")).status.success() {
            assert_eq!(mode(&sb, &p), "600 0", "{p}");
        }
    }
}

#[test]
fn berths_own_older_state_is_narrowed() {
    let sb = Sandbox::new();
    sb.berth_ok(&["network", "create", "web", "--subnet", "10.90.0.0/24"]);
    sb.sh_ok(&format!("chmod 755 {STATE_DIR} && chmod 644 {}", db()));
    sb.berth_ok(&["network", "create", "db", "--subnet", "10.91.0.0/24"]);
    assert_eq!(mode(&sb, STATE_DIR), "700 0");
    assert_eq!(mode(&sb, &db()), "600 0");
}

#[test]
fn state_others_could_write_or_own_is_refused() {
    let sb = Sandbox::new();
    sb.berth_ok(&["network", "create", "web", "--subnet", "10.90.0.0/24"]);
    sb.add_netns("c");
    let cases: [(&str, &str, &str); 4] = [
        ("chmod 777 {dir}", "chmod 700 {dir}", "writable by others"),
        ("chmod 620 {db}", "chmod 600 {db}", "writable by its group"),
        ("chown 65534 {dir}", "chown 0 {dir}", "owned by uid 65534"),
        ("chown 65534 {db}", "chown 0 {db}", "owned by uid 65534"),
    ];
    for (spoil, fix, needle) in cases {
        let fill = |s: &str| s.replace("{dir}", STATE_DIR).replace("{db}", &db());
        sb.sh_ok(&fill(spoil));
        let before = sb.snapshot();
        for args in [
            &["connect", "web", "c"][..],
            &["network", "create", "x", "--subnet", "10.92.0.0/24"],
            &["ps"],
        ] {
            let out = sb.berth(args);
            assert_fails_with(&out, 2, needle);
            let err = stderr(&out);
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(err.contains(STATE_DIR), "names the path: {err}");
        }
        sb.snapshot().assert_same(&before, spoil);
        sb.sh_ok(&fill(fix));
    }
    sb.connect("web", "c", &[]);
}

#[test]
fn a_corrupt_database_is_named_and_nothing_is_touched() {
    let sb = Sandbox::new();
    sb.berth_ok(&["network", "create", "web", "--subnet", "10.90.0.0/24"]);
    sb.add_netns("c");
    // Overwrite the header: no longer an SQLite file.
    sb.sh_ok(&format!(
        "rm -f {db}-wal {db}-shm && printf 'this is not a database at all, not at all' | dd of={db} conv=notrunc status=none",
        db = db()
    ));
    let before = sb.snapshot();
    for args in [
        &["connect", "web", "c"][..],
        &["network", "create", "x", "--subnet", "10.92.0.0/24"],
        &["reset"],
        &["ps"],
        &["network", "ls"],
    ] {
        let out = sb.berth(args);
        assert_fails_with(&out, 2, &format!("state database {} is corrupt", db()));
        assert_eq!(
            stderr(&out).trim_end().lines().count(),
            1,
            "{}",
            stderr(&out)
        );
    }
    sb.snapshot().assert_same(&before, "corrupt database");
}

#[test]
fn read_only_commands_create_nothing() {
    let sb = Sandbox::new();
    assert_eq!(stdout(&sb.berth_out_ok(&["ps"])).lines().count(), 1);
    sb.berth_ok(&["network", "ls"]);
    assert_eq!(sb.berth_json(&["ps", "--json"]), serde_json::json!([]));
    assert_eq!(
        sb.berth_json(&["network", "ls", "--json"]),
        serde_json::json!([])
    );
    assert_fails_with(&sb.berth(&["network", "inspect", "web"]), 2, "\"web\"");
    assert!(
        !sb.sh(&format!("test -e {STATE_DIR}")).status.success(),
        "a read-only command created {STATE_DIR}"
    );
}

/// Connects `c` with a published port on network `web` and returns the
/// state as `ps --json`, `network ls --json` and `network inspect web
/// --json` show it.
fn some_state(sb: &Sandbox, state: &str) -> Vec<serde_json::Value> {
    let with = |args: &[&str]| {
        let mut v = vec!["--state-dir", state];
        v.extend_from_slice(args);
        v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: &[&str]| {
        let a = with(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        sb.berth_json(&a)
    };
    // No DNS: its server would keep files of the state dir open, and the
    // tests remount and copy that directory (the supervisor, which the
    // endpoint brings, is ended where it matters).
    let a = with(&[
        "network",
        "create",
        "web",
        "--subnet",
        "10.90.0.0/24",
        "--no-dns",
    ]);
    sb.berth_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    sb.add_netns("c");
    let a = with(&["connect", "web", "c", "-p", "8080:80"]);
    sb.berth_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    vec![
        run(&["ps", "--json"]),
        run(&["network", "ls", "--json"]),
        run(&["network", "inspect", "web", "--json"]),
    ]
}

#[test]
fn read_only_commands_work_on_a_read_only_state_dir() {
    let sb = Sandbox::new();
    let state = "/run/ro-state";
    sb.sh_ok(&format!(
        "mkdir {state} && mount -t tmpfs -o mode=0700 tmpfs {state}"
    ));
    let want = some_state(&sb, state);
    assert_eq!(want[0].as_array().map(Vec::len), Some(1), "{}", want[0]);
    // The supervisor keeps its log and pidfile open for writing, which a
    // remount read-only refuses: it is ended first (with no DNS server,
    // nothing starts it again until a changing command).
    sb.sh_ok(&format!("kill -KILL $(cat {state}/supervisor.pid)"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !sb
        .sh(&format!("mount -o remount,ro {state}"))
        .status
        .success()
    {
        assert!(std::time::Instant::now() < deadline, "{state} stays busy");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let views: [&[&str]; 3] = [
        &["ps", "--json"],
        &["network", "ls", "--json"],
        &["network", "inspect", "web", "--json"],
    ];
    for (args, want) in views.iter().zip(&want) {
        let mut a = vec!["--state-dir", state];
        a.extend_from_slice(args);
        assert_eq!(&sb.berth_json(&a), want, "berth {}", a.join(" "));
    }
    // A changing command fails with one line and changes nothing.
    let before = sb.snapshot();
    let out = sb.berth(&["--state-dir", state, "disconnect", "web", "c"]);
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(
        stderr(&out).trim_end().lines().count(),
        1,
        "{}",
        stderr(&out)
    );
    sb.snapshot()
        .assert_same(&before, "disconnect on a read-only state dir");
}

#[test]
fn read_only_commands_work_for_a_user_who_can_only_read_the_state() {
    let sb = Sandbox::new();
    let probe = sb.cmd(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "test",
            "-x",
            BERTH,
        ],
    );
    if !probe.status.success() {
        crate::skip_line!(
            "SKIP read_only_commands_work_for_a_user_who_can_only_read_the_state: \
             {BERTH} is not executable by uid 65534"
        );
        return;
    }
    let want = some_state(&sb, STATE_DIR);
    // A copy readable by everyone, still root's (berth closed it cleanly,
    // so there is no -wal content; a stale -shm may remain).
    let copy = "/run/state-copy";
    sb.sh_ok(&format!(
        "cp -a {STATE_DIR} {copy} && chmod 755 {copy} && chmod 644 {copy}/*"
    ));
    let views: [&[&str]; 3] = [
        &["ps", "--json"],
        &["network", "ls", "--json"],
        &["network", "inspect", "web", "--json"],
    ];
    let listing = || stdout(&sb.sh_ok(&format!("ls -la --time-style=+ {copy}")));
    let files_before = listing();
    for (args, want) in views.iter().zip(&want) {
        let mut a = vec![
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BERTH,
            "--state-dir",
            copy,
        ];
        a.extend_from_slice(args);
        let out = sb.cmd("setpriv", &a);
        assert_ok_ctx(&out, &format!("setpriv ... berth {}", args.join(" ")));
        assert_eq!(
            &parse_json(&out, "read-only view"),
            want,
            "berth {}",
            args.join(" ")
        );
    }
    assert_eq!(
        listing(),
        files_before,
        "the reader changed the state's files"
    );
    // Someone else's state that they could write: refused even for reading.
    sb.sh_ok(&format!("chmod 666 {copy}/berth.db"));
    let out = sb.cmd(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BERTH,
            "--state-dir",
            copy,
            "ps",
        ],
    );
    assert_fails_with(&out, 2, "writable by others");
}

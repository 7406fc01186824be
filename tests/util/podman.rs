//! Real Podman inside a [`Sandbox`]: the harness of the Podman scenario.
//!
//! Podman 4.x runs as root in a sandbox with its own network, mount and PID
//! namespaces. Everything it writes lands on tmpfs inside the sandbox:
//! storage (`vfs`), run root, network definitions, tmp dir, events, its SHM
//! locks and the blob-info cache. It finds `netavark` in a helper directory
//! of its own, where it is a symlink to whichever binary the test names
//! (berth, or the stock netavark to validate the harness itself).
//!
//! Two things this machine needs are handled here, not in berth:
//! `cgroup_manager = "cgroupfs"` (no systemd), and an OCI runtime wrapper
//! that deletes `process.rlimits` from the bundle's `config.json` before it
//! execs runc (or crun), because raising RLIMIT_NOFILE needs
//! CAP_SYS_RESOURCE, which the test machine lacks. conmon calls it as
//! `runc ... create --bundle DIR --pid-file FILE ID`.
//!
//! One thing lives outside the sandbox: runc puts each container in
//! cgroups under `libpod_parent` of the machine's cgroup hierarchy (no
//! network state). `Drop` removes the sandbox's containers through Podman
//! and then any of their cgroups that survived.
//!
//! The image is made locally: busybox-static plus `berth-probe` (with the
//! shared libraries it links) in a tarball, `podman import`ed as
//! `localhost/probe`. No registry is needed.

use std::process::Output;
use std::time::Duration;

use super::{assert_ok_ctx, run_timeout, stdout, Sandbox, PROBE, STATE_DIR};

/// Podman's binary; the scenario is skipped when it is missing.
pub const PODMAN: &str = "/usr/bin/podman";
/// The netavark Podman ships (Debian's path).
pub const STOCK_NETAVARK: &str = "/usr/lib/podman/netavark";
const AARDVARK: &str = "/usr/lib/podman/aardvark-dns";
const BUSYBOX: &str = "/bin/busybox";
/// The image every test container runs.
pub const IMAGE: &str = "localhost/probe";
/// Where everything Podman writes lives, inside the sandbox.
const ROOT: &str = "/run/podman-test";
/// Bound for one podman command (a `run` copies the image with `vfs`).
const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);

/// A sandbox with Podman configured in it.
pub struct Podman {
    pub sb: Sandbox,
}

/// OCI runtimes the harness can wrap, by Podman's name for them.
const RUNTIMES: [(&str, &str); 2] = [("runc", "/usr/sbin/runc"), ("crun", "/usr/bin/crun")];

/// The OCI runtime to use: (Podman's name, path).
pub fn runtime() -> Option<(&'static str, &'static str)> {
    RUNTIMES
        .into_iter()
        .find(|(_, path)| std::path::Path::new(path).exists())
}

/// Why the Podman scenario cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    missing_with(&[])
}

/// [`missing`], also requiring `extra` (path, Debian package) files.
pub fn missing_with(extra: &[(&str, &str)]) -> Option<String> {
    let base = [
        (PODMAN, "podman"),
        ("/usr/bin/conmon", "conmon"),
        (BUSYBOX, "busybox-static"),
    ];
    for &(path, what) in base.iter().chain(extra) {
        if !std::path::Path::new(path).exists() {
            return Some(format!("{what} is not installed ({path} missing)"));
        }
    }
    if runtime().is_none() {
        return Some("neither runc nor crun is installed".into());
    }
    None
}

/// Prints `SKIP ...` on the real stderr: `eprintln!` would be captured,
/// and so hidden, by the test harness when the test passes.
pub fn skip(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIP {line}");
}

/// The harness, or `None` after printing a loud SKIP line naming why.
pub fn podman_or_skip(test: &str, netavark: &str) -> Option<Podman> {
    if let Some(why) = missing() {
        skip(&format!("{test}: {why}; the Podman scenario did not run"));
        return None;
    }
    if !std::path::Path::new(netavark).exists() {
        skip(&format!("{test}: {netavark} is not installed"));
        return None;
    }
    // netavark 1.x programs the firewall through the iptables binary.
    if netavark == STOCK_NETAVARK && !std::path::Path::new("/usr/sbin/iptables").exists() {
        skip(&format!(
            "{test}: iptables is not installed (the stock netavark needs it)"
        ));
        return None;
    }
    Some(Podman::new(netavark))
}

impl Podman {
    /// A fresh sandbox with Podman using `netavark` as its network helper,
    /// and the test image imported.
    pub fn new(netavark: &str) -> Podman {
        let (runtime, runtime_path) = runtime().expect("checked by podman_or_skip");
        let sb = Sandbox::with_pid_namespace();
        let aardvark = if std::path::Path::new(AARDVARK).exists() {
            format!("ln -s {AARDVARK} {ROOT}/helpers/aardvark-dns")
        } else {
            "true".into()
        };
        let script = format!(
            r#"set -e
mount -t tmpfs tmpfs /dev/shm
mkdir -p /var/lib/containers /var/lib/berth
mount -t tmpfs tmpfs /var/lib/containers
mount -t tmpfs tmpfs /var/lib/berth
mkdir -p {ROOT}/storage {ROOT}/runroot {ROOT}/networks {ROOT}/tmp {ROOT}/helpers {ROOT}/rootfs/bin
ln -s {netavark} {ROOT}/helpers/netavark
{aardvark}
cat > {ROOT}/runc <<'EOF'
#!/bin/sh
# Deletes the rlimits from the OCI config (raising them needs
# CAP_SYS_RESOURCE), then runs the runtime with the arguments unchanged.
prev=
for a in "$@"; do
  case "$prev" in --bundle|-b) bundle="$a";; esac
  case "$a" in --bundle=*) bundle="${{a#--bundle=}}";; esac
  prev="$a"
done
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
  sed -i 's/"rlimits":\[[^]]*\],\{{0,1\}}//' "$bundle/config.json"
fi
exec {runtime_path} "$@"
EOF
chmod +x {ROOT}/runc
cat > {ROOT}/containers.conf <<'EOF'
[network]
network_backend = "netavark"
network_config_dir = "{ROOT}/networks"
[engine]
# conmon starts `podman container cleanup` (which tears the network down)
# with only these variables: without them it would read the default
# configuration and run the stock netavark on berth's containers.
conmon_env_vars = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CONTAINERS_CONF={ROOT}/containers.conf", "CONTAINERS_STORAGE_CONF={ROOT}/storage.conf", "BERTH_STATE_DIR={STATE_DIR}"]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{ROOT}/events.log"
tmp_dir = "{ROOT}/tmp"
runtime = "{runtime}"
helper_binaries_dir = ["{ROOT}/helpers"]
static_dir = "{ROOT}/storage/libpod"
volume_path = "{ROOT}/storage/volumes"
[engine.runtimes]
{runtime} = ["{ROOT}/runc"]
EOF
cat > {ROOT}/storage.conf <<'EOF'
[storage]
driver = "vfs"
graphroot = "{ROOT}/storage"
runroot = "{ROOT}/runroot"
EOF
cd {ROOT}/rootfs
cp {BUSYBOX} bin/busybox
for a in $(bin/busybox --list | grep -vx busybox); do ln -s busybox bin/$a; done
cp {PROBE} bin/berth-probe
for l in $(ldd {PROBE} | grep -o '/[^ ]*'); do mkdir -p .$(dirname $l); cp -L $l .$l; done
mkdir -p etc tmp proc sys dev
tar -cf {ROOT}/rootfs.tar .
"#
        );
        sb.sh_ok(&script);
        let p = Podman { sb };
        p.ok(&[
            "import",
            "--change",
            "ENV=PATH=/bin",
            &format!("{ROOT}/rootfs.tar"),
            IMAGE,
        ]);
        p
    }

    /// Path of container `name`'s network namespace.
    pub fn netns_of(&self, name: &str) -> String {
        self.ok(&[
            "inspect",
            name,
            "--format",
            "{{.NetworkSettings.SandboxKey}}",
        ])
    }
}

/// What a test does with Podman, whichever harness runs it (netavark
/// mode here, the CNI backend in podman_cni.rs): each provides `podman`.
pub trait PodmanClient {
    /// Runs `podman ARGS` in the harness's sandbox.
    fn podman(&self, args: &[&str]) -> Output;

    /// Runs `podman ARGS`, asserts success and returns stdout, trimmed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert_ok_ctx(&out, &format!("podman {}", args.join(" ")));
        stdout(&out).trim().to_string()
    }

    /// `podman run -d --name NAME OPTS... IMAGE berth-probe SERVE ADDR`:
    /// a container whose main process is a probe server, started detached.
    /// Returns once the server answers inside the container.
    fn run_server(&self, name: &str, opts: &[&str], serve: &str, addr: &str) {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(opts);
        args.extend([IMAGE, "berth-probe", serve, addr]);
        self.ok(&args);
        // The probe prints `ready` once bound.
        for _ in 0..200 {
            if stdout(&self.podman(&["logs", name])).contains("ready") {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("container {name}'s server never got ready");
    }

    /// Runs `berth-probe ARGS` inside container `name` (`podman exec`).
    fn probe_in(&self, name: &str, args: &[&str]) -> Output {
        let mut a = vec!["exec", name, "berth-probe"];
        a.extend_from_slice(args);
        self.podman(&a)
    }

    /// The address of container `name` on `network`.
    fn ip_of(&self, name: &str, network: &str) -> String {
        self.ok(&[
            "inspect",
            name,
            "--format",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        ])
    }
}

impl PodmanClient for Podman {
    fn podman(&self, args: &[&str]) -> Output {
        let mut c = self.sb.command(None, PODMAN, args);
        c.env("CONTAINERS_CONF", format!("{ROOT}/containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", format!("{ROOT}/storage.conf"))
            .env("BERTH_STATE_DIR", STATE_DIR);
        run_timeout(c, PODMAN_TIMEOUT)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers are removed through Podman so that the runtime takes
        // down their cgroups (which live outside the sandbox); the PID
        // namespace ends whatever is left.
        let ids = stdout(&self.podman(&["ps", "-a", "-q", "--no-trunc"]));
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        // A container killed with `-t 0` can leave its (empty) cgroups
        // behind when the runtime deletes it while its processes are still
        // exiting. They are this sandbox's by id: remove them.
        for id in ids.split_whitespace() {
            if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            // cgroup v2 has one hierarchy at the top, v1 one per controller.
            let root = std::path::PathBuf::from("/sys/fs/cgroup");
            let mut hierarchies = vec![root.clone()];
            if let Ok(dirs) = std::fs::read_dir(&root) {
                hierarchies.extend(dirs.flatten().map(|d| d.path()));
            }
            for h in hierarchies {
                let dir = h.join(CGROUP_PARENT).join(format!("libpod-{id}"));
                for _ in 0..20 {
                    match std::fs::remove_dir(&dir) {
                        Err(e) if e.raw_os_error() == Some(libc_ebusy()) => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        _ => break,
                    }
                }
            }
        }
    }
}

/// Where Podman's cgroupfs manager puts containers (as root).
const CGROUP_PARENT: &str = "libpod_parent";

fn libc_ebusy() -> i32 {
    nix::errno::Errno::EBUSY as i32
}

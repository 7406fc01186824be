//! Real Podman 4.x with its CNI backend (`network_backend = "cni"`) inside a
//! [`Sandbox`], for the CNI plugin scenario. Adapted from the netavark
//! harness (tests/util/podman.rs of the Podman-mode work), but standalone.
//!
//! Podman and the `conmon` daemons it starts run in a PID namespace of
//! their own, nested in the sandbox (an `unshare --pid --kill-child`
//! holder), so nothing they start outlives the test. That holder also has
//! its own mount namespace (for `--mount-proc`): Podman's storage is a
//! tmpfs mounted there, and the namespaces Podman makes
//! (`/run/netns/cni-*`) are bind mounts visible only there. The sandbox's
//! `/run` tmpfs is shared with it, so berth's state is the same on both
//! sides.
//!
//! The CNI plugin directory is a temporary directory holding `berth` (a
//! symlink to the binary under test) and the stock plugins of
//! /usr/lib/cni. Two machine-specific needs are handled as in the netavark
//! harness: cgroupfs, and an OCI runtime wrapper that drops
//! `process.rlimits` (raising them needs CAP_SYS_RESOURCE). The image is
//! busybox-static plus `berth-probe`, imported locally.

use std::process::{Command, Output};
use std::time::Duration;

use super::podman::{missing_with, runtime, skip, PodmanClient};
use super::{assert_ok_ctx, run_timeout, Bg, Sandbox, BERTH, PROBE};

pub const PODMAN: &str = "/usr/bin/podman";
const BUSYBOX: &str = "/bin/busybox";
const STOCK_PLUGINS: &str = "/usr/lib/cni";
pub const IMAGE: &str = "localhost/probe";
/// Where everything Podman writes lives.
pub const ROOT: &str = "/run/podman-cni";
/// Where the conflists live (`network_config_dir`).
pub const CONF_DIR: &str = "/run/podman-cni/cni-conf";
const PODMAN_TIMEOUT: Duration = Duration::from_secs(90);

/// Why the scenario cannot run here: the netavark harness's needs plus
/// the stock plugins.
pub fn missing() -> Option<String> {
    missing_with(&[("/usr/lib/cni/portmap", "containernetworking-plugins")])
}

/// A sandbox with Podman (CNI backend) in a nested PID namespace.
pub struct PodmanCni {
    pub sb: Sandbox,
    /// The nested namespaces' init, as seen from the test's PID namespace.
    init_pid: u32,
    _holder: Bg,
}

impl PodmanCni {
    /// The harness, or None after a loud SKIP line. `before` runs in the
    /// sandbox before the nested namespace is made (so that mounts it makes,
    /// such as `/run/netns/internet`, are seen there too).
    pub fn new_or_skip(test: &str, before: impl FnOnce(&Sandbox)) -> Option<PodmanCni> {
        if let Some(why) = missing() {
            skip(&format!(
                "{test}: {why}; the Podman CNI scenario did not run"
            ));
            return None;
        }
        let (runtime, runtime_path) = runtime().expect("checked");
        let sb = Sandbox::new();
        before(&sb);
        let holder = sb.spawn(
            sb.command(
                None,
                "unshare",
                &[
                    "--pid",
                    "--fork",
                    "--mount-proc",
                    "--kill-child",
                    "sh",
                    "-c",
                    "echo ready; exec sleep 1000000",
                ],
            ),
            true,
        );
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", holder.pid()))
                .unwrap_or_default();
        let init_pid: u32 = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the nested namespace's init");
        let p = PodmanCni {
            sb,
            init_pid,
            _holder: holder,
        };
        let script = format!(
            r#"set -e
mount -t tmpfs tmpfs /dev/shm
mkdir -p /var/lib/containers /var/lib/cni
mount -t tmpfs tmpfs /var/lib/containers
mount -t tmpfs tmpfs /var/lib/cni
# Image copies go through /var/tmp: keep them inside too.
mount -t tmpfs tmpfs /var/tmp
mkdir -p {ROOT}/storage {ROOT}/runroot {CONF_DIR} {ROOT}/tmp {ROOT}/cni-bin {ROOT}/rootfs/bin
ln -s {BERTH} {ROOT}/cni-bin/berth
for f in {STOCK_PLUGINS}/*; do ln -s $f {ROOT}/cni-bin/; done
cat > {ROOT}/runc <<'EOF'
#!/bin/sh
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
network_backend = "cni"
cni_plugin_dirs = ["{ROOT}/cni-bin"]
network_config_dir = "{CONF_DIR}"
[engine]
conmon_env_vars = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CONTAINERS_CONF={ROOT}/containers.conf", "CONTAINERS_STORAGE_CONF={ROOT}/storage.conf"]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{ROOT}/events.log"
tmp_dir = "{ROOT}/tmp"
runtime = "{runtime}"
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
        let out = p.run("sh", &["-c", &script]);
        assert_ok_ctx(&out, "podman CNI harness setup");
        p.ok(&[
            "import",
            "--change",
            "ENV=PATH=/bin",
            &format!("{ROOT}/rootfs.tar"),
            IMAGE,
        ]);
        Some(p)
    }

    /// `program args` inside the nested namespaces (Podman's side).
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        let pid = self.init_pid;
        c.arg(format!("--net=/proc/{pid}/ns/net"))
            .arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .arg(format!("--pid=/proc/{pid}/ns/pid"))
            .arg("--")
            .arg(program)
            .args(args);
        c
    }

    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        run_timeout(self.command(program, args), PODMAN_TIMEOUT)
    }

    /// Writes a conflist into Podman's network directory.
    pub fn write_conflist(&self, name: &str, conflist: &str) {
        let out = self.run(
            "sh",
            &[
                "-c",
                &format!("cat > {CONF_DIR}/{name}.conflist <<'EOF'\n{conflist}\nEOF"),
            ],
        );
        assert_ok_ctx(&out, "writing the conflist");
    }
}

impl PodmanClient for PodmanCni {
    fn podman(&self, args: &[&str]) -> Output {
        let mut c = self.command(PODMAN, args);
        c.env("CONTAINERS_CONF", format!("{ROOT}/containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", format!("{ROOT}/storage.conf"));
        run_timeout(c, PODMAN_TIMEOUT)
    }
}

impl Drop for PodmanCni {
    fn drop(&mut self) {
        // Through Podman, so that the runtime takes down its cgroups (they
        // live outside the sandbox); the PID namespace ends the rest.
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
    }
}

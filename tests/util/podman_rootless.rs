//! Rootless Podman 4.x inside a [`Sandbox`], run by a user the test makes
//! (`users.rs`): Podman's storage, network definitions and tmp dir on a
//! tmpfs inside the sandbox (outside /run, which Podman's rootless network
//! namespace replaces with a directory of its own), its run root in the
//! user's `$XDG_RUNTIME_DIR`, and `netavark` in a helper directory as a
//! symlink to whichever binary the test names. The sandbox has its own PID
//! namespace, so what Podman leaves running (its pause process,
//! slirp4netns, conmon) ends with it. cgroups: `cgroupfs`, which a rootless
//! runc skips when it may not write them, so nothing is left outside.

use std::process::Output;
use std::time::Duration;

use super::podman::{runtime, PodmanClient, IMAGE};
use super::users::{add_user, User};
use super::{run_timeout, Sandbox, PROBE};

const BUSYBOX: &str = "/bin/busybox";
/// Podman's own helpers (Debian's path).
const PODMAN_LIBEXEC: &str = "/usr/lib/podman";
/// Everything the user's Podman writes (but its run root).
const ROOT: &str = "/var/lib/containers/rootless";
const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);

/// Rootless Podman as `user` in `sb`.
pub struct RootlessPodman {
    pub sb: Sandbox,
    pub user: User,
}

/// Why rootless Podman cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    super::podman::missing_with(&[
        ("/usr/bin/newuidmap", "uidmap"),
        ("/usr/bin/slirp4netns", "slirp4netns"),
        ("/usr/lib/podman/rootlessport", "podman"),
    ])
}

impl RootlessPodman {
    /// A sandbox, a user `name` with `uid`, and that user's Podman using
    /// `netavark`, with the test image imported.
    pub fn new(netavark: &str, name: &str, uid: u32) -> RootlessPodman {
        let (runtime, _) = runtime().expect("checked by missing()");
        let sb = Sandbox::with_pid_namespace();
        let user = add_user(&sb, name, uid);
        let rt = &user.runtime_dir;
        let script = format!(
            r#"set -e
mount -t tmpfs tmpfs /dev/shm
mkdir -p /var/lib/containers
mount -t tmpfs tmpfs /var/lib/containers
mkdir -p {ROOT}/home {ROOT}/storage {ROOT}/networks {ROOT}/tmp {ROOT}/helpers {ROOT}/rootfs/bin
ln -s {netavark} {ROOT}/helpers/netavark
for h in aardvark-dns rootlessport catatonit; do
  if [ -e {PODMAN_LIBEXEC}/$h ]; then ln -s {PODMAN_LIBEXEC}/$h {ROOT}/helpers/$h; fi
done
cat > {ROOT}/containers.conf <<'END'
[network]
network_backend = "netavark"
network_config_dir = "{ROOT}/networks"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{ROOT}/events.log"
tmp_dir = "{ROOT}/tmp"
runtime = "{runtime}"
helper_binaries_dir = ["{ROOT}/helpers"]
static_dir = "{ROOT}/storage/libpod"
volume_path = "{ROOT}/storage/volumes"
END
cat > {ROOT}/storage.conf <<'END'
[storage]
driver = "vfs"
graphroot = "{ROOT}/storage"
runroot = "{rt}/containers"
END
cd {ROOT}/rootfs
cp {BUSYBOX} bin/busybox
for a in $(bin/busybox --list | grep -vx busybox); do ln -s busybox bin/$a; done
cp {PROBE} bin/berth-probe
for l in $(ldd {PROBE} | grep -o '/[^ ]*'); do mkdir -p .$(dirname $l); cp -L $l .$l; done
mkdir -p etc tmp proc sys dev
tar -cf {ROOT}/rootfs.tar .
chown -R {uid}:{uid} {ROOT}
"#,
            uid = user.uid
        );
        sb.sh_ok(&script);
        let p = RootlessPodman { sb, user };
        p.ok(&[
            "import",
            "--change",
            "ENV=PATH=/bin",
            &format!("{ROOT}/rootfs.tar"),
            IMAGE,
        ]);
        p
    }

    /// Where berth keeps its state for this user's Podman: `berth` in
    /// netavark's `--config` directory.
    pub fn berth_state_dir(&self) -> String {
        format!("{}/containers/networks/berth", self.user.runtime_dir)
    }
}

impl PodmanClient for RootlessPodman {
    fn podman(&self, args: &[&str]) -> Output {
        let mut c = self.user.command(&self.sb, "podman", args);
        c.env("HOME", format!("{ROOT}/home"))
            .env("CONTAINERS_CONF", format!("{ROOT}/containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", format!("{ROOT}/storage.conf"));
        run_timeout(c, PODMAN_TIMEOUT)
    }
}

impl Drop for RootlessPodman {
    fn drop(&mut self) {
        // What is left ends with the sandbox's PID namespace; this only
        // lets Podman take its containers down in order first.
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
    }
}

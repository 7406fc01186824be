//! containerd's CRI plugin inside a [`Sandbox`], driven over gRPC the way
//! kubelet drives it: the harness of the Kubernetes scenario.
//!
//! containerd runs in a sandbox with its own network, mount and PID
//! namespaces (so its shims and the pods' pause processes die with the
//! sandbox), with its root, state, socket and `opt` directory on the
//! sandbox's `/run` tmpfs, and `/var/lib/cni` (host-local's leases) on a
//! tmpfs of its own. Its CRI plugin reads one conflist from a directory
//! the test writes, and finds the plugins in a directory of symlinks:
//! `berth` (the binary under test) and the reference plugins of
//! /usr/lib/cni. With `timed`, named plugins are replaced by a wrapper that
//! logs how long each call took (`timings`).
//!
//! Three needs of this machine are handled here, not in berth: the pods'
//! cgroups are made by runc with cgroupfs under a parent of the test's own
//! (removed on drop: cgroups live outside the sandbox), runc is reached
//! through a wrapper that deletes `process.rlimits` from the bundle
//! (raising them needs CAP_SYS_RESOURCE), and `restrict_oom_score_adj`
//! keeps the pause container's OOM score at containerd's own.
//!
//! The pause image is made by the test: busybox-static whose entrypoint
//! sleeps, written as a Docker archive and imported with `ctr`. The
//! snapshotter is overlayfs when an overlay mounts on tmpfs here, else
//! native.
//!
//! The client is tests/cri_client/client.py, a Python gRPC client of a
//! proto written for the test (tests/cri_client/runtime.proto), compiled
//! with grpcio-tools in a venv that is made once under the target
//! directory and kept.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{assert_ok_ctx, run_timeout, stderr, stdout, Bg, Sandbox, BERTH, MIN_KERNEL};

/// Everything containerd writes, inside the sandbox.
pub const ROOT: &str = "/run/cri";
/// The conflist directory (`conf_dir`).
pub const CONF_DIR: &str = "/run/cri/net.d";
const SOCKET: &str = "/run/cri/containerd.sock";
/// The plugin directory go-cni searches (`bin_dir`).
const BIN_DIR: &str = "/run/cri/cni-bin";
/// The plugins a timing wrapper runs.
const REAL_BIN_DIR: &str = "/run/cri/cni-real";
const TIMINGS: &str = "/run/cri/timings.log";
const STOCK_PLUGINS: &str = "/usr/lib/cni";
const BUSYBOX: &str = "/bin/busybox";
/// The sandbox image the test builds.
pub const PAUSE_IMAGE: &str = "localhost/pause:berth-test";
const CLIENT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cri_client");
/// Bound for one client call (a RunPodSandbox waits for the plugins).
const CALL_TIMEOUT: Duration = Duration::from_secs(150);
/// The Python packages of the client (from PyPI).
const PIP_PACKAGES: [&str; 2] = ["grpcio", "grpcio-tools"];

/// What the scenario needs: (path, Debian package).
const NEEDS: [(&str, &str); 6] = [
    ("/usr/bin/containerd", "containerd"),
    ("/usr/bin/ctr", "containerd"),
    ("/usr/bin/containerd-shim-runc-v2", "containerd"),
    ("/usr/sbin/runc", "runc"),
    (BUSYBOX, "busybox-static"),
    ("/usr/lib/cni/portmap", "containernetworking-plugins"),
];

/// Prints `SKIP: ...` on the real stderr (`eprintln!` output is captured,
/// and so hidden, when the test passes).
pub fn skip(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "SKIP: {line}");
}

/// Prints a line on the real stderr (figures the test reports).
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Why the scenario cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    for (path, package) in NEEDS {
        if !Path::new(path).exists() {
            return Some(format!("{package} is not installed ({path} missing)"));
        }
    }
    if python().is_none() {
        return Some("python3 is not installed".into());
    }
    None
}

/// The system's Python: Debian's first (CI installs python3-venv for it).
fn python() -> Option<String> {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .map(str::to_string)
        .or_else(|| {
            Command::new("python3")
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| "python3".to_string())
        })
}

/// The venv with grpcio (made once, kept under the target directory).
/// Err: why there is none (no venv module: a loud SKIP). A pip failure
/// panics: the machine is meant to reach PyPI.
fn venv() -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cri-venv");
    let ready = dir.join(".berth-ready");
    // Tests run in parallel: one makes the venv, the others wait.
    let lock_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cri-venv.lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("{}: {e}", lock_path.display()));
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("locking {}: {e}", lock_path.display()))?;
    if ready.exists() {
        return Ok(dir);
    }
    let python = python().ok_or("python3 is not installed")?;
    let _ = std::fs::remove_dir_all(&dir);
    let out = run_timeout(
        {
            let mut c = Command::new(&python);
            c.args(["-m", "venv"]).arg(&dir);
            c
        },
        Duration::from_secs(120),
    );
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!(
            "`{python} -m venv` failed (Debian: install python3-venv): {}",
            stderr(&out).trim()
        ));
    }
    let out = run_timeout(
        {
            let mut c = Command::new(dir.join("bin/pip"));
            c.args(["install", "--quiet", "--disable-pip-version-check"])
                .args(PIP_PACKAGES);
            c
        },
        Duration::from_secs(600),
    );
    assert_ok_ctx(
        &out,
        "pip install grpcio grpcio-tools into the CRI test's venv",
    );
    std::fs::write(&ready, "").unwrap();
    Ok(dir)
}

/// A sandbox running containerd with its CRI plugin.
pub struct Cri {
    sb: Option<Sandbox>,
    containerd: Option<Bg>,
    python: PathBuf,
    /// Where the compiled proto modules are (PYTHONPATH).
    modules: String,
    /// The pods' cgroup parent, unique to this harness.
    cgroup_parent: String,
    pub snapshotter: String,
}

impl Cri {
    /// The harness with `conflist` as the only network configuration, or
    /// None after a loud SKIP line naming why it cannot run. Plugins named
    /// in `timed` log the duration of each call (see [`Cri::timings`]).
    /// `before` runs in the sandbox before containerd starts.
    pub fn new_or_skip(
        test: &str,
        conflist: &str,
        timed: &[&str],
        before: impl FnOnce(&Sandbox),
    ) -> Option<Cri> {
        if let Some(why) = missing() {
            skip(&format!("{test}: {why}; the CRI scenario did not run"));
            return None;
        }
        let venv = match venv() {
            Ok(v) => v,
            Err(why) => {
                skip(&format!("{test}: {why}; the CRI scenario did not run"));
                return None;
            }
        };
        let sb = Sandbox::with_pid_namespace();
        before(&sb);
        let cgroup_parent = format!("/berth-cri-{}", sb.pid());
        let mut cri = Cri {
            sb: Some(sb),
            containerd: None,
            python: venv.join("bin/python"),
            modules: format!("{ROOT}/py"),
            cgroup_parent,
            snapshotter: String::new(),
        };
        cri.prepare(conflist, timed);
        cri.start_containerd();
        cri.import_pause_image();
        Some(cri)
    }

    /// The sandbox ("the node").
    pub fn sb(&self) -> &Sandbox {
        self.sb
            .as_ref()
            .expect("the sandbox lives as long as the harness")
    }

    /// Directories, plugins, runc wrapper, configuration, the proto
    /// modules and the pause image's archive.
    fn prepare(&mut self, conflist: &str, timed: &[&str]) {
        let wrappers: String = timed
            .iter()
            .map(|name| {
                // bash's EPOCHREALTIME reads the clock without a process.
                format!(
                    r#"rm {BIN_DIR}/{name}
cat > {BIN_DIR}/{name} <<'EOF'
#!/bin/bash
t0=$EPOCHREALTIME
{REAL_BIN_DIR}/{name}
rc=$?
t1=$EPOCHREALTIME
echo "$CNI_COMMAND {name} $CNI_CONTAINERID $t0 $t1 $rc" >> {TIMINGS}
exit $rc
EOF
chmod +x {BIN_DIR}/{name}
"#
                )
            })
            .collect();
        let python = self.python.display();
        let modules = &self.modules;
        let script = format!(
            r#"set -e
mkdir -p /var/lib/cni
mount -t tmpfs tmpfs /var/lib/cni
mkdir -p {ROOT}/root {ROOT}/state {ROOT}/opt {CONF_DIR} {BIN_DIR} {REAL_BIN_DIR} {ROOT}/rootfs/bin {modules}
for f in {STOCK_PLUGINS}/*; do ln -s $f {BIN_DIR}/; ln -s $f {REAL_BIN_DIR}/; done
ln -s {BERTH} {BIN_DIR}/berth
ln -s {BERTH} {REAL_BIN_DIR}/berth
{wrappers}
cat > {CONF_DIR}/10-pods.conflist <<'EOF'
{conflist}
EOF
cat > {ROOT}/runc <<'EOF'
#!/bin/sh
# Deletes the rlimits from the OCI config (raising them needs
# CAP_SYS_RESOURCE), then runs runc with the arguments unchanged.
prev=
for a in "$@"; do
  case "$prev" in --bundle|-b) bundle="$a";; esac
  case "$a" in --bundle=*) bundle="${{a#--bundle=}}";; esac
  prev="$a"
done
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
  sed -i 's/"rlimits":\[[^]]*\],\{{0,1\}}//' "$bundle/config.json"
fi
exec /usr/sbin/runc "$@"
EOF
chmod +x {ROOT}/runc
# overlayfs when it mounts on tmpfs here, else the copying snapshotter.
mkdir -p {ROOT}/ovl/lower {ROOT}/ovl/upper {ROOT}/ovl/work {ROOT}/ovl/merged
if mount -t overlay overlay -o lowerdir={ROOT}/ovl/lower,upperdir={ROOT}/ovl/upper,workdir={ROOT}/ovl/work {ROOT}/ovl/merged 2>/dev/null; then
  umount {ROOT}/ovl/merged
  snapshotter=overlayfs
else
  snapshotter=native
fi
rm -r {ROOT}/ovl
cat > {ROOT}/config.toml <<EOF
version = 2
root = "{ROOT}/root"
state = "{ROOT}/state"
[grpc]
  address = "{SOCKET}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{ROOT}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$snapshotter"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{ROOT}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{BIN_DIR}"
    conf_dir = "{CONF_DIR}"
    max_conf_num = 1
EOF
# The pause image: busybox sleeping, as a Docker archive.
cd {ROOT}/rootfs
cp {BUSYBOX} bin/busybox
ln -s busybox bin/sleep
ln -s busybox bin/sh
mkdir -p etc proc sys dev tmp
tar -cf {ROOT}/layer.tar .
cd {ROOT}
layer=$(sha256sum layer.tar | cut -d' ' -f1)
cat > image-config.json <<EOF
{{"architecture":"amd64","os":"linux","config":{{"Entrypoint":["/bin/sleep","2147483647"],"Env":["PATH=/bin"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:$layer"]}}}}
EOF
echo '[{{"Config":"image-config.json","RepoTags":["{PAUSE_IMAGE}"],"Layers":["layer.tar"]}}]' > manifest.json
tar -cf pause.tar manifest.json image-config.json layer.tar
rm -r rootfs layer.tar
# The client's gRPC modules, from the proto.
{python} -m grpc_tools.protoc -I{CLIENT_DIR} --python_out={modules} --grpc_python_out={modules} {CLIENT_DIR}/runtime.proto
echo $snapshotter
"#
        );
        let out = self.sb().sh(&script);
        assert_ok_ctx(&out, "CRI harness setup");
        self.snapshotter = stdout(&out).trim().to_string();
    }

    fn start_containerd(&mut self) {
        let sb = self.sb();
        let mut c = sb.command(
            None,
            "sh",
            &[
                "-c",
                &format!("exec containerd --config {ROOT}/config.toml >{ROOT}/containerd.log 2>&1"),
            ],
        );
        // go-cni runs the plugins with containerd's environment.
        c.env("BERTH_NFT_MAX_KERNEL", MIN_KERNEL)
            .env("BERTH_STATE_DIR", crate::util::STATE_DIR);
        let bg = sb.spawn(c, false);
        self.containerd = Some(bg);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = self.client(&["version"]);
            if up.status.success() {
                let v: Value = serde_json::from_slice(&up.stdout).unwrap();
                assert_eq!(v["runtime_name"], "containerd", "{v}");
                assert_eq!(v["runtime_api_version"], "v1", "{v}");
                return;
            }
            if Instant::now() > deadline || !self.containerd.as_mut().unwrap().running() {
                panic!(
                    "containerd did not answer: {}\n{}",
                    stdout(&up) + &stderr(&up),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn import_pause_image(&self) {
        let out = self.sb().cmd(
            "ctr",
            &[
                "-a",
                SOCKET,
                "-n",
                "k8s.io",
                "images",
                "import",
                "--snapshotter",
                &self.snapshotter,
                &format!("{ROOT}/pause.tar"),
            ],
        );
        assert_ok_ctx(&out, "ctr images import (the pause image)");
    }

    /// containerd's log.
    pub fn log(&self) -> String {
        stdout(&self.sb().cmd("cat", &[&format!("{ROOT}/containerd.log")]))
    }

    /// Runs the client: `client.py SOCKET ARGS`.
    pub fn client(&self, args: &[&str]) -> Output {
        let client = format!("{CLIENT_DIR}/client.py");
        let mut all = vec![client.as_str(), SOCKET];
        all.extend_from_slice(args);
        let mut c = self
            .sb()
            .command(None, &self.python.to_string_lossy(), &all);
        c.env("PYTHONPATH", &self.modules);
        run_timeout(c, CALL_TIMEOUT)
    }

    /// A client call: its JSON answer, or the gRPC error object.
    pub fn call(&self, args: &[&str]) -> Result<Value, Value> {
        let out = self.client(args);
        let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        match (out.status.success(), parsed) {
            (true, Some(v)) => Ok(v),
            (false, Some(v)) if v.get("error").is_some() => Err(v),
            _ => panic!(
                "CRI client {args:?} failed: {}\n{}",
                stdout(&out),
                stderr(&out)
            ),
        }
    }

    /// A call that must succeed.
    pub fn ok(&self, args: &[&str]) -> Value {
        self.call(args).unwrap_or_else(|e| {
            panic!(
                "CRI {args:?} failed: {e}\n--- containerd log (tail) ---\n{}",
                tail(&self.log(), 30)
            )
        })
    }

    /// A pod description for the client (see client.py), with this
    /// harness's cgroup parent.
    pub fn pod(&self, name: &str, ports: Value) -> Value {
        serde_json::json!({
            "name": name,
            "namespace": "default",
            "cgroup_parent": self.cgroup_parent,
            "ports": ports,
        })
    }

    /// RunPodSandbox: the sandbox id, or the gRPC error.
    pub fn run_pod(&self, pod: &Value) -> Result<String, Value> {
        self.call(&["run", &pod.to_string()])
            .map(|v| v["id"].as_str().expect("an id").to_string())
    }

    /// PodSandboxStatus (verbose), as client.py reports it.
    pub fn status(&self, id: &str) -> Value {
        self.ok(&["status", id])
    }

    pub fn stop(&self, id: &str) -> Result<Value, Value> {
        self.call(&["stop", id])
    }

    pub fn remove(&self, id: &str) -> Result<Value, Value> {
        self.call(&["remove", id])
    }

    /// ListPodSandbox.
    pub fn list(&self) -> Vec<Value> {
        match self.ok(&["list"]) {
            Value::Array(a) => a,
            other => panic!("ListPodSandbox: {other}"),
        }
    }

    /// The timing wrappers' lines: `COMMAND PLUGIN CONTAINERID T0 T1 RC`.
    pub fn timings(&self) -> String {
        stdout(
            &self
                .sb()
                .cmd("sh", &["-c", &format!("cat {TIMINGS} 2>/dev/null || true")]),
        )
    }
}

/// The name under /run/netns of a pod's namespace path.
pub fn netns_name(path: &str) -> String {
    let name = path
        .strip_prefix("/var/run/netns/")
        .or_else(|| path.strip_prefix("/run/netns/"))
        .unwrap_or_else(|| panic!("pod namespace {path:?} is not under /run/netns"));
    name.to_string()
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Cri {
    fn drop(&mut self) {
        // Pods go through the CRI first, so that runc removes their
        // cgroups; the PID namespace ends whatever is left.
        if self.containerd.as_mut().is_some_and(|c| c.running()) {
            if let Ok(Value::Array(pods)) = self.call_quiet(&["list"]) {
                for p in pods {
                    if let Some(id) = p["id"].as_str() {
                        let _ = self.call_quiet(&["stop", id]);
                        let _ = self.call_quiet(&["remove", id]);
                    }
                }
            }
        }
        drop(self.containerd.take());
        drop(self.sb.take());
        remove_cgroups(&self.cgroup_parent);
    }
}

impl Cri {
    /// A call whose outcome does not matter (cleanup): never panics.
    fn call_quiet(&self, args: &[&str]) -> Result<Value, ()> {
        let out = self.client(args);
        if !out.status.success() {
            return Err(());
        }
        serde_json::from_slice(&out.stdout).map_err(|_| ())
    }
}

/// Removes the cgroup parent (and the pods' cgroups under it) from every
/// hierarchy, waiting for processes that are still exiting.
fn remove_cgroups(parent: &str) {
    let root = PathBuf::from("/sys/fs/cgroup");
    let mut hierarchies = vec![root.clone()];
    if let Ok(dirs) = std::fs::read_dir(&root) {
        hierarchies.extend(dirs.flatten().map(|d| d.path()));
    }
    for h in hierarchies {
        let dir = h.join(parent.trim_start_matches('/'));
        if !dir.is_dir() {
            continue;
        }
        let mut leaves: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        leaves.push(dir);
        for d in leaves {
            for _ in 0..40 {
                match std::fs::remove_dir(&d) {
                    Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32) => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => break,
                }
            }
        }
    }
}

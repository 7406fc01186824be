//! Shared harness for the integration tests: a private sandbox per test.
//!
//! A [`Sandbox`] is a holder process in fresh network and mount namespaces,
//! with a tmpfs on `/run`. It plays "the host" of one test: everything the
//! test creates (links, addresses, routes, sysctls, nftables, `/run/netns`
//! entries, berth state under `/run/berth-state`) lives in it and vanishes
//! when it is dropped. Tests never touch the real host, and each test gets
//! its own sandbox, so they run in parallel.
//!
//! Commands run inside through `nsenter`; traffic is checked with
//! `berth-probe` run inside namespaces, and kernel state with `ip -j` and
//! `nft -j` as an independent oracle.
#![allow(dead_code)]

/// Prints a `SKIP ...` line past the test harness's output capture (which
/// keeps a passing test's `eprintln!` to itself), so a test that cannot
/// run says so in every run, CI's included.
#[macro_export]
macro_rules! skip_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

pub mod cni;
pub mod dns;
pub mod podman;
pub mod podman_rootless;
pub mod users;

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");
/// Runs the end-to-end tests against another `berth` binary (say, the
/// build before a change, to see a new test fail there); the probe stays
/// this build's.
pub const BERTH_UNDER_TEST_ENV: &str = "BERTH_UNDER_TEST";

/// The `berth` binary the end-to-end tests and benchmarks run: the one
/// `BERTH_UNDER_TEST` names, else this build's (say, the installed static
/// build in a benchmark against the peers).
pub fn berth_under_test() -> String {
    std::env::var(BERTH_UNDER_TEST_ENV).unwrap_or_else(|_| BERTH.to_string())
}
pub const PROBE: &str = env!("CARGO_BIN_EXE_berth-probe");
/// The DNS server's own executable, built beside `berth`, which starts it
/// as `berth-dns --state-dir DIR dns-server`.
pub const BERTH_DNS: &str = env!("CARGO_BIN_EXE_berth-dns");
pub const STATE_DIR: &str = "/run/berth-state";
/// The oldest kernel berth supports (README "Kernel requirements").
pub const MIN_KERNEL: &str = "5.10";

/// Default bound for one command run inside the sandbox.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for waiting for a background process to print `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

const HOLDER_SCRIPT: &str = "mount -t tmpfs tmpfs /run && mkdir -p /run/netns && \
     ip link set lo up && echo ready && exec sleep 1000000";

/// PIDs of processes the sandbox spawned and has not reaped yet (an unreaped
/// child keeps its PID, so killing it by PID is safe).
type PidList = Arc<Mutex<Vec<u32>>>;

/// One test's private "host".
pub struct Sandbox {
    holder: Child,
    pid: u32,
    mnt_ns: (u64, u64),
    net_ns: (u64, u64),
    spawned: PidList,
    /// Whether the sandbox has its own PID namespace (see
    /// [`Sandbox::with_pid_namespace`]).
    pid_ns: bool,
}

/// Addresses of the namespace `internet` made by [`Sandbox::internet`].
#[derive(Debug, Clone)]
pub struct Internet {
    /// Name of the namespace under /run/netns.
    pub netns: String,
    /// Host end of the uplink veth.
    pub host_ifname: String,
    /// Sandbox host's uplink address (203.0.113.1).
    pub host_ip: String,
    /// The internet namespace's uplink address (203.0.113.2).
    pub peer_ip: String,
    /// A "public server" address on the internet namespace's lo (198.51.100.1).
    pub public_ip: String,
}

fn ns_id(path: &str) -> (u64, u64) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {path}: {e}"));
    (m.dev(), m.ino())
}

impl Sandbox {
    /// Starts the holder process and waits until its namespaces are set up.
    pub fn new() -> Sandbox {
        Sandbox::start(false)
    }

    /// A sandbox that also has its own PID namespace, with its own /proc.
    /// Everything run inside joins it, so daemons that detach (Podman's
    /// conmon and the containers it starts) die with the sandbox instead of
    /// outliving the test.
    pub fn with_pid_namespace() -> Sandbox {
        Sandbox::start(true)
    }

    fn start(pid_ns: bool) -> Sandbox {
        let mut args = vec!["--net", "--mount", "--propagation", "private"];
        if pid_ns {
            // --kill-child: when the holder is killed, the namespace's init
            // dies with it, and the kernel ends every process inside.
            args.extend(["--pid", "--fork", "--mount-proc", "--kill-child"]);
        }
        args.extend(["sh", "-c", HOLDER_SCRIPT]);
        let mut holder = Command::new("unshare")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn unshare (are we root?)");
        let pid = holder.id();
        let stdout = holder.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) if line.trim() == "ready" => {}
            other => {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                let mut err = String::new();
                if let Some(mut e) = holder.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                let _ = holder.wait();
                panic!("sandbox holder did not get ready: {other:?}; stderr: {err}");
            }
        }
        let mnt_ns = ns_id(&format!("/proc/{pid}/ns/mnt"));
        let net_ns = ns_id(&format!("/proc/{pid}/ns/net"));
        assert_ne!(
            net_ns,
            ns_id("/proc/self/ns/net"),
            "sandbox must not share the real host's network namespace"
        );
        Sandbox {
            holder,
            pid,
            mnt_ns,
            net_ns,
            spawned: Arc::new(Mutex::new(Vec::new())),
            pid_ns,
        }
    }

    /// PID of the holder; `/proc/PID/ns/net` is the sandbox host's namespace.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Path of the sandbox host's network namespace, as seen from outside.
    pub fn host_netns_path(&self) -> String {
        format!("/proc/{}/ns/net", self.pid)
    }

    fn nsenter_host(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.pid))
            .arg(format!("--mount=/proc/{}/ns/mnt", self.pid));
        if self.pid_ns {
            // The holder (unshare) made the namespace for its child only.
            c.arg(format!("--pid=/proc/{}/ns/pid_for_children", self.pid));
        }
        c.arg("--");
        c
    }

    /// A command that runs `program args` in the sandbox host (its network
    /// and mount namespaces), or, with `netns`, in `/run/netns/NAME` of it.
    pub fn command(&self, netns: Option<&str>, program: &str, args: &[&str]) -> Command {
        let mut c = self.nsenter_host();
        if let Some(name) = netns {
            c.arg("nsenter")
                .arg(format!("--net=/run/netns/{name}"))
                .arg("--");
        }
        c.arg(program).args(args);
        c
    }

    /// Runs a command in the sandbox host (bounded by [`CMD_TIMEOUT`]).
    pub fn cmd(&self, program: &str, args: &[&str]) -> Output {
        run_timeout(self.command(None, program, args), CMD_TIMEOUT)
    }

    /// Runs `sh -c SCRIPT` in the sandbox host.
    pub fn sh(&self, script: &str) -> Output {
        self.cmd("sh", &["-c", script])
    }

    /// Runs `sh -c SCRIPT` in the sandbox host and asserts it succeeded.
    pub fn sh_ok(&self, script: &str) -> Output {
        let out = self.sh(script);
        assert_ok_ctx(&out, script);
        out
    }

    /// Runs a command in the namespace `/run/netns/NAME` of the sandbox.
    pub fn in_netns(&self, netns: &str, program: &str, args: &[&str]) -> Output {
        run_timeout(self.command(Some(netns), program, args), CMD_TIMEOUT)
    }

    /// The `berth` command with its state directory inside the sandbox
    /// (the binary named by `BERTH_UNDER_TEST`, if set).
    pub fn berth_command(&self, args: &[&str]) -> Command {
        let bin = berth_under_test();
        let mut c = self.command(None, &bin, args);
        c.env("BERTH_STATE_DIR", STATE_DIR);
        // Every end-to-end test proves berth works on the oldest kernel it
        // supports: nf_tables messages newer than that are refused.
        c.env("BERTH_NFT_MAX_KERNEL", MIN_KERNEL);
        c
    }

    /// Runs `berth ARGS` in the sandbox host.
    pub fn berth(&self, args: &[&str]) -> Output {
        run_timeout(self.berth_command(args), CMD_TIMEOUT)
    }

    /// Runs `berth ARGS`, asserts exit 0 and returns stdout.
    pub fn berth_ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert_ok_ctx(&out, &format!("berth {}", args.join(" ")));
        stdout(&out)
    }

    /// Runs `berth ARGS`, asserts exit 0 and returns the whole output.
    pub fn berth_out_ok(&self, args: &[&str]) -> Output {
        let out = self.berth(args);
        assert_ok_ctx(&out, &format!("berth {}", args.join(" ")));
        out
    }

    /// Runs `berth ARGS` (which should include `--json`), asserts exit 0 and
    /// parses stdout.
    pub fn berth_json(&self, args: &[&str]) -> Value {
        let out = self.berth(args);
        let what = format!("berth {}", args.join(" "));
        assert_ok_ctx(&out, &what);
        parse_json(&out, &what)
    }

    /// `berth network ls --json` as an array.
    pub fn networks(&self) -> Vec<Value> {
        as_array(self.berth_json(&["network", "ls", "--json"]))
    }

    /// The network object named `name` from `berth network ls --json`.
    pub fn network(&self, name: &str) -> Value {
        self.networks()
            .into_iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("network {name} not in `berth network ls --json`"))
    }

    /// `berth ps --json` as an array.
    pub fn endpoints(&self) -> Vec<Value> {
        as_array(self.berth_json(&["ps", "--json"]))
    }

    /// After many attaches at once: `count` endpoints, no IPv4 address
    /// twice, and `ports` elements each (addresses starting with `prefix`)
    /// in the IPv4 map of published ports.
    pub fn assert_endpoints_distinct(&self, count: usize, ports: usize, prefix: &str) {
        let endpoints = self.endpoints();
        assert_eq!(endpoints.len(), count);
        let mut addrs: Vec<&str> = endpoints
            .iter()
            .map(|e| e["ip"].as_str().unwrap())
            .collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), count, "no duplicate address");
        let elements =
            stdout(&self.cmd("nft", &["list", "map", "inet", "berth", "published4_any"]));
        assert_eq!(
            elements.matches(&format!(" : {prefix}")).count(),
            count * ports,
            "{elements}"
        );
    }

    /// `berth network create NAME --subnet SUBNET`, asserted to succeed.
    pub fn create_network(&self, name: &str, subnet: &str) {
        self.berth_ok(&["network", "create", name, "--subnet", subnet]);
    }

    /// `berth connect NET NETNS --json [EXTRA...]`, asserted to succeed;
    /// returns the endpoint object.
    pub fn connect(&self, net: &str, netns: &str, extra: &[&str]) -> Value {
        let mut args = vec!["connect", net, netns, "--json"];
        args.extend_from_slice(extra);
        self.berth_json(&args)
    }

    /// Spawns a background process (killed on drop). With `wait_ready`, waits
    /// until it prints a line `ready` on stdout.
    pub fn spawn(&self, mut cmd: Command, wait_ready: bool) -> Bg {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn background process");
        let pid = child.id();
        self.spawned.lock().unwrap().push(pid);
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        {
            let out = out.clone();
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    out.lock().unwrap().push_str(&line);
                    out.lock().unwrap().push('\n');
                    let _ = tx.send(line);
                }
            });
        }
        {
            let err = err.clone();
            let mut stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    err.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let mut bg = Bg {
            child,
            pid,
            out,
            err,
            spawned: self.spawned.clone(),
            status: None,
        };
        if wait_ready {
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) if line.trim() == "ready" => break,
                    Ok(_) => continue,
                    Err(_) => {
                        let status = bg.wait_timeout(Duration::from_millis(200));
                        panic!(
                            "background process {:?} did not print `ready` (status {status:?}); \
                             stdout: {:?}; stderr: {:?}",
                            bg.child_desc(&cmd),
                            bg.stdout(),
                            bg.stderr()
                        );
                    }
                }
            }
        }
        bg
    }

    /// Spawns `program args` in `/run/netns/NAME` (None: the sandbox host).
    pub fn spawn_in_netns(
        &self,
        netns: Option<&str>,
        program: &str,
        args: &[&str],
        wait_ready: bool,
    ) -> Bg {
        self.spawn(self.command(netns, program, args), wait_ready)
    }

    /// Spawns `berth ARGS` in the background (e.g. `berth run`).
    pub fn spawn_berth(&self, args: &[&str], wait_ready: bool) -> Bg {
        self.spawn(self.berth_command(args), wait_ready)
    }

    /// Runs `berth-probe ARGS` in `/run/netns/NAME` (None: the sandbox host).
    pub fn probe(&self, netns: Option<&str>, args: &[&str]) -> Output {
        run_timeout(self.command(netns, PROBE, args), CMD_TIMEOUT)
    }

    /// Starts `berth-probe tcp-serve ADDR` in `netns` and waits until it is ready.
    pub fn tcp_server(&self, netns: Option<&str>, addr: &str) -> Bg {
        self.spawn_in_netns(netns, PROBE, &["tcp-serve", addr], true)
    }

    /// Starts `berth-probe udp-serve ADDR` in `netns` and waits until it is ready.
    pub fn udp_server(&self, netns: Option<&str>, addr: &str) -> Bg {
        self.spawn_in_netns(netns, PROBE, &["udp-serve", addr], true)
    }

    /// `berth-probe tcp-connect ADDR` from `netns` with a 2 s timeout.
    pub fn tcp(&self, from: Option<&str>, addr: &str) -> Output {
        self.probe(from, &["tcp-connect", addr, "--timeout-ms", "2000"])
    }

    /// `berth-probe udp-send ADDR` from `netns` with a 2 s timeout.
    pub fn udp(&self, from: Option<&str>, addr: &str) -> Output {
        self.probe(from, &["udp-send", addr, "--timeout-ms", "2000"])
    }

    /// `berth-probe ping IP` from `netns` with a 2 s timeout.
    pub fn ping(&self, from: Option<&str>, ip: &str) -> Output {
        self.probe(from, &["ping", ip, "--timeout-ms", "2000"])
    }

    /// Asserts a TCP exchange from `from` to `addr` works and returns the
    /// source address the server saw (`IP` of `... from IP:PORT`).
    pub fn assert_tcp(&self, from: Option<&str>, addr: &str) -> String {
        let out = self.tcp(from, addr);
        assert_ok_ctx(&out, &format!("tcp {from:?} -> {addr}"));
        seen_source(&stdout(&out))
    }

    /// Asserts a UDP exchange works; returns the source IP the server saw.
    pub fn assert_udp(&self, from: Option<&str>, addr: &str) -> String {
        let out = self.udp(from, addr);
        assert_ok_ctx(&out, &format!("udp {from:?} -> {addr}"));
        seen_source(&stdout(&out))
    }

    /// Asserts an ICMP echo from `from` to `ip` gets a reply.
    pub fn assert_ping(&self, from: Option<&str>, ip: &str) {
        let out = self.ping(from, ip);
        assert_ok_ctx(&out, &format!("ping {from:?} -> {ip}"));
    }

    /// `ip netns add NAME` inside the sandbox.
    pub fn add_netns(&self, name: &str) {
        let out = self.cmd("ip", &["netns", "add", name]);
        assert_ok_ctx(&out, &format!("ip netns add {name}"));
        let out = self.in_netns(name, "ip", &["link", "set", "lo", "up"]);
        assert_ok_ctx(&out, &format!("lo up in {name}"));
    }

    /// Names under the sandbox's /run/netns.
    pub fn netns_list(&self) -> Vec<String> {
        let out = self.cmd("ls", &["-1", "/run/netns"]);
        assert_ok_ctx(&out, "ls /run/netns");
        let mut v: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        v.sort();
        v
    }

    /// `ip -j ARGS` in the sandbox host, parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        self.ip_json_in(None, args)
    }

    /// `ip -j ARGS` in `/run/netns/NAME` (None: the sandbox host), parsed.
    pub fn ip_json_in(&self, netns: Option<&str>, args: &[&str]) -> Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        let out = run_timeout(self.command(netns, "ip", &full), CMD_TIMEOUT);
        let what = format!("ip {} (in {netns:?})", full.join(" "));
        assert_ok_ctx(&out, &what);
        if stdout(&out).trim().is_empty() {
            return Value::Array(vec![]);
        }
        parse_json(&out, &what)
    }

    /// Link names in `netns` (None: the sandbox host).
    pub fn link_names(&self, netns: Option<&str>) -> Vec<String> {
        as_array(self.ip_json_in(netns, &["link"]))
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(str::to_string))
            .collect()
    }

    /// How many of berth's endpoint veths (`vb…`) the sandbox host has.
    pub fn host_veth_count(&self) -> usize {
        self.link_names(None)
            .into_iter()
            .filter(|l| l.starts_with("vb"))
            .count()
    }

    /// The `ip -j link show DEV` object, or None when there is no such link.
    pub fn link(&self, netns: Option<&str>, dev: &str) -> Option<Value> {
        as_array(self.ip_json_in(netns, &["link"]))
            .into_iter()
            .find(|l| l["ifname"] == dev)
    }

    /// Waits up to `timeout` for link `dev` to disappear from `netns`; true
    /// when it is gone. (The kernel removes a deleted namespace's devices,
    /// and their veth peers, in the background.)
    pub fn wait_link_gone(&self, netns: Option<&str>, dev: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.link(netns, dev).is_none() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// IPv4 `ADDR/PREFIX` strings on `dev` in `netns`.
    pub fn ipv4_addrs(&self, netns: Option<&str>, dev: &str) -> Vec<String> {
        let v = self.ip_json_in(netns, &["-4", "addr", "show", "dev", dev]);
        let mut res = vec![];
        for l in as_array(v) {
            for a in l["addr_info"].as_array().cloned().unwrap_or_default() {
                if let (Some(ip), Some(p)) = (a["local"].as_str(), a["prefixlen"].as_u64()) {
                    res.push(format!("{ip}/{p}"));
                }
            }
        }
        res
    }

    /// IPv4 routes of the main table in `netns`.
    pub fn routes(&self, netns: Option<&str>) -> Vec<Value> {
        as_array(self.ip_json_in(netns, &["-4", "route", "show", "table", "main"]))
    }

    /// Reads a sysctl (`net.ipv4.ip_forward`) in the sandbox host.
    pub fn sysctl(&self, key: &str) -> String {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let out = self.cmd("cat", &[&path]);
        assert_ok_ctx(&out, &path);
        stdout(&out).trim().to_string()
    }

    /// Creates a veth pair in the sandbox host, both ends up (a stand-in for
    /// a dummy link: this kernel has no dummy driver).
    pub fn add_veth(&self, name: &str, peer: &str) {
        self.sh_ok(&format!(
            "ip link add {name} type veth peer name {peer} && \
             ip link set {name} up && ip link set {peer} up"
        ));
    }

    /// Creates the namespace `internet`, wired to the sandbox host by a veth
    /// uplink (host `uplink0` 203.0.113.1/24, internet `eth0` 203.0.113.2/24,
    /// 198.51.100.1/32 on its lo). The host gets a default route via it, the
    /// internet namespace a default route back.
    pub fn internet(&self) -> Internet {
        let inet = Internet {
            netns: "internet".into(),
            host_ifname: "uplink0".into(),
            host_ip: "203.0.113.1".into(),
            peer_ip: "203.0.113.2".into(),
            public_ip: "198.51.100.1".into(),
        };
        self.add_netns(&inet.netns);
        self.sh_ok(
            "ip link add uplink0 type veth peer name eth0 netns internet && \
             ip addr add 203.0.113.1/24 dev uplink0 && ip link set uplink0 up && \
             ip -n internet addr add 203.0.113.2/24 dev eth0 && \
             ip -n internet link set eth0 up && \
             ip -n internet addr add 198.51.100.1/32 dev lo && \
             ip -n internet route add default via 203.0.113.1 && \
             ip route add default via 203.0.113.2",
        );
        inet
    }

    /// Asserts that `berth ARGS` is refused as bad input: exit code 2, one
    /// line on stderr that contains `names`, and the sandbox unchanged.
    pub fn assert_refused(&self, args: &[&str], names: &str) {
        let before = self.snapshot();
        let out = self.berth(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "berth {args:?}: {err}");
        assert!(
            err.contains(names) && err.trim().lines().count() == 1,
            "berth {args:?} should say {names:?} in one line: {err}"
        );
        self.snapshot()
            .assert_same(&before, &format!("berth {}", args.join(" ")));
    }

    /// Everything a "nothing changed" assertion compares: links, addresses
    /// and IPv4 routes of the host and of every /run/netns namespace, the
    /// /run/netns listing, ip_forward, the nftables ruleset and berth's own
    /// view (`network ls --json`, `ps --json`). Volatile fields are removed.
    /// The sandbox's state once the kernel has finished what it does in
    /// the background (the veth of a namespace a `run` or a test deleted
    /// goes a little after the namespace): two looks in a row agree.
    /// A disconnect's veth waits a moment in the pending group before the
    /// supervisor deletes it: settled means none waits any more.
    /// A namespace being destroyed keeps its veths until the kernel's
    /// cleanup work runs, which may leave two looks in a row alike: a veth
    /// whose peer is in a namespace without a name is waited for too (up to
    /// 3 s, since a test may hold an unnamed namespace on purpose).
    pub fn snapshot(&self) -> Snapshot {
        let start = Instant::now();
        let mut last = self.snapshot_now();
        for _ in 0..250 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let now = self.snapshot_now();
            if now == last
                && self.pending_links().is_empty()
                && (start.elapsed() > Duration::from_secs(3) || self.orphan_veths().is_empty())
            {
                return now;
            }
            last = now;
        }
        panic!("the sandbox never settled");
    }

    /// The host's links whose peer lives in a namespace that has no name
    /// under /run/netns: mostly the veths of a namespace on its way out.
    pub fn orphan_veths(&self) -> Vec<String> {
        let named: HashSet<i64> = as_array(self.ip_json(&["netns", "list"]))
            .iter()
            .filter_map(|n| n["id"].as_i64())
            .collect();
        as_array(self.ip_json(&["link"]))
            .iter()
            .filter(|l| {
                l["link_netnsid"]
                    .as_i64()
                    .is_some_and(|id| !named.contains(&id))
            })
            .filter_map(|l| l["ifname"].as_str().map(str::to_string))
            .collect()
    }

    /// The host's links a disconnect took out of service that are not
    /// deleted yet (berth's pending names: `vp`/`vq` and 12 hex digits).
    pub fn pending_links(&self) -> Vec<String> {
        self.link_names(None)
            .into_iter()
            .filter(|n| {
                n.len() == 14
                    && (n.starts_with("vp") || n.starts_with("vq"))
                    && n[2..].bytes().all(|b| b.is_ascii_hexdigit())
            })
            .collect()
    }

    /// Waits up to `timeout` until no link is pending; true when none is.
    pub fn wait_no_pending(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.pending_links().is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The sandbox's state as it is at this instant.
    pub fn snapshot_now(&self) -> Snapshot {
        let mut parts = BTreeMap::new();
        let netns = self.netns_list();
        parts.insert("netns".to_string(), Value::from(netns.clone()));
        let mut spaces: Vec<Option<&str>> = vec![None];
        spaces.extend(netns.iter().map(|n| Some(n.as_str())));
        for ns in spaces {
            let label = ns.unwrap_or("<host>");
            let links = self.ip_json_in(ns, &["link"]);
            parts.insert(format!("{label}: links"), scrub(links));
            let addrs = self.ip_json_in(ns, &["addr"]);
            parts.insert(format!("{label}: addrs"), scrub(addrs));
            let routes = self.ip_json_in(ns, &["-4", "route", "show", "table", "main"]);
            parts.insert(format!("{label}: routes"), scrub(routes));
        }
        parts.insert(
            "sysctl net.ipv4.ip_forward".into(),
            Value::from(self.sysctl("net.ipv4.ip_forward")),
        );
        let nft = self.cmd("nft", &["-j", "list", "ruleset"]);
        parts.insert("nft ruleset".into(), scrub(loose_json(&nft)));
        let views: [&[&str]; 2] = [&["network", "ls", "--json"], &["ps", "--json"]];
        for args in views {
            let out = self.berth(args);
            parts.insert(format!("berth {}", args.join(" ")), loose_json(&out));
        }
        Snapshot(parts)
    }

    /// Processes (by PID) that live in the sandbox: in its mount namespace,
    /// or in its network namespace or one under its /run/netns.
    pub fn processes(&self) -> Vec<u32> {
        let mut nets: HashSet<(u64, u64)> = HashSet::new();
        nets.insert(self.net_ns);
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{}/root/run/netns", self.pid)) {
            for e in dir.flatten() {
                if let Ok(m) = std::fs::metadata(e.path()) {
                    nets.insert((m.dev(), m.ino()));
                }
            }
        }
        let me = std::process::id();
        let Ok(proc_dir) = std::fs::read_dir("/proc") else {
            return vec![];
        };
        // (pid, ppid, lives in the sandbox's namespaces)
        let mut all = vec![];
        for e in proc_dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me || pid == self.pid {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // "pid (comm) state ppid ..."; comm may contain spaces or parens.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(0);
            let id = |kind: &str| {
                std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
                    .ok()
                    .map(|m| (m.dev(), m.ino()))
            };
            let in_mnt = id("mnt") == Some(self.mnt_ns);
            let in_net = id("net").is_some_and(|n| nets.contains(&n));
            all.push((pid, ppid, in_mnt || in_net));
        }
        // Descendants of sandbox processes belong to it too (e.g. a command
        // that berth started in namespaces of its own).
        let mut set: HashSet<u32> = all.iter().filter(|p| p.2).map(|p| p.0).collect();
        set.insert(self.pid);
        loop {
            let before = set.len();
            for (pid, ppid, _) in &all {
                if set.contains(ppid) {
                    set.insert(*pid);
                }
            }
            if set.len() == before {
                break;
            }
        }
        set.remove(&self.pid);
        let mut res: Vec<u32> = set.into_iter().collect();
        res.sort();
        res
    }

    /// Command line (argv joined by spaces) of a process, if it is alive.
    pub fn cmdline(pid: u32) -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        {
            return None;
        }
        let c = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        Some(
            String::from_utf8_lossy(&c)
                .trim_end_matches('\0')
                .replace('\0', " "),
        )
    }

    /// PIDs of the sandbox's processes whose command line is exactly `cmdline`.
    pub fn find_processes(&self, cmdline: &str) -> Vec<u32> {
        self.processes()
            .into_iter()
            .filter(|p| Self::cmdline(*p).as_deref() == Some(cmdline))
            .collect()
    }

    /// Command lines (argv joined by spaces) of the sandbox's processes.
    pub fn process_cmdlines(&self) -> Vec<String> {
        self.processes()
            .into_iter()
            .filter_map(Self::cmdline)
            .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for pid in self.spawned.lock().unwrap().iter() {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        // Anything else still living in the sandbox was started by this test
        // (through nsenter, berth or a probe): end it by PID. berth's
        // background processes start each other again when one dies, so
        // look again until a look finds none (what is killed starts
        // nothing; only a start already under way can add one).
        for _ in 0..50 {
            let left = self.processes();
            if left.is_empty() {
                break;
            }
            for pid in left {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        let _ = self.holder.wait();
    }
}

/// A background process in the sandbox; killed (by PID) on drop.
pub struct Bg {
    child: Child,
    pid: u32,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    spawned: PidList,
    status: Option<ExitStatus>,
}

impl Bg {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn child_desc(&self, cmd: &Command) -> String {
        format!("{:?} (pid {})", cmd, self.pid)
    }

    /// Sends `sig` to the process (if it has not been reaped).
    pub fn signal(&self, sig: Signal) {
        if self.status.is_none() {
            let _ = kill(Pid::from_raw(self.pid as i32), sig);
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                self.spawned.lock().unwrap().retain(|p| *p != self.pid);
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.wait_timeout(Duration::ZERO).is_none()
    }

    /// Stdout captured so far.
    pub fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Stderr captured so far.
    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
            let _ = self.child.wait();
            self.spawned.lock().unwrap().retain(|p| *p != self.pid);
        }
    }
}

/// Runs `cmd` with stdin closed, capturing output, killing it (by PID) after
/// `timeout`. A timed-out run reports signal 9 and a note on stderr.
pub fn run_timeout(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let collect = |mut r: Box<dyn Read + Send>| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                b.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
            let _ = tx.send(());
        });
        (buf, rx)
    };
    let (out_buf, out_done) = collect(Box::new(child.stdout.take().unwrap()));
    let (err_buf, err_done) = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => panic!("wait {cmd:?}: {e}"),
        }
        if Instant::now() >= deadline {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            timed_out = true;
            break ExitStatus::from_raw(9);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // A leftover grandchild may hold the pipes open; do not wait for it long.
    let _ = out_done.recv_timeout(Duration::from_secs(2));
    let _ = err_done.recv_timeout(Duration::from_secs(2));
    let stdout = out_buf.lock().unwrap().clone();
    let mut stderr = err_buf.lock().unwrap().clone();
    if timed_out {
        stderr.extend_from_slice(format!("[harness: killed after {timeout:?}]\n").as_bytes());
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Runs many commands at once (each in its own thread, started together),
/// returning their outputs in order.
pub fn run_all(cmds: Vec<Command>, timeout: Duration) -> Vec<Output> {
    let barrier = Arc::new(std::sync::Barrier::new(cmds.len()));
    let handles: Vec<_> = cmds
        .into_iter()
        .map(|c| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                run_timeout(c, timeout)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// A comparable picture of the sandbox; see [`Sandbox::snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot(pub BTreeMap<String, Value>);

impl Snapshot {
    /// Panics with the differing parts when `self` (taken after) differs
    /// from `other` (taken before), as in `sb.snapshot().assert_same(&before, ..)`.
    pub fn assert_same(&self, other: &Snapshot, context: &str) {
        if self == other {
            return;
        }
        let mut msg = format!("sandbox state changed ({context}):\n");
        let keys: std::collections::BTreeSet<&String> =
            self.0.keys().chain(other.0.keys()).collect();
        for k in keys {
            let a = other.0.get(k);
            let b = self.0.get(k);
            if a != b {
                msg.push_str(&format!(
                    "  {k}:\n    before: {}\n    after:  {}\n",
                    a.map(|v| v.to_string()).unwrap_or_default(),
                    b.map(|v| v.to_string()).unwrap_or_default()
                ));
            }
        }
        panic!("{msg}");
    }
}

/// Removes fields that change without anyone changing the configuration:
/// counters, lifetimes, operational state, carrier flags, IPv6 link-local
/// addresses (added asynchronously by the kernel) and nft metainfo.
pub fn scrub(v: Value) -> Value {
    const DROP_KEYS: [&str; 10] = [
        "stats",
        "stats64",
        "packets",
        "bytes",
        "valid_life_time",
        "preferred_life_time",
        "operstate",
        "metainfo",
        "tentative",
        "expires",
    ];
    const DROP_FLAGS: [&str; 5] = ["LOWER_UP", "NO-CARRIER", "M-DOWN", "DORMANT", "linkdown"];
    match v {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, val) in map {
                if DROP_KEYS.contains(&k.as_str()) {
                    continue;
                }
                let val = if k == "flags" {
                    match val {
                        Value::Array(fl) => Value::Array(
                            fl.into_iter()
                                .filter(|f| !f.as_str().is_some_and(|s| DROP_FLAGS.contains(&s)))
                                .collect(),
                        ),
                        other => other,
                    }
                } else if k == "addr_info" {
                    match val {
                        Value::Array(ai) => Value::Array(
                            ai.into_iter()
                                .filter(|a| !(a["family"] == "inet6" && a["scope"] == "link"))
                                .map(scrub)
                                .collect(),
                        ),
                        other => other,
                    }
                } else {
                    scrub(val)
                };
                out.insert(k, val);
            }
            // nft metainfo entries become empty objects once scrubbed
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(
            a.into_iter()
                .map(scrub)
                .filter(|x| !x.as_object().is_some_and(|o| o.is_empty()))
                .collect(),
        ),
        other => other,
    }
}

/// JSON of a command's stdout, or, when it is not JSON, the exit code and
/// raw output (so a snapshot works before the CLI exists).
pub fn loose_json(out: &Output) -> Value {
    match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(v) if out.status.success() => v,
        _ => serde_json::json!({
            "exit": out.status.code(),
            "stdout": String::from_utf8_lossy(&out.stdout),
            "stderr": String::from_utf8_lossy(&out.stderr),
        }),
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

/// Asserts exit 0, printing stdout and stderr otherwise.
pub fn assert_ok(out: &Output) {
    assert_ok_ctx(out, "command");
}

/// Like [`assert_ok`], naming what was run.
pub fn assert_ok_ctx(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: expected exit 0\n{}",
        describe(out)
    );
}

/// Asserts exit `code` and that stderr is one line containing `needle`.
pub fn assert_fails_with(out: &Output, code: i32, needle: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code} with a message naming {needle:?}\n{}",
        describe(out)
    );
    let err = stderr(out);
    assert!(
        err.contains(needle),
        "expected stderr to name {needle:?}\n{}",
        describe(out)
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected exactly one line on stderr\n{}",
        describe(out)
    );
}

/// Parses stdout as JSON, panicking with the output on failure.
pub fn parse_json(out: &Output, what: &str) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e})\n{}", describe(out)))
}

/// The array inside `v`, panicking when it is not one.
pub fn as_array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("expected a JSON array, got {other}"),
    }
}

/// The string field `key` of a JSON object, panicking when missing.
pub fn field(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("missing string field {key:?} in {v}"))
        .to_string()
}

/// `IP` from a probe reply `PAYLOAD from IP:PORT`.
pub fn seen_source(reply: &str) -> String {
    let line = reply.lines().next().unwrap_or("");
    let addr = line
        .rsplit_once(" from ")
        .map(|(_, a)| a.trim())
        .unwrap_or_else(|| panic!("unexpected probe reply {reply:?}"));
    let ip = addr.rsplit_once(':').map(|(ip, _)| ip).unwrap_or(addr);
    ip.trim_start_matches('[').trim_end_matches(']').to_string()
}

/// Parses `a.b.c.d` into its numeric value.
pub fn ipv4(s: &str) -> u32 {
    u32::from(
        s.parse::<std::net::Ipv4Addr>()
            .unwrap_or_else(|e| panic!("bad IPv4 {s:?}: {e}")),
    )
}

/// Whether `ip` lies inside `cidr` (`a.b.c.d/len`).
pub fn in_subnet(ip: &str, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').expect("CIDR");
    let len: u32 = len.parse().expect("prefix length");
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    ipv4(ip) & mask == ipv4(net) & mask
}

/// Turns br_netfilter's `bridge-nf-call-iptables` and `bridge-nf-call-ip6tables`
/// on or off in the sandbox.
pub fn set_br_netfilter(sb: &Sandbox, on: bool) {
    sb.sh_ok(&format!(
        "sysctl -qw net.bridge.bridge-nf-call-iptables={0} net.bridge.bridge-nf-call-ip6tables={0}",
        on as u8
    ));
}

/// The MAC of `dev` in `netns` (None: the sandbox host).
pub fn mac(sb: &Sandbox, netns: Option<&str>, dev: &str) -> String {
    let link = sb
        .link(netns, dev)
        .unwrap_or_else(|| panic!("no {dev} in {netns:?}"));
    field(&link, "address")
}

/// How long a frame watcher waits for its frame once it is ready.
pub const WATCH_MS: &str = "1500";

/// Sends one crafted frame (`berth-probe raw-send eth0 FRAME`) from `from`,
/// and tells whether `eth0` of `at` saw a frame `watch` describes (with
/// what the watcher printed).
pub fn arrives(
    sb: &Sandbox,
    at: &str,
    watch: &[&str],
    from: &str,
    frame: &[&str],
) -> (bool, String) {
    let mut args = vec!["raw-recv", "eth0", "--timeout-ms", WATCH_MS];
    args.extend_from_slice(watch);
    let mut watcher = sb.spawn_in_netns(Some(at), PROBE, &args, true);
    let mut send = vec!["raw-send", "eth0"];
    send.extend_from_slice(frame);
    let out = sb.probe(Some(from), &send);
    assert_ok_ctx(&out, &format!("raw-send from {from}: {frame:?}"));
    let status = watcher
        .wait_timeout(Duration::from_secs(10))
        .expect("the watcher ends after its timeout");
    (status.success(), watcher.stdout())
}

/// Merges `b` into `a`: objects key by key (recursively), anything else
/// replaced; how tests vary one field of a JSON request.
pub fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// Runs `binary` as Podman runs netavark (`--config ... --file FILE VERB
/// NETNS`, berth's state in [`STATE_DIR`]) and returns how long it took;
/// the benchmarks' one timed call.
pub fn timed_netavark(
    sb: &Sandbox,
    binary: &str,
    file: &std::path::Path,
    verb: &str,
    netns: &str,
) -> Duration {
    let mut c = sb.command(
        None,
        binary,
        &[
            "--config",
            "/run/nvconf",
            "--rootless=false",
            "--file",
            file.to_str().unwrap(),
            verb,
            netns,
        ],
    );
    c.env("BERTH_STATE_DIR", STATE_DIR);
    let t = Instant::now();
    let out = run_timeout(c, CMD_TIMEOUT);
    let took = t.elapsed();
    assert_ok_ctx(
        &out,
        &format!("{binary} {verb} {netns} ({})", file.display()),
    );
    took
}

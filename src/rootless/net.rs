//! The user-mode network helper that connects a rootless namespace to the
//! outside: pasta (passt's namespace mode) when it is installed, else
//! slirp4netns. Which one is said to the user.
//!
//! What a published port shows the command: pasta reads the host's socket
//! and writes the packets into the namespace's tap device with the peer's
//! own address as the source (its "tap path"), so a connection from
//! another host shows that host's address. A connection to the host's
//! loopback is spliced to the namespace's loopback instead and shows
//! 127.0.0.1, which is where it came from; one to the host's own
//! non-loopback address shows the namespace's gateway, since inside the
//! namespace that address is the namespace's own. slirp4netns 1.2's
//! `add_hostfwd` also hands the command the client's address for a
//! connection from another host (the tests check both helpers).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::kernel::userns;
use crate::model::{PortSpec, Proto};

/// The environment variable that picks the helper (`pasta` or
/// `slirp4netns`) instead of the first one installed.
pub const HELPER_ENV: &str = "BERTH_ROOTLESS_NET";

/// The MTU pasta gives the namespace's link (its default: the largest
/// 802.3 frame less its header), and so the MTU of a user's bridges.
pub const PASTA_MTU: u32 = 65520;

/// How long a helper may take to bring the namespace's link up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where slirp4netns's namespace side sits (its `--configure` defaults).
const SLIRP_DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

/// The address a namespace sends DNS to when the host's resolver is on the
/// host's loopback, which the namespace cannot reach: pasta forwards what
/// is sent there to the host's resolver.
const PASTA_DNS_FORWARD: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Helper {
    Pasta,
    Slirp4netns,
}

impl Helper {
    pub fn program(self) -> &'static str {
        match self {
            Helper::Pasta => "pasta",
            Helper::Slirp4netns => "slirp4netns",
        }
    }

    /// The helper to use: the one `BERTH_ROOTLESS_NET` names, else pasta,
    /// else slirp4netns, whichever is installed first.
    pub fn choose() -> Result<Helper> {
        let wanted = std::env::var(HELPER_ENV).ok();
        let candidates: Vec<Helper> = match wanted.as_deref() {
            None | Some("") => vec![Helper::Pasta, Helper::Slirp4netns],
            Some("pasta") => vec![Helper::Pasta],
            Some("slirp4netns") => vec![Helper::Slirp4netns],
            Some(other) => {
                return Err(Error::invalid(format!(
                    "{HELPER_ENV}={other:?}: expected pasta or slirp4netns"
                )))
            }
        };
        candidates
            .iter()
            .copied()
            .find(|h| in_path(h.program()).is_some())
            .ok_or_else(|| {
                let names: Vec<&str> = candidates.iter().map(|h| h.program()).collect();
                Error::invalid(format!(
                    "a rootless sandbox needs {} in PATH (Debian: apt install passt)",
                    names.join(" or ")
                ))
            })
    }
}

fn in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The nameservers of the host's /etc/resolv.conf.
fn host_nameservers() -> Vec<IpAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// What the namespace's /etc/resolv.conf must say for the host's DNS to be
/// reachable through `helper` (None: the host's file works as it is), and
/// the helper's arguments that make it so.
pub fn dns_for(
    helper: Option<Helper>,
    dns: &[IpAddr],
    search: &[String],
) -> (Option<String>, Vec<String>) {
    let mut extra = Vec::new();
    let servers: Option<Vec<IpAddr>> = if !dns.is_empty() {
        Some(dns.to_vec())
    } else {
        match helper {
            None => None,
            Some(Helper::Slirp4netns) => Some(vec![IpAddr::V4(SLIRP_DNS)]),
            Some(Helper::Pasta) => {
                let host = host_nameservers();
                if host.iter().any(|a| a.is_loopback()) {
                    extra.push("--dns-forward".into());
                    extra.push(PASTA_DNS_FORWARD.to_string());
                    Some(vec![IpAddr::V4(PASTA_DNS_FORWARD)])
                } else {
                    None
                }
            }
        }
    };
    if servers.is_none() && search.is_empty() {
        return (None, extra);
    }
    let servers = servers.unwrap_or_else(host_nameservers);
    let mut text = String::new();
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    (Some(text), extra)
}

/// Checks what a rootless `-p` can be: a fixed host port, TCP or UDP.
pub fn check_ports(ports: &[PortSpec]) -> Result<()> {
    for p in ports {
        if p.host_port.is_none() {
            return Err(Error::invalid(format!(
                "-p {}: without root, a published port needs its host port (HOST:CTR)",
                p.container_port
            )));
        }
        if p.proto == Proto::Sctp {
            return Err(Error::invalid(
                "-p .../sctp: pasta and slirp4netns forward TCP and UDP only",
            ));
        }
    }
    Ok(())
}

/// pasta's spelling of one `-p`: `[ADDR/]HOST[-END]:CTR[-END]`.
fn pasta_spec(p: &PortSpec) -> String {
    let host = p.host_port.unwrap_or(0);
    let range = |first: u16| match p.count {
        0 | 1 => first.to_string(),
        n => format!("{first}-{}", first + (n - 1)),
    };
    let addr = if p.host_ip.is_unspecified() {
        String::new()
    } else {
        format!("{}/", p.host_ip)
    };
    format!("{addr}{}:{}", range(host), range(p.container_port))
}

/// pasta's arguments for the namespace of `pid`: its link configured as
/// the host's, only the ports asked for forwarded in, none out to the
/// host's loopback, and the gateway not mapped to the host (so the
/// namespace cannot reach services bound to the host's loopback).
pub fn pasta_args(pid: Option<Pid>, ports: &[PortSpec], dns_extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        // pasta learns the namespace's MAC from the first frame the
        // namespace sends; until then what it forwards in is lost, so the
        // first connection to a published port hung (seen with the pasta
        // of Debian 12). Told the MAC up front, it has it from the start.
        "--ns-mac-addr".to_string(),
        namespace_mac(pid),
    ];
    args.extend(
        [
            "--config-net",
            "--quiet",
            "--foreground",
            "--no-map-gw",
            "-T",
            "none",
            "-U",
            "none",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    for proto in [Proto::Tcp, Proto::Udp] {
        let flag = if proto == Proto::Tcp { "-t" } else { "-u" };
        let specs: Vec<String> = ports
            .iter()
            .filter(|p| p.proto == proto)
            .map(pasta_spec)
            .collect();
        if specs.is_empty() {
            args.extend([flag.to_string(), "none".to_string()]);
        }
        for s in specs {
            args.extend([flag.to_string(), s]);
        }
    }
    args.extend(dns_extra.iter().cloned());
    args.push(pid.map_or("PID".to_string(), |p| p.to_string()));
    args
}

/// A locally administered MAC for the namespace of `pid`: unique among the
/// namespaces alive at once, as their PIDs are.
fn namespace_mac(pid: Option<Pid>) -> String {
    let Some(pid) = pid else {
        return "MAC".to_string();
    };
    let b = (pid.as_raw() as u32).to_be_bytes();
    format!("02:62:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

/// slirp4netns's arguments for the namespace of `pid` (fds 3 and 4: ready
/// and exit).
pub fn slirp_args(pid: Option<Pid>, api: &Path) -> Vec<String> {
    vec![
        "--configure".into(),
        "--mtu=65520".into(),
        "--disable-host-loopback".into(),
        "--ready-fd=3".into(),
        "--exit-fd=4".into(),
        format!("--api-socket={}", api.display()),
        pid.map_or("PID".to_string(), |p| p.to_string()),
        "tap0".into(),
    ]
}

/// A running helper, stopped (by its PID) when the sandbox ends, and
/// killed with berth (PR_SET_PDEATHSIG) if berth is killed.
pub struct Running {
    child: Child,
    /// slirp4netns's exit pipe: it exits when this closes.
    _exit: Option<std::fs::File>,
}

impl Running {
    /// Whether the helper still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// Collects a helper's stderr on a thread, so that it never blocks on a
/// full pipe and its words are there if it fails.
fn drain(child: &mut Child) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    if let Some(mut err) = child.stderr.take() {
        let b = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&chunk[..n]);
                let mut b = b.lock().unwrap();
                if b.len() < 16 * 1024 {
                    b.push_str(&text);
                }
            }
        });
    }
    buf
}

fn helper_failed(helper: Helper, why: &str, stderr: &Arc<Mutex<String>>) -> Error {
    let said: Vec<String> = stderr
        .lock()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("Failed to send") && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(": {}", said.join("; "))
    };
    Error::Other(format!("{} {why}{said}", helper.program()))
}

/// Whether the namespace of `pid` has a default route yet (what pasta's
/// `--config-net` adds last), read from /proc, which needs no privilege.
fn has_default_route(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/net/route"))
        .map(|t| {
            t.lines()
                .skip(1)
                .any(|l| l.split_whitespace().nth(1) == Some("00000000"))
        })
        .unwrap_or(false)
}

/// Starts `helper` for the namespace of `pid` and returns once the
/// namespace's link is configured and its ports forwarded.
pub fn start(
    helper: Helper,
    pid: Pid,
    ports: &[PortSpec],
    dns_extra: &[String],
) -> Result<Running> {
    match helper {
        Helper::Pasta => start_pasta(pid, ports, dns_extra),
        Helper::Slirp4netns => start_slirp(pid, ports),
    }
}

fn start_pasta(pid: Pid, ports: &[PortSpec], dns_extra: &[String]) -> Result<Running> {
    let mut cmd = Command::new("pasta");
    cmd.args(pasta_args(Some(pid), ports, dns_extra))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    userns::dies_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Other(format!("starting pasta: {e}")))?;
    let stderr = drain(&mut child);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if has_default_route(pid) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(helper_failed(
                Helper::Pasta,
                &format!("exited ({status})"),
                &stderr,
            ));
        }
        if Instant::now() >= deadline {
            let running = Running { child, _exit: None };
            running.stop();
            return Err(helper_failed(
                Helper::Pasta,
                "did not configure the namespace in 10 s",
                &stderr,
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(Running { child, _exit: None })
}

/// Where slirp4netns's API socket goes while the ports are added (it is
/// removed right after).
fn api_socket_path(pid: Pid) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("berth-slirp4netns-{pid}.sock"))
}

fn start_slirp(pid: Pid, ports: &[PortSpec]) -> Result<Running> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let api = api_socket_path(pid);
    let _ = std::fs::remove_file(&api);
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(std::io::Error::from)?;
    let (exit_r, exit_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    let (ready_w_fd, exit_r_fd) = (ready_w.as_raw_fd(), exit_r.as_raw_fd());
    let mut cmd = Command::new("slirp4netns");
    cmd.args(slirp_args(Some(pid), &api))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    userns::dies_with_parent(&mut cmd);
    // SAFETY: only dup2 runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(ready_w_fd, 3) < 0 || libc::dup2(exit_r_fd, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    drop(ready_w);
    drop(exit_r);
    let mut child = spawned.map_err(|e| Error::Other(format!("starting slirp4netns: {e}")))?;
    let stderr = drain(&mut child);
    let running = Running {
        child,
        _exit: Some(std::fs::File::from(exit_w)),
    };
    let mut ready = std::fs::File::from(ready_r);
    let mut byte = [0u8; 1];
    if !matches!(ready.read(&mut byte), Ok(1)) {
        running.stop();
        return Err(helper_failed(
            Helper::Slirp4netns,
            "did not get ready",
            &stderr,
        ));
    }
    let added = ports.iter().try_for_each(|p| add_hostfwd(&api, p));
    let _ = std::fs::remove_file(&api);
    if let Err(e) = added {
        running.stop();
        return Err(e);
    }
    Ok(running)
}

/// Asks slirp4netns to forward one `-p` (each port of a range in turn).
fn add_hostfwd(api: &Path, p: &PortSpec) -> Result<()> {
    let host = p.host_port.unwrap_or(0);
    for i in 0..p.count.max(1) {
        let request = serde_json::json!({
            "execute": "add_hostfwd",
            "arguments": {
                "proto": p.proto.as_str(),
                "host_addr": p.host_ip.to_string(),
                "host_port": host + i,
                "guest_port": p.container_port + i,
            }
        });
        let mut s = UnixStream::connect(api)
            .map_err(|e| Error::Other(format!("slirp4netns API {}: {e}", api.display())))?;
        s.write_all(request.to_string().as_bytes())?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply)?;
        let v: serde_json::Value = serde_json::from_str(reply.trim())
            .map_err(|e| Error::Other(format!("slirp4netns API reply {reply:?}: {e}")))?;
        if let Some(err) = v.get("error") {
            return Err(Error::Other(format!(
                "slirp4netns could not publish {}:{}: {err}",
                host + i,
                p.container_port + i
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(host_ip: [u8; 4], host: u16, ctr: u16, count: u16, proto: Proto) -> PortSpec {
        PortSpec {
            host_ip: Ipv4Addr::from(host_ip).into(),
            host_port: Some(host),
            container_port: ctr,
            count,
            proto,
        }
    }

    #[test]
    fn pasta_forwards_only_what_is_published() {
        let args = pasta_args(
            Some(Pid::from_raw(42)),
            &[
                spec([0, 0, 0, 0], 8080, 80, 1, Proto::Tcp),
                spec([127, 0, 0, 1], 5000, 6000, 3, Proto::Udp),
            ],
            &[],
        );
        let line = args.join(" ");
        assert!(line.contains("-T none -U none"), "{line}");
        assert!(line.contains("-t 8080:80"), "{line}");
        assert!(line.contains("-u 127.0.0.1/5000-5002:6000-6002"), "{line}");
        assert!(line.ends_with(" 42"), "{line}");
        let none = pasta_args(None, &[], &[]).join(" ");
        assert!(
            none.contains("-t none") && none.contains("-u none"),
            "{none}"
        );
    }

    #[test]
    fn rootless_ports_need_a_host_port_and_tcp_or_udp() {
        let mut p = spec([0, 0, 0, 0], 8080, 80, 1, Proto::Tcp);
        assert!(check_ports(&[p]).is_ok());
        p.host_port = None;
        assert!(check_ports(&[p]).is_err());
        let s = spec([0, 0, 0, 0], 1, 1, 1, Proto::Sctp);
        assert!(check_ports(&[s]).is_err());
    }

    #[test]
    fn slirp_dns_is_its_own_forwarder() {
        let (text, extra) = dns_for(Some(Helper::Slirp4netns), &[], &[]);
        assert_eq!(text.as_deref(), Some("nameserver 10.0.2.3\n"));
        assert!(extra.is_empty());
        let (text, _) = dns_for(None, &["192.0.2.9".parse().unwrap()], &["x.test".into()]);
        assert_eq!(
            text.as_deref(),
            Some("search x.test\nnameserver 192.0.2.9\n")
        );
        assert_eq!(dns_for(None, &[], &[]).0, None);
    }
}

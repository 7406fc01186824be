//! `berth bench --traffic`: what a published port costs per packet. Inside
//! the benchmark's private sandbox it publishes a TCP echo server and a
//! sink, then measures, with `berth-probe` as the client:
//! - new TCP connections per second from an "outside" namespace through the
//!   host's uplink address, with 10 mappings installed and with 10,000
//!   (the DNAT map lookup must not grow with the mappings);
//! - TCP throughput from the host through the published port against the
//!   same to the container's own address;
//! - both again with the container's anti-spoofing guard on and off (the
//!   same endpoint reconnected with `--allow-spoofing`), interleaved, with
//!   the throughput of the container sending out as well, since its frames
//!   are the ones the guard checks.

use super::out::outln;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Child, Command, Stdio};

use berth_nft::{Batch, ElemOp};

use crate::commands;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::firewall;
use crate::kernel::netns::{self, Target};
use crate::kernel::{sandbox, sysctl};
use crate::model::ports::{PortMapping, Proto};
use crate::request::{AttachRequest, DetachRequest, EndpointRef};

const UPLINK_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const UPLINK_OUTSIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const UPLINK_HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const UPLINK_OUTSIDE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const ECHO_PORT: u16 = 8080;
const SINK_PORT: u16 = 5001;
const FILLER_FIRST_PORT: u16 = 20_000;

pub fn traffic(ctx: &mut Context, seconds: u64, rounds: usize, ipv6: bool) -> Result<()> {
    let probe = probe_path()?;
    let mut web = super::bench::quiet_network("web");
    if ipv6 {
        web.subnets = Some(vec![
            crate::request::SubnetRequest::auto(crate::model::Family::V4),
            crate::request::SubnetRequest::given(
                "fd00:201::/64".parse().expect("a valid prefix"),
                None,
            ),
        ]);
    }
    commands::create_network(ctx, web)?;
    for name in ["srv", "outside"] {
        netns::create_named(name)?;
    }
    let mut connect = AttachRequest {
        network: "web".into(),
        target: "srv".into(),
        ports: [
            format!("{ECHO_PORT}:80"),
            format!("{SINK_PORT}:{SINK_PORT}"),
        ]
        .iter()
        .map(|p| crate::request::parse_port(p))
        .collect::<Result<_>>()?,
        ..Default::default()
    };
    let (endpoint, _) = commands::connect(ctx, connect.clone())?.applied()?;
    wire_outside(ipv6)?;

    let mut servers = Servers::default();
    servers.start(ctx, "srv", &probe, &["tcp-serve", "0.0.0.0:80"])?;
    servers.start(
        ctx,
        "srv",
        &probe,
        &["tcp-sink", &format!("0.0.0.0:{SINK_PORT}")],
    )?;
    servers.start(
        ctx,
        "outside",
        &probe,
        &["tcp-sink", &format!("0.0.0.0:{SINK_PORT}")],
    )?;

    outln!("berth bench --traffic: {seconds} s per measurement, {rounds} rounds (private sandbox)");
    let target = format!("{UPLINK_HOST}:{ECHO_PORT}");
    let rate = |ctx: &Context| -> Result<f64> {
        let out = berth_exec(
            ctx,
            "outside",
            &probe,
            &["tcp-rate", &target, "--seconds", &seconds.to_string()],
        )?;
        figure(&out, "connections_per_sec")
    };
    // The endpoint holds 2 mappings; 8 more make 10, 9,998 more 10,000.
    let ip = endpoint
        .ip4()
        .ok_or_else(|| Error::Other("the bench endpoint has no IPv4 address".into()))?;
    let few = fillers(ip.into(), FILLER_FIRST_PORT, 8);
    let many = fillers(ip.into(), FILLER_FIRST_PORT + 8, 9_990);
    apply_fillers(ctx, &few, ElemOp::Add)?;
    let (mut with_few, mut with_many) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        with_few.push(rate(ctx)?);
        apply_fillers(ctx, &many, ElemOp::Add)?;
        with_many.push(rate(ctx)?);
        apply_fillers(ctx, &many, ElemOp::Delete)?;
    }
    let (few_median, many_median) = (median(&mut with_few), median(&mut with_many));
    outln!(
        "new TCP connections/s through a published port: {few_median:.0} with 10 mappings, {many_median:.0} with 10,000 (x{:.2})",
        many_median / few_median
    );
    if let Some(ip6) = endpoint.ip6().filter(|_| ipv6) {
        // The same over IPv6, through the IPv6 maps, to the host's IPv6
        // uplink address.
        let target6 = format!("[{UPLINK_HOST6}]:{ECHO_PORT}");
        let rate6 = |ctx: &Context| -> Result<f64> {
            let out = berth_exec(
                ctx,
                "outside",
                &probe,
                &["tcp-rate", &target6, "--seconds", &seconds.to_string()],
            )?;
            figure(&out, "connections_per_sec")
        };
        let few6 = fillers(ip6.into(), FILLER_FIRST_PORT, 8);
        let many6 = fillers(ip6.into(), FILLER_FIRST_PORT + 8, 9_990);
        apply_fillers(ctx, &few6, ElemOp::Add)?;
        let (mut few_rates, mut many_rates) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            few_rates.push(rate6(ctx)?);
            apply_fillers(ctx, &many6, ElemOp::Add)?;
            many_rates.push(rate6(ctx)?);
            apply_fillers(ctx, &many6, ElemOp::Delete)?;
        }
        apply_fillers(ctx, &few6, ElemOp::Delete)?;
        let (few6_median, many6_median) = (median(&mut few_rates), median(&mut many_rates));
        outln!(
            "new TCP connections/s through a published port over IPv6: {few6_median:.0} with 10 mappings, {many6_median:.0} with 10,000 (x{:.2})",
            many6_median / few6_median
        );
    }

    let throughput = |addr: String| -> Result<f64> {
        let out = run(Command::new(&probe).args([
            "tcp-throughput",
            &addr,
            "--seconds",
            &seconds.to_string(),
        ]))?;
        figure(&out, "mbit_per_sec")
    };
    let (mut direct, mut published) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        direct.push(throughput(format!("{ip}:{SINK_PORT}"))?);
        published.push(throughput(format!("{UPLINK_HOST}:{SINK_PORT}"))?);
    }
    let (direct, published) = (median(&mut direct), median(&mut published));
    outln!(
        "TCP throughput from the host: {published:.0} Mbit/s through the published port, {direct:.0} Mbit/s to the container's address (x{:.2})",
        published / direct
    );

    // The guard on and off, in pairs taken back to back, on first and off
    // first by turns (a machine shared with other work drifts between
    // pairs more than within one): [on, off] for each figure.
    let mut rates = [Vec::new(), Vec::new()];
    let mut ins = [Vec::new(), Vec::new()];
    let mut outs = [Vec::new(), Vec::new()];
    let upload = |ctx: &Context| -> Result<f64> {
        let out = berth_exec(
            ctx,
            "srv",
            &probe,
            &[
                "tcp-throughput",
                &format!("{UPLINK_OUTSIDE}:{SINK_PORT}"),
                "--seconds",
                &seconds.to_string(),
            ],
        )?;
        figure(&out, "mbit_per_sec")
    };
    for round in 0..rounds * 2 {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let allow = i == 1;
            commands::disconnect(
                ctx,
                DetachRequest::new("web", EndpointRef::Target("srv".into())),
            )?;
            connect.allow_spoofing = allow;
            commands::connect(ctx, connect.clone())?.applied()?;
            rates[i].push(rate(ctx)?);
            ins[i].push(throughput(format!("{UPLINK_HOST}:{SINK_PORT}"))?);
            outs[i].push(upload(ctx)?);
        }
    }
    // Medians of each side, and the median of the pairs' ratios.
    let on_off = |v: &mut [Vec<f64>; 2]| {
        let mut ratios: Vec<f64> = v[0].iter().zip(&v[1]).map(|(on, off)| on / off).collect();
        let x = median(&mut ratios);
        (median(&mut v[0]), median(&mut v[1]), x)
    };
    let pairs = rounds * 2;
    let (on, off, x) = on_off(&mut rates);
    outln!(
        "anti-spoofing on vs off ({pairs} pairs): new TCP connections/s through the published port {on:.0} vs {off:.0} (pairs: x{x:.3})"
    );
    let (on, off, x) = on_off(&mut ins);
    outln!(
        "anti-spoofing on vs off ({pairs} pairs): TCP throughput from the host through the published port {on:.0} vs {off:.0} Mbit/s (pairs: x{x:.3})"
    );
    let (on, off, x) = on_off(&mut outs);
    outln!(
        "anti-spoofing on vs off ({pairs} pairs): TCP throughput from the container to the outside {on:.0} vs {off:.0} Mbit/s (pairs: x{x:.3})"
    );
    Ok(())
}

/// `berth-probe`, built next to the running `berth`.
fn probe_path() -> Result<std::path::PathBuf> {
    let path = std::env::current_exe()?.with_file_name("berth-probe");
    if !path.exists() {
        return Err(Error::Other(format!(
            "{} is missing: build it with `cargo build --release` first",
            path.display()
        )));
    }
    Ok(path)
}

/// The outside world: a namespace on a routed veth to the sandbox host,
/// with the host as its default gateway (so it reaches the host's uplink
/// address, and nothing behind it without DNAT).
fn wire_outside(ipv6: bool) -> Result<()> {
    let net = crate::model::subnet::v4_truncating(UPLINK_HOST, 24);
    let outside = Target::resolve("outside")?.open()?;
    let what = "wiring the outside namespace";
    sandbox::wire_routed_peer("uplink0", &outside, UPLINK_HOST, UPLINK_OUTSIDE, net)
        .map_err(|e| Error::kernel(what, e))?;
    if ipv6 {
        let net6 = crate::model::Ipv6Net::new(UPLINK_HOST6, 64).expect("64 is a valid length");
        sandbox::add_routed_peer6("uplink0", &outside, UPLINK_HOST6, UPLINK_OUTSIDE6, net6)
            .map_err(|e| Error::kernel(what, e))?;
        // The link-local addresses' duplicate address detection.
        std::thread::sleep(std::time::Duration::from_millis(2500));
    }
    netns::run_in(&outside, || -> std::io::Result<()> {
        // A connection-rate run opens tens of thousands of connections;
        // reusing TIME_WAIT ports keeps the client from running out.
        sysctl::write(&sysctl::Key::new(["net", "ipv4", "tcp_tw_reuse"]), "1")?;
        sysctl::write(
            &sysctl::Key::new(["net", "ipv4", "ip_local_port_range"]),
            "1024 65000",
        )
    })
    .and_then(|r| r)
    .map_err(|e| Error::kernel(what, e))
}

/// `count` one-port TCP mappings from consecutive host ports to port 80.
fn fillers(container: IpAddr, first: u16, count: u16) -> (IpAddr, Vec<PortMapping>) {
    let mappings = (0..count)
        .map(|i| PortMapping {
            host_ip: Ipv4Addr::UNSPECIFIED.into(),
            host_port: first + i,
            container_port: 80,
            count: 1,
            proto: Proto::Tcp,
        })
        .collect();
    (container, mappings)
}

/// Adds or deletes filler mappings straight in the kernel (they are load,
/// not endpoints, so the state does not hear of them).
fn apply_fillers(
    ctx: &mut Context,
    (container, mappings): &(IpAddr, Vec<PortMapping>),
    op: ElemOp,
) -> Result<()> {
    let mut batch = Batch::new();
    firewall::ports::elements_op(&mut batch, op, *container, mappings);
    ctx.kernel.nft_apply(&batch)
}

/// Background servers in the benchmark's namespaces, ended (by PID) on drop.
#[derive(Default)]
struct Servers(Vec<Child>);

impl Servers {
    fn start(
        &mut self,
        ctx: &Context,
        netns: &str,
        probe: &std::path::Path,
        args: &[&str],
    ) -> Result<()> {
        let mut child = berth_exec_command(ctx, netns, probe, args)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        self.0.push(child);
        if line.trim() != "ready" {
            return Err(Error::Other(format!("probe server {args:?} did not start")));
        }
        Ok(())
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn berth_exec_command(
    ctx: &Context,
    netns: &str,
    probe: &std::path::Path,
    args: &[&str],
) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap_or_else(|_| "berth".into()));
    command
        .arg("exec")
        .arg(netns)
        .arg("--")
        .arg(probe)
        .args(args)
        .env("BERTH_STATE_DIR", &ctx.state_dir);
    command
}

fn berth_exec(
    ctx: &Context,
    netns: &str,
    probe: &std::path::Path,
    args: &[&str],
) -> Result<String> {
    run(&mut berth_exec_command(ctx, netns, probe, args))
}

fn run(command: &mut Command) -> Result<String> {
    let out = command.stderr(Stdio::piped()).output()?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The number after `key` in a probe's output.
fn figure(output: &str, key: &str) -> Result<f64> {
    output
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .ok_or_else(|| Error::Other(format!("no {key} in probe output {output:?}")))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

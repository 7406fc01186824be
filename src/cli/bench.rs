//! `berth bench`: connects N namespaces to one network and disconnects
//! them, inside a private sandbox, and reports per-operation latency.

use super::out::outln;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::commands::{self, maintain};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::executor::{transaction, Preflight};
use crate::kernel::netns;
use crate::model::PortSpec;
use crate::request::{AttachRequest, DetachRequest, EndpointRef, NetworkRequest};

pub struct BenchOptions {
    pub count: usize,
    /// Networks present besides the measured one.
    pub extra_networks: usize,
    /// Run each connect/disconnect as a `berth` process instead of a call.
    pub via_cli: bool,
    /// TCP ports each connect publishes (host ports picked by berth).
    pub ports: usize,
    /// Measure published-port traffic instead of connect/disconnect.
    pub traffic: bool,
    /// Length of each traffic measurement.
    pub seconds: u64,
    /// Also connect to a dual-stack network, alternating with the
    /// IPv4-only one (the same number of namespaces on each).
    pub ipv6: bool,
    /// Spread the namespaces over `extra_networks` networks and time
    /// what a host that size asks of berth (`bench_scale.rs`).
    pub spread: bool,
}

/// Latency figures of one kind of operation.
pub struct Figures {
    pub samples: Vec<Duration>,
}

impl Figures {
    pub fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    pub fn median_of(samples: &[Duration]) -> f64 {
        let mut v = samples.to_vec();
        v.sort();
        v.get(v.len() / 2).map(|d| Self::ms(*d)).unwrap_or(0.0)
    }

    pub fn summary(&self, what: &str) -> String {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let n = sorted.len();
        if n == 0 {
            return format!("{what}: no samples");
        }
        let p90 = sorted[(n * 9 / 10).min(n - 1)];
        let window = n.min(100);
        let first = Self::median_of(&self.samples[..window]);
        let last = Self::median_of(&self.samples[n - window..]);
        format!(
            "{what:<11} n={n}  median {:.2} ms  p90 {:.2} ms  max {:.2} ms  | median of first {window}: {first:.2} ms, last {window}: {last:.2} ms (x{:.2})",
            Self::median_of(&self.samples),
            Self::ms(p90),
            Self::ms(sorted[n - 1]),
            last / first
        )
    }
}

pub fn bench(opts: &BenchOptions) -> Result<()> {
    netns::isolate_self()?;
    let state_dir = PathBuf::from("/run/berth-bench-state");
    // Whatever happens, no supervisor outlives the sandbox.
    let _supervisor = StopsSupervisor(state_dir.clone());
    let mut ctx = Context::new(state_dir.clone(), false);
    if opts.traffic {
        return super::bench_traffic::traffic(&mut ctx, opts.seconds, 3, opts.ipv6);
    }
    if opts.ipv6 {
        return bench_ipv6(&mut ctx, opts);
    }
    if opts.spread {
        return super::bench_scale::spread(&mut ctx, opts);
    }
    for i in 0..opts.extra_networks {
        commands::create_network(&mut ctx, quiet_network(&format!("other{i}")))?;
    }
    let mut bench = quiet_network("bench");
    bench.subnets = Some(vec![crate::request::SubnetRequest::given(
        "10.200.0.0/16".parse().expect("a valid prefix"),
        None,
    )]);
    commands::create_network(&mut ctx, bench)?;
    let names: Vec<String> = (0..opts.count).map(|i| format!("ns{i}")).collect();
    for name in &names {
        netns::create_named(name)?;
    }
    outln!(
        "berth bench: {} namespaces with {} published port(s) each, 1 network + {} others, {} (private sandbox)",
        opts.count,
        opts.ports,
        opts.extra_networks,
        if opts.via_cli {
            "one berth process per operation"
        } else {
            "in-process calls"
        }
    );

    // Container ports 80, 81, ...; berth picks the host ports.
    let ports: Vec<String> = (0..opts.ports).map(|i| (80 + i).to_string()).collect();
    let specs: Vec<PortSpec> = ports
        .iter()
        .map(|p| crate::request::parse_port(p))
        .collect::<Result<_>>()?;
    let connect = |ctx: &mut Context, name: &str| -> Result<()> {
        if opts.via_cli {
            let mut args = vec!["connect", "bench", name];
            for p in &ports {
                args.extend(["-p", p.as_str()]);
            }
            return cli(&state_dir, &args);
        }
        let o = AttachRequest {
            network: "bench".into(),
            target: name.into(),
            ports: specs.clone(),
            ..Default::default()
        };
        commands::connect(ctx, o).map(|_| ())
    };
    let disconnect = |ctx: &mut Context, name: &str| -> Result<()> {
        if opts.via_cli {
            return cli(&state_dir, &["disconnect", "bench", name]);
        }
        let req = DetachRequest::new("bench", EndpointRef::Target(name.into()));
        commands::disconnect(ctx, req).map(|_| ())
    };

    let connects = time_each(&names, |n| connect(&mut ctx, n))?;
    outln!("{}", connects.summary("connect"));
    let disconnects = time_each(&names, |n| disconnect(&mut ctx, n))?;
    outln!("{}", disconnects.summary("disconnect"));

    for name in &names {
        connect(&mut ctx, name)?;
    }
    time_reconcile(&mut ctx, opts.count)?;
    let start = Instant::now();
    commands::remove_network(&mut ctx, "bench", true)?;
    outln!(
        "network rm --force with {} endpoints: {:.0} ms",
        opts.count,
        Figures::ms(start.elapsed())
    );
    time_network_ops(&mut ctx, opts.extra_networks)
}

/// Times what crash safety adds with `count` endpoints present: the
/// preflight every mutating command runs (nothing to repair), `up` and
/// `gc` with nothing to repair, and `up` after the whole ruleset was lost
/// (as after `nft flush ruleset`).
fn time_reconcile(ctx: &mut Context, count: usize) -> Result<()> {
    const ROUNDS: u32 = 200;
    let timed = |what: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            f()?;
        }
        outln!(
            "  {what}: {:.3} ms",
            Figures::ms(start.elapsed()) / f64::from(ROUNDS)
        );
        Ok(())
    };
    let dir = ctx.state_dir.clone();
    timed("open store", &mut || ctx.store().map(drop))?;
    timed("lock", &mut || {
        crate::store::StateLock::acquire(&dir).map(drop)
    })?;
    timed("host identity", &mut || {
        ctx.kernel.host_identity();
        Ok(())
    })?;
    timed("nft generation", &mut || {
        ctx.kernel.nft_generation().map(drop)
    })?;
    let start = Instant::now();
    for _ in 0..ROUNDS {
        transaction(ctx, Preflight::Run, |_| Ok(()))?;
    }
    outln!(
        "preflight (lock + checks, nothing to repair) with {count} endpoints: {:.3} ms",
        Figures::ms(start.elapsed()) / f64::from(ROUNDS)
    );
    for (what, run) in [
        ("up", maintain::up as fn(&mut Context) -> Result<_>),
        ("gc", maintain::gc),
    ] {
        let start = Instant::now();
        run(ctx)?;
        outln!(
            "{what} with {count} endpoints, nothing to repair: {:.0} ms",
            Figures::ms(start.elapsed())
        );
    }
    let mut flush = berth_nft::Batch::new();
    flush.delete_table(&crate::firewall::table());
    ctx.kernel.nft_apply(&flush)?;
    let start = Instant::now();
    maintain::up(ctx)?;
    outln!(
        "up with {count} endpoints after the table was deleted: {:.0} ms",
        Figures::ms(start.elapsed())
    );
    Ok(())
}

/// Times `network create` and `network rm` with 1, 10 and 100 networks
/// already present (fillers are created as needed, untimed).
fn time_network_ops(ctx: &mut Context, mut present: usize) -> Result<()> {
    let create = |ctx: &mut Context, name: String| {
        commands::create_network(ctx, quiet_network(&name)).map(|_| ())
    };
    for target in [1, 10, 100] {
        while present < target {
            create(ctx, format!("filler{present}"))?;
            present += 1;
        }
        let (mut creates, mut removes) = (Vec::new(), Vec::new());
        for i in 0..9 {
            let name = format!("timed{i}");
            let start = Instant::now();
            create(ctx, name.clone())?;
            creates.push(start.elapsed());
            let start = Instant::now();
            commands::remove_network(ctx, &name, false)?;
            removes.push(start.elapsed());
        }
        outln!(
            "with {target:>3} networks present: network create median {:.2} ms, network rm median {:.2} ms",
            Figures::median_of(&creates),
            Figures::median_of(&removes)
        );
    }
    Ok(())
}

/// A network without DNS: no server outlives the sandbox.
pub fn quiet_network(name: &str) -> NetworkRequest {
    let mut n = NetworkRequest::new(name);
    n.dns = false;
    n
}

/// `bench --ipv6`: an IPv4-only network and a dual-stack one, each with
/// `count` namespaces, connected alternately (so both meet the same
/// machine state and grow together), then disconnected alternately; the
/// medians and each network's first and last 100 compared.
fn bench_ipv6(ctx: &mut Context, opts: &BenchOptions) -> Result<()> {
    let mut four = quiet_network("bench");
    four.subnets = Some(vec![crate::request::SubnetRequest::given(
        "10.200.0.0/16".parse().expect("a valid prefix"),
        None,
    )]);
    commands::create_network(ctx, four)?;
    let mut dual = quiet_network("bench6");
    dual.subnets = Some(vec![
        crate::request::SubnetRequest::given(
            "10.201.0.0/16".parse().expect("a valid prefix"),
            None,
        ),
        crate::request::SubnetRequest::given(
            "fd00:200::/64".parse().expect("a valid prefix"),
            None,
        ),
    ]);
    commands::create_network(ctx, dual)?;
    let specs: Vec<PortSpec> = (0..opts.ports)
        .map(|i| crate::request::parse_port(&(80 + i).to_string()))
        .collect::<Result<_>>()?;
    let names: Vec<(String, String)> = (0..opts.count)
        .map(|i| (format!("ns{i}"), format!("six{i}")))
        .collect();
    for (a, b) in &names {
        netns::create_named(a)?;
        netns::create_named(b)?;
    }
    outln!(
        "berth bench --ipv6: {} namespaces on an IPv4-only network and {} on a dual-stack one, {} published port(s) each, connected alternately (private sandbox)",
        opts.count,
        opts.count,
        opts.ports
    );
    let connect = |ctx: &mut Context, net: &str, name: &str| -> Result<Duration> {
        let o = AttachRequest {
            network: net.into(),
            target: name.into(),
            ports: specs.clone(),
            ..Default::default()
        };
        let start = Instant::now();
        commands::connect(ctx, o)?;
        Ok(start.elapsed())
    };
    let disconnect = |ctx: &mut Context, net: &str, name: &str| -> Result<Duration> {
        let req = DetachRequest::new(net, EndpointRef::Target(name.into()));
        let start = Instant::now();
        commands::disconnect(ctx, req)?;
        Ok(start.elapsed())
    };
    let (mut c4, mut c6, mut d4, mut d6) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, (a, b)) in names.iter().enumerate() {
        // Which goes first alternates too.
        if i % 2 == 0 {
            c4.push(connect(ctx, "bench", a)?);
            c6.push(connect(ctx, "bench6", b)?);
        } else {
            c6.push(connect(ctx, "bench6", b)?);
            c4.push(connect(ctx, "bench", a)?);
        }
    }
    for (a, b) in &names {
        d4.push(disconnect(ctx, "bench", a)?);
        d6.push(disconnect(ctx, "bench6", b)?);
    }
    let (c4, c6) = (Figures { samples: c4 }, Figures { samples: c6 });
    outln!("{}", c4.summary("connect4"));
    outln!("{}", c6.summary("connect46"));
    outln!(
        "dual-stack / IPv4-only connect median: x{:.2}",
        Figures::median_of(&c6.samples) / Figures::median_of(&c4.samples)
    );
    for (what, f) in [("IPv4-only", &c4), ("dual-stack", &c6)] {
        let n = f.samples.len();
        if n >= 20 {
            let (first, last) = (
                Figures::median_of(&f.samples[..10]),
                Figures::median_of(&f.samples[n - 10..]),
            );
            outln!(
                "{what} connect: median of the first 10 {first:.2} ms, of the last 10 {last:.2} ms (x{:.2})",
                last / first
            );
        }
    }
    outln!("{}", Figures { samples: d4 }.summary("disconnect4"));
    outln!("{}", Figures { samples: d6 }.summary("disconnect46"));
    Ok(())
}

fn time_each(names: &[String], mut op: impl FnMut(&str) -> Result<()>) -> Result<Figures> {
    let mut samples = Vec::with_capacity(names.len());
    for name in names {
        let start = Instant::now();
        op(name)?;
        samples.push(start.elapsed());
    }
    Ok(Figures { samples })
}

/// Ends the sandbox's supervisor, then its DNS server (which also holds
/// the `[::1]` forwards of published ports, so it runs even for networks
/// without DNS), when dropped (see `background::stop_supervisor`).
pub struct StopsSupervisor(pub PathBuf);

impl Drop for StopsSupervisor {
    fn drop(&mut self) {
        crate::background::stop_supervisor(&self.0);
        crate::background::stop_recorded(&self.0, crate::dns::PID_FILE, "dns-server");
    }
}

pub fn cli(state_dir: &std::path::Path, args: &[&str]) -> Result<()> {
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args(args)
        .env("BERTH_STATE_DIR", state_dir)
        .output()?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "berth {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

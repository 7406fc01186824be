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
use crate::phases::{self, Reported};
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

    /// The median, in ms.
    pub fn median(&self) -> f64 {
        Self::median_of(&self.samples)
    }

    pub fn median_of(samples: &[Duration]) -> f64 {
        let mut v = samples.to_vec();
        v.sort();
        v.get(v.len() / 2).map(|d| Self::ms(*d)).unwrap_or(0.0)
    }

    /// Medians of the first and the last `window` samples, when there
    /// are at least twice as many.
    pub fn first_and_last(&self, window: usize) -> Option<(f64, f64)> {
        let n = self.samples.len();
        (n >= 2 * window).then(|| {
            (
                Self::median_of(&self.samples[..window]),
                Self::median_of(&self.samples[n - window..]),
            )
        })
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
    // A CLI connect reports where its time went (`phases`).
    let connect = |ctx: &mut Context, name: &str| -> Result<Option<Reported>> {
        if opts.via_cli {
            let mut args = vec!["connect", "bench", name];
            for p in &ports {
                args.extend(["-p", p.as_str()]);
            }
            let stderr = cli_output(&state_dir, &args, &[(phases::ENV, "1")])?;
            return Ok(Reported::parse(&stderr));
        }
        let o = AttachRequest {
            network: "bench".into(),
            target: name.into(),
            ports: specs.clone(),
            ..Default::default()
        };
        commands::connect(ctx, o).map(|_| None)
    };
    let disconnect = |ctx: &mut Context, name: &str| -> Result<()> {
        if opts.via_cli {
            return cli(&state_dir, &["disconnect", "bench", name]);
        }
        let req = DetachRequest::new("bench", EndpointRef::Target(name.into()));
        commands::disconnect(ctx, req).map(|_| ())
    };

    if opts.via_cli {
        cli_connects_beside_the_floor(&mut ctx, &names, |ctx, n| connect(ctx, n))?;
    } else {
        let connects = time_each(&names, |n| connect(&mut ctx, n).map(drop))?;
        outln!("{}", connects.summary("connect"));
    }
    let bridge = crate::model::names::default_bridge_name("bench");
    super::bench_defer::disconnects(&mut ctx, &names, &bridge, disconnect)?;
    if !opts.via_cli {
        super::bench_defer::burst_without_supervisor(&mut ctx, &names)?;
    }

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
        if let Some((first, last)) = f.first_and_last(10) {
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

/// `bench --cli`'s connects, each followed by the same kernel work done
/// by iproute2 alone (the floor a CLI tool can reach: a veth with its
/// peer in the namespace, on a bridge, up, from one `ip` process; lo and
/// eth0 up, the address and the default route from a second one inside
/// the namespace), then by `berth --version` and `/bin/true` (process
/// start). Interleaved, so every figure meets the same machine; the
/// floor's namespaces and bridge are its own, made untimed, and stay
/// for the rest of the run like any other host's links (removing them
/// would have the kernel clean up behind the next measurements).
fn cli_connects_beside_the_floor(
    ctx: &mut Context,
    names: &[String],
    mut connect: impl FnMut(&mut Context, &str) -> Result<Option<Reported>>,
) -> Result<()> {
    let floor = Floor::new(names.len())?;
    let exe = std::env::current_exe()?;
    let (mut berth, mut bare, mut version, mut truth) = (vec![], vec![], vec![], vec![]);
    let (mut berth_cpu, mut bare_cpu) = (vec![], vec![]);
    let mut parts = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (start, cpu) = (Instant::now(), children_cpu());
        let reported = connect(ctx, name)?;
        let wall = start.elapsed();
        berth.push(wall);
        berth_cpu.push(children_cpu() - cpu);
        parts.extend(reported.map(|r| (wall, r)));
        let cpu = children_cpu();
        bare.push(floor.connect(i)?);
        bare_cpu.push(children_cpu() - cpu);
        version.push(spawn_timed(
            std::process::Command::new(&exe).arg("--version"),
        )?);
        truth.push(spawn_timed(&mut std::process::Command::new("/bin/true"))?);
    }
    let berth = Figures { samples: berth };
    let bare = Figures { samples: bare };
    outln!("{}", berth.summary("connect"));
    outln!("{}", bare.summary("floor"));
    let (b, f) = (berth.median(), bare.median());
    outln!(
        "connect / floor (iproute2's bare kernel steps in 2 processes, same run): {b:.2} / {f:.2} ms = x{:.2}",
        b / f
    );
    for (what, figures) in [("connect", &berth), ("floor", &bare)] {
        if let Some((first, last)) = figures.first_and_last(10) {
            outln!(
                "{what}: median of the first 10 {first:.2} ms, of the last 10 {last:.2} ms (x{:.2})",
                last / first
            );
        }
    }
    let (berth_cpu, bare_cpu) = (
        Figures { samples: berth_cpu },
        Figures { samples: bare_cpu },
    );
    let (b, f) = (berth_cpu.median(), bare_cpu.median());
    outln!(
        "CPU per connect (user + system time of its processes, medians): berth {b:.2} ms, floor {f:.2} ms = x{:.2}",
        b / f
    );
    for (what, figures) in [("connect", &berth_cpu), ("floor", &bare_cpu)] {
        for window in [10, 100] {
            if let Some((first, last)) = figures.first_and_last(window) {
                outln!(
                    "{what} CPU: median of the first {window} {first:.2} ms, of the last {window} {last:.2} ms (x{:.2})",
                    last / first
                );
            }
        }
    }
    let (version, truth) = (Figures::median_of(&version), Figures::median_of(&truth));
    outln!(
        "process start: berth --version {version:.2} ms, /bin/true {truth:.2} ms (medians, same run)"
    );
    let record = super::bench_record::least_record(&ctx.state_dir, names.len().max(50))?;
    super::bench_parts::where_the_time_goes(&parts, bare.median(), version, truth, record);
    Ok(())
}

/// The CPU time (user and system) of this process's reaped children so
/// far. Unlike the wall clock it leaves out the time a process waited for
/// a CPU, so on a shared machine it still compares the work itself.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The floor's reference: iproute2 doing a connect's bare kernel steps on
/// a bridge and namespaces of its own. A benchmark's yardstick, run in
/// the benchmark's private sandbox, never a way berth changes a network.
struct Floor {
    names: Vec<String>,
}

impl Floor {
    const BRIDGE: &'static str = "floor0";

    fn new(count: usize) -> Result<Floor> {
        let names: Vec<String> = (0..count).map(|i| format!("floor{i}")).collect();
        for name in &names {
            netns::create_named(name)?;
        }
        let setup = format!(
            "link add {b} type bridge\naddr add 10.199.0.1/16 dev {b}\nlink set {b} up\n",
            b = Self::BRIDGE
        );
        Self::ip(&["-b", "-"], &setup)?;
        Ok(Floor { names })
    }

    /// Times the two processes of one namespace's connect.
    fn connect(&self, i: usize) -> Result<Duration> {
        let ns = &self.names[i];
        let veth = format!("fl{i}");
        let host = format!(
            "link add {veth} type veth peer name eth0 netns {ns}\nlink set {veth} master {b}\nlink set {veth} up\n",
            b = Self::BRIDGE
        );
        let inside = format!(
            "link set lo up\nlink set eth0 up\naddr add 10.199.{}.{}/16 dev eth0\nroute add default via 10.199.0.1\n",
            (i + 2) / 250,
            (i + 2) % 250 + 2
        );
        let start = Instant::now();
        Self::ip(&["-b", "-"], &host)?;
        Self::ip(&["-n", ns, "-b", "-"], &inside)?;
        Ok(start.elapsed())
    }

    fn ip(args: &[&str], batch: &str) -> Result<()> {
        use std::io::Write;
        let mut child = std::process::Command::new("ip")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Error::Other(format!("the floor needs iproute2's `ip`: {e}")))?;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(batch.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(Error::Other(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

/// How long a process takes from spawn to exit, its output captured as
/// `cli` captures berth's.
fn spawn_timed(cmd: &mut std::process::Command) -> Result<Duration> {
    let start = Instant::now();
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(Error::Other(format!("{cmd:?}: {}", out.status)));
    }
    Ok(start.elapsed())
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
    cli_output(state_dir, args, &[]).map(drop)
}

/// Runs `berth ARGS` with `env` added; its stderr when it succeeds.
fn cli_output(state_dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args(args)
        .env("BERTH_STATE_DIR", state_dir)
        .envs(env.iter().copied())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(Error::Other(format!(
            "berth {}: {}",
            args.join(" "),
            stderr.trim()
        )));
    }
    Ok(stderr)
}

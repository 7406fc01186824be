//! `berth bench --spread`: many endpoints spread over several networks (a
//! bridge holds at most 1023 ports, so 10,000 need at least ten), and
//! what a host that size asks of berth: connect staying flat, the
//! read-only commands, `gc` with nothing and with something to collect,
//! and `up` after a simulated reboot. Runs inside the sandbox `bench`
//! made.

use std::path::Path;
use std::time::{Duration, Instant};

use super::bench::{quiet_network, BenchOptions, Figures};
use super::out::outln;
use crate::commands::{self, maintain};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernel::netns;
use crate::model::PortSpec;
use crate::request::{AttachRequest, SubnetRequest};

/// Connects made through the CLI at each end of the run, so that a
/// process's connect is compared at the start and at the full size.
const CLI_SAMPLE: usize = 100;

/// Rounds of each read-only command, interleaved with `/bin/true`.
const READ_ROUNDS: usize = 21;

pub fn spread(ctx: &mut Context, opts: &BenchOptions) -> Result<()> {
    let nets = opts.extra_networks.max(1);
    if opts.count > nets * 1000 {
        return Err(Error::invalid(format!(
            "{} endpoints need at least {} networks (--networks): a bridge holds at most 1023 ports",
            opts.count,
            opts.count.div_ceil(1000)
        )));
    }
    let networks: Vec<String> = (0..nets).map(|i| format!("net{i}")).collect();
    for (i, name) in networks.iter().enumerate() {
        let mut n = quiet_network(name);
        let subnet = format!("10.{}.0.0/16", 100 + i);
        n.subnets = Some(vec![SubnetRequest::given(
            subnet.parse().expect("a valid prefix"),
            None,
        )]);
        commands::create_network(ctx, n)?;
    }
    let names: Vec<String> = (0..opts.count).map(|i| format!("ns{i}")).collect();
    for name in &names {
        netns::create_named(name)?;
    }
    outln!(
        "berth bench --spread: {} namespaces over {nets} networks, {} published port(s) each; the first and last {CLI_SAMPLE} connects through the CLI, the others in-process (private sandbox)",
        opts.count,
        opts.ports
    );
    let ports: Vec<String> = (0..opts.ports).map(|i| (80 + i).to_string()).collect();
    let specs: Vec<PortSpec> = ports
        .iter()
        .map(|p| crate::request::parse_port(p))
        .collect::<Result<_>>()?;
    let state_dir = ctx.state_dir.clone();
    let (mut by_cli, mut in_process) = (Vec::new(), Vec::new());
    let mut kernel_steps = Vec::new();
    let cli_at = |i: usize| i < CLI_SAMPLE || i + CLI_SAMPLE >= opts.count;
    for (i, name) in names.iter().enumerate() {
        let network = &networks[i % nets];
        let start = Instant::now();
        if cli_at(i) || opts.via_cli {
            let mut args = vec!["connect", network.as_str(), name.as_str()];
            for p in &ports {
                args.extend(["-p", p.as_str()]);
            }
            super::bench::cli(&state_dir, &args)?;
            if cli_at(i) {
                by_cli.push(start.elapsed());
            } else {
                in_process.push(start.elapsed());
            }
            continue;
        }
        let req = AttachRequest {
            network: network.clone(),
            target: name.clone(),
            ports: specs.clone(),
            ..Default::default()
        };
        let applying = crate::phases::so_far(crate::phases::Phase::Kernel);
        commands::connect(ctx, req)?;
        in_process.push(start.elapsed());
        kernel_steps.push(crate::phases::so_far(crate::phases::Phase::Kernel) - applying);
    }
    let own: Vec<Duration> = in_process
        .iter()
        .zip(&kernel_steps)
        .map(|(all, kernel)| all.saturating_sub(*kernel))
        .collect();
    outln!(
        "{}",
        Figures {
            samples: in_process
        }
        .summary("connect")
    );
    // The kernel's steps grow with the host (iproute2 doing them grows
    // too: bench/scale-floor.sh); berth's own share is what must stay flat.
    for (what, samples) in [("  its kernel steps", kernel_steps), ("  berth's own", own)] {
        if let Some((first, last)) = (Figures { samples }).first_and_last(CLI_SAMPLE) {
            outln!(
                "{what:<18} median of the first {CLI_SAMPLE} {first:.2} ms, of the last {CLI_SAMPLE} {last:.2} ms (x{:.2})",
                last / first
            );
        }
    }
    if by_cli.len() >= 2 * CLI_SAMPLE {
        let (first, last) = by_cli.split_at(CLI_SAMPLE);
        let (first, last) = (Figures::median_of(first), Figures::median_of(last));
        outln!(
            "CLI connect: median of the first {CLI_SAMPLE} {first:.2} ms, of the last {CLI_SAMPLE} {last:.2} ms (x{:.2})",
            last / first
        );
    }
    read_only(&state_dir, &networks[0], opts.count)?;
    for (what, run) in [
        ("up", maintain::up as fn(&mut Context) -> Result<_>),
        ("gc", maintain::gc),
    ] {
        let took = median_of_runs(3, || run(ctx).map(drop))?;
        outln!(
            "{what} with {} endpoints, nothing to repair: median of 3 {took:.0} ms",
            opts.count
        );
    }
    // Stale: one namespace in a hundred deleted, its veth gone with it.
    let stale: Vec<&String> = names.iter().step_by(100).collect();
    for name in &stale {
        netns::delete_named(name)?;
    }
    wait_links_gone(ctx, &state_dir, stale.len())?;
    let start = Instant::now();
    let report = super::show::done(maintain::gc(ctx)?).unwrap_or_default();
    outln!(
        "gc with {} endpoints, {} of them stale (namespace deleted): {:.0} ms, {} line(s) of repairs",
        opts.count,
        stale.len(),
        Figures::ms(start.elapsed()),
        report.len()
    );
    // What it did besides dropping the stale endpoints.
    for line in report
        .iter()
        .filter(|l| !l.contains("its namespace is gone"))
    {
        outln!("  gc: {line}");
    }
    // Which must leave nothing for the next one.
    let again = super::show::done(maintain::gc(ctx)?).unwrap_or_default();
    if !again.is_empty() {
        return Err(Error::Other(format!(
            "a second gc still repaired: {}",
            again.join("; ")
        )));
    }
    simulate_reboot(ctx, &names)?;
    let start = Instant::now();
    let report = super::show::done(maintain::up(ctx)?).unwrap_or_default();
    outln!(
        "up after a simulated reboot (every namespace, link and nft table gone, the state kept, {} endpoints recorded): {:.0} ms, {} line(s) of repairs",
        opts.count - stale.len(),
        Figures::ms(start.elapsed()),
        report.len()
    );
    Ok(())
}

/// The median wall time of `runs` calls, in ms.
fn median_of_runs(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed());
    }
    Ok(Figures::median_of(&samples))
}

/// `ps`, `network ls`, `network inspect` and `port`, each a process as a
/// user starts it, interleaved with `/bin/true` in every round.
fn read_only(state_dir: &Path, network: &str, count: usize) -> Result<()> {
    let exe = std::env::current_exe()?;
    let berth = exe.to_string_lossy().into_owned();
    let commands: Vec<Vec<&str>> = vec![
        vec!["/bin/true"],
        vec![&berth, "ps"],
        vec![&berth, "network", "ls"],
        vec![&berth, "network", "inspect", network],
        vec![&berth, "port", "ns1"],
    ];
    let mut samples = vec![Vec::new(); commands.len()];
    for _ in 0..READ_ROUNDS {
        for (i, c) in commands.iter().enumerate() {
            let start = Instant::now();
            let status = std::process::Command::new(c[0])
                .args(&c[1..])
                .env("BERTH_STATE_DIR", state_dir)
                .stdout(std::process::Stdio::null())
                .status()?;
            if !status.success() {
                return Err(Error::Other(format!("{}: {status}", c.join(" "))));
            }
            samples[i].push(start.elapsed());
        }
    }
    let floor = Figures::median_of(&samples[0]);
    outln!(
        "read-only commands with {count} endpoints, median of {READ_ROUNDS} interleaved rounds:"
    );
    for (c, s) in commands.iter().zip(&samples) {
        let m = Figures::median_of(s);
        let shown: Vec<&str> = c
            .iter()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .collect();
        outln!("  {m:8.2} ms  x{:6.2}  {}", m / floor, shown.join(" "));
    }
    Ok(())
}

/// Waits until `expected` of the state's host veths are missing (a
/// namespace's devices go with it, a little after it is unpinned).
fn wait_links_gone(ctx: &mut Context, state_dir: &Path, expected: usize) -> Result<()> {
    let veths: Vec<String> = {
        let Some(mut store) = crate::store::Store::open_read_only(state_dir)? else {
            return Ok(());
        };
        let tx = store.read()?;
        tx.endpoints(None)?
            .into_iter()
            .map(|e| e.host_ifname)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let links = ctx.kernel.link_names()?;
        let missing = veths.iter().filter(|v| !links.contains(*v)).count();
        if missing >= expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Other(format!(
                "{missing} of {expected} veths gone after 120 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a reboot leaves: the state, and none of the kernel's side (every
/// namespace, bridge, veth and nft table of berth's gone).
fn simulate_reboot(ctx: &mut Context, names: &[String]) -> Result<()> {
    // Its processes end too: the DNS server holds namespaces (for the
    // [::1] forwards), which would keep their devices alive.
    crate::background::stop_supervisor(&ctx.state_dir);
    crate::background::stop_recorded(&ctx.state_dir, crate::dns::PID_FILE, "dns-server");
    let mut recorded: Vec<String> = Vec::new();
    if let Some(mut store) = crate::store::Store::open_read_only(&ctx.state_dir)? {
        let tx = store.read()?;
        recorded.extend(tx.networks()?.into_iter().map(|n| n.bridge));
        recorded.extend(tx.endpoints(None)?.into_iter().map(|e| e.host_ifname));
    }
    for name in names {
        netns::delete_named(name)?;
    }
    let networks = match crate::store::Store::open_read_only(&ctx.state_dir)? {
        Some(mut store) => store.read()?.networks()?,
        None => Vec::new(),
    };
    for n in &networks {
        ctx.kernel.delete_link_group(n.link_group)?;
        if ctx.kernel.link_exists(&n.bridge)? {
            ctx.kernel.delete_link(&n.bridge)?;
        }
    }
    for table in [crate::firewall::table(), crate::firewall::guard::table()] {
        if ctx.kernel.nft_table_exists(&table)? {
            let mut batch = berth_nft::Batch::new();
            batch.delete_table(&table);
            ctx.kernel.nft_apply(&batch)?;
        }
    }
    // The namespaces' devices go a little after the namespaces.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let links = ctx.kernel.link_names()?;
        let left = recorded.iter().filter(|l| links.contains(*l)).count();
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::Other(format!(
                "{left} links left 300 s after the reboot"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

//! `berth demo`: berth's main job end to end on a built-in default, inside
//! a private sandbox: a network, two namespaces connected to it, the
//! equivalent commands, and a TCP exchange between the two; with
//! `--dry-run`, the same changes planned and printed, and nothing made.

use super::out::outln;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::change::Outcome;
use crate::commands::run::CreateSandbox;
use crate::commands::{self, Attach, CreateNetwork};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::executor::{transaction, Preflight};
use crate::kernel::netns::{self, Target};
use crate::request::{AttachRequest, NetworkRequest};

pub fn demo(verbose: bool, dry_run: bool) -> Result<()> {
    netns::isolate_self()?;
    if dry_run {
        return plan_only();
    }
    let state_dir = PathBuf::from("/run/berth-demo-state");
    // Whatever happens, no supervisor outlives the sandbox.
    let _supervisor = super::bench::StopsSupervisor(state_dir.clone());
    let mut ctx = Context::new(state_dir, false);
    outln!("berth demo: in a private sandbox (fresh network and mount namespaces);");
    outln!("nothing here reaches the real host, and all of it vanishes on exit.");

    heading(1, "a bridge: the virtual switch the containers plug into");
    let mut create = NetworkRequest::new("demo");
    create.dns = false; // DNS: no server outlives the sandbox
    show_plan(&mut ctx, "berth network create demo", verbose, |ctx| {
        commands::create_network(ctx, create.clone()).map(|o| o.map(|_| ()))
    })?;
    let net = commands::create_network(&mut ctx, create)?.applied()?;
    let gateway = net
        .gateway4()
        .ok_or_else(|| crate::error::Error::Other("the demo network has no IPv4 gateway".into()))?;
    outln!(
        "=> network demo: {} on bridge {}",
        net.subnets_text(),
        net.bridge
    );

    heading(
        2,
        "two network namespaces, each plugged in with a veth pair (eth0 inside, the other end on the bridge)",
    );
    let mut addrs = Vec::new();
    for (name, ports) in [("alpha", vec![]), ("beta", vec!["8080:7"])] {
        netns::create_named(name)?;
        let opts = AttachRequest {
            network: "demo".into(),
            target: name.into(),
            ports: ports
                .iter()
                .map(|p| crate::request::parse_port(p))
                .collect::<Result<_>>()?,
            ..Default::default()
        };
        let title = if opts.ports.is_empty() {
            format!("berth connect demo {name}")
        } else {
            format!("berth connect demo {name} -p 8080:7    # and publish its port 7 as the host's 8080")
        };
        show_plan(&mut ctx, &title, verbose, |ctx| {
            commands::connect(ctx, opts.clone()).map(|o| o.map(|_| ()))
        })?;
        let start = Instant::now();
        let (ep, _) = commands::connect(&mut ctx, opts)?.applied()?;
        outln!(
            "=> {name}: {} on {}, mac {} ({:.2} ms)",
            ep.addresses_text(&net),
            ep.ifname,
            ep.mac,
            start.elapsed().as_secs_f64() * 1000.0
        );
        addrs
            .push(ep.ip4().ok_or_else(|| {
                crate::error::Error::Other(format!("{name} has no IPv4 address"))
            })?);
    }

    heading(3, "traffic: who reaches whom, and whom each side sees");
    let reply = tcp_exchange("beta", addrs[1], "alpha")?;
    outln!(
        "alpha -> beta {}:7 (same bridge): beta answered; it saw the client as {reply}",
        addrs[1]
    );
    let reply = tcp_exchange_to_host(gateway, "alpha")?;
    outln!("alpha -> the host at the gateway {gateway}:7: the host answered; it saw {reply}");
    let reply = tcp_exchange_published("beta", addrs[1])?;
    outln!(
        "the host -> 127.0.0.1:8080 (published, DNAT to beta:7): beta answered; it saw {reply} (masqueraded: 127.0.0.1 cannot be answered from beta)"
    );

    heading(4, "teardown: one request deletes every veth of the network");
    commands::remove_network(&mut ctx, "demo", true)?;
    for name in ["alpha", "beta"] {
        netns::delete_named(name)?;
    }
    outln!("=> removed network demo, its endpoints, its chains and map elements");
    Ok(())
}

/// `demo --dry-run`: the demo's changes planned as one transaction in its
/// fresh sandbox (each change sees the rows the earlier ones planned),
/// printed as commands; nothing is made.
fn plan_only() -> Result<()> {
    let mut ctx = Context::new(PathBuf::from("/run/berth-demo-state"), true);
    let mut network = NetworkRequest::new("demo");
    network.dns = false;
    let outcome = transaction(&mut ctx, Preflight::Run, |txn| {
        txn.apply(CreateNetwork::new(network))?;
        for (name, ports) in [("alpha", vec![]), ("beta", vec!["8080:7"])] {
            txn.apply(CreateSandbox {
                name: name.into(),
                loopback_only: false,
            })?;
            txn.apply(Attach(AttachRequest {
                network: "demo".into(),
                target: name.into(),
                ports: ports
                    .iter()
                    .map(|p| crate::request::parse_port(p))
                    .collect::<Result<_>>()?,
                ..Default::default()
            }))?;
        }
        Ok(())
    })?;
    let Outcome::Planned(plan) = outcome else {
        return Err(Error::Other("a dry run was carried out".into()));
    };
    outln!("berth demo --dry-run: what the demo does, as commands; nothing is done.");
    outln!("# in a private sandbox (fresh network and mount namespaces):");
    for line in plan.render() {
        outln!("{line}");
    }
    outln!("# then TCP from alpha to beta, to the gateway and to 127.0.0.1:8080 (beta's port 7),");
    outln!("# and the teardown: one request deletes every veth of the network, then the bridge,");
    outln!("# berth's firewall table and the two namespaces go.");
    Ok(())
}

fn heading(n: u32, what: &str) {
    outln!("\n== {n}. {what}");
}

/// Prints what a dry run of `run` plans: the `ip`/`sysctl` lines first,
/// then the nftables lines (folded to a count unless `verbose`).
fn show_plan(
    ctx: &mut Context,
    title: &str,
    verbose: bool,
    run: impl FnOnce(&mut Context) -> Result<Outcome<()>>,
) -> Result<()> {
    ctx.dry_run = true;
    let outcome = run(ctx);
    ctx.dry_run = false;
    let Outcome::Planned(plan) = outcome? else {
        return Ok(());
    };
    outln!("$ {title}");
    outln!("  does the same as:");
    let lines = plan.render();
    let (nft, other): (Vec<&String>, Vec<&String>) =
        lines.iter().partition(|l| l.starts_with("nft "));
    for line in other {
        outln!("    {line}");
    }
    if verbose || nft.len() <= 3 {
        for line in &nft {
            outln!("    {line}");
        }
    } else if !nft.is_empty() {
        outln!(
            "    {}\n    ... and {} more nft lines: berth's firewall table (berth demo -v shows them all)",
            nft[0],
            nft.len() - 1
        );
    }
    Ok(())
}

/// Serves one line on the container's port 7 and sends one from the host
/// to the published port 127.0.0.1:8080.
fn tcp_exchange_published(server_ns: &str, server_ip: Ipv4Addr) -> Result<String> {
    let server = Target::resolve(server_ns)?.open()?;
    let listener = netns::run_in(&server, || {
        TcpListener::bind(SocketAddrV4::new(server_ip, 7))
    })??;
    std::thread::spawn(move || echo_one(listener));
    send_line_to(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080))
}

/// Serves one line on `server_ip:7` inside `server_ns`, sends one from
/// `client_ns`, and returns the reply.
fn tcp_exchange(server_ns: &str, server_ip: Ipv4Addr, client_ns: &str) -> Result<String> {
    let server = Target::resolve(server_ns)?.open()?;
    let listener = netns::run_in(&server, || {
        TcpListener::bind(SocketAddrV4::new(server_ip, 7))
    })??;
    std::thread::spawn(move || echo_one(listener));
    let client = Target::resolve(client_ns)?.open()?;
    netns::run_in(&client, || send_line(server_ip))?
}

fn tcp_exchange_to_host(host_ip: Ipv4Addr, client_ns: &str) -> Result<String> {
    let listener = TcpListener::bind(SocketAddrV4::new(host_ip, 7))?;
    std::thread::spawn(move || echo_one(listener));
    let client = Target::resolve(client_ns)?.open()?;
    netns::run_in(&client, || send_line(host_ip))?
}

fn echo_one(listener: TcpListener) {
    if let Ok((stream, peer)) = listener.accept() {
        let mut line = String::new();
        let mut reader = BufReader::new(&stream);
        if reader.read_line(&mut line).is_ok() {
            // The reply is the address the server saw the client come from.
            let _ = writeln!(&stream, "{}", peer.ip());
        }
    }
}

fn send_line(ip: Ipv4Addr) -> Result<String> {
    send_line_to(SocketAddrV4::new(ip, 7))
}

fn send_line_to(to: SocketAddrV4) -> Result<String> {
    let stream = TcpStream::connect_timeout(&to.into(), Duration::from_secs(2))
        .map_err(|e| Error::Other(format!("connecting to {to}: {e}")))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    writeln!(&stream, "hello")?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    Ok(reply.trim().to_string())
}

//! `berth demo`: berth's main job end to end on a built-in default, inside
//! a private sandbox: a network, two namespaces connected to it, the
//! equivalent commands, and a TCP exchange between the two.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::endpoint::{self, ConnectOptions};
use super::network::{self, CreateOptions};
use super::{Context, Outcome};
use crate::error::{Error, Result};
use crate::kernel::netns::{self, Target};

pub fn demo() -> Result<()> {
    netns::isolate_self()?;
    let mut ctx = Context::new(PathBuf::from("/run/berth-demo-state"), false);
    println!("# a private sandbox: fresh network and mount namespaces, nothing here reaches the real host\n");

    let create = CreateOptions {
        name: "demo".into(),
        no_dns: true, // DNS: no server outlives the sandbox
        ..Default::default()
    };
    ctx.dry_run = true;
    print_plan(
        "berth network create demo",
        network::create(&mut ctx, &create),
    )?;
    ctx.dry_run = false;
    let created = network::create(&mut ctx, &create)?.applied();
    let net = created.network;
    println!(
        "network demo: subnet {}, gateway {} on bridge {}\n",
        net.subnet, net.gateway, net.bridge
    );

    let mut addrs = Vec::new();
    for name in ["alpha", "beta"] {
        netns::create_named(name)?;
        let opts = ConnectOptions {
            network: "demo".into(),
            target: name.into(),
            ..Default::default()
        };
        ctx.dry_run = true;
        print_plan(
            &format!("berth connect demo {name}"),
            endpoint::connect(&mut ctx, &opts),
        )?;
        ctx.dry_run = false;
        let start = Instant::now();
        let (ep, _) = endpoint::connect(&mut ctx, &opts)?.applied();
        println!(
            "connected {name}: {}/{} on {}, mac {} ({:.2} ms)\n",
            ep.ip,
            net.subnet.prefix_len(),
            ep.ifname,
            ep.mac,
            start.elapsed().as_secs_f64() * 1000.0
        );
        addrs.push(ep.ip);
    }

    let reply = tcp_exchange("beta", addrs[1], "alpha")?;
    println!("alpha -> beta {}:7 over TCP: {reply:?}", addrs[1]);
    let reply = tcp_exchange_to_host(net.gateway, "alpha")?;
    println!("alpha -> gateway {} (the host): {reply:?}", net.gateway);

    network::remove(&mut ctx, "demo", true)?;
    for name in ["alpha", "beta"] {
        netns::delete_named(name)?;
    }
    println!("\nremoved network demo and its endpoints; the sandbox vanishes on exit");
    Ok(())
}

/// Prints the commands a dry run planned.
fn print_plan<T>(title: &str, outcome: Result<Outcome<T>>) -> Result<()> {
    if let Outcome::Planned(plan) = outcome? {
        println!("$ {title}    # does the same as:");
        for line in plan.render() {
            println!("    {line}");
        }
    }
    Ok(())
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
            let _ = writeln!(&stream, "{} from {}", line.trim(), peer.ip());
        }
    }
}

fn send_line(ip: Ipv4Addr) -> Result<String> {
    let stream =
        TcpStream::connect_timeout(&SocketAddrV4::new(ip, 7).into(), Duration::from_secs(2))
            .map_err(|e| Error::Other(format!("connecting to {ip}:7: {e}")))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    writeln!(&stream, "hello")?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    Ok(reply.trim().to_string())
}

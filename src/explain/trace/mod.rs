//! `berth trace SRC DST[:PORT[/PROTO]]`: the way one packet takes, the way
//! the kernel will take it, and the one rule or map element that passes
//! or drops it. The facts come first (the kernel's own route lookups in
//! the source namespace and on the host, `ip_forward`, br_netfilter,
//! whether berth's tables match the state, foreign forward drops), read
//! without the state lock and without changing anything; then
//! [`walk::walk`] decides from them and berth's model, with no I/O.

pub mod live;
pub mod v4;
pub mod walk;

#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::firewall;
use crate::kernel::sysctl::Key;
use crate::model::{Endpoint, Network, Proto};
use crate::reconcile::decide::expected_fingerprints;
use crate::store::Status;

pub use walk::{Facts, Flow, Source, TableCheck, Trace};

/// DST[:PORT[/PROTO]] split into the destination and what is sent
/// (ICMP echo without a port, TCP when no protocol is given).
pub fn parse_destination(text: &str) -> Result<(String, Flow)> {
    let bad = |why: &str| Error::invalid(format!("invalid destination {text:?}: {why}"));
    let Some((name, port)) = text.rsplit_once(':') else {
        return Ok((text.to_string(), Flow::Ping));
    };
    // `pid:N` is a TARGET, not a port.
    if name == "pid" || name.is_empty() {
        return if name.is_empty() {
            Err(bad("no destination before the port"))
        } else {
            Ok((text.to_string(), Flow::Ping))
        };
    }
    let (port, proto) = match port.split_once('/') {
        Some((p, proto)) => (
            p,
            Proto::parse(proto).ok_or_else(|| bad("the protocol is tcp, udp or sctp"))?,
        ),
        None => (port, Proto::Tcp),
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("the port is a number from 1 to 65535"))?;
    Ok((name.to_string(), Flow::Port(proto, port)))
}

/// berth's model as the state holds it now: ready networks and endpoints.
struct Model {
    networks: Vec<Network>,
    endpoints: Vec<Endpoint>,
    instance: String,
    exists: bool,
}

fn read_model(ctx: &Context) -> Result<Model> {
    let Some(mut store) = ctx.store_read_only()? else {
        return Ok(Model {
            networks: Vec::new(),
            endpoints: Vec::new(),
            instance: String::new(),
            exists: false,
        });
    };
    let tx = store.read()?;
    let networks: Vec<Network> = tx
        .networks_with_status()?
        .into_iter()
        .filter(|(_, s)| *s == Status::Ready)
        .map(|(n, _)| n)
        .collect();
    let mut endpoints: Vec<Endpoint> = tx
        .endpoints_with_status()?
        .into_iter()
        .filter(|(_, s)| *s == Status::Ready)
        .map(|(e, _)| e)
        .collect();
    tx.load_ports(&mut endpoints)?;
    let instance = tx.setting("instance")?.unwrap_or_default();
    Ok(Model {
        networks,
        endpoints,
        instance,
        exists: true,
    })
}

/// What SRC names.
enum Place {
    Host,
    /// A namespace: the label, its spelling for `ip -n`, its file, berth's
    /// endpoints in it.
    Namespace {
        label: String,
        netns: String,
        path: std::path::PathBuf,
        endpoints: Vec<Endpoint>,
        /// The endpoint the user named (NETWORK/NAME or NAME).
        named: Option<Box<Endpoint>>,
    },
    World(Ipv4Addr),
}

fn namespace_of(ctx: &Context, m: &Model, e: &Endpoint, label: &str) -> Result<Place> {
    if e.ip4().is_none() {
        return Err(no_ipv4(label));
    }
    let target = ctx.kernel.parse_target(&e.netns)?;
    Ok(Place::Namespace {
        label: label.to_string(),
        netns: e.netns.clone(),
        path: target.path,
        endpoints: m
            .endpoints
            .iter()
            .filter(|o| o.netns_inode == e.netns_inode)
            .cloned()
            .collect(),
        named: Some(Box::new(e.clone())),
    })
}

/// Trace walks IPv4 flows: an endpoint with IPv6 only is refused by name
/// rather than walked as 0.0.0.0.
fn no_ipv4(label: &str) -> Error {
    Error::invalid(format!(
        "{label} has no IPv4 address, and berth trace follows IPv4 flows only (IPv6 is not traced yet)"
    ))
}

/// An endpoint name (as `ps` shows it, or NETWORK/NAME), a namespace
/// (name, path, pid:N), `host`, or an IPv4 address.
fn resolve(ctx: &mut Context, m: &Model, text: &str) -> Result<Place> {
    if text == "host" {
        return Ok(Place::Host);
    }
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        if let Some(e) = m.endpoints.iter().find(|e| v4::ip(e) == ip) {
            return namespace_of(ctx, m, e, &e.name.clone());
        }
        if ctx.kernel.is_local_address(ip.into()) {
            return Ok(Place::Host);
        }
        return Ok(Place::World(ip));
    }
    if let Some((net, name)) = text.split_once('/') {
        if let Some(e) = m
            .endpoints
            .iter()
            .find(|e| e.network == net && e.name == name)
        {
            return namespace_of(ctx, m, e, text);
        }
    }
    if let Some(e) = m.endpoints.iter().find(|e| e.name == text) {
        return namespace_of(ctx, m, e, text);
    }
    if let Ok(target) = ctx.kernel.parse_target(text) {
        if let Some(inode) = target.inode {
            let endpoints: Vec<Endpoint> = m
                .endpoints
                .iter()
                .filter(|e| e.netns_inode == inode)
                .cloned()
                .collect();
            return Ok(Place::Namespace {
                label: text.to_string(),
                netns: target.key,
                path: target.path,
                endpoints,
                named: None,
            });
        }
    }
    Err(Error::invalid(format!(
        "no endpoint, namespace or address called {text:?} (an endpoint as `berth ps` shows it, NETWORK/NAME, a netns name or path, pid:N, host, or an IPv4 address)"
    )))
}

/// The address a packet from `src` to the place `dst` goes to, and how
/// to call it.
fn destination(
    ctx: &mut Context,
    m: &Model,
    src: &Place,
    dst: &Place,
    text: &str,
) -> Result<(String, Ipv4Addr)> {
    let src_networks: Vec<&str> = match src {
        Place::Namespace { endpoints, .. } => {
            endpoints.iter().map(|e| e.network.as_str()).collect()
        }
        _ => Vec::new(),
    };
    match dst {
        Place::World(ip) => Ok(("the world".into(), *ip)),
        Place::Host => {
            if let Ok(ip) = text.parse::<Ipv4Addr>() {
                return Ok(("the host".into(), ip));
            }
            match src {
                Place::Host => Ok(("the host".into(), Ipv4Addr::LOCALHOST)),
                Place::Namespace { endpoints, .. } if !endpoints.is_empty() => {
                    let e = &endpoints[0];
                    let net = m
                        .networks
                        .iter()
                        .find(|n| n.name == e.network)
                        .ok_or_else(|| {
                            Error::invalid(format!("network {} is not ready", e.network))
                        })?;
                    Ok((
                        format!("the host (gateway of {})", net.name),
                        v4::gateway(net),
                    ))
                }
                _ => Err(Error::invalid(format!(
                    "destination {text:?}: from here, name one of the host's addresses"
                ))),
            }
        }
        Place::Namespace {
            label,
            endpoints,
            named,
            path,
            ..
        } => {
            if let Ok(ip) = text.parse::<Ipv4Addr>() {
                return Ok((label.clone(), ip));
            }
            let pick = named
                .as_deref()
                .filter(|n| {
                    text.contains('/')
                        || !endpoints.iter().any(|e| {
                            e.network != n.network && src_networks.contains(&e.network.as_str())
                        })
                })
                .or_else(|| {
                    endpoints
                        .iter()
                        .find(|e| src_networks.contains(&e.network.as_str()))
                })
                .or(named.as_deref())
                .or(endpoints.first());
            if let Some(e) = pick {
                return match e.ip4() {
                    Some(ip) => Ok((label.clone(), ip)),
                    None => Err(no_ipv4(label)),
                };
            }
            let facts = ctx.kernel.netns_facts(Some(path))?;
            let ip = facts
                .addrs
                .iter()
                .map(|a| a.ip)
                .find(|ip| !ip.is_loopback())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "namespace {text:?} has no IPv4 address to trace to"
                    ))
                })?;
            Ok((label.clone(), ip))
        }
    }
}

/// Reads the facts for a trace from `src` to `dst` (DST[:PORT[/PROTO]]).
pub fn gather(ctx: &mut Context, src: &str, dst: &str) -> Result<Facts> {
    let (dst_name, flow) = parse_destination(dst)?;
    let m = read_model(ctx)?;
    let src_place = resolve(ctx, &m, src)?;
    let dst_place = resolve(ctx, &m, &dst_name)?;
    let (dst_label, dst_ip) = destination(ctx, &m, &src_place, &dst_place, &dst_name)?;
    let k = &mut ctx.kernel;
    let dst_local = dst_ip.is_loopback() || k.is_local_address(dst_ip.into());
    let (source, src_route, ingress) = match src_place {
        Place::Host => (Source::Host, None, None),
        Place::World(ip) => (Source::World(ip), None, Some(k.route_get(None, ip, None)?)),
        Place::Namespace {
            label,
            netns,
            path,
            endpoints,
            ..
        } => {
            let hop = k.route_get(Some(&path), dst_ip, None)?;
            let ingress = match (endpoints.is_empty(), hop.prefsrc) {
                (true, Some(s)) => Some(k.route_get(None, s, None)?),
                _ => None,
            };
            (
                Source::Namespace {
                    label,
                    netns,
                    endpoints,
                },
                Some(hop),
                ingress,
            )
        }
    };
    let from_host = matches!(source, Source::Host);
    let target = walk::dnat(
        &m.networks,
        &m.endpoints,
        dst_ip,
        dst_local,
        flow,
        from_host,
    )
    .map(|d| d.to)
    .unwrap_or(dst_ip);
    let host_route = Some(k.route_get(None, target, None)?);
    let host_listens = match flow {
        Flow::Port(p, port) if dst_local => k.host_port_in_use(p, dst_ip.into(), port),
        _ => false,
    };
    let flag = |v: Result<String>| v.ok().map(|v| v.trim() == "1");
    let ip_forward = flag(k.read_sysctl(&Key::ip_forward()));
    let br_netfilter = flag(k.read_sysctl(&Key::new(["net", "bridge", "bridge-nf-call-iptables"])));
    // berth's tables exist while a bridge network does; macvlan and ipvlan
    // networks have none.
    let table = if !m.networks.iter().any(Network::is_bridge) {
        TableCheck::NoNetworks
    } else {
        let (routing, guard) = expected_fingerprints(&m.networks, &m.instance);
        let actual = k.nft_fingerprint(&firewall::table())?;
        if actual.is_none() {
            TableCheck::Missing
        } else if actual != routing || k.nft_fingerprint(&firewall::guard::table())? != guard {
            TableCheck::Differs
        } else {
            TableCheck::Matches
        }
    };
    let foreign_drops = k.foreign_forward_drops(&firewall::table())?;
    Ok(Facts {
        networks: m.networks,
        endpoints: m.endpoints,
        src: source,
        dst_label,
        dst: dst_ip,
        flow,
        src_route,
        ingress,
        host_route,
        dst_local,
        host_listens,
        ip_forward,
        br_netfilter,
        table,
        foreign_drops,
        state: m.exists,
    })
}

/// `berth trace`: the facts, then the walk; with `live`, then a real
/// packet traced by the kernel.
pub fn trace(ctx: &mut Context, src: &str, dst: &str, live: bool) -> Result<Trace> {
    let facts = gather(ctx, src, dst)?;
    let mut trace = walk::walk(&facts);
    if live {
        trace.live = Some(run_live(ctx, &facts, &trace)?);
    }
    Ok(trace)
}

/// `berth-probe`, installed next to `berth`.
fn probe_program() -> Result<std::path::PathBuf> {
    let path = std::env::current_exe()?.with_file_name("berth-probe");
    if !path.exists() {
        return Err(Error::Other(format!(
            "--live sends its packet with {}, which is missing",
            path.display()
        )));
    }
    Ok(path)
}

/// A source port for the probe that no other socket of the source is
/// likely to use at the same moment (the top of the ephemeral range is
/// handed out last).
fn source_port() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    61000 + (nanos % 4000) as u16
}

fn run_live(ctx: &mut Context, facts: &Facts, trace: &Trace) -> Result<live::Live> {
    let netns = match &facts.src {
        Source::Host => None,
        Source::Namespace { netns, .. } => Some(ctx.kernel.parse_target(netns)?.path),
        Source::World(ip) => {
            return Err(Error::invalid(format!(
                "--live sends a real packet from SRC, and {ip} is outside the host: name a namespace (or host) to send from"
            )))
        }
    };
    let m = live::FlowMatch {
        saddr: match facts.flow {
            Flow::Ping => facts.src_route.as_ref().and_then(|h| h.prefsrc),
            Flow::Port(..) => None,
        },
        daddr: facts.dst,
        flow: facts.flow,
        sport: match facts.flow {
            Flow::Ping => None,
            Flow::Port(..) => Some(source_port()),
        },
    };
    let (setup, remove) = live::batches(&m);
    let args = live::probe_args(&m);
    let plan = crate::kernel::nftrace::LivePlan {
        setup,
        remove,
        program: probe_program()?,
        args: args.clone(),
        netns,
        deadline: std::time::Duration::from_millis(live::PROBE_TIMEOUT_MS + 1000),
        settle: std::time::Duration::from_millis(10),
    };
    let capture = ctx.kernel.nft_trace_live(&plan)?;
    let from = match &facts.src {
        Source::Namespace { label, .. } => format!(" (in {label})"),
        _ => String::new(),
    };
    Ok(live::interpret(
        trace,
        live::rule(&m).render(),
        format!("{}{from}", args.join(" ")),
        &capture,
    ))
}

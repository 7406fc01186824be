//! `berth trace SRC DST[:PORT[/PROTO]]`: the way one packet takes, the way
//! the kernel will take it, and the one rule or map element that passes
//! or drops it. The facts come first (the kernel's own route lookups in
//! the source namespace and on the host, `ip_forward`, br_netfilter,
//! whether berth's tables match the state, foreign forward drops), read
//! without the state lock and without changing anything; then
//! [`walk::walk`] decides from them and berth's model, with no I/O.

pub mod family;
pub mod live;
pub mod walk;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::firewall;
use crate::kernel::sysctl::Key;
use crate::model::{Endpoint, Family, Network, Proto};
use crate::reconcile::decide::expected_fingerprints;
use crate::store::Status;

pub use walk::{Facts, Flow, Source, TableCheck, Trace};

/// DST[:PORT[/PROTO]] split into the destination and what is sent
/// (ICMP echo without a port, TCP when no protocol is given). An IPv6
/// address stands alone or in brackets, `[ADDR]:PORT` with a port.
pub fn parse_destination(text: &str) -> Result<(String, Flow)> {
    let bad = |why: &str| Error::invalid(format!("invalid destination {text:?}: {why}"));
    if text.parse::<IpAddr>().is_ok() {
        return Ok((text.to_string(), Flow::Ping));
    }
    let (name, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (addr, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("no ] after the IPv6 address"))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("not an IPv6 address in brackets"));
            }
            match after.strip_prefix(':') {
                Some(port) => (addr, port),
                None if after.is_empty() => return Ok((addr.to_string(), Flow::Ping)),
                None => return Err(bad("a port follows ]:")),
            }
        }
        None => match text.rsplit_once(':') {
            Some(split) => split,
            None => return Ok((text.to_string(), Flow::Ping)),
        },
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
    World(IpAddr),
}

fn namespace_of(ctx: &Context, m: &Model, e: &Endpoint, label: &str) -> Result<Place> {
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

/// The family a flow between names takes: IPv4 unless the source's
/// endpoints have none (an IPv6-only network), as a resolver that puts
/// A first would.
fn preferred_family(src: &Place) -> Family {
    match src {
        Place::Namespace { endpoints, .. }
            if !endpoints.is_empty() && endpoints.iter().all(|e| e.ip4().is_none()) =>
        {
            Family::V6
        }
        Place::World(ip) => Family::of(*ip),
        _ => Family::V4,
    }
}

/// An endpoint name (as `ps` shows it, or NETWORK/NAME), a namespace
/// (name, path, pid:N), `host`, or an address of either family.
fn resolve(ctx: &mut Context, m: &Model, text: &str) -> Result<Place> {
    if text == "host" {
        return Ok(Place::Host);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        if let Some(e) = m.endpoints.iter().find(|e| e.ips.contains(&ip)) {
            return namespace_of(ctx, m, e, &e.name.clone());
        }
        if ctx.kernel.is_local_address(ip) {
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
        "no endpoint, namespace or address called {text:?} (an endpoint as `berth ps` shows it, NETWORK/NAME, a netns name or path, pid:N, host, or an address)"
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
) -> Result<(String, IpAddr)> {
    let fam = preferred_family(src);
    // An endpoint's address of the flow's family, else its other one.
    let address_of = |e: &Endpoint| {
        e.ips
            .iter()
            .copied()
            .find(|ip| Family::of(*ip) == fam)
            .or_else(|| e.ips.first().copied())
    };
    let src_networks: Vec<&str> = match src {
        Place::Namespace { endpoints, .. } => {
            endpoints.iter().map(|e| e.network.as_str()).collect()
        }
        _ => Vec::new(),
    };
    match dst {
        Place::World(ip) => Ok(("the world".into(), *ip)),
        Place::Host => {
            if let Ok(ip) = text.parse::<IpAddr>() {
                return Ok(("the host".into(), ip));
            }
            match src {
                Place::Host => Ok(("the host".into(), std::net::Ipv4Addr::LOCALHOST.into())),
                Place::Namespace { endpoints, .. } if !endpoints.is_empty() => {
                    let e = &endpoints[0];
                    let net = m
                        .networks
                        .iter()
                        .find(|n| n.name == e.network)
                        .ok_or_else(|| {
                            Error::invalid(format!("network {} is not ready", e.network))
                        })?;
                    let gateway = net
                        .subnet_of(fam)
                        .and_then(|s| s.gateway)
                        .or_else(|| net.gateways().first().copied())
                        .ok_or_else(|| {
                            Error::invalid(format!(
                                "network {} has no gateway: name one of the host's addresses",
                                net.name
                            ))
                        })?;
                    Ok((format!("the host (gateway of {})", net.name), gateway))
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
            if let Ok(ip) = text.parse::<IpAddr>() {
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
                return match address_of(e) {
                    Some(ip) => Ok((label.clone(), ip)),
                    None => Err(Error::invalid(format!(
                        "{label} has no address to trace to (a network without IPAM)"
                    ))),
                };
            }
            let facts = ctx.kernel.netns_facts(Some(path))?;
            let v4 = facts.addrs.iter().map(|a| IpAddr::V4(a.ip));
            let v6 =
                facts.addrs6.iter().map(|a| a.ip).filter(
                    |ip| matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 != 0xfe80),
                );
            let mut all: Vec<IpAddr> = v4.chain(v6).filter(|ip| !ip.is_loopback()).collect();
            all.sort_by_key(|ip| Family::of(*ip) != fam);
            let ip = all.first().copied().ok_or_else(|| {
                Error::invalid(format!("namespace {text:?} has no address to trace to"))
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
    let fam = Family::of(dst_ip);
    let dst_local = dst_ip.is_loopback() || k.is_local_address(dst_ip);
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
        Flow::Port(p, port) if dst_local => k.host_port_in_use(p, dst_ip, port),
        _ => false,
    };
    let flag = |v: Result<String>| v.ok().map(|v| v.trim() == "1");
    let (forwarding, br) = match fam {
        Family::V4 => (Key::ip_forward(), "bridge-nf-call-iptables"),
        Family::V6 => (Key::ipv6_forwarding(), "bridge-nf-call-ip6tables"),
    };
    let ip_forward = flag(k.read_sysctl(&forwarding));
    let br_netfilter = flag(k.read_sysctl(&Key::new(["net", "bridge", br])));
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

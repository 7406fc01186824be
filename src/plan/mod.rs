//! Plans: the ordered kernel steps a command needs, computed and validated
//! before anything is touched. A plan applies step by step; if a step fails,
//! what the earlier steps did is undone in reverse and the error names the
//! step. Every step also renders itself as the equivalent shell command,
//! which is what `--dry-run` prints.

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use berth_nft::Batch;

use crate::error::{Error, Result};
use crate::kernel::{netns, sysctl, ChildLink, InsideConfig, Kernel, TakeOut, VethPair};
use crate::model::bandwidth::format_rate;
use crate::model::{IpNet, Ipv4Net, Limit, Mac, Proto};

/// One kernel change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    CreateBridge {
        name: String,
        mtu: u32,
        mac: Mac,
        /// berth's ownership mark (see `names::BRIDGE_GROUP`).
        group: u32,
    },
    /// Brings a link up (a bridge someone took down).
    LinkUp {
        name: String,
    },
    /// Points a namespace's default route at another network's gateway
    /// (the network that provided it was disconnected).
    DefaultRoute {
        netns: PathBuf,
        gateway: IpAddr,
    },
    /// Makes a veth a port of its bridge again.
    SetMaster {
        ifname: String,
        bridge: String,
    },
    /// An address that may already be there (repairing a bridge).
    EnsureAddress {
        ifname: String,
        ip: IpAddr,
        subnet: IpNet,
    },
    AddAddress {
        ifname: String,
        ip: IpAddr,
        subnet: IpNet,
    },
    SetSysctl {
        key: sysctl::Key,
        value: String,
    },
    CreateNetns {
        name: String,
    },
    LoopbackUp {
        netns: PathBuf,
    },
    CreateVeth(VethPair),
    /// A macvlan/ipvlan child born in its namespace under berth's name
    /// (renamed by the `ConfigureInside` that follows, whose `ifname` is
    /// `ifname` here, so that its undo finds it under either name).
    CreateChild {
        child: ChildLink,
        ifname: String,
    },
    /// Deletes an endpoint's child inside its namespace (by either name,
    /// only in berth's `group`); a namespace that is gone took it along.
    DeleteChild {
        netns: PathBuf,
        names: Vec<String>,
        group: u32,
    },
    ConfigureInside {
        netns: PathBuf,
        config: InsideConfig,
    },
    DeleteLink {
        name: String,
    },
    DeleteLinkGroup {
        group: u32,
        what: String,
    },
    DeleteNetns {
        name: String,
    },
    /// Deletes these links (those that still exist) in one kernel request:
    /// one RCU grace period in all instead of one per link. They are
    /// gathered in `names::DOOMED_GROUP`, the pending group, so the links
    /// disconnects left there go in the same request.
    DeleteLinksTogether {
        names: Vec<String>,
    },
    /// Takes one of a disconnected endpoint's links out of service at
    /// once (the veth's peer in its namespace, the veth, its ifb: down,
    /// off the bridge, renamed, the host's into the pending group) and
    /// leaves deleting them to whoever deletes that group next (see
    /// `names::PENDING_GROUP`): one RCU grace period for many, and none
    /// for the command. Nothing to undo, as for a delete.
    TakeOut(TakeOut),
    /// `nf_call_iptables` on a bridge, so its bridged traffic meets the
    /// forward chain in every `bridge-nf-call-iptables` mode; with `ipv6`,
    /// `nf_call_ip6tables` too.
    BridgeNetfilter {
        bridge: String,
        ipv6: bool,
    },
    /// One atomic nf_tables batch, with the batch that takes it back.
    Nft {
        batch: Batch,
        undo: Batch,
    },
    /// A default route in one of berth's routing tables.
    AddTableDefault {
        table: u32,
        gateway: Ipv4Addr,
        ifname: String,
    },
    DeleteTableDefault {
        table: u32,
        gateway: Ipv4Addr,
        ifname: String,
    },
    /// `ip rule from SUBNET lookup TABLE`
    AddSourceRule(SourceRule),
    DeleteSourceRule(SourceRule),
    /// Hairpin mode on a bridge port, so its container can reach its own
    /// published ports through a host address when bridged traffic passes
    /// netfilter (br_netfilter sends the DNATed frame back out the port it
    /// came in on).
    SetHairpin {
        ifname: String,
    },
    /// Deletes conntrack entries of a published port, so a flow that
    /// existed before the mapping changed (UDP keeps "connections" alive as
    /// long as a client sends) follows the new mapping at once. Nothing to
    /// undo: entries are re-created by the next packet.
    FlushConntrack {
        proto: Proto,
        /// The family of the entries (IPv6's render with `-f ipv6`).
        family: crate::model::Family,
        /// None: to any address of the family.
        dst: Option<IpAddr>,
        port: u16,
    },
    /// An ifb device (up, in the network's link group) whose egress
    /// shapes what an endpoint sends.
    CreateIfb {
        name: String,
        mtu: u32,
        group: u32,
    },
    /// A token bucket as the root qdisc of a link (replacing any). It goes
    /// with its link, so there is nothing to undo.
    ShapeEgress {
        ifname: String,
        limit: Limit,
    },
    /// Everything `ifname` receives goes to the egress of the ifb `to`
    /// (replacing an earlier redirect); it goes with its link.
    RedirectIngress {
        ifname: String,
        to: String,
    },
}

/// `ip rule from SUBNET iif IIF lookup TABLE priority PRIORITY`: the
/// forwarded traffic of a subnet entering from its bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRule {
    pub subnet: Ipv4Net,
    pub iif: String,
    pub table: u32,
    pub priority: u32,
}

impl SourceRule {
    fn render(&self, verb: &str) -> String {
        format!(
            "ip rule {verb} from {} iif {} lookup {} priority {}",
            self.subnet, self.iif, self.table, self.priority
        )
    }
    fn add(&self, kernel: &mut dyn Kernel) -> Result<()> {
        kernel.add_source_rule(self.subnet, &self.iif, self.table, self.priority)
    }
    fn delete(&self, kernel: &mut dyn Kernel) -> Result<bool> {
        kernel.delete_source_rule(self.subnet, &self.iif, self.table, self.priority)
    }
}

/// How to take back a step that was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Undo {
    DeleteLink(String),
    DeleteChild(PathBuf, Vec<String>, u32),
    RestoreSysctl(sysctl::Key, String),
    DeleteNetns(String),
    Nft(Batch),
    DeleteTableDefault(u32),
    AddTableDefault(u32, Ipv4Addr, String),
    DeleteSourceRule(SourceRule),
    AddSourceRule(SourceRule),
}

impl Step {
    /// Applies the step; returns how to undo it, if it can and needs to be.
    fn apply(&self, kernel: &mut dyn Kernel) -> Result<Option<Undo>> {
        Ok(match self {
            Step::CreateBridge {
                name,
                mtu,
                mac,
                group,
            } => {
                kernel.create_bridge(name, *mtu, *mac, *group)?;
                Some(Undo::DeleteLink(name.clone()))
            }
            Step::LinkUp { name } => {
                kernel.link_up(name)?;
                None
            }
            Step::SetMaster { ifname, bridge } => {
                kernel.set_master(ifname, bridge)?;
                None
            }
            Step::DefaultRoute { netns, gateway } => {
                kernel.set_default_route(netns, *gateway)?;
                None
            }
            Step::EnsureAddress { ifname, ip, subnet } => {
                match kernel.add_address(ifname, *ip, *subnet) {
                    Err(Error::Kernel { source, .. })
                        if source.raw_os_error() == Some(libc::EEXIST) => {}
                    other => other?,
                }
                None
            }
            Step::AddAddress { ifname, ip, subnet } => {
                kernel.add_address(ifname, *ip, *subnet)?;
                None
            }
            Step::SetSysctl { key, value } => {
                let old = kernel.read_sysctl(key)?;
                if old == *value {
                    None
                } else {
                    kernel.write_sysctl(key, value)?;
                    Some(Undo::RestoreSysctl(key.clone(), old))
                }
            }
            Step::CreateNetns { name } => {
                kernel.create_netns(name)?;
                Some(Undo::DeleteNetns(name.clone()))
            }
            Step::LoopbackUp { netns } => {
                kernel.loopback_up(netns)?;
                None
            }
            Step::CreateVeth(pair) => {
                kernel.create_veth(pair)?;
                Some(Undo::DeleteLink(pair.host_ifname.clone()))
            }
            Step::CreateChild { child, ifname } => {
                kernel.create_child(child)?;
                Some(Undo::DeleteChild(
                    child.netns.clone(),
                    vec![child.temp_name.clone(), ifname.clone()],
                    child.group,
                ))
            }
            Step::DeleteChild {
                netns,
                names,
                group,
            } => {
                kernel.delete_child(netns, names, *group)?;
                None
            }
            Step::ConfigureInside { netns, config } => {
                kernel.configure_inside(netns, config)?;
                None
            }
            Step::DeleteLink { name } => {
                kernel.delete_link(name)?;
                None
            }
            Step::DeleteLinkGroup { group, .. } => {
                kernel.delete_link_group(*group)?;
                None
            }
            Step::DeleteNetns { name } => {
                kernel.delete_netns(name)?;
                None
            }
            Step::DeleteLinksTogether { names } => {
                kernel.delete_links_together(names)?;
                None
            }
            Step::TakeOut(link) => {
                kernel.take_out(link)?;
                None
            }
            Step::BridgeNetfilter { bridge, ipv6 } => {
                kernel.set_bridge_netfilter(bridge, true, *ipv6)?;
                None
            }
            Step::Nft { batch, undo } => {
                kernel.nft_apply(batch)?;
                Some(Undo::Nft(undo.clone()))
            }
            Step::AddTableDefault {
                table,
                gateway,
                ifname,
            } => {
                kernel.add_table_default(*table, *gateway, ifname)?;
                Some(Undo::DeleteTableDefault(*table))
            }
            Step::DeleteTableDefault {
                table,
                gateway,
                ifname,
            } => kernel
                .delete_table_default(*table)?
                .then(|| Undo::AddTableDefault(*table, *gateway, ifname.clone())),
            Step::AddSourceRule(rule) => {
                rule.add(kernel)?;
                Some(Undo::DeleteSourceRule(rule.clone()))
            }
            Step::DeleteSourceRule(rule) => rule
                .delete(kernel)?
                .then(|| Undo::AddSourceRule(rule.clone())),
            Step::SetHairpin { ifname } => {
                // The port goes with its veth, so there is nothing to undo.
                kernel.set_hairpin(ifname, true)?;
                None
            }
            Step::FlushConntrack {
                proto,
                family,
                dst,
                port,
            } => {
                kernel.conntrack_flush(*proto, *family, *dst, *port)?;
                None
            }
            Step::CreateIfb { name, mtu, group } => {
                kernel.create_ifb(name, *mtu, *group)?;
                Some(Undo::DeleteLink(name.clone()))
            }
            Step::ShapeEgress { ifname, limit } => {
                kernel.shape_egress(ifname, limit)?;
                None
            }
            Step::RedirectIngress { ifname, to } => {
                kernel.redirect_ingress(ifname, to)?;
                None
            }
        })
    }

    /// The equivalent commands, one per line.
    pub fn render(&self) -> Vec<String> {
        match self {
            Step::CreateBridge {
                name,
                mtu,
                mac,
                group,
            } => {
                vec![format!("ip link add {name} mtu {mtu} address {mac} group {group} up type bridge mcast_snooping 0")]
            }
            Step::LinkUp { name } => vec![format!("ip link set {name} up")],
            Step::SetMaster { ifname, bridge } => {
                vec![format!("ip link set {ifname} master {bridge}")]
            }
            Step::DefaultRoute { netns, gateway } => {
                vec![format!(
                    "{}{} route replace default via {gateway}",
                    ip_in(netns),
                    six(*gateway)
                )]
            }
            Step::EnsureAddress { ifname, ip, subnet } => {
                vec![format!("ip{} addr replace {}", six(*ip), addr_args(*ip, *subnet, ifname))]
            }
            Step::AddAddress { ifname, ip, subnet } => {
                vec![format!("ip{} addr add {}", six(*ip), addr_args(*ip, *subnet, ifname))]
            }
            Step::SetSysctl { key, value } => vec![format!("sysctl -w {key}={value}")],
            Step::CreateNetns { name } => vec![format!("ip netns add {name}")],
            Step::LoopbackUp { netns } => vec![format!("{} link set lo up", ip_in(netns))],
            Step::CreateVeth(p) => vec![
                format!(
                "ip link add {} mtu {} group {} master {} up type veth peer name {} mtu {} address {} netns {}",
                p.host_ifname,
                p.mtu,
                p.link_group,
                p.bridge,
                p.ifname,
                p.mtu,
                p.mac,
                    netns_arg(&p.netns)
                ),
                format!("ip link set {} addrgenmode none", p.host_ifname),
            ],
            Step::CreateChild { child, .. } => {
                let mut line = format!(
                    "ip link add {} link {} netns {} group {}",
                    child.temp_name,
                    child.driver.parent().unwrap_or_default(),
                    netns_arg(&child.netns),
                    child.group
                );
                if let Some(mtu) = child.mtu {
                    line.push_str(&format!(" mtu {mtu}"));
                }
                if let Some(mac) = child.mac {
                    line.push_str(&format!(" address {mac}"));
                }
                line.push_str(&format!(
                    " type {} mode {}",
                    child.driver.name(),
                    child.driver.mode().unwrap_or_default()
                ));
                vec![line]
            }
            Step::DeleteChild { netns, names, .. } => {
                vec![format!("{} link del {}", ip_in(netns), names[names.len() - 1])]
            }
            Step::ConfigureInside { netns, config } => {
                let ip = ip_in(netns);
                let mut lines = vec![format!("{ip} link set lo up")];
                if let Some(from) = &config.rename_from {
                    lines.push(format!("{ip} link set {from} name {}", config.ifname));
                    lines.push(format!(
                        "{} sysctl -qw net.ipv6.conf.{}.autoconf=0",
                        exec_in(netns),
                        config.ifname
                    ));
                }
                lines.extend([
                    format!("{ip} link set {} addrgenmode none", config.ifname),
                    format!("{ip} link set {} up", config.ifname),
                ]);
                for (addr, subnet) in &config.addresses {
                    lines.push(format!(
                        "{ip}{} addr add {}",
                        six(*addr),
                        addr_args(*addr, *subnet, &config.ifname)
                    ));
                }
                for gw in &config.default_via {
                    match config.metric {
                        None => lines.push(format!("{ip}{} route add default via {gw}", six(*gw))),
                        Some(m) => lines.push(format!(
                            "{ip}{} route prepend default via {gw} metric {m}",
                            six(*gw)
                        )),
                    }
                }
                lines
            }
            Step::DeleteLink { name } => vec![format!("ip link del {name}")],
            Step::DeleteLinkGroup { group, what } => vec![format!("ip link del group {group}  # {what}")],
            Step::DeleteNetns { name } => vec![format!("ip netns del {name}")],
            Step::DeleteLinksTogether { names } => {
                let group = crate::model::names::DOOMED_GROUP;
                let mut lines: Vec<String> = names
                    .iter()
                    .map(|n| format!("ip link set {n} group {group}"))
                    .collect();
                lines.push(format!("ip link del group {group}"));
                lines
            }
            Step::TakeOut(TakeOut {
                netns,
                name,
                pending,
            }) => match netns {
                Some(netns) => {
                    let ip = ip_in(netns);
                    vec![
                        format!("{ip} link set {name} down"),
                        format!("{ip} link set {name} name {pending}"),
                    ]
                }
                None => vec![
                    format!("ip link set {name} down nomaster"),
                    format!(
                        "ip link set {name} group {} name {pending}",
                        crate::model::names::PENDING_GROUP
                    ),
                ],
            },
            Step::BridgeNetfilter { bridge, ipv6 } => {
                let six = if *ipv6 { " nf_call_ip6tables 1" } else { "" };
                vec![format!(
                    "ip link set {bridge} type bridge nf_call_iptables 1{six}"
                )]
            }
            Step::Nft { batch, .. } => batch.render().into_iter().map(|l| format!("nft {}", shell_quote_nft(&l))).collect(),
            Step::AddTableDefault {
                table,
                gateway,
                ifname,
            } => vec![format!(
                "ip route add default via {gateway} dev {ifname} table {table}"
            )],
            Step::DeleteTableDefault { table, .. } => {
                vec![format!("ip route del default table {table}")]
            }
            Step::AddSourceRule(rule) => vec![rule.render("add")],
            Step::DeleteSourceRule(rule) => vec![rule.render("del")],
            Step::SetHairpin { ifname } => {
                vec![format!("ip link set {ifname} type bridge_slave hairpin on")]
            }
            Step::FlushConntrack {
                proto,
                family,
                dst,
                port,
            } => {
                let f = match family {
                    crate::model::Family::V4 => "",
                    crate::model::Family::V6 => " -f ipv6",
                };
                vec![match dst {
                    Some(d) => format!(
                        "conntrack -D{f} -p {proto} --orig-dst {d} --orig-port-dst {port}"
                    ),
                    None => format!("conntrack -D{f} -p {proto} --orig-port-dst {port}"),
                }]
            }
            Step::CreateIfb { name, mtu, group } => vec![
                format!("ip link add {name} mtu {mtu} group {group} type ifb"),
                format!("ip link set {name} addrgenmode none"),
                format!("ip link set {name} up"),
            ],
            Step::ShapeEgress { ifname, limit } => vec![format!(
                "tc qdisc replace dev {ifname} root handle 1: tbf rate {} burst {}b limit {}b",
                format_rate(limit.rate),
                limit.burst_u32(),
                limit.queue_bytes()
            )],
            Step::RedirectIngress { ifname, to } => vec![
                format!("tc qdisc replace dev {ifname} handle ffff: ingress"),
                format!(
                    "tc filter replace dev {ifname} parent ffff: protocol all prio 1 handle 800::800 u32 match u32 0 0 action mirred egress redirect dev {to}"
                ),
            ],
        }
    }
}

/// ` -6` for an IPv6 address: `ip -6 ...`, as the IPv6 lines read.
fn six(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "",
        IpAddr::V6(_) => " -6",
    }
}

/// `IP/LEN brd B dev X` (IPv4) or `IP/LEN dev X nodad` (IPv6: no
/// duplicate address detection, as berth adds it).
fn addr_args(ip: IpAddr, subnet: IpNet, ifname: &str) -> String {
    match subnet {
        IpNet::V4(v4) => format!(
            "{ip}/{} brd {} dev {ifname}",
            v4.prefix_len(),
            v4.broadcast()
        ),
        IpNet::V6(v6) => format!("{ip}/{} dev {ifname} nodad", v6.prefix_len()),
    }
}

/// An nft command as one shell argument: nft reads a whole command from one
/// argument, and the braces, quotes and semicolons in it are shell syntax.
fn shell_quote_nft(line: &str) -> String {
    format!("'{}'", line.replace('\'', "'\\''"))
}

/// `ip -n NAME` for named namespaces, `nsenter --net=PATH ip` otherwise.
fn ip_in(netns: &Path) -> String {
    match named(netns) {
        Some(name) => format!("ip -n {name}"),
        None => format!("nsenter --net={} ip", netns.display()),
    }
}

/// A prefix that runs a command in the namespace.
fn exec_in(netns: &Path) -> String {
    match named(netns) {
        Some(name) => format!("ip netns exec {name}"),
        None => format!("nsenter --net={}", netns.display()),
    }
}

/// What `ip link ... netns X` accepts: a name under /run/netns, or a PID.
fn netns_arg(netns: &Path) -> String {
    if let Some(name) = named(netns) {
        return name.to_string();
    }
    let s = netns.display().to_string();
    match s
        .strip_prefix("/proc/")
        .and_then(|r| r.strip_suffix("/ns/net"))
    {
        Some(pid) => pid.to_string(),
        None => format!("\"$(nsenter --net={s} sh -c 'echo $$')\""),
    }
}

fn named(netns: &Path) -> Option<&str> {
    let rest = netns.strip_prefix(netns::NETNS_DIR).ok()?;
    rest.to_str().filter(|s| !s.is_empty() && !s.contains('/'))
}

impl Undo {
    fn run(&self, kernel: &mut dyn Kernel) -> Result<()> {
        match self {
            Undo::DeleteLink(name) => kernel.delete_link(name).map(|_| ()),
            Undo::DeleteChild(netns, names, group) => {
                kernel.delete_child(netns, names, *group).map(|_| ())
            }
            Undo::RestoreSysctl(key, old) => kernel.write_sysctl(key, old),
            Undo::DeleteNetns(name) => kernel.delete_netns(name).map(|_| ()),
            Undo::Nft(batch) => kernel.nft_apply(batch),
            Undo::DeleteTableDefault(table) => kernel.delete_table_default(*table).map(|_| ()),
            Undo::AddTableDefault(table, gateway, ifname) => {
                kernel.add_table_default(*table, *gateway, ifname)
            }
            Undo::DeleteSourceRule(rule) => rule.delete(kernel).map(|_| ()),
            Undo::AddSourceRule(rule) => rule.add(kernel),
        }
    }
}

/// An ordered list of steps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn new() -> Plan {
        Plan::default()
    }

    pub fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether applying the plan changes nftables (after which berth
    /// records the nf_tables generation as its own).
    pub fn touches_nft(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Nft { .. }))
    }

    /// Whether a firewall batch of the plan takes something away (see
    /// `Batch::takes_away`).
    pub fn takes_away_nft(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::Nft { batch, .. } if batch.takes_away()))
    }

    /// How many endpoints' links applying the plan leaves waiting in the
    /// pending group (for the supervisor to delete).
    pub fn deferred_deletes(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| {
                matches!(s, Step::TakeOut(t)
                    if t.netns.is_none() && crate::model::names::is_host_veth_name(&t.name))
            })
            .count()
    }

    /// Every step's commands, in order.
    pub fn render(&self) -> Vec<String> {
        self.steps.iter().flat_map(Step::render).collect()
    }

    /// Applies every step in order. On failure, undoes the applied steps in
    /// reverse and reports the failing step (and anything that could not be
    /// undone).
    pub fn apply(&self, kernel: &mut dyn Kernel) -> Result<()> {
        let mut undo: Vec<Undo> = Vec::new();
        for step in &self.steps {
            crate::failpoint::hit("step");
            let started = std::time::Instant::now();
            let result = step.apply(kernel);
            crate::phases::add(crate::phases::Phase::Kernel, started);
            // Rendering costs string formatting: only when someone listens.
            if tracing::enabled!(target: "berth::step", tracing::Level::INFO) {
                let lines = step.render();
                // A whole-table batch is dozens of lines: one with -v, all with -vv.
                let shown = if lines.len() > 3 && !tracing::enabled!(tracing::Level::DEBUG) {
                    format!("{} (and {} more changes)", lines[0], lines.len() - 1)
                } else {
                    lines.join(" && ")
                };
                tracing::info!(
                    target: "berth::step",
                    "{} ({:.3} ms{})",
                    shown,
                    started.elapsed().as_secs_f64() * 1e3,
                    if result.is_err() { ", failed" } else { "" }
                );
            }
            match result {
                Ok(u) => undo.extend(u),
                Err(cause) => {
                    let failures: Vec<String> = undo
                        .iter()
                        .rev()
                        .filter_map(|u| {
                            tracing::info!(target: "berth::step", "undo: {u:?}");
                            u.run(kernel).err().map(|e| e.to_string())
                        })
                        .collect();
                    let undo = if failures.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (and undoing earlier steps failed: {})",
                            failures.join("; ")
                        )
                    };
                    return Err(Error::Apply {
                        step: format!("`{}`", step.render().join(" && ")),
                        cause: Box::new(cause),
                        undo,
                    });
                }
            }
        }
        Ok(())
    }
}

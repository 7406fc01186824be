//! The only code that talks to the kernel: rtnetlink for links, addresses
//! and routes; namespace syscalls; sysctls. Everything above it goes through
//! the [`Kernel`] trait, so plans can be tested without root.

pub mod addr;
pub mod details;
pub mod facts;
#[cfg(test)]
pub mod fake_rtnl;
pub mod host;
pub mod link;
pub mod netns;
pub mod nftrace;
pub mod presence;
pub mod process;
pub mod route;
pub mod rtnl;
pub mod sandbox;
pub mod sockets;
pub mod sysctl;
pub mod tc;
pub mod userns;
pub mod watch;

#[cfg(test)]
pub mod fake;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

pub use addr::{AddrFact, HostPrefix, IpAddrFact};
pub use details::{FilterChain, NetnsDetails};
pub use facts::NetnsFacts;
pub use link::LinkFact;
pub use netns::Target;
pub use route::{IfaceRoutes, RouteHop};

use berth_nft::{Batch, Element, Nft, Table};

use crate::error::{Error, Result};
use crate::model::{Family, IpNet, Ipv4Net, Limit, Mac, Proto};
use rtnl::Rtnl;

/// Each chain of a table with its number of rules.
pub type NftFingerprint = std::collections::BTreeMap<String, usize>;

/// A veth pair to create: the host end on a bridge, the peer born inside the
/// namespace at `netns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethPair {
    pub host_ifname: String,
    pub bridge: String,
    pub link_group: u32,
    pub netns: PathBuf,
    pub ifname: String,
    pub mac: Mac,
    pub mtu: u32,
}

/// One link a disconnect takes out of service at once instead of deleting
/// it (which waits for an RCU grace period): a host link (the veth, its
/// ifb) is brought down, taken off its bridge and renamed to `pending` in
/// `names::PENDING_GROUP`, where it waits to be deleted with the group;
/// the veth's peer is brought down and renamed the same inside its
/// namespace, so the container's name is free too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakeOut {
    /// None: a host link; Some: the peer's namespace (checked to be the
    /// endpoint's).
    pub netns: Option<PathBuf>,
    pub name: String,
    /// `names::pending_name` of the host link (of the veth, for its peer).
    pub pending: String,
}

/// A macvlan or ipvlan child of a host interface, made directly inside
/// the namespace at `netns` under berth's name `temp_name` (its endpoint's
/// derived name, in the network's link group: provably berth's) and
/// renamed to `ifname` there by [`InsideConfig::rename_from`]. The kernel
/// checks a new link's name against the creating namespace's too, so the
/// container's own name (`eth0`) could clash with the host's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildLink {
    /// Macvlan or ipvlan, with the parent and mode.
    pub driver: crate::model::Driver,
    pub netns: PathBuf,
    pub temp_name: String,
    /// None: the kernel's choice (ipvlan children have their parent's).
    pub mac: Option<Mac>,
    /// None: the parent's.
    pub mtu: Option<u32>,
    pub group: u32,
}

/// What to set up inside a container's namespace once its interface exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsideConfig {
    /// The interface is still called this (a child made under berth's
    /// name) and is renamed to `ifname` first; its IPv6 autoconfiguration
    /// is turned off too, as a child on a real LAN would take router
    /// advertisements.
    pub rename_from: Option<String>,
    pub ifname: String,
    /// Its addresses, each with its subnet (one per family).
    pub addresses: Vec<(IpAddr, IpNet)>,
    /// The gateways of the default routes this connection gives the
    /// namespace (one per family it has; empty when it gives none).
    pub default_via: Vec<IpAddr>,
    /// Metric of that default route (None: the kernel's default, 0).
    pub metric: Option<u32>,
}

/// The kernel operations berth's plans are made of.
/// `Any` lets a test take its fake back out of a command's context.
pub trait Kernel: std::any::Any {
    /// Creates an up bridge in link `group` (berth's ownership mark).
    fn create_bridge(&mut self, name: &str, mtu: u32, mac: Mac, group: u32) -> Result<()>;
    /// Every link of the host, read in one dump.
    fn links(&mut self) -> Result<Vec<LinkFact>>;
    /// The names of every link of the host: what a listing needs to tell
    /// whether an endpoint's veth (so its namespace) is still there.
    fn link_names(&mut self) -> Result<std::collections::HashSet<String>> {
        Ok(self.links()?.into_iter().map(|l| l.name).collect())
    }
    /// For each of `names`, whether the host has a link so called: what a
    /// listing asks of its own endpoints' veths, without reading every link.
    fn links_present(&mut self, names: &[&str]) -> Result<Vec<bool>> {
        let all = self.link_names()?;
        Ok(names.iter().map(|n| all.contains(*n)).collect())
    }
    /// Brings a link up.
    fn link_up(&mut self, name: &str) -> Result<()>;
    /// Whether the namespace at `netns` has a link called `name`.
    fn link_exists_in(&mut self, netns: &Path, name: &str) -> Result<bool>;
    /// Points the namespace's default route at `gateway`.
    fn set_default_route(&mut self, netns: &Path, gateway: IpAddr) -> Result<()>;
    /// Makes `ifname` a port of `bridge`.
    fn set_master(&mut self, ifname: &str, bridge: &str) -> Result<()>;
    /// The nf_tables ruleset generation (bumped by every committed change).
    fn nft_generation(&mut self) -> Result<u32>;
    /// Each chain of `table` with its number of rules, or None when the
    /// table does not exist: a cheap fingerprint of what the table holds.
    fn nft_fingerprint(&mut self, table: &Table) -> Result<Option<NftFingerprint>>;
    /// The inode of the network namespace at `path`, None when there is none.
    fn netns_inode(&mut self, path: &Path) -> Option<u64>;
    fn add_address(&mut self, ifname: &str, ip: IpAddr, subnet: IpNet) -> Result<()>;
    /// Ok(false) if there was no such link.
    fn delete_link(&mut self, name: &str) -> Result<bool>;
    fn delete_link_group(&mut self, group: u32) -> Result<()>;
    /// Deletes those of the links called `names` that exist, in one
    /// request: each is moved into `names::DOOMED_GROUP`, then the group is
    /// deleted, so the kernel waits one RCU grace period for all of them
    /// (~20 ms) instead of one each. Returns how many existed.
    fn delete_links_together(&mut self, names: &[String]) -> Result<usize>;
    /// The nf_tables socket, taken out of the kernel handle (a later
    /// change opens another) so that someone else closes it: the last
    /// close of a socket whose batches deleted elements waits until
    /// nf_tables has freed them, after an RCU grace period (5-20 ms). None
    /// when none is open.
    fn release_nft(&mut self) -> Option<std::os::fd::OwnedFd> {
        None
    }
    /// Takes a link out of service (see [`TakeOut`]); Ok(false) when it
    /// is gone already. A pending name taken already (the same endpoint
    /// disconnected again before its earlier links went) makes it delete
    /// the pending group first.
    fn take_out(&mut self, link: &TakeOut) -> Result<bool>;
    fn link_exists(&mut self, name: &str) -> Result<bool>;
    /// The link group of the link called `name`; None if there is none.
    fn link_group(&mut self, name: &str) -> Result<Option<u32>>;
    fn create_veth(&mut self, pair: &VethPair) -> Result<()>;
    /// Creates a macvlan/ipvlan child inside its namespace.
    fn create_child(&mut self, child: &ChildLink) -> Result<()>;
    /// Deletes, inside `netns`, the first of `names` that exists and is in
    /// `group`; Ok(false) when none is (or the namespace is gone).
    fn delete_child(&mut self, netns: &Path, names: &[String], group: u32) -> Result<bool>;
    fn configure_inside(&mut self, netns: &Path, config: &InsideConfig) -> Result<()>;
    /// Brings `lo` up in a namespace (a fresh one has it down).
    fn loopback_up(&mut self, netns: &Path) -> Result<()>;
    fn read_sysctl(&mut self, key: &sysctl::Key) -> Result<String>;
    fn write_sysctl(&mut self, key: &sysctl::Key, value: &str) -> Result<()>;
    fn host_prefixes(&mut self) -> Result<Vec<HostPrefix>>;
    fn create_netns(&mut self, name: &str) -> Result<()>;
    /// Ok(false) if there was no such namespace.
    fn delete_netns(&mut self, name: &str) -> Result<bool>;
    /// Sets the bridge option `nf_call_iptables`.
    fn set_bridge_netfilter(&mut self, bridge: &str, on: bool, ipv6: bool) -> Result<()>;
    /// Applies an nf_tables batch as one atomic transaction.
    fn nft_apply(&mut self, batch: &Batch) -> Result<()>;
    fn nft_table_exists(&mut self, table: &Table) -> Result<bool>;
    /// The elements of the set or map `name` of `table`.
    fn nft_list_elements(&mut self, table: &Table, name: &str) -> Result<Vec<Element>>;
    /// Base chains of tables other than `ours` that hook forward with
    /// policy drop, each as `table FAMILY NAME chain CHAIN`.
    fn foreign_forward_drops(&mut self, ours: &Table) -> Result<Vec<String>>;
    /// The gateways and connected prefixes of a link; None if there is no
    /// such link.
    fn iface_routes(&mut self, ifname: &str) -> Result<Option<IfaceRoutes>>;
    /// `ip route add default via GATEWAY dev IFNAME table TABLE`
    fn add_table_default(&mut self, table: u32, gateway: Ipv4Addr, ifname: &str) -> Result<()>;
    /// Ok(false) if the table had no default route.
    fn delete_table_default(&mut self, table: u32) -> Result<bool>;
    /// `ip rule add from SUBNET iif IIF lookup TABLE priority PRIORITY`
    fn add_source_rule(
        &mut self,
        subnet: Ipv4Net,
        iif: &str,
        table: u32,
        priority: u32,
    ) -> Result<()>;
    /// Ok(false) if there was no such rule.
    fn delete_source_rule(
        &mut self,
        subnet: Ipv4Net,
        iif: &str,
        table: u32,
        priority: u32,
    ) -> Result<bool>;
    /// Sets hairpin mode on a bridge port.
    fn set_hairpin(&mut self, ifname: &str, on: bool) -> Result<()>;
    /// Deletes the conntrack entries whose original direction goes to
    /// `dst` (None: any address) port `port` over `proto`; returns how many
    /// when the kernel tells (0 when it flushed without counting).
    /// `dst` None: to any address of `family`.
    fn conntrack_flush(
        &mut self,
        proto: Proto,
        family: Family,
        dst: Option<IpAddr>,
        port: u16,
    ) -> Result<usize>;
    /// Whether a host socket holds `port` on `ip` (0.0.0.0: on any address
    /// of either family; `::`: on any IPv6 address).
    fn host_port_in_use(&mut self, proto: Proto, ip: IpAddr, port: u16) -> bool;
    /// Whether `ip` is one of the host's addresses.
    fn is_local_address(&mut self, ip: IpAddr) -> bool;
    /// The process holding `port`, for messages ("nginx (pid 42)").
    fn port_holder_process(&mut self, proto: Proto, port: u16) -> Option<String>;
    /// What tells this boot of this host's network from any other (see
    /// `host.rs`); the preflight compares it with what it recorded.
    fn host_identity(&self) -> String;
    /// TARGET (a netns name, a path or `pid:N`), with its inode when the
    /// namespace exists.
    fn parse_target(&self, text: &str) -> Result<Target>;
    /// TARGET, required to be an existing network namespace.
    fn resolve_target(&self, text: &str) -> Result<Target>;
    /// The inode of the namespace berth itself runs in.
    fn own_netns_inode(&self) -> Option<u64>;
    /// Whether process `pid`, started at `start` (clock ticks after boot),
    /// still runs (a reused PID is another process).
    fn process_alive(&self, pid: u32, start: u64) -> bool;
    /// The start time of process `pid`; None when there is none.
    fn process_start_time(&self, pid: u32) -> Option<u64>;
    /// The links, IPv4 addresses and default gateways of the namespace at
    /// `netns` (None: berth's own), one dump each.
    fn netns_facts(&mut self, netns: Option<&Path>) -> Result<NetnsFacts>;
    /// The MAC of the link `name`; None when there is no such link or it
    /// has none.
    fn link_mac(&mut self, name: &str) -> Result<Option<Mac>>;
    /// Creates an up ifb device in link `group`, without IPv6 addresses.
    fn create_ifb(&mut self, name: &str, mtu: u32, group: u32) -> Result<()>;
    /// Makes a token bucket of `limit` the root qdisc of `ifname`
    /// (replacing any): what the link sends is held to the rate.
    fn shape_egress(&mut self, ifname: &str, limit: &Limit) -> Result<()>;
    /// Sends everything `ifname` receives to the egress of `to` (an ifb),
    /// replacing an earlier redirect.
    fn redirect_ingress(&mut self, ifname: &str, to: &str) -> Result<()>;
    /// Everything the namespace at `netns` (None: berth's own) holds:
    /// links in full, addresses, IPv4 routes of every table, neighbours.
    fn netns_details(&mut self, netns: Option<&Path>) -> Result<NetnsDetails>;
    /// Every base chain on the input or forward hook, of every table, with
    /// the rules that could drop what it sees.
    fn filter_chains(&mut self) -> Result<Vec<FilterChain>>;
    /// The named namespaces (under /run/netns).
    fn named_netns(&self) -> Vec<String>;
    /// Whether a DNS server answers a query at `server:port` (UDP).
    fn dns_answers(&self, server: IpAddr, port: u16) -> bool;
    /// `ip [-n NETNS] route get DST [from SRC]`: the route the kernel's
    /// lookup in the namespace at `netns` (None: berth's own) picks.
    fn route_get(
        &mut self,
        netns: Option<&Path>,
        dst: IpAddr,
        src: Option<IpAddr>,
    ) -> Result<RouteHop>;
    /// `berth trace --live`: sets up the plan's trace tables, sends its
    /// probe, collects the nf_tables trace events, and removes the tables
    /// again (also on error and on SIGINT/SIGTERM).
    fn nft_trace_live(&mut self, plan: &nftrace::LivePlan) -> Result<nftrace::LiveCapture>;
}

/// [`link::take_out`] for a veth's peer inside its namespace (no group:
/// the group marks links in the host); a namespace that is gone took the
/// peer along.
fn take_out_inside(netns: &Path, ifname: &str, pending: &str) -> std::io::Result<bool> {
    let ns = match std::fs::File::open(netns) {
        Ok(ns) => ns,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
        Err(e) => return Err(e),
    };
    netns::run_in(&ns, || {
        let mut rtnl = Rtnl::open()?;
        link::take_out(&mut rtnl, ifname, pending, None)
    })?
}

/// The real kernel, through one rtnetlink socket in berth's own namespace
/// and short-lived sockets inside container namespaces.
#[derive(Default)]
pub struct LiveKernel {
    rtnl: Option<Rtnl>,
    nft: Option<Nft>,
    conntrack: Option<berth_nft::Conntrack>,
}

impl LiveKernel {
    pub fn new() -> LiveKernel {
        LiveKernel::default()
    }

    /// A kernel whose rtnetlink requests go to `rtnl` (a fake in tests).
    #[cfg(test)]
    fn over(rtnl: Rtnl) -> LiveKernel {
        LiveKernel {
            rtnl: Some(rtnl),
            ..LiveKernel::default()
        }
    }

    fn rtnl(&mut self) -> Result<&mut Rtnl> {
        if self.rtnl.is_none() {
            self.rtnl =
                Some(Rtnl::open().map_err(|e| Error::kernel("opening rtnetlink socket", e))?);
        }
        Ok(self.rtnl.as_mut().expect("just opened"))
    }

    fn nft(&mut self) -> Result<&mut Nft> {
        if self.nft.is_none() {
            self.nft = Some(Nft::open()?);
        }
        Ok(self.nft.as_mut().expect("just opened"))
    }

    fn index(&mut self, name: &str) -> Result<u32> {
        link::index_of(self.rtnl()?, name)
            .map_err(|e| Error::kernel(format!("looking up link {name}"), e))?
            .ok_or_else(|| {
                Error::kernel(
                    format!("looking up link {name}"),
                    nix::errno::Errno::ENODEV.into(),
                )
            })
    }
}

/// A veth peer's configuration inside its namespace in two round trips
/// (not seven): lo up, `addrgenmode none`, up and a GETLINK for the index
/// by name in one datagram, then the addresses and default routes, which
/// need the index, in a second. Each datagram's requests run in order, as
/// they did one by one; a refusal is reported once all are answered, and
/// the veth's removal (the step's undo) takes whatever the others made.
fn configure_veth_peer(rtnl: &mut Rtnl, config: &InsideConfig) -> std::io::Result<()> {
    let replies = rtnl.batch(vec![
        (link::up_by_name_message("lo"), 0),
        (link::no_ipv6_addresses_message(&config.ifname), 0),
        (link::up_by_name_message(&config.ifname), 0),
        (link::get_by_name_message(&config.ifname), 0),
    ])?;
    let index = link::index_in(&replies[3]).ok_or_else(enodev)?;
    let mut second = Vec::new();
    for (ip, subnet) in &config.addresses {
        second.push(addr::address_request(index, *ip, *subnet));
    }
    for gateway in &config.default_via {
        second.push(addr::default_route_request(*gateway, config.metric));
    }
    if !second.is_empty() {
        rtnl.batch(second)?;
    }
    Ok(())
}

fn enodev() -> std::io::Error {
    nix::errno::Errno::ENODEV.into()
}

impl Kernel for LiveKernel {
    fn create_bridge(&mut self, name: &str, mtu: u32, mac: Mac, group: u32) -> Result<()> {
        link::create_bridge(self.rtnl()?, name, mtu, mac.0, group)
            .map_err(|e| Error::kernel(format!("creating bridge {name}"), e))
    }

    fn links(&mut self) -> Result<Vec<LinkFact>> {
        link::dump(self.rtnl()?).map_err(|e| Error::kernel("listing links", e))
    }

    fn link_names(&mut self) -> Result<std::collections::HashSet<String>> {
        // The kernel fills a netlink dump with every attribute and counter
        // of every link (1.9 MB, 2.5 ms for 1000 veths here, plus parsing
        // them); the namespace's /proc/net/dev is a line a link (0.5 ms).
        // Without /proc, the dump.
        match link::names_in_proc() {
            Some(names) => Ok(names),
            None => Ok(self.links()?.into_iter().map(|l| l.name).collect()),
        }
    }

    fn links_present(&mut self, names: &[&str]) -> Result<Vec<bool>> {
        presence::exist(names).map_err(|e| Error::kernel("looking up links by name", e))
    }

    fn link_exists_in(&mut self, netns: &Path, name: &str) -> Result<bool> {
        let what = format!("looking up {name} in {}", netns.display());
        let ns = std::fs::File::open(netns).map_err(|e| Error::kernel(&what, e))?;
        let inside = netns::run_in(&ns, || -> std::io::Result<bool> {
            let mut rtnl = Rtnl::open()?;
            Ok(link::index_of(&mut rtnl, name)?.is_some())
        });
        inside.and_then(|r| r).map_err(|e| Error::kernel(what, e))
    }

    fn set_default_route(&mut self, netns: &Path, gateway: IpAddr) -> Result<()> {
        let what = format!(
            "setting the default route via {gateway} in {}",
            netns.display()
        );
        let ns = std::fs::File::open(netns).map_err(|e| Error::kernel(&what, e))?;
        let inside = netns::run_in(&ns, || -> std::io::Result<()> {
            let mut rtnl = Rtnl::open()?;
            addr::replace_default_route(&mut rtnl, gateway)
        });
        inside.and_then(|r| r).map_err(|e| Error::kernel(what, e))
    }

    fn link_up(&mut self, name: &str) -> Result<()> {
        let index = self.index(name)?;
        link::set_up(self.rtnl()?, index)
            .map_err(|e| Error::kernel(format!("bringing {name} up"), e))
    }

    fn nft_generation(&mut self) -> Result<u32> {
        Ok(self.nft()?.generation()?)
    }

    fn set_master(&mut self, ifname: &str, bridge: &str) -> Result<()> {
        let index = self.index(ifname)?;
        let master = self.index(bridge)?;
        link::set_master(self.rtnl()?, index, master)
            .map_err(|e| Error::kernel(format!("attaching {ifname} to {bridge}"), e))
    }

    fn nft_fingerprint(&mut self, table: &Table) -> Result<Option<NftFingerprint>> {
        let nft = self.nft()?;
        let Some(chains) = nft.table_chains(table)? else {
            return Ok(None);
        };
        let counts = nft.rule_counts(table)?;
        Ok(Some(
            chains
                .into_iter()
                .map(|c| {
                    let n = counts.get(&c).copied().unwrap_or(0);
                    (c, n)
                })
                .collect(),
        ))
    }

    fn netns_inode(&mut self, path: &Path) -> Option<u64> {
        netns::net_namespace_inode(path)
    }

    fn add_address(&mut self, ifname: &str, ip: IpAddr, subnet: IpNet) -> Result<()> {
        let index = self.index(ifname)?;
        addr::add_address(self.rtnl()?, index, ip, subnet).map_err(|e| {
            Error::kernel(
                format!("adding {ip}/{} to {ifname}", subnet.prefix_len()),
                e,
            )
        })
    }

    fn delete_link(&mut self, name: &str) -> Result<bool> {
        link::delete(self.rtnl()?, name)
            .map_err(|e| Error::kernel(format!("deleting link {name}"), e))
    }

    fn delete_link_group(&mut self, group: u32) -> Result<()> {
        link::delete_group(self.rtnl()?, group)
            .map_err(|e| Error::kernel(format!("deleting link group {group}"), e))
    }

    fn delete_links_together(&mut self, names: &[String]) -> Result<usize> {
        link::delete_together(self.rtnl()?, names)
            .map_err(|e| Error::kernel(format!("deleting {} link(s)", names.len()), e))
    }

    fn release_nft(&mut self) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        // A second reference to the socket: dropping the handle then
        // closes only this process's first one.
        let nft = self.nft.take()?;
        nft.as_fd().try_clone_to_owned().ok()
    }

    fn take_out(&mut self, out: &TakeOut) -> Result<bool> {
        use crate::model::names::PENDING_GROUP;
        let taken_name = |e: &std::io::Error| e.raw_os_error() == Some(libc::EEXIST);
        let what = match &out.netns {
            Some(netns) => format!(
                "taking {} in {} out of service as {}",
                out.name,
                netns.display(),
                out.pending
            ),
            None => format!("taking {} out of service as {}", out.name, out.pending),
        };
        let attempt = |kernel: &mut LiveKernel| -> std::io::Result<bool> {
            match &out.netns {
                Some(netns) => take_out_inside(netns, &out.name, &out.pending),
                None => link::take_out(
                    kernel.rtnl().map_err(std::io::Error::other)?,
                    &out.name,
                    &out.pending,
                    Some(PENDING_GROUP),
                ),
            }
        };
        let mut result = attempt(self);
        if result.as_ref().is_err_and(taken_name) {
            link::delete_group(self.rtnl()?, PENDING_GROUP)
                .map_err(|e| Error::kernel("deleting the pending links", e))?;
            result = attempt(self);
        }
        result.map_err(|e| Error::kernel(what, e))
    }

    fn link_group(&mut self, name: &str) -> Result<Option<u32>> {
        link::group_of(self.rtnl()?, name)
            .map_err(|e| Error::kernel(format!("looking up link {name}"), e))
    }

    fn link_exists(&mut self, name: &str) -> Result<bool> {
        link::index_of(self.rtnl()?, name)
            .map(|i| i.is_some())
            .map_err(|e| Error::kernel(format!("looking up link {name}"), e))
    }

    fn create_veth(&mut self, pair: &VethPair) -> Result<()> {
        let what = format!(
            "creating veth {} (peer {} in {})",
            pair.host_ifname,
            pair.ifname,
            pair.netns.display()
        );
        let bridge_index = self.index(&pair.bridge)?;
        let ns = std::fs::File::open(&pair.netns).map_err(|e| Error::kernel(&what, e))?;
        let spec = link::VethSpec {
            host_ifname: &pair.host_ifname,
            bridge_index: Some(bridge_index),
            link_group: pair.link_group,
            peer_ifname: &pair.ifname,
            peer_netns: &ns,
            peer_mac: pair.mac.0,
            mtu: pair.mtu,
        };
        link::create_veth(self.rtnl()?, &spec).map_err(|e| Error::kernel(what, e))
    }

    fn create_child(&mut self, child: &ChildLink) -> Result<()> {
        let parent = child.driver.parent().unwrap_or_default();
        let what = format!(
            "creating {} {} on {parent} in {}",
            child.driver.name(),
            child.temp_name,
            child.netns.display()
        );
        let parent_index = link::index_of(self.rtnl()?, parent)
            .map_err(|e| Error::kernel(&what, e))?
            .ok_or_else(|| Error::kernel(&what, enodev()))?;
        let ns = std::fs::File::open(&child.netns).map_err(|e| Error::kernel(&what, e))?;
        let spec = link::ChildSpec {
            name: &child.temp_name,
            parent_index,
            driver: &child.driver,
            netns: &ns,
            mac: child.mac.map(|m| m.0),
            mtu: child.mtu,
            group: child.group,
        };
        link::create_child(self.rtnl()?, &spec).map_err(|e| Error::kernel(what, e))
    }

    fn delete_child(&mut self, netns: &Path, names: &[String], group: u32) -> Result<bool> {
        let what = format!("deleting {} in {}", names.join(" or "), netns.display());
        let ns = match std::fs::File::open(netns) {
            Ok(ns) => ns,
            // The namespace went, and its links with it.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
            Err(e) => return Err(Error::kernel(what, e)),
        };
        let inside = netns::run_in(&ns, || -> std::io::Result<bool> {
            let mut rtnl = Rtnl::open()?;
            for name in names {
                if link::group_of(&mut rtnl, name)? == Some(group) {
                    return link::delete(&mut rtnl, name);
                }
            }
            Ok(false)
        });
        inside.and_then(|r| r).map_err(|e| Error::kernel(what, e))
    }

    fn configure_inside(&mut self, netns: &Path, config: &InsideConfig) -> Result<()> {
        let what = format!("configuring {} in {}", config.ifname, netns.display());
        let ns = std::fs::File::open(netns).map_err(|e| Error::kernel(&what, e))?;
        let inside = netns::run_in(&ns, || -> std::io::Result<()> {
            let mut rtnl = Rtnl::open()?;
            if config.rename_from.is_none() {
                return configure_veth_peer(&mut rtnl, config);
            }
            let lo = link::index_of(&mut rtnl, "lo")?.ok_or_else(enodev)?;
            link::set_up(&mut rtnl, lo)?;
            if let Some(from) = &config.rename_from {
                let index = link::index_of(&mut rtnl, from)?.ok_or_else(enodev)?;
                link::rename(&mut rtnl, index, &config.ifname)?;
                sysctl::write_if_differs(
                    &format!("/proc/sys/net/ipv6/conf/{}/autoconf", config.ifname),
                    "0",
                )?;
            }
            let index = link::index_of(&mut rtnl, &config.ifname)?.ok_or_else(enodev)?;
            link::no_ipv6_addresses(&mut rtnl, &config.ifname)?;
            link::set_up(&mut rtnl, index)?;
            for (ip, subnet) in &config.addresses {
                addr::add_address(&mut rtnl, index, *ip, *subnet)?;
            }
            for gateway in &config.default_via {
                addr::add_default_route(&mut rtnl, *gateway, config.metric)?;
            }
            Ok(())
        });
        inside.and_then(|r| r).map_err(|e| Error::kernel(what, e))
    }

    fn loopback_up(&mut self, netns: &Path) -> Result<()> {
        let what = format!("bringing lo up in {}", netns.display());
        let ns = std::fs::File::open(netns).map_err(|e| Error::kernel(&what, e))?;
        let inside = netns::run_in(&ns, || -> std::io::Result<()> {
            let mut rtnl = Rtnl::open()?;
            let lo = link::index_of(&mut rtnl, "lo")?.ok_or_else(enodev)?;
            link::set_up(&mut rtnl, lo)
        });
        inside.and_then(|r| r).map_err(|e| Error::kernel(what, e))
    }

    fn read_sysctl(&mut self, key: &sysctl::Key) -> Result<String> {
        sysctl::read(key).map_err(|e| Error::kernel(format!("reading sysctl {key}"), e))
    }

    fn write_sysctl(&mut self, key: &sysctl::Key, value: &str) -> Result<()> {
        let what = || format!("setting sysctl {key}={value}");
        match (key.ipv4_devconf(), value.trim().parse::<u32>()) {
            (Some((dev, id)), Ok(v)) => link::set_ipv4_devconf(self.rtnl()?, dev, id, v)
                .map_err(|e| Error::kernel(what(), e)),
            _ => sysctl::write(key, value).map_err(|e| Error::kernel(what(), e)),
        }
    }

    fn host_prefixes(&mut self) -> Result<Vec<HostPrefix>> {
        addr::host_prefixes(self.rtnl()?)
            .map_err(|e| Error::kernel("reading host routes and addresses", e))
    }

    fn create_netns(&mut self, name: &str) -> Result<()> {
        netns::create_named(name)
    }

    fn delete_netns(&mut self, name: &str) -> Result<bool> {
        netns::delete_named(name)
    }

    fn set_bridge_netfilter(&mut self, bridge: &str, on: bool, ipv6: bool) -> Result<()> {
        link::set_bridge_nf_call_iptables(self.rtnl()?, bridge, on, ipv6)
            .map_err(|e| Error::kernel(format!("setting nf_call_iptables on bridge {bridge}"), e))
    }

    fn nft_apply(&mut self, batch: &Batch) -> Result<()> {
        Ok(self.nft()?.apply(batch)?)
    }

    fn nft_table_exists(&mut self, table: &Table) -> Result<bool> {
        Ok(self.nft()?.table_exists(table.family, &table.name)?)
    }

    fn nft_list_elements(&mut self, table: &Table, name: &str) -> Result<Vec<Element>> {
        Ok(self.nft()?.list_elements(table, name)?)
    }

    fn foreign_forward_drops(&mut self, ours: &Table) -> Result<Vec<String>> {
        let chains = self.nft()?.list_chains()?;
        Ok(chains
            .iter()
            .filter(|c| c.is_dropping_forward_hook())
            .filter(|c| !(c.family == ours.family && c.table == ours.name))
            .map(|c| format!("table {} {} chain {}", c.family, c.table, c.name))
            .collect())
    }

    fn iface_routes(&mut self, ifname: &str) -> Result<Option<IfaceRoutes>> {
        let what = || format!("reading the routes of {ifname}");
        let Some(index) =
            link::index_of(self.rtnl()?, ifname).map_err(|e| Error::kernel(what(), e))?
        else {
            return Ok(None);
        };
        route::iface_routes(self.rtnl()?, index)
            .map(Some)
            .map_err(|e| Error::kernel(what(), e))
    }

    fn add_table_default(&mut self, table: u32, gateway: Ipv4Addr, ifname: &str) -> Result<()> {
        let index = self.index(ifname)?;
        route::add_table_default(self.rtnl()?, table, gateway, index).map_err(|e| {
            Error::kernel(
                format!("adding default via {gateway} dev {ifname} to routing table {table}"),
                e,
            )
        })
    }

    fn delete_table_default(&mut self, table: u32) -> Result<bool> {
        route::delete_table_default(self.rtnl()?, table).map_err(|e| {
            Error::kernel(
                format!("deleting the default route of routing table {table}"),
                e,
            )
        })
    }

    fn add_source_rule(
        &mut self,
        subnet: Ipv4Net,
        iif: &str,
        table: u32,
        priority: u32,
    ) -> Result<()> {
        route::add_source_rule(self.rtnl()?, subnet, iif, table, priority)
            .map_err(|e| Error::kernel(format!("adding rule from {subnet} lookup {table}"), e))
    }

    fn delete_source_rule(
        &mut self,
        subnet: Ipv4Net,
        iif: &str,
        table: u32,
        priority: u32,
    ) -> Result<bool> {
        route::delete_source_rule(self.rtnl()?, subnet, iif, table, priority)
            .map_err(|e| Error::kernel(format!("deleting rule from {subnet} lookup {table}"), e))
    }

    fn set_hairpin(&mut self, ifname: &str, on: bool) -> Result<()> {
        link::set_hairpin(self.rtnl()?, ifname, on)
            .map_err(|e| Error::kernel(format!("setting hairpin mode on {ifname}"), e))
    }

    fn conntrack_flush(
        &mut self,
        proto: Proto,
        family: Family,
        dst: Option<IpAddr>,
        port: u16,
    ) -> Result<usize> {
        if self.conntrack.is_none() {
            self.conntrack = Some(berth_nft::Conntrack::open()?);
        }
        let ct = self.conntrack.as_mut().expect("just opened");
        let l4 = berth_nft::L4Proto::from_number(proto.number());
        let query = match (dst, family) {
            (Some(d), _) => berth_nft::CtQuery::to(l4, d, port),
            (None, Family::V4) => berth_nft::CtQuery::any(berth_nft::Family::Ip, l4, port),
            (None, Family::V6) => berth_nft::CtQuery::any(berth_nft::Family::Ip6, l4, port),
        };
        // The kernel-side flush does not count what it deleted: None counts as 0.
        Ok(ct.delete(&query)?.unwrap_or(0))
    }

    fn host_port_in_use(&mut self, proto: Proto, ip: IpAddr, port: u16) -> bool {
        sockets::port_in_use_ip(proto, ip, port)
    }

    fn is_local_address(&mut self, ip: IpAddr) -> bool {
        sockets::is_local_address(ip)
    }

    fn port_holder_process(&mut self, proto: Proto, port: u16) -> Option<String> {
        sockets::port_holder_process(proto, port)
    }

    fn host_identity(&self) -> String {
        host::identity()
    }

    fn parse_target(&self, text: &str) -> Result<Target> {
        Target::parse(text)
    }

    fn resolve_target(&self, text: &str) -> Result<Target> {
        Target::resolve(text)
    }

    fn own_netns_inode(&self) -> Option<u64> {
        netns::own_inode()
    }

    fn process_alive(&self, pid: u32, start: u64) -> bool {
        process::alive(pid, start)
    }

    fn process_start_time(&self, pid: u32) -> Option<u64> {
        process::start_time(pid)
    }

    fn netns_facts(&mut self, netns: Option<&Path>) -> Result<NetnsFacts> {
        let Some(path) = netns else {
            return facts::read(self.rtnl()?).map_err(|e| Error::kernel("reading links", e));
        };
        let what = format!("reading namespace {}", path.display());
        let ns = std::fs::File::open(path).map_err(|e| Error::kernel(&what, e))?;
        let inside = netns::run_in(&ns, || facts::read(&mut Rtnl::open()?));
        inside.and_then(|r| r).map_err(|e| Error::kernel(what, e))
    }

    fn link_mac(&mut self, name: &str) -> Result<Option<Mac>> {
        link::get(self.rtnl()?, name)
            .map(|l| l.and_then(|l| l.mac))
            .map_err(|e| Error::kernel(format!("looking up link {name}"), e))
    }

    fn create_ifb(&mut self, name: &str, mtu: u32, group: u32) -> Result<()> {
        let what = || format!("creating ifb {name}");
        let rtnl = self.rtnl()?;
        // Created down so that it never has an IPv6 address (the kernel
        // refuses addrgenmode at creation), then brought up.
        link::create_ifb(rtnl, name, mtu, group)
            .and_then(|()| link::no_ipv6_addresses(rtnl, name))
            .map_err(|e| Error::kernel(what(), e))?;
        let index = self.index(name)?;
        link::set_up(self.rtnl()?, index).map_err(|e| Error::kernel(what(), e))
    }

    fn shape_egress(&mut self, ifname: &str, limit: &Limit) -> Result<()> {
        let index = self.index(ifname)?;
        tc::shape_egress(self.rtnl()?, index, limit).map_err(|e| {
            Error::kernel(
                format!(
                    "limiting {ifname} to {}",
                    crate::model::bandwidth::format_rate(limit.rate)
                ),
                e,
            )
        })
    }

    fn redirect_ingress(&mut self, ifname: &str, to: &str) -> Result<()> {
        let index = self.index(ifname)?;
        let to_index = self.index(to)?;
        tc::redirect_ingress(self.rtnl()?, index, to_index)
            .map_err(|e| Error::kernel(format!("redirecting what {ifname} receives to {to}"), e))
    }

    fn netns_details(&mut self, netns: Option<&Path>) -> Result<NetnsDetails> {
        let Some(path) = netns else {
            return details::read(self.rtnl()?).map_err(|e| Error::kernel("reading the host", e));
        };
        let what = format!("reading namespace {}", path.display());
        let ns = std::fs::File::open(path).map_err(|e| Error::kernel(&what, e))?;
        let inside = netns::run_in(&ns, || details::read(&mut Rtnl::open()?));
        inside.and_then(|r| r).map_err(|e| Error::kernel(what, e))
    }

    fn filter_chains(&mut self) -> Result<Vec<FilterChain>> {
        use berth_nft::{Hook, Policy, RuleVerdict};
        let nft = self.nft()?;
        let chains = nft.list_chains()?;
        let mut out = Vec::new();
        let mut rules_of: std::collections::HashMap<(String, String), Vec<berth_nft::RuleInfo>> =
            Default::default();
        for c in &chains {
            let hook = match c.hook {
                Some(Hook::Input) => "input",
                Some(Hook::Forward) => "forward",
                _ => continue,
            };
            let key = (c.family.to_string(), c.table.clone());
            if !rules_of.contains_key(&key) {
                let table = Table::new(c.family, &c.table);
                rules_of.insert(key.clone(), nft.list_rules(&table)?);
            }
            let rules = &rules_of[&key];
            let dropping = |r: &&berth_nft::RuleInfo| {
                matches!(r.verdict, Some(RuleVerdict::Drop | RuleVerdict::Reject))
            };
            let mut dropping_rules: Vec<String> = Vec::new();
            for r in rules.iter().filter(|r| r.chain == c.name) {
                if dropping(&r) {
                    dropping_rules.push(format!("{} handle {}: {}", r.chain, r.handle, r.text));
                }
                if let Some(RuleVerdict::Jump(to) | RuleVerdict::Goto(to)) = &r.verdict {
                    for inner in rules.iter().filter(|i| &i.chain == to).filter(dropping) {
                        dropping_rules.push(format!(
                            "{} handle {}: {}",
                            inner.chain, inner.handle, inner.text
                        ));
                    }
                }
            }
            out.push(FilterChain {
                family: c.family.to_string(),
                table: c.table.clone(),
                chain: c.name.clone(),
                hook: hook.to_string(),
                priority: c.priority.unwrap_or(0),
                policy_drop: c.policy == Some(Policy::Drop),
                dropping_rules,
            });
        }
        Ok(out)
    }

    fn named_netns(&self) -> Vec<String> {
        netns::list_named()
    }

    fn dns_answers(&self, server: IpAddr, port: u16) -> bool {
        sockets::dns_answers(server, port, std::time::Duration::from_millis(500))
    }

    fn route_get(
        &mut self,
        netns: Option<&Path>,
        dst: IpAddr,
        src: Option<IpAddr>,
    ) -> Result<RouteHop> {
        let what = || format!("looking up the route to {dst}");
        let Some(path) = netns else {
            return route::get(self.rtnl()?, dst, src).map_err(|e| Error::kernel(what(), e));
        };
        let ns = std::fs::File::open(path).map_err(|e| Error::kernel(what(), e))?;
        let inside = netns::run_in(&ns, || route::get(&mut Rtnl::open()?, dst, src));
        inside.and_then(|r| r).map_err(|e| Error::kernel(what(), e))
    }

    fn nft_trace_live(&mut self, plan: &nftrace::LivePlan) -> Result<nftrace::LiveCapture> {
        nftrace::run(self.nft()?, plan)
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};
    use netlink_packet_route::RouteNetlinkMessage;

    use super::fake_rtnl::{self, Answer};
    use super::*;
    use crate::model::names::DOOMED_GROUP;

    fn set_group(name: &str) -> RouteNetlinkMessage {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes.push(LinkAttribute::Group(DOOMED_GROUP));
        RouteNetlinkMessage::SetLink(msg)
    }

    #[test]
    fn links_are_deleted_together_by_moving_them_into_one_group() {
        let (rtnl, sent) = fake_rtnl::rtnl(vec![Answer::Ack, Answer::Errno(libc::ENODEV)]);
        let mut k = LiveKernel::over(rtnl);
        let deleted = k
            .delete_links_together(&["vb1".into(), "vb2".into()])
            .unwrap();
        assert_eq!(deleted, 1, "vb2 was gone already");
        let mut group = LinkMessage::default();
        group.attributes.push(LinkAttribute::Group(DOOMED_GROUP));
        let messages: Vec<_> = sent.sent().into_iter().map(|s| s.message).collect();
        assert_eq!(
            messages,
            [
                set_group("vb1"),
                set_group("vb2"),
                RouteNetlinkMessage::DelLink(group)
            ]
        );

        // Nothing left to delete: no delete request at all.
        let (rtnl, sent) = fake_rtnl::rtnl(vec![Answer::Errno(libc::ENODEV)]);
        let mut k = LiveKernel::over(rtnl);
        assert_eq!(k.delete_links_together(&["vb1".into()]).unwrap(), 0);
        assert_eq!(sent.sent().len(), 1);
    }

    #[test]
    fn a_veth_peer_is_configured_in_two_round_trips() {
        use netlink_packet_route::address::AddressAttribute;
        let config = InsideConfig {
            rename_from: None,
            ifname: "eth0".into(),
            addresses: vec![("10.0.0.2".parse().unwrap(), "10.0.0.0/24".parse().unwrap())],
            default_via: vec!["10.0.0.1".parse().unwrap()],
            metric: None,
        };
        let answers = vec![
            Answer::Ack,
            Answer::Ack,
            Answer::Ack,
            Answer::Replies(vec![fake_rtnl::link("eth0", 7, vec![])]),
        ];
        let (mut rtnl, sent) = fake_rtnl::rtnl(answers);
        configure_veth_peer(&mut rtnl, &config).unwrap();
        assert_eq!(sent.datagrams(), 2);
        let messages: Vec<_> = sent.sent().into_iter().map(|s| s.message).collect();
        assert_eq!(messages.len(), 6);
        assert_eq!(messages[0], link::up_by_name_message("lo"));
        assert_eq!(messages[1], link::no_ipv6_addresses_message("eth0"));
        assert_eq!(messages[2], link::up_by_name_message("eth0"));
        assert_eq!(messages[3], link::get_by_name_message("eth0"));
        let RouteNetlinkMessage::NewAddress(address) = &messages[4] else {
            panic!("an address, not {:?}", messages[4]);
        };
        assert_eq!(address.header.index, 7, "the index the GETLINK answered");
        assert!(address
            .attributes
            .contains(&AddressAttribute::Local("10.0.0.2".parse().unwrap())));
        assert!(matches!(messages[5], RouteNetlinkMessage::NewRoute(_)));
    }

    /// The kernel goes on after a refused request of a datagram; the
    /// refusal is reported once every answer is read, and none is left
    /// behind for the next request to stumble on.
    #[test]
    fn a_batch_reports_its_first_refusal_after_reading_every_answer() {
        let answers = vec![
            Answer::Ack,
            Answer::Refused(libc::EEXIST, "File exists"),
            Answer::Errno(libc::ENETUNREACH),
        ];
        let (mut rtnl, sent) = fake_rtnl::rtnl(answers);
        let err = rtnl
            .batch(vec![
                (link::up_by_name_message("lo"), 0),
                (link::up_by_name_message("eth0"), 0),
                (link::up_by_name_message("eth1"), 0),
            ])
            .unwrap_err();
        assert_eq!(crate::error::errno_of(&err), Some(libc::EEXIST));
        assert_eq!(sent.sent().len(), 3);
        link::set_up(&mut rtnl, 1).expect("the next request reads its own answer");
        assert_eq!(sent.datagrams(), 2);
    }

    #[test]
    fn a_refusal_names_the_operation() {
        let (rtnl, _) = fake_rtnl::rtnl(vec![Answer::Errno(libc::EPERM)]);
        let mut k = LiveKernel::over(rtnl);
        let err = k.delete_link("vb1").unwrap_err().to_string();
        assert_eq!(
            err,
            "deleting link vb1: Operation not permitted (os error 1)"
        );
    }
}

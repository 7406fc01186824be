//! An in-memory kernel for unit tests of plans and commands. It keeps what
//! a real one would: links (name, kind, group, bridge, up, MAC and the
//! namespace they live in), IPv4 addresses and default routes per
//! namespace, named namespaces with their inodes, and the processes it
//! knows, and it changes them as the real kernel does (a veth pair dies
//! together, and with its namespace; a deleted bridge leaves its ports).
//! Every change is also logged as one line, and `fail_on` makes the change
//! whose line starts with it fail, logged but without effect.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::{
    AddrFact, ChildLink, HostPrefix, IfaceRoutes, InsideConfig, IpAddrFact, Kernel, LinkFact,
    NetnsFacts, NftFingerprint, TakeOut, Target, VethPair,
};
use crate::error::{Error, Result};
use crate::model::{IpNet, Ipv4Net, Mac, Proto};
use berth_nft::{Batch, Element, Table};

/// One link, with the namespace it lives in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeLink {
    pub fact: LinkFact,
    /// The namespace file it lives in; None: the host's (berth's own).
    pub netns: Option<PathBuf>,
    /// Index of the other end of a veth pair, which dies with this one.
    pub peer: Option<u32>,
}

pub struct FakeKernel {
    pub log: Vec<String>,
    /// Fail the operation whose log line starts with this.
    pub fail_on: Option<String>,
    /// What a sysctl nobody wrote reads as.
    pub sysctl_value: String,
    /// Sysctls written, by key as sysctl(8) names it.
    pub sysctls: BTreeMap<String, String>,
    pub prefixes: Vec<HostPrefix>,
    /// Whether berth's nftables table exists.
    pub nft_table: bool,
    /// What `foreign_forward_drops` answers.
    pub forward_drops: Vec<String>,
    /// Links `iface_routes` knows, with their routes.
    pub ifaces: Vec<(String, IfaceRoutes)>,
    /// Sockets `host_port_in_use` sees.
    pub listeners: Vec<(Ipv4Addr, u16)>,
    /// Every link of every namespace.
    pub links: Vec<FakeLink>,
    /// IPv4 addresses, with the namespace of their link (None: the host).
    pub addrs: Vec<(Option<PathBuf>, AddrFact)>,
    /// Default gateways, with their namespace (None: the host).
    pub default_routes: Vec<(Option<PathBuf>, Ipv4Addr)>,
    /// IPv6 addresses, with the namespace of their link (None: the host).
    pub addrs6: Vec<(Option<PathBuf>, IpAddrFact)>,
    /// IPv6 default gateways, with their namespace (None: the host).
    pub default_routes6: Vec<(Option<PathBuf>, Ipv6Addr)>,
    /// The nf_tables generation: bumped by every batch applied.
    pub nft_gen: u32,
    /// What `nft_fingerprint` answers.
    pub nft_chains: Option<NftFingerprint>,
    /// What `nft_list_elements` answers: map name and element.
    pub nft_elements: Vec<(String, Element)>,
    /// berth's `bridge` table (anti-spoofing): its chains with their rule
    /// counts, None when it does not exist.
    pub guard_chains: Option<NftFingerprint>,
    /// The elements of its sets: set name and element.
    pub guard_elements: Vec<(String, Element)>,
    /// Network namespaces: a file that refers to one, and its inode.
    /// `create_netns` adds `/run/netns/NAME`.
    pub namespaces: Vec<(PathBuf, u64)>,
    /// Running processes: PID and start time.
    pub processes: Vec<(u32, u64)>,
    /// What `host_identity` answers.
    pub host_id: String,
    /// The inode of berth's own namespace.
    pub own_inode: u64,
    /// Traffic control, by link index: `tbf RATE` (the root qdisc) and
    /// `redirect IFNAME` (the ingress filter). They go with their link.
    pub tc: Vec<(u32, String)>,
}

impl Default for FakeKernel {
    fn default() -> FakeKernel {
        FakeKernel {
            log: Vec::new(),
            fail_on: None,
            sysctl_value: String::new(),
            sysctls: BTreeMap::new(),
            prefixes: Vec::new(),
            nft_table: false,
            forward_drops: Vec::new(),
            ifaces: Vec::new(),
            listeners: Vec::new(),
            links: Vec::new(),
            addrs: Vec::new(),
            default_routes: Vec::new(),
            addrs6: Vec::new(),
            default_routes6: Vec::new(),
            nft_gen: 1,
            nft_chains: None,
            nft_elements: Vec::new(),
            guard_chains: None,
            guard_elements: Vec::new(),
            namespaces: Vec::new(),
            processes: Vec::new(),
            host_id: "fake-boot/cookie:1".into(),
            // What the first network namespace of a boot usually gets.
            own_inode: 4026531840,
            tc: Vec::new(),
        }
    }
}

fn errno(what: impl Into<String>, errno: i32) -> Error {
    Error::kernel(what, std::io::Error::from_raw_os_error(errno))
}

impl FakeKernel {
    /// One change of the `bridge` table, kept as the kernel would: it
    /// exists from its `add table` to its `delete table`, with its chains'
    /// rule counts and its sets' elements.
    fn guard_op(&mut self, op: &berth_nft::Op) {
        use berth_nft::{ElemOp, Op};
        match op {
            Op::AddTable(_) => {
                self.guard_chains.get_or_insert_with(Default::default);
            }
            Op::DeleteTable(_) | Op::DestroyTable(_) => {
                self.guard_chains = None;
                self.guard_elements.clear();
            }
            Op::AddChain(c) => {
                if let Some(chains) = &mut self.guard_chains {
                    chains.entry(c.name.clone()).or_insert(0);
                }
            }
            Op::AddRule { chain, .. } => {
                if let Some(n) = self
                    .guard_chains
                    .as_mut()
                    .and_then(|c| c.get_mut(&chain.name))
                {
                    *n += 1;
                }
            }
            Op::Elements { set, elems, op } => {
                for e in elems {
                    self.guard_elements
                        .retain(|(s, have)| !(s == &set.name && have == e));
                    if matches!(op, ElemOp::Add | ElemOp::Create) {
                        self.guard_elements.push((set.name.clone(), e.clone()));
                    }
                }
            }
            _ => {}
        }
    }

    fn op(&mut self, line: String) -> Result<()> {
        let fail = self
            .fail_on
            .as_ref()
            .is_some_and(|f| line.starts_with(f.as_str()));
        self.log.push(line);
        if fail {
            return Err(Error::kernel("fake", std::io::Error::from_raw_os_error(17)));
        }
        Ok(())
    }

    /// Adds a network namespace reachable at `path` (a container's, made
    /// by someone else); returns its inode.
    pub fn add_namespace(&mut self, path: impl Into<PathBuf>) -> u64 {
        // Fresh inodes count up from where this boot's first ones would.
        let inode = self
            .namespaces
            .iter()
            .map(|(_, i)| i + 1)
            .max()
            .unwrap_or(4026532000);
        let path = path.into();
        self.namespaces.push((path.clone(), inode));
        self.insert_link(Some(path), "lo", "", 0, None);
        inode
    }

    /// Adds a link to the host namespace, as if someone else made it.
    pub fn add_host_link(&mut self, name: &str, kind: &str, group: u32) -> u32 {
        self.insert_link(None, name, kind, group, None)
    }

    /// The link called `name` in `netns` (None: the host).
    pub fn link_in(&self, netns: Option<&Path>, name: &str) -> Option<&FakeLink> {
        self.links
            .iter()
            .find(|l| l.fact.name == name && l.netns.as_deref() == netns)
    }

    fn link_mut(&mut self, netns: Option<&Path>, name: &str) -> Option<&mut FakeLink> {
        self.links
            .iter_mut()
            .find(|l| l.fact.name == name && l.netns.as_deref() == netns)
    }

    fn host_index(&self, name: &str) -> Result<u32> {
        self.link_in(None, name)
            .map(|l| l.fact.index)
            .ok_or_else(|| errno(format!("looking up link {name}"), libc::ENODEV))
    }

    fn insert_link(
        &mut self,
        netns: Option<PathBuf>,
        name: &str,
        kind: &str,
        group: u32,
        mac: Option<Mac>,
    ) -> u32 {
        // Above every index in use (1 is the host's `lo`): unlike the real
        // kernel, the fake may reuse the index of the newest link deleted.
        let index = self
            .links
            .iter()
            .map(|l| l.fact.index + 1)
            .max()
            .unwrap_or(2);
        self.links.push(FakeLink {
            fact: LinkFact {
                name: name.into(),
                index,
                group,
                kind: kind.into(),
                master: None,
                up: false,
                mac,
            },
            netns,
            peer: None,
        });
        index
    }

    /// Removes every host link in `group` (as `ip link del group`).
    fn remove_group(&mut self, group: u32) {
        let doomed = self
            .links
            .iter()
            .filter(|l| l.netns.is_none() && l.fact.group == group)
            .map(|l| l.fact.index)
            .collect();
        self.remove_links(doomed);
    }

    /// Removes the links with these indices, their veth peers, their
    /// addresses and their bridge ports' master.
    fn remove_links(&mut self, doomed: Vec<u32>) {
        let mut doomed = doomed;
        for l in &self.links {
            if doomed.contains(&l.fact.index) {
                if let Some(peer) = l.peer {
                    doomed.push(peer);
                }
            }
        }
        self.links.retain(|l| !doomed.contains(&l.fact.index));
        self.addrs.retain(|(_, a)| !doomed.contains(&a.index));
        self.tc.retain(|(i, _)| !doomed.contains(i));
        for l in &mut self.links {
            if l.fact.master.is_some_and(|m| doomed.contains(&m)) {
                l.fact.master = None;
            }
        }
    }

    /// What a link brought down takes along in its namespace: the default
    /// routes through its subnets.
    fn drop_routes_via(&mut self, netns: &Path, index: u32) {
        let within = |gw: IpAddr, ip: IpAddr, len: u8| match (gw, ip) {
            (IpAddr::V4(g), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                u32::from(g) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(g), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                u128::from(g) & mask == u128::from(a) & mask
            }
            _ => false,
        };
        let mine: Vec<(IpAddr, u8)> = self
            .addrs
            .iter()
            .filter(|(n, a)| n.as_deref() == Some(netns) && a.index == index)
            .map(|(_, a)| (IpAddr::V4(a.ip), a.prefix_len))
            .chain(
                self.addrs6
                    .iter()
                    .filter(|(n, a)| n.as_deref() == Some(netns) && a.index == index)
                    .map(|(_, a)| (a.ip, a.prefix_len)),
            )
            .collect();
        let via_it = |gw: IpAddr| mine.iter().any(|(ip, len)| within(gw, *ip, *len));
        self.default_routes
            .retain(|(n, g)| n.as_deref() != Some(netns) || !via_it(IpAddr::V4(*g)));
        self.default_routes6
            .retain(|(n, g)| n.as_deref() != Some(netns) || !via_it(IpAddr::V6(*g)));
    }

    fn namespace_exists(&self, path: &Path) -> bool {
        self.namespaces.iter().any(|(p, _)| p == path)
    }

    /// The namespace's one default route of `gateway`'s family.
    fn set_default(&mut self, netns: Option<&Path>, gateway: IpAddr) {
        match gateway {
            IpAddr::V4(g) => {
                self.default_routes.retain(|(n, _)| n.as_deref() != netns);
                self.default_routes.push((netns.map(Path::to_path_buf), g));
            }
            IpAddr::V6(g) => {
                self.default_routes6.retain(|(n, _)| n.as_deref() != netns);
                self.default_routes6.push((netns.map(Path::to_path_buf), g));
            }
        }
    }

    /// A default route of `gateway`'s family beside the others.
    fn push_default(&mut self, netns: Option<&Path>, gateway: IpAddr) {
        let n = netns.map(Path::to_path_buf);
        match gateway {
            IpAddr::V4(g) => self.default_routes.push((n, g)),
            IpAddr::V6(g) => self.default_routes6.push((n, g)),
        }
    }

    /// Records an address of either family on link `index` of `netns`;
    /// false when it is there already.
    fn push_addr(&mut self, netns: Option<&Path>, index: u32, ip: IpAddr, prefix_len: u8) -> bool {
        let n = netns.map(Path::to_path_buf);
        match ip {
            IpAddr::V4(ip) => {
                let a = AddrFact {
                    index,
                    ip,
                    prefix_len,
                };
                if self.addrs.iter().any(|(m, b)| *m == n && *b == a) {
                    return false;
                }
                self.addrs.push((n, a));
            }
            IpAddr::V6(_) => {
                let a = IpAddrFact {
                    index,
                    ip,
                    prefix_len,
                };
                if self.addrs6.iter().any(|(m, b)| *m == n && *b == a) {
                    return false;
                }
                self.addrs6.push((n, a));
            }
        }
        true
    }
}

impl FakeKernel {
    /// The traffic control of the host link `name`, sorted.
    pub fn tc_of(&self, name: &str) -> Vec<String> {
        let Some(index) = self.link_in(None, name).map(|l| l.fact.index) else {
            return Vec::new();
        };
        let mut out: Vec<String> = self
            .tc
            .iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, t)| t.clone())
            .collect();
        out.sort();
        out
    }

    fn set_tc(&mut self, index: u32, kind: &str, value: String) {
        self.tc
            .retain(|(i, t)| !(*i == index && t.starts_with(kind)));
        self.tc.push((index, format!("{kind} {value}")));
    }
}

impl Kernel for FakeKernel {
    fn create_bridge(&mut self, name: &str, mtu: u32, mac: Mac, group: u32) -> Result<()> {
        self.op(format!("create_bridge {name} {mtu} group {group:#x}"))?;
        if self.link_in(None, name).is_some() {
            return Err(errno(format!("creating bridge {name}"), libc::EEXIST));
        }
        let index = self.insert_link(None, name, "bridge", group, Some(mac));
        if let Some(l) = self.links.iter_mut().find(|l| l.fact.index == index) {
            l.fact.up = true;
        }
        Ok(())
    }
    fn links(&mut self) -> Result<Vec<LinkFact>> {
        Ok(self
            .links
            .iter()
            .filter(|l| l.netns.is_none())
            .map(|l| l.fact.clone())
            .collect())
    }
    fn link_up(&mut self, name: &str) -> Result<()> {
        self.op(format!("link_up {name}"))?;
        self.host_index(name)?;
        if let Some(l) = self.link_mut(None, name) {
            l.fact.up = true;
        }
        Ok(())
    }
    fn link_exists_in(&mut self, netns: &Path, name: &str) -> Result<bool> {
        Ok(self.link_in(Some(netns), name).is_some())
    }
    fn set_default_route(&mut self, netns: &Path, gateway: IpAddr) -> Result<()> {
        self.op(format!("set_default_route {} {gateway}", netns.display()))?;
        self.set_default(Some(netns), gateway);
        Ok(())
    }
    fn set_master(&mut self, ifname: &str, bridge: &str) -> Result<()> {
        self.op(format!("set_master {ifname} {bridge}"))?;
        self.host_index(ifname)?;
        let master = self.host_index(bridge)?;
        if let Some(l) = self.link_mut(None, ifname) {
            l.fact.master = Some(master);
        }
        Ok(())
    }
    fn nft_generation(&mut self) -> Result<u32> {
        Ok(self.nft_gen)
    }
    fn nft_fingerprint(&mut self, table: &Table) -> Result<Option<NftFingerprint>> {
        Ok(match table.family {
            berth_nft::Family::Bridge => self.guard_chains.clone(),
            _ => self.nft_chains.clone(),
        })
    }
    fn netns_inode(&mut self, path: &Path) -> Option<u64> {
        self.namespaces
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, i)| *i)
    }
    fn add_address(&mut self, ifname: &str, ip: IpAddr, subnet: IpNet) -> Result<()> {
        self.op(format!("add_address {ifname} {ip}/{}", subnet.prefix_len()))?;
        let index = self.host_index(ifname)?;
        if !self.push_addr(None, index, ip, subnet.prefix_len()) {
            return Err(errno(format!("adding {ip} to {ifname}"), libc::EEXIST));
        }
        Ok(())
    }
    fn delete_link(&mut self, name: &str) -> Result<bool> {
        self.op(format!("delete_link {name}"))?;
        let Some(index) = self.link_in(None, name).map(|l| l.fact.index) else {
            return Ok(false);
        };
        self.remove_links(vec![index]);
        Ok(true)
    }
    fn delete_link_group(&mut self, group: u32) -> Result<()> {
        self.op(format!("delete_link_group {group}"))?;
        self.remove_group(group);
        Ok(())
    }
    fn delete_links_together(&mut self, names: &[String]) -> Result<usize> {
        self.op(format!("delete_links_together {}", names.join(" ")))?;
        let group = crate::model::names::DOOMED_GROUP;
        let mut count = 0;
        for name in names {
            if let Some(l) = self.link_mut(None, name) {
                l.fact.group = group;
                count += 1;
            }
        }
        // The whole group goes: what waited there (pending links) too.
        if count > 0 {
            self.remove_group(group);
        }
        Ok(count)
    }
    fn take_out(&mut self, out: &TakeOut) -> Result<bool> {
        use crate::model::names::PENDING_GROUP;
        let netns = out.netns.as_deref();
        let place = netns
            .map(|n| format!(" in {}", n.display()))
            .unwrap_or_default();
        self.op(format!("take_out {}{place} as {}", out.name, out.pending))?;
        if netns.is_some_and(|n| !self.namespace_exists(n)) {
            return Ok(false);
        }
        // A name taken by an earlier pending link: the group goes first,
        // as the live kernel does it.
        if self.link_in(netns, &out.pending).is_some() {
            self.delete_link_group(PENDING_GROUP)?;
        }
        let Some(index) = self.link_in(netns, &out.name).map(|l| l.fact.index) else {
            return Ok(false);
        };
        if let Some(l) = self.link_mut(netns, &out.name) {
            l.fact.name = out.pending.clone();
            l.fact.up = false;
            l.fact.master = None;
            if netns.is_none() {
                l.fact.group = PENDING_GROUP;
            }
        }
        // Down, a link's routes go (a default route through it too).
        if let Some(netns) = netns {
            self.drop_routes_via(netns, index);
        }
        Ok(true)
    }
    fn link_exists(&mut self, name: &str) -> Result<bool> {
        self.op(format!("link_exists {name}"))?;
        Ok(self.link_in(None, name).is_some())
    }
    fn link_group(&mut self, name: &str) -> Result<Option<u32>> {
        Ok(self.link_in(None, name).map(|l| l.fact.group))
    }
    fn create_veth(&mut self, pair: &VethPair) -> Result<()> {
        self.op(format!("create_veth {} {}", pair.host_ifname, pair.ifname))?;
        let what = format!("creating veth {}", pair.host_ifname);
        let bridge = self.host_index(&pair.bridge)?;
        if !self.namespace_exists(&pair.netns) {
            return Err(errno(what, libc::ENOENT));
        }
        if self.link_in(None, &pair.host_ifname).is_some()
            || self.link_in(Some(&pair.netns), &pair.ifname).is_some()
        {
            return Err(errno(what, libc::EEXIST));
        }
        let host = self.insert_link(None, &pair.host_ifname, "veth", pair.link_group, None);
        let peer = self.insert_link(
            Some(pair.netns.clone()),
            &pair.ifname,
            "veth",
            0,
            Some(pair.mac),
        );
        for l in &mut self.links {
            if l.fact.index == host {
                l.fact.master = Some(bridge);
                l.fact.up = true;
                l.peer = Some(peer);
            } else if l.fact.index == peer {
                l.peer = Some(host);
            }
        }
        Ok(())
    }
    fn create_child(&mut self, child: &ChildLink) -> Result<()> {
        self.op(format!(
            "create_child {} {}",
            child.driver.name(),
            child.temp_name
        ))?;
        let what = format!("creating {}", child.temp_name);
        self.host_index(child.driver.parent().unwrap_or_default())?;
        if !self.namespace_exists(&child.netns) {
            return Err(errno(what, libc::ENOENT));
        }
        if self.link_in(Some(&child.netns), &child.temp_name).is_some() {
            return Err(errno(what, libc::EEXIST));
        }
        self.insert_link(
            Some(child.netns.clone()),
            &child.temp_name,
            child.driver.name(),
            child.group,
            child.mac,
        );
        Ok(())
    }
    fn delete_child(&mut self, netns: &Path, names: &[String], group: u32) -> Result<bool> {
        self.op(format!(
            "delete_child {} {}",
            netns.display(),
            names.join(" ")
        ))?;
        let found = names.iter().find_map(|n| {
            self.link_in(Some(netns), n)
                .filter(|l| l.fact.group == group)
                .map(|l| l.fact.index)
        });
        match found {
            Some(index) => {
                self.remove_links(vec![index]);
                Ok(true)
            }
            None => Ok(false),
        }
    }
    fn configure_inside(&mut self, netns: &Path, config: &InsideConfig) -> Result<()> {
        self.op(format!(
            "configure_inside {} {:?} {:?}",
            netns.display(),
            config
                .addresses
                .iter()
                .map(|(ip, _)| *ip)
                .collect::<Vec<_>>(),
            config.default_via
        ))?;
        let what = format!("configuring {} in {}", config.ifname, netns.display());
        if !self.namespace_exists(netns) {
            return Err(errno(what, libc::ENOENT));
        }
        if let Some(from) = &config.rename_from {
            if self.link_in(Some(netns), &config.ifname).is_some() {
                return Err(errno(what, libc::EEXIST));
            }
            let Some(l) = self.link_mut(Some(netns), from) else {
                return Err(errno(what, libc::ENODEV));
            };
            l.fact.name = config.ifname.clone();
        }
        let Some(index) = self
            .link_in(Some(netns), &config.ifname)
            .map(|l| l.fact.index)
        else {
            return Err(errno(what, libc::ENODEV));
        };
        for l in &mut self.links {
            if l.netns.as_deref() == Some(netns) && (l.fact.index == index || l.fact.name == "lo") {
                l.fact.up = true;
            }
        }
        for (ip, subnet) in &config.addresses {
            self.push_addr(Some(netns), index, *ip, subnet.prefix_len());
        }
        for gateway in &config.default_via {
            match config.metric {
                None => self.set_default(Some(netns), *gateway),
                // A route of the endpoint's own, beside the others.
                Some(_) => self.push_default(Some(netns), *gateway),
            }
        }
        Ok(())
    }
    fn loopback_up(&mut self, netns: &Path) -> Result<()> {
        self.op(format!("loopback_up {}", netns.display()))?;
        match self.link_mut(Some(netns), "lo") {
            Some(lo) => {
                lo.fact.up = true;
                Ok(())
            }
            None => Err(errno(
                format!("bringing lo up in {}", netns.display()),
                libc::ENOENT,
            )),
        }
    }
    fn read_sysctl(&mut self, key: &super::sysctl::Key) -> Result<String> {
        self.op(format!("read_sysctl {key}"))?;
        Ok(self
            .sysctls
            .get(&key.to_string())
            .cloned()
            .unwrap_or_else(|| self.sysctl_value.clone()))
    }
    fn write_sysctl(&mut self, key: &super::sysctl::Key, value: &str) -> Result<()> {
        self.op(format!("write_sysctl {key}={value}"))?;
        self.sysctls.insert(key.to_string(), value.to_string());
        Ok(())
    }
    fn host_prefixes(&mut self) -> Result<Vec<HostPrefix>> {
        Ok(self.prefixes.clone())
    }
    fn create_netns(&mut self, name: &str) -> Result<()> {
        self.op(format!("create_netns {name}"))?;
        let path = super::netns::named_path(name);
        if self.namespace_exists(&path) {
            return Err(errno(
                format!("creating namespace {}", path.display()),
                libc::EEXIST,
            ));
        }
        self.add_namespace(path);
        Ok(())
    }
    fn delete_netns(&mut self, name: &str) -> Result<bool> {
        self.op(format!("delete_netns {name}"))?;
        let path = super::netns::named_path(name);
        if !self.namespace_exists(&path) {
            return Ok(false);
        }
        self.namespaces.retain(|(p, _)| *p != path);
        // The namespace's devices go with it, and so the host ends of its
        // veth pairs.
        let doomed = self
            .links
            .iter()
            .filter(|l| l.netns.as_deref() == Some(path.as_path()))
            .map(|l| l.fact.index)
            .collect();
        self.remove_links(doomed);
        self.default_routes
            .retain(|(n, _)| n.as_deref() != Some(path.as_path()));
        self.default_routes6
            .retain(|(n, _)| n.as_deref() != Some(path.as_path()));
        Ok(true)
    }
    fn set_bridge_netfilter(&mut self, bridge: &str, on: bool, ipv6: bool) -> Result<()> {
        let six = if ipv6 { " ipv6" } else { "" };
        self.op(format!("set_bridge_netfilter {bridge} {on}{six}"))?;
        self.host_index(bridge).map(drop)
    }
    fn nft_apply(&mut self, batch: &Batch) -> Result<()> {
        self.op(format!("nft {}", batch.render().join("; ")))?;
        self.nft_gen += 1;
        // berth's tables as the kernel would keep them: their chains with
        // their rule counts (what the preflight fingerprints) and the
        // elements of their sets and maps (what CNI CHECK lists).
        use berth_nft::{ElemOp, Family, Op};
        for op in batch.ops() {
            let family = match op {
                Op::AddTable(t) | Op::DeleteTable(t) | Op::DestroyTable(t) => t.family,
                Op::AddChain(c)
                | Op::DeleteChain(c)
                | Op::DestroyChain(c)
                | Op::FlushChain(c)
                | Op::AddRule { chain: c, .. }
                | Op::DeleteRule { chain: c, .. } => c.table.family,
                Op::AddSet(s)
                | Op::DeleteSet(s)
                | Op::DestroySet(s)
                | Op::FlushSet(s)
                | Op::Elements { set: s, .. } => s.table.family,
            };
            if family == Family::Bridge {
                self.guard_op(op);
                continue;
            }
            let chains = self.nft_chains.get_or_insert_with(Default::default);
            match op {
                Op::AddTable(_) => self.nft_table = true,
                Op::DeleteTable(_) | Op::DestroyTable(_) => {
                    self.nft_table = false;
                    self.nft_chains = None;
                    self.nft_elements.clear();
                }
                Op::AddChain(c) => {
                    chains.entry(c.name.clone()).or_insert(0);
                }
                Op::DeleteChain(c) | Op::DestroyChain(c) => {
                    chains.remove(&c.name);
                }
                Op::FlushChain(c) => {
                    chains.insert(c.name.clone(), 0);
                }
                Op::AddRule { chain, .. } => *chains.entry(chain.name.clone()).or_insert(0) += 1,
                Op::DeleteRule { chain, .. } => {
                    if let Some(n) = chains.get_mut(&chain.name) {
                        *n = n.saturating_sub(1);
                    }
                }
                Op::Elements { set, elems, op } => {
                    for e in elems {
                        self.nft_elements
                            .retain(|(m, have)| !(m == &set.name && have == e));
                        if matches!(op, ElemOp::Add | ElemOp::Create) {
                            self.nft_elements.push((set.name.clone(), e.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
        if !self.nft_table {
            self.nft_chains = None;
        }
        Ok(())
    }
    fn nft_table_exists(&mut self, table: &Table) -> Result<bool> {
        Ok(match table.family {
            berth_nft::Family::Bridge => self.guard_chains.is_some(),
            _ => self.nft_table,
        })
    }
    fn nft_list_elements(&mut self, table: &Table, name: &str) -> Result<Vec<Element>> {
        let elements = match table.family {
            berth_nft::Family::Bridge => &self.guard_elements,
            _ => &self.nft_elements,
        };
        Ok(elements
            .iter()
            .filter(|(map, _)| map == name)
            .map(|(_, e)| e.clone())
            .collect())
    }
    fn foreign_forward_drops(&mut self, _ours: &Table) -> Result<Vec<String>> {
        Ok(self.forward_drops.clone())
    }
    fn iface_routes(&mut self, ifname: &str) -> Result<Option<IfaceRoutes>> {
        Ok(self
            .ifaces
            .iter()
            .find(|(n, _)| n == ifname)
            .map(|(_, r)| r.clone()))
    }
    fn add_table_default(&mut self, table: u32, gateway: Ipv4Addr, ifname: &str) -> Result<()> {
        self.op(format!("add_table_default {table} {gateway} {ifname}"))
    }
    fn delete_table_default(&mut self, table: u32) -> Result<bool> {
        self.op(format!("delete_table_default {table}"))
            .map(|_| true)
    }
    fn add_source_rule(
        &mut self,
        subnet: Ipv4Net,
        iif: &str,
        table: u32,
        priority: u32,
    ) -> Result<()> {
        self.op(format!("add_source_rule {subnet} {iif} {table} {priority}"))
    }
    fn delete_source_rule(
        &mut self,
        subnet: Ipv4Net,
        iif: &str,
        table: u32,
        priority: u32,
    ) -> Result<bool> {
        self.op(format!(
            "delete_source_rule {subnet} {iif} {table} {priority}"
        ))
        .map(|_| true)
    }
    fn set_hairpin(&mut self, ifname: &str, on: bool) -> Result<()> {
        self.op(format!("set_hairpin {ifname} {on}"))?;
        self.host_index(ifname).map(drop)
    }
    fn conntrack_flush(
        &mut self,
        proto: Proto,
        family: crate::model::Family,
        dst: Option<IpAddr>,
        port: u16,
    ) -> Result<usize> {
        let dst = dst.map_or(format!("any {}", family.name()), |d| d.to_string());
        self.op(format!("conntrack_flush {proto} {dst} {port}"))
            .map(|_| 0)
    }
    fn is_local_address(&mut self, ip: IpAddr) -> bool {
        ip.is_loopback()
            || self.prefixes.iter().any(|p| p.net.contains(&ip))
            || self
                .addrs
                .iter()
                .any(|(n, a)| n.is_none() && IpAddr::V4(a.ip) == ip)
            || self.addrs6.iter().any(|(n, a)| n.is_none() && a.ip == ip)
    }
    fn port_holder_process(&mut self, _proto: Proto, _port: u16) -> Option<String> {
        None
    }
    fn host_port_in_use(&mut self, _proto: Proto, ip: IpAddr, port: u16) -> bool {
        self.listeners.iter().any(|(i, p)| {
            *p == port && (i.is_unspecified() || ip.is_unspecified() || IpAddr::V4(*i) == ip)
        })
    }
    fn host_identity(&self) -> String {
        self.host_id.clone()
    }
    fn parse_target(&self, text: &str) -> Result<Target> {
        let mut target = Target::locate(text)?;
        target.inode = self
            .namespaces
            .iter()
            .find(|(p, _)| *p == target.path)
            .map(|(_, i)| *i);
        Ok(target)
    }
    fn resolve_target(&self, text: &str) -> Result<Target> {
        self.parse_target(text)?.existing(text)
    }
    fn own_netns_inode(&self) -> Option<u64> {
        Some(self.own_inode)
    }
    fn process_alive(&self, pid: u32, start: u64) -> bool {
        self.processes.contains(&(pid, start))
    }
    fn process_start_time(&self, pid: u32) -> Option<u64> {
        self.processes
            .iter()
            .find(|(p, _)| *p == pid)
            .map(|(_, s)| *s)
    }
    fn netns_facts(&mut self, netns: Option<&Path>) -> Result<NetnsFacts> {
        if let Some(path) = netns {
            if !self.namespace_exists(path) {
                return Err(errno(
                    format!("reading namespace {}", path.display()),
                    libc::ENOENT,
                ));
            }
        }
        Ok(NetnsFacts {
            links: self
                .links
                .iter()
                .filter(|l| l.netns.as_deref() == netns)
                .map(|l| l.fact.clone())
                .collect(),
            addrs: self
                .addrs
                .iter()
                .filter(|(n, _)| n.as_deref() == netns)
                .map(|(_, a)| *a)
                .collect(),
            default_gateways: self
                .default_routes
                .iter()
                .filter(|(n, _)| n.as_deref() == netns)
                .map(|(_, g)| *g)
                .collect(),
            addrs6: self
                .addrs6
                .iter()
                .filter(|(n, _)| n.as_deref() == netns)
                .map(|(_, a)| *a)
                .collect(),
            default_gateways6: self
                .default_routes6
                .iter()
                .filter(|(n, _)| n.as_deref() == netns)
                .map(|(_, g)| *g)
                .collect(),
        })
    }
    fn link_mac(&mut self, name: &str) -> Result<Option<Mac>> {
        Ok(self.link_in(None, name).and_then(|l| l.fact.mac))
    }
    fn create_ifb(&mut self, name: &str, _mtu: u32, group: u32) -> Result<()> {
        self.op(format!("create_ifb {name} group {group:#x}"))?;
        if self.link_in(None, name).is_some() {
            return Err(errno(format!("creating ifb {name}"), libc::EEXIST));
        }
        let index = self.insert_link(None, name, "ifb", group, None);
        if let Some(l) = self.links.iter_mut().find(|l| l.fact.index == index) {
            l.fact.up = true;
        }
        Ok(())
    }
    fn shape_egress(&mut self, ifname: &str, limit: &crate::model::Limit) -> Result<()> {
        let rate = crate::model::bandwidth::format_rate(limit.rate);
        self.op(format!("shape_egress {ifname} {rate}"))?;
        let index = self.host_index(ifname)?;
        self.set_tc(index, "tbf", rate);
        Ok(())
    }
    fn redirect_ingress(&mut self, ifname: &str, to: &str) -> Result<()> {
        self.op(format!("redirect_ingress {ifname} {to}"))?;
        let index = self.host_index(ifname)?;
        self.host_index(to)?;
        self.set_tc(index, "redirect", to.to_string());
        Ok(())
    }

    fn netns_details(&mut self, _netns: Option<&Path>) -> Result<crate::kernel::NetnsDetails> {
        Ok(Default::default())
    }

    fn filter_chains(&mut self) -> Result<Vec<crate::kernel::FilterChain>> {
        Ok(Vec::new())
    }

    fn named_netns(&self) -> Vec<String> {
        Vec::new()
    }

    fn dns_answers(&self, _server: IpAddr, _port: u16) -> bool {
        false
    }

    /// Local addresses first, then connected prefixes, then the default
    /// route: the main table as the kernel fills it from addresses.
    fn route_get(
        &mut self,
        netns: Option<&Path>,
        dst: IpAddr,
        src: Option<IpAddr>,
    ) -> Result<super::RouteHop> {
        // The fake holds IPv4 addresses and routes only.
        let IpAddr::V4(dst) = dst else {
            return Ok(super::RouteHop::unreachable());
        };
        let src = src.and_then(|s| match s {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        });
        let addrs: Vec<AddrFact> = self
            .addrs
            .iter()
            .filter(|(n, _)| n.as_deref() == netns)
            .map(|(_, a)| *a)
            .collect();
        let name = |index: u32| {
            self.links
                .iter()
                .find(|l| l.netns.as_deref() == netns && l.fact.index == index)
                .map(|l| l.fact.name.clone())
        };
        let covering = |ip: Ipv4Addr| {
            addrs
                .iter()
                .find(|a| crate::model::subnet::v4_truncating(a.ip, a.prefix_len).contains(&ip))
                .copied()
        };
        let hop = |oif, gateway: Option<Ipv4Addr>, prefsrc: Option<Ipv4Addr>, table, kind: &str| {
            super::RouteHop {
                oif,
                gateway: gateway.map(IpAddr::V4),
                prefsrc: prefsrc.map(IpAddr::V4),
                table,
                kind: kind.into(),
            }
        };
        if addrs.iter().any(|a| a.ip == dst) {
            return Ok(hop(
                Some("lo".into()),
                None,
                src.or(Some(dst)),
                255,
                "local",
            ));
        }
        if let Some(a) = covering(dst) {
            return Ok(hop(name(a.index), None, Some(a.ip), 254, "unicast"));
        }
        let gateway = self
            .default_routes
            .iter()
            .find(|(n, _)| n.as_deref() == netns)
            .map(|(_, g)| *g);
        match gateway.and_then(|g| Some((g, covering(g)?))) {
            Some((g, a)) => Ok(hop(name(a.index), Some(g), Some(a.ip), 254, "unicast")),
            None => Ok(super::RouteHop::unreachable()),
        }
    }

    /// No packet moves in the fake: there is nothing to trace.
    fn nft_trace_live(
        &mut self,
        _plan: &super::nftrace::LivePlan,
    ) -> Result<super::nftrace::LiveCapture> {
        Err(crate::error::Error::Other(
            "live tracing needs the real kernel".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(host: &str, netns: &str) -> VethPair {
        VethPair {
            host_ifname: host.into(),
            bridge: "berth-web".into(),
            link_group: 0x6265_0001,
            netns: netns.into(),
            ifname: "eth0".into(),
            mac: Mac::from_ipv4(Ipv4Addr::new(10, 90, 0, 2)),
            mtu: 1500,
        }
    }

    fn with_bridge() -> FakeKernel {
        let mut k = FakeKernel::default();
        k.create_bridge("berth-web", 1500, Mac([2, 0x42, 10, 90, 0, 1]), 0x6265_0000)
            .unwrap();
        k
    }

    #[test]
    fn a_veth_joins_its_bridge_and_its_peer_is_born_in_the_namespace() {
        let mut k = with_bridge();
        k.create_netns("c1").unwrap();
        k.create_veth(&pair("vb1", "/run/netns/c1")).unwrap();
        let bridge = k.link_in(None, "berth-web").unwrap().fact.index;
        let host = k.link_in(None, "vb1").unwrap();
        assert_eq!(host.fact.master, Some(bridge));
        assert_eq!(host.fact.group, 0x6265_0001);
        assert!(host.fact.up);
        assert!(k
            .link_exists_in(Path::new("/run/netns/c1"), "eth0")
            .unwrap());
        assert!(!k.link_exists_in(Path::new("/run/netns/c1"), "vb1").unwrap());
        assert_eq!(k.link_group("vb1").unwrap(), Some(0x6265_0001));
        let names: Vec<String> = k.links().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["berth-web", "vb1"], "links() is the host's");
    }

    #[test]
    fn a_veth_needs_its_bridge_and_namespace_and_a_free_name() {
        let mut k = FakeKernel::default();
        k.add_namespace("/run/netns/c1");
        let err = k.create_veth(&pair("vb1", "/run/netns/c1")).unwrap_err();
        assert!(err.to_string().contains("No such device"), "{err}");
        let mut k = with_bridge();
        assert!(k.create_veth(&pair("vb1", "/run/netns/gone")).is_err());
        k.add_namespace("/run/netns/c1");
        k.create_veth(&pair("vb1", "/run/netns/c1")).unwrap();
        let err = k.create_veth(&pair("vb1", "/run/netns/c1")).unwrap_err();
        assert!(err.to_string().contains("File exists"), "{err}");
    }

    #[test]
    fn a_veth_pair_dies_together_and_with_its_namespace() {
        let mut k = with_bridge();
        k.create_netns("c1").unwrap();
        k.create_netns("c2").unwrap();
        k.create_veth(&pair("vb1", "/run/netns/c1")).unwrap();
        k.create_veth(&pair("vb2", "/run/netns/c2")).unwrap();
        assert!(k.delete_link("vb1").unwrap());
        assert!(!k
            .link_exists_in(Path::new("/run/netns/c1"), "eth0")
            .unwrap());
        assert!(!k.delete_link("vb1").unwrap(), "gone already");
        assert!(k.delete_netns("c2").unwrap());
        assert!(!k.link_exists("vb2").unwrap(), "the host end went with c2");
        assert!(!k.delete_netns("c2").unwrap());
        assert_eq!(k.netns_inode(Path::new("/run/netns/c2")), None);
    }

    #[test]
    fn groups_and_lists_of_links_go_in_one_request() {
        let mut k = with_bridge();
        for (i, name) in ["vb1", "vb2", "vb3"].iter().enumerate() {
            let ns = format!("/run/netns/c{i}");
            k.add_namespace(&ns);
            k.create_veth(&pair(name, &ns)).unwrap();
        }
        let doomed = ["vb1".to_string(), "vb3".into(), "vb9".into()];
        assert_eq!(k.delete_links_together(&doomed).unwrap(), 2);
        assert!(k.link_exists("vb2").unwrap());
        k.delete_link_group(0x6265_0001).unwrap();
        assert!(!k.link_exists("vb2").unwrap());
        assert!(k.link_exists("berth-web").unwrap(), "another group");
    }

    #[test]
    fn a_deleted_bridge_leaves_its_ports_without_a_master() {
        let mut k = with_bridge();
        k.add_namespace("/run/netns/c1");
        k.create_veth(&pair("vb1", "/run/netns/c1")).unwrap();
        k.delete_link("berth-web").unwrap();
        assert_eq!(k.link_in(None, "vb1").unwrap().fact.master, None);
        assert!(k.set_master("vb1", "berth-web").is_err());
    }

    #[test]
    fn targets_resolve_against_the_namespaces_it_has() {
        let mut k = FakeKernel::default();
        let err = k.resolve_target("c1").unwrap_err();
        assert!(
            err.to_string().contains("is not a network namespace"),
            "{err}"
        );
        assert_eq!(k.parse_target("c1").unwrap().inode, None);
        k.create_netns("c1").unwrap();
        let t = k.resolve_target("c1").unwrap();
        assert_eq!(t.key, "c1");
        assert_eq!(t.path, Path::new("/run/netns/c1"));
        assert_eq!(t.inode, k.netns_inode(Path::new("/run/netns/c1")));
        assert!(k.create_netns("c1").is_err(), "exists already");
    }

    #[test]
    fn a_failure_it_is_told_to_inject_is_logged_and_changes_nothing() {
        let mut k = with_bridge();
        k.fail_on = Some("delete_link".into());
        assert!(k.delete_link("berth-web").is_err());
        assert!(k.link_exists("berth-web").unwrap());
        assert_eq!(
            k.log,
            [
                "create_bridge berth-web 1500 group 0x62650000",
                "delete_link berth-web",
                "link_exists berth-web"
            ]
        );
    }
}

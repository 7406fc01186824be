//! A recording stand-in for the kernel, for unit tests of plans and
//! commands: it logs each operation and can be told to fail one.

use std::net::Ipv4Addr;
use std::path::Path;

use super::{HostPrefix, IfaceRoutes, InsideConfig, Kernel, LinkFact, VethPair};
use crate::error::{Error, Result};
use crate::model::Ipv4Net;
use berth_nft::{Batch, Element, Table};

#[derive(Default)]
pub struct FakeKernel {
    pub log: Vec<String>,
    /// Fail the operation whose log line starts with this.
    pub fail_on: Option<String>,
    pub sysctl_value: String,
    pub prefixes: Vec<HostPrefix>,
    /// Whether berth's nftables table exists.
    pub nft_table: bool,
    /// What `foreign_forward_drops` answers.
    pub forward_drops: Vec<String>,
    /// Links `iface_routes` knows, with their routes.
    pub ifaces: Vec<(String, IfaceRoutes)>,
    /// Sockets `host_port_in_use` sees.
    pub listeners: Vec<(Ipv4Addr, u16)>,
    /// What `links` answers.
    pub links: Vec<LinkFact>,
    /// What `nft_generation` answers.
    pub nft_gen: u32,
    /// What `nft_fingerprint` answers.
    pub nft_chains: Option<super::NftFingerprint>,
    /// What `nft_list_elements` answers: map name and element.
    pub nft_elements: Vec<(String, Element)>,
    /// Namespaces `netns_inode` finds: path and inode.
    pub namespaces: Vec<(std::path::PathBuf, u64)>,
}

impl FakeKernel {
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
}

impl Kernel for FakeKernel {
    fn create_bridge(
        &mut self,
        name: &str,
        mtu: u32,
        _mac: crate::model::Mac,
        group: u32,
    ) -> Result<()> {
        self.op(format!("create_bridge {name} {mtu} group {group:#x}"))
    }
    fn links(&mut self) -> Result<Vec<LinkFact>> {
        Ok(self.links.clone())
    }
    fn link_up(&mut self, name: &str) -> Result<()> {
        self.op(format!("link_up {name}"))
    }
    fn link_exists_in(&mut self, _netns: &Path, _name: &str) -> Result<bool> {
        Ok(false)
    }
    fn set_default_route(&mut self, netns: &Path, gateway: Ipv4Addr) -> Result<()> {
        self.op(format!("set_default_route {} {gateway}", netns.display()))
    }
    fn set_master(&mut self, ifname: &str, bridge: &str) -> Result<()> {
        self.op(format!("set_master {ifname} {bridge}"))
    }
    fn nft_generation(&mut self) -> Result<u32> {
        Ok(self.nft_gen)
    }
    fn nft_fingerprint(&mut self, _table: &Table) -> Result<Option<super::NftFingerprint>> {
        Ok(self.nft_chains.clone())
    }
    fn netns_inode(&mut self, path: &Path) -> Option<u64> {
        self.namespaces
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, i)| *i)
    }
    fn add_address(&mut self, ifname: &str, ip: Ipv4Addr, subnet: Ipv4Net) -> Result<()> {
        self.op(format!("add_address {ifname} {ip}/{}", subnet.prefix_len()))
    }
    fn delete_link(&mut self, name: &str) -> Result<bool> {
        self.op(format!("delete_link {name}")).map(|_| true)
    }
    fn delete_link_group(&mut self, group: u32) -> Result<()> {
        self.op(format!("delete_link_group {group}"))
    }
    fn delete_links_together(&mut self, names: &[String]) -> Result<usize> {
        self.op(format!("delete_links_together {}", names.join(" ")))?;
        Ok(0)
    }
    fn link_exists(&mut self, name: &str) -> Result<bool> {
        self.op(format!("link_exists {name}")).map(|_| false)
    }
    fn link_group(&mut self, name: &str) -> Result<Option<u32>> {
        Ok(self.links.iter().find(|l| l.name == name).map(|l| l.group))
    }
    fn create_veth(&mut self, pair: &VethPair) -> Result<()> {
        self.op(format!("create_veth {} {}", pair.host_ifname, pair.ifname))
    }
    fn configure_inside(&mut self, netns: &Path, config: &InsideConfig) -> Result<()> {
        self.op(format!(
            "configure_inside {} {} {:?}",
            netns.display(),
            config.ip,
            config.default_via
        ))
    }
    fn loopback_up(&mut self, netns: &Path) -> Result<()> {
        self.op(format!("loopback_up {}", netns.display()))
    }
    fn read_sysctl(&mut self, key: &super::sysctl::Key) -> Result<String> {
        self.op(format!("read_sysctl {key}"))?;
        Ok(self.sysctl_value.clone())
    }
    fn write_sysctl(&mut self, key: &super::sysctl::Key, value: &str) -> Result<()> {
        self.op(format!("write_sysctl {key}={value}"))
    }
    fn host_prefixes(&mut self) -> Result<Vec<HostPrefix>> {
        Ok(self.prefixes.clone())
    }
    fn create_netns(&mut self, name: &str) -> Result<()> {
        self.op(format!("create_netns {name}"))
    }
    fn delete_netns(&mut self, name: &str) -> Result<bool> {
        self.op(format!("delete_netns {name}")).map(|_| true)
    }
    fn set_bridge_netfilter(&mut self, bridge: &str, on: bool) -> Result<()> {
        self.op(format!("set_bridge_netfilter {bridge} {on}"))
    }
    fn nft_apply(&mut self, batch: &Batch) -> Result<()> {
        self.op(format!("nft {}", batch.render().join("; ")))
    }
    fn nft_table_exists(&mut self, _table: &Table) -> Result<bool> {
        Ok(self.nft_table)
    }
    fn nft_list_elements(&mut self, _table: &Table, name: &str) -> Result<Vec<Element>> {
        Ok(self
            .nft_elements
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
        self.op(format!("set_hairpin {ifname} {on}"))
    }
    fn conntrack_flush(
        &mut self,
        proto: crate::model::Proto,
        dst: Option<Ipv4Addr>,
        port: u16,
    ) -> Result<usize> {
        let dst = dst.map_or("any".to_string(), |d| d.to_string());
        self.op(format!("conntrack_flush {proto} {dst} {port}"))
            .map(|_| 0)
    }
    fn is_local_address(&mut self, ip: Ipv4Addr) -> bool {
        ip.is_loopback() || self.prefixes.iter().any(|p| p.net.contains(ip))
    }
    fn port_holder_process(&mut self, _proto: crate::model::Proto, _port: u16) -> Option<String> {
        None
    }
    fn host_identity(&self) -> String {
        "fake-boot/cookie:1".into()
    }
    fn parse_target(&self, text: &str) -> Result<super::Target> {
        let mut target = super::Target::locate(text)?;
        target.inode = self
            .namespaces
            .iter()
            .find(|(p, _)| *p == target.path)
            .map(|(_, i)| *i);
        Ok(target)
    }
    fn resolve_target(&self, text: &str) -> Result<super::Target> {
        self.parse_target(text)?.existing(text)
    }
    fn own_netns_inode(&self) -> Option<u64> {
        Some(1)
    }
    fn process_alive(&self, _pid: u32, _start: u64) -> bool {
        true
    }
    fn process_start_time(&self, _pid: u32) -> Option<u64> {
        Some(1)
    }
    fn netns_facts(&mut self, _netns: Option<&Path>) -> Result<super::NetnsFacts> {
        Ok(super::NetnsFacts {
            links: self.links.clone(),
            ..Default::default()
        })
    }
    fn link_mac(&mut self, name: &str) -> Result<Option<crate::model::Mac>> {
        Ok(self
            .links
            .iter()
            .find(|l| l.name == name)
            .and_then(|l| l.mac))
    }
    fn host_port_in_use(&mut self, _proto: crate::model::Proto, ip: Ipv4Addr, port: u16) -> bool {
        self.listeners
            .iter()
            .any(|(i, p)| *p == port && (i.is_unspecified() || ip.is_unspecified() || *i == ip))
    }
}

//! The observation of a reconcile: the state rows and the kernel facts
//! that matter, each read once (one link dump, one look at the firewall
//! table, a stat per namespace whose veth is missing).

use std::collections::HashSet;

use super::decide::{expected_elements, Desired, Observed, TableElements};
use crate::error::Result;
use crate::firewall;
use crate::kernel::{sysctl, Kernel};
use crate::store::{Status, Tx};

/// Reads every network, endpoint (with ports) and sandbox row.
pub fn desired(tx: &Tx) -> Result<Desired> {
    let networks = tx.networks_with_status()?;
    let mut rows = tx.endpoints_with_status()?;
    let mut endpoints: Vec<_> = rows.iter().map(|(e, _)| e.clone()).collect();
    tx.load_ports(&mut endpoints)?;
    for ((row, _), loaded) in rows.iter_mut().zip(endpoints) {
        *row = loaded;
    }
    Ok(Desired {
        networks,
        endpoints: rows,
        sandboxes: tx.sandboxes()?,
        instance: tx.setting("instance")?.unwrap_or_default(),
        dns_port: tx
            .setting(crate::dns::PORT_SETTING)?
            .and_then(|p| p.parse().ok())
            .unwrap_or(53),
    })
}

/// Reads what the kernel has of what `desired` names.
pub fn observe(kernel: &mut dyn Kernel, desired: &Desired) -> Result<Observed> {
    let links = kernel.links()?;
    let present: HashSet<&str> = links.iter().map(|l| l.name.as_str()).collect();
    let mut netns_alive = HashSet::new();
    let mut children = HashSet::new();
    for (e, status) in &desired.endpoints {
        if *status != Status::Ready || present.contains(e.host_ifname.as_str()) {
            continue;
        }
        let Ok(target) = kernel.parse_target(&e.netns) else {
            continue;
        };
        if kernel.netns_inode(&target.path) == Some(e.netns_inode) {
            netns_alive.insert(e.id);
            // A macvlan/ipvlan child is only seen from inside.
            if !e.has_veth() && kernel.link_exists_in(&target.path, &e.ifname)? {
                children.insert(e.id);
            }
        }
    }
    let dead_sandboxes = desired
        .sandboxes
        .iter()
        .filter(|s| !kernel.process_alive(s.owner_pid, s.owner_start))
        .map(|s| s.name.clone())
        .collect();
    let table = kernel.nft_fingerprint(&firewall::table())?;
    // What a reconcile with nothing to repair must find as it is, so that
    // it changes nothing: the gateway addresses, ip_forward, and the
    // elements of berth's sets and maps.
    let addresses = kernel.netns_facts(None).ok().map(|facts| {
        let v4 = facts
            .addrs
            .iter()
            .map(|a| (a.index, std::net::IpAddr::V4(a.ip), a.prefix_len));
        let v6 = facts.addrs6.iter().map(|a| (a.index, a.ip, a.prefix_len));
        v4.chain(v6)
            .filter_map(|(index, ip, prefix_len)| {
                let link = links.iter().find(|l| l.index == index)?;
                Some((link.name.clone(), ip, prefix_len))
            })
            .collect()
    });
    let ip_forward = kernel
        .read_sysctl(&sysctl::Key::ip_forward())
        .ok()
        .map(|v| v.trim() == "1");
    // Read only when some network has IPv6: an IPv4-only host's reconcile
    // reads what it always read.
    let ip6_forward = if desired.networks.iter().any(|(n, _)| n.subnet6().is_some()) {
        kernel
            .read_sysctl(&sysctl::Key::ipv6_forwarding())
            .ok()
            .map(|v| v.trim() == "1")
    } else {
        None
    };
    let elements = match &table {
        Some(_) => table_elements(kernel, desired),
        None => None,
    };
    let guard_table = kernel.nft_fingerprint(&firewall::guard::table())?;
    Ok(Observed {
        links,
        table,
        guard_table,
        netns_alive,
        children,
        dead_sandboxes,
        addresses,
        ip_forward,
        ip6_forward,
        elements,
    })
}

/// The elements of every set and map the state's table has (one query
/// each); None when one cannot be read, which makes the table be rebuilt.
fn table_elements(kernel: &mut dyn Kernel, desired: &Desired) -> Option<TableElements> {
    let live: Vec<_> = desired
        .networks
        .iter()
        .filter(|(_, s)| *s == Status::Ready)
        .map(|(n, _)| n.clone())
        .collect();
    let sets = expected_elements(
        &firewall::rebuild(
            &live,
            &[],
            &Default::default(),
            firewall::Tables::default(),
            &desired.instance,
        )
        .batch,
    );
    let mut all = TableElements::new();
    for (table, name) in sets.into_keys() {
        let elements = kernel.nft_list_elements(&table, &name).ok()?;
        all.insert((table, name), elements.into_iter().collect());
    }
    Some(all)
}

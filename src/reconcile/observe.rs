//! The observation of a reconcile: the state rows and the kernel facts
//! that matter, each read once (one link dump, one look at the firewall
//! table, a stat per namespace whose veth is missing).

use std::collections::HashSet;

use super::decide::{Desired, Observed};
use crate::error::Result;
use crate::firewall;
use crate::kernel::Kernel;
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
    for (e, status) in &desired.endpoints {
        if *status != Status::Ready || present.contains(e.host_ifname.as_str()) {
            continue;
        }
        let Ok(target) = kernel.parse_target(&e.netns) else {
            continue;
        };
        if kernel.netns_inode(&target.path) == Some(e.netns_inode) {
            netns_alive.insert(e.id);
        }
    }
    let dead_sandboxes = desired
        .sandboxes
        .iter()
        .filter(|s| !kernel.process_alive(s.owner_pid, s.owner_start))
        .map(|s| s.name.clone())
        .collect();
    let table = kernel.nft_fingerprint(&firewall::table())?;
    let guard_table = kernel.nft_fingerprint(&firewall::guard::table())?;
    Ok(Observed {
        links,
        table,
        guard_table,
        netns_alive,
        dead_sandboxes,
    })
}

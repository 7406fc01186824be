//! GC: removes every attachment of the network that the runtime no longer
//! lists in `cni.dev/valid-attachments` (or the older `cni.dev/attachments`):
//! its veth, map elements, lease and rows.
//!
//! Built on the reconcile: the stale rows are marked `removing` (the
//! intent), then a reconcile finishes them, as it would after a crash, and
//! rebuilds the firewall without their ports in one batch. Deleting veths
//! one by one costs an RCU grace period each (~20 ms; 20 s for 1000), so
//! the veths that still exist are deleted together
//! (`Kernel::delete_links_together`: moved into one link group, deleted in
//! a single request, which waits for one grace period in all).

use std::collections::BTreeSet;

use super::config::NetConf;
use super::context;
use super::error::{CniError, CODE_BAD_CONFIG};
use crate::reconcile::{reconcile, Scope};
use crate::store::Status;

/// What GC removed: (container ID, interface name) of each attachment.
pub fn gc(conf: &NetConf) -> Result<Vec<(String, String)>, CniError> {
    let Some(valid) = &conf.valid_attachments else {
        return Err(CniError::new(
            CODE_BAD_CONFIG,
            "GC needs cni.dev/valid-attachments in the network configuration",
        ));
    };
    let mut ctx = context(conf);
    if ctx.store_read_only()?.is_none() {
        return Ok(Vec::new());
    }
    let _lock = ctx.begin_change()?;
    let mut store = ctx.store()?;
    let tx = store.begin()?;
    let Some(network) = tx.network(&conf.name)? else {
        return Ok(Vec::new());
    };
    let stale: Vec<_> = tx
        .network_attachments(network.id)?
        .into_iter()
        .filter(|(a, _)| !valid.contains(&(a.container_id.clone(), a.ifname.clone())))
        .collect();
    if stale.is_empty() {
        return Ok(Vec::new());
    }
    // The intent: from here on, a crash leaves `removing` rows that the
    // next command finishes.
    for (_, e) in &stale {
        tx.set_endpoint_status(e.id, Status::Removing)?;
    }
    tx.commit()?;
    crate::failpoint::hit("intent");
    let veths: BTreeSet<String> = stale.iter().map(|(_, e)| e.host_ifname.clone()).collect();
    let veths: Vec<String> = veths.into_iter().collect();
    ctx.kernel.delete_links_together(&veths)?;
    reconcile(&mut ctx, Scope::default())?;
    Ok(stale
        .into_iter()
        .map(|(a, _)| (a.container_id, a.ifname))
        .collect())
}

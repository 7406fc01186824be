//! GC: removes every attachment of the network that the runtime no longer
//! lists in `cni.dev/valid-attachments` (or the older `cni.dev/attachments`):
//! its veth, map elements, lease and rows.
//!
//! One transaction: the stale attachments are found under the lock and
//! detached together (`DetachAll`): their published ports go in one batch
//! and their veths in one kernel request, which waits for one RCU grace
//! period in all instead of one per veth (~20 ms each; 20 s for 1000).

use super::config::NetConf;
use super::error::{CniError, CODE_BAD_CONFIG};
use crate::commands::DetachAll;
use crate::context::Context;
use crate::error::Error;
use crate::executor::{transaction, Preflight};

/// What GC removed: (container ID, interface name) of each attachment.
pub fn gc(ctx: &mut Context, conf: &NetConf) -> Result<Vec<(String, String)>, CniError> {
    let Some(valid) = &conf.valid_attachments else {
        return Err(CniError::new(
            CODE_BAD_CONFIG,
            "GC needs cni.dev/valid-attachments in the network configuration",
        ));
    };
    if ctx.store_read_only()?.is_none() {
        return Ok(Vec::new());
    }
    let done = transaction(ctx, Preflight::Run, |txn| {
        let stale = txn.read(|tx| {
            let Some(network) = tx.network(&conf.name)? else {
                return Ok(Vec::new());
            };
            Ok::<_, Error>(
                tx.network_attachments(network.id)?
                    .into_iter()
                    .filter(|(a, _)| !valid.contains(&(a.container_id.clone(), a.ifname.clone())))
                    .collect::<Vec<_>>(),
            )
        })?;
        txn.apply(DetachAll {
            ids: stale.iter().map(|(_, e)| e.id).collect(),
        })?;
        Ok(stale
            .into_iter()
            .map(|(a, _)| (a.container_id, a.ifname))
            .collect())
    });
    Ok(done?.applied()?)
}

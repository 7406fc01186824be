//! GC: removes every attachment of the network that the runtime no longer
//! lists in `cni.dev/valid-attachments` (or the older `cni.dev/attachments`):
//! its veth, map elements, lease and rows.
//!
//! Built on the reconcile: the stale rows are marked `removing` (the
//! intent), then a reconcile finishes them, as it would after a crash, and
//! rebuilds the firewall without their ports in one batch. Deleting veths
//! one by one costs an RCU grace period each (~20 ms; 20 s for 1000), so
//! the veths that still exist are first moved into one link group and
//! deleted in a single request, which waits for one grace period in all.

use std::collections::HashSet;
use std::io;

use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::config::NetConf;
use super::context;
use super::error::{CniError, CODE_BAD_CONFIG};
use crate::kernel::rtnl::Rtnl;
use crate::model::names;
use crate::reconcile::{reconcile, Scope};
use crate::store::Status;

/// The link group stale veths are gathered in to be deleted together. It is
/// one of berth's groups, so `berth gc` removes anything left in it.
pub const DOOMED_GROUP: u32 = names::LINK_GROUP_BASE | 0xffff;

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
    let veths: HashSet<&str> = stale.iter().map(|(_, e)| e.host_ifname.as_str()).collect();
    delete_together(&veths)
        .map_err(|e| CniError::from_berth(crate::Error::kernel("deleting stale veths", e)))?;
    reconcile(&mut ctx, Scope::default())?;
    Ok(stale
        .into_iter()
        .map(|(a, _)| (a.container_id, a.ifname))
        .collect())
}

/// Moves each veth that exists into [`DOOMED_GROUP`], then deletes the group.
fn delete_together(veths: &HashSet<&str>) -> io::Result<()> {
    let mut rtnl = Rtnl::open()?;
    let mut moved = 0;
    for name in veths {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Group(DOOMED_GROUP));
        match rtnl.request(RouteNetlinkMessage::SetLink(msg), 0) {
            Ok(()) => moved += 1,
            // Gone with its namespace already.
            Err(e) if crate::error::errno_of(&e) == Some(libc::ENODEV) => {}
            Err(e) => return Err(e),
        }
    }
    if moved > 0 {
        crate::kernel::link::delete_group(&mut rtnl, DOOMED_GROUP)?;
    }
    Ok(())
}

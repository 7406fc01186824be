//! `firewall-reload` and `firewalld-reload`: berth's firewall rules back
//! after someone else's firewall reload flushed them. Newer netavarks
//! re-apply their rules once (`firewall-reload`, netavark 1.17) or, as a
//! service, at start and on each reload firewalld announces over D-Bus
//! (`firewalld-reload`, netavark 1.9). berth's rules are rebuilt from its
//! state by the reconcile `berth up` runs, so both run that; the service
//! watches the nf_tables generation (one netlink round trip a second)
//! rather than D-Bus, which also catches `nft flush ruleset` and reloads
//! by anything else, with or without firewalld.

use std::time::Duration;

use crate::context::Context;
use crate::error::Result;

/// How often the service looks at the ruleset's generation.
const POLL: Duration = Duration::from_secs(1);

/// One reconcile of everything berth owns; what it did, one line each.
/// Without a state there is nothing to restore.
pub fn reload_once(ctx: &mut Context) -> Result<Vec<String>> {
    if ctx.store_read_only()?.is_none() {
        return Ok(Vec::new());
    }
    crate::commands::maintain::up(ctx)?.applied()
}

/// Reloads now, then after every change of the ruleset, until killed.
/// `report` gets what each reload did; a failed reload is reported and
/// tried again at the next change.
pub fn watch(ctx: &mut Context, mut report: impl FnMut(Result<Vec<String>>)) -> ! {
    let mut seen = None;
    let mut first = true;
    loop {
        let now = ctx.kernel.nft_generation().ok();
        if first || now != seen {
            first = false;
            report(reload_once(ctx));
            // What the reload itself committed is no reason for another.
            seen = ctx.kernel.nft_generation().ok();
        }
        std::thread::sleep(POLL);
    }
}

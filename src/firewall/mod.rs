//! berth's nftables ruleset, built with berth-nft: two tables of the same
//! name. `inet berth` holds the routing firewall: base chains that
//! dispatch through verdict maps keyed by bridge name to chains of each
//! network, and the published-port maps. `bridge berth` holds the
//! anti-spoofing guard of the containers' ports, which needs the Ethernet
//! and ARP headers that `inet` never sees. The two are made together with
//! the first network and go together with the last.
//!
//! Creating or removing a network adds or removes that network's chains
//! and map elements in one atomic batch; connecting a container adds only
//! elements: of the published-port maps and of the guard's sets.
//!
//! Every change comes with the batch that takes it back, so a plan can undo
//! it; [`skeleton`] holds the `inet` table and base chains, [`network`] one
//! network's chains, [`ports`] the published-port maps and their elements,
//! [`guard`] the `bridge` table and its elements.

pub mod guard;
pub mod network;
pub mod ports;
pub mod skeleton;

#[cfg(test)]
mod tests;

use berth_nft::{Batch, Family, Table};

use crate::model::{Endpoint, Network};

/// The name of berth's tables (`inet berth`, `bridge berth`).
pub const TABLE_NAME: &str = "berth";

/// `inet berth`.
pub fn table() -> Table {
    Table::new(Family::Inet, TABLE_NAME)
}

/// Names of the chain that marks which berth state owns the table.
pub const OWNER_PREFIX: &str = "owner-";

/// An empty chain whose name carries the owning state's instance id. Two
/// berth states on one host would share the table `inet berth` and
/// rebuild each other's chains away; the mark lets the second one see that
/// the table is not its own and refuse, naming the problem.
pub fn owner_chain(instance: &str) -> berth_nft::Chain {
    berth_nft::Chain::regular(&table(), format!("{OWNER_PREFIX}{instance}"))
}

/// The instance that owns a table with these chains, if it is marked.
pub fn owner_of<'a>(chains: impl IntoIterator<Item = &'a String>) -> Option<&'a str> {
    chains
        .into_iter()
        .find_map(|c| c.strip_prefix(OWNER_PREFIX))
}

/// A change of the ruleset and the change that takes it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub batch: Batch,
    pub undo: Batch,
}

/// Adds `net`'s chains and elements; with `table_exists` false, the
/// tables, their base chains and the mark of its `owner` come first (and
/// the undo removes both tables).
pub fn add_network(net: &Network, table_exists: bool, owner: &str) -> Change {
    let mut change = add_routing(net, table_exists, owner);
    if !table_exists {
        guard::create(&mut change.batch);
        guard::delete(&mut change.undo);
    }
    change
}

/// [`add_network`]'s part in `inet berth`.
fn add_routing(net: &Network, table_exists: bool, owner: &str) -> Change {
    let mut batch = Batch::new();
    let mut undo = Batch::new();
    if table_exists {
        network::remove(&mut undo, net);
    } else {
        skeleton::create(&mut batch);
        batch.add_chain(&owner_chain(owner));
        undo.delete_table(&table());
    }
    network::add(&mut batch, net);
    Change { batch, undo }
}

/// Removes `net`'s chains and elements from `inet berth`; when it is the
/// `last` network, that whole table goes. The guard's part is
/// [`remove_guards`], applied once the network's veths are gone, so that
/// no port is left unguarded while it exists.
pub fn remove_network(net: &Network, last: bool, owner: &str) -> Change {
    let mut batch = Batch::new();
    if last {
        batch.delete_table(&table());
    } else {
        network::remove(&mut batch, net);
    }
    // Taking it back: the network's part, on top of a fresh skeleton if the
    // table went.
    let undo = add_routing(net, !last, owner).batch;
    Change { batch, undo }
}

/// The guard's part of taking endpoints away: with the `last` network the
/// whole `bridge berth` table goes; otherwise the elements that `before`
/// (the endpoints of the namespaces concerned) needs and `after` (the same
/// without the ones going) does not.
pub fn remove_guards(last: bool, before: &[&Endpoint], after: &[&Endpoint]) -> Change {
    if !last {
        return guard::change(before, after);
    }
    let mut batch = Batch::new();
    let mut undo = Batch::new();
    guard::delete(&mut batch);
    guard::create(&mut undo);
    guard::elements(before.iter().copied()).apply(&mut undo, berth_nft::ElemOp::Add);
    Change { batch, undo }
}

/// Which of berth's two tables exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    /// `inet berth`
    pub routing: bool,
    /// `bridge berth`
    pub guard: bool,
}

impl Tables {
    /// Both, or neither.
    pub fn both(exist: bool) -> Tables {
        Tables {
            routing: exist,
            guard: exist,
        }
    }
}

/// Both tables exactly as the state says, in one batch that replaces
/// whatever they hold now (`exist`), or only removes them when no network
/// is left. Atomic like every batch: a reader sees the old tables or the
/// new ones, and established connections keep their conntrack NAT. This is
/// how `up`, `gc` and the repair of an interrupted command or a tampered
/// ruleset converge, whatever the kernel holds.
pub fn rebuild(
    networks: &[Network],
    published: &[(std::net::IpAddr, Vec<crate::model::PortMapping>)],
    guards: &guard::Elements,
    exist: Tables,
    owner: &str,
) -> Change {
    // macvlan/ipvlan networks have no bridge for the ruleset to work on:
    // netavark gives them no firewall either.
    let networks: Vec<&Network> = networks.iter().filter(|n| n.is_bridge()).collect();
    let mut batch = Batch::new();
    if exist.routing {
        batch.delete_table(&table());
    }
    if exist.guard {
        guard::delete(&mut batch);
    }
    if !networks.is_empty() {
        skeleton::create(&mut batch);
        batch.add_chain(&owner_chain(owner));
        for net in networks {
            network::add(&mut batch, net);
        }
        for (ip, mappings) in published {
            ports::elements_op(&mut batch, berth_nft::ElemOp::Add, *ip, mappings);
        }
        guard::create(&mut batch);
        guards.apply(&mut batch, berth_nft::ElemOp::Add);
    }
    // Nothing to take back: the batch is atomic, and what the table held
    // before is exactly what was wrong.
    Change {
        batch,
        undo: Batch::new(),
    }
}

/// Removes the tables, whatever they hold (for `reset`); only those that
/// `exist`, since a plain delete of an absent table fails and `destroy`
/// needs Linux 6.3.
pub fn remove_all(exist: Tables) -> Change {
    let mut batch = Batch::new();
    if exist.routing {
        batch.delete_table(&table());
    }
    if exist.guard {
        guard::delete(&mut batch);
    }
    Change {
        batch,
        undo: Batch::new(),
    }
}

//! berth's nftables ruleset, built with berth-nft: one table `inet berth`
//! whose base chains dispatch through verdict maps keyed by bridge name to
//! chains of each network. Creating or removing a network adds or removes
//! that network's chains and map elements in one atomic batch; connecting
//! a container adds only elements of the published-port maps.
//!
//! Every change comes with the batch that takes it back, so a plan can undo
//! it; [`skeleton`] holds the table and base chains, [`network`] one
//! network's chains, [`ports`] the published-port maps and their elements
//! (the only part a connect changes).

pub mod network;
pub mod ports;
pub mod skeleton;

#[cfg(test)]
mod tests;

use berth_nft::{Batch, Family, Table};

use crate::model::Network;

/// The one table berth owns.
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

/// Adds `net`'s chains and elements; with `table_exists` false, the table,
/// its base chains and the mark of its `owner` come first (and the undo
/// removes the whole table).
pub fn add_network(net: &Network, table_exists: bool, owner: &str) -> Change {
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

/// Removes `net`'s chains and elements; when it is the `last` network, the
/// whole table goes.
pub fn remove_network(net: &Network, last: bool, owner: &str) -> Change {
    let mut batch = Batch::new();
    if last {
        batch.delete_table(&table());
    } else {
        network::remove(&mut batch, net);
    }
    // Taking it back: the network's part, on top of a fresh skeleton if the
    // table went.
    let undo = add_network(net, !last, owner).batch;
    Change { batch, undo }
}

/// The whole table exactly as the state says, in one batch that replaces
/// whatever the table holds now (`table_exists`), or only removes it when
/// no network is left. Atomic like every batch: a reader sees the old table
/// or the new one, and established connections keep their conntrack NAT.
/// This is how `up`, `gc` and the repair of an interrupted command or a
/// tampered ruleset converge, whatever the kernel holds.
pub fn rebuild(
    networks: &[Network],
    published: &[(std::net::Ipv4Addr, Vec<crate::model::PortMapping>)],
    table_exists: bool,
    owner: &str,
) -> Change {
    let mut batch = Batch::new();
    if table_exists {
        batch.delete_table(&table());
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
    }
    // Nothing to take back: the batch is atomic, and what the table held
    // before is exactly what was wrong.
    Change {
        batch,
        undo: Batch::new(),
    }
}

/// Removes the table, whatever it holds (for `reset`); nothing when
/// `table_exists` is false, since a plain delete of an absent table fails
/// and `destroy` needs Linux 6.3.
pub fn remove_all(table_exists: bool) -> Change {
    let mut batch = Batch::new();
    if table_exists {
        batch.delete_table(&table());
    }
    Change {
        batch,
        undo: Batch::new(),
    }
}

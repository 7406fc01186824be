//! How much of the server one network, and one client in it, may hold at
//! once: TCP connections and forwarded queries in flight.
//!
//! Every network has a [`Pool`] of each kind, and inside it every client
//! address has a share. A container that floods the server with queries
//! upstream never answers, or holds connections open, spends its own share
//! and is told no at once (SERVFAIL, or the connection closed); its
//! neighbours keep the rest of their network's pool and other networks
//! their own. A process-wide [`Ceiling`] per kind, sized from the file
//! descriptor limit, keeps the server alive whatever the number of
//! networks. Clients that may not ask a gateway at all are turned away
//! before any of this is touched (see `server.rs`).
//!
//! A client is its address, of either family: one container asking over
//! IPv4 and over IPv6 holds two shares, both within its network's pool.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The shares of one kind of slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub per_network: usize,
    pub per_client: usize,
}

/// TCP connections. Resolvers fall back to TCP only for truncated answers
/// and keep a connection or two: 16 is far above need, and 128 per network
/// lets eight clients of one network be at their limit at once.
pub const TCP: Budget = Budget {
    per_network: 128,
    per_client: 16,
};

/// Forwarded queries in flight. A client asking 1000 names a second with
/// a 50 ms upstream has 50 in flight; one asking names upstream never
/// answers holds each for the whole 4 s budget, and is held to 128.
pub const FORWARDS: Budget = Budget {
    per_network: 512,
    per_client: 128,
};

/// What was full when a slot was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    Client,
    Network,
    Server,
}

/// The process-wide ceiling of one kind of slot.
#[derive(Debug)]
pub struct Ceiling {
    max: usize,
    used: AtomicUsize,
}

impl Ceiling {
    pub fn new(max: usize) -> Arc<Ceiling> {
        Arc::new(Ceiling {
            max,
            used: AtomicUsize::new(0),
        })
    }

    fn take(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < self.max).then_some(u + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }

    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// One network's slots of one kind.
#[derive(Debug)]
pub struct Pool {
    budget: Budget,
    ceiling: Arc<Ceiling>,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// A slot taken; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    pool: Arc<Pool>,
    client: IpAddr,
}

impl Pool {
    pub fn new(budget: Budget, ceiling: Arc<Ceiling>) -> Arc<Pool> {
        Arc::new(Pool {
            budget,
            ceiling,
            held: Mutex::new(Held::default()),
        })
    }

    /// A slot for `client`, or what is full. The client's share is looked
    /// at first, so a client over its share costs the pool nothing.
    pub fn take(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Full> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mine = held.by_client.get(&client).copied().unwrap_or(0);
        if mine >= self.budget.per_client {
            return Err(Full::Client);
        }
        if held.total >= self.budget.per_network {
            return Err(Full::Network);
        }
        if !self.ceiling.take() {
            return Err(Full::Server);
        }
        held.total += 1;
        *held.by_client.entry(client).or_insert(0) += 1;
        Ok(Slot {
            pool: self.clone(),
            client,
        })
    }

    /// Slots held now (all clients).
    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.pool.held.lock().unwrap_or_else(|e| e.into_inner());
        held.total -= 1;
        if let Some(n) = held.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                held.by_client.remove(&self.client);
            }
        }
        self.pool.ceiling.give_back();
    }
}

/// The ceilings for a process allowed `files` open descriptors: half for
/// forwards (one socket each), a quarter for TCP clients (each may also
/// forward), the rest for listeners and the state; never above what the
/// memory of a small server should hold.
pub fn ceilings(files: u64) -> (usize, usize) {
    let files = usize::try_from(files).unwrap_or(usize::MAX);
    let forwards = (files / 2).clamp(64, 8192);
    let tcp = (files / 4).clamp(32, 4096);
    (forwards, tcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn ip6(last: u16) -> IpAddr {
        IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, last])
    }

    #[test]
    fn a_client_holds_its_share_and_its_neighbours_the_rest() {
        let ceiling = Ceiling::new(100);
        let budget = Budget {
            per_network: 5,
            per_client: 2,
        };
        let pool = Pool::new(budget, ceiling.clone());
        let a1 = pool.take(ip(1)).unwrap();
        let _a2 = pool.take(ip(1)).unwrap();
        assert_eq!(pool.take(ip(1)).unwrap_err(), Full::Client);
        let _b1 = pool.take(ip(2)).unwrap();
        let _b2 = pool.take(ip(2)).unwrap();
        let _c1 = pool.take(ip(3)).unwrap();
        assert_eq!(pool.take(ip(4)).unwrap_err(), Full::Network);
        // A client over its share is refused before the network is looked at.
        assert_eq!(pool.take(ip(2)).unwrap_err(), Full::Client);
        assert_eq!(pool.in_use(), 5);
        drop(a1);
        assert_eq!(pool.in_use(), 4);
        assert_eq!(ceiling.used(), 4);
        let _d = pool.take(ip(4)).unwrap();
    }

    #[test]
    fn one_network_full_leaves_another_its_pool_and_the_ceiling_caps_all() {
        let ceiling = Ceiling::new(6);
        let budget = Budget {
            per_network: 4,
            per_client: 4,
        };
        let a = Pool::new(budget, ceiling.clone());
        let b = Pool::new(budget, ceiling.clone());
        let held_a: Vec<Slot> = (0..4).map(|_| a.take(ip(1)).unwrap()).collect();
        assert_eq!(a.take(ip(2)).unwrap_err(), Full::Network);
        let held_b: Vec<Slot> = (0..2).map(|i| b.take(ip(10 + i)).unwrap()).collect();
        assert_eq!(b.take(ip(20)).unwrap_err(), Full::Server);
        drop(held_a);
        assert_eq!(ceiling.used(), 2);
        let _more = b.take(ip(20)).unwrap();
        drop(held_b);
        assert_eq!(b.in_use(), 1);
    }

    #[test]
    fn ceilings_follow_the_descriptor_limit_within_bounds() {
        assert_eq!(ceilings(1024), (512, 256));
        assert_eq!(ceilings(20_000), (8192, 4096));
        assert_eq!(ceilings(100), (64, 32));
    }

    #[test]
    fn ipv6_clients_hold_shares_of_their_own() {
        let ceiling = Ceiling::new(100);
        let budget = Budget {
            per_network: 6,
            per_client: 2,
        };
        let pool = Pool::new(budget, ceiling.clone());
        let a: Vec<Slot> = (0..2).map(|_| pool.take(ip6(2)).unwrap()).collect();
        assert_eq!(pool.take(ip6(2)).unwrap_err(), Full::Client);
        // Its neighbour, and the same container's IPv4 address, still get theirs.
        let _b = pool.take(ip6(3)).unwrap();
        let v4: Vec<Slot> = (0..2).map(|_| pool.take(ip(2)).unwrap()).collect();
        assert_eq!(pool.take(ip(2)).unwrap_err(), Full::Client);
        let _c = pool.take(ip6(4)).unwrap();
        assert_eq!(pool.take(ip6(5)).unwrap_err(), Full::Network);
        drop(a);
        assert_eq!(pool.in_use(), 4);
        let _a = pool.take(ip6(2)).unwrap();
        drop(v4);
        assert_eq!(ceiling.used(), 3);
    }
}

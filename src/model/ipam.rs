//! Address management: which subnet a new network gets (from pools, in
//! order) and which address a new endpoint gets. Pure functions over a "what is taken" view, so the
//! policy is testable without a database or a kernel.

use std::net::Ipv4Addr;

use super::subnet::Ipv4Net;

/// A range automatic subnets are cut from: consecutive /`size` prefixes
/// whose network addresses lie from `first` to `last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub size: u8,
}

impl Pool {
    /// Every /`size` prefix inside `base` (Docker's `default-address-pools`
    /// entry `{"base": ..., "size": ...}`).
    pub fn of(base: Ipv4Net, size: u8) -> Pool {
        Pool {
            first: base.network(),
            last: Ipv4Net::new_truncating(base.broadcast(), size).network(),
            size,
        }
    }
}

impl std::fmt::Display for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{} in /{}s", self.first, self.last, self.size)
    }
}

/// The pools berth uses unless configured otherwise, in order:
///
/// 1. 10.89.0.0-10.127.255.0 in /24s: what berth always used (and what
///    Podman's netavark uses after its 10.88.0.0/16), so existing setups
///    keep their subnets;
/// 2. 172.17.0.0-172.31.255.0 in /24s: Docker's range, for hosts whose
///    10.x is taken by a VPN or a corporate network (a 10.0.0.0/9 route
///    covers all of pool 1); Docker's own bridges are routed, so skipped;
/// 3. 192.168.0.0-192.168.255.0 in /24s, last, because home and office
///    LANs live there and a laptop may join one later.
pub fn default_pools() -> Vec<Pool> {
    let pool = |first: [u8; 4], last: [u8; 4]| Pool {
        first: first.into(),
        last: last.into(),
        size: 24,
    };
    vec![
        pool([10, 89, 0, 0], [10, 127, 255, 0]),
        pool([172, 17, 0, 0], [172, 31, 255, 0]),
        pool([192, 168, 0, 0], [192, 168, 255, 0]),
    ]
}

/// The first subnet of the first pool that overlaps none of `used`.
pub fn pick_subnet(pools: &[Pool], used: &[Ipv4Net]) -> Option<Ipv4Net> {
    pools.iter().find_map(|p| pick_in(p, used))
}

fn pick_in(pool: &Pool, used: &[Ipv4Net]) -> Option<Ipv4Net> {
    let mut candidate = Some(Ipv4Net::new_truncating(pool.first, pool.size));
    while let Some(net) = candidate {
        if u32::from(net.network()) > u32::from(pool.last) {
            return None;
        }
        match used.iter().find(|u| u.overlaps(&net)) {
            None => return Some(net),
            // Jump past the whole clashing range, not one subnet at a time,
            // so a host route like 10.0.0.0/8 costs one step.
            Some(clash) if clash.prefix_len() < pool.size => {
                candidate = Ipv4Net::new_truncating(clash.network(), clash.prefix_len())
                    .next()
                    .map(|n| Ipv4Net::new_truncating(n.network(), pool.size));
            }
            Some(_) => candidate = net.next(),
        }
    }
    None
}

/// The next address to lend: the first free host address after `last`
/// (wrapping around), never the network, gateway or broadcast address.
/// Starting after the last one handed out keeps a just-freed address from
/// being reused at once, so a stale ARP entry or connection does not reach
/// the wrong container.
pub fn next_address(
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    last: Option<Ipv4Addr>,
    mut is_taken: impl FnMut(Ipv4Addr) -> bool,
) -> Option<Ipv4Addr> {
    let first = u32::from(subnet.first_host());
    let end = u32::from(subnet.last_host());
    let size = end - first + 1;
    let start = match last {
        Some(ip) if subnet.is_host(ip) && u32::from(ip) < end => u32::from(ip) + 1,
        _ => first,
    };
    (0..size)
        .map(|i| first + (start - first + i) % size)
        .map(Ipv4Addr::from)
        .find(|&ip| ip != gateway && !is_taken(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn picks_first_free_pool_subnet() {
        let pools = default_pools();
        let pick = |used: &[Ipv4Net]| pick_subnet(&pools, used);
        assert_eq!(pick(&[]), Some(net("10.89.0.0/24")));
        assert_eq!(pick(&[net("10.89.0.0/24")]), Some(net("10.89.1.0/24")));
        assert_eq!(pick(&[net("10.89.0.0/16")]), Some(net("10.90.0.0/24")));
        assert_eq!(pick(&[net("10.89.0.128/25")]), Some(net("10.89.1.0/24")));
        assert_eq!(
            pick(&[
                net("10.127.255.0/24"),
                net("10.89.0.0/16"),
                net("10.90.0.0/15"),
                net("10.92.0.0/14"),
                net("10.96.0.0/12"),
                net("10.112.0.0/13"),
                net("10.120.0.0/14"),
                net("10.124.0.0/15"),
                net("10.126.0.0/16"),
                net("10.127.0.0/17"),
                net("10.127.128.0/18"),
                net("10.127.192.0/19"),
                net("10.127.224.0/20"),
                net("10.127.240.0/21"),
                net("10.127.248.0/22"),
                net("10.127.252.0/23"),
                net("10.127.254.0/24")
            ]),
            Some(net("172.17.0.0/24")),
            "the last /24 of the 10.x pool is used too"
        );
    }

    #[test]
    fn a_vpn_route_over_10_falls_back_to_172_then_192_168() {
        let pools = default_pools();
        let pick = |used: &[Ipv4Net]| pick_subnet(&pools, used);
        assert_eq!(pick(&[net("10.0.0.0/9")]), Some(net("172.17.0.0/24")));
        assert_eq!(pick(&[net("10.0.0.0/8")]), Some(net("172.17.0.0/24")));
        // Docker's docker0 and one of its networks are routed.
        assert_eq!(
            pick(&[
                net("10.0.0.0/8"),
                net("172.17.0.0/16"),
                net("172.18.0.0/16")
            ]),
            Some(net("172.19.0.0/24"))
        );
        assert_eq!(
            pick(&[
                net("10.0.0.0/8"),
                net("172.16.0.0/12"),
                net("192.168.0.0/24")
            ]),
            Some(net("192.168.1.0/24"))
        );
        assert_eq!(
            pick(&[
                net("10.0.0.0/8"),
                net("172.16.0.0/12"),
                net("192.168.0.0/16")
            ]),
            None
        );
        // Everything taken but the very last subnet of the last pool.
        let mut used = vec![net("10.0.0.0/8"), net("172.16.0.0/12")];
        let mut n = net("192.168.0.0/24");
        while n != net("192.168.255.0/24") {
            used.push(n);
            n = n.next().unwrap();
        }
        assert_eq!(pick(&used), Some(net("192.168.255.0/24")));
    }

    #[test]
    fn configured_pools_are_cut_into_their_size() {
        let p = Pool::of(net("10.200.0.0/16"), 24);
        assert_eq!(p.first, Ipv4Addr::new(10, 200, 0, 0));
        assert_eq!(p.last, Ipv4Addr::new(10, 200, 255, 0));
        assert_eq!(p.to_string(), "10.200.0.0-10.200.255.0 in /24s");
        let p = Pool::of(net("192.168.0.0/16"), 20);
        assert_eq!(pick_subnet(&[p], &[]), Some(net("192.168.0.0/20")));
        assert_eq!(
            pick_subnet(&[p], &[net("192.168.1.0/24")]),
            Some(net("192.168.16.0/20"))
        );
        assert_eq!(
            pick_subnet(
                &[p],
                &[
                    net("192.168.240.0/20"),
                    net("192.168.0.0/17"),
                    net("192.168.128.0/18"),
                    net("192.168.192.0/19"),
                    net("192.168.224.0/20")
                ]
            ),
            None
        );
        // A pool as big as its size is one subnet.
        let one = Pool::of(net("10.1.2.0/24"), 24);
        assert_eq!(pick_subnet(&[one], &[]), Some(net("10.1.2.0/24")));
        assert_eq!(pick_subnet(&[one], &[net("10.1.2.0/24")]), None);
    }

    #[test]
    fn leases_skip_reserved_and_continue_after_last() {
        let n = net("10.90.0.0/29"); // hosts .1-.6
        let gw = n.first_host();
        let mut taken = HashSet::new();
        let mut last = None;
        let mut got = vec![];
        while let Some(ip) = next_address(n, gw, last, |ip| taken.contains(&ip)) {
            taken.insert(ip);
            last = Some(ip);
            got.push(ip.octets()[3]);
        }
        assert_eq!(got, vec![2, 3, 4, 5, 6]);
        // Free .3; the next lease wraps around to it, since nothing else is free.
        taken.remove(&Ipv4Addr::new(10, 90, 0, 3));
        assert_eq!(
            next_address(n, gw, last, |ip| taken.contains(&ip)),
            Some(Ipv4Addr::new(10, 90, 0, 3))
        );
    }

    #[test]
    fn just_freed_address_is_not_reused_at_once() {
        let n = net("10.90.0.0/24");
        let gw = n.first_host();
        let taken: HashSet<_> = [Ipv4Addr::new(10, 90, 0, 3)].into();
        // .2 was freed after .4 was handed out: the next lease is .5.
        assert_eq!(
            next_address(n, gw, Some(Ipv4Addr::new(10, 90, 0, 4)), |ip| taken
                .contains(&ip)),
            Some(Ipv4Addr::new(10, 90, 0, 5))
        );
    }

    #[test]
    fn custom_gateway_is_skipped() {
        let n = net("10.90.0.0/30"); // hosts .1, .2
        assert_eq!(
            next_address(n, Ipv4Addr::new(10, 90, 0, 2), None, |_| false),
            Some(Ipv4Addr::new(10, 90, 0, 1))
        );
        assert_eq!(
            next_address(
                n,
                Ipv4Addr::new(10, 90, 0, 1),
                Some(Ipv4Addr::new(10, 90, 0, 2)),
                |ip| ip.octets()[3] == 2
            ),
            None
        );
    }
}

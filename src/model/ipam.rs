//! Address management: which subnet a new network gets (from pools, in
//! order) and which address a new endpoint gets. Pure functions over a "what is taken" view, so the
//! policy is testable without a database or a kernel.

use std::net::IpAddr;

use super::subnet::{self, from_u128, to_u128, truncating, Family, IpNet, Ipv6Net};

/// A range automatic subnets are cut from: consecutive /`size` prefixes
/// whose network addresses lie from `first` to `last` (one family).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    pub first: IpAddr,
    pub last: IpAddr,
    pub size: u8,
}

impl Pool {
    /// Every /`size` prefix inside `base` (Docker's `default-address-pools`
    /// entry `{"base": ..., "size": ...}`).
    pub fn of(base: IpNet, size: u8) -> Pool {
        Pool {
            first: base.network(),
            last: truncating(base.broadcast(), size).network(),
            size,
        }
    }

    pub fn family(&self) -> Family {
        Family::of(self.first)
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
        first: IpAddr::V4(first.into()),
        last: IpAddr::V4(last.into()),
        size: 24,
    };
    vec![
        pool([10, 89, 0, 0], [10, 127, 255, 0]),
        pool([172, 17, 0, 0], [172, 31, 255, 0]),
        pool([192, 168, 0, 0], [192, 168, 255, 0]),
    ]
}

/// The IPv6 pool berth uses unless configured otherwise: the /64s of the
/// host's unique local /48 (RFC 4193), as netavark gives each `--ipv6`
/// network a ULA /64.
pub fn default_pool6(ula: Ipv6Net) -> Pool {
    Pool::of(IpNet::V6(ula), 64)
}

/// The first subnet of the first pool of `family` that overlaps none of
/// `used`.
pub fn pick_subnet(pools: &[Pool], family: Family, used: &[IpNet]) -> Option<IpNet> {
    pools
        .iter()
        .filter(|p| p.family() == family)
        .find_map(|p| pick_in(p, used))
}

fn pick_in(pool: &Pool, used: &[IpNet]) -> Option<IpNet> {
    let mut candidate = Some(truncating(pool.first, pool.size));
    while let Some(net) = candidate {
        if to_u128(net.network()) > to_u128(pool.last) {
            return None;
        }
        match used.iter().find(|u| subnet::overlaps(u, &net)) {
            None => return Some(net),
            // Jump past the whole clashing range, not one subnet at a time,
            // so a host route like 10.0.0.0/8 costs one step.
            Some(clash) if clash.prefix_len() < pool.size => {
                candidate =
                    subnet::next(&clash.trunc()).map(|n| truncating(n.network(), pool.size));
            }
            Some(_) => candidate = subnet::next(&net),
        }
    }
    None
}

/// The next address to lend: the first free host address after `last`
/// (wrapping around), never the network (IPv6: subnet-router anycast),
/// gateway or broadcast address. Starting after the last one handed out
/// keeps a just-freed address from being reused at once, so a stale
/// neighbour entry or connection does not reach the wrong container.
pub fn next_address(
    subnet: IpNet,
    gateway: Option<IpAddr>,
    last: Option<IpAddr>,
    mut is_taken: impl FnMut(IpAddr) -> bool,
) -> Option<IpAddr> {
    let like = subnet.network();
    let first = to_u128(subnet::first_host(&subnet));
    let end = to_u128(subnet::last_host(&subnet));
    let size = end - first + 1;
    let start = match last {
        Some(ip) if subnet::is_host(&subnet, ip) && to_u128(ip) < end => to_u128(ip) + 1,
        _ => first,
    };
    // Lazy: a /64 is never walked further than its first free address.
    let mut i: u128 = 0;
    while i < size {
        let ip = from_u128(like, first + (start - first + i) % size);
        if Some(ip) != gateway && !is_taken(ip) {
            return Some(ip);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::Ipv4Addr;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn picks_first_free_pool_subnet() {
        let pools = default_pools();
        let pick = |used: &[IpNet]| pick_subnet(&pools, Family::V4, used);
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
        let pick = |used: &[IpNet]| pick_subnet(&pools, Family::V4, used);
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
            n = subnet::next(&n).unwrap();
        }
        assert_eq!(pick(&used), Some(net("192.168.255.0/24")));
    }

    #[test]
    fn configured_pools_are_cut_into_their_size() {
        let p = Pool::of(net("10.200.0.0/16"), 24);
        assert_eq!(p.first, IpAddr::V4(Ipv4Addr::new(10, 200, 0, 0)));
        assert_eq!(p.last, IpAddr::V4(Ipv4Addr::new(10, 200, 255, 0)));
        assert_eq!(p.to_string(), "10.200.0.0-10.200.255.0 in /24s");
        let p = Pool::of(net("192.168.0.0/16"), 20);
        assert_eq!(
            pick_subnet(&[p], Family::V4, &[]),
            Some(net("192.168.0.0/20"))
        );
        assert_eq!(
            pick_subnet(&[p], Family::V4, &[net("192.168.1.0/24")]),
            Some(net("192.168.16.0/20"))
        );
        assert_eq!(
            pick_subnet(
                &[p],
                Family::V4,
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
        assert_eq!(
            pick_subnet(&[one], Family::V4, &[]),
            Some(net("10.1.2.0/24"))
        );
        assert_eq!(pick_subnet(&[one], Family::V4, &[net("10.1.2.0/24")]), None);
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn leases_skip_reserved_and_continue_after_last() {
        let n = net("10.90.0.0/29"); // hosts .1-.6
        let gw = Some(subnet::first_host(&n));
        let mut taken = HashSet::new();
        let mut last = None;
        let mut got = vec![];
        while let Some(ip) = next_address(n, gw, last, |ip| taken.contains(&ip)) {
            taken.insert(ip);
            last = Some(ip);
            got.push(to_u128(ip) as u8);
        }
        assert_eq!(got, vec![2, 3, 4, 5, 6]);
        // Free .3; the next lease wraps around to it, since nothing else is free.
        taken.remove(&v4(10, 90, 0, 3));
        assert_eq!(
            next_address(n, gw, last, |ip| taken.contains(&ip)),
            Some(v4(10, 90, 0, 3))
        );
    }

    #[test]
    fn just_freed_address_is_not_reused_at_once() {
        let n = net("10.90.0.0/24");
        let gw = Some(subnet::first_host(&n));
        let taken: HashSet<_> = [v4(10, 90, 0, 3)].into();
        // .2 was freed after .4 was handed out: the next lease is .5.
        assert_eq!(
            next_address(n, gw, Some(v4(10, 90, 0, 4)), |ip| taken.contains(&ip)),
            Some(v4(10, 90, 0, 5))
        );
    }

    #[test]
    fn custom_gateway_is_skipped() {
        let n = net("10.90.0.0/30"); // hosts .1, .2
        assert_eq!(
            next_address(n, Some(v4(10, 90, 0, 2)), None, |_| false),
            Some(v4(10, 90, 0, 1))
        );
        assert_eq!(
            next_address(n, Some(v4(10, 90, 0, 1)), Some(v4(10, 90, 0, 2)), |ip| {
                ip == v4(10, 90, 0, 2)
            }),
            None
        );
    }

    #[test]
    fn ipv6_leases_skip_the_anycast_address_and_the_gateway() {
        let n = net("fd00:1::/120");
        let gw = Some(subnet::first_host(&n));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(next_address(n, gw, None, |_| false), Some(ip("fd00:1::2")));
        // After the last address of the prefix (a host address in IPv6)
        // it wraps around past fd00:1:: and the gateway.
        assert_eq!(
            next_address(n, gw, Some(ip("fd00:1::fe")), |_| false),
            Some(ip("fd00:1::ff"))
        );
        assert_eq!(
            next_address(n, gw, Some(ip("fd00:1::ff")), |_| false),
            Some(ip("fd00:1::2"))
        );
        // A /64 leases its first free address without walking it.
        let n = net("fd00:2::/64");
        assert_eq!(
            next_address(n, gw, Some(ip("fd00:2::ffff:ffff:ffff:fffe")), |_| false),
            Some(ip("fd00:2::ffff:ffff:ffff:ffff"))
        );
    }

    #[test]
    fn ipv6_subnets_come_from_the_ula_pool_and_skip_host_routes() {
        let ula = subnet::ula_prefix([0x12, 0x34, 0x56, 0x78, 0x9a]);
        let pools = vec![default_pools()[0], default_pool6(ula)];
        assert_eq!(
            pick_subnet(&pools, Family::V6, &[]),
            Some(net("fd12:3456:789a::/64"))
        );
        assert_eq!(
            pick_subnet(
                &pools,
                Family::V6,
                &[net("fd12:3456:789a::/63"), net("10.89.0.0/24")]
            ),
            Some(net("fd12:3456:789a:2::/64"))
        );
        assert_eq!(
            pick_subnet(&pools, Family::V4, &[]),
            Some(net("10.89.0.0/24"))
        );
    }
}

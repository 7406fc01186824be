//! Address management: which subnet a new network gets and which address a
//! new endpoint gets. Pure functions over a "what is taken" view, so the
//! policy is testable without a database or a kernel.

use std::net::Ipv4Addr;

use super::subnet::Ipv4Net;

/// Where automatically chosen network subnets come from: consecutive /24s
/// from 10.89.0.0 to 10.127.255.0, the first one that clashes with nothing.
pub const POOL_START: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 0);
pub const POOL_END: Ipv4Addr = Ipv4Addr::new(10, 127, 255, 0);
pub const POOL_PREFIX: u8 = 24;

/// The first pool subnet that overlaps none of `used`.
pub fn pick_subnet(used: &[Ipv4Net]) -> Option<Ipv4Net> {
    let mut candidate = Some(Ipv4Net::new_truncating(POOL_START, POOL_PREFIX));
    while let Some(net) = candidate {
        if u32::from(net.network()) > u32::from(POOL_END) {
            return None;
        }
        match used.iter().find(|u| u.overlaps(&net)) {
            None => return Some(net),
            // Jump past the whole clashing range, not one /24 at a time, so a
            // host route like 10.0.0.0/8 costs one step.
            Some(clash) if clash.prefix_len() < POOL_PREFIX => {
                candidate = Ipv4Net::new_truncating(clash.network(), clash.prefix_len())
                    .next()
                    .map(|n| Ipv4Net::new_truncating(n.network(), POOL_PREFIX));
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
        assert_eq!(pick_subnet(&[]), Some(net("10.89.0.0/24")));
        assert_eq!(
            pick_subnet(&[net("10.89.0.0/24")]),
            Some(net("10.89.1.0/24"))
        );
        assert_eq!(
            pick_subnet(&[net("10.89.0.0/16")]),
            Some(net("10.90.0.0/24"))
        );
        assert_eq!(pick_subnet(&[net("10.0.0.0/8")]), None);
        assert_eq!(
            pick_subnet(&[net("10.89.0.128/25")]),
            Some(net("10.89.1.0/24"))
        );
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

//! Names: what a network, endpoint or interface may be called, and the
//! deterministic device names berth derives, so that a device can be found
//! again from the state alone (for example after a crash).

use crate::error::Error;

/// Linux limits interface names to IFNAMSIZ - 1 bytes.
pub const IFNAME_MAX: usize = 15;
/// Longest endpoint name berth accepts (an endpoint's name is a DNS label).
pub const NAME_MAX: usize = 64;
/// Longest network name berth accepts: Podman's. Podman checks no length
/// but keeps each network in `NAME.json`, and a file name has at most 255
/// bytes, so its networks have names of up to 250. Nothing berth derives
/// from a network name limits it further: devices get hashed names when
/// the readable ones do not fit, and so do nftables chains ([`shortened`]).
pub const NETWORK_NAME_MAX: usize = 250;

/// Checks an endpoint (or namespace) name: it becomes part of messages and
/// DNS names, so it is kept to a conservative alphabet.
pub fn check_name(what: &str, name: &str) -> Result<(), Error> {
    check_name_up_to(what, name, NAME_MAX)
}

/// Checks a network name: the alphabet of [`check_name`], up to
/// [`NETWORK_NAME_MAX`] bytes.
pub fn check_network_name(name: &str) -> Result<(), Error> {
    if name.len() > NETWORK_NAME_MAX && check_name_up_to("network", name, usize::MAX).is_ok() {
        return Err(Error::invalid(format!(
            "network name {}... has {} bytes: at most {NETWORK_NAME_MAX}, as Podman (its NAME.json must fit a 255-byte file name)",
            &name[..32],
            name.len()
        )));
    }
    check_name_up_to("network", name, NETWORK_NAME_MAX)
}

fn check_name_up_to(what: &str, name: &str, max: usize) -> Result<(), Error> {
    let ok_first = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let ok_rest = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok_first || !ok_rest || name.len() > max {
        return Err(Error::invalid(format!(
            "invalid {what} name {name:?}: use 1-{max} letters, digits, '-', '_' or '.', starting with a letter or digit"
        )));
    }
    Ok(())
}

/// `name` when it has at most `max` bytes, else its first bytes, `~` and
/// 16 hex digits of its hash, in `max` bytes: a stable, unique stand-in
/// where a kernel limit is shorter than a name (`~` is in no name, so a
/// stand-in never equals another name). `max` must exceed 17.
pub fn shortened(name: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if name.len() <= max {
        return name.into();
    }
    let keep = name
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .take_while(|end| *end <= max - 17)
        .last()
        .unwrap_or(0);
    format!("{}~{:016x}", &name[..keep], fnv1a(name.as_bytes())).into()
}

/// Checks an interface name the way the kernel's `dev_valid_name` does.
pub fn check_ifname(what: &str, name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(Error::invalid(format!(
            "invalid {what} {name:?}: an interface name has 1-{IFNAME_MAX} bytes"
        )));
    }
    if name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || !b.is_ascii_graphic())
    {
        return Err(Error::invalid(format!(
            "invalid {what} {name:?}: no '/', ':', spaces or control characters"
        )));
    }
    Ok(())
}

/// The first `ethN` none of `used` (a namespace's berth interfaces) is.
pub fn free_ifname<'a>(used: impl Iterator<Item = &'a str> + Clone) -> String {
    let free = (0..)
        .map(|i| format!("eth{i}"))
        .find(|n| !used.clone().any(|u| u == n));
    free.expect("an unbounded range has a free name")
}

/// The bridge name a network gets when none is given: `berth-NAME` while it
/// fits, otherwise a stable hash of the name.
pub fn default_bridge_name(network: &str) -> String {
    let readable = format!("berth-{network}");
    if readable.len() <= IFNAME_MAX && check_ifname("bridge", &readable).is_ok() {
        readable
    } else {
        format!("br-b{:011x}", fnv1a(network.as_bytes()) & 0xfff_ffff_ffff)
    }
}

/// The host-side veth name of an endpoint: a stable function of network and
/// endpoint name, so a crashed connect can be cleaned up from the state.
pub fn host_veth_name(network: &str, endpoint: &str) -> String {
    let mut key = network.as_bytes().to_vec();
    key.push(b'/');
    key.extend_from_slice(endpoint.as_bytes());
    format!("vb{:012x}", fnv1a(&key) & 0xffff_ffff_ffff)
}

/// The name a macvlan/ipvlan child of the endpoint is born with in its
/// namespace (before it is renamed to the container's interface name):
/// `vc` and the same 12 hex digits as [`host_veth_name`]. An endpoint
/// records it where a bridge endpoint records its host veth, so the shape
/// of that column tells the two apart, and a child left under this name in
/// berth's link group is provably berth's.
pub fn child_name(network: &str, endpoint: &str) -> String {
    format!("vc{}", &host_veth_name(network, endpoint)[2..])
}

/// Whether `name` has the shape of a child name berth derives.
pub fn is_child_name(name: &str) -> bool {
    // A host veth's name with `vc` for `vb`, checked in place: a listing
    // asks this of every endpoint.
    name.len() == 14
        && name.starts_with("vc")
        && name[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The ifb device that shapes what the endpoint with host veth
/// `host_veth` sends: `ib` and the veth's 12 hex digits, so it too is a
/// pure function of the state.
pub fn ifb_name(host_veth: &str) -> String {
    format!("ib{}", host_veth.get(2..).unwrap_or_default())
}

/// Whether `name` has the shape of an ifb name berth derives.
pub fn is_ifb_name(name: &str) -> bool {
    name.strip_prefix("ib")
        .is_some_and(|rest| is_host_veth_name(&format!("vb{rest}")))
}

/// Whether a link can be proved berth's ifb device: berth's ifb name shape
/// and one of the networks' link groups (as for [`is_berths_veth`]).
pub fn is_berths_ifb(name: &str, group: u32) -> bool {
    is_ifb_name(name) && is_berth_group(group) && group != BRIDGE_GROUP
}

/// Link groups mark the devices berth made. A network's veths are in
/// `LINK_GROUP_BASE + network id` (so all of them go in one request), its
/// bridge in `BRIDGE_GROUP`; the group is set in the very request that
/// creates the device, so a device in one of these groups with one of
/// berth's name shapes is provably berth's, and a leftover can be removed
/// without touching anything else.
pub const LINK_GROUP_BASE: u32 = 0x6265_0000;
/// Network ids start at 1, so group `LINK_GROUP_BASE + 0` is free for bridges.
pub const BRIDGE_GROUP: u32 = LINK_GROUP_BASE;

/// The link group links are gathered in to be deleted together (one
/// request, one RCU grace period for all). It is one of berth's groups, so
/// `berth gc` removes anything a crash left in it.
pub const DOOMED_GROUP: u32 = LINK_GROUP_BASE | 0xffff;

/// The link group of links taken out of service by a disconnect and not
/// yet deleted ("pending"): deleting one link waits for an RCU grace
/// period (~20 ms), deleting a group of them waits for one in all. A
/// pending link is down, has no master and no address, and carries a
/// pending name ([`pending_name`]); the supervisor deletes the group
/// shortly after a disconnect, and the reconcile (`up`, `gc`, a
/// preflight's repair) deletes it whenever it finds one there. It is the
/// group links are gathered in to be deleted together
/// ([`DOOMED_GROUP`]), so every such delete (`network rm`'s bridge,
/// `reset`, CNI GC) takes the pending links along in the same request,
/// at no extra grace period. Only berth moves links into it, so the whole
/// group may go.
pub const PENDING_GROUP: u32 = DOOMED_GROUP;

/// The name a host-side link of berth's (`vb…` veth, `ib…` ifb) carries
/// while it waits in [`PENDING_GROUP`] (its veth peer too, inside the
/// container's namespace): `vp`/`vq` and the same 12 hex digits. So the
/// endpoint's own names are free at once for a connect of the same name.
pub fn pending_name(name: &str) -> String {
    let digits = name.get(2..).unwrap_or_default();
    if name.starts_with("ib") {
        format!("vq{digits}")
    } else {
        format!("vp{digits}")
    }
}

/// Whether `name` has the shape of a [`pending_name`].
pub fn is_pending_name(name: &str) -> bool {
    ["vp", "vq"].iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|rest| is_host_veth_name(&format!("vb{rest}")))
    })
}

/// The link group of network `id`'s veths.
pub fn network_link_group(id: i64) -> u32 {
    LINK_GROUP_BASE + (id as u32 & 0xffff)
}

/// Whether `group` is one of berth's.
pub fn is_berth_group(group: u32) -> bool {
    group & 0xffff_0000 == LINK_GROUP_BASE
}

/// Whether a link berth did not create in this run can be proved berth's
/// host-side veth: the name shape berth derives and one of the networks'
/// link groups (set in the request that made it). Only such a link is
/// deleted as a leftover.
pub fn is_berths_veth(name: &str, group: u32) -> bool {
    is_host_veth_name(name) && is_berth_group(group) && group != BRIDGE_GROUP
}

/// Whether `name` has the shape of a host-side veth name berth derives.
pub fn is_host_veth_name(name: &str) -> bool {
    name.len() == 14
        && name.starts_with("vb")
        && name[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// FNV-1a, 64 bit: tiny, stable across releases and platforms, and good
/// enough to spread names; collisions are caught by the state's uniqueness.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_ifname_is_the_first_gap() {
        assert_eq!(free_ifname([].into_iter()), "eth0");
        assert_eq!(free_ifname(["eth0", "eth2"].into_iter()), "eth1");
        assert_eq!(free_ifname(["eth1", "eth0", "net9"].into_iter()), "eth2");
    }

    #[test]
    fn pending_names_keep_the_digits_and_free_the_endpoint_names() {
        let veth = host_veth_name("web", "c1");
        let pending = pending_name(&veth);
        assert_eq!(&pending[2..], &veth[2..]);
        assert!(pending.starts_with("vp") && is_pending_name(&pending));
        assert!(!is_host_veth_name(&pending), "not taken for a live veth");
        let ifb = pending_name(&ifb_name(&veth));
        assert!(ifb.starts_with("vq") && is_pending_name(&ifb));
        assert_ne!(ifb, pending);
        assert!(!is_pending_name(&veth));
        assert!(is_berth_group(PENDING_GROUP));
    }

    #[test]
    fn names() {
        assert!(check_name("network", "web").is_ok());
        assert!(check_name("network", "a.b_c-1").is_ok());
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_name("endpoint", bad).is_err(), "{bad:?}");
        }
        // Podman's longest network name, and one past it.
        assert!(check_network_name(&"x".repeat(250)).is_ok());
        let err = check_network_name(&"x".repeat(251)).unwrap_err();
        assert!(err.to_string().contains("251 bytes: at most 250"), "{err}");
        assert!(check_network_name("a/b").is_err());
    }

    #[test]
    fn shortened_names_fit_and_stay_apart() {
        assert_eq!(shortened("web", 20), "web");
        let a = "a".repeat(300);
        let b = format!("{}b", "a".repeat(299));
        let (sa, sb) = (shortened(&a, 100), shortened(&b, 100));
        assert_eq!(sa.len(), 100);
        assert!(sa.starts_with(&"a".repeat(83)) && sa.contains('~'), "{sa}");
        assert_ne!(sa, sb);
        assert_eq!(sa, shortened(&a, 100), "stable");
    }

    #[test]
    fn ifnames() {
        assert!(check_ifname("ifname", "eth0").is_ok());
        assert!(check_ifname("ifname", "abcdefghijklmno").is_ok());
        for bad in ["", "abcdefghijklmnop", "a/b", "a b", ".", "..", "a:1"] {
            assert!(check_ifname("ifname", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn derived_names_fit_and_are_stable() {
        assert_eq!(default_bridge_name("web"), "berth-web");
        let long = default_bridge_name("a-very-long-network-name");
        assert!(
            long.len() <= IFNAME_MAX && long.starts_with("br-b"),
            "{long}"
        );
        assert_eq!(long, default_bridge_name("a-very-long-network-name"));
        let v = host_veth_name("web", "c1");
        assert_eq!(v.len(), 14);
        assert_eq!(v, host_veth_name("web", "c1"));
        assert_ne!(v, host_veth_name("web", "c2"));
        assert_ne!(v, host_veth_name("we", "bc1"));
        assert!(check_ifname("veth", &v).is_ok());
        assert!(is_host_veth_name(&v));
        assert!(!is_host_veth_name("vbxyz"));
        assert!(!is_host_veth_name("eth0"));
    }

    #[test]
    fn groups() {
        assert!(is_berth_group(BRIDGE_GROUP));
        assert!(is_berth_group(network_link_group(7)));
        assert!(!is_berth_group(0));
        assert!(!is_berth_group(1650786305 + 0x10000));
        let v = host_veth_name("web", "c1");
        assert!(is_berths_veth(&v, network_link_group(3)));
        assert!(!is_berths_veth(&v, 0), "not in a berth group");
        assert!(!is_berths_veth(&v, BRIDGE_GROUP), "the bridges' group");
        assert!(!is_berths_veth("eth0", network_link_group(3)));
    }

    #[test]
    fn an_endpoints_ifb_is_named_after_its_veth() {
        let v = host_veth_name("web", "c1");
        let ifb = ifb_name(&v);
        assert_eq!(&ifb[2..], &v[2..]);
        assert!(ifb.starts_with("ib") && check_ifname("ifb", &ifb).is_ok());
        assert!(is_ifb_name(&ifb) && !is_host_veth_name(&ifb));
        assert!(!is_ifb_name(&v) && !is_ifb_name("ifb0"));
        assert!(is_berths_ifb(&ifb, network_link_group(3)));
        assert!(!is_berths_ifb(&ifb, 0));
        assert!(!is_berths_veth(&ifb, network_link_group(3)));
    }
}

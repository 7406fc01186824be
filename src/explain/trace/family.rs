//! The one family a traced flow is in (its destination's), and what
//! berth's model and ruleset call things in it: a flow never changes
//! family on its way, so an endpoint or network without an address of
//! that family stands for the unspecified address, which no flow has.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{Endpoint, Family, IpNet, Network};

/// The unspecified address of `fam`.
pub fn unspecified(fam: Family) -> IpAddr {
    match fam {
        Family::V4 => Ipv4Addr::UNSPECIFIED.into(),
        Family::V6 => Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// The endpoint's address of `fam`, or the unspecified one.
pub fn ip(e: &Endpoint, fam: Family) -> IpAddr {
    e.ips
        .iter()
        .copied()
        .find(|ip| Family::of(*ip) == fam)
        .unwrap_or_else(|| unspecified(fam))
}

/// The network's gateway of `fam`, or the unspecified address.
pub fn gateway(n: &Network, fam: Family) -> IpAddr {
    n.subnet_of(fam)
        .and_then(|s| s.gateway)
        .unwrap_or_else(|| unspecified(fam))
}

/// The network's subnet of `fam`, or the unspecified address alone
/// (which holds no flow's address).
pub fn subnet(n: &Network, fam: Family) -> IpNet {
    n.subnet_of(fam).map(|s| s.net).unwrap_or_else(|| {
        let any = unspecified(fam);
        IpNet::new(any, if fam == Family::V4 { 32 } else { 128 }).expect("a full-length prefix")
    })
}

/// Whether `ip` is a loopback address (127.0.0.0/8, ::1).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// The loopback range as berth's rules name it.
pub fn loopback_text(fam: Family) -> &'static str {
    match fam {
        Family::V4 => "127.0.0.0/8",
        Family::V6 => "::1",
    }
}

/// `ip` or `ip6`: the nft expression's protocol for an address.
pub fn nft_ip(fam: Family) -> &'static str {
    match fam {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

/// The suffix of berth's per-family sets and maps (`subnets4`, `allowed6`).
pub fn suffix(fam: Family) -> char {
    match fam {
        Family::V4 => '4',
        Family::V6 => '6',
    }
}

/// The sysctl that lets the host route the family.
pub fn forwarding_sysctl(fam: Family) -> &'static str {
    match fam {
        Family::V4 => "net.ipv4.ip_forward",
        Family::V6 => "net.ipv6.conf.all.forwarding",
    }
}

/// br_netfilter's switch for the family.
pub fn br_netfilter_sysctl(fam: Family) -> &'static str {
    match fam {
        Family::V4 => "net.bridge.bridge-nf-call-iptables",
        Family::V6 => "net.bridge.bridge-nf-call-ip6tables",
    }
}

/// The per-bridge br_netfilter option for the family.
pub fn bridge_option(fam: Family) -> &'static str {
    match fam {
        Family::V4 => "nf_call_iptables",
        Family::V6 => "nf_call_ip6tables",
    }
}

/// Every address of `fam`, as an interval map's key shows it.
pub fn subnet_any(fam: Family) -> String {
    match fam {
        Family::V4 => "0.0.0.0/0".into(),
        Family::V6 => "::/0".into(),
    }
}

/// `addr:port`, IPv6 in brackets.
pub fn with_port(ip: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

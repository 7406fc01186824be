//! The endpoints as the default `ps` and `network inspect` tables show
//! them, read in place: one query with only the columns those tables
//! print, each row handed out as borrowed text while SQLite holds it. No
//! [`Endpoint`](crate::model::Endpoint) is built and no mapping parsed:
//! at 1000 endpoints x 4 ports building them was over half of a `ps`.
//! The checks [`endpoint_from_row`](super::endpoint_from_row) makes of
//! each row are made here too, so a damaged row fails the same way.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rusqlite::types::ValueRef;
use rusqlite::Row;

use super::{bad_column, bandwidth_of, Tx};
use crate::error::Result;
use crate::model::{names, Bandwidth, Mac};

/// One endpoint as a listing prints it.
pub struct ListedEndpoint<'a> {
    pub id: i64,
    pub network: &'a str,
    pub name: &'a str,
    pub netns: &'a str,
    pub netns_inode: u64,
    pub ip4: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Addr>,
    /// As `Mac` prints it (lower case, colons).
    pub mac: Cow<'a, str>,
    pub ifname: &'a str,
    pub host_ifname: &'a str,
    pub bandwidth: Bandwidth,
    /// The row's intent: `ready`, `creating` or `removing`.
    pub status: &'a str,
    /// The published ports' text (schema version 17).
    pub published: &'a str,
    pub owner: Option<&'a str>,
}

impl ListedEndpoint<'_> {
    /// Its addresses, IPv4 first, as an [`Endpoint`](crate::model::Endpoint)
    /// holds them.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> {
        let v4 = self.ip4.map(IpAddr::V4);
        let v6 = self.ip6.map(IpAddr::V6);
        v4.into_iter().chain(v6)
    }

    /// Whether it hangs off the bridge by a veth (not a macvlan/ipvlan
    /// child), as [`Endpoint::has_veth`](crate::model::Endpoint::has_veth).
    pub fn has_veth(&self) -> bool {
        !names::is_child_name(self.host_ifname)
    }
}

const COLUMNS: &str =
    "e.id, n.name, e.name, e.netns, e.netns_inode, e.ip, e.ip6, e.mac, e.ifname, \
     e.host_ifname, e.bw_in_rate, e.bw_in_burst, e.bw_out_rate, e.bw_out_burst, e.status, \
     e.published, e.owner";

impl Tx<'_> {
    /// Hands `each` every endpoint, in `ps`'s order (by network name,
    /// then address), or those of network `network_id` in `network
    /// inspect`'s (by address).
    pub fn each_listed_endpoint(
        &self,
        network_id: Option<i64>,
        mut each: impl FnMut(&ListedEndpoint) -> Result<()>,
    ) -> Result<()> {
        let mut run = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Result<()> {
            let mut stmt = self.tx.prepare_cached(sql)?;
            let mut rows = stmt.query(params)?;
            while let Some(row) = rows.next()? {
                each(&listed(row)?)?;
            }
            Ok(())
        };
        match network_id {
            // As `endpoints_with_status` orders them, and so read in the
            // order of the (network_id, ip) index, without a sort.
            None => run(
                &format!(
                    "SELECT {COLUMNS} FROM endpoints e JOIN networks n ON n.id = e.network_id
                     ORDER BY n.name, e.ip"
                ),
                &[],
            ),
            // As `Tx::endpoints` orders them (`e.ip, e.ip6, e.id`), in two
            // parts: those without an IPv4 address (NULLs first), then
            // the rest in the order of the index, whose addresses are
            // unique, so that only the first part (usually none) is sorted.
            Some(id) => {
                run(
                    &format!(
                        "SELECT {COLUMNS} FROM endpoints e JOIN networks n ON n.id = e.network_id
                         WHERE e.network_id = ?1 AND e.ip IS NULL ORDER BY e.ip6, e.id"
                    ),
                    &[&id],
                )?;
                run(
                    &format!(
                        "SELECT {COLUMNS} FROM endpoints e JOIN networks n ON n.id = e.network_id
                         WHERE e.network_id = ?1 AND e.ip IS NOT NULL ORDER BY e.ip"
                    ),
                    &[&id],
                )
            }
        }
    }
}

fn text<'r>(row: &'r Row, i: usize) -> rusqlite::Result<&'r str> {
    match row.get_ref(i)? {
        ValueRef::Text(t) => std::str::from_utf8(t).map_err(|_| bad_column(i, "not UTF-8")),
        other => Err(rusqlite::Error::InvalidColumnType(
            i,
            String::new(),
            other.data_type(),
        )),
    }
}

fn listed<'r>(row: &'r Row) -> rusqlite::Result<ListedEndpoint<'r>> {
    let ip6 = match row.get_ref(6)? {
        ValueRef::Null => None,
        _ => {
            let t = text(row, 6)?;
            Some(t.parse().map_err(|_| bad_column(6, t))?)
        }
    };
    let mac = match text(row, 7)? {
        // What every writer stores: shown as it is.
        m if is_canonical_mac(m) => Cow::Borrowed(m),
        m => Cow::Owned(m.parse::<Mac>().map_err(|_| bad_column(7, m))?.to_string()),
    };
    let ifname = text(row, 8)?;
    names::check_ifname("interface", ifname).map_err(|_| bad_column(8, ifname))?;
    let host_ifname = text(row, 9)?;
    if !names::is_host_veth_name(host_ifname) && !names::is_child_name(host_ifname) {
        return Err(bad_column(9, host_ifname));
    }
    Ok(ListedEndpoint {
        id: row.get(0)?,
        network: text(row, 1)?,
        name: text(row, 2)?,
        netns: text(row, 3)?,
        netns_inode: row.get::<_, i64>(4)? as u64,
        ip4: row.get::<_, Option<u32>>(5)?.map(Ipv4Addr::from),
        ip6,
        mac,
        ifname,
        host_ifname,
        bandwidth: bandwidth_of(row.get(10)?, row.get(11)?, row.get(12)?, row.get(13)?),
        status: text(row, 14)?,
        published: text(row, 15)?,
        owner: match row.get_ref(16)? {
            ValueRef::Null => None,
            _ => Some(text(row, 16)?),
        },
    })
}

/// Whether `mac` is six lower-case hex pairs joined by colons: the text
/// `Mac` prints, so it can be shown as it is stored.
fn is_canonical_mac(mac: &str) -> bool {
    let b = mac.as_bytes();
    b.len() == 17
        && b.iter().enumerate().all(|(i, c)| match i % 3 {
            2 => *c == b':',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{endpoint_c1, insert_web, temp_dir};
    use super::super::Store;
    use super::*;
    use crate::model::{ports::published_text, Endpoint, Limit, PortSpec};

    /// What a listing reads of each endpoint, as text, from the lean rows
    /// and from full `Endpoint`s: the two must agree.
    fn seen(e: &ListedEndpoint) -> String {
        let ips: Vec<String> = e.ips().map(|ip| ip.to_string()).collect();
        format!(
            "{} {} {} {} [{}] {} {} {} {} [{}] {} {:?}",
            e.network,
            e.name,
            e.netns,
            e.netns_inode,
            ips.join(", "),
            e.mac,
            e.ifname,
            e.host_ifname,
            e.status,
            e.published,
            e.bandwidth.summary(),
            e.owner
        )
    }

    /// A full `Endpoint` as the lean reader hands it out (settled rows
    /// only), so both sides print through `seen`.
    fn as_listed<'a>(e: &'a Endpoint, published: &'a str) -> ListedEndpoint<'a> {
        ListedEndpoint {
            id: e.id,
            network: &e.network,
            name: &e.name,
            netns: &e.netns,
            netns_inode: e.netns_inode,
            ip4: e.ips.iter().find_map(|ip| match ip {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            }),
            ip6: e.ips.iter().find_map(|ip| match ip {
                IpAddr::V6(v6) => Some(*v6),
                IpAddr::V4(_) => None,
            }),
            mac: Cow::Owned(e.mac.to_string()),
            ifname: &e.ifname,
            host_ifname: &e.host_ifname,
            bandwidth: e.bandwidth,
            status: "ready",
            published,
            owner: None,
        }
    }

    #[test]
    fn listed_rows_say_what_full_endpoints_say_in_their_order() {
        let dir = temp_dir("listed");
        let mut store = Store::open(&dir).unwrap();
        let tx = store.begin().unwrap();
        let net = insert_web(&tx);
        let m = |s: &str| PortSpec::parse(s).unwrap().with_host_port(0);
        // Inserted out of address order, one with ports in two calls,
        // one with a limit, one without an IPv4 address.
        let mut made = Vec::new();
        for (name, last, ports) in [
            ("c3", 9, vec![m("8080:80"), m("127.0.0.1:5353:53/udp")]),
            ("c1", 3, vec![]),
            ("c2", 5, vec![m("9000-9001:90-91")]),
            ("c4", 0, vec![]),
        ] {
            let mut e = endpoint_c1(7);
            e.name = name.into();
            e.netns = name.into();
            e.host_ifname = crate::model::names::host_veth_name("web", name);
            e.ips = match last {
                0 => vec![],
                n => vec![std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 90, 0, n))],
            };
            if name == "c1" {
                e.bandwidth.inbound = Some(Limit {
                    rate: 10_000_000,
                    burst: 10_000,
                });
            }
            let id = tx.insert_endpoint(&net, &e).unwrap();
            if let Some((first, rest)) = ports.split_first() {
                tx.insert_ports(id, std::slice::from_ref(first)).unwrap();
                tx.insert_ports(id, rest).unwrap();
            }
            made.push(id);
        }
        tx.commit().unwrap();
        let tx = store.read().unwrap();
        let mut full = tx.endpoints(Some(net.id)).unwrap();
        tx.load_ports(&mut full).unwrap();
        let want: Vec<String> = full
            .iter()
            .map(|e| seen(&as_listed(e, &published_text(&e.ports))))
            .collect();
        for network_id in [Some(net.id), None] {
            let mut got = Vec::new();
            tx.each_listed_endpoint(network_id, |e| {
                got.push(seen(e));
                Ok(())
            })
            .unwrap();
            assert_eq!(got, want, "{network_id:?}");
        }
        assert!(want[0].contains(" c4 "), "no address first: {want:?}");
        assert!(want[3].contains("8080->80/tcp, 127.0.0.1:"), "{want:?}");
        drop(tx);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn canonical_macs_are_those_mac_prints() {
        let mac: Mac = "02:42:AC:11:00:0A".parse().unwrap();
        assert!(is_canonical_mac(&mac.to_string()));
        assert!(!is_canonical_mac("02:42:AC:11:00:0A"));
        assert!(!is_canonical_mac("02-42-ac-11-00-0a"));
        assert!(!is_canonical_mac("02:42:ac:11:00"));
    }
}

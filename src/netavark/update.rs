//! `update`: a Podman network's own upstream DNS servers, which Podman 4.7
//! and later change with `podman network update --dns-add/--dns-drop`
//! (`netavark update NETWORK --network-dns-servers A,B`). Podman also
//! sends them with every setup (`network_dns_servers`). berth's DNS server
//! forwards the queries of that network's containers for names it does
//! not know to them instead of the host's resolvers.

use std::net::IpAddr;

use crate::change::{compensation, Change, Intent, Planned, Prepared};
use crate::context::{Context, DnsScope};
use crate::error::{Error, Result};
use crate::executor::{transaction, Preflight};
use crate::plan::Plan;
use crate::store::Tx;

use super::setup::OWNER;

/// The servers as Podman spells them: comma-separated, possibly in
/// several arguments; an empty string means none.
pub fn parse_servers(values: &[String]) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for v in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if v.is_empty() {
            continue;
        }
        let ip = v.parse::<IpAddr>().map_err(|_| {
            Error::invalid(format!("invalid DNS server {v:?}: expected an IP address"))
        })?;
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// Sets a Podman network's upstream DNS servers in berth's state and has
/// the DNS server read them. No kernel change.
pub struct SetDnsServers {
    pub network: String,
    pub servers: Vec<IpAddr>,
}

impl Change for SetDnsServers {
    type Output = ();

    fn prepare(&mut self, _ctx: &mut Context, tx: &Tx) -> Result<Prepared<()>> {
        let Some(network) = tx.network(&self.network)? else {
            return Ok(Prepared::Unchanged(()));
        };
        if tx.network_owner(&self.network)?.as_deref() != Some(OWNER) {
            return Err(Error::invalid(format!(
                "berth's network {:?} was not made by Podman; its DNS servers are not Podman's to change",
                self.network
            )));
        }
        let before = tx.network_dns_servers(network.id)?;
        if before == self.servers {
            return Ok(Prepared::Unchanged(()));
        }
        tx.set_network_dns_servers(network.id, &self.servers)?;
        let mut planned = Planned::new(Plan::new(), Intent::rows(Vec::new()), ());
        planned.dns = network.policy.dns.then_some(DnsScope::All);
        planned.undo = Some(compensation(SetDnsServers {
            network: self.network.clone(),
            servers: before,
        }));
        Ok(Prepared::Change(planned))
    }
}

/// `netavark update NETWORK --network-dns-servers ...`. A network berth
/// does not have (no container of it runs) is no error: Podman keeps the
/// servers in its own definition and sends them with the next setup.
pub fn update(ctx: &mut Context, network: &str, servers: Vec<IpAddr>) -> Result<()> {
    crate::model::names::check_network_name(network)?;
    transaction(ctx, Preflight::Run, |txn| {
        txn.apply(SetDnsServers {
            network: network.to_string(),
            servers,
        })
    })?
    .applied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_read_as_podman_joins_them() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_servers(&v(&["8.8.8.8,1.1.1.1", "8.8.8.8", "fd00::1"])).unwrap(),
            ["8.8.8.8", "1.1.1.1", "fd00::1"]
                .map(|s| s.parse::<IpAddr>().unwrap())
                .to_vec()
        );
        assert!(parse_servers(&v(&[""])).unwrap().is_empty());
        let err = parse_servers(&v(&["8.8.8.8,dns.example"])).unwrap_err();
        assert!(err.to_string().contains("dns.example"), "{err}");
    }
}

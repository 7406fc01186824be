//! The deferred veth delete through the commands, against the fake
//! kernel: a disconnect takes its links out of service (down, no master,
//! renamed into the pending group, the peer down and renamed in its
//! namespace) and tells the supervisor; the endpoint's names are free at
//! once for a connect of the same name; a second disconnect of that name
//! before the first links went deletes the group first; the reconcile,
//! `network rm` and `reset` delete what is pending.

use super::tests::{host, Host};
use super::*;
use crate::kernel::fake::FakeLink;
use crate::model::names;
use crate::request::{DetachRequest, EndpointRef};

fn pending(h: &mut Host) -> Vec<FakeLink> {
    h.fake()
        .links
        .iter()
        .filter(|l| l.netns.is_none() && l.fact.group == names::PENDING_GROUP)
        .cloned()
        .collect()
}

#[test]
fn a_disconnect_leaves_its_veth_pending_and_the_name_free_at_once() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    let e = h.connect("web", "c1", &["8080:80"]);
    h.disconnect("web", "c1");
    // Nothing was deleted: the veth waits, out of service.
    assert!(
        !h.fake().log.iter().any(|l| l.starts_with("delete")),
        "{:?}",
        h.fake().log
    );
    let waiting = pending(&mut h);
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let veth = &waiting[0].fact;
    let pending_name = names::pending_name(&e.host_ifname);
    assert_eq!(
        (veth.name.as_str(), veth.up, veth.master),
        (pending_name.as_str(), false, None)
    );
    // Its peer is down and renamed in the namespace; eth0 is free there.
    let netns = std::path::PathBuf::from("/run/netns/c1");
    let peer = h.fake().link_in(Some(&netns), &pending_name).cloned();
    assert!(peer.is_some_and(|p| !p.fact.up));
    assert!(h.fake().link_in(Some(&netns), "eth0").is_none());
    // The row, lease and ports went; the supervisor was told of one.
    assert_eq!(h.rows(), ["network web 10.90.0.0/24 ready"]);
    assert_eq!(h.pending.borrow().last(), Some(&1));
    // A pending link is no endpoint and no leftover: nothing to repair
    // but the pending link itself.
    assert_eq!(ps_names(&mut h), Vec::<String>::new());

    // The same name again, at once: the same veth name, eth0 again.
    let again = h.connect("web", "c1", &["8080:80"]);
    assert_eq!(again.host_ifname, e.host_ifname);
    assert!(h.fake().link_in(Some(&netns), "eth0").is_some());
    assert_eq!(pending(&mut h).len(), 1, "the first one still waits");

    // Disconnected again before the first links went: their names are
    // taken, so the group goes first, then the new ones wait.
    h.disconnect("web", "c1");
    assert!(
        h.fake()
            .log
            .iter()
            .any(|l| l == &format!("delete_link_group {}", names::PENDING_GROUP)),
        "{:?}",
        h.fake().log
    );
    assert_eq!(pending(&mut h).len(), 1);
    assert!(h.fake().link_in(Some(&netns), &pending_name).is_some());

    // The reconcile, as the backstop, deletes what waits.
    let report = maintain::up(&mut h.ctx).unwrap().applied().unwrap();
    assert_eq!(
        report,
        ["deleted 1 link(s) disconnects had left pending"],
        "{report:?}"
    );
    assert!(pending(&mut h).is_empty());
    assert!(h.fake().link_in(Some(&netns), &pending_name).is_none());
    assert!(maintain::up(&mut h.ctx)
        .unwrap()
        .applied()
        .unwrap()
        .is_empty());
}

fn ps_names(h: &mut Host) -> Vec<String> {
    endpoint::list(&mut h.ctx)
        .unwrap()
        .into_iter()
        .map(|(e, _, _)| e.name)
        .collect()
}

#[test]
fn network_rm_and_reset_take_the_pending_links_along_in_their_request() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    h.connect("web", "c1", &[]);
    h.disconnect("web", "c1");
    assert_eq!(pending(&mut h).len(), 1);
    remove_network(&mut h.ctx, "web", false).unwrap();
    assert!(pending(&mut h).is_empty());
    assert!(h.host_links().is_empty(), "{:?}", h.host_links());

    h.network("web", "10.90.0.0/24");
    h.connect("web", "c1", &[]);
    h.disconnect("web", "c1");
    assert_eq!(pending(&mut h).len(), 1);
    reset(&mut h.ctx).unwrap();
    assert!(h.host_links().is_empty(), "{:?}", h.host_links());
}

#[test]
fn a_namespace_that_is_not_the_recorded_one_is_left_alone() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    let e = h.connect("web", "c1", &[]);
    // The name now points at another namespace (the veth's is elsewhere).
    let path = std::path::PathBuf::from("/run/netns/c1");
    for (p, inode) in &mut h.fake().namespaces {
        if *p == path {
            *inode += 1000;
        }
    }
    let plan = h.plan(|ctx| disconnect(ctx, DetachRequest::new("web", EndpointRef::Id(e.id))));
    assert!(!plan.contains("ip -n c1"), "{plan}");
    assert!(plan.contains("down nomaster"), "{plan}");
}

/// A supervisor's stand-in that says the bound is reached, or that none
/// can be started.
struct Saturated {
    bound_reached: bool,
    supervisor_fails: bool,
}

impl crate::context::NameService for Saturated {
    fn sync(
        &mut self,
        _state_dir: &std::path::Path,
        _scope: crate::context::DnsScope,
    ) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn supervise(
        &mut self,
        _state_dir: &std::path::Path,
        _pending: usize,
        _nft: Option<std::os::fd::OwnedFd>,
    ) -> Result<()> {
        if self.supervisor_fails {
            return Err(crate::error::Error::Other("cannot start".into()));
        }
        Ok(())
    }

    fn note_pending(&mut self, _state_dir: &std::path::Path, pending: usize) -> Result<bool> {
        Ok(pending > 0 && self.bound_reached)
    }
}

#[test]
fn past_the_bound_or_without_a_supervisor_the_disconnect_deletes_the_group_itself() {
    for (bound_reached, supervisor_fails) in [(true, false), (false, true)] {
        let mut h = host();
        h.network("web", "10.90.0.0/24");
        h.netns("c1");
        h.netns("c2");
        h.connect("web", "c1", &[]);
        h.connect("web", "c2", &[]);
        h.disconnect("web", "c1");
        assert_eq!(pending(&mut h).len(), 1);
        h.ctx.names = Box::new(Saturated {
            bound_reached,
            supervisor_fails,
        });
        h.disconnect("web", "c2");
        // One request for both: the earlier one and its own.
        assert!(pending(&mut h).is_empty(), "{:?}", h.host_links());
        let deletes: Vec<&String> = h
            .fake()
            .log
            .iter()
            .filter(|l| l.starts_with("delete"))
            .collect();
        assert_eq!(
            deletes,
            [&format!("delete_link_group {}", names::PENDING_GROUP)]
        );
    }
}

//! Decisions that keep one bridge's endpoints apart, against the fake
//! kernel: a MAC asked for that the bridge or another endpoint has, a
//! derived MAC another endpoint asked for, and a disconnect TARGET that
//! names one endpoint's namespace and another endpoint.

use super::tests::{attach, host};
use super::*;
use crate::error::Error;
use crate::request::{DetachRequest, EndpointRef};

#[test]
fn a_mac_the_bridge_or_a_neighbour_has_is_refused() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    h.netns("c2");
    h.connect("web", "c1", &[]);
    let before = (h.rows(), h.host_links());
    for (mac, needle) in [
        ("02:42:0a:5a:00:01", "bridge berth-web"),
        ("02:42:0a:5a:00:02", "already used by endpoint \"c1\""),
    ] {
        let mut req = attach("web", "c2", &[]);
        req.mac = Some(mac.parse().unwrap());
        let err = connect(&mut h.ctx, req).err().expect("refused");
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert_eq!((h.rows(), h.host_links()), before);
}

#[test]
fn a_derived_mac_someone_asked_for_is_skipped() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("c1");
    h.netns("c2");
    let mut req = attach("web", "c1", &[]);
    req.mac = Some("02:42:0a:5a:00:03".parse().unwrap());
    let c1 = connect(&mut h.ctx, req).unwrap().applied().unwrap().0;
    assert_eq!(c1.ips_text(), "10.90.0.2");
    let c2 = h.connect("web", "c2", &[]);
    assert_eq!(c2.ips_text(), "10.90.0.3");
    assert_eq!(c2.mac.to_string(), "02:43:0a:5a:00:03");
    let inside = h
        .fake()
        .link_in(Some(std::path::Path::new("/run/netns/c2")), "eth0")
        .and_then(|l| l.fact.mac);
    assert_eq!(
        inside,
        Some(c2.mac),
        "the veth is made with the MAC recorded"
    );
}

#[test]
fn a_target_naming_a_namespace_and_another_endpoint_is_refused() {
    let mut h = host();
    h.network("web", "10.90.0.0/24");
    h.netns("x");
    h.netns("y");
    let mut one = attach("web", "x", &[]);
    one.name = Some("one".into());
    connect(&mut h.ctx, one).unwrap().applied().unwrap();
    let mut named_x = attach("web", "y", &[]);
    named_x.name = Some("x".into());
    connect(&mut h.ctx, named_x).unwrap().applied().unwrap();
    let before = (h.rows(), h.host_links());
    let err = disconnect(
        &mut h.ctx,
        DetachRequest::new("web", EndpointRef::Target("x".into())),
    )
    .err()
    .expect("refused");
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    let text = err.to_string();
    for needle in [
        "ambiguous",
        "\"one\"",
        "\"x\"",
        "/run/netns/x",
        "/run/netns/y",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert_eq!((h.rows(), h.host_links()), before);
    // The endpoint called like its own namespace is no ambiguity.
    h.netns("z");
    h.connect("web", "z", &[]);
    let done = disconnect(
        &mut h.ctx,
        DetachRequest::new("web", EndpointRef::Target("z".into())),
    );
    assert!(done.is_ok(), "{:?}", done.err());
}

//! Traffic control over rtnetlink: a token bucket (`tbf`) as a link's root
//! qdisc, which holds what the link sends to a rate, and the redirect of
//! everything a link receives to the egress of an ifb device, where a
//! second bucket holds the other direction.
//!
//! A link's ingress has no queue, so traffic arriving on it can only be
//! policed (dropped above the rate) or sent through a device that has one.
//! berth takes the ifb: TCP through a bucket runs at the rate (measured
//! within 5%), while a policer's drops make it back off below it, and the
//! `police` and `matchall` modules are missing from some kernels (this
//! one's included) where `u32` and `mirred` are built in.
//!
//! Each request replaces what is there, so applying one again (a repair,
//! `up`) changes nothing and leaves no gap in which traffic passes
//! unshaped.

use std::io;
use std::time::Duration;

use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::rtnl::Rtnl;
use crate::model::Limit;

/// The root qdisc's handle, `1:`.
const ROOT_HANDLE: TcHandle = TcHandle { major: 1, minor: 0 };
/// The ingress qdisc's handle, `ffff:`.
const INGRESS_HANDLE: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};
/// The redirect filter's handle, `800::800`: the first node of u32's
/// default hash table, named so that a second request replaces it.
const FILTER_HANDLE: u32 = 0x8000_0800;
const FILTER_PRIORITY: u32 = 1;
/// `ETH_P_ALL`: every protocol.
const ETH_P_ALL: u16 = 0x0003;

const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
/// `TC_LINKLAYER_ETHERNET`: the kernel computes transmit times from the
/// rate itself, with no rate table.
const LINKLAYER_ETHERNET: u8 = 1;

/// `struct tc_tbf_qopt`: the rate (`struct tc_ratespec`, bytes per second,
/// saturated when the 64-bit attribute carries it), no peak rate, the
/// queue limit (`queue` bytes) and the bucket in clock ticks.
fn tbf_parms(limit: &Limit, queue: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(36);
    let rate = limit.bytes_per_sec().min(u32::MAX as u64) as u32;
    // rate: cell_log, linklayer, overhead, cell_align, mpu, rate
    b.push(0);
    b.push(LINKLAYER_ETHERNET);
    b.extend_from_slice(&0u16.to_ne_bytes());
    b.extend_from_slice(&0i16.to_ne_bytes());
    b.extend_from_slice(&0u16.to_ne_bytes());
    b.extend_from_slice(&rate.to_ne_bytes());
    // peakrate: none
    b.extend_from_slice(&[0; 12]);
    b.extend_from_slice(&queue.to_ne_bytes());
    b.extend_from_slice(&limit.burst_ticks().to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // mtu: only with a peak rate
    b
}

/// The bytes the queue in front of the bucket holds when a frame may wait
/// `latency` in it: the rate for that long plus the bucket, as tc's
/// `latency` computes the limit.
pub fn queue_within(limit: &Limit, latency: Duration) -> u32 {
    let q =
        limit.bytes_per_sec() as u128 * latency.as_nanos() / 1_000_000_000 + limit.burst as u128;
    q.min(u32::MAX as u128) as u32
}

/// The request that makes a bucket of `limit` the root qdisc of the link
/// `index` (replacing whatever root it had), with the model's queue.
pub fn tbf_message(index: u32, limit: &Limit) -> TcMessage {
    tbf_message_queued(index, limit, limit.queue_bytes())
}

/// The same request with a queue of `queue` bytes.
pub fn tbf_message_queued(index: u32, limit: &Limit, queue: u32) -> TcMessage {
    let mut options = vec![
        TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, tbf_parms(limit, queue))),
        // The bucket in bytes too: exact, where ticks round.
        TcOption::Other(DefaultNla::new(
            TCA_TBF_BURST,
            limit.burst_u32().to_ne_bytes().to_vec(),
        )),
    ];
    if limit.bytes_per_sec() > u32::MAX as u64 {
        options.push(TcOption::Other(DefaultNla::new(
            TCA_TBF_RATE64,
            limit.bytes_per_sec().to_ne_bytes().to_vec(),
        )));
    }
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.handle = ROOT_HANDLE;
    msg.header.parent = TcHandle::ROOT;
    msg.attributes = vec![
        TcAttribute::Kind("tbf".into()),
        TcAttribute::Options(options),
    ];
    msg
}

/// Holds what the link `index` sends to `limit`.
pub fn shape_egress(rtnl: &mut Rtnl, index: u32, limit: &Limit) -> io::Result<()> {
    rtnl.request(
        RouteNetlinkMessage::NewQueueDiscipline(tbf_message(index, limit)),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// Holds what the link `index` sends to `limit`, where a frame waits at
/// most `latency` for the bucket before it is dropped.
pub fn shape_egress_within(
    rtnl: &mut Rtnl,
    index: u32,
    limit: &Limit,
    latency: Duration,
) -> io::Result<()> {
    rtnl.request(
        RouteNetlinkMessage::NewQueueDiscipline(tbf_message_queued(
            index,
            limit,
            queue_within(limit, latency),
        )),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// The ingress qdisc of the link `index`; one that is there already is
/// kept as it is.
pub fn ingress_message(index: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.handle = INGRESS_HANDLE;
    msg.header.parent = TcHandle::INGRESS;
    msg.attributes = vec![TcAttribute::Kind("ingress".into())];
    msg
}

/// The filter on the ingress of link `index` that matches every packet
/// (u32, one key of mask 0) and redirects it to the egress of link `to`.
pub fn redirect_message(index: u32, to: u32) -> TcMessage {
    let mut key = TcU32Key::default();
    key.mask = 0;
    key.val = 0;
    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.nkeys = 1;
    selector.keys = vec![key];

    let mut generic = TcActionGeneric::default();
    // The packet is the redirect's now: the ingress path ends here.
    generic.action = TcActionType::Stolen;
    let mut mirror = TcMirror::default();
    mirror.generic = generic;
    mirror.eaction = TcMirrorActionType::EgressRedir;
    mirror.ifindex = to;
    let mut action = TcAction::default();
    action.attributes = vec![
        TcActionAttribute::Kind("mirred".into()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirror,
        ))]),
    ];

    let mut msg = TcMessage::with_index(index as i32);
    msg.header.handle = TcHandle::from(FILTER_HANDLE);
    msg.header.parent = INGRESS_HANDLE;
    msg.header.info = (FILTER_PRIORITY << 16) | u32::from(ETH_P_ALL.to_be());
    msg.attributes = vec![
        TcAttribute::Kind("u32".into()),
        TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::Selector(selector)),
            TcOption::U32(TcFilterU32Option::Action(vec![action])),
        ]),
    ];
    msg
}

/// Sends everything the link `index` receives to the egress of link `to`
/// (an ifb), whose qdisc then shapes it.
pub fn redirect_ingress(rtnl: &mut Rtnl, index: u32, to: u32) -> io::Result<()> {
    rtnl.request(
        RouteNetlinkMessage::NewQueueDiscipline(ingress_message(index)),
        NLM_F_CREATE,
    )?;
    rtnl.request(
        RouteNetlinkMessage::NewTrafficFilter(redirect_message(index, to)),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{Nla, NlaBuffer, NlasIterator, NLM_F_ACK, NLM_F_REQUEST};

    use super::*;
    use crate::kernel::fake_rtnl::{self, Answer};

    /// The attributes inside a qdisc's options, as the kernel reads them
    /// (the decoder keeps an unknown kind's options as one blob).
    fn tbf_attributes(msg: &TcMessage) -> Vec<(u16, Vec<u8>)> {
        let blob = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                TcAttribute::Options(o) => Some(o.clone()),
                _ => None,
            })
            .expect("options");
        let TcOption::Other(nla) = &blob[0] else {
            panic!("{blob:?}")
        };
        let mut bytes = vec![0; nla.value_len()];
        nla.emit_value(&mut bytes);
        NlasIterator::new(&bytes[..])
            .map(|n: Result<NlaBuffer<&[u8]>, _>| {
                let n = n.unwrap();
                (n.kind(), n.value().to_vec())
            })
            .collect()
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn a_bucket_is_the_root_qdisc_with_rate_queue_and_burst() {
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![]);
        let limit = Limit::at_rate(10_000_000);
        shape_egress(&mut rtnl, 7, &limit).unwrap();
        let sent = sent.sent();
        assert_eq!(
            sent[0].flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        );
        let RouteNetlinkMessage::NewQueueDiscipline(msg) = &sent[0].message else {
            panic!("{sent:?}")
        };
        assert_eq!(msg.header.index, 7);
        assert_eq!(u32::from(msg.header.handle), 0x0001_0000);
        assert_eq!(u32::from(msg.header.parent), 0xffff_ffff);
        assert_eq!(msg.attributes[0], TcAttribute::Kind("tbf".into()));
        let attrs = tbf_attributes(msg);
        assert_eq!(attrs.len(), 2, "no 64-bit rate below 4 GB/s: {attrs:?}");
        let (kind, parms) = &attrs[0];
        assert_eq!((*kind, parms.len()), (TCA_TBF_PARMS, 36));
        assert_eq!(parms[1], LINKLAYER_ETHERNET);
        assert_eq!(u32_at(parms, 8), 1_250_000, "bytes per second");
        assert_eq!(u32_at(parms, 24), 62_500 + 16_384, "queue bytes");
        assert_eq!(u32_at(parms, 28), 204_800, "bucket in 64 ns ticks");
        assert_eq!(attrs[1], (TCA_TBF_BURST, 16_384u32.to_ne_bytes().to_vec()));
    }

    /// tc's `rate 12gbit burst 2mb latency 20ms`: 1.5 GB/s, a 2 MiB
    /// bucket, and a queue of 20 ms at the rate plus the bucket.
    #[test]
    fn a_latency_sets_the_queue_as_tc_computes_it() {
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![]);
        let limit = Limit {
            rate: 12_000_000_000,
            burst: 2 << 20,
        };
        shape_egress_within(&mut rtnl, 4, &limit, Duration::from_millis(20)).unwrap();
        let sent = sent.sent();
        assert_eq!(
            sent[0].flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        );
        let RouteNetlinkMessage::NewQueueDiscipline(msg) = &sent[0].message else {
            panic!("{sent:?}")
        };
        assert_eq!(msg.header.index, 4);
        assert_eq!(u32::from(msg.header.parent), 0xffff_ffff);
        let attrs = tbf_attributes(msg);
        assert_eq!(attrs.len(), 2, "1.5 GB/s fits 32 bits: {attrs:?}");
        let parms = &attrs[0].1;
        assert_eq!(u32_at(parms, 8), 1_500_000_000, "bytes per second");
        assert_eq!(u32_at(parms, 24), 30_000_000 + 2_097_152, "queue bytes");
        // 2 MiB at 1.5 GB/s: 1398101 ns, in 64 ns ticks.
        assert_eq!(u32_at(parms, 28), 21_845, "bucket in ticks");
        assert_eq!(
            attrs[1],
            (TCA_TBF_BURST, 2_097_152u32.to_ne_bytes().to_vec())
        );
    }

    #[test]
    fn a_rate_above_32_bits_of_bytes_goes_in_the_64_bit_attribute() {
        let limit = Limit::at_rate(40_000_000_000);
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![]);
        shape_egress(&mut rtnl, 7, &limit).unwrap();
        let RouteNetlinkMessage::NewQueueDiscipline(msg) = &sent.sent()[0].message else {
            panic!()
        };
        let attrs = tbf_attributes(msg);
        assert_eq!(u32_at(&attrs[0].1, 8), u32::MAX, "saturated");
        assert_eq!(
            attrs[2],
            (TCA_TBF_RATE64, 5_000_000_000u64.to_ne_bytes().to_vec())
        );
    }

    #[test]
    fn the_redirect_is_an_ingress_qdisc_and_a_match_all_u32_filter_to_the_ifb() {
        let (mut rtnl, sent) = fake_rtnl::rtnl(vec![]);
        redirect_ingress(&mut rtnl, 7, 9).unwrap();
        let sent = sent.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE);
        assert_eq!(
            sent[0].message,
            RouteNetlinkMessage::NewQueueDiscipline(ingress_message(7))
        );
        let RouteNetlinkMessage::NewTrafficFilter(filter) = &sent[1].message else {
            panic!("{sent:?}")
        };
        assert_eq!(
            sent[1].flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        );
        assert_eq!(filter, &redirect_message(7, 9), "decodes as it was built");
        assert_eq!(u32::from(filter.header.parent), 0xffff_0000);
        assert_eq!(filter.header.info >> 16, 1, "priority 1");
        assert_eq!(
            (filter.header.info & 0xffff) as u16,
            ETH_P_ALL.to_be(),
            "every protocol, in network order"
        );
        let text = format!("{filter:?}");
        for needle in ["ifindex: 9", "EgressRedir", "Stolen", "nkeys: 1"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }

    #[test]
    fn a_refusal_reaches_the_caller() {
        let (mut rtnl, _) = fake_rtnl::rtnl(vec![Answer::Errno(libc::ENOENT)]);
        let err = shape_egress(&mut rtnl, 7, &Limit::at_rate(1_000_000)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }
}

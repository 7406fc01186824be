//! `berth trace --live`: what the kernel itself did with one real packet,
//! next to what the static walk decided. The temporary tables and their
//! one rule (which marks exactly the traced flow with `meta nftrace set
//! 1`, at a priority before any of berth's chains), the probe that is
//! sent, and the reading of the trace events are decided here, with no
//! I/O; the kernel layer runs it ([`crate::kernel::nftrace`]).

use std::net::IpAddr;

use berth_nft::{
    priority, Batch, Chain, ChainType, Family, Hook, L4Proto, Rule, Table, TraceEvent, TraceKind,
    Verdict as NftVerdict,
};
use serde::Serialize;

use super::walk::{Flow, Trace};
use crate::kernel::nftrace::LiveCapture;
use crate::model::Proto;

/// The name of the temporary tables (one `inet`, one `bridge`).
pub const TABLE: &str = "berth-trace";

/// How long the probe waits for its answer.
pub const PROBE_TIMEOUT_MS: u64 = 1000;

/// The traced flow as it leaves its source, before any DNAT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowMatch {
    /// Matched only for ICMP, where there is no port to pin.
    pub saddr: Option<IpAddr>,
    pub daddr: IpAddr,
    pub flow: Flow,
    /// The probe's source port, fixed so that only its packets match.
    pub sport: Option<u16>,
}

/// `inet berth-trace` sees what the host routes or sends itself, `bridge
/// berth-trace` what a bridge forwards without br_netfilter.
pub fn tables() -> [Table; 2] {
    [
        Table::new(Family::Inet, TABLE),
        Table::new(Family::Bridge, TABLE),
    ]
}

/// The one rule: exactly this flow, marked for tracing.
pub fn rule(m: &FlowMatch) -> Rule {
    let mut r = Rule::new();
    match m.saddr {
        Some(IpAddr::V4(s)) => r = r.ip_saddr(s),
        Some(IpAddr::V6(s)) => r = r.ip6_saddr(s),
        None => {}
    }
    r = match m.daddr {
        IpAddr::V4(d) => r.ip_daddr(d),
        IpAddr::V6(d) => r.ip6_daddr(d),
    };
    r = match (m.flow, m.daddr) {
        (Flow::Ping, IpAddr::V4(_)) => r.icmp_type(8),
        // Any ICMPv6 of the pinned addresses: the echo, and the unicast
        // neighbour probes that go with it.
        (Flow::Ping, IpAddr::V6(_)) => r.l4proto(L4Proto::Icmpv6),
        (Flow::Port(p, port), _) => {
            let r = r.l4proto(l4(p)).th_dport(port);
            match m.sport {
                Some(s) => r.th_sport(s),
                None => r,
            }
        }
    };
    r.nftrace()
}

fn l4(p: Proto) -> L4Proto {
    match p {
        Proto::Tcp => L4Proto::Tcp,
        Proto::Udp => L4Proto::Udp,
        Proto::Sctp => L4Proto::Sctp,
    }
}

/// The batch that makes the tables, and the one that removes them
/// (adding an existing table is no error, so it works whether they are
/// there or not).
pub fn batches(m: &FlowMatch) -> (Batch, Batch) {
    let mut setup = Batch::new();
    let mut remove = Batch::new();
    for t in tables() {
        remove.add_table(&t).delete_table(&t);
        setup.add_table(&t);
        let hooks: &[Hook] = match t.family {
            Family::Bridge => &[Hook::Prerouting],
            _ => &[Hook::Prerouting, Hook::Output],
        };
        for &hook in hooks {
            let chain = Chain::base(&t, hook.as_str(), ChainType::Filter, hook, priority::RAW);
            setup.add_chain(&chain).add_rule(&chain, rule(m));
        }
    }
    (setup, remove)
}

/// `berth-probe` arguments that send this flow.
pub fn probe_args(m: &FlowMatch) -> Vec<String> {
    let timeout = PROBE_TIMEOUT_MS.to_string();
    let mut args: Vec<String> = match m.flow {
        Flow::Ping => vec!["ping".into(), m.daddr.to_string()],
        Flow::Port(p, port) => vec![
            match p {
                Proto::Tcp => "tcp-connect",
                Proto::Udp => "udp-send",
                Proto::Sctp => "sctp-connect",
            }
            .into(),
            std::net::SocketAddr::new(m.daddr, port).to_string(),
        ],
    };
    args.extend(["--timeout-ms".into(), timeout]);
    if let Some(s) = m.sport {
        args.extend(["--source-port".into(), s.to_string()]);
    }
    args
}

/// One chain the first traced packet went through, and how it left it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainHit {
    pub family: String,
    pub table: String,
    pub chain: String,
    /// `accept`, `drop`, `jump CHAIN`, `return`, `continue`, or `policy
    /// accept`/`policy drop` at the end of a base chain.
    pub verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
}

impl ChainHit {
    fn place(&self) -> String {
        format!("{} {} chain {}", self.family, self.table, self.chain)
    }
    fn describe(&self) -> String {
        match self.handle {
            Some(h) => format!("{}: rule handle {h}: {}", self.place(), self.verdict),
            None => format!("{}: {}", self.place(), self.verdict),
        }
    }
}

/// The live part of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Live {
    /// The rule that marks the flow, as nft prints it.
    pub rule: String,
    /// The probe, as run.
    pub probe: String,
    pub probe_ok: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub probe_said: String,
    /// Packets of the flow the kernel traced.
    pub packets: usize,
    /// The chains the first packet went through, in order.
    pub chains: Vec<ChainHit>,
    /// The first drop the kernel reported for any packet of the flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_by: Option<ChainHit>,
    pub pass: bool,
    /// The destination answered that nothing listens (a reset, a port
    /// unreachable): the path is open.
    pub refused: bool,
    pub reason: String,
    pub agrees: bool,
    pub agreement: String,
    pub elapsed_ms: u64,
}

fn verdict_text(e: &TraceEvent) -> String {
    match (e.kind, &e.verdict) {
        (TraceKind::Policy, Some(v)) => format!("policy {v}"),
        (TraceKind::Return, _) => "return (end of chain)".into(),
        (_, Some(v)) => v.to_string(),
        (_, None) => "?".into(),
    }
}

fn hit(e: &TraceEvent) -> ChainHit {
    ChainHit {
        family: e
            .family
            .map(|f| f.to_string())
            .unwrap_or_else(|| "?".into()),
        table: e.table.clone(),
        chain: e.chain.clone(),
        verdict: verdict_text(e),
        handle: match e.kind {
            TraceKind::Rule => e.handle,
            _ => None,
        },
    }
}

/// The chains of one packet: each stay in a chain is one hit, named by the
/// event that ended it (a rule that only counts or logs says `continue`
/// and is passed over when a later rule of the same stay decides).
fn chain_hits(events: &[&TraceEvent]) -> Vec<ChainHit> {
    let mut hits: Vec<(ChainHit, bool)> = Vec::new();
    for e in events {
        let h = hit(e);
        let decisive =
            !matches!(e.verdict, Some(NftVerdict::Continue)) || e.kind != TraceKind::Rule;
        match hits.last_mut() {
            Some((last, last_decisive))
                if last.family == h.family
                    && last.table == h.table
                    && last.chain == h.chain
                    && !*last_decisive =>
            {
                *last = h;
                *last_decisive = decisive;
            }
            _ => hits.push((h, decisive)),
        }
    }
    hits.into_iter().map(|(h, _)| h).collect()
}

/// Whether the static walk and the kernel name the same chain: berth's
/// own chains by name, a foreign one as `table FAMILY NAME chain CHAIN`.
fn same_chain(static_chain: &str, kernel: &ChainHit) -> bool {
    let words: Vec<&str> = static_chain.split_whitespace().collect();
    match words.as_slice() {
        ["table", family, table, "chain", chain] => {
            kernel.family == *family && kernel.table == *table && kernel.chain == *chain
        }
        [chain] => kernel.table == "berth" && kernel.chain == *chain,
        _ => false,
    }
}

/// The events split into packets. The kernel's packet id is no help: it
/// is a hash that changes between the bridge and the inet hooks and comes
/// back for a later packet in the same buffer. Each packet, though, passes
/// the marking rule of the trace table first (once per family): a packet
/// starts where the trace table's chain shows up again.
fn packets(events: &[TraceEvent]) -> Vec<Vec<&TraceEvent>> {
    let mut out: Vec<Vec<&TraceEvent>> = Vec::new();
    let mut seen: Vec<(Option<Family>, &str)> = Vec::new();
    let mut prev_own = false;
    for e in events {
        let own = e.table == TABLE;
        let key = (e.family, e.chain.as_str());
        if out.is_empty() || (own && !prev_own && seen.contains(&key)) {
            out.push(Vec::new());
            seen.clear();
        }
        if own {
            seen.push(key);
        } else {
            out.last_mut().unwrap().push(e);
        }
        prev_own = own;
    }
    out.retain(|p| !p.is_empty());
    out
}

/// Reads the capture against the static trace.
pub fn interpret(trace: &Trace, rule: String, probe: String, c: &LiveCapture) -> Live {
    let packets = packets(&c.events);
    let theirs: Vec<&TraceEvent> = packets.iter().flatten().copied().collect();
    let chains = packets
        .first()
        .map(|evs| chain_hits(evs))
        .unwrap_or_default();
    let dropped_by = theirs
        .iter()
        .find(|e| matches!(e.verdict, Some(NftVerdict::Drop)))
        .map(|e| hit(e));
    let pass = c.probe_ok && !c.interrupted;
    let dropped_by_us = dropped_by.is_some();
    let said = if c.probe_said.is_empty() {
        String::new()
    } else {
        format!(" ({})", c.probe_said)
    };
    let reason = if c.interrupted {
        "interrupted before the probe ended".to_string()
    } else if pass {
        match &dropped_by {
            Some(d) => format!(
                "the probe got its answer, though {} dropped one of its packets",
                d.place()
            ),
            None => "the probe got its answer".to_string(),
        }
    } else if c.refused && !dropped_by_us {
        format!("the destination answered that nothing listens there{said}")
    } else if let Some(d) = &dropped_by {
        match d.handle {
            Some(h) => format!("rule handle {h} of {} drops it{said}", d.place()),
            None => format!("{} drops it ({}){said}", d.place(), d.verdict),
        }
    } else if let Some(last) = theirs.last() {
        format!(
            "no chain dropped it: the kernel last saw it in {} {} chain {}, so routing, a sysctl or the peer stopped it{said}",
            last.family.map(|f| f.to_string()).unwrap_or_default(),
            last.table,
            last.chain
        )
    } else {
        format!("no chain of the host saw it and the probe got no answer{said}")
    };
    let word = |p: bool| if p { "PASS" } else { "DROP" };
    let static_drop = trace
        .steps
        .iter()
        .rev()
        .find(|s| matches!(s.verdict.as_deref(), Some("drop" | "reject")))
        .and_then(|s| s.chain.clone());
    let refused = !pass && c.refused && !dropped_by_us && !c.interrupted;
    let (agrees, agreement) = if c.interrupted {
        (
            false,
            "cannot say whether it agrees: interrupted".to_string(),
        )
    } else if refused {
        // The path is open to the destination's own stack. The static walk
        // says PASS for the path, or DROP for a host port nothing is
        // published on; either way it agrees, unless it named a chain.
        match &static_drop {
            Some(s) if !trace.verdict.pass => (
                false,
                format!("DISAGREES: the static walk drops it in {s}, the destination refused it"),
            ),
            _ => (
                true,
                format!(
                    "agrees with the static verdict ({}): the packet got there, nothing listens",
                    word(trace.verdict.pass)
                ),
            ),
        }
    } else if pass != trace.verdict.pass {
        (
            false,
            format!(
                "DISAGREES with the static verdict ({}): the kernel did otherwise",
                word(trace.verdict.pass)
            ),
        )
    } else {
        match (&static_drop, &dropped_by) {
            (Some(s), Some(k)) if !pass && !same_chain(s, k) => (
                false,
                format!(
                    "DISAGREES on where: the static walk names {s}, the kernel dropped in {}",
                    k.place()
                ),
            ),
            _ => (
                true,
                format!("agrees with the static verdict ({})", word(pass)),
            ),
        }
    };
    Live {
        rule,
        probe,
        probe_ok: c.probe_ok,
        probe_said: c.probe_said.clone(),
        packets: packets.len(),
        chains,
        dropped_by,
        pass,
        refused,
        reason,
        agrees,
        agreement,
        elapsed_ms: c.elapsed.as_millis() as u64,
    }
}

impl Live {
    /// The lines printed after the static verdict; the last one says
    /// whether the two agree.
    pub fn render(&self) -> Vec<String> {
        let mut out = vec![
            format!("live: {} {}", TABLE, self.rule),
            format!("      $ berth-probe {}", self.probe),
        ];
        if self.chains.is_empty() {
            out.push("      the kernel traced no packet of the flow".into());
        } else {
            out.push(format!(
                "      the kernel traced {} packet{} of the flow; the first went through:",
                self.packets,
                if self.packets == 1 { "" } else { "s" }
            ));
        }
        for (i, h) in self.chains.iter().enumerate() {
            out.push(format!("  {:>2}. {}", i + 1, h.describe()));
        }
        out.push(format!(
            "LIVE {}: {} in {} ms; {}",
            match (self.pass, self.refused) {
                (true, _) => "PASS",
                (false, true) => "REFUSED",
                (false, false) => "DROP",
            },
            self.reason,
            self.elapsed_ms,
            self.agreement
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::trace::walk::{Step, Verdict};
    use expect_test::{expect, Expect};
    use std::time::Duration;

    fn flow(flow: Flow) -> FlowMatch {
        FlowMatch {
            saddr: Some(std::net::Ipv4Addr::new(10, 90, 0, 2).into()),
            daddr: std::net::Ipv4Addr::new(10, 91, 0, 2).into(),
            flow,
            sport: match flow {
                Flow::Ping => None,
                Flow::Port(..) => Some(61234),
            },
        }
    }

    #[test]
    fn the_tables_mark_exactly_the_flow_before_berths_chains() {
        let check = |m: FlowMatch, want: Expect| {
            let (setup, remove) = batches(&m);
            let mut lines = setup.render();
            lines.extend(remove.render());
            lines.push(probe_args(&m).join(" "));
            want.assert_eq(&lines.join("\n"));
        };
        check(
            FlowMatch {
                saddr: None,
                ..flow(Flow::Port(Proto::Tcp, 80))
            },
            expect![[r#"
                add table inet berth-trace
                add chain inet berth-trace prerouting { type filter hook prerouting priority raw; }
                add rule inet berth-trace prerouting ip daddr 10.91.0.2 meta l4proto tcp th dport 80 th sport 61234 meta nftrace set 1
                add chain inet berth-trace output { type filter hook output priority raw; }
                add rule inet berth-trace output ip daddr 10.91.0.2 meta l4proto tcp th dport 80 th sport 61234 meta nftrace set 1
                add table bridge berth-trace
                add chain bridge berth-trace prerouting { type filter hook prerouting priority dstnat; }
                add rule bridge berth-trace prerouting ip daddr 10.91.0.2 meta l4proto tcp th dport 80 th sport 61234 meta nftrace set 1
                add table inet berth-trace
                delete table inet berth-trace
                add table bridge berth-trace
                delete table bridge berth-trace
                tcp-connect 10.91.0.2:80 --timeout-ms 1000 --source-port 61234"#]],
        );
        expect![[r#"ip saddr 10.90.0.2 ip daddr 10.91.0.2 meta l4proto icmp icmp type echo-request meta nftrace set 1"#]]
            .assert_eq(&rule(&flow(Flow::Ping)).render());
        assert_eq!(
            probe_args(&flow(Flow::Ping)).join(" "),
            "ping 10.91.0.2 --timeout-ms 1000"
        );
    }

    fn ev(
        family: Family,
        table: &str,
        chain: &str,
        kind: TraceKind,
        handle: Option<u64>,
        v: NftVerdict,
    ) -> TraceEvent {
        TraceEvent {
            id: 1,
            family: Some(family),
            table: table.into(),
            chain: chain.into(),
            kind,
            handle,
            verdict: Some(v),
            iif: None,
            oif: None,
            mark: None,
            nfproto: None,
        }
    }

    /// One packet as the kernel reports it from a container on web to one
    /// on db: the trace table's own events, the guard, then the inet hooks.
    fn packet(last: NftVerdict) -> Vec<TraceEvent> {
        use Family::{Bridge, Inet};
        use TraceKind::{Policy, Rule};
        vec![
            ev(
                Bridge,
                TABLE,
                "prerouting",
                Rule,
                Some(2),
                NftVerdict::Continue,
            ),
            ev(
                Bridge,
                TABLE,
                "prerouting",
                Policy,
                None,
                NftVerdict::Accept,
            ),
            ev(
                Bridge,
                "berth",
                "prerouting",
                Rule,
                Some(6),
                NftVerdict::Jump("guard".into()),
            ),
            ev(Bridge, "berth", "guard", Rule, Some(7), NftVerdict::Return),
            ev(
                Bridge,
                "berth",
                "prerouting",
                Rule,
                None,
                NftVerdict::Continue,
            ),
            ev(
                Bridge,
                "berth",
                "prerouting",
                Policy,
                None,
                NftVerdict::Accept,
            ),
            ev(
                Inet,
                TABLE,
                "prerouting",
                Rule,
                Some(2),
                NftVerdict::Continue,
            ),
            ev(Inet, TABLE, "prerouting", Policy, None, NftVerdict::Accept),
            ev(
                Inet,
                "berth",
                "prerouting",
                Policy,
                None,
                NftVerdict::Accept,
            ),
            ev(
                Inet,
                "berth",
                "forward",
                Rule,
                Some(43),
                NftVerdict::Jump("web-out".into()),
            ),
            ev(Inet, "berth", "web-out", Rule, Some(53), last),
        ]
    }

    fn static_trace(pass: bool, chain: Option<&str>) -> Trace {
        Trace {
            src: "a".into(),
            dst: "c (10.91.0.2)".into(),
            flow: "icmp echo".into(),
            steps: vec![Step {
                what: "forward".into(),
                lines: Vec::new(),
                command: None,
                chain: chain.map(String::from),
                verdict: chain.map(|_| if pass { "accept" } else { "drop" }.to_string()),
            }],
            reply: Vec::new(),
            verdict: Verdict {
                pass,
                reason: String::new(),
                fix: None,
            },
            trusted: true,
            live: None,
        }
    }

    fn capture(events: Vec<TraceEvent>, ok: bool, said: &str) -> LiveCapture {
        LiveCapture {
            events,
            probe_ok: ok,
            probe_said: said.into(),
            refused: said.starts_with("berth-probe: refused"),
            interrupted: false,
            elapsed: Duration::from_millis(1012),
        }
    }

    fn live(trace: &Trace, c: &LiveCapture, want: Expect) -> Live {
        let l = interpret(trace, "RULE".into(), "PROBE".into(), c);
        want.assert_eq(&l.render().join("\n"));
        l
    }

    #[test]
    fn a_drop_in_the_chain_the_walk_names_agrees_and_retries_are_packets_of_their_own() {
        let mut events = packet(NftVerdict::Drop);
        events.extend(packet(NftVerdict::Drop));
        let l = live(
            &static_trace(false, Some("web-out")),
            &capture(events, false, "berth-probe: timeout"),
            expect![[r#"
                live: berth-trace RULE
                      $ berth-probe PROBE
                      the kernel traced 2 packets of the flow; the first went through:
                   1. bridge berth chain prerouting: rule handle 6: jump guard
                   2. bridge berth chain guard: rule handle 7: return
                   3. bridge berth chain prerouting: policy accept
                   4. inet berth chain prerouting: policy accept
                   5. inet berth chain forward: rule handle 43: jump web-out
                   6. inet berth chain web-out: rule handle 53: drop
                LIVE DROP: rule handle 53 of inet berth chain web-out drops it (berth-probe: timeout) in 1012 ms; agrees with the static verdict (DROP)"#]],
        );
        assert!(l.agrees && !l.pass);
    }

    #[test]
    fn disagreements_are_said() {
        // The walk names another chain than the kernel dropped in.
        let l = live(
            &static_trace(false, Some("table inet foreign chain forward")),
            &capture(packet(NftVerdict::Drop), false, ""),
            expect![[r#"
                live: berth-trace RULE
                      $ berth-probe PROBE
                      the kernel traced 1 packet of the flow; the first went through:
                   1. bridge berth chain prerouting: rule handle 6: jump guard
                   2. bridge berth chain guard: rule handle 7: return
                   3. bridge berth chain prerouting: policy accept
                   4. inet berth chain prerouting: policy accept
                   5. inet berth chain forward: rule handle 43: jump web-out
                   6. inet berth chain web-out: rule handle 53: drop
                LIVE DROP: rule handle 53 of inet berth chain web-out drops it in 1012 ms; DISAGREES on where: the static walk names table inet foreign chain forward, the kernel dropped in inet berth chain web-out"#]],
        );
        assert!(!l.agrees);
        // The walk says pass; nothing dropped it in a chain, yet no answer.
        let mut events = packet(NftVerdict::Accept);
        events.truncate(9);
        let l = live(
            &static_trace(true, None),
            &capture(events, false, "berth-probe: timeout"),
            expect![[r#"
                live: berth-trace RULE
                      $ berth-probe PROBE
                      the kernel traced 1 packet of the flow; the first went through:
                   1. bridge berth chain prerouting: rule handle 6: jump guard
                   2. bridge berth chain guard: rule handle 7: return
                   3. bridge berth chain prerouting: policy accept
                   4. inet berth chain prerouting: policy accept
                LIVE DROP: no chain dropped it: the kernel last saw it in inet berth chain prerouting, so routing, a sysctl or the peer stopped it (berth-probe: timeout) in 1012 ms; DISAGREES with the static verdict (PASS): the kernel did otherwise"#]],
        );
        assert!(!l.agrees);
    }

    #[test]
    fn a_pass_and_an_interrupted_capture() {
        let l = live(
            &static_trace(true, Some("web-out")),
            &capture(
                packet(NftVerdict::Accept),
                true,
                "hello from 10.90.0.2:61234",
            ),
            expect![[r#"
                live: berth-trace RULE
                      $ berth-probe PROBE
                      the kernel traced 1 packet of the flow; the first went through:
                   1. bridge berth chain prerouting: rule handle 6: jump guard
                   2. bridge berth chain guard: rule handle 7: return
                   3. bridge berth chain prerouting: policy accept
                   4. inet berth chain prerouting: policy accept
                   5. inet berth chain forward: rule handle 43: jump web-out
                   6. inet berth chain web-out: rule handle 53: accept
                LIVE PASS: the probe got its answer in 1012 ms; agrees with the static verdict (PASS)"#]],
        );
        assert!(l.agrees && l.pass);
        let mut c = capture(Vec::new(), false, "");
        c.interrupted = true;
        let l = interpret(&static_trace(true, None), "R".into(), "P".into(), &c);
        assert!(!l.agrees && l.chains.is_empty());
        assert_eq!(
            l.render().last().unwrap(),
            "LIVE DROP: interrupted before the probe ended in 1012 ms; cannot say whether it agrees: interrupted"
        );
    }

    #[test]
    fn a_refusal_is_the_destination_answering_not_a_drop() {
        let said =
            "berth-probe: refused: connecting to 10.90.0.3:80: Connection refused (os error 111)";
        let c = capture(packet(NftVerdict::Accept), false, said);
        // A path the static walk passes: the packet got there.
        let l = interpret(&static_trace(true, None), "R".into(), "P".into(), &c);
        assert!(l.agrees && l.refused && !l.pass, "{l:?}");
        assert!(l
            .render()
            .last()
            .unwrap()
            .starts_with("LIVE REFUSED: the destination answered that nothing listens there"));
        // A host port nothing is published on: the static DROP names no chain.
        let l = interpret(&static_trace(false, None), "R".into(), "P".into(), &c);
        assert!(l.agrees, "{l:?}");
        // A chain the static walk says drops it cannot have let it through.
        let l = interpret(
            &static_trace(false, Some("web-out")),
            "R".into(),
            "P".into(),
            &c,
        );
        assert!(!l.agrees, "{l:?}");
    }
}

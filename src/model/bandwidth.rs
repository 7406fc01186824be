//! Bandwidth limits of an endpoint: a token bucket for each direction,
//! rates read and written as tc spells them (`10mbit`, `1.5gbit`,
//! `500kbit`, `2mbps`), and the bucket and queue sizes berth gives a rate
//! when no one says.
//!
//! "In" is traffic towards the container, "out" traffic from it, as the
//! CNI `bandwidth` capability's `ingressRate` and `egressRate` mean them.

use serde::{Deserialize, Serialize};

/// One direction's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// Bits per second.
    pub rate: u64,
    /// The bucket, in bytes: how much may pass above the rate at once.
    pub burst: u64,
}

/// Both directions; None: unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Towards the container: shaped on the host veth's egress.
    #[serde(rename = "in", default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<Limit>,
    /// From the container: redirected from the host veth's ingress to an
    /// ifb device and shaped on its egress.
    #[serde(rename = "out", default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<Limit>,
}

/// The lowest rate berth accepts: one byte per second.
pub const MIN_RATE: u64 = 8;
/// The highest: 10 Tbit/s, far above any veth, and well inside the
/// kernel's 64-bit byte rate.
pub const MAX_RATE: u64 = 10_000_000_000_000;
/// The smallest default bucket: room for a few full-size frames, so that
/// a slow limit still passes whole TSO segments split by the qdisc.
const MIN_DEFAULT_BURST: u64 = 16 * 1024;
/// How long the queue in front of the bucket may hold traffic at the rate
/// before dropping: enough for TCP to keep the bucket busy (measured: a
/// 10 Mbit/s limit passes 9.6-9.8 Mbit/s of goodput with 50 ms, the rest
/// being headers), short enough not to add seconds of delay.
const QUEUE_MS: u64 = 50;

impl Limit {
    /// A limit at `rate` (bits per second) with berth's bucket: 4 ms worth
    /// of the rate, at least 16 KiB. A bucket below the rate's timer slack
    /// would hold throughput under the rate at high rates; a large one
    /// lets long bursts through above it.
    pub fn at_rate(rate: u64) -> Limit {
        Limit {
            rate,
            burst: (rate / 8 / 250).max(MIN_DEFAULT_BURST),
        }
    }

    /// A limit as a runtime gives it (CNI: bits per second and bits).
    /// A burst of 2^31 - 1 bits or more is what runtimes send when the
    /// user gave none (containerd sends 2^32 - 1, kubelet's dockershim
    /// sent 2^31 - 1): taken literally, such a bucket would let half a
    /// gigabyte through before limiting anything, so berth's own bucket
    /// is used instead. Zero means none given too.
    pub fn from_bits(rate: u64, burst_bits: u64) -> Limit {
        if burst_bits == 0 || burst_bits >= i32::MAX as u64 {
            return Limit::at_rate(rate);
        }
        Limit {
            rate,
            burst: (burst_bits / 8).max(1),
        }
    }

    /// Bytes per second.
    pub fn bytes_per_sec(&self) -> u64 {
        (self.rate / 8).max(1)
    }

    /// The bytes the queue in front of the bucket holds: the rate for
    /// [`QUEUE_MS`] plus the bucket, as tc's `latency` computes it.
    pub fn queue_bytes(&self) -> u32 {
        let q = self.bytes_per_sec() * QUEUE_MS / 1000 + self.burst;
        q.min(u32::MAX as u64) as u32
    }

    /// The bucket in the kernel's clock ticks (64 ns each): the time the
    /// rate takes to send a full bucket, saturated at what 32 bits hold.
    pub fn burst_ticks(&self) -> u32 {
        let ns = self.burst as u128 * 1_000_000_000 / self.bytes_per_sec() as u128;
        (ns >> 6).min(u32::MAX as u128) as u32
    }

    /// The bucket in bytes as the kernel takes it (32 bits).
    pub fn burst_u32(&self) -> u32 {
        self.burst.min(u32::MAX as u64) as u32
    }

    /// Checks the rate against [`MIN_RATE`]..=[`MAX_RATE`]; `what` names
    /// the option for the message.
    pub fn check(&self, what: &str) -> Result<(), String> {
        if !(MIN_RATE..=MAX_RATE).contains(&self.rate) {
            return Err(format!(
                "invalid {what} {}: a rate is {} to {}",
                format_rate(self.rate),
                format_rate(MIN_RATE),
                format_rate(MAX_RATE)
            ));
        }
        if self.burst == 0 || self.burst > u32::MAX as u64 {
            return Err(format!(
                "invalid {what} burst of {} bytes: 1 byte to 4 GiB",
                self.burst
            ));
        }
        Ok(())
    }
}

impl Bandwidth {
    pub fn is_unlimited(&self) -> bool {
        self.inbound.is_none() && self.outbound.is_none()
    }

    /// `in 10mbit, out 5mbit`, or empty when unlimited.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = self.inbound {
            parts.push(format!("in {}", format_rate(l.rate)));
        }
        if let Some(l) = self.outbound {
            parts.push(format!("out {}", format_rate(l.rate)));
        }
        parts.join(", ")
    }
}

/// tc's rate units, lower-cased (tc compares them ignoring case), with
/// their value in bits per second. A bare number is bits per second.
const UNITS: &[(&str, f64)] = &[
    ("bit", 1.0),
    ("kbit", 1e3),
    ("mbit", 1e6),
    ("gbit", 1e9),
    ("tbit", 1e12),
    ("kibit", 1024.0),
    ("mibit", 1024.0 * 1024.0),
    ("gibit", 1024.0 * 1024.0 * 1024.0),
    ("tibit", 1024.0 * 1024.0 * 1024.0 * 1024.0),
    ("bps", 8.0),
    ("kbps", 8e3),
    ("mbps", 8e6),
    ("gbps", 8e9),
    ("tbps", 8e12),
    ("kibps", 8.0 * 1024.0),
    ("mibps", 8.0 * 1024.0 * 1024.0),
    ("gibps", 8.0 * 1024.0 * 1024.0 * 1024.0),
    ("tibps", 8.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
];

/// A rate as tc reads it: a number (a fraction allowed) and a unit
/// (`bit`, `kbit`, `mbit`, `gbit`, `tbit`, their `Ki`/`Mi`/... forms, or
/// the same in bytes with `bps`), in bits per second. `what` names the
/// option for the message.
pub fn parse_rate(what: &str, text: &str) -> Result<u64, String> {
    let bad = |why: &str| {
        format!("invalid {what} {text:?}: {why}; expected a rate like 10mbit, 1.5gbit or 500kbit")
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| bad("no number"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let scale = if unit.is_empty() {
        1.0
    } else {
        UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, s)| *s)
            .ok_or_else(|| bad(&format!("unknown unit {unit:?}")))?
    };
    let bits = (value * scale).round();
    if !(MIN_RATE as f64..=MAX_RATE as f64).contains(&bits) {
        return Err(bad(&format!(
            "a rate is {} to {}",
            format_rate(MIN_RATE),
            format_rate(MAX_RATE)
        )));
    }
    Ok(bits as u64)
}

/// A rate in bits per second as tc spells it: the largest decimal unit
/// that writes it exactly with at most three decimals (`10mbit`,
/// `1.5gbit`, `12.345kbit`), else in `bit`.
pub fn format_rate(bits: u64) -> String {
    for (unit, scale) in [
        ("tbit", 1_000_000_000_000u64),
        ("gbit", 1_000_000_000),
        ("mbit", 1_000_000),
        ("kbit", 1_000),
    ] {
        if bits >= scale && bits.is_multiple_of(scale / 1000) {
            let whole = bits / scale;
            let frac = (bits % scale) / (scale / 1000);
            if frac == 0 {
                return format!("{whole}{unit}");
            }
            let frac = format!("{frac:03}");
            return format!("{whole}.{}{unit}", frac.trim_end_matches('0'));
        }
    }
    format!("{bits}bit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_as_tc_reads_them() {
        for (text, bits) in [
            ("10mbit", 10_000_000),
            ("1.5gbit", 1_500_000_000),
            ("500kbit", 500_000),
            ("500KBit", 500_000),
            ("1000", 1000),
            ("2mbps", 16_000_000),
            ("1mibit", 1_048_576),
            ("8bit", 8),
            (" 3 gbit ", 3_000_000_000),
        ] {
            assert_eq!(parse_rate("--bandwidth-in", text), Ok(bits), "{text}");
        }
        for bad in [
            "",
            "mbit",
            "10 furlongs",
            "-5mbit",
            "0",
            "1bit",
            "20tbit",
            "1e9",
        ] {
            let e = parse_rate("--bandwidth-in", bad).unwrap_err();
            assert!(
                e.contains("--bandwidth-in") && e.contains("10mbit"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn rates_are_written_as_tc_writes_them() {
        for (bits, text) in [
            (10_000_000, "10mbit"),
            (1_500_000_000, "1.5gbit"),
            (500_000, "500kbit"),
            (12_345, "12.345kbit"),
            (1_234_567, "1234.567kbit"),
            (999, "999bit"),
            (1_048_576, "1048.576kbit"),
        ] {
            assert_eq!(format_rate(bits), text);
            assert_eq!(parse_rate("r", text), Ok(bits), "round trip of {text}");
        }
    }

    #[test]
    fn buckets_and_queues() {
        let l = Limit::at_rate(10_000_000);
        assert_eq!(l.burst, 16 * 1024, "slow rates get the minimum");
        assert_eq!(
            Limit::at_rate(1_000_000_000).burst,
            500_000,
            "4 ms of 1 Gbit/s"
        );
        assert_eq!(l.queue_bytes(), 62_500 + 16_384);
        // 16384 bytes at 1.25 MB/s: 13.1 ms, in 64 ns ticks.
        assert_eq!(l.burst_ticks(), 204_800);
        // Runtimes' "no burst given" gets berth's bucket.
        assert_eq!(Limit::from_bits(10_000_000, u32::MAX as u64), l);
        assert_eq!(Limit::from_bits(10_000_000, 0), l);
        assert_eq!(Limit::from_bits(10_000_000, 800_000).burst, 100_000);
        // A bucket at a tiny rate saturates rather than wraps.
        assert_eq!(Limit::at_rate(8).burst_ticks(), u32::MAX);
        assert!(Limit::at_rate(8).check("r").is_ok());
        assert!(Limit::at_rate(4).check("r").is_err());
    }

    #[test]
    fn json_names_the_directions_in_and_out() {
        let b = Bandwidth {
            inbound: Some(Limit::at_rate(10_000_000)),
            outbound: None,
        };
        let v = serde_json::to_value(b).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"in": {"rate": 10_000_000, "burst": 16384}})
        );
        assert_eq!(serde_json::from_value::<Bandwidth>(v).unwrap(), b);
        assert_eq!(b.summary(), "in 10mbit");
        assert!(Bandwidth::default().is_unlimited());
    }
}

//! Client counters and a latency histogram, updated lock-free on the hot path.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::reason::Reason;

/// A snapshot of the client's counters. `Serialize` gives the JSON form.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Requests written to a connection (first attempts, retries and replays).
    pub sent: u64,
    pub delivered: u64,
    /// Pushes Apple refused for good, in total and per reason.
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<&'static str, u64>,
    /// Answers that were neither success nor one of Apple's reasons.
    pub unexpected: u64,
    /// Requests sent again (after 429/5xx, transport errors, GOAWAY, refused streams, expired tokens).
    pub retried: u64,
    pub timed_out: u64,
    pub shut_down: u64,
    pub in_flight: u64,
    pub connections_opened: u64,
    pub connections_failed: u64,
    pub token_refreshes: u64,
    /// Submit-to-delivery latency of delivered pushes.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
}

impl Metrics {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("metrics serialize")
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub unexpected: AtomicU64,
    pub retried: AtomicU64,
    pub timed_out: AtomicU64,
    pub shut_down: AtomicU64,
    pub connections_opened: AtomicU64,
    pub connections_failed: AtomicU64,
    rejected: [AtomicU64; REASONS],
    latency: Histogram,
}

const REASONS: usize = 30;
const _: () = assert!(Reason::ALL.len() == REASONS);

impl Counters {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn rejected(&self, reason: Reason) {
        let i = Reason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("listed");
        Self::inc(&self.rejected[i]);
    }

    pub fn delivered(&self, latency: Duration) {
        Self::inc(&self.delivered);
        self.latency.record(latency.as_micros() as u64);
    }

    pub fn snapshot(&self, in_flight: u64, token_refreshes: u64) -> Metrics {
        let rejected_by_reason: BTreeMap<_, _> = Reason::ALL
            .iter()
            .zip(&self.rejected)
            .map(|(r, n)| (r.as_str(), n.load(Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let us_to_ms = |us: u64| us as f64 / 1000.0;
        Metrics {
            sent: self.sent.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            rejected: rejected_by_reason.values().sum(),
            rejected_by_reason,
            unexpected: self.unexpected.load(Relaxed),
            retried: self.retried.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            shut_down: self.shut_down.load(Relaxed),
            in_flight,
            connections_opened: self.connections_opened.load(Relaxed),
            connections_failed: self.connections_failed.load(Relaxed),
            token_refreshes,
            latency_p50_ms: us_to_ms(self.latency.percentile(0.50)),
            latency_p99_ms: us_to_ms(self.latency.percentile(0.99)),
        }
    }
}

/// Log-linear buckets: exact below 16 µs, then 16 buckets per power of two
/// (about 6 % resolution) up to 2^40 µs. Fixed size, no allocation per record.
struct Histogram {
    buckets: Box<[AtomicU64]>,
}

const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
const MAX_EXP: u32 = 40;
const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 1) as u64 * SUB) as usize;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn bucket_of(v: u64) -> usize {
    let v = v.min((1 << MAX_EXP) - 1);
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

fn lowest_in(bucket: usize) -> u64 {
    let b = bucket as u64;
    if b < SUB {
        return b;
    }
    let exp = b / SUB + SUB_BITS as u64 - 1;
    (SUB + b % SUB) << (exp - SUB_BITS as u64)
}

impl Histogram {
    fn record(&self, v: u64) {
        self.buckets[bucket_of(v)].fetch_add(1, Relaxed);
    }

    /// The middle of the bucket holding the q-th value; 0 when empty.
    fn percentile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let lo = lowest_in(i);
                let hi = if i + 1 < BUCKETS {
                    lowest_in(i + 1)
                } else {
                    lo + 1
                };
                return lo + (hi - lo) / 2;
            }
        }
        unreachable!("rank <= total")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        for b in 0..BUCKETS - 1 {
            assert!(lowest_in(b) < lowest_in(b + 1));
            assert_eq!(bucket_of(lowest_in(b)), b);
            assert_eq!(bucket_of(lowest_in(b + 1) - 1), b);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_are_within_the_resolution() {
        let h = Histogram::default();
        assert_eq!(h.percentile(0.5), 0);
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.percentile(0.5) as f64;
        let p99 = h.percentile(0.99) as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.07, "p50 {p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.07, "p99 {p99}");
    }

    #[test]
    fn snapshot_counts_rejections_by_reason_and_serializes() {
        let c = Counters::default();
        c.rejected(Reason::Unregistered);
        c.rejected(Reason::Unregistered);
        c.rejected(Reason::BadTopic);
        c.delivered(Duration::from_millis(3));
        let m = c.snapshot(2, 1);
        assert_eq!(m.rejected, 3);
        assert_eq!(m.rejected_by_reason["Unregistered"], 2);
        assert_eq!((m.delivered, m.in_flight, m.token_refreshes), (1, 2, 1));
        assert!((m.latency_p50_ms - 3.0).abs() < 0.2, "{}", m.latency_p50_ms);
        let json: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(json["rejected_by_reason"]["BadTopic"], 1);
    }
}

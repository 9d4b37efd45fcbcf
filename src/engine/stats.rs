//! Counters and the park → resume latency histogram. Lock-free so the hot
//! paths only do relaxed atomic adds.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A snapshot of the engine's counters (also serialized to JSON as is).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub parked_now: u64,
    pub parked_total: u64,
    pub resumed: u64,
    pub append_branches: u64,
    pub rejected_timeout: u64,
    pub rejected_push_failed: u64,
    pub cancelled: u64,
    /// `park` refused: no push device / over a limit / queue full.
    pub park_no_device: u64,
    pub park_over_limit: u64,
    pub park_queue_full: u64,
    pub pushes_sent: u64,
    /// Calls whose push was folded into a later push to the same device.
    pub pushes_coalesced: u64,
    pub pushes_delivered: u64,
    /// 410 / BadDeviceToken: the token is dead.
    pub pushes_failed_dead_token: u64,
    /// Other permanent rejections by APNs (bad topic, payload, auth, ...).
    pub pushes_failed_rejected: u64,
    /// No answer within the call's deadline (after the client's retries).
    pub pushes_failed_timed_out: u64,
    /// Not sent: the client refused it (queue full, shut down, invalid).
    pub pushes_failed_not_sent: u64,
    pub devices_gone: u64,
    pub devices_stored: u64,
    pub events_waiting: u64,
    pub resume_latency_p50_us: u64,
    pub resume_latency_p99_us: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub parked_total: AtomicU64,
    pub resumed: AtomicU64,
    pub append_branches: AtomicU64,
    pub rejected_timeout: AtomicU64,
    pub rejected_push_failed: AtomicU64,
    pub cancelled: AtomicU64,
    pub park_no_device: AtomicU64,
    pub park_over_limit: AtomicU64,
    pub park_queue_full: AtomicU64,
    pub pushes_sent: AtomicU64,
    pub pushes_coalesced: AtomicU64,
    pub pushes_delivered: AtomicU64,
    pub pushes_failed_dead_token: AtomicU64,
    pub pushes_failed_rejected: AtomicU64,
    pub pushes_failed_timed_out: AtomicU64,
    pub pushes_failed_not_sent: AtomicU64,
    pub devices_gone: AtomicU64,
    pub resume_latency: Histogram,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Relaxed);
        Stats {
            parked_now: 0,
            parked_total: get(&self.parked_total),
            resumed: get(&self.resumed),
            append_branches: get(&self.append_branches),
            rejected_timeout: get(&self.rejected_timeout),
            rejected_push_failed: get(&self.rejected_push_failed),
            cancelled: get(&self.cancelled),
            park_no_device: get(&self.park_no_device),
            park_over_limit: get(&self.park_over_limit),
            park_queue_full: get(&self.park_queue_full),
            pushes_sent: get(&self.pushes_sent),
            pushes_coalesced: get(&self.pushes_coalesced),
            pushes_delivered: get(&self.pushes_delivered),
            pushes_failed_dead_token: get(&self.pushes_failed_dead_token),
            pushes_failed_rejected: get(&self.pushes_failed_rejected),
            pushes_failed_timed_out: get(&self.pushes_failed_timed_out),
            pushes_failed_not_sent: get(&self.pushes_failed_not_sent),
            devices_gone: get(&self.devices_gone),
            devices_stored: 0,
            events_waiting: 0,
            resume_latency_p50_us: self.resume_latency.quantile(0.50),
            resume_latency_p99_us: self.resume_latency.quantile(0.99),
        }
    }
}

/// Sub-buckets per power of two: values are kept to within 1/16 (~6%).
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

/// A log-linear histogram of microseconds.
pub(crate) struct Histogram {
    counts: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The largest value that falls in bucket `b`.
fn bucket_top(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB {
        return b;
    }
    let exp = b / SUB + u64::from(SUB_BITS) - 1;
    let sub = b % SUB;
    let low = (SUB + sub) << (exp - u64::from(SUB_BITS));
    low + ((1u64 << (exp - u64::from(SUB_BITS))) - 1)
}

impl Histogram {
    pub(crate) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(us)].fetch_add(1, Relaxed);
    }

    /// The value at quantile `q` (0 when empty), as the top of its bucket.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (b, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_top(b);
            }
        }
        bucket_top(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        for v in [
            0,
            1,
            15,
            16,
            17,
            31,
            32,
            1000,
            123_456,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let b = bucket_of(v);
            assert!(b < BUCKETS);
            assert!(bucket_top(b) >= v, "{v}");
            if b > 0 {
                assert!(bucket_top(b - 1) < v, "{v}");
            }
        }
    }

    #[test]
    fn quantiles_are_within_a_bucket() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), 0);
        for us in 1..=1000 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5);
        let p99 = h.quantile(0.99);
        assert!((500..=532).contains(&p50), "{p50}");
        assert!((990..=1055).contains(&p99), "{p99}");
    }
}

//! Client counters and a latency histogram, updated lock-free on the hot path.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::service::RejectReason;
use crate::histogram::Histogram;

/// A snapshot of the client's counters. `Serialize` gives the JSON form.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Requests written to a connection (first attempts, retries and replays).
    pub sent: u64,
    pub delivered: u64,
    /// Pushes the service refused for good, in total and per reason.
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<&'static str, u64>,
    /// Answers that were neither success nor one of the service's reasons.
    pub unexpected: u64,
    /// Requests sent again (after 429/5xx, GOAWAY, refused streams, expired credentials).
    pub retried: u64,
    /// Of those, replays: requests the server certainly did not process
    /// (above a GOAWAY's last-stream-id, REFUSED_STREAM, never written).
    pub replayed: u64,
    /// Pushes written whose connection was lost before the answer: the service may
    /// or may not have delivered them; never sent again.
    pub unconfirmed: u64,
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

pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub unexpected: AtomicU64,
    pub retried: AtomicU64,
    pub replayed: AtomicU64,
    pub unconfirmed: AtomicU64,
    pub timed_out: AtomicU64,
    pub shut_down: AtomicU64,
    pub connections_opened: AtomicU64,
    pub connections_failed: AtomicU64,
    /// One per `RejectReason::ALL`, in its order.
    rejected: Box<[AtomicU64]>,
    latency: Histogram,
}

impl Counters {
    pub fn new<R: RejectReason>() -> Self {
        Counters {
            sent: AtomicU64::default(),
            delivered: AtomicU64::default(),
            unexpected: AtomicU64::default(),
            retried: AtomicU64::default(),
            replayed: AtomicU64::default(),
            unconfirmed: AtomicU64::default(),
            timed_out: AtomicU64::default(),
            shut_down: AtomicU64::default(),
            connections_opened: AtomicU64::default(),
            connections_failed: AtomicU64::default(),
            rejected: R::ALL.iter().map(|_| AtomicU64::default()).collect(),
            latency: Histogram::default(),
        }
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn rejected<R: RejectReason>(&self, reason: R) {
        let i = R::ALL.iter().position(|r| *r == reason).expect("listed");
        Self::inc(&self.rejected[i]);
    }

    pub fn delivered(&self, latency: Duration) {
        Self::inc(&self.delivered);
        self.latency.record(latency);
    }

    pub fn snapshot<R: RejectReason>(&self, in_flight: u64, token_refreshes: u64) -> Metrics {
        let rejected_by_reason: BTreeMap<_, _> = R::ALL
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
            replayed: self.replayed.load(Relaxed),
            unconfirmed: self.unconfirmed.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            shut_down: self.shut_down.load(Relaxed),
            in_flight,
            connections_opened: self.connections_opened.load(Relaxed),
            connections_failed: self.connections_failed.load(Relaxed),
            token_refreshes,
            latency_p50_ms: us_to_ms(self.latency.quantile(0.50)),
            latency_p99_ms: us_to_ms(self.latency.quantile(0.99)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apns::Reason;

    #[test]
    fn snapshot_counts_rejections_by_reason_and_serializes() {
        let c = Counters::new::<Reason>();
        c.rejected(Reason::Unregistered);
        c.rejected(Reason::Unregistered);
        c.rejected(Reason::BadTopic);
        c.delivered(Duration::from_millis(3));
        let m = c.snapshot::<Reason>(2, 1);
        assert_eq!(m.rejected, 3);
        assert_eq!(m.rejected_by_reason["Unregistered"], 2);
        assert_eq!((m.delivered, m.in_flight, m.token_refreshes), (1, 2, 1));
        assert!((m.latency_p50_ms - 3.0).abs() < 0.2, "{}", m.latency_p50_ms);
        let json: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(json["rejected_by_reason"]["BadTopic"], 1);
    }
}

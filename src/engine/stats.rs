//! Counters and the park → resume latency histogram. Lock-free so the hot
//! paths only do relaxed atomic adds.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::histogram::Histogram;

/// A snapshot of the engine's counters (also serialized to JSON as is).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Calls waiting for a device with nothing ringing.
    pub parked_now: u64,
    /// Calls resumed, or forked and ringing somewhere, still known.
    pub resumed_now: u64,
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
    /// Calls whose push was folded into a later push to the same device, or
    /// left to another node of the cluster that had just pushed it.
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
    /// Bindings whose latest change is in memory only, queued for the disk
    /// (write-behind; at most one per binding, however long the disk stalls).
    pub store_writes_pending: u64,
    /// Batches of binding changes whose disk commit failed (logged).
    pub store_write_errors: u64,
    pub events_waiting: u64,
    pub resume_latency_p50_us: u64,
    pub resume_latency_p99_us: u64,
    /// LateWake events: devices that registered for a call that had ended, or whose
    /// Resume or AppendBranch the host had not polled when it ended the call.
    pub late_wakes: u64,
    /// REGISTERs ignored: an older CSeq of a Call-ID already applied.
    pub registers_out_of_order: u64,
    /// Requests sent again that APNs had certainly not processed (past a
    /// GOAWAY's last-stream-id, REFUSED_STREAM, never written).
    pub pushes_replayed: u64,
    /// Informational events (PushResult, DeviceGone, LateWake) dropped: the
    /// event queue was full, or a push result found the engine thread too far behind.
    pub events_dropped: u64,
    /// Bindings dropped to keep an AOR within `store.max_devices_per_aor`.
    pub devices_evicted: u64,
    /// Engine processes restarted (`pushpark_engine_spawn` only).
    pub engine_restarts: u64,
    /// Pushes written to APNs whose connection was lost before the answer: APNs
    /// may or may not have delivered them. Not sent again; their calls wait.
    pub pushes_unconfirmed: u64,
    /// With a `cluster` config: 1 while connected to Redis (subscribed, bindings loaded).
    pub cluster_connected: u64,
    /// Wakes (REGISTERs of this node) published to the other nodes.
    pub cluster_wakes_sent: u64,
    /// Wakes from other nodes handled here.
    pub cluster_wakes_received: u64,
    /// Binding changes written to Redis, plus those applied here from Redis
    /// (other nodes' changes, loads at connection).
    pub cluster_bindings_synced: u64,
    /// Cluster jobs that failed (a Redis command failed or timed out, Redis was
    /// away) or were dropped (the cluster thread's queue was full). A binding
    /// change that failed or was dropped is written later; a wake is not.
    pub cluster_failures: u64,
    /// Wakes of this node the other nodes never got: the cluster thread's queue was
    /// full, Redis was away, or the publish failed (also in `cluster_failures`).
    pub cluster_wakes_dropped: u64,
    /// Per push service: pushes sent, delivered, and sent but not delivered (refused,
    /// timed out, shut down; unconfirmed ones are neither). The totals above cover both.
    pub apns_pushes_sent: u64,
    pub apns_pushes_delivered: u64,
    pub apns_pushes_failed: u64,
    pub fcm_pushes_sent: u64,
    pub fcm_pushes_delivered: u64,
    pub fcm_pushes_failed: u64,
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
    pub late_wakes: AtomicU64,
    pub registers_out_of_order: AtomicU64,
    pub pushes_replayed: AtomicU64,
    pub pushes_unconfirmed: AtomicU64,
    pub apns: ServiceCounters,
    pub fcm: ServiceCounters,
    pub resume_latency: Histogram,
}

/// One push service's share of the push counters.
#[derive(Default)]
pub(crate) struct ServiceCounters {
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

impl Counters {
    /// The counters of a device's push service (`DeviceInfo::provider`).
    pub(crate) fn of_service(&self, provider: &str) -> &ServiceCounters {
        if provider == "fcm" {
            &self.fcm
        } else {
            &self.apns
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Relaxed);
        Stats {
            parked_now: 0,
            resumed_now: 0,
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
            store_writes_pending: 0,
            store_write_errors: 0,
            events_waiting: 0,
            resume_latency_p50_us: self.resume_latency.quantile(0.50),
            resume_latency_p99_us: self.resume_latency.quantile(0.99),
            late_wakes: get(&self.late_wakes),
            registers_out_of_order: get(&self.registers_out_of_order),
            pushes_replayed: get(&self.pushes_replayed),
            events_dropped: 0,
            devices_evicted: 0,
            engine_restarts: 0,
            pushes_unconfirmed: get(&self.pushes_unconfirmed),
            cluster_connected: 0,
            cluster_wakes_sent: 0,
            cluster_wakes_received: 0,
            cluster_bindings_synced: 0,
            cluster_failures: 0,
            cluster_wakes_dropped: 0,
            apns_pushes_sent: get(&self.apns.sent),
            apns_pushes_delivered: get(&self.apns.delivered),
            apns_pushes_failed: get(&self.apns.failed),
            fcm_pushes_sent: get(&self.fcm.sent),
            fcm_pushes_delivered: get(&self.fcm.delivered),
            fcm_pushes_failed: get(&self.fcm.failed),
        }
    }
}

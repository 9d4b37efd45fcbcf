//! The engine thread: call deadlines, per-device push windows, dispatch to
//! the APNs client and the handling of push results. It is the only thread
//! that submits pushes, so coalescing needs no lock.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::events::{Event, EventKind};
use super::parked::{CallState, End};
use super::push::{display_name, Coalescer, DeviceId, Offer, PayloadFields};
use super::push_clients::Clients;
use super::redact;
use super::stats::{add, inc};
use super::store::DeviceInfo;
use super::{unix_now, Shared};
use crate::apns::{self, Push, PushType};
use crate::fcm::{self, ErrorCode};
use crate::push_client::{Outcome, PushResult, RejectReason};

pub(crate) enum Cmd {
    /// A call was parked: arm its deadline and push its devices (none when it
    /// resumed at once).
    Park {
        id: u64,
        deadline: Instant,
        devices: Vec<DeviceInfo>,
    },
}

/// A push made for its service.
enum Request {
    Apns(Push),
    Fcm(fcm::Message),
}

/// A push's final result, sent back by its client's thread.
struct Done {
    aor: String,
    device: DeviceInfo,
    park_id: u64,
    result: PushResult<Refusal>,
}

/// Why a push service refused a push for good, in the terms the engine acts on.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    reason: &'static str,
    /// Still failing at the deadline, but not the device's fault.
    retryable: bool,
    /// The call's payload, not the device: other calls still reach it.
    payload_too_large: bool,
}

impl From<apns::Reason> for Refusal {
    fn from(r: apns::Reason) -> Self {
        Refusal {
            reason: r.as_str(),
            retryable: r.is_retryable(),
            payload_too_large: r == apns::Reason::PayloadTooLarge,
        }
    }
}

impl From<ErrorCode> for Refusal {
    fn from(r: ErrorCode) -> Self {
        Refusal {
            reason: RejectReason::as_str(r),
            retryable: r.is_retryable(),
            payload_too_large: false,
        }
    }
}

/// The cluster's answer to a push claim (cluster.rs): push, or another node just did.
struct Claimed {
    aor: String,
    device: DeviceInfo,
    park_id: u64,
    granted: bool,
}

/// Boxed device ids keep heap entries small: every parked call has a deadline here.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Deadline(u64),
    WindowEnd(Box<DeviceId>),
    Housekeeping,
}

const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
const PURGE_EVERY: Duration = Duration::from_secs(3600);

pub(crate) struct Worker {
    sh: Arc<Shared>,
    clients: Clients,
    coalescer: Coalescer,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
    /// Unbounded: the cluster answers each claim within its budget (cluster.rs).
    claimed_tx: Sender<Claimed>,
    claimed_rx: Receiver<Claimed>,
    next_purge: Instant,
}

impl Worker {
    pub(crate) fn new(sh: Arc<Shared>, clients: Clients) -> Worker {
        // As many results as a client has pushes in flight: only an engine thread
        // stuck that long fills it. The client's threads never block on it (we
        // may be waiting on them): a result that does not fit is dropped and
        // counted; its call then ends at its deadline like any unanswered push.
        let (done_tx, done_rx) = crossbeam_channel::bounded(clients.max_pending());
        let coalescer = Coalescer::new(sh.cfg.push.min_interval);
        let (claimed_tx, claimed_rx) = crossbeam_channel::unbounded();
        Worker {
            claimed_tx,
            claimed_rx,
            sh,
            clients,
            coalescer,
            timers: BinaryHeap::new(),
            done_tx,
            done_rx,
            next_purge: Instant::now() + PURGE_EVERY,
        }
    }

    pub(crate) fn run(mut self, cmd_rx: Receiver<Cmd>, stop_rx: Receiver<()>) {
        self.timers.push(Reverse((
            Instant::now() + HOUSEKEEPING_EVERY,
            Timer::Housekeeping,
        )));
        let done_rx = self.done_rx.clone();
        let claimed_rx = self.claimed_rx.clone();
        loop {
            let next = self.timers.peek().map(|Reverse((at, _))| *at);
            let wait = next.map_or(HOUSEKEEPING_EVERY, |at| {
                at.saturating_duration_since(Instant::now())
            });
            crossbeam_channel::select! {
                recv(stop_rx) -> _ => break,
                recv(cmd_rx) -> cmd => match cmd {
                    Ok(cmd) => self.guarded("park", |w| w.on_cmd(cmd)),
                    Err(_) => break,
                },
                recv(done_rx) -> done => if let Ok(d) = done {
                    self.guarded("push result", |w| w.on_done(d));
                },
                recv(claimed_rx) -> c => if let Ok(c) = c {
                    self.guarded("push claim", |w| w.on_claimed(c));
                },
                default(wait) => {}
            }
            self.guarded("timers", |w| w.fire_timers(Instant::now()));
        }
        log::debug!("engine thread stopping");
    }

    /// A bug in one step must not stop the thread that ends every call.
    fn guarded(&mut self, what: &str, f: impl FnOnce(&mut Worker)) {
        if catch_unwind(AssertUnwindSafe(|| f(self))).is_err() {
            log::error!("engine thread: panic while handling {what}; continuing");
        }
    }

    fn at(&mut self, when: Instant, t: Timer) {
        self.timers.push(Reverse((when, t)));
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        let Cmd::Park {
            id,
            deadline,
            devices,
        } = cmd;
        self.at(deadline, Timer::Deadline(id));
        if devices.is_empty() {
            return;
        }
        let now = Instant::now();
        let aor = match self.sh.table.lock().get(id) {
            Some(call) if call.waiting() => call.aor.to_string(),
            _ => return,
        };
        for d in devices {
            match self.coalescer.offer(&aor, &d, now) {
                Offer::SendNow { window_end } => {
                    if window_end > now {
                        self.at(
                            window_end,
                            Timer::WindowEnd(Box::new((aor.clone(), d.key.clone()))),
                        );
                    }
                    self.claim_then_send(&aor, d, id);
                }
                Offer::Wait { superseded } => {
                    if superseded {
                        inc(&self.sh.counters.pushes_coalesced);
                    }
                }
            }
        }
    }

    /// With a cluster and `push.min_interval_ms`, the device is pushed only
    /// if no other node pushed it within that interval (asked on the cluster
    /// thread; the answer comes back as `Claimed`); else at once.
    fn claim_then_send(&mut self, aor: &str, device: DeviceInfo, park_id: u64) {
        let Some(link) = self.sh.cluster.as_ref().filter(|_| self.coalescer_on()) else {
            return self.send(aor, device, park_id);
        };
        let token = device.token.clone();
        let (tx, aor) = (self.claimed_tx.clone(), aor.to_string());
        let reply = Box::new(move |granted: bool| {
            let _ = tx.send(Claimed {
                aor,
                device,
                park_id,
                granted,
            });
        });
        link.claim(&token, reply);
    }

    fn coalescer_on(&self) -> bool {
        !self.sh.cfg.push.min_interval.is_zero()
    }

    fn on_claimed(&mut self, c: Claimed) {
        if c.granted {
            self.send(&c.aor, c.device, c.park_id);
        } else {
            // Another node pushed the device: the call waits for its wake.
            inc(&self.sh.counters.pushes_coalesced);
            log::debug!(
                "push for park {} to {} / {} left to another node",
                c.park_id,
                c.aor,
                redact::key(&c.device.key)
            );
        }
    }

    /// Pushes call `park_id` to `device`, unless the call no longer waits.
    fn send(&mut self, aor: &str, device: DeviceInfo, park_id: u64) {
        // One id for the push in the payload, in our logs and, as its `apns-id`, in
        // Apple's delivery log.
        let id = uuid::Uuid::new_v4();
        let push_id = id.to_string();
        let (request, deadline) = {
            let mut t = self.sh.table.lock();
            let Some(call) = t.get_mut(park_id).filter(|c| c.waiting()) else {
                return;
            };
            let fields = PayloadFields {
                call_id: &call.call_id,
                caller_uri: &call.caller_uri,
                caller_name: &display_name(&call.caller_name),
                push_id: &push_id,
                aor: &call.aor,
            };
            // The services store a push and deliver it later: a push for a call that
            // is gone must not ring the phone, so it expires with the call.
            let left = call.deadline.saturating_duration_since(Instant::now());
            let request = if device.provider == "fcm" {
                fcm::message::render(&device.token, &fields, left)
                    .map(|body| {
                        Request::Fcm(fcm::Message {
                            project: device.topic.clone(),
                            body,
                        })
                    })
                    .map_err(|e| e.to_string())
            } else {
                let template = &self.sh.cfg.push.payload_template;
                template
                    .render_within(&fields, PushType::Voip.max_payload())
                    .map(|payload| {
                        let expiration = unix_now() + left.as_secs() + 1;
                        let (token, topic) = (device.token.clone(), device.topic.clone());
                        Request::Apns(Push::voip(token, topic, payload, expiration))
                    })
            };
            let request = match request {
                Ok(r) => r,
                Err(why) => {
                    drop(t);
                    log::warn!("push for park {park_id} to {aor} not built: {why}");
                    self.not_sent(aor, &device.key, park_id, &push_id, &why);
                    self.call_failed(park_id, &device.key);
                    return;
                }
            };
            // Until its result says otherwise, the device may show this call.
            if !call.pushed.iter().any(|k| **k == *device.key) {
                call.pushed.push(device.key.as_str().into());
            }
            (request, call.deadline)
        };
        let submitted = match request {
            Request::Apns(push) => {
                let done = self.on_result(aor, &device, park_id);
                (self.clients.apns(&device.provider)).and_then(|c| {
                    c.submit_as(id, push, deadline, done)
                        .map_err(|e| e.to_string())
                })
            }
            Request::Fcm(message) => {
                let done = self.on_result(aor, &device, park_id);
                (self.clients.fcm(&device.topic)).and_then(|c| {
                    c.submit_as(id, message, deadline, done)
                        .map_err(|e| e.to_string())
                })
            }
        };
        match submitted {
            Ok(_) => {
                inc(&self.sh.counters.pushes_sent);
                inc(&self.sh.counters.of_service(&device.provider).sent);
                log::debug!(
                    "push {push_id} for park {park_id} to {aor} / {}",
                    redact::key(&device.key)
                );
            }
            Err(why) => {
                let key = redact::key(&device.key);
                log::warn!("push for {aor} / {key} not sent: {why}");
                self.sh.table.lock().push_failed(aor, park_id, &device.key);
                self.not_sent(aor, &device.key, park_id, &push_id, &why);
                self.device_failed(aor, &device.key);
            }
        }
    }

    /// What a client calls with a push's result: hands it to this thread.
    fn on_result<R: Into<Refusal> + 'static>(
        &self,
        aor: &str,
        device: &DeviceInfo,
        park_id: u64,
    ) -> Box<dyn FnOnce(PushResult<R>) + Send> {
        let (tx, sh) = (self.done_tx.clone(), self.sh.clone());
        let (aor, device) = (aor.to_string(), device.clone());
        Box::new(move |result: PushResult<R>| {
            let done = Done {
                aor,
                device,
                park_id,
                result: result.map_reason(Into::into),
            };
            if let Err(TrySendError::Full(_)) = tx.try_send(done) {
                // Its PushResult event is lost with it.
                sh.events.count_dropped();
            }
        })
    }

    /// A push that never went out: counted and reported like any push outcome.
    fn not_sent(&self, aor: &str, key: &str, park_id: u64, push_id: &str, why: &dyn Display) {
        inc(&self.sh.counters.pushes_failed_not_sent);
        let reason = format!("not sent: {why}");
        self.push_result(aor, key, park_id, push_id, reason, false);
    }

    /// A push's outcome, with the host_ref and host_data of its call while the engine still
    /// has the call: queued under the table's lock, as a call's end purges its events under
    /// it, so none carries the host_ref of a call the host was told had ended. The first
    /// delivered push of a call still waiting says so (once per call).
    fn push_result(
        &self,
        aor: &str,
        key: &str,
        park_id: u64,
        push_id: &str,
        reason: String,
        delivered: bool,
    ) {
        let mut t = self.sh.table.lock();
        let call = t.get_mut(park_id);
        let (host_ref, host_data) = call.as_ref().map_or((0, 0), |c| (c.host_ref, c.host_data));
        let first_delivered = match call {
            Some(c) if delivered && c.waiting() && !c.delivered => {
                c.delivered = true;
                true
            }
            _ => false,
        };
        self.sh.events.push(Event {
            host_ref,
            host_data,
            park_id,
            reason,
            first_delivered,
            push_id: push_id.to_string(),
            ..device_event(EventKind::PushResult, aor, key)
        });
    }

    fn on_done(&mut self, d: Done) {
        let c = &self.sh.counters;
        add(&c.pushes_replayed, d.result.replays.into());
        let key = d.device.key.as_str();
        // Apple's timestamp when the token is dead.
        let mut dead_since = None;
        let (reason, permanent) = match &d.result.outcome {
            Outcome::Delivered => {
                inc(&c.pushes_delivered);
                ("delivered".to_string(), false)
            }
            Outcome::Rejected {
                reason,
                token_dead,
                timestamp,
                ..
            } => {
                if *token_dead {
                    inc(&c.pushes_failed_dead_token);
                    dead_since = Some(*timestamp);
                } else {
                    inc(&c.pushes_failed_rejected);
                }
                // Retryable reasons still failing at the deadline are not the device's fault.
                (reason.reason.to_string(), !reason.retryable)
            }
            Outcome::Unexpected { status, .. } => {
                inc(&c.pushes_failed_rejected);
                (
                    format!("unexpected status {status}"),
                    (400..500).contains(status) && *status != 429,
                )
            }
            // May have woken the device: not a failure of the device nor of the call,
            // which waits for the device until its deadline.
            Outcome::Unconfirmed { why } => {
                inc(&c.pushes_unconfirmed);
                log::info!(
                    "push {} for {} / {} unconfirmed, not sent again: {why}",
                    d.result.apns_id,
                    d.aor,
                    redact::key(key)
                );
                ("unconfirmed".to_string(), false)
            }
            Outcome::TimedOut => {
                inc(&c.pushes_failed_timed_out);
                ("timed out".to_string(), false)
            }
            Outcome::ShutDown => {
                inc(&c.pushes_failed_not_sent);
                ("client shut down".to_string(), false)
            }
        };
        let service = c.of_service(&d.device.provider);
        match d.result.outcome {
            Outcome::Delivered => inc(&service.delivered),
            Outcome::Unconfirmed { .. } => {}
            _ => inc(&service.failed),
        }
        log::debug!(
            "push {} for {} / {}: {reason} ({} attempts)",
            d.result.apns_id,
            d.aor,
            redact::key(key),
            d.result.attempts
        );
        // An unconfirmed push may show the call: its device stays among the pushed
        // ones, so that a wake after the call ended is told (LATE_WAKE).
        if !matches!(
            d.result.outcome,
            Outcome::Delivered | Outcome::Unconfirmed { .. }
        ) {
            self.sh.table.lock().push_failed(&d.aor, d.park_id, key);
        }
        let delivered = matches!(d.result.outcome, Outcome::Delivered);
        let push_id = d.result.apns_id.to_string();
        self.push_result(&d.aor, key, d.park_id, &push_id, reason.clone(), delivered);
        if let Some(timestamp) = dead_since {
            self.token_dead(&d.aor, &d.device, timestamp);
        }
        let too_large = matches!(
            d.result.outcome,
            Outcome::Rejected { reason, .. } if reason.payload_too_large
        );
        if too_large {
            // The call's payload, not the device: other calls still reach it.
            self.call_failed(d.park_id, key);
        } else if permanent {
            self.device_failed(&d.aor, key);
        }
    }

    /// The PushResult just before carries the service's reason; DeviceGone says "token dead".
    fn token_dead(&mut self, aor: &str, device: &DeviceInfo, dead_since_ms: Option<u64>) {
        if self
            .sh
            .store
            .remove_dead(aor, &device.key, &device.token, dead_since_ms)
        {
            inc(&self.sh.counters.devices_gone);
            log::info!(
                "{} says the token of {aor} / {} is dead: binding removed",
                if device.provider == "fcm" {
                    "FCM"
                } else {
                    "APNs"
                },
                redact::key(&device.key)
            );
            self.sh.events.push(Event {
                reason: "token dead".into(),
                ..device_event(EventKind::DeviceGone, aor, &device.key)
            });
        }
    }

    /// A device's push failed for good: it no longer counts for the AOR's
    /// parked calls, and a call left with no device is rejected.
    fn device_failed(&mut self, aor: &str, key: &str) {
        self.coalescer.forget(&(aor.to_string(), key.to_string()));
        let ids = self.sh.table.lock().ids_of_aor(aor);
        for id in ids {
            self.call_failed(id, key);
        }
    }

    /// The device no longer counts for call `id`; the call is rejected when
    /// that leaves it no device.
    fn call_failed(&mut self, id: u64, key: &str) {
        let park = &self.sh.cfg.park;
        let mut t = self.sh.table.lock();
        let Some(call) = t.get_mut(id).filter(|c| c.waiting()) else {
            return;
        };
        let before = call.targets.len();
        call.targets.retain(|k| &**k != key);
        // A forked call that rings a woken device waits for its deadline.
        if before > 0 && call.targets.is_empty() && call.state == CallState::Parked {
            let how = End::Reject {
                code: park.push_failed_code,
                reason: &park.push_failed_reason,
                push_failed: true,
            };
            t.finish(id, how, &self.sh.events, &self.sh.counters);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, timer)) = self.timers.pop().expect("peeked");
            match timer {
                Timer::Deadline(id) => self.deadline(id),
                Timer::WindowEnd(device) => self.window_end(*device, now),
                Timer::Housekeeping => self.housekeeping(now),
            }
        }
    }

    fn deadline(&mut self, id: u64) {
        let park = &self.sh.cfg.park;
        let mut t = self.sh.table.lock();
        let how = End::Reject {
            code: park.reject_code,
            reason: &park.reject_reason,
            push_failed: false,
        };
        // A resumed call is only forgotten: the host relayed it.
        if !t.finish(id, how, &self.sh.events, &self.sh.counters) {
            t.remove(id);
        }
    }

    /// A device's window ended with calls waiting: push the latest call still
    /// parked that targets it (one push for all of them).
    fn window_end(&mut self, id: DeviceId, now: Instant) {
        let Some(device) = self.coalescer.window_ended(&id) else {
            return;
        };
        let latest = {
            let t = self.sh.table.lock();
            t.ids_of_aor(&id.0).into_iter().rev().find(|&cid| {
                t.get(cid)
                    .is_some_and(|c| c.waiting() && c.targets.iter().any(|k| **k == *device.key))
            })
        };
        match latest {
            Some(park_id) => {
                let window_end = self.coalescer.restart(id.clone(), now);
                self.at(window_end, Timer::WindowEnd(Box::new(id.clone())));
                self.claim_then_send(&id.0, device, park_id);
            }
            None => self.coalescer.forget(&id),
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        let recent = self.sh.cfg.park.recent_register;
        self.sh.order.lock().forget_before(now);
        self.sh
            .table
            .lock()
            .forget_before(now.checked_sub(recent), now);
        if now >= self.next_purge {
            self.next_purge = now + PURGE_EVERY;
            let n = self.sh.store.purge_expired(unix_now());
            if n > 0 {
                log::info!("device store: {n} expired bindings removed");
            }
        }
        self.at(now + HOUSEKEEPING_EVERY, Timer::Housekeeping);
    }
}

/// An event about a device and no call; the key shown without a whole token.
fn device_event(kind: EventKind, aor: &str, device_key: &str) -> Event {
    Event {
        kind,
        host_ref: 0,
        host_data: 0,
        park_id: 0,
        call_id: String::new(),
        caller_uri: String::new(),
        caller_name: String::new(),
        aor: aor.to_string(),
        device_key: redact::key(device_key),
        contact: String::new(),
        sip_code: 0,
        reason: String::new(),
        relay: None,
        first_delivered: false,
        push_id: String::new(),
    }
}

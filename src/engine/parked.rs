//! The parked-call table. Every way a parked call can end goes through
//! `Table::finish` or `Table::end_by_host`, under the one table lock, so
//! timeout, REGISTER, cancel and failed pushes racing each other end a call
//! exactly once. A call that ends leaves its pushed devices that never
//! registered for it to `late` (late.rs).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::events::{late_wake_reason, reject_queued, Event, EventKind, EventQueue, Relay};
use super::late::{Ghost, LateWakes};
use super::redact;
use super::stats::{add, inc, Counters};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallState {
    /// Waiting: no pushed device has registered for it yet.
    Parked,
    /// A device registered for it (Resume or AppendBranch); kept until the
    /// host ends it or its deadline so that further devices registering
    /// become extra branches.
    Ringing,
}

impl CallState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CallState::Parked => "parked",
            CallState::Ringing => "ringing",
        }
    }
}

pub(crate) struct Call {
    pub host_ref: u64,
    /// The host's own data, back on the call's events.
    pub host_data: u64,
    pub call_id: Box<str>,
    pub aor: Box<str>,
    pub caller_uri: Box<str>,
    pub caller_name: Box<str>,
    pub parked_at: Instant,
    pub deadline: Instant,
    pub state: CallState,
    /// `pushpark_fork`: every device that registers gets AppendBranch (never
    /// Resume), pushes go on after the first, and the deadline rejects it.
    pub forked: bool,
    /// Forked while the host rings some of the AOR's contacts itself.
    pub host_ringing: bool,
    /// Devices pushed for this call whose push has not failed permanently.
    pub targets: Vec<Box<str>>,
    /// Devices a push of this call went to that has not failed (late wakes).
    pub pushed: Vec<Box<str>>,
    /// Devices that got this call's Resume or AppendBranch, or that the host
    /// rang itself (fork).
    pub branches: Vec<Box<str>>,
    /// A push of this call was delivered while it waited (its PushResult said so).
    pub delivered: bool,
}

impl Call {
    /// Still waiting for pushed devices: pushes go out, the deadline rejects.
    pub(crate) fn waiting(&self) -> bool {
        self.state == CallState::Parked || self.forked
    }

    pub(crate) fn was(&self) -> CallWas {
        match (self.forked, self.state) {
            (true, _) => CallWas::Forked,
            (false, CallState::Parked) => CallWas::Parked,
            (false, CallState::Ringing) => CallWas::Resumed,
        }
    }
}

/// What a call was when the host ended it (`Engine::end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallWas {
    /// Parked, no device registered for it yet.
    Parked,
    /// Parked, then resumed (its Resume queued or polled).
    Resumed,
    /// Forked, whatever branches joined it.
    Forked,
}

/// How the engine ends a waiting call (the host ends calls by `end_by_host`).
pub(crate) enum End<'a> {
    Resume {
        device_key: &'a str,
        contact: &'a str,
        relay: Option<&'a Relay>,
    },
    Reject {
        code: u16,
        reason: &'a str,
        push_failed: bool,
    },
}

/// A device that registered, as a park shortly after takes it (park.recent_register_ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registered {
    pub device_key: String,
    pub contact: String,
    pub relay: Option<Relay>,
}

/// A parked call as `Engine::parked` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedInfo {
    pub park_id: u64,
    pub host_ref: u64,
    pub call_id: String,
    pub aor: String,
    pub age_ms: u64,
    pub state: String,
    pub forked: bool,
}

#[derive(Default)]
pub(crate) struct Table {
    calls: HashMap<u64, Call>,
    by_host_ref: HashMap<u64, u64>,
    by_aor: HashMap<Box<str>, Vec<u64>>,
    /// When each AOR last registered, by which device and Contact (for the
    /// register-just-before-park race).
    recent_registers: HashMap<Box<str>, (Instant, Registered)>,
    late: LateWakes,
    /// How long after a call's end (or deadline, if later) a late wake counts;
    /// zero: none is remembered.
    late_wake: Duration,
    next_id: u64,
}

impl Table {
    pub(crate) fn new(late_wake: Duration) -> Table {
        Table {
            late_wake,
            ..Table::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// (calls waiting with nothing ringing, calls ringing somewhere).
    pub(crate) fn counts(&self) -> (u64, u64) {
        let parked = self
            .calls
            .values()
            .filter(|c| c.state == CallState::Parked && !c.host_ringing)
            .count() as u64;
        (parked, self.calls.len() as u64 - parked)
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Call> {
        self.calls.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Call> {
        self.calls.get_mut(&id)
    }

    pub(crate) fn id_of_host_ref(&self, host_ref: u64) -> Option<u64> {
        self.by_host_ref.get(&host_ref).copied()
    }

    pub(crate) fn count_of_aor(&self, aor: &str) -> usize {
        self.by_aor.get(aor).map_or(0, Vec::len)
    }

    /// Ids of the AOR's calls, oldest first.
    pub(crate) fn ids_of_aor(&self, aor: &str) -> Vec<u64> {
        self.by_aor.get(aor).cloned().unwrap_or_default()
    }

    pub(crate) fn insert(&mut self, call: Call) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.by_host_ref.insert(call.host_ref, id);
        self.by_aor.entry(call.aor.clone()).or_default().push(id);
        self.calls.insert(id, call);
        id
    }

    /// Forgets a call without an event (its deadline passed while ringing,
    /// a park that could not be queued, or shutdown).
    pub(crate) fn remove(&mut self, id: u64) -> Option<Call> {
        let call = self.calls.remove(&id)?;
        self.by_host_ref.remove(&call.host_ref);
        if let Some(ids) = self.by_aor.get_mut(&call.aor) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_aor.remove(&call.aor);
            }
        }
        Some(call)
    }

    /// The call ended with `cause`: its pushed devices that did not register
    /// for it are told if they register within the late-wake window.
    fn remember_pushed(&mut self, id: u64, call: Call, cause: u16, now: Instant) {
        if self.late_wake.is_zero() {
            return;
        }
        let until = call.deadline.max(now) + self.late_wake;
        for key in &call.pushed {
            if !call.branches.contains(key) {
                let ghost = Ghost {
                    park_id: id,
                    call_id: call.call_id.clone(),
                    caller_uri: call.caller_uri.clone(),
                    caller_name: call.caller_name.clone(),
                    device_key: key.clone(),
                    cause,
                    until,
                };
                self.late.add(&call.aor, ghost);
            }
        }
    }

    /// Ends a waiting call with its event: the only place a call is resumed
    /// or rejected. False when it no longer waits (it already ended some
    /// other way), or for Resume when it is forked.
    pub(crate) fn finish(&mut self, id: u64, how: End, events: &EventQueue, c: &Counters) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        match how {
            End::Resume {
                device_key,
                contact,
                relay,
            } => {
                if call.state != CallState::Parked || call.forked {
                    return false;
                }
                call.state = CallState::Ringing;
                call.branches.push(device_key.into());
                inc(&c.resumed);
                c.resume_latency.record(call.parked_at.elapsed());
                let mut e = event(EventKind::Resume, id, call, device_key, contact);
                e.relay = relay.cloned();
                events.push(e);
            }
            End::Reject {
                code,
                reason,
                push_failed,
            } => {
                if !call.waiting() {
                    return false;
                }
                let call = self.remove(id).expect("checked above");
                // A forked call with a branch was counted as resumed.
                if call.state == CallState::Parked {
                    inc(if push_failed {
                        &c.rejected_push_failed
                    } else {
                        &c.rejected_timeout
                    });
                }
                let mut e = event(EventKind::Reject, id, &call, "", "");
                (e.sip_code, e.reason) = (code, reason.to_string());
                events.push(e);
                self.remember_pushed(id, call, code, Instant::now());
            }
        }
        true
    }

    /// The host ended the call (cancel, call_ended, call_completed; `cause`
    /// as a late wake's Reason gives it): it is forgotten and its queued
    /// events dropped, under this lock, so none is polled after the host's
    /// call returns; a queued Resume or AppendBranch becomes its device's
    /// LateWake. False when the engine no longer knows it.
    pub(crate) fn end_by_host(
        &mut self,
        host_ref: u64,
        cause: u16,
        events: &EventQueue,
        c: &Counters,
    ) -> bool {
        self.end_by_host_as(host_ref, |_| cause, events, c)
            .is_some()
    }

    /// As `end_by_host`, the cause chosen by what the call was; says what it was.
    pub(crate) fn end_by_host_as(
        &mut self,
        host_ref: u64,
        cause_of: impl FnOnce(CallWas) -> u16,
        events: &EventQueue,
        c: &Counters,
    ) -> Option<CallWas> {
        let id = self.id_of_host_ref(host_ref)?;
        let call = self.remove(id)?;
        let was = call.was();
        let cause = cause_of(was);
        if call.state == CallState::Parked {
            inc(&c.cancelled);
        }
        let late_wake = (!self.late_wake.is_zero()).then_some(cause);
        add(&c.late_wakes, events.purge(host_ref, late_wake));
        self.remember_pushed(id, call, cause, Instant::now());
        Some(was)
    }

    /// Ends, with a Reject of `code` and `reason`, every call whose host still waits for
    /// its answer: the waiting ones (parked, forked) and those whose Resume is queued, not
    /// yet polled (it becomes their Reject, in its place), as well as `resumed` (calls
    /// whose Resume someone else holds unpolled and turned into a Reject: ended without
    /// an event). Rejects already queued get `code` and `reason` too. The calls' other
    /// queued events are dropped. Returns how many calls got a Reject from here.
    pub(crate) fn reject_waiting(
        &mut self,
        code: u16,
        reason: &str,
        resumed: &[u64],
        events: &EventQueue,
        c: &Counters,
    ) -> u32 {
        let now = Instant::now();
        let converted = events.edit(|q| reject_queued(q, code, reason));
        let mut n = converted.len() as u32;
        for (i, &host_ref) in converted.iter().chain(resumed).enumerate() {
            let Some(id) = self.id_of_host_ref(host_ref) else {
                continue;
            };
            let call = self.remove(id).expect("indexed");
            if i >= converted.len() {
                // Its Resume is elsewhere: whatever of it is queued here goes.
                events.purge(host_ref, None);
            }
            self.remember_pushed(id, call, code, now);
        }
        let mut waiting: Vec<u64> = (self.calls.iter())
            .filter(|(_, call)| call.waiting())
            .map(|(&id, _)| id)
            .collect();
        waiting.sort_unstable();
        for id in waiting {
            let call = self.remove(id).expect("listed above");
            if call.state == CallState::Parked {
                inc(&c.cancelled);
            }
            events.purge(call.host_ref, None);
            let mut e = event(EventKind::Reject, id, &call, "", "");
            (e.sip_code, e.reason) = (code, reason.to_string());
            events.push(e);
            self.remember_pushed(id, call, code, now);
            n += 1;
        }
        n
    }

    /// A device registered while the call rings (or, forked, waits): one
    /// branch per device. The first branch of a forked call counts as its resume.
    pub(crate) fn append_branch(
        &mut self,
        id: u64,
        device_key: &str,
        contact: &str,
        relay: Option<&Relay>,
        events: &EventQueue,
        c: &Counters,
    ) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let fresh = call.state == CallState::Parked;
        if (fresh && !call.forked) || call.branches.iter().any(|b| &**b == device_key) {
            return false;
        }
        if fresh {
            call.state = CallState::Ringing;
            inc(&c.resumed);
            c.resume_latency.record(call.parked_at.elapsed());
        }
        call.branches.push(device_key.into());
        inc(&c.append_branches);
        let mut e = event(EventKind::AppendBranch, id, call, device_key, contact);
        e.relay = relay.cloned();
        events.push(e);
        true
    }

    /// Late wakes of a device that registered: one LateWake per call it was
    /// pushed for that ended before; returns how many.
    pub(crate) fn late_wakes(
        &mut self,
        aor: &str,
        device_key: &str,
        contact: &str,
        relay: Option<&Relay>,
        events: &EventQueue,
    ) -> u64 {
        let ghosts = self.late.take(aor, device_key, Instant::now());
        for g in &ghosts {
            events.push(Event {
                kind: EventKind::LateWake,
                host_ref: 0,
                host_data: 0,
                park_id: g.park_id,
                call_id: g.call_id.to_string(),
                caller_uri: g.caller_uri.to_string(),
                caller_name: g.caller_name.to_string(),
                aor: aor.to_string(),
                device_key: redact::key(device_key),
                contact: redact::contact(contact),
                sip_code: g.cause,
                reason: late_wake_reason(g.cause).to_string(),
                relay: relay.cloned(),
                first_delivered: false,
                push_id: String::new(),
            });
        }
        ghosts.len() as u64
    }

    /// A push of call `park_id` to the device failed: it never showed that call.
    pub(crate) fn push_failed(&mut self, aor: &str, park_id: u64, device_key: &str) {
        if let Some(call) = self.calls.get_mut(&park_id) {
            call.pushed.retain(|k| &**k != device_key);
        }
        self.late.push_failed(aor, park_id, device_key);
    }

    pub(crate) fn note_register(&mut self, aor: &str, device: Registered, now: Instant) {
        self.recent_registers.insert(aor.into(), (now, device));
    }

    /// The device unregistered: a park must not take it for just registered.
    /// `None`: every device of the AOR (`Contact: *`).
    pub(crate) fn forget_register(&mut self, aor: &str, device_key: Option<&str>) {
        if let Some((_, r)) = self.recent_registers.get(aor) {
            if device_key.map_or(true, |k| r.device_key == k) {
                self.recent_registers.remove(aor);
            }
        }
    }

    /// The device that registered the AOR at or after `since`, if one did.
    pub(crate) fn registered_since(&self, aor: &str, since: Instant) -> Option<Registered> {
        let (at, r) = self.recent_registers.get(aor)?;
        (*at >= since).then(|| r.clone())
    }

    /// Housekeeping: forgets registers before `registers_before` and late
    /// wakes whose window ended before `now`.
    pub(crate) fn forget_before(&mut self, registers_before: Option<Instant>, now: Instant) {
        if let Some(before) = registers_before {
            self.recent_registers.retain(|_, (at, _)| *at >= before);
        }
        self.late.forget_before(now);
    }

    pub(crate) fn info(&self, now: Instant) -> Vec<ParkedInfo> {
        let mut v: Vec<ParkedInfo> = self
            .calls
            .iter()
            .map(|(&id, c)| ParkedInfo {
                park_id: id,
                host_ref: c.host_ref,
                call_id: c.call_id.to_string(),
                aor: c.aor.to_string(),
                age_ms: now.saturating_duration_since(c.parked_at).as_millis() as u64,
                state: c.state.as_str().to_owned(),
                forked: c.forked,
            })
            .collect();
        v.sort_by_key(|p| p.park_id);
        v
    }
}

/// A call's event; the device key and Contact shown without whole tokens.
fn event(kind: EventKind, id: u64, call: &Call, device_key: &str, contact: &str) -> Event {
    Event {
        kind,
        host_ref: call.host_ref,
        host_data: call.host_data,
        park_id: id,
        call_id: call.call_id.to_string(),
        caller_uri: call.caller_uri.to_string(),
        caller_name: call.caller_name.to_string(),
        aor: call.aor.to_string(),
        device_key: redact::key(device_key),
        contact: redact::contact(contact),
        sip_code: 0,
        reason: String::new(),
        relay: None,
        first_delivered: false,
        push_id: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn call(host_ref: u64, aor: &str) -> Call {
        let now = Instant::now();
        Call {
            host_ref,
            host_data: host_ref + 100,
            call_id: format!("c{host_ref}").into(),
            aor: aor.into(),
            caller_uri: "sip:bob@h".into(),
            caller_name: "Bob".into(),
            parked_at: now,
            deadline: now + Duration::from_secs(30),
            state: CallState::Parked,
            forked: false,
            host_ringing: false,
            targets: vec!["d1".into()],
            pushed: vec!["d1".into()],
            branches: Vec::new(),
            delivered: false,
        }
    }

    fn drain(q: &EventQueue) -> Vec<Event> {
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn a_call_ends_once_whatever_comes_second() {
        let (q, c) = (EventQueue::new(64).unwrap(), Counters::default());
        let mut t = Table::default();
        let a = t.insert(call(10, "alice"));
        let b = t.insert(call(11, "alice"));
        let reject = || End::Reject {
            code: 480,
            reason: "Temporarily Unavailable",
            push_failed: false,
        };
        assert!(t.finish(
            a,
            End::Resume {
                device_key: "d1",
                contact: "sip:d1@h",
                relay: None
            },
            &q,
            &c
        ));
        assert!(!t.finish(a, reject(), &q, &c), "already resumed");
        assert!(!t.finish(a, reject(), &q, &c));
        assert!(t.end_by_host(11, 487, &q, &c));
        assert!(!t.end_by_host(11, 487, &q, &c));
        assert!(!t.finish(
            b,
            End::Resume {
                device_key: "d1",
                contact: "sip:d1@h",
                relay: None
            },
            &q,
            &c
        ));
        let events = drain(&q);
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].kind, events[0].host_ref, events[0].park_id),
            (EventKind::Resume, 10, a)
        );
        assert_eq!(t.len(), 1, "the resumed call rings on");
        assert_eq!(t.id_of_host_ref(11), None);
        let s = c.snapshot();
        assert_eq!((s.resumed, s.cancelled, s.rejected_timeout), (1, 1, 0));
    }

    #[test]
    fn reject_waiting_answers_each_call_the_host_waits_on_once_with_its_host_data() {
        let (q, c) = (EventQueue::new(64).unwrap(), Counters::default());
        let mut t = Table::default();
        let resume = || End::Resume {
            device_key: "d1",
            contact: "",
            relay: None,
        };
        let parked = t.insert(call(1, "alice"));
        let relayed = t.insert(call(4, "dan"));
        t.finish(relayed, resume(), &q, &c);
        assert_eq!(q.pop().unwrap().host_ref, 4, "polled: the host relayed it");
        let unpolled = t.insert(call(2, "bob"));
        t.finish(unpolled, resume(), &q, &c);
        let mut fork = call(3, "carol");
        fork.forked = true;
        t.insert(fork);
        let timed_out = t.insert(call(5, "erin"));
        let reject = End::Reject {
            code: 480,
            reason: "Temporarily Unavailable",
            push_failed: false,
        };
        t.finish(timed_out, reject, &q, &c);
        assert_eq!(t.reject_waiting(503, "Service Unavailable", &[], &q, &c), 3);
        let left: Vec<_> = drain(&q)
            .into_iter()
            .map(|e| (e.kind, e.host_ref, e.host_data, e.sip_code, e.reason))
            .collect();
        let rejected = |r: u64| {
            let reason = "Service Unavailable".to_string();
            (EventKind::Reject, r, r + 100, 503, reason)
        };
        assert_eq!(
            left,
            [rejected(2), rejected(5), rejected(1), rejected(3)],
            "the unpolled Resume's Reject and the queued one in place, then the waiting calls"
        );
        assert_eq!(t.len(), 1, "the relayed call is the host's");
        assert!(t.get(parked).is_none());
        assert_eq!(t.reject_waiting(503, "x", &[4], &q, &c), 0);
        assert_eq!(
            (t.len(), q.len()),
            (0, 0),
            "a Resume held elsewhere: ended quietly"
        );
    }

    #[test]
    fn reject_carries_code_and_reason_and_forgets_the_call() {
        let (q, c) = (EventQueue::new(64).unwrap(), Counters::default());
        let mut t = Table::default();
        let a = t.insert(call(7, "bob"));
        let how = End::Reject {
            code: 503,
            reason: "Service Unavailable",
            push_failed: true,
        };
        assert!(t.finish(a, how, &q, &c));
        let e = q.pop().unwrap();
        assert_eq!(
            (e.kind, e.host_ref, e.sip_code),
            (EventKind::Reject, 7, 503)
        );
        assert_eq!(e.reason, "Service Unavailable");
        assert_eq!(t.len(), 0);
        assert_eq!(t.count_of_aor("bob"), 0);
        assert_eq!(c.snapshot().rejected_push_failed, 1);
    }

    #[test]
    fn one_branch_per_extra_device_while_ringing() {
        let (q, c) = (EventQueue::new(64).unwrap(), Counters::default());
        let mut t = Table::default();
        let a = t.insert(call(1, "alice"));
        assert!(
            !t.append_branch(a, "d2", "", None, &q, &c),
            "not resumed yet"
        );
        t.finish(
            a,
            End::Resume {
                device_key: "d1",
                contact: "sip:d1@h",
                relay: None,
            },
            &q,
            &c,
        );
        assert!(
            !t.append_branch(a, "d1", "", None, &q, &c),
            "the resuming device"
        );
        assert!(t.append_branch(a, "d2", "", None, &q, &c));
        assert!(
            !t.append_branch(a, "d2", "", None, &q, &c),
            "duplicate REGISTER"
        );
        let kinds: Vec<_> = drain(&q)
            .into_iter()
            .map(|e| (e.kind, e.device_key))
            .collect();
        assert_eq!(
            kinds,
            [
                (EventKind::Resume, "d1".to_string()),
                (EventKind::AppendBranch, "d2".to_string())
            ]
        );
        assert!(t.remove(a).is_some());
        assert!(!t.append_branch(a, "d3", "", None, &q, &c));
    }

    #[test]
    fn recent_registers_are_remembered_for_a_while() {
        let mut t = Table::default();
        let t0 = Instant::now();
        let d1 = Some(Registered {
            device_key: "d1".into(),
            contact: "sip:d1@h".into(),
            relay: None,
        });
        t.note_register("alice", d1.clone().unwrap(), t0);
        assert_eq!(t.registered_since("alice", t0), d1);
        assert_eq!(
            t.registered_since("alice", t0 + Duration::from_millis(1)),
            None
        );
        assert_eq!(t.registered_since("bob", t0), None);
        t.forget_before(Some(t0 + Duration::from_millis(1)), t0);
        assert_eq!(t.registered_since("alice", t0), None);
        t.note_register("alice", d1.clone().unwrap(), t0);
        t.forget_register("alice", Some("d2"));
        assert_eq!(t.registered_since("alice", t0), d1, "another device");
        t.forget_register("alice", Some("d1"));
        assert_eq!(t.registered_since("alice", t0), None, "d1 unregistered");
        t.note_register("alice", d1.clone().unwrap(), t0);
        t.forget_register("alice", None);
        assert_eq!(t.registered_since("alice", t0), None, "Contact: *");
    }

    #[test]
    fn a_host_end_drops_the_calls_queued_events_its_resume_becomes_a_late_wake() {
        let (q, c) = (EventQueue::new(64).unwrap(), Counters::default());
        let mut t = Table::new(Duration::from_secs(30));
        let a = t.insert(call(1, "alice"));
        let b = t.insert(call(2, "alice"));
        t.finish(
            a,
            End::Resume {
                device_key: "d1",
                contact: "",
                relay: None,
            },
            &q,
            &c,
        );
        t.finish(
            b,
            End::Resume {
                device_key: "d1",
                contact: "",
                relay: None,
            },
            &q,
            &c,
        );
        assert!(t.end_by_host(1, 200, &q, &c));
        let left: Vec<_> = drain(&q).iter().map(|e| (e.kind, e.host_ref)).collect();
        assert_eq!(
            left,
            [(EventKind::LateWake, 0), (EventKind::Resume, 2)],
            "the ended call's Resume is its device's late wake, the other's stays"
        );
        let s = c.snapshot();
        assert_eq!((s.cancelled, s.late_wakes), (0, 1), "it had been resumed");
    }

    #[test]
    fn forked_calls_get_branches_only_and_reject_at_the_deadline() {
        let (q, c) = (EventQueue::new(64).unwrap(), Counters::default());
        let mut t = Table::default();
        let mut forked = call(1, "alice");
        (forked.forked, forked.host_ringing) = (true, true);
        forked.branches.push("ringing".into());
        let a = t.insert(forked);
        assert_eq!(t.counts(), (0, 1), "the host rings a contact");
        assert!(!t.finish(
            a,
            End::Resume {
                device_key: "d1",
                contact: "",
                relay: None
            },
            &q,
            &c
        ));
        assert!(
            !t.append_branch(a, "ringing", "", None, &q, &c),
            "the host rings it"
        );
        assert!(t.append_branch(a, "d1", "sip:d1@h", None, &q, &c));
        assert!(t.append_branch(a, "d2", "", None, &q, &c));
        let reject = End::Reject {
            code: 480,
            reason: "Temporarily Unavailable",
            push_failed: false,
        };
        assert!(t.finish(a, reject, &q, &c));
        let kinds: Vec<_> = drain(&q)
            .into_iter()
            .map(|e| (e.kind, e.device_key))
            .collect();
        assert_eq!(
            kinds,
            [
                (EventKind::AppendBranch, "d1".to_string()),
                (EventKind::AppendBranch, "d2".to_string()),
                (EventKind::Reject, String::new())
            ]
        );
        let s = c.snapshot();
        assert_eq!(
            (s.resumed, s.append_branches, s.rejected_timeout),
            (1, 2, 0)
        );
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn pushed_devices_that_did_not_register_get_one_late_wake() {
        let (q, c) = (EventQueue::new(64).unwrap(), Counters::default());
        let mut t = Table::new(Duration::from_secs(30));
        let mut two = call(1, "alice");
        two.pushed = vec!["d1".into(), "d2".into(), "d3".into()];
        let a = t.insert(two);
        t.finish(
            a,
            End::Resume {
                device_key: "d1",
                contact: "",
                relay: None,
            },
            &q,
            &c,
        );
        t.push_failed("alice", a, "d3");
        assert!(t.end_by_host(1, 200, &q, &c));
        assert_eq!(
            t.late_wakes("alice", "d1", "", None, &q),
            0,
            "it got the call"
        );
        assert_eq!(
            t.late_wakes("alice", "d3", "", None, &q),
            0,
            "its push failed"
        );
        assert_eq!(t.late_wakes("alice", "d2", "sip:d2@h", None, &q), 1);
        assert_eq!(t.late_wakes("alice", "d2", "sip:d2@h", None, &q), 0, "once");
        let e = drain(&q).pop().unwrap();
        assert_eq!((e.kind, e.host_ref, e.park_id), (EventKind::LateWake, 0, a));
        assert_eq!(
            (e.sip_code, e.reason.as_str()),
            (200, "Call completed elsewhere")
        );
        assert_eq!((e.call_id.as_str(), e.caller_name.as_str()), ("c1", "Bob"));
        assert_eq!(
            (e.device_key.as_str(), e.contact.as_str()),
            ("d2", "sip:d2@h")
        );

        // Without a window nothing is remembered.
        let mut t = Table::default();
        let b = t.insert(call(2, "alice"));
        let reject = End::Reject {
            code: 480,
            reason: "x",
            push_failed: false,
        };
        assert!(t.finish(b, reject, &q, &c));
        assert_eq!(t.late_wakes("alice", "d1", "", None, &q), 0);
    }
}

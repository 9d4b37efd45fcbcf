//! The parked-call table. Every way a parked call can end goes through
//! `Table::finish`, under the one table lock, so timeout, REGISTER, cancel and
//! failed pushes racing each other end a call exactly once.

use serde::Serialize;
use std::collections::HashMap;
use std::time::Instant;

use super::events::{Event, EventKind, EventQueue};
use super::stats::{inc, Counters};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallState {
    /// Waiting for a device to register.
    Parked,
    /// Resumed; kept until the host ends it or its deadline so that further
    /// devices registering become extra branches.
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
    pub call_id: Box<str>,
    pub aor: Box<str>,
    pub caller_uri: Box<str>,
    pub caller_name: Box<str>,
    pub parked_at: Instant,
    pub deadline: Instant,
    pub state: CallState,
    /// Devices pushed for this call whose push has not failed permanently.
    pub targets: Vec<Box<str>>,
    /// Devices that got this call's Resume or AppendBranch.
    pub branches: Vec<Box<str>>,
}

/// How a parked call ends.
pub(crate) enum End<'a> {
    Resume {
        device_key: &'a str,
    },
    Reject {
        code: u16,
        reason: &'a str,
        push_failed: bool,
    },
    Cancel,
}

/// A parked call as `Engine::parked` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParkedInfo {
    pub park_id: u64,
    pub host_ref: u64,
    pub call_id: String,
    pub aor: String,
    pub age_ms: u64,
    pub state: &'static str,
}

#[derive(Default)]
pub(crate) struct Table {
    calls: HashMap<u64, Call>,
    by_host_ref: HashMap<u64, u64>,
    by_aor: HashMap<Box<str>, Vec<u64>>,
    /// When each AOR last registered (for the register-just-before-park race).
    recent_registers: HashMap<Box<str>, (Instant, Box<str>)>,
    next_id: u64,
}

impl Table {
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
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

    /// Forgets a call without an event (the host ended it, or shutdown).
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

    /// Ends a parked call: the only place a call leaves `Parked`. False when
    /// it is no longer parked (it already ended some other way).
    pub(crate) fn finish(&mut self, id: u64, how: End, events: &EventQueue, c: &Counters) -> bool {
        match self.calls.get(&id) {
            Some(call) if call.state == CallState::Parked => {}
            _ => return false,
        }
        match how {
            End::Resume { device_key } => {
                let call = self.calls.get_mut(&id).expect("checked above");
                call.state = CallState::Ringing;
                call.targets = Vec::new();
                call.branches.push(device_key.into());
                inc(&c.resumed);
                c.resume_latency.record(call.parked_at.elapsed());
                events.push(event(EventKind::Resume, id, call, device_key, 0, ""));
            }
            End::Reject {
                code,
                reason,
                push_failed,
            } => {
                let call = self.remove(id).expect("checked above");
                inc(if push_failed {
                    &c.rejected_push_failed
                } else {
                    &c.rejected_timeout
                });
                events.push(event(EventKind::Reject, id, &call, "", code, reason));
            }
            End::Cancel => {
                self.remove(id);
                inc(&c.cancelled);
            }
        }
        true
    }

    /// Another device registered while the call rings: one branch per device.
    pub(crate) fn append_branch(
        &mut self,
        id: u64,
        device_key: &str,
        events: &EventQueue,
        c: &Counters,
    ) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        if call.state != CallState::Ringing || call.branches.iter().any(|b| &**b == device_key) {
            return false;
        }
        call.branches.push(device_key.into());
        inc(&c.append_branches);
        events.push(event(EventKind::AppendBranch, id, call, device_key, 0, ""));
        true
    }

    pub(crate) fn note_register(&mut self, aor: &str, device_key: &str, now: Instant) {
        self.recent_registers
            .insert(aor.into(), (now, device_key.into()));
    }

    /// The device that registered the AOR at or after `since`, if one did.
    pub(crate) fn registered_since(&self, aor: &str, since: Instant) -> Option<String> {
        let (at, key) = self.recent_registers.get(aor)?;
        (*at >= since).then(|| key.to_string())
    }

    pub(crate) fn forget_registers_before(&mut self, before: Instant) {
        self.recent_registers.retain(|_, (at, _)| *at >= before);
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
                state: c.state.as_str(),
            })
            .collect();
        v.sort_by_key(|p| p.park_id);
        v
    }
}

fn event(
    kind: EventKind,
    id: u64,
    call: &Call,
    device_key: &str,
    code: u16,
    reason: &str,
) -> Event {
    Event {
        kind,
        host_ref: call.host_ref,
        park_id: id,
        aor: call.aor.to_string(),
        device_key: device_key.to_string(),
        sip_code: code,
        reason: reason.to_string(),
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
            call_id: format!("c{host_ref}").into(),
            aor: aor.into(),
            caller_uri: "sip:bob@h".into(),
            caller_name: "Bob".into(),
            parked_at: now,
            deadline: now + Duration::from_secs(30),
            state: CallState::Parked,
            targets: vec!["d1".into()],
            branches: Vec::new(),
        }
    }

    fn drain(q: &EventQueue) -> Vec<Event> {
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn a_call_ends_once_whatever_comes_second() {
        let (q, c) = (EventQueue::new().unwrap(), Counters::default());
        let mut t = Table::default();
        let a = t.insert(call(10, "alice"));
        let b = t.insert(call(11, "alice"));
        let reject = End::Reject {
            code: 480,
            reason: "Temporarily Unavailable",
            push_failed: false,
        };
        assert!(t.finish(a, End::Resume { device_key: "d1" }, &q, &c));
        assert!(!t.finish(a, reject, &q, &c), "already resumed");
        assert!(!t.finish(a, End::Cancel, &q, &c));
        assert!(t.finish(b, End::Cancel, &q, &c));
        assert!(!t.finish(b, End::Resume { device_key: "d1" }, &q, &c));
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
    fn reject_carries_code_and_reason_and_forgets_the_call() {
        let (q, c) = (EventQueue::new().unwrap(), Counters::default());
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
        let (q, c) = (EventQueue::new().unwrap(), Counters::default());
        let mut t = Table::default();
        let a = t.insert(call(1, "alice"));
        assert!(!t.append_branch(a, "d2", &q, &c), "not resumed yet");
        t.finish(a, End::Resume { device_key: "d1" }, &q, &c);
        assert!(!t.append_branch(a, "d1", &q, &c), "the resuming device");
        assert!(t.append_branch(a, "d2", &q, &c));
        assert!(!t.append_branch(a, "d2", &q, &c), "duplicate REGISTER");
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
        assert!(!t.append_branch(a, "d3", &q, &c));
    }

    #[test]
    fn recent_registers_are_remembered_for_a_while() {
        let mut t = Table::default();
        let t0 = Instant::now();
        t.note_register("alice", "d1", t0);
        assert_eq!(t.registered_since("alice", t0).as_deref(), Some("d1"));
        assert_eq!(
            t.registered_since("alice", t0 + Duration::from_millis(1)),
            None
        );
        assert_eq!(t.registered_since("bob", t0), None);
        t.forget_registers_before(t0 + Duration::from_millis(1));
        assert_eq!(t.registered_since("alice", t0), None);
    }
}

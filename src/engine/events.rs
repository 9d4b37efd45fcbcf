//! Events for the host: a queue plus an eventfd that is readable exactly while
//! the queue is non-empty (librdkafka semantics: the host polls until empty).

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A device of the AOR registered: the host looks the user up and relays
    /// (once per parked call).
    Resume,
    /// Another device of an already-resumed call registered: the host adds a branch.
    AppendBranch,
    /// Timeout, or every push failed permanently: the host replies `sip_code`.
    Reject,
    /// One push's outcome (`reason` is `delivered`, `unconfirmed`, Apple's
    /// reason, or what else happened to it; pushpark.h says what each means).
    PushResult,
    /// APNs said the token is dead; the binding was removed from the store.
    DeviceGone,
    /// A device pushed for a call that already ended registered: the host
    /// sends it the INVITE and at once a CANCEL with Reason cause `sip_code`.
    LateWake,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Resume => "resume",
            EventKind::AppendBranch => "append_branch",
            EventKind::Reject => "reject",
            EventKind::PushResult => "push_result",
            EventKind::DeviceGone => "device_gone",
            EventKind::LateWake => "late_wake",
        }
    }

    /// Only for logs: the host loses nothing when it is dropped. The others
    /// (Resume, AppendBranch, Reject) are never dropped: a host transaction
    /// waits on each.
    fn informational(self) -> bool {
        matches!(
            self,
            EventKind::PushResult | EventKind::DeviceGone | EventKind::LateWake
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    /// The call's host reference: 0 for DeviceGone and LateWake, and for a PushResult
    /// whose call the engine no longer has.
    pub host_ref: u64,
    /// The host's data given with the call (`ParkRequest::host_data`), 0 where host_ref is.
    #[serde(default)]
    pub host_data: u64,
    pub park_id: u64,
    /// The call's (call events and LateWake), else "".
    pub call_id: String,
    pub caller_uri: String,
    pub caller_name: String,
    pub aor: String,
    /// The device key, a token cut short (never whole).
    pub device_key: String,
    /// Resume, AppendBranch, LateWake: the REGISTER's Contact, pn-prid cut short.
    pub contact: String,
    /// Reject: the reply's code; LateWake: the Reason's cause.
    pub sip_code: u16,
    /// The SIP reason phrase (Reject, LateWake) or the push outcome (PushResult, DeviceGone).
    pub reason: String,
    /// Resume, AppendBranch, LateWake of a device that registered on another node of
    /// the cluster and gave a Path: the host relays through that node.
    #[serde(default)]
    pub relay: Option<Relay>,
    /// PushResult: the first delivered push of a call still waiting for its devices
    /// (parked, or forked), once per call: the host may tell the caller it rings.
    #[serde(default)]
    pub first_delivered: bool,
    /// PushResult: the push's id (the payload's `push_id`, sent as its `apns-id`), else "".
    #[serde(default)]
    pub push_id: String,
}

/// The Reason text of a late wake's CANCEL with `cause` (RFC 3326; 200 is the text
/// phones know from forking proxies).
pub(crate) fn late_wake_reason(cause: u16) -> &'static str {
    if cause == 200 {
        "Call completed elsewhere"
    } else {
        ""
    }
}

impl Event {
    /// A Resume or AppendBranch of a call the host ended before polling it: its device
    /// woke and registered for the call, and the engine counts it as ringing, so no later
    /// REGISTER tells it the call is over. It becomes the device's LateWake now.
    fn into_late_wake(self, cause: u16) -> Option<Event> {
        matches!(self.kind, EventKind::Resume | EventKind::AppendBranch).then(|| Event {
            kind: EventKind::LateWake,
            host_ref: 0,
            host_data: 0,
            sip_code: cause,
            reason: late_wake_reason(cause).to_string(),
            ..self
        })
    }
}

/// Drops the events of a call the host ended, turning its Resume and AppendBranch into
/// LateWakes in their place when late wakes are on (`late_wake`: the cause, how the call
/// ended as a late wake's Reason gives it). Returns how many it made. Host_ref 0 is no call.
pub(crate) fn purge_call(
    queue: &mut VecDeque<Event>,
    host_ref: u64,
    late_wake: Option<u16>,
) -> u64 {
    if host_ref == 0 || !queue.iter().any(|e| e.host_ref == host_ref) {
        return 0;
    }
    let mut late = 0;
    for e in std::mem::take(queue) {
        if e.host_ref != host_ref {
            queue.push_back(e);
        } else if let Some(wake) = late_wake.and_then(|cause| e.into_late_wake(cause)) {
            late += 1;
            queue.push_back(wake);
        }
    }
    late
}

/// The host stops answering calls: queued Rejects get `code` and `reason`, and each
/// queued Resume becomes its call's Reject with them, in its place (the call's later
/// events dropped). Returns the host_refs of the Resumes so turned: their calls end.
pub(crate) fn reject_queued(queue: &mut VecDeque<Event>, code: u16, reason: &str) -> Vec<u64> {
    let mut turned = Vec::new();
    for mut e in std::mem::take(queue) {
        if e.host_ref == 0 {
            queue.push_back(e);
            continue;
        }
        if turned.contains(&e.host_ref) {
            continue;
        }
        match e.kind {
            EventKind::Resume => {
                turned.push(e.host_ref);
                queue.push_back(Event {
                    kind: EventKind::Reject,
                    device_key: String::new(),
                    contact: String::new(),
                    sip_code: code,
                    reason: reason.to_string(),
                    relay: None,
                    ..e
                });
            }
            EventKind::Reject => {
                (e.sip_code, e.reason) = (code, reason.to_string());
                queue.push_back(e);
            }
            _ => queue.push_back(e),
        }
    }
    turned
}

/// How to reach a device that registered on another node (cluster.rs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    /// The device's Contact URI, whole: the branch's Request-URI.
    pub uri: String,
    /// The Path (RFC 3327) its node recorded: the branch's route set, the first hop
    /// being that node.
    pub path: String,
}

/// Bounded for informational events only. Call events always go in: dropping
/// one would leave a call hanging in the host, and their number is bounded
/// anyway, since `park` is refused while the queue is full (a host that stopped
/// polling gets no new calls) and each parked call gives one final event and
/// at most one branch per device.
pub(crate) struct EventQueue {
    queue: Mutex<VecDeque<Event>>,
    capacity: usize,
    dropped: AtomicU64,
    fd: OwnedFd,
}

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> io::Result<EventQueue> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EventQueue {
            queue: Mutex::new(VecDeque::new()),
            capacity,
            dropped: AtomicU64::new(0),
            // SAFETY: fd was just created and nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Queues `event`, or drops and counts it when it is informational and
    /// the queue is full.
    pub(crate) fn push(&self, event: Event) {
        let mut q = self.queue.lock();
        if q.len() >= self.capacity && event.kind.informational() {
            self.count_dropped();
            return;
        }
        q.push_back(event);
        if q.len() == 1 {
            self.signal();
        }
    }

    /// Drops the queued events of a call the host ended, so none is polled
    /// after the host was told it ended (`purge_call`); returns the late wakes made.
    pub(crate) fn purge(&self, host_ref: u64, late_wake: Option<u16>) -> u64 {
        let mut q = self.queue.lock();
        let before = q.len();
        let late = purge_call(&mut q, host_ref, late_wake);
        if before > 0 && q.is_empty() {
            self.reset();
        }
        late
    }

    /// Changes the queued events in place, keeping the fd readable exactly while
    /// events wait.
    pub(crate) fn edit<R>(&self, f: impl FnOnce(&mut VecDeque<Event>) -> R) -> R {
        let mut q = self.queue.lock();
        let before = q.len();
        let r = f(&mut q);
        if before > 0 && q.is_empty() {
            self.reset();
        } else if before == 0 && !q.is_empty() {
            self.signal();
        }
        r
    }

    pub(crate) fn pop(&self) -> Option<Event> {
        let mut q = self.queue.lock();
        let event = q.pop_front();
        if event.is_some() && q.is_empty() {
            self.reset();
        }
        event
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.lock().len()
    }

    /// The host is not keeping up: `park` takes no new call.
    pub(crate) fn full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// Counts an informational event dropped before it reached the queue.
    pub(crate) fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own fd. It cannot fail
        // with EAGAIN: the counter is reset whenever the queue empties.
        let n = unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
        if n != 8 {
            log::error!("eventfd write failed: {}", io::Error::last_os_error());
        }
    }

    fn reset(&self) {
        let mut counter: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking fd;
        // EAGAIN (already zero) is fine.
        unsafe { libc::read(self.fd(), (&mut counter as *mut u64).cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n == 1 && pfd.revents & libc::POLLIN != 0
    }

    fn event(host_ref: u64) -> Event {
        Event {
            kind: EventKind::Resume,
            host_ref,
            host_data: 0,
            park_id: host_ref,
            call_id: String::new(),
            caller_uri: String::new(),
            caller_name: String::new(),
            aor: "a".into(),
            device_key: "d".into(),
            contact: String::new(),
            sip_code: 0,
            reason: String::new(),
            relay: None,
            first_delivered: false,
            push_id: String::new(),
        }
    }

    #[test]
    fn fd_is_readable_exactly_while_events_wait() {
        let q = EventQueue::new(16).unwrap();
        let flags = unsafe { libc::fcntl(q.fd(), libc::F_GETFD) };
        assert!(flags & libc::FD_CLOEXEC != 0);
        assert!(!readable(q.fd()));
        q.push(event(1));
        q.push(event(2));
        assert!(readable(q.fd()));
        assert_eq!(q.pop().unwrap().host_ref, 1);
        assert!(readable(q.fd()), "one event still waits");
        assert_eq!(q.pop().unwrap().host_ref, 2);
        assert!(!readable(q.fd()));
        assert_eq!(q.pop(), None);
        q.push(event(3));
        assert!(readable(q.fd()));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn purge_drops_one_calls_events_and_resets_the_fd_when_empty() {
        let q = EventQueue::new(16).unwrap();
        for host_ref in [1, 2, 1, 0] {
            q.push(Event {
                kind: EventKind::Reject,
                ..event(host_ref)
            });
        }
        q.purge(1, Some(487));
        q.purge(0, Some(487));
        assert_eq!(q.len(), 2);
        q.purge(2, Some(487));
        assert_eq!(q.pop().unwrap().host_ref, 0);
        q.push(Event {
            kind: EventKind::PushResult,
            ..event(5)
        });
        q.purge(5, Some(487));
        assert!(!readable(q.fd()));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_purged_calls_resume_and_branches_become_late_wakes_in_their_place() {
        let q = EventQueue::new(16).unwrap();
        let with_kind = |kind, host_ref, device: &str| Event {
            kind,
            device_key: device.into(),
            ..event(host_ref)
        };
        q.push(with_kind(EventKind::PushResult, 1, "a"));
        q.push(with_kind(EventKind::Resume, 1, "a"));
        q.push(with_kind(EventKind::Reject, 2, ""));
        q.push(with_kind(EventKind::AppendBranch, 1, "b"));
        q.push(with_kind(EventKind::Resume, 3, "c"));
        assert_eq!(q.purge(3, None), 0, "late wakes off: dropped");
        assert_eq!(q.purge(1, Some(200)), 2);
        let left: Vec<_> = std::iter::from_fn(|| q.pop())
            .map(|e| (e.kind, e.host_ref, e.device_key, e.sip_code, e.reason))
            .collect();
        let completed = |device: &str| {
            let reason = "Call completed elsewhere".to_string();
            (EventKind::LateWake, 0, device.to_string(), 200, reason)
        };
        let rejected = (EventKind::Reject, 2, String::new(), 0, String::new());
        assert_eq!(left, [completed("a"), rejected, completed("b")]);
    }

    #[test]
    fn when_full_informational_events_are_dropped_and_counted_call_events_never() {
        let q = EventQueue::new(2).unwrap();
        let with_kind = |kind, host_ref| Event {
            kind,
            ..event(host_ref)
        };
        q.push(with_kind(EventKind::PushResult, 0));
        q.push(with_kind(EventKind::Resume, 1));
        assert!(q.full());
        for kind in [
            EventKind::PushResult,
            EventKind::DeviceGone,
            EventKind::LateWake,
        ] {
            q.push(with_kind(kind, 0));
        }
        for kind in [EventKind::AppendBranch, EventKind::Reject] {
            q.push(with_kind(kind, 1));
        }
        assert_eq!((q.len(), q.dropped()), (4, 3));
        let kinds: Vec<_> = std::iter::from_fn(|| q.pop()).map(|e| e.kind).collect();
        use EventKind::*;
        assert_eq!(kinds, [PushResult, Resume, AppendBranch, Reject]);
        assert!(!q.full());
    }
}

//! Forked calls (the host rings some contacts, the engine pushes the rest)
//! and late wakes (a device pushed for a call that ended registers), real
//! engine against the mock APNs.

mod engine_common;

use engine_common::*;
use pushpark::apns::Reason;
use pushpark::mock::Scripted;
use pushpark::{Event, EventKind, ForkContact, ParkError, ParkRequest};
use serde_json::json;
use std::time::Duration;

fn req(aor: &str, host_ref: u64, timeout: Option<Duration>) -> ParkRequest<'_> {
    ParkRequest {
        call_id: "fork@h",
        aor,
        caller_uri: "sip:bob@example.com",
        caller_name: "Bob",
        host_ref,
        host_data: 0,
        timeout,
    }
}

fn contact<'a>(uri: &'a str, instance: Option<&'a str>, ringing: bool) -> ForkContact<'a> {
    ForkContact {
        uri,
        instance,
        ringing,
    }
}

/// Registers a push device of alice with an instance.
fn phone(h: &Harness, tok: &str, instance: &str) {
    let c = push_contact("alice", tok);
    let out = h
        .engine()
        .register(&register("alice", &c, Some(instance)))
        .unwrap();
    assert!(out.stored);
}

/// Waits for `n` push results (every push of the call answered).
fn wait_pushes(h: &mut Harness, n: usize) {
    for _ in 0..n {
        let e = h.wait_event(|e| e.kind == EventKind::PushResult);
        assert_eq!(e.reason, "delivered");
    }
}

/// A REGISTER of the device; returns the events it queued.
fn registers(h: &mut Harness, tok: &str, instance: &str) -> Vec<Event> {
    let c = push_contact("alice", tok);
    h.engine()
        .register(&register("alice", &c, Some(instance)))
        .unwrap();
    let before = h.seen.len();
    h.drain();
    h.seen[before..]
        .iter()
        .filter(|e| e.kind != EventKind::PushResult)
        .cloned()
        .collect()
}

#[test]
fn a_fork_pushes_what_does_not_ring_and_every_device_that_registers_is_a_branch() {
    let mut h = Harness::start(|_| {});
    let (ringing, stored, held) = (token(1), token(2), token(3));
    phone(&h, &ringing, "<urn:uuid:r>");
    phone(&h, &stored, "<urn:uuid:s>");
    let ringing_uri = push_contact("alice", &ringing);
    let held_uri = push_contact("alice", &held);
    // The stored device is also a held-back contact of the lookup: one push.
    let stored_uri = push_contact("alice", &stored);
    let contacts = [
        contact(&ringing_uri, Some("\"<urn:uuid:R>\""), true),
        contact(&held_uri, Some("<urn:uuid:h>"), false),
        contact(&stored_uri, Some("<urn:uuid:s>"), false),
        contact("<sip:alice@192.0.2.50>", None, true),
    ];
    let id = h.engine().fork(&req("alice", 9, None), &contacts).unwrap();
    wait_pushes(&mut h, 2);
    let s = h.engine().stats();
    assert_eq!(s.pushes_sent, 2, "not the ringing device, one push each");
    assert_eq!((s.parked_now, s.resumed_now), (0, 1), "the host rings some");
    assert!(h.mock.pushes().iter().all(|p| p.token != ringing));

    let events = registers(&mut h, &held, "<urn:uuid:h>");
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(
        (e.kind, e.host_ref, e.park_id),
        (EventKind::AppendBranch, 9, id)
    );
    assert_eq!(e.device_key, "urn:uuid:h");
    assert_eq!(e.contact, held_uri.replace(&held, &shown(&held)));
    assert_eq!(
        (e.call_id.as_str(), e.caller_uri.as_str()),
        ("fork@h", "sip:bob@example.com")
    );
    let events = registers(&mut h, &stored, "<urn:uuid:s>");
    assert_eq!(events[0].kind, EventKind::AppendBranch);
    // The device the host rings, and one that already has its branch: nothing.
    assert_eq!(registers(&mut h, &ringing, "<urn:uuid:r>"), []);
    assert_eq!(registers(&mut h, &held, "<urn:uuid:h>"), []);
    let s = h.engine().stats();
    assert_eq!((s.resumed, s.append_branches), (1, 2));

    h.engine().call_completed(9, 200).unwrap();
    assert_eq!(h.engine().parked(), []);
    let s = h.engine().stats();
    assert_eq!((s.parked_now, s.resumed_now, s.late_wakes), (0, 0, 0));
}

/// A device stored by its token that the host rings under its instance is
/// the same device: not pushed.
#[test]
fn a_ringing_contact_is_matched_by_its_token_too() {
    let h = Harness::start(|_| {});
    let tok = token(1);
    h.add_phone("alice", &tok);
    let uri = push_contact("alice", &tok);
    let ringing = [contact(&uri, Some("<urn:uuid:r>"), true)];
    let e = h.engine();
    assert_eq!(
        e.fork(&req("alice", 1, None), &ringing),
        Err(ParkError::NoDevice)
    );
}

#[test]
fn a_fork_with_nothing_to_push_parks_nothing() {
    let h = Harness::start(|_| {});
    let tok = token(1);
    phone(&h, &tok, "<urn:uuid:r>");
    let uri = push_contact("alice", &tok);
    let only_ringing = [contact(&uri, Some("<urn:uuid:r>"), true)];
    let e = h.engine();
    assert_eq!(
        e.fork(&req("alice", 1, None), &only_ringing),
        Err(ParkError::NoDevice)
    );
    assert_eq!(e.fork(&req("bob", 1, None), &[]), Err(ParkError::NoDevice));
    // A held-back contact without push parameters cannot be pushed.
    let plain = [contact("<sip:bob@192.0.2.1>", None, false)];
    assert_eq!(
        e.fork(&req("bob", 1, None), &plain),
        Err(ParkError::NoDevice)
    );
    assert!(matches!(
        e.fork(&req("alice", 0, None), &[]),
        Err(ParkError::Invalid(why)) if why.contains("host_ref 0")
    ));
    assert!(matches!(
        e.park(&req("alice", 0, None)),
        Err(ParkError::Invalid(_))
    ));
    let s = e.stats();
    assert_eq!((s.parked_total, s.park_no_device), (0, 3));
    // A fork of a user with only held-back contacts pushes them.
    let held = [contact(&uri, Some("<urn:uuid:r>"), false)];
    e.fork(&req("alice", 2, None), &held).unwrap();
    assert_eq!(e.stats().parked_now, 1, "nothing rings");
}

#[test]
fn a_fork_is_rejected_at_its_deadline_even_with_a_branch() {
    let mut h = Harness::start(|_| {});
    let tok = token(1);
    phone(&h, &tok, "<urn:uuid:a>");
    let timeout = Some(Duration::from_millis(300));
    h.engine().fork(&req("alice", 3, timeout), &[]).unwrap();
    wait_pushes(&mut h, 1);
    assert_eq!(
        registers(&mut h, &tok, "<urn:uuid:a>")[0].kind,
        EventKind::AppendBranch
    );
    let reject = h.wait_kind(EventKind::Reject, 3);
    assert_eq!(
        (reject.sip_code, reject.reason.as_str()),
        (480, "Temporarily Unavailable")
    );
    let s = h.engine().stats();
    assert_eq!((s.resumed, s.rejected_timeout), (1, 0), "it was woken");
    assert!(h.engine().cancel(3).is_err());
}

/// Two devices pushed; one takes the call; the call ends as `end` says; the
/// other registers late and gets one LateWake carrying the cause.
fn late_wake_after(end: impl FnOnce(&Harness), cause: u16, text: &str) {
    let mut h = Harness::start(|_| {});
    let (a, b) = (token(1), token(2));
    phone(&h, &a, "<urn:uuid:a>");
    phone(&h, &b, "<urn:uuid:b>");
    let id = h.engine().park(&req("alice", 5, None)).unwrap();
    wait_pushes(&mut h, 2);
    assert_eq!(
        registers(&mut h, &a, "<urn:uuid:a>")[0].kind,
        EventKind::Resume
    );
    end(&h);
    assert_eq!(registers(&mut h, &a, "<urn:uuid:a>"), [], "it got the call");
    let events = registers(&mut h, &b, "<urn:uuid:b>");
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(
        (e.kind, e.host_ref, e.park_id),
        (EventKind::LateWake, 0, id)
    );
    assert_eq!((e.sip_code, e.reason.as_str()), (cause, text));
    assert_eq!(
        (e.call_id.as_str(), e.caller_name.as_str()),
        ("fork@h", "Bob")
    );
    assert_eq!(
        (e.aor.as_str(), e.device_key.as_str()),
        ("alice", "urn:uuid:b")
    );
    assert!(e.contact.contains(&shown(&b)) && !e.contact.contains(&b));
    assert_eq!(registers(&mut h, &b, "<urn:uuid:b>"), [], "once");
    assert_eq!(h.engine().stats().late_wakes, 1);
}

#[test]
fn a_device_woken_for_a_call_answered_elsewhere_is_told_so() {
    late_wake_after(
        |h| h.engine().call_completed(5, 200).unwrap(),
        200,
        "Call completed elsewhere",
    );
}

#[test]
fn a_device_woken_for_a_cancelled_call_is_told_so() {
    late_wake_after(|h| h.engine().cancel(5).unwrap(), 487, "");
    late_wake_after(|h| h.engine().call_completed(5, 487).unwrap(), 487, "");
}

#[test]
fn a_device_woken_for_a_failed_call_is_told_so() {
    late_wake_after(|h| h.engine().call_completed(5, 603).unwrap(), 480, "");
}

/// Both devices register before the host polls: the first one's Resume is taken and
/// answered; the host ends the call while the second one's AppendBranch still waits. That
/// branch is never added, and the device, which registered for the call, would show a
/// call nobody ends: the queued AppendBranch becomes its LateWake, in its place.
#[test]
fn a_branch_still_queued_when_the_host_ends_the_call_becomes_a_late_wake() {
    let mut h = Harness::start(|_| {});
    let (a, b) = (token(1), token(2));
    phone(&h, &a, "<urn:uuid:a>");
    phone(&h, &b, "<urn:uuid:b>");
    let id = h.engine().park(&req("alice", 9, None)).unwrap();
    wait_pushes(&mut h, 2);
    for (tok, instance) in [(&a, "<urn:uuid:a>"), (&b, "<urn:uuid:b>")] {
        let c = push_contact("alice", tok);
        h.engine()
            .register(&register("alice", &c, Some(instance)))
            .unwrap();
    }
    let resume = h.engine().poll_event().expect("the first device's Resume");
    assert_eq!((resume.kind, resume.host_ref), (EventKind::Resume, 9));
    h.engine().call_completed(9, 200).unwrap();

    let e = h
        .engine()
        .poll_event()
        .expect("the second device's LateWake");
    assert_eq!(
        (e.kind, e.host_ref, e.park_id, e.device_key.as_str()),
        (EventKind::LateWake, 0, id, "urn:uuid:b")
    );
    assert_eq!(
        (e.sip_code, e.reason.as_str()),
        (200, "Call completed elsewhere")
    );
    assert!(e.contact.contains(&shown(&b)) && !e.contact.contains(&b));
    assert_eq!(h.engine().poll_event(), None);
    assert_eq!(registers(&mut h, &b, "<urn:uuid:b>"), [], "told once");
    assert_eq!(h.engine().stats().late_wakes, 1);
}

#[test]
fn a_device_woken_for_a_call_that_timed_out_is_told_so() {
    let mut h = Harness::start(|_| {});
    let tok = token(1);
    phone(&h, &tok, "<urn:uuid:a>");
    h.engine()
        .park(&req("alice", 6, Some(Duration::from_millis(200))))
        .unwrap();
    wait_pushes(&mut h, 1);
    h.wait_kind(EventKind::Reject, 6);
    let events = registers(&mut h, &tok, "<urn:uuid:a>");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].kind, events[0].sip_code),
        (EventKind::LateWake, 480)
    );
}

/// Only devices that may show the call are told: not one whose push failed,
/// and none at all when late wakes are off.
#[test]
fn no_late_wake_without_a_push_that_reached_the_device() {
    let mut h = Harness::start(|_| {});
    let (ok, bad) = (token(1), token(2));
    phone(&h, &ok, "<urn:uuid:ok>");
    phone(&h, &bad, "<urn:uuid:bad>");
    h.mock
        .script(&bad, Scripted::Reject(Reason::DeviceTokenNotForTopic));
    h.engine().park(&req("alice", 7, None)).unwrap();
    let mut results: Vec<String> = (0..2)
        .map(|_| h.wait_event(|e| e.kind == EventKind::PushResult).reason)
        .collect();
    results.sort();
    assert_eq!(results, ["DeviceTokenNotForTopic", "delivered"]);
    h.engine().cancel(7).unwrap();
    assert_eq!(registers(&mut h, &bad, "<urn:uuid:bad>"), []);
    assert_eq!(
        registers(&mut h, &ok, "<urn:uuid:ok>")[0].kind,
        EventKind::LateWake
    );

    let mut h = Harness::start(|c| c["park"]["late_wake_ms"] = json!(0));
    phone(&h, &ok, "<urn:uuid:ok>");
    h.engine().park(&req("alice", 8, None)).unwrap();
    wait_pushes(&mut h, 1);
    h.engine().cancel(8).unwrap();
    assert_eq!(registers(&mut h, &ok, "<urn:uuid:ok>"), []);
}

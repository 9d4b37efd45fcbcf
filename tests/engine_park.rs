//! The engine end to end: the real APNs client against the mock APNs over TLS.

mod engine_common;

use engine_common::*;
use pushpark::apns::Reason;
use pushpark::mock::{Faults, Scripted};
use pushpark::{EngineConfig, EngineError, EventKind, ParkError, ParkRequest};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn park_req<'a>(aor: &'a str, host_ref: u64, timeout: Option<Duration>) -> ParkRequest<'a> {
    ParkRequest {
        call_id: "a84b4c76e66710@pc33.example.com",
        aor,
        caller_uri: "sip:bob@example.com",
        caller_name: "Bob \"B\" Example",
        host_ref,
        host_data: 0,
        timeout,
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn park_pushes_then_register_resumes() {
    let mut h = Harness::start(|_| {});
    let aor = "sip:alice@example.com";
    let tok = token(1);
    h.add_phone(aor, &tok);

    let before = now_unix();
    let id = h
        .engine()
        .park(&park_req(aor, 0x1_0000_0007, None))
        .unwrap();
    let push = h
        .mock
        .wait_for_push(&tok, PATIENCE)
        .expect("the push reached APNs");
    assert_eq!(push.header("apns-push-type"), Some("voip"));
    assert_eq!(push.topic(), Some(TOPIC));
    assert_eq!(push.header("apns-priority"), Some("10"));
    let expiration: u64 = push.header("apns-expiration").unwrap().parse().unwrap();
    assert!(
        (before + 30..=now_unix() + 31).contains(&expiration),
        "{expiration}"
    );
    let payload = push.payload_json();
    assert_eq!(payload["call_id"], "a84b4c76e66710@pc33.example.com");
    assert_eq!(payload["caller"], "sip:bob@example.com");
    assert_eq!(payload["caller_name"], "Bob \"B\" Example");
    assert_eq!(payload["aor"], aor);
    // One id for the push: in the payload for the app, and the apns-id for Apple's log.
    assert_eq!(payload["push_id"], push.apns_id.to_string());
    assert!(payload["aps"].is_object());

    let parked = h.engine().parked();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].park_id, parked[0].state.as_str()),
        (id, "parked")
    );

    let delivered = h.wait_event(|e| e.kind == EventKind::PushResult);
    assert_eq!(
        (
            delivered.reason.as_str(),
            delivered.park_id,
            delivered.host_ref
        ),
        ("delivered", id, 0x1_0000_0007)
    );
    // The host's log line for the push names the id Apple's log knows it by.
    assert_eq!(delivered.push_id, push.apns_id.to_string());

    // The app woke and registers.
    let contact = push_contact("alice", &tok);
    let out = h.engine().register(&register(aor, &contact, None)).unwrap();
    assert_eq!(out.resumed, 1);
    let resume = h.wait_kind(EventKind::Resume, 0x1_0000_0007);
    assert_eq!((resume.park_id, resume.aor.as_str()), (id, aor));
    assert_eq!(resume.device_key, shown(&tok), "never a whole token");
    assert_eq!(resume.contact, contact.replace(&tok, &shown(&tok)));
    assert_eq!(resume.call_id, "a84b4c76e66710@pc33.example.com");
    assert_eq!(h.engine().parked()[0].state, "ringing");

    h.engine().call_ended(0x1_0000_0007).unwrap();
    assert!(h.engine().parked().is_empty());
    assert_eq!(
        h.engine().call_ended(0x1_0000_0007),
        Err(EngineError::NotFound)
    );
    let s = h.engine().stats();
    assert_eq!(
        (s.parked_total, s.resumed, s.pushes_sent, s.pushes_delivered),
        (1, 1, 1, 1)
    );
    assert_eq!(s.parked_now, 0);
    assert!(s.resume_latency_p50_us > 0);
}

#[test]
fn pushes_apns_refused_unprocessed_are_replayed_and_counted() {
    let mut h = Harness::start(|_| {});
    let aor = "sip:alice@example.com";
    h.add_phone(aor, &token(1));
    h.mock.set_faults(Faults {
        refuse_streams: 2,
        ..Faults::default()
    });
    let id = h.engine().park(&park_req(aor, 7, None)).unwrap();
    let result = h.wait_event(|e| e.kind == EventKind::PushResult);
    assert_eq!((result.reason.as_str(), result.park_id), ("delivered", id));
    let stats = h.engine().stats();
    assert_eq!((stats.pushes_replayed, stats.pushes_delivered), (2, 1));
    assert_eq!(h.mock.push_count(), 1);
}

/// `user`'s phone, whose next push APNs takes and then drops the connection without answering.
fn phone_whose_next_push_is_lost(h: &Harness, user: &str, tok: &str) {
    h.add_phone(user, tok);
    h.mock.set_faults(Faults {
        drop_connection_mid_stream: 1,
        ..Faults::default()
    });
}

/// APNs drops the connection with the push written (issue 10): it may have been delivered,
/// so it is not sent again, and the call waits for the device, whose token stays.
#[test]
fn a_push_lost_with_its_connection_is_not_resent_and_the_call_waits_for_the_device() {
    let mut h = Harness::start(|c| {
        c["park"]["push_failed_code"] = json!(503);
    });
    let tok = token(40);
    phone_whose_next_push_is_lost(&h, "alice", &tok);
    let id = h.engine().park(&park_req("alice", 41, None)).unwrap();
    let result = h.wait_event(|e| e.kind == EventKind::PushResult);
    assert_eq!(
        (result.reason.as_str(), result.park_id, result.host_ref),
        ("unconfirmed", id, 41)
    );
    // The id to look the push up by in Apple's delivery log: it may have arrived.
    assert!(uuid::Uuid::try_parse(&result.push_id).is_ok(), "{result:?}");
    let s = h.engine().stats();
    assert_eq!(
        (s.pushes_sent, s.pushes_unconfirmed, s.pushes_replayed),
        (1, 1, 0),
        "{s:?}"
    );
    assert_eq!(
        (
            s.pushes_delivered,
            s.pushes_failed_timed_out,
            s.rejected_push_failed,
            s.devices_gone
        ),
        (0, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(
        h.engine().devices("alice").len(),
        1,
        "the token is not dead"
    );
    assert!(h
        .engine()
        .parked()
        .iter()
        .any(|p| p.park_id == id && p.state == "parked"));
    let contact = push_contact("alice", &tok);
    let out = h
        .engine()
        .register(&register("alice", &contact, None))
        .unwrap();
    assert_eq!(out.resumed, 1);
    assert_eq!(h.wait_kind(EventKind::Resume, 41).park_id, id);
    assert_eq!(h.mock.stats().streams, 1, "the push reached APNs once");
    h.drain();
    assert_eq!(h.seen_for(41), [EventKind::Resume]);
}

/// Its only push unconfirmed, a call nobody wakes for ends at its timeout with the normal
/// reject, not push_failed; and as the push may have reached the phone, a REGISTER after
/// the call's end is a late wake.
#[test]
fn a_call_whose_only_push_is_unconfirmed_times_out_with_the_normal_reject() {
    let mut h = Harness::start(|c| {
        c["park"]["reject_code"] = json!(486);
        c["park"]["reject_reason"] = json!("Busy Here");
        c["park"]["push_failed_code"] = json!(503);
    });
    let tok = token(42);
    phone_whose_next_push_is_lost(&h, "alice", &tok);
    let started = Instant::now();
    let timeout = Duration::from_secs(1);
    let id = h
        .engine()
        .park(&park_req("alice", 43, Some(timeout)))
        .unwrap();
    let result = h.wait_event(|e| e.kind == EventKind::PushResult);
    assert_eq!(result.reason, "unconfirmed");
    let reject = h.wait_kind(EventKind::Reject, 43);
    assert!(started.elapsed() >= timeout, "it waited for the device");
    assert_eq!(
        (reject.sip_code, reject.reason.as_str()),
        (486, "Busy Here")
    );
    let s = h.engine().stats();
    assert_eq!(
        (
            s.rejected_timeout,
            s.rejected_push_failed,
            s.pushes_unconfirmed
        ),
        (1, 0, 1),
        "{s:?}"
    );
    let contact = push_contact("alice", &tok);
    h.engine()
        .register(&register("alice", &contact, None))
        .unwrap();
    let late = h.wait_event(|e| e.kind == EventKind::LateWake);
    assert_eq!((late.park_id, late.sip_code), (id, 486));
    assert_eq!(h.mock.stats().streams, 1, "the push reached APNs once");
}

#[test]
fn a_host_that_stops_polling_loses_push_results_never_a_calls_end() {
    // Room for 2 events per call the table holds: 8.
    let mut h = Harness::start(|c| c["park"]["max_total"] = json!(4));
    let aors: Vec<String> = (0..4).map(|i| format!("sip:user{i}@example.com")).collect();
    for (i, aor) in aors.iter().enumerate() {
        for d in 0..3 {
            h.add_phone(aor, &token(10 * i as u32 + d));
        }
    }
    // Nobody polls: 12 push results for 8 places, then 4 timeouts.
    let timeout = Some(Duration::from_millis(1500));
    for (i, aor) in aors.iter().enumerate() {
        h.engine()
            .park(&park_req(aor, 100 + i as u64, timeout))
            .unwrap();
    }
    h.wait_stats("every push answered", |s| s.pushes_delivered == 12);
    h.wait_stats("every call timed out", |s| s.rejected_timeout == 4);
    let stats = h.engine().stats();
    assert_eq!((stats.events_dropped, stats.events_waiting), (4, 12));
    // Full: a new call is refused rather than queue events without bound.
    let refused = h.engine().park(&park_req(&aors[0], 200, timeout));
    assert_eq!(refused, Err(ParkError::QueueFull));

    h.drain();
    for host_ref in 100..104 {
        assert_eq!(h.seen_for(host_ref), [EventKind::Reject], "call {host_ref}");
    }
    let results = h.seen.iter().filter(|e| e.kind == EventKind::PushResult);
    assert_eq!(results.count(), 8);
    assert!(h.engine().parked().is_empty());
    h.engine().park(&park_req(&aors[0], 200, timeout)).unwrap();
    h.engine().cancel(200).unwrap();
    assert_eq!(h.engine().stats().park_queue_full, 1);
}

#[test]
fn timeout_rejects_with_the_configured_code() {
    let mut h = Harness::start(|c| {
        c["park"]["reject_code"] = json!(486);
        c["park"]["reject_reason"] = json!("Busy Here");
    });
    h.add_phone("alice", &token(2));
    let started = Instant::now();
    let timeout = Duration::from_millis(300);
    h.engine()
        .park(&park_req("alice", 5, Some(timeout)))
        .unwrap();
    let reject = h.wait_kind(EventKind::Reject, 5);
    assert!(started.elapsed() >= timeout, "a timer never fires early");
    assert_eq!(
        (reject.sip_code, reject.reason.as_str()),
        (486, "Busy Here")
    );
    assert!(h.engine().parked().is_empty());
    // Too late now: the call is gone, the REGISTER resumes nothing.
    let contact = push_contact("alice", &token(2));
    assert_eq!(
        h.engine()
            .register(&register("alice", &contact, None))
            .unwrap()
            .resumed,
        0
    );
    assert_eq!(h.engine().cancel(5), Err(EngineError::NotFound));
    h.drain();
    assert_eq!(h.seen_for(5), [EventKind::Reject]);
    assert_eq!(h.engine().stats().rejected_timeout, 1);
}

#[test]
fn cancel_ends_the_call_silently() {
    let mut h = Harness::start(|_| {});
    h.add_phone("alice", &token(3));
    h.add_phone("carol", &token(33));
    h.engine()
        .park(&park_req("alice", 9, Some(Duration::from_millis(200))))
        .unwrap();
    h.engine().cancel(9).unwrap();
    assert_eq!(h.engine().cancel(9), Err(EngineError::NotFound));
    assert!(h.engine().parked().is_empty());
    let contact = push_contact("alice", &token(3));
    assert_eq!(
        h.engine()
            .register(&register("alice", &contact, None))
            .unwrap()
            .resumed,
        0
    );
    // A later call times out after the cancelled one's deadline (one engine
    // thread fires timers in order): nothing came for the cancelled one.
    h.engine()
        .park(&park_req("carol", 12, Some(Duration::from_millis(400))))
        .unwrap();
    h.wait_kind(EventKind::Reject, 12);
    h.drain();
    assert!(h.seen_for(9).is_empty(), "{:?}", h.seen);
    assert_eq!(h.engine().stats().cancelled, 1);
}

#[test]
fn no_device_limits_and_bad_input_are_distinct_results() {
    let h = Harness::start(|c| {
        c["park"]["max_total"] = json!(3);
        c["park"]["max_per_aor"] = json!(2);
    });
    let e = h.engine();
    assert_eq!(
        e.park(&park_req("nobody", 1, None)),
        Err(ParkError::NoDevice)
    );
    h.add_phone("alice", &token(4));
    h.add_phone("bob", &token(5));
    e.park(&park_req("alice", 1, None)).unwrap();
    assert_eq!(
        e.park(&park_req("alice", 1, None)),
        Err(ParkError::Duplicate)
    );
    e.park(&park_req("alice", 2, None)).unwrap();
    assert_eq!(
        e.park(&park_req("alice", 3, None)),
        Err(ParkError::LimitPerAor)
    );
    e.park(&park_req("bob", 4, None)).unwrap();
    assert_eq!(
        e.park(&park_req("bob", 5, None)),
        Err(ParkError::LimitTotal)
    );
    e.cancel(1).unwrap();
    e.park(&park_req("bob", 5, None)).unwrap();

    let bad = |p: ParkRequest| matches!(e.park(&p), Err(ParkError::Invalid(_)));
    assert!(bad(ParkRequest {
        call_id: "",
        ..park_req("bob", 20, None)
    }));
    assert!(bad(ParkRequest {
        aor: " ",
        ..park_req("bob", 21, None)
    }));
    assert!(bad(ParkRequest {
        caller_name: "a\0b",
        ..park_req("bob", 22, None)
    }));
    assert!(bad(park_req("bob", 23, Some(Duration::ZERO))));
    assert!(bad(park_req("bob", 24, Some(Duration::from_secs(7200)))));
    let s = e.stats();
    assert_eq!(
        (s.park_no_device, s.park_over_limit, s.parked_now),
        (1, 2, 3)
    );
}

#[test]
fn dead_token_is_removed_and_the_call_rejected() {
    let mut h = Harness::start(|c| {
        c["park"]["push_failed_code"] = json!(503);
        c["park"]["push_failed_reason"] = json!("Service Unavailable");
    });
    let tok = token(6);
    h.add_phone("alice", &tok);
    h.mock.script(&tok, Scripted::Reject(Reason::Unregistered));
    h.engine().park(&park_req("alice", 77, None)).unwrap();

    let gone = h.wait_event(|e| e.kind == EventKind::DeviceGone);
    assert_eq!(
        (gone.aor.as_str(), gone.device_key.as_str(), gone.host_ref),
        ("alice", shown(&tok).as_str(), 0)
    );
    assert_eq!(gone.reason, "token dead");
    let reject = h.wait_kind(EventKind::Reject, 77);
    assert_eq!(
        (reject.sip_code, reject.reason.as_str()),
        (503, "Service Unavailable")
    );
    assert!(h.engine().devices("alice").is_empty());
    let result = h
        .seen
        .iter()
        .find(|e| e.kind == EventKind::PushResult)
        .unwrap();
    assert_eq!(result.reason, "Unregistered");
    assert_eq!(
        h.engine().park(&park_req("alice", 78, None)),
        Err(ParkError::NoDevice)
    );
    let s = h.engine().stats();
    assert_eq!(
        (
            s.pushes_failed_dead_token,
            s.devices_gone,
            s.rejected_push_failed
        ),
        (1, 1, 1)
    );
    assert_eq!(h.mock.push_count(), 0, "a rejected push is not delivered");
}

#[test]
fn a_call_waits_while_one_device_is_still_pushable() {
    let mut h = Harness::start(|_| {});
    let (dead, alive) = (token(7), token(8));
    let c1 = push_contact("alice", &dead);
    let c2 = push_contact("alice", &alive);
    let e = h.engine();
    e.register(&register("alice", &c1, Some("\"<urn:uuid:phone>\"")))
        .unwrap();
    e.register(&register("alice", &c2, Some("<urn:uuid:ipad>")))
        .unwrap();
    h.mock
        .script(&dead, Scripted::Reject(Reason::BadDeviceToken));
    h.engine().park(&park_req("alice", 1, None)).unwrap();
    assert!(h.mock.wait_for_push(&alive, PATIENCE).is_some());
    h.wait_event(|e| e.kind == EventKind::DeviceGone && e.device_key == "urn:uuid:phone");
    let left: Vec<_> = h
        .engine()
        .devices("alice")
        .into_iter()
        .map(|d| d.key)
        .collect();
    assert_eq!(left, ["urn:uuid:ipad"]);
    assert!(h
        .engine()
        .parked()
        .iter()
        .any(|p| p.host_ref == 1 && p.state == "parked"));

    let out = h
        .engine()
        .register(&register("alice", &c2, Some("<urn:uuid:ipad>")))
        .unwrap();
    assert_eq!(out.resumed, 1);
    assert_eq!(
        h.wait_kind(EventKind::Resume, 1).device_key,
        "urn:uuid:ipad"
    );
}

#[test]
fn every_device_rejecting_for_good_rejects_the_call_but_keeps_the_binding() {
    let mut h = Harness::start(|_| {});
    let tok = token(9);
    h.add_phone("alice", &tok);
    h.mock
        .script(&tok, Scripted::Reject(Reason::DeviceTokenNotForTopic));
    h.engine().park(&park_req("alice", 3, None)).unwrap();
    let reject = h.wait_kind(EventKind::Reject, 3);
    assert_eq!(
        (reject.sip_code, reject.reason.as_str()),
        (480, "Temporarily Unavailable")
    );
    assert_eq!(h.engine().devices("alice").len(), 1, "not a dead token");
    assert!(h.seen.iter().all(|e| e.kind != EventKind::DeviceGone));
    assert_eq!(h.engine().stats().pushes_failed_rejected, 1);
}

#[test]
fn second_device_gets_one_branch_and_duplicates_nothing() {
    let mut h = Harness::start(|_| {});
    let (t1, t2) = (token(10), token(11));
    let (c1, c2) = (push_contact("alice", &t1), push_contact("alice", &t2));
    let e = h.engine();
    e.register(&register("alice", &c1, Some("<urn:uuid:1>")))
        .unwrap();
    e.register(&register("alice", &c2, Some("<urn:uuid:2>")))
        .unwrap();
    e.park(&park_req("alice", 40, None)).unwrap();
    assert!(h.mock.wait_for_push(&t1, PATIENCE).is_some());
    assert!(h.mock.wait_for_push(&t2, PATIENCE).is_some());

    let e = h.engine();
    assert_eq!(
        e.register(&register("alice", &c1, Some("<urn:uuid:1>")))
            .unwrap()
            .resumed,
        1
    );
    assert_eq!(
        e.register(&register("alice", &c1, Some("<urn:uuid:1>")))
            .unwrap()
            .resumed,
        0
    );
    assert_eq!(
        e.register(&register("alice", &c2, Some("<urn:uuid:2>")))
            .unwrap()
            .resumed,
        0
    );
    assert_eq!(
        e.register(&register("alice", &c2, Some("<urn:uuid:2>")))
            .unwrap()
            .resumed,
        0
    );
    h.wait_kind(EventKind::AppendBranch, 40);
    h.drain();
    let kinds = h.seen_for(40);
    assert_eq!(kinds, [EventKind::Resume, EventKind::AppendBranch]);
    let branch = h
        .seen
        .iter()
        .find(|e| e.kind == EventKind::AppendBranch)
        .unwrap();
    assert_eq!(branch.device_key, "urn:uuid:2");
    let s = h.engine().stats();
    assert_eq!((s.resumed, s.append_branches), (1, 1));
}

#[test]
fn two_calls_to_one_user_are_coalesced_into_one_push_per_window() {
    let mut h = Harness::start(|c| {
        c["push"] = json!({"min_interval_ms": 3000});
    });
    let tok = token(12);
    h.add_phone("alice", &tok);
    let call = |id: &'static str, host_ref| ParkRequest {
        call_id: id,
        ..park_req("alice", host_ref, None)
    };
    h.engine().park(&call("first", 1)).unwrap();
    h.engine().park(&call("second", 2)).unwrap();
    h.engine().park(&call("third", 3)).unwrap();
    let p1 = h.mock.wait_for_push(&tok, PATIENCE).unwrap();
    assert_eq!(p1.payload_json()["call_id"], "first");
    // The window's end carries the latest call, once, for both waiting calls.
    let p2 = h.mock.wait_for_push(&tok, PATIENCE).unwrap();
    assert_eq!(p2.payload_json()["call_id"], "third");
    h.wait_stats("both pushes answered", |s| s.pushes_delivered == 2);
    let s = h.engine().stats();
    assert_eq!((s.pushes_sent, s.pushes_coalesced), (2, 1));
    // One REGISTER resumes all three.
    let contact = push_contact("alice", &tok);
    assert_eq!(
        h.engine()
            .register(&register("alice", &contact, None))
            .unwrap()
            .resumed,
        3
    );
    for host_ref in 1..=3 {
        h.wait_kind(EventKind::Resume, host_ref);
    }
    assert_eq!(h.mock.push_count(), 2);
}

#[test]
fn a_display_name_too_long_for_the_payload_is_cut_and_hurts_no_other_call() {
    let mut h = Harness::start(|c| c["push"] = json!({"min_interval_ms": 0}));
    let tok = token(14);
    h.add_phone("alice", &tok);
    let first = ParkRequest {
        call_id: "first",
        caller_name: "\"Bob \\\"B\\\" Example\"",
        ..park_req("alice", 1, None)
    };
    h.engine().park(&first).unwrap();
    let p1 = h.mock.wait_for_push(&tok, PATIENCE).unwrap();
    assert_eq!(
        p1.payload_json()["caller_name"],
        "Bob \"B\" Example",
        "SIP quotes gone"
    );
    // Control characters take six bytes each in JSON: 6 KB become 30 KB.
    let name = "\u{1}".repeat(6144);
    let second = ParkRequest {
        call_id: "second",
        caller_name: &name,
        ..park_req("alice", 2, None)
    };
    h.engine().park(&second).unwrap();
    let p2 = h.mock.wait_for_push(&tok, PATIENCE).unwrap();
    assert!(p2.payload.len() <= 5120, "{}", p2.payload.len());
    let v = p2.payload_json();
    assert_eq!(v["call_id"], "second");
    assert!(name.starts_with(v["caller_name"].as_str().unwrap()));
    h.wait_stats("both pushes answered", |s| s.pushes_delivered == 2);
    // Both calls still wait for the device: its REGISTER resumes both.
    let contact = push_contact("alice", &tok);
    let out = h
        .engine()
        .register(&register("alice", &contact, None))
        .unwrap();
    assert_eq!(out.resumed, 2);
    h.wait_kind(EventKind::Resume, 1);
    h.wait_kind(EventKind::Resume, 2);
    assert!(!h.seen.iter().any(|e| e.kind == EventKind::Reject));
}

#[test]
fn a_payload_apns_finds_too_large_fails_that_call_only() {
    let mut h = Harness::start(|c| c["push"] = json!({"min_interval_ms": 0}));
    let tok = token(15);
    h.add_phone("alice", &tok);
    h.engine().park(&park_req("alice", 1, None)).unwrap();
    h.mock.wait_for_push(&tok, PATIENCE).unwrap();
    h.wait_stats("the first push answered", |s| s.pushes_delivered == 1);
    h.mock
        .script(&tok, Scripted::RejectNext(Reason::PayloadTooLarge, 1));
    let second = ParkRequest {
        call_id: "second",
        ..park_req("alice", 2, None)
    };
    h.engine().park(&second).unwrap();
    let reject = h.wait_kind(EventKind::Reject, 2);
    assert_eq!(reject.sip_code, 480);
    // The device still counts for the first call: its REGISTER resumes it.
    let contact = push_contact("alice", &tok);
    let out = h
        .engine()
        .register(&register("alice", &contact, None))
        .unwrap();
    assert_eq!(out.resumed, 1);
    h.wait_kind(EventKind::Resume, 1);
    assert_eq!(h.seen_for(1), [EventKind::Resume], "never rejected");
}

#[test]
fn register_just_before_park_resumes_at_once() {
    let h = Harness::start(|c| c["park"]["recent_register_ms"] = json!(60_000));
    let tok = token(13);
    h.add_phone("alice", &tok);
    // The host's location lookup failed, then the REGISTER landed, then park.
    let contact = push_contact("alice", &tok);
    h.engine()
        .register(&register("alice", &contact, None))
        .unwrap();
    h.engine().park(&park_req("alice", 50, None)).unwrap();
    let e = h
        .engine()
        .poll_event()
        .expect("Resume queued before park returned");
    assert_eq!(
        (e.kind, e.host_ref, e.device_key.as_str()),
        (EventKind::Resume, 50, shown(&tok).as_str())
    );
    // Also for a user whose only REGISTER was an ordinary (non-push) contact.
    let plain = "<sip:dave@198.51.100.7:5060>";
    let out = h.engine().register(&register("dave", plain, None)).unwrap();
    assert!(!out.push_capable && !out.stored);
    h.engine().park(&park_req("dave", 51, None)).unwrap();
    assert_eq!(h.engine().poll_event().unwrap().host_ref, 51);
    let s = h.engine().stats();
    assert_eq!((s.resumed, s.pushes_sent), (2, 0));
}

#[test]
fn unregister_removes_the_binding_and_garbage_stores_nothing() {
    let h = Harness::start(|_| {});
    let e = h.engine();
    let tok = token(14);
    let contact = push_contact("alice", &tok);
    e.register(&register("alice", &contact, None)).unwrap();
    let stored = e.devices("alice")[0].clone();
    assert_eq!(
        (
            stored.key.as_str(),
            stored.provider.as_str(),
            stored.topic.as_str()
        ),
        (tok.as_str(), "apns", TOPIC)
    );
    assert_eq!(stored.contact, contact);
    let garbage = "<sip:alice@h;pn-provider=apns;pn-prid=nothex;pn-param=T.x.voip>";
    let err = e.register(&register("alice", garbage, None)).unwrap_err();
    assert!(err.to_string().contains("pn-prid"), "{err}");
    assert_eq!(e.devices("alice"), std::slice::from_ref(&stored));
    // A refused REGISTER has no effect at all: it wakes no parked call either
    // (a Resume would have been queued before register returned).
    e.park(&park_req("alice", 7, None)).unwrap();
    assert!(e.register(&register("alice", garbage, None)).is_err());
    assert!(
        std::iter::from_fn(|| e.poll_event()).all(|ev| ev.host_ref != 7),
        "a refused REGISTER woke a call"
    );
    e.cancel(7).unwrap();

    let mut bye = register("alice", &contact, None);
    bye.expires = 0;
    let out = e.register(&bye).unwrap();
    assert!(out.removed && !out.stored);
    assert!(e.devices("alice").is_empty());
    assert_eq!(
        e.park(&park_req("alice", 1, None)),
        Err(ParkError::NoDevice)
    );

    e.register(&register(
        "bob",
        &push_contact("bob", &token(15)),
        Some("<urn:uuid:a>"),
    ))
    .unwrap();
    e.register(&register(
        "bob",
        &push_contact("bob", &token(16)),
        Some("<urn:uuid:b>"),
    ))
    .unwrap();
    let star = pushpark::Registration {
        aor: "bob",
        contact: "*",
        instance: None,
        expires: 0,
        call_id: None,
        cseq: 0,
        path: None,
    };
    assert!(e.register(&star).unwrap().removed);
    assert!(e.devices("bob").is_empty());
}

#[test]
fn register_refuses_an_instance_longer_than_a_device_key() {
    let h = Harness::start(|_| {});
    let e = h.engine();
    let long = format!("<urn:uuid:{}>", "a".repeat(1024));
    let r = e.register(&register(
        "carl",
        &push_contact("carl", &token(18)),
        Some(&long),
    ));
    assert!(
        matches!(&r, Err(EngineError::Invalid(m)) if m.contains("instance is longer than 1024")),
        "{r:?}"
    );
    assert!(e.devices("carl").is_empty());
}

#[test]
fn added_devices_are_validated_and_pushed() {
    let h = Harness::start(|_| {});
    let e = h.engine();
    let mut d = pushpark::DeviceInfo {
        key: String::new(),
        provider: "apns".into(),
        token: token(17).to_uppercase(),
        topic: TOPIC.into(),
        contact: String::new(),
        last_register_unix: 0,
    };
    e.add_device("erin", &d).unwrap();
    let stored = e.devices("erin");
    assert_eq!(
        (stored[0].key.as_str(), stored[0].token.as_str()),
        (token(17).as_str(), token(17).as_str())
    );
    e.park(&park_req("erin", 1, None)).unwrap();
    assert!(h.mock.wait_for_push(&token(17), PATIENCE).is_some());

    d.topic = "com.example.phone".into();
    assert!(
        matches!(e.add_device("erin", &d), Err(EngineError::Invalid(m)) if m.contains("VoIP topic"))
    );
    d.topic = TOPIC.into();
    d.provider = "fcm".into();
    assert!(matches!(
        e.add_device("erin", &d),
        Err(EngineError::Invalid(_))
    ));
    assert!(e.remove_device("erin", &token(17)));
    assert!(!e.remove_device("erin", &token(17)));
}

#[test]
fn store_survives_restart_and_drop_with_calls_parked_stops_cleanly() {
    let mut h = Harness::start(|_| {});
    let tok = token(18);
    h.add_phone("alice", &tok);
    h.engine().park(&park_req("alice", 1, None)).unwrap();
    h.engine().park(&park_req("alice", 2, None)).unwrap();
    assert!(h.mock.wait_for_push(&tok, PATIENCE).is_some());
    drop(h.engine.take());

    // Same store dir: the binding is there and works.
    let config = base_config(&h.mock, h.store_dir.path());
    h.engine = Some(engine_from(&config));
    let devices = h.engine().devices("alice");
    assert_eq!(devices.len(), 1);
    assert_eq!(
        (devices[0].token.as_str(), devices[0].topic.as_str()),
        (tok.as_str(), TOPIC)
    );
    assert!(
        h.engine().parked().is_empty(),
        "calls do not outlive the engine"
    );
    assert!(h.engine().poll_event().is_none());
    h.engine().park(&park_req("alice", 3, None)).unwrap();
    let push = h
        .mock
        .wait_for_push(&tok, PATIENCE)
        .expect("pushed after restart");
    assert_eq!(push.topic(), Some(TOPIC));
}

#[test]
fn write_behind_store_keeps_every_change_in_order_across_drop() {
    let mut h = Harness::start(|_| {});
    for i in 0..2_000 {
        let contact = push_contact("u", &token(1_000 + i));
        h.engine()
            .register(&register(&format!("many{i}"), &contact, None))
            .unwrap();
    }
    // One key upserted then removed, another removed then upserted again:
    // the disk must end in the same state as memory.
    let gone = push_contact("gone", &token(3_500));
    h.engine().register(&register("gone", &gone, None)).unwrap();
    let mut bye = register("gone", &gone, None);
    bye.expires = 0;
    assert!(h.engine().register(&bye).unwrap().removed);
    let back = push_contact("back", &token(3_501));
    h.engine().register(&register("back", &back, None)).unwrap();
    assert!(h.engine().remove_device("back", &token(3_501)));
    h.engine().register(&register("back", &back, None)).unwrap();
    assert_eq!(h.engine().stats().store_write_errors, 0);
    drop(h.engine.take()); // commits everything queued

    let config = base_config(&h.mock, h.store_dir.path());
    h.engine = Some(engine_from(&config));
    let e = h.engine();
    assert_eq!(e.stats().devices_stored, 2_001);
    for i in 0..2_000 {
        let devices = e.devices(&format!("many{i}"));
        assert_eq!(devices.len(), 1, "many{i}");
        assert_eq!(devices[0].token, token(1_000 + i));
    }
    assert!(e.devices("gone").is_empty());
    assert_eq!(e.devices("back")[0].token, token(3_501));
    assert_eq!(e.stats().store_writes_pending, 0);
}

#[test]
fn setup_errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |auth: serde_json::Value, store: &std::path::Path| {
        let text = json!({"apns": {"auth": auth}, "store": {"dir": store}}).to_string();
        EngineConfig::from_json(&text).unwrap()
    };
    let missing = cfg(
        json!({"key_file": dir.path().join("nope.p8"), "key_id": "ABCDE12345", "team_id": "TEAM123456"}),
        dir.path(),
    );
    let err = pushpark::Engine::new(missing).err().unwrap().to_string();
    assert!(
        err.starts_with("config: apns.auth.key_file: cannot read"),
        "{err}"
    );

    let not_a_key = dir.path().join("bad.p8");
    std::fs::write(
        &not_a_key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let bad = cfg(
        json!({"key_file": not_a_key, "key_id": "ABCDE12345", "team_id": "TEAM123456"}),
        dir.path(),
    );
    let err = pushpark::Engine::new(bad).err().unwrap().to_string();
    assert!(err.starts_with("APNs client:"), "{err}");
    assert!(!err.contains("AAAA"), "no key material in errors: {err}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let store_on_file = cfg(
        json!({"key_file": "/x", "key_id": "ABCDE12345", "team_id": "TEAM123456"}),
        &file,
    );
    let err = pushpark::Engine::new(store_on_file)
        .err()
        .unwrap()
        .to_string();
    assert!(err.starts_with("device store: cannot create"), "{err}");
}

#[test]
fn check_files_refuses_what_new_would_without_starting_anything() {
    let h = Harness::start(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let check = |tweak: &dyn Fn(&mut serde_json::Value)| {
        let mut c = base_config(&h.mock, h.store_dir.path());
        tweak(&mut c);
        pushpark::Engine::check_files(&EngineConfig::from_json(&c.to_string()).unwrap())
            .err()
            .map(|e| e.to_string())
    };
    assert_eq!(check(&|_| {}), None, "the running engine's own config");
    // A store directory yet to be made is fine, and the check does not make it.
    let later = dir.path().join("later/store");
    assert_eq!(check(&|c| c["store"]["dir"] = json!(later)), None);
    assert!(!dir.path().join("later").exists());

    let missing = dir.path().join("nope.p8");
    let err = check(&|c| c["apns"]["auth"]["key_file"] = json!(missing)).unwrap();
    assert!(
        err.starts_with("config: apns.auth.key_file: cannot read"),
        "{err}"
    );
    let junk = dir.path().join("bad.p8");
    std::fs::write(
        &junk,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = check(&|c| c["apns"]["auth"]["key_file"] = json!(junk)).unwrap();
    assert!(err.contains("the key is not a PEM PKCS#8 P-256"), "{err}");
    assert!(!err.contains("AAAA"), "no key material in errors: {err}");
    let err = check(&|c| c["apns"]["ca_file"] = json!(missing)).unwrap();
    assert!(err.contains("CA file"), "{err}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let err = check(&|c| c["store"]["dir"] = json!(file.join("store"))).unwrap();
    assert!(
        err.starts_with("config: store.dir: cannot write in"),
        "{err}"
    );
}

/// Set in the child process of `store_survives_kill_9`: its engine config.
const KILL9_CHILD: &str = "PUSHPARK_TEST_KILL9_CONFIG";

#[test]
fn store_survives_kill_9() {
    if let Ok(config) = std::env::var(KILL9_CHILD) {
        // The child: store bindings, wait until the store's writer has
        // committed them (writes are behind the REGISTER), say so, and wait
        // to be killed.
        let engine = pushpark::Engine::new(EngineConfig::from_json(&config).unwrap()).unwrap();
        for i in 0..20 {
            let contact = push_contact("u", &token(500 + i));
            engine
                .register(&register(&format!("user{i}"), &contact, None))
                .unwrap();
        }
        let deadline = Instant::now() + PATIENCE;
        while engine.stats().store_writes_pending > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let stats = engine.stats();
        assert_eq!(
            (stats.store_writes_pending, stats.store_write_errors),
            (0, 0)
        );
        println!("kill9: registered");
        std::thread::sleep(PATIENCE);
        return;
    }
    let mut h = Harness::start(|_| {});
    drop(h.engine.take()); // the child opens the store
    let config = base_config(&h.mock, h.store_dir.path());
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store_survives_kill_9",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL9_CHILD, config.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let said = std::io::BufRead::lines(out)
        .map_while(Result::ok)
        .any(|l| l.ends_with("kill9: registered"));
    assert!(said, "the child registered");
    child.kill().unwrap(); // SIGKILL: no destructor, no flush
    child.wait().unwrap();

    h.engine = Some(engine_from(&config));
    for i in 0..20 {
        let devices = h.engine().devices(&format!("user{i}"));
        assert_eq!(devices.len(), 1, "user{i}");
        assert_eq!(devices[0].token, token(500 + i));
    }
}

//! REGISTERs as the engine applies them: client dialects, several Contacts,
//! instance ids compared as URNs, refusals that change nothing, order by
//! Call-ID and CSeq, and logout (real engine against the mock APNs).

mod engine_common;

use engine_common::*;
use pushpark::mock::TEAM_ID;
use pushpark::{EngineError, EventKind, ParkError, ParkRequest, Registration};
use serde_json::json;

fn park_req(aor: &str, host_ref: u64) -> ParkRequest<'_> {
    ParkRequest {
        call_id: "c@h",
        aor,
        caller_uri: "sip:bob@example.com",
        caller_name: "Bob",
        host_ref,
        host_data: 0,
        timeout: None,
    }
}

fn ordered<'a>(
    contact: &'a str,
    instance: Option<&'a str>,
    expires: u32,
    call_id: &'a str,
    cseq: u32,
) -> Registration<'a> {
    Registration {
        expires,
        call_id: Some(call_id),
        cseq,
        ..register("alice", contact, instance)
    }
}

fn tokens_of(h: &Harness, aor: &str) -> Vec<String> {
    let mut t: Vec<String> = h
        .engine()
        .devices(aor)
        .into_iter()
        .map(|d| d.token)
        .collect();
    t.sort();
    t
}

#[test]
fn linphone_contacts_store_the_voip_token_and_topic() {
    let h = Harness::start(|_| {});
    let (remote, voip) = (token(1), token(2));
    let contact = format!(
        "<sip:alice@192.0.2.10;pn-provider=apns;pn-prid={remote}:remote&{voip}:voip;\
         pn-param={TEAM_ID}.{}.remote&voip>",
        TOPIC.strip_suffix(".voip").unwrap()
    );
    let out = h
        .engine()
        .register(&register("alice", &contact, None))
        .unwrap();
    assert!(out.push_capable && out.stored);
    let d = &h.engine().devices("alice")[0];
    assert_eq!((d.token.as_str(), d.topic.as_str()), (voip.as_str(), TOPIC));
    assert_eq!(d.key, voip, "no instance: keyed by the VoIP token");
}

#[test]
fn several_contacts_in_one_header_are_each_applied() {
    let h = Harness::start(|_| {});
    let header = format!(
        "{};+sip.instance=\"<urn:uuid:a>\", {};+sip.instance=\"<urn:uuid:b>\", <sip:pc@192.0.2.9>",
        push_contact("alice", &token(1)),
        push_contact("alice", &token(2))
    );
    let out = h
        .engine()
        .register(&register("alice", &header, None))
        .unwrap();
    assert!(out.push_capable && out.stored);
    assert_eq!(tokens_of(&h, "alice"), [token(1), token(2)]);
    let mut bye = register("alice", &header, None);
    bye.expires = 0;
    assert!(h.engine().register(&bye).unwrap().removed);
    assert!(h.engine().devices("alice").is_empty());
}

/// A device that reinstalls its app gets a new token and may spell its
/// instance otherwise: it keeps one binding.
#[test]
fn an_instance_in_another_case_is_the_same_device() {
    let h = Harness::start(|_| {});
    let e = h.engine();
    let first = push_contact("alice", &token(1));
    let again = push_contact("alice", &token(2));
    e.register(&register("alice", &first, Some("<urn:uuid:0C67-AB>")))
        .unwrap();
    e.register(&register("alice", &again, Some("\"<URN:UUID:0c67-ab>\"")))
        .unwrap();
    let devices = e.devices("alice");
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(
        (devices[0].key.as_str(), devices[0].token.as_str()),
        ("urn:uuid:0c67-ab", token(2).as_str())
    );
}

/// A refused REGISTER changes nothing: no binding, and no parked call woken
/// (the Resume would be queued before register returned).
#[test]
fn refused_contacts_change_nothing_and_say_why() {
    let mut h = Harness::start(|c| {
        c["apns"]["topics"] = json!([TOPIC]);
    });
    let e = h.engine();
    h.add_phone("alice", &token(1));
    e.park(&park_req("alice", 1)).unwrap();
    let tok = token(2);
    let fcm = format!("<sip:alice@h;pn-provider=fcm;pn-prid={tok};pn-param=x>");
    let other_team =
        format!("<sip:alice@h;pn-provider=apns;pn-prid={tok};pn-param=OTHERTEAM1.{TOPIC}>");
    let other_topic =
        format!("<sip:alice@h;pn-provider=apns;pn-prid={tok};pn-param={TEAM_ID}.com.other.voip>");
    let no_voip =
        format!("<sip:alice@h;pn-provider=apns;pn-prid={tok}:remote;pn-param={TEAM_ID}.{TOPIC}>");
    // A good Contact before a bad one in the same header is not applied either.
    let mixed = format!("{}, {other_team}", push_contact("alice", &token(3)));
    let cases = [
        (fcm.as_str(), "not supported"),
        (&other_team, "Team ID"),
        (&other_topic, "apns.topics"),
        (&no_voip, "no VoIP token"),
        (&mixed, "Team ID"),
    ];
    for (contact, why) in cases {
        let err = e.register(&register("alice", contact, None)).unwrap_err();
        match (&err, contact == fcm) {
            (EngineError::Unsupported(m), true) | (EngineError::Invalid(m), false) => {
                assert!(m.contains(why), "{contact}: {m}");
                assert!(!m.contains(&tok[..32]), "{m}");
            }
            _ => panic!("{contact}: {err:?}"),
        }
    }
    assert_eq!(tokens_of(&h, "alice"), [token(1)]);
    h.drain();
    assert!(
        h.seen.iter().all(|ev| ev.host_ref != 1),
        "a refused REGISTER woke the call: {:?}",
        h.seen
    );
    assert_eq!(h.engine().stats().resumed, 0);
}

#[test]
fn an_older_cseq_of_the_same_call_id_is_ignored_removals_included() {
    let h = Harness::start(|_| {});
    let e = h.engine();
    let contact = push_contact("alice", &token(1));
    let inst = Some("<urn:uuid:a>");
    assert!(
        e.register(&ordered(&contact, inst, 600, "reg-1", 2))
            .unwrap()
            .stored
    );
    // The unREGISTER sent before it comes late: ignored.
    let out = e.register(&ordered(&contact, inst, 0, "reg-1", 1)).unwrap();
    assert!(!out.removed && !out.stored);
    assert_eq!(e.devices("alice").len(), 1);
    // A newer one applies; then the add it overtook is ignored too.
    assert!(
        e.register(&ordered(&contact, inst, 0, "reg-1", 3))
            .unwrap()
            .removed
    );
    let out = e
        .register(&ordered(&contact, inst, 600, "reg-1", 2))
        .unwrap();
    assert!(!out.stored && out.push_capable);
    assert!(e.devices("alice").is_empty());
    assert_eq!(e.stats().registers_out_of_order, 2);
    // Another Call-ID is a new registration (the app restarted); other devices
    // have their own order.
    assert!(
        e.register(&ordered(&contact, inst, 600, "reg-2", 1))
            .unwrap()
            .stored
    );
    let other = push_contact("alice", &token(2));
    let b = Some("<urn:uuid:b>");
    assert!(
        e.register(&ordered(&other, b, 600, "reg-1", 1))
            .unwrap()
            .stored
    );
    assert_eq!(e.devices("alice").len(), 2);
    // Without a Call-ID, as pushpark_register: no order.
    let mut plain = register("alice", &contact, inst);
    plain.expires = 0;
    assert!(e.register(&plain).unwrap().removed);
    assert_eq!(e.stats().registers_out_of_order, 2);
}

/// An ignored REGISTER wakes nothing either.
#[test]
fn an_ignored_register_wakes_no_call() {
    let h = Harness::start(|_| {});
    let e = h.engine();
    let contact = push_contact("alice", &token(1));
    e.register(&ordered(&contact, None, 600, "r", 5)).unwrap();
    e.park(&park_req("alice", 1)).unwrap();
    assert_eq!(
        e.register(&ordered(&contact, None, 600, "r", 4))
            .unwrap()
            .resumed,
        0
    );
    assert_eq!(
        e.register(&ordered(&contact, None, 600, "r", 6))
            .unwrap()
            .resumed,
        1
    );
}

#[test]
fn unregister_logs_out_unless_configured_to_keep_the_binding() {
    let h = Harness::start(|_| {});
    let contact = push_contact("alice", &token(1));
    h.engine()
        .register(&register("alice", &contact, None))
        .unwrap();
    let mut bye = register("alice", &contact, None);
    bye.expires = 0;
    assert!(h.engine().register(&bye).unwrap().removed);
    assert_eq!(
        h.engine().park(&park_req("alice", 1)),
        Err(ParkError::NoDevice)
    );

    let h = Harness::start(|c| c["store"]["unregister_keeps_binding"] = json!(true));
    h.engine()
        .register(&register("alice", &contact, None))
        .unwrap();
    let out = h.engine().register(&bye).unwrap();
    assert!(!out.removed && !out.stored);
    assert_eq!(tokens_of(&h, "alice"), [token(1)]);
    h.engine().park(&park_req("alice", 1)).unwrap();
}

/// A device that just unregistered is not "just registered": a park pushes
/// it instead of resuming at once on a REGISTER that said goodbye.
#[test]
fn unregister_clears_the_recent_register_shortcut() {
    let mut h = Harness::start(|c| {
        c["park"]["recent_register_ms"] = json!(60_000);
        c["store"]["unregister_keeps_binding"] = json!(true);
    });
    let tok = token(1);
    let contact = push_contact("alice", &tok);
    h.engine()
        .register(&register("alice", &contact, None))
        .unwrap();
    let mut bye = register("alice", &contact, None);
    bye.expires = 0;
    h.engine().register(&bye).unwrap();
    h.engine().park(&park_req("alice", 1)).unwrap();
    h.drain();
    assert_eq!(h.seen_for(1), [], "resumed at once");
    h.mock.wait_for_push(&tok, PATIENCE).expect("pushed");
    let s = h.engine().stats();
    assert_eq!((s.parked_now, s.resumed_now, s.resumed), (1, 0, 0));
    // A REGISTER of it again resumes the call as usual.
    h.engine()
        .register(&register("alice", &contact, None))
        .unwrap();
    h.wait_kind(EventKind::Resume, 1);
    let s = h.engine().stats();
    assert_eq!((s.parked_now, s.resumed_now), (0, 1));
}

/// REGISTERs of one device handed over by several workers at once, in any
/// order: the binding ends as the one with the highest CSeq says.
#[test]
fn concurrent_registers_end_in_the_state_of_the_highest_cseq() {
    use rand::seq::SliceRandom;
    use rand::Rng;
    let h = Harness::start(|_| {});
    let e = h.engine();
    let contact = push_contact("alice", &token(1));
    let mut rng = rand::thread_rng();
    for round in 0..50 {
        let call_id = format!("round-{round}");
        let mut regs: Vec<(u32, u32)> = (1..=24)
            .map(|cseq| (cseq, if rng.gen_bool(0.5) { 600 } else { 0 }))
            .collect();
        let last_expires = regs.last().unwrap().1;
        regs.shuffle(&mut rng);
        std::thread::scope(|s| {
            for chunk in regs.chunks(6) {
                let (contact, call_id) = (&contact, &call_id);
                s.spawn(move || {
                    for &(cseq, expires) in chunk {
                        e.register(&ordered(contact, None, expires, call_id, cseq))
                            .unwrap();
                    }
                });
            }
        });
        let stored = !e.devices("alice").is_empty();
        assert_eq!(stored, last_expires > 0, "round {round}: {regs:?}");
    }
}

#[test]
fn registers_beyond_max_devices_per_aor_evict_the_least_recent() {
    let h = Harness::start(|c| c["store"]["max_devices_per_aor"] = json!(3));
    let e = h.engine();
    for i in 1..=5 {
        let contact = push_contact("alice", &token(i));
        e.register(&register("alice", &contact, None)).unwrap();
    }
    let kept: Vec<String> = (3..=5).map(token).collect();
    assert_eq!(tokens_of(&h, "alice"), kept);
    assert_eq!(e.stats().devices_evicted, 2);
}

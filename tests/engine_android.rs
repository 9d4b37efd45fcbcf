//! The engine with an `fcm` section beside `apns`, against the mock FCM and the mock
//! APNs over TLS: an Android phone (pn-provider=fcm) is pushed a high-priority data
//! message expiring with the call and resumes it; FCM's UNREGISTERED removes its
//! binding; a user with an iPhone and an Android phone gets both pushed; without an
//! `apns` section Android phones alone are served.

mod engine_common;

use engine_common::{push_contact, register, token, Harness};
use pushpark::mock::fcm::{FcmConfig, FcmError, MockFcm, Scripted, PROJECT_ID};
use pushpark::{EngineError, EventKind, ParkRequest};
use serde_json::json;
use std::time::Duration;

const FCM_TOKEN: &str = "eH0fLhuiRj2Np7UQ-opXAm:APA91bGtC-wH4sgW1jWkMKIZf7FYkm_RTQb7Jid7DfSJnC";

struct Android {
    h: Harness,
    fcm: MockFcm,
    _dir: tempfile::TempDir,
}

fn start() -> Android {
    start_with(|_| {})
}

/// With the `fcm` section, then `tweak`.
fn start_with(tweak: impl FnOnce(&mut serde_json::Value)) -> Android {
    let dir = tempfile::tempdir().unwrap();
    let fcm = MockFcm::start(FcmConfig::new(dir.path())).unwrap();
    let h = Harness::start(|c| {
        c["fcm"] = json!({
            "service_account_file": fcm.service_account_path(),
            "endpoint": format!("127.0.0.1:{}", fcm.addr().port()),
            "ca_file": fcm.ca_pem_path(),
        });
        c["park"]["timeout_ms"] = json!(20_000);
        tweak(c);
    });
    Android { h, fcm, _dir: dir }
}

fn android_contact(user: &str, token: &str) -> String {
    format!(
        "<sip:{user}@192.0.2.20:5060;transport=tcp;pn-provider=fcm;pn-prid={token};\
         pn-param={PROJECT_ID}>;expires=600"
    )
}

fn park(aor: &str, host_ref: u64) -> ParkRequest<'_> {
    ParkRequest {
        call_id: "android-call-1@pc33.example.com",
        aor,
        caller_uri: "sip:bob@example.com",
        caller_name: "Bob",
        host_ref,
        host_data: 0,
        timeout: None,
    }
}

#[test]
fn an_android_phone_is_woken_by_a_data_message_and_resumes_the_call() {
    let mut a = start();
    let contact = android_contact("dora", FCM_TOKEN);
    let out =
        a.h.engine()
            .register(&register("dora", &contact, Some("<urn:uuid:droid>")))
            .unwrap();
    assert!(out.push_capable && out.stored);
    a.h.engine().park(&park("dora", 5)).unwrap();

    let m = a
        .fcm
        .wait_for_message(FCM_TOKEN, Duration::from_secs(20))
        .expect("no FCM message");
    assert_eq!(m.project, PROJECT_ID);
    assert_eq!(m.priority.as_deref(), Some("HIGH"));
    assert_eq!(m.data["call_id"], "android-call-1@pc33.example.com");
    assert_eq!(m.data["aor"], "dora");
    let ttl: u64 = m.ttl.unwrap().trim_end_matches('s').parse().unwrap();
    assert!((1..=20).contains(&ttl), "ttl {ttl}s outlives the park");

    a.h.engine()
        .register(&register("dora", &contact, Some("<urn:uuid:droid>")))
        .unwrap();
    a.h.wait_kind(EventKind::Resume, 5);
    a.h.engine().call_ended(5).unwrap();
    a.h.wait_stats("the FCM push delivered", |s| {
        (
            s.fcm_pushes_sent,
            s.fcm_pushes_delivered,
            s.apns_pushes_sent,
        ) == (1, 1, 0)
    });
}

#[test]
fn unregistered_removes_the_android_binding_and_rejects_the_call_at_once() {
    let mut a = start();
    a.h.engine()
        .register(&register("erin", &android_contact("erin", FCM_TOKEN), None))
        .unwrap();
    a.fcm
        .script(FCM_TOKEN, Scripted::Reject(FcmError::Unregistered));
    a.h.engine().park(&park("erin", 6)).unwrap();

    let gone = a.h.wait_event(|e| e.kind == EventKind::DeviceGone);
    assert_eq!(gone.aor, "erin");
    let reject = a.h.wait_kind(EventKind::Reject, 6);
    assert_eq!(reject.sip_code, 480);
    let result =
        a.h.seen
            .iter()
            .find(|e| e.kind == EventKind::PushResult)
            .unwrap();
    assert_eq!(result.reason, "UNREGISTERED");
    assert!(a.h.engine().devices("erin").is_empty());
    let s = a.h.engine().stats();
    assert_eq!((s.devices_gone, s.fcm_pushes_failed), (1, 1), "{s:?}");
}

#[test]
fn an_iphone_and_an_android_phone_of_one_user_are_both_pushed() {
    let a = start();
    let iphone = token(1);
    a.h.engine()
        .register(&register(
            "finn",
            &push_contact("finn", &iphone),
            Some("<urn:uuid:ios>"),
        ))
        .unwrap();
    a.h.engine()
        .register(&register(
            "finn",
            &android_contact("finn", FCM_TOKEN),
            Some("<urn:uuid:droid>"),
        ))
        .unwrap();
    a.h.engine().park(&park("finn", 7)).unwrap();

    assert!(a
        .fcm
        .wait_for_message(FCM_TOKEN, Duration::from_secs(20))
        .is_some());
    assert!(a
        .h
        .mock
        .wait_for_push(&iphone, Duration::from_secs(20))
        .is_some());
    a.h.wait_stats("both delivered", |s| {
        (s.apns_pushes_delivered, s.fcm_pushes_delivered) == (1, 1)
    });
}

/// An Android binding learnt another way than REGISTER (`add_device`) is pushed like one
/// learnt from a REGISTER; its token is kept as given (FCM tokens are case-sensitive).
#[test]
fn an_android_binding_added_by_the_host_is_pushed() {
    let a = start();
    let device = pushpark::DeviceInfo {
        key: "urn:uuid:tablet".into(),
        provider: "fcm".into(),
        token: FCM_TOKEN.into(),
        topic: PROJECT_ID.into(),
        contact: String::new(),
        last_register_unix: 0,
    };
    a.h.engine().add_device("gina", &device).unwrap();
    let bad = pushpark::DeviceInfo {
        token: "not a token".into(),
        ..device.clone()
    };
    assert!(a.h.engine().add_device("gina", &bad).is_err());
    a.h.engine().park(&park("gina", 8)).unwrap();
    assert!(a
        .fcm
        .wait_for_message(FCM_TOKEN, Duration::from_secs(20))
        .is_some());
}

/// An operator with Android apps only has no Apple key: no `apns` section. Android phones are
/// pushed and resume their calls; an iPhone's REGISTER is refused as a push service not served
/// (RFC 8599's 555), as an Android phone's is without `fcm`; an iPhone binding stored before
/// (under an earlier configuration) fails its push, and its call is rejected at once.
#[test]
fn without_an_apns_section_android_phones_alone_are_served() {
    let mut a = start_with(|c| {
        c.as_object_mut().unwrap().remove("apns");
    });
    let contact = android_contact("hana", FCM_TOKEN);
    a.h.engine()
        .register(&register("hana", &contact, Some("<urn:uuid:droid>")))
        .unwrap();
    a.h.engine().park(&park("hana", 9)).unwrap();
    assert!(a
        .fcm
        .wait_for_message(FCM_TOKEN, Duration::from_secs(20))
        .is_some());
    a.h.engine()
        .register(&register("hana", &contact, Some("<urn:uuid:droid>")))
        .unwrap();
    a.h.wait_kind(EventKind::Resume, 9);

    let iphone = push_contact("hana", &token(1));
    match a.h.engine().register(&register("hana", &iphone, None)) {
        Err(EngineError::Unsupported(m)) => assert!(m.contains("no apns section"), "{m}"),
        other => panic!("an iPhone registered without apns: {other:?}"),
    }
    let stored = pushpark::DeviceInfo {
        key: token(2),
        provider: "apns".into(),
        token: token(2),
        topic: "com.example.app.voip".into(),
        contact: String::new(),
        last_register_unix: 0,
    };
    a.h.engine().add_device("ivan", &stored).unwrap();
    a.h.engine().park(&park("ivan", 10)).unwrap();
    let failed = a.h.wait_kind(EventKind::PushResult, 10);
    assert!(failed.reason.contains("no apns section"), "{failed:?}");
    a.h.wait_kind(EventKind::Reject, 10);
    assert_eq!(a.h.engine().stats().apns_pushes_sent, 0);
}

//! Every parked call ends exactly once while timeouts, REGISTERs, cancels and
//! failing pushes race each other from many threads (real engine, real
//! client, mock APNs).

mod engine_common;

use engine_common::*;
use pushpark::apns::Reason;
use pushpark::mock::Scripted;
use pushpark::{EventKind, ParkRequest};
use rand::Rng;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const USERS: u32 = 12;
const CALLS_PER_PARKER: u64 = 300;
const PARKERS: u64 = 3;
/// Users whose pushes APNs rejects for good (their calls end as push_failed).
const FAILING_USERS: u32 = 3;
/// The next users never register again: their calls end by timeout (or cancel),
/// however fast REGISTERs are handled.
const SLEEPING_USERS: u32 = 2;

#[test]
fn timeouts_registers_cancels_and_push_failures_race_yet_each_call_ends_once() {
    let mut h = Harness::start(|c| {
        c["park"] = json!({"max_per_aor": 10_000, "recent_register_ms": 5});
        c["push"] = json!({"min_interval_ms": 0});
    });
    let aors: Vec<String> = (0..USERS)
        .map(|u| format!("sip:user{u}@example.com"))
        .collect();
    let contacts: Vec<String> = (0..USERS)
        .map(|u| push_contact("u", &token(100 + u)))
        .collect();
    for (aor, contact) in aors.iter().zip(&contacts) {
        h.engine().register(&register(aor, contact, None)).unwrap();
    }
    for u in 0..FAILING_USERS {
        h.mock.script(
            &token(100 + u),
            Scripted::Reject(Reason::DeviceTokenNotForTopic),
        );
    }
    // A warm connection, so push answers race with the short timeouts below
    // (a device added without REGISTER: its call is not resumed at once).
    let warm = pushpark::DeviceInfo {
        key: String::new(),
        provider: "apns".into(),
        token: token(99),
        topic: TOPIC.into(),
        contact: String::new(),
        last_register_unix: 0,
    };
    h.engine().add_device("warm", &warm).unwrap();
    let warm_call = ParkRequest {
        call_id: "warm",
        aor: "warm",
        caller_uri: "sip:caller@example.com",
        caller_name: "",
        host_ref: u64::MAX,
        host_data: 0,
        timeout: None,
    };
    h.engine().park(&warm_call).unwrap();
    h.wait_event(|e| e.kind == EventKind::PushResult && e.reason == "delivered");
    h.engine().cancel(u64::MAX).unwrap();
    h.seen.clear();
    let parked_ok = Mutex::new(Vec::new());
    let cancelled_ok = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let engine = h.engine();

    std::thread::scope(|s| {
        let parkers: Vec<_> = (0..PARKERS)
            .map(|p| {
                let (aors, parked_ok) = (&aors, &parked_ok);
                s.spawn(move || {
                    let mut rng = rand::thread_rng();
                    for i in 0..CALLS_PER_PARKER {
                        let host_ref = ((p + 1) << 32) | i;
                        let user = rng.gen_range(0..aors.len());
                        // Failing users' calls wait longer, so that their push
                        // answers (slow in debug builds) land before most timeouts.
                        let ms = if user < FAILING_USERS as usize {
                            rng.gen_range(20..300)
                        } else {
                            rng.gen_range(1..40)
                        };
                        let req = ParkRequest {
                            call_id: "race",
                            aor: &aors[user],
                            caller_uri: "sip:caller@example.com",
                            caller_name: "",
                            host_ref,
                            host_data: 0,
                            timeout: Some(Duration::from_millis(ms)),
                        };
                        if engine.park(&req).is_ok() {
                            parked_ok.lock().unwrap().push(host_ref);
                        }
                        // Leave CPU to the client and the mock (2 cores here):
                        // push answers must race with the timeouts.
                        std::thread::sleep(Duration::from_micros(rng.gen_range(0..400)));
                    }
                })
            })
            .collect();
        s.spawn(|| {
            let mut rng = rand::thread_rng();
            while !done.load(Ordering::Relaxed) {
                // Phones with a bad token, and sleeping ones, never wake up.
                let u = rng.gen_range((FAILING_USERS + SLEEPING_USERS) as usize..aors.len());
                engine
                    .register(&register(&aors[u], &contacts[u], None))
                    .unwrap();
                std::thread::sleep(Duration::from_micros(rng.gen_range(0..300)));
            }
        });
        s.spawn(|| {
            let mut rng = rand::thread_rng();
            while !done.load(Ordering::Relaxed) {
                // One of the latest calls, which are likely still parked.
                let host_ref = {
                    let parked = parked_ok.lock().unwrap();
                    match parked.len().checked_sub(rng.gen_range(1..4)) {
                        Some(i) => parked[i],
                        None => continue,
                    }
                };
                // Ok only while the call is parked or ringing.
                if engine.cancel(host_ref).is_ok() {
                    cancelled_ok.lock().unwrap().push(host_ref);
                }
                std::thread::sleep(Duration::from_micros(rng.gen_range(0..200)));
            }
        });
        for p in parkers {
            p.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });

    // Ringing calls leave at their deadline, so everything drains.
    h.wait_stats("every call gone", |s| s.parked_now + s.resumed_now == 0);
    h.drain();

    let parked = parked_ok.into_inner().unwrap();
    let mut ends: HashMap<u64, Vec<EventKind>> = HashMap::new();
    for e in &h.seen {
        if matches!(e.kind, EventKind::Resume | EventKind::Reject) {
            ends.entry(e.host_ref).or_default().push(e.kind);
        }
        if e.kind == EventKind::AppendBranch {
            panic!("one device per user here: {e:?}");
        }
    }
    for (host_ref, kinds) in &ends {
        assert_eq!(
            kinds.len(),
            1,
            "host_ref {host_ref:#x} ended twice: {kinds:?}"
        );
        assert!(parked.contains(host_ref));
    }
    // Nothing was polled before the end: a call whose cancel returned OK shows
    // no Resume (purged at the cancel) nor Reject, and the calls without one
    // are exactly those.
    let cancels = cancelled_ok.into_inner().unwrap();
    for host_ref in &cancels {
        let kinds = ends.get(host_ref);
        assert!(kinds.is_none(), "{host_ref:#x}: {kinds:?} after the cancel");
    }
    let silent = parked.iter().filter(|r| !ends.contains_key(r)).count();
    assert_eq!(silent, cancels.len());
    let s = h.engine().stats();
    assert_eq!(
        s.parked_total,
        parked.len() as u64 + 1,
        "and the warm-up call"
    );
    assert_eq!(
        s.resumed + s.rejected_timeout + s.rejected_push_failed + s.cancelled,
        s.parked_total
    );
    // Every successful cancel ended a parked call or forgot a ringing one.
    assert!(cancels.len() as u64 + 1 >= s.cancelled);
    // The races must really have happened for the test to mean anything.
    assert!(
        s.resumed > 0 && s.rejected_timeout > 0 && s.cancelled > 1 && s.rejected_push_failed > 0,
        "{s:#?}"
    );
    assert_eq!(s.parked_total, PARKERS * CALLS_PER_PARKER + 1);
}

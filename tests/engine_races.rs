//! Every parked call ends exactly once while timeouts, REGISTERs and cancels
//! race each other from many threads (real engine, real client, mock APNs).

mod engine_common;

use engine_common::*;
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

#[test]
fn timeout_register_and_cancel_race_yet_each_call_ends_once() {
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
                        let host_ref = (p << 32) | i;
                        let aor = &aors[rng.gen_range(0..aors.len())];
                        let req = ParkRequest {
                            call_id: "race",
                            aor,
                            caller_uri: "sip:caller@example.com",
                            caller_name: "",
                            host_ref,
                            timeout: Some(Duration::from_millis(rng.gen_range(1..20))),
                        };
                        if engine.park(&req).is_ok() {
                            parked_ok.lock().unwrap().push(host_ref);
                        }
                        if i % 16 == 0 {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        s.spawn(|| {
            let mut rng = rand::thread_rng();
            while !done.load(Ordering::Relaxed) {
                let u = rng.gen_range(0..aors.len());
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
                std::thread::yield_now();
            }
        });
        for p in parkers {
            p.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });

    // Ringing calls leave at their deadline, so everything drains.
    h.wait_stats("every call gone", |s| s.parked_now == 0);
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
    // The calls with no Resume/Reject are exactly those cancelled while parked.
    let silent = parked.iter().filter(|r| !ends.contains_key(r)).count() as u64;
    let s = h.engine().stats();
    assert_eq!(silent, s.cancelled);
    assert_eq!(s.parked_total, parked.len() as u64);
    assert_eq!(
        s.resumed + s.rejected_timeout + s.rejected_push_failed + s.cancelled,
        s.parked_total
    );
    let cancels = cancelled_ok.into_inner().unwrap();
    assert!(cancels.len() as u64 >= s.cancelled);
    // The race must really have happened for the test to mean anything.
    assert!(
        s.resumed > 0 && s.rejected_timeout > 0 && s.cancelled > 0,
        "{s:#?}"
    );
    assert_eq!(s.parked_total, PARKERS * CALLS_PER_PARKER);
}

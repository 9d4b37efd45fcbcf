//! Engine figures (Rust API, release build, the mock APNs in-process over TLS):
//! `cargo bench --bench engine`. Prints
//! - the store: REGISTER cost for a new binding (queued to the store writer) and for a
//!   refresh (memory only);
//! - engine cost per park + REGISTER + Resume cycle, excluding the network;
//! - REGISTER → Resume event latency (p50/p99) seen by a thread polling the event fd;
//! - park → push-on-the-wire latency (p50/p99) at 1,000 parks/s;
//! - memory per parked call with 100,000 calls parked at once.

mod common;

use common::{percentiles, wait_readable};
use pushpark::mock::{MockApns, MockConfig, KEY_ID, TEAM_ID};
use pushpark::{Engine, EngineConfig, EventKind, ParkError, ParkRequest, Registration};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const TOPIC: &str = "com.example.phone.voip";

fn token(i: u64) -> String {
    format!("{:064x}", 0xbe9c_0000_0000_u64 + i)
}

fn contact(i: u64) -> String {
    format!(
        "<sip:u{i}@192.0.2.10:5061;transport=tls;pn-provider=apns;pn-prid={};pn-param={TEAM_ID}.{TOPIC}>",
        token(i)
    )
}

fn engine(mock: &MockApns, store: &std::path::Path, extra: Value) -> Engine {
    let mut cfg = json!({
        "apns": {
            "endpoint": format!("127.0.0.1:{}", mock.addr().port()),
            "ca_file": mock.ca_pem_path(),
            "auth": { "key_file": mock.key_path(), "key_id": KEY_ID, "team_id": TEAM_ID }
        },
        "park": { "recent_register_ms": 0, "max_total": 200_000, "max_per_aor": 200_000 },
        "store": { "dir": store }
    });
    for (section, values) in extra.as_object().unwrap() {
        for (k, v) in values.as_object().unwrap() {
            cfg[section][k] = v.clone();
        }
    }
    Engine::new(EngineConfig::from_json(&cfg.to_string()).unwrap()).unwrap()
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn reg<'a>(aor: &'a str, contact: &'a str) -> Registration<'a> {
    Registration {
        aor,
        contact,
        instance: None,
        expires: 600,
        call_id: None,
        cseq: 0,
        path: None,
    }
}

fn park<'a>(aor: &'a str, call_id: &'a str, host_ref: u64) -> ParkRequest<'a> {
    ParkRequest {
        call_id,
        aor,
        caller_uri: "sip:bob@example.com",
        caller_name: "Bob",
        host_ref,
        host_data: 0,
        timeout: None,
    }
}

fn store_costs(mock: &MockApns) {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(mock, dir.path(), json!({}));
    let n = 300;
    let users: Vec<_> = (0..n).map(|i| (format!("store{i}"), contact(i))).collect();
    let mut new = Vec::new();
    for (aor, c) in &users {
        let t = Instant::now();
        e.register(&reg(aor, c)).unwrap();
        new.push(t.elapsed());
    }
    let mut refresh = Vec::new();
    for (aor, c) in &users {
        let t = Instant::now();
        e.register(&reg(aor, c)).unwrap();
        refresh.push(t.elapsed());
    }
    println!(
        "register, new binding (write-behind):   {}",
        percentiles(new)
    );
    println!(
        "register, refresh (memory only):        {}",
        percentiles(refresh)
    );
}

fn cycle_cost(mock: &MockApns) {
    // One device, pushes coalesced for an hour: only the first park touches the network.
    let dir = tempfile::tempdir().unwrap();
    let e = engine(
        mock,
        dir.path(),
        json!({"push": {"min_interval_ms": 3_600_000}}),
    );
    let c = contact(1_000_000);
    let r = reg("cycle", &c);
    e.register(&r).unwrap();
    while e.poll_event().is_some() {}
    let n = 50_000u64;
    let t = Instant::now();
    for i in 0..n {
        e.park(&park("cycle", "c", i)).unwrap();
        e.register(&r).unwrap();
        loop {
            match e.poll_event() {
                Some(ev) if ev.kind == EventKind::Resume => break,
                Some(_) => {}
                None => panic!("Resume is queued by register"),
            }
        }
        e.call_ended(i).unwrap();
    }
    println!(
        "engine cost per park + REGISTER + Resume + call_ended cycle (no network): {:?}",
        t.elapsed() / n as u32
    );
}

fn register_to_resume(mock: &MockApns) {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(
        mock,
        dir.path(),
        json!({"push": {"min_interval_ms": 3_600_000}}),
    );
    let c = contact(2_000_000);
    let r = reg("wake", &c);
    e.register(&r).unwrap();
    let n = 5_000u64;
    let mut lat = Vec::new();
    std::thread::scope(|s| {
        let poller = s.spawn(|| {
            let mut seen = Vec::new();
            while seen.len() < n as usize {
                wait_readable(e.event_fd());
                while let Some(ev) = e.poll_event() {
                    if ev.kind == EventKind::Resume {
                        seen.push(Instant::now());
                    }
                }
            }
            seen
        });
        let mut sent = Vec::new();
        for i in 0..n {
            e.park(&park("wake", "w", i)).unwrap();
            std::thread::sleep(Duration::from_micros(200));
            let t = Instant::now();
            e.register(&r).unwrap();
            sent.push(t);
            std::thread::sleep(Duration::from_micros(200));
            e.call_ended(i).unwrap();
        }
        let got = poller.join().unwrap();
        lat = got
            .iter()
            .zip(&sent)
            .map(|(g, s)| g.duration_since(*s))
            .collect();
    });
    println!(
        "REGISTER -> Resume event (fd poller thread): {}",
        percentiles(lat)
    );
}

fn park_to_wire(mock: &MockApns) {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(mock, dir.path(), json!({"push": {"min_interval_ms": 0}}));
    let n = 5_000u64;
    for i in 0..n {
        let (aor, c) = (format!("wire{i}"), contact(3_000_000 + i));
        e.register(&reg(&aor, &c)).unwrap();
    }
    // Warm the connection first.
    e.park(&park("wire0", "warm", u64::MAX)).unwrap();
    let arrivals = mock.subscribe();
    arrivals.recv_timeout(Duration::from_secs(30)).unwrap();
    let mut parked_at = HashMap::new();
    let start = Instant::now();
    for i in 0..n {
        let due = start + Duration::from_millis(i);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let call_id = format!("wire-{i}");
        parked_at.insert(call_id.clone(), Instant::now());
        e.park(&park(&format!("wire{}", (i + 1) % n), &call_id, i))
            .unwrap();
    }
    let mut lat = Vec::new();
    while lat.len() < n as usize {
        let p = arrivals
            .recv_timeout(Duration::from_secs(30))
            .expect("every push arrives");
        let id = p.payload_json()["call_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if let Some(at) = parked_at.get(&id) {
            lat.push(p.arrived.duration_since(*at));
        }
    }
    println!(
        "park -> push on the wire at 1,000 parks/s: {}",
        percentiles(lat)
    );
}

fn memory_per_call(mock: &MockApns) {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(
        mock,
        dir.path(),
        json!({"push": {"min_interval_ms": 3_600_000}, "park": {"timeout_ms": 3_600_000}}),
    );
    let c = contact(4_000_000);
    e.register(&reg("sip:memory-user@example.com", &c)).unwrap();
    let n = 100_000u64;
    let call_ids: Vec<String> = (0..n)
        .map(|i| format!("{i:016x}-a84b4c76e66710@pc33.example.com"))
        .collect();
    let before = rss_bytes();
    for (i, id) in call_ids.iter().enumerate() {
        let req = park("sip:memory-user@example.com", id, i as u64);
        // Parking faster than the engine thread takes commands fills its queue.
        while let Err(ParkError::QueueFull) = e.park(&req) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // The engine thread has taken every command (and armed every timer) once
    // all calls but the first two were folded into the device's waiting push.
    while e.stats().pushes_coalesced < n - 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = rss_bytes();
    println!(
        "memory per parked call: {} bytes ({} calls, RSS {} -> {} MiB)",
        (after.saturating_sub(before)) / n,
        n,
        before >> 20,
        after >> 20
    );
}

fn main() {
    let mock_dir = tempfile::tempdir().unwrap();
    let mock = MockApns::start(MockConfig::new(mock_dir.path())).unwrap();
    store_costs(&mock);
    cycle_cost(&mock);
    register_to_resume(&mock);
    park_to_wire(&mock);
    memory_per_call(&mock);
}

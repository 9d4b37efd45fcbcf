//! Cross-node wake-up latency: `cargo bench --bench cluster` (needs Debian's redis-server).
//! Two engines in this process ("nodes" a and b) share one redis-server on loopback; a call
//! is parked on a, the device REGISTERs on b, and a thread of a polling a's event fd takes
//! the Resume. Prints p50/p99 of b's REGISTER → a's Resume (b's publish, Redis, a's
//! subscriber, the wake), beside the same REGISTER on a itself.

mod common;
#[allow(dead_code)] // the tests use all of it
#[path = "../tests/redis_server/mod.rs"]
mod redis_server;

use common::{percentiles, wait_readable};
use pushpark::mock::{MockApns, MockConfig, KEY_ID, TEAM_ID};
use pushpark::{Engine, EngineConfig, EventKind, ParkRequest, Registration};
use redis_server::Redis;
use serde_json::json;
use std::time::{Duration, Instant};

const TOPIC: &str = "com.example.phone.voip";
const CALLS: u64 = 2_000;

fn node(mock: &MockApns, redis: &Redis, id: &str, store: &std::path::Path) -> Engine {
    let cfg = json!({
        "apns": {
            "endpoint": format!("127.0.0.1:{}", mock.addr().port()),
            "ca_file": mock.ca_pem_path(),
            "auth": { "key_file": mock.key_path(), "key_id": KEY_ID, "team_id": TEAM_ID }
        },
        // Pushed once for the whole run: the figures are the wake's alone.
        "push": { "min_interval_ms": 3_600_000 },
        "park": { "recent_register_ms": 0 },
        "store": { "dir": store },
        "cluster": { "redis_url": redis.url(), "node_id": id }
    });
    let engine = Engine::new(EngineConfig::from_json(&cfg.to_string()).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.stats().cluster_connected == 0 {
        assert!(Instant::now() < deadline, "node {id} did not reach Redis");
        std::thread::sleep(Duration::from_millis(10));
    }
    engine
}

/// REGISTERs on `registrar` for calls parked on `a`: the time from each REGISTER to the
/// Resume a's poller thread takes. Each call ends once its Resume was taken.
fn register_to_resume(a: &Engine, registrar: &Engine, contact: &str) -> Vec<Duration> {
    let r = Registration {
        aor: "wake",
        contact,
        instance: None,
        expires: 600,
        call_id: None,
        cseq: 0,
        path: Some("<sip:127.0.0.2:5060;lr>"),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut left = CALLS;
            while left > 0 {
                wait_readable(a.event_fd());
                while let Some(ev) = a.poll_event() {
                    if ev.kind == EventKind::Resume {
                        tx.send(Instant::now()).unwrap();
                        left -= 1;
                    }
                }
            }
        });
        (1..=CALLS)
            .map(|host_ref| {
                let p = ParkRequest {
                    call_id: "w",
                    aor: "wake",
                    caller_uri: "sip:bob@example.com",
                    caller_name: "Bob",
                    host_ref,
                    host_data: 0,
                    timeout: None,
                };
                a.park(&p).unwrap();
                std::thread::sleep(Duration::from_millis(1));
                let t = Instant::now();
                registrar.register(&r).unwrap();
                let resumed = rx.recv_timeout(Duration::from_secs(10)).expect("no Resume");
                a.call_ended(host_ref).unwrap();
                resumed.duration_since(t)
            })
            .collect()
    })
}

fn main() {
    let mock_dir = tempfile::tempdir().unwrap();
    let mock = MockApns::start(MockConfig::new(mock_dir.path())).unwrap();
    let redis = Redis::start();
    let (sa, sb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(&mock, &redis, "a", sa.path());
    let b = node(&mock, &redis, "b", sb.path());
    let contact = format!(
        "<sip:wake@192.0.2.10:5061;transport=tls;pn-provider=apns;pn-prid={:064x};pn-param={TEAM_ID}.{TOPIC}>",
        0xbe9c_u64
    );
    // The device known to both before the first park.
    a.register(&Registration {
        aor: "wake",
        contact: &contact,
        instance: None,
        expires: 600,
        call_id: None,
        cseq: 0,
        path: None,
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let local = register_to_resume(&a, &a, &contact);
    let cross = register_to_resume(&a, &b, &contact);
    println!(
        "REGISTER on a -> Resume on a (same node):            {}",
        percentiles(local)
    );
    println!(
        "REGISTER on b -> Resume on a (through Redis pub/sub): {}",
        percentiles(cross)
    );
}

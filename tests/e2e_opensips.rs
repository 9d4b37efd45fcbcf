//! End to end: OpenSIPS 3.6 (built from the vendored source under target/, see
//! adapters/opensips/opensips-source) with the pushpark OpenSIPS module, `pushpark
//! mock-apns` as APNs, MI through mi_fifo.
//!
//! The tests run one at a time: each starts an OpenSIPS with its engine process on a 2-core
//! machine.

mod built_lib;
#[allow(dead_code)]
#[path = "e2e/opensips.rs"]
mod opensips;
#[allow(dead_code)] // the rig serves the Kamailio tests and the demo too
#[path = "../src/bin/pushpark/rig.rs"]
mod rig;

use opensips::OpenSips;
use rig::*;
use std::sync::{Mutex, MutexGuard};

const PARK_TIMEOUT_MS: u64 = 4000;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// One test's world: mock APNs, OpenSIPS with the module. Fields drop in order: OpenSIPS
/// first, the work dir last.
struct World {
    opensips: OpenSips,
    _mock: Mock,
    _dir: WorkDir,
}

impl World {
    fn new(name: &str) -> World {
        let dir = WorkDir::new(name);
        let mock = Mock::start(&dir.0, 0);
        let opensips = OpenSips::start_pushpark(&dir.0, &mock, PARK_TIMEOUT_MS);
        World {
            opensips,
            _mock: mock,
            _dir: dir,
        }
    }

    /// The module's OpenSIPS statistics (MI get_statistics pushpark:).
    fn statistics(&self) -> serde_json::Value {
        let group = serde_json::json!({"statistics": ["pushpark:"]});
        self.opensips.mi("get_statistics", group).unwrap()
    }
}

/// The module loads, its engine process starts, and MI reaches it: pushpark_stats answers
/// with the engine's counters, pushpark_parked with an empty page, the module's statistics
/// are OpenSIPS statistics.
#[test]
fn mi_answers_through_the_fifo() {
    let _serial = serial();
    let w = World::new("os-mi");
    let stats = w
        .opensips
        .mi("pushpark_stats", serde_json::json!({}))
        .unwrap();
    assert_eq!(stats["parked_now"], 0, "{stats}");
    assert_eq!(stats["engine_restarts"], 0, "{stats}");
    let parked = w
        .opensips
        .mi("pushpark_parked", serde_json::json!({}))
        .unwrap();
    assert_eq!(parked["total"], 0, "{parked}");
    assert_eq!(parked["items"], serde_json::json!([]), "{parked}");
    let page = w
        .opensips
        .mi(
            "pushpark_parked",
            serde_json::json!({"offset": 0, "limit": 0}),
        )
        .unwrap_err();
    assert!(page.contains("limit"), "{page}");
    let devices = w
        .opensips
        .mi(
            "pushpark_devices",
            serde_json::json!({"aor": "sip:alice@example.com"}),
        )
        .unwrap();
    assert_eq!(devices["total"], 0, "{devices}");
    let counters = w.statistics();
    assert_eq!(counters["pushpark:parked"], 0, "{counters}");
    assert_eq!(counters["pushpark:registers"], 0, "{counters}");
}

/// A phone's REGISTER with push parameters (RFC 8599) is saved and its device learnt:
/// pushpark_devices lists it under the AOR, the registers statistic counts it.
#[test]
fn register_learns_the_device() {
    let _serial = serial();
    let w = World::new("os-register");
    let phone = Phone::new("osreg");
    phone.register(&w._dir.0, &w.opensips.addr(), 300);
    let devices = w
        .opensips
        .mi("pushpark_devices", serde_json::json!({"aor": phone.aor()}))
        .unwrap();
    assert_eq!(devices["total"], 1, "{devices}");
    assert!(
        devices.to_string().contains(&phone.instance),
        "{devices} lacks {}",
        phone.instance
    );
    let counters = w.statistics();
    assert_eq!(counters["pushpark:registers"], 1, "{counters}");
}

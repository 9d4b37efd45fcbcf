//! Shared by the engine tests: the real engine with the real APNs client
//! against the mock APNs over TLS on loopback.
#![allow(dead_code)]

use pushpark::mock::{MockApns, MockConfig, KEY_ID, TEAM_ID};
use pushpark::{Engine, EngineConfig, Event, EventKind, Registration};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Generous: only a hung test ever waits this long.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub const TOPIC: &str = "com.example.phone.voip";

pub fn token(i: u32) -> String {
    format!("{:064x}", 0x5eed_0000_u64 + u64::from(i))
}

/// A token as events and listings show it: never whole.
pub fn shown(token: &str) -> String {
    format!("{}...", &token[..8])
}

/// A REGISTER Contact the way an iOS softphone sends it (RFC 8599).
pub fn push_contact(user: &str, token: &str) -> String {
    format!(
        "<sip:{user}@192.0.2.10:5061;transport=tls;pn-provider=apns;pn-prid={token};\
         pn-param={TEAM_ID}.{TOPIC}>;expires=600"
    )
}

pub fn register<'a>(aor: &'a str, contact: &'a str, instance: Option<&'a str>) -> Registration<'a> {
    Registration {
        aor,
        contact,
        instance,
        expires: 600,
        call_id: None,
        cseq: 0,
        path: None,
    }
}

pub struct Harness {
    pub mock: MockApns,
    pub engine: Option<Engine>,
    pub store_dir: tempfile::TempDir,
    _mock_dir: tempfile::TempDir,
    /// Every event taken from the engine, in order.
    pub seen: Vec<Event>,
}

pub fn base_config(mock: &MockApns, store: &Path) -> Value {
    json!({
        "apns": {
            "endpoint": format!("127.0.0.1:{}", mock.addr().port()),
            "ca_file": mock.ca_pem_path(),
            "auth": { "key_file": mock.key_path(), "key_id": KEY_ID, "team_id": TEAM_ID }
        },
        // Tests register a phone and park right after; the race window (see
        // the test for it) would resume those calls at once.
        "park": { "recent_register_ms": 0 },
        "store": { "dir": store }
    })
}

pub fn engine_from(config: &Value) -> Engine {
    let cfg = EngineConfig::from_json(&config.to_string()).unwrap();
    Engine::new(cfg).unwrap()
}

impl Harness {
    /// Mock + engine; `tweak` edits the config JSON first.
    pub fn start(tweak: impl FnOnce(&mut Value)) -> Harness {
        let mock_dir = tempfile::tempdir().unwrap();
        let mock = MockApns::start(MockConfig::new(mock_dir.path())).unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let mut config = base_config(&mock, store_dir.path());
        tweak(&mut config);
        let engine = engine_from(&config);
        Harness {
            mock,
            engine: Some(engine),
            store_dir,
            _mock_dir: mock_dir,
            seen: Vec::new(),
        }
    }

    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    /// Registers a push device for `aor`.
    pub fn add_phone(&self, aor: &str, token: &str) {
        let contact = push_contact(aor, token);
        let out = self
            .engine()
            .register(&register(aor, &contact, None))
            .unwrap();
        assert!(out.push_capable && out.stored);
    }

    /// Waits (on the event fd) for the first event matching `want`; every
    /// event taken meanwhile is kept in `seen`.
    pub fn wait_event(&mut self, want: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + PATIENCE;
        loop {
            while let Some(e) = self.engine().poll_event() {
                self.seen.push(e.clone());
                if want(&e) {
                    return e;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no matching event; seen: {:#?}", self.seen);
            wait_readable(self.engine().event_fd(), left);
        }
    }

    pub fn wait_kind(&mut self, kind: EventKind, host_ref: u64) -> Event {
        self.wait_event(|e| e.kind == kind && e.host_ref == host_ref)
    }

    /// Takes the events already queued.
    pub fn drain(&mut self) {
        while let Some(e) = self.engine().poll_event() {
            self.seen.push(e);
        }
    }

    /// The call's own events (its pushes' outcomes, which carry its host_ref too, left out).
    pub fn seen_for(&self, host_ref: u64) -> Vec<EventKind> {
        self.seen
            .iter()
            .filter(|e| e.host_ref == host_ref && e.kind != EventKind::PushResult)
            .map(|e| e.kind)
            .collect()
    }

    /// Waits until the engine's stats satisfy `cond`.
    pub fn wait_stats(&self, what: &str, cond: impl Fn(&pushpark::Stats) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !cond(&self.engine().stats()) {
            assert!(
                Instant::now() < deadline,
                "{what}: {:#?}",
                self.engine().stats()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Blocks until `fd` is readable or `timeout` passes.
pub fn wait_readable(fd: i32, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n == 1 && pfd.revents & libc::POLLIN != 0
}

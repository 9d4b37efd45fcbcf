//! Two engines ("nodes" a and b) in one process sharing bindings and wakes
//! through a real redis-server (Debian package `redis-server`, scripts/deps),
//! each test with its own server on a free loopback port, pushing to one mock APNs.

mod engine_common;
mod redis_server;

use engine_common::{base_config, push_contact, register, token, wait_readable, PATIENCE};
use pushpark::apns::Reason;
use pushpark::mock::{MockApns, MockConfig, Scripted};
use pushpark::{Engine, EngineConfig, Event, EventKind, ParkRequest, Registration, Stats};
use redis_server::Redis;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// One node: an engine with the cluster config, and the events taken from it.
struct Node {
    engine: Engine,
    seen: Vec<Event>,
    store: tempfile::TempDir,
}

impl Node {
    fn start(mock: &MockApns, redis: &Redis, node_id: &str, tweak: impl Fn(&mut Value)) -> Node {
        Node::start_on(tempfile::tempdir().unwrap(), mock, redis, node_id, tweak)
    }

    /// Stops the engine and starts a new one on the same store.
    fn restart(self, mock: &MockApns, redis: &Redis, node_id: &str) -> Node {
        let Node { engine, store, .. } = self;
        drop(engine);
        Node::start_on(store, mock, redis, node_id, |_| {})
    }

    fn start_on(
        store: tempfile::TempDir,
        mock: &MockApns,
        redis: &Redis,
        node_id: &str,
        tweak: impl Fn(&mut Value),
    ) -> Node {
        let mut config = base_config(mock, store.path());
        config["cluster"] = json!({ "redis_url": redis.url(), "node_id": node_id });
        tweak(&mut config);
        let cfg = EngineConfig::from_json(&config.to_string()).unwrap();
        let engine = Engine::new(cfg).unwrap();
        let node = Node {
            engine,
            seen: Vec::new(),
            store,
        };
        node.wait_stats("connected", |s| s.cluster_connected == 1);
        node
    }

    fn wait_stats(&self, what: &str, cond: impl Fn(&Stats) -> bool) {
        wait_until(
            what,
            || cond(&self.engine.stats()),
            || format!("{:#?}", self.engine.stats()),
        );
    }

    fn tokens(&self, aor: &str) -> Vec<String> {
        let mut t: Vec<_> = self
            .engine
            .devices(aor)
            .into_iter()
            .map(|d| d.token)
            .collect();
        t.sort();
        t
    }

    fn register(&self, aor: &str, token: &str, expires: u32) {
        self.register_via(aor, token, expires, None);
    }

    /// A REGISTER for which this node recorded `path`.
    fn register_via(&self, aor: &str, token: &str, expires: u32, path: Option<&str>) {
        let contact = push_contact(aor, token);
        let r = Registration {
            expires,
            path,
            ..register(aor, &contact, None)
        };
        self.engine.register(&r).unwrap();
    }

    fn park(&self, aor: &str, host_ref: u64) -> u64 {
        let p = ParkRequest {
            call_id: "call-1",
            aor,
            caller_uri: "sip:bob@example.com",
            caller_name: "Bob",
            host_ref,
            host_data: 0,
            timeout: None,
        };
        self.engine.park(&p).unwrap()
    }

    fn wait_event(&mut self, want: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + PATIENCE;
        loop {
            while let Some(e) = self.engine.poll_event() {
                self.seen.push(e.clone());
                if want(&e) {
                    return e;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no matching event; seen: {:#?}", self.seen);
            wait_readable(self.engine.event_fd(), left);
        }
    }

    fn drain(&mut self) {
        while let Some(e) = self.engine.poll_event() {
            self.seen.push(e);
        }
    }

    fn count(&self, kind: EventKind, host_ref: u64) -> usize {
        let of = |e: &&Event| e.kind == kind && e.host_ref == host_ref;
        self.seen.iter().filter(of).count()
    }
}

fn wait_until(what: &str, cond: impl Fn() -> bool, show: impl Fn() -> String) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: {}", show());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn mock() -> (MockApns, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockApns::start(MockConfig::new(dir.path())).unwrap();
    (mock, dir)
}

#[test]
fn a_device_registered_on_b_is_pushed_for_a_call_parked_on_a() {
    let redis = Redis::start();
    let (mock, _d) = mock();
    let a = Node::start(&mock, &redis, "a", |_| {});
    let b = Node::start(&mock, &redis, "b", |_| {});
    b.register("alice", &token(1), 600);
    wait_until(
        "a knows alice's phone",
        || a.tokens("alice") == [token(1)],
        || format!("{:?}", a.tokens("alice")),
    );
    assert_eq!(
        redis.bindings("alice").into_values().collect::<Vec<_>>(),
        [token(1)]
    );
    a.park("alice", 1);
    assert!(
        mock.wait_for_push(&token(1), PATIENCE).is_some(),
        "a pushed her phone"
    );
    a.wait_stats("a's push", |s| s.pushes_sent == 1);
    assert!(b.engine.stats().cluster_bindings_synced >= 1);
    assert!(a.engine.stats().cluster_bindings_synced >= 1);
}

#[test]
fn a_call_parked_on_a_resumes_once_for_registers_on_b_and_a() {
    let redis = Redis::start();
    let (mock, _d) = mock();
    let mut a = Node::start(&mock, &redis, "a", |_| {});
    let b = Node::start(&mock, &redis, "b", |_| {});
    a.register("alice", &token(1), 600);
    let id = a.park("alice", 7);
    assert!(mock.wait_for_push(&token(1), PATIENCE).is_some());
    // The woken phone registers on b, twice (a retransmission), and on a too.
    b.register("alice", &token(1), 600);
    let e = a.wait_event(|e| e.kind == EventKind::Resume && e.host_ref == 7);
    assert_eq!(e.park_id, id);
    assert!(e.contact.contains("192.0.2.10"), "{e:?}");
    assert_eq!(
        e.relay, None,
        "no Path: a's own location table has the device"
    );
    b.register("alice", &token(1), 600);
    a.register("alice", &token(1), 600);
    b.wait_stats("b's wakes published", |s| s.cluster_wakes_sent == 2);
    a.wait_stats("a handled both wakes", |s| s.cluster_wakes_received == 2);
    a.drain();
    assert_eq!(a.count(EventKind::Resume, 7), 1, "{:#?}", a.seen);
    assert_eq!(a.count(EventKind::AppendBranch, 7), 0, "{:#?}", a.seen);
    assert_eq!(a.engine.stats().resumed, 1);
}

/// b recorded a Path for the woken phone's REGISTER: a's events for the phone say to
/// relay the call through b, to the phone's Contact URI; also for a call that a parks
/// right after (taken for just registered).
#[test]
fn a_device_woken_on_b_is_relayed_through_bs_path() {
    let redis = Redis::start();
    let (mock, _d) = mock();
    let mut a = Node::start(&mock, &redis, "a", |c| {
        c["park"]["recent_register_ms"] = json!(1000);
    });
    let b = Node::start(&mock, &redis, "b", |_| {});
    a.register("alice", &token(1), 600);
    // Past recent_register_ms: the park pushes.
    std::thread::sleep(Duration::from_millis(1100));
    a.park("alice", 7);
    assert!(mock.wait_for_push(&token(1), PATIENCE).is_some());
    let path = "<sip:127.0.0.2:5060;lr;received=sip:192.0.2.10:50312%3Btransport%3Dtls>";
    b.register_via("alice", &token(1), 600, Some(path));
    let e = a.wait_event(|e| e.kind == EventKind::Resume && e.host_ref == 7);
    let relay = e.relay.expect("relayed through b");
    assert_eq!(relay.path, path);
    let contact = push_contact("alice", &token(1));
    let uri = contact.trim_start_matches('<').split('>').next().unwrap();
    assert_eq!(relay.uri, uri, "the whole Contact URI, token included");
    a.park("alice", 8);
    let e = a.wait_event(|e| e.kind == EventKind::Resume && e.host_ref == 8);
    assert_eq!(e.relay.map(|r| r.path).as_deref(), Some(path));
}

#[test]
fn an_unregister_on_a_removes_the_binding_on_b() {
    let redis = Redis::start();
    let (mock, _d) = mock();
    let a = Node::start(&mock, &redis, "a", |_| {});
    let b = Node::start(&mock, &redis, "b", |_| {});
    a.register("alice", &token(1), 600);
    a.register("alice", &token(2), 600);
    wait_until(
        "b knows both",
        || b.tokens("alice").len() == 2,
        || format!("{:?}", b.tokens("alice")),
    );
    a.register("alice", &token(1), 0);
    wait_until(
        "b forgot the first",
        || b.tokens("alice") == [token(2)],
        || format!("{:?}", b.tokens("alice")),
    );
    assert_eq!(
        redis.bindings("alice").into_values().collect::<Vec<_>>(),
        [token(2)]
    );
    // Contact: * on b
    let r = Registration {
        expires: 0,
        ..register("alice", "*", None)
    };
    b.engine.register(&r).unwrap();
    wait_until(
        "a forgot all",
        || a.tokens("alice").is_empty(),
        || format!("{:?}", a.tokens("alice")),
    );
    assert!(redis.bindings("alice").is_empty());
    // remove_device on b
    b.register("carol", &token(3), 600);
    wait_until(
        "a knows carol",
        || a.tokens("carol").len() == 1,
        String::new,
    );
    assert!(b.engine.remove_device("carol", &token(3)));
    wait_until(
        "a forgot carol",
        || a.tokens("carol").is_empty(),
        String::new,
    );
}

#[test]
fn two_parks_on_two_nodes_within_min_interval_push_once() {
    let redis = Redis::start();
    let (mock, _d) = mock();
    // No second push in the test's time: the window does not end.
    let slow = |c: &mut Value| c["push"] = json!({ "min_interval_ms": 600_000 });
    let mut a = Node::start(&mock, &redis, "a", slow);
    let mut b = Node::start(&mock, &redis, "b", slow);
    a.register("alice", &token(1), 600);
    wait_until("b knows her", || b.tokens("alice").len() == 1, String::new);
    a.park("alice", 1);
    a.wait_stats("a pushed", |s| s.pushes_sent == 1);
    b.park("alice", 2);
    b.wait_stats("b left it to a", |s| s.pushes_coalesced == 1);
    assert_eq!(b.engine.stats().pushes_sent, 0);
    assert!(mock.wait_for_push(&token(1), PATIENCE).is_some());
    assert_eq!(mock.push_count(), 1, "{:#?}", mock.pushes());
    // Her phone registers on b: both calls resume, each on its node.
    b.register("alice", &token(1), 600);
    b.wait_event(|e| e.kind == EventKind::Resume && e.host_ref == 2);
    a.wait_event(|e| e.kind == EventKind::Resume && e.host_ref == 1);
}

#[test]
fn nodes_work_without_redis_and_catch_up_when_it_returns() {
    let mut redis = Redis::start();
    let (mock, _d) = mock();
    let mut a = Node::start(&mock, &redis, "a", |_| {});
    let b = Node::start(&mock, &redis, "b", |_| {});
    a.register("alice", &token(1), 600);
    wait_until("b knows her", || b.tokens("alice").len() == 1, String::new);

    redis.kill();
    a.wait_stats("a disconnected", |s| s.cluster_connected == 0);
    b.wait_stats("b disconnected", |s| s.cluster_connected == 0);
    // Local bindings go on serving; the push is not held back by the claim.
    a.park("alice", 1);
    assert!(mock.wait_for_push(&token(1), PATIENCE).is_some());
    // REGISTERs are applied locally (never waiting for Redis); its wake is lost.
    b.register("bob", &token(2), 600);
    assert_eq!(b.tokens("bob"), [token(2)]);
    a.register("alice", &token(3), 600);
    a.wait_event(|e| e.kind == EventKind::Resume && e.host_ref == 1);
    a.wait_stats("a's failures", |s| s.cluster_failures >= 2);
    b.wait_stats("b's failures", |s| s.cluster_failures >= 1);
    a.wait_stats("a's wake lost", |s| s.cluster_wakes_dropped == 1);
    b.wait_stats("b's wake lost", |s| s.cluster_wakes_dropped == 1);

    // Back, empty (no persistence): both nodes write what they know.
    redis.restart();
    a.wait_stats("a reconnected", |s| s.cluster_connected == 1);
    b.wait_stats("b reconnected", |s| s.cluster_connected == 1);
    let tokens = |aor: &str| {
        let mut t: Vec<_> = redis.bindings(aor).into_values().collect();
        t.sort();
        t
    };
    wait_until(
        "bob's binding in Redis",
        || tokens("bob") == [token(2)],
        || format!("{:?}", tokens("bob")),
    );
    wait_until(
        "alice's in Redis",
        || tokens("alice") == [token(1), token(3)],
        || format!("{:?}", tokens("alice")),
    );
    wait_until("a knows bob", || a.tokens("bob") == [token(2)], String::new);
    wait_until(
        "b knows alice's new phone",
        || b.tokens("alice").len() == 2,
        String::new,
    );
}

#[test]
fn an_engine_without_redis_at_start_still_starts_and_stops() {
    let mut redis = Redis::start();
    redis.kill();
    let (mock, _d) = mock();
    let store = tempfile::tempdir().unwrap();
    let mut config = base_config(&mock, store.path());
    config["cluster"] = json!({ "redis_url": redis.url(), "node_id": "a" });
    let engine = Engine::new(EngineConfig::from_json(&config.to_string()).unwrap()).unwrap();
    let contact = push_contact("alice", &token(1));
    engine.register(&register("alice", &contact, None)).unwrap();
    assert_eq!(engine.stats().cluster_connected, 0);
    wait_until(
        "failure counted",
        || engine.stats().cluster_failures >= 1,
        || format!("{:#?}", engine.stats()),
    );
    drop(engine);
}

#[test]
fn a_hung_redis_holds_back_no_push_nor_shutdown() {
    let redis = Redis::start();
    let (mock, _d) = mock();
    let mut a = Node::start(&mock, &redis, "a", |_| {});
    a.register("alice", &token(1), 600);
    a.wait_stats("written", |s| s.cluster_bindings_synced >= 1);
    redis.freeze(true);
    // The claim gets no answer: the push goes out anyway.
    a.park("alice", 1);
    assert!(mock.wait_for_push(&token(1), PATIENCE).is_some());
    a.wait_stats("the claim failed", |s| s.cluster_failures >= 1);
    a.register("alice", &token(1), 600);
    a.wait_event(|e| e.kind == EventKind::Resume && e.host_ref == 1);
    // Dropping the engine does not wait for Redis either (bounded: it returns).
    drop(a);
    redis.freeze(false);
}

#[test]
fn a_wake_delivered_twice_resumes_once_and_a_node_ignores_its_own() {
    let redis = Redis::start();
    let (mock, _d) = mock();
    let mut a = Node::start(&mock, &redis, "a", |_| {});
    a.register("alice", &token(1), 600);
    a.park("alice", 3);
    assert!(mock.wait_for_push(&token(1), PATIENCE).is_some());
    let wake = |node: &str| {
        let msg = json!({
            "node": node, "aor": "alice", "device_key": token(1),
            "contact": "<sip:alice@192.0.2.99:5061;transport=tls>", "path": null
        });
        let _: i64 = redis::cmd("PUBLISH")
            .arg("pushpark:wake")
            .arg(msg.to_string())
            .query(&mut redis.conn())
            .unwrap();
    };
    wake("a");
    wake("c");
    wake("c");
    // A binding published after them: once a has it, it has handled the wakes.
    let marker = json!({
        "node": "c", "aor": "marker",
        "upsert": { "key": "m", "provider": "apns", "token": token(9),
            "topic": engine_common::TOPIC, "contact": "sip:m@h", "last_register_unix": 1 }
    });
    let _: i64 = redis::cmd("PUBLISH")
        .arg("pushpark:bindings")
        .arg(marker.to_string())
        .query(&mut redis.conn())
        .unwrap();
    wait_until(
        "the marker",
        || a.tokens("marker") == [token(9)],
        String::new,
    );
    assert_eq!(
        a.engine.stats().cluster_wakes_received,
        2,
        "its own ignored"
    );
    a.drain();
    assert_eq!(a.count(EventKind::Resume, 3), 1, "{:#?}", a.seen);
    assert_eq!(a.count(EventKind::AppendBranch, 3), 0, "{:#?}", a.seen);
    let resume = a.seen.iter().find(|e| e.kind == EventKind::Resume).unwrap();
    assert!(resume.contact.contains("192.0.2.99"), "{resume:?}");
}

#[test]
fn a_node_that_starts_loads_bindings_and_removals_made_while_it_was_down() {
    let redis = Redis::start();
    let (mock, _d) = mock();
    let a = Node::start(&mock, &redis, "a", |_| {});
    let b = Node::start(&mock, &redis, "b", |_| {});
    a.register("alice", &token(1), 600);
    a.register("alice", &token(2), 600);
    wait_until("b knows both", || b.tokens("alice").len() == 2, String::new);
    let b_store = b.store.path().to_path_buf();
    // Someone else's key under the prefix, of another type, does not stop the load.
    let _: () = redis::cmd("SET")
        .arg("pushpark:aor:not-a-hash")
        .arg("x")
        .query(&mut redis.conn())
        .unwrap();
    let b = {
        let Node { engine, store, .. } = b;
        drop(engine);
        store
    };
    // While b is down: one phone unregisters, another registers, and carol's too.
    a.register("alice", &token(1), 0);
    a.register("alice", &token(3), 600);
    a.register("carol", &token(4), 600);
    wait_until(
        "in Redis",
        || redis.bindings("carol").len() == 1,
        String::new,
    );
    let b = Node::start_on(b, &mock, &redis, "b", |_| {});
    assert_eq!(b.store.path(), b_store);
    assert_eq!(
        b.tokens("alice"),
        [token(2), token(3)],
        "the removed one dropped"
    );
    assert_eq!(b.tokens("carol"), [token(4)]);
    let mut in_redis: Vec<_> = redis.bindings("alice").into_values().collect();
    in_redis.sort();
    assert_eq!(in_redis, [token(2), token(3)], "not written back by b");
    // A restarted node with Redis emptied meanwhile writes what it has.
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    let b = b.restart(&mock, &redis, "b");
    wait_until(
        "b's bindings back in Redis",
        || redis.bindings("alice").len() == 2,
        String::new,
    );
    assert_eq!(b.tokens("carol"), [token(4)]);
}

/// Redis holds back write commands (HSET, PUBLISH, SET NX, ...) of every client for `ms`.
fn pause_writes(redis: &Redis, ms: u64) {
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(ms)
        .arg("WRITE")
        .query(&mut redis.conn())
        .unwrap();
}

/// A push claim is answered within its budget whatever the cluster thread does
/// meanwhile: here a binding write that Redis holds back (less than the 1 s a
/// write may take, so the node stays connected).
#[test]
fn a_push_does_not_wait_behind_a_binding_write() {
    let redis = Redis::start();
    let (mock, _d) = mock();
    let a = Node::start(&mock, &redis, "a", |_| {});
    a.register("alice", &token(1), 600);
    a.wait_stats("written", |s| s.cluster_bindings_synced >= 1);
    pause_writes(&redis, 900);
    a.register("bob", &token(2), 600);
    a.park("alice", 1);
    assert!(mock.wait_for_push(&token(1), PATIENCE).is_some());
    assert!(
        redis.bindings("bob").is_empty(),
        "pushed before bob's binding, held back, was written"
    );
    wait_until(
        "bob's binding written once Redis takes writes again",
        || redis.bindings("bob").len() == 1,
        String::new,
    );
    assert_eq!(a.engine.stats().cluster_connected, 1);
}

/// The ids of the clients connected to `redis` (CLIENT LIST).
fn client_ids(conn: &mut redis::Connection) -> Vec<u64> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(conn).unwrap();
    list.lines()
        .filter_map(|l| l.strip_prefix("id=")?.split(' ').next()?.parse().ok())
        .collect()
}

/// A claim Redis answers late (300 ms, past its 200 ms budget) is a failure and the
/// node pushes; it is no reason to drop the connection and load every binding again.
#[test]
fn a_slow_answer_to_a_claim_keeps_the_connection() {
    let redis = Redis::start();
    let (mock, _d) = mock();
    let a = Node::start(&mock, &redis, "a", |_| {});
    a.register("alice", &token(1), 600);
    a.wait_stats("written", |s| s.cluster_bindings_synced >= 1);
    let mut watcher = redis.conn();
    let before = client_ids(&mut watcher);
    pause_writes(&redis, 300);
    a.park("alice", 1);
    assert!(mock.wait_for_push(&token(1), PATIENCE).is_some());
    a.wait_stats("the late claim counted", |s| s.cluster_failures >= 1);
    a.register("bob", &token(2), 600);
    wait_until(
        "bob's binding written",
        || redis.bindings("bob").len() == 1,
        String::new,
    );
    let after = client_ids(&mut watcher);
    assert!(
        before.iter().all(|id| after.contains(id)),
        "the node reconnected: clients {before:?} then {after:?}"
    );
}

/// A binding change the cluster thread's full queue could not take is written (as the
/// local store has it) once the thread catches up: an unREGISTER dropped that way
/// used to stay on the other nodes, and come back on its own node at the next load.
#[test]
fn a_binding_change_dropped_on_a_full_queue_still_reaches_the_other_nodes() {
    let redis = Redis::start();
    let (mock, _d) = mock();
    let a = Node::start(&mock, &redis, "a", |_| {});
    let b = Node::start(&mock, &redis, "b", |_| {});
    a.register("bob", &token(2), 600);
    wait_until("b knows bob", || b.tokens("bob").len() == 1, String::new);
    // a's cluster thread waits on the frozen Redis while REGISTERs (a binding change
    // and a wake each) fill its queue of 65,536 jobs: bob's unREGISTER is dropped.
    redis.freeze(true);
    for _ in 0..33_000 {
        a.register("alice", &token(1), 600);
    }
    a.register("bob", &token(2), 0);
    assert!(
        a.engine.stats().cluster_wakes_dropped > 0,
        "the queue was full: wakes dropped"
    );
    redis.freeze(false);
    wait_until(
        "b forgot bob",
        || b.tokens("bob").is_empty(),
        || format!("{:#?}", a.engine.stats()),
    );
    a.wait_stats("a connected", |s| s.cluster_connected == 1);
    assert!(redis.bindings("bob").is_empty());
    assert!(a.tokens("bob").is_empty());
}

/// Publishes `msg` on the bindings channel, as a node "c" would.
fn publish_binding(redis: &Redis, msg: Value) {
    let _: i64 = redis::cmd("PUBLISH")
        .arg("pushpark:bindings")
        .arg(msg.to_string())
        .query(&mut redis.conn())
        .unwrap();
}

/// A binding published after the messages a test sent or caused: once a node has
/// it, it has handled them.
fn publish_marker(redis: &Redis, n: u32) {
    publish_binding(
        redis,
        json!({
            "node": "c", "aor": "marker",
            "upsert": { "key": n.to_string(), "provider": "apns", "token": token(100 + n),
                "topic": engine_common::TOPIC, "contact": "sip:m@h", "last_register_unix": 1 }
        }),
    );
}

fn contact_of(node: &Node, aor: &str) -> String {
    let devices = node.engine.devices(aor);
    devices
        .first()
        .map(|d| d.contact.clone())
        .unwrap_or_default()
}

/// One phone REGISTERs on a, then on b, and the two binding messages cross (Redis
/// holds both writes back until both nodes stored their own): each node keeps the
/// newer copy, b's (the later REGISTER, or of the same second from the greater node
/// id), instead of taking the other's.
#[test]
fn crossing_binding_messages_leave_both_nodes_with_the_newer_copy() {
    let redis = Redis::start();
    let (mock, _d) = mock();
    let a = Node::start(&mock, &redis, "a", |_| {});
    let b = Node::start(&mock, &redis, "b", |_| {});
    pause_writes(&redis, 300);
    for (node, host) in [(&a, "192.0.2.1"), (&b, "192.0.2.2")] {
        let contact = push_contact("alice", &token(1)).replace("192.0.2.10", host);
        node.engine
            .register(&register("alice", &contact, None))
            .unwrap();
    }
    // Held back by the pause too, and let through after both writes.
    publish_marker(&redis, 1);
    for n in [&a, &b] {
        wait_until("the marker", || n.tokens("marker").len() == 1, String::new);
    }
    assert!(
        contact_of(&a, "alice").contains("192.0.2.2"),
        "{}",
        contact_of(&a, "alice")
    );
    assert!(
        contact_of(&b, "alice").contains("192.0.2.2"),
        "{}",
        contact_of(&b, "alice")
    );
}

/// A removal or a binding older than the copy a node has is ignored.
#[test]
fn binding_messages_older_than_the_copy_here_are_ignored() {
    let redis = Redis::start();
    let (mock, _d) = mock();
    let a = Node::start(&mock, &redis, "a", |_| {});
    a.register("alice", &token(1), 600);
    let copy = contact_of(&a, "alice");
    publish_binding(
        &redis,
        json!({ "node": "c", "aor": "alice", "remove": [token(1)], "removed_unix": 1000 }),
    );
    publish_binding(
        &redis,
        json!({
            "node": "c", "aor": "alice",
            "upsert": { "key": token(1), "provider": "apns", "token": token(1),
                "topic": engine_common::TOPIC, "contact": "sip:old@h", "last_register_unix": 1000 }
        }),
    );
    publish_marker(&redis, 1);
    wait_until("the marker", || a.tokens("marker").len() == 1, String::new);
    assert_eq!(contact_of(&a, "alice"), copy);
}

/// APNs answers a's push 410 (Unregistered): the binding goes on b too, and from Redis.
#[test]
fn a_token_apns_reports_dead_to_a_is_forgotten_by_b() {
    let redis = Redis::start();
    let (mock, _d) = mock();
    let a = Node::start(&mock, &redis, "a", |_| {});
    let b = Node::start(&mock, &redis, "b", |_| {});
    b.register("alice", &token(1), 600);
    wait_until(
        "a knows her phone",
        || a.tokens("alice").len() == 1,
        String::new,
    );
    mock.script(&token(1), Scripted::Reject(Reason::Unregistered));
    a.park("alice", 1);
    a.wait_stats("the token dead", |s| s.devices_gone == 1);
    wait_until(
        "b forgot her phone",
        || b.tokens("alice").is_empty(),
        || format!("{:?}", b.tokens("alice")),
    );
    assert!(redis.bindings("alice").is_empty());
}

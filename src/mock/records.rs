//! What reached "the phone": every accepted push (APNs) or message (FCM), and
//! ways to be told of new ones.

use bytes::Bytes;
use crossbeam_channel::Receiver;
use http::HeaderMap;
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// One push the mock accepted (answered, or will answer, 200).
#[derive(Debug, Clone)]
pub struct ReceivedPush {
    /// The device token from the path (lowercase hex as sent).
    pub token: String,
    /// The `apns-id` answered: the client's, or one the mock generated.
    pub apns_id: uuid::Uuid,
    /// The request headers as received (the `authorization` header removed: it is a secret).
    pub headers: HeaderMap,
    pub payload: Bytes,
    pub arrived: Instant,
    pub arrived_at: SystemTime,
    /// Which TLS connection carried it (numbered from 1 in accept order).
    pub connection: u64,
}

impl ReceivedPush {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn topic(&self) -> Option<&str> {
        self.header("apns-topic")
    }

    /// The payload parsed as JSON (`Null` if it is not JSON).
    pub fn payload_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

/// What a mock records: something sent to one device token.
pub trait Record: Clone + Send + 'static {
    /// As the service compares tokens (APNs: lowercase hex).
    fn token(&self) -> &str;
}

impl Record for ReceivedPush {
    fn token(&self) -> &str {
        &self.token
    }
}

/// Told of every push; returns false once it has gone away.
type Subscriber<T> = Box<dyn FnMut(&T) -> bool + Send>;

struct Inner<T> {
    pushes: VecDeque<T>,
    /// The arrival number of `pushes[0]` (older ones were let go).
    first: u64,
    /// None: keep every push.
    limit: Option<usize>,
    /// Per token, the arrival number `wait_for` looks from.
    next_wanted: HashMap<String, u64>,
    subscribers: Vec<Subscriber<T>>,
}

pub struct Records<T> {
    inner: Mutex<Inner<T>>,
    arrived: Condvar,
}

impl<T> Default for Records<T> {
    fn default() -> Self {
        Records {
            inner: Mutex::new(Inner {
                pushes: VecDeque::new(),
                first: 0,
                limit: None,
                next_wanted: HashMap::new(),
                subscribers: Vec::new(),
            }),
            arrived: Condvar::new(),
        }
    }
}

impl<T: Record> Records<T> {
    pub fn add(&self, push: T) {
        let mut inner = self.inner.lock();
        inner.subscribers.retain_mut(|tell| tell(&push));
        inner.pushes.push_back(push);
        inner.trim();
        drop(inner);
        self.arrived.notify_all();
    }

    pub fn set_limit(&self, limit: Option<usize>) {
        let mut inner = self.inner.lock();
        inner.limit = limit;
        inner.trim();
    }

    pub fn all(&self) -> Vec<T> {
        self.inner.lock().pushes.iter().cloned().collect()
    }

    pub fn count(&self) -> usize {
        self.inner.lock().pushes.len()
    }

    pub fn subscribe(&self) -> Receiver<T> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.subscribe_with(move |push| tx.send(push.clone()).is_ok());
        rx
    }

    pub fn subscribe_with(&self, tell: impl FnMut(&T) -> bool + Send + 'static) {
        self.inner.lock().subscribers.push(Box::new(tell));
    }

    /// The oldest push for `token` not yet returned by an earlier call, waiting
    /// up to `timeout` for one to arrive.
    pub fn wait_for(&self, token: &str, timeout: Duration) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.inner.lock();
        loop {
            let from = inner.next_wanted.get(token).copied().unwrap_or(0);
            let skip = from.saturating_sub(inner.first) as usize;
            let found = inner
                .pushes
                .iter()
                .enumerate()
                .skip(skip)
                .find(|(_, p)| p.token() == token)
                .map(|(i, p)| (inner.first + i as u64, p.clone()));
            if let Some((number, push)) = found {
                inner.next_wanted.insert(token.to_owned(), number + 1);
                return Some(push);
            }
            if self.arrived.wait_until(&mut inner, deadline).timed_out() {
                return None;
            }
        }
    }
}

impl<T> Inner<T> {
    fn trim(&mut self) {
        let Some(limit) = self.limit else { return };
        while self.pushes.len() > limit {
            self.pushes.pop_front();
            self.first += 1;
        }
    }
}

/// What the mock saw, for tests to assert on (e.g. "the client reconnected").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MockStats {
    /// TLS + HTTP/2 connections established.
    pub connections: u64,
    /// Handshakes refused by the `refuse_tls` fault.
    pub tls_refused: u64,
    /// Streams (requests) opened by clients.
    pub streams: u64,
    /// Pushes (the mock FCM: messages) answered 200.
    pub accepted: u64,
    /// Pushes (messages) answered with an error status; the mock FCM's
    /// token requests count in neither.
    pub rejected: u64,
    /// Streams reset with REFUSED_STREAM: past a GOAWAY, over an acknowledged
    /// limit, or by the `refuse_streams` fault.
    pub refused_streams: u64,
    /// GOAWAYs sent by the `goaway_after_streams` fault or the idle timeout.
    pub goaways: u64,
    /// Connections closed by the `drop_connection_mid_stream` fault.
    pub dropped_connections: u64,
    /// Connections made silent by the `silence_mid_stream` fault.
    pub silenced_connections: u64,
}

#[derive(Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub tls_refused: AtomicU64,
    pub streams: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub refused_streams: AtomicU64,
    pub goaways: AtomicU64,
    pub dropped_connections: AtomicU64,
    pub silenced_connections: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MockStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MockStats {
            connections: get(&self.connections),
            tls_refused: get(&self.tls_refused),
            streams: get(&self.streams),
            accepted: get(&self.accepted),
            rejected: get(&self.rejected),
            refused_streams: get(&self.refused_streams),
            goaways: get(&self.goaways),
            dropped_connections: get(&self.dropped_connections),
            silenced_connections: get(&self.silenced_connections),
        }
    }
}

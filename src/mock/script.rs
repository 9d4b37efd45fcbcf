//! What tests make a mock do besides accepting: per-token scripted answers
//! and server-wide fault modes. Generic over the service's rejection (`R`):
//! APNs's `Reason`, FCM's `FcmError`.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;

use super::unix_ms;

/// A scripted answer for every push to one device token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scripted<R> {
    /// Answer every push with this reason. APNs's 410 answers carry the time
    /// of this call as `timestamp` (when the token "became invalid").
    Reject(R),
    /// Answer only the next `n` pushes with this reason, then accept again.
    RejectNext(R, u32),
    /// Forget the script: accept again.
    Accept,
}

/// Server-wide fault modes. `set_faults` replaces all of them at once;
/// `Faults::default()` is a healthy server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faults<R> {
    /// Answer every push this much later. The push counts as arrived (recorded,
    /// notified) on arrival, like Apple forwarding it before answering.
    pub delay: Duration,
    /// Answer pushes with this reason instead of processing them; meant for
    /// APNs's 500 `InternalServerError` and 503 `ServiceUnavailable`/`Shutdown`,
    /// FCM's 500 `INTERNAL` and 503 `UNAVAILABLE`.
    pub server_error: Option<R>,
    /// Only for the next N pushes (None: until changed).
    pub server_error_times: Option<u32>,
    /// Each connection processes this many streams, then sends GOAWAY
    /// (NO_ERROR, debug data `{"reason":"Shutdown"}`) whose last-stream-id is
    /// the last one processed; later streams are refused, unrecorded.
    pub goaway_after_streams: Option<u32>,
    /// With `goaway_after_streams`: the GOAWAY waits until this many more
    /// streams arrived, which it leaves unprocessed (above its last-stream-id,
    /// then reset REFUSED_STREAM), like a server shutting down with requests
    /// queued. Unrecorded.
    pub goaway_unprocessed: u32,
    /// Reset each of the next N streams with REFUSED_STREAM, unprocessed and
    /// unrecorded, like a server shedding load (RFC 9113 §8.7).
    pub refuse_streams: u32,
    /// Close the TCP connection, unanswered and unrecorded, when each of the
    /// next N pushes arrives.
    pub drop_connection_mid_stream: u32,
    /// When each of the next N pushes arrives, the connection carrying it goes
    /// silent, like a hung server: it stops reading and answering (no answers,
    /// no PING ACKs) but keeps the TCP connection open until the client closes
    /// it. That push and any later one on the connection go unrecorded.
    pub silence_mid_stream: u32,
    /// Announce this SETTINGS_MAX_CONCURRENT_STREAMS (Apple drops it to 1) on
    /// live connections at once and on new ones; None: the normal 1000.
    pub max_concurrent_streams: Option<u32>,
    /// Fail every TLS handshake with a handshake_failure alert.
    pub refuse_tls: bool,
    /// What Apple does (Open Radar 27870881): after a rejected push, lower the
    /// connection's MAX_CONCURRENT_STREAMS to 1; after the next accepted one,
    /// raise it back.
    pub throttle_after_rejection: bool,
    /// APNs only: answer 429 TooManyProviderTokenUpdates when a connection
    /// switches to a new provider token issued (`iat`) less than 20 minutes
    /// after its last.
    pub limit_token_updates: bool,
}

// Not derived: that would want `R: Default`, and a healthy server has no reason.
impl<R> Default for Faults<R> {
    fn default() -> Self {
        Faults {
            delay: Duration::ZERO,
            server_error: None,
            server_error_times: None,
            goaway_after_streams: None,
            goaway_unprocessed: 0,
            refuse_streams: 0,
            drop_connection_mid_stream: 0,
            silence_mid_stream: 0,
            max_concurrent_streams: None,
            refuse_tls: false,
            throttle_after_rejection: false,
            limit_token_updates: false,
        }
    }
}

/// The faults that apply to one stream, decided when it arrives.
pub struct StreamFaults<R> {
    pub refuse: bool,
    pub drop_connection: bool,
    pub go_silent: bool,
    pub server_error: Option<R>,
    pub delay: Duration,
    pub goaway_after_streams: Option<u32>,
    pub goaway_unprocessed: u32,
    pub throttle_after_rejection: bool,
    pub limit_token_updates: bool,
}

struct Script<R> {
    reason: R,
    remaining: Option<u32>,
    since_ms: u64,
}

pub struct Behaviour<R> {
    scripts: Mutex<HashMap<String, Script<R>>>,
    faults: Mutex<Faults<R>>,
    stream_limit: watch::Sender<Option<u32>>,
}

impl<R: Copy> Behaviour<R> {
    pub fn new() -> Self {
        Behaviour {
            scripts: Mutex::new(HashMap::new()),
            faults: Mutex::new(Faults::default()),
            stream_limit: watch::Sender::new(None),
        }
    }

    /// `token` as the service compares them (APNs: lowercase hex).
    pub fn script(&self, token: String, outcome: Scripted<R>) {
        let mut scripts = self.scripts.lock();
        let (reason, remaining) = match outcome {
            Scripted::Accept => {
                scripts.remove(&token);
                return;
            }
            Scripted::Reject(reason) => (reason, None),
            Scripted::RejectNext(reason, n) => (reason, Some(n)),
        };
        scripts.insert(
            token,
            Script {
                reason,
                remaining,
                since_ms: unix_ms(),
            },
        );
    }

    /// The scripted rejection for this push, if any, with the 410 timestamp.
    pub fn scripted(&self, token: &str) -> Option<(R, u64)> {
        let mut scripts = self.scripts.lock();
        if scripts.is_empty() {
            return None;
        }
        let script = scripts.get_mut(token)?;
        let answer = (script.reason, script.since_ms);
        match &mut script.remaining {
            Some(0) => {
                scripts.remove(token);
                return None;
            }
            Some(1) => {
                scripts.remove(token);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(answer)
    }

    pub fn set_faults(&self, faults: Faults<R>) {
        let limit = faults.max_concurrent_streams;
        self.stream_limit.send_if_modified(|current| {
            let changed = *current != limit;
            *current = limit;
            changed
        });
        *self.faults.lock() = faults;
    }

    pub fn refuse_tls(&self) -> bool {
        self.faults.lock().refuse_tls
    }

    /// The stream limit connections announce when not throttled.
    pub fn normal_stream_limit(&self) -> Option<u32> {
        *self.stream_limit.borrow()
    }

    /// Tells each connection when the announced stream limit changes.
    pub fn stream_limit(&self) -> watch::Receiver<Option<u32>> {
        self.stream_limit.subscribe()
    }

    /// Decides the faults for an arriving stream, counting down "next N" ones.
    pub fn next_stream(&self) -> StreamFaults<R> {
        let mut f = self.faults.lock();
        let refuse = f.refuse_streams > 0;
        if refuse {
            f.refuse_streams -= 1;
        }
        let drop_connection = !refuse && f.drop_connection_mid_stream > 0;
        let go_silent = !drop_connection && f.silence_mid_stream > 0;
        let server_error = if drop_connection {
            f.drop_connection_mid_stream -= 1;
            None
        } else if go_silent {
            f.silence_mid_stream -= 1;
            None
        } else {
            match (f.server_error, f.server_error_times) {
                (Some(_), Some(0)) | (None, _) => None,
                (Some(reason), Some(n)) => {
                    f.server_error_times = Some(n - 1);
                    Some(reason)
                }
                (Some(reason), None) => Some(reason),
            }
        };
        StreamFaults {
            refuse,
            drop_connection,
            go_silent,
            server_error,
            delay: f.delay,
            goaway_after_streams: f.goaway_after_streams,
            goaway_unprocessed: f.goaway_unprocessed,
            throttle_after_rejection: f.throttle_after_rejection,
            limit_token_updates: f.limit_token_updates,
        }
    }
}

//! `ApnsClient`: accepts pushes without blocking and delivers each on the
//! client's own runtime, with retries, until it succeeds, fails for good, is
//! lost with its connection, or its deadline passes.

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::config::{Auth, Backoff, ClientConfig, ClientError};
use super::connection::{error_chain, Body, Dispatched, Pool, Target, TokenAuth};
use super::jwt::{JwtSigner, ProviderToken};
use super::metrics::{Counters, Metrics};
use super::outcome::{classify, Answer, Outcome, PushResult, MAX_ERROR_BODY};
use super::push::{Push, SubmitError};
use super::reason::Reason;
use super::tls;

static APNS_PUSH_TYPE: HeaderName = HeaderName::from_static("apns-push-type");
static APNS_TOPIC: HeaderName = HeaderName::from_static("apns-topic");
static APNS_PRIORITY: HeaderName = HeaderName::from_static("apns-priority");
static APNS_EXPIRATION: HeaderName = HeaderName::from_static("apns-expiration");
static APNS_ID: HeaderName = HeaderName::from_static("apns-id");
static APNS_COLLAPSE_ID: HeaderName = HeaderName::from_static("apns-collapse-id");

thread_local! {
    /// Set on the client's own threads: dropping the client there must not join them.
    static ON_CLIENT_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// An APNs HTTP/2 client with its own runtime thread(s) and connection pool.
pub struct ApnsClient {
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    pool: Arc<Pool>,
    counters: Arc<Counters>,
    authority: Authority,
    retry: Backoff,
    pending: AtomicUsize,
    max_pending: usize,
    closing: AtomicBool,
}

impl ApnsClient {
    /// What `new` checks of the credentials and CA, without starting a thread
    /// or connecting: a forking host checks before it forks the engine's process.
    pub fn check(cfg: &ClientConfig) -> Result<(), ClientError> {
        if let Auth::Token {
            key_pem,
            key_id,
            team_id,
        } = &cfg.auth
        {
            JwtSigner::from_p8_pem(key_pem, key_id, team_id)?;
        }
        tls::client_config(cfg.ca_file.as_deref(), &cfg.auth).map(drop)
    }

    /// Checks the credentials and CA, starts the runtime and begins connecting.
    pub fn new(cfg: ClientConfig) -> Result<ApnsClient, ClientError> {
        for (name, value) in [
            ("worker_threads", cfg.worker_threads),
            ("connections", cfg.connections),
            ("max_pending", cfg.max_pending),
        ] {
            if value == 0 {
                return Err(ClientError::Config(format!("{name} must be at least 1")));
            }
        }
        let auth = match &cfg.auth {
            Auth::Token {
                key_pem,
                key_id,
                team_id,
            } => {
                let signer = JwtSigner::from_p8_pem(key_pem, key_id, team_id)?;
                let token = ProviderToken::new(signer, cfg.clock.clone());
                Some(TokenAuth::new(token, cfg.clock.clone()))
            }
            Auth::Certificate { .. } => None,
        };
        let tls = tls::client_config(cfg.ca_file.as_deref(), &cfg.auth)?;
        let host = cfg.endpoint.host().to_string();
        let display = cfg.endpoint.to_string();
        let server_name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| ClientError::Config(format!("{host:?} is not a valid host name")))?;
        let authority = Authority::try_from(display.as_str())
            .map_err(|_| ClientError::Config(format!("{display:?} is not a valid authority")))?;

        let mut builder = if cfg.worker_threads == 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(cfg.worker_threads);
            b
        };
        let runtime = builder
            .enable_all()
            .thread_name("pushpark-apns")
            .on_thread_start(|| {
                crate::sigpipe::block();
                ON_CLIENT_THREAD.with(|c| c.set(true));
            })
            .build()
            .map_err(|e| ClientError::Runtime(e.to_string()))?;
        let handle = runtime.handle().clone();

        let counters = Arc::new(Counters::default());
        let target = Target {
            display,
            host,
            port: cfg.endpoint.port(),
            server_name,
            tls: tls.into(),
            connect_timeout: cfg.connect_timeout,
            ping_interval: cfg.ping_interval,
            ping_timeout: cfg.ping_timeout,
            reconnect: cfg.reconnect,
        };
        let pool = Arc::new(Pool::new(target, auth, counters.clone(), cfg.connections));
        for idx in 0..cfg.connections {
            handle.spawn(pool.clone().maintain(idx));
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("pushpark-apns".into())
            .spawn(move || {
                crate::sigpipe::block();
                ON_CLIENT_THREAD.with(|c| c.set(true));
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Dropping the runtime drops every unfinished push task; each reports ShutDown.
                drop(runtime);
            })
            .map_err(|e| ClientError::Runtime(e.to_string()))?;

        Ok(ApnsClient {
            shared: Arc::new(Shared {
                pool,
                counters,
                authority,
                retry: cfg.retry,
                pending: AtomicUsize::new(0),
                max_pending: cfg.max_pending,
                closing: AtomicBool::new(false),
            }),
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Queues a push and returns its `apns-id`. Never blocks. `done` is called
    /// exactly once, on a client thread, with the final result; it must not block.
    /// When `submit` returns an error, `done` is dropped uncalled.
    pub fn submit(
        &self,
        push: Push,
        deadline: Instant,
        done: Box<dyn FnOnce(PushResult) + Send>,
    ) -> Result<Uuid, SubmitError> {
        let s = &self.shared;
        if s.closing.load(Ordering::Acquire) {
            return Err(SubmitError::ShutDown);
        }
        push.validate()?;
        let apns_id = Uuid::new_v4();
        let request = Prepared::new(&s.authority, push, apns_id)?;
        if s.pending.fetch_add(1, Ordering::AcqRel) >= s.max_pending {
            s.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(SubmitError::QueueFull);
        }
        let report = Report {
            shared: s.clone(),
            apns_id,
            started: Instant::now(),
            attempts: 0,
            replays: 0,
            unprocessed: false,
            last_error: None,
            done: Some(done),
        };
        // The first attempt starts here, not in the task: the request reaches the
        // connection one scheduler turn earlier, and APNs starts on it sooner.
        let first = s.pool.dispatch(&|bearer| request.request(bearer));
        let job = Box::new(Job {
            shared: s.clone(),
            request,
            deadline,
            report,
        });
        self.handle.spawn(deliver(job, first));
        Ok(apns_id)
    }

    /// A snapshot of the counters (also `Serialize` for JSON).
    pub fn metrics(&self) -> Metrics {
        let s = &self.shared;
        let refreshes = s.pool.auth.as_ref().map_or(0, |a| a.token.refreshes());
        s.counters
            .snapshot(s.pending.load(Ordering::Relaxed) as u64, refreshes)
    }

    /// Blocks until a connection is open; fails with the reason once every
    /// connection's first attempt failed, or after `timeout`. For start-up checks
    /// (the CLI); never call it from a `done` callback.
    pub fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let pool = self.shared.pool.clone();
        self.handle.spawn(async move {
            let _ = tx.send(pool.wait_connected(timeout).await);
        });
        match rx.recv() {
            Ok(result) => result.map_err(ClientError::Connect),
            Err(_) => Err(ClientError::Connect("the client shut down".into())),
        }
    }
}

impl Drop for ApnsClient {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let thread = self.thread.take();
        // On a client thread (from a callback) joining would wait for ourselves.
        if !ON_CLIENT_THREAD.with(|c| c.get()) {
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
    }
}

/// A push turned into header values and body once; each attempt only clones them.
struct Prepared {
    uri: Uri,
    push_type: HeaderValue,
    topic: HeaderValue,
    priority: HeaderValue,
    apns_id: HeaderValue,
    expiration: Option<HeaderValue>,
    collapse_id: Option<HeaderValue>,
    body: Bytes,
}

impl Prepared {
    fn new(authority: &Authority, push: Push, apns_id: Uuid) -> Result<Prepared, SubmitError> {
        let invalid = |what: &str| SubmitError::Invalid(format!("{what} is not a valid header"));
        let path =
            PathAndQuery::from_maybe_shared(Bytes::from(format!("/3/device/{}", push.token)))
                .map_err(|_| invalid("the device token"))?;
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTPS);
        parts.authority = Some(authority.clone());
        parts.path_and_query = Some(path);
        let uri = Uri::from_parts(parts).map_err(|_| invalid("the device token"))?;
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let mut apns_id =
            HeaderValue::from_bytes(apns_id.hyphenated().encode_lower(&mut id).as_bytes())
                .expect("a UUID is a valid header");
        // Never HPACK-indexed: a value used once would only evict the headers
        // every request repeats (topic, push type, ...) from the shared table.
        apns_id.set_sensitive(true);
        Ok(Prepared {
            uri,
            push_type: HeaderValue::from_static(push.push_type.as_str()),
            topic: HeaderValue::from_maybe_shared(Bytes::from(push.topic))
                .map_err(|_| invalid("the topic"))?,
            priority: HeaderValue::from_static(match push.priority {
                10 => "10",
                5 => "5",
                _ => "1",
            }),
            apns_id,
            expiration: push.expiration.map(HeaderValue::from),
            collapse_id: push
                .collapse_id
                .map(|c| HeaderValue::from_maybe_shared(Bytes::from(c)))
                .transpose()
                .map_err(|_| invalid("the collapse id"))?,
            body: Bytes::from(push.payload),
        })
    }

    fn request(&self, bearer: Option<HeaderValue>) -> Request<Body> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        let h = req.headers_mut();
        h.reserve(8);
        h.insert(APNS_PUSH_TYPE.clone(), self.push_type.clone());
        h.insert(APNS_TOPIC.clone(), self.topic.clone());
        h.insert(APNS_PRIORITY.clone(), self.priority.clone());
        h.insert(APNS_ID.clone(), self.apns_id.clone());
        if let Some(v) = &self.expiration {
            h.insert(APNS_EXPIRATION.clone(), v.clone());
        }
        if let Some(v) = &self.collapse_id {
            h.insert(APNS_COLLAPSE_ID.clone(), v.clone());
        }
        if let Some(v) = bearer {
            h.insert(AUTHORIZATION, v);
        }
        req
    }
}

/// Calls `done` exactly once: with the outcome, or with ShutDown if the task is
/// dropped unfinished (the runtime stopping).
struct Report {
    shared: Arc<Shared>,
    apns_id: Uuid,
    started: Instant,
    attempts: u32,
    replays: u32,
    /// The last attempt certainly went unprocessed: the next one is a replay.
    unprocessed: bool,
    last_error: Option<String>,
    done: Option<Box<dyn FnOnce(PushResult) + Send>>,
}

impl Report {
    fn finish(&mut self, outcome: Outcome) {
        let Some(done) = self.done.take() else {
            return;
        };
        let latency = self.started.elapsed();
        let c = &self.shared.counters;
        match &outcome {
            Outcome::Delivered => c.delivered(latency),
            Outcome::Rejected { reason, .. } => c.rejected(*reason),
            Outcome::Unexpected { .. } => Counters::inc(&c.unexpected),
            Outcome::Unconfirmed { .. } => Counters::inc(&c.unconfirmed),
            Outcome::TimedOut => Counters::inc(&c.timed_out),
            Outcome::ShutDown => Counters::inc(&c.shut_down),
        }
        self.shared.pending.fetch_sub(1, Ordering::AcqRel);
        let last_error = match outcome {
            Outcome::Delivered => None,
            _ => self.last_error.take(),
        };
        done(PushResult {
            apns_id: self.apns_id,
            outcome,
            attempts: self.attempts,
            replays: self.replays,
            latency,
            last_error,
        });
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        self.finish(Outcome::ShutDown);
    }
}

/// One push's state, boxed so the task's future stays small: async fns keep
/// their arguments twice, and tasks over ~1 KiB miss the allocator's fast path.
struct Job {
    shared: Arc<Shared>,
    request: Prepared,
    deadline: Instant,
    report: Report,
}

async fn deliver<F: Future<Output = hyper::Result<Response<Incoming>>>>(
    mut job: Box<Job>,
    first: Option<Dispatched<F>>,
) {
    let job = &mut *job;
    let deadline = tokio::time::Instant::from_std(job.deadline);
    // Past the deadline the attempt is dropped, which resets its stream.
    let outcome = tokio::time::timeout_at(
        deadline,
        attempts(&job.shared, &job.request, &mut job.report, first),
    )
    .await
    .unwrap_or_else(|_| {
        // Say why when no attempt failed: the server never answered.
        let why = &mut job.report.last_error;
        why.get_or_insert_with(|| "no answer from APNs before the deadline".into());
        Outcome::TimedOut
    });
    job.report.finish(outcome);
}

/// Sends until the answer is final. Requests the server never processed go
/// out again: at once after a GOAWAY or when never written, after a short
/// backoff when refused; answers of 429 and 5xx after the retry backoff. A
/// request that may have been processed (written, then its connection lost)
/// never goes out again: it ends `Unconfirmed`.
async fn attempts<F: Future<Output = hyper::Result<Response<Incoming>>>>(
    s: &Shared,
    request: &Prepared,
    report: &mut Report,
    first: Option<Dispatched<F>>,
) -> Outcome {
    let mut failures = Failures::default();
    if let Some(sent) = first {
        if let Some(outcome) = attempt(s, report, sent, &mut failures).await {
            return outcome;
        }
    }
    loop {
        let Some(sent) = s.pool.dispatch(&|bearer| request.request(bearer)) else {
            if let Some(why) = s.pool.down_reason() {
                report.last_error = Some(why.to_string());
            }
            s.pool.wait_ready().await;
            continue;
        };
        if let Some(outcome) = attempt(s, report, sent, &mut failures).await {
            return outcome;
        }
    }
}

/// Failed attempts so far, by kind: each kind has its own backoff.
#[derive(Default)]
struct Failures {
    retried: u32,
    refused: u32,
}

/// Waits before a refused stream goes out again. Not `retry`, whose first wait
/// is half a second: a refusal is most often a stream that crossed a lowered
/// MAX_CONCURRENT_STREAMS, over within a round trip, so the first resend comes
/// within milliseconds; the wait only grows while the server keeps refusing
/// (shedding load), so it is not sent a stream per round trip.
const REFUSED_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(10),
    max: Duration::from_secs(1),
};

/// Awaits one sent request: the final outcome, or `None` to send it again
/// (after a backoff unless the server certainly did not see it, or said it
/// did not deliver it).
async fn attempt<F: Future<Output = hyper::Result<Response<Incoming>>>>(
    s: &Shared,
    report: &mut Report,
    (response, conn, generation): Dispatched<F>,
    failures: &mut Failures,
) -> Option<Outcome> {
    report.attempts += 1;
    Counters::inc(&s.counters.sent);
    if report.attempts > 1 {
        Counters::inc(&s.counters.retried);
    }
    if std::mem::take(&mut report.unprocessed) {
        report.replays += 1;
        Counters::inc(&s.counters.replayed);
    }
    let answer = match response.await {
        Ok(resp) if resp.status() == StatusCode::OK => return Some(Outcome::Delivered),
        // Boxed, like the retry wait: rare paths must not grow every push's task.
        Ok(resp) => Box::pin(read_answer(resp)).await,
        // The client is being dropped: the runtime's shutdown drops the connections,
        // and a push task still polled meanwhile sees its connection go.
        Err(_) if s.closing.load(Ordering::Acquire) => return Some(Outcome::ShutDown),
        Err(e) => match unprocessed(&e) {
            // Written, and maybe processed: APNs may have delivered it. Sent again it
            // could wake the phone twice (what a connection lost mid-burst did to every
            // push in flight), so it ends here.
            None => {
                let why = format!("connection lost before the answer: {}", error_chain(&e));
                log::debug!("APNs push {} unconfirmed: {why}", report.apns_id);
                report.last_error = Some(why.clone());
                return Some(Outcome::Unconfirmed { why });
            }
            Some(why) => {
                report.unprocessed = true;
                match why {
                    Unprocessed::GoAway => {
                        let why = format!("GOAWAY from the server: {}", error_chain(&e));
                        s.pool.retire(conn, &why);
                        report.last_error = Some(why);
                    }
                    Unprocessed::NotSent => {
                        s.pool.retire(conn, "the connection closed");
                        report.last_error = Some(error_chain(&e));
                    }
                    Unprocessed::Refused => {
                        failures.refused += 1;
                        report.last_error = Some("stream refused by the server".into());
                        let wait = REFUSED_BACKOFF.delay(failures.refused);
                        Box::pin(tokio::time::sleep(wait)).await;
                    }
                }
                return None;
            }
        },
    };
    match answer {
        Answer::Final(outcome) => Some(outcome),
        Answer::ExpiredToken => {
            let auth = s.pool.auth.as_ref();
            if let (Some(auth), Some(generation)) = (auth, generation) {
                if auth.expired(generation) {
                    report.last_error = Some("403 ExpiredProviderToken".into());
                    return None;
                }
            }
            Some(Outcome::Rejected {
                status: 403,
                reason: Reason::ExpiredProviderToken,
                token_dead: false,
                timestamp: None,
            })
        }
        Answer::Retry(why) => {
            failures.retried += 1;
            log::debug!("APNs push {} will be retried: {why}", report.apns_id);
            report.last_error = Some(why);
            Box::pin(tokio::time::sleep(s.retry.delay(failures.retried))).await;
            None
        }
    }
}

async fn read_answer(resp: Response<Incoming>) -> Answer {
    let status = resp.status().as_u16();
    match Limited::new(resp.into_body(), MAX_ERROR_BODY)
        .collect()
        .await
    {
        Ok(body) => classify(status, &body.to_bytes()),
        // The status is Apple's answer: not 200, so not delivered, and a push is
        // resent only when that status alone says so (429, 5xx).
        Err(e) => match classify(status, b"") {
            Answer::Retry(_) => Answer::Retry(format!("{status} with an unreadable body: {e}")),
            _ => Answer::Final(Outcome::Unexpected {
                status,
                body: format!("unreadable body: {e}"),
            }),
        },
    }
}

enum Unprocessed {
    /// Above a GOAWAY's last-stream-id, or started after the GOAWAY
    /// (RFC 9113 §6.8: the server did not and will not process it).
    GoAway,
    /// REFUSED_STREAM: the server did not look at it (RFC 9113 §8.7).
    Refused,
    /// Never written: the connection closed first.
    NotSent,
}

/// Whether the server certainly did not process a failed request, so sending it
/// again cannot deliver it twice.
///
/// In hyper 1 over HTTP/2, `is_canceled` only means the request never left
/// hyper's queue for h2 (the connection was closed, or its task ended with the
/// request still queued). Once h2 took it, any failure is an h2 error: streams
/// at or below a GOAWAY's last-stream-id are never failed by the GOAWAY itself,
/// and a connection that then drops fails them as I/O errors: unconfirmed, not
/// replayed.
fn unprocessed(e: &hyper::Error) -> Option<Unprocessed> {
    if e.is_canceled() {
        return Some(Unprocessed::NotSent);
    }
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.is_go_away() && h2.is_remote() {
                return Some(Unprocessed::GoAway);
            }
            if h2.is_reset() && h2.is_remote() && h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return Some(Unprocessed::Refused);
            }
            return None;
        }
        source = err.source();
    }
    None
}

//! `Client`: accepts pushes without blocking and delivers each on the client's
//! own runtime, with retries, until it succeeds, fails for good, is lost with
//! its connection, or its deadline passes.

use h2::RecvStream;
use http::{Response, StatusCode};
use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::config::{Backoff, ClientError, Settings};
use super::connection::{error_chain, read_body, Dispatched, Pool, Target, Unready};
use super::credentials::Credentials;
use super::metrics::{Counters, Metrics};
use super::outcome::{Outcome, PushResult};
use super::service::{Answer, Service, SubmitError};
use super::tls;

/// Error bodies longer than this are not the service's JSON; the answer is
/// classified from its status alone.
pub const MAX_ERROR_BODY: usize = 2048;

thread_local! {
    /// Set on the client's own threads: dropping the client there must not join them.
    static ON_CLIENT_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// An HTTP/2 client of one push service, with its own runtime thread(s) and
/// connection pool. `S` makes the requests and reads the answers; `C` says what
/// their `authorization` header carries.
pub struct Client<S: Service, C: Credentials> {
    shared: Arc<Shared<S, C>>,
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared<S: Service, C: Credentials> {
    service: S,
    pool: Arc<Pool<C>>,
    counters: Arc<Counters>,
    retry: Backoff,
    pending: AtomicUsize,
    max_pending: usize,
    closing: AtomicBool,
}

/// The TLS settings `start` would use: for checking them without starting.
pub fn check_tls(settings: &Settings) -> Result<(), ClientError> {
    tls::client_config(
        settings.ca_file.as_deref(),
        settings.client_certificate.as_ref(),
    )
    .map(drop)
}

impl<S: Service, C: Credentials> Client<S, C> {
    /// Checks the settings and CA, starts the runtime and begins connecting.
    pub fn start(service: S, credentials: C, settings: &Settings) -> Result<Self, ClientError> {
        for (name, value) in [
            ("worker_threads", settings.worker_threads),
            ("connections", settings.connections),
            ("max_pending", settings.max_pending),
        ] {
            if value == 0 {
                return Err(ClientError::Config(format!("{name} must be at least 1")));
            }
        }
        let tls = tls::client_config(
            settings.ca_file.as_deref(),
            settings.client_certificate.as_ref(),
        )?;
        let host = settings.host.clone();
        let display = if host.contains(':') {
            format!("[{host}]:{}", settings.port)
        } else {
            format!("{host}:{}", settings.port)
        };
        let server_name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| ClientError::Config(format!("{host:?} is not a valid host name")))?;

        let mut builder = if settings.worker_threads == 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(settings.worker_threads);
            b
        };
        let thread_name = format!("pushpark-{}", S::NAME.to_ascii_lowercase());
        let runtime = builder
            .enable_all()
            .thread_name(&thread_name)
            .on_thread_start(|| {
                crate::sigpipe::block();
                ON_CLIENT_THREAD.with(|c| c.set(true));
            })
            .build()
            .map_err(|e| ClientError::Runtime {
                service: S::NAME,
                why: e.to_string(),
            })?;
        let handle = runtime.handle().clone();

        let counters = Arc::new(Counters::new::<S::Reason>());
        let target = Target {
            service: S::NAME,
            display,
            host,
            port: settings.port,
            server_name,
            tls: tls.into(),
            connect_timeout: settings.connect_timeout,
            ping_interval: settings.ping_interval,
            ping_timeout: settings.ping_timeout,
            reconnect: settings.reconnect,
        };
        let pool = Arc::new(Pool::new(
            target,
            credentials,
            counters.clone(),
            settings.connections,
        ));
        for idx in 0..settings.connections {
            handle.spawn(pool.clone().maintain(idx));
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                crate::sigpipe::block();
                ON_CLIENT_THREAD.with(|c| c.set(true));
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Dropping the runtime drops every unfinished push task; each reports ShutDown.
                drop(runtime);
            })
            .map_err(|e| ClientError::Runtime {
                service: S::NAME,
                why: e.to_string(),
            })?;

        Ok(Client {
            shared: Arc::new(Shared {
                service,
                pool,
                counters,
                retry: settings.retry,
                pending: AtomicUsize::new(0),
                max_pending: settings.max_pending,
                closing: AtomicBool::new(false),
            }),
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `task` on the client's runtime until it ends or the client is dropped
    /// (e.g. what renews the credentials).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(task);
    }

    /// Queues a push under a new id and returns the id. Never blocks. `done` is
    /// called exactly once, on a client thread, with the final result; it must not
    /// block. When `submit` returns an error, `done` is dropped uncalled.
    pub fn submit(
        &self,
        push: S::Push,
        deadline: Instant,
        done: Done<S::Reason>,
    ) -> Result<Uuid, SubmitError> {
        let id = Uuid::new_v4();
        self.submit_as(id, push, deadline, done).map(|()| id)
    }

    /// `submit` under the caller's id (APNs sends it as the `apns-id`), so that the
    /// caller's logs and the service's delivery log name the push alike.
    pub fn submit_as(
        &self,
        id: Uuid,
        push: S::Push,
        deadline: Instant,
        done: Done<S::Reason>,
    ) -> Result<(), SubmitError> {
        let s = &self.shared;
        if s.closing.load(Ordering::Acquire) {
            return Err(SubmitError::ShutDown);
        }
        let request = s.service.prepare(push, id)?;
        if s.pending.fetch_add(1, Ordering::AcqRel) >= s.max_pending {
            s.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(SubmitError::QueueFull);
        }
        let report = Report {
            shared: s.clone(),
            id,
            started: Instant::now(),
            attempts: 0,
            replays: 0,
            unprocessed: false,
            last_error: None,
            done: Some(done),
        };
        // The first attempt starts here, not in the task: the request reaches the
        // connection one scheduler turn earlier, and the server starts on it sooner.
        let first = s
            .pool
            .dispatch(&|authorization| s.service.request(&request, authorization))
            .ok();
        let job = Box::new(Job {
            shared: s.clone(),
            request,
            deadline,
            report,
        });
        self.handle.spawn(deliver(job, first));
        Ok(())
    }

    /// A snapshot of the counters (also `Serialize` for JSON).
    pub fn metrics(&self) -> Metrics {
        let s = &self.shared;
        let refreshes = s.pool.credentials.refreshes();
        s.counters
            .snapshot::<S::Reason>(s.pending.load(Ordering::Relaxed) as u64, refreshes)
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

impl<S: Service, C: Credentials> Drop for Client<S, C> {
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

/// What `submit` calls with a push's result.
pub type Done<R> = Box<dyn FnOnce(PushResult<R>) + Send>;

/// Calls `done` exactly once: with the outcome, or with ShutDown if the task is
/// dropped unfinished (the runtime stopping).
struct Report<S: Service, C: Credentials> {
    shared: Arc<Shared<S, C>>,
    id: Uuid,
    started: Instant,
    attempts: u32,
    replays: u32,
    /// The last attempt certainly went unprocessed: the next one is a replay.
    unprocessed: bool,
    last_error: Option<String>,
    done: Option<Done<S::Reason>>,
}

impl<S: Service, C: Credentials> Report<S, C> {
    fn finish(&mut self, outcome: Outcome<S::Reason>) {
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
            apns_id: self.id,
            outcome,
            attempts: self.attempts,
            replays: self.replays,
            latency,
            last_error,
        });
    }
}

impl<S: Service, C: Credentials> Drop for Report<S, C> {
    fn drop(&mut self) {
        self.finish(Outcome::ShutDown);
    }
}

/// One push's state, boxed so the task's future stays small: async fns keep
/// their arguments twice, and tasks over ~1 KiB miss the allocator's fast path.
struct Job<S: Service, C: Credentials> {
    shared: Arc<Shared<S, C>>,
    request: S::Prepared,
    deadline: Instant,
    report: Report<S, C>,
}

async fn deliver<S: Service, C: Credentials>(mut job: Box<Job<S, C>>, first: Option<Dispatched>) {
    let job = &mut *job;
    let deadline = tokio::time::Instant::from_std(job.deadline);
    // Past the deadline the attempt is dropped, which resets its stream.
    let outcome = tokio::time::timeout_at(
        deadline,
        attempts(&job.shared, &job.request, &mut job.report, first),
    )
    .await
    .unwrap_or_else(|_| {
        // A push that waited for a connection or credentials says why they were
        // missing at the end; one that no attempt failed says the server never answered.
        if let Some(why) = job.shared.pool.unready_reason() {
            job.report.last_error = Some(why.to_string());
        }
        let why = &mut job.report.last_error;
        why.get_or_insert_with(|| format!("no answer from {} before the deadline", S::NAME));
        Outcome::TimedOut
    });
    job.report.finish(outcome);
}

/// Sends until the answer is final. Requests the server never processed go
/// out again: at once after a GOAWAY or when never written, after a short
/// backoff when refused; answers the service says to retry after its
/// `Retry-After` or the retry backoff. A request that may have been processed
/// (written, then its connection lost) never goes out again: it ends
/// `Unconfirmed`. Without a connection or credentials the push waits for them.
async fn attempts<S: Service, C: Credentials>(
    s: &Shared<S, C>,
    request: &S::Prepared,
    report: &mut Report<S, C>,
    first: Option<Dispatched>,
) -> Outcome<S::Reason> {
    let mut failures = Failures::default();
    if let Some(sent) = first {
        if let Some(outcome) = attempt(s, report, sent, &mut failures).await {
            return outcome;
        }
    }
    loop {
        let sent = match s
            .pool
            .dispatch(&|authorization| s.service.request(request, authorization))
        {
            Ok(sent) => sent,
            Err(Unready::Disconnected) => {
                if let Some(why) = s.pool.down_reason() {
                    report.last_error = Some(why.to_string());
                }
                s.pool.wait_ready().await;
                continue;
            }
            Err(Unready::StreamsFull) => {
                // What a push whose deadline passes while it waits says.
                report.last_error = Some(format!(
                    "no stream free: every connection to {} has as many open as the server allows",
                    S::NAME
                ));
                s.pool.wait_stream().await;
                report.last_error = None;
                continue;
            }
            Err(Unready::NoCredentials(why)) => {
                report.last_error = Some(why.to_string());
                // Boxed: a rare path must not grow every push's task.
                Box::pin(s.pool.credentials.ready()).await;
                continue;
            }
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
    /// The credentials were renewed for this push once already.
    renewed: bool,
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
async fn attempt<S: Service, C: Credentials>(
    s: &Shared<S, C>,
    report: &mut Report<S, C>,
    sent: Dispatched,
    failures: &mut Failures,
) -> Option<Outcome<S::Reason>> {
    report.attempts += 1;
    Counters::inc(&s.counters.sent);
    if report.attempts > 1 {
        Counters::inc(&s.counters.retried);
    }
    if std::mem::take(&mut report.unprocessed) {
        report.replays += 1;
        Counters::inc(&s.counters.replayed);
    }
    let Dispatched {
        response,
        conn,
        generation,
        stream,
    } = sent;
    let answer = {
        // Counted among the connection's open streams until the answer is read,
        // not through a backoff after it.
        let _stream = stream;
        match response.await {
            Ok(resp) if resp.status() == StatusCode::OK => {
                // An answer's body left unread is reset (RST_STREAM CANCEL), and servers
                // count resets against the connection (Rapid Reset defences close it):
                // FCM answers 200 with the message's name. APNs's 200 has none.
                if !resp.body().is_end_stream() {
                    let _ = Box::pin(read_body(resp.into_body(), MAX_ERROR_BODY)).await;
                }
                return Some(Outcome::Delivered);
            }
            // Boxed, like the retry wait: rare paths must not grow every push's task.
            Ok(resp) => Ok(Box::pin(read_answer(&s.service, resp)).await),
            Err(e) => Err(e),
        }
    };
    let answer = match answer {
        Ok(answer) => answer,
        // The client is being dropped: the runtime's shutdown drops the connections,
        // and a push task still polled meanwhile sees its connection go.
        Err(_) if s.closing.load(Ordering::Acquire) => return Some(Outcome::ShutDown),
        Err(e) => match unprocessed(&e) {
            // Written, and maybe processed: the service may have delivered it. Sent
            // again it could wake the phone twice (what a connection lost mid-burst did
            // to every push in flight), so it ends here.
            None => {
                let why = format!("connection lost before the answer: {}", error_chain(&e));
                log::debug!("{} push {} unconfirmed: {why}", S::NAME, report.id);
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
        // The answer says why: a wait's reason from before would only mislead.
        Answer::Final(outcome) => {
            report.last_error = None;
            Some(outcome)
        }
        Answer::CredentialsExpired { why, otherwise } => {
            if let (false, Some(generation)) = (failures.renewed, generation) {
                if s.pool.credentials.expired(generation) {
                    failures.renewed = true;
                    report.last_error = Some(why);
                    return None;
                }
            }
            Some(otherwise)
        }
        Answer::Retry { why, after } => {
            failures.retried += 1;
            log::debug!("{} push {} will be retried: {why}", S::NAME, report.id);
            report.last_error = Some(why);
            let wait = after.unwrap_or_else(|| s.retry.delay(failures.retried));
            Box::pin(tokio::time::sleep(wait)).await;
            None
        }
    }
}

async fn read_answer<S: Service>(service: &S, resp: Response<RecvStream>) -> Answer<S::Reason> {
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    match read_body(body, MAX_ERROR_BODY).await {
        Ok(body) => service.classify(status, &parts.headers, &body),
        // The status is the service's answer: not 200, so not delivered, and a push
        // is resent only when that status alone says so (429, 5xx).
        Err(e) => match service.classify(status, &parts.headers, b"") {
            Answer::Retry { after, .. } => Answer::Retry {
                why: format!("{status} with an unreadable body: {e}"),
                after,
            },
            expired @ Answer::CredentialsExpired { .. } => expired,
            Answer::Final(_) => Answer::Final(Outcome::Unexpected {
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
}

/// Whether the server certainly did not process a failed request, so sending it
/// again cannot deliver it twice. Any other failure may have come after the
/// server took it: streams at or below a GOAWAY's last-stream-id are never
/// failed by the GOAWAY itself, and a connection that then drops fails them as
/// I/O errors: unconfirmed, not replayed. A request is not held back unwritten
/// for the server's stream limit (`Pool::dispatch` waits for a free stream), so
/// such an error means it was written; the exception, a request started in the
/// instant h2 took a lowered limit, ends unconfirmed, never sent twice.
fn unprocessed(e: &h2::Error) -> Option<Unprocessed> {
    if e.is_go_away() && e.is_remote() {
        return Some(Unprocessed::GoAway);
    }
    if e.is_reset() && e.is_remote() && e.reason() == Some(h2::Reason::REFUSED_STREAM) {
        return Some(Unprocessed::Refused);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apns::jwt::JwtSigner;
    use crate::apns::{Apns, Push, Reason};
    use crate::mock::{MockApns, MockConfig, Scripted, KEY_ID, TEAM_ID};
    use crate::push_client::FetchedToken;
    use std::sync::mpsc;
    use std::time::{SystemTime, UNIX_EPOCH};

    const PATIENCE: Duration = Duration::from_secs(30);

    fn now_unix() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn settings(mock: &MockApns) -> Settings {
        let backoff = Backoff {
            base: Duration::from_millis(20),
            max: Duration::from_millis(200),
        };
        Settings {
            host: "127.0.0.1".into(),
            port: mock.addr().port(),
            ca_file: Some(mock.ca_pem_path()),
            client_certificate: None,
            worker_threads: 1,
            connections: 1,
            max_pending: 10,
            reconnect: backoff,
            retry: backoff,
            ping_interval: Duration::from_secs(60),
            ping_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }

    fn apns(mock: &MockApns) -> Apns {
        Apns::new(format!("127.0.0.1:{}", mock.addr().port()).parse().unwrap())
    }

    fn bearer(mock: &MockApns) -> http::HeaderValue {
        let key = std::fs::read_to_string(mock.key_path()).unwrap();
        let jwt = JwtSigner::from_p8_pem(&key, KEY_ID, TEAM_ID)
            .unwrap()
            .sign(now_unix());
        format!("bearer {jwt}").parse().unwrap()
    }

    /// A client whose credentials a test sets, as a renewing task would.
    fn start<S: Service<Push = Push>>(
        mock: &MockApns,
        service: S,
    ) -> (Client<S, Arc<FetchedToken>>, Arc<FetchedToken>) {
        let token = Arc::new(FetchedToken::default());
        let client = Client::start(service, token.clone(), &settings(mock)).unwrap();
        client.wait_connected(PATIENCE).unwrap();
        (client, token)
    }

    fn submit<S: Service<Push = Push>>(
        client: &Client<S, Arc<FetchedToken>>,
        within: Duration,
    ) -> mpsc::Receiver<PushResult<S::Reason>> {
        let push = Push::voip(
            format!("{:064x}", 0xabc0_0001_u64),
            "com.example.phone.voip",
            r#"{"aps":{}}"#,
            now_unix() + 30,
        );
        let (tx, rx) = mpsc::channel();
        let done = Box::new(move |r| tx.send(r).unwrap());
        client.submit(push, Instant::now() + within, done).unwrap();
        rx
    }

    #[test]
    fn a_push_waits_for_credentials_and_goes_out_when_they_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let mock = MockApns::start(MockConfig::new(dir.path())).unwrap();
        let (client, token) = start(&mock, apns(&mock));
        let rx = submit(&client, PATIENCE);
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        assert_eq!(mock.push_count(), 0, "nothing sent without credentials");

        token.set(bearer(&mock));
        let result = rx.recv_timeout(PATIENCE).unwrap();
        assert_eq!((result.outcome, result.attempts), (Outcome::Delivered, 1));
        assert_eq!(mock.push_count(), 1);
    }

    #[test]
    fn a_push_without_credentials_times_out_saying_why() {
        let dir = tempfile::tempdir().unwrap();
        let mock = MockApns::start(MockConfig::new(dir.path())).unwrap();
        let (client, token) = start(&mock, apns(&mock));
        token.failed("503 from the token endpoint");
        let result = submit(&client, Duration::from_millis(300))
            .recv_timeout(PATIENCE)
            .unwrap();
        assert_eq!((result.outcome, result.attempts), (Outcome::TimedOut, 0));
        let why = result.last_error.unwrap();
        assert!(why.contains("503 from the token endpoint"), "{why}");
        assert_eq!(mock.push_count(), 0);
    }

    /// APNs as a server that says when to retry.
    struct SaysRetryAfter(Apns);

    const RETRY_AFTER: Duration = Duration::from_millis(400);

    impl Service for SaysRetryAfter {
        const NAME: &'static str = "Test";
        type Push = Push;
        type Prepared = <Apns as Service>::Prepared;
        type Reason = Reason;

        fn prepare(&self, push: Push, id: Uuid) -> Result<Self::Prepared, SubmitError> {
            self.0.prepare(push, id)
        }

        fn request(
            &self,
            prepared: &Self::Prepared,
            authorization: Option<http::HeaderValue>,
        ) -> http::Request<crate::push_client::Body> {
            self.0.request(prepared, authorization)
        }

        fn classify(&self, status: u16, headers: &http::HeaderMap, body: &[u8]) -> Answer<Reason> {
            match self.0.classify(status, headers, body) {
                Answer::Retry { why, .. } => Answer::Retry {
                    why,
                    after: Some(RETRY_AFTER),
                },
                other => other,
            }
        }
    }

    #[test]
    fn the_servers_retry_after_overrides_the_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let mock = MockApns::start(MockConfig::new(dir.path())).unwrap();
        let (client, token) = start(&mock, SaysRetryAfter(apns(&mock)));
        token.set(bearer(&mock));
        let device = format!("{:064x}", 0xabc0_0001_u64);
        mock.script(&device, Scripted::RejectNext(Reason::TooManyRequests, 1));
        let result = submit(&client, PATIENCE).recv_timeout(PATIENCE).unwrap();
        assert_eq!((result.outcome, result.attempts), (Outcome::Delivered, 2));
        // The settings' backoff would have waited 20 ms at most.
        assert!(result.latency >= RETRY_AFTER, "{:?}", result.latency);
    }
}

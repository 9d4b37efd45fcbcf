//! The connection pool: each slot keeps one HTTP/2 connection to the service open,
//! reconnects it with backoff, and starts streams on it under one short lock.

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use rustls::pki_types::ServerName;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::config::Backoff;
use super::credentials::Credentials;
use super::happy_eyeballs;
use super::metrics::Counters;
use super::paced_read::PacedRead;

/// A request's body: each attempt clones the prepared bytes.
pub type Body = Full<Bytes>;
type Sender = http2::SendRequest<Body>;

/// Where and how to connect.
pub(crate) struct Target {
    /// The service's name, for logs.
    pub service: &'static str,
    pub display: String,
    pub host: String,
    pub port: u16,
    pub server_name: ServerName<'static>,
    pub tls: TlsConnector,
    pub connect_timeout: Duration,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub reconnect: Backoff,
}

enum Conn {
    /// The first attempt is still running.
    Connecting,
    Up {
        sender: Sender,
        id: u64,
        retire: Option<oneshot::Sender<()>>,
        /// A request went out on it: the server took it, so it worked.
        used: bool,
    },
    /// The last attempt failed or the connection was retired; why.
    Down(Arc<str>),
}

struct Slot<C: Credentials> {
    conn: Conn,
    credentials: C::Cached,
}

/// A started request's answer: boxed, as it is moved through every level of the
/// push's task (~270 bytes unboxed, each level holding a copy).
pub(crate) type ResponseFuture =
    Pin<Box<dyn Future<Output = hyper::Result<Response<Incoming>>> + Send>>;

/// A started request: the answer to await, the connection it went out on, and
/// the generation of the credentials it carried.
pub(crate) type Dispatched = (ResponseFuture, ConnRef, Option<u64>);

/// Why nothing was sent.
pub(crate) enum Unready {
    /// No connection is open.
    NoConnection,
    /// The credentials have nothing to send yet; why.
    NoCredentials(Arc<str>),
}

/// Identifies the connection a request went out on.
#[derive(Clone, Copy)]
pub(crate) struct ConnRef {
    slot: usize,
    id: u64,
}

pub(crate) struct Pool<C: Credentials> {
    target: Target,
    pub credentials: C,
    counters: Arc<Counters>,
    slots: Box<[Mutex<Slot<C>>]>,
    next_slot: AtomicUsize,
    next_id: AtomicU64,
    /// Woken when a slot connects or fails to: waiting pushes look again.
    changed: Notify,
    /// Pushes waiting for an open connection...
    waiting: AtomicUsize,
    /// ...and woken when one starts to: a slot waiting out its reconnect backoff cuts it short.
    demand: Notify,
}

/// The longest a slot waits to reconnect while pushes wait for it: a push must not
/// sit out a backoff grown over a long outage (up to a minute) once the service is back.
const RECONNECT_ON_DEMAND: Duration = Duration::from_secs(1);

/// Counts a push among `Pool::waiting` while it lives (the wait may be cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<C: Credentials> Pool<C> {
    pub fn new(
        target: Target,
        credentials: C,
        counters: Arc<Counters>,
        connections: usize,
    ) -> Self {
        let slots = (0..connections)
            .map(|_| {
                Mutex::new(Slot {
                    conn: Conn::Connecting,
                    credentials: C::Cached::default(),
                })
            })
            .collect();
        Pool {
            target,
            credentials,
            counters,
            slots,
            next_slot: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            changed: Notify::new(),
            waiting: AtomicUsize::new(0),
            demand: Notify::new(),
        }
    }

    /// Starts a request on an open connection (round robin), or says why it cannot.
    /// The returned future resolves to the answer; dropping it resets the stream.
    pub fn dispatch(
        &self,
        build: &dyn Fn(Option<http::HeaderValue>) -> Request<Body>,
    ) -> Result<Dispatched, Unready> {
        let n = self.slots.len();
        let start = if n == 1 {
            0
        } else {
            self.next_slot.fetch_add(1, Ordering::Relaxed) % n
        };
        let (idx, mut slot) = (0..n)
            .map(|i| (start + i) % n)
            .find_map(|idx| {
                let slot = self.slots[idx].lock();
                is_up(&slot.conn).then_some((idx, slot))
            })
            .ok_or(Unready::NoConnection)?;
        let slot = &mut *slot;
        let (authorization, generation) = match self
            .credentials
            .authorization(&mut slot.credentials)
            .map_err(Unready::NoCredentials)?
        {
            Some(a) => (Some(a.value), Some(a.generation)),
            None => (None, None),
        };
        let Conn::Up {
            sender, id, used, ..
        } = &mut slot.conn
        else {
            unreachable!("checked under the same lock")
        };
        *used = true;
        let response = Box::pin(sender.send_request(build(authorization)));
        Ok((response, ConnRef { slot: idx, id: *id }, generation))
    }

    /// Stops starting streams on `conn` at once and has its slot open a new one;
    /// streams still running on it finish there.
    pub fn retire(&self, conn: ConnRef, why: &str) {
        let mut slot = self.slots[conn.slot].lock();
        if let Conn::Up { id, retire, .. } = &mut slot.conn {
            if *id == conn.id {
                let service = self.target.service;
                log::warn!("{service} connection {} retired: {why}", conn.slot);
                if let Some(tx) = retire.take() {
                    let _ = tx.send(());
                }
                slot.conn = Conn::Down(why.into());
            }
        }
    }

    /// Why the connections are down, if one says.
    pub fn down_reason(&self) -> Option<Arc<str>> {
        self.slots.iter().find_map(|s| match &s.lock().conn {
            Conn::Down(why) => Some(why.clone()),
            _ => None,
        })
    }

    /// Why nothing could be sent right now, if nothing can: no credentials, or no
    /// open connection. Read when a push's deadline passes, as the reason its wait
    /// began with may have changed meanwhile (the token endpoint answered, a connect failed).
    pub fn unready_reason(&self) -> Option<Arc<str>> {
        if let Err(why) = self.credentials.authorization(&mut Default::default()) {
            return Some(why);
        }
        if self.slots.iter().any(|s| is_up(&s.lock().conn)) {
            return None;
        }
        self.down_reason()
    }

    /// Waits until some connection is open (the caller's deadline bounds the wait).
    pub async fn wait_ready(&self) {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        self.demand.notify_waiters();
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.slots.iter().any(|s| is_up(&s.lock().conn)) {
                return;
            }
            changed.await;
        }
    }

    /// Waits for the first connection; fails as soon as every slot's first
    /// attempt failed, with the reason, or when `timeout` passes.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let mut failure = None;
            let mut all_failed = true;
            for slot in self.slots.iter() {
                match &slot.lock().conn {
                    conn if is_up(conn) => return Ok(()),
                    Conn::Down(why) => failure = Some(why.clone()),
                    _ => all_failed = false,
                }
            }
            if let (true, Some(why)) = (all_failed, failure) {
                return Err(why.to_string());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(format!(
                    "no connection to {} within {:?}",
                    self.target.display, timeout
                ));
            }
        }
    }

    /// Waits `delay` before a reconnect, or at most `RECONNECT_ON_DEMAND` once a push waits.
    async fn back_off(&self, delay: Duration) {
        let mut end = Instant::now() + delay;
        loop {
            // Enabled before `waiting` is read, so a push that starts waiting after is not missed.
            let demand = self.demand.notified();
            tokio::pin!(demand);
            demand.as_mut().enable();
            if self.waiting.load(Ordering::Acquire) > 0 {
                end = end.min(Instant::now() + RECONNECT_ON_DEMAND);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(end) => return,
                _ = demand => {}
            }
        }
    }

    /// Keeps slot `idx` connected for the life of the runtime.
    pub async fn maintain(self: Arc<Self>, idx: usize) {
        let mut failures = 0u32;
        loop {
            if failures > 0 {
                self.back_off(self.target.reconnect.delay(failures)).await;
            }
            let started = Instant::now();
            let attempt = tokio::time::timeout(self.target.connect_timeout, self.connect()).await;
            let (sender, conn) = match attempt.unwrap_or_else(|_| {
                Err(format!(
                    "connecting to {} timed out after {:?}",
                    self.target.display, self.target.connect_timeout
                ))
            }) {
                Ok(pair) => pair,
                Err(why) => {
                    failures += 1;
                    Counters::inc(&self.counters.connections_failed);
                    log::warn!("{} connection {idx}: {why}", self.target.service);
                    self.slots[idx].lock().conn = Conn::Down(why.into());
                    self.changed.notify_waiters();
                    continue;
                }
            };
            Counters::inc(&self.counters.connections_opened);
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (retire_tx, retire_rx) = oneshot::channel();
            self.slots[idx].lock().conn = Conn::Up {
                sender,
                id,
                retire: Some(retire_tx),
                used: false,
            };
            let (service, display) = (self.target.service, &self.target.display);
            log::info!("{service} connection {idx} to {display} open");
            self.changed.notify_waiters();

            let mut running = tokio::spawn(conn);
            tokio::select! {
                ended = &mut running => {
                    let graceful = matches!(ended, Ok(Ok(())));
                    let why = match ended {
                        Ok(Ok(())) => "closed by the server".to_string(),
                        Ok(Err(e)) => format!("failed: {}", error_chain(&e)),
                        Err(e) => format!("task ended: {e}"),
                    };
                    log::info!("{service} connection {idx} to {display} {why}");
                    let mut slot = self.slots[idx].lock();
                    let mut used = false;
                    if let Conn::Up { id: current, used: u, .. } = &slot.conn {
                        if *current == id {
                            used = *u;
                            slot.conn = Conn::Down(format!("connection {why}").into());
                        }
                    }
                    // A connection that dies young counts as a failed attempt, so a
                    // server that accepts and drops at once is not hammered; one the
                    // server closed cleanly after taking requests (GOAWAY after N
                    // streams) worked, and the next push needs a connection at once.
                    if started.elapsed() < self.target.reconnect.base && !(graceful && used) {
                        failures += 1;
                    } else {
                        failures = 0;
                    }
                }
                // Retired (GOAWAY): the old connection finishes its streams on its own.
                _ = retire_rx => failures = 0,
            }
        }
    }

    async fn connect(&self) -> Result<(Sender, http2::Connection<Io, Body, ConnExecutor>), String> {
        let t = &self.target;
        let tls = open_tls(&t.host, t.port, &t.display, &t.server_name, &t.tls).await?;
        let (tasks, new_tasks) = mpsc::unbounded_channel();
        tokio::spawn(run_tasks(new_tasks));
        let exec = ConnExecutor {
            tasks,
            io_started: Arc::new(AtomicBool::new(false)),
        };
        http2::Builder::new(exec)
            .timer(TokioTimer::new())
            .keep_alive_interval(t.ping_interval)
            .keep_alive_timeout(t.ping_timeout)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(PacedRead::new(tls)))
            .await
            .map_err(|e| format!("HTTP/2 handshake with {} failed: {e}", t.display))
    }
}

/// TCP (Happy Eyeballs) and TLS to `host:port`, the server agreeing to HTTP/2 (ALPN h2).
pub(crate) async fn open_tls(
    host: &str,
    port: u16,
    display: &str,
    server_name: &ServerName<'static>,
    tls: &TlsConnector,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {display}: {e}"))?;
    let tcp = happy_eyeballs::connect(addrs, happy_eyeballs::ATTEMPT_DELAY, TcpStream::connect)
        .await
        .map_err(|failure| match failure {
            Some((addr, e)) => format!("cannot connect to {display} ({addr}): {e}"),
            None => format!("cannot resolve {display}: no address"),
        })?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
    let tls = tls
        .connect(server_name.clone(), tcp)
        .await
        .map_err(|e| format!("TLS handshake with {display} failed: {e}"))?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(format!("{display} did not agree to HTTP/2 (ALPN h2)"));
    }
    Ok(tls)
}

/// A hyper task: boxed, as hyper's task type is as large as its biggest
/// variant (the connection itself, ~2.5 KiB).
type HyperTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs one connection's per-request hyper tasks (two per request) together in
/// one tokio task, `run_tasks`: a tokio task each would cost an aligned
/// allocation and the scheduler's bookkeeping, twice per push.
#[derive(Clone)]
struct ConnExecutor {
    tasks: mpsc::UnboundedSender<HyperTask>,
    /// hyper executes the connection's I/O first, at the handshake. It gets a tokio
    /// task of its own: polled among the requests' tasks, its reads would no longer
    /// yield to them (see `PacedRead`).
    io_started: Arc<AtomicBool>,
}

impl<F> hyper::rt::Executor<F> for ConnExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let task: HyperTask = Box::pin(fut);
        if !self.io_started.swap(true, Ordering::Relaxed) {
            tokio::spawn(task);
        } else {
            // Fails only once `run_tasks` is dropped, with the runtime.
            let _ = self.tasks.send(task);
        }
    }
}

/// Polls the tasks a `ConnExecutor` sends until they and the executor are all gone.
async fn run_tasks(mut new: mpsc::UnboundedReceiver<HyperTask>) {
    let mut running = FuturesUnordered::new();
    poll_fn(|cx| loop {
        // Takes every new task; `Pending` has the next one wake this task.
        let closed = loop {
            match new.poll_recv(cx) {
                Poll::Ready(Some(task)) => running.push(task),
                Poll::Ready(None) => break true,
                Poll::Pending => break false,
            }
        };
        match running.poll_next_unpin(cx) {
            // One ended: look again.
            Poll::Ready(Some(())) => {}
            Poll::Ready(None) if closed => return Poll::Ready(()),
            _ => return Poll::Pending,
        }
    })
    .await
}

type Io = TokioIo<PacedRead<tokio_rustls::client::TlsStream<TcpStream>>>;

fn is_up(conn: &Conn) -> bool {
    matches!(conn, Conn::Up { sender, .. } if !sender.is_closed())
}

/// An error and its sources on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

//! The connection pool: each slot keeps one HTTP/2 connection to the service open,
//! reconnects it with backoff, checks it with PINGs, and starts streams on it under
//! one short lock, never more than the server allows.
//!
//! On `h2` directly, not hyper's client: hyper hands each request to the
//! connection's task through a channel and runs a task per request to carry its
//! answer back (a fifth of the client's CPU per push), and hides the server's
//! stream limit, so requests over it waited inside hyper where a GOAWAY or a
//! failure dropped them unsent.

use bytes::{Bytes, BytesMut};
use h2::client::{Connection, ResponseFuture, SendRequest};
use h2::{Ping, PingPong, RecvStream};
use http::Request;
use parking_lot::Mutex;
use rustls::pki_types::ServerName;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::config::Backoff;
use super::credentials::Credentials;
use super::happy_eyeballs;
use super::metrics::Counters;
use super::paced_read::PacedRead;

/// A request's body: each attempt clones the prepared bytes.
pub type Body = Bytes;
type Sender = SendRequest<Body>;
type Io = PacedRead<tokio_rustls::client::TlsStream<TcpStream>>;

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
        /// Streams this client has open on it.
        open: Arc<OpenStreams>,
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

/// A started request: the answer to await, the connection it went out on, and
/// the generation of the credentials it carried. It holds its stream among the
/// connection's open ones until dropped, once the answer is read.
pub(crate) struct Dispatched {
    pub response: ResponseFuture,
    pub conn: ConnRef,
    pub generation: Option<u64>,
    pub stream: OpenStream,
}

/// The streams a client has open on one connection, and the pool's signal that
/// one has ended.
pub(crate) struct OpenStreams {
    count: AtomicUsize,
    room: Arc<Room>,
}

/// Pushes waiting for a stream, and their wake-up.
#[derive(Default)]
struct Room {
    waiting: AtomicUsize,
    freed: Notify,
}

/// One open stream, counted while it lives.
pub(crate) struct OpenStream(Arc<OpenStreams>);

impl OpenStream {
    fn new(open: &Arc<OpenStreams>) -> Self {
        open.count.fetch_add(1, Ordering::AcqRel);
        OpenStream(open.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        let room = &self.0.room;
        if room.waiting.load(Ordering::Acquire) > 0 {
            room.freed.notify_one();
        }
    }
}

/// Why nothing was sent.
pub(crate) enum Unready {
    /// No connection is open.
    Disconnected,
    /// Every open connection has as many streams open as its server allows.
    StreamsFull,
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
    room: Arc<Room>,
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
            room: Arc::default(),
        }
    }

    /// Starts a request on an open connection with a stream free (round robin), or
    /// says why it cannot. Dropping the answer's future before the answer resets the stream.
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
        let mut unready = Unready::Disconnected;
        for idx in (0..n).map(|i| (start + i) % n) {
            let mut slot = self.slots[idx].lock();
            let slot = &mut *slot;
            let Conn::Up {
                sender, open, id, ..
            } = &slot.conn
            else {
                continue;
            };
            // Over the limit, h2 would hold the request back where a GOAWAY or a
            // failure of this connection could not tell it was never written; it
            // waits here instead, for a stream on any connection.
            if !stream_free(sender, open) {
                unready = Unready::StreamsFull;
                continue;
            }
            let (authorization, generation) = match self
                .credentials
                .authorization(&mut slot.credentials)
                .map_err(Unready::NoCredentials)?
            {
                Some(a) => (Some(a.value), Some(a.generation)),
                None => (None, None),
            };
            let (head, body) = build(authorization).into_parts();
            let stream = OpenStream::new(open);
            let (conn, mut sender) = (ConnRef { slot: idx, id: *id }, sender.clone());
            let (response, mut send) =
                match sender.send_request(Request::from_parts(head, ()), body.is_empty()) {
                    Ok(started) => started,
                    // The connection failed or is going away, and its task has not
                    // ended yet: nothing was sent, and the slot opens a new one.
                    Err(e) => {
                        self.retire_locked(idx, slot, &format!("it is closing: {e}"));
                        continue;
                    }
                };
            if !body.is_empty() {
                // Fails only with the connection, which fails the answer too.
                let _ = send.send_data(body, true);
            }
            if let Conn::Up { used, .. } = &mut slot.conn {
                *used = true;
            }
            // A freed stream wakes one waiting push; it wakes the next, in case the
            // server raised its limit meanwhile (APNs after throttling) and there
            // is room for more.
            if self.room.waiting.load(Ordering::Acquire) > 0 {
                self.room.freed.notify_one();
            }
            return Ok(Dispatched {
                response,
                conn,
                generation,
                stream,
            });
        }
        Err(unready)
    }

    /// Waits until a stream ends or a connection opens or closes (the caller's
    /// deadline bounds the wait), then the caller dispatches again.
    pub async fn wait_stream(&self) {
        self.room.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.room.waiting);
        let freed = self.room.freed.notified();
        let changed = self.changed.notified();
        tokio::pin!(freed, changed);
        freed.as_mut().enable();
        changed.as_mut().enable();
        if self.has_room() {
            return;
        }
        tokio::select! {
            _ = freed => {}
            _ = changed => {}
        }
    }

    /// Whether some open connection has a stream free.
    fn has_room(&self) -> bool {
        self.slots.iter().any(|s| match &s.lock().conn {
            Conn::Up { sender, open, .. } => stream_free(sender, open),
            _ => false,
        })
    }

    /// Stops starting streams on `conn` at once and has its slot open a new one;
    /// streams still running on it finish there.
    pub fn retire(&self, conn: ConnRef, why: &str) {
        let mut slot = self.slots[conn.slot].lock();
        if matches!(slot.conn, Conn::Up { id, .. } if id == conn.id) {
            self.retire_locked(conn.slot, &mut slot, why);
        }
    }

    fn retire_locked(&self, idx: usize, slot: &mut Slot<C>, why: &str) {
        if let Conn::Up { retire, .. } = &mut slot.conn {
            log::warn!("{} connection {idx} retired: {why}", self.target.service);
            if let Some(tx) = retire.take() {
                let _ = tx.send(());
            }
            slot.conn = Conn::Down(why.into());
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
            let open = Arc::new(OpenStreams {
                count: AtomicUsize::new(0),
                room: self.room.clone(),
            });
            self.slots[idx].lock().conn = Conn::Up {
                sender,
                open,
                id,
                retire: Some(retire_tx),
                used: false,
            };
            let (service, display) = (self.target.service, &self.target.display);
            log::info!("{service} connection {idx} to {display} open");
            self.changed.notify_waiters();

            let t = &self.target;
            let mut running = tokio::spawn(run(conn, t.ping_interval, t.ping_timeout));
            tokio::select! {
                ended = &mut running => {
                    let graceful = matches!(ended, Ok(Ok(())));
                    let why = match ended {
                        Ok(Ok(())) => "closed by the server".to_string(),
                        Ok(Err(why)) => why,
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

    async fn connect(&self) -> Result<(Sender, Connection<Io, Body>), String> {
        let t = &self.target;
        let tls = open_tls(&t.host, t.port, &t.display, &t.server_name, &t.tls).await?;
        h2::client::Builder::new()
            .enable_push(false)
            .handshake(PacedRead::new(tls))
            .await
            .map_err(|e| format!("HTTP/2 handshake with {} failed: {e}", t.display))
    }
}

/// Runs a connection until it ends, with a PING every `interval`: one not
/// answered within `timeout` ends it (a server or path gone silent, which TCP
/// may not notice for many minutes), failing the streams in flight.
async fn run(
    mut conn: Connection<Io, Body>,
    interval: Duration,
    timeout: Duration,
) -> Result<(), String> {
    let mut ping_pong: PingPong = conn.ping_pong().expect("taken only here");
    let health = async {
        loop {
            tokio::time::sleep(interval).await;
            match tokio::time::timeout(timeout, ping_pong.ping(Ping::opaque())).await {
                Ok(Ok(_)) => {}
                // The connection failed: its own error says why.
                Ok(Err(_)) => return std::future::pending().await,
                Err(_) => return format!("failed: no answer to a PING within {timeout:?}"),
            }
        }
    };
    tokio::select! {
        ended = conn => ended.map_err(|e| format!("failed: {}", error_chain(&e))),
        why = health => Err(why),
    }
}

/// An answer's body, up to `limit` bytes. Each chunk's flow-control window is
/// given back as it is read: the connection's window is shared, and a window
/// left taken would in the end stall every answer on it.
pub(crate) async fn read_body(mut body: RecvStream, limit: usize) -> Result<Bytes, String> {
    let mut read = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| error_chain(&e))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if read.len() + chunk.len() > limit {
            return Err(format!("longer than {limit} bytes"));
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read.freeze())
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

/// Whether a connection has fewer streams of ours open than its server allows.
fn stream_free(sender: &Sender, open: &OpenStreams) -> bool {
    open.count.load(Ordering::Acquire) < sender.current_max_send_streams()
}

fn is_up(conn: &Conn) -> bool {
    matches!(conn, Conn::Up { .. })
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

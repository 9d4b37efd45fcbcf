//! The HTTP/2-over-TLS server both mocks run on: TLS, connections, streams
//! and the transport faults (GOAWAY, stream limits, refused streams, dropped
//! or silent connections, delays); a `Service` judges each request.
//!
//! Built on the `h2` crate rather than hyper's server because Apple's
//! behaviours need what hyper hides: stream ids (GOAWAY's last-stream-id),
//! per-stream RST_STREAM codes (REFUSED_STREAM for streams past a GOAWAY or
//! over the announced limit), and dropping a connection mid-stream.

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;
use http::{Request, Response};
use rustls::server::danger::ClientCertVerifier;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::certs::TlsIdentity;
use super::records::Counters;
use super::script::{Behaviour, StreamFaults};
use super::wire::{Tap, Wire};

/// What Apple announces once a connection is up (Google's is higher; no
/// client of ours comes near either).
pub const NORMAL_STREAM_LIMIT: u32 = 1000;

/// A mock's answers to requests, served by the shared plumbing.
pub trait Service: Send + Sync + Sized + 'static {
    /// What scripts and faults reject requests with.
    type Rejection: Copy + Send + 'static;
    /// What the service keeps per connection.
    type Conn: Send + Sync + 'static;
    /// For logs ("mock APNs") and thread names ("mock-apns").
    const NAME: &'static str;
    const THREAD_NAME: &'static str;
    /// The debug data of GOAWAYs sent by the `goaway_after_streams` fault and
    /// by the idle timeout.
    const GOAWAY_DEBUG: &'static [u8];
    const IDLE_GOAWAY_DEBUG: &'static [u8];

    fn core(&self) -> &Core<Self::Rejection>;

    /// The per-connection state of a connection whose TLS handshake is done.
    fn connection(&self, tls: &rustls::ServerConnection) -> Self::Conn;

    /// Judges one request; `faults.server_error` is the service's to answer.
    fn handle(
        &self,
        conn: &Connection<Self::Conn>,
        req: Request<RecvStream>,
        faults: &StreamFaults<Self::Rejection>,
    ) -> impl Future<Output = Outcome> + Send;
}

/// How a request ended, with the answer to send.
pub enum Outcome {
    Accepted(Response<Bytes>),
    Rejected(Response<Bytes>),
    /// Answered, but no push: e.g. the mock FCM's OAuth token endpoint.
    Answered(Response<Bytes>),
    /// The client reset the stream: nobody to answer.
    Gone,
}

/// What every service shares with the plumbing.
pub struct Core<R> {
    pub counters: Counters,
    pub behaviour: Behaviour<R>,
    /// Close connections that carried no stream for this long, like Apple.
    idle_timeout: Option<Duration>,
    next_connection: AtomicU64,
}

impl<R: Copy> Core<R> {
    pub fn new(idle_timeout: Option<Duration>) -> Self {
        Core {
            counters: Counters::default(),
            behaviour: Behaviour::new(),
            idle_timeout,
            next_connection: AtomicU64::new(1),
        }
    }
}

/// One connection's state shared with its stream tasks.
pub struct Connection<C> {
    /// Numbered from 1 in accept order.
    pub id: u64,
    /// Streams being processed, to refuse those over an acknowledged limit.
    active: AtomicUsize,
    pub tap: Arc<Tap>,
    /// Whether the limit is lowered to 1 by `throttle_after_rejection`.
    throttled: AtomicBool,
    pub state: C,
}

/// The TLS configuration: the server identity, HTTP/2 only (ALPN `h2`, as
/// Apple and Google require), and optionally a client certificate verifier.
pub fn tls(
    identity: &TlsIdentity,
    client_certs: Option<Arc<dyn ClientCertVerifier>>,
) -> io::Result<TlsAcceptor> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs =
        rustls_pemfile::certs(&mut identity.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut identity.key_pem.as_bytes())?
        .ok_or_else(|| invalid("the mock's server key file holds no key"))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let builder = match client_certs {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A mock serving on its own runtime thread(s) until dropped.
pub struct Running {
    addr: SocketAddr,
    runtime: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Serves `service` on `listener` (already bound, so the service could
    /// learn its address); listening on return.
    pub fn start<S: Service>(
        listener: std::net::TcpListener,
        worker_threads: usize,
        acceptor: TlsAcceptor,
        service: Arc<S>,
    ) -> io::Result<Running> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = if worker_threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(worker_threads)
                .thread_name(format!("{}-worker", S::THREAD_NAME))
                .on_thread_start(crate::sigpipe::block)
                .enable_all()
                .build()?
        };
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let handle = runtime.handle().clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let accept = accept_loop(listener, acceptor, service, stop_rx);
        let thread = std::thread::Builder::new()
            .name(S::THREAD_NAME.into())
            .spawn(move || {
                crate::sigpipe::block();
                runtime.block_on(accept);
                // Dropping the runtime drops every connection task.
                drop(runtime);
            })?;
        Ok(Running {
            addr,
            runtime: handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs `task` on the mock's runtime, e.g. a control port, with `listener`
    /// made a tokio one there.
    pub fn spawn_listener<F>(
        &self,
        listener: std::net::TcpListener,
        task: impl FnOnce(TcpListener) -> F,
    ) -> io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        listener.set_nonblocking(true)?;
        let _guard = self.runtime.enter();
        let listener = TcpListener::from_std(listener)?;
        self.runtime.spawn(task(listener));
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop<S: Service>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    service: Arc<S>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    tokio::spawn(serve(tcp, acceptor.clone(), service.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    log::warn!("{}: accept failed: {e}", S::NAME);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn serve<S: Service>(tcp: TcpStream, acceptor: TlsAcceptor, service: Arc<S>) {
    let core = service.core();
    let _ = tcp.set_nodelay(true);
    if core.behaviour.refuse_tls() {
        Counters::bump(&core.counters.tls_refused);
        refuse_tls(tcp).await;
        return;
    }
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            log::debug!("{}: TLS handshake failed: {e}", S::NAME);
            return;
        }
    };
    let state = service.connection(tls.get_ref().1);
    let (wire, tap) = Wire::new(tls);
    let mut h2 = match h2::server::Builder::new()
        .max_concurrent_streams(NORMAL_STREAM_LIMIT)
        .handshake::<_, Bytes>(wire)
        .await
    {
        Ok(h2) => h2,
        Err(e) => {
            log::debug!("{}: HTTP/2 handshake failed: {e}", S::NAME);
            return;
        }
    };
    let conn = Arc::new(Connection {
        id: core.next_connection.fetch_add(1, Ordering::Relaxed),
        active: AtomicUsize::new(0),
        tap: tap.clone(),
        throttled: AtomicBool::new(false),
        state,
    });
    Counters::bump(&core.counters.connections);
    let mut limit = core.behaviour.stream_limit();
    if let Some(n) = *limit.borrow_and_update() {
        tap.announce_limit(n);
    }
    let mut processed = 0u32;
    let mut last_processed = 0u32;
    let mut goaway_at: Option<u32> = None;
    // A GOAWAY waiting for streams it leaves unprocessed (`goaway_unprocessed`):
    // its last-stream-id, how many to hold, and those held so far.
    let mut goaway_pending: Option<(u32, u32)> = None;
    let mut held = Vec::new();
    let mut last_stream_at = tokio::time::Instant::now();
    loop {
        // No timer at all without an idle timeout: this loop runs per stream.
        let idle = async {
            match core.idle_timeout {
                Some(timeout) => tokio::time::sleep_until(last_stream_at + timeout).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = h2.accept() => {
                let Some(Ok((req, respond))) = next else { return };
                let id = u32::from(respond.stream_id());
                last_stream_at = tokio::time::Instant::now();
                Counters::bump(&core.counters.streams);
                if goaway_at.is_some_and(|last| id > last) || over_limit(&tap, &conn) {
                    refuse(core, respond);
                    continue;
                }
                if let Some((last, hold)) = goaway_pending {
                    held.push(respond);
                    if held.len() >= hold as usize {
                        goaway_pending = None;
                        goaway_at = Some(go_away(core, &tap, &mut h2, last, S::GOAWAY_DEBUG));
                        // After the GOAWAY: the client has failed them already.
                        held.drain(..).for_each(|r| refuse(core, r));
                    }
                    continue;
                }
                let faults = core.behaviour.next_stream();
                if faults.refuse {
                    refuse(core, respond);
                    continue;
                }
                if faults.drop_connection {
                    Counters::bump(&core.counters.dropped_connections);
                    return;
                }
                if faults.go_silent {
                    Counters::bump(&core.counters.silenced_connections);
                    tap.go_silent();
                    // h2 is driven on only to learn when the client gives up.
                    while let Some(Ok(_)) = h2.accept().await {}
                    return;
                }
                processed += 1;
                last_processed = id;
                let due = goaway_at.is_none() && goaway_pending.is_none();
                if due && faults.goaway_after_streams.is_some_and(|n| processed >= n) {
                    match faults.goaway_unprocessed {
                        0 => goaway_at = Some(go_away(core, &tap, &mut h2, id, S::GOAWAY_DEBUG)),
                        hold => goaway_pending = Some((id, hold)),
                    }
                }
                conn.active.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(stream(service.clone(), conn.clone(), req, respond, faults));
            }
            Ok(()) = limit.changed() => {
                let n = *limit.borrow_and_update();
                tap.announce_limit(n.unwrap_or(NORMAL_STREAM_LIMIT));
            }
            () = idle, if goaway_at.is_none() && goaway_pending.is_none() => {
                // A push still being answered keeps the connection busy.
                if conn.active.load(Ordering::Relaxed) > 0 {
                    last_stream_at = tokio::time::Instant::now();
                    continue;
                }
                let last = last_processed;
                goaway_at = Some(go_away(core, &tap, &mut h2, last, S::IDLE_GOAWAY_DEBUG));
            }
        }
    }
}

/// Sends GOAWAY(NO_ERROR) naming `last` as the last stream processed and
/// returns it. h2 then closes the connection once the streams up to `last`
/// are answered; the Wire drops h2's own GOAWAY frames.
fn go_away<R, T, B>(
    core: &Core<R>,
    tap: &Tap,
    h2: &mut h2::server::Connection<T, B>,
    last: u32,
    debug: &'static [u8],
) -> u32
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: bytes::Buf,
{
    Counters::bump(&core.counters.goaways);
    tap.goaway(last, debug);
    h2.graceful_shutdown();
    last
}

/// REFUSED_STREAM: the stream was not processed and may be sent again.
fn refuse<R>(core: &Core<R>, mut respond: SendResponse<Bytes>) {
    Counters::bump(&core.counters.refused_streams);
    respond.send_reset(h2::Reason::REFUSED_STREAM);
}

fn over_limit<C>(tap: &Tap, conn: &Connection<C>) -> bool {
    tap.enforced_limit()
        .is_some_and(|limit| conn.active.load(Ordering::Relaxed) >= limit as usize)
}

async fn refuse_tls(mut tcp: TcpStream) {
    // Read the ClientHello first so closing does not reset the connection
    // before the client reads the alert.
    let mut hello = [0u8; 4096];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut hello)).await;
    // A TLS record: fatal alert, handshake_failure.
    let _ = tcp
        .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
        .await;
    let _ = tcp.shutdown().await;
}

async fn stream<S: Service>(
    service: Arc<S>,
    conn: Arc<Connection<S::Conn>>,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    faults: StreamFaults<S::Rejection>,
) {
    let core = service.core();
    let outcome = service.handle(&conn, req, &faults).await;
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    conn.active.fetch_sub(1, Ordering::Relaxed);
    if faults.throttle_after_rejection {
        let rejected = matches!(outcome, Outcome::Rejected(_));
        if conn.throttled.swap(rejected, Ordering::Relaxed) != rejected {
            // Queued before the answer, so the client learns the new limit first.
            let normal = core.behaviour.normal_stream_limit();
            conn.tap.announce_limit(if rejected {
                1
            } else {
                normal.unwrap_or(NORMAL_STREAM_LIMIT)
            });
        }
    }
    let response = match outcome {
        Outcome::Gone => return,
        Outcome::Accepted(response) => {
            Counters::bump(&core.counters.accepted);
            response
        }
        Outcome::Rejected(response) => {
            Counters::bump(&core.counters.rejected);
            response
        }
        Outcome::Answered(response) => response,
    };
    // A failed send means the client has gone: nothing left to do.
    let _ = answer(&mut respond, response);
}

fn answer(respond: &mut SendResponse<Bytes>, response: Response<Bytes>) -> Result<(), h2::Error> {
    let (parts, body) = response.into_parts();
    let response = Response::from_parts(parts, ());
    if body.is_empty() {
        respond.send_response(response, true)?;
        return Ok(());
    }
    respond
        .send_response(response, false)?
        .send_data(body, true)
}

/// Why a request body was not read whole.
pub enum BodyError {
    /// The client reset the stream.
    Gone,
    /// Longer than the limit: read no further.
    TooLarge,
}

/// The request body, read no further than the chunk that passes `max`.
pub async fn read_body(mut body: RecvStream, max: usize) -> Result<Bytes, BodyError> {
    let mut payload = Bytes::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|_| BodyError::Gone)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if payload.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        // A push's body is nearly always one DATA frame: no copy then.
        payload = if payload.is_empty() {
            chunk
        } else {
            let mut joined = BytesMut::from(&payload[..]);
            joined.extend_from_slice(&chunk);
            joined.freeze()
        };
    }
    Ok(payload)
}

//! The HTTP/2-over-TLS server: connections, streams, answers.
//!
//! Built on the `h2` crate rather than hyper's server because Apple's
//! behaviours need what hyper hides: stream ids (GOAWAY's last-stream-id),
//! per-stream RST_STREAM codes (REFUSED_STREAM for streams past a GOAWAY or
//! over the announced limit), and dropping a connection mid-stream.

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use parking_lot::Mutex;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use uuid::Uuid;

use super::certs::StateFiles;
use super::jwt::JwtVerifier;
use super::records::{Counters, ReceivedPush, Records};
use super::script::{Behaviour, StreamFaults};
use super::validate::{self, ClientCert, JwtCheck};
use super::wire::{Tap, Wire};
use super::{unix_ms, KEY_ID, TEAM_ID};
use crate::apns::jwt::MIN_REFRESH_INTERVAL_SECS;
use crate::apns::reason::Reason;

/// What Apple announces once a connection is up.
pub const NORMAL_STREAM_LIMIT: u32 = 1000;
const GOAWAY_DEBUG: &[u8] = br#"{"reason":"Shutdown"}"#;
const IDLE_GOAWAY_DEBUG: &[u8] = br#"{"reason":"IdleTimeout"}"#;
const APNS_ID: HeaderName = HeaderName::from_static("apns-id");

pub struct Shared {
    pub records: Records,
    pub counters: Counters,
    pub behaviour: Behaviour,
    jwt: JwtCheck,
    /// Set for certificate auth: checks client certificates after the handshake.
    client_certs: Option<Arc<dyn ClientCertVerifier>>,
    /// Close connections that carried no stream for this long, like Apple.
    idle_timeout: Option<Duration>,
    next_connection: AtomicU64,
}

impl Shared {
    pub fn new(
        files: &StateFiles,
        client_certs: Option<Arc<dyn ClientCertVerifier>>,
        idle_timeout: Option<Duration>,
    ) -> io::Result<Self> {
        let bad_key = |e| io::Error::new(io::ErrorKind::InvalidData, format!("mock team key: {e}"));
        let verifier =
            JwtVerifier::from_p8_pem(&files.auth_key_pem, KEY_ID, TEAM_ID).map_err(bad_key)?;
        Ok(Shared {
            records: Records::default(),
            counters: Counters::default(),
            behaviour: Behaviour::new(),
            jwt: JwtCheck::new(verifier),
            client_certs,
            idle_timeout,
            next_connection: AtomicU64::new(1),
        })
    }
}

/// The TLS configuration, and the verifier for certificate auth if enabled.
pub fn tls(
    files: &StateFiles,
    client_ca: Option<&Path>,
) -> io::Result<(TlsAcceptor, Option<Arc<dyn ClientCertVerifier>>)> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = rustls_pemfile::certs(&mut files.server_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut files.server_key_pem.as_bytes())?
        .ok_or_else(|| invalid("the mock's server key file holds no key"))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let (builder, client_certs) = match client_ca {
        None => (builder.with_no_client_auth(), None),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut std::fs::read(path)?.as_slice()) {
                roots.add(cert?).map_err(io::Error::other)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(io::Error::other)?;
            let reporting = Arc::new(ReportingVerifier(verifier.clone()));
            (builder.with_client_cert_verifier(reporting), Some(verifier))
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), client_certs))
}

/// Asks for a client certificate and checks its signature over the handshake,
/// but leaves the chain check to after the handshake so a bad certificate gets
/// Apple's HTTP answer (403 BadCertificate) instead of a TLS alert.
#[derive(Debug)]
struct ReportingVerifier(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for ReportingVerifier {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

pub async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    tokio::spawn(serve(tcp, acceptor.clone(), shared.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    log::warn!("mock APNs: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// One connection's state shared with its stream tasks.
struct Connection {
    id: u64,
    cert: ClientCert,
    /// Streams being processed, to refuse those over an acknowledged limit.
    active: AtomicUsize,
    tap: Arc<Tap>,
    /// Whether the limit is lowered to 1 by `throttle_after_rejection`.
    throttled: AtomicBool,
    /// The provider token last accepted here, and its `iat`.
    token: Mutex<Option<(Box<str>, u64)>>,
}

impl Connection {
    /// Apple's rule: a new provider token at most every 20 minutes.
    fn token_update(&self, bearer: &str, iat: u64) -> Result<(), Reason> {
        let mut last = self.token.lock();
        match &*last {
            Some((token, _)) if **token == *bearer => Ok(()),
            Some((_, last_iat)) if iat < last_iat + MIN_REFRESH_INTERVAL_SECS => {
                Err(Reason::TooManyProviderTokenUpdates)
            }
            _ => {
                *last = Some((bearer.into(), iat));
                Ok(())
            }
        }
    }
}

async fn serve(tcp: TcpStream, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    if shared.behaviour.refuse_tls() {
        Counters::bump(&shared.counters.tls_refused);
        refuse_tls(tcp).await;
        return;
    }
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            log::debug!("mock APNs: TLS handshake failed: {e}");
            return;
        }
    };
    let cert = match (&shared.client_certs, tls.get_ref().1.peer_certificates()) {
        (Some(verifier), Some([leaf, chain @ ..])) => {
            let now = rustls::pki_types::UnixTime::now();
            match verifier.verify_client_cert(leaf, chain, now) {
                Ok(_) => ClientCert::Valid,
                Err(_) => ClientCert::Invalid,
            }
        }
        _ => ClientCert::None,
    };
    let (wire, tap) = Wire::new(tls);
    let mut h2 = match h2::server::Builder::new()
        .max_concurrent_streams(NORMAL_STREAM_LIMIT)
        .handshake::<_, Bytes>(wire)
        .await
    {
        Ok(h2) => h2,
        Err(e) => {
            log::debug!("mock APNs: HTTP/2 handshake failed: {e}");
            return;
        }
    };
    let conn = Arc::new(Connection {
        id: shared.next_connection.fetch_add(1, Ordering::Relaxed),
        cert,
        active: AtomicUsize::new(0),
        tap: tap.clone(),
        throttled: AtomicBool::new(false),
        token: Mutex::new(None),
    });
    Counters::bump(&shared.counters.connections);
    let mut limit = shared.behaviour.stream_limit();
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
            match shared.idle_timeout {
                Some(timeout) => tokio::time::sleep_until(last_stream_at + timeout).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = h2.accept() => {
                let Some(Ok((req, respond))) = next else { return };
                let id = u32::from(respond.stream_id());
                last_stream_at = tokio::time::Instant::now();
                Counters::bump(&shared.counters.streams);
                if goaway_at.is_some_and(|last| id > last) || over_limit(&tap, &conn) {
                    refuse(&shared, respond);
                    continue;
                }
                if let Some((last, hold)) = goaway_pending {
                    held.push(respond);
                    if held.len() >= hold as usize {
                        goaway_pending = None;
                        goaway_at = Some(go_away(&shared, &tap, &mut h2, last, GOAWAY_DEBUG));
                        // After the GOAWAY: the client has failed them already.
                        held.drain(..).for_each(|r| refuse(&shared, r));
                    }
                    continue;
                }
                let faults = shared.behaviour.next_stream();
                if faults.refuse {
                    refuse(&shared, respond);
                    continue;
                }
                if faults.drop_connection {
                    Counters::bump(&shared.counters.dropped_connections);
                    return;
                }
                if faults.go_silent {
                    Counters::bump(&shared.counters.silenced_connections);
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
                        0 => goaway_at = Some(go_away(&shared, &tap, &mut h2, id, GOAWAY_DEBUG)),
                        hold => goaway_pending = Some((id, hold)),
                    }
                }
                conn.active.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(stream(shared.clone(), conn.clone(), req, respond, faults));
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
                goaway_at = Some(go_away(&shared, &tap, &mut h2, last, IDLE_GOAWAY_DEBUG));
            }
        }
    }
}

/// Sends GOAWAY(NO_ERROR) naming `last` as the last stream processed and
/// returns it. h2 then closes the connection once the streams up to `last`
/// are answered; the Wire drops h2's own GOAWAY frames.
fn go_away<T, B>(
    shared: &Shared,
    tap: &Tap,
    h2: &mut h2::server::Connection<T, B>,
    last: u32,
    debug: &'static [u8],
) -> u32
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: bytes::Buf,
{
    Counters::bump(&shared.counters.goaways);
    tap.goaway(last, debug);
    h2.graceful_shutdown();
    last
}

/// REFUSED_STREAM: the stream was not processed and may be sent again.
fn refuse(shared: &Shared, mut respond: SendResponse<Bytes>) {
    Counters::bump(&shared.counters.refused_streams);
    respond.send_reset(h2::Reason::REFUSED_STREAM);
}

fn over_limit(tap: &Tap, conn: &Connection) -> bool {
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

enum Verdict {
    Accepted,
    /// With the time (ms) a 410 answer names as when the token became invalid.
    Rejected(Reason, u64),
    /// The client reset the stream: nobody to answer.
    Gone,
}

async fn stream(
    shared: Arc<Shared>,
    conn: Arc<Connection>,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    faults: StreamFaults,
) {
    let (parts, body) = req.into_parts();
    let (apns_id, apns_id_header) = match client_apns_id(&parts.headers) {
        Some(given) => given,
        None => new_apns_id(),
    };
    let verdict = match faults.server_error {
        Some(reason) => Verdict::Rejected(reason, unix_ms()),
        None => process(&shared, &conn, &faults, parts, body, apns_id).await,
    };
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    conn.active.fetch_sub(1, Ordering::Relaxed);
    if faults.throttle_after_rejection {
        let rejected = matches!(verdict, Verdict::Rejected(..));
        if conn.throttled.swap(rejected, Ordering::Relaxed) != rejected {
            // Queued before the answer, so the client learns the new limit first.
            let normal = shared.behaviour.normal_stream_limit();
            conn.tap.announce_limit(if rejected {
                1
            } else {
                normal.unwrap_or(NORMAL_STREAM_LIMIT)
            });
        }
    }
    let reason = match verdict {
        Verdict::Gone => return,
        Verdict::Accepted => {
            Counters::bump(&shared.counters.accepted);
            None
        }
        Verdict::Rejected(reason, since) => {
            Counters::bump(&shared.counters.rejected);
            Some((reason, since))
        }
    };
    // A failed send means the client has gone: nothing left to do.
    let _ = answer(&mut respond, apns_id_header, reason);
}

async fn process(
    shared: &Shared,
    conn: &Connection,
    faults: &StreamFaults,
    parts: http::request::Parts,
    body: RecvStream,
    apns_id: Uuid,
) -> Verdict {
    let new_token = |bearer: &str, iat| match faults.limit_token_updates {
        true => conn.token_update(bearer, iat),
        false => Ok(()),
    };
    let ok = match validate::headers(&parts, conn.cert, &shared.jwt, new_token) {
        Ok(ok) => ok,
        Err(reason) => return Verdict::Rejected(reason, unix_ms()),
    };
    let payload = match read_body(body, ok.max_payload).await {
        Ok(payload) => payload,
        Err(verdict) => return verdict,
    };
    if let Err(reason) = validate::payload(&payload, ok.max_payload) {
        return Verdict::Rejected(reason, unix_ms());
    }
    if let Some((reason, since)) = shared.behaviour.scripted(&ok.token) {
        return Verdict::Rejected(reason, since);
    }
    let mut headers: HeaderMap = parts.headers;
    headers.remove(http::header::AUTHORIZATION);
    shared.records.add(ReceivedPush {
        token: ok.token,
        apns_id,
        headers,
        payload,
        arrived: Instant::now(),
        arrived_at: SystemTime::now(),
        connection: conn.id,
    });
    Verdict::Accepted
}

/// The client's valid `apns-id`, to echo as sent (a clone shares its bytes).
fn client_apns_id(headers: &HeaderMap) -> Option<(Uuid, HeaderValue)> {
    let value = headers.get(&APNS_ID)?;
    let text = value.to_str().ok().filter(|id| validate::is_uuid(id))?;
    Some((Uuid::try_parse(text).ok()?, value.clone()))
}

/// Like Apple's: a random UUID, uppercase. Not `Uuid::new_v4`, which makes a
/// getrandom system call per id.
fn new_apns_id() -> (Uuid, HeaderValue) {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let header = HeaderValue::from_bytes(id.hyphenated().encode_upper(&mut text).as_bytes())
        .expect("a UUID is a valid header value");
    (id, header)
}

/// The request body, read no further than the chunk that passes the limit.
async fn read_body(mut body: RecvStream, max: usize) -> Result<Bytes, Verdict> {
    let mut payload = Bytes::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|_| Verdict::Gone)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if payload.len() + chunk.len() > max {
            return Err(Verdict::Rejected(Reason::PayloadTooLarge, unix_ms()));
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

fn answer(
    respond: &mut SendResponse<Bytes>,
    apns_id: HeaderValue,
    rejection: Option<(Reason, u64)>,
) -> Result<(), h2::Error> {
    let mut response = Response::new(());
    response.headers_mut().insert(APNS_ID, apns_id);
    let Some((reason, since)) = rejection else {
        respond.send_response(response, true)?;
        return Ok(());
    };
    let body = if reason.status() == 410 {
        format!(r#"{{"reason":"{reason}","timestamp":{since}}}"#)
    } else {
        format!(r#"{{"reason":"{reason}"}}"#)
    };
    *response.status_mut() =
        StatusCode::from_u16(reason.status()).expect("Apple's statuses are valid");
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    respond
        .send_response(response, false)?
        .send_data(Bytes::from(body), true)
}

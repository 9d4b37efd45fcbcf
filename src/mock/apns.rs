//! The mock APNs's service: judges each push the way Apple does and answers
//! with Apple's statuses, reasons and `apns-id`s.

use bytes::Bytes;
use h2::RecvStream;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use parking_lot::Mutex;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde_json::{json, Value};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_rustls::TlsAcceptor;
use uuid::Uuid;

use super::certs::StateFiles;
use super::control::Controlled;
use super::jwt::JwtVerifier;
use super::records::{ReceivedPush, Records};
use super::script::StreamFaults;
use super::server::{self, BodyError, Connection, Core, Outcome, Service};
use super::validate::{self, ClientCert, JwtCheck};
use super::{unix_ms, KEY_ID, TEAM_ID};
use crate::apns::jwt::MIN_REFRESH_INTERVAL_SECS;
use crate::apns::reason::Reason;

const APNS_ID: HeaderName = HeaderName::from_static("apns-id");

pub struct ApnsService {
    pub core: Core<Reason>,
    pub records: Records<ReceivedPush>,
    jwt: JwtCheck,
    /// Set for certificate auth: checks client certificates after the handshake.
    client_certs: Option<Arc<dyn ClientCertVerifier>>,
}

impl ApnsService {
    pub fn new(
        files: &StateFiles,
        client_certs: Option<Arc<dyn ClientCertVerifier>>,
        idle_timeout: Option<Duration>,
    ) -> io::Result<Self> {
        let bad_key = |e| io::Error::new(io::ErrorKind::InvalidData, format!("mock team key: {e}"));
        let verifier =
            JwtVerifier::from_p8_pem(&files.auth_key_pem, KEY_ID, TEAM_ID).map_err(bad_key)?;
        Ok(ApnsService {
            core: Core::new(idle_timeout),
            records: Records::default(),
            jwt: JwtCheck::new(verifier),
            client_certs,
        })
    }
}

/// The TLS configuration, and the verifier for certificate auth if enabled.
pub fn tls(
    files: &StateFiles,
    client_ca: Option<&Path>,
) -> io::Result<(TlsAcceptor, Option<Arc<dyn ClientCertVerifier>>)> {
    let Some(path) = client_ca else {
        return Ok((server::tls(&files.server, None)?, None));
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::fs::read(path)?.as_slice()) {
        roots.add(cert?).map_err(io::Error::other)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(io::Error::other)?;
    let reporting = Arc::new(ReportingVerifier(verifier.clone()));
    Ok((server::tls(&files.server, Some(reporting))?, Some(verifier)))
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

/// What a connection to the mock APNs keeps.
pub struct ApnsConn {
    cert: ClientCert,
    /// The provider token last accepted here, and its `iat`.
    token: Mutex<Option<(Box<str>, u64)>>,
}

impl ApnsConn {
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

impl Service for ApnsService {
    type Rejection = Reason;
    type Conn = ApnsConn;
    const NAME: &'static str = "mock APNs";
    const THREAD_NAME: &'static str = "mock-apns";
    const GOAWAY_DEBUG: &'static [u8] = br#"{"reason":"Shutdown"}"#;
    const IDLE_GOAWAY_DEBUG: &'static [u8] = br#"{"reason":"IdleTimeout"}"#;

    fn core(&self) -> &Core<Reason> {
        &self.core
    }

    fn connection(&self, tls: &rustls::ServerConnection) -> ApnsConn {
        let cert = match (&self.client_certs, tls.peer_certificates()) {
            (Some(verifier), Some([leaf, chain @ ..])) => {
                let now = rustls::pki_types::UnixTime::now();
                match verifier.verify_client_cert(leaf, chain, now) {
                    Ok(_) => ClientCert::Valid,
                    Err(_) => ClientCert::Invalid,
                }
            }
            _ => ClientCert::None,
        };
        ApnsConn {
            cert,
            token: Mutex::new(None),
        }
    }

    async fn handle(
        &self,
        conn: &Connection<ApnsConn>,
        req: Request<RecvStream>,
        faults: &StreamFaults<Reason>,
    ) -> Outcome {
        let (parts, body) = req.into_parts();
        match faults.server_error {
            Some(reason) => rejected(echo(&parts.headers), (reason, unix_ms())),
            None => self.process(conn, faults, parts, body).await,
        }
    }
}

impl ApnsService {
    async fn process(
        &self,
        conn: &Connection<ApnsConn>,
        faults: &StreamFaults<Reason>,
        parts: http::request::Parts,
        body: RecvStream,
    ) -> Outcome {
        let new_token = |bearer: &str, iat| match faults.limit_token_updates {
            true => conn.state.token_update(bearer, iat),
            false => Ok(()),
        };
        let ok = match validate::headers(&parts, conn.state.cert, &self.jwt, new_token) {
            Ok(ok) => ok,
            Err(reason) => return rejected(echo(&parts.headers), (reason, unix_ms())),
        };
        // Validation parsed the client's id: the path every accepted push takes.
        let (apns_id, header) = ok.id.unwrap_or_else(new_apns_id);
        let payload = match server::read_body(body, ok.max_payload).await {
            Ok(payload) => payload,
            Err(BodyError::Gone) => return Outcome::Gone,
            Err(BodyError::TooLarge) => {
                return rejected(header, (Reason::PayloadTooLarge, unix_ms()))
            }
        };
        if let Err(reason) = validate::payload(&payload, ok.max_payload) {
            return rejected(header, (reason, unix_ms()));
        }
        if let Some(rejection) = self.core.behaviour.scripted(&ok.token) {
            return rejected(header, rejection);
        }
        let mut headers: HeaderMap = parts.headers;
        headers.remove(http::header::AUTHORIZATION);
        self.records.add(ReceivedPush {
            token: ok.token,
            apns_id,
            headers,
            payload,
            arrived: Instant::now(),
            arrived_at: SystemTime::now(),
            connection: conn.id,
        });
        Outcome::Accepted(answer(header, None))
    }
}

/// The `apns-id` to answer a rejected request with: the client's if it is
/// valid (Apple echoes it as sent), else a new one.
fn echo(headers: &HeaderMap) -> HeaderValue {
    let given = headers
        .get(&APNS_ID)
        .filter(|v| validate::apns_id(v).is_some());
    given.cloned().unwrap_or_else(|| new_apns_id().1)
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

/// A rejection, with the time (ms) a 410 answer names as when the token
/// became invalid.
fn rejected(apns_id: HeaderValue, rejection: (Reason, u64)) -> Outcome {
    Outcome::Rejected(answer(apns_id, Some(rejection)))
}

fn answer(apns_id: HeaderValue, rejection: Option<(Reason, u64)>) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    response.headers_mut().insert(APNS_ID, apns_id);
    let Some((reason, since)) = rejection else {
        return response;
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
    *response.body_mut() = Bytes::from(body);
    response
}

impl Controlled for ApnsService {
    type Record = ReceivedPush;

    fn records(&self) -> &Records<ReceivedPush> {
        &self.records
    }

    fn token_key(token: &str) -> String {
        token.to_ascii_lowercase()
    }

    fn rejection(name: &str, _retry_after: Option<u32>) -> Result<Reason, String> {
        name.parse()
            .map_err(|()| format!("unknown APNs reason {name:?}"))
    }

    fn watch_line(push: &ReceivedPush) -> Value {
        let payload = serde_json::from_slice::<Value>(&push.payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&push.payload).into()));
        json!({
            "token": push.token,
            "topic": push.topic(),
            "push_type": push.header("apns-push-type"),
            "apns_id": push.apns_id.to_string(),
            "payload": payload,
        })
    }
}

//! A plain h2-over-rustls client for driving the mock APNs in tests (the
//! project's own client is tested against the mock, not the other way round).
#![allow(dead_code)]

use bytes::Bytes;
use h2::client::SendRequest;
use http::{Request, StatusCode};
use pushpark::apns::jwt::JwtSigner;
use pushpark::mock::{MockApns, MockConfig, KEY_ID, TEAM_ID};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub const TOKEN: &str = "a3f1c2d4e5b6a7980112233445566778899aabbccddeeff00112233445566778";
pub const TOPIC: &str = "com.example.pushpark.voip";
pub const PAYLOAD: &str = r#"{"aps":{},"call_id":"abc"}"#;

pub fn start(dir: &Path) -> MockApns {
    MockApns::start(MockConfig::new(dir)).expect("mock starts")
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn signer(mock: &MockApns) -> JwtSigner {
    let pem = std::fs::read_to_string(mock.key_path()).unwrap();
    JwtSigner::from_p8_pem(&pem, KEY_ID, TEAM_ID).unwrap()
}

pub fn jwt(mock: &MockApns) -> String {
    signer(mock).sign(now())
}

/// Client TLS settings trusting the mock CA, optionally with a client certificate.
pub fn tls(ca: &Path, client_cert: Option<(&Path, &Path)>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::fs::read(ca).unwrap().as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = rustls_pemfile::certs(&mut std::fs::read(cert).unwrap().as_slice())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls_pemfile::private_key(&mut std::fs::read(key).unwrap().as_slice())
                .unwrap()
                .unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    TlsConnector::from(Arc::new(config))
}

pub struct Conn {
    pub send: SendRequest<Bytes>,
    /// Ends with the connection; its result says how.
    pub driver: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

pub async fn connect_with(mock: &MockApns, tls: TlsConnector) -> Conn {
    connect_to(mock.addr(), tls).await
}

pub async fn connect_to(addr: std::net::SocketAddr, tls: TlsConnector) -> Conn {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tls.connect(name, tcp).await.expect("TLS handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = h2::client::handshake(stream).await.expect("h2 handshake");
    let driver = tokio::spawn(conn);
    Conn { send, driver }
}

pub async fn connect(mock: &MockApns) -> Conn {
    connect_with(mock, tls(&mock.ca_pem_path(), None)).await
}

/// A valid VoIP push request; tests change what they test.
pub fn push(token: &str, jwt: &str) -> http::request::Builder {
    Request::post(format!("https://localhost/3/device/{token}"))
        .header("authorization", format!("bearer {jwt}"))
        .header("apns-topic", TOPIC)
        .header("apns-push-type", "voip")
        .header("apns-priority", "10")
        .header("apns-expiration", "0")
}

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub apns_id: Option<String>,
    pub body: serde_json::Value,
}

impl Answer {
    pub fn reason(&self) -> &str {
        self.body["reason"].as_str().unwrap_or("")
    }
}

pub async fn send(
    send: &mut SendRequest<Bytes>,
    req: http::request::Builder,
    body: &str,
) -> Result<Answer, h2::Error> {
    let req = req.body(()).unwrap();
    let mut ready = send.clone().ready().await?;
    let (response, mut stream) = ready.send_request(req, body.is_empty())?;
    if !body.is_empty() {
        stream.send_data(Bytes::copy_from_slice(body.as_bytes()), true)?;
    }
    let response = response.await?;
    let status = response.status();
    let apns_id = response
        .headers()
        .get("apns-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let body = if data.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&data).expect("error bodies are JSON")
    };
    Ok(Answer {
        status,
        apns_id,
        body,
    })
}

/// One HTTP/2 frame the server sent.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

pub const GOAWAY: u8 = 0x7;
pub const SETTINGS: u8 = 0x4;

impl Frame {
    /// SETTINGS_MAX_CONCURRENT_STREAMS if this SETTINGS frame carries it.
    pub fn max_concurrent_streams(&self) -> Option<u32> {
        if self.kind != SETTINGS {
            return None;
        }
        self.payload
            .chunks(6)
            .filter(|s| s.len() == 6 && u16::from_be_bytes([s[0], s[1]]) == 0x3)
            .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
            .next_back()
    }
}

/// Records every frame the server sends, under the h2 client.
pub struct Sniffer<S> {
    io: S,
    pending: Vec<u8>,
    pub frames: Arc<parking_lot::Mutex<Vec<Frame>>>,
}

impl<S> Sniffer<S> {
    pub fn new(io: S) -> (Self, Arc<parking_lot::Mutex<Vec<Frame>>>) {
        let frames = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sniffer = Sniffer {
            io,
            pending: Vec::new(),
            frames: frames.clone(),
        };
        (sniffer, frames)
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Sniffer<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let start = buf.filled().len();
        let result = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        let new = buf.filled()[start..].to_vec();
        self.pending.extend_from_slice(&new);
        while self.pending.len() >= 9 {
            let h = &self.pending[..9];
            let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
            if self.pending.len() < 9 + len {
                break;
            }
            let frame = Frame {
                kind: h[3],
                flags: h[4],
                stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                payload: self.pending[9..9 + len].to_vec(),
            };
            self.frames.lock().push(frame);
            self.pending.drain(..9 + len);
        }
        result
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Sniffer<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Like `connect`, also returning every frame the server sends.
pub async fn connect_sniffed(mock: &MockApns) -> (Conn, Arc<parking_lot::Mutex<Vec<Frame>>>) {
    let tcp = TcpStream::connect(mock.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tls(&mock.ca_pem_path(), None)
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (sniffer, frames) = Sniffer::new(stream);
    let (send, conn) = h2::client::handshake(sniffer).await.expect("h2 handshake");
    let driver = tokio::spawn(conn);
    (Conn { send, driver }, frames)
}

/// Waits (generously) for a condition that the server's actions make true.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A bare HTTP/2 client writing frames by hand, to do what a well-behaved
/// client (h2) refuses to: open streams past the server's limit.
pub struct RawConn {
    io: tokio_rustls::client::TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(mock: &MockApns) -> RawConn {
        use tokio::io::AsyncWriteExt;
        let tcp = TcpStream::connect(mock.addr()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut io = tls(&mock.ca_pem_path(), None)
            .connect(name, tcp)
            .await
            .unwrap();
        io.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut conn = RawConn {
            io,
            buf: Vec::new(),
        };
        conn.send(SETTINGS, 0, 0, &[]).await;
        conn
    }

    pub async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let len = payload.len() as u32;
        let mut frame = len.to_be_bytes()[1..].to_vec();
        frame.extend([kind, flags]);
        frame.extend(stream.to_be_bytes());
        frame.extend(payload);
        self.io.write_all(&frame).await.unwrap();
    }

    /// A request as one HEADERS frame (END_HEADERS | END_STREAM).
    pub async fn request(&mut self, stream: u32, fields: &[(&str, &str)]) {
        let mut block = Vec::new();
        for (name, value) in fields {
            // Literal header field without indexing, new name, no Huffman.
            block.push(0);
            hpack_int(&mut block, name.len());
            block.extend(name.as_bytes());
            hpack_int(&mut block, value.len());
            block.extend(value.as_bytes());
        }
        self.send(0x1, 0x4 | 0x1, stream, &block).await;
    }

    pub async fn read(&mut self) -> Frame {
        use tokio::io::AsyncReadExt;
        loop {
            if self.buf.len() >= 9 {
                let h = &self.buf[..9];
                let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
                if self.buf.len() >= 9 + len {
                    let frame = Frame {
                        kind: h[3],
                        flags: h[4],
                        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return frame;
                }
            }
            let mut chunk = [0u8; 4096];
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(20), self.io.read(&mut chunk))
                    .await
                    .expect("a frame in time")
                    .unwrap();
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn hpack_int(out: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}

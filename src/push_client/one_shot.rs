//! One request on a connection of its own, closed after the answer: for what a
//! service asks rarely of another host (an OAuth2 token endpoint, once an hour).

use bytes::Bytes;
use http::{header, Method, Request, Uri};
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsConnector;

use super::config::ClientError;
use super::connection::{open_tls, read_body};
use super::tls;

/// Answers past this size are not a token answer.
const MAX_ANSWER: usize = 64 * 1024;

/// Where one-shot requests may go: system roots plus the service's CA file.
#[derive(Clone)]
pub struct OneShot {
    tls: TlsConnector,
    timeout: Duration,
}

impl OneShot {
    pub fn new(ca_file: Option<&std::path::Path>, timeout: Duration) -> Result<Self, ClientError> {
        let config: Arc<rustls::ClientConfig> = tls::client_config(ca_file, None)?;
        Ok(OneShot {
            tls: config.into(),
            timeout,
        })
    }

    /// POSTs `body` to the https `uri` over HTTP/2: the status and body of the
    /// answer, or why there is none (connect, TLS, timeout). Errors never quote `body`.
    pub async fn post(
        &self,
        uri: &Uri,
        content_type: &'static str,
        body: String,
    ) -> Result<(u16, Bytes), String> {
        tokio::time::timeout(self.timeout, self.exchange(uri, content_type, body))
            .await
            .unwrap_or_else(|_| Err(format!("no answer from {uri} within {:?}", self.timeout)))
    }

    async fn exchange(
        &self,
        uri: &Uri,
        content_type: &'static str,
        body: String,
    ) -> Result<(u16, Bytes), String> {
        let (Some("https"), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return Err(format!("{uri} is not an https URL"));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(443);
        let display = uri.authority().map_or(host.to_string(), |a| a.to_string());
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("{host:?} is not a valid host name"))?;
        let stream = open_tls(host, port, &display, &server_name, &self.tls).await?;
        let (mut sender, conn) = h2::client::Builder::new()
            .enable_push(false)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| format!("HTTP/2 handshake with {display} failed: {e}"))?;
        // Ends when `sender` is dropped, with this function.
        tokio::spawn(conn);
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(header::CONTENT_TYPE, content_type)
            .body(())
            .map_err(|e| format!("bad request to {display}: {e}"))?;
        let (answer, mut send) = sender
            .send_request(request, false)
            .map_err(|e| format!("{display}: {e}"))?;
        send.send_data(Bytes::from(body), true)
            .map_err(|e| format!("{display}: {e}"))?;
        let answer = answer.await.map_err(|e| format!("{display}: {e}"))?;
        let status = answer.status().as_u16();
        let body = read_body(answer.into_body(), MAX_ANSWER)
            .await
            .map_err(|e| format!("{display}: the answer's body: {e}"))?;
        Ok((status, body))
    }
}

//! How a client is set up: where to connect, how to authenticate, and its limits.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::jwt::{Clock, KeyError, SystemClock};
use crate::push_client::{self, Backoff, ClientCertificate, Settings};

/// Which APNs server to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `api.push.apple.com:443`
    Production,
    /// `api.sandbox.push.apple.com:443`
    Sandbox,
    /// `api.sandbox.push.apple.com:2197` (for networks that block 443 outbound)
    SandboxAltPort,
    /// Any `host:port`, e.g. a proxy or the mock; usually with `ClientConfig::ca_file`.
    Custom { host: String, port: u16 },
}

impl Endpoint {
    pub fn host(&self) -> &str {
        match self {
            Endpoint::Production => "api.push.apple.com",
            Endpoint::Sandbox | Endpoint::SandboxAltPort => "api.sandbox.push.apple.com",
            Endpoint::Custom { host, .. } => host,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Endpoint::Production | Endpoint::Sandbox => 443,
            Endpoint::SandboxAltPort => 2197,
            Endpoint::Custom { port, .. } => *port,
        }
    }

    /// Parses `production`, `sandbox`, `sandbox:2197` or `HOST:PORT` (`[v6]:PORT` too).
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        match s {
            "production" => return Ok(Endpoint::Production),
            "sandbox" => return Ok(Endpoint::Sandbox),
            "sandbox:2197" => return Ok(Endpoint::SandboxAltPort),
            _ => {}
        }
        let bad = || format!("endpoint {s:?} is not production, sandbox or HOST:PORT");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Endpoint::Custom {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host().contains(':') {
            write!(f, "[{}]:{}", self.host(), self.port())
        } else {
            write!(f, "{}:{}", self.host(), self.port())
        }
    }
}

/// How the provider proves who it is. Debug output never shows key material.
#[derive(Clone)]
pub enum Auth {
    /// ES256 provider tokens signed with the team's `.p8` key.
    Token {
        key_pem: String,
        key_id: String,
        team_id: String,
    },
    /// The app's push certificate and its private key (PEM), sent as the TLS client certificate.
    Certificate { cert_pem: String, key_pem: String },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Token {
                key_id, team_id, ..
            } => write!(f, "Auth::Token {{ key_id: {key_id}, team_id: {team_id} }}"),
            Auth::Certificate { .. } => f.write_str("Auth::Certificate"),
        }
    }
}

/// Everything `ApnsClient::new` needs. Start from [`ClientConfig::new`] and adjust.
#[derive(Clone)]
pub struct ClientConfig {
    pub endpoint: Endpoint,
    /// A PEM file of extra CAs trusted besides the system's (for proxies and the mock).
    pub ca_file: Option<PathBuf>,
    pub auth: Auth,
    /// Threads of the client's own tokio runtime.
    pub worker_threads: usize,
    /// HTTP/2 connections kept open to the endpoint.
    pub connections: usize,
    /// Pushes accepted but not finished; beyond this `submit` answers `QueueFull`.
    pub max_pending: usize,
    /// Time source for provider tokens (tests move time).
    pub clock: Arc<dyn Clock>,
    /// Waits between attempts to (re)connect.
    pub reconnect: Backoff,
    /// Waits before resending a push after a retryable answer (429, 500, 503).
    pub retry: Backoff,
    /// PING after this long without traffic...
    pub ping_interval: Duration,
    /// ...and drop the connection when the answer takes longer than this.
    pub ping_timeout: Duration,
    /// Limit for TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
}

impl ClientConfig {
    pub fn new(endpoint: Endpoint, auth: Auth) -> ClientConfig {
        // The shared client's defaults for a push service.
        let d = Settings::new(endpoint.host(), endpoint.port());
        ClientConfig {
            endpoint,
            ca_file: None,
            auth,
            worker_threads: d.worker_threads,
            connections: d.connections,
            max_pending: d.max_pending,
            clock: Arc::new(SystemClock),
            reconnect: d.reconnect,
            retry: d.retry,
            ping_interval: d.ping_interval,
            ping_timeout: d.ping_timeout,
            connect_timeout: d.connect_timeout,
        }
    }
}

impl ClientConfig {
    /// The shared client's part.
    pub(crate) fn settings(&self) -> Settings {
        Settings {
            host: self.endpoint.host().to_string(),
            port: self.endpoint.port(),
            ca_file: self.ca_file.clone(),
            client_certificate: match &self.auth {
                Auth::Token { .. } => None,
                Auth::Certificate { cert_pem, key_pem } => Some(ClientCertificate {
                    cert_pem: cert_pem.clone(),
                    key_pem: key_pem.clone(),
                }),
            },
            worker_threads: self.worker_threads,
            connections: self.connections,
            max_pending: self.max_pending,
            reconnect: self.reconnect,
            retry: self.retry,
            ping_interval: self.ping_interval,
            ping_timeout: self.ping_timeout,
            connect_timeout: self.connect_timeout,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("ca_file", &self.ca_file)
            .field("auth", &self.auth)
            .field("worker_threads", &self.worker_threads)
            .field("connections", &self.connections)
            .field("max_pending", &self.max_pending)
            .finish_non_exhaustive()
    }
}

/// Why a client could not be created or could not connect. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The provider token key or ids are unusable.
    Key(KeyError),
    /// What every push client checks: CA, client certificate, settings, runtime, connection.
    Client(push_client::ClientError),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Key(e) => write!(f, "APNs key: {e}"),
            ClientError::Client(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<push_client::ClientError> for ClientError {
    fn from(e: push_client::ClientError) -> Self {
        ClientError::Client(e)
    }
}

impl From<KeyError> for ClientError {
    fn from(e: KeyError) -> Self {
        ClientError::Key(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(Endpoint::parse("production"), Ok(Endpoint::Production));
        assert_eq!(Endpoint::parse("sandbox").unwrap().port(), 443);
        assert_eq!(
            Endpoint::parse("sandbox:2197"),
            Ok(Endpoint::SandboxAltPort)
        );
        let custom = Endpoint::parse("127.0.0.1:8443").unwrap();
        assert_eq!((custom.host(), custom.port()), ("127.0.0.1", 8443));
        assert_eq!(Endpoint::parse("[::1]:9").unwrap().to_string(), "[::1]:9");
        for bad in ["", "host", "host:", ":80", "host:99999", "host:0"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_hides_keys() {
        let auth = Auth::Token {
            key_pem: "SECRET-KEY".into(),
            key_id: "TESTKEY001".into(),
            team_id: "TESTTEAM01".into(),
        };
        let cfg = ClientConfig::new(Endpoint::Production, auth);
        let shown = format!("{cfg:?}");
        assert!(shown.contains("TESTKEY001") && !shown.contains("SECRET"));
        let cert = Auth::Certificate {
            cert_pem: "C".into(),
            key_pem: "SECRET-KEY".into(),
        };
        assert!(!format!("{cert:?}").contains("SECRET"));
    }
}

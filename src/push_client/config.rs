//! How a push client connects and paces itself, whichever service it talks to.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Exponential backoff with jitter: the n-th wait is `base * 2^(n-1)` capped at `max`,
/// then scaled by a random factor in [0.5, 1] so many clients do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1 << exp).min(self.max);
        full.mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..=1.0))
    }
}

/// A TLS client certificate and its private key (PEM). Debug output never shows the key.
#[derive(Clone)]
pub struct ClientCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientCertificate")
    }
}

/// Everything `Client::start` needs besides the service and its credentials.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    /// A PEM file of extra CAs trusted besides the system's (for proxies and mocks).
    pub ca_file: Option<PathBuf>,
    /// Sent when the server asks for one (APNs certificate auth).
    pub client_certificate: Option<ClientCertificate>,
    /// Threads of the client's own tokio runtime.
    pub worker_threads: usize,
    /// HTTP/2 connections kept open to the server.
    pub connections: usize,
    /// Pushes accepted but not finished; beyond this `submit` answers `QueueFull`.
    pub max_pending: usize,
    /// Waits between attempts to (re)connect.
    pub reconnect: Backoff,
    /// Waits before resending a push after a retryable answer without `Retry-After`.
    pub retry: Backoff,
    /// PING after this long without traffic...
    pub ping_interval: Duration,
    /// ...and drop the connection when the answer takes longer than this.
    pub ping_timeout: Duration,
    /// Limit for TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
}

impl Settings {
    /// `host:port` with one thread and one connection, and the backoffs, pings and
    /// timeouts that suit a push service.
    pub fn new(host: &str, port: u16) -> Settings {
        Settings {
            host: host.to_string(),
            port,
            ca_file: None,
            client_certificate: None,
            worker_threads: 1,
            connections: 1,
            max_pending: 10_000,
            reconnect: Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
            retry: Backoff {
                base: Duration::from_millis(500),
                max: Duration::from_secs(10),
            },
            ping_interval: Duration::from_secs(60),
            ping_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a client could not be started or could not connect. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The CA file could not be read or holds no certificate.
    Ca(String),
    /// The client certificate or its key are unusable.
    Certificate(String),
    /// A setting is out of range.
    Config(String),
    /// The runtime thread of the `service`'s client could not start.
    Runtime { service: &'static str, why: String },
    /// No connection could be established (from `wait_connected`).
    Connect(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Ca(e) => write!(f, "CA file: {e}"),
            ClientError::Certificate(e) => write!(f, "client certificate: {e}"),
            ClientError::Config(e) => write!(f, "configuration: {e}"),
            ClientError::Runtime { service, why } => {
                write!(f, "cannot start the {service} client: {why}")
            }
            ClientError::Connect(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for ClientError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        for (n, full) in [(1, 1), (2, 2), (3, 4), (7, 60), (100, 60)] {
            let d = b.delay(n);
            let full = Duration::from_secs(full);
            assert!(d <= full && d >= full / 2, "attempt {n}: {d:?}");
        }
    }

    #[test]
    fn debug_hides_the_certificate_key() {
        let cert = ClientCertificate {
            cert_pem: "C".into(),
            key_pem: "SECRET-KEY".into(),
        };
        assert!(!format!("{cert:?}").contains("SECRET"));
    }
}

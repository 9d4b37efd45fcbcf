//! A mock of Firebase Cloud Messaging's HTTP v1 API and of the Google OAuth
//! 2.0 token endpoint its service accounts use, on one HTTP/2-over-TLS port:
//! `POST /token` and `POST /v1/projects/{project}/messages:send`.
//!
//! Runs on the same plumbing, certificates (`ca.pem`), scripts and faults as
//! the mock APNs; its state dir also gets `service-account.json`, whose
//! `token_uri` is the mock's own `/token`.

mod account;
mod message;
mod oauth;
mod service;

pub use account::{ServiceAccount, SERVICE_ACCOUNT};
pub use message::{FcmError, MAX_DATA_BYTES};
pub use oauth::FCM_SCOPE;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::records::{MockStats, Record};
use super::{certs, control, script, server};

/// Server-wide faults of the mock FCM (`limit_token_updates` does not apply).
pub type Faults = script::Faults<FcmError>;
/// A scripted answer of the mock FCM for one registration token.
pub type Scripted = script::Scripted<FcmError>;

/// The project the generated service account belongs to, unless configured.
pub const PROJECT_ID: &str = "pushpark-test";

#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// Port 0 picks a free port; `MockFcm::addr` tells which.
    pub listen: SocketAddr,
    /// Holds the CA, server certificate and service account; created if
    /// absent, reused if present (the account's URLs follow the port).
    pub state_dir: PathBuf,
    /// Runtime threads; 1 (the default) runs the mock on one thread.
    pub worker_threads: usize,
    pub project_id: String,
    /// How long issued access tokens live (Google: 3599 s); short ones make
    /// clients refresh.
    pub token_lifetime: Duration,
    /// Connections that carried no stream for this long get GOAWAY.
    pub idle_timeout: Option<Duration>,
}

impl FcmConfig {
    /// Loopback, a free port, one worker thread, Google's token lifetime.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        FcmConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: state_dir.into(),
            worker_threads: 1,
            project_id: PROJECT_ID.into(),
            token_lifetime: Duration::from_secs(3599),
            idle_timeout: None,
        }
    }
}

/// One message the mock accepted (answered 200).
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// The registration token, as sent.
    pub token: String,
    pub project: String,
    /// The `name` answered: `projects/{project}/messages/0:...`.
    pub name: String,
    pub data: BTreeMap<String, String>,
    /// `android.priority`: NORMAL or HIGH, if given.
    pub priority: Option<String>,
    /// `android.ttl`, e.g. "30s", if given.
    pub ttl: Option<String>,
    /// The whole `message` object.
    pub message: serde_json::Value,
    pub arrived: Instant,
    pub arrived_at: SystemTime,
    /// Which TLS connection carried it (numbered from 1 in accept order).
    pub connection: u64,
}

impl Record for ReceivedMessage {
    fn token(&self) -> &str {
        &self.token
    }
}

pub struct MockFcm {
    state_dir: PathBuf,
    shared: Arc<service::FcmService>,
    running: server::Running,
}

impl MockFcm {
    /// Starts the mock on its own runtime thread(s); it is listening on return.
    pub fn start(cfg: FcmConfig) -> io::Result<MockFcm> {
        let identity = certs::ensure_server(&cfg.state_dir)?;
        let acceptor = server::tls(&identity, None)?;
        // Bound first: the service account names the port.
        let listener = std::net::TcpListener::bind(cfg.listen)?;
        let addr = listener.local_addr()?;
        let account = certs::in_state_dir(&cfg.state_dir, |dir| {
            account::ensure(dir, addr, &cfg.project_id)
        })?;
        let shared = Arc::new(service::FcmService::new(
            server::Core::new(cfg.idle_timeout),
            account,
            oauth::Tokens::new(cfg.token_lifetime),
        ));
        let running =
            server::Running::start(listener, cfg.worker_threads, acceptor, shared.clone())?;
        Ok(MockFcm {
            state_dir: cfg.state_dir,
            shared,
            running,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    /// The CA that signed the mock's server certificate: trust it to connect.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.state_dir.join(certs::CA_CERT)
    }

    /// The service-account key file a client authenticates with.
    pub fn service_account_path(&self) -> PathBuf {
        self.state_dir.join(SERVICE_ACCOUNT)
    }

    pub fn service_account(&self) -> &ServiceAccount {
        &self.shared.account.json
    }

    pub fn script(&self, token: &str, outcome: Scripted) {
        self.shared.core.behaviour.script(token.to_owned(), outcome);
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.core.behaviour.set_faults(faults);
    }

    /// Answer the next `n` token requests 503 (replaces an earlier count).
    pub fn reject_token_requests(&self, n: u32) {
        self.shared.tokens.reject_next(n);
    }

    /// Every accepted message (the latest `limit` if a record limit is set),
    /// in arrival order.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.shared.records.all()
    }

    pub fn message_count(&self) -> usize {
        self.shared.records.count()
    }

    /// Keep only the latest `limit` messages in memory (None: all).
    pub fn set_record_limit(&self, limit: Option<usize>) {
        self.shared.records.set_limit(limit);
    }

    /// The oldest message for `token` not returned by an earlier call, waiting
    /// up to `timeout` for it to arrive.
    pub fn wait_for_message(&self, token: &str, timeout: Duration) -> Option<ReceivedMessage> {
        self.shared.records.wait_for(token, timeout)
    }

    /// Every message accepted from now on.
    pub fn subscribe(&self) -> crossbeam_channel::Receiver<ReceivedMessage> {
        self.shared.records.subscribe()
    }

    /// `accepted`/`rejected` count messages; token requests count as streams only.
    pub fn stats(&self) -> MockStats {
        self.shared.core.counters.snapshot()
    }

    /// Serves the JSON-lines control protocol (see `control`) on `listen`.
    pub fn start_control(&self, listen: SocketAddr) -> io::Result<SocketAddr> {
        control::start(&self.running, self.shared.clone(), listen)
    }

    /// Stops listening and closes every connection (dropping does the same).
    pub fn stop(self) {}
}

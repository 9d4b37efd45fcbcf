//! Mocks of Apple's push service (APNs) and of Firebase Cloud Messaging
//! (`fcm`) for tests and demos: real HTTP/2 over TLS servers on loopback that
//! validate, answer and misbehave the way Apple's and Google's do, and record
//! every push they accept.

mod apns;
mod certs;
mod control;
pub mod fcm;
mod jwt;
mod records;
mod script;
mod server;
mod validate;
mod wire;

pub use records::{MockStats, ReceivedPush};

use crate::apns::reason::Reason;

/// Server-wide faults of the mock APNs.
pub type Faults = script::Faults<Reason>;
/// A scripted answer of the mock APNs.
pub type Scripted = script::Scripted<Reason>;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The key id and team id the mock's generated team key belongs to.
pub const KEY_ID: &str = "TESTKEY001";
pub const TEAM_ID: &str = "TESTTEAM01";

#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Port 0 picks a free port; `MockApns::addr` tells which.
    pub listen: SocketAddr,
    /// Holds the CA, certificates and team key; created if absent, reused if present.
    pub state_dir: PathBuf,
    /// Runtime threads; 1 (the default) runs the mock on one thread.
    pub worker_threads: usize,
    /// Certificate auth, like Apple's: the PEM CA file a client certificate
    /// must chain to (`state_dir/ca.pem` signs the generated
    /// `client-cert.pem`). A connection with a valid one needs no JWT; one
    /// with a certificate that does not chain gets 403 BadCertificate.
    pub require_client_cert: Option<PathBuf>,
    /// Like Apple: a connection that carried no stream for this long gets
    /// GOAWAY (NO_ERROR, debug data `{"reason":"IdleTimeout"}`) and is closed.
    /// None (the default): connections stay open.
    pub idle_timeout: Option<Duration>,
}

impl MockConfig {
    /// Loopback, a free port, one worker thread, token auth.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        MockConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: state_dir.into(),
            worker_threads: 1,
            require_client_cert: None,
            idle_timeout: None,
        }
    }
}

pub struct MockApns {
    state_dir: PathBuf,
    shared: Arc<apns::ApnsService>,
    running: server::Running,
}

impl MockApns {
    /// Starts the mock on its own runtime thread(s); it is listening on return.
    pub fn start(cfg: MockConfig) -> io::Result<MockApns> {
        let files = certs::ensure(&cfg.state_dir)?;
        let (acceptor, client_certs) = apns::tls(&files, cfg.require_client_cert.as_deref())?;
        let shared = Arc::new(apns::ApnsService::new(
            &files,
            client_certs,
            cfg.idle_timeout,
        )?);
        let listener = std::net::TcpListener::bind(cfg.listen)?;
        let running =
            server::Running::start(listener, cfg.worker_threads, acceptor, shared.clone())?;
        Ok(MockApns {
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

    /// The team's ES256 key (`AuthKey_TESTKEY001.p8`) the mock accepts JWTs from.
    pub fn key_path(&self) -> PathBuf {
        self.state_dir.join(certs::auth_key_file())
    }

    /// A client certificate (and key) signed by the mock CA, for certificate auth.
    pub fn client_cert_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.state_dir.join(certs::CLIENT_CERT),
            self.state_dir.join(certs::CLIENT_KEY),
        )
    }

    /// The client certificate and key of `client_cert_paths` as a PKCS#12
    /// file protected by `password`, encrypted like a Keychain export.
    pub fn client_p12(&self, password: &str) -> io::Result<Vec<u8>> {
        certs::client_p12(&self.state_dir, password)
    }

    pub fn script(&self, token: &str, outcome: Scripted) {
        let token = token.to_ascii_lowercase();
        self.shared.core.behaviour.script(token, outcome);
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.core.behaviour.set_faults(faults);
    }

    /// Every accepted push (the latest `limit` if a record limit is set), in
    /// arrival order.
    pub fn pushes(&self) -> Vec<ReceivedPush> {
        self.shared.records.all()
    }

    pub fn push_count(&self) -> usize {
        self.shared.records.count()
    }

    /// Keep only the latest `limit` pushes in memory (None: all, the default);
    /// for long runs such as benchmarks. Subscribers still see every push.
    pub fn set_record_limit(&self, limit: Option<usize>) {
        self.shared.records.set_limit(limit);
    }

    /// The oldest push for `token` not returned by an earlier call, waiting up
    /// to `timeout` for it to arrive. Successive calls return successive pushes.
    pub fn wait_for_push(&self, token: &str, timeout: Duration) -> Option<ReceivedPush> {
        let token = token.to_ascii_lowercase();
        self.shared.records.wait_for(&token, timeout)
    }

    /// Every push accepted from now on.
    pub fn subscribe(&self) -> crossbeam_channel::Receiver<ReceivedPush> {
        self.shared.records.subscribe()
    }

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

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

//! A mock of Apple's push service (APNs) for tests and demos: a real HTTP/2
//! over TLS server on loopback that validates, answers and misbehaves the way
//! Apple's does, and records every push it accepts.

mod certs;
mod control;
mod jwt;
mod records;
mod script;
mod server;
mod validate;
mod wire;

pub use records::{MockStats, ReceivedPush};
pub use script::{Faults, Scripted};

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
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
    addr: SocketAddr,
    state_dir: PathBuf,
    shared: Arc<server::Shared>,
    runtime: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MockApns {
    /// Starts the mock on its own runtime thread(s); it is listening on return.
    pub fn start(cfg: MockConfig) -> io::Result<MockApns> {
        let files = certs::ensure(&cfg.state_dir)?;
        let (acceptor, client_certs) = server::tls(&files, cfg.require_client_cert.as_deref())?;
        let shared = Arc::new(server::Shared::new(&files, client_certs, cfg.idle_timeout)?);
        let listener = std::net::TcpListener::bind(cfg.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = if cfg.worker_threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cfg.worker_threads)
                .thread_name("mock-apns-worker")
                .on_thread_start(crate::sigpipe::block)
                .enable_all()
                .build()?
        };
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let handle = runtime.handle().clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let accept = server::accept_loop(listener, acceptor, shared.clone(), stop_rx);
        let thread = std::thread::Builder::new()
            .name("mock-apns".into())
            .spawn(move || {
                crate::sigpipe::block();
                runtime.block_on(accept);
                // Dropping the runtime drops every connection task.
                drop(runtime);
            })?;
        Ok(MockApns {
            addr,
            state_dir: cfg.state_dir,
            shared,
            runtime: handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
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
        self.shared.behaviour.script(token, outcome);
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.behaviour.set_faults(faults);
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
        self.shared.records.wait_for(token, timeout)
    }

    /// Every push accepted from now on.
    pub fn subscribe(&self) -> crossbeam_channel::Receiver<ReceivedPush> {
        self.shared.records.subscribe()
    }

    pub fn stats(&self) -> MockStats {
        self.shared.counters.snapshot()
    }

    /// Serves the JSON-lines control protocol (see `control`) on `listen`.
    pub fn start_control(&self, listen: SocketAddr) -> io::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let _guard = self.runtime.enter();
        let listener = tokio::net::TcpListener::from_std(listener)?;
        self.runtime
            .spawn(control::serve(listener, self.shared.clone()));
        Ok(addr)
    }

    /// Stops listening and closes every connection (dropping does the same).
    pub fn stop(self) {}
}

impl Drop for MockApns {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

//! `pushpark mock-apns`: runs the mock APNs until SIGTERM or SIGINT.

use pushpark::mock::{Faults, MockApns, MockConfig};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8443 (port 0: any free port).
    #[arg(long)]
    listen: SocketAddr,
    /// Directory holding the generated CA and test key (created if absent).
    #[arg(long)]
    state_dir: PathBuf,
    /// Serve the JSON-lines control protocol (watch pushes, script answers,
    /// set faults) on this address.
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Answer every push this many milliseconds late.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Like Apple, close connections idle for this many milliseconds with
    /// GOAWAY {"reason":"IdleTimeout"}; 0 (the default): never.
    #[arg(long, default_value_t = 0)]
    idle_timeout_ms: u64,
    /// How many accepted pushes to keep in memory (watchers see them all).
    #[arg(long, default_value_t = 10_000)]
    keep_pushes: usize,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Certificate auth: accept clients presenting a certificate signed by
    /// the state dir's CA (like client-cert.pem) without a JWT.
    #[arg(long)]
    client_cert_auth: bool,
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    // Signals are caught before "listening on" is printed, so a SIGTERM sent
    // as soon as the line is seen still stops the mock cleanly.
    let signals = Signals::new()?;
    let mock = MockApns::start(MockConfig {
        listen: args.listen,
        require_client_cert: args.client_cert_auth.then(|| args.state_dir.join("ca.pem")),
        state_dir: args.state_dir,
        worker_threads: args.threads,
        idle_timeout: (args.idle_timeout_ms > 0)
            .then(|| Duration::from_millis(args.idle_timeout_ms)),
    })
    .map_err(|e| format!("cannot start the mock APNs on {}: {e}", args.listen))?;
    mock.set_record_limit(Some(args.keep_pushes));
    mock.set_faults(Faults {
        delay: Duration::from_millis(args.delay_ms),
        ..Faults::default()
    });
    let control = args
        .control
        .map(|control| {
            mock.start_control(control)
                .map_err(|e| format!("cannot listen for control on {control}: {e}"))
        })
        .transpose()?;
    announce(control, mock.addr());
    signals.wait();
    mock.stop();
    Ok(ExitCode::SUCCESS)
}

/// Prints the lines scripts wait for: where the control port listens, if
/// any, then `listening on ADDR`.
pub fn announce(control: Option<SocketAddr>, listening: SocketAddr) {
    let mut out = std::io::stdout().lock();
    if let Some(control) = control {
        let _ = writeln!(out, "control on {control}");
    }
    let _ = writeln!(out, "listening on {listening}");
    let _ = out.flush();
}

/// SIGTERM and SIGINT, caught from creation on (shared with `mock-fcm`).
pub struct Signals {
    runtime: tokio::runtime::Runtime,
    term: Signal,
    int: Signal,
}

impl Signals {
    pub fn new() -> Result<Signals, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot create a runtime: {e}"))?;
        let _guard = runtime.enter();
        let term =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let int =
            signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
        drop(_guard);
        Ok(Signals { runtime, term, int })
    }

    pub fn wait(mut self) {
        self.runtime.block_on(async {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
        });
    }
}

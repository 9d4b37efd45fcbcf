//! `pushpark mock-fcm`: runs the mock FCM (and its OAuth token endpoint)
//! until SIGTERM or SIGINT.

use pushpark::mock::fcm::{FcmConfig, MockFcm};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::mock_cmd::{announce, Signals};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8444 (port 0: any free port).
    #[arg(long)]
    listen: SocketAddr,
    /// Directory holding the generated CA and service-account.json (created if absent).
    #[arg(long)]
    state_dir: PathBuf,
    /// Serve the JSON-lines control protocol (watch messages, script answers,
    /// set faults) on this address.
    #[arg(long)]
    control: Option<SocketAddr>,
    /// The Firebase project the service account belongs to.
    #[arg(long, default_value = pushpark::mock::fcm::PROJECT_ID)]
    project_id: String,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, default_value_t = 3599)]
    token_lifetime_secs: u64,
    /// How many accepted messages to keep in memory.
    #[arg(long, default_value_t = 10_000)]
    keep_messages: usize,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let signals = Signals::new()?;
    let mock = MockFcm::start(FcmConfig {
        listen: args.listen,
        state_dir: args.state_dir,
        worker_threads: args.threads,
        project_id: args.project_id,
        token_lifetime: Duration::from_secs(args.token_lifetime_secs),
        idle_timeout: None,
    })
    .map_err(|e| format!("cannot start the mock FCM on {}: {e}", args.listen))?;
    mock.set_record_limit(Some(args.keep_messages));
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

//! `pushpark fcm send`, `pushpark fcm bench` and `pushpark fcm token`: check a
//! service account with one message to a device, measure throughput (against the
//! mock), or print the access token for other load tools.

use crate::push_bench;
use pushpark::apns::jwt::SystemClock;
use pushpark::fcm::{fetch_access_token, FcmClient, Message, ServiceAccount, TOKEN_TIMEOUT};
use pushpark::push_client::OneShot;
use pushpark::push_client::{Outcome, Settings};
use serde_json::json;
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Send one data message and print the outcome; exits 0 only when delivered.
    Send(Target),
    /// Send many messages and print throughput and latency (as `apns bench`).
    Bench(BenchArgs),
    /// Print the `authorization` value FCM requests carry (`Bearer ` and the access
    /// token the account's token_uri grants), for load tools such as h2load. It is a
    /// credential, valid about an hour: do not store or share it.
    Token(TokenArgs),
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The service account's JSON key file, as the Firebase console downloads it.
    #[arg(long)]
    service_account: PathBuf,
    /// Extra trusted CA certificates (PEM) for the token_uri, e.g. the mock's ca.pem.
    #[arg(long)]
    ca: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct Target {
    /// The service account's JSON key file, as the Firebase console downloads it.
    #[arg(long)]
    service_account: PathBuf,
    /// The device's FCM registration token.
    #[arg(long)]
    token: String,
    /// The Firebase project (default: the service account's).
    #[arg(long)]
    project: Option<String>,
    /// HOST:PORT of FCM (default: fcm.googleapis.com:443), e.g. the mock's.
    #[arg(long)]
    endpoint: Option<String>,
    /// Extra trusted CA certificates (PEM), e.g. the mock's ca.pem.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Seconds to keep trying a message (and to wait for the connection and token).
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    load: push_bench::Load,
}

pub fn run(cmd: Command) -> Result<ExitCode, String> {
    match cmd {
        Command::Send(t) => send(t),
        Command::Bench(args) => {
            let t = &args.target;
            let (client, message) = connect(
                t,
                args.load.concurrency,
                args.load.threads,
                args.load.connections,
            )?;
            let timeout = Duration::from_secs(t.timeout);
            push_bench::bench(client, message, &args.load, timeout)
        }
        Command::Token(args) => token(args),
    }
}

fn read_account(path: &Path) -> Result<ServiceAccount, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    ServiceAccount::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn token(args: TokenArgs) -> Result<ExitCode, String> {
    let account = read_account(&args.service_account)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let access = runtime.block_on(async {
        let one_shot =
            OneShot::new(args.ca.as_deref(), TOKEN_TIMEOUT).map_err(|e| e.to_string())?;
        fetch_access_token(&account, &one_shot, &SystemClock).await
    })?;
    println!("{}", access.authorization());
    Ok(ExitCode::SUCCESS)
}

/// Reads the key, builds the client and waits for its connection; the message to send.
fn connect(
    t: &Target,
    max_pending: usize,
    threads: usize,
    connections: usize,
) -> Result<(FcmClient, Message), String> {
    let account = read_account(&t.service_account)?;
    let (host, port) = match t.endpoint.as_deref() {
        None => ("fcm.googleapis.com".to_string(), 443),
        Some(e) => match pushpark::Endpoint::parse(e) {
            Ok(pushpark::Endpoint::Custom { host, port }) => (host, port),
            _ => return Err(format!("--endpoint {e:?} is not HOST:PORT")),
        },
    };
    let mut settings = Settings::new(&host, port);
    settings.ca_file = t.ca.clone();
    settings.max_pending = max_pending;
    settings.worker_threads = threads;
    settings.connections = connections;
    let project = t.project.clone().unwrap_or(account.project_id.clone());
    let body = json!({"message": {
        "token": t.token,
        "data": {"pushpark": "test"},
        "android": {"priority": "HIGH", "ttl": format!("{}s", t.timeout)},
    }})
    .to_string();
    let client = FcmClient::new(account, &settings).map_err(|e| e.to_string())?;
    client
        .wait_connected(Duration::from_secs(t.timeout))
        .map_err(|e| e.to_string())?;
    Ok((client, Message { project, body }))
}

fn send(t: Target) -> Result<ExitCode, String> {
    let (client, message) = connect(&t, 1, 1, 1)?;
    let (tx, rx) = mpsc::channel();
    let deadline = Instant::now() + Duration::from_secs(t.timeout);
    client
        .submit(message, deadline, Box::new(move |r| drop(tx.send(r))))
        .map_err(|e| e.to_string())?;
    let r = rx.recv().map_err(|_| "the client stopped".to_string())?;
    let latency_ms = r.latency.as_secs_f64() * 1000.0;
    println!("{} latency_ms={latency_ms:.1}", r.outcome);
    if let Some(why) = &r.last_error {
        println!("last error: {why}");
    }
    Ok(if matches!(r.outcome, Outcome::Delivered) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

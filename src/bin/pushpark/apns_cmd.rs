//! `pushpark apns send`, `pushpark apns bench` and `pushpark apns jwt`.

use crate::push_bench;
use pushpark::apns::jwt::{Clock, JwtSigner, SystemClock};
use pushpark::{ApnsClient, Auth, ClientConfig, ClientError, Endpoint, Outcome, Push, PushType};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Send one push and print the outcome; exits 0 only when delivered.
    Send(Target),
    /// Send many pushes and print throughput and latency.
    Bench(BenchArgs),
    /// Print a provider token (JWT) for the key, for load tools such as h2load.
    Jwt(KeyArgs),
}

#[derive(clap::Args)]
pub struct KeyArgs {
    /// The team's .p8 key (PKCS#8 P-256); with --cert, the certificate's private key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The key's 10-character id (token auth).
    #[arg(long)]
    key_id: Option<String>,
    /// The 10-character team id (token auth).
    #[arg(long)]
    team_id: Option<String>,
}

#[derive(clap::Args)]
pub struct Target {
    /// production, sandbox, sandbox:2197 or HOST:PORT.
    #[arg(long)]
    endpoint: String,
    /// Extra trusted CA certificates (PEM), e.g. the mock's ca.pem.
    #[arg(long)]
    ca: Option<PathBuf>,
    #[command(flatten)]
    key: KeyArgs,
    /// Use certificate auth with this PEM client certificate instead of a provider token.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Certificate auth from a PKCS#12 file (certificate and key, as Keychain
    /// exports them). Its password comes from --p12-password-file or the
    /// PUSHPARK_P12_PASSWORD environment variable, never from the command line.
    #[arg(long, conflicts_with = "cert")]
    p12: Option<PathBuf>,
    /// A file whose first line is the PKCS#12 password.
    #[arg(long, requires = "p12")]
    p12_password_file: Option<PathBuf>,
    /// apns-topic: the app's bundle id (with .voip for VoIP pushes).
    #[arg(long)]
    topic: String,
    /// The device token, hex.
    #[arg(long)]
    token: String,
    #[arg(long, default_value = "voip")]
    push_type: PushType,
    /// The JSON payload.
    #[arg(long, default_value = r#"{"aps":{},"pushpark":"test"}"#)]
    payload: String,
    #[arg(long, default_value_t = 10)]
    priority: u8,
    /// Seconds Apple may hold the push for an offline device (0: now or never).
    #[arg(long, default_value_t = 30)]
    expiration: u64,
    /// Seconds to keep trying a push (and to wait for the connection).
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
        Command::Send(target) => send(target),
        Command::Bench(args) => bench(args),
        Command::Jwt(key) => {
            let (pem, key_id, team_id) = token_key(&key)?;
            let path = key_file(&key)?;
            let signer = JwtSigner::from_p8_pem(&pem, &key_id, &team_id)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            println!("{}", signer.sign(SystemClock.now_unix()));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_file(what: &str, path: &Path) -> Result<String, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn key_file(key: &KeyArgs) -> Result<&Path, String> {
    key.key
        .as_deref()
        .ok_or_else(|| "--key FILE is required".to_string())
}

fn token_key(key: &KeyArgs) -> Result<(String, String, String), String> {
    let key_path = key_file(key)?;
    let (Some(key_id), Some(team_id)) = (&key.key_id, &key.team_id) else {
        return Err("--key-id and --team-id are required with a .p8 key".into());
    };
    Ok((
        read_file("key file", key_path)?,
        key_id.clone(),
        team_id.clone(),
    ))
}

/// Validates the push, builds the client and waits for its connection.
fn connect(
    t: &Target,
    max_pending: usize,
    threads: usize,
    connections: usize,
) -> Result<(ApnsClient, Push), String> {
    let endpoint = Endpoint::parse(&t.endpoint)?;
    let push = Push {
        token: t.token.clone(),
        topic: t.topic.clone(),
        push_type: t.push_type,
        priority: t.priority,
        expiration: Some(match t.expiration {
            0 => 0,
            secs => SystemClock.now_unix() + secs,
        }),
        collapse_id: None,
        payload: t.payload.clone(),
    };
    push.validate().map_err(|e| e.to_string())?;
    let auth = match (&t.p12, &t.cert) {
        (Some(p12), _) => p12_auth(p12, t.p12_password_file.as_deref())?,
        (None, Some(cert)) => Auth::Certificate {
            cert_pem: read_file("certificate file", cert)?,
            key_pem: read_file("key file", key_file(&t.key)?)?,
        },
        (None, None) => {
            let (key_pem, key_id, team_id) = token_key(&t.key)?;
            Auth::Token {
                key_pem,
                key_id,
                team_id,
            }
        }
    };
    let mut cfg = ClientConfig::new(endpoint, auth);
    cfg.ca_file = t.ca.clone();
    cfg.max_pending = max_pending;
    cfg.worker_threads = threads;
    cfg.connections = connections;
    let client = ApnsClient::new(cfg).map_err(|e| match e {
        ClientError::Key(e) => match &t.key.key {
            Some(path) => format!("{}: {e}", path.display()),
            None => e.to_string(),
        },
        e => e.to_string(),
    })?;
    client
        .wait_connected(Duration::from_secs(t.timeout))
        .map_err(|e| e.to_string())?;
    Ok((client, push))
}

/// Where `--p12` looks for the password when no password file is given.
const P12_PASSWORD_ENV: &str = "PUSHPARK_P12_PASSWORD";

fn p12_auth(path: &Path, password_file: Option<&Path>) -> Result<Auth, String> {
    let p12 = std::fs::read(path)
        .map_err(|e| format!("cannot read PKCS#12 file {}: {e}", path.display()))?;
    let password = match password_file {
        Some(file) => read_file("password file", file)?
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        None => std::env::var(P12_PASSWORD_ENV).unwrap_or_default(),
    };
    Auth::from_pkcs12(&p12, &password).map_err(|e| format!("{}: {e}", path.display()))
}

fn send(t: Target) -> Result<ExitCode, String> {
    let (client, push) = connect(&t, 1, 1, 1)?;
    let (tx, rx) = mpsc::channel();
    let deadline = Instant::now() + Duration::from_secs(t.timeout);
    client
        .submit(push, deadline, Box::new(move |r| drop(tx.send(r))))
        .map_err(|e| e.to_string())?;
    let r = rx.recv().map_err(|_| "the client stopped".to_string())?;
    let latency_ms = r.latency.as_secs_f64() * 1000.0;
    let status = match &r.outcome {
        Outcome::Delivered => "status=200 ".to_string(),
        _ => String::new(),
    };
    println!(
        "{} {status}apns-id={} latency_ms={latency_ms:.1}",
        r.outcome, r.apns_id
    );
    if let Some(why) = &r.last_error {
        println!("last error: {why}");
    }
    Ok(if r.outcome == Outcome::Delivered {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn bench(args: BenchArgs) -> Result<ExitCode, String> {
    let t = &args.target;
    let (client, template) = connect(
        t,
        args.load.concurrency,
        args.load.threads,
        args.load.connections,
    )?;
    let timeout = Duration::from_secs(t.timeout);
    push_bench::bench(client, template, &args.load, timeout)
}

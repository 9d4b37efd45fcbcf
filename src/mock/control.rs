//! The control port for out-of-process users (`pushpark mock-apns --control`,
//! `pushpark mock-fcm --control`): plain TCP, one JSON object a line each way.
//! Reasons are the service's: APNs's (`Unregistered`) or FCM's error codes
//! (`UNREGISTERED`; `QUOTA_EXCEEDED` and `UNAVAILABLE` take `"retry_after":N`
//! seconds beside them).
//!
//! - `{"watch":true}` (optionally `"token":".."`): answers `{"ok":true}`,
//!   then one line per push accepted from then on, APNs:
//!   `{"token":..,"topic":..,"push_type":..,"apns_id":..,"payload":{..}}`,
//!   FCM: `{"token":..,"name":..,"data":{..},"priority":..,"ttl":..}`.
//! - `{"script":{"token":"..","reason":"Unregistered"[,"times":N]}}`;
//!   `"reason":null` accepts again.
//! - `{"faults":{"delay_ms":50,"server_error":"ServiceUnavailable",
//!   "server_error_times":N,"goaway_after_streams":N,"goaway_unprocessed":N,
//!   "refuse_streams":N,
//!   "drop_connection_mid_stream":N,"silence_mid_stream":N,
//!   "max_concurrent_streams":1,
//!   "refuse_tls":true,"throttle_after_rejection":true,
//!   "limit_token_updates":true}}`: replaces all
//!   faults; absent fields are healthy.
//! - `{"stats":true}`: answers the counters.
//! - FCM only: `{"reject_token_requests":N}` answers the next N OAuth token
//!   requests 503.
//!
//! Every command is answered `{"ok":true}` (or its data) or `{"error":".."}`.

use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::records::{Record, Records};
use super::script::{Faults, Scripted};
use super::server::{Running, Service};

/// A service the control port drives.
pub trait Controlled: Service {
    type Record: Record;
    fn records(&self) -> &Records<Self::Record>;
    /// `token` as the service compares tokens (APNs: lowercase hex).
    fn token_key(token: &str) -> String;
    /// The rejection named `name`; `retry_after` for those that carry it.
    fn rejection(name: &str, retry_after: Option<u32>) -> Result<Self::Rejection, String>;
    fn watch_line(record: &Self::Record) -> Value;
    fn reject_token_requests(&self, _n: u32) -> Result<(), String> {
        Err(format!("the {} has no token endpoint", Self::NAME))
    }
}

/// Serves the protocol for `shared` on `listen`, on the mock's runtime.
pub fn start<S: Controlled>(
    running: &Running,
    shared: Arc<S>,
    listen: SocketAddr,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    running.spawn_listener(listener, |listener| serve(listener, shared))?;
    Ok(addr)
}

async fn serve<S: Controlled>(listener: TcpListener, shared: Arc<S>) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(client(tcp, shared.clone()));
            }
            Err(e) => {
                log::warn!("{} control: accept failed: {e}", S::NAME);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Command {
    #[serde(default)]
    watch: bool,
    token: Option<String>,
    script: Option<ScriptCmd>,
    faults: Option<FaultsCmd>,
    #[serde(default)]
    stats: bool,
    reject_token_requests: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptCmd {
    token: String,
    reason: Option<String>,
    times: Option<u32>,
    retry_after: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FaultsCmd {
    #[serde(default)]
    delay_ms: u64,
    server_error: Option<String>,
    retry_after: Option<u32>,
    server_error_times: Option<u32>,
    goaway_after_streams: Option<u32>,
    #[serde(default)]
    goaway_unprocessed: u32,
    #[serde(default)]
    refuse_streams: u32,
    #[serde(default)]
    drop_connection_mid_stream: u32,
    #[serde(default)]
    silence_mid_stream: u32,
    max_concurrent_streams: Option<u32>,
    #[serde(default)]
    refuse_tls: bool,
    #[serde(default)]
    throttle_after_rejection: bool,
    #[serde(default)]
    limit_token_updates: bool,
}

async fn client<S: Controlled>(tcp: TcpStream, shared: Arc<S>) {
    let (read, mut write) = tcp.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let cmd = match serde_json::from_str::<Command>(&line) {
            Ok(cmd) => cmd,
            Err(e) => {
                let reply = json!({ "error": format!("bad command: {e}") });
                if send(&mut write, &reply).await.is_err() {
                    return;
                }
                continue;
            }
        };
        if cmd.watch {
            if send(&mut write, &json!({"ok": true})).await.is_ok() {
                watch(write, &*shared, cmd.token).await;
            }
            return;
        }
        let reply = execute(cmd, &*shared).unwrap_or_else(|e| json!({ "error": e }));
        if send(&mut write, &reply).await.is_err() {
            return;
        }
    }
}

fn execute<S: Controlled>(cmd: Command, shared: &S) -> Result<Value, String> {
    if let Some(s) = cmd.script {
        let outcome = match (s.reason, s.times) {
            (None, _) => Scripted::Accept,
            (Some(r), times) => {
                let reason = S::rejection(&r, s.retry_after)?;
                match times {
                    Some(n) => Scripted::RejectNext(reason, n),
                    None => Scripted::Reject(reason),
                }
            }
        };
        shared
            .core()
            .behaviour
            .script(S::token_key(&s.token), outcome);
        return Ok(json!({"ok": true}));
    }
    if let Some(f) = cmd.faults {
        let server_error = f.server_error.as_deref();
        shared.core().behaviour.set_faults(Faults {
            delay: Duration::from_millis(f.delay_ms),
            server_error: server_error
                .map(|r| S::rejection(r, f.retry_after))
                .transpose()?,
            server_error_times: f.server_error_times,
            goaway_after_streams: f.goaway_after_streams,
            goaway_unprocessed: f.goaway_unprocessed,
            refuse_streams: f.refuse_streams,
            drop_connection_mid_stream: f.drop_connection_mid_stream,
            silence_mid_stream: f.silence_mid_stream,
            max_concurrent_streams: f.max_concurrent_streams,
            refuse_tls: f.refuse_tls,
            throttle_after_rejection: f.throttle_after_rejection,
            limit_token_updates: f.limit_token_updates,
        });
        return Ok(json!({"ok": true}));
    }
    if cmd.stats {
        return serde_json::to_value(shared.core().counters.snapshot()).map_err(|e| e.to_string());
    }
    if let Some(n) = cmd.reject_token_requests {
        shared.reject_token_requests(n)?;
        return Ok(json!({"ok": true}));
    }
    Err("expected one of watch, script, faults, stats".into())
}

async fn watch<S: Controlled>(
    mut write: tokio::net::tcp::OwnedWriteHalf,
    shared: &S,
    token: Option<String>,
) {
    let token = token.map(|t| S::token_key(&t));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    shared.records().subscribe_with(move |push| {
        if token.as_deref().is_some_and(|t| t != push.token()) {
            return !tx.is_closed();
        }
        tx.send(S::watch_line(push)).is_ok()
    });
    while let Some(line) = rx.recv().await {
        if send(&mut write, &line).await.is_err() {
            return;
        }
    }
}

async fn send(write: &mut tokio::net::tcp::OwnedWriteHalf, value: &Value) -> std::io::Result<()> {
    let mut line = value.to_string();
    line.push('\n');
    write.write_all(line.as_bytes()).await
}

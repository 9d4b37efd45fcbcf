//! The control port for out-of-process users (`pushpark mock-apns --control`):
//! plain TCP, one JSON object a line each way.
//!
//! - `{"watch":true}` (optionally `"token":"<hex>"`): answers `{"ok":true}`,
//!   then one line per push accepted from then on:
//!   `{"token":..,"topic":..,"push_type":..,"apns_id":..,"payload":{..}}`.
//! - `{"script":{"token":"<hex>","reason":"Unregistered"[,"times":N]}}`;
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
//!
//! Every command is answered `{"ok":true}` (or its data) or `{"error":".."}`.

use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::apns::ApnsService as Shared;
use super::records::ReceivedPush;
use super::{Faults, Scripted};
use crate::apns::reason::Reason;

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(client(tcp, shared.clone()));
            }
            Err(e) => {
                log::warn!("mock APNs control: accept failed: {e}");
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptCmd {
    token: String,
    reason: Option<String>,
    times: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FaultsCmd {
    #[serde(default)]
    delay_ms: u64,
    server_error: Option<String>,
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

async fn client(tcp: TcpStream, shared: Arc<Shared>) {
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
                watch(write, &shared, cmd.token).await;
            }
            return;
        }
        let reply = execute(cmd, &shared).unwrap_or_else(|e| json!({ "error": e }));
        if send(&mut write, &reply).await.is_err() {
            return;
        }
    }
}

fn execute(cmd: Command, shared: &Shared) -> Result<Value, String> {
    if let Some(s) = cmd.script {
        let outcome = match (s.reason, s.times) {
            (None, _) => Scripted::Accept,
            (Some(r), times) => {
                let reason = parse_reason(&r)?;
                match times {
                    Some(n) => Scripted::RejectNext(reason, n),
                    None => Scripted::Reject(reason),
                }
            }
        };
        shared
            .core
            .behaviour
            .script(s.token.to_ascii_lowercase(), outcome);
        return Ok(json!({"ok": true}));
    }
    if let Some(f) = cmd.faults {
        shared.core.behaviour.set_faults(Faults {
            delay: Duration::from_millis(f.delay_ms),
            server_error: f.server_error.as_deref().map(parse_reason).transpose()?,
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
        return serde_json::to_value(shared.core.counters.snapshot()).map_err(|e| e.to_string());
    }
    Err("expected one of watch, script, faults, stats".into())
}

fn parse_reason(name: &str) -> Result<Reason, String> {
    name.parse()
        .map_err(|()| format!("unknown APNs reason {name:?}"))
}

async fn watch(mut write: tokio::net::tcp::OwnedWriteHalf, shared: &Shared, token: Option<String>) {
    let token = token.map(|t| t.to_ascii_lowercase());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    shared.records.subscribe_with(move |push| {
        if token.as_deref().is_some_and(|t| t != push.token) {
            return !tx.is_closed();
        }
        tx.send(push_line(push)).is_ok()
    });
    while let Some(line) = rx.recv().await {
        if send(&mut write, &line).await.is_err() {
            return;
        }
    }
}

fn push_line(push: &ReceivedPush) -> Value {
    let payload = serde_json::from_slice::<Value>(&push.payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&push.payload).into()));
    json!({
        "token": push.token,
        "topic": push.topic(),
        "push_type": push.header("apns-push-type"),
        "apns_id": push.apns_id.to_string(),
        "payload": payload,
    })
}

async fn send(write: &mut tokio::net::tcp::OwnedWriteHalf, value: &Value) -> std::io::Result<()> {
    let mut line = value.to_string();
    line.push('\n');
    write.write_all(line.as_bytes()).await
}

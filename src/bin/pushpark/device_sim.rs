//! `pushpark device-sim`: behaves like the iPhone app, for the end-to-end tests, the demo and the
//! load benchmark. It watches the mock APNs's control port; when a VoIP push for one of its devices
//! arrives it waits the wake delay (the app launching) and REGISTERs with RFC 8599 push parameters,
//! so the parked call is resumed to the device's contact, where a SIP UA (SIPp) answers.
//!
//! It prints one line per step on stdout: `ready`, `push ...`, `registered ...`,
//! `register-failed ...`.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;

/// The push topic's team prefix the app registers with (RFC 8599 pn-param for APNs).
const PN_PARAM: &str = "TESTTEAM01.com.example.app.voip";
/// RFC 3261 timer T1 and the cap of the retransmission interval (T2).
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// RFC 3261 timer F: a REGISTER without final answer after this fails.
const TIMER_F: Duration = Duration::from_secs(32);

#[derive(clap::Args)]
pub struct Args {
    /// The mock APNs's control port (`pushpark mock-apns --control`).
    #[arg(long)]
    control: SocketAddr,
    /// The SIP server the device registers with (UDP).
    #[arg(long)]
    registrar: SocketAddr,
    /// A device, USER:TOKEN:CONTACT_PORT:INSTANCE_UUID (repeatable). Its contact is
    /// sip:USER@127.0.0.1:CONTACT_PORT, where the UA that answers calls listens.
    #[arg(long = "device")]
    devices: Vec<Device>,
    /// Wake every device a push is sent to: register the push payload's `aor` with this contact
    /// port, and the instance derived from the token (see `instance_of`). For the load benchmark.
    #[arg(long)]
    any_contact_port: Option<u16>,
    /// Time from the push's arrival to the REGISTER (the app waking up).
    #[arg(long, default_value_t = 0)]
    wake_delay_ms: u64,
    /// Expires of the wake-up REGISTER.
    #[arg(long, default_value_t = 300)]
    expires: u32,
}

#[derive(Clone, Debug)]
struct Device {
    user: String,
    token: String,
    contact_port: u16,
    instance: String,
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [user, token, port, instance] = parts[..] else {
            return Err(format!(
                "device {s:?}: expected USER:TOKEN:CONTACT_PORT:INSTANCE_UUID"
            ));
        };
        let contact_port = port
            .parse()
            .map_err(|_| format!("device {s:?}: bad port {port:?}"))?;
        Ok(Device {
            user: user.into(),
            token: token.to_ascii_lowercase(),
            contact_port,
            instance: instance.into(),
        })
    }
}

/// The +sip.instance the load benchmark gives the device with this (64 hex digit) token, so the
/// wake-up REGISTER refreshes the binding the benchmark created instead of adding a device.
fn instance_of(token: &str) -> Option<String> {
    let t = token.get(..32)?;
    Some(format!(
        "{}-{}-{}-{}-{}",
        &t[..8],
        &t[8..12],
        &t[12..16],
        &t[16..20],
        &t[20..32]
    ))
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(simulate(args))
}

/// Prints one step line and flushes it at once: the tests and the demo read them as they come.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn simulate(args: Args) -> Result<ExitCode, String> {
    if args.devices.is_empty() && args.any_contact_port.is_none() {
        return Err("give at least one --device, or --any-contact-port".into());
    }
    let sip = Arc::new(Sip::bind(args.registrar).await?);
    tokio::spawn(sip.clone().receive());

    let stream = TcpStream::connect(args.control)
        .await
        .map_err(|e| format!("mock control port {}: {e}", args.control))?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"{\"watch\":true}\n")
        .await
        .map_err(|e| format!("mock control port: {e}"))?;
    let mut lines = BufReader::new(read).lines();
    say("ready");

    let args = Arc::new(args);
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| format!("control port: {e}"))?
    {
        let push: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => return Err(format!("control port sent {line:?}: {e}")),
        };
        // Answers to our own commands ({"ok":true}) carry no token.
        let Some(token) = push["token"].as_str() else {
            continue;
        };
        let Some(device) = device_for(&args, token, &push) else {
            continue;
        };
        let apns_id = push["apns_id"].as_str().unwrap_or("-");
        say(&format!(
            "push user={} token={} apns_id={apns_id}",
            device.user,
            short(token)
        ));
        let (sip, args) = (sip.clone(), args.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(args.wake_delay_ms)).await;
            let started = Instant::now();
            match sip.register(&device, args.expires).await {
                Ok(200..=299) => say(&format!(
                    "registered user={} token={} ms={}",
                    device.user,
                    short(&device.token),
                    started.elapsed().as_millis()
                )),
                Ok(code) => say(&format!(
                    "register-failed user={} status={code}",
                    device.user
                )),
                Err(e) => say(&format!("register-failed user={} error={e}", device.user)),
            }
        });
    }
    Err("the mock's control port closed".into())
}

/// The device a push wakes: a configured one with that token, or (any mode) the payload's AOR.
fn device_for(args: &Args, token: &str, push: &serde_json::Value) -> Option<Device> {
    let token = token.to_ascii_lowercase();
    if let Some(d) = args.devices.iter().find(|d| d.token == token) {
        return Some(d.clone());
    }
    let contact_port = args.any_contact_port?;
    let aor = push["payload"]["aor"].as_str()?;
    let aor = aor.strip_prefix("sip:").unwrap_or(aor);
    let user = aor.split('@').next()?.to_string();
    let instance = instance_of(&token)?;
    Some(Device {
        user,
        token,
        contact_port,
        instance,
    })
}

/// Tokens are secrets of a sort: only their start goes to the output.
fn short(token: &str) -> String {
    format!("{}…", token.get(..8).unwrap_or(token))
}

/// A UDP SIP client that sends REGISTERs and matches final responses by Call-ID.
struct Sip {
    socket: UdpSocket,
    registrar: SocketAddr,
    pending: Mutex<HashMap<String, oneshot::Sender<u16>>>,
    seq: AtomicU64,
}

impl Sip {
    async fn bind(registrar: SocketAddr) -> Result<Sip, String> {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("udp bind: {e}"))?;
        Ok(Sip {
            socket,
            registrar,
            pending: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
        })
    }

    async fn receive(self: Arc<Self>) {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, _)) = self.socket.recv_from(&mut buf).await {
            let Some((code, call_id)) = parse_response(&buf[..n]) else {
                continue;
            };
            if code >= 200 {
                if let Some(tx) = self.pending.lock().unwrap().remove(&call_id) {
                    let _ = tx.send(code);
                }
            }
        }
    }

    /// Sends the REGISTER, retransmitting like RFC 3261 timer E, and returns the final status.
    async fn register(&self, d: &Device, expires: u32) -> Result<u16, String> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let local = self.socket.local_addr().map_err(|e| e.to_string())?;
        let tag = rand::random::<u64>();
        let call_id = format!("{tag:016x}-{n}@device-sim");
        let host = self.registrar.ip();
        let msg = format!(
            "REGISTER sip:{reg} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{tag:x}{n};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@{host}>;tag={tag:x}\r\n\
             To: <sip:{user}@{host}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 REGISTER\r\n\
             Contact: <sip:{user}@127.0.0.1:{port};pn-provider=apns;pn-prid={token};\
             pn-param={PN_PARAM}>;+sip.instance=\"<urn:uuid:{instance}>\";expires={expires}\r\n\
             Expires: {expires}\r\n\
             User-Agent: pushpark-device-sim\r\n\
             Content-Length: 0\r\n\r\n",
            reg = self.registrar,
            user = d.user,
            port = d.contact_port,
            token = d.token,
            instance = d.instance,
        );
        let (tx, mut rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(call_id.clone(), tx);
        let deadline = Instant::now() + TIMER_F;
        let mut interval = T1;
        let result = loop {
            if let Err(e) = self.socket.send_to(msg.as_bytes(), self.registrar).await {
                break Err(format!("send: {e}"));
            }
            match tokio::time::timeout(interval, &mut rx).await {
                Ok(Ok(code)) => break Ok(code),
                Ok(Err(_)) => break Err("receiver gone".into()),
                Err(_) if Instant::now() >= deadline => break Err("timeout".into()),
                Err(_) => interval = (interval * 2).min(T2),
            }
        };
        self.pending.lock().unwrap().remove(&call_id);
        result
    }
}

/// The status code and Call-ID of a SIP response; None for requests and garbage.
fn parse_response(datagram: &[u8]) -> Option<(u16, String)> {
    let text = std::str::from_utf8(datagram).ok()?;
    let mut lines = text.split("\r\n");
    let code = lines
        .next()?
        .strip_prefix("SIP/2.0 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let call_id = lines.take_while(|l| !l.is_empty()).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("Call-ID") || name.eq_ignore_ascii_case("i"))
            .then(|| value.trim().to_string())
    })?;
    Some((code, call_id))
}

//! `pushpark device-sim`: behaves like the phone apps, for the end-to-end tests, the demo and
//! the load benchmark. It watches the control ports of the mock APNs (iPhones: VoIP pushes) and
//! of the mock FCM (Android phones: data messages); when a push for one of its phones arrives it
//! waits the wake delay (the app launching) and REGISTERs with RFC 8599 push parameters, so the
//! parked call is resumed to the phone's contact, where a SIP UA (SIPp) answers.
//!
//! It prints one line per step on stdout: `ready`, `push ...`, `registered ...`,
//! `register-failed ...`.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

/// The push topic's team prefix the iPhone app registers with (RFC 8599 pn-param for APNs).
const APNS_PN_PARAM: &str = "TESTTEAM01.com.example.app.voip";
/// RFC 3261 timer T1 and the cap of the retransmission interval (T2).
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// RFC 3261 timer F: a REGISTER without final answer after this fails.
const TIMER_F: Duration = Duration::from_secs(32);

#[derive(clap::Args)]
pub struct Args {
    /// The mock APNs's control port (`pushpark mock-apns --control`): pushes to the iPhones.
    #[arg(long, required_unless_present = "fcm_control")]
    control: Option<SocketAddr>,
    /// The mock FCM's control port (`pushpark mock-fcm --control`): pushes to the Android phones.
    #[arg(long)]
    fcm_control: Option<SocketAddr>,
    /// The SIP server the phones register with (UDP).
    #[arg(long)]
    registrar: SocketAddr,
    /// An iPhone (repeatable). Its contact is sip:USER@127.0.0.1:CONTACT_PORT, where the UA
    /// that answers calls listens.
    #[arg(
        long = "device",
        value_name = "USER:TOKEN:CONTACT_PORT:INSTANCE_UUID",
        value_parser = Phone::iphone
    )]
    iphones: Vec<Phone>,
    /// An Android phone (repeatable), of the app of Firebase project PROJECT; its FCM
    /// registration token comes last, as tokens hold colons.
    #[arg(
        long = "android",
        value_name = "USER:CONTACT_PORT:INSTANCE_UUID:PROJECT:TOKEN",
        value_parser = Phone::android
    )]
    androids: Vec<Phone>,
    /// Wake every iPhone a push is sent to: register the push payload's `aor` with this contact
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

/// Who delivers a phone's pushes: Apple to iPhones, Google to Android phones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Provider {
    Apns,
    Fcm,
}

impl Provider {
    /// The RFC 8599 pn-provider value.
    fn name(self) -> &'static str {
        match self {
            Provider::Apns => "apns",
            Provider::Fcm => "fcm",
        }
    }

    /// `token` as the service compares tokens: APNs's are hex in any case, FCM's are
    /// case-sensitive.
    fn token_key(self, token: &str) -> String {
        match self {
            Provider::Apns => token.to_ascii_lowercase(),
            Provider::Fcm => token.to_string(),
        }
    }

    /// The id the mock gave the push (its watch line's `apns_id` or FCM's message `name`),
    /// labelled for the output.
    fn push_id(self, push: &serde_json::Value) -> String {
        let (label, field) = match self {
            Provider::Apns => ("apns_id", &push["apns_id"]),
            Provider::Fcm => ("fcm_name", &push["name"]),
        };
        format!("{label}={}", field.as_str().unwrap_or("-"))
    }
}

/// A phone the simulator wakes: its user, RFC 8599 push parameters and SIP contact.
#[derive(Clone, Debug)]
struct Phone {
    user: String,
    provider: Provider,
    /// pn-prid: the device token (iPhone) or registration token (Android).
    token: String,
    /// pn-param: the APNs topic (iPhone) or the Firebase project id (Android).
    param: String,
    contact_port: u16,
    instance: String,
}

impl Phone {
    fn iphone(s: &str) -> Result<Phone, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [user, token, port, instance] = parts[..] else {
            return Err(format!(
                "device {s:?}: expected USER:TOKEN:CONTACT_PORT:INSTANCE_UUID"
            ));
        };
        Ok(Phone {
            user: user.into(),
            provider: Provider::Apns,
            token: Provider::Apns.token_key(token),
            param: APNS_PN_PARAM.into(),
            contact_port: contact_port(s, port)?,
            instance: instance.into(),
        })
    }

    fn android(s: &str) -> Result<Phone, String> {
        let parts: Vec<&str> = s.splitn(5, ':').collect();
        let [user, port, instance, project, token] = parts[..] else {
            return Err(format!(
                "android {s:?}: expected USER:CONTACT_PORT:INSTANCE_UUID:PROJECT:TOKEN"
            ));
        };
        Ok(Phone {
            user: user.into(),
            provider: Provider::Fcm,
            token: token.into(),
            param: project.into(),
            contact_port: contact_port(s, port)?,
            instance: instance.into(),
        })
    }
}

fn contact_port(spec: &str, port: &str) -> Result<u16, String> {
    port.parse()
        .map_err(|_| format!("{spec:?}: bad port {port:?}"))
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

/// A push as a mock's control port reported it, or why that port can report no more.
type Reported = Result<(Provider, serde_json::Value), String>;

async fn simulate(args: Args) -> Result<ExitCode, String> {
    if args.iphones.is_empty() && args.androids.is_empty() && args.any_contact_port.is_none() {
        return Err("give at least one --device or --android, or --any-contact-port".into());
    }
    let sip = Arc::new(Sip::bind(args.registrar).await?);
    tokio::spawn(sip.clone().receive());

    // Both mocks watched before `ready`: a push sent after it is seen.
    let (tx, mut reported) = mpsc::unbounded_channel();
    for (provider, control) in [
        (Provider::Apns, args.control),
        (Provider::Fcm, args.fcm_control),
    ] {
        if let Some(control) = control {
            tokio::spawn(watch(provider, control, tx.clone()).await?);
        }
    }
    drop(tx);
    say("ready");

    let args = Arc::new(args);
    while let Some(report) = reported.recv().await {
        let (provider, push) = report?;
        // Answers to our own commands ({"ok":true}) carry no token.
        let Some(token) = push["token"].as_str() else {
            continue;
        };
        let Some(phone) = phone_for(&args, provider, token, &push) else {
            continue;
        };
        say(&format!(
            "push user={} token={} {}",
            phone.user,
            short(token),
            provider.push_id(&push)
        ));
        let (sip, args) = (sip.clone(), args.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(args.wake_delay_ms)).await;
            let started = Instant::now();
            match sip.register(&phone, args.expires).await {
                Ok(200..=299) => say(&format!(
                    "registered user={} token={} ms={}",
                    phone.user,
                    short(&phone.token),
                    started.elapsed().as_millis()
                )),
                Ok(code) => say(&format!(
                    "register-failed user={} status={code}",
                    phone.user
                )),
                Err(e) => say(&format!("register-failed user={} error={e}", phone.user)),
            }
        });
    }
    Err("every mock's control port closed".into())
}

/// Subscribes to a mock's pushes; the returned task reports each one, then why it stopped.
async fn watch(
    provider: Provider,
    control: SocketAddr,
    tx: mpsc::UnboundedSender<Reported>,
) -> Result<impl std::future::Future<Output = ()>, String> {
    let port = format!("the {} mock's control port {control}", provider.name());
    let stream = TcpStream::connect(control)
        .await
        .map_err(|e| format!("{port}: {e}"))?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"{\"watch\":true}\n")
        .await
        .map_err(|e| format!("{port}: {e}"))?;
    let mut lines = BufReader::new(read).lines();
    Ok(async move {
        // `write` lives as long as the watch: dropping it would half-close the connection.
        let _write = write;
        let end = loop {
            let line = match lines.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => break format!("{port} closed"),
                Err(e) => break format!("{port}: {e}"),
            };
            match serde_json::from_str(&line) {
                Ok(push) => {
                    if tx.send(Ok((provider, push))).is_err() {
                        return;
                    }
                }
                Err(e) => break format!("{port} sent {line:?}: {e}"),
            }
        };
        let _ = tx.send(Err(end));
    })
}

/// The phone a push wakes: a configured one with that token, or (any mode) an iPhone of the
/// payload's AOR.
fn phone_for(
    args: &Args,
    provider: Provider,
    token: &str,
    push: &serde_json::Value,
) -> Option<Phone> {
    let token = provider.token_key(token);
    if let Some(p) = args
        .iphones
        .iter()
        .chain(&args.androids)
        .find(|p| p.provider == provider && p.token == token)
    {
        return Some(p.clone());
    }
    if provider != Provider::Apns {
        return None;
    }
    let contact_port = args.any_contact_port?;
    let aor = push["payload"]["aor"].as_str()?;
    let aor = aor.strip_prefix("sip:").unwrap_or(aor);
    let user = aor.split('@').next()?.to_string();
    let instance = instance_of(&token)?;
    Some(Phone {
        user,
        provider,
        token,
        param: APNS_PN_PARAM.into(),
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
    async fn register(&self, d: &Phone, expires: u32) -> Result<u16, String> {
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
             Contact: <sip:{user}@127.0.0.1:{port};pn-provider={provider};pn-prid={token};\
             pn-param={param}>;+sip.instance=\"<urn:uuid:{instance}>\";expires={expires}\r\n\
             Expires: {expires}\r\n\
             User-Agent: pushpark-device-sim\r\n\
             Content-Length: 0\r\n\r\n",
            reg = self.registrar,
            user = d.user,
            port = d.contact_port,
            provider = d.provider.name(),
            token = d.token,
            param = d.param,
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

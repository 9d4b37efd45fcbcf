//! Real third-party SIP clients from Debian for the end-to-end tests: Linphone's `linphonec`
//! (liblinphone 5.1) as the iPhone app and `baresip` as the user's desktop softphone, plus the
//! waker that plays iOS: on a VoIP push for the phone's token it starts linphonec again.
//! Both clients run with private config files in the test's directory, on loopback only, no
//! sound card (linphonec gets none, baresip loads no audio module), and are killed with the
//! rig's process groups.

use std::fs;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::rig::{free_port, wait_for, Mock, Proc, SOON};

/// The app's APNs identity: the Team ID the mock's key belongs to, and its bundle.
pub const TEAM_ID: &str = "TESTTEAM01";
pub const BUNDLE: &str = "com.example.phone";

/// Each user's digest password: both clients answer Kamailio's challenge with it.
pub fn password(user: &str) -> String {
    format!("pw-{user}")
}

/// The subscriber table Kamailio's auth_db checks REGISTERs against (an SQLite file made
/// with Debian's schema for Kamailio), for `AUTH_DB` of the test config.
pub struct Subscribers {
    pub file: PathBuf,
}

impl Subscribers {
    pub fn create(dir: &Path) -> Subscribers {
        let file = dir.join("kamailio.sqlite");
        let schema = ["standard", "auth_db"]
            .map(|t| fs::read_to_string(format!("/usr/share/kamailio/db_sqlite/{t}-create.sql")))
            .map(|s| s.expect("Kamailio's SQLite schema (kamailio-sqlite-modules)"))
            .concat();
        let subscribers = Subscribers { file };
        subscribers.sql(&schema);
        subscribers
    }

    /// `db_url` for Kamailio: four slashes for an absolute path.
    pub fn url(&self) -> String {
        format!("\"sqlite:///{}\"", self.file.display())
    }

    /// Adds `user` (realm 127.0.0.1, the clients' domain) with `password(user)`, once.
    pub fn add(&self, user: &str) {
        let ha1 = Command::new("sh")
            .args(["-c", "printf %s \"$1\" | md5sum | cut -c1-32", "sh"])
            .arg(format!("{user}:127.0.0.1:{}", password(user)))
            .output()
            .expect("md5sum");
        let ha1 = String::from_utf8(ha1.stdout).unwrap();
        self.sql(&format!(
            "INSERT OR IGNORE INTO subscriber (username, domain, ha1) \
             VALUES ('{user}', '127.0.0.1', '{}');",
            ha1.trim()
        ));
    }

    fn sql(&self, sql: &str) {
        let mut sqlite = Command::new("sqlite3")
            .arg(&self.file)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sqlite3 (scripts/deps installs it)");
        sqlite
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        assert!(sqlite.wait().unwrap().success(), "sqlite3 failed on {sql}");
    }
}

/// Fails clearly when a client is not installed (instead of timing out waiting for it).
pub fn require_clients() {
    for program in ["linphonec", "baresip", "stdbuf"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()));
        assert!(
            found,
            "{program} not found: install linphone-cli and baresip (scripts/deps)"
        );
    }
}

fn hex_token() -> String {
    (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// The push tokens the app hands liblinphone, in Linphone's own Contact style (RFC 8599
/// parameters with the token kind after a colon, as Linphone's iOS app registers).
#[derive(Clone, Debug)]
pub struct PushTokens {
    /// The PushKit (VoIP) token: what pushpark must push.
    pub voip: String,
    /// A remote-notification token too: the `remote&voip` form.
    pub remote: Option<String>,
}

impl PushTokens {
    /// `pn-prid=<voip>:voip;pn-param=<team>.<bundle>.voip`
    pub fn voip() -> PushTokens {
        PushTokens {
            voip: hex_token(),
            remote: None,
        }
    }

    /// `pn-prid=<remote>:remote&<voip>:voip;pn-param=<team>.<bundle>.remote&voip`
    pub fn remote_and_voip() -> PushTokens {
        PushTokens {
            voip: hex_token(),
            remote: Some(hex_token()),
        }
    }

    /// The APNs topic of a VoIP push to this app.
    pub fn voip_topic(&self) -> String {
        format!("{BUNDLE}.voip")
    }

    /// liblinphone's `push_parameters`: it copies them into the Contact URI.
    fn parameters(&self) -> String {
        let (prid, services) = match &self.remote {
            None => (format!("{}:voip", self.voip), "voip"),
            Some(r) => (format!("{r}:remote&{}:voip", self.voip), "remote&voip"),
        };
        format!("pn-provider=apns;pn-prid={prid};pn-param={TEAM_ID}.{BUNDLE}.{services}")
    }
}

/// One SIP message from liblinphone's debug log, with whether it was received or sent.
#[derive(Clone, Debug)]
pub struct SipMessage {
    pub received: bool,
    pub text: String,
}

impl SipMessage {
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }

    /// The value of the first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// A request with this method (not a response to one).
    pub fn is_request(&self, method: &str) -> bool {
        self.first_line().starts_with(&format!("{method} "))
    }
}

/// Linphone's console client as the iPhone app: `linphonec -c <its rc>`, debug log to a file.
/// It keeps one config across starts, so its `+sip.instance` (`[misc] uuid`) and Contact stay
/// the same, as an app's do; `kill` leaves the binding registered, as iOS does to an app.
pub struct Linphone {
    pub user: String,
    server: String,
    pub port: u16,
    pub instance: String,
    pub push: Option<PushTokens>,
    auto_answer: bool,
    dir: PathBuf,
    proc: Option<Proc>,
    starts: u32,
}

impl Linphone {
    /// Writes the config for `user` at `server` (host:port) and starts linphonec; returns at
    /// once (see `wait_registered`).
    pub fn start(
        dir: &Path,
        server: &str,
        user: &str,
        push: Option<PushTokens>,
        auto_answer: bool,
    ) -> Linphone {
        let dir = dir.join(format!("linphone-{user}"));
        fs::create_dir_all(&dir).expect("linphone dir");
        let mut phone = Linphone {
            user: user.into(),
            server: server.into(),
            port: free_port(),
            instance: uuid::Uuid::new_v4().to_string(),
            push,
            auto_answer,
            dir,
            proc: None,
            starts: 0,
        };
        phone.write_config();
        phone.spawn();
        phone
    }

    /// Its linphonerc. push_notification (core) and push_notification_allowed (account) make
    /// liblinphone put the push_parameters into the Contact; without a database path it does
    /// not start at all (it opens ~/.local/share/linphone/linphone.db); TCP/TLS ports 0: UDP
    /// only; `[misc] uuid` is its +sip.instance.
    fn write_config(&self) {
        let mut rc = format!(
            "[sip]\nsip_port={}\nsip_tcp_port=0\nsip_tls_port=0\nbind_address=127.0.0.1\n\
             use_ipv6=0\nguess_hostname=0\nregister_only_when_network_is_up=0\n\
             default_proxy=0\ninc_timeout=120\n\n\
             [net]\npush_notification={}\n\n\
             [rtp]\naudio_rtp_port={}\n\n\
             [storage]\nbackend=sqlite3\nuri={}\n\n\
             [misc]\nuuid={}\n\n\
             [proxy_0]\nreg_proxy=<sip:{};transport=udp>\n\
             reg_identity=sip:{}@127.0.0.1\nreg_expires=3600\nreg_sendregister=1\npublish=0\n",
            self.port,
            u8::from(self.push.is_some()),
            free_port(),
            self.dir.join("linphone.db").display(),
            self.instance,
            self.server,
            self.user,
        );
        if let Some(p) = &self.push {
            rc += &format!(
                "push_notification_allowed=1\nremote_push_notification_allowed={}\n\
                 push_parameters={}\n",
                u8::from(p.remote.is_some()),
                p.parameters()
            );
        }
        rc += &format!(
            "\n[auth_info_0]\nusername={}\npasswd={}\nrealm=127.0.0.1\ndomain=127.0.0.1\n",
            self.user,
            password(&self.user)
        );
        fs::write(self.dir.join("linphonerc"), rc).expect("write linphonerc");
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = self.sip_log_path(self.starts);
        // stdbuf: its console lines reach the log as they are printed.
        let mut cmd = Command::new("stdbuf");
        // HOME: linphonec keeps its history and ZRTP cache there.
        cmd.env("HOME", &self.dir)
            .args(["-oL", "linphonec", "-c"])
            .arg(self.dir.join("linphonerc"))
            .args(["-d", "6", "-l"])
            .arg(&log);
        if self.auto_answer {
            cmd.arg("-a");
        }
        let name = format!("linphonec-{}", self.starts);
        // linphonec ends at the end of its stdin: keep a pipe open.
        self.proc = Some(Proc::spawn_with_input(cmd, &name, &self.dir));
    }

    fn sip_log_path(&self, start: u32) -> PathBuf {
        self.dir.join(format!("liblinphone-{start}.log"))
    }

    fn proc(&self) -> &Proc {
        self.proc.as_ref().expect("linphonec not running")
    }

    /// Its console output of the current start.
    pub fn console(&self) -> String {
        self.proc().log_text()
    }

    /// liblinphone's debug log of the current start.
    pub fn debug_log(&self) -> String {
        fs::read_to_string(self.sip_log_path(self.starts)).unwrap_or_default()
    }

    /// Waits for the account's registration to succeed (liblinphone's own state change).
    pub fn wait_registered(&self) {
        wait_for("linphone registered", SOON, || {
            self.debug_log()
                .contains("to [LinphoneRegistrationOk]")
                .then_some(())
        });
    }

    /// Waits until its console shows `needle` `n` times (this start), e.g. "connected.".
    pub fn wait_console(&self, needle: &str, n: usize) {
        wait_for(&format!("linphonec printed {needle:?} x{n}"), SOON, || {
            (self.console().matches(needle).count() >= n).then_some(())
        });
    }

    /// Types a command at its prompt (e.g. "answer", "terminate", "call sip:bob@127.0.0.1").
    pub fn command(&mut self, line: &str) {
        self.proc
            .as_mut()
            .expect("linphonec not running")
            .send_line(line);
    }

    /// SIGKILL: the app is gone without unregistering; its binding stays in the registrar.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts linphonec again with the same config (same port, instance and Contact).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts linphonec again on another UDP port (a relaunched app's new socket): a new
    /// Contact, the same instance.
    pub fn restart_on_new_port(&mut self) {
        self.kill();
        self.port = free_port();
        self.write_config();
        self.spawn();
    }

    /// Every SIP message received or sent, over all starts, from the debug log.
    pub fn sip_messages(&self) -> Vec<SipMessage> {
        (1..=self.starts)
            .flat_map(|n| {
                parse_sip_log(&fs::read_to_string(self.sip_log_path(n)).unwrap_or_default())
            })
            .collect()
    }

    /// The requests with this method it received, over all starts, each once.
    pub fn received(&self, method: &str) -> Vec<SipMessage> {
        let mut seen = std::collections::HashSet::new();
        self.sip_messages()
            .into_iter()
            .filter(|m| m.received && m.is_request(method))
            // A retransmission (same top Via branch and CSeq) counts once.
            .filter(|m| {
                seen.insert((
                    m.header("Via").map(str::to_string),
                    m.header("CSeq").map(str::to_string),
                ))
            })
            .collect()
    }

    /// The status codes of the responses to INVITEs it sent, over all starts.
    pub fn invite_answers(&self) -> Vec<u16> {
        self.sip_messages()
            .iter()
            .filter(|m| !m.received && m.header("CSeq").is_some_and(|c| c.ends_with(" INVITE")))
            .filter_map(|m| {
                m.first_line()
                    .strip_prefix("SIP/2.0 ")?
                    .get(..3)?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// The Contact of the last REGISTER it sent.
    pub fn register_contact(&self) -> String {
        self.sip_messages()
            .iter()
            .rev()
            .find(|m| !m.received && m.is_request("REGISTER"))
            .and_then(|m| m.header("Contact").map(str::to_string))
            .expect("linphone sent no REGISTER")
    }
}

/// Splits a liblinphone debug log into the SIP messages belle-sip logged: a record starting
/// "... received [N] new bytes from [...]:" or "... message sent to [...], size: [N] bytes",
/// followed by the message, up to the next timestamped line.
fn parse_sip_log(log: &str) -> Vec<SipMessage> {
    let stamped = |l: &str| l.len() > 20 && l.as_bytes()[4] == b'-' && l.as_bytes()[10] == b' ';
    let mut out = Vec::new();
    let mut current: Option<SipMessage> = None;
    for line in log.lines() {
        if stamped(line) {
            out.extend(current.take());
            let received = line.contains("new bytes from [");
            if received || line.contains("message sent to [") {
                current = Some(SipMessage {
                    received,
                    text: String::new(),
                });
            }
        } else if let Some(m) = current.as_mut() {
            m.text.push_str(line.trim_end_matches('\r'));
            m.text.push('\n');
        }
    }
    out.extend(current);
    out.retain(|m| m.first_line().contains("SIP/2.0"));
    out
}

/// iOS for one phone: when the mock APNs accepts a VoIP push for the phone's token, it starts
/// the (killed) app again. Held, it waits for `release` after the push, so the test decides
/// when the phone wakes.
pub struct Waker {
    thread: Option<JoinHandle<(Linphone, serde_json::Value)>>,
    release: Option<Sender<()>>,
}

impl Waker {
    /// Watches the mock for pushes to `phone`'s VoIP token (returns once the mock watches).
    pub fn start(mock: &Mock, phone: Linphone, held: bool) -> Waker {
        let token = phone
            .push
            .as_ref()
            .expect("phone without push")
            .voip
            .clone();
        let mut stream = TcpStream::connect(mock.control.addr).expect("connect control port");
        stream.set_read_timeout(Some(SOON * 3)).unwrap();
        writeln!(
            stream,
            "{}",
            serde_json::json!({"watch": true, "token": token})
        )
        .unwrap();
        let mut lines = std::io::BufRead::lines(BufReader::new(stream));
        // The mock answers {"ok":true} once it watches: no push can be missed after that.
        let ok = lines.next().expect("watch answer").expect("watch answer");
        assert!(ok.contains("\"ok\":true"), "watch: {ok}");
        let (release, hold) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::spawn(move || {
            let mut phone = phone;
            let line = lines
                .next()
                .expect("no push for the phone")
                .expect("no push for the phone");
            let push: serde_json::Value = serde_json::from_str(&line).expect("push line");
            if held {
                let _ = hold.recv_timeout(SOON * 3);
            }
            phone.restart();
            (phone, push)
        });
        Waker {
            thread: Some(thread),
            release: held.then_some(release),
        }
    }

    /// Lets a held waker wake the phone (after the push arrived).
    pub fn release(&mut self) {
        if let Some(r) = self.release.take() {
            let _ = r.send(());
        }
    }

    /// The woken phone and the push that woke it.
    pub fn woken(mut self) -> (Linphone, serde_json::Value) {
        self.release();
        match self.thread.take().unwrap().join() {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

/// baresip as the user's desktop softphone (no push parameters), answering when told to: it is
/// driven and observed through its `ctrl_tcp` module (netstring JSON commands and events).
pub struct Baresip {
    pub user: String,
    pub port: u16,
    _proc: Proc,
    ctrl: TcpStream,
    events: Receiver<serde_json::Value>,
    responses: Receiver<serde_json::Value>,
}

impl Baresip {
    /// Writes `config` and `accounts` for `user` at `server` and starts baresip; returns once
    /// its control port is up (see `wait_registered`).
    pub fn start(dir: &Path, server: &str, user: &str) -> Baresip {
        let dir = dir.join(format!("baresip-{user}"));
        fs::create_dir_all(&dir).expect("baresip dir");
        let (port, ctrl_port) = (free_port(), free_port());
        // No audio module at all: baresip then runs calls without a source or player
        // (ausine only does 48 kHz and fails PCMU calls). net_interface keeps the SDP on
        // loopback.
        let config = format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{port}\nnet_interface 127.0.0.1\n\
             call_local_timeout 120\nmodule_path /usr/lib/baresip/modules\n\
             module g711.so\nmodule_tmp account.so\nmodule_app menu.so\n\
             module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{ctrl_port}\n"
        );
        fs::write(dir.join("config"), config).expect("write baresip config");
        // The AoR is the same as linphone's (sip:user@127.0.0.1); the proxy is the outbound.
        let account = format!(
            "<sip:{user}@127.0.0.1;transport=udp>;auth_pass={};outbound=\"sip:{server};lr\";\
             regint=3600;answermode=manual;audio_codecs=PCMU\n",
            password(user)
        );
        fs::write(dir.join("accounts"), account).expect("write baresip accounts");
        let mut cmd = Command::new("stdbuf");
        cmd.env("HOME", &dir)
            .args(["-oL", "baresip", "-f"])
            .arg(&dir)
            .arg("-s");
        let proc = Proc::spawn(cmd, "baresip", &dir, false);
        let ctrl = wait_for("baresip control port", SOON, || {
            TcpStream::connect(("127.0.0.1", ctrl_port)).ok()
        });
        let (events_tx, events) = crossbeam_channel::unbounded();
        let (responses_tx, responses) = crossbeam_channel::unbounded();
        let reader = ctrl.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            while let Some(msg) = read_netstring(&mut reader) {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&msg) else {
                    continue;
                };
                let to = if v["event"] == true {
                    &events_tx
                } else {
                    &responses_tx
                };
                if to.send(v).is_err() {
                    return;
                }
            }
        });
        Baresip {
            user: user.into(),
            port,
            _proc: proc,
            ctrl,
            events,
            responses,
        }
    }

    /// Sends a ctrl_tcp command (e.g. "accept", "hangup", "dial" with a URI) and returns its
    /// response.
    pub fn command(&mut self, command: &str, params: &str) -> serde_json::Value {
        let msg = serde_json::json!({"command": command, "params": params, "token": "t"});
        let body = msg.to_string();
        write!(self.ctrl, "{}:{body},", body.len()).expect("write ctrl_tcp");
        self.responses
            .recv_timeout(SOON)
            .unwrap_or_else(|_| panic!("baresip: no response to {command}"))
    }

    /// Waits until baresip's registration succeeded (its `reginfo` command says OK).
    pub fn wait_registered(&mut self) {
        let deadline = Instant::now() + SOON;
        loop {
            let info = self.command("reginfo", "");
            if info["data"].as_str().is_some_and(|d| d.contains("OK")) {
                return;
            }
            assert!(Instant::now() < deadline, "baresip not registered: {info}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The next event of this type (e.g. "CALL_INCOMING", "CALL_ESTABLISHED", "CALL_CLOSED");
    /// other events are skipped.
    pub fn expect_event(&self, kind: &str) -> serde_json::Value {
        let deadline = Instant::now() + SOON;
        loop {
            match self.events.recv_deadline(deadline) {
                Ok(e) if e["type"] == kind => return e,
                Ok(_) => {}
                Err(_) => panic!("baresip: no {kind} event within {SOON:?}"),
            }
        }
    }
}

/// One netstring (`<len>:<bytes>,`), or None at the end of the stream.
fn read_netstring(r: &mut impl Read) -> Option<Vec<u8>> {
    let mut len = 0usize;
    let mut byte = [0u8];
    loop {
        r.read_exact(&mut byte).ok()?;
        match byte[0] {
            b'0'..=b'9' => len = len * 10 + usize::from(byte[0] - b'0'),
            b':' => break,
            _ => return None,
        }
    }
    let mut body = vec![0u8; len + 1];
    r.read_exact(&mut body).ok()?;
    body.pop(); // the ','
    Some(body)
}

//! `pushpark demo`: a call to a user with a desktop softphone online and an iPhone asleep. The
//! desktop rings at once; the iPhone is woken by a VoIP push, joins the ringing call and answers;
//! the desktop is told the call was completed elsewhere.
//!
//! Runs the same rig as the end-to-end tests on embedded defaults: the mock APNs (standing in for
//! Apple), Debian's Kamailio (or, with `--host opensips`, OpenSIPS 3.6 as built from the
//! vendored source by `make -C adapters/opensips`) with the pushpark module (`pushpark_fork()`),
//! the device simulator (the iPhone app) and SIPp (the caller, the desktop, and the iPhone's SIP
//! side). Prints the call's timeline as it happens.

use crate::rig::opensips::{self, OpenSips};
use crate::rig::{
    self, device_sim, device_ua, free_port, module_path, register_desktop, sipp, sipp_messages,
    Kamailio, Mock, Phone, Proc,
};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the iPhone takes from the push to its REGISTER (the app launching in the background).
const WAKE_MS: u64 = 300;
/// The demo's park timeout: long enough for a slow machine, short enough to wait out.
const PARK_TIMEOUT_MS: u64 = 20_000;

#[derive(clap::Args)]
pub struct Args {
    /// The SIP server the module runs in.
    #[arg(long, value_enum, default_value_t = Host::Kamailio)]
    host: Host,
    /// 2: two Kamailio nodes sharing a Redis; the call arrives on one, the iPhone wakes on the
    /// other.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    nodes: u8,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Host {
    Kamailio,
    Opensips,
}

/// The SIP server of the demo, with the module and the rig's config.
enum Server {
    Kamailio(Kamailio),
    OpenSips(OpenSips),
}

impl Server {
    /// Starts it, or says what is missing.
    fn start(host: Host, dir: &std::path::Path, mock: &Mock) -> Result<Server, String> {
        match host {
            Host::Kamailio => {
                for tool in ["kamailio", "sipp", "kamcmd"] {
                    if which(tool).is_none() {
                        return Err(format!(
                            "{tool} is not installed: run scripts/demo (it installs it)"
                        ));
                    }
                }
                if !module_path().exists() {
                    return Err(format!(
                        "the Kamailio module is not built ({}): run scripts/demo or make -C adapters/kamailio",
                        module_path().display()
                    ));
                }
                // Debug level: the engine's per-push outcome is a debug line.
                let debug = [("DEBUG_LEVEL", "3".to_string())];
                let k = Kamailio::start_pushpark(dir, mock, PARK_TIMEOUT_MS, &debug);
                Ok(Server::Kamailio(k))
            }
            Host::Opensips => {
                let module = opensips::module_path();
                if which("sipp").is_none() || !module.exists() {
                    return Err(format!(
                        "OpenSIPS and its module are not built ({}): run scripts/deps and make -C adapters/opensips",
                        module.display()
                    ));
                }
                let debug = [("LOG_LEVEL", "4")];
                let o = OpenSips::start_pushpark(dir, mock, PARK_TIMEOUT_MS, &module, &debug);
                Ok(Server::OpenSips(o))
            }
        }
    }

    fn addr(&self) -> String {
        match self {
            Server::Kamailio(k) => k.addr(),
            Server::OpenSips(o) => o.addr(),
        }
    }

    fn log(&self) -> &std::path::Path {
        match self {
            Server::Kamailio(k) => &k.proc.log,
            Server::OpenSips(o) => &o.proc.log,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Server::Kamailio(_) => "Kamailio",
            Server::OpenSips(_) => "OpenSIPS",
        }
    }
}

/// Set by Ctrl-C / SIGTERM: the demo then stops its processes (they run in their own process
/// groups, so the terminal's SIGINT does not reach them).
pub(crate) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    if args.nodes == 2 {
        if args.host != Host::Kamailio {
            return Err("--nodes 2 runs Kamailio nodes only".into());
        }
        return crate::demo_cluster::run();
    }
    let dir = rig::WorkDir::new("demo");
    let d = &dir.0;

    println!("pushpark demo: a call to a user whose desktop is online and whose iPhone sleeps\n");
    let mock = Mock::start(d, 0);
    step(&format!(
        "mock APNs (Apple's push service over HTTP/2 + TLS) on {}",
        mock.addr
    ));
    let server = Server::start(args.host, d, &mock)?;
    step(&format!(
        "{} with pushpark.so on udp:{}",
        server.name(),
        server.addr()
    ));

    let phone = Phone::new("alice");
    let desktop_port = free_port();
    let mut desktop = device_ua(d, "device_ring.xml", desktop_port, 1, "desktop-ua");
    register_desktop(d, &server.addr(), &phone.user, desktop_port);
    step(&format!(
        "desktop softphone of {} registered: an ordinary Contact, always reachable",
        phone.user
    ));
    let mut ua = device_ua(d, "device_answer.xml", phone.ua_port, 1, "iphone-ua");
    phone.register(d, &server.addr(), 3600);
    step(&format!(
        "iPhone of {} registered while awake: Contact with pn-provider=apns, pn-prid={}…",
        phone.user,
        &phone.token[..8]
    ));
    step("iPhone asleep: its binding stays registered (RFC 8599), its app holds no connection");
    let sim = device_sim(d, &mock, &server.addr(), &[&phone], WAKE_MS);
    let watch = mock.watch();

    println!("\ncalling sip:{}@{} …\n", phone.user, server.addr());
    let mut cmd = sipp("caller.xml", free_port());
    cmd.arg(server.addr())
        .args(["-s", &phone.user, "-m", "1", "-d", "1000"]);
    let mut caller = Proc::spawn(cmd, "caller", d, false);
    let mut log = LogTail::open(server.log());
    let mut iphone_joined = false;
    // Times count from the INVITE's arrival, i.e. the first step seen.
    let mut zero: Option<Instant> = None;
    let mut at = |s: &str| {
        let t0 = *zero.get_or_insert_with(Instant::now);
        println!("  +{:>5} ms  {s}", t0.elapsed().as_millis());
    };

    let deadline = Instant::now() + Duration::from_millis(PARK_TIMEOUT_MS + 20_000);
    let status = loop {
        // What one poll finds happened within a few ms: shown in the order it must have happened.
        let mut batch: Vec<(u8, String)> = log
            .new_lines()
            .iter()
            .filter_map(|l| step_of(l, &mut iphone_joined))
            .collect();
        for (_, text) in batch
            .iter_mut()
            .filter(|(_, t)| t.starts_with("APNs accepted"))
        {
            // The mock recorded the push before answering; its report may still be on the way.
            let id = match watch.next(Duration::from_secs(2)) {
                Some(push) => push["apns_id"].as_str().unwrap_or("?").to_string(),
                None => "?".into(),
            };
            text.push_str(&format!(" (apns-id {id})"));
        }
        for line in sim.lines().try_iter() {
            if line.starts_with("push ") {
                batch.push((
                    4,
                    format!("iPhone got the push; the app wakes up (takes {WAKE_MS} ms)"),
                ));
            } else if line.starts_with("register-failed") {
                batch.push((5, format!("iPhone could not register: {line}")));
            }
        }
        batch.sort_by_key(|(rank, _)| *rank);
        for (_, text) in batch {
            at(&text);
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            println!("\ninterrupted: stopping the demo's processes");
            return Ok(ExitCode::from(130));
        }
        if !caller.running() {
            for (_, text) in log
                .new_lines()
                .iter()
                .filter_map(|l| step_of(l, &mut iphone_joined))
            {
                at(&text);
            }
            break caller.wait(Duration::ZERO);
        }
        if Instant::now() > deadline {
            drop((caller, ua, desktop, sim, server, mock));
            println!(
                "\nthe call did not end in time; logs are in {}",
                dir.keep().display()
            );
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let answered = ua.wait(Duration::from_secs(5)).success();
    let desktop_cancelled = desktop.wait(Duration::from_secs(5)).success();
    let desk = sipp_messages(d, "device_ring.xml", &desktop);
    if let Some(reason) = desk.lines().find(|l| l.trim_start().starts_with("Reason:")) {
        println!("\n  desktop got CANCEL with {}", reason.trim());
    }
    println!();
    if status.success() && answered && desktop_cancelled {
        println!("call connected and hung up cleanly: desktop rang at once, iPhone pushed → REGISTER → joined → 200 OK → desktop cancelled → BYE");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{}", caller.log_text());
        drop((caller, ua, desktop, sim, server, mock));
        println!(
            "the call did not complete; logs are in {}",
            dir.keep().display()
        );
        Ok(ExitCode::FAILURE)
    }
}

pub(crate) fn step(s: &str) {
    println!("  setup     {s}");
}

/// What the module's log line about a push says of it (`push <id> to <aor> device <device>
/// <outcome>`): "delivered", "failed: <reason>" or "unconfirmed: …"; None for other lines.
pub(crate) fn push_outcome(line: &str) -> Option<&str> {
    let (_, about) = line.split_once(": push ")?;
    let (_, device) = about.split_once(" to sip:")?.1.split_once(" device ")?;
    Some(device.split_once(' ')?.1.trim_end())
}

/// A log line of the rig's config (its E2E-* markers) or of the module's engine as a step of
/// the call: its place in the causal order, and the operator's words for it. A 180 is the
/// desktop's until the iPhone has joined the call (Kamailio's resume marker, OpenSIPS's branch
/// to a push device).
fn step_of(line: &str, iphone_joined: &mut bool) -> Option<(u8, String)> {
    let call = line.split("call=").nth(1).map(str::trim).unwrap_or("");
    let step = if line.contains("E2E-PARKED") {
        (
            1,
            format!("INVITE forked: the desktop rings at once, pushpark pushes the iPhone (call {call})"),
        )
    } else if line.contains("E2E-NOT-PARKED") {
        (1, format!("INVITE not forked: {}", line.trim()))
    } else if line.contains("E2E-REPLY 180") && !*iphone_joined {
        (2, "desktop rings: 180 Ringing relayed to the caller".into())
    } else if push_outcome(line) == Some("delivered") {
        (3, "APNs accepted the push: 200, delivered".to_string())
    } else if let Some(why) = push_outcome(line).and_then(|o| o.strip_prefix("failed: ")) {
        (3, format!("APNs refused the push: {why}"))
    } else if line.contains("E2E-REGISTERED") {
        (
            5,
            "iPhone registered: REGISTER with its push parameters, 200 OK".into(),
        )
    } else if line.contains("E2E-RESUMED") || line.contains("E2E-BRANCH push device") {
        *iphone_joined = true;
        (
            6,
            "iPhone joins the ringing call: a second branch, INVITE relayed to its new binding"
                .into(),
        )
    } else if line.contains("E2E-REPLY 180") {
        (7, "iPhone rings too: 180 Ringing".into())
    } else if line.contains("E2E-REPLY 200") {
        (
            8,
            "iPhone answers: 200 OK relayed to the caller, who ACKs; the desktop gets CANCEL"
                .into(),
        )
    } else if line.contains("E2E-BYE") {
        (9, "caller hangs up: BYE, 200 OK".into())
    } else {
        return None;
    };
    Some(step)
}

/// New lines of a growing log file.
pub(crate) struct LogTail {
    reader: BufReader<std::fs::File>,
}

impl LogTail {
    pub(crate) fn open(path: &std::path::Path) -> LogTail {
        let mut file = std::fs::File::open(path).expect("open the SIP server's log");
        file.seek(SeekFrom::End(0)).expect("seek");
        LogTail {
            reader: BufReader::new(file),
        }
    }

    pub(crate) fn new_lines(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line = String::new();
        while self.reader.read_line(&mut line).unwrap_or(0) > 0 {
            if line.ends_with('\n') {
                lines.push(std::mem::take(&mut line));
            }
        }
        // A partial last line is read again in full next time.
        if !line.is_empty() {
            let _ = self.reader.seek_relative(-(line.len() as i64));
        }
        lines
    }
}

pub(crate) fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(tool))
        .find(|p| p.exists())
}

//! The end-to-end rig: real processes on loopback (mock APNs, Kamailio or OpenSIPS, SIPp, the
//! device simulator) with free high ports and a private directory each. Every process runs in its own
//! process group and the whole group is killed on drop, so nothing outlives a test, even a failed
//! one; a failed test prints the tail of every process's log.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

#[path = "rig/opensips.rs"]
pub mod opensips;

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
pub const SOON: Duration = Duration::from_secs(20);

/// The SIPp scenarios and Kamailio configs, written into each rig's directory.
const ASSETS: &[(&str, &str)] = &[
    ("caller.xml", include_str!("rig/caller.xml")),
    (
        "caller_rejected.xml",
        include_str!("rig/caller_rejected.xml"),
    ),
    ("caller_cancel.xml", include_str!("rig/caller_cancel.xml")),
    (
        "caller_two_ring.xml",
        include_str!("rig/caller_two_ring.xml"),
    ),
    ("device_answer.xml", include_str!("rig/device_answer.xml")),
    ("device_ring.xml", include_str!("rig/device_ring.xml")),
    ("device_pickup.xml", include_str!("rig/device_pickup.xml")),
    ("register.xml", include_str!("rig/register.xml")),
    ("register_plain.xml", include_str!("rig/register_plain.xml")),
    ("device_tcp.xml", include_str!("rig/device_tcp.xml")),
    ("device_udp_nat.xml", include_str!("rig/device_udp_nat.xml")),
    (
        "device_tcp_auth.xml",
        include_str!("rig/device_tcp_auth.xml"),
    ),
    (
        "register_reordered.xml",
        include_str!("rig/register_reordered.xml"),
    ),
    ("register_path.xml", include_str!("rig/register_path.xml")),
    (
        "register_refused.xml",
        include_str!("rig/register_refused.xml"),
    ),
    ("register_auth.xml", include_str!("rig/register_auth.xml")),
    ("caller_fork.xml", include_str!("rig/caller_fork.xml")),
    (
        "register_unregister.xml",
        include_str!("rig/register_unregister.xml"),
    ),
    (
        "kamailio-baseline.cfg",
        include_str!("rig/kamailio-baseline.cfg"),
    ),
    (
        "kamailio-pushpark.cfg",
        include_str!("rig/kamailio-pushpark.cfg"),
    ),
];

/// A free port on 127.0.0.1 for both UDP and TCP (the OS picks it; we release it at once).
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A private directory, removed on drop unless the test failed (then kept for inspection).
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    pub fn new(name: &str) -> WorkDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pushpark-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create work dir");
        for (file, text) in ASSETS {
            fs::write(dir.join(file), text).expect("write asset");
        }
        WorkDir(dir)
    }

    /// Leaves the directory in place (for the logs of a failed demo).
    pub fn keep(self) -> PathBuf {
        let path = self.0.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(work dir kept: {})", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process in its own process group; its stderr (and stdout unless captured) go to
/// `<dir>/<name>.log`. Dropping it terminates the whole group.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    lines: Option<Receiver<String>>,
    /// The write end of its stdin, for programs driven by commands (`spawn_with_input`).
    input: Option<ChildStdin>,
    stopped: bool,
}

impl Proc {
    /// Starts `cmd` in `dir`. With `capture`, stdout lines are readable with `expect_line`.
    pub fn spawn(cmd: Command, name: &str, dir: &Path, capture: bool) -> Proc {
        Self::start(cmd, name, dir, capture, false)
    }

    /// Like `spawn`, with stdin a pipe kept open: for programs that read commands from it and
    /// stop at its end (linphonec). Write to it with `send_line`.
    pub fn spawn_with_input(cmd: Command, name: &str, dir: &Path) -> Proc {
        Self::start(cmd, name, dir, false, true)
    }

    fn start(mut cmd: Command, name: &str, dir: &Path, capture: bool, input: bool) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let file = fs::File::create(&log).expect("create log");
        let out = if capture {
            Stdio::piped()
        } else {
            Stdio::from(file.try_clone().unwrap())
        };
        cmd.current_dir(dir)
            .stdin(if input { Stdio::piped() } else { Stdio::null() })
            .stdout(out)
            .stderr(file)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({:?}): {e}", cmd.get_program()));
        let lines = capture.then(|| {
            let (tx, rx) = crossbeam_channel::unbounded();
            let stdout = child.stdout.take().unwrap();
            let mut copy = fs::OpenOptions::new().append(true).open(&log).unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = writeln!(copy, "{line}");
                    let _ = tx.send(line);
                }
            });
            rx
        });
        Proc {
            name: name.into(),
            input: child.stdin.take(),
            child,
            log,
            lines,
            stopped: false,
        }
    }

    /// Writes one line to the process's stdin (see `spawn_with_input`).
    pub fn send_line(&mut self, line: &str) {
        let input = self.input.as_mut().expect("stdin not kept");
        writeln!(input, "{line}").unwrap_or_else(|e| panic!("{}: write stdin: {e}", self.name));
    }

    /// Waits for a stdout line containing `needle` (lines before it are consumed).
    /// The captured stdout lines not read yet.
    pub fn lines(&self) -> &Receiver<String> {
        self.lines.as_ref().expect("stdout not captured")
    }

    pub fn expect_line(&self, needle: &str, timeout: Duration) -> String {
        let lines = self.lines.as_ref().expect("stdout not captured");
        let deadline = Instant::now() + timeout;
        loop {
            match lines.recv_deadline(deadline) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no line with {needle:?} within {timeout:?}", self.name)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: exited before printing {needle:?}", self.name)
                }
            }
        }
    }

    /// Waits for the process to exit on its own.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!("{} still running after {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM to the group, then SIGKILL if it has not exited after 5 s.
    pub fn stop(&mut self) {
        self.end(true);
    }

    /// SIGKILL to the group at once: no chance to clean up (a phone app killed by iOS does
    /// not unregister).
    pub fn kill(&mut self) {
        self.end(false);
    }

    fn end(&mut self, gently: bool) {
        // Once reaped, the group id may belong to someone else.
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let group = -(self.child.id() as i32);
        if gently {
            // SAFETY: kill(2) on our own child's process group.
            unsafe { libc::kill(group, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // SAFETY: as above; the group may already be gone (ESRCH), which is fine.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- last lines of {} ----", self.log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The `pushpark` binary: the one cargo built for the tests, or (in the demo) this very one.
pub fn pushpark_bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_pushpark") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe().expect("current executable"),
    }
}

/// A mock's JSON-lines control port (see `pushpark::mock::control`), the same for both mocks.
pub struct ControlPort {
    pub addr: SocketAddr,
    /// How the mock compares tokens: APNs's in any case (hex), FCM's exactly.
    tokens_ignore_case: bool,
}

impl ControlPort {
    /// Sends one control command and returns the mock's answer.
    pub fn control(&self, command: serde_json::Value) -> serde_json::Value {
        let mut stream = TcpStream::connect(self.addr).expect("connect control port");
        stream.set_read_timeout(Some(SOON)).unwrap();
        writeln!(stream, "{command}").unwrap();
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .expect("control answer");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("control answer {line:?}: {e}"))
    }

    /// Makes the mock answer pushes for `token` with this rejection (APNs: "Unregistered",
    /// FCM: "UNREGISTERED").
    pub fn script_reject(&self, token: &str, reason: &str) {
        let answer =
            self.control(serde_json::json!({"script": {"token": token, "reason": reason}}));
        assert_eq!(answer["ok"], true, "script {token}: {answer}");
    }

    /// Makes the mock answer only the next `times` pushes for `token` with this rejection.
    pub fn script_reject_next(&self, token: &str, reason: &str, times: u32) {
        let script = serde_json::json!({"token": token, "reason": reason, "times": times});
        let answer = self.control(serde_json::json!({ "script": script }));
        assert_eq!(answer["ok"], true, "script {token}: {answer}");
    }

    /// Replaces the mock's fault modes (`{"delay_ms":..,"server_error":..}`, see its control
    /// port); absent fields are healthy.
    pub fn set_faults(&self, faults: serde_json::Value) {
        let answer = self.control(serde_json::json!({ "faults": faults }));
        assert_eq!(answer["ok"], true, "faults {faults}: {answer}");
    }

    /// The mock's counters (connections, accepted, rejected, goaways, ...).
    pub fn stats(&self) -> serde_json::Value {
        self.control(serde_json::json!({"stats": true}))
    }

    /// Streams every push the mock accepts from now on.
    pub fn watch(&self) -> PushWatch {
        let mut stream = TcpStream::connect(self.addr).expect("connect control port");
        writeln!(stream, "{{\"watch\":true}}").unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v.get("token").is_some() && tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        PushWatch {
            rx,
            tokens_ignore_case: self.tokens_ignore_case,
        }
    }
}

/// A mock started as `pushpark <command> --listen .. --state-dir <dir>/<name> --control ..
/// <extra>`: its process, its address, its control port and its state dir.
fn start_mock(
    dir: &Path,
    command: &str,
    extra: &[String],
) -> (Proc, SocketAddr, SocketAddr, PathBuf) {
    let (port, control_port) = (free_port(), free_port());
    let state_dir = dir.join(command);
    let mut cmd = Command::new(pushpark_bin());
    cmd.arg(command)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--state-dir")
        .arg(&state_dir)
        .arg("--control")
        .arg(format!("127.0.0.1:{control_port}"))
        .args(extra);
    let proc = Proc::spawn(cmd, command, dir, true);
    proc.expect_line("listening on", SOON);
    let addr = ([127, 0, 0, 1], port).into();
    (proc, addr, ([127, 0, 0, 1], control_port).into(), state_dir)
}

/// `pushpark mock-apns` with its control port.
pub struct Mock {
    /// Held for its Drop, which stops the mock.
    _proc: Proc,
    pub addr: SocketAddr,
    pub control: ControlPort,
    pub state_dir: PathBuf,
}

impl Mock {
    pub fn start(dir: &Path, delay_ms: u64) -> Mock {
        let delay = match delay_ms {
            0 => vec![],
            ms => vec!["--delay-ms".into(), ms.to_string()],
        };
        let (proc, addr, control, state_dir) = start_mock(dir, "mock-apns", &delay);
        Mock {
            _proc: proc,
            addr,
            control: ControlPort {
                addr: control,
                tokens_ignore_case: true,
            },
            state_dir,
        }
    }
}

/// The tests drive the mock through its control port.
impl std::ops::Deref for Mock {
    type Target = ControlPort;
    fn deref(&self) -> &ControlPort {
        &self.control
    }
}

/// `pushpark mock-fcm` (FCM HTTP v1 and its OAuth token endpoint) with its control port.
pub struct MockFcm {
    /// Held for its Drop, which stops the mock.
    _proc: Proc,
    pub addr: SocketAddr,
    pub control: ControlPort,
    pub state_dir: PathBuf,
    /// The Firebase project its service account belongs to.
    pub project: String,
}

impl MockFcm {
    pub fn start(dir: &Path, project: &str) -> MockFcm {
        let extra = ["--project-id".to_string(), project.to_string()];
        let (proc, addr, control, state_dir) = start_mock(dir, "mock-fcm", &extra);
        MockFcm {
            _proc: proc,
            addr,
            control: ControlPort {
                addr: control,
                tokens_ignore_case: false,
            },
            state_dir,
            project: project.into(),
        }
    }
}

/// The tests drive the mock through its control port.
impl std::ops::Deref for MockFcm {
    type Target = ControlPort;
    fn deref(&self) -> &ControlPort {
        &self.control
    }
}

/// The pushes a mock accepted, as its control port reports them.
pub struct PushWatch {
    rx: Receiver<serde_json::Value>,
    tokens_ignore_case: bool,
}

impl PushWatch {
    /// The next accepted push for `token` (pushes for other tokens are skipped).
    pub fn expect_push(&self, token: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok(p)
                    if p["token"]
                        .as_str()
                        .is_some_and(|t| self.same_token(t, token)) =>
                {
                    return p
                }
                Ok(_) => {}
                Err(_) => panic!("no push for {token} within {timeout:?}"),
            }
        }
    }

    fn same_token(&self, a: &str, b: &str) -> bool {
        if self.tokens_ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    }

    /// The next accepted push, whatever its token.
    pub fn next(&self, timeout: Duration) -> Option<serde_json::Value> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Every push accepted so far (does not wait).
    pub fn drain(&self) -> Vec<serde_json::Value> {
        self.rx.try_iter().collect()
    }
}

/// Debian's redis-server on a free loopback port, without persistence: the store several
/// pushpark nodes share (the engine's `cluster` config).
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    proc: Proc,
    starts: u32,
}

impl Redis {
    pub fn start(dir: &Path) -> Redis {
        let port = free_port();
        let proc = Self::spawn(dir, port, 0);
        Redis {
            port,
            dir: dir.into(),
            proc,
            starts: 1,
        }
    }

    fn spawn(dir: &Path, port: u16, n: u32) -> Proc {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"]);
        let proc = Proc::spawn(cmd, &format!("redis-{n}"), dir, false);
        let deadline = Instant::now() + SOON;
        while !Self::pong(port) {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        proc
    }

    fn pong(port: u16) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok()
            && std::io::Read::read_exact(&mut s, &mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL: Redis gone at once, with whatever it held.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.proc.kill();
        self.proc = Self::spawn(&self.dir, self.port, self.starts);
        self.starts += 1;
    }
}

/// The Kamailio module: `PUSHPARK_KAMAILIO_MODULE`, else where `make -C adapters/kamailio`
/// puts it.
pub fn module_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PUSHPARK_KAMAILIO_MODULE") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kamailio/pushpark.so")
}

/// Kamailio in the foreground on one UDP port, with a binrpc socket for `kamcmd`.
pub struct Kamailio {
    pub proc: Proc,
    pub port: u16,
    pub ctl: String,
    cfg: PathBuf,
    dir: PathBuf,
    defines: Vec<String>,
    /// Further command-line arguments (`-L` for the example config).
    args: Vec<String>,
    starts: u32,
}

impl Kamailio {
    /// Starts `cfg` (a file of the rig's directory) with `-A` defines for the config.
    pub fn start(dir: &Path, cfg: &str, defines: &[(&str, String)]) -> Kamailio {
        Self::start_on(dir, &dir.join(cfg), free_port(), defines, Vec::new())
    }

    /// Starts `cfg` on UDP `port`, with `-A` defines and further command-line `args`.
    fn start_on(
        dir: &Path,
        cfg: &Path,
        port: u16,
        defines: &[(&str, String)],
        args: Vec<String>,
    ) -> Kamailio {
        let ctl = format!("unix:{}", dir.join("kamailio-ctl.sock").display());
        let mut all = vec![format!("CTL_SOCK=\"{ctl}\"")];
        all.extend(defines.iter().map(|(k, v)| format!("{k}={v}")));
        let proc = Self::spawn(dir, cfg, port, &all, &args, 0);
        let mut k = Kamailio {
            proc,
            port,
            ctl,
            cfg: cfg.into(),
            dir: dir.into(),
            defines: all,
            args,
            starts: 1,
        };
        k.wait_ready();
        k
    }

    /// The module's example config as shipped (adapters/kamailio/examples/kamailio.cfg), with
    /// the module under test found through `-L`, `engine` as its engine config, the UDP port
    /// the rig picks, TCP on `tcp`, the control socket in `dir`, and `defines` (e.g.
    /// `PP_DB_URL`, `WITH_CLUSTER`); returns once the engine process answers RPC.
    pub fn start_example(
        dir: &Path,
        engine: &serde_json::Value,
        tcp: u16,
        defines: &[(&str, String)],
    ) -> Kamailio {
        let cfg =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters/kamailio/examples/kamailio.cfg");
        let config = dir.join("pushpark.json");
        fs::write(&config, engine.to_string()).expect("write engine config");
        let port = free_port();
        let ctl = format!("\"unix:{}\"", dir.join("kamailio-ctl.sock").display());
        let mut all = vec![
            ("PP_LISTEN", format!("udp:127.0.0.1:{port}")),
            ("PP_LISTEN_TCP", format!("tcp:127.0.0.1:{tcp}")),
            ("PP_CONFIG", format!("\"{}\"", config.display())),
            ("PP_CTL", ctl),
        ];
        all.extend(defines.iter().cloned());
        // Kamailio 5.6 keeps only the last -L: the module's directory and Debian's in one.
        let module_dir = module_path().parent().expect("module directory").to_owned();
        let dirs = format!(
            "{}:/usr/lib/x86_64-linux-gnu/kamailio/modules",
            module_dir.display()
        );
        let k = Self::start_on(dir, &cfg, port, &all, vec!["-L".into(), dirs]);
        k.wait_engine();
        k
    }

    fn spawn(
        dir: &Path,
        cfg: &Path,
        port: u16,
        defines: &[String],
        args: &[String],
        n: u32,
    ) -> Proc {
        let mut cmd = Command::new("kamailio");
        cmd.args(["-DD", "-E", "-f"])
            .arg(cfg)
            .arg("-w")
            .arg(dir)
            .arg("-Y")
            .arg(dir)
            .args(args);
        cmd.arg("-l").arg(format!("udp:127.0.0.1:{port}"));
        for d in defines {
            cmd.arg("-A").arg(d);
        }
        Proc::spawn(cmd, &format!("kamailio-{n}"), dir, false)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + SOON;
        while self.kamcmd(&["core.version"]).is_err() {
            assert!(
                self.proc.running(),
                "kamailio exited:\n{}",
                self.proc.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "kamailio not ready:\n{}",
                self.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops Kamailio and starts it again on the same port, config and directory (new log).
    pub fn restart(&mut self) {
        self.proc.stop();
        let (dir, cfg, defines) = (&self.dir, &self.cfg, &self.defines);
        self.proc = Self::spawn(dir, cfg, self.port, defines, &self.args, self.starts);
        self.starts += 1;
        self.wait_ready();
    }

    pub fn kamcmd(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("kamcmd")
            .arg("-s")
            .arg(&self.ctl)
            .args(args)
            .output()
            .map_err(|e| format!("kamcmd: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() && !text.starts_with("error") {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// The numbers of an RPC answer (`key: 12` lines, as kamcmd prints a struct), by key.
    pub fn rpc_numbers(&self, args: &[&str]) -> HashMap<String, u64> {
        let text = self
            .kamcmd(args)
            .unwrap_or_else(|e| panic!("kamcmd {args:?}: {e}"));
        text.lines()
            .filter_map(|l| {
                let (key, value) = l.trim().split_once(':')?;
                Some((key.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// Takes every binding of `user` out of the location table: the phone is asleep, its app
    /// holds no connection, but the push token stays known to pushpark.
    pub fn forget_binding(&self, user: &str) {
        self.kamcmd(&["ul.rm", "location", user])
            .unwrap_or_else(|e| panic!("ul.rm location {user}: {e}"));
        assert!(
            self.kamcmd(&["ul.lookup", "location", user]).is_err(),
            "{user} still bound"
        );
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kamailio with the pushpark module (kamailio-pushpark.cfg, plus `defines`), the mock as
    /// APNs, and the engine's store in `dir`; returns once the engine process answers RPC.
    pub fn start_pushpark(
        dir: &Path,
        mock: &Mock,
        park_timeout_ms: u64,
        defines: &[(&str, String)],
    ) -> Kamailio {
        let engine = Self::engine_config(dir, mock, park_timeout_ms);
        Self::start_pushpark_with(dir, &engine, defines)
    }

    /// As `start_pushpark`, with `engine` as the engine's config (see `engine_config`).
    pub fn start_pushpark_with(
        dir: &Path,
        engine: &serde_json::Value,
        defines: &[(&str, String)],
    ) -> Kamailio {
        let all = Self::pushpark_defines(dir, engine, defines);
        let k = Kamailio::start(dir, "kamailio-pushpark.cfg", &all);
        k.wait_engine();
        k
    }

    /// Kamailio with the pushpark module, `engine` as its config, when it is expected not to
    /// start: waits for it to exit (failing if it does not, or exits 0) and returns its log.
    pub fn refused(dir: &Path, engine: &serde_json::Value, defines: &[(&str, String)]) -> String {
        let mut all = vec![format!(
            "CTL_SOCK=\"unix:{}\"",
            dir.join("kamailio-ctl.sock").display()
        )];
        let pushpark = Self::pushpark_defines(dir, engine, defines);
        all.extend(pushpark.iter().map(|(k, v)| format!("{k}={v}")));
        let cfg = dir.join("kamailio-pushpark.cfg");
        let mut proc = Self::spawn(dir, &cfg, free_port(), &all, &[], 0);
        let status = proc.wait(SOON);
        assert!(!status.success(), "kamailio started:\n{}", proc.log_text());
        proc.log_text()
    }

    /// The engine config of `start_pushpark`: the mock as APNs, its key, the store in `dir`.
    pub fn engine_config(dir: &Path, mock: &Mock, park_timeout_ms: u64) -> serde_json::Value {
        serde_json::json!({
            "apns": {
                "endpoint": mock.addr.to_string(),
                "ca_file": mock.state_dir.join("ca.pem"),
                "auth": {
                    "key_file": mock.state_dir.join("AuthKey_TESTKEY001.p8"),
                    "key_id": "TESTKEY001",
                    "team_id": "TESTTEAM01"
                }
            },
            // No "registered a moment ago" shortcut: phones here register, then sleep at once.
            "park": { "timeout_ms": park_timeout_ms, "recent_register_ms": 0 },
            "store": { "dir": dir.join("store") },
            "log_level": "info"
        })
    }

    /// `engine` (see `engine_config`) with `fcm` as FCM: its service account, its CA.
    pub fn with_fcm(mut engine: serde_json::Value, fcm: &MockFcm) -> serde_json::Value {
        engine["fcm"] = serde_json::json!({
            "service_account_file": fcm.state_dir.join("service-account.json"),
            "endpoint": fcm.addr.to_string(),
            "ca_file": fcm.state_dir.join("ca.pem"),
        });
        engine
    }

    /// `engine` (see `engine_config`) as node `node_id` of a cluster sharing `redis`, and the
    /// defines of the config's cluster part (Path handling), with a TCP listener on `tcp`.
    pub fn cluster_node(
        mut engine: serde_json::Value,
        redis: &Redis,
        node_id: &str,
        tcp: u16,
    ) -> (serde_json::Value, Vec<(&'static str, String)>) {
        engine["cluster"] = serde_json::json!({ "redis_url": redis.url(), "node_id": node_id });
        let defines = vec![
            ("CLUSTER", "1".to_string()),
            ("TCP_LISTEN", format!("tcp:127.0.0.1:{tcp}")),
        ];
        (engine, defines)
    }

    /// Writes `engine` as the module's config; the defines that load the module with it.
    fn pushpark_defines<'a>(
        dir: &Path,
        engine: &serde_json::Value,
        defines: &[(&'a str, String)],
    ) -> Vec<(&'a str, String)> {
        let config = dir.join("pushpark.json");
        fs::write(&config, engine.to_string()).expect("write engine config");
        let quoted = |p: &Path| format!("\"{}\"", p.display());
        let mut all = vec![
            ("PUSHPARK_MODULE", quoted(&module_path())),
            ("PUSHPARK_CONFIG", quoted(&config)),
        ];
        all.extend(defines.iter().cloned());
        all
    }

    /// The pid of the module's engine process (`core.psx`: "pushpark engine").
    pub fn engine_pid(&self) -> i32 {
        let psx = self.kamcmd(&["core.psx"]).expect("core.psx");
        psx.split('}')
            .find(|p| p.contains("DSC: pushpark engine"))
            .and_then(|p| p.lines().find_map(|l| l.trim().strip_prefix("PID:")))
            .and_then(|pid| pid.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pushpark engine in core.psx:\n{psx}"))
    }

    /// Waits until the module's engine process answers `pushpark.stats`.
    pub fn wait_engine(&self) {
        let deadline = Instant::now() + SOON;
        while let Err(e) = self.kamcmd(&["pushpark.stats"]) {
            assert!(Instant::now() < deadline, "pushpark.stats: {e}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What a finished SIPp caller left: exit status, output, response times (ms), messages.
pub struct SippRun {
    pub status: ExitStatus,
    pub log: String,
    pub rtt_ms: Vec<f64>,
    pub messages: String,
}

impl SippRun {
    /// Whether the caller received a response with this status code.
    pub fn received(&self, code: u16) -> bool {
        let status_line = format!("\nSIP/2.0 {code} ");
        self.messages
            .split("message received")
            .skip(1)
            .any(|m| m.contains(&status_line))
    }
}

/// One call of a SIPp run, from its message trace.
#[derive(Debug, Default)]
pub struct CallTrace {
    /// The user the INVITE was sent to.
    pub user: String,
    /// The distinct final answers to the INVITE, as (status, To tag): a retransmission
    /// counts once, a second answer does not.
    pub finals: BTreeSet<(u16, String)>,
}

impl SippRun {
    /// The cumulative count of a line of SIPp's final statistics screen, e.g. "Successful call".
    pub fn stat(&self, label: &str) -> Option<u64> {
        let line = self.log.lines().rev().find(|l| l.contains(label))?;
        line.split('|').nth(2)?.trim().parse().ok()
    }

    /// Every call of the run by Call-ID: its callee and the final answers it received.
    pub fn calls(&self) -> HashMap<String, CallTrace> {
        let mut calls: HashMap<String, CallTrace> = HashMap::new();
        // Each message is preceded by a line of dashes with a timestamp and a line saying
        // whether it was sent or received.
        for block in self
            .messages
            .split("----------------------------------------------- ")
        {
            let mut lines = block.lines().skip(1);
            let Some(what) = lines.next() else { continue };
            let msg: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty()).collect();
            let header = |name: &str| {
                msg.iter()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .map(str::trim)
            };
            let (Some(first), Some(call_id), Some(cseq)) =
                (msg.first(), header("Call-ID"), header("CSeq"))
            else {
                continue;
            };
            if !cseq.ends_with(" INVITE") {
                continue;
            }
            let call = calls.entry(call_id.to_string()).or_default();
            if what.contains("message sent") {
                if let Some(uri) = first.strip_prefix("INVITE sip:") {
                    call.user = uri.split('@').next().unwrap_or("").to_string();
                }
            } else if let Some(status) = first.strip_prefix("SIP/2.0 ") {
                let code: u16 = status.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                if code >= 200 {
                    let tag = header("To")
                        .and_then(|to| to.split(";tag=").nth(1))
                        .unwrap_or("")
                        .to_string();
                    call.finals.insert((code, tag));
                }
            }
        }
        calls
    }
}

/// Writes `<scenario>-inf.xml`, a copy of `scenario` (one of the rig's) whose `[key]`s become
/// `[field0]`, `[field1]`, ... in `keys`' order: a SIPp run with an injection file then takes
/// those values from one line per call. Returns the copy's file name.
pub fn injected_scenario(dir: &Path, scenario: &str, keys: &[&str]) -> String {
    let text = fs::read_to_string(dir.join(scenario)).expect("read scenario");
    let text = keys.iter().enumerate().fold(text, |text, (i, key)| {
        text.replace(&format!("[{key}]"), &format!("[field{i}]"))
    });
    let name = format!("{}-inf.xml", scenario.trim_end_matches(".xml"));
    fs::write(dir.join(&name), text).expect("write scenario");
    name
}

/// Writes a SIPp injection file (`-inf`): one call a line, in order. Returns its file name.
pub fn injection_file(dir: &Path, name: &str, rows: &[Vec<String>]) -> String {
    let mut text = String::from("SEQUENTIAL\n");
    for row in rows {
        text += &row.join(";");
        text.push('\n');
    }
    fs::write(dir.join(name), text).expect("write injection file");
    name.to_string()
}

/// The SIPp command line every run shares: local 127.0.0.1, no keyboard, a global timeout.
pub fn sipp(scenario: &str, port: u16) -> Command {
    let mut cmd = Command::new("sipp");
    cmd.args(["-sf", scenario, "-i", "127.0.0.1", "-p"])
        .arg(port.to_string());
    cmd.args([
        "-nostdin",
        "-timeout",
        "60s",
        "-timeout_error",
        "-trace_err",
    ]);
    cmd
}

/// Runs SIPp as a caller of `user` through `server` until it ends; response times are traced.
pub fn call(dir: &Path, server: &str, scenario: &str, user: &str, extra: &[&str]) -> SippRun {
    let stem = scenario.trim_end_matches(".xml");
    let name = format!("caller-{user}-{stem}");
    // free_port() lets its port go before SIPp binds it, and on a busy machine another
    // process may take it meanwhile: SIPp then sends nothing. Try another port.
    let (proc, status) = loop {
        let mut cmd = sipp(scenario, free_port());
        cmd.arg(server)
            .args([
                "-s",
                user,
                "-d",
                "200",
                "-trace_rtt",
                "-rtt_freq",
                "1",
                "-trace_msg",
            ])
            .args(extra);
        let mut proc = Proc::spawn(cmd, &name, dir, false);
        let status = proc.wait(Duration::from_secs(90));
        let errors = dir.join(format!("{stem}_{}_errors.log", proc.pid()));
        let unbound = fs::read_to_string(errors).is_ok_and(|e| e.contains("Unable to bind"));
        if status.success() || !unbound {
            break (proc, status);
        }
    };
    let rtt = dir.join(format!("{stem}_{}_rtt.csv", proc.pid()));
    let rtt_ms = fs::read_to_string(rtt)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split(';').nth(1)?.trim().parse().ok())
        .collect();
    let messages = sipp_messages(dir, scenario, &proc);
    SippRun {
        status,
        log: proc.log_text(),
        rtt_ms,
        messages,
    }
}

/// The SIP messages a finished SIPp run (started with -trace_msg) sent and received.
pub fn sipp_messages(dir: &Path, scenario: &str, p: &Proc) -> String {
    let name = format!(
        "{}_{}_messages.log",
        scenario.trim_end_matches(".xml"),
        p.pid()
    );
    fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// A device's SIP side: SIPp answering `calls` calls on `port` with `scenario`, ringing 100 ms.
pub fn device_ua(dir: &Path, scenario: &str, port: u16, calls: u32, name: &str) -> Proc {
    let mut cmd = sipp(scenario, port);
    // It serves calls for as long as the test runs (a soak runs for minutes): the last
    // -timeout wins over sipp()'s 60 s; the rig kills it when the test ends.
    cmd.args([
        "-m",
        &calls.to_string(),
        "-d",
        "100",
        "-trace_msg",
        "-timeout",
        "10800s",
    ]);
    let mut p = Proc::spawn(cmd, name, dir, false);
    // SIPp binds its port right away; make sure it did not die on a port clash.
    std::thread::sleep(Duration::from_millis(100));
    assert!(p.running(), "{name} did not start:\n{}", p.log_text());
    p
}

/// Who pushes a phone: Apple (an iPhone) or Firebase Cloud Messaging (an Android phone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pusher {
    Apns,
    /// The Firebase project the app belongs to (its pn-param).
    Fcm {
        project: String,
    },
}

/// The APNs topic the iPhone app registers (its pn-param): the mock's team, a VoIP topic.
pub const APNS_PN_PARAM: &str = "TESTTEAM01.com.example.app.voip";

/// A phone: a user with a push token and a stable +sip.instance, answering on `ua_port`.
#[derive(Clone)]
pub struct Phone {
    pub user: String,
    pub pusher: Pusher,
    pub token: String,
    pub instance: String,
    pub ua_port: u16,
}

impl Phone {
    /// An iPhone for a user name unique to this test run (registrations outlive a test).
    pub fn new(user: &str) -> Phone {
        let token: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        Phone::with_token(user, Pusher::Apns, token)
    }

    /// An Android phone of the app of Firebase project `project`, with a registration token of
    /// FCM's shape (an instance id, `:APA91b`, then base64url; case matters), ~160 characters.
    pub fn android(user: &str, project: &str) -> Phone {
        const BASE64URL: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let random = |n: usize| -> String {
            (0..n)
                .map(|_| BASE64URL[usize::from(rand::random::<u8>() % 64)] as char)
                .collect()
        };
        let token = format!("{}:APA91b{}", random(22), random(134));
        let pusher = Pusher::Fcm {
            project: project.into(),
        };
        Phone::with_token(user, pusher, token)
    }

    fn with_token(user: &str, pusher: Pusher, token: String) -> Phone {
        Phone {
            user: format!("{user}{}", std::process::id()),
            pusher,
            token,
            instance: uuid::Uuid::new_v4().to_string(),
            ua_port: free_port(),
        }
    }

    /// Its RFC 8599 pn-provider.
    pub fn pn_provider(&self) -> &str {
        match self.pusher {
            Pusher::Apns => "apns",
            Pusher::Fcm { .. } => "fcm",
        }
    }

    /// Its RFC 8599 pn-param: the APNs topic, or the Firebase project.
    pub fn pn_param(&self) -> &str {
        match &self.pusher {
            Pusher::Apns => APNS_PN_PARAM,
            Pusher::Fcm { project } => project,
        }
    }

    /// The app registering while awake (SIPp, RFC 8599 Contact params), as the device would.
    pub fn register(&self, dir: &Path, server: &str, expires: u32) {
        let mut cmd = sipp("register.xml", free_port());
        let caps = dir.join(format!("feature-caps-{}.log", self.user));
        cmd.arg(server)
            .args(["-s", &self.user, "-m", "1", "-trace_logs", "-log_file"]);
        cmd.arg(&caps);
        let keys = [
            ("provider", self.pn_provider().to_string()),
            ("token", self.token.clone()),
            ("param", self.pn_param().to_string()),
            ("instance", self.instance.clone()),
            ("expires", expires.to_string()),
            ("contact_port", self.ua_port.to_string()),
        ];
        for (k, v) in &keys {
            cmd.arg("-key").arg(k).arg(v);
        }
        let mut p = Proc::spawn(cmd, &format!("register-{}", self.user), dir, false);
        let status = p.wait(Duration::from_secs(60));
        assert!(
            status.success(),
            "REGISTER of {} failed:\n{}",
            self.user,
            p.log_text()
        );
        let caps = std::fs::read_to_string(&caps).unwrap_or_default();
        let pns = format!("Feature-Caps pns={}\n", self.pn_provider());
        assert!(
            caps.contains(&pns),
            "the 200 to {}'s REGISTER does not name its push service ({pns:?}): {caps:?}",
            self.user
        );
    }

    /// Many phones registering while awake, as `register` does, in one SIPp run.
    pub fn register_all(phones: &[Phone], dir: &Path, server: &str, expires: u32) {
        let keys = [
            "service",
            "provider",
            "token",
            "param",
            "instance",
            "contact_port",
        ];
        let scenario = injected_scenario(dir, "register.xml", &keys);
        let rows: Vec<Vec<String>> = phones
            .iter()
            .map(|p| {
                vec![
                    p.user.clone(),
                    p.pn_provider().to_string(),
                    p.token.clone(),
                    p.pn_param().to_string(),
                    p.instance.clone(),
                    p.ua_port.to_string(),
                ]
            })
            .collect();
        let users = injection_file(dir, "register.csv", &rows);
        let mut cmd = sipp(&scenario, free_port());
        cmd.arg(server)
            .args(["-inf", &users, "-m", &phones.len().to_string(), "-r", "200"])
            .args(["-key", "expires", &expires.to_string()]);
        let mut p = Proc::spawn(cmd, "register-all", dir, false);
        let status = p.wait(Duration::from_secs(60));
        assert!(
            status.success(),
            "REGISTER of {} phones failed:\n{}",
            phones.len(),
            p.log_text()
        );
    }

    /// The address of record pushpark files the phone under (the module's form of the To URI).
    pub fn aor(&self) -> String {
        format!("sip:{}@127.0.0.1", self.user)
    }

    /// The option of `pushpark device-sim` that gives it this phone, and its value.
    pub fn sim_args(&self) -> [String; 2] {
        match &self.pusher {
            Pusher::Apns => [
                "--device".into(),
                format!(
                    "{}:{}:{}:{}",
                    self.user, self.token, self.ua_port, self.instance
                ),
            ],
            Pusher::Fcm { project } => [
                "--android".into(),
                format!(
                    "{}:{}:{}:{project}:{}",
                    self.user, self.ua_port, self.instance, self.token
                ),
            ],
        }
    }
}

/// A REGISTER whose Contact URI carries `pn` (its push parameters): the status line of the
/// registrar's refusal.
pub fn register_refused(dir: &Path, server: &str, user: &str, pn: &str) -> String {
    let mut cmd = sipp("register_refused.xml", free_port());
    cmd.arg(server)
        .args(["-s", user, "-m", "1", "-trace_msg", "-key", "pn", pn]);
    let mut p = Proc::spawn(cmd, &format!("register-refused-{user}"), dir, false);
    let status = p.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "REGISTER of {user} not refused:\n{}",
        p.log_text()
    );
    let messages = sipp_messages(dir, "register_refused.xml", &p);
    messages
        .lines()
        .find(|l| l.starts_with("SIP/2.0 4") || l.starts_with("SIP/2.0 5"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Waits until `check` has an answer, at most `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first value of a SIP header in a SIPp message trace.
pub fn header(messages: &str, name: &str) -> Option<String> {
    messages
        .lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// How often `needle` occurs in `haystack` (a log).
pub fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// A desk phone or softphone of `user` registering without push parameters (SIPp): always
/// reachable at `port`.
pub fn register_desktop(dir: &Path, server: &str, user: &str, port: u16) {
    let mut cmd = sipp("register_plain.xml", free_port());
    cmd.arg(server).args(["-s", user, "-m", "1"]);
    let instance = uuid::Uuid::new_v4().to_string();
    for (k, v) in [
        ("instance", instance),
        ("expires", "3600".into()),
        ("contact_port", port.to_string()),
    ] {
        cmd.arg("-key").arg(k).arg(v);
    }
    let mut p = Proc::spawn(cmd, &format!("register-desktop-{user}"), dir, false);
    let status = p.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "REGISTER of {user}'s desktop failed:\n{}",
        p.log_text()
    );
}

/// `pushpark device-sim` for these iPhones; returns once it watches the mock.
pub fn device_sim(dir: &Path, mock: &Mock, server: &str, phones: &[&Phone], wake_ms: u64) -> Proc {
    phone_sim(dir, Some(mock), None, server, phones, wake_ms)
}

/// `pushpark device-sim` for these phones, iPhones woken by `apns`' pushes and Android phones by
/// `fcm`'s; returns once it watches them.
pub fn phone_sim(
    dir: &Path,
    apns: Option<&Mock>,
    fcm: Option<&MockFcm>,
    server: &str,
    phones: &[&Phone],
    wake_ms: u64,
) -> Proc {
    let mut cmd = Command::new(pushpark_bin());
    cmd.arg("device-sim")
        .arg("--registrar")
        .arg(server)
        .arg("--wake-delay-ms")
        .arg(wake_ms.to_string());
    if let Some(mock) = apns {
        cmd.arg("--control").arg(mock.control.addr.to_string());
    }
    if let Some(mock) = fcm {
        cmd.arg("--fcm-control").arg(mock.control.addr.to_string());
    }
    for p in phones {
        cmd.args(p.sim_args());
    }
    let sim = Proc::spawn(cmd, "device-sim", dir, true);
    sim.expect_line("ready", SOON);
    sim
}

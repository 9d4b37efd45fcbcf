//! `pushpark_engine_spawn`: the engine in a child process, supervised from the host's.
//!
//! A SIP server forks its workers and stops altogether when one of them dies, so an engine
//! living in one of its processes takes the server down with it. Here the host's process
//! only holds a supervisor: it forks the engine process, forwards each call to it over a
//! socketpair and waits for the answer (at most HANG_TIMEOUT). When the engine process
//! dies or hangs, the supervisor ends each call it held with a REJECT event of its own, so
//! every call still ends exactly once, and starts a new engine process (which reads the
//! same device store).
//!
//! The host's event fd is an epoll set that stays the same across restarts: the engine
//! process's socket (its messages, or its death), an eventfd kept readable while events
//! are fetched but not yet polled, and a timerfd ticking every TICK: a due restart, and a
//! ping to an engine process that has been quiet (a stopped one would hold its calls with
//! nothing left to time them out).

mod child;
mod wire;

use super::handle::{Reply, Request};
use super::log as host_log;
use super::result::{Error, Result};
use super::sys::*;
use crate::engine::{
    purge_call, reject_queued, CallEnd, CallWas, EngineConfig, Event, EventKind, Stats,
};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};
use wire::{encode, write_all, Inbox, Read, ToEngine, ToSupervisor};

/// A call the engine process has not answered by then is taken as a hang: the process is
/// killed. Engine calls never wait for the disk or the network, so a healthy engine
/// answers in microseconds.
const HANG_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a new engine process may take to open the store and start.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `pushpark_engine_free` waits for the engine process to commit and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// An engine process that dies sooner than this after its start is restarted at once the
/// first time, then after a delay doubling up to MAX_RESTART_DELAY (a config or disk that
/// keeps it from running).
const QUICK_DEATH: Duration = Duration::from_secs(1);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// How often the supervisor looks after its engine process (the host's event fd fires).
const TICK: Duration = Duration::from_millis(500);
const NO_ANSWER: &str = "the engine process did not answer in time";
/// Events fetched from the engine process per round trip.
const EVENT_BATCH: usize = 64;

/// Waits until `fd` is ready for `events` or `deadline` passes (None: forever).
fn wait_fd(fd: RawFd, events: libc::c_short, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let timeout = match deadline {
            None => -1,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                None => return Ok(false),
                Some(left) => left.as_millis().min(i32::MAX as u128) as i32 + 1,
            },
        };
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut pfd, 1, timeout) } {
            n if n > 0 => return Ok(true),
            0 => {}
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// A system call's result, or its errno as PUSHPARK_ERR_IO.
fn sys(rc: libc::c_int, what: &str) -> Result<libc::c_int> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(Error::new(PUSHPARK_ERR_IO, format!("{what}: {e}")));
    }
    Ok(rc)
}

/// A new fd from a system call, owned from now on.
fn os_fd(fd: libc::c_int, what: &str) -> Result<OwnedFd> {
    // SAFETY: a new fd that nothing else owns.
    sys(fd, what).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn down(detail: impl Into<String>) -> Error {
    Error::new(PUSHPARK_ERR_ENGINE_DOWN, detail)
}

/// A call parked or forked through the supervisor that has not ended yet.
struct Held {
    park_id: u64,
    host_data: u64,
    call_id: String,
    aor: String,
}

struct EngineProcess {
    pid: libc::pid_t,
    sock: OwnedFd,
    inbox: Inbox,
    started: Instant,
    /// When it last sent anything.
    heard: Instant,
}

pub(crate) struct Supervisor {
    config: String,
    reject_code: u16,
    reject_reason: String,
    engine: Option<EngineProcess>,
    /// While no engine process runs: when to start one.
    restart_at: Option<Instant>,
    restart_delay: Duration,
    epoll: OwnedFd,
    wake: OwnedFd,
    timer: OwnedFd,
    /// Events fetched from the engine process, not yet polled by the host.
    events: VecDeque<Event>,
    /// The engine process has events we have not fetched.
    waiting: bool,
    held: HashMap<u64, Held>,
    restarts: u64,
    log_level_sent: usize,
    /// park.late_wake_ms is not 0: a purged call's Resume or AppendBranch becomes a LateWake.
    late_wakes: bool,
}

impl Supervisor {
    /// Creates the supervisor and its first engine process: the start-up error, if any, is
    /// the engine's.
    pub fn spawn(config_json: &str, config: &EngineConfig) -> Result<Supervisor> {
        // SAFETY: plain fd-creating syscalls.
        let (epoll, wake, timer) = unsafe {
            (
                os_fd(libc::epoll_create1(libc::EPOLL_CLOEXEC), "epoll")?,
                os_fd(
                    libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC),
                    "eventfd",
                )?,
                os_fd(
                    libc::timerfd_create(
                        libc::CLOCK_MONOTONIC,
                        libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                    ),
                    "timerfd",
                )?,
            )
        };
        let mut s = Supervisor {
            config: config_json.to_owned(),
            reject_code: config.park.reject_code,
            reject_reason: config.park.reject_reason.clone(),
            engine: None,
            restart_at: None,
            restart_delay: Duration::ZERO,
            epoll,
            wake,
            timer,
            events: VecDeque::new(),
            waiting: false,
            held: HashMap::new(),
            restarts: 0,
            log_level_sent: 0,
            late_wakes: !config.park.late_wake.is_zero(),
        };
        s.watch(s.wake.as_raw_fd())?;
        s.watch(s.timer.as_raw_fd())?;
        let every = libc::timespec {
            tv_sec: 0,
            tv_nsec: TICK.as_nanos() as libc::c_long,
        };
        let ticks = libc::itimerspec {
            it_interval: every,
            it_value: every,
        };
        // SAFETY: valid timerfd and itimerspec.
        let rc =
            unsafe { libc::timerfd_settime(s.timer.as_raw_fd(), 0, &ticks, std::ptr::null_mut()) };
        sys(rc, "timerfd_settime")?;
        s.start()?;
        Ok(s)
    }

    /// Adds `fd` to the host's event fd (a closed fd leaves it by itself).
    fn watch(&self, fd: RawFd) -> Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: valid epoll fd and event.
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        sys(rc, "epoll_ctl").map(drop)
    }

    /// Forks an engine process and waits until it has created its engine.
    fn start(&mut self) -> Result<()> {
        let mut pair = [0; 2];
        // SAFETY: pair is valid for two fds.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            )
        };
        sys(rc, "socketpair")?;
        let mine = os_fd(pair[0], "socketpair")?;
        let theirs = os_fd(pair[1], "socketpair")?;
        // The child inherits the sink at this level.
        self.log_level_sent = host_log::host_level();
        // SAFETY: getpid/fork; the child runs `child::run`, which never returns.
        let supervisor = unsafe { libc::getpid() };
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let close = [
                mine.as_raw_fd(),
                self.epoll.as_raw_fd(),
                self.wake.as_raw_fd(),
                self.timer.as_raw_fd(),
            ];
            child::run(theirs.as_raw_fd(), &self.config, supervisor, &close);
        }
        drop(theirs);
        if pid < 0 {
            let e = io::Error::last_os_error();
            return Err(Error::new(PUSHPARK_ERR_IO, format!("fork: {e}")));
        }
        // SAFETY: fcntl on our fd.
        unsafe { libc::fcntl(mine.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        let mut process = EngineProcess {
            pid,
            sock: mine,
            inbox: Inbox::default(),
            started: Instant::now(),
            heard: Instant::now(),
        };
        match Self::receive(&mut process, Instant::now() + START_TIMEOUT) {
            Ok(ToSupervisor::Ready) => {}
            outcome => {
                let why = match outcome {
                    Ok(ToSupervisor::Failed(e)) => Error::new(e.code, e.detail),
                    Err(e) => e,
                    Ok(other) => down(format!("engine process said {other:?} at start")),
                };
                reap(process.pid, QUICK_DEATH);
                return Err(why);
            }
        }
        self.watch(process.sock.as_raw_fd())?;
        self.engine = Some(process);
        log::info!("engine process {pid} started");
        Ok(())
    }

    /// The next message from the engine process, waiting until `deadline`.
    fn receive(p: &mut EngineProcess, deadline: Instant) -> Result<ToSupervisor> {
        loop {
            match p.inbox.next() {
                Ok(Some(msg)) => {
                    p.heard = Instant::now();
                    return Ok(msg);
                }
                Ok(None) => {}
                Err(e) => return Err(down(format!("engine process sent garbage: {e}"))),
            }
            let fd = p.sock.as_raw_fd();
            match wait_fd(fd, libc::POLLIN, Some(deadline)) {
                Ok(true) => {}
                Ok(false) => return Err(down(NO_ANSWER)),
                Err(e) => return Err(down(format!("poll: {e}"))),
            }
            match p.inbox.fill(fd) {
                Ok(Read::Open) => {}
                Ok(Read::Closed) => return Err(down("the engine process exited")),
                Err(e) => return Err(down(format!("reading from the engine process: {e}"))),
            }
        }
    }

    /// Runs one call in the engine process. A death or hang ends the held calls (REJECT
    /// events) and restarts the engine process before this returns ENGINE_DOWN.
    pub fn call(&mut self, mut call: Request) -> Result<Reply> {
        self.restart_if_due();
        if let Request::RejectWaiting {
            code,
            reason,
            resumed,
        } = &mut call
        {
            // Fetched, not yet polled: as the engine does with its own queue.
            *resumed = reject_queued(&mut self.events, *code, reason);
        }
        let (parked, ended) = match &call {
            Request::Park(p) | Request::Fork(p, _) => {
                let held = Held {
                    park_id: 0,
                    host_data: p.host_data,
                    call_id: p.call_id.clone(),
                    aor: p.aor.clone(),
                };
                (Some((p.host_ref, held)), None)
            }
            Request::Cancel(r) | Request::CallEnded(r) => (None, Some((*r, CallEnd::Cancelled))),
            Request::CallCompleted(r, status) => (None, Some((*r, CallEnd::Completed(*status)))),
            // Cancelled unless the reply says it was forked.
            Request::CallEnd(r, _) => (None, Some((*r, CallEnd::Cancelled))),
            _ => (None, None),
        };
        let status = match &call {
            Request::CallEnd(_, status) => *status,
            _ => 0,
        };
        let rejects = matches!(call, Request::RejectWaiting { .. });
        let reply = self.exchange(call);
        // Its REJECTs were queued before the answer: the next poll fetches them, even
        // before the engine process says events wait (pushpark_reject_waiting's promise).
        self.waiting |= rejects && reply.is_ok();
        let ended = match (ended, &reply) {
            (Some((r, _)), Ok(Reply::Ended(CallWas::Forked))) => {
                Some((r, CallEnd::Completed(status)))
            }
            (ended, _) => ended,
        };
        if let (Ok(Reply::ParkId(id)), Some((host_ref, held))) = (&reply, parked) {
            let park_id = *id;
            self.held.insert(host_ref, Held { park_id, ..held });
        }
        // Whatever the answer: ended by the host, or (engine lost) REJECTed already.
        if let Some((host_ref, how)) = ended {
            self.held.remove(&host_ref);
            // As the engine purged its queue: none of the call's events fetched already
            // is polled after the host was told it ended, its devices' wakes aside.
            if matches!(reply, Ok(Reply::Done | Reply::Ended(_))) {
                purge_call(
                    &mut self.events,
                    host_ref,
                    self.late_wakes.then(|| how.cause()),
                );
            }
        }
        self.update_wake();
        reply
    }

    fn exchange(&mut self, call: Request) -> Result<Reply> {
        let Some(p) = self.engine.as_mut() else {
            return Err(down("the engine process is restarting"));
        };
        let deadline = Instant::now() + HANG_TIMEOUT;
        let level = host_log::host_level();
        let mut out = Vec::new();
        if level != self.log_level_sent {
            out = encode(&ToEngine::LogLevel(level));
            self.log_level_sent = level;
        }
        out.extend(encode(&ToEngine::Request(call)));
        let mut outcome = write_all(p.sock.as_raw_fd(), &out, Some(deadline))
            .map_err(|e| down(format!("writing to the engine process: {e}")))
            .map(|()| None);
        while let Ok(None) = outcome {
            outcome = match Self::receive(p, deadline) {
                Ok(ToSupervisor::Reply(r)) => Ok(Some(r)),
                Ok(ToSupervisor::EventsWaiting) => {
                    self.waiting = true;
                    Ok(None)
                }
                Ok(other) => Err(down(format!("engine process said {other:?}"))),
                Err(e) => Err(e),
            };
        }
        match outcome {
            Ok(Some(reply)) => reply.map_err(|e| Error::new(e.code, e.detail)),
            Ok(None) => unreachable!("the loop ends with an answer or an error"),
            Err(e) => {
                let hung = e.code == PUSHPARK_ERR_ENGINE_DOWN && e.detail == NO_ANSWER;
                self.engine_lost(&e.detail, hung);
                Err(e)
            }
        }
    }

    /// The engine process died or hung: end the calls it held, start another.
    fn engine_lost(&mut self, why: &str, hung: bool) {
        let Some(p) = self.engine.take() else { return };
        let status = reap(p.pid, if hung { Duration::ZERO } else { QUICK_DEATH });
        let held = self.held.len();
        for (host_ref, h) in self.held.drain() {
            self.events.push_back(Event {
                kind: EventKind::Reject,
                host_ref,
                host_data: h.host_data,
                park_id: h.park_id,
                call_id: h.call_id,
                caller_uri: String::new(),
                caller_name: String::new(),
                aor: h.aor,
                device_key: String::new(),
                contact: String::new(),
                sip_code: self.reject_code,
                reason: self.reject_reason.clone(),
                relay: None,
                first_delivered: false,
                push_id: String::new(),
            });
        }
        self.waiting = false;
        self.restarts += 1;
        log::error!(
            "engine process {} {status} ({why}): its {held} calls get {} {}; a new one starts",
            p.pid,
            self.reject_code,
            self.reject_reason
        );
        if p.started.elapsed() >= QUICK_DEATH {
            self.restart_delay = Duration::ZERO;
        }
        self.restart();
        self.update_wake();
    }

    /// Starts an engine process now, unless the last ones died quickly: then later.
    fn restart(&mut self) {
        let delay = self.restart_delay;
        self.restart_delay = (delay * 2).clamp(QUICK_DEATH, MAX_RESTART_DELAY);
        if delay.is_zero() {
            self.start_or_retry();
            return;
        }
        self.restart_at = Some(Instant::now() + delay);
    }

    fn start_or_retry(&mut self) {
        if let Err(e) = self.start() {
            log::error!("engine process not started: {}", e.detail);
            self.restart();
        }
    }

    fn restart_if_due(&mut self) {
        if self.restart_at.is_some_and(|at| Instant::now() >= at) {
            self.restart_at = None;
            self.start_or_retry();
        }
    }

    /// On each tick: a due restart, or a ping to an engine process quiet for a tick.
    fn tick(&mut self) {
        let mut expirations = 0u64;
        // SAFETY: reads 8 bytes into a u64 (drains the timerfd; EAGAIN: no tick yet).
        let n = unsafe {
            libc::read(
                self.timer.as_raw_fd(),
                (&mut expirations as *mut u64).cast(),
                8,
            )
        };
        if n != 8 {
            return;
        }
        self.restart_if_due();
        if self
            .engine
            .as_ref()
            .is_some_and(|p| p.heard.elapsed() >= TICK)
        {
            let _ = self.call(Request::Ping); // a hang is handled inside
        }
    }

    /// The wake eventfd is readable exactly while the host has something to poll.
    fn update_wake(&mut self) {
        let fd = self.wake.as_raw_fd();
        let mut count = 0u64;
        // SAFETY: 8-byte reads/writes on our eventfd.
        unsafe {
            if self.events.is_empty() && !self.waiting {
                libc::read(fd, (&mut count as *mut u64).cast(), 8);
            } else {
                count = 1;
                libc::write(fd, (&count as *const u64).cast(), 8);
            }
        }
    }

    pub fn event_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    pub fn poll_event(&mut self) -> Result<Option<Event>> {
        self.tick();
        if self.events.is_empty() {
            self.read_messages();
        }
        if self.events.is_empty() && self.waiting {
            self.waiting = false;
            match self.call(Request::Events(EVENT_BATCH)) {
                Ok(Reply::Events(events, more)) => {
                    for e in &events {
                        if matches!(e.kind, EventKind::Resume | EventKind::Reject) {
                            self.held.remove(&e.host_ref);
                        }
                    }
                    self.events.extend(events);
                    self.waiting |= more;
                }
                Ok(other) => log::error!("engine process answered {other:?} to a fetch"),
                Err(_) => {} // lost: engine_lost queued its REJECTs
            }
        }
        let next = self.events.pop_front();
        self.update_wake();
        Ok(next)
    }

    /// What the engine process sent between calls: that events wait, or its death.
    fn read_messages(&mut self) {
        let Some(p) = self.engine.as_mut() else {
            return;
        };
        let mut lost = match p.inbox.fill(p.sock.as_raw_fd()) {
            Ok(Read::Open) => None,
            Ok(Read::Closed) => Some("it exited".to_owned()),
            Err(e) => Some(format!("reading from it: {e}")),
        };
        loop {
            match p.inbox.next::<ToSupervisor>() {
                Ok(Some(ToSupervisor::EventsWaiting)) => {
                    p.heard = Instant::now();
                    self.waiting = true;
                }
                Ok(Some(other)) => log::warn!("engine process said {other:?} unasked"),
                Ok(None) => break,
                Err(e) => {
                    lost = Some(format!("it sent garbage: {e}"));
                    break;
                }
            }
        }
        if let Some(why) = lost {
            self.engine_lost(&why, false);
        }
    }

    pub fn stats(&mut self) -> Result<Stats> {
        let mut stats = match self.call(Request::Stats)? {
            Reply::Stats(s) => *s,
            other => return Err(down(format!("engine process answered {other:?}"))),
        };
        stats.engine_restarts = self.restarts;
        Ok(stats)
    }
}

impl Drop for Supervisor {
    /// Stops the engine process cleanly: it frees its engine (committing the store).
    fn drop(&mut self) {
        let Some(p) = self.engine.take() else { return };
        let deadline = Instant::now() + STOP_TIMEOUT;
        let sent = write_all(p.sock.as_raw_fd(), &encode(&ToEngine::Stop), Some(deadline));
        let mut inbox = p.inbox;
        // Its end closes when it exits.
        while sent.is_ok()
            && wait_fd(p.sock.as_raw_fd(), libc::POLLIN, Some(deadline)).unwrap_or(false)
        {
            if !matches!(inbox.fill(p.sock.as_raw_fd()), Ok(Read::Open)) {
                break;
            }
        }
        let late = Instant::now() >= deadline;
        reap(p.pid, if late { Duration::ZERO } else { QUICK_DEATH });
    }
}

/// Collects an engine process's exit, killing it if it has not exited within `grace`,
/// and says how it ended.
fn reap(pid: libc::pid_t, grace: Duration) -> String {
    let mut status = 0;
    let give_up = Instant::now() + grace;
    // SAFETY: waits for and signals our own child.
    let mut rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    while rc == 0 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(2));
        rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    }
    let mut how = "";
    if rc == 0 {
        how = " (killed: it hung)";
        // SAFETY: as above.
        rc = unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, &mut status, 0)
        };
    }
    if rc != pid {
        "ended (its status is unknown)".into()
    } else if libc::WIFSIGNALED(status) {
        format!("was killed by signal {}{how}", libc::WTERMSIG(status))
    } else {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    }
}

//! The engine process: a fork of the supervisor's process that creates the engine, serves
//! the supervisor's calls and tells it when events wait. It runs only library code and
//! leaves with `_exit`, never through the host's code (a forked SIP server's exit handlers
//! would tear down memory its siblings share).

use super::super::handle::{engine_error, serve, Request};
use super::super::log as host_log;
use super::super::result::Error;
use super::super::sys::PUSHPARK_ERR_CONFIG;
use super::wire::{encode, write_all, Inbox, Read, ToEngine, ToSupervisor, WireError};
use crate::engine::{Engine, EngineConfig};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// SIGTERM seen. systemd signals every process of the unit: the supervisor, signalled too,
/// still needs this engine to answer its waiting calls before it stops it; so the engine
/// stops on its own only once orphaned, or after `TERM_GRACE`.
static TERMINATED: AtomicBool = AtomicBool::new(false);
const TERM_GRACE: Duration = Duration::from_secs(5);

extern "C" fn on_sigterm(_: libc::c_int) {
    TERMINATED.store(true, Ordering::Relaxed);
}

/// Runs the engine process on `sock` and exits; `close` are the supervisor's own fds.
pub(super) fn run(sock: RawFd, config: &str, supervisor: libc::pid_t, close: &[RawFd]) -> ! {
    let code = std::panic::catch_unwind(|| {
        // SAFETY: plain syscalls on fds and signal settings of this (single-threaded) process.
        unsafe { prepare(supervisor, close) };
        serve_supervisor(sock, config, supervisor)
    })
    .unwrap_or(101);
    // SAFETY: ends this process without running the host's exit handlers.
    unsafe { libc::_exit(code) }
}

/// Signals as a fresh process has them (the host's handlers would run host code here),
/// SIGTERM to stop (see `TERMINATED`), SIGINT left to the supervisor (a Ctrl-C reaches the whole group), and
/// SIGTERM too when the supervisor dies.
unsafe fn prepare(supervisor: libc::pid_t, close: &[RawFd]) {
    for &fd in close {
        libc::close(fd);
    }
    for sig in 1..libc::SIGRTMIN() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    libc::signal(libc::SIGINT, libc::SIG_IGN);
    libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    libc::signal(
        libc::SIGTERM,
        on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t,
    );
    let mut all: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut all);
    libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    if libc::getppid() != supervisor {
        libc::_exit(0); // the supervisor died before the line above
    }
    libc::prctl(libc::PR_SET_NAME, c"pushpark-engine".as_ptr());
}

fn send(sock: RawFd, msg: &ToSupervisor) -> bool {
    write_all(sock, &encode(msg), None).is_ok()
}

/// The process's life: create the engine, then serve until told to stop or orphaned.
fn serve_supervisor(sock: RawFd, config: &str, supervisor: libc::pid_t) -> i32 {
    let engine = match EngineConfig::from_json(config)
        .map_err(|e| Error::new(PUSHPARK_ERR_CONFIG, e.to_string()))
        .and_then(|cfg| {
            host_log::set_config_level(cfg.log_level);
            Engine::new(cfg).map_err(engine_error)
        }) {
        Ok(engine) => engine,
        Err(e) => {
            let failed = WireError {
                code: e.code,
                detail: e.detail,
            };
            send(sock, &ToSupervisor::Failed(failed));
            return 1;
        }
    };
    if !send(sock, &ToSupervisor::Ready) {
        return 0;
    }
    let mut inbox = Inbox::default();
    // EventsWaiting sent and not yet followed by a fetch: stop watching the event fd,
    // which stays readable while events wait.
    let mut told = false;
    let (mut stop, mut terminated) = (false, None::<Instant>);
    while !stop {
        if TERMINATED.load(Ordering::Relaxed) {
            let since = *terminated.get_or_insert_with(Instant::now);
            // SAFETY: getppid(2) cannot fail.
            if unsafe { libc::getppid() } != supervisor || since.elapsed() >= TERM_GRACE {
                break;
            }
        }
        let mut fds = [
            libc::pollfd {
                fd: sock,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if told { -1 } else { engine.event_fd() },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of two pollfd.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) } < 0 {
            continue; // EINTR: SIGTERM is checked above
        }
        if fds[0].revents != 0 {
            match inbox.fill(sock) {
                Ok(Read::Open) => {}
                Ok(Read::Closed) | Err(_) => break, // the supervisor is gone
            }
            loop {
                let msg = match inbox.next::<ToEngine>() {
                    Ok(Some(msg)) => msg,
                    Ok(None) => break,
                    Err(_) => return 2, // not our supervisor's message: nothing sane to do
                };
                match msg {
                    ToEngine::Request(call) => {
                        told &= !matches!(call, Request::Events(_));
                        let reply = serve(&engine, call).map_err(|e| WireError {
                            code: e.code,
                            detail: e.detail,
                        });
                        if !send(sock, &ToSupervisor::Reply(reply)) {
                            return 0;
                        }
                    }
                    ToEngine::LogLevel(level) => host_log::set_host_level(level),
                    ToEngine::Stop => stop = true,
                }
            }
        }
        if !told && fds[1].revents != 0 {
            told = send(sock, &ToSupervisor::EventsWaiting);
        }
    }
    drop(engine); // commits the store's queued changes
    0
}

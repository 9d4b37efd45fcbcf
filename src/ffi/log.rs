//! Forwards the `log` facade to the host's C callback: the one host function the library
//! calls from its own threads (see `pushpark_set_log_callback` in pushpark.h).

use super::result::{guard, to_cstring, Error};
use super::sys::*;
use log::{Level, LevelFilter, Log, Metadata, Record};
use parking_lot::RwLock;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

struct Sink {
    callback: unsafe extern "C" fn(pushpark_log_level, *const std::ffi::c_char, *mut c_void),
    user: *mut c_void,
    max: LevelFilter,
}

// SAFETY: the host promises (pushpark.h) that the callback is thread-safe and that `user`
// stays valid while installed; we only pass `user` back to it.
unsafe impl Send for Sink {}
unsafe impl Sync for Sink {}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// The config's `log_level`: the most verbose level the library logs at, whatever the
/// host asks for (a `LevelFilter` as usize; Trace until an engine is created).
static CONFIG_MAX: AtomicUsize = AtomicUsize::new(LevelFilter::Trace as usize);

fn config_max() -> LevelFilter {
    LevelFilter::iter()
        .nth(CONFIG_MAX.load(Ordering::Relaxed))
        .unwrap_or(LevelFilter::Trace)
}

/// Applies the config's `log_level` on top of the host's `max_level`.
pub(crate) fn set_config_level(level: LevelFilter) {
    CONFIG_MAX.store(level as usize, Ordering::Relaxed);
    if let Some(sink) = SINK.read().as_ref() {
        log::set_max_level(sink.max.min(level));
    }
}

/// The host's level (`max_level` of the sink installed; Off without one) as a
/// `LevelFilter` index: what an engine process must follow (see `set_host_level`).
pub(crate) fn host_level() -> usize {
    SINK.read()
        .as_ref()
        .map_or(LevelFilter::Off, |sink| sink.max) as usize
}

/// In an engine process: the supervisor's host changed its level; the sink (inherited
/// through fork) stays.
pub(crate) fn set_host_level(level: usize) {
    let level = LevelFilter::iter().nth(level).unwrap_or(LevelFilter::Off);
    if let Some(sink) = SINK.write().as_mut() {
        sink.max = level;
        log::set_max_level(level.min(config_max()));
    }
}

struct HostLogger;

static LOGGER: HostLogger = HostLogger;

impl Log for HostLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        SINK.read_recursive()
            .as_ref()
            .is_some_and(|sink| metadata.level() <= sink.max.min(config_max()))
    }

    fn log(&self, record: &Record) {
        // Held while calling out, so that once `pushpark_set_log_callback` returns the old
        // sink is never called again; recursive so a log call made while formatting cannot
        // deadlock behind a waiting writer.
        let sink = SINK.read_recursive();
        let Some(sink) = sink.as_ref() else { return };
        if record.level() > sink.max.min(config_max()) {
            return;
        }
        // Our own messages as they are; a dependency's (e.g. rustls) say whose they are.
        let msg = if record.target().starts_with("pushpark") {
            to_cstring(&record.args().to_string())
        } else {
            to_cstring(&format!("{}: {}", record.target(), record.args()))
        };
        // SAFETY: the host installed this callback with this `user` (see Sink).
        unsafe { (sink.callback)(level_code(record.level()), msg.as_ptr(), sink.user) };
    }

    fn flush(&self) {}
}

fn level_code(level: Level) -> pushpark_log_level {
    match level {
        Level::Error => PUSHPARK_LOG_ERROR,
        Level::Warn => PUSHPARK_LOG_WARN,
        Level::Info => PUSHPARK_LOG_INFO,
        Level::Debug => PUSHPARK_LOG_DEBUG,
        Level::Trace => PUSHPARK_LOG_TRACE,
    }
}

fn level_filter(code: pushpark_log_level) -> Option<LevelFilter> {
    Some(match code {
        PUSHPARK_LOG_OFF => LevelFilter::Off,
        PUSHPARK_LOG_ERROR => LevelFilter::Error,
        PUSHPARK_LOG_WARN => LevelFilter::Warn,
        PUSHPARK_LOG_INFO => LevelFilter::Info,
        PUSHPARK_LOG_DEBUG => LevelFilter::Debug,
        PUSHPARK_LOG_TRACE => LevelFilter::Trace,
        _ => return None,
    })
}

/// Whether our logger is the `log` facade's; decided by the first sink installed.
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Installs our logger into the `log` facade once per process; false if another logger
/// got there first (a Rust program that links the rlib and has its own).
fn install() -> bool {
    *INSTALLED.get_or_init(|| log::set_logger(&LOGGER).is_ok())
}

/// See pushpark.h.
#[no_mangle]
pub extern "C" fn pushpark_set_log_callback(
    callback: pushpark_log_fn,
    user: *mut c_void,
    max_level: pushpark_log_level,
) -> pushpark_result {
    guard(|| {
        let max = level_filter(max_level).ok_or_else(|| {
            Error::new(
                PUSHPARK_ERR_INVALID,
                format!("max_level {max_level} is out of range"),
            )
        })?;
        let sink = callback
            .filter(|_| max != LevelFilter::Off)
            .map(|callback| Sink {
                callback,
                user,
                max,
            });
        let Some(sink) = sink else {
            *SINK.write() = None;
            // Never silence a logger that is not ours.
            if INSTALLED.get() == Some(&true) {
                log::set_max_level(LevelFilter::Off);
            }
            return Ok(());
        };
        if !install() {
            return Err(Error::new(
                PUSHPARK_ERR_INVALID,
                "another logger is already installed for the Rust log facade",
            ));
        }
        log::set_max_level(sink.max.min(config_max()));
        *SINK.write() = Some(sink);
        Ok(())
    })
}

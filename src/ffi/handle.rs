//! What a `pushpark_engine *` is: an engine in this process (`pushpark_engine_new`) or one
//! in a child process that a supervisor restarts (`pushpark_engine_spawn`). Both run every
//! request through `serve`, so the two behave alike down to the error codes.

use super::result::{Error, Result};
use super::spawn::Supervisor;
use super::sys::*;
use crate::engine::redact;
use crate::engine::{
    CallWas, DeviceInfo, Engine, EngineError, Event, ForkContact, ParkError, ParkRequest,
    ParkedInfo, RegisterOutcome, Registration, Stats,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::os::fd::RawFd;
use std::time::Duration;

pub(crate) enum Handle {
    Local(Engine),
    Spawned(Mutex<Supervisor>),
}

/// A park or fork request, owned so that it can cross to an engine process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Park {
    pub call_id: String,
    pub aor: String,
    pub caller_uri: String,
    pub caller_name: String,
    pub host_ref: u64,
    pub host_data: u64,
    pub timeout_ms: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Contact {
    pub uri: String,
    pub instance: Option<String>,
    pub ringing: bool,
}

/// One request to an engine.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    Register {
        aor: String,
        contact: String,
        instance: Option<String>,
        expires: u32,
        call_id: Option<String>,
        cseq: u32,
        path: Option<String>,
    },
    AddDevice {
        aor: String,
        device: DeviceInfo,
    },
    RemoveDevice {
        aor: String,
        key: String,
    },
    Park(Park),
    Fork(Park, Vec<Contact>),
    Cancel(u64),
    CallEnded(u64),
    CallCompleted(u64, u16),
    /// `pushpark_call_end`: host_ref, status.
    CallEnd(u64, u16),
    /// `pushpark_reject_waiting`; `resumed`: the supervisor's (see `Engine::reject_waiting`).
    RejectWaiting {
        code: u16,
        reason: String,
        resumed: Vec<u64>,
    },
    /// Up to this many queued events.
    Events(usize),
    Stats,
    Devices {
        aor: String,
        offset: usize,
        limit: usize,
    },
    Parked {
        offset: usize,
        limit: usize,
    },
    /// Answered Done: the supervisor's check that the engine process is alive.
    Ping,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Done,
    Registered(RegisterOutcome),
    ParkId(u64),
    Ended(CallWas),
    /// The events, and whether more are queued.
    Events(Vec<Event>, bool),
    Stats(Box<Stats>),
    Devices(Page<DeviceInfo>),
    Parked(Page<ParkedInfo>),
}

/// A page of a listing (see pushpark.h): `items` from position `offset` of `total`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Page<T> {
    pub total: usize,
    pub offset: usize,
    pub items: Vec<T>,
}

impl<T> Page<T> {
    /// Made where the engine runs, so only the page crosses to the caller's process.
    fn of(all: Vec<T>, offset: usize, limit: usize) -> Page<T> {
        let total = all.len();
        let items = all.into_iter().skip(offset).take(limit).collect();
        Page {
            total,
            offset,
            items,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            total: self.total,
            offset: self.offset,
            items: self.items.into_iter().map(f).collect(),
        }
    }
}

pub(crate) fn engine_error(e: EngineError) -> Error {
    let code = match &e {
        // Credentials and CA files are part of the configuration.
        EngineError::Config(_) | EngineError::Apns(_) | EngineError::Fcm(_) => PUSHPARK_ERR_CONFIG,
        EngineError::Store(_) | EngineError::Io(_) => PUSHPARK_ERR_IO,
        EngineError::Invalid(_) => PUSHPARK_ERR_INVALID,
        EngineError::Unsupported(_) => PUSHPARK_ERR_UNSUPPORTED,
        EngineError::NotFound => PUSHPARK_ERR_NOT_FOUND,
    };
    Error::new(code, e.to_string())
}

fn park_error(e: ParkError) -> Error {
    let code = match &e {
        ParkError::NoDevice => PUSHPARK_ERR_NO_DEVICE,
        ParkError::LimitTotal => PUSHPARK_ERR_LIMIT_TOTAL,
        ParkError::LimitPerAor => PUSHPARK_ERR_LIMIT_AOR,
        ParkError::QueueFull => PUSHPARK_ERR_QUEUE_FULL,
        ParkError::Duplicate => PUSHPARK_ERR_DUPLICATE,
        ParkError::Invalid(_) => PUSHPARK_ERR_INVALID,
        ParkError::ShutDown => PUSHPARK_ERR_SHUTDOWN,
    };
    Error::new(code, e.to_string())
}

impl Park {
    fn request(&self) -> ParkRequest<'_> {
        ParkRequest {
            call_id: &self.call_id,
            aor: &self.aor,
            caller_uri: &self.caller_uri,
            caller_name: &self.caller_name,
            host_ref: self.host_ref,
            host_data: self.host_data,
            timeout: (self.timeout_ms > 0).then(|| Duration::from_millis(self.timeout_ms.into())),
        }
    }
}

/// Runs one request on an engine of this process.
pub(crate) fn serve(engine: &Engine, call: Request) -> Result<Reply> {
    Ok(match call {
        Request::Register {
            aor,
            contact,
            instance,
            expires,
            call_id,
            cseq,
            path,
        } => Reply::Registered(
            engine
                .register(&Registration {
                    aor: &aor,
                    contact: &contact,
                    instance: instance.as_deref(),
                    expires,
                    call_id: call_id.as_deref(),
                    cseq,
                    path: path.as_deref(),
                })
                .map_err(engine_error)?,
        ),
        Request::AddDevice { aor, device } => {
            engine.add_device(&aor, &device).map_err(engine_error)?;
            Reply::Done
        }
        Request::RemoveDevice { aor, key } => match engine.remove_device(&aor, &key) {
            true => Reply::Done,
            false => {
                let detail = format!("{aor} has no device {}", redact::key(&key));
                return Err(Error::new(PUSHPARK_ERR_NOT_FOUND, detail));
            }
        },
        Request::Park(p) => Reply::ParkId(engine.park(&p.request()).map_err(park_error)?),
        Request::Fork(p, contacts) => {
            let list: Vec<_> = contacts
                .iter()
                .map(|c| ForkContact {
                    uri: &c.uri,
                    instance: c.instance.as_deref(),
                    ringing: c.ringing,
                })
                .collect();
            Reply::ParkId(engine.fork(&p.request(), &list).map_err(park_error)?)
        }
        Request::Cancel(host_ref) => {
            engine.cancel(host_ref).map_err(engine_error)?;
            Reply::Done
        }
        Request::CallEnded(host_ref) => {
            engine.call_ended(host_ref).map_err(engine_error)?;
            Reply::Done
        }
        Request::CallCompleted(host_ref, status) => {
            engine
                .call_completed(host_ref, status)
                .map_err(engine_error)?;
            Reply::Done
        }
        Request::CallEnd(host_ref, status) => {
            Reply::Ended(engine.end(host_ref, status).map_err(engine_error)?)
        }
        Request::RejectWaiting {
            code,
            reason,
            resumed,
        } => {
            engine.reject_waiting(code, &reason, &resumed);
            Reply::Done
        }
        Request::Events(max) => {
            let events: Vec<Event> = std::iter::from_fn(|| engine.poll_event())
                .take(max)
                .collect();
            // A full batch may have left more behind; the next one may then be empty.
            let more = events.len() == max;
            Reply::Events(events, more)
        }
        Request::Stats => Reply::Stats(Box::new(engine.stats())),
        Request::Devices { aor, offset, limit } => {
            Reply::Devices(Page::of(engine.devices(&aor), offset, limit))
        }
        Request::Parked { offset, limit } => {
            Reply::Parked(Page::of(engine.parked(), offset, limit))
        }
        Request::Ping => Reply::Done,
    })
}

fn unexpected(reply: Reply) -> Error {
    Error::new(
        PUSHPARK_ERR_INTERNAL,
        format!("the engine process answered {reply:?}"),
    )
}

impl Handle {
    fn run(&self, call: Request) -> Result<Reply> {
        match self {
            Handle::Local(engine) => serve(engine, call),
            Handle::Spawned(s) => s.lock().call(call),
        }
    }

    /// Runs a request whose answer carries nothing.
    pub fn done(&self, call: Request) -> Result<()> {
        match self.run(call)? {
            Reply::Done => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    pub fn register(&self, call: Request) -> Result<RegisterOutcome> {
        match self.run(call)? {
            Reply::Registered(outcome) => Ok(outcome),
            r => Err(unexpected(r)),
        }
    }

    /// Park or fork: the park id.
    pub fn park(&self, call: Request) -> Result<u64> {
        match self.run(call)? {
            Reply::ParkId(id) => Ok(id),
            r => Err(unexpected(r)),
        }
    }

    pub fn end(&self, host_ref: u64, status: u16) -> Result<CallWas> {
        match self.run(Request::CallEnd(host_ref, status))? {
            Reply::Ended(was) => Ok(was),
            r => Err(unexpected(r)),
        }
    }

    pub fn stats(&self) -> Result<Stats> {
        match self {
            Handle::Local(engine) => Ok(engine.stats()),
            Handle::Spawned(s) => s.lock().stats(),
        }
    }

    pub fn devices(&self, aor: &str, offset: usize, limit: usize) -> Result<Page<DeviceInfo>> {
        let aor = aor.to_owned();
        match self.run(Request::Devices { aor, offset, limit })? {
            Reply::Devices(page) => Ok(page),
            r => Err(unexpected(r)),
        }
    }

    pub fn parked(&self, offset: usize, limit: usize) -> Result<Page<ParkedInfo>> {
        match self.run(Request::Parked { offset, limit })? {
            Reply::Parked(page) => Ok(page),
            r => Err(unexpected(r)),
        }
    }

    pub fn event_fd(&self) -> RawFd {
        match self {
            Handle::Local(engine) => engine.event_fd(),
            Handle::Spawned(s) => s.lock().event_fd(),
        }
    }

    pub fn poll_event(&self) -> Result<Option<Event>> {
        match self {
            Handle::Local(engine) => Ok(engine.poll_event()),
            Handle::Spawned(s) => s.lock().poll_event(),
        }
    }
}

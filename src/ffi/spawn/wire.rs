//! Messages between a supervisor and its engine process: JSON, each behind its length (u32,
//! little-endian), on a stream socketpair (a listing can outgrow any datagram).

use super::super::handle::{Reply, Request};
use super::super::sys::pushpark_result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum ToEngine {
    Request(Request),
    /// The host changed its log level (`pushpark_set_log_callback`): a `LevelFilter` index.
    LogLevel(usize),
    /// Free the engine (committing the store) and exit.
    Stop,
}

/// A failed call as the supervisor's caller will see it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct WireError {
    pub code: pushpark_result,
    pub detail: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum ToSupervisor {
    /// The engine is created: calls are served from now on.
    Ready,
    /// The engine could not be created; the process exits.
    Failed(WireError),
    Reply(Result<Reply, WireError>),
    /// Events are queued: the supervisor fetches them (`Request::Events`). Sent once until then.
    EventsWaiting,
}

pub(super) fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = vec![0; 4];
    serde_json::to_writer(&mut out, msg).expect("our messages always serialize");
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

/// Bytes read from the socket, cut into messages.
#[derive(Default)]
pub(super) struct Inbox {
    buf: Vec<u8>,
}

pub(super) enum Read {
    /// Nothing more to read now (or just read some).
    Open,
    /// The peer closed its end (it exited).
    Closed,
}

impl Inbox {
    /// Reads what the socket has now; on a blocking socket, waits for some.
    pub fn fill(&mut self, fd: RawFd) -> io::Result<Read> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            // SAFETY: chunk is valid for writes of its length.
            let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            match n {
                0 => return Ok(Read::Closed),
                n if n > 0 => {
                    self.buf.extend_from_slice(&chunk[..n as usize]);
                    if (n as usize) < chunk.len() {
                        return Ok(Read::Open);
                    }
                }
                _ => {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::Interrupted => continue,
                        io::ErrorKind::WouldBlock => return Ok(Read::Open),
                        io::ErrorKind::ConnectionReset => return Ok(Read::Closed),
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    /// The next whole message, if one has arrived.
    pub fn next<T: DeserializeOwned>(&mut self) -> io::Result<Option<T>> {
        let Some(len) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&self.buf[4..4 + len])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.buf.drain(..4 + len);
        Ok(Some(msg))
    }
}

/// Writes all of `bytes`; on a non-blocking socket, waits at most until `deadline`.
pub(super) fn write_all(fd: RawFd, mut bytes: &[u8], deadline: Option<Instant>) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: bytes is valid for reads of its length. MSG_NOSIGNAL: a dead peer is
        // EPIPE here, not a SIGPIPE for the host's process.
        let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            bytes = &bytes[n as usize..];
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => {
                if !super::wait_fd(fd, libc::POLLOUT, deadline)? {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            _ => return Err(e),
        }
    }
    Ok(())
}

//! What became of a push.

use std::fmt;
use std::time::Duration;
use uuid::Uuid;

/// The final result of one push, after retries and replays. `R`: the service's
/// reasons for refusing a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<R> {
    /// The service accepted the push (200).
    Delivered,
    /// The service refused it for good. `token_dead`: forget this device token
    /// (APNs: 410 Unregistered/ExpiredToken, with Apple's `timestamp` in ms, or BadDeviceToken).
    Rejected {
        status: u16,
        reason: R,
        token_dead: bool,
        timestamp: Option<u64>,
    },
    /// A non-success answer without a reason the service documents.
    Unexpected { status: u16, body: String },
    /// Written to the service, but the connection was lost (or the stream reset)
    /// before it answered: it may or may not have delivered the push. Never sent
    /// again, as that could wake the device twice (RFC 9113 §8.7: only a request
    /// known unprocessed is resent). `why`: the transport error.
    Unconfirmed { why: String },
    /// The deadline passed before the service accepted or refused it.
    TimedOut,
    /// The client shut down before the push finished.
    ShutDown,
}

impl<R: fmt::Display> fmt::Display for Outcome<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Delivered => f.write_str("delivered"),
            Outcome::Rejected {
                status,
                reason,
                token_dead,
                timestamp,
            } => {
                write!(f, "rejected status={status} reason={reason}")?;
                if *token_dead {
                    f.write_str(" token_dead=true")?;
                }
                match timestamp {
                    Some(ts) => write!(f, " timestamp={ts}"),
                    None => Ok(()),
                }
            }
            Outcome::Unexpected { status, body } => {
                write!(f, "unexpected status={status} body={body:?}")
            }
            Outcome::Unconfirmed { why } => write!(f, "unconfirmed why={why:?}"),
            Outcome::TimedOut => f.write_str("timed out"),
            Outcome::ShutDown => f.write_str("client shut down"),
        }
    }
}

impl<R> Outcome<R> {
    /// The same outcome with its reason made another type (a caller's own terms).
    pub fn map_reason<T>(self, f: impl FnOnce(R) -> T) -> Outcome<T> {
        match self {
            Outcome::Rejected {
                status,
                reason,
                token_dead,
                timestamp,
            } => Outcome::Rejected {
                status,
                reason: f(reason),
                token_dead,
                timestamp,
            },
            Outcome::Delivered => Outcome::Delivered,
            Outcome::Unexpected { status, body } => Outcome::Unexpected { status, body },
            Outcome::Unconfirmed { why } => Outcome::Unconfirmed { why },
            Outcome::TimedOut => Outcome::TimedOut,
            Outcome::ShutDown => Outcome::ShutDown,
        }
    }
}

/// Handed to the `done` callback of `submit`, exactly once per accepted push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResult<R> {
    /// The push's id, `submit`'s or `submit_as`'s caller's: APNs was sent it as the
    /// `apns-id`; FCM names its messages itself.
    pub apns_id: Uuid,
    pub outcome: Outcome<R>,
    /// Requests sent for this push (0 when it never reached a connection).
    pub attempts: u32,
    /// Of those, resends of a request the server certainly did not process
    /// (above a GOAWAY's last-stream-id, REFUSED_STREAM, never written).
    pub replays: u32,
    /// From `submit` to the outcome.
    pub latency: Duration,
    /// For pushes that did not succeed: the last problem met (connect error,
    /// TLS failure, 503, missing credentials, ...), so operators see why it timed out.
    pub last_error: Option<String>,
}

impl<R> PushResult<R> {
    /// The same result with its reason made another type (see `Outcome::map_reason`).
    pub fn map_reason<T>(self, f: impl FnOnce(R) -> T) -> PushResult<T> {
        PushResult {
            apns_id: self.apns_id,
            outcome: self.outcome.map_reason(f),
            attempts: self.attempts,
            replays: self.replays,
            latency: self.latency,
            last_error: self.last_error,
        }
    }
}

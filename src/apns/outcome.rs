//! What became of a push, and how Apple's answers map to it.

use serde::Deserialize;
use std::fmt;
use std::time::Duration;
use uuid::Uuid;

use super::reason::Reason;

/// The final result of one push, after retries and replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Apple accepted the push (200).
    Delivered,
    /// Apple refused it for good. `token_dead`: forget this device token
    /// (410 Unregistered/ExpiredToken, with Apple's `timestamp` in ms, or BadDeviceToken).
    Rejected {
        status: u16,
        reason: Reason,
        token_dead: bool,
        timestamp: Option<u64>,
    },
    /// A non-success answer without a reason Apple documents.
    Unexpected { status: u16, body: String },
    /// Written to APNs, but the connection was lost (or the stream reset) before
    /// Apple answered: APNs may or may not have delivered it. Never sent again, as
    /// that could wake the device twice (RFC 9113 §8.7: only a request known
    /// unprocessed is resent). `why`: the transport error.
    Unconfirmed { why: String },
    /// The deadline passed before Apple accepted or refused it.
    TimedOut,
    /// The client shut down before the push finished.
    ShutDown,
}

impl fmt::Display for Outcome {
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

/// Handed to the `done` callback of `submit`, exactly once per accepted push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResult {
    /// The `apns-id` sent with the push (returned by `submit` too).
    pub apns_id: Uuid,
    pub outcome: Outcome,
    /// Requests sent for this push (0 when it never reached a connection).
    pub attempts: u32,
    /// Of those, resends of a request the server certainly did not process
    /// (above a GOAWAY's last-stream-id, REFUSED_STREAM, never written).
    pub replays: u32,
    /// From `submit` to the outcome.
    pub latency: Duration,
    /// For pushes that did not succeed: the last problem met (connect error,
    /// TLS failure, 503, ...), so operators see why it timed out.
    pub last_error: Option<String>,
}

/// How one non-200 answer should be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Final: report it.
    Final(Outcome),
    /// Apple says our provider token expired.
    ExpiredToken,
    /// Worth another try after a backoff; the text says why.
    Retry(String),
}

#[derive(Deserialize)]
struct ErrorBody {
    reason: Option<String>,
    timestamp: Option<u64>,
}

/// Bodies longer than this are not Apple's JSON; keep only a prefix for the report.
pub(crate) const MAX_ERROR_BODY: usize = 2048;

/// Classifies a non-200 answer from its status and body.
pub(crate) fn classify(status: u16, body: &[u8]) -> Answer {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let reason = parsed
        .as_ref()
        .and_then(|b| b.reason.as_deref())
        .and_then(|r| r.parse::<Reason>().ok());
    match reason {
        Some(Reason::ExpiredProviderToken) => Answer::ExpiredToken,
        Some(r) if r.is_retryable() => Answer::Retry(format!("{status} {r}")),
        Some(reason) => Answer::Final(Outcome::Rejected {
            status,
            reason,
            token_dead: reason.token_is_dead(),
            timestamp: parsed.and_then(|b| b.timestamp),
        }),
        None if matches!(status, 429 | 500 | 502 | 503 | 504) => {
            Answer::Retry(format!("{status} {}", String::from_utf8_lossy(body)))
        }
        None => Answer::Final(Outcome::Unexpected {
            status,
            body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        }),
    }
}

/// For the fuzz target (`cargo fuzz` builds with `--cfg fuzzing`): classifies any answer
/// and checks what must hold whatever a server sends.
#[cfg(fuzzing)]
pub fn fuzz_classify(status: u16, body: &[u8]) {
    let reason = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.reason)
        .and_then(|r| r.parse::<Reason>().ok());
    match classify(status, body) {
        Answer::ExpiredToken => assert_eq!(reason, Some(Reason::ExpiredProviderToken)),
        Answer::Retry(why) => {
            let overloaded = matches!(status, 429 | 500 | 502 | 503 | 504);
            assert!(
                reason.map_or(overloaded, Reason::is_retryable),
                "retry: {why}"
            );
            assert!(why.starts_with(&status.to_string()), "retry: {why}");
        }
        Answer::Final(Outcome::Rejected {
            status: s,
            reason: r,
            token_dead,
            ..
        }) => {
            assert_eq!((s, Some(r)), (status, reason));
            assert_eq!(token_dead, r.token_is_dead());
        }
        Answer::Final(Outcome::Unexpected { status: s, body: b }) => {
            assert_eq!((s, reason), (status, None));
            // 200 bytes at most, each maybe one U+FFFD (3 bytes).
            assert!(b.len() <= 600, "unexpected body of {} bytes", b.len());
        }
        Answer::Final(other) => panic!("{other:?} from a {status} answer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_permanent_reason_is_a_rejection() {
        for r in Reason::ALL {
            let body = format!(r#"{{"reason":"{r}"}}"#);
            let answer = classify(r.status(), body.as_bytes());
            match answer {
                Answer::ExpiredToken => assert_eq!(*r, Reason::ExpiredProviderToken),
                Answer::Retry(_) => assert!(r.is_retryable(), "{r}"),
                Answer::Final(Outcome::Rejected {
                    status,
                    reason,
                    token_dead,
                    timestamp: None,
                }) => {
                    assert_eq!(
                        (status, reason, token_dead),
                        (r.status(), *r, r.token_is_dead())
                    )
                }
                other => panic!("{r}: {other:?}"),
            }
        }
    }

    #[test]
    fn unregistered_carries_the_timestamp_and_dead_flag() {
        let answer = classify(
            410,
            br#"{"reason":"Unregistered","timestamp":1700000000000}"#,
        );
        assert_eq!(
            answer,
            Answer::Final(Outcome::Rejected {
                status: 410,
                reason: Reason::Unregistered,
                token_dead: true,
                timestamp: Some(1_700_000_000_000)
            })
        );
    }

    #[test]
    fn unknown_answers_retry_on_5xx_and_429_only() {
        assert!(matches!(classify(503, b"busy"), Answer::Retry(m) if m.contains("503")));
        assert!(matches!(classify(429, b""), Answer::Retry(_)));
        assert!(matches!(
            classify(400, br#"{"reason":"SomethingNew"}"#),
            Answer::Final(Outcome::Unexpected { status: 400, .. })
        ));
    }
}

//! How Apple's answers map to what becomes of a push.

use serde::Deserialize;

use super::reason::Reason;
use super::Outcome;
use crate::push_client::Answer;

#[derive(Deserialize)]
struct ErrorBody {
    reason: Option<String>,
    timestamp: Option<u64>,
}

/// Classifies a non-200 answer from its status and body.
pub(crate) fn classify(status: u16, body: &[u8]) -> Answer<Reason> {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let reason = parsed
        .as_ref()
        .and_then(|b| b.reason.as_deref())
        .and_then(|r| r.parse::<Reason>().ok());
    match reason {
        Some(Reason::ExpiredProviderToken) => Answer::CredentialsExpired {
            why: "403 ExpiredProviderToken".into(),
            otherwise: Outcome::Rejected {
                status: 403,
                reason: Reason::ExpiredProviderToken,
                token_dead: false,
                timestamp: None,
            },
        },
        Some(r) if r.is_retryable() => Answer::Retry {
            why: format!("{status} {r}"),
            after: None,
        },
        Some(reason) => Answer::Final(Outcome::Rejected {
            status,
            reason,
            token_dead: reason.token_is_dead(),
            timestamp: parsed.and_then(|b| b.timestamp),
        }),
        None if matches!(status, 429 | 500 | 502 | 503 | 504) => Answer::Retry {
            why: format!("{status} {}", String::from_utf8_lossy(body)),
            after: None,
        },
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
        Answer::CredentialsExpired { .. } => {
            assert_eq!(reason, Some(Reason::ExpiredProviderToken))
        }
        Answer::Retry { why, after } => {
            assert_eq!(after, None);
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
                Answer::CredentialsExpired { .. } => {
                    assert_eq!(*r, Reason::ExpiredProviderToken)
                }
                Answer::Retry { .. } => assert!(r.is_retryable(), "{r}"),
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
        assert!(matches!(classify(503, b"busy"), Answer::Retry { why, .. } if why.contains("503")));
        assert!(matches!(classify(429, b""), Answer::Retry { .. }));
        assert!(matches!(
            classify(400, br#"{"reason":"SomethingNew"}"#),
            Answer::Final(Outcome::Unexpected { status: 400, .. })
        ));
    }
}

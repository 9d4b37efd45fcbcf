//! Exchanging the assertion for an OAuth2 access token at the account's
//! `token_uri`, as data: the request body, the answer, and when to refresh.

use serde::Deserialize;
use std::fmt;

use super::jwt::Assertion;
use crate::apns::jwt::Clock;

/// The token request's content type.
pub const TOKEN_REQUEST_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// Refresh this long before expiry (tokens of under 10 minutes: at half-life).
pub const REFRESH_MARGIN_SECS: u64 = 5 * 60;
/// Google's tokens live an hour; assumed when an answer omits `expires_in`.
const DEFAULT_LIFETIME_SECS: u64 = 3600;

/// The POST body for `token_uri`. It carries the assertion: never log it.
pub fn token_request_body(assertion: &Assertion) -> String {
    // The grant type form-encoded; a JWT's characters (base64url and dots) need no encoding.
    format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
        assertion.as_str()
    )
}

/// An access token and its lifetime. `Debug` never shows the token.
#[derive(Clone)]
pub struct AccessToken {
    token: String,
    obtained_at: u64,
    lifetime_secs: u64,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("obtained_at", &self.obtained_at)
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl AccessToken {
    /// The `authorization` header value for FCM requests.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// When Google stops accepting it (Unix seconds).
    pub fn expires_at(&self) -> u64 {
        self.obtained_at.saturating_add(self.lifetime_secs)
    }

    /// When to fetch the next one (Unix seconds): 5 minutes before expiry, or at
    /// half-life for tokens too short for that margin.
    pub fn refresh_at(&self) -> u64 {
        let margin = REFRESH_MARGIN_SECS.min(self.lifetime_secs / 2);
        self.expires_at() - margin
    }

    /// Whether it is time to fetch a new token.
    pub fn needs_refresh(&self, clock: &dyn Clock) -> bool {
        clock.now_unix() >= self.refresh_at()
    }
}

/// Why no access token came out of a token answer. Never contains a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Google refused the assertion: `error` (e.g. `invalid_grant`) and its description.
    Refused {
        status: u16,
        error: String,
        description: String,
    },
    /// The answer is not Google's token JSON, or not a Bearer token.
    Malformed { status: u16, why: &'static str },
}

impl TokenError {
    /// The token endpoint was overloaded or failing (429, 5xx): try again later.
    /// Refusals such as `invalid_grant` (key deleted, clock skew) need an operator.
    pub fn is_retryable(&self) -> bool {
        let status = match self {
            TokenError::Refused { status, .. } | TokenError::Malformed { status, .. } => *status,
        };
        status == 429 || (500..600).contains(&status)
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Refused {
                status,
                error,
                description,
            } => write!(
                f,
                "the token endpoint refused the service account's assertion: {status} {error}: {description:?}"
            ),
            TokenError::Malformed { status, why } => {
                write!(f, "unusable answer from the token endpoint ({status}): {why}")
            }
        }
    }
}

impl std::error::Error for TokenError {}

#[derive(Deserialize)]
struct TokenBody {
    access_token: Option<String>,
    expires_in: Option<u64>,
    token_type: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Text from the token endpoint fit for an error message: printable, at most 200 chars.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// Reads the token endpoint's answer; the clock dates the token.
pub fn parse_token_response(
    status: u16,
    body: &[u8],
    clock: &dyn Clock,
) -> Result<AccessToken, TokenError> {
    let malformed = |why| TokenError::Malformed { status, why };
    let Ok(parsed) = serde_json::from_slice::<TokenBody>(body) else {
        return Err(malformed("not JSON"));
    };
    if let Some(error) = parsed.error {
        return Err(TokenError::Refused {
            status,
            error: printable(&error),
            description: printable(parsed.error_description.as_deref().unwrap_or_default()),
        });
    }
    if status != 200 {
        return Err(malformed("an error status without an OAuth2 error"));
    }
    let token = parsed.access_token.ok_or(malformed("no access_token"))?;
    // It goes in a header: visible ASCII only.
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed("the access_token is not a header-safe string"));
    }
    if !parsed
        .token_type
        .is_some_and(|t| t.eq_ignore_ascii_case("bearer"))
    {
        return Err(malformed("the token_type is not Bearer"));
    }
    Ok(AccessToken {
        token,
        obtained_at: clock.now_unix(),
        lifetime_secs: parsed.expires_in.unwrap_or(DEFAULT_LIFETIME_SECS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apns::jwt::tests::TestClock;
    use crate::fcm::jwt::sign_assertion;
    use crate::fcm::service_account::tests::test_account;
    use std::sync::atomic::{AtomicU64, Ordering};

    const SECRET: &str = "ya29.c.b0Aaekm1KtestTOKENvalue-_xyz";

    fn ok_body(expires_in: u64) -> String {
        format!(r#"{{"access_token":"{SECRET}","expires_in":{expires_in},"token_type":"Bearer"}}"#)
    }

    #[test]
    fn the_request_body_is_the_jwt_bearer_grant() {
        let assertion = sign_assertion(&test_account(), 1_700_000_000).unwrap();
        let body = token_request_body(&assertion);
        let (grant, jwt) = body.split_once('&').unwrap();
        assert_eq!(
            grant,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
        );
        assert_eq!(jwt, format!("assertion={}", assertion.as_str()));
        assert!(jwt
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=.-_".contains(&b)));
    }

    #[test]
    fn refresh_five_minutes_early_or_at_half_life() {
        let clock = TestClock(AtomicU64::new(1_000));
        let token = parse_token_response(200, ok_body(3599).as_bytes(), &clock).unwrap();
        assert_eq!(token.authorization(), format!("Bearer {SECRET}"));
        assert_eq!((token.expires_at(), token.refresh_at()), (4_599, 4_299));
        clock.0.store(4_298, Ordering::SeqCst);
        assert!(!token.needs_refresh(&clock));
        clock.0.store(4_299, Ordering::SeqCst);
        assert!(token.needs_refresh(&clock));

        let short = parse_token_response(200, ok_body(120).as_bytes(), &clock).unwrap();
        assert_eq!(short.refresh_at(), 4_299 + 60);
        let dead = parse_token_response(200, ok_body(0).as_bytes(), &clock).unwrap();
        assert!(dead.needs_refresh(&clock));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let clock = TestClock(AtomicU64::new(0));
        let token = parse_token_response(200, ok_body(3599).as_bytes(), &clock).unwrap();
        let debug = format!("{token:?}");
        assert!(!debug.contains("ya29"), "{debug}");
    }

    #[test]
    fn googles_error_answers_become_clear_errors() {
        let clock = TestClock(AtomicU64::new(0));
        let err = parse_token_response(
            400,
            br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
            &clock,
        )
        .unwrap_err();
        assert_eq!(
            err,
            TokenError::Refused {
                status: 400,
                error: "invalid_grant".into(),
                description: "Invalid JWT Signature.".into()
            }
        );
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("invalid_grant"), "{err}");

        let cases: &[(u16, &[u8], bool)] = &[
            (503, b"<html>Service Unavailable</html>", true),
            (500, b"", true),
            (
                200,
                b"{\"expires_in\":3599,\"token_type\":\"Bearer\"}",
                false,
            ),
            (
                200,
                br#"{"access_token":"a b","token_type":"Bearer"}"#,
                false,
            ),
            (200, br#"{"access_token":"abc","token_type":"MAC"}"#, false),
            (200, br#"{"access_token":"abc"}"#, false),
            (401, br#"{"unrelated":1}"#, false),
        ];
        for (status, body, retry) in cases {
            let err = parse_token_response(*status, body, &clock).unwrap_err();
            assert!(matches!(err, TokenError::Malformed { .. }), "{err}");
            assert_eq!(err.is_retryable(), *retry, "{err}");
        }
        // Without expires_in, Google's documented hour.
        let token = parse_token_response(
            200,
            br#"{"access_token":"abc","token_type":"bearer"}"#,
            &clock,
        )
        .unwrap();
        assert_eq!(token.expires_at(), 3600);
    }
}

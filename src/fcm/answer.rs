//! FCM's non-200 answers: Google JSON errors whose `details` carry an FcmError
//! `errorCode`, classified into what the transport does next.

use http::HeaderMap;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

use crate::apns::jwt::Clock;

/// Overload and server failures without an FCM errorCode: worth another try.
const RETRYABLE_STATUSES: [u16; 5] = [429, 500, 502, 503, 504];

/// A `Retry-After` longer than this is taken as this: the call is long gone by then.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

macro_rules! error_codes {
    ($($name:ident = $text:literal),+ $(,)?) => {
        /// The `errorCode`s FCM documents for its v1 API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($name),+ }

        impl ErrorCode {
            /// Every documented code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),+];

            /// The exact text FCM puts in `errorCode`.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$name => $text),+ }
            }

            /// The code for FCM's text, if documented.
            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s { $($text => Some(ErrorCode::$name),)+ _ => None }
            }
        }
    };
}

error_codes! {
    UnspecifiedError = "UNSPECIFIED_ERROR",
    InvalidArgument = "INVALID_ARGUMENT",
    Unregistered = "UNREGISTERED",
    SenderIdMismatch = "SENDER_ID_MISMATCH",
    QuotaExceeded = "QUOTA_EXCEEDED",
    Unavailable = "UNAVAILABLE",
    Internal = "INTERNAL",
    ThirdPartyAuthError = "THIRD_PARTY_AUTH_ERROR",
}

impl ErrorCode {
    /// The token will never reach this app again: the binding goes (like APNs 410).
    /// SENDER_ID_MISMATCH: it belongs to another project, so never for us.
    pub fn token_is_dead(self) -> bool {
        matches!(self, ErrorCode::Unregistered | ErrorCode::SenderIdMismatch)
    }

    /// FCM asks for a later resend (honouring `Retry-After`).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::QuotaExceeded | ErrorCode::Unavailable | ErrorCode::Internal
        )
    }
}

/// What FCM said went wrong, as precisely as the answer tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// An FcmError `errorCode`.
    Code(ErrorCode),
    /// No errorCode: Google's `status` text (e.g. `PERMISSION_DENIED`).
    Status(String),
    /// No usable JSON: only the HTTP status.
    Http(u16),
}

impl Reason {
    /// FCM's errorCode, else the Google status text, else the HTTP reason phrase.
    pub fn as_str(&self) -> &str {
        match self {
            Reason::Code(code) => code.as_str(),
            Reason::Status(s) => s,
            Reason::Http(status) => http::StatusCode::from_u16(*status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("unknown status"),
        }
    }

    /// Worth resending later: FCM's retryable codes, Google's overload statuses, 429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            Reason::Code(code) => code.is_retryable(),
            Reason::Status(s) => matches!(
                s.as_str(),
                "RESOURCE_EXHAUSTED" | "UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED"
            ),
            Reason::Http(status) => RETRYABLE_STATUSES.contains(status),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do about one non-200 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Report it; `token_dead`: remove the device's binding.
    Final {
        status: u16,
        reason: Reason,
        token_dead: bool,
    },
    /// Resend after a backoff, and not before `after` when FCM set `Retry-After`.
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// Our access token expired or was revoked: fetch a new one and resend, once.
    CredentialsExpired,
}

#[derive(Deserialize)]
struct Envelope {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    status: Option<String>,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

/// The FcmError `errorCode` and Google `status` of a body, when it is Google's JSON.
fn parse_body(body: &[u8]) -> (Option<ErrorCode>, Option<String>) {
    let Ok(Envelope { error }) = serde_json::from_slice::<Envelope>(body) else {
        return (None, None);
    };
    let code = error
        .details
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| t.ends_with("google.firebase.fcm.v1.FcmError"))
        })
        .find_map(|d| d.get("errorCode")?.as_str().and_then(ErrorCode::parse));
    // Google's status texts are SCREAMING_SNAKE; anything else is not trusted into logs.
    let status = error.status.filter(|s| {
        (1..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
    });
    (code, status)
}

/// Classifies a non-200 answer from its status, headers and (possibly truncated) body.
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8], clock: &dyn Clock) -> Answer {
    let (code, google_status) = parse_body(body);
    // UNSPECIFIED_ERROR says nothing: decide as without a code.
    let reason = match (
        code.filter(|c| *c != ErrorCode::UnspecifiedError),
        google_status,
    ) {
        (Some(code), _) => Reason::Code(code),
        (None, Some(s)) => Reason::Status(s),
        (None, None) => Reason::Http(status),
    };
    let unauthenticated = match &reason {
        Reason::Status(s) => s == "UNAUTHENTICATED",
        // THIRD_PARTY_AUTH_ERROR is a 401 too, but about the app's APNs/web push credentials.
        Reason::Code(_) => false,
        Reason::Http(_) => true,
    };
    if status == 401 && unauthenticated {
        return Answer::CredentialsExpired;
    }
    // An FCM errorCode is the most precise word; without one, the status decides.
    let overloaded = !matches!(reason, Reason::Code(_)) && RETRYABLE_STATUSES.contains(&status);
    if reason.is_retryable() || overloaded {
        return Answer::Retry {
            why: format!("{status} {reason}"),
            after: retry_after(headers, clock),
        };
    }
    Answer::Final {
        status,
        // Only UNREGISTERED and SENDER_ID_MISMATCH: a 404 without a code is a wrong
        // project id or path, not a dead token.
        token_dead: matches!(reason, Reason::Code(c) if c.token_is_dead()),
        reason,
    }
}

/// `Retry-After` as delta-seconds or an HTTP-date, capped at [`MAX_RETRY_AFTER`].
fn retry_after(headers: &HeaderMap, clock: &dyn Clock) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let secs = match value.parse::<u64>() {
        Ok(secs) => secs,
        Err(_) => http_date(value)?.saturating_sub(clock.now_unix()),
    };
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7) as Unix seconds.
fn http_date(s: &str) -> Option<u64> {
    let mut parts = s.split(' ');
    let (_weekday, day, month, year, time, gmt) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if gmt != "GMT" || parts.next().is_some() || day.len() != 2 || year.len() != 4 {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let day: u64 = day.parse().ok()?;
    let year: u64 = year.parse().ok()?;
    let mut hms = time
        .split(':')
        .map(|p| p.parse::<u64>().ok().filter(|_| p.len() == 2));
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some()
        || year < 1970
        || !(1..=31).contains(&day)
        || h > 23
        || m > 59
        || sec > 60
    {
        return None;
    }
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm), March-based years.
    let (y, mp) = if month > 2 {
        (year, month - 3)
    } else {
        (year - 1, month + 9)
    };
    let era = y / 400;
    let yoe = y % 400;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct FixedClock(u64);
    impl Clock for FixedClock {
        fn now_unix(&self) -> u64 {
            self.0
        }
    }
    const NOW: FixedClock = FixedClock(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT

    fn google_error(code: u16, status: &str, error_code: &str) -> String {
        format!(
            r#"{{"error": {{"code": {code}, "message": "Requested entity was not found.",
                "status": "{status}", "details": [
                {{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "{error_code}"}},
                {{"@type": "type.googleapis.com/google.firebase.fcm.v1.ApnsError", "statusCode": 410, "reason": "Unregistered"}}]}}}}"#
        )
    }

    fn classify_body(status: u16, body: &str) -> Answer {
        classify(status, &HeaderMap::new(), body.as_bytes(), &NOW)
    }

    #[test]
    fn every_documented_code_is_classified() {
        let expect = |code: ErrorCode| -> (u16, &str, Answer) {
            let final_ = |status, dead| Answer::Final {
                status,
                reason: Reason::Code(code),
                token_dead: dead,
            };
            let retry = |status: u16| Answer::Retry {
                why: format!("{status} {}", code.as_str()),
                after: None,
            };
            match code {
                ErrorCode::UnspecifiedError => (
                    400,
                    "INVALID_ARGUMENT",
                    Answer::Final {
                        status: 400,
                        reason: Reason::Status("INVALID_ARGUMENT".into()),
                        token_dead: false,
                    },
                ),
                ErrorCode::InvalidArgument => (400, "INVALID_ARGUMENT", final_(400, false)),
                ErrorCode::Unregistered => (404, "NOT_FOUND", final_(404, true)),
                ErrorCode::SenderIdMismatch => (403, "PERMISSION_DENIED", final_(403, true)),
                ErrorCode::QuotaExceeded => (429, "RESOURCE_EXHAUSTED", retry(429)),
                ErrorCode::Unavailable => (503, "UNAVAILABLE", retry(503)),
                ErrorCode::Internal => (500, "INTERNAL", retry(500)),
                ErrorCode::ThirdPartyAuthError => (401, "UNAUTHENTICATED", final_(401, false)),
            }
        };
        for code in ErrorCode::ALL {
            let (status, google_status, answer) = expect(*code);
            let body = google_error(status, google_status, code.as_str());
            assert_eq!(classify_body(status, &body), answer, "{code:?}");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
        }
    }

    #[test]
    fn an_expired_access_token_asks_for_a_new_one() {
        let body = r#"{"error": {"code": 401, "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", "status": "UNAUTHENTICATED"}}"#;
        assert_eq!(classify_body(401, body), Answer::CredentialsExpired);
        assert_eq!(classify_body(401, ""), Answer::CredentialsExpired);
        assert_eq!(classify_body(401, "<html>"), Answer::CredentialsExpired);
    }

    #[test]
    fn without_an_error_code_the_status_decides_and_never_kills_a_token() {
        // A wrong project id in the path: a 404 that says nothing of the token.
        let answer = classify_body(
            404,
            r#"{"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}"#,
        );
        assert_eq!(
            answer,
            Answer::Final {
                status: 404,
                reason: Reason::Status("NOT_FOUND".into()),
                token_dead: false
            }
        );
        // The service account lacks the permission, or the API is disabled.
        let answer = classify_body(
            403,
            r#"{"error": {"code": 403, "message": "Permission 'cloudmessaging.messages.create' denied", "status": "PERMISSION_DENIED"}}"#,
        );
        assert!(
            matches!(&answer, Answer::Final { reason, token_dead: false, .. } if reason.as_str() == "PERMISSION_DENIED"),
            "{answer:?}"
        );
        // Truncated JSON, HTML from a proxy, nothing at all.
        let truncated = &google_error(404, "NOT_FOUND", "UNREGISTERED")[..60];
        assert_eq!(
            classify_body(404, truncated),
            Answer::Final {
                status: 404,
                reason: Reason::Http(404),
                token_dead: false
            }
        );
        assert_eq!(Reason::Http(404).as_str(), "Not Found");
        assert!(
            matches!(classify_body(502, "<html>Bad Gateway</html>"), Answer::Retry { why, .. } if why == "502 Bad Gateway")
        );
        assert!(matches!(classify_body(429, ""), Answer::Retry { .. }));
        // A status text with odd characters is not carried into logs.
        let answer = classify_body(400, r#"{"error": {"status": "BAD\nSTATUS"}}"#);
        assert_eq!(
            answer,
            Answer::Final {
                status: 400,
                reason: Reason::Http(400),
                token_dead: false
            }
        );
        // An errorCode from another @type is not FCM's.
        let other = r#"{"error": {"status": "NOT_FOUND", "details": [{"@type": "type.googleapis.com/x.Other", "errorCode": "UNREGISTERED"}]}}"#;
        assert!(matches!(
            classify_body(404, other),
            Answer::Final {
                token_dead: false,
                ..
            }
        ));
    }

    #[test]
    fn retry_after_as_seconds_or_date_capped() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::RETRY_AFTER, value.parse().unwrap());
            match classify(
                503,
                &headers,
                google_error(503, "UNAVAILABLE", "UNAVAILABLE").as_bytes(),
                &NOW,
            ) {
                Answer::Retry { after, .. } => after,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(with("30"), Some(Duration::from_secs(30)));
        assert_eq!(with(" 0 "), Some(Duration::ZERO));
        assert_eq!(with("86400000"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            with("Sun, 06 Nov 1994 08:50:37 GMT"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            with("Sun, 06 Nov 1994 08:49:00 GMT"),
            Some(Duration::ZERO),
            "in the past"
        );
        assert_eq!(with("soon"), None);
        assert_eq!(with("-5"), None);
        assert_eq!(
            with("Sunday, 06-Nov-94 08:49:37 GMT"),
            None,
            "obsolete formats are ignored"
        );
    }

    #[test]
    fn http_dates_are_unix_seconds() {
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
        assert_eq!(http_date("Wed, 31 Dec 1969 23:59:59 GMT"), None);
        assert_eq!(http_date("Sun, 06 Nov 1994 24:00:00 GMT"), None);
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 UTC"), None);
    }

    proptest! {
        #[test]
        fn classify_never_panics_and_keeps_its_promises(
            status in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..300),
            retry_after in "[ -~]{0,40}",
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(v) = retry_after.parse() {
                headers.insert(http::header::RETRY_AFTER, v);
            }
            match classify(status, &headers, &body, &NOW) {
                Answer::Final { status: s, reason, token_dead } => {
                    prop_assert_eq!(s, status);
                    prop_assert_eq!(token_dead, matches!(reason, Reason::Code(c) if c.token_is_dead()));
                    prop_assert!(!reason.as_str().is_empty());
                    prop_assert!(!reason.is_retryable());
                    prop_assert!(matches!(reason, Reason::Code(_)) || !RETRYABLE_STATUSES.contains(&status));
                }
                Answer::Retry { why, after } => {
                    prop_assert!(why.starts_with(&status.to_string()));
                    prop_assert!(after.map_or(true, |a| a <= MAX_RETRY_AFTER));
                }
                Answer::CredentialsExpired => prop_assert_eq!(status, 401),
            }
        }

        #[test]
        fn google_shaped_bodies_with_any_code_text(code in "[A-Z_]{0,30}", status in 400u16..600) {
            let body = google_error(status, "X", &code);
            let answer = classify_body(status, &body);
            if let Some(c) = ErrorCode::parse(&code).filter(|c| *c != ErrorCode::UnspecifiedError) {
                prop_assert_eq!(matches!(answer, Answer::Retry { .. }), c.is_retryable());
            }
        }
    }
}

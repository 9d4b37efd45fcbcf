//! The FCM HTTP v1 send request: its path and its JSON body, a high-priority
//! data message carrying the same fields as the APNs payload.
//!
//! RFC 8599 (pn-provider `fcm`): the device's `pn-prid` is its registration
//! token and `pn-param` the Firebase project id.

use serde::Serialize;
use std::fmt;
use std::time::Duration;

use crate::engine::push::PayloadFields;

/// Where [`send_path`] is POSTed.
pub const ENDPOINT: &str = "https://fcm.googleapis.com";
/// FCM refuses messages whose data (keys and values) exceed this many bytes.
pub const MAX_DATA_BYTES: usize = 4096;
/// FCM's longest ttl: four weeks.
const MAX_TTL_SECS: u64 = 28 * 24 * 3600;

/// Why no message could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// Not a Google Cloud project id.
    BadProjectId,
    /// Empty, or a character FCM tokens never have (they are `[A-Za-z0-9_:-]`).
    BadToken,
    /// The data takes this many bytes, over [`MAX_DATA_BYTES`].
    TooLarge(usize),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::BadProjectId => f.write_str(
                "not a Firebase project id: 6-30 lowercase letters, digits or hyphens, \
                 starting with a letter, not ending with a hyphen",
            ),
            MessageError::BadToken => f.write_str(
                "not an FCM registration token: non-empty, letters, digits, '_', ':' and '-' only",
            ),
            MessageError::TooLarge(n) => write!(
                f,
                "the FCM data is {n} bytes (keys and values); FCM allows {MAX_DATA_BYTES}"
            ),
        }
    }
}

impl std::error::Error for MessageError {}

/// Google Cloud's rule for project ids: 6 to 30 lowercase letters, digits and
/// hyphens, starting with a letter and not ending with a hyphen.
pub fn valid_project_id(id: &str) -> bool {
    let b = id.as_bytes();
    (6..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Registration tokens are ~150-200 characters today; their length is not
/// promised, their alphabet (safe in a URL and in JSON) is.
pub fn valid_registration_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b':' | b'-'))
}

/// The request path for sending in `project_id`.
pub fn send_path(project_id: &str) -> Result<String, MessageError> {
    if !valid_project_id(project_id) {
        return Err(MessageError::BadProjectId);
    }
    Ok(format!("/v1/projects/{project_id}/messages:send"))
}

#[derive(Serialize)]
struct Body<'a> {
    message: Message<'a>,
}

#[derive(Serialize)]
struct Message<'a> {
    token: &'a str,
    data: Data<'a>,
    android: Android,
}

/// The keys of the default APNs payload (engine::push), so one app handles both.
#[derive(Serialize)]
struct Data<'a> {
    call_id: &'a str,
    caller: &'a str,
    caller_name: &'a str,
    push_id: &'a str,
    aor: &'a str,
}

impl Data<'_> {
    /// The size FCM counts: keys and values, unescaped.
    fn size(&self) -> usize {
        [
            ("call_id", self.call_id),
            ("caller", self.caller),
            ("caller_name", self.caller_name),
            ("push_id", self.push_id),
            ("aor", self.aor),
        ]
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum()
    }
}

#[derive(Serialize)]
struct Android {
    priority: &'static str,
    ttl: String,
}

/// The JSON body waking the device with `token` for the call in `fields`; the
/// message expires with the call's park deadline, `time_left` from now.
pub(crate) fn render(
    token: &str,
    fields: &PayloadFields,
    time_left: Duration,
) -> Result<String, MessageError> {
    if !valid_registration_token(token) {
        return Err(MessageError::BadToken);
    }
    let data = Data {
        call_id: fields.call_id,
        caller: fields.caller_uri,
        caller_name: fields.caller_name,
        push_id: fields.push_id,
        aor: fields.aor,
    };
    if data.size() > MAX_DATA_BYTES {
        return Err(MessageError::TooLarge(data.size()));
    }
    // Whole seconds, rounded down: the push never outlives the parked call.
    let ttl = time_left.as_secs().min(MAX_TTL_SECS);
    let body = Body {
        message: Message {
            token,
            data,
            // HIGH: a data message may wake the app (and start a call UI) only at high priority.
            android: Android {
                priority: "HIGH",
                ttl: format!("{ttl}s"),
            },
        },
    };
    Ok(serde_json::to_string(&body).expect("strings and structs always serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    const TOKEN: &str = "eH0fLhuiRj2Np7UQ-opXAm:APA91bGtC-wH4sgW1jWkMKIZf7FYkm_RTQb7Jid7DfSJnC";

    fn fields<'a>(call_id: &'a str, caller_name: &'a str) -> PayloadFields<'a> {
        PayloadFields {
            call_id,
            caller_uri: "sip:bob@example.com",
            caller_name,
            push_id: "p-1",
            aor: "sip:alice@example.com",
        }
    }

    #[test]
    fn a_high_priority_data_message_expiring_with_the_call() {
        let body = render(
            TOKEN,
            &fields("c1@host", "Bob \"B\""),
            Duration::from_millis(29_900),
        )
        .unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            json!({"message": {
                "token": TOKEN,
                "data": {
                    "call_id": "c1@host", "caller": "sip:bob@example.com",
                    "caller_name": "Bob \"B\"", "push_id": "p-1", "aor": "sip:alice@example.com"
                },
                "android": {"priority": "HIGH", "ttl": "29s"}
            }})
        );
        assert!(v["message"].get("notification").is_none());
    }

    #[test]
    fn ttl_is_at_least_zero_and_at_most_four_weeks() {
        let ttl = |d| {
            let v: Value =
                serde_json::from_str(&render(TOKEN, &fields("c", ""), d).unwrap()).unwrap();
            v["message"]["android"]["ttl"].as_str().unwrap().to_string()
        };
        assert_eq!(ttl(Duration::ZERO), "0s");
        assert_eq!(ttl(Duration::from_secs(u64::MAX)), "2419200s");
    }

    #[test]
    fn the_data_limit_counts_keys_and_values() {
        let keys = "call_id caller caller_name push_id aor"
            .replace(' ', "")
            .len();
        let fixed =
            keys + "sip:bob@example.com".len() + "p-1".len() + "sip:alice@example.com".len();
        let fits = "x".repeat(MAX_DATA_BYTES - fixed);
        assert!(render(TOKEN, &fields(&fits, ""), Duration::ZERO).is_ok());
        // One byte over, counted in UTF-8 bytes, not characters.
        let over = format!("{}é", "x".repeat(MAX_DATA_BYTES - fixed - 1));
        assert_eq!(
            render(TOKEN, &fields("", &over), Duration::ZERO).unwrap_err(),
            MessageError::TooLarge(MAX_DATA_BYTES + 1)
        );
    }

    #[test]
    fn project_ids_follow_googles_rules() {
        for ok in [
            "pushpark",
            "my-app-12345",
            "a12345",
            "a23456789012345678901234567890",
        ] {
            assert!(valid_project_id(ok), "{ok}");
        }
        for bad in [
            "",
            "abcde",
            "1abcdef",
            "-abcdef",
            "abcdef-",
            "My-App1",
            "my_app1",
            "my.app1",
            "a234567890123456789012345678901",
            "example.com:app",
        ] {
            assert!(!valid_project_id(bad), "{bad}");
        }
        assert_eq!(
            send_path("pushpark").unwrap(),
            "/v1/projects/pushpark/messages:send"
        );
        assert_eq!(send_path("../x").unwrap_err(), MessageError::BadProjectId);
    }

    #[test]
    fn tokens_are_checked_by_alphabet_not_length() {
        assert!(valid_registration_token("a"));
        assert!(valid_registration_token(&"A1_:-".repeat(100)));
        for bad in ["", "abc def", "abc\"", "abc/def", "abc%2F", "tök"] {
            assert!(!valid_registration_token(bad), "{bad}");
            assert_eq!(
                render(bad, &fields("c", ""), Duration::ZERO).unwrap_err(),
                MessageError::BadToken
            );
        }
    }

    proptest! {
        #[test]
        // Any characters, controls and quotes too; 5 x 150 chars stay under the limit.
        fn any_fields_make_valid_json_with_string_data(
            call_id in "(?s).{0,150}", caller_uri in "(?s).{0,150}", caller_name in "(?s).{0,150}",
            push_id in "(?s).{0,150}", aor in "(?s).{0,150}", secs in any::<u64>(),
        ) {
            let f = PayloadFields {
                call_id: &call_id, caller_uri: &caller_uri, caller_name: &caller_name,
                push_id: &push_id, aor: &aor,
            };
            let body = render(TOKEN, &f, Duration::from_secs(secs)).unwrap();
            let v: Value = serde_json::from_str(&body).unwrap();
            let data = v["message"]["data"].as_object().unwrap();
            prop_assert_eq!(data.len(), 5);
            prop_assert!(data.values().all(Value::is_string));
            prop_assert_eq!(data["caller_name"].as_str().unwrap(), caller_name.as_str());
            let ttl = v["message"]["android"]["ttl"].as_str().unwrap();
            prop_assert_eq!(ttl, format!("{}s", secs.min(MAX_TTL_SECS)));
        }
    }
}

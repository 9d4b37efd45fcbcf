//! FCM HTTP v1 `messages:send` requests judged like Google, and Google's
//! error answers: `{"error": {"code", "message", "status", "details"}}`.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Google's limit on a message's data (keys and values).
pub const MAX_DATA_BYTES: usize = 4096;

/// The FCM errors the mock answers with (`errorCode` of the `FcmError` detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FcmError {
    /// 404: the app was uninstalled or the token expired.
    Unregistered,
    /// 400: a bad token (or another bad field).
    InvalidArgument,
    /// 403: the token belongs to another sender.
    SenderIdMismatch,
    /// 429, with `Retry-After` seconds if given.
    QuotaExceeded { retry_after: Option<u32> },
    /// 503, with `Retry-After` seconds if given.
    Unavailable { retry_after: Option<u32> },
    /// 500.
    Internal,
    /// 401: APNs or Web Push refused the project's credentials.
    ThirdPartyAuthError,
}

impl FcmError {
    pub fn status(self) -> u16 {
        match self {
            FcmError::Unregistered => 404,
            FcmError::InvalidArgument => 400,
            FcmError::SenderIdMismatch => 403,
            FcmError::QuotaExceeded { .. } => 429,
            FcmError::Unavailable { .. } => 503,
            FcmError::Internal => 500,
            FcmError::ThirdPartyAuthError => 401,
        }
    }

    pub fn retry_after(self) -> Option<u32> {
        match self {
            FcmError::QuotaExceeded { retry_after } | FcmError::Unavailable { retry_after } => {
                retry_after
            }
            _ => None,
        }
    }

    /// The canonical status and message Google pairs with this error code.
    fn status_and_message(self) -> (&'static str, &'static str) {
        match self {
            FcmError::Unregistered => ("NOT_FOUND", "Requested entity was not found."),
            FcmError::InvalidArgument => (
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
            ),
            FcmError::SenderIdMismatch => ("PERMISSION_DENIED", "SenderId mismatch"),
            FcmError::QuotaExceeded { .. } => (
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for sending messages to this device.",
            ),
            FcmError::Unavailable { .. } => {
                ("UNAVAILABLE", "The service is currently unavailable.")
            }
            FcmError::Internal => ("INTERNAL", "Internal error encountered."),
            FcmError::ThirdPartyAuthError => (
                "UNAUTHENTICATED",
                "Auth error from APNS or Web Push Service",
            ),
        }
    }

    /// Google's answer body for this error.
    pub fn body(self) -> Value {
        let (status, message) = self.status_and_message();
        self.body_with(status, message)
    }

    fn body_with(self, status: &str, message: &str) -> Value {
        error_body(
            self.status(),
            status,
            message,
            json!([{
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": self.to_string(),
            }]),
        )
    }
}

impl fmt::Display for FcmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FcmError::Unregistered => "UNREGISTERED",
            FcmError::InvalidArgument => "INVALID_ARGUMENT",
            FcmError::SenderIdMismatch => "SENDER_ID_MISMATCH",
            FcmError::QuotaExceeded { .. } => "QUOTA_EXCEEDED",
            FcmError::Unavailable { .. } => "UNAVAILABLE",
            FcmError::Internal => "INTERNAL",
            FcmError::ThirdPartyAuthError => "THIRD_PARTY_AUTH_ERROR",
        })
    }
}

/// The error codes as Google spells them; 429 and 503 without `Retry-After`.
impl FromStr for FcmError {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "UNREGISTERED" => FcmError::Unregistered,
            "INVALID_ARGUMENT" => FcmError::InvalidArgument,
            "SENDER_ID_MISMATCH" => FcmError::SenderIdMismatch,
            "QUOTA_EXCEEDED" => FcmError::QuotaExceeded { retry_after: None },
            "UNAVAILABLE" => FcmError::Unavailable { retry_after: None },
            "INTERNAL" => FcmError::Internal,
            "THIRD_PARTY_AUTH_ERROR" => FcmError::ThirdPartyAuthError,
            _ => return Err(()),
        })
    }
}

/// `{"error": {...}}` as every Google API answers errors.
pub fn error_body(code: u16, status: &str, message: &str, details: Value) -> Value {
    let mut error = json!({"code": code, "message": message, "status": status});
    if details.as_array().is_some_and(|d| !d.is_empty()) {
        error["details"] = details;
    }
    json!({ "error": error })
}

/// 400 for a field whose value does not parse, with a `BadRequest` detail.
fn invalid_value(field: &str, message: String) -> Rejection {
    let body = error_body(
        400,
        "INVALID_ARGUMENT",
        &message,
        json!([{
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": field, "description": message}],
        }]),
    );
    (400, body)
}

/// An error answer: status and body.
pub type Rejection = (u16, Value);

/// A message that passed validation.
pub struct Valid {
    pub token: String,
    pub data: BTreeMap<String, String>,
    pub priority: Option<String>,
    pub ttl: Option<String>,
    pub message: Value,
}

pub fn validate(body: &[u8]) -> Result<Valid, Rejection> {
    let invalid_json = || {
        let message = "Invalid JSON payload received. Unexpected token.";
        (400, error_body(400, "INVALID_ARGUMENT", message, json!([])))
    };
    let request: Value = serde_json::from_slice(body).map_err(|_| invalid_json())?;
    let Some(message) = request.get("message").and_then(Value::as_object) else {
        return Err(invalid_json());
    };
    let targets: Vec<&str> = ["token", "topic", "condition"]
        .into_iter()
        .filter(|t| message.contains_key(*t))
        .collect();
    match targets[..] {
        [] => {
            let e = FcmError::InvalidArgument;
            return Err((
                400,
                e.body_with("INVALID_ARGUMENT", "Recipient of the message is not set."),
            ));
        }
        [_] => {}
        [_, second, ..] => {
            return Err(invalid_value(
                "message",
                format!(
                    "Invalid value at 'message' (oneof), oneof field 'target' is already set. \
                     Cannot set '{second}'"
                ),
            ))
        }
    }
    let data = data(message)?;
    let (priority, ttl) = android(message)?;
    // Only token messages reach a device the mock records; topics and
    // conditions are not ours to send.
    let token = match message.get("token") {
        Some(Value::String(token)) if is_registration_token(token) => token.clone(),
        _ => return Err((400, FcmError::InvalidArgument.body())),
    };
    let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_DATA_BYTES {
        let e = FcmError::InvalidArgument;
        return Err((
            400,
            e.body_with("INVALID_ARGUMENT", "Android message is too big"),
        ));
    }
    Ok(Valid {
        token,
        data,
        priority,
        ttl,
        message: Value::Object(message.clone()),
    })
}

/// `data` must map strings to strings (`TYPE_STRING`).
fn data(message: &Map<String, Value>) -> Result<BTreeMap<String, String>, Rejection> {
    let Some(data) = message.get("data") else {
        return Ok(BTreeMap::new());
    };
    let Some(data) = data.as_object() else {
        return Err(invalid_value(
            "message.data",
            format!("Invalid value at 'message.data' (type.googleapis.com/google.firebase.fcm.v1.Message.DataEntry), {data}"),
        ));
    };
    let mut out = BTreeMap::new();
    for (i, (key, value)) in data.iter().enumerate() {
        let Some(text) = value.as_str() else {
            let field = format!("message.data[{i}].value");
            return Err(invalid_value(
                &field,
                format!("Invalid value at '{field}' (TYPE_STRING), {value}"),
            ));
        };
        out.insert(key.clone(), text.to_owned());
    }
    Ok(out)
}

/// `android.priority` (NORMAL or HIGH, kept in capitals) and `android.ttl` (a
/// protobuf Duration in JSON: decimal seconds with an `s`). FCM also takes the
/// lower-case names, which its docs show and the Firebase Admin SDKs send.
fn android(message: &Map<String, Value>) -> Result<(Option<String>, Option<String>), Rejection> {
    let Some(android) = message.get("android") else {
        return Ok((None, None));
    };
    let priority = match android.get("priority") {
        None => None,
        Some(Value::String(p)) if ["NORMAL", "HIGH", "normal", "high"].contains(&p.as_str()) => {
            Some(p.to_ascii_uppercase())
        }
        Some(other) => {
            return Err(invalid_value(
                "message.android.priority",
                format!("Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {other}"),
            ))
        }
    };
    let ttl = match android.get("ttl") {
        None => None,
        Some(Value::String(t)) if is_duration(t) => Some(t.clone()),
        Some(other) => {
            return Err(invalid_value(
                "message.android.ttl",
                format!("Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), {other}"),
            ))
        }
    };
    Ok((priority, ttl))
}

/// `<seconds>[.<fraction>]s`, as protobuf's JSON mapping writes a Duration.
fn is_duration(text: &str) -> bool {
    let Some(number) = text.strip_suffix('s') else {
        return false;
    };
    let (seconds, fraction) = number.split_once('.').unwrap_or((number, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(seconds) && digits(fraction) && fraction.len() <= 9
}

/// Lenient: FCM tokens are longer (~150 characters) of this alphabet.
pub fn is_registration_token(token: &str) -> bool {
    token.len() >= 32
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "dGVzdC10b2tlbi0xMjM0NTY3ODkwYWJjZGVm:APA91bH-test_token";

    fn message(fields: Value) -> Vec<u8> {
        let mut message = json!({"token": TOKEN});
        message
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        serde_json::to_vec(&json!({ "message": message })).unwrap()
    }

    #[test]
    fn durations_are_decimal_seconds() {
        for good in ["0s", "30s", "2419200s", "1.5s", "3.000000001s"] {
            assert!(is_duration(good), "{good}");
        }
        for bad in ["30", "s", "-1s", "1.s", "30 s", "1e3s", "1.0000000001s"] {
            assert!(!is_duration(bad), "{bad}");
        }
    }

    #[test]
    fn a_valid_message_keeps_what_the_device_gets() {
        let v = validate(&message(json!({
            "data": {"call_id": "abc"},
            "android": {"priority": "HIGH", "ttl": "30s"},
        })))
        .ok()
        .unwrap();
        assert_eq!(v.token, TOKEN);
        assert_eq!(v.data["call_id"], "abc");
        assert_eq!(v.priority.as_deref(), Some("HIGH"));
        assert_eq!(v.ttl.as_deref(), Some("30s"));
        let sdk = validate(&message(json!({"android": {"priority": "high"}}))).ok();
        assert_eq!(sdk.unwrap().priority.as_deref(), Some("HIGH"));
    }

    #[test]
    fn bad_messages_get_googles_answers() {
        let reject = |body: &[u8]| validate(body).err().unwrap();
        let (status, body) = reject(&message(json!({"data": {"n": 12}})));
        assert_eq!(status, 400);
        assert_eq!(
            body["error"]["message"],
            "Invalid value at 'message.data[0].value' (TYPE_STRING), 12"
        );
        assert_eq!(
            body["error"]["details"][0]["@type"],
            "type.googleapis.com/google.rpc.BadRequest"
        );
        let (_, body) = reject(&message(json!({"android": {"priority": "URGENT"}})));
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        let (_, body) = reject(&message(json!({"topic": "news"})));
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        let (_, body) = reject(br#"{"message":{"token":"short"}}"#);
        assert_eq!(body["error"]["details"][0]["errorCode"], "INVALID_ARGUMENT");
        assert_eq!(reject(b"not json").0, 400);
    }
}

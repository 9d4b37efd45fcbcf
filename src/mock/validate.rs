//! Request validation the way Apple does it: each failure maps to the status
//! and reason Apple answers with.

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method};
use parking_lot::Mutex;
use std::collections::HashMap;
use uuid::Uuid;

use super::jwt::{JwtVerifier, MAX_TOKEN_AGE_SECS};
use super::unix_ms;
use crate::apns::reason::Reason;
use crate::apns::PushType;

/// What the TLS layer learnt about the client's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCert {
    None,
    /// Chains to the CA the mock trusts for certificate auth.
    Valid,
    /// Presented but not acceptable: Apple answers 403 BadCertificate.
    Invalid,
}

/// A request whose headers passed validation.
pub struct Accepted {
    pub token: String,
    pub max_payload: usize,
    /// The client's `apns-id`, and its header to echo as sent (a clone shares
    /// its bytes).
    pub id: Option<(Uuid, HeaderValue)>,
}

/// The headers Apple looks at, found in one pass (no hashing per lookup: this
/// runs for every push of a throughput benchmark).
#[derive(Default)]
struct ApnsHeaders<'a> {
    authorization: Option<&'a HeaderValue>,
    id: Option<&'a HeaderValue>,
    topic: Option<&'a HeaderValue>,
    push_type: Option<&'a HeaderValue>,
    priority: Option<&'a HeaderValue>,
    expiration: Option<&'a HeaderValue>,
    collapse_id: Option<&'a HeaderValue>,
}

impl<'a> ApnsHeaders<'a> {
    fn read(h: &'a HeaderMap) -> Result<Self, Reason> {
        let mut found = ApnsHeaders::default();
        for (name, value) in h {
            let slot = match name.as_str() {
                "authorization" => &mut found.authorization,
                "apns-id" => &mut found.id,
                "apns-topic" => &mut found.topic,
                "apns-push-type" => &mut found.push_type,
                "apns-priority" => &mut found.priority,
                "apns-expiration" => &mut found.expiration,
                "apns-collapse-id" => &mut found.collapse_id,
                _ => continue,
            };
            if slot.is_some() {
                return Err(Reason::DuplicateHeaders);
            }
            *slot = Some(value);
        }
        Ok(found)
    }
}

/// A value that is not text is as malformed as a bad one.
fn text(value: &HeaderValue) -> &str {
    value.to_str().unwrap_or("\u{0}")
}

/// `new_token` sees each valid provider token with its `iat`, and may refuse it.
pub fn headers(
    parts: &Parts,
    cert: ClientCert,
    jwt: &JwtCheck,
    new_token: impl FnOnce(&str, u64) -> Result<(), Reason>,
) -> Result<Accepted, Reason> {
    if parts.method != Method::POST {
        return Err(Reason::MethodNotAllowed);
    }
    let token = parts
        .uri
        .path()
        .strip_prefix("/3/device/")
        .ok_or(Reason::BadPath)?;
    if token.is_empty() {
        return Err(Reason::MissingDeviceToken);
    }
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Reason::BadDeviceToken);
    }
    let h = ApnsHeaders::read(&parts.headers)?;
    match cert {
        ClientCert::Valid => {}
        ClientCert::Invalid => return Err(Reason::BadCertificate),
        ClientCert::None => {
            let bearer = h
                .authorization
                .map(text)
                .ok_or(Reason::MissingProviderToken)?
                .strip_prefix("bearer ")
                .ok_or(Reason::InvalidProviderToken)?;
            let bearer = bearer.trim();
            new_token(bearer, jwt.check(bearer)?)?;
        }
    }
    let topic = h
        .topic
        .map(text)
        .filter(|t| !t.is_empty())
        .ok_or(Reason::MissingTopic)?;
    let push_type = h
        .push_type
        .map(|t| text(t).parse::<PushType>())
        .transpose()
        .map_err(|_| Reason::InvalidPushType)?;
    // VoIP pushes go to `<bundle id>.voip`. Apple documents no reason for a
    // VoIP push to the bare bundle id; providers who sent one report 400
    // DeviceTokenNotForTopic (a PushKit token is registered for the .voip topic).
    if push_type == Some(PushType::Voip) && !topic.ends_with(".voip") {
        return Err(Reason::DeviceTokenNotForTopic);
    }
    let priority = h.priority.map(text);
    if priority.is_some_and(|p| !matches!(p, "1" | "5" | "10")) {
        return Err(Reason::BadPriority);
    }
    let id = match h.id {
        Some(v) => Some((apns_id(v).ok_or(Reason::BadMessageId)?, v.clone())),
        None => None,
    };
    let expiration = h.expiration.map(text);
    if expiration.is_some_and(|e| e.parse::<u64>().is_err()) {
        return Err(Reason::BadExpirationDate);
    }
    if h.collapse_id.is_some_and(|c| c.len() > 64) {
        return Err(Reason::BadCollapseId);
    }
    Ok(Accepted {
        token: token.to_ascii_lowercase(),
        max_payload: push_type.unwrap_or(PushType::Alert).max_payload(),
        id,
    })
}

pub fn payload(body: &[u8], max: usize) -> Result<(), Reason> {
    if body.is_empty() {
        Err(Reason::PayloadEmpty)
    } else if body.len() > max {
        Err(Reason::PayloadTooLarge)
    } else {
        Ok(())
    }
}

/// An `apns-id` Apple takes: a UUID in the canonical 8-4-4-4-12 form, the only
/// 36-byte form the parser knows.
pub fn apns_id(value: &HeaderValue) -> Option<Uuid> {
    let bytes = value.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    Uuid::try_parse_ascii(bytes).ok()
}

/// Verifies provider tokens, each distinct one only once: an ES256
/// verification costs ~100 µs, far more than the rest of a request, and a
/// client reuses one token for up to an hour.
pub struct JwtCheck {
    verifier: JwtVerifier,
    verified: Mutex<HashMap<Box<str>, Result<u64, Reason>>>,
}

/// Bounds the cache against a client that sends a new token every time.
const MAX_CACHED_TOKENS: usize = 1024;

/// How far a provider token's `iat` may lie in the future (the provider's
/// clock running ahead) before it is refused as invalid. Apple publishes no
/// figure; a minute tolerates ordinary NTP drift and still catches a clock
/// that is wrong.
const MAX_CLOCK_SKEW_SECS: u64 = 60;

impl JwtCheck {
    pub fn new(verifier: JwtVerifier) -> Self {
        JwtCheck {
            verifier,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The token's `iat` if Apple would accept it now.
    fn check(&self, bearer: &str) -> Result<u64, Reason> {
        let now = unix_ms() / 1000;
        let cached = self.verified.lock().get(bearer).copied();
        let iat = match cached {
            Some(result) => result?,
            None => {
                // Expiry depends on the time of the request: only the verdict on
                // the signature and claims is cached, the age is checked below.
                let result = self.verifier.verify_signature(bearer);
                let mut verified = self.verified.lock();
                if verified.len() >= MAX_CACHED_TOKENS {
                    verified.clear();
                }
                verified.insert(bearer.into(), result);
                result?
            }
        };
        if iat > now + MAX_CLOCK_SKEW_SECS {
            return Err(Reason::InvalidProviderToken);
        }
        if now.saturating_sub(iat) > MAX_TOKEN_AGE_SECS {
            return Err(Reason::ExpiredProviderToken);
        }
        Ok(iat)
    }
}

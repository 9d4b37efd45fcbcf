//! Google's OAuth 2.0 token endpoint for service accounts (the JWT bearer
//! grant, RFC 7523): checks the RS256 assertion like Google and issues
//! short-lived access tokens that the send endpoint then accepts.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use parking_lot::Mutex;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::account::Account;

pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google refuses assertions meant to live longer than an hour.
const MAX_ASSERTION_LIFETIME_SECS: u64 = 3600;
/// How far `iat` may lie ahead of the mock's clock.
const MAX_CLOCK_SKEW_SECS: u64 = 300;
/// Bounds the store against a client fetching tokens in a loop.
const MAX_TOKENS: usize = 4096;

/// An issued access token's lifetime, and whether its scopes allow FCM.
struct Issued {
    expires: Instant,
    fcm_scope: bool,
}

/// What an access token is worth at the send endpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    Granted,
    /// Issued, but not for the firebase.messaging scope.
    WrongScope,
    /// Unknown or expired.
    Invalid,
}

pub struct Tokens {
    issued: Mutex<HashMap<String, Issued>>,
    lifetime: Duration,
    /// Token requests still to be answered with an error.
    reject_next: Mutex<u32>,
}

/// An OAuth error answer: status and JSON body.
pub type Refusal = (u16, Value);

impl Tokens {
    pub fn new(lifetime: Duration) -> Self {
        Tokens {
            issued: Mutex::new(HashMap::new()),
            lifetime,
            reject_next: Mutex::new(0),
        }
    }

    pub fn reject_next(&self, n: u32) {
        *self.reject_next.lock() = n;
    }

    pub fn check(&self, bearer: &str) -> Access {
        match self.issued.lock().get(bearer) {
            Some(t) if t.expires > Instant::now() && t.fcm_scope => Access::Granted,
            Some(t) if t.expires > Instant::now() => Access::WrongScope,
            _ => Access::Invalid,
        }
    }

    /// Answers a form-encoded token request: 200 with the token's JSON, or
    /// Google's error.
    pub fn grant(&self, account: &Account, form: &[u8], now_secs: u64) -> Result<Value, Refusal> {
        {
            let mut reject = self.reject_next.lock();
            if *reject > 0 {
                *reject -= 1;
                return Err((
                    503,
                    json!({"error": "internal_failure", "error_description": "Backend Error"}),
                ));
            }
        }
        let form = parse_form(form);
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let grant_type = field("grant_type").unwrap_or("");
        if grant_type != JWT_BEARER {
            return Err(oauth_error(
                "unsupported_grant_type",
                &format!("Invalid grant_type: {grant_type}"),
            ));
        }
        let assertion = field("assertion").ok_or_else(|| {
            oauth_error("invalid_request", "Missing required parameter: assertion")
        })?;
        let fcm_scope = verify(account, assertion, now_secs)?;
        let token = format!("ya29.{}", B64.encode(rand::random::<[u8; 32]>()));
        let mut issued = self.issued.lock();
        if issued.len() >= MAX_TOKENS {
            let now = Instant::now();
            issued.retain(|_, t| t.expires > now);
        }
        issued.insert(
            token.clone(),
            Issued {
                expires: Instant::now() + self.lifetime,
                fcm_scope,
            },
        );
        Ok(json!({
            "access_token": token,
            "expires_in": self.lifetime.as_secs(),
            "token_type": "Bearer",
        }))
    }
}

fn oauth_error(error: &str, description: &str) -> Refusal {
    (
        400,
        json!({"error": error, "error_description": description}),
    )
}

/// Whether the assertion asks for the FCM scope, if Google would accept it.
fn verify(account: &Account, jwt: &str, now: u64) -> Result<bool, Refusal> {
    let grant = |description: &str| oauth_error("invalid_grant", description);
    let bad_signature = || grant("Invalid JWT Signature.");
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(grant("Invalid JWT: malformed"));
    };
    let header = decode_json(h).ok_or_else(|| grant("Invalid JWT: malformed header"))?;
    let claims = decode_json(c).ok_or_else(|| grant("Invalid JWT: malformed claims"))?;
    let kid_ok = header
        .get("kid")
        .map_or(true, |kid| *kid == account.json.private_key_id.as_str());
    if header["alg"] != "RS256" || !kid_ok {
        return Err(bad_signature());
    }
    let signature = B64.decode(s).map_err(|_| bad_signature())?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &account.public_key_pkcs1)
        .verify(&jwt.as_bytes()[..h.len() + 1 + c.len()], &signature)
        .map_err(|_| bad_signature())?;
    if claims["iss"] != account.json.client_email.as_str() {
        return Err(grant("Invalid grant: account not found"));
    }
    if claims["aud"] != account.json.token_uri.as_str() {
        return Err(grant(&format!(
            "Invalid JWT: Failed audience check. The right audience is {}",
            account.json.token_uri
        )));
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
        return Err(grant("Invalid JWT: iat and exp are required"));
    };
    if exp <= iat
        || exp - iat > MAX_ASSERTION_LIFETIME_SECS
        || exp <= now
        || iat > now + MAX_CLOCK_SKEW_SECS
    {
        return Err(grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim.",
        ));
    }
    let Some(scope) = claims["scope"].as_str().filter(|s| !s.trim().is_empty()) else {
        return Err(oauth_error(
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        ));
    };
    Ok(scope.split(' ').any(|s| s == FCM_SCOPE))
}

fn decode_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&B64.decode(part).ok()?).ok()
}

/// `application/x-www-form-urlencoded` pairs, decoded.
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut kv = pair.splitn(2, |&b| b == b'=');
            let key = percent_decode(kv.next().unwrap_or_default());
            let value = percent_decode(kv.next().unwrap_or_default());
            (key, value)
        })
        .collect()
}

fn percent_decode(text: &[u8]) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match text[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < text.len() => match (hex(text[i + 1]), hex(text[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_like_browsers_encode_them() {
        let form = parse_form(b"grant_type=urn%3Aietf%3Aparams&assertion=a.b.c&x=1+2%");
        assert_eq!(
            form,
            [
                ("grant_type".into(), "urn:ietf:params".into()),
                ("assertion".into(), "a.b.c".into()),
                ("x".into(), "1 2%".into()),
            ]
        );
    }
}

//! The RS256-signed JWT a service account presents to Google's token endpoint
//! (OAuth2 JWT bearer grant, RFC 7523) to get an access token for FCM.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::RSA_PKCS1_SHA256;
use std::fmt;

use super::service_account::ServiceAccount;

/// The OAuth2 scope that allows sending FCM messages.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Google accepts assertions valid for at most an hour.
pub const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// A signed assertion: a credential, so `Debug` never shows it.
pub struct Assertion(String);

impl Assertion {
    /// The compact JWT, for the token request body only.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Assertion(<redacted>)")
    }
}

/// ring could not sign (it found no system randomness for RSA blinding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignError;

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("could not sign the OAuth2 assertion (no system randomness)")
    }
}

impl std::error::Error for SignError {}

/// The assertion for `account` issued at `iat` (Unix seconds), valid an hour.
pub fn sign_assertion(account: &ServiceAccount, iat: u64) -> Result<Assertion, SignError> {
    // serde_json escapes the account's strings; they come from a file.
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": account.private_key_id});
    let claims = serde_json::json!({
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": account.token_uri,
        "iat": iat,
        "exp": iat + ASSERTION_LIFETIME_SECS,
    });
    let mut jwt = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let key = account.key();
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        jwt.as_bytes(),
        &mut signature,
    )
    .map_err(|_| SignError)?;
    jwt.push('.');
    jwt.push_str(&B64.encode(signature));
    Ok(Assertion(jwt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcm::service_account::tests::test_account;
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
    use serde_json::Value;

    fn part(b64: &str) -> Value {
        serde_json::from_slice(&B64.decode(b64).unwrap()).unwrap()
    }

    #[test]
    fn the_assertion_has_googles_header_and_claims_and_a_valid_signature() {
        let account = test_account();
        let assertion = sign_assertion(&account, 1_700_000_000).unwrap();
        let parts: Vec<&str> = assertion.as_str().split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            part(parts[0]),
            serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": account.private_key_id})
        );
        assert_eq!(
            part(parts[1]),
            serde_json::json!({
                "iss": "firebase-adminsdk-x1@pushpark-test.iam.gserviceaccount.com",
                "scope": "https://www.googleapis.com/auth/firebase.messaging",
                "aud": "https://oauth2.googleapis.com/token",
                "iat": 1_700_000_000u64,
                "exp": 1_700_003_600u64,
            })
        );

        let public = UnparsedPublicKey::new(
            &RSA_PKCS1_2048_8192_SHA256,
            account.key().public().as_ref().to_vec(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        let signature = B64.decode(parts[2]).unwrap();
        assert_eq!(signature.len(), 256, "a 2048-bit RSA signature");
        public.verify(signed.as_bytes(), &signature).unwrap();

        // The check can fail: another iat is not covered by this signature.
        let other = sign_assertion(&account, 1_700_000_001).unwrap();
        let other_signed = other.as_str().rsplit_once('.').unwrap().0;
        assert!(public.verify(other_signed.as_bytes(), &signature).is_err());
    }

    #[test]
    fn debug_hides_the_assertion() {
        let assertion = sign_assertion(&test_account(), 1).unwrap();
        let debug = format!("{assertion:?}");
        assert!(
            !debug.contains(assertion.as_str().split('.').next().unwrap()),
            "{debug}"
        );
    }
}

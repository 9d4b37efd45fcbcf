//! Checks provider tokens (ES256 JWT) the way Apple does: signature and claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::DecodePrivateKey;

use crate::apns::jwt::KeyError;
use crate::apns::reason::Reason;

/// Like Apple, the mock refuses tokens issued longer ago than this.
pub const MAX_TOKEN_AGE_SECS: u64 = 60 * 60;

pub struct JwtVerifier {
    key: VerifyingKey,
    key_id: String,
    team_id: String,
}

impl JwtVerifier {
    /// Verifies tokens signed with the team's `.p8` key (the mock holds it; Apple keeps its
    /// public half).
    pub fn from_p8_pem(pem: &str, key_id: &str, team_id: &str) -> Result<Self, KeyError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|_| KeyError::NotP256Pkcs8)?;
        Ok(JwtVerifier {
            key: VerifyingKey::from(&key),
            key_id: key_id.into(),
            team_id: team_id.into(),
        })
    }

    /// The token's `iat` if its signature and claims are right, whatever its age
    /// (a verdict that does not change with time, so it can be cached).
    pub fn verify_signature(&self, jwt: &str) -> Result<u64, Reason> {
        let invalid = Reason::InvalidProviderToken;
        let mut parts = jwt.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid);
        };
        let header: serde_json::Value = decode_json(h).ok_or(invalid)?;
        let claims: serde_json::Value = decode_json(c).ok_or(invalid)?;
        if header["alg"] != "ES256"
            || header["kid"] != self.key_id.as_str()
            || claims["iss"] != self.team_id.as_str()
        {
            return Err(invalid);
        }
        let iat = claims["iat"].as_u64().ok_or(invalid)?;
        let sig_bytes = B64.decode(s).map_err(|_| invalid)?;
        let sig = Signature::from_slice(&sig_bytes).map_err(|_| invalid)?;
        let signed = &jwt[..h.len() + 1 + c.len()];
        self.key
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| invalid)?;
        Ok(iat)
    }
}

fn decode_json(part: &str) -> Option<serde_json::Value> {
    serde_json::from_slice(&B64.decode(part).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apns::jwt::JwtSigner;
    use p256::pkcs8::{EncodePrivateKey, LineEnding};

    #[test]
    fn signed_token_verifies_and_tampering_fails() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let signer = JwtSigner::from_p8_pem(&pem, "TESTKEY001", "TESTTEAM01").unwrap();
        let verifier = JwtVerifier::from_p8_pem(&pem, "TESTKEY001", "TESTTEAM01").unwrap();
        let jwt = signer.sign(1_000_000);
        assert_eq!(verifier.verify_signature(&jwt), Ok(1_000_000));
        let mut tampered = jwt.clone();
        tampered.replace_range(jwt.len() - 3.., "AAA");
        assert_eq!(
            verifier.verify_signature(&tampered),
            Err(Reason::InvalidProviderToken)
        );
        let other = JwtVerifier::from_p8_pem(&pem, "OTHERKEY01", "TESTTEAM01").unwrap();
        assert_eq!(
            other.verify_signature(&jwt),
            Err(Reason::InvalidProviderToken)
        );
    }
}

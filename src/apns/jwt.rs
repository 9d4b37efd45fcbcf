//! ES256 provider tokens (JWT) for APNs token auth: signing from the team's
//! `.p8` key and the refresh rules Apple imposes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use parking_lot::Mutex;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Apple rejects tokens older than an hour; refresh well before.
pub const REFRESH_AFTER_SECS: u64 = 50 * 60;
/// Apple answers TooManyProviderTokenUpdates when tokens change faster than this.
pub const MIN_REFRESH_INTERVAL_SECS: u64 = 20 * 60;

/// Seconds since the Unix epoch; injectable so tests can move time.
pub trait Clock: Send + Sync {
    fn now_unix(&self) -> u64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The key text is not a PEM PKCS#8 P-256 private key (no detail: it is secret).
    NotP256Pkcs8,
    BadKeyId,
    BadTeamId,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::NotP256Pkcs8 => "the key is not a PEM PKCS#8 P-256 (ES256) private key",
            KeyError::BadKeyId => "the key id must be 10 alphanumeric characters",
            KeyError::BadTeamId => "the team id must be 10 alphanumeric characters",
        })
    }
}

impl std::error::Error for KeyError {}

fn valid_id(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Signs provider tokens. Debug output never shows the key.
pub struct JwtSigner {
    key: SigningKey,
    key_id: String,
    team_id: String,
}

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JwtSigner {{ key_id: {}, team_id: {} }}",
            self.key_id, self.team_id
        )
    }
}

impl JwtSigner {
    pub fn from_p8_pem(pem: &str, key_id: &str, team_id: &str) -> Result<Self, KeyError> {
        if !valid_id(key_id) {
            return Err(KeyError::BadKeyId);
        }
        if !valid_id(team_id) {
            return Err(KeyError::BadTeamId);
        }
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|_| KeyError::NotP256Pkcs8)?;
        Ok(JwtSigner {
            key,
            key_id: key_id.into(),
            team_id: team_id.into(),
        })
    }

    pub fn sign(&self, iat: u64) -> String {
        let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, self.key_id);
        let claims = format!(r#"{{"iss":"{}","iat":{}}}"#, self.team_id, iat);
        let mut jwt = format!("{}.{}", B64.encode(header), B64.encode(claims));
        let sig: Signature = self.key.sign(jwt.as_bytes());
        jwt.push('.');
        jwt.push_str(&B64.encode(sig.to_bytes()));
        jwt
    }
}

struct Current {
    jwt: Arc<str>,
    iat: u64,
    generation: u64,
}

/// The one provider token shared by every connection using a key.
pub struct ProviderToken {
    signer: JwtSigner,
    clock: Arc<dyn Clock>,
    current: Mutex<Current>,
    refreshes: std::sync::atomic::AtomicU64,
}

/// A token as handed to one request; `generation` identifies it when Apple rejects it.
#[derive(Clone)]
pub struct IssuedToken {
    pub bearer: Arc<str>,
    pub generation: u64,
    /// When it was issued (Unix seconds): callers caching it know when to ask again.
    pub iat: u64,
}

impl ProviderToken {
    pub fn new(signer: JwtSigner, clock: Arc<dyn Clock>) -> Self {
        let iat = clock.now_unix();
        let jwt = signer.sign(iat).into();
        ProviderToken {
            signer,
            clock,
            current: Mutex::new(Current {
                jwt,
                iat,
                generation: 0,
            }),
            refreshes: Default::default(),
        }
    }

    /// The token to send now, refreshed once it is about 50 minutes old.
    pub fn get(&self) -> IssuedToken {
        let mut cur = self.current.lock();
        if self.clock.now_unix().saturating_sub(cur.iat) >= REFRESH_AFTER_SECS {
            self.regenerate(&mut cur);
        }
        IssuedToken {
            bearer: cur.jwt.clone(),
            generation: cur.generation,
            iat: cur.iat,
        }
    }

    /// Apple said ExpiredProviderToken for a request sent with `generation`.
    /// Regenerates at most once per generation (a burst of such answers causes
    /// one regeneration) and never sooner than 20 minutes after the last one.
    /// Returns whether a retry with `get()` can succeed.
    pub fn expired(&self, generation: u64) -> bool {
        let mut cur = self.current.lock();
        if cur.generation != generation {
            return true;
        }
        if self.clock.now_unix().saturating_sub(cur.iat) < MIN_REFRESH_INTERVAL_SECS {
            return false;
        }
        self.regenerate(&mut cur);
        true
    }

    /// How many times the token was regenerated since start.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn regenerate(&self, cur: &mut Current) {
        cur.iat = self.clock.now_unix();
        cur.jwt = self.signer.sign(cur.iat).into();
        cur.generation += 1;
        self.refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock the test sets (FCM's token tests use it too).
    pub(crate) struct TestClock(pub(crate) AtomicU64);
    impl Clock for TestClock {
        fn now_unix(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn new_key_pem() -> String {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    }

    #[test]
    fn bad_keys_and_ids_are_refused() {
        assert_eq!(
            JwtSigner::from_p8_pem("not a key", "TESTKEY001", "TESTTEAM01").unwrap_err(),
            KeyError::NotP256Pkcs8
        );
        assert_eq!(
            JwtSigner::from_p8_pem(&new_key_pem(), "short", "TESTTEAM01").unwrap_err(),
            KeyError::BadKeyId
        );
    }

    #[test]
    fn refresh_rules() {
        let clock = Arc::new(TestClock(AtomicU64::new(10_000)));
        let signer = JwtSigner::from_p8_pem(&new_key_pem(), "TESTKEY001", "TESTTEAM01").unwrap();
        let token = ProviderToken::new(signer, clock.clone());
        let first = token.get();
        clock
            .0
            .store(10_000 + REFRESH_AFTER_SECS - 1, Ordering::SeqCst);
        assert_eq!(
            token.get().generation,
            first.generation,
            "kept before 50 minutes"
        );
        clock.0.store(10_000 + REFRESH_AFTER_SECS, Ordering::SeqCst);
        let second = token.get();
        assert_eq!(
            second.generation,
            first.generation + 1,
            "refreshed at 50 minutes"
        );
        assert_ne!(second.bearer, first.bearer);

        // Expired answers within 20 minutes of the last refresh: no regeneration.
        clock.0.fetch_add(60, Ordering::SeqCst);
        assert!(!token.expired(second.generation));
        assert_eq!(token.refreshes(), 1);

        // A burst of expired answers for one generation: one regeneration.
        clock
            .0
            .fetch_add(MIN_REFRESH_INTERVAL_SECS, Ordering::SeqCst);
        for _ in 0..10 {
            assert!(token.expired(second.generation));
        }
        assert_eq!(token.refreshes(), 2);
        assert_eq!(token.get().generation, second.generation + 1);
    }
}

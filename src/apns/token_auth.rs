//! Provider-token credentials: the ES256 token shared by all connections, and a
//! counter that tells each connection's cached `authorization` header to refresh
//! after Apple expired the token.

use http::HeaderValue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::jwt::{Clock, ProviderToken, REFRESH_AFTER_SECS};
use crate::push_client::{Authorization, Credentials};

pub struct TokenAuth {
    token: ProviderToken,
    clock: Arc<dyn Clock>,
    epoch: AtomicU64,
}

/// A connection's `authorization` header, built once per token.
#[derive(Default)]
pub struct CachedBearer(Option<Bearer>);

struct Bearer {
    authorization: Authorization,
    iat: u64,
    epoch: u64,
}

impl TokenAuth {
    pub(crate) fn new(token: ProviderToken, clock: Arc<dyn Clock>) -> Self {
        TokenAuth {
            token,
            clock,
            epoch: AtomicU64::new(0),
        }
    }
}

impl Credentials for TokenAuth {
    type Cached = CachedBearer;

    /// Signed synchronously: a token is always at hand.
    fn authorization(&self, cached: &mut CachedBearer) -> Result<Option<Authorization>, Arc<str>> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let now = self.clock.now_unix();
        match &cached.0 {
            Some(b) if b.epoch == epoch && now.saturating_sub(b.iat) < REFRESH_AFTER_SECS => {}
            _ => {
                let issued = self.token.get();
                let mut value = HeaderValue::try_from(format!("bearer {}", issued.bearer))
                    .expect("a JWT is base64url and dots");
                value.set_sensitive(true);
                cached.0 = Some(Bearer {
                    authorization: Authorization {
                        value,
                        generation: issued.generation,
                    },
                    iat: issued.iat,
                    epoch,
                });
            }
        }
        let b = cached.0.as_ref().expect("just filled");
        Ok(Some(b.authorization.clone()))
    }

    /// Apple answered ExpiredProviderToken to a request carrying `generation`.
    fn expired(&self, generation: u64) -> bool {
        let fresh = self.token.expired(generation);
        if fresh {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        fresh
    }

    fn refreshes(&self) -> u64 {
        self.token.refreshes()
    }
}

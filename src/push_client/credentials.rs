//! What a request's `authorization` header carries, asked of the credentials on
//! every dispatch, and what to do when the server says they expired.

use http::HeaderValue;
use parking_lot::Mutex;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// An `authorization` header value and the generation of the credentials it
/// came from, so an "expired" answer names what expired.
#[derive(Clone)]
pub struct Authorization {
    pub value: HeaderValue,
    pub generation: u64,
}

/// The credentials requests carry. Asked under a connection slot's lock on every
/// dispatch: answer from `cached` (one per connection) on the common path.
pub trait Credentials: Send + Sync + 'static {
    /// What a connection slot keeps between dispatches (e.g. the header value built once).
    type Cached: Default + Send + 'static;

    /// The header value for the next request: `Ok(None)` when requests carry none
    /// (certificate auth); `Err(why)` when there is none yet, so nothing is sent:
    /// the push waits in `ready` until its deadline, `why` being its last error.
    fn authorization(&self, cached: &mut Self::Cached) -> Result<Option<Authorization>, Arc<str>>;

    /// The server said the credentials of `generation` expired: whether resending
    /// (after `ready`) can succeed. Called once per push at most.
    fn expired(&self, generation: u64) -> bool;

    /// Renewals since start, for the metrics.
    fn refreshes(&self) -> u64;

    /// Resolves once `authorization` may answer `Ok` again.
    fn ready(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// No credentials: requests carry no `authorization` (certificate auth).
impl<C: Credentials> Credentials for Option<C> {
    type Cached = C::Cached;

    fn authorization(&self, cached: &mut C::Cached) -> Result<Option<Authorization>, Arc<str>> {
        match self {
            Some(c) => c.authorization(cached),
            None => Ok(None),
        }
    }

    fn expired(&self, generation: u64) -> bool {
        self.as_ref().is_some_and(|c| c.expired(generation))
    }

    fn refreshes(&self) -> u64 {
        self.as_ref().map_or(0, C::refreshes)
    }

    async fn ready(&self) {
        if let Some(c) = self {
            c.ready().await
        }
    }
}

/// Credentials shared with whoever renews them (a task on the client's runtime).
impl<C: Credentials> Credentials for Arc<C> {
    type Cached = C::Cached;

    fn authorization(&self, cached: &mut C::Cached) -> Result<Option<Authorization>, Arc<str>> {
        (**self).authorization(cached)
    }

    fn expired(&self, generation: u64) -> bool {
        (**self).expired(generation)
    }

    fn refreshes(&self) -> u64 {
        (**self).refreshes()
    }

    fn ready(&self) -> impl Future<Output = ()> + Send {
        (**self).ready()
    }
}

/// A token fetched by a background task (an OAuth2 access token): `set` when one
/// arrives, `failed` when fetching did not work. Until the first `set`, and after
/// the server rejected the current token, pushes wait for the next one.
/// Debug output and errors never show the token.
pub struct FetchedToken {
    /// The generation of the usable token, 0 when there is none: read on every dispatch.
    usable: AtomicU64,
    state: Mutex<TokenState>,
    /// Woken when a token arrives: pushes waiting in `ready` look again.
    arrived: Notify,
    /// Woken when the server rejected the current token: the renewing task fetches at once.
    rejected: Notify,
}

struct TokenState {
    value: Option<HeaderValue>,
    generation: u64,
    /// Why there is no usable token: the pushes' last error.
    missing: Arc<str>,
}

impl Default for FetchedToken {
    fn default() -> Self {
        FetchedToken {
            usable: AtomicU64::new(0),
            state: Mutex::new(TokenState {
                value: None,
                generation: 0,
                missing: "no access token yet".into(),
            }),
            arrived: Notify::new(),
            rejected: Notify::new(),
        }
    }
}

impl FetchedToken {
    /// A new token arrived: requests carry `authorization` (the whole header value,
    /// e.g. `Bearer ya29...`) from now on, and waiting pushes go out.
    pub fn set(&self, mut authorization: HeaderValue) {
        authorization.set_sensitive(true);
        let mut state = self.state.lock();
        state.value = Some(authorization);
        state.generation += 1;
        self.usable.store(state.generation, Ordering::Release);
        drop(state);
        self.arrived.notify_waiters();
    }

    /// Fetching failed: `why` (the token endpoint's error) becomes the last error of
    /// pushes waiting for a token. A usable token stays in use until it is rejected.
    pub fn failed(&self, why: &str) {
        self.state.lock().missing = format!("no access token: {why}").into();
    }

    /// Resolves when the server rejected the current token (or did so since the
    /// last call): the renewing task then fetches a new one without waiting for its timer.
    pub async fn rejected(&self) {
        self.rejected.notified().await
    }
}

impl Credentials for FetchedToken {
    type Cached = Option<Authorization>;

    fn authorization(
        &self,
        cached: &mut Option<Authorization>,
    ) -> Result<Option<Authorization>, Arc<str>> {
        let usable = self.usable.load(Ordering::Acquire);
        match cached {
            Some(c) if usable != 0 && c.generation == usable => return Ok(Some(c.clone())),
            _ => {}
        }
        let state = self.state.lock();
        let Some(value) = &state.value else {
            return Err(state.missing.clone());
        };
        let fresh = Authorization {
            value: value.clone(),
            generation: state.generation,
        };
        *cached = Some(fresh.clone());
        Ok(Some(fresh))
    }

    /// Drops the current token if it is the one rejected; a push then waits for
    /// the next, which the renewing task is told to fetch.
    fn expired(&self, generation: u64) -> bool {
        let mut state = self.state.lock();
        if state.generation == generation && state.value.is_some() {
            state.value = None;
            state.missing = "access token rejected by the server: fetching a new one".into();
            self.usable.store(0, Ordering::Release);
            // notify_one keeps a permit: a renewing task busy right now still sees it.
            self.rejected.notify_one();
        }
        true
    }

    fn refreshes(&self) -> u64 {
        self.state.lock().generation.saturating_sub(1)
    }

    async fn ready(&self) {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            // Enabled before the check, so a token set in between is not missed.
            arrived.as_mut().enable();
            if self.usable.load(Ordering::Acquire) != 0 {
                return;
            }
            arrived.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetched_token_is_missing_until_set_and_after_it_is_rejected() {
        let token = FetchedToken::default();
        let mut cached = None;
        let why = token.authorization(&mut cached).err().unwrap();
        assert_eq!(&*why, "no access token yet");
        token.failed("401 from the token endpoint");
        let why = token.authorization(&mut cached).err().unwrap();
        assert!(why.contains("401 from the token endpoint"), "{why}");

        token.set(HeaderValue::from_static("Bearer SECRET-1"));
        let first = token.authorization(&mut cached).unwrap().unwrap();
        assert_eq!(
            (first.value.to_str().unwrap(), first.generation),
            ("Bearer SECRET-1", 1)
        );
        assert!(first.value.is_sensitive());

        assert!(token.expired(1));
        assert!(
            token.authorization(&mut cached).is_err(),
            "the rejected token is dropped"
        );
        token.set(HeaderValue::from_static("Bearer SECRET-2"));
        let second = token.authorization(&mut cached).unwrap().unwrap();
        assert_eq!(second.generation, 2);
        // A late answer about the old token leaves the new one alone.
        assert!(token.expired(1));
        assert!(token.authorization(&mut cached).is_ok());
        assert_eq!(token.refreshes(), 1);
    }

    #[tokio::test]
    async fn rejecting_the_token_wakes_the_renewing_task() {
        let token = FetchedToken::default();
        token.set(HeaderValue::from_static("Bearer SECRET"));
        token.expired(1);
        // The permit was kept: the task did not have to be waiting already.
        tokio::time::timeout(std::time::Duration::from_secs(5), token.rejected())
            .await
            .unwrap();
    }
}

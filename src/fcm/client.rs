//! `FcmClient`: the shared push client speaking FCM, carrying the OAuth2 access
//! token of one service account, which a task on the client's runtime renews.

use http::uri::Authority;
use http::{HeaderValue, Uri};
use std::sync::Arc;
use std::time::Duration;

use super::access_token::{
    parse_token_response, token_request_body, AccessToken, TOKEN_REQUEST_CONTENT_TYPE,
};
use super::jwt::sign_assertion;
use super::service::Fcm;
use super::service_account::ServiceAccount;
use crate::apns::jwt::{Clock, SystemClock};
use crate::push_client::{Backoff, Client, ClientError, FetchedToken, OneShot, Settings};

/// An FCM HTTP/2 client with its own runtime thread(s) and connection pool; requests
/// carry the access token of the service account it was made with.
pub type FcmClient = Client<Fcm, Arc<FetchedToken>>;

/// A token request that takes longer has failed; the next is tried after the backoff.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Failed token requests are repeated after 1 s, doubling up to a minute.
const TOKEN_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    max: Duration::from_secs(60),
};
/// At most one token request a second, whatever FCM says of the tokens.
const MIN_FETCH_INTERVAL: Duration = Duration::from_secs(1);

impl FcmClient {
    /// Starts the runtime, connects to `settings`' host and fetches the first access
    /// token at the account's `token_uri`. Pushes submitted before it arrives wait for it.
    pub fn new(account: ServiceAccount, settings: &Settings) -> Result<FcmClient, ClientError> {
        let display = if settings.host.contains(':') {
            format!("[{}]:{}", settings.host, settings.port)
        } else {
            format!("{}:{}", settings.host, settings.port)
        };
        let authority = Authority::try_from(display.as_str())
            .map_err(|_| ClientError::Config(format!("{display:?} is not a valid authority")))?;
        // A bad token_uri is a configuration error now, not a renewal failure later.
        token_uri(&account)?;
        let one_shot = OneShot::new(settings.ca_file.as_deref(), TOKEN_TIMEOUT)?;
        let token = Arc::new(FetchedToken::default());
        let client = Client::start(Fcm::new(authority), token.clone(), settings)?;
        client.spawn(renew(token, account, one_shot));
        Ok(client)
    }
}

/// Keeps `token` usable for the life of the client: fetched at once, again before
/// it expires or as soon as FCM refuses it; failures are retried with a backoff and
/// become the last error of the pushes waiting for a token.
async fn renew(token: Arc<FetchedToken>, account: ServiceAccount, one_shot: OneShot) {
    let clock = SystemClock;
    let mut failures = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        let wait = match fetch_access_token(&account, &one_shot, &clock).await {
            Ok(access) => {
                if failures > 0 {
                    log::info!("FCM access token for {}: obtained", account.client_email);
                }
                failures = 0;
                let value = HeaderValue::try_from(access.authorization())
                    .map_err(|_| "not a valid header value".to_string());
                match value {
                    Ok(value) => {
                        token.set(value);
                        Duration::from_secs(access.refresh_at().saturating_sub(clock.now_unix()))
                    }
                    Err(why) => {
                        failures += 1;
                        token.failed(&why);
                        TOKEN_BACKOFF.delay(failures)
                    }
                }
            }
            Err(why) => {
                failures += 1;
                log::warn!("FCM access token for {}: {why}", account.client_email);
                token.failed(&why);
                TOKEN_BACKOFF.delay(failures)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = token.rejected() => {}
        }
        tokio::time::sleep_until(started + MIN_FETCH_INTERVAL).await;
    }
}

/// The account's `token_uri`, where every fetch goes.
fn token_uri(account: &ServiceAccount) -> Result<Uri, ClientError> {
    account
        .token_uri
        .parse()
        .map_err(|_| ClientError::Config(format!("token_uri {:?} is not a URL", account.token_uri)))
}

/// One assertion exchanged at the account's `token_uri` for an access token, as
/// the client's renewal does; also for tools that need the token itself (load
/// generators). Errors never quote either.
pub async fn fetch_access_token(
    account: &ServiceAccount,
    one_shot: &OneShot,
    clock: &dyn Clock,
) -> Result<AccessToken, String> {
    let uri = token_uri(account).map_err(|e| e.to_string())?;
    let assertion = sign_assertion(account, clock.now_unix()).map_err(|e| e.to_string())?;
    let body = token_request_body(&assertion);
    let (status, answer) = one_shot
        .post(&uri, TOKEN_REQUEST_CONTENT_TYPE, body)
        .await?;
    parse_token_response(status, &answer, clock).map_err(|e| e.to_string())
}

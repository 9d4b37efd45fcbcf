//! `ApnsClient`: the shared push client speaking APNs, with provider-token or
//! certificate credentials.

use http::uri::Authority;

use super::config::{Auth, ClientConfig, ClientError};
use super::jwt::{JwtSigner, ProviderToken};
use super::service::Apns;
use super::token_auth::TokenAuth;
use crate::push_client::{self, check_tls, Client};

/// An APNs HTTP/2 client with its own runtime thread(s) and connection pool.
/// Without a provider token (certificate auth) requests carry no `authorization`.
pub type ApnsClient = Client<Apns, Option<TokenAuth>>;

impl ApnsClient {
    /// What `new` checks of the credentials and CA, without starting a thread
    /// or connecting: a forking host checks before it forks the engine's process.
    pub fn check(cfg: &ClientConfig) -> Result<(), ClientError> {
        if let Auth::Token {
            key_pem,
            key_id,
            team_id,
        } = &cfg.auth
        {
            JwtSigner::from_p8_pem(key_pem, key_id, team_id)?;
        }
        Ok(check_tls(&cfg.settings())?)
    }

    /// Checks the credentials and CA, starts the runtime and begins connecting.
    pub fn new(cfg: ClientConfig) -> Result<ApnsClient, ClientError> {
        let auth = match &cfg.auth {
            Auth::Token {
                key_pem,
                key_id,
                team_id,
            } => {
                let signer = JwtSigner::from_p8_pem(key_pem, key_id, team_id)?;
                let token = ProviderToken::new(signer, cfg.clock.clone());
                Some(TokenAuth::new(token, cfg.clock.clone()))
            }
            Auth::Certificate { .. } => None,
        };
        let display = cfg.endpoint.to_string();
        let authority = Authority::try_from(display.as_str()).map_err(|_| {
            push_client::ClientError::Config(format!("{display:?} is not a valid authority"))
        })?;
        Ok(Client::start(Apns::new(authority), auth, &cfg.settings())?)
    }
}

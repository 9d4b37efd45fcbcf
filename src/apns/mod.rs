//! The APNs client: Apple's part of the shared push client (`crate::push_client`).
//!
//! [`ApnsClient`] is the shared client speaking APNs: requests to
//! `/3/device/{token}` with the apns-* headers, Apple's reasons in its answers,
//! ES256 provider tokens (regenerated once on ExpiredProviderToken) or a client
//! certificate. [`ApnsClient::submit`] never blocks; see `crate::push_client` for
//! the retries, replays and deadlines every service shares.

mod answer;
mod client;
mod config;
pub mod jwt;
mod pkcs12;
mod push;
pub mod reason;
mod service;
mod token_auth;

pub use crate::push_client::{Backoff, Metrics, SubmitError};
pub use client::ApnsClient;
pub use config::{Auth, ClientConfig, ClientError, Endpoint};
pub use push::{Push, PushType};
pub use reason::Reason;
pub use service::Apns;
pub use token_auth::TokenAuth;

/// The final result of one APNs push.
pub type Outcome = crate::push_client::Outcome<Reason>;
/// Handed to `ApnsClient::submit`'s `done` callback.
pub type PushResult = crate::push_client::PushResult<Reason>;

#[cfg(fuzzing)]
pub use answer::fuzz_classify;

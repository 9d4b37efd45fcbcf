//! The APNs HTTP/2 client.
//!
//! [`ApnsClient`] owns a tokio runtime on its own thread(s) and a small pool of
//! HTTP/2-over-TLS connections (hyper + rustls). [`ApnsClient::submit`] never
//! blocks: it validates the push, and its `done` callback later receives the
//! final [`Outcome`] after retries (429/5xx with backoff, replays of requests a
//! GOAWAY or REFUSED_STREAM left unprocessed, one token regeneration on
//! ExpiredProviderToken), `Unconfirmed` when a request's connection was lost
//! before its answer (never resent), or `TimedOut` at the push's deadline.

mod client;
mod config;
mod connection;
mod happy_eyeballs;
pub mod jwt;
mod metrics;
mod outcome;
mod paced_read;
mod pkcs12;
mod push;
pub mod reason;
mod tls;

pub use client::ApnsClient;
pub use config::{Auth, Backoff, ClientConfig, ClientError, Endpoint};
pub use metrics::Metrics;
pub use outcome::{Outcome, PushResult};
pub use push::{Push, PushType, SubmitError};
pub use reason::Reason;

#[cfg(fuzzing)]
pub use outcome::fuzz_classify;

//! The APNs HTTP/2 client.

mod client;
mod config;
mod connection;
pub mod jwt;
mod metrics;
mod outcome;
mod push;
pub mod reason;
mod tls;

pub use client::ApnsClient;
pub use config::{Auth, Backoff, ClientConfig, ClientError, Endpoint};
pub use metrics::Metrics;
pub use outcome::{Outcome, PushResult};
pub use push::{Push, PushType, SubmitError};
pub use reason::Reason;

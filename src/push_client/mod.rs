//! The HTTP/2 client the push services (APNs, FCM) share.
//!
//! [`Client`] owns a tokio runtime on its own thread(s) and a small pool of
//! HTTP/2-over-TLS connections (h2 + rustls) to one server. [`Client::submit`]
//! never blocks: the push's `done` callback later receives the final [`Outcome`]
//! after retries (what the service says to retry, after its `Retry-After` or a
//! backoff; replays of requests a GOAWAY or REFUSED_STREAM left unprocessed; one
//! credentials renewal when the server says they expired), `Unconfirmed` when a
//! request's connection was lost before its answer (never resent), or `TimedOut`
//! at the push's deadline.
//!
//! What is the service's own is behind two traits: [`Service`] (a push's request,
//! the meaning of an answer) and [`Credentials`] (the `authorization` header).

mod client;
mod config;
mod connection;
mod credentials;
mod happy_eyeballs;
mod metrics;
mod one_shot;
mod outcome;
mod paced_read;
mod service;
mod tls;

pub use client::{check_tls, Client, Done, MAX_ERROR_BODY};
pub use config::{Backoff, ClientCertificate, ClientError, Settings};
pub use connection::Body;
pub use credentials::{Authorization, Credentials, FetchedToken};
pub use metrics::Metrics;
pub use one_shot::OneShot;
pub use outcome::{Outcome, PushResult};
pub use service::{Answer, RejectReason, Service, SubmitError};

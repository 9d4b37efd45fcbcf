//! Firebase Cloud Messaging (HTTP v1) for Android devices: the FCM-specific
//! pieces, free of any transport.
//!
//! The flow, one step a file:
//! 1. [`service_account`]: the project's service-account JSON key file gives the
//!    project id, the account's email, its RSA key and the `token_uri`.
//! 2. [`jwt`]: an RS256 assertion, valid an hour, for the `firebase.messaging` scope.
//! 3. [`access_token`]: the assertion is POSTed form-encoded to `token_uri`; the
//!    answer is an access token (about an hour), refreshed 5 minutes before it expires.
//! 4. [`message`]: each push is a POST of a high-priority data message to
//!    [`message::ENDPOINT`] + [`send_path`] with `authorization: Bearer ...`.
//! 5. [`answer`]: a 200 is delivered; any other answer is [`classify`]d.
//!
//! The transport (the push layer shared with APNs) owns the HTTP/2 connections
//! to both hosts, fetches and caches one access token per service account
//! (refreshing when [`AccessToken::needs_refresh`]; a refresh that fails with
//! a retryable [`TokenError`] is retried, an `invalid_grant` is a configuration
//! error to report), and for each answer: retries [`Answer::Retry`] with backoff
//! but not before its `after`, on [`Answer::CredentialsExpired`] fetches a new
//! token and resends once, and reports [`Answer::Final`], whose `token_dead`
//! tells the engine to remove the binding. Tokens and assertions are secrets:
//! it must not log them (their `Debug` shows nothing of them).

pub mod access_token;
pub mod answer;
mod client;
pub mod jwt;
pub mod message;
mod service;
pub mod service_account;

pub use access_token::{parse_token_response, token_request_body, AccessToken, TokenError};
pub use answer::{classify, Answer, ErrorCode, Reason};
pub use client::{fetch_access_token, FcmClient, TOKEN_TIMEOUT};
pub use jwt::{sign_assertion, Assertion, SignError};
pub use message::{send_path, valid_project_id, valid_registration_token, MessageError};
pub use service::{Fcm, Message};
pub use service_account::{AccountError, ServiceAccount};

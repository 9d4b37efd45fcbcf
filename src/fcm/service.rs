//! FCM as a service of the shared push client: a message's request
//! (`POST /v1/projects/{project}/messages:send`) and the meaning of FCM's answers.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use std::fmt;
use uuid::Uuid;

use super::answer::{self, ErrorCode};
use super::message::send_path;
use crate::apns::jwt::SystemClock;
use crate::push_client::{Answer, Body, Outcome, RejectReason, Service, SubmitError};

/// One message: the project it is sent in and its JSON body (`message::render`).
#[derive(Debug, Clone)]
pub struct Message {
    pub project: String,
    pub body: String,
}

/// Google's FCM endpoint, or a stand-in.
pub struct Fcm {
    authority: Authority,
}

impl Fcm {
    pub(crate) fn new(authority: Authority) -> Self {
        Fcm { authority }
    }
}

pub struct Prepared {
    uri: Uri,
    body: Bytes,
}

static JSON: HeaderValue = HeaderValue::from_static("application/json");

impl RejectReason for ErrorCode {
    const ALL: &'static [ErrorCode] = ErrorCode::ALL;
    fn as_str(self) -> &'static str {
        ErrorCode::as_str(self)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Service for Fcm {
    const NAME: &'static str = "FCM";
    type Push = Message;
    type Prepared = Prepared;
    type Reason = ErrorCode;

    fn prepare(&self, message: Message, _id: Uuid) -> Result<Prepared, SubmitError> {
        let path = send_path(&message.project).map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTPS);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query =
            Some(PathAndQuery::from_maybe_shared(Bytes::from(path)).expect("a checked project"));
        Ok(Prepared {
            uri: Uri::from_parts(parts).expect("scheme, authority and path"),
            body: Bytes::from(message.body),
        })
    }

    fn request(&self, prepared: &Prepared, authorization: Option<HeaderValue>) -> Request<Body> {
        let mut req = Request::new(prepared.body.clone());
        *req.method_mut() = Method::POST;
        *req.uri_mut() = prepared.uri.clone();
        let h = req.headers_mut();
        h.insert(CONTENT_TYPE, JSON.clone());
        if let Some(v) = authorization {
            h.insert(AUTHORIZATION, v);
        }
        req
    }

    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Answer<ErrorCode> {
        match answer::classify(status, headers, body, &SystemClock) {
            answer::Answer::Final {
                status,
                reason: answer::Reason::Code(code),
                token_dead,
            } => Answer::Final(Outcome::Rejected {
                status,
                reason: code,
                token_dead,
                timestamp: None,
            }),
            // No FcmError code: Google's status text or the HTTP status says what it was.
            answer::Answer::Final { status, reason, .. } => Answer::Final(Outcome::Unexpected {
                status,
                body: reason.as_str().to_string(),
            }),
            answer::Answer::Retry { why, after } => Answer::Retry { why, after },
            answer::Answer::CredentialsExpired => Answer::CredentialsExpired {
                why: "401 UNAUTHENTICATED: the access token was refused".into(),
                otherwise: Outcome::Unexpected {
                    status: 401,
                    body: "UNAUTHENTICATED".into(),
                },
            },
        }
    }
}

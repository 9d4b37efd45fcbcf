//! The mock FCM's service: routes each request to the token endpoint or to
//! `messages:send`, and answers like Google.

use bytes::Bytes;
use h2::RecvStream;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use super::account::Account;
use super::message::{self, error_body, FcmError};
use super::oauth::{Access, Tokens};
use super::ReceivedMessage;
use crate::mock::control::Controlled;
use crate::mock::records::Records;
use crate::mock::script::StreamFaults;
use crate::mock::server::{self, BodyError, Connection, Core, Outcome, Service};
use crate::mock::unix_ms;

/// Far above any message FCM accepts: only bounds what the mock reads.
const MAX_BODY: usize = 64 * 1024;

pub struct FcmService {
    pub core: Core<FcmError>,
    pub records: Records<ReceivedMessage>,
    pub account: Account,
    pub tokens: Tokens,
    next_message: AtomicU64,
}

impl FcmService {
    pub fn new(core: Core<FcmError>, account: Account, tokens: Tokens) -> Self {
        FcmService {
            core,
            records: Records::default(),
            account,
            tokens,
            next_message: AtomicU64::new(rand::random::<u32>() as u64),
        }
    }
}

impl Service for FcmService {
    type Rejection = FcmError;
    type Conn = ();
    const NAME: &'static str = "mock FCM";
    const THREAD_NAME: &'static str = "mock-fcm";
    const GOAWAY_DEBUG: &'static [u8] = b"";
    const IDLE_GOAWAY_DEBUG: &'static [u8] = b"";

    fn core(&self) -> &Core<FcmError> {
        &self.core
    }

    fn connection(&self, _tls: &rustls::ServerConnection) {}

    async fn handle(
        &self,
        conn: &Connection<()>,
        req: Request<RecvStream>,
        faults: &StreamFaults<FcmError>,
    ) -> Outcome {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        if parts.method == Method::POST && path == "/token" {
            let form = match server::read_body(body, MAX_BODY).await {
                Ok(form) => form,
                Err(BodyError::Gone) => return Outcome::Gone,
                Err(BodyError::TooLarge) => {
                    return Outcome::Answered(json_answer(413, &json!({}), None))
                }
            };
            let answer = match self.tokens.grant(&self.account, &form, unix_ms() / 1000) {
                Ok(token) => json_answer(200, &token, None),
                Err((status, body)) => json_answer(status, &body, None),
            };
            return Outcome::Answered(answer);
        }
        let project = path
            .strip_prefix("/v1/projects/")
            .and_then(|rest| rest.strip_suffix("/messages:send"))
            .filter(|p| !p.is_empty() && !p.contains('/'));
        let Some(project) = project.filter(|_| parts.method == Method::POST) else {
            let body = error_body(
                404,
                "NOT_FOUND",
                "Requested entity was not found.",
                json!([]),
            );
            return Outcome::Rejected(json_answer(404, &body, None));
        };
        let project = project.to_owned();
        if let Some(error) = faults.server_error {
            return reject(error);
        }
        if let Err((status, body)) = self.authorize(&parts.headers, &project) {
            return Outcome::Rejected(json_answer(status, &body, None));
        }
        let body = match server::read_body(body, MAX_BODY).await {
            Ok(body) => body,
            Err(BodyError::Gone) => return Outcome::Gone,
            Err(BodyError::TooLarge) => {
                let body = error_body(
                    400,
                    "INVALID_ARGUMENT",
                    "Android message is too big",
                    json!([]),
                );
                return Outcome::Rejected(json_answer(400, &body, None));
            }
        };
        let valid = match message::validate(&body) {
            Ok(valid) => valid,
            Err((status, body)) => return Outcome::Rejected(json_answer(status, &body, None)),
        };
        if let Some((error, _)) = self.core.behaviour.scripted(&valid.token) {
            return reject(error);
        }
        let id = self.next_message.fetch_add(1, Ordering::Relaxed);
        let name = format!("projects/{project}/messages/0:{}%{:016x}", unix_ms(), id);
        self.records.add(ReceivedMessage {
            token: valid.token,
            project,
            name: name.clone(),
            data: valid.data,
            priority: valid.priority,
            ttl: valid.ttl,
            message: valid.message,
            arrived: Instant::now(),
            arrived_at: SystemTime::now(),
            connection: conn.id,
        });
        Outcome::Accepted(json_answer(200, &json!({ "name": name }), None))
    }
}

impl FcmService {
    /// Google's checks before it reads the message: an access token it
    /// issued, for the FCM scope, of this project's service account.
    fn authorize(&self, headers: &http::HeaderMap, project: &str) -> Result<(), (u16, Value)> {
        const SEE: &str = "Expected OAuth 2 access token, login cookie or other valid \
                           authentication credential. See \
                           https://developers.google.com/identity/sign-in/web/devconsole-project.";
        let unauthenticated = |what: &str| {
            let body = error_body(401, "UNAUTHENTICATED", &format!("{what} {SEE}"), json!([]));
            (401, body)
        };
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                unauthenticated("Request is missing required authentication credential.")
            })?;
        match self.tokens.check(bearer.trim()) {
            Access::Granted => {}
            Access::Invalid => {
                return Err(unauthenticated(
                    "Request had invalid authentication credentials.",
                ))
            }
            Access::WrongScope => {
                let message = "Request had insufficient authentication scopes.";
                return Err((
                    403,
                    error_body(403, "PERMISSION_DENIED", message, json!([])),
                ));
            }
        }
        if project != self.account.json.project_id {
            let message = format!(
                "Permission 'cloudmessaging.messages.create' denied on resource \
                 '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."
            );
            let details = json!([{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IAM_PERMISSION_DENIED",
                "domain": "iam.googleapis.com",
                "metadata": {"permission": "cloudmessaging.messages.create"},
            }]);
            return Err((403, error_body(403, "PERMISSION_DENIED", &message, details)));
        }
        Ok(())
    }
}

fn reject(error: FcmError) -> Outcome {
    Outcome::Rejected(json_answer(
        error.status(),
        &error.body(),
        error.retry_after(),
    ))
}

fn json_answer(status: u16, body: &Value, retry_after: Option<u32>) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).expect("Google's statuses are valid");
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    if let Some(secs) = retry_after {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

impl Controlled for FcmService {
    type Record = ReceivedMessage;

    fn records(&self) -> &Records<ReceivedMessage> {
        &self.records
    }

    /// Registration tokens are case-sensitive.
    fn token_key(token: &str) -> String {
        token.to_owned()
    }

    fn rejection(name: &str, retry_after: Option<u32>) -> Result<FcmError, String> {
        let error: FcmError = name
            .parse()
            .map_err(|()| format!("unknown FCM error code {name:?}"))?;
        Ok(match error {
            FcmError::QuotaExceeded { .. } => FcmError::QuotaExceeded { retry_after },
            FcmError::Unavailable { .. } => FcmError::Unavailable { retry_after },
            other => other,
        })
    }

    fn watch_line(message: &ReceivedMessage) -> Value {
        json!({
            "token": message.token,
            "name": message.name,
            "data": message.data,
            "priority": message.priority,
            "ttl": message.ttl,
        })
    }

    fn reject_token_requests(&self, n: u32) -> Result<(), String> {
        self.tokens.reject_next(n);
        Ok(())
    }
}

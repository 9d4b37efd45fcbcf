//! What a push service adds to the shared client: how a push becomes a request,
//! and what the service's answers mean.

use http::{HeaderMap, HeaderValue, Request};
use std::fmt;
use std::time::Duration;
use uuid::Uuid;

use super::connection::Body;
use super::outcome::Outcome;

/// One push service (APNs, FCM) spoken over the shared HTTP/2 client.
/// The client is generic over it, so its calls are monomorphised on the hot path.
pub trait Service: Send + Sync + 'static {
    /// For log lines and error texts ("APNs").
    const NAME: &'static str;
    /// What `Client::submit` takes.
    type Push;
    /// A push turned into header values and body once; each attempt only clones them.
    type Prepared: Send + Sync + 'static;
    /// Why the service refuses a push for good.
    type Reason: RejectReason;

    /// Checks a push and prepares its request; `id` is the one `submit` returns.
    fn prepare(&self, push: Self::Push, id: Uuid) -> Result<Self::Prepared, SubmitError>;

    /// One attempt's request, with the credentials' `authorization` header value if any.
    fn request(
        &self,
        prepared: &Self::Prepared,
        authorization: Option<HeaderValue>,
    ) -> Request<Body>;

    /// What a non-200 answer means. `body` is at most `MAX_ERROR_BODY` bytes, empty
    /// when it could not be read.
    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Answer<Self::Reason>;
}

/// A service's reasons for refusing a push: counted per reason in the metrics.
pub trait RejectReason: Copy + Eq + fmt::Debug + fmt::Display + Send + Sync + 'static {
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
}

/// How one non-200 answer should be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<R> {
    /// Final: report it.
    Final(Outcome<R>),
    /// The credentials the request carried expired: refreshed once per push and
    /// resent if the credentials say that can help, else `otherwise` is final.
    CredentialsExpired { why: String, otherwise: Outcome<R> },
    /// Worth another try; `why` says why. After `after` when the server said
    /// (`Retry-After`), else after the client's retry backoff.
    Retry {
        why: String,
        after: Option<Duration>,
    },
}

/// Why a push was not accepted by `submit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The push breaks one of the service's rules; sending it would only get a 400.
    Invalid(String),
    /// `max_pending` pushes are already in flight.
    QueueFull,
    /// The client is shutting down.
    ShutDown,
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::Invalid(why) => write!(f, "invalid push: {why}"),
            SubmitError::QueueFull => f.write_str("too many pushes in flight"),
            SubmitError::ShutDown => f.write_str("the push client is shut down"),
        }
    }
}

impl std::error::Error for SubmitError {}

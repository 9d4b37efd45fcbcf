//! APNs as a service of the shared push client: a push's request
//! (`POST /3/device/{token}` with the apns-* headers) and the meaning of Apple's answers.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use std::ops::Range;
use uuid::Uuid;

use super::answer::classify;
use super::push::Push;
use super::reason::Reason;
use crate::push_client::{Answer, Body, Service, SubmitError};

static APNS_PUSH_TYPE: HeaderName = HeaderName::from_static("apns-push-type");
static APNS_TOPIC: HeaderName = HeaderName::from_static("apns-topic");
static APNS_PRIORITY: HeaderName = HeaderName::from_static("apns-priority");
static APNS_EXPIRATION: HeaderName = HeaderName::from_static("apns-expiration");
static APNS_ID: HeaderName = HeaderName::from_static("apns-id");
static APNS_COLLAPSE_ID: HeaderName = HeaderName::from_static("apns-collapse-id");

/// Apple's push service at one endpoint.
pub struct Apns {
    authority: Authority,
}

impl Apns {
    pub(crate) fn new(authority: Authority) -> Self {
        Apns { authority }
    }
}

/// A push turned into header values and body once; each attempt only clones them.
pub struct Prepared {
    uri: Uri,
    push_type: HeaderValue,
    topic: HeaderValue,
    priority: HeaderValue,
    apns_id: HeaderValue,
    expiration: Option<HeaderValue>,
    collapse_id: Option<HeaderValue>,
    /// Formatted once, not for every attempt.
    content_length: HeaderValue,
    body: Bytes,
}

impl Service for Apns {
    const NAME: &'static str = "APNs";
    type Push = Push;
    type Prepared = Prepared;
    type Reason = Reason;

    fn prepare(&self, push: Push, apns_id: Uuid) -> Result<Prepared, SubmitError> {
        push.validate()?;
        let invalid = |what: &str| SubmitError::Invalid(format!("{what} is not a valid header"));
        // Every part that varies in one buffer: one allocation, shared by the parts
        // and each attempt's clones, instead of one or two for each part.
        let collapse_id = push.collapse_id.as_ref();
        // Besides the strings: the path's prefix, the id and two numbers.
        let mut buf = Vec::with_capacity(
            96 + push.token.len()
                + push.topic.len()
                + collapse_id.map_or(0, String::len)
                + push.payload.len(),
        );
        let path = put(&mut buf, &[b"/3/device/", push.token.as_bytes()]);
        let topic = put(&mut buf, &[push.topic.as_bytes()]);
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = put(
            &mut buf,
            &[apns_id.hyphenated().encode_lower(&mut id).as_bytes()],
        );
        let expiration = push.expiration.map(|e| put_number(&mut buf, e));
        let collapse_id = collapse_id.map(|c| put(&mut buf, &[c.as_bytes()]));
        let length = put_number(&mut buf, push.payload.len() as u64);
        let payload = put(&mut buf, &[push.payload.as_bytes()]);
        let buf = Bytes::from(buf);
        let value = |part: Range<usize>| HeaderValue::from_maybe_shared(buf.slice(part));

        let path = PathAndQuery::from_maybe_shared(buf.slice(path))
            .map_err(|_| invalid("the device token"))?;
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTPS);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path);
        let uri = Uri::from_parts(parts).map_err(|_| invalid("the device token"))?;
        let mut apns_id = value(id).expect("a UUID is a valid header");
        // Never HPACK-indexed: a value used once would only evict the headers
        // every request repeats (topic, push type, ...) from the shared table.
        apns_id.set_sensitive(true);
        Ok(Prepared {
            uri,
            push_type: HeaderValue::from_static(push.push_type.as_str()),
            topic: value(topic).map_err(|_| invalid("the topic"))?,
            priority: HeaderValue::from_static(match push.priority {
                10 => "10",
                5 => "5",
                _ => "1",
            }),
            apns_id,
            expiration: expiration.map(|e| value(e).expect("digits are a valid header")),
            collapse_id: collapse_id
                .map(value)
                .transpose()
                .map_err(|_| invalid("the collapse id"))?,
            content_length: value(length).expect("digits are a valid header"),
            body: buf.slice(payload),
        })
    }

    fn request(&self, prepared: &Prepared, authorization: Option<HeaderValue>) -> Request<Body> {
        let p = prepared;
        let mut req = Request::new(p.body.clone());
        *req.method_mut() = Method::POST;
        *req.uri_mut() = p.uri.clone();
        let h = req.headers_mut();
        h.reserve(8);
        h.insert(APNS_PUSH_TYPE.clone(), p.push_type.clone());
        h.insert(APNS_TOPIC.clone(), p.topic.clone());
        h.insert(APNS_PRIORITY.clone(), p.priority.clone());
        h.insert(APNS_ID.clone(), p.apns_id.clone());
        if let Some(v) = &p.expiration {
            h.insert(APNS_EXPIRATION.clone(), v.clone());
        }
        if let Some(v) = &p.collapse_id {
            h.insert(APNS_COLLAPSE_ID.clone(), v.clone());
        }
        h.insert(CONTENT_LENGTH, p.content_length.clone());
        if let Some(v) = authorization {
            h.insert(AUTHORIZATION, v);
        }
        req
    }

    /// Apple's answers say everything in the status and body.
    fn classify(&self, status: u16, _headers: &HeaderMap, body: &[u8]) -> Answer<Reason> {
        classify(status, body)
    }
}

/// Appends `pieces` to `buf`; where they lie there.
fn put(buf: &mut Vec<u8>, pieces: &[&[u8]]) -> Range<usize> {
    let start = buf.len();
    pieces.iter().for_each(|p| buf.extend_from_slice(p));
    start..buf.len()
}

/// Appends `n` in decimal to `buf`; where it lies there. By hand: `write!`
/// costs several times more.
fn put_number(buf: &mut Vec<u8>, mut n: u64) -> Range<usize> {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return put(buf, &[&digits[start..]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_put_in_decimal() {
        let mut buf = b"x".to_vec();
        for n in [0, 7, 10, 1_700_000_000, u64::MAX] {
            let at = put_number(&mut buf, n);
            assert_eq!(&buf[at], n.to_string().as_bytes());
        }
    }
}

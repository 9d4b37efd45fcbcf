//! The FCM client against the mock FCM over real HTTP/2 and TLS: the access token
//! fetched with the service account's assertion, messages delivered, FCM's errors
//! mapped, a refused or expired token renewed and the message sent again.

use pushpark::fcm::{ErrorCode, FcmClient, Message, ServiceAccount};
use pushpark::mock::fcm::{FcmConfig, FcmError, MockFcm, Scripted};
use pushpark::push_client::{Outcome, PushResult, Settings};
use serde_json::json;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TOKEN: &str = "eH0fLhuiRj2Np7UQ-opXAm:APA91bGtC-wH4sgW1jWkMKIZf7FYkm_RTQb7Jid7DfSJnC";

fn mock(dir: &std::path::Path, token_lifetime: Duration) -> MockFcm {
    MockFcm::start(FcmConfig {
        token_lifetime,
        ..FcmConfig::new(dir)
    })
    .unwrap()
}

fn client(mock: &MockFcm) -> FcmClient {
    let account =
        ServiceAccount::from_json(&std::fs::read(mock.service_account_path()).unwrap()).unwrap();
    let mut settings = Settings::new("127.0.0.1", mock.addr().port());
    settings.ca_file = Some(mock.ca_pem_path());
    settings.retry.base = Duration::from_millis(20);
    FcmClient::new(account, &settings).unwrap()
}

fn body(token: &str) -> String {
    json!({"message": {"token": token, "data": {"call_id": "c1"},
        "android": {"priority": "HIGH", "ttl": "30s"}}})
    .to_string()
}

/// Submits one message and waits for its result.
fn send(client: &FcmClient, project: &str, token: &str, within: Duration) -> PushResult<ErrorCode> {
    let (tx, rx) = mpsc::channel();
    let message = Message {
        project: project.into(),
        body: body(token),
    };
    client
        .submit(
            message,
            Instant::now() + within,
            Box::new(move |r| tx.send(r).unwrap()),
        )
        .unwrap();
    rx.recv_timeout(within + Duration::from_secs(5)).unwrap()
}

#[test]
fn a_message_goes_out_with_the_access_token_the_assertion_bought() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock(dir.path(), Duration::from_secs(3599));
    let c = client(&mock);
    let r = send(&c, "pushpark-test", TOKEN, Duration::from_secs(10));
    assert_eq!(r.outcome, Outcome::Delivered, "{:?}", r.last_error);
    let m = mock
        .wait_for_message(TOKEN, Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        (m.project.as_str(), m.priority.as_deref()),
        ("pushpark-test", Some("HIGH"))
    );
    assert_eq!(m.data["call_id"], "c1");
    assert_eq!(c.metrics().delivered, 1);
}

#[test]
fn unregistered_is_final_and_kills_the_token_quota_exceeded_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock(dir.path(), Duration::from_secs(3599));
    let c = client(&mock);
    mock.script(TOKEN, Scripted::Reject(FcmError::Unregistered));
    let r = send(&c, "pushpark-test", TOKEN, Duration::from_secs(10));
    assert_eq!(
        r.outcome,
        Outcome::Rejected {
            status: 404,
            reason: ErrorCode::Unregistered,
            token_dead: true,
            timestamp: None
        }
    );

    let other = "other-token:APA91bGtC-wH4sgW1jWkMKIZf7FYkm_RTQb7Jid7DfSJnC";
    let quota = FcmError::QuotaExceeded {
        retry_after: Some(1),
    };
    mock.script(other, Scripted::RejectNext(quota, 1));
    let started = Instant::now();
    let r = send(&c, "pushpark-test", other, Duration::from_secs(10));
    assert_eq!(r.outcome, Outcome::Delivered, "{:?}", r.last_error);
    assert_eq!(r.attempts, 2);
    // The second attempt waited for Retry-After (1 s), not the 20 ms backoff.
    assert!(started.elapsed() >= Duration::from_secs(1));

    // Another project than the account's: Google's 403 without an FCM code.
    let r = send(&c, "someone-else", TOKEN, Duration::from_secs(10));
    assert!(
        matches!(&r.outcome, Outcome::Unexpected { status: 403, .. }),
        "{:?}",
        r.outcome
    );
}

/// The mock's tokens live 2 s: the client renews before they expire (at half-life),
/// so messages sent across several lifetimes all go out at the first attempt.
#[test]
fn short_lived_tokens_are_renewed_before_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock(dir.path(), Duration::from_secs(2));
    let c = client(&mock);
    for _ in 0..4 {
        let r = send(&c, "pushpark-test", TOKEN, Duration::from_secs(10));
        assert_eq!(r.outcome, Outcome::Delivered, "{:?}", r.last_error);
        assert_eq!(r.attempts, 1);
        std::thread::sleep(Duration::from_millis(1500));
    }
    assert!(c.metrics().token_refreshes >= 2, "{:?}", c.metrics());
}

/// While the token endpoint fails, messages wait for a token (not sent without one)
/// and say why when their deadline passes; once it answers, they go out.
#[test]
fn messages_wait_for_a_token_the_endpoint_refuses_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock(dir.path(), Duration::from_secs(3599));
    mock.reject_token_requests(100);
    let c = client(&mock);
    let r = send(&c, "pushpark-test", TOKEN, Duration::from_millis(800));
    assert_eq!(r.outcome, Outcome::TimedOut);
    assert_eq!(r.attempts, 0);
    let why = r.last_error.unwrap();
    assert!(why.contains("token endpoint"), "{why}");
    assert_eq!(mock.message_count(), 0);

    let dir2 = tempfile::tempdir().unwrap();
    let mock = self::mock(dir2.path(), Duration::from_secs(3599));
    mock.reject_token_requests(2);
    let c = client(&mock);
    let r = send(&c, "pushpark-test", TOKEN, Duration::from_secs(15));
    assert_eq!(r.outcome, Outcome::Delivered, "{:?}", r.last_error);
}

/// FCM forgets the access token (here: the mock restarts, knowing none it issued):
/// the 401 UNAUTHENTICATED makes the client fetch a new token and send again, once.
#[test]
fn a_refused_access_token_is_renewed_and_the_message_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let first = mock(dir.path(), Duration::from_secs(3599));
    let addr = first.addr();
    let c = client(&first);
    let r = send(&c, "pushpark-test", TOKEN, Duration::from_secs(10));
    assert_eq!(r.outcome, Outcome::Delivered, "{:?}", r.last_error);
    first.stop();

    let again = MockFcm::start(FcmConfig {
        listen: addr,
        ..FcmConfig::new(dir.path())
    })
    .unwrap();
    // Sent before the pool saw the old connection close, the message could be lost with it
    // (unconfirmed) or go out again unsent: what is tested here starts on the new one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.metrics().connections_opened < 2 {
        assert!(Instant::now() < deadline, "no new connection");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = send(&c, "pushpark-test", TOKEN, Duration::from_secs(10));
    assert_eq!(r.outcome, Outcome::Delivered, "{:?}", r.last_error);
    assert_eq!(r.attempts, 2, "the 401, then the resend: {r:?}");
    assert_eq!(again.message_count(), 1);
    assert_eq!(c.metrics().token_refreshes, 1);
}

/// FCM answers 200 with a body (the message's name). Left unread, each would be reset
/// (RST_STREAM), and servers close a connection that resets that often (h2's Rapid
/// Reset defence, like Google's, allows about a thousand): every answer is read whole,
/// and thousands of messages go out on one connection.
#[test]
fn answers_are_read_whole_so_one_connection_carries_thousands_of_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock(dir.path(), Duration::from_secs(3599));
    let c = client(&mock);
    // 100 in flight at a time, as a busy engine keeps them.
    for _ in 0..30 {
        let (tx, rx) = mpsc::channel();
        for _ in 0..100 {
            let tx = tx.clone();
            let message = Message {
                project: "pushpark-test".into(),
                body: body(TOKEN),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            c.submit(message, deadline, Box::new(move |r| drop(tx.send(r))))
                .unwrap();
        }
        for _ in 0..100 {
            let r = rx.recv_timeout(Duration::from_secs(40)).unwrap();
            assert_eq!(r.outcome, Outcome::Delivered, "{:?}", r.last_error);
        }
    }
    let m = c.metrics();
    assert_eq!((m.delivered, m.connections_opened), (3000, 1), "{m:?}");
}

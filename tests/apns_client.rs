//! The APNs client against the mock APNs, over real TLS and HTTP/2 on loopback.

use pushpark::apns::jwt::Clock;
use pushpark::apns::{Backoff, Reason};
use pushpark::mock::{Faults, MockApns, MockConfig, Scripted};
use pushpark::{ApnsClient, Auth, ClientConfig, Endpoint, Outcome, Push, PushResult, SubmitError};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Generous: only a hung test ever waits this long.
const PATIENCE: Duration = Duration::from_secs(30);

fn start_mock(cfg: impl FnOnce(&mut MockConfig)) -> (MockApns, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = MockConfig::new(dir.path());
    cfg(&mut config);
    (MockApns::start(config).unwrap(), dir)
}

fn token_auth(mock: &MockApns) -> Auth {
    Auth::Token {
        key_pem: std::fs::read_to_string(mock.key_path()).unwrap(),
        key_id: "TESTKEY001".into(),
        team_id: "TESTTEAM01".into(),
    }
}

fn config(mock: &MockApns, auth: Auth) -> ClientConfig {
    let endpoint = Endpoint::Custom {
        host: "127.0.0.1".into(),
        port: mock.addr().port(),
    };
    let mut cfg = ClientConfig::new(endpoint, auth);
    cfg.ca_file = Some(mock.ca_pem_path());
    cfg.reconnect = Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    cfg.retry = Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    cfg
}

fn client(mock: &MockApns) -> ApnsClient {
    ApnsClient::new(config(mock, token_auth(mock))).unwrap()
}

fn device(i: u32) -> String {
    format!("{:064x}", 0xabc0_0000_u64 + i as u64)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn voip(i: u32) -> Push {
    Push::voip(
        device(i),
        "com.example.phone.voip",
        format!(r#"{{"aps":{{}},"call":{i}}}"#),
        now_unix() + 30,
    )
}

/// Submits and returns a receiver for the result.
fn submit(client: &ApnsClient, push: Push, within: Duration) -> mpsc::Receiver<PushResult> {
    let (tx, rx) = mpsc::channel();
    client
        .submit(
            push,
            Instant::now() + within,
            Box::new(move |r| tx.send(r).unwrap()),
        )
        .unwrap();
    rx
}

fn send(client: &ApnsClient, push: Push) -> PushResult {
    submit(client, push, PATIENCE)
        .recv_timeout(PATIENCE * 2)
        .unwrap()
}

/// Submits many at once; their results arrive on the receiver as they come.
fn submit_each(
    client: &ApnsClient,
    pushes: impl IntoIterator<Item = Push>,
) -> mpsc::Receiver<PushResult> {
    let (tx, rx) = mpsc::channel();
    for push in pushes {
        let tx = tx.clone();
        client
            .submit(
                push,
                Instant::now() + PATIENCE,
                Box::new(move |r| tx.send(r).unwrap()),
            )
            .unwrap();
    }
    rx
}

/// Submits many at once and collects every result.
fn send_all(client: &ApnsClient, pushes: Vec<Push>) -> Vec<PushResult> {
    let n = pushes.len();
    let rx = submit_each(client, pushes);
    (0..n)
        .map(|_| rx.recv_timeout(PATIENCE * 2).unwrap())
        .collect()
}

fn rejected(reason: Reason) -> Outcome {
    Outcome::Rejected {
        status: reason.status(),
        reason,
        token_dead: reason.token_is_dead(),
        timestamp: None,
    }
}

#[test]
fn delivers_a_voip_push_with_apples_headers() {
    let (mock, _dir) = start_mock(|_| {});
    let client = client(&mock);
    let push = voip(1);
    let expiration = push.expiration.unwrap().to_string();
    let result = send(&client, push);
    assert_eq!(result.outcome, Outcome::Delivered);
    assert_eq!(result.attempts, 1);

    let got = mock
        .wait_for_push(&device(1), PATIENCE)
        .expect("the mock got it");
    assert_eq!(got.apns_id, result.apns_id);
    assert_eq!(got.header("apns-push-type"), Some("voip"));
    assert_eq!(got.topic(), Some("com.example.phone.voip"));
    assert_eq!(got.header("apns-priority"), Some("10"));
    assert_eq!(got.header("apns-expiration"), Some(expiration.as_str()));
    assert_eq!(got.payload_json()["call"], 1);

    let m = client.metrics();
    assert_eq!((m.sent, m.delivered, m.in_flight, m.retried), (1, 1, 0, 0));
    assert_eq!(m.connections_opened, 1);
    assert!(m.latency_p50_ms > 0.0);
    let json: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
    assert_eq!(json["delivered"], 1);
}

#[test]
fn every_permanent_reason_is_reported_with_its_status() {
    let (mock, _dir) = start_mock(|_| {});
    let client = client(&mock);
    let permanent: Vec<Reason> = Reason::ALL
        .iter()
        .copied()
        .filter(|r| !r.is_retryable() && *r != Reason::ExpiredProviderToken)
        .collect();
    for (i, reason) in permanent.iter().enumerate() {
        mock.script(&device(i as u32), Scripted::Reject(*reason));
    }
    let pushes = (0..permanent.len() as u32).map(voip).collect();
    let mut results = send_all(&client, pushes);
    results.sort_by_key(|r| r.apns_id);
    for reason in &permanent {
        let r = results
            .iter()
            .find(|r| matches!(&r.outcome, Outcome::Rejected { reason: got, .. } if got == reason))
            .unwrap_or_else(|| panic!("no result rejected with {reason}"));
        match &r.outcome {
            Outcome::Rejected {
                status,
                token_dead,
                timestamp,
                ..
            } => {
                assert_eq!(*status, reason.status(), "{reason}");
                assert_eq!(*token_dead, reason.token_is_dead(), "{reason}");
                assert_eq!(timestamp.is_some(), reason.status() == 410, "{reason}");
            }
            _ => unreachable!(),
        }
        assert_eq!(r.attempts, 1, "{reason} is not retried");
    }
    let m = client.metrics();
    assert_eq!(m.rejected, permanent.len() as u64);
    assert_eq!(m.rejected_by_reason["Unregistered"], 1);
    assert_eq!(mock.push_count(), 0);
}

#[test]
fn a_token_from_another_key_is_invalid_for_good() {
    let (mock, _dir) = start_mock(|_| {});
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let auth = Auth::Token {
        key_pem: other.serialize_pem(),
        key_id: "TESTKEY001".into(),
        team_id: "TESTTEAM01".into(),
    };
    let client = ApnsClient::new(config(&mock, auth)).unwrap();
    let result = send(&client, voip(1));
    assert_eq!(result.outcome, rejected(Reason::InvalidProviderToken));
    assert_eq!(result.attempts, 1);
}

#[test]
fn too_many_requests_is_retried_after_a_backoff() {
    let (mock, _dir) = start_mock(|_| {});
    let mut cfg = config(&mock, token_auth(&mock));
    cfg.retry = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };
    let client = ApnsClient::new(cfg).unwrap();
    mock.script(&device(1), Scripted::RejectNext(Reason::TooManyRequests, 2));
    let result = send(&client, voip(1));
    assert_eq!(result.outcome, Outcome::Delivered);
    assert_eq!(result.attempts, 3);
    // Jitter keeps each wait within [base/2, base] then [base, 2*base].
    assert!(
        result.latency >= Duration::from_millis(150),
        "{:?}",
        result.latency
    );
    assert_eq!(client.metrics().retried, 2);
    assert_eq!(mock.pushes().len(), 1);
}

#[test]
fn server_errors_are_retried_until_the_deadline() {
    let (mock, _dir) = start_mock(|_| {});
    let client = client(&mock);
    mock.set_faults(Faults {
        server_error: Some(Reason::ServiceUnavailable),
        server_error_times: Some(2),
        ..Faults::default()
    });
    let result = send(&client, voip(1));
    assert_eq!((result.outcome, result.attempts), (Outcome::Delivered, 3));

    mock.set_faults(Faults {
        server_error: Some(Reason::InternalServerError),
        ..Faults::default()
    });
    let result = submit(&client, voip(2), Duration::from_millis(300))
        .recv_timeout(PATIENCE)
        .unwrap();
    assert_eq!(result.outcome, Outcome::TimedOut);
    assert!(result.attempts >= 2, "{}", result.attempts);
    let why = result.last_error.unwrap();
    assert!(why.contains("500"), "{why}");
    assert_eq!(client.metrics().timed_out, 1);
}

/// A clock tests move by hand, starting at `offset` seconds from real time.
struct TestClock(AtomicU64);

impl TestClock {
    fn at_offset(offset: i64) -> Arc<TestClock> {
        Arc::new(TestClock(AtomicU64::new(
            (now_unix() as i64 + offset) as u64,
        )))
    }
    fn set_offset(&self, offset: i64) {
        self.0
            .store((now_unix() as i64 + offset) as u64, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_unix(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[test]
fn the_provider_token_is_refreshed_after_50_minutes() {
    let (mock, _dir) = start_mock(|_| {});
    // The first token is 55 minutes old by the mock's (real) clock: still valid.
    let clock = TestClock::at_offset(-55 * 60);
    let mut cfg = config(&mock, token_auth(&mock));
    cfg.clock = clock.clone();
    let client = ApnsClient::new(cfg).unwrap();
    assert_eq!(send(&client, voip(1)).outcome, Outcome::Delivered);
    assert_eq!(client.metrics().token_refreshes, 0);

    // 55 minutes later by the client's clock: a new token before the next push.
    clock.set_offset(0);
    let result = send(&client, voip(2));
    assert_eq!((result.outcome, result.attempts), (Outcome::Delivered, 1));
    assert_eq!(client.metrics().token_refreshes, 1);
    clock.set_offset(10 * 60);
    assert_eq!(send(&client, voip(3)).outcome, Outcome::Delivered);
    assert_eq!(client.metrics().token_refreshes, 1, "kept for 50 minutes");
}

#[test]
fn a_burst_of_expired_provider_token_answers_regenerates_once() {
    let (mock, _dir) = start_mock(|_| {});
    // Issued 75 minutes ago (expired for the mock); the client clock then says
    // 30 minutes passed: too early for the 50-minute refresh, late enough for
    // a regeneration Apple allows (20 minutes).
    let clock = TestClock::at_offset(-75 * 60);
    let mut cfg = config(&mock, token_auth(&mock));
    cfg.clock = clock.clone();
    let client = ApnsClient::new(cfg).unwrap();
    clock.set_offset(-45 * 60);
    let results = send_all(&client, (0..50).map(voip).collect());
    assert!(results.iter().all(|r| r.outcome == Outcome::Delivered));
    assert!(
        results.iter().any(|r| r.attempts == 2),
        "the old token was refused"
    );
    assert_eq!(client.metrics().token_refreshes, 1);
    assert_eq!(mock.push_count(), 50);
}

#[test]
fn an_expired_token_is_not_regenerated_within_20_minutes() {
    let (mock, _dir) = start_mock(|_| {});
    let clock = TestClock::at_offset(-2 * 60 * 60);
    let mut cfg = config(&mock, token_auth(&mock));
    cfg.clock = clock;
    let client = ApnsClient::new(cfg).unwrap();
    let result = send(&client, voip(1));
    assert_eq!(result.outcome, rejected(Reason::ExpiredProviderToken));
    assert_eq!(client.metrics().token_refreshes, 0);
}

/// Every push reached the mock exactly once.
fn assert_each_delivered_once(mock: &MockApns, results: &[PushResult]) {
    assert!(
        results.iter().all(|r| r.outcome == Outcome::Delivered),
        "{:?}",
        results.iter().find(|r| r.outcome != Outcome::Delivered)
    );
    let sent: HashSet<String> = results.iter().map(|r| r.apns_id.to_string()).collect();
    let received: Vec<String> = mock
        .pushes()
        .iter()
        .map(|p| p.apns_id.to_string())
        .collect();
    let unique: HashSet<String> = received.iter().cloned().collect();
    assert_eq!(received.len(), unique.len(), "a push arrived twice");
    assert_eq!(unique, sent);
}

#[test]
fn goaway_mid_load_delivers_every_push_exactly_once() {
    let (mock, _dir) = start_mock(|_| {});
    mock.set_faults(Faults {
        goaway_after_streams: Some(150),
        ..Faults::default()
    });
    let client = client(&mock);
    let results = send_all(&client, (0..1000).map(voip).collect());
    assert_each_delivered_once(&mock, &results);
    let m = client.metrics();
    assert!(m.connections_opened >= 7, "{m:?}");
    assert!(m.retried > 0, "some streams were past a GOAWAY: {m:?}");
    let replays: u32 = results.iter().map(|r| r.replays).sum();
    assert_eq!(m.replayed, u64::from(replays));
    assert!(m.replayed > 0 && m.replayed <= m.retried, "{m:?}");
    assert!(mock.stats().goaways >= 6);
}

#[test]
fn a_goaway_mid_burst_replays_exactly_the_streams_above_its_last_stream_id() {
    let (mock, _dir) = start_mock(|_| {});
    // 30 streams arrive; the GOAWAY names the 20th, the 10 above it go unprocessed.
    mock.set_faults(Faults {
        goaway_after_streams: Some(20),
        goaway_unprocessed: 10,
        ..Faults::default()
    });
    let client = client(&mock);
    let results = send_all(&client, (0..30).map(voip).collect());
    assert_each_delivered_once(&mock, &results);
    let stats = mock.stats();
    assert_eq!((stats.goaways, stats.refused_streams), (1, 10));
    let on_first: Vec<_> = mock.pushes().iter().map(|p| p.connection).collect();
    assert_eq!(
        on_first.iter().filter(|&&c| c == 1).count(),
        20,
        "{on_first:?}"
    );
    let replayed: Vec<_> = results.iter().filter(|r| r.replays > 0).collect();
    assert_eq!(replayed.len(), 10);
    assert!(replayed.iter().all(|r| (r.attempts, r.replays) == (2, 1)));
    let m = client.metrics();
    assert_eq!((m.replayed, m.retried, m.sent), (10, 10, 40), "{m:?}");
}

#[test]
fn refused_streams_are_replayed_after_a_growing_backoff() {
    let (mock, _dir) = start_mock(|_| {});
    let client = client(&mock);
    mock.set_faults(Faults {
        refuse_streams: 3,
        ..Faults::default()
    });
    let result = send(&client, voip(1));
    assert_eq!(result.outcome, Outcome::Delivered);
    assert_eq!((result.attempts, result.replays), (4, 3));
    assert_eq!(client.metrics().replayed, 3);
    assert_eq!(mock.stats().refused_streams, 3);
    assert_each_delivered_once(&mock, &[result]);

    // A server that keeps refusing: resent at once, it would see thousands of
    // streams within the second; with the backoff (10 ms doubling) about eight.
    mock.set_faults(Faults {
        refuse_streams: u32::MAX,
        ..Faults::default()
    });
    let result = submit(&client, voip(2), Duration::from_secs(1))
        .recv_timeout(PATIENCE)
        .unwrap();
    assert_eq!(result.outcome, Outcome::TimedOut);
    assert_eq!(
        result.last_error.as_deref(),
        Some("stream refused by the server")
    );
    assert!((3..=15).contains(&result.attempts), "{}", result.attempts);
    // The deadline may cut the last attempt before the mock took its stream.
    let refused = mock.stats().refused_streams - 3;
    let attempts = u64::from(result.attempts);
    assert!(
        refused == attempts || refused + 1 == attempts,
        "{refused} refused, {attempts} attempts"
    );
    assert_eq!(
        client.metrics().connections_opened,
        1,
        "a refusal keeps the connection"
    );
}

/// Pushes the mock has recorded (they are recorded on arrival, before the answer).
fn wait_arrived(mock: &MockApns, tokens: std::ops::Range<u32>) {
    for i in tokens {
        assert!(
            mock.wait_for_push(&device(i), PATIENCE).is_some(),
            "push {i} arrived"
        );
    }
}

#[test]
fn stream_limit_of_one_queues_and_recovers() {
    let (mock, _dir) = start_mock(|_| {});
    let client = client(&mock);
    let slow = |limit| Faults {
        max_concurrent_streams: limit,
        delay: Duration::from_millis(300),
        ..Faults::default()
    };
    mock.set_faults(slow(Some(1)));
    // Its answer comes after the new SETTINGS: from here on the client knows the limit.
    assert_eq!(send(&client, voip(0)).outcome, Outcome::Delivered);
    wait_arrived(&mock, 0..1);
    let rx = submit_each(&client, (1..4).map(voip));
    let first = rx.recv_timeout(PATIENCE).unwrap();
    // One stream at a time: when the first answer is back, at most one more arrived.
    assert!(mock.push_count() <= 3, "{} arrived", mock.push_count());
    let mut results = vec![first];
    results.extend((0..2).map(|_| rx.recv_timeout(PATIENCE).unwrap()));
    assert!(results.iter().all(|r| r.outcome == Outcome::Delivered));

    // Back to 1000 streams; answers held for long enough that all 20 pushes can
    // only arrive before the first answer if they are in flight together.
    mock.set_faults(Faults {
        delay: Duration::from_secs(5),
        ..slow(None)
    });
    assert_eq!(send(&client, voip(4)).outcome, Outcome::Delivered);
    let rx = submit_each(&client, (5..25).map(voip));
    wait_arrived(&mock, 5..25);
    assert!(rx.try_recv().is_err(), "all 20 arrived before any answer");
    let results: Vec<_> = (0..20)
        .map(|_| rx.recv_timeout(PATIENCE).unwrap())
        .collect();
    assert!(results.iter().all(|r| r.outcome == Outcome::Delivered));
    assert_eq!(
        client.metrics().connections_opened,
        1,
        "no failure, no reconnect"
    );
}

/// A request over the server's stream limit waits for a stream; a GOAWAY ending the
/// connection must not lose it (held back inside hyper, it was dropped with the
/// connection's task, unsent). It goes out on the next connection: ended
/// unconfirmed, its call would time out unanswered.
#[test]
fn pushes_waiting_for_a_stream_of_a_closing_connection_are_all_delivered() {
    let (mock, _dir) = start_mock(|_| {});
    let client = client(&mock);
    let one_stream = |goaway| Faults {
        max_concurrent_streams: Some(1),
        goaway_after_streams: goaway,
        delay: Duration::from_millis(5),
        ..Faults::default()
    };
    mock.set_faults(one_stream(None));
    // Its answer comes after the new SETTINGS: from here on the client knows the limit.
    let first = send(&client, voip(0));
    mock.set_faults(one_stream(Some(4)));
    let mut results = send_all(&client, (1..61).map(voip).collect());
    results.push(first);
    assert_each_delivered_once(&mock, &results);
    assert!(mock.stats().goaways >= 10, "{:?}", mock.stats());
}

/// Lowers the mock's stream limit to one and has the client learn it: the answer
/// to push 0 comes after the new SETTINGS. Later answers take `hold`.
fn one_stream_from_now(mock: &MockApns, client: &ApnsClient, hold: Duration) {
    let one_stream = |delay| Faults {
        max_concurrent_streams: Some(1),
        delay,
        ..Faults::default()
    };
    mock.set_faults(one_stream(Duration::from_millis(50)));
    assert_eq!(send(client, voip(0)).outcome, Outcome::Delivered);
    mock.set_faults(one_stream(hold));
}

/// Pushes waiting for a stream of a connection at its limit all go out when a
/// stream frees after the server raised the limit, not one per freed stream.
#[test]
fn pushes_waiting_for_a_stream_all_go_out_once_the_limit_is_raised() {
    let (mock, _dir) = start_mock(|_| {});
    let client = client(&mock);
    one_stream_from_now(&mock, &client, Duration::from_millis(500));
    let rx = submit_each(&client, (1..12).map(voip));
    wait_arrived(&mock, 1..2);
    assert_eq!(mock.push_count(), 2, "the others wait for the one stream");
    // Raised while push 1 is held; answers from here on take 20 s, so pushes
    // 2-11 can only all arrive before any answer if they go out together.
    mock.set_faults(Faults {
        delay: Duration::from_secs(20),
        ..Faults::default()
    });
    assert_eq!(
        rx.recv_timeout(PATIENCE).unwrap().outcome,
        Outcome::Delivered
    );
    wait_arrived(&mock, 2..12);
    assert!(rx.try_recv().is_err(), "all ten arrived before any answer");
}

#[test]
fn a_push_that_waited_for_a_stream_until_its_deadline_says_so() {
    let (mock, _dir) = start_mock(|_| {});
    let client = client(&mock);
    one_stream_from_now(&mock, &client, Duration::from_secs(2));
    let holding = submit(&client, voip(1), PATIENCE);
    wait_arrived(&mock, 1..2);
    let waited = submit(&client, voip(2), Duration::from_millis(300))
        .recv_timeout(PATIENCE)
        .unwrap();
    assert_eq!((waited.outcome, waited.attempts), (Outcome::TimedOut, 0));
    let why = waited.last_error.unwrap();
    assert!(why.starts_with("no stream free"), "{why}");
    assert_eq!(
        holding.recv_timeout(PATIENCE).unwrap().outcome,
        Outcome::Delivered
    );
}

/// `wait_connected` returns with the first connection up; waits for `n`.
fn wait_connections(client: &ApnsClient, n: u64) {
    let deadline = Instant::now() + PATIENCE;
    while client.metrics().connections_opened < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Apple lowers a connection to one stream after a rejected push. The pushes that
/// find it busy go out on the other connection at once, instead of queueing
/// behind its one stream (round robin gave it half of them).
#[test]
fn a_connection_throttled_to_one_stream_gets_no_more_than_it_allows() {
    let (mock, _dir) = start_mock(|_| {});
    let mut cfg = config(&mock, token_auth(&mock));
    cfg.connections = 2;
    let client = ApnsClient::new(cfg).unwrap();
    wait_connections(&client, 2);
    // Each answer, and the throttled connection's raise back after its next
    // accepted push, comes after the delay: the pushes below all start within it.
    mock.set_faults(Faults {
        throttle_after_rejection: true,
        delay: Duration::from_millis(300),
        ..Faults::default()
    });
    mock.script(&device(99), Scripted::RejectNext(Reason::BadDeviceToken, 1));
    assert_eq!(
        send(&client, voip(99)).outcome,
        rejected(Reason::BadDeviceToken)
    );

    let results = send_all(&client, (0..10).map(voip).collect());
    assert_each_delivered_once(&mock, &results);
    let mut per_connection = std::collections::HashMap::<u64, usize>::new();
    for push in mock.pushes().iter().filter(|p| p.token != device(99)) {
        *per_connection.entry(push.connection).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_connection.into_values().collect();
    counts.sort();
    assert_eq!(counts, [1, 9], "the throttled connection carried one push");
    assert_eq!(client.metrics().connections_opened, 2, "no reconnect");
}

/// The outcome of a push written to a connection that was lost before its answer.
fn is_unconfirmed(r: &PushResult) -> bool {
    matches!(&r.outcome, Outcome::Unconfirmed { why } if why.starts_with("connection lost"))
        && (r.attempts, r.replays) == (1, 0)
}

#[test]
fn a_connection_dropped_mid_stream_leaves_the_push_unconfirmed_and_unsent_again() {
    let (mock, _dir) = start_mock(|_| {});
    let client = client(&mock);
    mock.set_faults(Faults {
        drop_connection_mid_stream: 1,
        ..Faults::default()
    });
    let result = send(&client, voip(1));
    // Written before the drop, so maybe processed: never sent again.
    assert!(is_unconfirmed(&result), "{result:?}");
    let Outcome::Unconfirmed { why } = &result.outcome else {
        unreachable!()
    };
    assert_eq!(
        result.last_error.as_ref(),
        Some(why),
        "said where operators look"
    );
    let m = client.metrics();
    assert_eq!(
        (m.sent, m.retried, m.replayed, m.unconfirmed, m.delivered),
        (1, 0, 0, 1, 0),
        "{m:?}"
    );
    assert_eq!(mock.stats().streams, 1, "the push reached the server once");
    assert_eq!(mock.stats().dropped_connections, 1);
    // The connection is replaced for the next push.
    assert_eq!(send(&client, voip(2)).outcome, Outcome::Delivered);
    assert_eq!(client.metrics().connections_opened, 2);
    assert_eq!(mock.stats().streams, 2);
}

/// Issue 10: a connection lost mid-burst must not send again the pushes APNs took and
/// whose answers were lost with it, nor the one it was reading when it went.
#[test]
fn a_connection_lost_mid_burst_sends_none_of_its_pushes_in_flight_again() {
    let (mock, _dir) = start_mock(|_| {});
    let client = client(&mock);
    // Taken (recorded) on arrival, answered much later: all 20 are in flight together.
    let held = Faults {
        delay: Duration::from_secs(10),
        ..Faults::default()
    };
    mock.set_faults(held.clone());
    let (tx, rx) = mpsc::channel();
    let mut ids = Vec::new();
    let mut submit_one = |i| {
        let tx = tx.clone();
        let done = Box::new(move |r: PushResult| tx.send(r).unwrap());
        ids.push(
            client
                .submit(voip(i), Instant::now() + PATIENCE, done)
                .unwrap(),
        );
    };
    (0..20).for_each(&mut submit_one);
    wait_arrived(&mock, 0..20);
    // The next push to arrive closes the connection under all of them.
    mock.set_faults(Faults {
        drop_connection_mid_stream: 1,
        ..held
    });
    submit_one(20);
    let results: Vec<PushResult> = (0..21)
        .map(|_| rx.recv_timeout(PATIENCE).unwrap())
        .collect();
    assert!(results.iter().all(is_unconfirmed), "{results:#?}");
    let m = client.metrics();
    assert_eq!(
        (m.sent, m.retried, m.replayed, m.unconfirmed),
        (21, 0, 0, 21),
        "{m:?}"
    );
    // The 20 APNs took are there once each; the one it dropped unread, not at all.
    let received: Vec<_> = mock.pushes().iter().map(|p| p.apns_id).collect();
    assert_eq!(received.len(), 20, "{received:?}");
    let unique: HashSet<_> = received.iter().collect();
    assert_eq!(unique.len(), 20, "a push arrived twice");
    assert!(ids[..20].iter().all(|id| unique.contains(id)));
    assert_eq!(
        mock.stats().streams,
        21,
        "each push reached the server once"
    );
}

#[test]
fn the_deadline_resets_the_stream_and_reports_timed_out() {
    let (mock, _dir) = start_mock(|_| {});
    let client = client(&mock);
    mock.set_faults(Faults {
        delay: Duration::from_secs(20),
        ..Faults::default()
    });
    let result = submit(&client, voip(1), Duration::from_millis(200))
        .recv_timeout(PATIENCE)
        .unwrap();
    assert_eq!(result.outcome, Outcome::TimedOut);
    assert_eq!(result.attempts, 1);
    assert_eq!(
        result.last_error.as_deref(),
        Some("no answer from APNs before the deadline")
    );
    mock.set_faults(Faults::default());
    assert_eq!(send(&client, voip(2)).outcome, Outcome::Delivered);
    let m = client.metrics();
    assert_eq!((m.timed_out, m.delivered, m.connections_opened), (1, 1, 1));
}

#[test]
fn the_queue_is_bounded_and_shutdown_ends_every_push() {
    let (mock, _dir) = start_mock(|_| {});
    let mut cfg = config(&mock, token_auth(&mock));
    cfg.max_pending = 2;
    let client = ApnsClient::new(cfg).unwrap();
    mock.set_faults(Faults {
        delay: Duration::from_secs(20),
        ..Faults::default()
    });
    let a = submit(&client, voip(1), PATIENCE);
    let b = submit(&client, voip(2), PATIENCE);
    let refused = client.submit(voip(3), Instant::now() + PATIENCE, Box::new(|_| {}));
    assert_eq!(refused, Err(SubmitError::QueueFull));
    let invalid = client.submit(
        Push {
            token: "not hex".into(),
            ..voip(4)
        },
        Instant::now() + PATIENCE,
        Box::new(|_| {}),
    );
    assert!(matches!(invalid, Err(SubmitError::Invalid(_))));
    drop(client);
    for rx in [a, b] {
        assert_eq!(
            rx.recv_timeout(PATIENCE).unwrap().outcome,
            Outcome::ShutDown
        );
    }
}

#[test]
fn certificate_auth_is_accepted_and_a_foreign_certificate_is_not() {
    let (mock, dir) = start_mock(|cfg| {
        cfg.require_client_cert = Some(cfg.state_dir.join("ca.pem"));
    });
    let _ = &dir;
    let (cert, key) = mock.client_cert_paths();
    let auth = Auth::Certificate {
        cert_pem: std::fs::read_to_string(cert).unwrap(),
        key_pem: std::fs::read_to_string(key).unwrap(),
    };
    let client = ApnsClient::new(config(&mock, auth)).unwrap();
    let result = send(&client, voip(1));
    assert_eq!(result.outcome, Outcome::Delivered);
    assert!(mock.pushes()[0].header("authorization").is_none());

    let stranger = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["stranger".into()])
        .unwrap()
        .self_signed(&stranger)
        .unwrap();
    let auth = Auth::Certificate {
        cert_pem: cert.pem(),
        key_pem: stranger.serialize_pem(),
    };
    let client = ApnsClient::new(config(&mock, auth)).unwrap();
    let result = submit(&client, voip(2), Duration::from_secs(3))
        .recv_timeout(PATIENCE)
        .unwrap();
    assert_ne!(result.outcome, Outcome::Delivered);
    assert_eq!(mock.push_count(), 1);
}

#[test]
fn without_a_server_a_push_times_out_with_the_connect_error() {
    let (mock, _dir) = start_mock(|_| {});
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cfg = config(&mock, token_auth(&mock));
    cfg.endpoint = Endpoint::Custom {
        host: "127.0.0.1".into(),
        port,
    };
    let client = ApnsClient::new(cfg).unwrap();
    let err = client.wait_connected(PATIENCE).unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
    let result = submit(&client, voip(1), Duration::from_millis(300))
        .recv_timeout(PATIENCE)
        .unwrap();
    assert_eq!((result.outcome, result.attempts), (Outcome::TimedOut, 0));
    let why = result.last_error.unwrap();
    assert!(why.contains("cannot connect to 127.0.0.1"), "{why}");
    assert!(client.metrics().connections_failed >= 1);
}

#[test]
fn two_threads_and_two_connections_share_the_load() {
    let (mock, _dir) = start_mock(|_| {});
    let mut cfg = config(&mock, token_auth(&mock));
    cfg.worker_threads = 2;
    cfg.connections = 2;
    let client = ApnsClient::new(cfg).unwrap();
    // wait_connected returns with the first connection up; on a busy machine the 500
    // pushes could all be through before the second one is.
    wait_connections(&client, 2);
    let results = send_all(&client, (0..500).map(voip).collect());
    assert_each_delivered_once(&mock, &results);
    let connections: HashSet<u64> = mock.pushes().iter().map(|p| p.connection).collect();
    assert_eq!(connections.len(), 2, "both connections carried pushes");
    assert_eq!(client.metrics().connections_opened, 2);

    mock.set_faults(Faults {
        delay: Duration::from_secs(20),
        ..Faults::default()
    });
    let pending = submit(&client, voip(900), PATIENCE);
    drop(client);
    assert_eq!(
        pending.recv_timeout(PATIENCE).unwrap().outcome,
        Outcome::ShutDown
    );
}

/// The health check within seconds rather than a minute, so a test can wait
/// for it; the answer timeout still leaves a busy machine time to answer.
fn health_checked(mock: &MockApns, ping_interval: Duration) -> ApnsClient {
    let mut cfg = config(mock, token_auth(mock));
    cfg.ping_interval = ping_interval;
    cfg.ping_timeout = Duration::from_secs(1);
    ApnsClient::new(cfg).unwrap()
}

#[test]
fn a_silent_server_is_found_out_by_ping_and_its_pushes_in_flight_end_unconfirmed() {
    let (mock, _dir) = start_mock(|_| {});
    let client = health_checked(&mock, Duration::from_millis(500));
    let first = send(&client, voip(0));
    assert_eq!(first.outcome, Outcome::Delivered);
    // The next push to arrive makes its connection hang, and with it every
    // push in flight there.
    mock.set_faults(Faults {
        silence_mid_stream: 1,
        ..Faults::default()
    });
    let results = send_all(&client, (1..21).map(voip).collect());
    let (lost, delivered): (Vec<_>, Vec<_>) = results.into_iter().partition(is_unconfirmed);
    // Written to a connection that then failed its PING: maybe processed, not sent again.
    assert!(!lost.is_empty(), "pushes went out on the silent connection");
    assert_eq!(client.metrics().retried, 0);
    assert_eq!(client.metrics().unconfirmed, lost.len() as u64);
    let mut delivered = delivered;
    delivered.push(first);
    assert_each_delivered_once(&mock, &delivered);
    assert_eq!(mock.stats().silenced_connections, 1);
    let on_first: Vec<_> = mock
        .pushes()
        .into_iter()
        .filter(|p| p.connection == 1)
        .map(|p| p.token)
        .collect();
    assert_eq!(
        on_first,
        [device(0)],
        "nothing was delivered by the silent connection"
    );
    // The health check replaced the connection.
    assert_eq!(send(&client, voip(21)).outcome, Outcome::Delivered);
    assert!(client.metrics().connections_opened >= 2);
}

#[test]
fn without_the_health_check_a_silent_connection_holds_a_push_until_its_deadline() {
    let (mock, _dir) = start_mock(|_| {});
    let client = health_checked(&mock, Duration::from_secs(3600));
    assert_eq!(send(&client, voip(0)).outcome, Outcome::Delivered);
    mock.set_faults(Faults {
        silence_mid_stream: 1,
        ..Faults::default()
    });
    let result = submit(&client, voip(1), Duration::from_secs(2))
        .recv_timeout(PATIENCE)
        .unwrap();
    assert_eq!(result.outcome, Outcome::TimedOut);
    assert_eq!(mock.push_count(), 1);
    assert_eq!(
        client.metrics().connections_opened,
        1,
        "the dead connection went unnoticed"
    );
}

#[test]
fn an_idle_timeout_goaway_loses_nothing_and_the_next_push_uses_a_new_connection() {
    let (mock, _dir) = start_mock(|c| c.idle_timeout = Some(Duration::from_millis(300)));
    let client = client(&mock);
    let mut results = Vec::new();
    let mut connections = Vec::new();
    for i in 0..3 {
        let result = send(&client, voip(i));
        let conn = mock.wait_for_push(&device(i), PATIENCE).unwrap().connection;
        connections.push(conn);
        results.push(result);
        // Connections are numbered in order and each ends with its idle GOAWAY.
        let deadline = Instant::now() + PATIENCE;
        while mock.stats().goaways < conn {
            assert!(Instant::now() < deadline, "connection {conn} idled out");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_each_delivered_once(&mock, &results);
    assert!(
        connections.windows(2).all(|w| w[0] < w[1]),
        "each push after an idle GOAWAY went on a new connection: {connections:?}"
    );
    assert!(client.metrics().connections_opened >= 3);
}

#[test]
fn a_provider_token_from_the_future_is_invalid_and_a_little_ahead_is_fine() {
    let (mock, _dir) = start_mock(|_| {});
    for (offset, expected) in [
        (3600, rejected(Reason::InvalidProviderToken)),
        (30, Outcome::Delivered),
    ] {
        let mut cfg = config(&mock, token_auth(&mock));
        cfg.clock = TestClock::at_offset(offset);
        let client = ApnsClient::new(cfg).unwrap();
        assert_eq!(
            send(&client, voip(1)).outcome,
            expected,
            "clock {offset} s ahead"
        );
    }
}

#[test]
fn a_voip_push_to_a_topic_without_the_voip_suffix_is_refused_like_apple_does() {
    let (mock, _dir) = start_mock(|_| {});
    let client = client(&mock);
    let mut push = voip(1);
    push.topic = "com.example.phone".into();
    let result = send(&client, push);
    assert_eq!(result.outcome, rejected(Reason::DeviceTokenNotForTopic));
    assert_eq!(mock.push_count(), 0);
}

/// A connection the server closes with a graceful GOAWAY after serving its streams did not
/// fail: the next one must not wait out a growing reconnect backoff. With the default backoff
/// (1 s doubling to 60 s), counting each such short-lived connection as a failed attempt makes
/// the wait grow with every GOAWAY until pushes miss their deadline.
#[test]
fn graceful_goaways_on_young_connections_do_not_grow_the_reconnect_backoff() {
    let (mock, _dir) = start_mock(|_| {});
    mock.set_faults(Faults {
        goaway_after_streams: Some(2),
        ..Faults::default()
    });
    let mut cfg = config(&mock, token_auth(&mock));
    cfg.reconnect = ClientConfig::new(Endpoint::Production, token_auth(&mock)).reconnect;
    let client = ApnsClient::new(cfg).unwrap();
    for i in 0..16 {
        let result = submit(&client, voip(i), Duration::from_secs(10))
            .recv_timeout(PATIENCE)
            .unwrap();
        assert_eq!(
            result.outcome,
            Outcome::Delivered,
            "push {i}, after {} GOAWAYs: {:?}",
            mock.stats().goaways,
            result.last_error
        );
        // Calls come one after another: the server has closed the connection by the next.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(mock.stats().goaways, 8);
}

/// The other side of that rule: a server that closes each connection cleanly before it took
/// any request (here: an idle timeout far below the reconnect base) is reconnected to with a
/// growing backoff, not in a loop.
#[test]
fn young_connections_closed_before_any_request_still_back_off() {
    let (mock, _dir) = start_mock(|c| c.idle_timeout = Some(Duration::from_millis(30)));
    let mut cfg = config(&mock, token_auth(&mock));
    cfg.reconnect = Backoff {
        base: Duration::from_millis(200),
        max: Duration::from_secs(60),
    };
    let client = ApnsClient::new(cfg).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // Backing off (0.1-0.2 s, then doubling, with jitter): at most ~5 connections in 2 s;
    // without it, one every ~30 ms.
    let opened = client.metrics().connections_opened;
    assert!((2..=6).contains(&opened), "{opened} connections in 2 s");
}

/// A push that arrives while the client waits out a long reconnect backoff (APNs was down)
/// cuts the wait short: it is delivered, not held until its deadline by the backoff.
#[test]
fn a_new_push_cuts_a_long_reconnect_backoff_short() {
    let (mock, _dir) = start_mock(|_| {});
    mock.set_faults(Faults {
        refuse_tls: true,
        ..Faults::default()
    });
    let mut cfg = config(&mock, token_auth(&mock));
    cfg.reconnect = Backoff {
        base: Duration::from_secs(3600),
        max: Duration::from_secs(3600),
    };
    let client = ApnsClient::new(cfg).unwrap();
    // The first attempt failed: the connection waits half an hour or more to retry.
    assert!(client.wait_connected(PATIENCE).is_err());
    mock.set_faults(Faults::default());
    let result = send(&client, voip(1));
    assert_eq!(
        result.outcome,
        Outcome::Delivered,
        "{:?}",
        result.last_error
    );
    assert_eq!(client.metrics().connections_failed, 1);
}

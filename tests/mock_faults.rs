//! Scripted answers and fault modes of the mock APNs, observed on the wire.

mod mock_common;

use mock_common::*;
use pushpark::apns::reason::Reason;
use pushpark::mock::{Faults, Scripted};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[tokio::test]
async fn scripted_tokens_get_their_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    let mut c = connect(&mock).await;
    let jwt = jwt(&mock);
    let (gone, bad, busy, wrong) = (
        "1".repeat(64),
        "2".repeat(64),
        "3".repeat(64),
        "4".repeat(64),
    );
    let before_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    mock.script(&gone, Scripted::Reject(Reason::Unregistered));
    mock.script(&bad, Scripted::Reject(Reason::BadDeviceToken));
    mock.script(&busy, Scripted::RejectNext(Reason::TooManyRequests, 2));
    mock.script(&wrong, Scripted::Reject(Reason::DeviceTokenNotForTopic));

    for _ in 0..2 {
        let a = send(&mut c.send, push(&gone, &jwt), PAYLOAD).await.unwrap();
        assert_eq!((a.status.as_u16(), a.reason()), (410, "Unregistered"));
        let ts = a.body["timestamp"]
            .as_u64()
            .expect("410 carries a timestamp");
        assert!(ts >= before_ms, "the token became invalid when scripted");
    }
    let a = send(&mut c.send, push(&bad, &jwt), PAYLOAD).await.unwrap();
    assert_eq!((a.status.as_u16(), a.reason()), (400, "BadDeviceToken"));
    assert!(a.body.get("timestamp").is_none());
    let a = send(&mut c.send, push(&wrong, &jwt), PAYLOAD)
        .await
        .unwrap();
    assert_eq!(
        (a.status.as_u16(), a.reason()),
        (400, "DeviceTokenNotForTopic")
    );
    for expected in [429, 429, 200, 200] {
        let a = send(&mut c.send, push(&busy, &jwt), PAYLOAD).await.unwrap();
        assert_eq!(a.status, expected);
    }
    assert_eq!(
        mock.pushes().len(),
        2,
        "only the accepted pushes are recorded"
    );

    mock.script(&gone, Scripted::Accept);
    let a = send(&mut c.send, push(&gone, &jwt), PAYLOAD).await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(mock.pushes().len(), 3);
}

#[tokio::test]
async fn a_delayed_push_is_recorded_on_arrival_and_answered_later() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    let mut c = connect(&mock).await;
    let jwt = jwt(&mock);
    let delay = Duration::from_millis(1500);
    mock.set_faults(Faults {
        delay,
        ..Faults::default()
    });
    let arrivals = mock.subscribe();
    let sent = Instant::now();
    let mut send_req = c.send.clone();
    let answer = tokio::spawn(async move { send(&mut send_req, push(TOKEN, &jwt), PAYLOAD).await });
    let arrived =
        tokio::task::spawn_blocking(move || arrivals.recv_timeout(Duration::from_secs(20)))
            .await
            .unwrap()
            .expect("recorded on arrival");
    assert!(!answer.is_finished(), "the answer waits for the delay");
    assert_eq!(arrived.token, TOKEN);
    let answer = answer.await.unwrap().unwrap();
    assert_eq!(answer.status, 200);
    assert!(sent.elapsed() >= delay);
    let _ = &mut c;
}

#[tokio::test]
async fn server_errors_for_the_next_n_pushes_then_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    let mut c = connect(&mock).await;
    let jwt = jwt(&mock);
    mock.set_faults(Faults {
        server_error: Some(Reason::ServiceUnavailable),
        server_error_times: Some(2),
        ..Faults::default()
    });
    for expected in [503, 503, 200] {
        let a = send(&mut c.send, push(TOKEN, &jwt), PAYLOAD).await.unwrap();
        assert_eq!(a.status, expected);
        if expected == 503 {
            assert_eq!(a.reason(), "ServiceUnavailable");
        }
    }
    mock.set_faults(Faults {
        server_error: Some(Reason::InternalServerError),
        ..Faults::default()
    });
    for _ in 0..3 {
        let a = send(&mut c.send, push(TOKEN, &jwt), PAYLOAD).await.unwrap();
        assert_eq!(
            (a.status.as_u16(), a.reason()),
            (500, "InternalServerError")
        );
    }
    assert_eq!(mock.pushes().len(), 1);
}

#[tokio::test]
async fn goaway_names_the_last_processed_stream_and_later_ones_are_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    mock.set_faults(Faults {
        goaway_after_streams: Some(3),
        ..Faults::default()
    });
    let jwt = jwt(&mock);
    let (c, frames) = connect_sniffed(&mock).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mut s = c.send.clone();
        let body = format!(r#"{{"n":{i}}}"#);
        let token = format!("{i:064}");
        let req = push(&token, &jwt);
        tasks.push(tokio::spawn(async move { send(&mut s, req, &body).await }));
    }
    let mut delivered = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(answer) => {
                assert_eq!(answer.status, 200);
                delivered += 1;
            }
            Err(e) => assert!(
                e.is_go_away() || e.reason() == Some(h2::Reason::REFUSED_STREAM),
                "unprocessed streams are refused, not failed: {e}"
            ),
        }
    }
    assert_eq!(delivered, 3);
    assert_eq!(
        mock.pushes().len(),
        3,
        "nothing past the GOAWAY was delivered"
    );
    let driver = tokio::time::timeout(Duration::from_secs(20), c.driver).await;
    assert!(driver.is_ok(), "the server closes the connection");

    assert_one_goaway(&frames, 5, br#"{"reason":"Shutdown"}"#); // streams 1, 3, 5
    let delivered: Vec<u64> = mock
        .pushes()
        .iter()
        .map(|p| p.payload_json()["n"].as_u64().unwrap())
        .collect();
    assert_eq!(delivered.len(), 3);
    assert_eq!(mock.stats().goaways, 1);

    // A new connection works (and would get its own GOAWAY after 3 streams).
    let mut c = connect(&mock).await;
    let a = send(&mut c.send, push(TOKEN, &jwt), PAYLOAD).await.unwrap();
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn max_concurrent_streams_drops_to_one_mid_connection_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    let jwt = jwt(&mock);
    let (mut c, frames) = connect_sniffed(&mock).await;
    let a = send(&mut c.send, push(TOKEN, &jwt), PAYLOAD).await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(c.send.current_max_send_streams(), 1000);

    mock.set_faults(Faults {
        max_concurrent_streams: Some(1),
        delay: Duration::from_millis(20),
        ..Faults::default()
    });
    eventually("the client applies the limit of 1", || {
        c.send.current_max_send_streams() == 1
    })
    .await;
    let limits: Vec<_> = frames
        .lock()
        .iter()
        .filter_map(|f| f.max_concurrent_streams())
        .collect();
    assert_eq!(limits, [1000, 1]);

    // The client queues streams beyond the limit; every push gets through.
    let mut tasks = Vec::new();
    for i in 0..5 {
        let mut s = c.send.clone();
        let req = push(&format!("{i:064}"), &jwt);
        tasks.push(tokio::spawn(
            async move { send(&mut s, req, PAYLOAD).await },
        ));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status, 200);
    }
    assert_eq!(mock.stats().refused_streams, 0);

    mock.set_faults(Faults::default());
    eventually("the client sees the limit raised", || {
        c.send.current_max_send_streams() == 1000
    })
    .await;
    let a = send(&mut c.send, push(TOKEN, &jwt), PAYLOAD).await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(mock.pushes().len(), 7);
    assert!(
        !c.driver.is_finished(),
        "the connection survived both changes"
    );

    // A connection opened while the fault is on starts at 1.
    mock.set_faults(Faults {
        max_concurrent_streams: Some(1),
        ..Faults::default()
    });
    let (mut c2, _) = connect_sniffed(&mock).await;
    let a = send(&mut c2.send, push(TOKEN, &jwt), PAYLOAD)
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(c2.send.current_max_send_streams(), 1);
}

#[tokio::test]
async fn dropping_the_connection_mid_stream_delivers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    let jwt = jwt(&mock);
    let mut c = connect(&mock).await;
    mock.set_faults(Faults {
        drop_connection_mid_stream: 1,
        ..Faults::default()
    });
    let err = send(&mut c.send, push(TOKEN, &jwt), PAYLOAD)
        .await
        .unwrap_err();
    assert!(
        !err.is_reset(),
        "the connection went, not the stream: {err}"
    );
    assert!(mock.pushes().is_empty());
    assert_eq!(mock.stats().dropped_connections, 1);

    let mut c = connect(&mock).await;
    let a = send(&mut c.send, push(TOKEN, &jwt), PAYLOAD).await.unwrap();
    assert_eq!(a.status, 200, "only the next push was dropped");
}

#[tokio::test]
async fn refused_tls_fails_the_handshake_with_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    mock.set_faults(Faults {
        refuse_tls: true,
        ..Faults::default()
    });
    let tcp = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let err = tls(&mock.ca_pem_path(), None)
        .connect(name, tcp)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("HandshakeFailure"),
        "a TLS alert, not a reset: {err}"
    );
    assert_eq!(mock.stats().tls_refused, 1);

    mock.set_faults(Faults::default());
    let mut c = connect(&mock).await;
    let a = send(&mut c.send, push(TOKEN, &jwt(&mock)), PAYLOAD)
        .await
        .unwrap();
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn a_client_ignoring_the_lowered_limit_gets_refused_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    mock.set_faults(Faults {
        max_concurrent_streams: Some(1),
        delay: Duration::from_secs(2),
        ..Faults::default()
    });
    let mut raw = RawConn::connect(&mock).await;
    let mut limits = Vec::new();
    while limits.len() < 2 {
        let f = raw.read().await;
        if f.kind == SETTINGS && f.flags & 1 == 0 {
            limits.push(f.max_concurrent_streams());
            raw.send(SETTINGS, 1, 0, &[]).await;
        }
    }
    assert_eq!(limits, [Some(1000), Some(1)]);
    // The server reads frames in order: once the PING is answered, it has our ACKs.
    raw.send(0x6, 0, 0, b"12345678").await;
    while raw.read().await.kind != 0x6 {}

    let path = format!("/3/device/{TOKEN}");
    let bearer = format!("bearer {}", jwt(&mock));
    let request = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", path.as_str()),
        ("authorization", bearer.as_str()),
        ("apns-topic", TOPIC),
    ];
    raw.request(1, &request).await;
    raw.request(3, &request).await;
    let refused = loop {
        let f = raw.read().await;
        if f.kind == 0x3 {
            break f;
        }
    };
    assert_eq!(refused.stream, 3, "the stream over the limit");
    assert_eq!(refused.payload, 7u32.to_be_bytes(), "REFUSED_STREAM");
    // Stream 1 is answered (no body: PayloadEmpty) after the delay, not refused.
    let answer = loop {
        let f = raw.read().await;
        if f.stream == 1 {
            break f;
        }
    };
    assert_eq!(answer.kind, 0x1, "HEADERS for stream 1");
    assert_eq!(mock.stats().refused_streams, 1);
}

#[tokio::test]
async fn like_apple_a_rejection_throttles_the_connection_until_a_push_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    mock.set_faults(Faults {
        throttle_after_rejection: true,
        ..Faults::default()
    });
    let jwt = jwt(&mock);
    let (mut c, frames) = connect_sniffed(&mock).await;
    let a = send(&mut c.send, push(&TOKEN[..10], &jwt), PAYLOAD)
        .await
        .unwrap();
    assert_eq!(a.reason(), "BadDeviceToken");
    eventually("the limit drops to 1", || {
        c.send.current_max_send_streams() == 1
    })
    .await;
    let a = send(&mut c.send, push(&TOKEN[..10], &jwt), PAYLOAD)
        .await
        .unwrap();
    assert_eq!(a.reason(), "BadDeviceToken");
    let a = send(&mut c.send, push(TOKEN, &jwt), PAYLOAD).await.unwrap();
    assert_eq!(a.status, 200);
    eventually("the limit is restored", || {
        c.send.current_max_send_streams() == 1000
    })
    .await;
    let limits: Vec<_> = frames
        .lock()
        .iter()
        .filter_map(|f| f.max_concurrent_streams())
        .collect();
    assert_eq!(
        limits,
        [1000, 1, 1000],
        "one SETTINGS per change, none repeated"
    );
}

#[tokio::test]
async fn new_provider_tokens_more_often_than_every_20_minutes_get_429() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    mock.set_faults(Faults {
        limit_token_updates: true,
        ..Faults::default()
    });
    let signer = signer(&mock);
    let t = now();
    let (first, too_soon, later) = (
        signer.sign(t - 1500),
        signer.sign(t - 1500 + 60),
        signer.sign(t),
    );
    let mut c = connect(&mock).await;
    for (jwt, status, reason) in [
        (&first, 200, ""),
        (&first, 200, ""),
        (&too_soon, 429, "TooManyProviderTokenUpdates"),
        (&first, 200, ""),
        (&later, 200, ""),
    ] {
        let a = send(&mut c.send, push(TOKEN, jwt), PAYLOAD).await.unwrap();
        assert_eq!((a.status.as_u16(), a.reason()), (status, reason));
    }
    // The rule is per connection: a new one may start with any valid token.
    let mut c2 = connect(&mock).await;
    let a = send(&mut c2.send, push(TOKEN, &too_soon), PAYLOAD)
        .await
        .unwrap();
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn a_silent_connection_answers_nothing_not_even_pings() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    let jwt = jwt(&mock);
    let tcp = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tls(&mock.ca_pem_path(), None).connect(name, tcp).await;
    let (mut send_req, mut conn) = h2::client::handshake(tls.unwrap()).await.unwrap();
    let mut pings = conn.ping_pong().expect("the first ping_pong");
    let driver = tokio::spawn(conn);
    pings.ping(h2::Ping::opaque()).await.expect("a PING ACK");
    let a = send(&mut send_req, push(TOKEN, &jwt), PAYLOAD)
        .await
        .unwrap();
    assert_eq!(a.status, 200);

    mock.set_faults(Faults {
        silence_mid_stream: 1,
        ..Faults::default()
    });
    let (mut s, req) = (send_req.clone(), push(TOKEN, &jwt));
    let unanswered = tokio::spawn(async move { send(&mut s, req, PAYLOAD).await });
    let deadline = Instant::now() + Duration::from_secs(20);
    while mock.stats().silenced_connections == 0 {
        assert!(Instant::now() < deadline, "the push arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A healthy mock ACKs a PING within microseconds on loopback.
    let ping = tokio::time::timeout(Duration::from_millis(500), pings.ping(h2::Ping::opaque()));
    assert!(ping.await.is_err(), "no PING ACK from a silent server");
    assert!(!unanswered.is_finished(), "no answer either");
    assert_eq!(mock.pushes().len(), 1, "the push was not processed");

    // The client gives up: the push fails with the connection, unrecorded.
    driver.abort();
    drop((send_req, pings));
    assert!(unanswered.await.unwrap().is_err());
    assert_eq!(mock.pushes().len(), 1);
    let mut c = connect(&mock).await;
    let a = send(&mut c.send, push(TOKEN, &jwt), PAYLOAD).await.unwrap();
    assert_eq!(a.status, 200, "only that connection went silent");
}

#[tokio::test]
async fn an_idle_connection_gets_goaway_idle_timeout_and_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = pushpark::mock::MockConfig::new(dir.path());
    cfg.idle_timeout = Some(Duration::from_millis(300));
    let mock = pushpark::mock::MockApns::start(cfg).unwrap();
    // A push still being answered keeps the connection: it is not idle.
    mock.set_faults(Faults {
        delay: Duration::from_millis(700),
        ..Faults::default()
    });
    let jwt = jwt(&mock);
    let (mut c, frames) = connect_sniffed(&mock).await;
    let a = send(&mut c.send, push(TOKEN, &jwt), PAYLOAD).await.unwrap();
    assert_eq!(a.status, 200);
    let driver = tokio::time::timeout(Duration::from_secs(20), c.driver).await;
    assert!(driver.is_ok(), "the server closes the idle connection");

    assert_one_goaway(&frames, 1, br#"{"reason":"IdleTimeout"}"#); // stream 1 was processed
    assert_eq!(mock.stats().goaways, 1);
    assert_eq!(mock.pushes().len(), 1);
}

/// The server sent exactly one GOAWAY: NO_ERROR, with this last-stream-id and debug data.
fn assert_one_goaway(frames: &parking_lot::Mutex<Vec<Frame>>, last_stream: u32, debug: &[u8]) {
    let goaways: Vec<_> = frames
        .lock()
        .iter()
        .filter(|f| f.kind == GOAWAY)
        .cloned()
        .collect();
    assert_eq!(goaways.len(), 1, "one GOAWAY: {goaways:?}");
    let p = &goaways[0].payload;
    assert_eq!(
        u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
        last_stream,
        "last-stream-id"
    );
    assert_eq!(u32::from_be_bytes([p[4], p[5], p[6], p[7]]), 0, "NO_ERROR");
    assert_eq!(&p[8..], debug);
}

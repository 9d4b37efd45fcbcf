//! The mock APNs accepts what Apple accepts, answers each malformed request
//! with Apple's status and reason, and records what it accepted.

mod mock_common;

use mock_common::*;
use pushpark::mock::{MockApns, MockConfig};
use std::time::{Duration, Instant};

#[tokio::test]
async fn accepts_a_valid_push_records_it_and_echoes_the_apns_id() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    let mut c = connect(&mock).await;
    let jwt = jwt(&mock);
    let id = "4E2D0D3C-5A1B-4C7D-9E8F-0A1B2C3D4E5F";
    let before = Instant::now();

    let answer = send(
        &mut c.send,
        push(TOKEN, &jwt).header("apns-id", id),
        PAYLOAD,
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.apns_id.as_deref(), Some(id));
    assert!(
        answer.body.is_null(),
        "a 200 has no body: {:?}",
        answer.body
    );

    let pushes = mock.pushes();
    assert_eq!(pushes.len(), 1);
    let p = &pushes[0];
    assert_eq!(p.token, TOKEN);
    assert_eq!(p.apns_id, uuid::Uuid::parse_str(id).unwrap());
    assert_eq!(p.topic(), Some(TOPIC));
    assert_eq!(p.header("apns-push-type"), Some("voip"));
    assert_eq!(p.header("apns-priority"), Some("10"));
    assert_eq!(p.header("authorization"), None, "secrets are not kept");
    assert_eq!(p.payload, PAYLOAD.as_bytes());
    assert_eq!(p.payload_json()["call_id"], "abc");
    assert!(p.arrived >= before);
    assert_eq!(p.connection, 1);

    // Without an apns-id the mock makes one up and reports it.
    let answer = send(&mut c.send, push(TOKEN, &jwt), PAYLOAD).await.unwrap();
    assert_eq!(answer.status, 200);
    let generated = answer.apns_id.expect("apns-id on every answer");
    assert_eq!(generated.len(), 36);
    assert_ne!(generated, id);
    assert_eq!(
        mock.pushes()[1].apns_id.to_string().to_uppercase(),
        generated
    );
}

#[tokio::test]
async fn each_malformed_request_gets_apples_status_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    let mut c = connect(&mock).await;
    let signer = signer(&mock);
    let jwt = signer.sign(now());
    let big_voip = format!(r#"{{"x":"{}"}}"#, "a".repeat(5120));
    let big_alert = format!(r#"{{"x":"{}"}}"#, "a".repeat(4096));
    let alert_ok = format!(r#"{{"x":"{}"}}"#, "a".repeat(4000));
    let foreign = {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        pushpark::apns::jwt::JwtSigner::from_p8_pem(&pem, "TESTKEY001", "TESTTEAM01")
            .unwrap()
            .sign(now())
    };
    let other_kid = {
        let pem = std::fs::read_to_string(mock.key_path()).unwrap();
        pushpark::apns::jwt::JwtSigner::from_p8_pem(&pem, "OTHERKEY01", "TESTTEAM01")
            .unwrap()
            .sign(now())
    };
    let old = signer.sign(now() - 3601);
    let future = signer.sign(now() + 3600);

    let cases: Vec<(&str, http::request::Builder, &str, u16, &str)> = vec![
        (
            "GET",
            push(TOKEN, &jwt).method("GET"),
            "",
            405,
            "MethodNotAllowed",
        ),
        (
            "wrong path",
            push(TOKEN, &jwt).uri("https://localhost/3/devices/abc"),
            PAYLOAD,
            404,
            "BadPath",
        ),
        (
            "no token",
            push("", &jwt),
            PAYLOAD,
            400,
            "MissingDeviceToken",
        ),
        (
            "short token",
            push(&TOKEN[..63], &jwt),
            PAYLOAD,
            400,
            "BadDeviceToken",
        ),
        (
            "non-hex token",
            push(&format!("{}zz", &TOKEN[..62]), &jwt),
            PAYLOAD,
            400,
            "BadDeviceToken",
        ),
        (
            "two topics",
            push(TOKEN, &jwt).header("apns-topic", "com.other"),
            PAYLOAD,
            400,
            "DuplicateHeaders",
        ),
        (
            "no JWT",
            http::Request::post(format!("https://localhost/3/device/{TOKEN}"))
                .header("apns-topic", TOPIC),
            PAYLOAD,
            403,
            "MissingProviderToken",
        ),
        (
            "two JWTs",
            push(TOKEN, &jwt).header("authorization", format!("bearer {jwt}")),
            PAYLOAD,
            400,
            "DuplicateHeaders",
        ),
        (
            "not bearer",
            http::Request::post(format!("https://localhost/3/device/{TOKEN}"))
                .header("authorization", "basic abc")
                .header("apns-topic", TOPIC),
            PAYLOAD,
            403,
            "InvalidProviderToken",
        ),
        (
            "garbage JWT",
            push(TOKEN, "not.a.jwt"),
            PAYLOAD,
            403,
            "InvalidProviderToken",
        ),
        (
            "JWT signed by another key",
            push(TOKEN, &foreign),
            PAYLOAD,
            403,
            "InvalidProviderToken",
        ),
        (
            "JWT for another key id",
            push(TOKEN, &other_kid),
            PAYLOAD,
            403,
            "InvalidProviderToken",
        ),
        (
            "JWT older than an hour",
            push(TOKEN, &old),
            PAYLOAD,
            403,
            "ExpiredProviderToken",
        ),
        (
            "JWT issued an hour from now",
            push(TOKEN, &future),
            PAYLOAD,
            403,
            "InvalidProviderToken",
        ),
        (
            "no topic",
            http::Request::post(format!("https://localhost/3/device/{TOKEN}"))
                .header("authorization", format!("bearer {jwt}")),
            PAYLOAD,
            400,
            "MissingTopic",
        ),
        (
            "bad push type",
            http::Request::post(format!("https://localhost/3/device/{TOKEN}"))
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", TOPIC)
                .header("apns-push-type", "call"),
            PAYLOAD,
            400,
            "InvalidPushType",
        ),
        (
            "voip push to a topic without .voip",
            http::Request::post(format!("https://localhost/3/device/{TOKEN}"))
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", "com.example.pushpark")
                .header("apns-push-type", "voip"),
            PAYLOAD,
            400,
            "DeviceTokenNotForTopic",
        ),
        (
            "bad priority",
            http::Request::post(format!("https://localhost/3/device/{TOKEN}"))
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", TOPIC)
                .header("apns-priority", "7"),
            PAYLOAD,
            400,
            "BadPriority",
        ),
        (
            "bad apns-id",
            push(TOKEN, &jwt).header("apns-id", "not-a-uuid"),
            PAYLOAD,
            400,
            "BadMessageId",
        ),
        (
            "apns-id of a UUID's length with a hyphen out of place",
            push(TOKEN, &jwt).header("apns-id", "4E2D0D3C-5A1B-4C7D-9E8F0-A1B2C3D4E5F"),
            PAYLOAD,
            400,
            "BadMessageId",
        ),
        (
            "bad expiration",
            http::Request::post(format!("https://localhost/3/device/{TOKEN}"))
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", TOPIC)
                .header("apns-expiration", "tomorrow"),
            PAYLOAD,
            400,
            "BadExpirationDate",
        ),
        (
            "long collapse id",
            push(TOKEN, &jwt).header("apns-collapse-id", "c".repeat(65)),
            PAYLOAD,
            400,
            "BadCollapseId",
        ),
        ("empty payload", push(TOKEN, &jwt), "", 400, "PayloadEmpty"),
        (
            "voip payload over 5120 bytes",
            push(TOKEN, &jwt),
            &big_voip,
            413,
            "PayloadTooLarge",
        ),
        (
            "alert payload over 4096 bytes",
            http::Request::post(format!("https://localhost/3/device/{TOKEN}"))
                .header("authorization", format!("bearer {jwt}"))
                .header("apns-topic", "com.example.pushpark")
                .header("apns-push-type", "alert"),
            &big_alert,
            413,
            "PayloadTooLarge",
        ),
    ];
    let rejected = cases.len() as u64;
    for (what, req, body, status, reason) in cases {
        let answer = send(&mut c.send, req, body).await.unwrap();
        assert_eq!(
            (answer.status.as_u16(), answer.reason()),
            (status, reason),
            "{what}"
        );
        assert!(answer.apns_id.is_some(), "{what}: apns-id on every answer");
    }
    assert!(mock.pushes().is_empty(), "nothing invalid was recorded");

    // The limits are inclusive: exactly at them is fine.
    let voip_max = format!(r#"{{"x":"{}"}}"#, "a".repeat(5120 - 8));
    assert_eq!(voip_max.len(), 5120);
    let answer = send(&mut c.send, push(TOKEN, &jwt), &voip_max)
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    let alert = http::Request::post(format!("https://localhost/3/device/{TOKEN}"))
        .header("authorization", format!("bearer {jwt}"))
        .header("apns-topic", "com.example.pushpark");
    let answer = send(&mut c.send, alert, &alert_ok).await.unwrap();
    assert_eq!(answer.status, 200);
    // A provider clock a little ahead is tolerated.
    let ahead = signer.sign(now() + 30);
    let answer = send(&mut c.send, push(TOKEN, &ahead), PAYLOAD)
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(mock.pushes().len(), 3);
    assert_eq!(mock.stats().rejected, rejected);
}

#[tokio::test]
async fn a_rejection_echoes_the_clients_apns_id_whether_the_headers_or_the_payload_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    let mut c = connect(&mock).await;
    let jwt = jwt(&mock);
    let id = "4E2D0D3C-5A1B-4C7D-9E8F-0A1B2C3D4E5F";

    let bad_path = http::Request::post("https://localhost/3/devices/x")
        .header("authorization", format!("bearer {jwt}"))
        .header("apns-id", id);
    let empty = push(TOKEN, &jwt).header("apns-id", id);
    for (req, body, reason) in [(bad_path, PAYLOAD, "BadPath"), (empty, "", "PayloadEmpty")] {
        let answer = send(&mut c.send, req, body).await.unwrap();
        assert_eq!(answer.reason(), reason);
        assert_eq!(answer.apns_id.as_deref(), Some(id), "{reason}");
    }
    assert!(mock.pushes().is_empty());
}

#[tokio::test]
async fn wait_for_push_and_subscribe_report_arrivals() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    let other = "b".repeat(64);
    let subscription = mock.subscribe();
    assert!(mock
        .wait_for_push(TOKEN, Duration::from_millis(10))
        .is_none());

    let mut c = connect(&mock).await;
    let jwt = jwt(&mock);
    for body in [r#"{"n":1}"#, r#"{"n":2}"#] {
        let answer = send(&mut c.send, push(TOKEN, &jwt), body).await.unwrap();
        assert_eq!(answer.status, 200);
    }
    send(&mut c.send, push(&other, &jwt), r#"{"n":3}"#)
        .await
        .unwrap();

    let first = mock.wait_for_push(TOKEN, Duration::from_secs(10)).unwrap();
    let second = mock.wait_for_push(TOKEN, Duration::from_secs(10)).unwrap();
    assert_eq!(first.payload_json()["n"], 1);
    assert_eq!(second.payload_json()["n"], 2);
    assert!(mock
        .wait_for_push(TOKEN, Duration::from_millis(10))
        .is_none());
    assert_eq!(
        mock.wait_for_push(&other.to_uppercase(), Duration::from_secs(10))
            .unwrap()
            .payload_json()["n"],
        3
    );
    let seen: Vec<_> = subscription
        .try_iter()
        .map(|p| p.payload_json()["n"].as_u64().unwrap())
        .collect();
    assert_eq!(seen, [1, 2, 3]);

    // A waiter blocked before the push arrives is woken by it.
    let mock = std::sync::Arc::new(mock);
    let token = "c".repeat(64);
    let waiter = std::thread::spawn({
        let (mock, token) = (mock.clone(), token.clone());
        move || mock.wait_for_push(&token, Duration::from_secs(30))
    });
    let answer = send(&mut c.send, push(&token, &jwt), PAYLOAD)
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    let found = tokio::task::spawn_blocking(move || waiter.join().unwrap())
        .await
        .unwrap()
        .expect("the waiter sees the push");
    assert_eq!(found.token, token);
    let answered = answer.apns_id.unwrap();
    assert_eq!(found.apns_id, uuid::Uuid::parse_str(&answered).unwrap());
}

#[tokio::test]
async fn certificate_auth_accepts_the_mock_signed_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    // First run creates the state dir, including the client certificate.
    drop(start(dir.path()));
    let mock = MockApns::start(MockConfig {
        require_client_cert: Some(dir.path().join("ca.pem")),
        ..MockConfig::new(dir.path())
    })
    .unwrap();
    let (cert, key) = mock.client_cert_paths();

    let mut with_cert = connect_with(&mock, tls(&mock.ca_pem_path(), Some((&cert, &key)))).await;
    let no_jwt = http::Request::post(format!("https://localhost/3/device/{TOKEN}"))
        .header("apns-topic", TOPIC)
        .header("apns-push-type", "voip");
    let answer = send(&mut with_cert.send, no_jwt, PAYLOAD).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(mock.pushes().len(), 1);

    let mut without = connect(&mock).await;
    let no_jwt = http::Request::post(format!("https://localhost/3/device/{TOKEN}"))
        .header("apns-topic", TOPIC);
    let answer = send(&mut without.send, no_jwt, PAYLOAD).await.unwrap();
    assert_eq!(
        (answer.status.as_u16(), answer.reason()),
        (403, "MissingProviderToken")
    );

    // A certificate from another CA: Apple's 403 BadCertificate.
    let other = tempfile::tempdir().unwrap();
    drop(start(other.path()));
    let foreign = tls(
        &mock.ca_pem_path(),
        Some((
            &other.path().join("client-cert.pem"),
            &other.path().join("client-key.pem"),
        )),
    );
    let mut bad = connect_with(&mock, foreign).await;
    let answer = send(&mut bad.send, push(TOKEN, "unused"), PAYLOAD)
        .await
        .unwrap();
    assert_eq!(
        (answer.status.as_u16(), answer.reason()),
        (403, "BadCertificate")
    );
    assert_eq!(mock.pushes().len(), 1);
}

#[test]
fn the_state_dir_is_created_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mock = start(dir.path());
    for file in [
        "ca.pem",
        "AuthKey_TESTKEY001.p8",
        "client-cert.pem",
        "client-key.pem",
    ] {
        assert!(dir.path().join(file).is_file(), "{file}");
    }
    assert_eq!(mock.ca_pem_path(), dir.path().join("ca.pem"));
    assert_eq!(mock.key_path(), dir.path().join("AuthKey_TESTKEY001.p8"));
    let key = std::fs::read_to_string(mock.key_path()).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let ca = std::fs::read(mock.ca_pem_path()).unwrap();
    mock.stop();
    let again = start(dir.path());
    assert_eq!(std::fs::read(again.ca_pem_path()).unwrap(), ca);
    assert_eq!(std::fs::read_to_string(again.key_path()).unwrap(), key);
}

#[tokio::test]
async fn a_multi_threaded_mock_serves_several_connections_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockApns::start(MockConfig {
        worker_threads: 2,
        ..MockConfig::new(dir.path())
    })
    .unwrap();
    let jwt = jwt(&mock);
    let mut tasks = Vec::new();
    for conn in 0..2 {
        let c = connect(&mock).await;
        for i in 0..25 {
            let mut s = c.send.clone();
            let req = push(&format!("{conn}{i:063}"), &jwt);
            tasks.push(tokio::spawn(
                async move { send(&mut s, req, PAYLOAD).await },
            ));
        }
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status, 200);
    }
    let pushes = mock.pushes();
    assert_eq!(pushes.len(), 50);
    let connections: std::collections::HashSet<_> = pushes.iter().map(|p| p.connection).collect();
    assert_eq!(connections.len(), 2);
    assert_eq!(mock.stats().connections, 2);
}

//! The mock FCM driven by a plain h2-over-rustls client: OAuth token grants,
//! sends, Google's error answers, scripts and faults.

mod mock_common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use mock_common::{connect_to, now, tls, Conn};
use pushpark::mock::fcm::{Faults, FcmConfig, FcmError, MockFcm, Scripted, FCM_SCOPE};
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

const TOKEN: &str = "cX1a2B3c4D5e6F7g8H9i0J:APA91bHk-test_registration_token_0123456789";

/// A state dir of its own for each test, copied from one generated once: an
/// RSA key takes a second to generate.
fn state_dir() -> tempfile::TempDir {
    static TEMPLATE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        MockFcm::start(FcmConfig::new(dir.path())).unwrap().stop();
        dir
    });
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(template.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn start(dir: &Path, token_lifetime: Duration) -> MockFcm {
    MockFcm::start(FcmConfig {
        token_lifetime,
        ..FcmConfig::new(dir)
    })
    .unwrap()
}

async fn connect(mock: &MockFcm) -> Conn {
    connect_to(mock.addr(), tls(&mock.ca_pem_path(), None)).await
}

/// An RS256 assertion over `claims`, signed with the service account's key
/// (read from the JSON file, as a client would) or with `key_pem`.
fn assertion(mock: &MockFcm, claims: Value, key_pem: Option<&str>) -> String {
    let account: Value =
        serde_json::from_slice(&std::fs::read(mock.service_account_path()).unwrap()).unwrap();
    let pem = key_pem.unwrap_or_else(|| account["private_key"].as_str().unwrap());
    let der = rustls_pemfile::private_key(&mut pem.as_bytes())
        .unwrap()
        .unwrap();
    let key = RsaKeyPair::from_pkcs8(der.secret_der()).unwrap();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": account["private_key_id"]});
    let signed = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{signed}.{}", B64.encode(signature))
}

fn claims(mock: &MockFcm) -> Value {
    let account = mock.service_account();
    json!({
        "iss": account.client_email,
        "scope": FCM_SCOPE,
        "aud": account.token_uri,
        "iat": now(),
        "exp": now() + 3600,
    })
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn request(conn: &mut Conn, req: http::request::Builder, body: String) -> Answer {
    let mut send = conn.send.clone().ready().await.unwrap();
    let (response, mut stream) = send.send_request(req.body(()).unwrap(), false).unwrap();
    stream.send_data(Bytes::from(body), true).unwrap();
    let response = response.await.unwrap();
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: serde_json::from_slice(&data).expect("answers are JSON"),
    }
}

async fn get_token(conn: &mut Conn, assertion: &str) -> Answer {
    let req = Request::post("https://localhost/token")
        .header("content-type", "application/x-www-form-urlencoded");
    let form = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
    );
    request(conn, req, form).await
}

async fn access_token(mock: &MockFcm, conn: &mut Conn) -> String {
    let answer = get_token(conn, &assertion(mock, claims(mock), None)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["access_token"].as_str().unwrap().to_owned()
}

async fn send(conn: &mut Conn, project: &str, bearer: &str, message: Value) -> Answer {
    let req = Request::post(format!(
        "https://localhost/v1/projects/{project}/messages:send"
    ))
    .header("authorization", format!("Bearer {bearer}"))
    .header("content-type", "application/json");
    request(conn, req, json!({ "message": message }).to_string()).await
}

fn wake(token: &str) -> Value {
    json!({
        "token": token,
        "data": {"call_id": "abc", "kind": "incoming_call"},
        "android": {"priority": "HIGH", "ttl": "30s"},
    })
}

fn error_code(answer: &Answer) -> &str {
    answer.body["error"]["details"][0]["errorCode"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn a_granted_token_sends_and_the_message_is_recorded() {
    let dir = state_dir();
    let mock = start(dir.path(), Duration::from_secs(3599));
    let account: Value =
        serde_json::from_slice(&std::fs::read(mock.service_account_path()).unwrap()).unwrap();
    assert_eq!(account["type"], "service_account");
    assert_eq!(account["project_id"], "pushpark-test");
    assert_eq!(
        account["token_uri"],
        format!("https://{}/token", mock.addr())
    );
    let mut conn = connect(&mock).await;
    let grant = get_token(&mut conn, &assertion(&mock, claims(&mock), None)).await;
    assert_eq!(grant.body["token_type"], "Bearer");
    assert_eq!(grant.body["expires_in"], 3599);
    let bearer = grant.body["access_token"].as_str().unwrap();
    assert!(bearer.starts_with("ya29."));

    let answer = send(&mut conn, "pushpark-test", bearer, wake(TOKEN)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let name = answer.body["name"].as_str().unwrap();
    assert!(name.starts_with("projects/pushpark-test/messages/0:"));
    let got = mock
        .wait_for_message(TOKEN, Duration::from_secs(1))
        .unwrap();
    assert_eq!(got.name, name);
    assert_eq!(got.project, "pushpark-test");
    assert_eq!(got.data["call_id"], "abc");
    assert_eq!(got.priority.as_deref(), Some("HIGH"));
    assert_eq!(got.ttl.as_deref(), Some("30s"));
    assert_eq!(mock.stats().accepted, 1);
}

#[tokio::test]
async fn bad_assertions_get_invalid_grant() {
    let dir = state_dir();
    let mock = start(dir.path(), Duration::from_secs(3599));
    let mut conn = connect(&mock).await;
    // A changed signature byte (not the last character: its low bits are padding).
    let mut tampered = assertion(&mock, claims(&mock), None);
    let at = tampered.len() - 10;
    let flipped = if &tampered[at..at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(at..at + 1, flipped);
    let mut wrong_aud = claims(&mock);
    wrong_aud["aud"] = json!("https://oauth2.googleapis.com/token");
    let mut expired = claims(&mock);
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    let mut too_long = claims(&mock);
    too_long["exp"] = json!(now() + 7200);
    let mut stranger = claims(&mock);
    stranger["iss"] = json!("someone@else.iam.gserviceaccount.com");
    for (jwt, description) in [
        (tampered, "Invalid JWT Signature."),
        (assertion(&mock, wrong_aud, None), "Failed audience check"),
        (assertion(&mock, expired, None), "short-lived token"),
        (assertion(&mock, too_long, None), "short-lived token"),
        (assertion(&mock, stranger, None), "account not found"),
    ] {
        let answer = get_token(&mut conn, &jwt).await;
        assert_eq!(answer.status, 400, "{description}");
        assert_eq!(answer.body["error"], "invalid_grant");
        let got = answer.body["error_description"].as_str().unwrap();
        assert!(got.contains(description), "{got:?} lacks {description:?}");
    }
    mock.reject_token_requests(1);
    let answer = get_token(&mut conn, &assertion(&mock, claims(&mock), None)).await;
    assert_eq!(answer.status, 503);
    access_token(&mock, &mut conn).await;
}

#[tokio::test]
async fn unknown_and_expired_access_tokens_get_unauthenticated() {
    let dir = state_dir();
    let mock = start(dir.path(), Duration::from_secs(1));
    let mut conn = connect(&mock).await;
    let answer = send(&mut conn, "pushpark-test", "ya29.made-up", wake(TOKEN)).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(answer.body["error"]["code"], 401);

    let bearer = access_token(&mock, &mut conn).await;
    let answer = send(&mut conn, "pushpark-test", &bearer, wake(TOKEN)).await;
    assert_eq!(answer.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answer = send(&mut conn, "pushpark-test", &bearer, wake(TOKEN)).await;
    assert_eq!(answer.status, 401, "expired");
    assert_eq!(mock.message_count(), 1);
}

#[tokio::test]
async fn bad_messages_get_googles_errors() {
    let dir = state_dir();
    let mock = start(dir.path(), Duration::from_secs(3599));
    let mut conn = connect(&mock).await;
    let bearer = access_token(&mock, &mut conn).await;

    let answer = send(&mut conn, "another-project", &bearer, wake(TOKEN)).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.body["error"]["status"], "PERMISSION_DENIED");

    let mut numbers = wake(TOKEN);
    numbers["data"] = json!({"n": 12});
    let mut bad_ttl = wake(TOKEN);
    bad_ttl["android"]["ttl"] = json!("30");
    let mut too_big = wake(TOKEN);
    too_big["data"] = json!({"blob": "x".repeat(4096)});
    for (message, expected) in [
        (
            numbers,
            "Invalid value at 'message.data[0].value' (TYPE_STRING), 12",
        ),
        (bad_ttl, "Invalid value at 'message.android.ttl'"),
        (too_big, "message is too big"),
        (
            wake("not a token"),
            "The registration token is not a valid FCM registration token",
        ),
    ] {
        let answer = send(&mut conn, "pushpark-test", &bearer, message).await;
        assert_eq!(answer.status, 400);
        assert_eq!(answer.body["error"]["code"], 400);
        assert_eq!(answer.body["error"]["status"], "INVALID_ARGUMENT");
        let got = answer.body["error"]["message"].as_str().unwrap();
        assert!(got.contains(expected), "{got:?} lacks {expected:?}");
    }
    assert_eq!(mock.message_count(), 0);
    assert_eq!(mock.stats().rejected, 5);
}

#[tokio::test]
async fn scripted_errors_answer_like_google() {
    let dir = state_dir();
    let mock = start(dir.path(), Duration::from_secs(3599));
    let mut conn = connect(&mock).await;
    let bearer = access_token(&mock, &mut conn).await;
    let gone = format!("{TOKEN}gone");
    let busy = format!("{TOKEN}busy");
    mock.script(&gone, Scripted::Reject(FcmError::Unregistered));
    let quota = FcmError::QuotaExceeded {
        retry_after: Some(7),
    };
    mock.script(&busy, Scripted::RejectNext(quota, 1));

    let answer = send(&mut conn, "pushpark-test", &bearer, wake(&gone)).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.body["error"]["status"], "NOT_FOUND");
    assert_eq!(
        answer.body["error"]["details"][0]["@type"],
        "type.googleapis.com/google.firebase.fcm.v1.FcmError"
    );
    assert_eq!(error_code(&answer), "UNREGISTERED");

    let answer = send(&mut conn, "pushpark-test", &bearer, wake(&busy)).await;
    assert_eq!(answer.status, 429);
    assert_eq!(error_code(&answer), "QUOTA_EXCEEDED");
    assert_eq!(answer.headers["retry-after"], "7");
    let answer = send(&mut conn, "pushpark-test", &bearer, wake(&busy)).await;
    assert_eq!(answer.status, 200, "only the next one was scripted");

    mock.set_faults(Faults {
        server_error: Some(FcmError::Unavailable {
            retry_after: Some(3),
        }),
        server_error_times: Some(1),
        ..Faults::default()
    });
    let answer = send(&mut conn, "pushpark-test", &bearer, wake(TOKEN)).await;
    assert_eq!(answer.status, 503);
    assert_eq!(error_code(&answer), "UNAVAILABLE");
    assert_eq!(answer.headers["retry-after"], "3");
    let answer = send(&mut conn, "pushpark-test", &bearer, wake(TOKEN)).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn goaway_after_streams_closes_the_connection() {
    let dir = state_dir();
    let mock = start(dir.path(), Duration::from_secs(3599));
    let mut conn = connect(&mock).await;
    let bearer = access_token(&mock, &mut conn).await;
    mock.set_faults(Faults {
        goaway_after_streams: Some(1),
        ..Faults::default()
    });
    let mut conn = connect(&mock).await;
    let answer = send(&mut conn, "pushpark-test", &bearer, wake(TOKEN)).await;
    assert_eq!(answer.status, 200);
    // The connection ends once the GOAWAY's streams are answered: cleanly, or with a
    // broken pipe when the client was still writing (a window update) as the mock closed.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn.driver)
        .await
        .expect("the connection closes")
        .unwrap();
    if let Err(e) = ended {
        assert!(e.is_io(), "the connection ended with {e}");
    }
    assert_eq!(mock.stats().goaways, 1);
}

#[test]
fn the_command_writes_the_service_account_and_says_where_it_listens() {
    use std::io::BufRead;
    let dir = state_dir();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pushpark"))
        .args(["mock-fcm", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let account: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("service-account.json")).unwrap())
            .unwrap();
    assert_eq!(account["token_uri"], format!("https://{addr}/token"));
    assert!(dir.path().join("ca.pem").exists());
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn the_control_port_scripts_and_watches_like_the_mock_apns() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let dir = state_dir();
    let mock = start(dir.path(), Duration::from_secs(3599));
    let control = mock.start_control("127.0.0.1:0".parse().unwrap()).unwrap();
    let command = |line: Value| async move {
        let tcp = tokio::net::TcpStream::connect(control).await.unwrap();
        let (read, mut write) = tcp.into_split();
        write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let mut lines = BufReader::new(read).lines();
        let reply: Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        (reply, lines, write)
    };
    let (reply, ..) = command(json!({"script": {
        "token": TOKEN, "reason": "QUOTA_EXCEEDED", "retry_after": 9, "times": 1,
    }}))
    .await;
    assert_eq!(reply, json!({"ok": true}));
    let (reply, ..) = command(json!({"script": {"token": TOKEN, "reason": "Unregistered"}})).await;
    assert!(reply["error"]
        .as_str()
        .unwrap()
        .contains("unknown FCM error code"));
    let (reply, mut watched, _keep) = command(json!({"watch": true, "token": TOKEN})).await;
    assert_eq!(reply, json!({"ok": true}));

    let mut conn = connect(&mock).await;
    let bearer = access_token(&mock, &mut conn).await;
    let answer = send(&mut conn, "pushpark-test", &bearer, wake(TOKEN)).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.headers["retry-after"], "9");
    let answer = send(&mut conn, "pushpark-test", &bearer, wake(TOKEN)).await;
    assert_eq!(answer.status, 200);
    let line: Value = serde_json::from_str(&watched.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(line["token"], TOKEN);
    assert_eq!(line["data"]["call_id"], "abc");
    assert_eq!(line["priority"], "HIGH");

    let (reply, ..) = command(json!({"reject_token_requests": 1})).await;
    assert_eq!(reply, json!({"ok": true}));
    let answer = get_token(&mut conn, &assertion(&mock, claims(&mock), None)).await;
    assert_eq!(answer.status, 503);
}

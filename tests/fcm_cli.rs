//! `pushpark fcm send` and `pushpark fcm bench`, running the built binary against
//! the mock FCM (in this process) with the service-account file the mock wrote.

use pushpark::mock::fcm::{FcmConfig, FcmError, MockFcm, Scripted};
use std::process::{Command, Output};

const TOKEN: &str = "eH0fLhuiRj2Np7UQ-opXAm:APA91bGtC-wH4sgW1jWkMKIZf7FYkm_RTQb7Jid7DfSJnC";

fn fcm(mock: &MockFcm, cmd: &str, token: &str, extra: &[&str]) -> Output {
    let account = mock.service_account_path();
    let ca = mock.ca_pem_path();
    let endpoint = format!("127.0.0.1:{}", mock.addr().port());
    Command::new(env!("CARGO_BIN_EXE_pushpark"))
        .args(["fcm", cmd, "--service-account", account.to_str().unwrap()])
        .args(["--token", token, "--endpoint", &endpoint])
        .args(["--ca", ca.to_str().unwrap(), "--timeout", "10"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn send_delivers_and_a_refusal_exits_1_with_fcms_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockFcm::start(FcmConfig::new(dir.path())).unwrap();
    let out = fcm(&mock, "send", TOKEN, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("delivered latency_ms="), "{stdout}");
    assert_eq!(mock.message_count(), 1);

    mock.script(TOKEN, Scripted::Reject(FcmError::Unregistered));
    let out = fcm(&mock, "send", TOKEN, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("rejected status=404 reason=UNREGISTERED token_dead=true"),
        "{stdout}"
    );
}

#[test]
fn bench_prints_the_same_last_line_as_apns_bench() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockFcm::start(FcmConfig::new(dir.path())).unwrap();
    let out = fcm(
        &mock,
        "bench",
        TOKEN,
        &["--count", "2000", "--concurrency", "50"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap();
    let keys: Vec<&str> = last
        .split(' ')
        .map(|kv| kv.split('=').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["pushes_per_sec", "p50_ms", "p99_ms", "errors"],
        "{last}"
    );
    assert!(last.ends_with("errors=0"), "{last}");
    assert_eq!(mock.message_count(), 2000);
}

#[test]
fn token_prints_the_bearer_and_fails_when_the_token_endpoint_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockFcm::start(FcmConfig::new(dir.path())).unwrap();
    let token = |mock: &MockFcm| {
        Command::new(env!("CARGO_BIN_EXE_pushpark"))
            .args(["fcm", "token", "--service-account"])
            .arg(mock.service_account_path())
            .arg("--ca")
            .arg(mock.ca_pem_path())
            .output()
            .unwrap()
    };
    let out = token(&mock);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // h2load in bench/fcm_vs_peers.sh shows the mock accepts it.
    let bearer = stdout.trim_end().strip_prefix("Bearer ").unwrap();
    assert!(!bearer.is_empty() && bearer.bytes().all(|b| b.is_ascii_graphic()));

    mock.reject_token_requests(1);
    let out = token(&mock);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

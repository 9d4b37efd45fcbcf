//! `pushpark apns send`: outcomes and one-line errors, running the built binary
//! against the mock APNs.

use pushpark::apns::Reason;
use pushpark::mock::{Faults, MockApns, MockConfig, Scripted};
use std::path::Path;
use std::process::{Command, Output};

const TOKEN: &str = "7b3a1e0f9c2d4b5a6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5";

fn start_mock() -> (MockApns, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (MockApns::start(MockConfig::new(dir.path())).unwrap(), dir)
}

fn pushpark(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pushpark"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

/// `apns send` to `endpoint` with the given CA and key, plus `extra` flags.
fn send(endpoint: &str, ca: Option<&Path>, key: &Path, token: &str, extra: &[&str]) -> Output {
    let mut args = vec!["apns", "send", "--endpoint", endpoint];
    let ca = ca.map(|p| p.to_str().unwrap().to_string());
    if let Some(ca) = &ca {
        args.extend(["--ca", ca]);
    }
    let key = key.to_str().unwrap();
    args.extend([
        "--key",
        key,
        "--key-id",
        "TESTKEY001",
        "--team-id",
        "TESTTEAM01",
    ]);
    args.extend([
        "--topic",
        "com.example.phone.voip",
        "--token",
        token,
        "--timeout",
        "10",
    ]);
    args.extend(extra);
    pushpark(&args)
}

fn endpoint(mock: &MockApns) -> String {
    format!("127.0.0.1:{}", mock.addr().port())
}

/// Exit non-zero with exactly one line on stderr, containing `expected`, and no panic.
fn assert_one_line_error(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}", out.status);
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.starts_with("pushpark: error: "), "stderr: {stderr}");
    assert!(stderr.contains(expected), "want {expected:?} in: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("BEGIN"),
        "{stderr}"
    );
}

#[test]
fn send_delivers_and_prints_the_outcome() {
    let (mock, _dir) = start_mock();
    let out = send(
        &endpoint(&mock),
        Some(&mock.ca_pem_path()),
        &mock.key_path(),
        TOKEN,
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("delivered status=200 apns-id="),
        "{stdout}"
    );
    let got = mock
        .wait_for_push(TOKEN, std::time::Duration::from_secs(5))
        .unwrap();
    assert!(stdout.contains(&got.apns_id.to_string()), "{stdout}");
    assert_eq!(got.header("apns-push-type"), Some("voip"));
}

#[test]
fn send_reports_a_rejection_and_exits_non_zero() {
    let (mock, _dir) = start_mock();
    mock.script(TOKEN, Scripted::Reject(Reason::Unregistered));
    let out = send(
        &endpoint(&mock),
        Some(&mock.ca_pem_path()),
        &mock.key_path(),
        TOKEN,
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.starts_with("rejected status=410 reason=Unregistered token_dead=true timestamp="),
        "{stdout}"
    );
    assert!(stdout.contains("apns-id=") && stdout.contains("latency_ms="));
}

#[test]
fn key_problems_are_one_clear_line() {
    let (mock, dir) = start_mock();
    let ca = mock.ca_pem_path();
    let ep = endpoint(&mock);

    let missing = dir.path().join("missing.p8");
    let out = send(&ep, Some(&ca), &missing, TOKEN, &[]);
    assert_one_line_error(&out, "cannot read key file");

    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let wrong = dir.path().join("p384.p8");
    std::fs::write(&wrong, p384.serialize_pem()).unwrap();
    let out = send(&ep, Some(&ca), &wrong, TOKEN, &[]);
    assert_one_line_error(&out, "not a PEM PKCS#8 P-256");

    let garbage = dir.path().join("garbage.p8");
    std::fs::write(&garbage, [0xff, 0xfe, 0x00, 0x01]).unwrap();
    assert_one_line_error(&send(&ep, Some(&ca), &garbage, TOKEN, &[]), "P-256");
    assert_eq!(mock.push_count(), 0);
}

#[test]
fn bad_token_hex_is_refused_before_sending() {
    let (mock, _dir) = start_mock();
    let bad = "zz".repeat(32);
    let out = send(
        &endpoint(&mock),
        Some(&mock.ca_pem_path()),
        &mock.key_path(),
        &bad,
        &[],
    );
    assert_one_line_error(&out, "device token must be hex");
    assert_eq!(mock.stats().connections, 0);
}

#[test]
fn connection_problems_are_one_clear_line() {
    let (mock, dir) = start_mock();
    let key = mock.key_path();

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = send(
        &format!("127.0.0.1:{port}"),
        Some(&mock.ca_pem_path()),
        &key,
        TOKEN,
        &[],
    );
    assert_one_line_error(&out, "cannot connect to 127.0.0.1");

    // Without the mock's CA its certificate is not trusted.
    let out = send(&endpoint(&mock), None, &key, TOKEN, &[]);
    assert_one_line_error(&out, "TLS handshake with");

    mock.set_faults(Faults {
        refuse_tls: true,
        ..Faults::default()
    });
    let out = send(
        &endpoint(&mock),
        Some(&mock.ca_pem_path()),
        &key,
        TOKEN,
        &[],
    );
    assert_one_line_error(&out, "TLS handshake with");
    mock.set_faults(Faults::default());

    let bad_ca = dir.path().join("bad-ca.pem");
    std::fs::write(&bad_ca, "not a certificate").unwrap();
    let out = send(&endpoint(&mock), Some(&bad_ca), &key, TOKEN, &[]);
    assert_one_line_error(&out, "CA file");
    let out = send(
        &endpoint(&mock),
        Some(&dir.path().join("none.pem")),
        &key,
        TOKEN,
        &[],
    );
    assert_one_line_error(&out, "cannot read");
    assert_one_line_error(
        &send("no-port", Some(&mock.ca_pem_path()), &key, TOKEN, &[]),
        "endpoint",
    );
    assert_eq!(mock.push_count(), 0);
}

const P12_PASSWORD: &str = "correct horse battery";

fn client_p12(mock: &MockApns, path: &Path) {
    std::fs::write(path, mock.client_p12(P12_PASSWORD).unwrap()).unwrap();
}

fn start_cert_auth_mock() -> (MockApns, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = MockConfig::new(dir.path());
    cfg.require_client_cert = Some(dir.path().join("ca.pem"));
    (MockApns::start(cfg).unwrap(), dir)
}

/// `apns send` with certificate auth from `p12`, the password in the environment.
fn send_p12(mock: &MockApns, p12: &Path, password: &str, extra: &[&str]) -> Output {
    let (ep, ca) = (endpoint(mock), mock.ca_pem_path());
    let mut args = vec![
        "apns",
        "send",
        "--endpoint",
        &ep,
        "--ca",
        ca.to_str().unwrap(),
    ];
    args.extend([
        "--p12",
        p12.to_str().unwrap(),
        "--topic",
        "com.example.phone.voip",
    ]);
    args.extend(["--token", TOKEN, "--timeout", "10"]);
    args.extend(extra);
    Command::new(env!("CARGO_BIN_EXE_pushpark"))
        .args(args)
        .env("PUSHPARK_P12_PASSWORD", password)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

fn assert_delivered(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout} {stderr}");
    assert!(stdout.starts_with("delivered status=200"), "{stdout}");
}

#[test]
fn send_authenticates_with_a_p12_file_and_its_password_from_a_file_or_the_environment() {
    let (mock, dir) = start_cert_auth_mock();
    let p12 = dir.path().join("voip.p12");
    client_p12(&mock, &p12);
    assert_delivered(&send_p12(&mock, &p12, P12_PASSWORD, &[]));

    let password_file = dir.path().join("p12.pass");
    std::fs::write(&password_file, format!("{P12_PASSWORD}\n")).unwrap();
    let from_file = ["--p12-password-file", password_file.to_str().unwrap()];
    assert_delivered(&send_p12(&mock, &p12, "not it", &from_file));
    assert_eq!(mock.push_count(), 2);
    assert!(mock
        .pushes()
        .iter()
        .all(|p| p.header("authorization").is_none()));

    // What `openssl pkcs12 -export -legacy` writes is Keychain's format
    // exactly: RC2-40 for the certificates, 3DES for the key.
    let openssl3 = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"OpenSSL 3"));
    if !openssl3 {
        eprintln!("no OpenSSL 3 command: the openssl-made legacy .p12 is not tried");
        return;
    }
    let (cert, key) = mock.client_cert_paths();
    let legacy = dir.path().join("legacy.p12");
    let status = Command::new("openssl")
        .args([
            "pkcs12",
            "-export",
            "-legacy",
            "-passout",
            "env:PUSHPARK_P12_PASSWORD",
        ])
        .args([
            "-in",
            cert.to_str().unwrap(),
            "-inkey",
            key.to_str().unwrap(),
        ])
        .args(["-out", legacy.to_str().unwrap()])
        .env("PUSHPARK_P12_PASSWORD", P12_PASSWORD)
        .status()
        .unwrap();
    assert!(status.success());
    assert_delivered(&send_p12(&mock, &legacy, P12_PASSWORD, &[]));
    assert_eq!(mock.push_count(), 3);
}

#[test]
fn p12_problems_are_one_clear_line_without_the_password() {
    let (mock, dir) = start_cert_auth_mock();
    let p12 = dir.path().join("voip.p12");
    client_p12(&mock, &p12);
    let out = send_p12(&mock, &p12, "Wrong-Password-123", &[]);
    assert_one_line_error(&out, "PKCS#12: wrong password, or a damaged file");
    let everything = [out.stdout, out.stderr].concat();
    assert!(!String::from_utf8_lossy(&everything).contains("Wrong-Password-123"));

    let missing = dir.path().join("missing.p12");
    let out = send_p12(&mock, &missing, P12_PASSWORD, &[]);
    assert_one_line_error(&out, "cannot read PKCS#12 file");

    let (pem_cert, _) = mock.client_cert_paths();
    let out = send_p12(&mock, &pem_cert, P12_PASSWORD, &[]);
    assert_one_line_error(&out, "not a PKCS#12 file");

    let no_file = dir.path().join("no.pass");
    let out = send_p12(
        &mock,
        &p12,
        P12_PASSWORD,
        &["--p12-password-file", no_file.to_str().unwrap()],
    );
    assert_one_line_error(&out, "cannot read password file");
    assert_eq!(mock.push_count(), 0);
}

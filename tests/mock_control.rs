//! `pushpark mock-apns` as a process: files, the `listening on` line, the
//! JSON-lines control port, and a clean stop on SIGTERM.

mod mock_common;

use mock_common::*;
use pushpark::apns::jwt::JwtSigner;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct MockProcess {
    child: Child,
    listen: SocketAddr,
    control: SocketAddr,
}

fn spawn_mock(state_dir: &std::path::Path) -> MockProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushpark"))
        .args([
            "mock-apns",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ])
        .arg("--state-dir")
        .arg(state_dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut control = None;
    let listen = loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the mock prints `listening on` once ready");
        };
        if let Some(addr) = line.strip_prefix("control on ") {
            control = Some(addr.parse().unwrap());
        }
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.parse().unwrap();
        }
    };
    MockProcess {
        child,
        listen,
        control: control.expect("control address printed first"),
    }
}

/// A failing test does not leave the process behind.
impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Control {
    lines: BufReader<TcpStream>,
    write: TcpStream,
}

impl Control {
    fn open(addr: SocketAddr) -> Control {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Control {
            write: tcp.try_clone().unwrap(),
            lines: BufReader::new(tcp),
        }
    }

    fn send_raw(&mut self, line: &str) -> Value {
        writeln!(self.write, "{line}").unwrap();
        self.read()
    }

    fn send(&mut self, command: Value) -> Value {
        self.send_raw(&command.to_string())
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.lines.read_line(&mut line).expect("a reply line");
        serde_json::from_str(&line).expect("replies are JSON")
    }
}

#[tokio::test]
async fn the_cli_mock_serves_pushes_reports_them_on_the_control_port_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut mock = spawn_mock(dir.path());
    for file in [
        "ca.pem",
        "AuthKey_TESTKEY001.p8",
        "client-cert.pem",
        "client-key.pem",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} created");
    }

    let mut watcher = Control::open(mock.control);
    let other = "5".repeat(64);
    let mut one_token = Control::open(mock.control);
    assert_eq!(
        one_token.send(json!({"watch": true, "token": other.to_uppercase()})),
        json!({"ok": true})
    );
    assert_eq!(watcher.send(json!({"watch": true})), json!({"ok": true}));
    let mut control = Control::open(mock.control);
    let gone = "9".repeat(64);
    assert_eq!(
        control.send(json!({"script": {"token": gone, "reason": "Unregistered"}})),
        json!({"ok": true})
    );
    assert!(control.send_raw("not json")["error"].is_string());
    assert!(
        control.send(json!({"script": {"token": gone, "reason": "NoSuchReason"}}))["error"]
            .as_str()
            .unwrap()
            .contains("NoSuchReason")
    );
    assert!(control.send(json!({"frobnicate": 1}))["error"].is_string());

    let key = std::fs::read_to_string(dir.path().join("AuthKey_TESTKEY001.p8")).unwrap();
    let jwt = JwtSigner::from_p8_pem(&key, "TESTKEY001", "TESTTEAM01")
        .unwrap()
        .sign(now());
    let mut c = connect_to(mock.listen, tls(&dir.path().join("ca.pem"), None)).await;
    let id = "0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9";
    let a = send(
        &mut c.send,
        push(TOKEN, &jwt).header("apns-id", id),
        PAYLOAD,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    let a = send(&mut c.send, push(&gone, &jwt), PAYLOAD).await.unwrap();
    assert_eq!((a.status.as_u16(), a.reason()), (410, "Unregistered"));

    let a = send(&mut c.send, push(&other, &jwt), r#"{"n":2}"#)
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let only = tokio::task::spawn_blocking(move || one_token.read())
        .await
        .unwrap();
    assert_eq!(
        (only["token"].as_str(), &only["payload"]),
        (Some(other.as_str()), &json!({"n": 2}))
    );

    let seen = tokio::task::spawn_blocking(move || watcher.read())
        .await
        .unwrap();
    assert_eq!(
        seen,
        json!({
            "token": TOKEN,
            "topic": TOPIC,
            "push_type": "voip",
            "apns_id": id.to_lowercase(),
            "payload": {"aps": {}, "call_id": "abc"},
        })
    );

    assert_eq!(
        control.send(
            json!({"faults": {"server_error": "ServiceUnavailable", "server_error_times": 1}})
        ),
        json!({"ok": true})
    );
    let a = send(&mut c.send, push(TOKEN, &jwt), PAYLOAD).await.unwrap();
    assert_eq!((a.status.as_u16(), a.reason()), (503, "ServiceUnavailable"));
    let stats = control.send(json!({"stats": true}));
    assert_eq!(
        (stats["accepted"].as_u64(), stats["rejected"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(stats["connections"], 1);

    // The next push hangs its connection; the stats say so.
    assert_eq!(
        control.send(json!({"faults": {"silence_mid_stream": 1}})),
        json!({"ok": true})
    );
    let mut hung = connect_to(mock.listen, tls(&dir.path().join("ca.pem"), None)).await;
    let req = push(TOKEN, &jwt);
    let unanswered = tokio::spawn(async move { send(&mut hung.send, req, PAYLOAD).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    while control.send(json!({"stats": true}))["silenced_connections"] != 1 {
        assert!(Instant::now() < deadline, "the push arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!unanswered.is_finished());
    unanswered.abort();

    unsafe { libc::kill(mock.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = mock.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the mock stops on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "clean exit: {status:?}");
}

#[test]
fn the_cli_mock_reuses_its_ca_and_explains_a_bad_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    drop(spawn_mock(dir.path()));
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    drop(spawn_mock(dir.path()));
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca);

    let not_a_dir = dir.path().join("ca.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_pushpark"))
        .args(["mock-apns", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&not_a_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("pushpark: error: cannot start the mock APNs"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line, no panic: {err}");
}

//! Builds the C harness programs in tests/c against c-include/pushpark.h and libpushpark.so
//! (which it first brings up to date with `cargo build --lib`, so they never test a stale
//! library) with `-Wall -Wextra -Werror -pedantic`, and runs them against the real
//! mock APNs over TLS: plainly, under AddressSanitizer + UBSan, and under valgrind memcheck
//! (leaks are errors). Each program checks its own scenarios and exits non-zero on the first
//! failure; this side checks what only the mock can see (the pushes' headers and payload).

use pushpark::apns::reason::Reason;
use pushpark::mock::{MockApns, MockConfig, Scripted};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod built_lib;

/// The device tokens the C programs use that this side needs to know.
const TOKEN_ALICE: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DEAD_TOKEN: &str = "deaddeaddeaddeaddeaddeaddeaddeaddeaddeaddeaddeaddeaddeaddeaddead";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Plain,
    Sanitizers,
    Valgrind,
}

/// A directory where the library is found under its SONAME (libpushpark.so.1, which
/// programs linked against it load), as the installed package provides it.
fn soname_dir(out_dir: &Path, so: &Path) -> PathBuf {
    let dir = out_dir.join("lib");
    std::fs::create_dir_all(&dir).expect("creating the library link dir");
    let link = dir.join("libpushpark.so.1");
    // Concurrent tests create the same link: an existing one is as good as ours.
    match std::os::unix::fs::symlink(so, &link) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            panic!("linking {}: {e}", link.display())
        }
        _ => dir,
    }
}

fn compile(program: &str, mode: Mode) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = built_lib::lib_dir();
    // One executable per program, mode and profile: tests run concurrently, and a binary
    // being rewritten while another test runs it would fail with ETXTBSY.
    let profile = lib.file_name().expect("target/<profile>");
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("c-harness")
        .join(profile);
    std::fs::create_dir_all(&out_dir).expect("creating the harness build dir");
    let exe = out_dir.join(format!("{program}-{mode:?}"));
    let so = lib.join("libpushpark.so");
    let runtime_dir = soname_dir(&out_dir, &so);
    let mut cc = Command::new("cc");
    cc.args([
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-g",
        "-pthread",
    ])
    .arg("-I")
    .arg(root.join("c-include"))
    .arg(root.join("tests/c").join(format!("{program}.c")))
    .arg("-o")
    .arg(&exe)
    .arg("-L")
    .arg(&lib)
    .arg(format!("-Wl,-rpath,{}", runtime_dir.display()))
    .arg("-lpushpark");
    if mode == Mode::Sanitizers {
        cc.args([
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=all",
        ]);
    }
    let status = cc.status().expect("running cc");
    assert!(status.success(), "compiling tests/c/{program}.c failed");
    exe
}

/// Compiles and runs one harness program against a fresh mock, answering its `sync TAG`
/// lines after `on_sync(TAG, mock)`; returns the mock so the caller can check what reached it.
fn run(program: &str, mode: Mode, mut on_sync: impl FnMut(&str, &MockApns)) -> MockApns {
    let exe = compile(program, mode);
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let mock = MockApns::start(MockConfig::new(scratch.path().join("mock"))).expect("mock APNs");
    let work = scratch.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    let mut cmd = match mode {
        Mode::Valgrind => {
            let mut v = Command::new("valgrind");
            // Leaks and invalid accesses only: ring's AES-GCM assembly computes TLS record
            // tags in ways memcheck cannot follow, so its undefined-value tracking reports
            // false positives inside every TLS connection (ASan + UBSan runs cover the rest).
            v.args([
                "--undef-value-errors=no",
                "--error-exitcode=99",
                "--leak-check=full",
                "--show-leak-kinds=definite,indirect",
                "--errors-for-leak-kinds=definite,indirect",
                "--quiet",
            ])
            .arg(&exe);
            v
        }
        _ => Command::new(&exe),
    };
    let mut child = cmd
        .arg(format!("localhost:{}", mock.addr().port()))
        .arg(mock.ca_pem_path())
        .arg(mock.key_path())
        .arg(&work)
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("starting {program} ({mode:?}): {e}; scripts/deps installs what is needed")
        });
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout_text = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.expect("reading the program's stdout");
        if let Some(tag) = line.strip_prefix("sync ") {
            on_sync(tag, &mock);
            stdin
                .write_all(b"go\n")
                .and_then(|()| stdin.flush())
                .expect("answering a sync");
        }
        stdout_text.push_str(&line);
        stdout_text.push('\n');
    }
    let status = child.wait().expect("waiting for the program");
    let stderr = stderr
        .join()
        .unwrap()
        .expect("reading the program's stderr");
    assert!(
        status.success(),
        "{program} ({mode:?}) failed ({status}):\n--- stdout\n{stdout_text}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout_text.contains("all checks passed"),
        "{program} printed: {stdout_text}"
    );
    mock
}

fn no_sync(tag: &str, _: &MockApns) {
    panic!("unexpected sync {tag}");
}

/// flow.c tells the id its PUSH_RESULT gave alice's push, and asks for its dead token to
/// be answered 410 once the device has registered.
fn flow_sync(tag: &str, mock: &MockApns) {
    if let Some(id) = tag.strip_prefix("alice-push ") {
        let alice = mock.pushes().into_iter().find(|p| p.token == TOKEN_ALICE);
        let alice = alice.expect("alice's push reached the mock");
        assert_eq!(
            alice.apns_id.to_string(),
            id,
            "the event's push id is the apns-id"
        );
        assert_eq!(alice.payload_json()["push_id"], id);
        return;
    }
    assert_eq!(tag, "kill-dead-token");
    mock.script(DEAD_TOKEN, Scripted::Reject(Reason::Unregistered));
}

/// The push that woke alice, as Apple would have received it.
fn check_alice_push(mock: &MockApns) {
    let pushes: Vec<_> = mock
        .pushes()
        .into_iter()
        .filter(|p| p.token == TOKEN_ALICE)
        .collect();
    assert_eq!(pushes.len(), 1, "exactly one push to alice");
    let push = &pushes[0];
    assert_eq!(push.header("apns-push-type"), Some("voip"));
    assert_eq!(push.topic(), Some("com.example.app.voip"));
    assert_eq!(push.header("apns-priority"), Some("10"));
    assert!(push
        .header("apns-expiration")
        .is_some_and(|v| v.parse::<u64>().is_ok()));
    let payload = push.payload_json();
    assert_eq!(payload["call_id"], "call-alice@test");
    assert_eq!(payload["caller"], "sip:zed@example.com");
    assert_eq!(payload["caller_name"], "Zed Caller");
    assert_eq!(payload["aor"], "sip:alice@example.com");
    assert!(payload["aps"].is_object(), "payload: {payload}");
    assert!(
        payload["push_id"].as_str().is_some_and(|id| !id.is_empty()),
        "payload: {payload}"
    );
}

#[test]
fn misuse() {
    run("misuse", Mode::Plain, no_sync);
}

#[test]
fn misuse_sanitizers() {
    run("misuse", Mode::Sanitizers, no_sync);
}

#[test]
fn flow() {
    let mock = run("flow", Mode::Plain, flow_sync);
    check_alice_push(&mock);
}

#[test]
fn flow_sanitizers() {
    run("flow", Mode::Sanitizers, flow_sync);
}

#[test]
fn misuse_valgrind() {
    run("misuse", Mode::Valgrind, no_sync);
}

#[test]
fn endings() {
    run("endings", Mode::Plain, no_sync);
}

#[test]
fn endings_sanitizers() {
    run("endings", Mode::Sanitizers, no_sync);
}

#[test]
fn endings_valgrind() {
    run("endings", Mode::Valgrind, no_sync);
}

#[test]
fn fork() {
    run("fork", Mode::Plain, no_sync);
}

#[test]
fn fork_sanitizers() {
    run("fork", Mode::Sanitizers, no_sync);
}

#[test]
fn fork_valgrind() {
    run("fork", Mode::Valgrind, no_sync);
}

#[test]
fn host_data() {
    run("host_data", Mode::Plain, no_sync);
}

#[test]
fn host_data_sanitizers() {
    run("host_data", Mode::Sanitizers, no_sync);
}

#[test]
fn spawn() {
    run("spawn", Mode::Plain, no_sync);
}

#[test]
fn spawn_sanitizers() {
    run("spawn", Mode::Sanitizers, no_sync);
}

#[test]
fn threads() {
    run("threads", Mode::Plain, no_sync);
}

#[test]
fn threads_sanitizers() {
    run("threads", Mode::Sanitizers, no_sync);
}

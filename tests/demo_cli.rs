//! `pushpark demo` as the README runs it: the built binary on one Kamailio, on OpenSIPS
//! (`--host opensips`) and on two Kamailio nodes sharing a Redis (`--nodes 2`). Each must exit
//! 0 and print its call's timeline in the order the call happens.

mod built_lib;
mod kamailio_module;
mod opensips_module;
#[allow(dead_code)] // the rig serves the demo and the e2e tests; these use the module checks
#[path = "../src/bin/pushpark/rig.rs"]
mod rig;

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Each demo starts a SIP server with its engine (two with `--nodes 2`): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Far more than a demo takes (its call ends within its park timeout plus 20 s).
const DEMO_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `pushpark demo <args>` to its end; its exit status and stdout (stderr appended). A
/// demo still running after `DEMO_TIMEOUT` gets SIGTERM (it then stops its processes).
fn demo(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushpark"))
        .arg("demo")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pushpark demo");
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = r.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + DEMO_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let status = child.wait().unwrap();
            panic!(
                "pushpark demo {args:?} still running after {DEMO_TIMEOUT:?} ({status}):\n{}{}",
                stdout.join().unwrap(),
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = stdout.join().unwrap() + &stderr.join().unwrap();
    (status, text)
}

/// Each of `steps` is on a line of `output` after the line of the one before.
fn assert_in_order(output: &str, steps: &[&str]) {
    let lines: Vec<&str> = output.lines().collect();
    let mut from = 0;
    for step in steps {
        match lines[from..].iter().position(|l| l.contains(step)) {
            Some(i) => from += i + 1,
            None => panic!("no line with {step:?} after line {from} of:\n{output}"),
        }
    }
}

fn assert_demo(args: &[&str], output_steps: &[&[&str]]) {
    let (status, output) = demo(args);
    assert!(
        status.success(),
        "pushpark demo {args:?}: {status}\n{output}"
    );
    for steps in output_steps {
        assert_in_order(&output, steps);
    }
}

/// README's first command: the desktop rings at once, the sleeping iPhone is pushed,
/// registers, joins the ringing call and answers; the caller hangs up.
#[test]
fn demo_on_kamailio_shows_the_iphone_woken_and_answering() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    kamailio_module::check();
    assert_demo(&[], &single_node_timeline());
}

/// The same call through OpenSIPS with its module (built from the vendored source).
#[test]
fn demo_on_opensips_shows_the_iphone_woken_and_answering() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    opensips_module::build();
    assert_demo(&["--host", "opensips"], &single_node_timeline());
}

/// The steps of one node's call: what follows from what (the push's arrival at the phone
/// and APNs's answer to the engine race each other).
fn single_node_timeline() -> [&'static [&'static str]; 2] {
    [
        &[
            "INVITE forked: the desktop rings at once",
            "APNs accepted the push: 200, delivered",
            "iPhone registered: REGISTER with its push parameters",
            "iPhone joins the ringing call",
            "iPhone answers: 200 OK relayed to the caller",
            "caller hangs up: BYE",
            "call connected and hung up cleanly",
        ],
        &["INVITE forked", "iPhone got the push", "iPhone registered"],
    ]
}

/// Two nodes: the call is parked on A, the iPhone A learnt through Redis is pushed, wakes
/// and registers on B, A's wake arrives with B's Path, B relays the INVITE over the app's
/// connection, it answers, and the call connects across the nodes.
#[test]
fn demo_with_two_nodes_shows_the_call_parked_on_a_connecting_through_b() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    kamailio_module::check();
    assert_demo(
        &["--nodes", "2"],
        &[
            &[
                "A learnt the binding through Redis",
                "A  INVITE parked: nobody to ring here",
                "iPhone got the push: the app wakes and connects to B",
                "B  iPhone registered over TCP",
                "A  the wake arrived: a branch to the iPhone through B's Path",
                "B  relayed INVITE from A",
                "A  200 OK: the iPhone answered",
                "A  BYE: the caller hangs up",
                "B  BYE: the caller hangs up",
                "call connected across nodes",
            ],
            &["A  INVITE parked", "A  APNs accepted the push"],
        ],
    );
}

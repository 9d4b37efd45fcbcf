//! End to end under faults: Debian's Kamailio with the pushpark module while the machine
//! misbehaves. The faults are real: a disk that stalls is strace delaying the engine process's
//! fsyncs.

#[allow(dead_code)] // the rig serves the demo and other tests too
#[path = "e2e/rig.rs"]
mod rig;

use rig::*;
use std::process::Command;
use std::time::{Duration, Instant};

const PHONES: usize = 50;

/// Waits until `pushpark.stats` says `key` satisfies `ok`; returns the stats.
fn wait_stats(k: &Kamailio, key: &str, ok: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + SOON;
    loop {
        let stats = k.rpc_numbers(&["pushpark.stats"]);
        if stats.get(key).copied().is_some_and(&ok) {
            return stats[key];
        }
        assert!(
            Instant::now() < deadline,
            "{key} never as expected: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A clean stop (SIGTERM to Kamailio, as systemd stops it) while the disk stalls: the
/// bindings registered just before are all on disk when Kamailio starts again.
#[test]
fn sigterm_during_a_disk_stall_loses_no_binding() {
    let dir = WorkDir::new("faults-stall");
    let mock = Mock::start(&dir.0, 0);
    let mut k = Kamailio::start_pushpark(&dir.0, &mock, 4000, &[]);

    // Every fsync of the engine process now takes a second, as on a disk that stalls.
    let mut cmd = Command::new("strace");
    cmd.args([
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=fsync,fdatasync",
    ])
    .args(["-e", "inject=fsync,fdatasync:delay_enter=1s", "-p"])
    .arg(k.engine_pid().to_string());
    let mut strace = Proc::spawn(cmd, "strace", &dir.0, false);
    // strace says nothing once attached (-qq): it has, once an fsync is slow.
    let phones: Vec<Phone> = (0..PHONES).map(|i| Phone::new(&format!("s{i}x"))).collect();
    Phone::register_all(&phones, &dir.0, &k.addr(), 3600);
    let pending = wait_stats(&k, "store_writes_pending", |n| n > 0);
    assert!(strace.running(), "strace:\n{}", strace.log_text());

    // SIGTERM to Kamailio's main process only: it stops its children and waits for them.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(k.proc.pid() as i32, libc::SIGTERM) };
    let status = k.proc.wait(Duration::from_secs(60));
    assert!(status.success(), "kamailio stopped with {status}");
    strace.stop();

    k.restart();
    k.wait_engine();
    let stored = k.rpc_numbers(&["pushpark.stats"])["devices_stored"];
    assert_eq!(
        stored, PHONES as u64,
        "bindings on disk after the stop ({pending} were pending when it began)"
    );
}

/// A stuck engine process (SIGSTOP: stopped, swapping, blocked) holds each SIP worker once
/// at most: after a request that got no answer, parks fail at once until the engine comes
/// round its loop again, and the script rejects as it would without pushpark.
#[test]
fn a_stuck_engine_holds_each_sip_worker_once_at_most() {
    const CALLS: usize = 12;
    const WORKERS: usize = 4; // the test config's children
    let dir = WorkDir::new("faults-stuck");
    let mock = Mock::start(&dir.0, 0);
    let k = Kamailio::start_pushpark(&dir.0, &mock, 4000, &[]);
    let phone = Phone::new("stuck");
    phone.register(&dir.0, &k.addr(), 3600);
    wait_stats(&k, "devices_stored", |n| n == 1);
    k.forget_binding(&phone.user);

    let engine = k.engine_pid();
    // SAFETY: kill(2) on the engine process of the Kamailio this test started.
    unsafe { libc::kill(engine, libc::SIGSTOP) };
    let extra = [
        "-m",
        &CALLS.to_string(),
        "-r",
        "50",
        "-l",
        &CALLS.to_string(),
    ];
    let run = call(
        &dir.0,
        &k.addr(),
        "caller_rejected.xml",
        &phone.user,
        &extra,
    );
    // SAFETY: as above.
    unsafe { libc::kill(engine, libc::SIGCONT) };
    assert!(run.status.success(), "every caller gets 480:\n{}", run.log);

    let log = k.proc.log_text();
    let waited = log.matches("no answer from the engine within").count();
    let refused = log.matches("refused at once").count();
    assert!(
        (1..=WORKERS).contains(&waited),
        "{waited} parks waited for the stuck engine"
    );
    assert_eq!(waited + refused, CALLS, "parks that waited or were refused");
}

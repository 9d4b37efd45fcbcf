//! End to end under faults: Debian's Kamailio with the pushpark module while the machine
//! misbehaves. The faults are real: a disk that stalls is strace delaying the engine's
//! fsyncs; a crashed or hung engine is one killed or stopped with a signal.

#[allow(dead_code)] // the rig serves the demo and other tests too
#[path = "../src/bin/pushpark/rig.rs"]
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
    .arg(engine_child(&k).to_string());
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

/// A REGISTER a SIP worker answered 200 and handed over just as Kamailio stops: the engine
/// process serves what is queued before it stops, so the binding survives the restart.
#[test]
fn a_register_queued_when_kamailio_stops_survives_the_restart() {
    let dir = WorkDir::new("faults-queued");
    let mock = Mock::start(&dir.0, 0);
    let mut k = Kamailio::start_pushpark(&dir.0, &mock, 4000, &[]);
    let engine = k.engine_pid();
    // Stopped, the engine process reads no request: the REGISTER waits in its queue.
    // SAFETY: kill(2) on the engine process of the Kamailio this test started.
    unsafe { libc::kill(engine, libc::SIGSTOP) };
    let phone = Phone::new("queued");
    phone.register(&dir.0, &k.addr(), 3600);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(k.proc.pid() as i32, libc::SIGTERM) };
    // Kamailio passes the SIGTERM on; the engine process finds it when it goes on.
    let deadline = Instant::now() + SOON;
    while !sigterm_pending(engine) {
        assert!(
            Instant::now() < deadline,
            "Kamailio never passed SIGTERM on"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: as above.
    unsafe { libc::kill(engine, libc::SIGCONT) };
    let status = k.proc.wait(Duration::from_secs(60));
    assert!(status.success(), "kamailio stopped with {status}");

    k.restart();
    k.wait_engine();
    let devices = k
        .kamcmd(&["pushpark.devices", &phone.aor()])
        .expect("devices");
    assert!(
        devices.contains(&phone.token[..8]),
        "the queued REGISTER was lost in the stop: {devices}"
    );
}

/// Whether SIGTERM waits, undelivered, for process `pid` (/proc's shared pending set).
fn sigterm_pending(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("ShdPnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|set| set & (1 << (libc::SIGTERM - 1)) != 0)
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

/// The engine itself: the child of the module's engine process (the supervisor).
fn engine_child(k: &Kamailio) -> i32 {
    let supervisor = k.engine_pid();
    let deadline = Instant::now() + SOON;
    loop {
        let found = std::fs::read_dir("/proc").unwrap().find_map(|e| {
            let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid ...
            let (comm, rest) = stat.split_once(") ")?;
            let ppid: i32 = rest.split(' ').nth(1)?.parse().ok()?;
            (ppid == supervisor && comm.ends_with("(pushpark-engine") && !rest.starts_with('Z'))
                .then_some(pid)
        });
        if let Some(pid) = found {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no pushpark-engine under {supervisor}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `signal` to the engine with `PARKED` calls parked (park timeout 60 s): every caller gets
/// 480 from the supervisor long before the park timeout, Kamailio goes on, and a call placed
/// 2 s later is parked, pushed and connected by a new engine that still knows the device.
fn engine_fault_ends_each_parked_call(name: &str, signal: i32) {
    const PARKED: usize = 3;
    const PARK_TIMEOUT_MS: u64 = 60_000;
    let dir = WorkDir::new(name);
    let mock = Mock::start(&dir.0, 0);
    let mut k = Kamailio::start_pushpark(&dir.0, &mock, PARK_TIMEOUT_MS, &[]);
    let phone = Phone::new(name);
    phone.register(&dir.0, &k.addr(), 3600);
    wait_stats(&k, "devices_stored", |n| n == 1);
    // The binding is on disk once the engine's writer commits it.
    wait_stats(&k, "store_writes_pending", |n| n == 0);
    k.forget_binding(&phone.user);

    let callers = {
        let (dir, server, user) = (dir.0.clone(), k.addr(), phone.user.clone());
        let n = PARKED.to_string();
        std::thread::spawn(move || {
            call(
                &dir,
                &server,
                "caller_rejected.xml",
                &user,
                &["-m", &n, "-l", &n, "-r", "20"],
            )
        })
    };
    wait_stats(&k, "parked_now", |n| n == PARKED as u64);
    let engine = engine_child(&k);
    // SAFETY: kill(2) on the engine process of the Kamailio this test started.
    unsafe { libc::kill(engine, signal) };
    let run = callers.join().unwrap();
    assert!(run.status.success(), "every caller gets 480:\n{}", run.log);
    assert_eq!(
        run.rtt_ms.len(),
        PARKED,
        "INVITE->480 times: {:?}",
        run.rtt_ms
    );
    assert!(
        run.rtt_ms.iter().all(|&ms| ms < PARK_TIMEOUT_MS as f64),
        "480 from the supervisor, not the park timeout: {:?} ms",
        run.rtt_ms
    );
    assert!(k.proc.running(), "Kamailio stopped:\n{}", k.proc.log_text());
    assert_ne!(engine_child(&k), engine, "a new engine process");
    wait_stats(&k, "engine_restarts", |n| n == 1);

    std::thread::sleep(Duration::from_secs(2));
    let watch = mock.watch();
    let mut ua = device_ua(&dir.0, "device_answer.xml", phone.ua_port, 1, "ua");
    let sim = device_sim(&dir.0, &mock, &k.addr(), &[&phone], 0);
    let run = call(&dir.0, &k.addr(), "caller.xml", &phone.user, &["-m", "1"]);
    assert!(
        run.status.success(),
        "the call after the restart:\n{}",
        run.log
    );
    watch.expect_push(&phone.token, SOON);
    sim.expect_line(&format!("registered user={}", phone.user), SOON);
    assert!(ua.wait(SOON).success(), "the device did not take the call");
    let log = k.proc.log_text();
    assert_eq!(log.matches("a new one starts").count(), 1, "{log}");
}

#[test]
fn kill_9_of_the_engine_ends_each_parked_call_and_kamailio_goes_on() {
    engine_fault_ends_each_parked_call("faults-kill9", libc::SIGKILL);
}

/// A stopped engine is a hung one: the supervisor finds out within about a second with no
/// call made, kills it and answers its calls.
#[test]
fn a_stopped_engine_is_replaced_and_its_calls_answered() {
    engine_fault_ends_each_parked_call("faults-sigstop", libc::SIGSTOP);
}

/// The store's directory on a small tmpfs of its own, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// None without the right to mount (not root).
    fn mount(dir: &std::path::Path) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            .then(|| SmallDisk(dir.to_path_buf()))
    }

    /// Takes every byte left.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The disk fills up under REGISTER load and is freed again: every binding registered
/// meanwhile reaches the disk, and Kamailio started again knows them all.
#[test]
fn a_full_disk_under_register_load_loses_no_binding() {
    let dir = WorkDir::new("faults-full");
    let Some(disk) = SmallDisk::mount(&dir.0.join("store")) else {
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        return;
    };
    let mock = Mock::start(&dir.0, 0);
    let mut k = Kamailio::start_pushpark(&dir.0, &mock, 4000, &[]);
    let before: Vec<Phone> = (0..PHONES).map(|i| Phone::new(&format!("f{i}x"))).collect();
    Phone::register_all(&before, &dir.0, &k.addr(), 3600);
    wait_stats(&k, "devices_stored", |n| n == PHONES as u64);
    wait_stats(&k, "store_writes_pending", |n| n == 0);

    disk.fill();
    let during: Vec<Phone> = (0..2 * PHONES)
        .map(|i| Phone::new(&format!("g{i}x")))
        .collect();
    Phone::register_all(&during, &dir.0, &k.addr(), 3600);
    wait_stats(&k, "store_write_errors", |n| n > 0);
    disk.free();
    wait_stats(&k, "store_writes_pending", |n| n == 0);

    // SAFETY: kill(2) on our own child: a clean stop, as systemd does.
    unsafe { libc::kill(k.proc.pid() as i32, libc::SIGTERM) };
    assert!(k.proc.wait(Duration::from_secs(60)).success());
    k.restart();
    k.wait_engine();
    let stored = k.rpc_numbers(&["pushpark.stats"])["devices_stored"];
    assert_eq!(
        stored,
        3 * PHONES as u64,
        "bindings on disk after the disk was full"
    );
}

/// A corrupt store file at start: the engine moves it aside, says so in one error line and
/// starts on a fresh store, so REGISTERs are stored and calls parked and pushed as usual.
#[test]
fn a_corrupt_store_file_at_start() {
    let dir = WorkDir::new("faults-corrupt");
    let store = dir.0.join("store");
    std::fs::create_dir_all(&store).unwrap();
    let junk = b"not a redb file\n".repeat(512);
    std::fs::write(store.join("devices.redb"), &junk).unwrap();
    let mock = Mock::start(&dir.0, 0);
    let k = Kamailio::start_pushpark(&dir.0, &mock, 10_000, &[]);

    let phone = Phone::new("corrupt");
    phone.register(&dir.0, &k.addr(), 3600);
    wait_stats(&k, "devices_stored", |n| n == 1);
    k.forget_binding(&phone.user);
    let watch = mock.watch();
    let mut ua = device_ua(&dir.0, "device_answer.xml", phone.ua_port, 1, "ua");
    let sim = device_sim(&dir.0, &mock, &k.addr(), &[&phone], 0);
    let run = call(&dir.0, &k.addr(), "caller.xml", &phone.user, &["-m", "1"]);
    assert!(run.status.success(), "the parked call:\n{}", run.log);
    watch.expect_push(&phone.token, SOON);
    sim.expect_line(&format!("registered user={}", phone.user), SOON);
    assert!(ua.wait(SOON).success(), "the device did not take the call");

    let aside: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("devices.redb.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), junk, "kept as it was");
    let log = k.proc.log_text();
    let errors: Vec<_> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    let name = aside[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        errors[0].contains("is not a readable database") && errors[0].contains(&name),
        "{}",
        errors[0]
    );
    assert!(!log.contains("panicked"), "{log}");
}

//! End to end: REGISTER and unREGISTER of one device are handled by different SIP workers, and
//! the engine process hears of them in the order the workers wrote to its pipe, which is not
//! always the order of the REGISTERs. Thousands of devices that register and log out at once,
//! through 8 workers, must leave no push binding: a logged-out device stored by mistake is
//! pushed for every call until its binding expires (30 days).

#[allow(dead_code)] // the rig serves the demo and other tests too
#[path = "../src/bin/pushpark/rig.rs"]
mod rig;

use rig::*;
use std::time::{Duration, Instant};

const PAIRS: usize = 5000;

/// A statistic of the module, from `kamcmd stats.get_statistics` ("pushpark:name = value").
fn statistic(k: &Kamailio, name: &str) -> u64 {
    let text = k
        .kamcmd(&["stats.get_statistics", "pushpark:"])
        .unwrap_or_else(|e| panic!("stats.get_statistics: {e}"));
    let key = format!("pushpark:{name}");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&key)?.trim().strip_prefix('='))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[test]
fn register_then_unregister_through_eight_workers_leaves_no_binding() {
    let dir = WorkDir::new("register-order");
    let mock = Mock::start(&dir.0, 0);
    let k = Kamailio::start_pushpark(&dir.0, &mock, 4000, &[("CHILDREN", "8".into())]);
    let server = k.addr();

    let phones: Vec<Phone> = (0..PAIRS).map(|i| Phone::new(&format!("u{i}x"))).collect();
    let keys = ["service", "token", "instance"];
    let scenario = injected_scenario(&dir.0, "register_unregister.xml", &keys);
    let rows: Vec<Vec<String>> = phones
        .iter()
        .map(|p| vec![p.user.clone(), p.token.clone(), p.instance.clone()])
        .collect();
    let users = injection_file(&dir.0, "pairs.csv", &rows);
    let mut cmd = sipp(&scenario, free_port());
    cmd.arg(&server)
        .args(["-inf", &users, "-m", &PAIRS.to_string(), "-r", "1000"])
        .args(["-l", "400"]);
    let mut sipp = Proc::spawn(cmd, "register-unregister", &dir.0, false);
    let status = sipp.wait(Duration::from_secs(120));
    assert!(status.success(), "SIPp failed:\n{}", sipp.log_text());

    // Every binding was handed to the engine (the workers count what they wrote to its pipe),
    // then one more device registers: the engine reads its pipe in order, so once that one is
    // stored, it has applied every REGISTER before it.
    let deadline = Instant::now() + SOON;
    while statistic(&k, "registers") < 2 * PAIRS as u64 {
        assert!(
            Instant::now() < deadline,
            "not every REGISTER reached the engine"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let last = Phone::new("last");
    last.register(&dir.0, &server, 3600);
    let deadline = Instant::now() + SOON;
    while !k
        .kamcmd(&["pushpark.devices", &last.aor()])
        .is_ok_and(|d| d.contains(&last.instance))
    {
        assert!(
            Instant::now() < deadline,
            "the last device was never stored"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The registrar itself ends with the last device only (the scenario is what it claims).
    let dump = k.kamcmd(&["ul.dump", "brief"]).expect("ul.dump");
    assert_eq!(dump.matches("AoR:").count(), 1, "location table:\n{dump}");
    let stats = k.rpc_numbers(&["pushpark.stats"]);
    assert_eq!(
        stats["devices_stored"], 1,
        "logged-out devices still stored (pushed for 30 days): {stats:?}"
    );
}

//! End to end: Kamailio with the pushpark module refuses to start, with one line naming the
//! cause, on settings that would otherwise leave every park failing once it runs: unreadable or
//! malformed credentials, key or team ids not in Apple's format, a store directory it cannot
//! write in, out-of-range modparams.

#[allow(dead_code)] // the rig serves the other e2e tests too
#[path = "../src/bin/pushpark/rig.rs"]
mod rig;

use rig::*;
use serde_json::{json, Value};

/// Starts Kamailio with the test config changed by `tweak` and the modparam `defines`;
/// asserts it exits and logs an error line holding `cause`.
fn refuses(
    mock: &Mock,
    dir: &WorkDir,
    tweak: impl FnOnce(&mut Value),
    defines: &[(&str, String)],
    cause: &str,
) {
    let mut engine = Kamailio::engine_config(&dir.0, mock, 4000);
    tweak(&mut engine);
    let log = Kamailio::refused(&dir.0, &engine, defines);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(cause)).collect();
    assert!(
        lines.len() == 1 && lines[0].contains("ERROR"),
        "no one ERROR line with {cause:?}:\n{log}"
    );
}

#[test]
fn kamailio_refuses_to_start_on_what_cannot_work() {
    let dir = WorkDir::new("startup");
    let mock = Mock::start(&dir.0, 0);
    let auth =
        |key: &'static str, value: Value| move |c: &mut Value| c["apns"]["auth"][key] = value;

    let missing = dir.0.join("no-such-key.p8");
    refuses(
        &mock,
        &dir,
        auth("key_file", json!(missing)),
        &[],
        "apns.auth.key_file: cannot read",
    );
    let junk = dir.0.join("junk.p8");
    std::fs::write(&junk, "not a key").unwrap();
    refuses(
        &mock,
        &dir,
        auth("key_file", json!(junk)),
        &[],
        "the key is not a PEM PKCS#8 P-256",
    );
    refuses(
        &mock,
        &dir,
        auth("key_id", json!("TESTKEY0011")),
        &[],
        "apns.auth.key_id: must be 10 letters and digits",
    );
    refuses(
        &mock,
        &dir,
        auth("team_id", json!("TEAM-0001")),
        &[],
        "apns.auth.team_id: must be 10 letters and digits",
    );

    // A file where the store's directory would be made.
    let file = dir.0.join("a-file");
    std::fs::write(&file, "").unwrap();
    let store = |c: &mut Value| c["store"]["dir"] = json!(file.join("store"));
    refuses(&mock, &dir, store, &[], "store.dir: cannot write in");

    let none = |_: &mut Value| {};
    let big = [("PARK_TIMEOUT", "4000000".to_string())];
    refuses(
        &mock,
        &dir,
        none,
        &big,
        "park_timeout 4000000: 0 (the engine's park.timeout_ms) to 3600000 ms",
    );
    for ipc in ["0", "2147483647"] {
        let defines = [("IPC_TIMEOUT", ipc.to_string())];
        refuses(
            &mock,
            &dir,
            none,
            &defines,
            &format!("ipc_timeout {ipc}: 1 to 10000 ms"),
        );
    }
}

//! End to end with Android phones: Debian's Kamailio with the pushpark module, whose engine has an
//! `fcm` section beside `apns`; `pushpark mock-fcm` (FCM HTTP v1 and its OAuth token endpoint
//! over HTTP/2 + TLS) and `pushpark mock-apns`; `pushpark device-sim` playing both apps; SIPp as
//! the caller and as the phones' SIP side.
//!
//! The tests run one at a time, like those of e2e_kamailio.rs: each starts a Kamailio with its
//! engine process on a 2-core machine.

mod built_lib;
mod kamailio_module;
#[allow(dead_code)] // the rig serves the demo and the other tests too
#[path = "../src/bin/pushpark/rig.rs"]
mod rig;

use rig::*;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// The park timeout of the tests where the phone wakes (ms).
const PARK_TIMEOUT_MS: u64 = 8000;
/// The Firebase project of the Android app (its pn-param) and of the mock's service account.
const PROJECT: &str = "voip-app-e2e";

static SERIAL: Mutex<()> = Mutex::new(());

/// One test's world: both mocks, Kamailio with the module, watches on both mocks' pushes.
/// Fields drop in order: Kamailio first, the work dir last (after the logs were shown).
struct World {
    kamailio: Kamailio,
    apns_watch: PushWatch,
    fcm_watch: PushWatch,
    apns: Mock,
    fcm: MockFcm,
    dir: WorkDir,
    _serial: MutexGuard<'static, ()>,
}

impl World {
    fn new(name: &str, park_timeout_ms: u64) -> World {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        kamailio_module::check();
        let dir = WorkDir::new(name);
        let apns = Mock::start(&dir.0, 0);
        let fcm = MockFcm::start(&dir.0, PROJECT);
        let engine = Kamailio::with_fcm(
            Kamailio::engine_config(&dir.0, &apns, park_timeout_ms),
            &fcm,
        );
        let kamailio = Kamailio::start_pushpark_with(&dir.0, &engine, &[]);
        World {
            kamailio,
            apns_watch: apns.watch(),
            fcm_watch: fcm.watch(),
            apns,
            fcm,
            dir,
            _serial: serial,
        }
    }

    fn path(&self) -> &Path {
        &self.dir.0
    }

    fn server(&self) -> String {
        self.kamailio.addr()
    }

    /// Phones of one user that registered while awake and then fell asleep: pushpark knows
    /// their tokens, the location table has no binding.
    fn asleep(&self, phones: &[&Phone]) {
        for phone in phones {
            phone.register(self.path(), &self.server(), 3600);
        }
        self.kamailio.forget_binding(&phones[0].user);
    }

    fn call(&self, scenario: &str, user: &str) -> SippRun {
        call(self.path(), &self.server(), scenario, user, &["-m", "1"])
    }

    fn sim(&self, phones: &[&Phone]) -> Proc {
        let server = self.server();
        phone_sim(
            self.path(),
            Some(&self.apns),
            Some(&self.fcm),
            &server,
            phones,
            0,
        )
    }

    /// The engine's devices of `phone`'s user, as `pushpark.devices` lists them.
    fn devices(&self, phone: &Phone) -> String {
        self.kamailio
            .kamcmd(&["pushpark.devices", &phone.aor()])
            .expect("pushpark.devices")
    }

    fn stats(&self) -> std::collections::HashMap<String, u64> {
        self.kamailio.rpc_numbers(&["pushpark.stats"])
    }

    fn kamailio_log(&self) -> String {
        self.kamailio.proc.log_text()
    }
}

fn assert_ok(run: &SippRun, what: &str) {
    assert!(
        run.status.success(),
        "{what}: SIPp caller failed ({})\n{}",
        run.status,
        run.log
    );
}

/// The CANCEL in a SIPp message trace, from its request line on.
fn cancel_in(messages: &str) -> &str {
    &messages[messages.find("CANCEL sip:").expect("no CANCEL")..]
}

/// An Android phone asleep: the call is parked, FCM gets a high-priority data message for the
/// call that expires with the park, the app wakes and registers, the call connects.
#[test]
fn sleeping_android_phone_is_woken_by_a_data_message_and_answers() {
    let w = World::new("android-woken", PARK_TIMEOUT_MS);
    let phone = Phone::android("alice", PROJECT);
    w.asleep(&[&phone]);
    let mut ua = device_ua(w.path(), "device_answer.xml", phone.ua_port, 1, "alice-ua");
    let sim = w.sim(&[&phone]);

    let run = w.call("caller.xml", &phone.user);
    assert_ok(&run, "caller");
    assert!(run.received(180), "the caller got no 180 Ringing");

    let push = w.fcm_watch.expect_push(&phone.token, SOON);
    let call_id = header(&run.messages, "Call-ID").expect("the caller's Call-ID");
    assert_eq!(push["priority"], "HIGH", "{push}");
    assert_eq!(push["data"]["call_id"], call_id.as_str(), "{push}");
    assert_eq!(push["data"]["aor"], phone.aor().as_str(), "{push}");
    let name = push["name"].as_str().unwrap_or_default();
    assert!(
        name.starts_with(&format!("projects/{PROJECT}/messages/")),
        "sent to another project: {push}"
    );
    // Google delivers no later than the ttl: a message that outlived the park would wake the
    // app for a call that is gone.
    let ttl: u64 = push["ttl"]
        .as_str()
        .and_then(|t| t.strip_suffix('s'))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no ttl in seconds: {push}"));
    assert!(
        (1..=PARK_TIMEOUT_MS / 1000).contains(&ttl),
        "ttl {ttl}s, park timeout {PARK_TIMEOUT_MS} ms"
    );

    sim.expect_line(&format!("registered user={}", phone.user), SOON);
    assert!(
        ua.wait(SOON).success(),
        "the phone did not take the whole call"
    );
    assert!(
        w.apns_watch.drain().is_empty(),
        "an Android phone was pushed through APNs"
    );
    let log = w.kamailio_log();
    assert_eq!(count(&log, "E2E-PARKED"), 1, "INVITEs parked");
    assert_eq!(count(&log, "E2E-RESUMED"), 1, "INVITEs resumed");
}

/// FCM answers UNREGISTERED (the app was uninstalled): the binding is removed and the caller
/// is rejected on that answer, long before the park timeout.
#[test]
fn unregistered_android_token_is_removed_and_the_call_rejected_at_once() {
    // Far longer than the push takes: a 480 before it can only be the answer's.
    const LONG_PARK_TIMEOUT_MS: u64 = 60_000;
    let w = World::new("android-gone", LONG_PARK_TIMEOUT_MS);
    let phone = Phone::android("dave", PROJECT);
    w.asleep(&[&phone]);
    let devices = w.devices(&phone);
    assert!(
        devices.contains(&phone.instance),
        "device known before: {devices}"
    );
    w.fcm.script_reject(&phone.token, "UNREGISTERED");

    let run = w.call("caller_rejected.xml", &phone.user);
    assert_ok(&run, "caller expecting 480");
    let took = run
        .rtt_ms
        .first()
        .copied()
        .expect("INVITE->480 time traced");
    assert!(
        took < (LONG_PARK_TIMEOUT_MS / 2) as f64,
        "480 after {took} ms: the call waited for the park timeout"
    );
    assert_eq!(w.fcm.stats()["rejected"], 1, "FCM did not refuse the push");
    let devices = w.devices(&phone);
    assert!(
        !devices.contains(&phone.instance),
        "device still there: {devices}"
    );
    assert_eq!(w.stats()["devices_gone"], 1);
}

/// A user with an iPhone and an Android phone, both asleep: both are pushed, each through its
/// service, once; both wake at the same moment; the Android phone answers; the iPhone gets the
/// call's INVITE and a CANCEL saying the call was completed elsewhere, whichever way the race
/// between its REGISTER and the answer goes (its branch rings and is cancelled; the answer
/// comes before the engine process polled or added its branch: a late wake); the caller gets
/// one 200.
#[test]
fn iphone_and_android_phone_both_pushed_and_the_first_answer_wins() {
    let w = World::new("android-both", PARK_TIMEOUT_MS);
    let iphone = Phone::new("erin");
    let android = Phone::android("erin", PROJECT);
    assert_eq!(iphone.user, android.user);
    w.asleep(&[&iphone, &android]);
    let mut iphone_ua = device_ua(
        w.path(),
        "device_ring.xml",
        iphone.ua_port,
        1,
        "erin-iphone",
    );
    let mut android_ua = device_ua(
        w.path(),
        "device_answer.xml",
        android.ua_port,
        1,
        "erin-android",
    );
    let _sim = w.sim(&[&iphone, &android]);

    let run = w.call("caller_fork.xml", &iphone.user);
    assert_ok(&run, "caller");
    w.apns_watch.expect_push(&iphone.token, SOON);
    w.fcm_watch.expect_push(&android.token, SOON);
    assert!(
        android_ua.wait(SOON).success(),
        "the Android phone did not take the call"
    );
    assert!(
        iphone_ua.wait(SOON).success(),
        "the iPhone did not get the INVITE and its CANCEL"
    );
    let rang = sipp_messages(w.path(), "device_ring.xml", &iphone_ua);
    assert_eq!(
        header(&rang, "Call-ID"),
        header(&run.messages, "Call-ID"),
        "the iPhone's INVITE is not the call's"
    );
    let cancel = cancel_in(&rang);
    assert!(
        cancel.contains("Reason: SIP;cause=200;text=\"Call completed elsewhere\""),
        "CANCEL without Call completed elsewhere:\n{cancel}"
    );

    let calls = run.calls();
    assert_eq!(calls.len(), 1, "one call placed");
    let answers: Vec<_> = calls
        .values()
        .flat_map(|c| &c.finals)
        .filter(|(code, _)| *code == 200)
        .collect();
    assert_eq!(answers.len(), 1, "the call connected {answers:?}");
    assert!(
        w.apns_watch.drain().is_empty() && w.fcm_watch.drain().is_empty(),
        "a phone was pushed twice"
    );
}

//! End to end: Debian's Kamailio with the pushpark module, SIPp as the caller and as the devices'
//! SIP side, `pushpark mock-apns` over TLS, and `pushpark device-sim` playing the iPhone app.
//! Every test asserts what the caller receives (SIPp scenario expectations and exit codes) and
//! what the mock received.
//!
//! The tests run one at a time: each starts a Kamailio with its engine process on a 2-core
//! machine, and scenario 2 checks when the timeout fires.

mod built_lib;
mod kamailio_module;
#[allow(dead_code)] // the rig serves the demo too; the tests use part of it
#[path = "../src/bin/pushpark/rig.rs"]
mod rig;

use rig::*;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The park timeout of every test (ms); scenario 2 checks the 480 comes at this time.
const PARK_TIMEOUT_MS: u64 = 4000;

static SERIAL: Mutex<()> = Mutex::new(());

/// One test's world: mock APNs, Kamailio with the module, a watch on the mock's pushes.
/// Fields drop in order: Kamailio first, the work dir last (after the logs were shown).
struct World {
    kamailio: Kamailio,
    watch: PushWatch,
    mock: Mock,
    dir: WorkDir,
    _serial: MutexGuard<'static, ()>,
}

impl World {
    fn new(name: &str) -> World {
        World::with_timeout(name, PARK_TIMEOUT_MS)
    }

    fn with_timeout(name: &str, park_timeout_ms: u64) -> World {
        World::with_defines(name, park_timeout_ms, &[])
    }

    /// With `-A` defines for the test config (e.g. `PARK_FORM`, `PUSH_REGISTERED`).
    fn with_defines(name: &str, park_timeout_ms: u64, defines: &[(&str, String)]) -> World {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        kamailio_module::check();
        let dir = WorkDir::new(name);
        let mock = Mock::start(&dir.0, 0);
        let kamailio = Kamailio::start_pushpark(&dir.0, &mock, park_timeout_ms, defines);
        let watch = mock.watch();
        World {
            kamailio,
            watch,
            mock,
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

    /// A phone that registered while awake and then fell asleep: pushpark knows its token,
    /// the location table has no binding.
    fn sleeping_phone(&self, user: &str) -> Phone {
        let phone = Phone::new(user);
        phone.register(self.path(), &self.server(), 3600);
        self.kamailio.forget_binding(&phone.user);
        phone
    }

    fn call(&self, scenario: &str, user: &str, extra: &[&str]) -> SippRun {
        call(self.path(), &self.server(), scenario, user, extra)
    }

    fn sim(&self, phones: &[&Phone], wake_ms: u64) -> Proc {
        device_sim(self.path(), &self.mock, &self.server(), phones, wake_ms)
    }

    /// A desk phone or softphone of `user` (no push parameters), answering on `port`.
    fn register_desktop(&self, user: &str, port: u16) {
        register_desktop(self.path(), &self.server(), user, port);
    }

    fn kamailio_log(&self) -> String {
        self.kamailio.proc.log_text()
    }

    /// The config's per-call markers: how many INVITEs were parked and how many resumed.
    fn assert_parked_and_resumed(&self, parked: usize, resumed: usize) {
        let log = self.kamailio_log();
        assert_eq!(count(&log, "E2E-PARKED"), parked, "INVITEs parked");
        assert_eq!(count(&log, "E2E-RESUMED"), resumed, "INVITEs resumed");
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

/// Scenario 1: an offline user is woken by the push and the call connects.
#[test]
fn sleeping_iphone_is_woken_and_answers() {
    let w = World::new("woken");
    let phone = w.sleeping_phone("alice");
    let mut ua = device_ua(w.path(), "device_answer.xml", phone.ua_port, 1, "alice-ua");
    let sim = w.sim(&[&phone], 0);

    let run = w.call("caller.xml", &phone.user, &["-m", "1"]);
    assert_ok(&run, "caller");
    assert!(run.received(180), "the caller got no 180 Ringing");

    let push = w.watch.expect_push(&phone.token, SOON);
    assert_eq!(push["topic"], "com.example.app.voip");
    sim.expect_line(&format!("registered user={}", phone.user), SOON);
    assert!(
        ua.wait(SOON).success(),
        "the device did not take the whole call"
    );
    w.assert_parked_and_resumed(1, 1);
}

/// Scenario 2: nobody wakes; the caller gets the configured reply at the park timeout.
#[test]
fn nobody_wakes_caller_gets_480_at_timeout() {
    let w = World::new("timeout");
    let phone = w.sleeping_phone("bob");

    let run = w.call("caller_rejected.xml", &phone.user, &["-m", "1"]);
    assert_ok(&run, "caller expecting 480");
    w.watch.expect_push(&phone.token, SOON);

    let took = run
        .rtt_ms
        .first()
        .copied()
        .expect("INVITE->480 time traced");
    let timeout = PARK_TIMEOUT_MS as f64;
    assert!(
        (timeout - 1000.0..=timeout + 1000.0).contains(&took),
        "480 after {took} ms, park timeout {timeout} ms"
    );
}

/// Scenario 3: the caller CANCELs while parked: 487, nothing resumes, and the app that wakes
/// after that (it has to show the call it was pushed for) gets the call's INVITE and at once a
/// CANCEL saying the caller gave up, so it can end what it shows: no ghost call.
#[test]
fn cancel_while_parked_gets_487_and_the_late_device_gets_invite_and_cancel() {
    let w = World::new("cancel");
    let phone = w.sleeping_phone("carol");
    let mut ua = device_ua(w.path(), "device_ring.xml", phone.ua_port, 1, "carol-ua");

    // The caller CANCELs once the module's 110 says the push went out.
    let run = w.call("caller_cancel.xml", &phone.user, &["-m", "1"]);
    assert_ok(&run, "caller expecting 487");
    w.watch.expect_push(&phone.token, SOON);
    let parked = w
        .kamailio
        .kamcmd(&["pushpark.parked"])
        .expect("pushpark.parked");
    assert!(!parked.contains(&phone.user), "call still parked: {parked}");

    // The app wakes late and registers after the caller gave up.
    phone.register(w.path(), &w.server(), 3600);
    assert!(
        ua.wait(SOON).success(),
        "the late device did not get the INVITE and its CANCEL"
    );
    let device = sipp_messages(w.path(), "device_ring.xml", &ua);
    let call_id = header(&run.messages, "Call-ID").expect("the caller's Call-ID");
    assert_eq!(
        header(&device, "Call-ID"),
        Some(call_id.clone()),
        "the late INVITE is not the call's"
    );
    let cancel = &device[device.find("CANCEL sip:").expect("no CANCEL")..];
    assert!(
        cancel.contains("Reason: SIP;cause=487"),
        "CANCEL without the caller's cause:\n{cancel}"
    );
    let answered = format!("late wake: call {call_id}: INVITE to the woken device answered 487");
    wait_for("the late INVITE's 487 logged", SOON, || {
        w.kamailio_log().contains(&answered).then_some(())
    });
    assert_eq!(
        count(&w.kamailio_log(), "E2E-RESUMED"),
        0,
        "a cancelled call was resumed"
    );
    assert!(
        !w.kamailio_log().contains(&phone.token),
        "a whole push token in Kamailio's log"
    );
}

/// A late wake reaches an app registered through an edge proxy the way a call would: sent to
/// the first Path URI, the Path as Route (here the edge is the app's SIPp; nobody listens at
/// the Contact's own port).
#[test]
fn late_wake_goes_through_the_apps_edge_proxy() {
    let w = World::new("latepath");
    let phone = w.sleeping_phone("nina");
    let edge = free_port();
    let mut ua = device_ua(w.path(), "device_ring.xml", edge, 1, "nina-edge");

    let run = w.call("caller_cancel.xml", &phone.user, &["-m", "1"]);
    assert_ok(&run, "caller expecting 487");
    w.watch.expect_push(&phone.token, SOON);
    let mut cmd = sipp("register_path.xml", free_port());
    cmd.arg(w.server())
        .args(["-s", &phone.user, "-m", "1"])
        .args(["-key", "token", &phone.token])
        .args(["-key", "instance", &phone.instance])
        .args(["-key", "expires", "3600"])
        .args(["-key", "contact_port", &phone.ua_port.to_string()])
        .args(["-key", "path_port", &edge.to_string()]);
    let mut p = Proc::spawn(cmd, "register-path", w.path(), false);
    assert!(
        p.wait(Duration::from_secs(60)).success(),
        "{}",
        p.log_text()
    );

    assert!(
        ua.wait(SOON).success(),
        "the edge did not get the late INVITE and its CANCEL"
    );
    let late = sipp_messages(w.path(), "device_ring.xml", &ua);
    assert!(
        late.contains(&format!("Route: <sip:127.0.0.1:{edge};lr>")),
        "the late INVITE without the Path as Route:\n{late}"
    );
}

/// The older form: pushpark_park() after a failed lookup and the resume route still wake a
/// sleeping phone and connect the call.
#[test]
fn older_park_form_still_wakes_and_answers() {
    let w = World::with_defines("parkform", PARK_TIMEOUT_MS, &[("PARK_FORM", "1".into())]);
    let phone = w.sleeping_phone("alan");
    let mut ua = device_ua(w.path(), "device_answer.xml", phone.ua_port, 1, "alan-ua");
    let _sim = w.sim(&[&phone], 0);

    let run = w.call("caller.xml", &phone.user, &["-m", "1"]);
    assert_ok(&run, "caller");
    w.watch.expect_push(&phone.token, SOON);
    assert!(ua.wait(SOON).success(), "the device did not take the call");
    w.assert_parked_and_resumed(1, 1);
}

/// pushpark_fork(): a user with a desk phone (no push parameters) and an iPhone whose app
/// keeps its binding while asleep (RFC 8599). The desk phone rings at once, the iPhone is
/// pushed and joins the call as a branch when its app registers, answers, and the desk phone
/// gets a CANCEL saying the call was completed elsewhere.
#[test]
fn desktop_rings_at_once_and_the_woken_iphone_joins_and_answers() {
    let w = World::new("fork");
    let phone = Phone::new("ivan");
    phone.register(w.path(), &w.server(), 3600);
    let desktop_port = free_port();
    w.register_desktop(&phone.user, desktop_port);
    let mut desktop = device_ua(w.path(), "device_ring.xml", desktop_port, 1, "ivan-desktop");
    let mut iphone = device_ua(
        w.path(),
        "device_answer.xml",
        phone.ua_port,
        1,
        "ivan-iphone",
    );
    // The app takes a moment to wake: the desk phone rings first.
    let sim = w.sim(&[&phone], 500);

    let run = w.call("caller_fork.xml", &phone.user, &["-m", "1"]);
    assert_ok(&run, "caller");
    w.watch.expect_push(&phone.token, SOON);
    sim.expect_line(&format!("registered user={}", phone.user), SOON);
    assert!(
        iphone.wait(SOON).success(),
        "the iPhone did not take the call"
    );
    assert!(
        desktop.wait(SOON).success(),
        "the desk phone did not ring and get the CANCEL"
    );
    let desk = sipp_messages(w.path(), "device_ring.xml", &desktop);
    let cancel = &desk[desk.find("CANCEL sip:").expect("no CANCEL")..];
    assert!(
        cancel.contains("Reason: SIP;cause=200;text=\"Call completed elsewhere\""),
        "CANCEL without Call completed elsewhere:\n{cancel}"
    );
    // Rang at once: the desk phone's 180 came back before the woken app registered (the
    // iPhone's app registered at setup, the desk phone, then the app again once woken).
    let log = w.kamailio_log();
    let ringing = log.find("E2E-REPLY 180").expect("no 180 relayed");
    let woken = log
        .match_indices("E2E-REGISTERED")
        .nth(2)
        .expect("the woken app did not register")
        .0;
    assert!(
        ringing < woken,
        "the desk phone rang only after the app woke"
    );
    w.assert_parked_and_resumed(1, 1);
}

/// The desk phone answers while the pushed iPhone is still waking: when its app registers, it
/// gets the call's INVITE and at once a CANCEL saying the call was completed elsewhere, so it
/// can end the call it shows (no ghost call).
#[test]
fn desktop_answers_first_and_the_late_iphone_gets_cancel_completed_elsewhere() {
    let w = World::new("forkdesk");
    let phone = w.sleeping_phone("lena");
    let desktop_port = free_port();
    w.register_desktop(&phone.user, desktop_port);
    let mut desktop = device_ua(
        w.path(),
        "device_answer.xml",
        desktop_port,
        1,
        "lena-desktop",
    );
    let mut iphone = device_ua(w.path(), "device_ring.xml", phone.ua_port, 1, "lena-iphone");

    let run = w.call("caller_fork.xml", &phone.user, &["-m", "1"]);
    assert_ok(&run, "caller");
    assert!(
        desktop.wait(SOON).success(),
        "the desk phone did not take the call"
    );
    w.watch.expect_push(&phone.token, SOON);
    // The app wakes after the call was answered.
    phone.register(w.path(), &w.server(), 3600);
    assert!(
        iphone.wait(SOON).success(),
        "the late iPhone did not get the INVITE and its CANCEL"
    );
    let late = sipp_messages(w.path(), "device_ring.xml", &iphone);
    assert_eq!(
        header(&late, "Call-ID"),
        header(&run.messages, "Call-ID"),
        "the late INVITE is not the call's"
    );
    let cancel = &late[late.find("CANCEL sip:").expect("no CANCEL")..];
    assert!(
        cancel.contains("Reason: SIP;cause=200;text=\"Call completed elsewhere\""),
        "CANCEL without Call completed elsewhere:\n{cancel}"
    );
}

/// The park timeout passes while a desk phone still rings and the pushed iPhone never woke:
/// the caller gets no 480, the desk phone's answer connects the call.
#[test]
fn deadline_while_a_desk_phone_rings_leaves_the_call_to_it() {
    let w = World::new("forkdeadline");
    let phone = w.sleeping_phone("omar");
    let desktop_port = free_port();
    w.register_desktop(&phone.user, desktop_port);
    // Rings well past the park timeout, then answers.
    let ringing = (PARK_TIMEOUT_MS + 2000).to_string();
    let mut cmd = sipp("device_answer.xml", desktop_port);
    cmd.args(["-m", "1", "-d", &ringing, "-trace_msg"]);
    let mut desktop = Proc::spawn(cmd, "omar-desktop", w.path(), false);

    let run = w.call("caller_fork.xml", &phone.user, &["-m", "1"]);
    assert_ok(&run, "caller expecting the desk phone's 200");
    w.watch.expect_push(&phone.token, SOON);
    assert!(
        desktop.wait(SOON).success(),
        "the desk phone did not take the call"
    );
    assert!(
        !run.received(480),
        "the caller got 480 while the desk phone rang"
    );
    assert!(
        w.kamailio_log()
            .contains("nobody woke in time, the ringing branches go on"),
        "the deadline did not pass while the desk phone rang"
    );
}

/// push_registered no_live_connection (the default): an app with a live TCP connection to
/// Kamailio is awake, so pushpark_fork() rings it at once over that connection and pushes
/// nothing (the UDP phones of the other tests are pushed).
#[test]
fn app_on_a_live_tcp_connection_rings_at_once_without_a_push() {
    let tcp = free_port();
    let listen = format!("tcp:127.0.0.1:{tcp}");
    let w = World::with_defines("livetcp", PARK_TIMEOUT_MS, &[("TCP_LISTEN", listen)]);
    let phone = Phone::new("kim");
    // SIPp matches messages to calls by Call-ID: the app's REGISTER has the call's.
    let cid_str = "livetcp-%u@pushpark";
    let mut cmd = sipp("device_tcp.xml", phone.ua_port);
    cmd.arg(format!("127.0.0.1:{tcp}"))
        .args(["-t", "t1", "-s", &phone.user, "-m", "1", "-trace_msg"])
        .args(["-key", "token", &phone.token])
        .args(["-key", "instance", &phone.instance])
        .args(["-cid_str", cid_str]);
    let mut app = Proc::spawn(cmd, "kim-app", w.path(), false);
    wait_for("the app registered over TCP", SOON, || {
        w.kamailio
            .kamcmd(&["ul.lookup", "location", &phone.user])
            .ok()
    });

    let run = w.call("caller.xml", &phone.user, &["-m", "1", "-cid_str", cid_str]);
    assert_ok(&run, "caller");
    assert!(app.wait(SOON).success(), "the app did not take the call");
    assert!(w.watch.drain().is_empty(), "an awake app was pushed");
    let stats = w.kamailio.rpc_numbers(&["pushpark.stats"]);
    assert_eq!(stats["pushes_sent"], 0, "{stats:?}");
}

/// pushpark_register() hands the engine each REGISTER's Call-ID and CSeq: a device's
/// REGISTER that reaches the engine after the unREGISTER that followed it (CSeq 1 after 2,
/// same Call-ID; SIP workers run in parallel) leaves no push binding behind.
#[test]
fn register_overtaken_by_its_unregister_leaves_no_device() {
    let w = World::new("regorder");
    let phone = Phone::new("mia");
    let mut cmd = sipp("register_reordered.xml", free_port());
    cmd.arg(w.server())
        .args(["-s", &phone.user, "-m", "1"])
        .args(["-key", "token", &phone.token])
        .args(["-key", "instance", &phone.instance]);
    let mut p = Proc::spawn(cmd, "register-reordered", w.path(), false);
    assert!(
        p.wait(Duration::from_secs(60)).success(),
        "{}",
        p.log_text()
    );

    let stats = wait_for("both REGISTERs handed over", SOON, || {
        let s = w.kamailio.rpc_numbers(&["pushpark.stats"]);
        (s["registers_out_of_order"] > 0).then_some(s)
    });
    assert_eq!(stats["registers_out_of_order"], 1, "{stats:?}");
    let devices = w
        .kamailio
        .kamcmd(&["pushpark.devices", &phone.aor()])
        .expect("devices");
    assert!(
        !devices.contains(&phone.instance),
        "the stale REGISTER stored the device: {devices}"
    );
}

/// push_registered never: a binding lookup() finds is rung as it is, nobody is pushed (the
/// behaviour before pushpark_fork()).
#[test]
fn push_registered_never_rings_the_binding_without_a_push() {
    let w = World::with_defines(
        "pushnever",
        PARK_TIMEOUT_MS,
        &[("PUSH_REGISTERED", "\"never\"".into())],
    );
    let phone = Phone::new("pia");
    phone.register(w.path(), &w.server(), 3600);
    let mut ua = device_ua(w.path(), "device_answer.xml", phone.ua_port, 1, "pia-ua");

    let run = w.call("caller.xml", &phone.user, &["-m", "1"]);
    assert_ok(&run, "caller");
    assert!(ua.wait(SOON).success(), "the binding was not rung");
    assert!(
        w.watch.drain().is_empty(),
        "pushed with push_registered never"
    );
    let stats = w.kamailio.rpc_numbers(&["pushpark.stats"]);
    assert_eq!(stats["pushes_sent"], 0, "{stats:?}");
}

/// The registrar refuses what pushpark could never push: 400 (with a reason phrase) for
/// malformed push parameters, 555 for a push service it does not push to (RFC 8599), and
/// saves neither binding.
#[test]
fn register_with_bad_push_parameters_gets_400_and_unknown_provider_555() {
    let w = World::new("regcheck");
    let user = format!("regcheck{}", std::process::id());

    let status = register_refused(
        w.path(),
        &w.server(),
        &user,
        "pn-provider=apns;pn-prid=not-a-token;pn-param=TESTTEAM01.com.example.app.voip",
    );
    // The reason phrase says what is wrong (the engine's words).
    assert!(
        status.starts_with("SIP/2.0 400 ") && status.contains("pn-prid"),
        "malformed pn-prid: {status}"
    );
    let status = register_refused(
        w.path(),
        &w.server(),
        &user,
        "pn-provider=fcm;pn-prid=abc;pn-param=example",
    );
    assert_eq!(
        status, "SIP/2.0 555 Push Notification Service Not Supported",
        "unknown pn-provider"
    );
    assert!(
        w.kamailio
            .kamcmd(&["ul.lookup", "location", &user])
            .is_err(),
        "a refused binding was saved"
    );
}

/// Scenario 4: a user with no push device is rejected at once, as without the module.
#[test]
fn user_without_device_is_rejected_as_before() {
    let w = World::new("nodevice");
    let user = format!("nodevice{}", std::process::id());

    let run = w.call("caller_rejected.xml", &user, &["-m", "1"]);
    assert_ok(&run, "caller expecting 480");
    let log = w.kamailio_log();
    assert!(
        log.contains(&format!("E2E-NOT-PARKED(-2) user={user} ")),
        "park said no device"
    );
    assert!(w.watch.drain().is_empty(), "no push may be sent");
}

/// Scenario 4's "as before": the same caller scenario passes against Kamailio without the module.
#[test]
fn baseline_without_module_rejects_offline_user() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = WorkDir::new("baseline");
    let k = Kamailio::start(&dir.0, "kamailio-baseline.cfg", &[]);
    let run = call(
        &dir.0,
        &k.addr(),
        "caller_rejected.xml",
        "nobody",
        &["-m", "1"],
    );
    assert_ok(&run, "caller expecting 480");
}

/// Scenario 5: APNs says the token is gone (410): the device is removed, the caller rejected,
/// and the next call is rejected at once without a push.
#[test]
fn apns_410_removes_device_and_rejects() {
    let w = World::new("gone");
    let phone = w.sleeping_phone("dave");
    let devices = w
        .kamailio
        .kamcmd(&["pushpark.devices", &phone.aor()])
        .expect("devices");
    assert!(
        devices.contains(&phone.token[..8]),
        "device known before: {devices}"
    );
    w.mock.script_reject(&phone.token, "Unregistered");

    let run = w.call("caller_rejected.xml", &phone.user, &["-m", "1"]);
    assert_ok(&run, "caller expecting a rejection");
    // The failure is logged with the push's id, to look it up in Apple's delivery log.
    let log = w.kamailio_log();
    let failed = log
        .lines()
        .find(|l| l.contains(&format!(" to {} device ", phone.aor())) && l.contains(" failed: "))
        .unwrap_or_else(|| panic!("no failed push logged:\n{log}"));
    let id = failed
        .split(" push ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next());
    assert!(
        id.is_some_and(|id| uuid::Uuid::try_parse(id).is_ok()),
        "{failed}"
    );
    assert!(failed.ends_with("failed: Unregistered"), "{failed}");
    let devices = w
        .kamailio
        .kamcmd(&["pushpark.devices", &phone.aor()])
        .expect("devices");
    assert!(
        !devices.contains(&phone.token[..8]),
        "device still there: {devices}"
    );

    let run = w.call("caller_rejected.xml", &phone.user, &["-m", "1"]);
    assert_ok(&run, "second caller expecting 480");
    assert!(w
        .kamailio_log()
        .contains(&format!("E2E-NOT-PARKED(-2) user={} ", phone.user)));
    assert!(
        w.watch.drain().is_empty(),
        "the mock accepted no push for a dead token"
    );
}

/// Scenario 6: two devices of one user are both woken and both ring.
#[test]
fn two_devices_both_woken_both_ring() {
    let w = World::new("twodev");
    let iphone = w.sleeping_phone("erin");
    let ipad = Phone::new("erin");
    assert_eq!(ipad.user, iphone.user);
    ipad.register(w.path(), &w.server(), 3600);
    w.kamailio.forget_binding(&iphone.user);
    let mut ua1 = device_ua(
        w.path(),
        "device_ring.xml",
        iphone.ua_port,
        1,
        "erin-iphone",
    );
    let mut ua2 = device_ua(w.path(), "device_ring.xml", ipad.ua_port, 1, "erin-ipad");
    let sim = w.sim(&[&iphone, &ipad], 0);

    // Both 180s, then CANCEL: both devices must have rung to get that far.
    let run = w.call("caller_two_ring.xml", &iphone.user, &["-m", "1"]);
    assert_ok(&run, "caller expecting two devices ringing");
    w.watch.expect_push(&iphone.token, SOON);
    w.watch.expect_push(&ipad.token, SOON);
    sim.expect_line("registered", SOON);
    assert!(
        ua1.wait(SOON).success(),
        "iPhone did not ring and get the CANCEL"
    );
    assert!(
        ua2.wait(SOON).success(),
        "iPad did not ring and get the CANCEL"
    );
}

/// Scenario 7: two calls to one sleeping user at the same time: both parked, both resumed.
#[test]
fn two_simultaneous_calls_both_resumed() {
    let w = World::new("twocalls");
    let phone = w.sleeping_phone("frank");
    let mut ua = device_ua(w.path(), "device_answer.xml", phone.ua_port, 2, "frank-ua");
    // The app takes a second to wake: both INVITEs are parked by then.
    let sim = w.sim(&[&phone], 1000);

    let run = w.call(
        "caller.xml",
        &phone.user,
        &["-m", "2", "-l", "2", "-r", "100"],
    );
    assert_ok(&run, "two callers");
    sim.expect_line("registered", SOON);
    assert!(
        ua.wait(SOON).success(),
        "the device did not take both calls"
    );
    w.assert_parked_and_resumed(2, 2);
}

/// Scenario 8: Kamailio restarts between the REGISTER and the call: the token is still known
/// (pushpark's store), the location binding is not (usrloc in memory), the call is woken.
#[test]
fn token_survives_kamailio_restart() {
    let mut w = World::new("restart");
    let phone = Phone::new("grace");
    phone.register(w.path(), &w.server(), 3600);
    w.kamailio.restart();
    w.kamailio.wait_engine();
    assert!(w
        .kamailio
        .kamcmd(&["ul.lookup", "location", &phone.user])
        .is_err());
    let devices = w
        .kamailio
        .kamcmd(&["pushpark.devices", &phone.aor()])
        .expect("devices");
    assert!(
        devices.contains(&phone.token[..8]),
        "token lost in the restart: {devices}"
    );

    let mut ua = device_ua(w.path(), "device_answer.xml", phone.ua_port, 1, "grace-ua");
    let sim = w.sim(&[&phone], 0);
    let run = w.call("caller.xml", &phone.user, &["-m", "1"]);
    assert_ok(&run, "caller");
    w.watch.expect_push(&phone.token, SOON);
    sim.expect_line("registered", SOON);
    assert!(ua.wait(SOON).success(), "the device did not take the call");
}

/// The engine answers a park request too late (stopped here, as when it is overloaded): the SIP
/// worker gives up after `ipc_timeout` and the script rejects the call itself. The engine must
/// then not park it: no push, nothing left that it would later resume or reject.
#[test]
fn park_answered_too_late_is_not_parked() {
    let w = World::new("latepark");
    let phone = w.sleeping_phone("heidi");
    let engine = w.kamailio.engine_pid();

    // SAFETY: kill(2) on the engine process of the Kamailio this test started.
    unsafe { libc::kill(engine, libc::SIGSTOP) };
    let run = w.call("caller_rejected.xml", &phone.user, &["-m", "1"]);
    // SAFETY: as above.
    unsafe { libc::kill(engine, libc::SIGCONT) };
    assert_ok(&run, "caller expecting the script's 480");
    assert!(
        w.kamailio_log()
            .contains(&format!("E2E-NOT-PARKED(-1) user={} ", phone.user)),
        "pushpark_park() did not give up"
    );

    // The engine reads requests in order: once it answers this, it has seen the park request.
    let stats = w.kamailio.kamcmd(&["pushpark.stats"]).expect("stats");
    let parked_total = stats
        .lines()
        .find_map(|l| l.trim().strip_prefix("parked_total:"))
        .map(str::trim);
    assert_eq!(
        parked_total,
        Some("0"),
        "the late park was parked:\n{stats}"
    );
    assert!(
        w.kamailio_log()
            .contains("not served: its sender stopped waiting"),
        "the engine did not say it dropped the park request"
    );
    let parked = w.kamailio.kamcmd(&["pushpark.parked"]).expect("parked");
    assert!(!parked.contains(&phone.user), "call still parked: {parked}");
    assert!(
        w.watch.drain().is_empty(),
        "a push went out for the late park"
    );
}

/// The storm's park timeout: room for the APNs client's retries and reconnections (every
/// healthy call must be answered), short enough that a lost push fails the test soon.
const STORM_PARK_TIMEOUT_MS: u64 = 10_000;

/// What operators care most about: under load and while APNs misbehaves, every parked call
/// ends exactly once and nothing hangs. 100 sleeping iPhones are called at about 44 calls/s.
/// APNs answers 503 to the first 10 pushes and sends GOAWAY every 12 streams; once 30 pushes got through it lowers its stream limit to 1 and answers 503
/// to 5 more. Six phones get a 429 for their first push; eight tokens are Unregistered (410).
#[test]
fn call_burst_while_apns_misbehaves_ends_every_call_once() {
    const HEALTHY: usize = 92;
    const DEAD: usize = 8;
    const THROTTLED: usize = 6;
    const FIRST_503S: u64 = 10;
    const LATER_503S: u64 = 5;
    let w = World::with_timeout("storm", STORM_PARK_TIMEOUT_MS);
    // The phones all answer on one SIPp: the device side of the load benchmark.
    let ua_port = free_port();
    let phones: Vec<Phone> = (0..HEALTHY + DEAD)
        .map(|i| Phone {
            ua_port,
            ..Phone::new(&format!("storm{i}x"))
        })
        .collect();
    Phone::register_all(&phones, w.path(), &w.server(), 3600);
    wait_for("every token stored", SOON, || {
        let stats = w.kamailio.rpc_numbers(&["pushpark.stats"]);
        (stats["devices_stored"] >= phones.len() as u64).then_some(())
    });
    for phone in &phones {
        w.kamailio.forget_binding(&phone.user);
    }
    let (healthy, dead) = phones.split_at(HEALTHY);
    for phone in dead {
        w.mock.script_reject(&phone.token, "Unregistered");
    }
    for phone in healthy.iter().step_by(HEALTHY / THROTTLED).take(THROTTLED) {
        w.mock
            .script_reject_next(&phone.token, "TooManyRequests", 1);
    }
    let mut ua = device_ua(
        w.path(),
        "device_pickup.xml",
        ua_port,
        HEALTHY as u32,
        "storm-ua",
    );
    let _sim = w.sim(&healthy.iter().collect::<Vec<_>>(), 100);

    let answered = injected_scenario(w.path(), "caller.xml", &["service"]);
    let rejected = injected_scenario(w.path(), "caller_rejected.xml", &["service"]);
    let users = |phones: &[Phone]| -> Vec<Vec<String>> {
        phones.iter().map(|p| vec![p.user.clone()]).collect()
    };
    let healthy_csv = injection_file(w.path(), "healthy.csv", &users(healthy));
    let dead_csv = injection_file(w.path(), "dead.csv", &users(dead));
    // No dropped connection: a push lost with its connection is never sent again
    // (unconfirmed), and its call would time out (tests/engine_park.rs covers that).
    w.mock.set_faults(serde_json::json!({
        "server_error": "ServiceUnavailable",
        "server_error_times": FIRST_503S,
        "goaway_after_streams": 12,
    }));
    let mut pushes = Vec::new();
    let (answered_run, rejected_run) = std::thread::scope(|s| {
        let burst = |scenario: &str, name: &str, csv: &str, calls: usize, rate: &str| {
            let (dir, server) = (w.path(), w.server());
            let args = [
                "-inf".to_string(),
                csv.to_string(),
                "-m".to_string(),
                calls.to_string(),
                "-r".to_string(),
                rate.to_string(),
                "-l".to_string(),
                "200".to_string(),
            ];
            let (scenario, name) = (scenario.to_string(), name.to_string());
            s.spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                call(dir, &server, &scenario, &name, &args)
            })
        };
        let answered = burst(&answered, "storm-healthy", &healthy_csv, HEALTHY, "40");
        let rejected = burst(&rejected, "storm-dead", &dead_csv, DEAD, "4");
        while pushes.len() < 30 {
            pushes.push(w.watch.next(SOON).expect("pushes stopped arriving"));
        }
        w.mock.set_faults(serde_json::json!({
            "max_concurrent_streams": 1,
            "server_error": "ServiceUnavailable",
            "server_error_times": LATER_503S,
            "goaway_after_streams": 12,
        }));
        (answered.join().unwrap(), rejected.join().unwrap())
    });

    // What the callers received: every call one final answer, the expected one.
    assert_ok(&answered_run, "callers of the healthy phones");
    assert_ok(&rejected_run, "callers of the Unregistered phones");
    for (run, phones, code) in [(&answered_run, healthy, 200), (&rejected_run, dead, 480)] {
        assert_eq!(run.stat("Successful call"), Some(phones.len() as u64));
        assert_eq!(run.stat("Failed call"), Some(0));
        let calls = run.calls();
        assert_eq!(calls.len(), phones.len(), "one call per phone");
        for phone in phones {
            let (id, trace) = calls
                .iter()
                .find(|(_, c)| c.user == phone.user)
                .unwrap_or_else(|| panic!("no call to {}", phone.user));
            let codes: Vec<u16> = trace.finals.iter().map(|f| f.0).collect();
            assert_eq!(codes, [code], "call {id} to {}: {:?}", phone.user, trace);
        }
    }
    assert!(
        ua.wait(SOON).success(),
        "the phones did not take every call"
    );

    // Every push has its outcome (one could still be retried after its call was answered).
    wait_for("every push's outcome", SOON, || {
        let s = w.kamailio.rpc_numbers(&["pushpark.stats"]);
        let ended = s["pushes_delivered"]
            + s["pushes_failed_dead_token"]
            + s["pushes_failed_rejected"]
            + s["pushes_failed_timed_out"]
            + s["pushes_unconfirmed"];
        (ended == s["pushes_sent"]).then_some(())
    });
    // Each healthy phone got exactly one push; the mock accepted nothing else.
    let mock = w.mock.stats();
    while (pushes.len() as u64) < mock["accepted"].as_u64().unwrap() {
        pushes.push(w.watch.next(SOON).expect("a push the mock accepted"));
    }
    pushes.extend(w.watch.drain());
    let mut per_token: std::collections::HashMap<String, usize> = Default::default();
    for push in &pushes {
        *per_token
            .entry(push["token"].as_str().unwrap().to_ascii_lowercase())
            .or_default() += 1;
    }
    for phone in healthy {
        assert_eq!(
            per_token.get(&phone.token),
            Some(&1),
            "pushes to {}",
            phone.user
        );
    }
    assert_eq!(pushes.len(), HEALTHY, "pushes accepted by the mock");
    // The faults did happen.
    let expected_rejections = FIRST_503S + LATER_503S + (THROTTLED + DEAD) as u64;
    assert_eq!(mock["accepted"], HEALTHY as u64, "{mock}");
    assert_eq!(mock["rejected"], expected_rejections, "{mock}");
    assert!(mock["goaways"].as_u64().unwrap() >= 5, "{mock}");

    // Kamailio is left with nothing: no transaction, no parked call, and the engine's
    // counters say every parked call ended once, the way it should have.
    wait_for("tm transactions gone", SOON, || {
        let tm = w.kamailio.rpc_numbers(&["tm.stats"]);
        (tm["current"] == 0).then_some(())
    });
    let parked = w.kamailio.kamcmd(&["pushpark.parked"]).expect("parked");
    assert!(!parked.contains("storm"), "calls still parked: {parked}");
    let s = w.kamailio.rpc_numbers(&["pushpark.stats"]);
    let ended = s["resumed"] + s["rejected_timeout"] + s["rejected_push_failed"] + s["cancelled"];
    assert_eq!(s["parked_now"], 0, "{s:?}");
    assert_eq!(s["parked_total"], ended, "{s:?}");
    assert_eq!(s["parked_total"], phones.len() as u64, "{s:?}");
    assert_eq!(s["resumed"], HEALTHY as u64, "{s:?}");
    assert_eq!(s["rejected_push_failed"], DEAD as u64, "{s:?}");
    assert_eq!(s["pushes_sent"], phones.len() as u64, "{s:?}");
    assert_eq!(s["pushes_delivered"], HEALTHY as u64, "{s:?}");
    assert_eq!(s["pushes_unconfirmed"], 0, "{s:?}");
    assert_eq!(s["pushes_failed_dead_token"], DEAD as u64, "{s:?}");
    assert_eq!(s["devices_gone"], DEAD as u64, "{s:?}");
    w.assert_parked_and_resumed(phones.len(), HEALTHY);
}

/// `pushpark.devices <aor> [offset [limit]]` pages through a user's 150 devices, 100 at a
/// time by default: each device once. A limit over 1000 is refused, by both listings.
#[test]
fn rpc_listings_come_in_pages() {
    const DEVICES: usize = 150;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    kamailio_module::check();
    let dir = WorkDir::new("pages");
    let mock = Mock::start(&dir.0, 0);
    let mut engine = Kamailio::engine_config(&dir.0, &mock, PARK_TIMEOUT_MS);
    engine["store"]["max_devices_per_aor"] = serde_json::json!(DEVICES);
    let k = Kamailio::start_pushpark_with(&dir.0, &engine, &[]);
    let first = Phone::new("pages");
    let phones: Vec<Phone> = (0..DEVICES)
        .map(|_| Phone {
            user: first.user.clone(),
            ..Phone::new("pages")
        })
        .collect();
    Phone::register_all(&phones, &dir.0, &k.addr(), 3600);
    let aor = first.aor();
    let listed = |args: &[&str]| -> (u64, Vec<String>) {
        let mut all = vec!["pushpark.devices", aor.as_str()];
        all.extend(args);
        let text = k.kamcmd(&all).unwrap_or_else(|e| panic!("{all:?}: {e}"));
        let field = |name: &str| {
            let prefix = format!("{name}:");
            text.lines()
                .filter_map(move |l| l.trim().strip_prefix(&prefix).map(|v| v.trim().to_string()))
        };
        let total = field("total").next().and_then(|t| t.parse().ok());
        (
            total.unwrap_or_else(|| panic!("no total:\n{text}")),
            field("key").collect(),
        )
    };
    let deadline = std::time::Instant::now() + SOON;
    while listed(&[]).0 < DEVICES as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "devices not all stored"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let (_, page) = listed(&[]);
    assert_eq!(page.len(), 100, "the default limit");
    let mut keys = Vec::new();
    loop {
        let (total, page) = listed(&[&keys.len().to_string(), "40"]);
        assert_eq!(total, DEVICES as u64);
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 40);
        keys.extend(page);
    }
    let unique: std::collections::BTreeSet<&String> = keys.iter().collect();
    assert_eq!((keys.len(), unique.len()), (DEVICES, DEVICES));
    for p in &phones {
        assert!(
            keys.iter().any(|key| key.contains(&p.instance)),
            "{} not listed",
            p.instance
        );
    }

    let refused = k
        .kamcmd(&["pushpark.devices", &aor, "0", "1001"])
        .unwrap_err();
    assert!(refused.contains("limit from 1 to 1000"), "{refused}");
    let refused = k.kamcmd(&["pushpark.parked", "0", "1001"]).unwrap_err();
    assert!(refused.contains("limit from 1 to 1000"), "{refused}");
    let parked = k.kamcmd(&["pushpark.parked", "0", "1000"]).expect("parked");
    assert!(parked.contains("total: 0"), "{parked}");
}

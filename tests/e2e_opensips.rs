//! End to end: OpenSIPS 3.6 (built from the vendored source under target/, see
//! adapters/opensips/opensips-source) with the pushpark OpenSIPS module, `pushpark
//! mock-apns` as APNs, MI through mi_fifo.
//!
//! The tests run one at a time: each starts an OpenSIPS with its engine process on a 2-core
//! machine.

mod built_lib;
mod opensips_module;
#[allow(dead_code)] // the rig serves the Kamailio tests and the demo too
#[path = "../src/bin/pushpark/rig.rs"]
mod rig;

use rig::opensips::OpenSips;
use rig::*;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

const PARK_TIMEOUT_MS: u64 = 4000;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// One test's world: mock APNs, OpenSIPS with the module, a watch on the mock's pushes.
/// Fields drop in order: OpenSIPS first, the work dir last.
struct World {
    opensips: OpenSips,
    watch: PushWatch,
    mock: Mock,
    dir: WorkDir,
}

impl World {
    fn new(name: &str) -> World {
        World::with_defines(name, &[])
    }

    /// With placeholders of the test config set (PARK_FORM, PUSH_REGISTERED).
    fn with_defines(name: &str, defines: &[(&str, &str)]) -> World {
        let dir = WorkDir::new(name);
        let mock = Mock::start(&dir.0, 0);
        let opensips = OpenSips::start_pushpark(
            &dir.0,
            &mock,
            PARK_TIMEOUT_MS,
            &opensips_module::build(),
            defines,
        );
        let watch = mock.watch();
        World {
            opensips,
            watch,
            mock,
            dir,
        }
    }

    fn path(&self) -> &Path {
        &self.dir.0
    }

    fn server(&self) -> String {
        self.opensips.addr()
    }

    /// The module's OpenSIPS statistics (MI get_statistics pushpark:).
    fn statistics(&self) -> serde_json::Value {
        let group = serde_json::json!({"statistics": ["pushpark:"]});
        self.opensips.mi("get_statistics", group).unwrap()
    }

    fn statistic(&self, name: &str) -> u64 {
        let all = self.statistics();
        all[format!("pushpark:{name}")]
            .as_u64()
            .unwrap_or_else(|| panic!("no statistic {name}: {all}"))
    }

    /// A phone that registered while awake and then fell asleep: pushpark knows its token,
    /// the location table has no binding.
    fn sleeping_phone(&self, user: &str) -> Phone {
        let phone = Phone::new(user);
        phone.register(self.path(), &self.server(), 3600);
        self.opensips.forget_binding(&phone.user);
        phone
    }

    fn call(&self, scenario: &str, user: &str) -> SippRun {
        let run = call(self.path(), &self.server(), scenario, user, &["-m", "1"]);
        assert!(
            run.status.success(),
            "{scenario}: SIPp caller failed ({})\n{}\nOpenSIPS:\n{}",
            run.status,
            run.log,
            self.log()
        );
        run
    }

    fn sim(&self, phones: &[&Phone], wake_ms: u64) -> Proc {
        device_sim(self.path(), &self.mock, &self.server(), phones, wake_ms)
    }

    fn log(&self) -> String {
        self.opensips.proc.log_text()
    }

    /// The devices pushpark keeps for the phone's AOR (MI pushpark_devices).
    fn devices(&self, phone: &Phone) -> serde_json::Value {
        let aor = serde_json::json!({"aor": phone.aor()});
        self.opensips.mi("pushpark_devices", aor).unwrap()
    }
}

/// The module loads, its engine process starts, and MI reaches it: pushpark_stats answers
/// with the engine's counters, pushpark_parked with an empty page, the module's statistics
/// are OpenSIPS statistics.
#[test]
fn mi_answers_through_the_fifo() {
    let _serial = serial();
    let w = World::new("os-mi");
    let stats = w
        .opensips
        .mi("pushpark_stats", serde_json::json!({}))
        .unwrap();
    assert_eq!(stats["parked_now"], 0, "{stats}");
    assert_eq!(stats["engine_restarts"], 0, "{stats}");
    let parked = w
        .opensips
        .mi("pushpark_parked", serde_json::json!({}))
        .unwrap();
    assert_eq!(parked["total"], 0, "{parked}");
    assert_eq!(parked["items"], serde_json::json!([]), "{parked}");
    let page = w
        .opensips
        .mi(
            "pushpark_parked",
            serde_json::json!({"offset": 0, "limit": 0}),
        )
        .unwrap_err();
    assert!(page.contains("limit"), "{page}");
    let devices = w
        .opensips
        .mi(
            "pushpark_devices",
            serde_json::json!({"aor": "sip:alice@example.com"}),
        )
        .unwrap();
    assert_eq!(devices["total"], 0, "{devices}");
    let counters = w.statistics();
    assert_eq!(counters["pushpark:parked"], 0, "{counters}");
    assert_eq!(counters["pushpark:registers"], 0, "{counters}");
}

/// A phone's REGISTER with push parameters (RFC 8599) is saved and its device learnt:
/// pushpark_devices lists it under the AOR, the registers statistic counts it.
#[test]
fn register_learns_the_device() {
    let _serial = serial();
    let w = World::new("os-register");
    let phone = Phone::new("osreg");
    phone.register(w.path(), &w.server(), 300);
    let devices = w
        .opensips
        .mi("pushpark_devices", serde_json::json!({"aor": phone.aor()}))
        .unwrap();
    assert_eq!(devices["total"], 1, "{devices}");
    assert!(
        devices.to_string().contains(&phone.instance),
        "{devices} lacks {}",
        phone.instance
    );
    let counters = w.statistics();
    assert_eq!(counters["pushpark:registers"], 1, "{counters}");
}

/// An iPhone whose app sleeps is pushed, wakes, registers, and the call waiting meanwhile
/// (pushpark_fork() with nobody to ring) is rung on the new binding (its branch injected
/// from the engine process) and answered.
#[test]
fn sleeping_iphone_is_woken_and_answers() {
    let _serial = serial();
    let w = World::new("os-woken");
    let phone = w.sleeping_phone("osalice");
    let mut ua = device_ua(w.path(), "device_answer.xml", phone.ua_port, 1, "alice-ua");
    let sim = w.sim(&[&phone], 0);

    let run = w.call("caller.xml", &phone.user);
    assert!(run.received(180), "the caller got no 180 Ringing");
    let push = w.watch.expect_push(&phone.token, SOON);
    assert_eq!(push["topic"], "com.example.app.voip");
    sim.expect_line(&format!("registered user={}", phone.user), SOON);
    assert!(
        ua.wait(SOON).success(),
        "the device did not take the whole call"
    );
    assert_eq!(count(&w.log(), "E2E-PARKED"), 1, "INVITEs parked");
    assert_eq!(count(&w.log(), "E2E-BRANCH"), 1, "branches injected");
    assert_eq!(w.statistic("forked"), 1);
    assert_eq!(w.statistic("branches_added"), 1);
    // The injected branch is the call's INVITE, with the Record-Route the request route
    // added before parking (once).
    let device = sipp_messages(w.path(), "device_answer.xml", &ua);
    let invite = &device[device
        .find("INVITE sip:")
        .expect("the device got no INVITE")..];
    let invite = &invite[..invite.find("\n\n").unwrap_or(invite.len())];
    assert_eq!(count(invite, "Record-Route:"), 1, "{invite}");
    assert_eq!(
        header(invite, "Call-ID"),
        header(&run.messages, "Call-ID"),
        "not the caller's call"
    );
}

/// Nobody wakes: the caller gets 480 at the park timeout, from the engine process.
#[test]
fn nobody_wakes_caller_gets_480_at_timeout() {
    let _serial = serial();
    let w = World::new("os-timeout");
    let phone = w.sleeping_phone("osbob");

    let run = w.call("caller_rejected.xml", &phone.user);
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
    assert_eq!(w.statistic("rejected"), 1);
    assert_eq!(w.statistic("resumed"), 0);
}

/// The caller CANCELs once the module's 110 says the push went out: 487 at once, the engine
/// forgets the call, and the app that wakes after that (it has to show the call it was
/// pushed for) gets the call's INVITE and at once a CANCEL saying the caller gave up, so it
/// can end what it shows: no ghost call.
#[test]
fn cancel_while_parked_gets_487_and_the_late_device_gets_invite_and_cancel() {
    let _serial = serial();
    let w = World::new("os-cancel");
    let phone = w.sleeping_phone("oscarol");
    let mut ua = device_ua(w.path(), "device_ring.xml", phone.ua_port, 1, "carol-ua");

    let run = w.call("caller_cancel.xml", &phone.user);
    w.watch.expect_push(&phone.token, SOON);
    wait_for("the engine to forget the cancelled call", SOON, || {
        let parked = w
            .opensips
            .mi("pushpark_parked", serde_json::json!({}))
            .ok()?;
        (parked["total"] == 0).then_some(())
    });
    let stats = w
        .opensips
        .mi("pushpark_stats", serde_json::json!({}))
        .unwrap();
    assert_eq!(stats["cancelled"], 1, "{stats}");
    assert_eq!(w.statistic("cancelled"), 1);

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
    let reason = header(cancel, "Reason").unwrap_or_default();
    assert!(
        reason == "SIP;cause=487" || reason.starts_with("SIP;cause=487;"),
        "CANCEL without the caller's cause:\n{cancel}"
    );
    let answered = format!("late wake: call {call_id}: INVITE to the woken device answered 487");
    wait_for("the late INVITE's 487 logged", SOON, || {
        w.log().contains(&answered).then_some(())
    });
    assert_eq!(w.statistic("late_wakes"), 1);
    assert_eq!(
        count(&w.log(), "E2E-BRANCH"),
        0,
        "a cancelled call was rung"
    );
    assert!(
        !w.log().contains(&phone.token),
        "a whole push token in OpenSIPS's log"
    );
    assert!(!w.log().contains("CRITICAL"), "tm complained:\n{}", w.log());
}

/// Two devices of one user are both pushed, both woken, and both ring in the one call.
#[test]
fn two_devices_both_woken_both_ring() {
    let _serial = serial();
    let w = World::new("os-twodev");
    let iphone = w.sleeping_phone("oserin");
    let ipad = Phone::new("oserin");
    assert_eq!(ipad.user, iphone.user);
    ipad.register(w.path(), &w.server(), 3600);
    w.opensips.forget_binding(&iphone.user);
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
    w.call("caller_two_ring.xml", &iphone.user);
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

/// A user with no push device is rejected at once by the script, as without the module.
#[test]
fn user_without_device_is_rejected_as_before() {
    let _serial = serial();
    let w = World::new("os-nodevice");
    let user = format!("osnodevice{}", std::process::id());

    w.call("caller_rejected.xml", &user);
    assert!(
        w.log().contains(&format!("E2E-NOT-PARKED(-2) user={user}")),
        "park said no device"
    );
    assert!(w.watch.drain().is_empty(), "no push may be sent");
}

/// APNs says the token is gone (410): the device is removed, the caller rejected, and the
/// next call is rejected at once without a push.
#[test]
fn apns_410_removes_device_and_rejects() {
    let _serial = serial();
    let w = World::new("os-gone");
    let phone = w.sleeping_phone("osdave");
    assert_eq!(w.devices(&phone)["total"], 1, "device known before");
    w.mock.script_reject(&phone.token, "Unregistered");

    w.call("caller_rejected.xml", &phone.user);
    assert_eq!(w.devices(&phone)["total"], 0, "device still there");
    w.call("caller_rejected.xml", &phone.user);
    assert!(w
        .log()
        .contains(&format!("E2E-NOT-PARKED(-2) user={}", phone.user)));
    assert!(
        w.watch.drain().is_empty(),
        "the mock accepted no push for a dead token"
    );
}

/// The registrar refuses what pushpark could never push: 555 for a push service it does not
/// push to (RFC 8599), 400 naming the fault for malformed parameters; neither is saved.
#[test]
fn register_with_bad_push_parameters_gets_400_and_unknown_provider_555() {
    let _serial = serial();
    let w = World::new("os-regcheck");
    let user = format!("osregcheck{}", std::process::id());

    let status = register_refused(
        w.path(),
        &w.server(),
        &user,
        "pn-provider=apns;pn-prid=not-a-token;pn-param=TESTTEAM01.com.example.app.voip",
    );
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
    assert!(!w.opensips.bound(&user), "a refused binding was saved");
}

/// The older form, pushpark_park() after a failed lookup(), wakes a sleeping phone too.
#[test]
fn older_park_form_still_wakes_and_answers() {
    let _serial = serial();
    let w = World::with_defines("os-parkform", &[("PARK_FORM", "park")]);
    let phone = w.sleeping_phone("osalan");
    let mut ua = device_ua(w.path(), "device_answer.xml", phone.ua_port, 1, "alan-ua");
    let _sim = w.sim(&[&phone], 0);

    w.call("caller.xml", &phone.user);
    w.watch.expect_push(&phone.token, SOON);
    assert!(ua.wait(SOON).success(), "the device did not take the call");
    assert_eq!(w.statistic("parked"), 1);
    assert_eq!(w.statistic("forked"), 0);
    assert_eq!(w.statistic("resumed"), 1);
}

/// pushpark_fork(): a user with a desk phone (no push parameters) and an iPhone whose app
/// keeps its binding while asleep (RFC 8599). The desk phone rings at once, the iPhone is
/// pushed and joins the call as a branch when its app registers, answers, and the desk
/// phone gets a CANCEL saying the call was completed elsewhere.
#[test]
fn desktop_rings_at_once_and_the_woken_iphone_joins_and_answers() {
    let _serial = serial();
    let w = World::new("os-fork");
    let phone = Phone::new("osivan");
    phone.register(w.path(), &w.server(), 3600);
    let desktop_port = free_port();
    register_desktop(w.path(), &w.server(), &phone.user, desktop_port);
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

    w.call("caller_fork.xml", &phone.user);
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
    // OpenSIPS writes the Reason (RFC 3326) with blanks before its parameters.
    let reason = header(cancel, "Reason")
        .unwrap_or_default()
        .replace(' ', "");
    assert_eq!(
        reason, "SIP;cause=200;text=\"Callcompletedelsewhere\"",
        "CANCEL without Call completed elsewhere:\n{cancel}"
    );
    // Rang at once: the desk phone's 180 came back before the woken app registered (the
    // app registered at setup, the desk phone, then the app again once woken).
    let log = w.log();
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
    // The iPhone's binding was held back (pushed), then rung once it woke: one branch
    // each.
    assert_eq!(count(&log, "E2E-BRANCH"), 2, "branches");
    assert_eq!(w.statistic("forked"), 1);
    assert_eq!(w.statistic("branches_added"), 1);
}

/// The desk phone answers while the pushed iPhone is still waking: when its app registers,
/// it gets the call's INVITE and at once a CANCEL saying the call was completed elsewhere.
#[test]
fn desktop_answers_first_and_the_late_iphone_gets_cancel_completed_elsewhere() {
    let _serial = serial();
    let w = World::new("os-forkdesk");
    let phone = w.sleeping_phone("oslena");
    let desktop_port = free_port();
    register_desktop(w.path(), &w.server(), &phone.user, desktop_port);
    let mut desktop = device_ua(
        w.path(),
        "device_answer.xml",
        desktop_port,
        1,
        "lena-desktop",
    );
    let mut iphone = device_ua(w.path(), "device_ring.xml", phone.ua_port, 1, "lena-iphone");

    let run = w.call("caller_fork.xml", &phone.user);
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
    assert_eq!(
        header(cancel, "Reason").as_deref(),
        Some("SIP;cause=200;text=\"Call completed elsewhere\""),
        "CANCEL without Call completed elsewhere:\n{cancel}"
    );
}

/// The park timeout passes while a desk phone still rings and the pushed iPhone never woke:
/// the caller gets no 480, the desk phone's answer connects the call.
#[test]
fn deadline_while_a_desk_phone_rings_leaves_the_call_to_it() {
    let _serial = serial();
    let w = World::new("os-forkdeadline");
    let phone = w.sleeping_phone("osomar");
    let desktop_port = free_port();
    register_desktop(w.path(), &w.server(), &phone.user, desktop_port);
    // Rings well past the park timeout, then answers.
    let ringing = (PARK_TIMEOUT_MS + 2000).to_string();
    let mut cmd = sipp("device_answer.xml", desktop_port);
    cmd.args(["-m", "1", "-d", &ringing, "-trace_msg"]);
    let mut desktop = Proc::spawn(cmd, "omar-desktop", w.path(), false);

    let run = w.call("caller_fork.xml", &phone.user);
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
        w.log()
            .contains("nobody woke in time, the ringing branches go on"),
        "the deadline did not pass while the desk phone rang"
    );
}

/// push_registered never: a binding lookup() finds is rung as it is, nobody is pushed.
#[test]
fn push_registered_never_rings_the_binding_without_a_push() {
    let _serial = serial();
    let w = World::with_defines("os-pushnever", &[("PUSH_REGISTERED", "never")]);
    let phone = Phone::new("osnever");
    phone.register(w.path(), &w.server(), 3600);
    let mut ua = device_ua(w.path(), "device_answer.xml", phone.ua_port, 1, "never-ua");

    w.call("caller.xml", &phone.user);
    assert!(ua.wait(SOON).success(), "the binding did not take the call");
    assert!(w.watch.drain().is_empty(), "a push was sent");
    assert_eq!(w.statistic("forked"), 0);
}

/// push_registered no_live_connection (the default): an app with a live TCP connection to
/// OpenSIPS is awake, so pushpark_fork() rings it at once over that connection and pushes
/// nothing (the UDP phones of the other tests are pushed).
#[test]
fn app_on_a_live_tcp_connection_rings_at_once_without_a_push() {
    let _serial = serial();
    let w = World::new("os-livetcp");
    let phone = Phone::new("oslive");
    // SIPp matches messages to calls by Call-ID: the app's REGISTER has the call's.
    let cid_str = "os-livetcp-%u@pushpark";
    let mut cmd = sipp("device_tcp.xml", phone.ua_port);
    cmd.arg(w.server())
        .args(["-t", "t1", "-s", &phone.user, "-m", "1", "-trace_msg"])
        .args(["-key", "token", &phone.token])
        .args(["-key", "instance", &phone.instance])
        .args(["-cid_str", cid_str]);
    let mut app = Proc::spawn(cmd, "oslive-app", w.path(), false);
    wait_for("the app registered over TCP", SOON, || {
        w.opensips.bound(&phone.user).then_some(())
    });

    let run = call(
        w.path(),
        &w.server(),
        "caller.xml",
        &phone.user,
        &["-m", "1", "-cid_str", cid_str],
    );
    assert!(run.status.success(), "caller: {}\n{}", run.log, w.log());
    assert!(
        app.wait(SOON).success(),
        "the app did not take the call\n{}",
        w.log()
    );
    assert!(w.watch.drain().is_empty(), "an awake app was pushed");
    assert_eq!(
        w.statistic("forked"),
        0,
        "the call was forked: a push was due"
    );
}

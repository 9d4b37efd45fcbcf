//! End to end with real third-party SIP clients from Debian: Linphone (`linphonec`,
//! liblinphone 5.1) is the iPhone app, registering with its own RFC 8599 Contact; baresip is the
//! user's desktop softphone. Kamailio runs the test config with the pushpark module, SIPp calls,
//! only APNs is the mock. REGISTERs are authenticated as the example config does (auth_db on
//! SQLite): each client answers the challenge with its user's password. A killed linphonec is the app iOS put away: its binding stays
//! registered; the waker starts it again when the mock accepts a VoIP push for its token.
//! Every test asserts what the clients did (their own logs, events and SIP messages) and what
//! the mock received.

#[allow(dead_code)]
#[path = "e2e/clients.rs"]
mod clients;
#[allow(dead_code)] // the rig serves the other e2e tests too
#[path = "../src/bin/pushpark/rig.rs"]
mod rig;

use clients::*;
use rig::*;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Long enough for a restart of linphonec and its REGISTER on a loaded machine.
const PARK_TIMEOUT_MS: u64 = 15000;

static SERIAL: Mutex<()> = Mutex::new(());

/// One test's world. Fields drop in order: Kamailio first, the work dir last.
struct World {
    kamailio: Kamailio,
    mock: Mock,
    subscribers: Subscribers,
    dir: WorkDir,
    _serial: MutexGuard<'static, ()>,
}

impl World {
    fn new(name: &str) -> World {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        require_clients();
        let dir = WorkDir::new(name);
        let mock = Mock::start(&dir.0, 0);
        let subscribers = Subscribers::create(&dir.0);
        let auth = [("AUTH_DB", subscribers.url())];
        let kamailio = Kamailio::start_pushpark(&dir.0, &mock, PARK_TIMEOUT_MS, &auth);
        World {
            kamailio,
            mock,
            subscribers,
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

    /// A user name with this run's pid, so logs and kept work dirs tell runs apart.
    fn user(name: &str) -> String {
        format!("{name}{}", std::process::id())
    }

    fn linphone(&self, user: &str, push: Option<PushTokens>, auto_answer: bool) -> Linphone {
        self.subscribers.add(user);
        let phone = Linphone::start(self.path(), &self.server(), user, push, auto_answer);
        phone.wait_registered();
        phone
    }

    fn baresip(&self, user: &str) -> Baresip {
        self.subscribers.add(user);
        let mut desk = Baresip::start(self.path(), &self.server(), user);
        desk.wait_registered();
        desk
    }

    /// SIPp makes one call to `user` with `scenario`.
    fn call(&self, scenario: &str, user: &str) -> SippRun {
        call(self.path(), &self.server(), scenario, user, &["-m", "1"])
    }

    /// SIPp calls `user` with `scenario` in the background (the test answers meanwhile).
    fn call_in_background(&self, scenario: &str, user: &str) -> std::thread::JoinHandle<SippRun> {
        let (dir, server) = (self.path().to_path_buf(), self.server());
        let (scenario, user) = (scenario.to_string(), user.to_string());
        std::thread::spawn(move || call(&dir, &server, &scenario, &user, &["-m", "1"]))
    }

    fn devices(&self, aor: &str) -> String {
        self.kamailio
            .kamcmd(&["pushpark.devices", aor])
            .unwrap_or_else(|e| panic!("pushpark.devices {aor}: {e}"))
    }

    /// SIPp calls `user`, whose killed `phone` the waker starts again on its VoIP push: the
    /// push carries the VoIP token and topic, the call succeeds. Returns the woken phone.
    fn call_woken(&self, phone: Linphone, tokens: &PushTokens, user: &str) -> Linphone {
        let waker = Waker::start(&self.mock, phone, false);
        let run = self.call("caller.xml", user);
        let (phone, push) = waker.woken();
        assert_voip_push(&push, tokens);
        assert_success(&run);
        phone
    }

    /// A linphone registered with these push tokens, then killed: asleep as iOS leaves it.
    fn sleeping_iphone(&self, user: &str, push: PushTokens, auto_answer: bool) -> Linphone {
        let mut phone = self.linphone(user, Some(push), auto_answer);
        phone.kill();
        phone
    }
}

fn aor(user: &str) -> String {
    format!("sip:{user}@127.0.0.1")
}

/// `pushpark.devices` lists exactly one device for the AoR: the phone's instance, its VoIP
/// token (the RPC shows a token's first 8 digits) and the app's VoIP topic.
fn assert_one_device(w: &World, phone: &Linphone, tokens: &PushTokens) {
    let devices = w.devices(&aor(&phone.user));
    for line in [
        format!("key: urn:uuid:{}", phone.instance),
        format!("token: {}...", &tokens.voip[..8]),
        format!("topic: {}", tokens.voip_topic()),
    ] {
        assert!(devices.contains(&line), "no {line:?} in {devices}");
    }
    assert_eq!(
        devices.matches("token:").count(),
        1,
        "one device: {devices}"
    );
}

fn assert_success(run: &SippRun) {
    assert!(run.status.success(), "caller failed:\n{}", run.log);
    assert!(run.received(200), "caller got no 200:\n{}", run.messages);
}

/// The push that woke the phone went to its VoIP token on the app's VoIP topic.
fn assert_voip_push(push: &serde_json::Value, tokens: &PushTokens) {
    assert_eq!(push["token"], tokens.voip.as_str(), "pushed token: {push}");
    assert_eq!(push["topic"], tokens.voip_topic().as_str(), "topic: {push}");
    assert_eq!(push["push_type"], "voip", "push type: {push}");
}

/// Both clients, no push: calls through Kamailio to and from each of them complete (with GRUU
/// off: Linphone's dialogs used to break at the ACK).
#[test]
fn plain_calls_to_and_from_linphone_and_baresip_complete() {
    let w = World::new("clients-plain");
    let (alice, bob) = (World::user("alice"), World::user("bob"));
    let mut phone = w.linphone(&alice, None, true);
    let mut desk = w.baresip(&bob);

    // SIPp -> linphone (auto-answer): linphone saw the ACK and the BYE.
    let run = w.call("caller.xml", &alice);
    assert_success(&run);
    phone.wait_console("connected.", 1);
    phone.wait_console("ended", 1);
    assert_eq!(phone.received("ACK").len(), 1, "ACKs linphone got");
    assert_eq!(phone.received("BYE").len(), 1, "BYEs linphone got");

    // SIPp -> baresip, answered on demand.
    let caller = w.call_in_background("caller.xml", &bob);
    desk.expect_event("CALL_INCOMING");
    desk.command("accept", "");
    desk.expect_event("CALL_ESTABLISHED");
    assert_success(&caller.join().unwrap());
    desk.expect_event("CALL_CLOSED");

    // baresip -> linphone, hung up by baresip.
    desk.command("dial", &aor(&alice));
    desk.expect_event("CALL_ESTABLISHED");
    phone.wait_console("connected.", 2);
    desk.command("hangup", "");
    phone.wait_console("ended", 2);

    // linphone -> baresip, hung up by linphone.
    phone.command(&format!("call {}", aor(&bob)));
    desk.expect_event("CALL_INCOMING");
    desk.command("accept", "");
    desk.expect_event("CALL_ESTABLISHED");
    phone.wait_console("connected.", 3);
    phone.command("terminate");
    desk.expect_event("CALL_CLOSED");
    phone.wait_console("ended", 3);
}

/// Both registered and awake, no push: both ring, the desktop answers, and linphone's INVITE
/// is cancelled as completed elsewhere (tm's Reason, RFC 3326): the baseline of scenario b.
#[test]
fn both_ring_desktop_answers_and_linphone_gets_cancel_completed_elsewhere() {
    let w = World::new("clients-both-ring");
    let user = World::user("alice");
    let phone = w.linphone(&user, None, false);
    let mut desk = w.baresip(&user);

    let caller = w.call_in_background("caller.xml", &user);
    desk.expect_event("CALL_INCOMING");
    phone.wait_console("Receiving new incoming call", 1);
    desk.command("accept", "");
    desk.expect_event("CALL_ESTABLISHED");
    assert_success(&caller.join().unwrap());
    desk.expect_event("CALL_CLOSED");
    assert_cancelled(&phone, "cause=200", "Call completed elsewhere");
}

/// Linphone received a CANCEL whose Reason has `cause` and `text`, and ended the call it
/// never answered.
fn assert_cancelled(phone: &Linphone, cause: &str, text: &str) {
    let cancels = wait_for("linphone got a CANCEL", SOON, || {
        Some(phone.received("CANCEL")).filter(|c| !c.is_empty())
    });
    let reason = cancels[0].header("Reason").unwrap_or("");
    assert!(
        reason.contains(cause) && reason.contains(text),
        "CANCEL's Reason: {reason:?}\n{}",
        cancels[0].text
    );
    phone.wait_console("ended", 1);
    let answers = phone.invite_answers();
    assert!(answers.contains(&487), "linphone's answers: {answers:?}");
    assert!(!answers.contains(&200), "linphone answered: {answers:?}");
}

/// What liblinphone 5.1 really puts in its Contact with push parameters, stable across
/// restarts, and that pushpark files it under the AoR with the VoIP token.
#[test]
fn linphone_voip_contact_is_learned_and_stable_across_restarts() {
    let w = World::new("clients-contact");
    let user = World::user("iphone");
    let tokens = PushTokens::voip();
    let mut phone = w.linphone(&user, Some(tokens.clone()), false);
    let contact = phone.register_contact();
    for param in [
        "pn-provider=apns".to_string(),
        format!("pn-prid={}:voip", tokens.voip),
        format!("pn-param={TEAM_ID}.{BUNDLE}.voip"),
        format!("+sip.instance=\"<urn:uuid:{}>\"", phone.instance),
    ] {
        assert!(contact.contains(&param), "{param} not in Contact {contact}");
    }
    // A restart (after SIGKILL) registers the same Contact and instance again.
    phone.restart();
    phone.wait_registered();
    assert_eq!(phone.register_contact(), contact, "Contact after a restart");
    assert_one_device(&w, &phone, &tokens);
}

/// The `remote&voip` Contact (Linphone's iOS app with both kinds of pushes) is learned and
/// a call pushes the VoIP token on the VoIP topic; the woken app answers.
#[test]
fn linphone_remote_and_voip_contact_is_pushed_with_the_voip_token() {
    let w = World::new("clients-remote-voip");
    let user = World::user("iphone");
    let tokens = PushTokens::remote_and_voip();
    let phone = w.sleeping_iphone(&user, tokens.clone(), true);
    let contact = phone.register_contact();
    let remote = tokens.remote.as_deref().unwrap();
    for param in [
        format!("pn-prid={remote}:remote&{}:voip", tokens.voip),
        format!("pn-param={TEAM_ID}.{BUNDLE}.remote&voip"),
    ] {
        assert!(contact.contains(&param), "{param} not in Contact {contact}");
    }
    assert_one_device(&w, &phone, &tokens);

    let phone = w.call_woken(phone, &tokens, &user);
    phone.wait_console("ended", 1);
    assert_eq!(phone.received("INVITE").len(), 1, "INVITEs linphone got");
}

/// Scenario a, the RFC 8599 model: the app is killed with its binding registered; a call
/// pushes it, iOS starts it, it registers again, gets the INVITE and answers.
#[test]
fn killed_linphone_is_pushed_woken_and_answers() {
    let w = World::new("clients-wake");
    let user = World::user("iphone");
    let tokens = PushTokens::voip();
    let phone = w.sleeping_iphone(&user, tokens.clone(), true);

    let phone = w.call_woken(phone, &tokens, &user);
    phone.wait_console("connected.", 1);
    phone.wait_console("ended", 1);
    assert_eq!(phone.received("INVITE").len(), 1, "INVITEs linphone got");
    assert_eq!(phone.received("BYE").len(), 1, "BYEs linphone got");
}

/// The binding is gone but pushpark's store is not: Kamailio restarted (its location table
/// lives in memory) while the app was killed. The call is parked, the stored VoIP token
/// pushed, the woken app registers, gets the INVITE and answers.
#[test]
fn after_a_kamailio_restart_killed_linphone_is_pushed_from_the_store_and_answers() {
    let mut w = World::new("clients-restart");
    let user = World::user("iphone");
    let tokens = PushTokens::voip();
    let phone = w.sleeping_iphone(&user, tokens.clone(), true);
    w.kamailio.restart();
    w.kamailio.wait_engine();
    assert!(
        w.kamailio
            .kamcmd(&["ul.lookup", "location", &user])
            .is_err(),
        "binding survived the restart"
    );

    let phone = w.call_woken(phone, &tokens, &user);
    phone.wait_console("connected.", 1);
    phone.wait_console("ended", 1);
    assert_eq!(phone.received("INVITE").len(), 1, "INVITEs linphone got");
}

/// Scenario b: the desktop rings at once, the killed iPhone is pushed and joins when woken;
/// the desktop answers; linphone's INVITE is cancelled as completed elsewhere (RFC 3326).
#[test]
fn desktop_answers_and_woken_linphone_gets_cancel_completed_elsewhere() {
    let w = World::new("clients-fork");
    let user = World::user("alice");
    let tokens = PushTokens::voip();
    let phone = w.sleeping_iphone(&user, tokens.clone(), false);
    let mut desk = w.baresip(&user);

    let waker = Waker::start(&w.mock, phone, false);
    let caller = w.call_in_background("caller.xml", &user);
    desk.expect_event("CALL_INCOMING");
    let (phone, push) = waker.woken();
    assert_voip_push(&push, &tokens);
    phone.wait_registered();
    phone.wait_console("Receiving new incoming call", 1);
    desk.command("accept", "");
    desk.expect_event("CALL_ESTABLISHED");
    assert_success(&caller.join().unwrap());
    desk.expect_event("CALL_CLOSED");

    assert_cancelled(&phone, "cause=200", "Call completed elsewhere");
}

/// Scenario c: the caller hangs up while the iPhone is still asleep; when it wakes late it
/// gets the INVITE and then a CANCEL with cause 487 (so it stops ringing at once).
#[test]
fn caller_gone_before_linphone_wakes_gets_invite_then_cancel_487() {
    let w = World::new("clients-late");
    let user = World::user("iphone");
    let tokens = PushTokens::voip();
    let phone = w.sleeping_iphone(&user, tokens.clone(), false);

    let mut waker = Waker::start(&w.mock, phone, true);
    // caller_cancel.xml CANCELs once the module says the push went out (110).
    let run = w.call("caller_cancel.xml", &user);
    assert!(run.status.success(), "caller failed:\n{}", run.log);
    assert!(run.received(487), "caller got no 487:\n{}", run.messages);
    waker.release();
    let (phone, push) = waker.woken();
    assert_voip_push(&push, &tokens);
    phone.wait_registered();

    assert_cancelled(&phone, "cause=487", "");
    assert_eq!(phone.received("INVITE").len(), 1, "INVITEs linphone got");
}

/// A relaunched app may register from another port: Kamailio replaces the binding (same
/// +sip.instance) and pushpark keeps one device.
#[test]
fn linphone_restarted_on_a_new_port_keeps_one_binding_and_one_device() {
    let w = World::new("clients-new-port");
    let user = World::user("iphone");
    let tokens = PushTokens::voip();
    let mut phone = w.linphone(&user, Some(tokens.clone()), false);
    let before = phone.register_contact();
    phone.restart_on_new_port();
    phone.wait_registered();
    let after = phone.register_contact();
    assert_ne!(after, before, "same Contact");
    assert!(
        after.contains(&format!(":{};", phone.port)),
        "new port in {after}"
    );
    let bindings = w
        .kamailio
        .kamcmd(&["ul.lookup", "location", &user])
        .unwrap();
    assert_eq!(
        bindings.matches("Address:").count(),
        1,
        "bindings: {bindings}"
    );
    assert_one_device(&w, &phone, &tokens);
}

/// SIPp REGISTERs `contact` for `user`, authenticating as `auth_user` with `password`
/// (register_auth.xml); whether it got its 200, and the replies it received.
fn register_as(w: &World, user: &str, auth: (&str, &str), contact: &str) -> (bool, String) {
    let mut cmd = sipp("register_auth.xml", free_port());
    cmd.arg(w.server())
        .args([
            "-s",
            user,
            "-m",
            "1",
            "-trace_msg",
            "-au",
            auth.0,
            "-ap",
            auth.1,
        ])
        .args(["-key", "contact", contact])
        .args(["-key", "expires", if contact == "*" { "0" } else { "3600" }]);
    let name = format!("register-{user}-as-{}", auth.0);
    let mut p = Proc::spawn(cmd, &name, w.path(), false);
    let ok = p.wait(SOON).success();
    let received = sipp_messages(w.path(), "register_auth.xml", &p)
        .lines()
        .filter(|l| l.starts_with("SIP/2.0 "))
        .collect::<Vec<_>>()
        .join("\n");
    (ok, received)
}

/// Only a user's own authenticated REGISTER changes her bindings: another subscriber (with
/// his own valid password) can neither `Contact: *` her phone away nor add his token to her
/// AoR (403), a wrong password gets challenged again, and her phone and push device stay as
/// they were. Her own `Contact: *` then removes both: the same REGISTER works for the owner.
#[test]
fn only_her_own_authenticated_register_changes_her_bindings() {
    let w = World::new("clients-auth");
    let (alice, mallory) = (World::user("alice"), World::user("mallory"));
    let tokens = PushTokens::voip();
    let phone = w.linphone(&alice, Some(tokens.clone()), false);
    w.subscribers.add(&mallory);
    // Her bound Contacts (ul.lookup's Address lines; an error once none is left).
    let bindings = || {
        let lookup = w.kamailio.kamcmd(&["ul.lookup", "location", &alice]);
        let text = lookup.unwrap_or_else(|e| e);
        text.lines()
            .filter(|l| l.contains("Address:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = bindings();
    assert_eq!(before.lines().count(), 1, "alice's bindings: {before}");

    let mallory_pw = password(&mallory);
    let hijack = format!(
        "<sip:{mallory}@127.0.0.1:5999;pn-provider=apns;pn-prid={};pn-param={TEAM_ID}.{BUNDLE}.voip>",
        "ab".repeat(32)
    );
    for contact in ["*", hijack.as_str()] {
        let (ok, replies) = register_as(&w, &alice, (&mallory, &mallory_pw), contact);
        assert!(!ok, "mallory's REGISTER of {contact} for alice succeeded");
        assert!(
            replies.contains("SIP/2.0 403 Forbidden: Not Your Registration"),
            "{contact}: {replies}"
        );
    }
    let (ok, replies) = register_as(&w, &alice, (&alice, "not-her-password"), "*");
    assert!(!ok, "a wrong password unregistered alice");
    // Challenged again (SIPp's trace may show the refused answer twice), never a 200.
    assert!(replies.matches("SIP/2.0 401").count() >= 2, "{replies}");
    assert!(!replies.contains("SIP/2.0 200"), "{replies}");
    assert_eq!(bindings(), before, "alice's bindings changed");
    assert_one_device(&w, &phone, &tokens);

    let (ok, replies) = register_as(&w, &alice, (&alice, &password(&alice)), "*");
    assert!(ok, "alice's own Contact: * failed: {replies}");
    assert_eq!(bindings(), "", "alice still bound");
    assert_eq!(
        w.devices(&aor(&alice)).matches("token:").count(),
        0,
        "push devices left"
    );
}

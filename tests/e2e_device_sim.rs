//! `pushpark device-sim` against the real mocks: a push to the mock APNs wakes the simulated
//! iPhone, a message to the mock FCM the simulated Android phone, which REGISTERs (RFC 8599
//! Contact parameters) with a registrar played by this test.

#[path = "mock_common/mod.rs"]
mod mock_common;
#[allow(dead_code)] // the rig serves the Kamailio tests and the demo too
#[path = "../src/bin/pushpark/rig.rs"]
mod rig;

use rig::{MockFcm, Phone, Proc, WorkDir, SOON};
use std::net::UdpSocket;
use std::process::Command;

/// A registrar on a UDP socket: hands back each request and answers what it is told.
struct Registrar(UdpSocket);

impl Registrar {
    fn new() -> Registrar {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(SOON)).unwrap();
        Registrar(s)
    }

    fn addr(&self) -> String {
        self.0.local_addr().unwrap().to_string()
    }

    fn receive(&self) -> (String, std::net::SocketAddr) {
        let mut buf = [0u8; 65536];
        let (n, from) = self.0.recv_from(&mut buf).expect("a REGISTER");
        (String::from_utf8(buf[..n].to_vec()).unwrap(), from)
    }

    /// Answers `request` with `code`, copying the headers a response needs.
    fn answer(&self, request: &str, code: u16, to: std::net::SocketAddr) {
        let mut out = format!("SIP/2.0 {code} OK\r\n");
        for line in request.split("\r\n") {
            let name = line.split(':').next().unwrap_or("");
            if ["Via", "From", "To", "Call-ID", "CSeq"].contains(&name) {
                out += line;
                out += "\r\n";
            }
        }
        out += "Content-Length: 0\r\n\r\n";
        self.0.send_to(out.as_bytes(), to).unwrap();
    }
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.split("\r\n")
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in\n{msg}"))
}

async fn push_to(mock: &pushpark::mock::MockApns, token: &str, payload: &str) {
    let mut conn = mock_common::connect(mock).await;
    let jwt = mock_common::jwt(mock);
    let answer = mock_common::send(&mut conn.send, mock_common::push(token, &jwt), payload)
        .await
        .expect("push sent");
    assert_eq!(answer.status, 200, "mock refused the push: {answer:?}");
}

fn start_sim(
    dir: &WorkDir,
    control: std::net::SocketAddr,
    registrar: &str,
    extra: &[&str],
) -> Proc {
    let mut cmd = Command::new(rig::pushpark_bin());
    cmd.arg("device-sim")
        .args(["--control", &control.to_string(), "--registrar", registrar])
        .args(extra);
    let sim = Proc::spawn(cmd, "device-sim", &dir.0, true);
    sim.expect_line("ready", SOON);
    sim
}

#[tokio::test]
async fn a_push_wakes_the_phone_which_registers_with_push_parameters() {
    let dir = WorkDir::new("devsim");
    let mock = mock_common::start(&dir.0.join("mock"));
    let control = mock.start_control("127.0.0.1:0".parse().unwrap()).unwrap();
    let registrar = Registrar::new();
    let phone = Phone::new("ivy");
    let [option, spec] = phone.sim_args();
    let sim = start_sim(&dir, control, &registrar.addr(), &[&option, &spec]);

    // A push for another token wakes nobody; then the phone's own.
    push_to(&mock, &"ab".repeat(32), r#"{"aps":{}}"#).await;
    push_to(&mock, &phone.token, r#"{"aps":{},"aor":"ignored"}"#).await;
    sim.expect_line(&format!("push user={}", phone.user), SOON);

    // The first REGISTER goes unanswered: the phone retransmits it (same Call-ID).
    let (first, _) = registrar.receive();
    let (again, from) = registrar.receive();
    assert_eq!(header(&first, "Call-ID"), header(&again, "Call-ID"));
    assert!(again.starts_with(&format!("REGISTER sip:{} SIP/2.0\r\n", registrar.addr())));
    assert!(header(&again, "To").contains(&format!("<sip:{}@", phone.user)));
    let contact = header(&again, "Contact");
    for part in [
        format!("<sip:{}@127.0.0.1:{};", phone.user, phone.ua_port),
        "pn-provider=apns;".into(),
        format!("pn-prid={};", phone.token),
        "pn-param=TESTTEAM01.com.example.app.voip>".into(),
        format!("+sip.instance=\"<urn:uuid:{}>\"", phone.instance),
    ] {
        assert!(
            contact.contains(&part),
            "{part} missing in Contact: {contact}"
        );
    }
    registrar.answer(&again, 200, from);
    sim.expect_line(&format!("registered user={}", phone.user), SOON);
}

#[tokio::test]
async fn any_mode_registers_the_pushed_aor_with_the_token_derived_instance() {
    let dir = WorkDir::new("devsim-any");
    let mock = mock_common::start(&dir.0.join("mock"));
    let control = mock.start_control("127.0.0.1:0".parse().unwrap()).unwrap();
    let registrar = Registrar::new();
    let sim = start_sim(
        &dir,
        control,
        &registrar.addr(),
        &["--any-contact-port", "5999"],
    );

    let token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    push_to(&mock, token, r#"{"aps":{},"aor":"sip:r800u7@example.com"}"#).await;
    let (register, from) = registrar.receive();
    let contact = header(&register, "Contact");
    assert!(
        contact.starts_with("<sip:r800u7@127.0.0.1:5999;"),
        "{contact}"
    );
    assert!(
        contact.contains("urn:uuid:01234567-89ab-cdef-0123-456789abcdef"),
        "{contact}"
    );
    registrar.answer(&register, 403, from);
    sim.expect_line("register-failed user=r800u7 status=403", SOON);
}

/// `pushpark fcm send` of a message to `token` through `mock`, as FCM's clients authenticate.
fn fcm_send(mock: &MockFcm, token: &str) {
    let out = Command::new(rig::pushpark_bin())
        .args(["fcm", "send", "--service-account"])
        .arg(mock.state_dir.join("service-account.json"))
        .args(["--token", token, "--endpoint", &mock.addr.to_string()])
        .arg("--ca")
        .arg(mock.state_dir.join("ca.pem"))
        .output()
        .expect("pushpark fcm send");
    assert!(
        out.status.success(),
        "fcm send: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_message_from_fcm_wakes_the_android_phone_which_registers_with_fcm_parameters() {
    let dir = WorkDir::new("devsim-android");
    let mock = MockFcm::start(&dir.0, "voip-app-sim");
    let registrar = Registrar::new();
    let phone = Phone::android("ada", "voip-app-sim");
    let [option, spec] = phone.sim_args();
    let mut cmd = Command::new(rig::pushpark_bin());
    cmd.arg("device-sim")
        .args(["--fcm-control", &mock.control.addr.to_string()])
        .args(["--registrar", &registrar.addr(), &option, &spec]);
    let sim = Proc::spawn(cmd, "device-sim", &dir.0, true);
    sim.expect_line("ready", SOON);

    // FCM tokens are case-sensitive: the same token in other case is another phone's.
    fcm_send(&mock, &phone.token.to_ascii_uppercase());
    fcm_send(&mock, &phone.token);
    // The first push line is the phone's own token's (its start shown).
    let woken = sim.expect_line("push ", SOON);
    let expected = format!(
        "push user={} token={}… fcm_name=projects/voip-app-sim/messages/",
        phone.user,
        &phone.token[..8]
    );
    assert!(woken.starts_with(&expected), "{woken}");

    let (register, from) = registrar.receive();
    let contact = header(&register, "Contact");
    for part in [
        format!("<sip:{}@127.0.0.1:{};", phone.user, phone.ua_port),
        "pn-provider=fcm;".into(),
        format!("pn-prid={};", phone.token),
        "pn-param=voip-app-sim>".into(),
        format!("+sip.instance=\"<urn:uuid:{}>\"", phone.instance),
    ] {
        assert!(
            contact.contains(&part),
            "{part} missing in Contact: {contact}"
        );
    }
    registrar.answer(&register, 200, from);
    sim.expect_line(&format!("registered user={}", phone.user), SOON);
}

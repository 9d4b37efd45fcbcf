//! A random sequence of C ABI calls on one engine (the real APNs client against the mock APNs
//! on loopback, the store in a fresh directory): REGISTERs, parks, forks, cancels, polls,
//! listings, with NULLs, non-UTF-8 and odd values among the arguments. What pushpark.h
//! promises must hold whatever the order:
//! - every call returns a known result code, never PUSHPARK_ERR_PANIC;
//! - every call event belongs to a call that was parked and has not ended: none after
//!   REJECT or after cancel / call_ended / call_completed returned OK, RESUME at most once;
//! - once the host has ended every call it parked, nothing is parked;
//! - no log line holds a whole device token or a JWT.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pushpark::ffi::sys::*;
// Named, so they are the library's functions and not the header's declarations in sys.
use pushpark::ffi::{
    pushpark_add_device, pushpark_call_completed, pushpark_call_ended, pushpark_cancel,
    pushpark_devices_json_page, pushpark_engine_free, pushpark_engine_new, pushpark_event_free,
    pushpark_event_get_aor, pushpark_event_get_call_id, pushpark_event_get_caller_name,
    pushpark_event_get_caller_uri, pushpark_event_get_contact, pushpark_event_get_device,
    pushpark_event_get_host_data, pushpark_event_get_host_ref, pushpark_event_get_kind, pushpark_event_get_park_id,
    pushpark_event_get_reason, pushpark_event_get_sip_code, pushpark_fork, pushpark_last_error,
    pushpark_park, pushpark_parked_json_page, pushpark_poll, pushpark_register_ordered,
    pushpark_remove_device, pushpark_result_name, pushpark_set_log_callback, pushpark_stats_get,
    pushpark_stats_json, pushpark_string_free,
};
use pushpark::mock::{MockApns, MockConfig, KEY_ID, TEAM_ID};
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::OnceLock;
use std::time::Duration;

const AORS: &[&str] = &["sip:alice@example.com", "sip:bob@example.com", ""];
const TOPIC: &str = "com.example.phone.voip";

fn token(i: usize) -> String {
    format!("{:064x}", 0xa11ce_u64 + i as u64)
}

/// Contacts a REGISTER or a fork may carry: push devices, a desk phone, the wildcard, junk.
fn contacts() -> Vec<String> {
    let mut c: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "<sip:u{i}@192.0.2.{i}:5060;pn-provider=apns;pn-prid={};pn-param={TEAM_ID}.{TOPIC}>",
                token(i)
            )
        })
        .collect();
    c.push(format!(
        "<sip:u9@192.0.2.9;pn-provider=apns.dev;pn-prid={}:voip;pn-param={TEAM_ID}.{TOPIC}>",
        token(9)
    ));
    c.push("<sip:desk@192.0.2.99:5060>".into());
    c.push("*".into());
    c.push("<sip:x@192.0.2.1;pn-provider=fcm;pn-prid=abc;pn-param=p>".into());
    c
}

const INSTANCES: &[&str] = &[
    "<urn:uuid:00000000-0000-0000-0000-000000000001>",
    "\"<urn:uuid:00000000-0000-0000-0000-000000000002>\"",
    "urn:uuid:00000000-0000-0000-0000-000000000001",
];
const WORDS: &[&str] = &[
    "call-1",
    "call-2",
    "\"Bob\" <sip:bob@example.com>",
    "Bob",
    "apns",
    "apns.dev",
];

/// A string argument: NULL, one of the values that mean something here, or any bytes.
#[derive(Arbitrary, Debug)]
enum Text {
    Null,
    Pick(u8),
    Raw(Vec<u8>),
}

impl Text {
    fn arg(&self, vocabulary: &[String]) -> Option<CString> {
        match self {
            Text::Null => None,
            Text::Pick(n) => {
                Some(CString::new(vocabulary[*n as usize % vocabulary.len()].clone()).unwrap())
            }
            Text::Raw(bytes) => {
                let bytes = bytes.split(|&b| b == 0).next().unwrap_or_default();
                Some(CString::new(bytes).unwrap())
            }
        }
    }
}

fn ptr(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(null(), |s| s.as_ptr())
}

#[derive(Arbitrary, Debug)]
enum Op {
    Register {
        aor: Text,
        contact: Text,
        instance: Text,
        expires: u16,
        call_id: Text,
        cseq: u8,
    },
    AddDevice {
        aor: Text,
        key: Text,
        provider: Text,
        token: Text,
        topic: Text,
        contact: Text,
    },
    RemoveDevice {
        aor: Text,
        key: Text,
    },
    Park(NewCall),
    /// With the Contacts the host's lookup found: (URI, +sip.instance, ringing).
    Fork(NewCall, Vec<(Text, Text, bool)>),
    Cancel {
        host_ref: u8,
    },
    CallEnded {
        host_ref: u8,
    },
    CallCompleted {
        host_ref: u8,
        status: u16,
    },
    Poll,
    /// Lets pushes, wakes and timeouts happen.
    Sleep {
        ms: u8,
    },
    Listings {
        aor: Text,
        offset: u8,
        limit: u16,
    },
}

/// The arguments of pushpark_park and pushpark_fork.
#[derive(Arbitrary, Debug)]
struct NewCall {
    call_id: Text,
    aor: Text,
    caller: Text,
    name: Text,
    host_ref: u8,
    timeout_ms: u16,
}

/// Short enough for a run to see calls time out; 0 is the configuration's.
fn timeout(ms: u16) -> u32 {
    u32::from(ms % 500)
}

/// A call as the host sees it (until its REJECT is polled it cannot tell whether the engine
/// ended it).
struct Call {
    host_ref: u64,
    ended: bool,
    resumed: bool,
}

struct Run {
    engine: *mut pushpark_engine,
    calls: HashMap<u64, Call>,
    vocab: Vocabulary,
}

struct Vocabulary {
    aors: Vec<String>,
    contacts: Vec<String>,
    instances: Vec<String>,
    words: Vec<String>,
}

fn checked(what: &str, rc: pushpark_result) -> pushpark_result {
    let name = unsafe { CStr::from_ptr(pushpark_result_name(rc)) }
        .to_str()
        .unwrap();
    assert_ne!(name, "PUSHPARK_UNKNOWN", "{what}: unknown result {rc}");
    assert_ne!(
        rc,
        PUSHPARK_ERR_PANIC,
        "{what}: a panic was caught: {}",
        last_error()
    );
    rc
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(pushpark_last_error()) }
        .to_string_lossy()
        .into_owned()
}

impl Run {
    /// The newest call of `host_ref` not known to have ended (park ids grow).
    fn live(&self, host_ref: u64) -> Option<u64> {
        self.calls
            .iter()
            .filter(|(_, c)| c.host_ref == host_ref && !c.ended)
            .map(|(id, _)| *id)
            .max()
    }

    fn op(&mut self, op: &Op) {
        let v = &self.vocab;
        let e = self.engine;
        match op {
            Op::Register {
                aor,
                contact,
                instance,
                expires,
                call_id,
                cseq,
            } => {
                let (aor, contact) = (aor.arg(&v.aors), contact.arg(&v.contacts));
                let (instance, call_id) = (instance.arg(&v.instances), call_id.arg(&v.words));
                let mut out = pushpark_register_outcome {
                    push_capable: 0,
                    stored: 0,
                    removed: 0,
                    resumed: 0,
                };
                let rc = unsafe {
                    pushpark_register_ordered(
                        e,
                        ptr(&aor),
                        ptr(&contact),
                        ptr(&instance),
                        u32::from(*expires),
                        ptr(&call_id),
                        u32::from(*cseq),
                        &mut out,
                    )
                };
                checked("register", rc);
            }
            Op::AddDevice {
                aor,
                key,
                provider,
                token: prid,
                topic,
                contact,
            } => {
                let tokens: Vec<String> = (0..3).map(token).collect();
                let args = [
                    aor.arg(&v.aors),
                    key.arg(&v.instances),
                    provider.arg(&v.words),
                    prid.arg(&tokens),
                    topic.arg(&[TOPIC.to_string()]),
                    contact.arg(&v.contacts),
                ];
                let rc = unsafe {
                    pushpark_add_device(
                        e,
                        ptr(&args[0]),
                        ptr(&args[1]),
                        ptr(&args[2]),
                        ptr(&args[3]),
                        ptr(&args[4]),
                        ptr(&args[5]),
                    )
                };
                checked("add_device", rc);
            }
            Op::RemoveDevice { aor, key } => {
                let (aor, key) = (aor.arg(&v.aors), key.arg(&v.instances));
                checked("remove_device", unsafe {
                    pushpark_remove_device(e, ptr(&aor), ptr(&key))
                });
            }
            Op::Park(call) => self.new_call("park", call, None),
            Op::Fork(call, contacts) => self.new_call("fork", call, Some(contacts)),
            Op::Cancel { host_ref } => {
                let host_ref = u64::from(*host_ref);
                let rc = checked("cancel", unsafe { pushpark_cancel(e, host_ref) });
                self.ended_by_host("cancel", rc, host_ref);
            }
            Op::CallEnded { host_ref } => {
                let host_ref = u64::from(*host_ref);
                let rc = checked("call_ended", unsafe { pushpark_call_ended(e, host_ref) });
                self.ended_by_host("call_ended", rc, host_ref);
            }
            Op::CallCompleted { host_ref, status } => {
                let host_ref = u64::from(*host_ref);
                let rc = checked("call_completed", unsafe {
                    pushpark_call_completed(e, host_ref, *status)
                });
                self.ended_by_host("call_completed", rc, host_ref);
            }
            Op::Poll => self.poll(),
            Op::Sleep { ms } => std::thread::sleep(Duration::from_millis(u64::from(*ms % 16))),
            Op::Listings { aor, offset, limit } => {
                let aor = aor.arg(&v.aors);
                let (offset, limit) = (usize::from(*offset % 8), usize::from(*limit % 1100));
                let (mut stats, mut parked, mut devices) = (null_mut(), null_mut(), null_mut());
                let listings = unsafe {
                    [
                        ("stats_json", pushpark_stats_json(e, &mut stats), stats),
                        (
                            "parked_json_page",
                            pushpark_parked_json_page(e, offset, limit, &mut parked),
                            parked,
                        ),
                        (
                            "devices_json_page",
                            pushpark_devices_json_page(e, ptr(&aor), offset, limit, &mut devices),
                            devices,
                        ),
                    ]
                };
                for (what, rc, json) in listings {
                    if checked(what, rc) == PUSHPARK_OK {
                        let text = unsafe { CStr::from_ptr(json) }
                            .to_str()
                            .expect("UTF-8 JSON");
                        let v = serde_json::from_str::<serde_json::Value>(text)
                            .unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
                        no_secret(what, text);
                        if let Some(items) = v.get("items") {
                            let n = items.as_array().expect("items").len();
                            assert!((1..=1000).contains(&limit) && n <= limit, "{what}: {text}");
                            assert_eq!(v["offset"], offset, "{what}: {text}");
                        }
                    } else if what != "stats_json"
                        && rc != PUSHPARK_ERR_NULL_ARG
                        && rc != PUSHPARK_ERR_UTF8
                    {
                        assert!(
                            limit == 0 || limit > 1000,
                            "{what} refused: {}",
                            last_error()
                        );
                    }
                    unsafe { pushpark_string_free(json) };
                }
            }
        }
    }

    fn new_call(&mut self, what: &str, c: &NewCall, contacts: Option<&[(Text, Text, bool)]>) {
        let v = &self.vocab;
        let args = [
            c.call_id.arg(&v.words),
            c.aor.arg(&v.aors),
            c.caller.arg(&v.words),
            c.name.arg(&v.words),
        ];
        let held: Vec<(Option<CString>, Option<CString>, bool)> = contacts
            .unwrap_or_default()
            .iter()
            .take(8)
            .map(|(uri, instance, ringing)| {
                (uri.arg(&v.contacts), instance.arg(&v.instances), *ringing)
            })
            .collect();
        let list: Vec<pushpark_contact> = held
            .iter()
            .map(|(uri, instance, ringing)| pushpark_contact {
                uri: ptr(uri),
                instance: ptr(instance),
                ringing: i32::from(*ringing),
            })
            .collect();
        let (e, host_ref, timeout) = (self.engine, u64::from(c.host_ref), timeout(c.timeout_ms));
        let [call_id, aor, caller, name] = args.each_ref().map(ptr);
        let mut park_id = 0;
        let rc = unsafe {
            match contacts {
                None => pushpark_park(
                    e,
                    call_id,
                    aor,
                    caller,
                    name,
                    host_ref,
                    host_data(host_ref),
                    timeout,
                    &mut park_id,
                ),
                Some(_) => pushpark_fork(
                    e,
                    call_id,
                    aor,
                    caller,
                    name,
                    host_ref,
                    host_data(host_ref),
                    timeout,
                    list.as_ptr(),
                    list.len(),
                    &mut park_id,
                ),
            }
        };
        self.parked(what, rc, host_ref, park_id);
    }

    fn parked(&mut self, what: &str, rc: pushpark_result, host_ref: u64, park_id: u64) {
        match checked(what, rc) {
            // A call of this host_ref still live for the host must have been ended by the
            // engine: its REJECT is queued, and the end of the run requires it.
            PUSHPARK_OK => {
                assert_ne!(park_id, 0, "{what}: OK without a park id");
                let old = self.calls.insert(
                    park_id,
                    Call {
                        host_ref,
                        ended: false,
                        resumed: false,
                    },
                );
                assert!(old.is_none(), "{what}: park id {park_id} given twice");
            }
            PUSHPARK_ERR_DUPLICATE => {
                assert!(
                    self.live(host_ref).is_some(),
                    "{what}: DUPLICATE for a free host_ref {host_ref}"
                );
            }
            _ => {}
        }
    }

    fn ended_by_host(&mut self, what: &str, rc: pushpark_result, host_ref: u64) {
        if rc == PUSHPARK_OK {
            let id = self.live(host_ref).unwrap_or_else(|| {
                panic!("{what}: OK for host_ref {host_ref}, which is not parked")
            });
            self.calls.get_mut(&id).unwrap().ended = true;
        }
    }

    fn poll(&mut self) {
        loop {
            let mut ev = null_mut();
            let rc = checked("poll", unsafe { pushpark_poll(self.engine, &mut ev) });
            if rc != PUSHPARK_OK {
                assert_eq!(rc, PUSHPARK_ERR_EMPTY, "poll: {}", last_error());
                return;
            }
            self.event(ev);
            unsafe { pushpark_event_free(ev) };
        }
    }

    fn event(&mut self, ev: *mut pushpark_event) {
        let (kind, host_ref, park_id, data) = unsafe {
            (
                pushpark_event_get_kind(ev),
                pushpark_event_get_host_ref(ev),
                pushpark_event_get_park_id(ev),
                pushpark_event_get_host_data(ev),
            )
        };
        let want = if host_ref == 0 { 0 } else { host_data(host_ref) };
        assert_eq!(data, want, "event {kind}: host_data of host_ref {host_ref}");
        for (what, s) in unsafe {
            [
                ("aor", pushpark_event_get_aor(ev)),
                ("device", pushpark_event_get_device(ev)),
                ("reason", pushpark_event_get_reason(ev)),
                ("call_id", pushpark_event_get_call_id(ev)),
                ("caller_uri", pushpark_event_get_caller_uri(ev)),
                ("caller_name", pushpark_event_get_caller_name(ev)),
                ("contact", pushpark_event_get_contact(ev)),
            ]
        } {
            if !s.is_null() {
                let text = unsafe { CStr::from_ptr(s) }
                    .to_str()
                    .unwrap_or_else(|_| panic!("event {what}: not UTF-8"));
                if what == "contact" {
                    no_secret("event contact", text);
                }
            }
        }
        match kind {
            PUSHPARK_EVENT_RESUME | PUSHPARK_EVENT_APPEND_BRANCH | PUSHPARK_EVENT_REJECT => {
                let call = self
                    .calls
                    .get_mut(&park_id)
                    .unwrap_or_else(|| panic!("event {kind} for unknown park id {park_id}"));
                assert_eq!(
                    call.host_ref, host_ref,
                    "event {kind}: host_ref of park {park_id}"
                );
                assert!(
                    !call.ended,
                    "event {kind} for park {park_id}, which had ended"
                );
                match kind {
                    PUSHPARK_EVENT_RESUME => {
                        assert!(!call.resumed, "a second RESUME for park {park_id}");
                        call.resumed = true;
                    }
                    PUSHPARK_EVENT_REJECT => {
                        let code = unsafe { pushpark_event_get_sip_code(ev) };
                        assert!((300..700).contains(&code), "REJECT with {code}");
                        call.ended = true;
                    }
                    _ => {}
                }
            }
            PUSHPARK_EVENT_PUSH_RESULT | PUSHPARK_EVENT_DEVICE_GONE | PUSHPARK_EVENT_LATE_WAKE => {
                assert_eq!(host_ref, 0, "event {kind} with a host_ref");
            }
            other => panic!("unknown event kind {other}"),
        }
    }
}

/// No whole token of ours and no JWT (its header is base64 of `{"`: `eyJ`).
fn no_secret(what: &str, text: &str) {
    for i in [0, 1, 2, 9] {
        assert!(
            !text.contains(&token(i)),
            "{what} holds a whole token: {text}"
        );
    }
    assert!(!text.contains("eyJ"), "{what} holds a JWT: {text}");
}

extern "C" fn log_line(_level: pushpark_log_level, msg: *const c_char, _user: *mut c_void) {
    let msg = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    // Called from the library's threads: a panic cannot unwind through C; abort instead.
    if std::panic::catch_unwind(|| no_secret("a log line", &msg)).is_err() {
        std::process::abort();
    }
}

fn mock() -> &'static MockApns {
    static MOCK: OnceLock<(MockApns, tempfile::TempDir)> = OnceLock::new();
    &MOCK
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let mock = MockApns::start(MockConfig::new(dir.path())).expect("mock APNs");
            let rc = pushpark_set_log_callback(Some(log_line), null_mut(), PUSHPARK_LOG_DEBUG);
            assert_eq!(rc, PUSHPARK_OK, "{}", last_error());
            (mock, dir)
        })
        .0
}

fuzz_target!(|ops: Vec<Op>| {
    let mock = mock();
    let store = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "apns": {
            "endpoint": format!("127.0.0.1:{}", mock.addr().port()),
            "ca_file": mock.ca_pem_path(),
            "auth": { "key_file": mock.key_path(), "key_id": KEY_ID, "team_id": TEAM_ID }
        },
        "store": { "dir": store.path() },
        "log_level": "debug"
    });
    let config = CString::new(config.to_string()).unwrap();
    let mut engine = null_mut();
    assert_eq!(
        unsafe { pushpark_engine_new(config.as_ptr(), &mut engine) },
        PUSHPARK_OK,
        "{}",
        last_error()
    );
    let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut run = Run {
        engine,
        calls: HashMap::new(),
        vocab: Vocabulary {
            aors: strings(AORS),
            contacts: contacts(),
            instances: strings(INSTANCES),
            words: strings(WORDS),
        },
    };
    for op in ops.iter().take(64) {
        run.op(op);
    }
    // The host ends what it parked; then nothing is parked, and no event follows for them.
    run.poll();
    let live: Vec<u64> = run
        .calls
        .values()
        .filter(|c| !c.ended)
        .map(|c| c.host_ref)
        .collect();
    for host_ref in live {
        let rc = checked("cancel at the end", unsafe {
            pushpark_cancel(engine, host_ref)
        });
        if rc == PUSHPARK_OK {
            run.ended_by_host("cancel", rc, host_ref);
        } else {
            // Ended by the engine meanwhile: its REJECT must be queued.
            assert_eq!(
                rc,
                PUSHPARK_ERR_NOT_FOUND,
                "cancel at the end: {}",
                last_error()
            );
        }
    }
    // A REJECT may be queued a moment after the engine took its call out of the table.
    let leftover = |run: &Run| {
        run.calls
            .iter()
            .filter(|(_, c)| !c.ended)
            .map(|(id, _)| *id)
            .collect::<Vec<_>>()
    };
    for _ in 0..100 {
        run.poll();
        if leftover(&run).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        leftover(&run).is_empty(),
        "calls neither ended by the host nor rejected: {:?}",
        leftover(&run)
    );
    let mut stats: pushpark_stats = unsafe { std::mem::zeroed() };
    stats.size = std::mem::size_of::<pushpark_stats>();
    assert_eq!(
        checked("stats", unsafe { pushpark_stats_get(engine, &mut stats) }),
        PUSHPARK_OK
    );
    assert_eq!(stats.parked_now, 0, "parked after every call ended");
    unsafe { pushpark_engine_free(engine) };
});

/// The host_data every park and fork of `host_ref` gives: its events must carry it back.
fn host_data(host_ref: u64) -> u64 {
    host_ref.rotate_left(32) ^ 0xa5a5_5a5a_0f0f_f0f0
}

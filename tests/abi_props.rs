//! Property test of the C ABI's string-taking functions: random sequences of
//! register / register_ordered / add_device / remove_device / park / fork /
//! cancel / call_completed / call_end / reject_waiting / config_check / contact_check /
//! devices_json_page with
//! arbitrary byte strings (invalid UTF-8, embedded NULs, kilobytes) and NULLs,
//! on a real engine against the mock APNs. Every call returns a code its
//! header comment documents, with a matching last error of one line and at
//! most 200 bytes; out-params are written only on success; no event or listing
//! shows a whole token; no event of a call is polled after the host ended it; each
//! event of a call carries the host_data it was parked with, and a call's PUSH_RESULT
//! says first_delivered at most once;
//! and every call parked ends exactly once while a refused park leaves nothing
//! behind (stats balance).

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use pushpark::ffi::*;
use pushpark::mock::{MockApns, MockConfig, TEAM_ID};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, CStr, CString};
use std::ptr;

mod engine_common;

// The result codes, as pushpark.h numbers them.
const OK: u32 = 0;
const NULL_ARG: u32 = 1;
const UTF8: u32 = 2;
const CONFIG: u32 = 3;
const NO_DEVICE: u32 = 4;
const LIMIT_TOTAL: u32 = 5;
const LIMIT_AOR: u32 = 6;
const QUEUE_FULL: u32 = 7;
const DUPLICATE: u32 = 8;
const NOT_FOUND: u32 = 9;
const EMPTY: u32 = 10;
const INVALID: u32 = 11;
const SHUTDOWN: u32 = 13;
const UNSUPPORTED: u32 = 16;
const EVENT_RESUME: u32 = 1;
/// PUSHPARK_PAGE_MAX.
const PAGE_MAX: usize = 1000;
const EVENT_APPEND_BRANCH: u32 = 2;
const EVENT_REJECT: u32 = 3;
const EVENT_PUSH_RESULT: u32 = 4;

/// A listing page's limit: valid ones, and each kind the library refuses.
fn page_limits() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        1..=3usize,
        Just(PAGE_MAX),
        Just(PAGE_MAX + 1),
        Just(usize::MAX)
    ]
}

/// Mostly the two users, sometimes an AOR the engine refuses.
const AORS: &[&str] = &[
    "sip:alice@example.com",
    "sip:alice@example.com",
    "sip:alice@example.com",
    "sip:bob@example.com",
    "sip:bob@example.com",
    "sip:bob@example.com",
    " ",
    "",
];
const TOKEN: &str = "5eed00000000000000000000000000000000000000000000000000000000abcd";

/// One string argument as the C caller passes it: NULL, or bytes that C sees
/// up to the first NUL.
#[derive(Debug, Clone)]
struct Arg(Option<Vec<u8>>);

/// What the library must make of an argument.
#[derive(Debug, PartialEq)]
enum Seen {
    Null,
    NotUtf8,
    Text(String),
}

impl Arg {
    fn c_string(&self) -> Option<CString> {
        let bytes = self.0.as_ref()?;
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        Some(CString::new(&bytes[..end]).unwrap())
    }

    fn seen(&self) -> Seen {
        match self.c_string() {
            None => Seen::Null,
            Some(c) => match c.into_string() {
                Ok(s) => Seen::Text(s),
                Err(_) => Seen::NotUtf8,
            },
        }
    }
}

/// Plausible values for the role.
fn arg(plausible: Vec<String>) -> impl Strategy<Value = Arg> {
    prop::sample::select(plausible).prop_map(|s| Arg(Some(s.into_bytes())))
}

/// Anything C could pass instead.
fn garbage() -> impl Strategy<Value = Arg> {
    let bytes = prop_oneof![
        any::<String>().prop_map(String::into_bytes),
        any::<Vec<u8>>(),
        // Valid text spoilt by one bad sequence: a stray byte, a truncated
        // character, a surrogate, an overlong NUL, or an embedded NUL.
        (
            ".{0,8}",
            prop::sample::select(vec![
                vec![0xffu8],
                vec![0xc3],
                vec![0xed, 0xa0, 0x80],
                vec![0xc0, 0x80],
                vec![0],
            ]),
            ".{0,8}"
        )
            .prop_map(|(a, bad, b)| [a.into_bytes(), bad, b.into_bytes()].concat()),
        ("[a-z\u{e9}\u{1f600}]", 900..5000usize).prop_map(|(s, n)| s.repeat(n).into_bytes()),
    ];
    prop_oneof![4 => bytes.prop_map(|b| Arg(Some(b))), 1 => Just(Arg(None))]
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn contacts() -> Vec<String> {
    let contact = |user: &str| {
        format!(
            "<sip:{user}@192.0.2.10:5061;pn-provider=apns;pn-prid={TOKEN};\
             pn-param={TEAM_ID}.com.example.phone.voip>;+sip.instance=\"<urn:uuid:{user}>\""
        )
    };
    vec![
        contact("alice"),
        contact("alice"),
        contact("bob"),
        contact("bob"),
        "sip:carol@192.0.2.11".into(),
        "*".into(),
        "<sip:a@h;pn-provider=apns;pn-prid=zz>".into(),
        "<sip:a@h;pn-provider=fcm;pn-prid=zz>".into(),
        format!("<sip:a@h;pn-provider=apns;pn-prid={TOKEN}:remote;pn-param={TEAM_ID}.b.voip>"),
        format!("{}, sip:dan@192.0.2.12", contact("bob")),
    ]
}

/// One Contact of a fork: (uri, instance, ringing).
type ForkArg = (Arg, Arg, bool);

#[derive(Debug, Clone)]
enum Op {
    Register {
        aor: Arg,
        contact: Arg,
        instance: Arg,
        expires: u32,
        /// Some: pushpark_register_ordered with this Call-ID and CSeq.
        order: Option<(Arg, u32)>,
    },
    AddDevice {
        aor: Arg,
        key: Arg,
        provider: Arg,
        token: Arg,
        topic: Arg,
        contact: Arg,
    },
    RemoveDevice {
        aor: Arg,
        key: Arg,
    },
    Park {
        call_id: Arg,
        aor: Arg,
        caller_uri: Arg,
        caller_name: Arg,
        host_ref: u64,
        host_data: u64,
        timeout_ms: u32,
    },
    Fork {
        call_id: Arg,
        aor: Arg,
        host_ref: u64,
        host_data: u64,
        contacts: Vec<ForkArg>,
    },
    Cancel {
        host_ref: u64,
    },
    CallEnd {
        host_ref: u64,
        status: u16,
    },
    RejectWaiting {
        sip_code: u16,
    },
    CallCompleted {
        host_ref: u64,
        status: u16,
    },
    ConfigCheck {
        json: Arg,
    },
    ContactCheck {
        contact: Arg,
    },
    DevicesJsonPage {
        aor: Arg,
        offset: usize,
        limit: usize,
    },
}

fn plausible_op() -> impl Strategy<Value = Op> {
    let aor = || arg(strings(AORS));
    let key = || arg(strings(&["", "urn:uuid:alice", "urn:uuid:bob", TOKEN]));
    prop_oneof![
        4 => (aor(), arg(contacts()), arg(strings(&["urn:uuid:alice", "<URN:UUID:bob>"])),
              prop::sample::select(vec![0u32, 600]),
              proptest::option::of((arg(strings(&["r1@h", "r2@h"])), 1..4u32)))
            .prop_map(|(aor, contact, instance, expires, order)| Op::Register {
                aor, contact, instance, expires, order
            }),
        3 => (aor(), key(), arg(strings(&["apns", "apns.dev", "fcm"])),
              arg(strings(&[TOKEN, &TOKEN[..32], "00"])),
              arg(strings(&["com.example.phone.voip", "com.example.phone"])),
              arg(strings(&["", "sip:x@h"])))
            .prop_map(|(aor, key, provider, token, topic, contact)| Op::AddDevice {
                aor, key, provider, token, topic, contact
            }),
        1 => (aor(), key()).prop_map(|(aor, key)| Op::RemoveDevice { aor, key }),
        8 => (arg(strings(&["c1@h", "c2@h", "c3@h", "c4@h", ""])), aor(), arg(strings(&["sip:bob@h"])),
              arg(strings(&["Bob \"B\" \\", ""])), (1..6u64, any::<u64>()),
              prop::sample::select(vec![0u32, 0, 600_000, 600_000, 3_600_001]))
            .prop_map(|(call_id, aor, caller_uri, caller_name, (host_ref, host_data), timeout_ms)| {
                Op::Park { call_id, aor, caller_uri, caller_name, host_ref, host_data, timeout_ms }
            }),
        3 => (arg(strings(&["f1@h", "f2@h"])), aor(), (0..6u64, any::<u64>()),
              prop::collection::vec(
                  (arg(contacts()), arg(strings(&["<urn:uuid:alice>", "urn:uuid:bob"])),
                   any::<bool>()),
                  0..3))
            .prop_map(|(call_id, aor, (host_ref, host_data), contacts)| Op::Fork {
                call_id, aor, host_ref, host_data, contacts
            }),
        2 => (1..6u64).prop_map(|host_ref| Op::Cancel { host_ref }),
        1 => (1..6u64, prop::sample::select(vec![0u16, 200, 487]))
            .prop_map(|(host_ref, status)| Op::CallEnd { host_ref, status }),
        1 => prop::sample::select(vec![503u16, 480, 200])
            .prop_map(|sip_code| Op::RejectWaiting { sip_code }),
        1 => (1..6u64, prop::sample::select(vec![200u16, 487, 603]))
            .prop_map(|(host_ref, status)| Op::CallCompleted { host_ref, status }),
        1 => arg(strings(&["{}", "{\"apns\":1}"])).prop_map(|json| Op::ConfigCheck { json }),
        2 => arg(contacts()).prop_map(|contact| Op::ContactCheck { contact }),
        1 => (aor(), prop_oneof![Just(0), 0..3usize, Just(usize::MAX)], page_limits())
            .prop_map(|(aor, offset, limit)| Op::DevicesJsonPage { aor, offset, limit }),
    ]
}

impl Op {
    fn args_mut(&mut self) -> Vec<&mut Arg> {
        match self {
            Op::Register {
                aor,
                contact,
                instance,
                order,
                ..
            } => {
                let mut args = vec![aor, contact, instance];
                args.extend(order.as_mut().map(|(call_id, _)| call_id));
                args
            }
            Op::AddDevice {
                aor,
                key,
                provider,
                token,
                topic,
                contact,
            } => {
                vec![aor, key, provider, token, topic, contact]
            }
            Op::RemoveDevice { aor, key } => vec![aor, key],
            Op::Park {
                call_id,
                aor,
                caller_uri,
                caller_name,
                ..
            } => {
                vec![call_id, aor, caller_uri, caller_name]
            }
            Op::Fork {
                call_id,
                aor,
                contacts,
                ..
            } => {
                let mut args = vec![call_id, aor];
                for (uri, instance, _) in contacts {
                    args.push(uri);
                    args.push(instance);
                }
                args
            }
            Op::Cancel { .. }
            | Op::CallCompleted { .. }
            | Op::CallEnd { .. }
            | Op::RejectWaiting { .. } => vec![],
            Op::ConfigCheck { json } => vec![json],
            Op::ContactCheck { contact } => vec![contact],
            Op::DevicesJsonPage { aor, .. } => vec![aor],
        }
    }
}

/// A plausible call with none, one or two of its arguments replaced by garbage.
fn op() -> impl Strategy<Value = Op> {
    let spoils = prop_oneof![
        4 => Just(Vec::new()),
        2 => prop::collection::vec((any::<prop::sample::Index>(), garbage()), 1..=1),
        1 => prop::collection::vec((any::<prop::sample::Index>(), garbage()), 2..=2),
    ];
    (plausible_op(), spoils).prop_map(|(mut op, spoils)| {
        let mut args = op.args_mut();
        let n = args.len();
        if n > 0 {
            for (at, bad) in spoils {
                *args[at.index(n)] = bad;
            }
        }
        op
    })
}

fn ptr_of(c: &Option<CString>) -> *const c_char {
    c.as_ref().map_or(ptr::null(), |c| c.as_ptr())
}

fn last_error() -> String {
    // SAFETY: pushpark_last_error never returns NULL; the string is valid until the next call.
    unsafe { CStr::from_ptr(pushpark_last_error()) }
        .to_str()
        .expect("the last error is UTF-8")
        .to_string()
}

/// A library-owned JSON string, parsed and freed.
fn take_json(code: u32, s: *mut c_char) -> Result<Value, TestCaseError> {
    prop_assert_eq!(code, OK, "{}", last_error());
    // SAFETY: on OK the library wrote a NUL-terminated string we now own.
    let text = unsafe { CStr::from_ptr(s) }.to_str().unwrap().to_string();
    unsafe { pushpark_string_free(s) };
    serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))
}

/// The code and the last error agree, and bad arguments are reported as such:
/// `args` are (name, argument, required).
fn check_common(
    code: u32,
    documented: &[u32],
    args: &[(&str, &Arg, bool)],
) -> Result<(), TestCaseError> {
    let detail = last_error();
    prop_assert!(
        detail.len() <= 200 && !detail.chars().any(char::is_control),
        "last error: {:?}",
        detail
    );
    prop_assert!(!detail.contains(TOKEN), "a whole token: {}", detail);
    prop_assert!(
        documented.contains(&code),
        "undocumented code {}: {}",
        code,
        detail
    );
    prop_assert_eq!(
        code == OK,
        detail.is_empty(),
        "code {}, last error {:?}",
        code,
        detail
    );
    let bad: Vec<(&str, u32)> = args
        .iter()
        .filter_map(|(name, a, required)| match a.seen() {
            Seen::Null if *required => Some((*name, NULL_ARG)),
            Seen::NotUtf8 => Some((*name, UTF8)),
            _ => None,
        })
        .collect();
    if bad.is_empty() {
        prop_assert!(code != NULL_ARG && code != UTF8, "{}: {}", code, detail);
    } else {
        // The header promises no order among several bad arguments.
        prop_assert!(
            bad.iter()
                .any(|(name, c)| *c == code && detail.starts_with(&format!("{name} is "))),
            "bad arguments {:?}, got {} {:?}",
            bad,
            code,
            detail
        );
    }
    Ok(())
}

struct Case {
    engine: *mut std::ffi::c_void,
    rules: *mut std::ffi::c_void,
    /// park_id → host_ref of every successful park or fork.
    parked: BTreeMap<u64, u64>,
    /// park_id → the host_data it was parked with.
    data: BTreeMap<u64, u64>,
    /// park_ids with a PUSH_RESULT saying first_delivered.
    first_delivered: BTreeSet<u64>,
    /// park_ids the host ended or that ended with a REJECT (a fork's state is known).
    ended_parks: BTreeSet<u64>,
    /// Draining right after pushpark_reject_waiting: its sip_code, else 0.
    stopping: u16,
    /// park_ids whose one ending was pushpark_reject_waiting's REJECT (counted cancelled).
    stopped: BTreeSet<u64>,
    /// park_ids of the forks (their first APPEND_BRANCH counts as resumed).
    forks: BTreeSet<u64>,
    /// host_refs the host ended (cancel / call_completed OK) and did not park again.
    ended: BTreeSet<u64>,
    /// host_refs of refused parks that never parked.
    refused: BTreeSet<u64>,
    /// Terminal events (RESUME, REJECT) by park_id.
    endings: BTreeMap<u64, Vec<u32>>,
    /// How many parks returned each code.
    park_codes: BTreeMap<u32, u64>,
}

impl Case {
    fn drain(&mut self) -> Result<(), TestCaseError> {
        loop {
            let mut ev = ptr::null_mut();
            // SAFETY: a live engine; ev is an out-param.
            let code = unsafe { pushpark_poll(self.engine.cast(), &mut ev) };
            if code == EMPTY {
                prop_assert!(ev.is_null());
                return Ok(());
            }
            prop_assert_eq!(code, OK);
            // SAFETY: ev is an event we own until pushpark_event_free; its strings too.
            let (kind, park_id, host_ref, device, contact) = unsafe {
                let text = |p: *const c_char| CStr::from_ptr(p).to_string_lossy().into_owned();
                (
                    pushpark_event_get_kind(ev),
                    pushpark_event_get_park_id(ev),
                    pushpark_event_get_host_ref(ev),
                    text(pushpark_event_get_device(ev)),
                    text(pushpark_event_get_contact(ev)),
                )
            };
            // SAFETY: as above.
            let (host_data, first, sip_code) = unsafe {
                (
                    pushpark_event_get_host_data(ev),
                    pushpark_event_get_first_delivered(ev),
                    pushpark_event_get_sip_code(ev),
                )
            };
            let given = match host_ref {
                0 => 0,
                _ => self.data.get(&park_id).copied().unwrap_or(0),
            };
            prop_assert_eq!(
                host_data,
                given,
                "event {} of park {}: host_data",
                kind,
                park_id
            );
            if first != 0 {
                prop_assert!(kind == EVENT_PUSH_RESULT && host_ref != 0);
                prop_assert!(
                    self.first_delivered.insert(park_id),
                    "park {}: first_delivered twice",
                    park_id
                );
            }
            if kind == EVENT_REJECT {
                self.ended_parks.insert(park_id);
                if self.stopping != 0 {
                    let code = self.stopping;
                    prop_assert_eq!(
                        sip_code,
                        code,
                        "reject_waiting's REJECT of park {}",
                        park_id
                    );
                    if self.endings.contains_key(&park_id) {
                        // A fork a device joined: its end, not a second ending.
                        continue;
                    }
                    self.stopped.insert(park_id);
                }
            }
            unsafe { pushpark_event_free(ev) };
            prop_assert!(!device.contains(TOKEN) && !contact.contains(TOKEN));
            prop_assert!(
                host_ref == 0 || !self.ended.contains(&host_ref),
                "event {} for host_ref {} after the host ended it",
                kind,
                host_ref
            );
            if park_id != 0 {
                let parked_as = self.parked.get(&park_id).copied();
                prop_assert!(
                    parked_as.is_some(),
                    "event {} for park {} that never parked",
                    kind,
                    park_id
                );
                prop_assert!(
                    host_ref == 0 || parked_as == Some(host_ref),
                    "event {} for park {}: host_ref {}",
                    kind,
                    park_id,
                    host_ref
                );
            }
            let first_branch = kind == EVENT_APPEND_BRANCH
                && self.forks.contains(&park_id)
                && !self.endings.contains_key(&park_id);
            if kind == EVENT_RESUME || kind == EVENT_REJECT || first_branch {
                self.endings.entry(park_id).or_default().push(kind);
            }
        }
    }

    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let e = self.engine.cast();
        match op {
            Op::Register {
                aor,
                contact,
                instance,
                expires,
                order,
            } => {
                let (a, c, i) = (aor.c_string(), contact.c_string(), instance.c_string());
                let mut out = REGISTER_UNTOUCHED;
                let out_ptr = ptr::from_mut(&mut out).cast();
                let (p, c, i) = (ptr_of(&a), ptr_of(&c), ptr_of(&i));
                let mut args = vec![
                    ("aor", aor, true),
                    ("contact", contact, true),
                    ("instance", instance, false),
                ];
                // SAFETY: live engine, NUL-terminated or NULL strings, a valid out-param.
                let code = match order {
                    None => unsafe { pushpark_register(e, p, c, i, *expires, out_ptr) },
                    Some((call_id, cseq)) => {
                        args.push(("call_id", call_id, false));
                        let id = call_id.c_string();
                        unsafe {
                            pushpark_register_ordered(
                                e,
                                p,
                                c,
                                i,
                                *expires,
                                ptr_of(&id),
                                *cseq,
                                out_ptr,
                            )
                        }
                    }
                };
                check_common(code, &[OK, INVALID, UNSUPPORTED, NULL_ARG, UTF8], &args)?;
                if code == OK {
                    prop_assert!([out.push_capable, out.stored, out.removed]
                        .iter()
                        .all(|&b| b == 0 || b == 1));
                } else {
                    prop_assert!(
                        out.push_capable == -1 && out.resumed == u32::MAX,
                        "out written on failure"
                    );
                }
            }
            Op::AddDevice {
                aor,
                key,
                provider,
                token,
                topic,
                contact,
            } => {
                let cs = [aor, key, provider, token, topic, contact].map(Arg::c_string);
                let p = cs.each_ref().map(ptr_of);
                // SAFETY: as above.
                let code = unsafe { pushpark_add_device(e, p[0], p[1], p[2], p[3], p[4], p[5]) };
                let args = [
                    ("aor", aor, true),
                    ("device_key", key, true),
                    ("provider", provider, true),
                    ("token", token, true),
                    ("topic", topic, true),
                    ("contact", contact, false),
                ];
                check_common(code, &[OK, INVALID, NULL_ARG, UTF8], &args)?;
            }
            Op::RemoveDevice { aor, key } => {
                let (a, k) = (aor.c_string(), key.c_string());
                // SAFETY: as above.
                let code = unsafe { pushpark_remove_device(e, ptr_of(&a), ptr_of(&k)) };
                let args = [("aor", aor, true), ("device_key", key, true)];
                check_common(code, &[OK, NOT_FOUND, NULL_ARG, UTF8], &args)?;
            }
            Op::Park {
                call_id,
                aor,
                caller_uri,
                caller_name,
                host_ref,
                host_data,
                timeout_ms,
            } => {
                let cs = [call_id, aor, caller_uri, caller_name].map(Arg::c_string);
                let p = cs.each_ref().map(ptr_of);
                let mut park_id = u64::MAX;
                // SAFETY: as above.
                let code = unsafe {
                    pushpark_park(
                        e,
                        p[0],
                        p[1],
                        p[2],
                        p[3],
                        *host_ref,
                        *host_data,
                        *timeout_ms,
                        &mut park_id,
                    )
                };
                let documented = [
                    OK,
                    NO_DEVICE,
                    LIMIT_TOTAL,
                    LIMIT_AOR,
                    QUEUE_FULL,
                    DUPLICATE,
                    INVALID,
                    SHUTDOWN,
                    NULL_ARG,
                    UTF8,
                ];
                let args = [
                    ("call_id", call_id, true),
                    ("aor", aor, true),
                    ("caller_uri", caller_uri, true),
                    ("caller_name", caller_name, false),
                ];
                check_common(code, &documented, &args)?;
                *self.park_codes.entry(code).or_default() += 1;
                if *timeout_ms > 3_600_000 {
                    prop_assert!(code != OK, "a timeout over an hour was accepted");
                }
                self.parked_or_refused(code, park_id, *host_ref, *host_data)?;
            }
            Op::Fork {
                call_id,
                aor,
                host_ref,
                host_data,
                contacts,
            } => {
                let (id, a) = (call_id.c_string(), aor.c_string());
                let strings: Vec<_> = contacts
                    .iter()
                    .map(|(uri, instance, _)| (uri.c_string(), instance.c_string()))
                    .collect();
                let list: Vec<ContactArg> = strings
                    .iter()
                    .zip(contacts)
                    .map(|((uri, instance), (_, _, ringing))| ContactArg {
                        uri: ptr_of(uri),
                        instance: ptr_of(instance),
                        ringing: (*ringing).into(),
                    })
                    .collect();
                let from = c"sip:bob@h";
                let mut park_id = u64::MAX;
                // SAFETY: live engine, NUL-terminated strings, `list` as the header's
                // pushpark_contact array (NULL when empty is allowed), an out-param.
                let code = unsafe {
                    pushpark_fork(
                        e,
                        ptr_of(&id),
                        ptr_of(&a),
                        from.as_ptr(),
                        ptr::null(),
                        *host_ref,
                        *host_data,
                        0,
                        if list.is_empty() {
                            ptr::null()
                        } else {
                            list.as_ptr().cast()
                        },
                        list.len(),
                        &mut park_id,
                    )
                };
                let mut args = vec![("call_id", call_id, true), ("aor", aor, true)];
                let names: Vec<(String, String)> = (0..contacts.len())
                    .map(|i| {
                        (
                            format!("contacts[{i}].uri"),
                            format!("contacts[{i}].instance"),
                        )
                    })
                    .collect();
                for ((uri, instance, _), (u, i)) in contacts.iter().zip(&names) {
                    args.push((u, uri, true));
                    args.push((i, instance, false));
                }
                let documented = [
                    OK,
                    NO_DEVICE,
                    LIMIT_TOTAL,
                    LIMIT_AOR,
                    QUEUE_FULL,
                    DUPLICATE,
                    INVALID,
                    SHUTDOWN,
                    NULL_ARG,
                    UTF8,
                ];
                check_common(code, &documented, &args)?;
                *self.park_codes.entry(code).or_default() += 1;
                if *host_ref == 0 {
                    prop_assert!(code != OK, "host_ref 0 was forked");
                }
                self.parked_or_refused(code, park_id, *host_ref, *host_data)?;
                if code == OK {
                    self.forks.insert(park_id);
                }
            }
            Op::CallEnd { host_ref, status } => {
                let forked = self.parked.iter().any(|(id, h)| {
                    *h == *host_ref && self.forks.contains(id) && !self.ended_parks.contains(id)
                });
                let mut was = 0;
                // SAFETY: live engine, an out-param.
                let code = unsafe { pushpark_call_end(e, *host_ref, *status, &mut was) };
                self.host_ended(code, *host_ref)?;
                if code == OK {
                    prop_assert!((1..=3).contains(&was), "call_end said {}", was);
                    prop_assert_eq!(was == 3, forked, "call_end's state {}", was);
                } else {
                    prop_assert_eq!(was, 0, "was written on failure");
                }
            }
            Op::RejectWaiting { sip_code } => {
                // SAFETY: live engine, a NUL-terminated reason.
                let code = unsafe {
                    pushpark_reject_waiting(e, *sip_code, c"Service Unavailable".as_ptr())
                };
                let expected = if *sip_code >= 300 { OK } else { INVALID };
                prop_assert_eq!(code, expected, "reject_waiting({})", sip_code);
                self.stopping = if code == OK { *sip_code } else { 0 };
                let drained = self.drain();
                self.stopping = 0;
                drained?;
            }
            Op::Cancel { host_ref } => {
                // SAFETY: live engine.
                let code = unsafe { pushpark_cancel(e, *host_ref) };
                self.host_ended(code, *host_ref)?;
            }
            Op::CallCompleted { host_ref, status } => {
                // SAFETY: live engine.
                let code = unsafe { pushpark_call_completed(e, *host_ref, *status) };
                self.host_ended(code, *host_ref)?;
            }
            Op::ContactCheck { contact } => {
                let c = contact.c_string();
                let mut provider: *const c_char = c"untouched".as_ptr();
                // SAFETY: live rules, a NUL-terminated or NULL string, an out-param.
                let code =
                    unsafe { pushpark_contact_check(self.rules.cast(), ptr_of(&c), &mut provider) };
                let args = [("contact", contact, true)];
                check_common(code, &[OK, INVALID, UNSUPPORTED, NULL_ARG, UTF8], &args)?;
                // SAFETY: a static string or NULL on OK, untouched otherwise.
                let provider = (!provider.is_null())
                    .then(|| unsafe { CStr::from_ptr(provider) }.to_str().unwrap());
                match code {
                    OK => prop_assert!(
                        matches!(provider, None | Some("apns" | "apns.dev")),
                        "{:?}",
                        provider
                    ),
                    _ => prop_assert_eq!(provider, Some("untouched")),
                }
            }
            Op::ConfigCheck { json } => {
                let j = json.c_string();
                // SAFETY: NUL-terminated or NULL.
                let code = unsafe { pushpark_config_check(ptr_of(&j)) };
                check_common(
                    code,
                    &[OK, CONFIG, NULL_ARG, UTF8],
                    &[("config_json", json, true)],
                )?;
            }
            Op::DevicesJsonPage { aor, offset, limit } => {
                let a = aor.c_string();
                let mut out = ptr::null_mut();
                // SAFETY: as above.
                let code =
                    unsafe { pushpark_devices_json_page(e, ptr_of(&a), *offset, *limit, &mut out) };
                let valid = (1..=PAGE_MAX).contains(limit);
                let codes: &[u32] = if valid {
                    &[OK, NULL_ARG, UTF8]
                } else {
                    &[INVALID, NULL_ARG, UTF8]
                };
                check_common(code, codes, &[("aor", aor, true)])?;
                if code == OK {
                    let page = take_json(code, out)?;
                    let (total, items) = (
                        page["total"].as_u64().unwrap(),
                        page["items"].as_array().unwrap(),
                    );
                    let expected = (total as usize).saturating_sub(*offset).min(*limit);
                    prop_assert_eq!(items.len(), expected, "{}", page);
                    prop_assert_eq!(page["offset"].as_u64(), Some(*offset as u64));
                } else {
                    prop_assert!(out.is_null(), "out written on failure");
                }
            }
        }
        self.drain()
    }

    /// Books a park's or fork's outcome.
    fn parked_or_refused(
        &mut self,
        code: u32,
        park_id: u64,
        host_ref: u64,
        host_data: u64,
    ) -> Result<(), TestCaseError> {
        if code == OK {
            prop_assert!(park_id != u64::MAX && !self.parked.contains_key(&park_id));
            self.parked.insert(park_id, host_ref);
            self.data.insert(park_id, host_data);
            self.refused.remove(&host_ref);
            self.ended.remove(&host_ref);
        } else {
            prop_assert_eq!(park_id, u64::MAX, "park_id written on failure");
            if code == DUPLICATE {
                prop_assert!(self.parked.values().any(|h| *h == host_ref));
            } else if !self.parked.values().any(|h| *h == host_ref) {
                self.refused.insert(host_ref);
            }
        }
        Ok(())
    }

    /// Books a cancel's or call_completed's outcome.
    fn host_ended(&mut self, code: u32, host_ref: u64) -> Result<(), TestCaseError> {
        check_common(code, &[OK, NOT_FOUND], &[])?;
        if self.refused.contains(&host_ref) {
            prop_assert_eq!(code, NOT_FOUND, "a refused park left a call behind");
        }
        if code == OK {
            self.ended.insert(host_ref);
            for (id, h) in &self.parked {
                if *h == host_ref {
                    self.ended_parks.insert(*id);
                }
            }
        }
        Ok(())
    }

    /// Cancels what is left, then checks that every park ended exactly once.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        for host_ref in &self.refused {
            // SAFETY: live engine.
            let code = unsafe { pushpark_cancel(self.engine.cast(), *host_ref) };
            prop_assert_eq!(code, NOT_FOUND, "a refused park left a call behind");
        }
        let host_refs: BTreeSet<u64> = self.parked.values().copied().collect();
        for host_ref in host_refs {
            // SAFETY: live engine.
            let code = unsafe { pushpark_cancel(self.engine.cast(), host_ref) };
            prop_assert!(code == OK || code == NOT_FOUND);
        }
        self.drain()?;
        let mut out = ptr::null_mut();
        // SAFETY: live engine, out-param.
        let stats = take_json(
            unsafe { pushpark_stats_json(self.engine.cast(), &mut out) },
            out,
        )?;
        let n = |k: &str| stats[k].as_u64().unwrap_or_else(|| panic!("stats.{k}"));
        let ended_by_event = self.endings.values().map(Vec::len).sum::<usize>() as u64;
        prop_assert!(
            self.endings.values().all(|k| k.len() == 1),
            "{:?}",
            self.endings
        );
        prop_assert_eq!(n("parked_now"), 0);
        prop_assert_eq!(n("parked_total"), self.parked.len() as u64);
        let stopped = self.stopped.len() as u64;
        prop_assert_eq!(
            n("resumed") + n("rejected_timeout") + n("rejected_push_failed"),
            ended_by_event - stopped
        );
        // Each call without a RESUME or REJECT was cancelled while parked, once; so was
        // each that pushpark_reject_waiting ended while parked.
        prop_assert_eq!(
            n("cancelled"),
            self.parked.len() as u64 - ended_by_event + stopped,
            "{}",
            stats
        );
        let codes = |c: &[u32]| c.iter().filter_map(|c| self.park_codes.get(c)).sum::<u64>();
        prop_assert_eq!(n("park_no_device"), codes(&[NO_DEVICE]));
        prop_assert_eq!(n("park_over_limit"), codes(&[LIMIT_TOTAL, LIMIT_AOR]));
        prop_assert_eq!(n("park_queue_full"), codes(&[QUEUE_FULL]));
        let mut out = ptr::null_mut();
        // SAFETY: as above.
        let listing = take_json(
            unsafe { pushpark_parked_json_page(self.engine.cast(), 0, PAGE_MAX, &mut out) },
            out,
        )?;
        prop_assert_eq!(listing, json!({"total": 0, "offset": 0, "items": []}));
        Ok(())
    }
}

/// pushpark_contact's layout.
#[repr(C)]
struct ContactArg {
    uri: *const c_char,
    instance: *const c_char,
    ringing: i32,
}

/// pushpark_register_outcome's layout (the header's type is not nameable from here).
#[repr(C)]
struct RegisterOut {
    push_capable: i32,
    stored: i32,
    removed: i32,
    resumed: u32,
}

/// Register's out-param before the call: values the library never writes.
const REGISTER_UNTOUCHED: RegisterOut = RegisterOut {
    push_capable: -1,
    stored: -1,
    removed: -1,
    resumed: u32::MAX,
};

#[test]
fn string_arguments_give_documented_codes_and_lose_no_call() {
    let mock_dir = tempfile::tempdir().unwrap();
    let mock = MockApns::start(MockConfig::new(mock_dir.path())).unwrap();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let ops = prop::collection::vec(op(), 1..64);
    let result = runner.run(&ops, |ops| {
        let store = tempfile::tempdir().unwrap();
        let mut config = engine_common::base_config(&mock, store.path());
        config["park"]["timeout_ms"] = 600_000.into();
        // Low limits, so that random sequences reach them.
        config["park"]["max_per_aor"] = 2.into();
        config["park"]["max_total"] = 3.into();
        let config = CString::new(config.to_string()).unwrap();
        let mut engine = ptr::null_mut();
        // SAFETY: a NUL-terminated config and an out-param.
        let code = unsafe { pushpark_engine_new(config.as_ptr(), &mut engine) };
        prop_assert_eq!(code, OK, "{}", last_error());
        let mut rules = ptr::null_mut();
        // SAFETY: as above.
        let code = unsafe { pushpark_contact_rules_new(config.as_ptr(), &mut rules) };
        prop_assert_eq!(code, OK, "{}", last_error());
        let mut case = Case {
            engine: engine.cast(),
            rules: rules.cast(),
            parked: BTreeMap::new(),
            data: BTreeMap::new(),
            first_delivered: BTreeSet::new(),
            ended_parks: BTreeSet::new(),
            stopping: 0,
            stopped: BTreeSet::new(),
            forks: BTreeSet::new(),
            ended: BTreeSet::new(),
            refused: BTreeSet::new(),
            endings: BTreeMap::new(),
            park_codes: BTreeMap::new(),
        };
        let outcome = ops
            .iter()
            .try_for_each(|op| case.run(op))
            .and_then(|()| case.finish());
        // SAFETY: the engine and rules, freed once, with no other call running.
        unsafe {
            pushpark_engine_free(engine);
            pushpark_contact_rules_free(rules);
        }
        outcome
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any number gives a static name and message: the code's own up to 16,
    /// the documented "unknown" ones above.
    #[test]
    fn any_code_has_a_name_and_a_message(code in any::<u32>(), kind in any::<u32>()) {
        // SAFETY: these return static NUL-terminated strings, never NULL.
        let (name, message, kind_name) = unsafe {
            (
                CStr::from_ptr(pushpark_result_name(code)).to_str().unwrap(),
                CStr::from_ptr(pushpark_result_message(code)).to_str().unwrap(),
                CStr::from_ptr(pushpark_event_kind_name(kind)).to_str().unwrap(),
            )
        };
        prop_assert_eq!(name == "PUSHPARK_UNKNOWN", code > 16, "{} {}", code, name);
        prop_assert_eq!(message == "unknown result code", code > 16);
        prop_assert_eq!(kind_name == "UNKNOWN", !(1..=6).contains(&kind), "{} {}", kind, kind_name);
    }
}

fn new_engine(mock: &MockApns, store: &std::path::Path) -> *mut std::ffi::c_void {
    let config = engine_common::base_config(mock, store).to_string();
    let config = CString::new(config).unwrap();
    let mut engine = ptr::null_mut();
    // SAFETY: a NUL-terminated config and an out-param.
    assert_eq!(
        unsafe { pushpark_engine_new(config.as_ptr(), &mut engine) },
        OK
    );
    engine.cast()
}

fn add_device(engine: *mut std::ffi::c_void, aor: &str, key: &str, token: &str) -> u32 {
    let [a, k, p, t, topic] =
        [aor, key, "apns", token, "com.example.phone.voip"].map(|s| CString::new(s).unwrap());
    // SAFETY: a live engine and NUL-terminated strings.
    unsafe {
        pushpark_add_device(
            engine.cast(),
            a.as_ptr(),
            k.as_ptr(),
            p.as_ptr(),
            t.as_ptr(),
            topic.as_ptr(),
            ptr::null(),
        )
    }
}

fn remove_device(engine: *mut std::ffi::c_void, aor: &str, key: &str) -> u32 {
    let [a, k] = [aor, key].map(|s| CString::new(s).unwrap());
    // SAFETY: a live engine and NUL-terminated strings.
    unsafe { pushpark_remove_device(engine.cast(), a.as_ptr(), k.as_ptr()) }
}

/// The keys `pushpark_devices_json_page` lists for `aor`.
fn device_keys(engine: *mut std::ffi::c_void, aor: &CStr) -> Result<Vec<String>, TestCaseError> {
    let mut out = ptr::null_mut();
    // SAFETY: a live engine, a NUL-terminated AOR and an out-param.
    let code =
        unsafe { pushpark_devices_json_page(engine.cast(), aor.as_ptr(), 0, PAGE_MAX, &mut out) };
    let listing = take_json(code, out)?;
    Ok(listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap().to_string())
        .collect())
}

/// What pushpark_add_device stored, pushpark_remove_device removes when given
/// the same device_key (the token for a device stored by it), and then the AOR
/// lists no device.
#[test]
fn a_device_added_is_removed_by_the_same_key() {
    let mock_dir = tempfile::tempdir().unwrap();
    let mock = MockApns::start(MockConfig::new(mock_dir.path())).unwrap();
    let store = tempfile::tempdir().unwrap();
    let engine = new_engine(&mock, store.path());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let n = std::cell::Cell::new(0);
    let keys = prop_oneof![
        Just(String::new()),
        "[a-zA-Z0-9:.<>\" -]{1,40}",
        Just("\"<urn:uuid:1>\"".to_string()),
        Just(" urn:uuid:1 ".to_string()),
        Just(TOKEN.to_string()),
    ];
    let token = prop_oneof![Just(TOKEN.to_string()), Just(TOKEN.to_ascii_uppercase())];
    let result = runner.run(&(keys, token), |(key, token)| {
        n.set(n.get() + 1);
        let aor = format!("sip:user{}@example.com", n.get());
        let aor_c = CString::new(aor.clone()).unwrap();
        prop_assert_eq!(
            add_device(engine, &aor, &key, &token),
            OK,
            "{}",
            last_error()
        );
        let stored = device_keys(engine, &aor_c)?;
        prop_assert_eq!(stored.len(), 1);
        // A key of nothing but blanks, quotes and `<>` means the token; such a
        // device is removed by its token (listed cut short).
        let by_token = stored[0] == engine_common::shown(&token.to_ascii_lowercase());
        let by = if by_token { &token } else { &key };
        prop_assert_eq!(
            remove_device(engine, &aor, by),
            OK,
            "{:?}: {}",
            by,
            last_error()
        );
        prop_assert_eq!(device_keys(engine, &aor_c)?, Vec::<String>::new());
        Ok(())
    });
    // SAFETY: freed once, nothing else running on it.
    unsafe { pushpark_engine_free(engine.cast()) };
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Found by a_device_added_is_removed_by_the_same_key: add_device kept quotes
/// and `<>` around a key and remove_device took keys verbatim, so a device
/// added as `"<urn:uuid:1>"` or ` urn:uuid:1 ` could not be removed by that key,
/// one stored by its token not by the token in upper case, and add_device and
/// REGISTER stored one device under two keys (two pushes per call).
#[test]
fn add_and_remove_device_take_keys_as_register_does() {
    let mock_dir = tempfile::tempdir().unwrap();
    let mock = MockApns::start(MockConfig::new(mock_dir.path())).unwrap();
    let store = tempfile::tempdir().unwrap();
    let engine = new_engine(&mock, store.path());
    let aor = "sip:alice@example.com";
    let aor_c = CString::new(aor).unwrap();
    for key in [" urn:uuid:1 ", "\"<urn:uuid:1>\""] {
        assert_eq!(add_device(engine, aor, key, TOKEN), OK);
        assert_eq!(device_keys(engine, &aor_c).unwrap(), ["urn:uuid:1"]);
        assert_eq!(remove_device(engine, aor, key), OK, "{key}");
    }
    assert_eq!(add_device(engine, aor, "", TOKEN), OK);
    assert_eq!(remove_device(engine, aor, &TOKEN.to_ascii_uppercase()), OK);
    assert_eq!(remove_device(engine, aor, TOKEN), NOT_FOUND);

    let contact = CString::new(&contacts()[0][..]).unwrap();
    let instance = CString::new("<urn:uuid:alice>").unwrap();
    // SAFETY: a live engine, NUL-terminated strings, no out-param.
    let code = unsafe {
        pushpark_register(
            engine.cast(),
            aor_c.as_ptr(),
            contact.as_ptr(),
            instance.as_ptr(),
            600,
            ptr::null_mut(),
        )
    };
    assert_eq!(code, OK);
    assert_eq!(add_device(engine, aor, "\"<urn:uuid:alice>\"", TOKEN), OK);
    assert_eq!(device_keys(engine, &aor_c).unwrap(), ["urn:uuid:alice"]);
    // SAFETY: freed once, nothing else running on it.
    unsafe { pushpark_engine_free(engine.cast()) };
}

/// Pages of `pushpark_devices_json_page`, 100 at a time, give each of 250 devices once;
/// a limit over PUSHPARK_PAGE_MAX is refused.
#[test]
fn device_pages_give_each_device_once() {
    const DEVICES: usize = 250;
    let mock_dir = tempfile::tempdir().unwrap();
    let mock = MockApns::start(MockConfig::new(mock_dir.path())).unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut config = engine_common::base_config(&mock, store.path());
    config["store"]["max_devices_per_aor"] = json!(DEVICES);
    let config = CString::new(config.to_string()).unwrap();
    let mut engine = ptr::null_mut();
    // SAFETY: a NUL-terminated config and an out-param.
    assert_eq!(
        unsafe { pushpark_engine_new(config.as_ptr(), &mut engine) },
        OK
    );
    let aor = c"sip:alice@example.com";
    for i in 0..DEVICES {
        let token = format!("{:064x}", i + 1);
        let code = add_device(
            engine.cast(),
            "sip:alice@example.com",
            &format!("k{i}"),
            &token,
        );
        assert_eq!(code, OK, "{}", last_error());
    }
    let page = |offset: usize, limit: usize| {
        let mut out = ptr::null_mut();
        // SAFETY: a live engine, a NUL-terminated AOR and an out-param.
        let code =
            unsafe { pushpark_devices_json_page(engine, aor.as_ptr(), offset, limit, &mut out) };
        (code, out)
    };

    let mut keys = Vec::new();
    loop {
        let (code, out) = page(keys.len(), 100);
        let page = take_json(code, out).unwrap();
        assert_eq!(
            (page["total"].as_u64(), page["offset"].as_u64()),
            (Some(DEVICES as u64), Some(keys.len() as u64))
        );
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            break;
        }
        assert!(items.len() <= 100, "{}", items.len());
        keys.extend(items.iter().map(|d| d["key"].as_str().unwrap().to_string()));
    }
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!((keys.len(), unique.len()), (DEVICES, DEVICES));

    let (code, out) = page(0, PAGE_MAX + 1);
    assert_eq!(code, INVALID);
    assert!(out.is_null());
    assert!(
        last_error().contains("limit must be from 1 to 1000"),
        "{}",
        last_error()
    );
    // SAFETY: the engine made above, no other call on it running.
    unsafe { pushpark_engine_free(engine) };
}

//! A REGISTER's Contact, as the SIP server hands it over: arbitrary bytes through
//! `pushpark_contact_check` (the C ABI), and the same text through `ContactRules::check`.
//! Both must agree; an error's reason phrase must be one short line without a whole token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushpark::ffi::sys::*;
use pushpark::ffi::{pushpark_contact_check, pushpark_contact_rules_new, pushpark_last_error};
use pushpark::{ContactError, ContactRules, EngineConfig};
use std::ffi::{CStr, CString};
use std::sync::OnceLock;

const CONFIG: &str = r#"{"apns": {"auth": {"key_file": "/nonexistent/AuthKey_TESTKEY001.p8",
    "key_id": "TESTKEY001", "team_id": "TESTTEAM01"},
    "topics": ["com.example.phone.voip", "com.example.tablet.voip"]}}"#;

struct Rules(*mut pushpark_contact_rules, ContactRules);
// The C rules are immutable and thread-safe (pushpark.h).
unsafe impl Send for Rules {}
unsafe impl Sync for Rules {}

fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let config = CString::new(CONFIG).unwrap();
        let mut out = std::ptr::null_mut();
        let rc = unsafe { pushpark_contact_rules_new(config.as_ptr(), &mut out) };
        let why = unsafe { CStr::from_ptr(pushpark_last_error()) };
        assert_eq!(rc, PUSHPARK_OK, "{why:?}");
        Rules(
            out,
            ContactRules::new(&EngineConfig::from_json(CONFIG).unwrap()),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let rules = rules();
    // A C string ends at its first NUL.
    let bytes = data.split(|&b| b == 0).next().unwrap_or_default();
    let contact = CString::new(bytes).unwrap();
    let mut provider = std::ptr::null();
    let rc = unsafe { pushpark_contact_check(rules.0, contact.as_ptr(), &mut provider) };
    let Ok(text) = std::str::from_utf8(bytes) else {
        assert_eq!(rc, PUSHPARK_ERR_UTF8, "non-UTF-8 Contact");
        return;
    };
    match (rc, rules.1.check(text)) {
        (PUSHPARK_OK, Ok(expected)) => {
            let got = (!provider.is_null())
                .then(|| unsafe { CStr::from_ptr(provider) }.to_str().unwrap());
            assert_eq!(got, expected, "provider of {text:?}");
            assert!(matches!(got, None | Some("apns" | "apns.dev")), "{got:?}");
        }
        (PUSHPARK_ERR_UNSUPPORTED, Err(ContactError::Unsupported(_)))
        | (PUSHPARK_ERR_INVALID, Err(ContactError::Invalid(_))) => {
            let reason = unsafe { CStr::from_ptr(pushpark_last_error()) }
                .to_str()
                .unwrap();
            assert!(
                reason.len() <= 200,
                "reason phrase of {} bytes",
                reason.len()
            );
            assert!(
                !reason.contains(['\r', '\n']),
                "reason {reason:?} is not one line"
            );
            // Tokens have at least 32 digits; the reason shows at most 16 of any input.
            assert!(
                longest_hex_run(reason) < 32,
                "a token in the reason {reason:?}"
            );
        }
        (rc, rust) => panic!("C ABI {rc} vs Rust {rust:?} for {text:?}"),
    }
});

fn longest_hex_run(s: &str) -> usize {
    s.split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

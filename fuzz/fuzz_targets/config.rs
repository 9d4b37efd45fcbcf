//! The engine's configuration document: arbitrary bytes through `pushpark_config_check`
//! (the C ABI) and the same text through `EngineConfig::from_json`. Both must agree, and a
//! refusal must say why in one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushpark::ffi::sys::*;
use pushpark::ffi::{
    pushpark_config_check, pushpark_contact_rules_free, pushpark_contact_rules_new,
    pushpark_last_error,
};
use pushpark::EngineConfig;
use std::ffi::{CStr, CString};

fuzz_target!(|data: &[u8]| {
    let bytes = data.split(|&b| b == 0).next().unwrap_or_default();
    let config = CString::new(bytes).unwrap();
    let rc = unsafe { pushpark_config_check(config.as_ptr()) };
    let Ok(text) = std::str::from_utf8(bytes) else {
        assert_eq!(rc, PUSHPARK_ERR_UTF8, "non-UTF-8 config");
        return;
    };
    let parsed = EngineConfig::from_json(text);
    match rc {
        PUSHPARK_OK => assert!(parsed.is_ok(), "C accepted what Rust refuses: {parsed:?}"),
        PUSHPARK_ERR_CONFIG => {
            assert!(parsed.is_err(), "C refused what Rust accepts: {text:?}");
            let why = unsafe { CStr::from_ptr(pushpark_last_error()) }
                .to_str()
                .unwrap();
            assert!(!why.is_empty() && !why.contains('\n'), "refusal {why:?}");
        }
        rc => panic!("pushpark_config_check: {rc} for {text:?}"),
    }
    // The contact rules come from the same checks.
    let mut rules = std::ptr::null_mut();
    let rules_rc = unsafe { pushpark_contact_rules_new(config.as_ptr(), &mut rules) };
    assert_eq!(rules_rc, rc, "rules from {text:?}");
    unsafe { pushpark_contact_rules_free(rules) };
});

//! Checking a REGISTER's Contact without an engine: the contact rules object a forking
//! SIP server makes once and uses in every worker.

use super::engine::parse_config;
use super::handle::engine_error;
use super::result::Error;
use super::result::{guard, guard_value, non_null, str_arg};
use super::sys::*;
use crate::engine::{normalize_instance, ContactRules, EngineError};
use std::ffi::{c_char, c_int};

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_contact_rules_new(
    config_json: *const c_char,
    out: *mut *mut pushpark_contact_rules,
) -> pushpark_result {
    guard(|| {
        non_null(out, "out")?;
        let rules = ContactRules::new(&parse_config(config_json)?);
        *out = Box::into_raw(Box::new(rules)).cast();
        Ok(())
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_contact_rules_free(rules: *mut pushpark_contact_rules) {
    if !rules.is_null() {
        guard_value((), || drop(Box::from_raw(rules.cast::<ContactRules>())));
    }
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_contact_check(
    rules: *const pushpark_contact_rules,
    contact: *const c_char,
    provider: *mut *const c_char,
) -> pushpark_result {
    guard(|| {
        non_null(rules, "rules")?;
        let rules = &*rules.cast::<ContactRules>();
        let found = rules
            .check(str_arg(contact, "contact")?)
            .map_err(|e| engine_error(EngineError::from(e)))?;
        if !provider.is_null() {
            *provider = match found {
                Some("apns") => c"apns".as_ptr(),
                Some("apns.dev") => c"apns.dev".as_ptr(),
                Some(_) => c"fcm".as_ptr(),
                None => std::ptr::null(),
            };
        }
        Ok(())
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_instance_matches(
    device: *const c_char,
    instance: *const c_char,
    len: usize,
    matches: *mut c_int,
) -> pushpark_result {
    guard(|| {
        non_null(matches, "matches")?;
        let device = str_arg(device, "device")?;
        let raw: &[u8] = match len {
            0 => &[],
            _ => {
                non_null(instance, "instance")?;
                std::slice::from_raw_parts(instance.cast(), len)
            }
        };
        let raw = std::str::from_utf8(raw).map_err(|e| {
            let at = e.valid_up_to();
            Error::new(
                PUSHPARK_ERR_UTF8,
                format!("instance is not valid UTF-8 (at byte {at})"),
            )
        })?;
        let same = !device.is_empty() && normalize_instance(raw).as_deref() == Some(device);
        *matches = c_int::from(same);
        Ok(())
    })
}

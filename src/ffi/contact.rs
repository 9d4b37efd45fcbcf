//! Checking a REGISTER's Contact without an engine: the contact rules object a forking
//! SIP server makes once and uses in every worker.

use super::engine::parse_config;
use super::handle::engine_error;
use super::result::{guard, guard_value, non_null, str_arg};
use super::sys::*;
use crate::engine::{ContactRules, EngineError};
use std::ffi::c_char;

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
            // `check` names only the two providers pushpark pushes to.
            *provider = match found {
                Some("apns") => c"apns".as_ptr(),
                Some(_) => c"apns.dev".as_ptr(),
                None => std::ptr::null(),
            };
        }
        Ok(())
    })
}

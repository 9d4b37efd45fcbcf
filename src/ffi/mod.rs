//! The C ABI declared in `c-include/pushpark.h`: one file per concern. Every exported function
//! runs inside `result::guard` (no panic reaches C) and NULL-checks its pointers.
//! The safety contract of each `unsafe extern "C"` function is its comment in pushpark.h.

#![allow(clippy::missing_safety_doc)]

mod contact;
mod engine;
mod events;
mod handle;
mod log;
mod result;
mod spawn;
mod stats;
/// The header's types and constants, for Rust code that drives the C ABI (the fuzz targets).
pub mod sys;

pub use self::log::pushpark_set_log_callback;
pub use contact::{
    pushpark_contact_check, pushpark_contact_rules_free, pushpark_contact_rules_new,
    pushpark_instance_matches,
};
pub use engine::{
    pushpark_add_device, pushpark_call_completed, pushpark_call_end, pushpark_call_ended,
    pushpark_cancel, pushpark_config_check, pushpark_config_check_files, pushpark_config_clustered,
    pushpark_config_park_timeout, pushpark_engine_free, pushpark_engine_new, pushpark_engine_spawn,
    pushpark_fork, pushpark_park, pushpark_register, pushpark_register_ordered,
    pushpark_register_path, pushpark_reject_waiting, pushpark_remove_device,
};
pub use events::{
    pushpark_event_fd, pushpark_event_free, pushpark_event_get_aor, pushpark_event_get_call_id,
    pushpark_event_get_caller_name, pushpark_event_get_caller_uri, pushpark_event_get_contact,
    pushpark_event_get_device, pushpark_event_get_first_delivered, pushpark_event_get_host_data,
    pushpark_event_get_host_ref, pushpark_event_get_kind, pushpark_event_get_park_id,
    pushpark_event_get_push_id, pushpark_event_get_reason, pushpark_event_get_relay_path,
    pushpark_event_get_relay_uri, pushpark_event_get_sip_code, pushpark_event_kind_name,
    pushpark_poll,
};
pub use result::{pushpark_last_error, pushpark_result_message, pushpark_result_name};
pub use stats::{
    pushpark_devices_json_page, pushpark_parked_json_page, pushpark_stats_get, pushpark_stats_json,
    pushpark_string_free,
};

use std::ffi::c_char;

/// See pushpark.h.
#[no_mangle]
pub extern "C" fn pushpark_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

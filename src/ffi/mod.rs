//! The C ABI declared in `c-include/pushpark.h`: one file per concern. Every exported function
//! runs inside `result::guard` (no panic reaches C) and NULL-checks its pointers.

mod log;
mod result;
mod sys;

pub use self::log::pushpark_set_log_callback;
pub use result::{pushpark_last_error, pushpark_result_message, pushpark_result_name};

use std::ffi::c_char;

/// See pushpark.h.
#[no_mangle]
pub extern "C" fn pushpark_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

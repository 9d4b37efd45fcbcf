//! Result codes, the per-thread last-error string, and the guard every exported function runs
//! its body in: it catches panics and turns outcomes into a code plus last-error detail.

use super::sys::*;
use crate::panic_message::panic_message;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A failed call: its code and the detail `pushpark_last_error` shows.
#[derive(Debug)]
pub(crate) struct Error {
    pub code: pushpark_result,
    pub detail: String,
}

impl Error {
    pub fn new(code: pushpark_result, detail: impl Into<String>) -> Error {
        Error {
            code,
            detail: detail.into(),
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// The longest detail `pushpark_last_error` gives, in bytes: it may become a SIP reason
/// phrase, and an argument of any size may be quoted in it.
const MAX_DETAIL: usize = 200;

/// `detail` as one line of at most MAX_DETAIL bytes, cut on a character boundary.
fn bounded(detail: &str) -> String {
    const MORE: &str = "...";
    // Control characters are one or two bytes: a space never makes the line longer.
    let line = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    if detail.len() <= MAX_DETAIL {
        return line(detail);
    }
    let mut end = MAX_DETAIL - MORE.len();
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    line(&detail[..end]) + MORE
}

fn set_last_error(detail: &str) {
    LAST_ERROR.with(|last| {
        // Successes and empty polls are the hot path: no allocation when already empty.
        if !(detail.is_empty() && last.borrow().is_empty()) {
            *last.borrow_mut() = to_cstring(&bounded(detail));
        }
    });
}

/// A C string from Rust text; interior NULs (which C cannot represent) become U+FFFD.
pub(crate) fn to_cstring(s: &str) -> CString {
    CString::new(s)
        .unwrap_or_else(|_| CString::new(s.replace('\0', "\u{FFFD}")).expect("NULs were replaced"))
}

/// Runs an exported function's body: never lets a panic unwind into C, and records the
/// outcome's detail for `pushpark_last_error` (empty on success).
pub(crate) fn guard(body: impl FnOnce() -> Result<()>) -> pushpark_result {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic_message(&*panic).unwrap_or("unknown panic");
        Err(Error::new(
            PUSHPARK_ERR_PANIC,
            format!("internal error (panic): {what}"),
        ))
    });
    match outcome {
        Ok(()) => {
            set_last_error("");
            PUSHPARK_OK
        }
        Err(e) => {
            set_last_error(&e.detail);
            e.code
        }
    }
}

/// Like `guard` for functions that return a value instead of a code (accessors): a panic
/// gives `fallback`, and the last error is left alone.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// A required string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the returned borrow.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str> {
    non_null(p, name)?;
    CStr::from_ptr(p).to_str().map_err(|e| {
        Error::new(
            PUSHPARK_ERR_UTF8,
            format!("{name} is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

/// An optional string argument (NULL gives None).
///
/// # Safety
/// As for `str_arg`.
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        str_arg(p, name).map(Some)
    }
}

/// Fails with `ERR_NULL_ARG` naming the argument when a required pointer is NULL.
pub(crate) fn non_null<T>(p: *const T, name: &str) -> Result<()> {
    if p.is_null() {
        Err(Error::new(PUSHPARK_ERR_NULL_ARG, format!("{name} is NULL")))
    } else {
        Ok(())
    }
}

/// Name and message of every code; the index is the code.
const RESULTS: [(&CStr, &CStr); 18] = [
    (c"PUSHPARK_OK", c"success"),
    (
        c"PUSHPARK_ERR_NULL_ARG",
        c"a required pointer argument was NULL",
    ),
    (
        c"PUSHPARK_ERR_UTF8",
        c"a string argument is not valid UTF-8",
    ),
    (c"PUSHPARK_ERR_CONFIG", c"the configuration is invalid"),
    (c"PUSHPARK_ERR_NO_DEVICE", c"the AOR has no push device"),
    (
        c"PUSHPARK_ERR_LIMIT_TOTAL",
        c"the total parked-call limit is reached",
    ),
    (
        c"PUSHPARK_ERR_LIMIT_AOR",
        c"the parked-call limit for this AOR is reached",
    ),
    (c"PUSHPARK_ERR_QUEUE_FULL", c"the push queue is full"),
    (
        c"PUSHPARK_ERR_DUPLICATE",
        c"this host reference is already parked",
    ),
    (c"PUSHPARK_ERR_NOT_FOUND", c"no such call or device"),
    (c"PUSHPARK_ERR_EMPTY", c"no event queued"),
    (c"PUSHPARK_ERR_INVALID", c"an argument's value is invalid"),
    (c"PUSHPARK_ERR_IO", c"file or store I/O failed"),
    (c"PUSHPARK_ERR_SHUTDOWN", c"the engine is shutting down"),
    (c"PUSHPARK_ERR_PANIC", c"internal error (caught panic)"),
    (c"PUSHPARK_ERR_INTERNAL", c"internal error"),
    (
        c"PUSHPARK_ERR_UNSUPPORTED",
        c"the push service is not supported",
    ),
    (
        c"PUSHPARK_ERR_ENGINE_DOWN",
        c"the engine process is restarting",
    ),
];

fn lookup(code: pushpark_result) -> Option<(&'static CStr, &'static CStr)> {
    RESULTS.get(usize::try_from(code).ok()?).copied()
}

/// See pushpark.h.
#[no_mangle]
pub extern "C" fn pushpark_result_name(code: pushpark_result) -> *const c_char {
    guard_value(c"PUSHPARK_UNKNOWN".as_ptr(), || {
        lookup(code)
            .map_or(c"PUSHPARK_UNKNOWN", |(name, _)| name)
            .as_ptr()
    })
}

/// See pushpark.h.
#[no_mangle]
pub extern "C" fn pushpark_result_message(code: pushpark_result) -> *const c_char {
    guard_value(c"unknown result code".as_ptr(), || {
        lookup(code)
            .map_or(c"unknown result code", |(_, msg)| msg)
            .as_ptr()
    })
}

/// See pushpark.h.
#[no_mangle]
pub extern "C" fn pushpark_last_error() -> *const c_char {
    guard_value(c"".as_ptr(), || {
        LAST_ERROR.with(|last| last.borrow().as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_name() {
        let names = [
            (PUSHPARK_OK, "PUSHPARK_OK"),
            (PUSHPARK_ERR_NULL_ARG, "PUSHPARK_ERR_NULL_ARG"),
            (PUSHPARK_ERR_UTF8, "PUSHPARK_ERR_UTF8"),
            (PUSHPARK_ERR_CONFIG, "PUSHPARK_ERR_CONFIG"),
            (PUSHPARK_ERR_NO_DEVICE, "PUSHPARK_ERR_NO_DEVICE"),
            (PUSHPARK_ERR_LIMIT_TOTAL, "PUSHPARK_ERR_LIMIT_TOTAL"),
            (PUSHPARK_ERR_LIMIT_AOR, "PUSHPARK_ERR_LIMIT_AOR"),
            (PUSHPARK_ERR_QUEUE_FULL, "PUSHPARK_ERR_QUEUE_FULL"),
            (PUSHPARK_ERR_DUPLICATE, "PUSHPARK_ERR_DUPLICATE"),
            (PUSHPARK_ERR_NOT_FOUND, "PUSHPARK_ERR_NOT_FOUND"),
            (PUSHPARK_ERR_EMPTY, "PUSHPARK_ERR_EMPTY"),
            (PUSHPARK_ERR_INVALID, "PUSHPARK_ERR_INVALID"),
            (PUSHPARK_ERR_IO, "PUSHPARK_ERR_IO"),
            (PUSHPARK_ERR_SHUTDOWN, "PUSHPARK_ERR_SHUTDOWN"),
            (PUSHPARK_ERR_PANIC, "PUSHPARK_ERR_PANIC"),
            (PUSHPARK_ERR_INTERNAL, "PUSHPARK_ERR_INTERNAL"),
            (PUSHPARK_ERR_UNSUPPORTED, "PUSHPARK_ERR_UNSUPPORTED"),
            (PUSHPARK_ERR_ENGINE_DOWN, "PUSHPARK_ERR_ENGINE_DOWN"),
        ];
        assert_eq!(names.len(), RESULTS.len());
        for (code, name) in names {
            let got = unsafe { CStr::from_ptr(pushpark_result_name(code)) };
            assert_eq!(got.to_str().unwrap(), name);
        }
        let unknown = unsafe { CStr::from_ptr(pushpark_result_name(99)) };
        assert_eq!(unknown.to_str().unwrap(), "PUSHPARK_UNKNOWN");
    }

    /// Found by the issue: a detail quoting a huge argument was as long as the argument.
    #[test]
    fn the_detail_is_one_bounded_line_cut_on_a_character_boundary() {
        for detail in [
            "é".repeat(5000),
            "a\r\nb".repeat(100),
            "x".repeat(MAX_DETAIL),
        ] {
            let code = guard(|| Err(Error::new(PUSHPARK_ERR_INVALID, detail.clone())));
            assert_eq!(code, PUSHPARK_ERR_INVALID);
            let got = unsafe { CStr::from_ptr(pushpark_last_error()) }
                .to_str()
                .unwrap();
            assert!(got.len() <= MAX_DETAIL, "{} bytes", got.len());
            assert!(!got.chars().any(char::is_control), "{got:?}");
            assert!(got.starts_with(&detail[..8].replace(['\r', '\n'], " ")));
        }
        assert_eq!(bounded("short"), "short");
    }

    #[test]
    fn guard_turns_a_panic_into_a_code_and_detail() {
        let code = guard(|| panic!("boom"));
        assert_eq!(code, PUSHPARK_ERR_PANIC);
        let detail = unsafe { CStr::from_ptr(pushpark_last_error()) };
        assert!(detail.to_str().unwrap().contains("boom"));
        assert_eq!(guard(|| Ok(())), PUSHPARK_OK);
        assert_eq!(
            unsafe { CStr::from_ptr(pushpark_last_error()) }.to_bytes(),
            b""
        );
    }
}

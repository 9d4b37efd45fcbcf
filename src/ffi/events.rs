//! Events to the host: the engine's event fd, the non-blocking poll, and the event accessors.

use super::engine::engine_ref;
use super::result::{guard, guard_value, non_null, to_cstring, Error};
use super::sys::*;
use crate::engine::{Event, EventKind};
use std::ffi::{c_char, c_int, CString};

/// An event as C sees it: strings converted once, owned until `pushpark_event_free`.
struct CEvent {
    kind: pushpark_event_kind,
    host_ref: u64,
    host_data: u64,
    first_delivered: bool,
    park_id: u64,
    call_id: CString,
    caller_uri: CString,
    caller_name: CString,
    aor: CString,
    device: CString,
    contact: CString,
    sip_code: u16,
    reason: CString,
    relay_uri: CString,
    relay_path: CString,
    push_id: CString,
}

impl From<Event> for CEvent {
    fn from(e: Event) -> CEvent {
        CEvent {
            kind: match e.kind {
                EventKind::Resume => PUSHPARK_EVENT_RESUME,
                EventKind::AppendBranch => PUSHPARK_EVENT_APPEND_BRANCH,
                EventKind::Reject => PUSHPARK_EVENT_REJECT,
                EventKind::PushResult => PUSHPARK_EVENT_PUSH_RESULT,
                EventKind::DeviceGone => PUSHPARK_EVENT_DEVICE_GONE,
                EventKind::LateWake => PUSHPARK_EVENT_LATE_WAKE,
            },
            host_ref: e.host_ref,
            host_data: e.host_data,
            first_delivered: e.first_delivered,
            park_id: e.park_id,
            call_id: to_cstring(&e.call_id),
            caller_uri: to_cstring(&e.caller_uri),
            caller_name: to_cstring(&e.caller_name),
            aor: to_cstring(&e.aor),
            device: to_cstring(&e.device_key),
            contact: to_cstring(&e.contact),
            sip_code: e.sip_code,
            reason: to_cstring(&e.reason),
            relay_uri: to_cstring(e.relay.as_ref().map_or("", |r| &r.uri)),
            relay_path: to_cstring(e.relay.as_ref().map_or("", |r| &r.path)),
            push_id: to_cstring(&e.push_id),
        }
    }
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_fd(
    engine: *mut pushpark_engine,
    fd: *mut c_int,
) -> pushpark_result {
    guard(|| {
        let engine = engine_ref(engine)?;
        non_null(fd, "fd")?;
        *fd = engine.event_fd();
        Ok(())
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_poll(
    engine: *mut pushpark_engine,
    event: *mut *mut pushpark_event,
) -> pushpark_result {
    guard(|| {
        let engine = engine_ref(engine)?;
        non_null(event, "event")?;
        let next = engine
            .poll_event()?
            .ok_or(Error::new(PUSHPARK_ERR_EMPTY, ""))?;
        *event = Box::into_raw(Box::new(CEvent::from(next))).cast();
        Ok(())
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_free(event: *mut pushpark_event) {
    if !event.is_null() {
        guard_value((), || drop(Box::from_raw(event.cast::<CEvent>())));
    }
}

/// Reads a field of an event, or gives `fallback` for a NULL event.
///
/// # Safety
/// `event` is NULL or an event from `pushpark_poll` that has not been freed.
unsafe fn field<T: Copy>(
    event: *const pushpark_event,
    fallback: T,
    get: impl FnOnce(&CEvent) -> T,
) -> T {
    guard_value(fallback, || match event.cast::<CEvent>().as_ref() {
        Some(e) => get(e),
        None => fallback,
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_kind(
    event: *const pushpark_event,
) -> pushpark_event_kind {
    field(event, 0, |e| e.kind)
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_host_ref(event: *const pushpark_event) -> u64 {
    field(event, 0, |e| e.host_ref)
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_host_data(event: *const pushpark_event) -> u64 {
    field(event, 0, |e| e.host_data)
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_first_delivered(event: *const pushpark_event) -> c_int {
    field(event, 0, |e| e.first_delivered.into())
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_park_id(event: *const pushpark_event) -> u64 {
    field(event, 0, |e| e.park_id)
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_aor(event: *const pushpark_event) -> *const c_char {
    field(event, c"".as_ptr(), |e| e.aor.as_ptr())
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_device(event: *const pushpark_event) -> *const c_char {
    field(event, c"".as_ptr(), |e| e.device.as_ptr())
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_sip_code(event: *const pushpark_event) -> u16 {
    field(event, 0, |e| e.sip_code)
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_reason(event: *const pushpark_event) -> *const c_char {
    field(event, c"".as_ptr(), |e| e.reason.as_ptr())
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_call_id(event: *const pushpark_event) -> *const c_char {
    field(event, c"".as_ptr(), |e| e.call_id.as_ptr())
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_caller_uri(
    event: *const pushpark_event,
) -> *const c_char {
    field(event, c"".as_ptr(), |e| e.caller_uri.as_ptr())
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_caller_name(
    event: *const pushpark_event,
) -> *const c_char {
    field(event, c"".as_ptr(), |e| e.caller_name.as_ptr())
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_contact(event: *const pushpark_event) -> *const c_char {
    field(event, c"".as_ptr(), |e| e.contact.as_ptr())
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_relay_uri(
    event: *const pushpark_event,
) -> *const c_char {
    field(event, c"".as_ptr(), |e| e.relay_uri.as_ptr())
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_relay_path(
    event: *const pushpark_event,
) -> *const c_char {
    field(event, c"".as_ptr(), |e| e.relay_path.as_ptr())
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_event_get_push_id(event: *const pushpark_event) -> *const c_char {
    field(event, c"".as_ptr(), |e| e.push_id.as_ptr())
}

/// See pushpark.h.
#[no_mangle]
pub extern "C" fn pushpark_event_kind_name(kind: pushpark_event_kind) -> *const c_char {
    match kind {
        PUSHPARK_EVENT_RESUME => c"RESUME",
        PUSHPARK_EVENT_APPEND_BRANCH => c"APPEND_BRANCH",
        PUSHPARK_EVENT_REJECT => c"REJECT",
        PUSHPARK_EVENT_PUSH_RESULT => c"PUSH_RESULT",
        PUSHPARK_EVENT_DEVICE_GONE => c"DEVICE_GONE",
        PUSHPARK_EVENT_LATE_WAKE => c"LATE_WAKE",
        _ => c"UNKNOWN",
    }
    .as_ptr()
}

//! The engine's lifecycle, devices and parking: thin wrappers that check and convert
//! arguments, call `crate::engine::Engine`, and map its errors to result codes.

use super::handle::{engine_error, Contact, Handle, Park, Request};
use super::result::{guard, non_null, opt_str_arg, str_arg, Error, Result};
use super::spawn::Supervisor;
use super::sys::*;
use crate::engine::{CallWas, DeviceInfo, Engine, EngineConfig};
use parking_lot::Mutex;
use std::ffi::{c_char, c_int};

/// The handle behind a pointer.
///
/// # Safety
/// `p` is NULL or a handle from `pushpark_engine_new`/`_spawn` that has not been freed.
pub(crate) unsafe fn engine_ref<'a>(p: *mut pushpark_engine) -> Result<&'a Handle> {
    non_null(p, "engine")?;
    Ok(&*p.cast::<Handle>())
}

/// # Safety
/// `config_json` is NULL or a NUL-terminated string.
pub(crate) unsafe fn parse_config(config_json: *const c_char) -> Result<EngineConfig> {
    let text = str_arg(config_json, "config_json")?;
    EngineConfig::from_json(text).map_err(|e| Error::new(PUSHPARK_ERR_CONFIG, e.to_string()))
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_config_check(config_json: *const c_char) -> pushpark_result {
    guard(|| parse_config(config_json).map(drop))
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_config_park_timeout(
    config_json: *const c_char,
    timeout_ms: *mut u32,
) -> pushpark_result {
    guard(|| {
        non_null(timeout_ms, "timeout_ms")?;
        let config = parse_config(config_json)?;
        let ms = u32::try_from(config.park.timeout.as_millis()).unwrap_or(u32::MAX);
        *timeout_ms = ms;
        Ok(())
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_config_clustered(
    config_json: *const c_char,
    clustered: *mut c_int,
) -> pushpark_result {
    guard(|| {
        non_null(clustered, "clustered")?;
        *clustered = c_int::from(parse_config(config_json)?.cluster.is_some());
        Ok(())
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_config_check_files(
    config_json: *const c_char,
) -> pushpark_result {
    guard(|| {
        let config = parse_config(config_json)?;
        Engine::check_files(&config).map_err(engine_error)
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_engine_new(
    config_json: *const c_char,
    out: *mut *mut pushpark_engine,
) -> pushpark_result {
    guard(|| {
        non_null(out, "out")?;
        let config = parse_config(config_json)?;
        super::log::set_config_level(config.log_level);
        let engine = Engine::new(config).map_err(engine_error)?;
        *out = Box::into_raw(Box::new(Handle::Local(engine))).cast();
        Ok(())
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_engine_spawn(
    config_json: *const c_char,
    out: *mut *mut pushpark_engine,
) -> pushpark_result {
    guard(|| {
        non_null(out, "out")?;
        let json = str_arg(config_json, "config_json")?;
        let config = parse_config(config_json)?;
        super::log::set_config_level(config.log_level);
        let supervisor = Supervisor::spawn(json, &config)?;
        *out = Box::into_raw(Box::new(Handle::Spawned(Mutex::new(supervisor)))).cast();
        Ok(())
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_engine_free(engine: *mut pushpark_engine) {
    if engine.is_null() {
        return;
    }
    let code = guard(|| {
        drop(Box::from_raw(engine.cast::<Handle>()));
        Ok(())
    });
    if code != PUSHPARK_OK {
        log::error!("freeing the engine failed: code {code}");
    }
}

/// See pushpark.h.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // mirrors the C prototype
pub unsafe extern "C" fn pushpark_register_path(
    engine: *mut pushpark_engine,
    aor: *const c_char,
    contact: *const c_char,
    instance: *const c_char,
    expires: u32,
    call_id: *const c_char,
    cseq: u32,
    path: *const c_char,
    out: *mut pushpark_register_outcome,
) -> pushpark_result {
    guard(|| {
        let engine = engine_ref(engine)?;
        let registration = Request::Register {
            aor: str_arg(aor, "aor")?.to_owned(),
            contact: str_arg(contact, "contact")?.to_owned(),
            instance: opt_str_arg(instance, "instance")?.map(str::to_owned),
            expires,
            call_id: opt_str_arg(call_id, "call_id")?.map(str::to_owned),
            cseq,
            path: opt_str_arg(path, "path")?.map(str::to_owned),
        };
        let outcome = engine.register(registration)?;
        if !out.is_null() {
            *out = pushpark_register_outcome {
                push_capable: outcome.push_capable.into(),
                stored: outcome.stored.into(),
                removed: outcome.removed.into(),
                resumed: outcome.resumed,
            };
        }
        Ok(())
    })
}

/// See pushpark.h.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // mirrors the C prototype
pub unsafe extern "C" fn pushpark_register_ordered(
    engine: *mut pushpark_engine,
    aor: *const c_char,
    contact: *const c_char,
    instance: *const c_char,
    expires: u32,
    call_id: *const c_char,
    cseq: u32,
    out: *mut pushpark_register_outcome,
) -> pushpark_result {
    pushpark_register_path(
        engine,
        aor,
        contact,
        instance,
        expires,
        call_id,
        cseq,
        std::ptr::null(),
        out,
    )
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_register(
    engine: *mut pushpark_engine,
    aor: *const c_char,
    contact: *const c_char,
    instance: *const c_char,
    expires: u32,
    out: *mut pushpark_register_outcome,
) -> pushpark_result {
    pushpark_register_ordered(
        engine,
        aor,
        contact,
        instance,
        expires,
        std::ptr::null(),
        0,
        out,
    )
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_add_device(
    engine: *mut pushpark_engine,
    aor: *const c_char,
    device_key: *const c_char,
    provider: *const c_char,
    token: *const c_char,
    topic: *const c_char,
    contact: *const c_char,
) -> pushpark_result {
    guard(|| {
        let engine = engine_ref(engine)?;
        let aor = str_arg(aor, "aor")?.to_owned();
        let device = DeviceInfo {
            key: str_arg(device_key, "device_key")?.to_owned(),
            provider: str_arg(provider, "provider")?.to_owned(),
            token: str_arg(token, "token")?.to_owned(),
            topic: str_arg(topic, "topic")?.to_owned(),
            contact: opt_str_arg(contact, "contact")?.unwrap_or("").to_owned(),
            // The engine takes 0 as now.
            last_register_unix: 0,
        };
        engine.done(Request::AddDevice { aor, device })
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_remove_device(
    engine: *mut pushpark_engine,
    aor: *const c_char,
    device_key: *const c_char,
) -> pushpark_result {
    guard(|| {
        let engine = engine_ref(engine)?;
        engine.done(Request::RemoveDevice {
            aor: str_arg(aor, "aor")?.to_owned(),
            key: str_arg(device_key, "device_key")?.to_owned(),
        })
    })
}

/// The arguments park and fork share.
///
/// # Safety
/// Each pointer is NULL or a NUL-terminated string that outlives the request.
unsafe fn park_request(
    call_id: *const c_char,
    aor: *const c_char,
    caller_uri: *const c_char,
    caller_name: *const c_char,
    host_ref: u64,
    host_data: u64,
    timeout_ms: u32,
) -> Result<Park> {
    Ok(Park {
        call_id: str_arg(call_id, "call_id")?.to_owned(),
        aor: str_arg(aor, "aor")?.to_owned(),
        caller_uri: str_arg(caller_uri, "caller_uri")?.to_owned(),
        caller_name: opt_str_arg(caller_name, "caller_name")?
            .unwrap_or("")
            .to_owned(),
        host_ref,
        host_data,
        timeout_ms,
    })
}

/// See pushpark.h.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // mirrors the C prototype
pub unsafe extern "C" fn pushpark_park(
    engine: *mut pushpark_engine,
    call_id: *const c_char,
    aor: *const c_char,
    caller_uri: *const c_char,
    caller_name: *const c_char,
    host_ref: u64,
    host_data: u64,
    timeout_ms: u32,
    park_id: *mut u64,
) -> pushpark_result {
    guard(|| {
        let engine = engine_ref(engine)?;
        let request = park_request(
            call_id,
            aor,
            caller_uri,
            caller_name,
            host_ref,
            host_data,
            timeout_ms,
        )?;
        let id = engine.park(Request::Park(request))?;
        if !park_id.is_null() {
            *park_id = id;
        }
        Ok(())
    })
}

/// See pushpark.h.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // mirrors the C prototype
pub unsafe extern "C" fn pushpark_fork(
    engine: *mut pushpark_engine,
    call_id: *const c_char,
    aor: *const c_char,
    caller_uri: *const c_char,
    caller_name: *const c_char,
    host_ref: u64,
    host_data: u64,
    timeout_ms: u32,
    contacts: *const pushpark_contact,
    n_contacts: usize,
    park_id: *mut u64,
) -> pushpark_result {
    guard(|| {
        let engine = engine_ref(engine)?;
        let request = park_request(
            call_id,
            aor,
            caller_uri,
            caller_name,
            host_ref,
            host_data,
            timeout_ms,
        )?;
        let given = match n_contacts {
            0 => &[][..],
            n => {
                non_null(contacts, "contacts")?;
                std::slice::from_raw_parts(contacts, n)
            }
        };
        let mut list = Vec::with_capacity(given.len());
        for (i, c) in given.iter().enumerate() {
            list.push(Contact {
                uri: str_arg(c.uri, &format!("contacts[{i}].uri"))?.to_owned(),
                instance: opt_str_arg(c.instance, &format!("contacts[{i}].instance"))?
                    .map(str::to_owned),
                ringing: c.ringing != 0,
            });
        }
        let id = engine.park(Request::Fork(request, list))?;
        if !park_id.is_null() {
            *park_id = id;
        }
        Ok(())
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_cancel(
    engine: *mut pushpark_engine,
    host_ref: u64,
) -> pushpark_result {
    guard(|| engine_ref(engine)?.done(Request::Cancel(host_ref)))
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_call_ended(
    engine: *mut pushpark_engine,
    host_ref: u64,
) -> pushpark_result {
    guard(|| engine_ref(engine)?.done(Request::CallEnded(host_ref)))
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_call_completed(
    engine: *mut pushpark_engine,
    host_ref: u64,
    status: u16,
) -> pushpark_result {
    guard(|| engine_ref(engine)?.done(Request::CallCompleted(host_ref, status)))
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_call_end(
    engine: *mut pushpark_engine,
    host_ref: u64,
    status: u16,
    was: *mut pushpark_call_state,
) -> pushpark_result {
    guard(|| {
        let engine = engine_ref(engine)?;
        let state = match engine.end(host_ref, status)? {
            CallWas::Parked => PUSHPARK_CALL_PARKED,
            CallWas::Resumed => PUSHPARK_CALL_RESUMED,
            CallWas::Forked => PUSHPARK_CALL_FORKED,
        };
        if !was.is_null() {
            *was = state;
        }
        Ok(())
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_reject_waiting(
    engine: *mut pushpark_engine,
    sip_code: u16,
    reason: *const c_char,
) -> pushpark_result {
    guard(|| {
        let engine = engine_ref(engine)?;
        let reason = str_arg(reason, "reason")?;
        if !(300..=699).contains(&sip_code) {
            let why = format!("sip_code {sip_code} is not a final failure (300 to 699)");
            return Err(Error::new(PUSHPARK_ERR_INVALID, why));
        }
        if reason.len() > 200 || reason.chars().any(char::is_control) {
            let why = "reason is over 200 bytes or holds a control character";
            return Err(Error::new(PUSHPARK_ERR_INVALID, why));
        }
        engine.done(Request::RejectWaiting {
            code: sip_code,
            reason: reason.to_owned(),
            resumed: Vec::new(),
        })
    })
}

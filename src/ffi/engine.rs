//! The engine's lifecycle, devices and parking: thin wrappers that check and convert
//! arguments, call `crate::engine::Engine`, and map its errors to result codes.

use super::result::{guard, non_null, opt_str_arg, str_arg, Error, Result};
use super::sys::*;
use crate::engine::redact;
use crate::engine::{
    DeviceInfo, Engine, EngineConfig, EngineError, ForkContact, ParkError, ParkRequest,
    Registration,
};
use std::ffi::c_char;
use std::time::Duration;

/// The engine behind a handle.
///
/// # Safety
/// `p` is NULL or a handle from `pushpark_engine_new` that has not been freed.
pub(crate) unsafe fn engine_ref<'a>(p: *mut pushpark_engine) -> Result<&'a Engine> {
    non_null(p, "engine")?;
    Ok(&*p.cast::<Engine>())
}

pub(crate) fn engine_error(e: EngineError) -> Error {
    let code = match &e {
        // Credentials and CA files are part of the configuration.
        EngineError::Config(_) | EngineError::Apns(_) => PUSHPARK_ERR_CONFIG,
        EngineError::Store(_) | EngineError::Io(_) => PUSHPARK_ERR_IO,
        EngineError::Invalid(_) => PUSHPARK_ERR_INVALID,
        EngineError::Unsupported(_) => PUSHPARK_ERR_UNSUPPORTED,
        EngineError::NotFound => PUSHPARK_ERR_NOT_FOUND,
    };
    Error::new(code, e.to_string())
}

fn park_error(e: ParkError) -> Error {
    let code = match &e {
        ParkError::NoDevice => PUSHPARK_ERR_NO_DEVICE,
        ParkError::LimitTotal => PUSHPARK_ERR_LIMIT_TOTAL,
        ParkError::LimitPerAor => PUSHPARK_ERR_LIMIT_AOR,
        ParkError::QueueFull => PUSHPARK_ERR_QUEUE_FULL,
        ParkError::Duplicate => PUSHPARK_ERR_DUPLICATE,
        ParkError::Invalid(_) => PUSHPARK_ERR_INVALID,
        ParkError::ShutDown => PUSHPARK_ERR_SHUTDOWN,
    };
    Error::new(code, e.to_string())
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
        *out = Box::into_raw(Box::new(engine)).cast();
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
        drop(Box::from_raw(engine.cast::<Engine>()));
        Ok(())
    });
    if code != PUSHPARK_OK {
        log::error!("freeing the engine failed: code {code}");
    }
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
    guard(|| {
        let engine = engine_ref(engine)?;
        let registration = Registration {
            aor: str_arg(aor, "aor")?,
            contact: str_arg(contact, "contact")?,
            instance: opt_str_arg(instance, "instance")?,
            expires,
            call_id: opt_str_arg(call_id, "call_id")?,
            cseq,
        };
        let outcome = engine.register(&registration).map_err(engine_error)?;
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
        let aor = str_arg(aor, "aor")?;
        let device = DeviceInfo {
            key: str_arg(device_key, "device_key")?.to_owned(),
            provider: str_arg(provider, "provider")?.to_owned(),
            token: str_arg(token, "token")?.to_owned(),
            topic: str_arg(topic, "topic")?.to_owned(),
            contact: opt_str_arg(contact, "contact")?.unwrap_or("").to_owned(),
            // The engine takes 0 as now.
            last_register_unix: 0,
        };
        engine.add_device(aor, &device).map_err(engine_error)
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
        let aor = str_arg(aor, "aor")?;
        let key = str_arg(device_key, "device_key")?;
        match engine.remove_device(aor, key) {
            true => Ok(()),
            false => Err(Error::new(
                PUSHPARK_ERR_NOT_FOUND,
                format!("{aor} has no device {}", redact::key(key)),
            )),
        }
    })
}

/// The arguments park and fork share.
///
/// # Safety
/// Each pointer is NULL or a NUL-terminated string that outlives the request.
unsafe fn park_request<'a>(
    call_id: *const c_char,
    aor: *const c_char,
    caller_uri: *const c_char,
    caller_name: *const c_char,
    host_ref: u64,
    timeout_ms: u32,
) -> Result<ParkRequest<'a>> {
    Ok(ParkRequest {
        call_id: str_arg(call_id, "call_id")?,
        aor: str_arg(aor, "aor")?,
        caller_uri: str_arg(caller_uri, "caller_uri")?,
        caller_name: opt_str_arg(caller_name, "caller_name")?.unwrap_or(""),
        host_ref,
        timeout: (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms.into())),
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
    timeout_ms: u32,
    park_id: *mut u64,
) -> pushpark_result {
    guard(|| {
        let engine = engine_ref(engine)?;
        let request = park_request(call_id, aor, caller_uri, caller_name, host_ref, timeout_ms)?;
        let id = engine.park(&request).map_err(park_error)?;
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
    timeout_ms: u32,
    contacts: *const pushpark_contact,
    n_contacts: usize,
    park_id: *mut u64,
) -> pushpark_result {
    guard(|| {
        let engine = engine_ref(engine)?;
        let request = park_request(call_id, aor, caller_uri, caller_name, host_ref, timeout_ms)?;
        let given = match n_contacts {
            0 => &[][..],
            n => {
                non_null(contacts, "contacts")?;
                std::slice::from_raw_parts(contacts, n)
            }
        };
        let mut list = Vec::with_capacity(given.len());
        for (i, c) in given.iter().enumerate() {
            list.push(ForkContact {
                uri: str_arg(c.uri, &format!("contacts[{i}].uri"))?,
                instance: opt_str_arg(c.instance, &format!("contacts[{i}].instance"))?,
                ringing: c.ringing != 0,
            });
        }
        let id = engine.fork(&request, &list).map_err(park_error)?;
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
    guard(|| engine_ref(engine)?.cancel(host_ref).map_err(engine_error))
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_call_ended(
    engine: *mut pushpark_engine,
    host_ref: u64,
) -> pushpark_result {
    guard(|| {
        engine_ref(engine)?
            .call_ended(host_ref)
            .map_err(engine_error)
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_call_completed(
    engine: *mut pushpark_engine,
    host_ref: u64,
    status: u16,
) -> pushpark_result {
    guard(|| {
        engine_ref(engine)?
            .call_completed(host_ref, status)
            .map_err(engine_error)
    })
}

//! Statistics (the caller-sized C struct and JSON) and the JSON listings of parked calls and
//! devices that management commands print.

use super::engine::engine_ref;
use super::result::{guard, guard_value, non_null, str_arg, to_cstring, Error, Result};
use super::sys::*;
use crate::engine::redact;
use std::ffi::c_char;
use std::mem::{offset_of, size_of};

const PAGE_MAX: usize = PUSHPARK_PAGE_MAX as usize;

// `pushpark_stats` is copied to C byte by byte, so it must have no (uninitialized) padding:
// its size_t `size` followed by u64s has none where size_t is 64 bits.
const _: () = assert!(size_of::<usize>() == size_of::<u64>());

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_stats_get(
    engine: *mut pushpark_engine,
    stats: *mut pushpark_stats,
) -> pushpark_result {
    guard(|| {
        let engine = engine_ref(engine)?;
        non_null(stats, "stats")?;
        // Only `size` is read through the caller's pointer: the struct may be an older,
        // shorter one, so no reference to a whole `pushpark_stats` is made.
        let caller_size = stats.cast::<usize>().read();
        let minimum = offset_of!(pushpark_stats, parked_now) + size_of::<u64>();
        if caller_size < minimum {
            return Err(Error::new(
                PUSHPARK_ERR_INVALID,
                format!("stats->size is {caller_size}, at least {minimum} is needed"),
            ));
        }
        let s = engine.stats()?;
        let filled = caller_size.min(size_of::<pushpark_stats>());
        let full = pushpark_stats {
            size: filled,
            parked_now: s.parked_now,
            parked_total: s.parked_total,
            resumed: s.resumed,
            rejected_timeout: s.rejected_timeout,
            rejected_push_failed: s.rejected_push_failed,
            cancelled: s.cancelled,
            park_no_device: s.park_no_device,
            park_refused_limit: s.park_over_limit + s.park_queue_full,
            pushes_sent: s.pushes_sent,
            pushes_delivered: s.pushes_delivered,
            pushes_failed_permanent: s.pushes_failed_dead_token + s.pushes_failed_rejected,
            pushes_failed_transient: s.pushes_failed_timed_out + s.pushes_failed_not_sent,
            devices_gone: s.devices_gone,
            resume_latency_p50_us: s.resume_latency_p50_us,
            resume_latency_p99_us: s.resume_latency_p99_us,
            append_branches: s.append_branches,
            pushes_coalesced: s.pushes_coalesced,
            devices_stored: s.devices_stored,
            events_waiting: s.events_waiting,
            resumed_now: s.resumed_now,
            late_wakes: s.late_wakes,
            registers_out_of_order: s.registers_out_of_order,
            pushes_replayed: s.pushes_replayed,
            events_dropped: s.events_dropped,
            devices_evicted: s.devices_evicted,
            engine_restarts: s.engine_restarts,
            pushes_unconfirmed: s.pushes_unconfirmed,
            cluster_connected: s.cluster_connected,
            cluster_wakes_sent: s.cluster_wakes_sent,
            cluster_wakes_received: s.cluster_wakes_received,
            cluster_bindings_synced: s.cluster_bindings_synced,
            cluster_failures: s.cluster_failures,
            apns_pushes_sent: s.apns_pushes_sent,
            apns_pushes_delivered: s.apns_pushes_delivered,
            apns_pushes_failed: s.apns_pushes_failed,
            fcm_pushes_sent: s.fcm_pushes_sent,
            fcm_pushes_delivered: s.fcm_pushes_delivered,
            fcm_pushes_failed: s.fcm_pushes_failed,
            cluster_wakes_dropped: s.cluster_wakes_dropped,
        };
        std::ptr::copy_nonoverlapping(
            (&full as *const pushpark_stats).cast::<u8>(),
            stats.cast::<u8>(),
            filled,
        );
        Ok(())
    })
}

/// Hands a JSON document to C.
///
/// # Safety
/// `out` is NULL or valid for a pointer write.
unsafe fn give_json(out: *mut *mut c_char, value: impl serde::Serialize) -> Result<()> {
    non_null(out, "json")?;
    let text = serde_json::to_string(&value)
        .map_err(|e| Error::new(PUSHPARK_ERR_INTERNAL, format!("serializing JSON: {e}")))?;
    *out = to_cstring(&text).into_raw();
    Ok(())
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_stats_json(
    engine: *mut pushpark_engine,
    json: *mut *mut c_char,
) -> pushpark_result {
    guard(|| give_json(json, engine_ref(engine)?.stats()?))
}

/// A listing page's `limit`, checked before the engine is asked.
fn page_limit(limit: usize) -> Result<usize> {
    match limit {
        1..=PAGE_MAX => Ok(limit),
        _ => Err(Error::new(
            PUSHPARK_ERR_INVALID,
            format!("limit must be from 1 to {PAGE_MAX}, not {limit}"),
        )),
    }
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_parked_json_page(
    engine: *mut pushpark_engine,
    offset: usize,
    limit: usize,
    json: *mut *mut c_char,
) -> pushpark_result {
    guard(|| {
        let engine = engine_ref(engine)?;
        give_json(json, engine.parked(offset, page_limit(limit)?)?)
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_devices_json_page(
    engine: *mut pushpark_engine,
    aor: *const c_char,
    offset: usize,
    limit: usize,
    json: *mut *mut c_char,
) -> pushpark_result {
    guard(|| {
        let engine = engine_ref(engine)?;
        let aor = str_arg(aor, "aor")?;
        let page = engine.devices(aor, offset, page_limit(limit)?)?;
        give_json(
            json,
            page.map(|d| {
                serde_json::json!({
                    "key": redact::key(&d.key), "provider": d.provider, "topic": d.topic,
                    "contact": redact::contact(&d.contact),
                    "last_register_unix": d.last_register_unix,
                    "token": redact::token(&d.token),
                })
            }),
        )
    })
}

/// See pushpark.h.
#[no_mangle]
pub unsafe extern "C" fn pushpark_string_free(s: *mut c_char) {
    if !s.is_null() {
        guard_value((), || drop(std::ffi::CString::from_raw(s)));
    }
}

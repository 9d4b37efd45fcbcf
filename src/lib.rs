//! pushpark: park SIP INVITEs for devices that are asleep, wake them with an
//! APNs VoIP push, and resume the call when they register.

pub mod apns;
pub mod ffi;
pub mod mock;

/// The library version (Cargo.toml's).
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

//! pushpark: park SIP INVITEs for devices that are asleep, wake them with an
//! APNs VoIP push, and resume the call when they register.

pub mod apns;
pub mod engine;
pub mod fcm;
pub mod ffi;
pub mod histogram;
#[cfg(feature = "mock")]
pub mod mock;
mod panic_message;
pub mod push_client;
mod sigpipe;

pub use apns::{
    ApnsClient, Auth, ClientConfig, ClientError, Endpoint, Metrics, Outcome, Push, PushResult,
    PushType, SubmitError,
};

pub use engine::{
    ConfigError, ContactError, ContactRules, DeviceInfo, Engine, EngineConfig, EngineError, Event,
    EventKind, ForkContact, ParkError, ParkRequest, ParkedInfo, RegisterOutcome, Registration,
    Stats,
};

/// The library version (Cargo.toml's).
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

//! The APNs HTTP/2 client.

pub mod jwt;
pub mod reason;

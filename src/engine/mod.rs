//! The engine: parks INVITEs, pushes devices, wakes calls on REGISTER.

mod config;
mod contact;
mod events;
mod parked;
mod push;
mod stats;
mod store;

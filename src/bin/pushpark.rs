//! The `pushpark` command: APNs and FCM credential checks and benchmarks, their mocks,
//! the demo and the device simulator.

#[path = "pushpark/apns_cmd.rs"]
mod apns_cmd;
#[path = "pushpark/demo_cluster.rs"]
mod demo_cluster;
#[path = "pushpark/demo_cmd.rs"]
mod demo_cmd;
#[path = "pushpark/device_sim.rs"]
mod device_sim;
#[path = "pushpark/fcm_cmd.rs"]
mod fcm_cmd;
#[path = "pushpark/mock_cmd.rs"]
mod mock_cmd;
#[path = "pushpark/mock_fcm_cmd.rs"]
mod mock_fcm_cmd;
#[path = "pushpark/push_bench.rs"]
mod push_bench;
#[allow(dead_code)] // the rig serves the end-to-end tests too; the demo uses part of it
#[path = "pushpark/rig.rs"]
mod rig;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pushpark",
    version,
    about = "Park SIP calls for sleeping iPhones and wake them with APNs VoIP pushes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a mock of Apple's push service (HTTP/2 over TLS) for tests and demos.
    MockApns(mock_cmd::Args),
    /// Run a mock of Firebase Cloud Messaging (HTTP v1 and its OAuth token endpoint).
    MockFcm(mock_fcm_cmd::Args),
    /// Talk to APNs: check credentials with one push, or measure throughput.
    #[command(subcommand)]
    Apns(apns_cmd::Command),
    /// Talk to Firebase Cloud Messaging: check a service account with one message, or
    /// measure throughput.
    #[command(subcommand)]
    Fcm(fcm_cmd::Command),
    /// Show a call to a sleeping iPhone: parked, woken by a VoIP push, connected.
    Demo(demo_cmd::Args),
    /// Behave like the phone apps: on a push from the mock APNs or FCM, REGISTER with push parameters.
    DeviceSim(device_sim::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::MockApns(args) => mock_cmd::run(args),
        Command::MockFcm(args) => mock_fcm_cmd::run(args),
        Command::Apns(cmd) => apns_cmd::run(cmd),
        Command::Fcm(cmd) => fcm_cmd::run(cmd),
        Command::Demo(args) => demo_cmd::run(args),
        Command::DeviceSim(args) => device_sim::run(args),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("pushpark: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

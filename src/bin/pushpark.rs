//! The `pushpark` command: APNs credential check and benchmark, and the mock APNs.

#[path = "pushpark/apns_cmd.rs"]
mod apns_cmd;
#[path = "pushpark/mock_cmd.rs"]
mod mock_cmd;

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
    /// Talk to APNs: check credentials with one push, or measure throughput.
    #[command(subcommand)]
    Apns(apns_cmd::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::MockApns(args) => mock_cmd::run(args),
        Command::Apns(cmd) => apns_cmd::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("pushpark: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

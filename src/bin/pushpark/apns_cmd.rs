//! `pushpark apns send` and `pushpark apns bench`.

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Send one push and print the outcome; exits 0 only when delivered.
    Send,
    /// Send many pushes and print throughput and latency.
    Bench,
}

pub fn run(_cmd: Command) -> Result<ExitCode, String> {
    Err("apns commands are not implemented yet".into())
}

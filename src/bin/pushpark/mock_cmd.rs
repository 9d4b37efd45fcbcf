//! `pushpark mock-apns`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8443.
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// Directory holding the generated CA and test key (created if absent).
    #[arg(long)]
    state_dir: PathBuf,
}

pub fn run(_args: Args) -> Result<ExitCode, String> {
    Err("mock-apns is not implemented yet".into())
}

//! The `ringmover` binary: parses arguments and hands over to [`ringmover::cli::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ringmover::cli::Cli::parse_from(ringmover::cli::normalize_args(std::env::args_os()));
    match ringmover::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringmover: {e:#}");
            ExitCode::from(2)
        }
    }
}

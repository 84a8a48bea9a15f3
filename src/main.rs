//! The `ringmover` binary: parses arguments and hands over to [`ringmover::cli::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    fixed_mmap_threshold();
    let cli = ringmover::cli::Cli::parse_from(ringmover::cli::normalize_args(std::env::args_os()));
    match ringmover::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringmover: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// glibc raises its mmap threshold after freeing a large block, so later large blocks (Argon2's
/// 19 MiB per password check) land in per-thread arenas and stay resident after they are freed:
/// a login flood then held gigabytes. A fixed threshold keeps large blocks mapped and returned.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fixed_mmap_threshold() {
    // SAFETY: mallopt only changes allocator tuning; it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fixed_mmap_threshold() {}

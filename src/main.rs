//! The `ringmover` binary: parses arguments and hands over to [`ringmover::cli::run`].

use std::process::ExitCode;

use ringmover::cli::ParseError;

fn main() -> ExitCode {
    fixed_mmap_threshold();
    let argv = ringmover::cli::normalize_args(std::env::args_os());
    let cli = match ringmover::cli::parse(argv) {
        Ok(cli) => cli,
        Err(ParseError::Clap(e)) => e.exit(),
        Err(ParseError::Config(message)) => {
            eprintln!("ringmover: {message}");
            return ExitCode::from(2);
        }
    };
    match ringmover::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringmover: {}", explain(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each said once: many errors repeat their cause's text.
fn explain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
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

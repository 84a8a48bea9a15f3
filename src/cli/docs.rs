//! `man DIR` and `completions SHELL`: generated from the clap definitions, so they never
//! disagree with `--help`; the packages install both.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write ringmover.1 and one page per command (ringmover-serve.1, ...) into.
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

pub(super) fn man(args: ManArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    clap_mangen::generate_to(super::Cli::command(), &args.dir)
        .with_context(|| format!("writing man pages into {}", args.dir.display()))?;
    println!("man pages written to {}", args.dir.display());
    Ok(ExitCode::SUCCESS)
}

pub(super) fn completions(args: CompletionArgs) -> Result<ExitCode> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "ringmover", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_for_every_command() {
        let d = tempfile::tempdir().unwrap();
        man(ManArgs { dir: d.path().into() }).unwrap();
        for page in [
            "ringmover.1",
            "ringmover-serve.1",
            "ringmover-pool.1",
            "ringmover-tune-check.1",
        ] {
            let text = std::fs::read_to_string(d.path().join(page)).unwrap();
            assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}: {text:.200}");
        }
        let serve = std::fs::read_to_string(d.path().join("ringmover-serve.1")).unwrap();
        assert!(serve.contains("port\\-range"), "{serve:.2000}");
    }
}

//! `passwd` and `link-key`: the users file and the pool link keys.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use crate::door::auth;

#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// User name.
    pub name: String,
    /// Users file to create or update.
    #[arg(long, default_value = "users")]
    pub users: PathBuf,
}

#[derive(Debug, Args)]
pub struct LinkKeyArgs {
    /// Pool name (the pool's --name).
    pub name: String,
    /// Keys file to create or update (mode 0600).
    #[arg(long, default_value = "pool-keys")]
    pub keys: PathBuf,
}

pub(super) fn run(args: PasswdArgs) -> Result<ExitCode> {
    auth::check_name(&args.name)?;
    let password = if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password(format!("New password for {}: ", args.name))?;
        let b = rpassword::prompt_password("Repeat: ")?;
        if a != b {
            bail!("passwords differ");
        }
        a
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        bail!("empty password refused");
    }
    auth::Users::set_password(&args.users, &args.name, &password)?;
    eprintln!("updated {} in {}", args.name, args.users.display());
    Ok(ExitCode::SUCCESS)
}

/// Gives a pool a fresh link key in a keys file.
pub(super) fn link_key(args: LinkKeyArgs) -> Result<ExitCode> {
    crate::link::auth::LinkKeys::add(&args.keys, &args.name)?;
    eprintln!(
        "key for pool '{}' written to {}; give the door this file (--pool-keys) and the pool its line (--key-file)",
        args.name,
        args.keys.display()
    );
    Ok(ExitCode::SUCCESS)
}

//! `ringmover tune check|apply|revert`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::tune::{self, profile, Host, Status, Target};

#[derive(Debug, Args)]
pub struct TuneArgs {
    #[command(subcommand)]
    pub command: TuneCmd,
}

#[derive(Debug, Subcommand)]
pub enum TuneCmd {
    /// Report this host against the fasterdata recommendations (read-only; exit 1 when a
    /// critical item is off).
    Check(CheckArgs),
    /// Show what a profile changes; with --yes apply it and write a revert file.
    Apply(ApplyArgs),
    /// Restore the values recorded in a revert file.
    Revert(RevertArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Link rate of one flow: 10g, 25g, 40g or 100g.
    #[arg(long, default_value = "10g")]
    pub target: String,
    /// Round-trip time of the paths to plan for (e.g. 50ms, 200ms).
    #[arg(long, default_value = "50ms")]
    pub rtt: String,
    /// Data interface (default: the default route's).
    #[arg(long)]
    pub iface: Option<String>,
    /// The directory `serve --root` uses (checked for O_DIRECT).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// CPUs the engine will use, e.g. 0-7 (default: all).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Read /proc and /sys under this directory instead of / (tests, offline reports).
    #[arg(long)]
    pub sysroot: Option<PathBuf>,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// 10g, 100g or 100g-long-rtt (tuning/*.conf), or a sysctl.conf-style file.
    #[arg(long)]
    pub profile: String,
    /// Really write the values (otherwise only print the changes).
    #[arg(long)]
    pub yes: bool,
    /// Where to record the old values [default: ./ringmover-revert-<profile>.conf].
    #[arg(long)]
    pub revert_file: Option<PathBuf>,
    /// Write under this directory's proc/sys instead of the host's (tests).
    #[arg(long)]
    pub sysroot: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RevertArgs {
    /// A revert file written by `tune apply --yes`.
    pub file: PathBuf,
    /// Write under this directory's proc/sys instead of the host's (tests).
    #[arg(long)]
    pub sysroot: Option<PathBuf>,
}

fn host(sysroot: &Option<PathBuf>) -> Host {
    sysroot.as_deref().map_or_else(Host::live, Host::at)
}

pub fn run(args: TuneArgs) -> Result<ExitCode> {
    match args.command {
        TuneCmd::Check(a) => check(a),
        TuneCmd::Apply(a) => apply(a),
        TuneCmd::Revert(a) => {
            let host = host(&a.sysroot);
            let changes = profile::revert(&host, &a.file)?;
            print!("{}", profile::describe(&changes));
            println!("restored from {}", a.file.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(a: CheckArgs) -> Result<ExitCode> {
    let rtt = crate::units::parse_rtt(&a.rtt)
        .with_context(|| format!("invalid --rtt '{}': give a unit, e.g. 80ms", a.rtt))?;
    let target =
        Target::new(&a.target, rtt).with_context(|| format!("unknown --target '{}': 10g, 25g, 40g, 100g", a.target))?;
    let scope = tune::check::Scope {
        iface: a.iface,
        root: a.root,
        engine_cpus: a.cpus.as_deref().map(tune::check::parse_cpu_list).unwrap_or_default(),
    };
    let rows = tune::check(&host(&a.sysroot), &target, &scope);
    if a.json {
        let v = serde_json::json!({
            "target_bits_per_s": target.bits_per_s,
            "rtt_ms": rtt.as_secs_f64() * 1e3,
            "bdp_bytes": target.bdp(),
            "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "target {} at {} ms RTT: bandwidth-delay product {} bytes per flow\n",
            a.target,
            rtt.as_secs_f64() * 1e3,
            target.bdp()
        );
        print!("{}", tune::table(&rows));
    }
    let critical = rows.iter().any(|r| r.status == Status::Critical);
    Ok(if critical { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn apply(a: ApplyArgs) -> Result<ExitCode> {
    let settings = match profile::builtin(&a.profile) {
        Ok(s) => s,
        Err(profile::ProfileError::Unknown(_)) if std::path::Path::new(&a.profile).is_file() => {
            let text = std::fs::read_to_string(&a.profile).with_context(|| format!("reading {}", a.profile))?;
            profile::parse(&a.profile, &text)?
        }
        Err(e) => return Err(e.into()),
    };
    let host = host(&a.sysroot);
    let changes = profile::plan(&host, &settings);
    print!("{}", profile::describe(&changes));
    if !a.yes {
        println!("dry run: nothing written (add --yes to apply)");
        return Ok(ExitCode::SUCCESS);
    }
    let name = std::path::Path::new(&a.profile)
        .file_stem()
        .map_or("profile".into(), |s| s.to_string_lossy().into_owned());
    let revert = a
        .revert_file
        .unwrap_or_else(|| PathBuf::from(format!("ringmover-revert-{name}.conf")));
    if revert.exists() {
        bail!("{} exists: revert it first or give --revert-file", revert.display());
    }
    profile::apply(&host, &changes, &revert)?;
    println!("applied; to undo: ringmover tune revert {}", revert.display());
    Ok(ExitCode::SUCCESS)
}

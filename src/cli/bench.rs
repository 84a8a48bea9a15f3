//! `bench`: the benchmark, swept, with the peers in the same run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::{parse_data_path, parse_size};

/// `bench` options. Lists (comma-separated) make a sweep over every combination.
#[derive(Debug, Args)]
#[command(after_help = super::UNITS_HELP)]
pub struct BenchArgs {
    /// What to measure: m2m, download, upload, disk (disk-read and disk-write: cold-cache reads
    /// and synced writes in --dir, which must then be a disk, beside fio; needs root).
    #[arg(long, value_delimiter = ',', default_value = "m2m,download,upload")]
    pub scenarios: Vec<String>,
    /// Bytes per run (e.g. 4G, 512M).
    #[arg(long, default_value = "2G")]
    pub size: String,
    /// Runs per case (medians are reported); every tool also gets one warm-up run.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Parallel streams (1: stream mode for file transfers, more: MODE E).
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub streams: Vec<u32>,
    /// MODE E block sizes for file transfers; "default" is 1M.
    #[arg(long = "block-size", value_delimiter = ',', default_value = "default")]
    pub block_size: Vec<String>,
    /// Socket buffer sizes; "auto" is kernel autotuning.
    #[arg(long = "tcp-bs", value_delimiter = ',', default_value = "auto")]
    pub tcp_bs: Vec<String>,
    /// Engine data paths for our side: auto, zerocopy, readwrite.
    #[arg(long = "path", value_delimiter = ',', default_value = "auto")]
    pub path: Vec<String>,
    /// Skip the peers (iperf3, globus-url-copy, globus-gridftp-server): no ratios then.
    #[arg(long)]
    pub no_peers: bool,
    /// Directory for the files (tmpfs keeps the disk out of it).
    #[arg(long, default_value = "/dev/shm")]
    pub dir: PathBuf,
    /// A GSI test grid made by `scripts/gsi-testgrid.sh DIR`: download and upload also run
    /// over gsiftp:// with data channel authentication (DCAU A, PROT C), beside Globus.
    #[arg(long, value_name = "DIR")]
    pub gsi_grid: Option<PathBuf>,
    /// Print JSON (cases and targets) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the medians as CSV here.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Also write an SVG plot of GB/s over the sweep here.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Run the download sweep through the WAN emulator instead, e.g.
    /// rtt=50ms,loss=0.001%,rate=1gbit (keys: rtt, loss, rate, jitter, queue, burst). Needs root.
    #[arg(long, value_name = "SPEC")]
    pub wan: Option<String>,
    /// Congestion controls to sweep with --wan (each must be in the host's
    /// net.ipv4.tcp_allowed_congestion_control).
    #[arg(long, value_delimiter = ',', default_value = "bbr,reno")]
    pub cc: Vec<String>,
    /// Namespace prefix of the --wan lab (1-8 letters or digits).
    #[arg(long, default_value = "rmb")]
    pub lab_prefix: String,
}

pub(super) fn run(args: BenchArgs) -> Result<ExitCode> {
    use crate::bench::{self, report, Scenario};
    let mut scenarios = Vec::new();
    for s in args.scenarios.iter().map(|s| s.trim()) {
        match s {
            "disk" => scenarios.extend([Scenario::DiskRead, Scenario::DiskWrite]),
            _ => scenarios.push(Scenario::parse(s).with_context(|| {
                format!("unknown scenario '{s}': m2m, download, upload, disk (disk-read, disk-write)")
            })?),
        }
    }
    let optional_size = |v: &str, none: &str| -> Result<Option<u64>> {
        if v == none {
            Ok(None)
        } else {
            parse_size(v).map(Some)
        }
    };
    let plan = bench::Plan {
        scenarios,
        size: parse_size(&args.size)?.max(1),
        runs: args.runs.max(1),
        streams: args.streams.iter().map(|&s| s.max(1)).collect(),
        block_sizes: args
            .block_size
            .iter()
            .map(|v| optional_size(v, "default"))
            .collect::<Result<_>>()?,
        tcp_bs: args
            .tcp_bs
            .iter()
            .map(|v| optional_size(v, "auto"))
            .collect::<Result<_>>()?,
        paths: args.path.iter().map(|p| parse_data_path(p)).collect::<Result<_>>()?,
        peers: !args.no_peers,
        dir: args.dir.clone(),
        exe: std::env::current_exe().context("finding this program")?,
        net: bench::Net::loopback(),
        gsi: args.gsi_grid.clone(),
    };
    let tty = std::io::stderr().is_terminal();
    let mut show = |c: &bench::Case| {
        if tty {
            eprintln!(
                "  {} {} {}: {:.3} GB/s",
                c.scenario.name(),
                c.tool,
                c.label(),
                c.median.gbytes_per_s
            );
        }
    };
    let cases = match &args.wan {
        Some(spec) => {
            let wan = bench::wan::WanPlan {
                emu: bench::wan::parse_spec(spec).map_err(anyhow::Error::msg)?,
                ccs: args.cc.clone(),
                prefix: args.lab_prefix.clone(),
            };
            bench::wan::run(&plan, &wan, &mut show)?
        }
        None => bench::run(&plan, show)?,
    };
    let targets = report::targets(&cases);
    if args.json {
        let v = serde_json::json!({ "cases": cases, "targets": targets });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", report::table(&cases));
        if args.wan.is_some() {
            print!("{}", report::best(&cases));
        } else if plan.peers {
            print!("{}", report::targets_table(&targets));
            if let Some(host) = crate::pool::tcp::host_default() {
                let paces = crate::pool::tcp::paces_itself(&host);
                print!("{}", report::congestion_note(&host, paces).unwrap_or_default());
            }
        }
    }
    if let Some(p) = &args.csv {
        let f = std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
        report::csv(&cases, f)?;
    }
    if let Some(p) = &args.svg {
        std::fs::write(p, report::svg(&cases)).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

//! `pool`: a data mover that links to a door.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use super::{control_runtime, parse_port_range, stop_on_signal, DataLimitArgs, DataSide};
use crate::pool::{PoolConfig, Service};
use crate::storage::Root;

/// `pool` options.
#[derive(Debug, Args)]
#[command(after_help = super::UNITS_HELP)]
pub struct PoolArgs {
    /// Directory this pool stores files in.
    #[arg(long)]
    pub root: PathBuf,
    /// The door's pool address.
    #[arg(long, default_value = "127.0.0.1:2812")]
    pub door: SocketAddr,
    /// Name in the door's registry [default: the data address].
    #[arg(long)]
    pub name: Option<String>,
    /// Keys file holding this pool's key, under its name (see `ringmover link-key`).
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// Address clients reach this pool's data ports on (and that it listens on).
    #[arg(long, default_value = "127.0.0.1")]
    pub data_address: IpAddr,
    /// Passive data ports, e.g. 50000-50100.
    #[arg(long, value_name = "A-B")]
    pub port_range: Option<String>,
    /// Engine cores [default: all CPUs, or those of --cpus].
    #[arg(long)]
    pub cores: Option<usize>,
    /// CPUs to pin the engine to, e.g. 0,2-3.
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Engine data path: auto, zerocopy or readwrite.
    #[arg(long)]
    pub data_path: Option<String>,
    /// Checksums computed while stream uploads arrive (see `serve`).
    #[arg(long, value_name = "LIST")]
    pub upload_checksums: Option<String>,
    #[command(flatten)]
    pub data: DataLimitArgs,
}

pub(super) fn run(args: PoolArgs) -> Result<ExitCode> {
    let root = Arc::new(Root::open(&args.root).with_context(|| format!("opening root {}", args.root.display()))?);
    let data = DataSide {
        cores: args.cores,
        cpus: args.cpus.as_deref(),
        data_path: args.data_path.as_deref(),
        limits: &args.data,
        upload_checksums: args.upload_checksums.as_deref(),
    };
    let config = PoolConfig {
        port_range: args.port_range.as_deref().map(parse_port_range).transpose()?,
        data_address: Some(args.data_address),
        ..PoolConfig::default()
    };
    let port_range = config.port_range.clone().map(|r| (*r.start(), *r.end()));
    let (engine, pool) = data.start(root.clone(), config)?;
    let name = args.name.clone().unwrap_or_else(|| args.data_address.to_string());
    let keys = crate::link::auth::LinkKeys::load(&args.key_file)?;
    let key = *keys
        .get(&name)
        .with_context(|| format!("{}: no key for pool '{name}'", args.key_file.display()))?;
    let link = crate::pool::remote::PoolLinkConfig {
        door: args.door,
        name,
        data_address: args.data_address,
        port_range,
        key,
    };
    control_runtime()?.block_on(async move {
        crate::pool::remote::serve(Arc::new(Service::new(pool)), link, stop_on_signal()).await;
    });
    drop(engine);
    Ok(ExitCode::SUCCESS)
}

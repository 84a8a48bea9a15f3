//! `pool`: a data mover that links to a door.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use super::{control_runtime, parse_port_range, stop_on_signal, DataLimitArgs, DataPlan, DataSide};
use crate::pool::{PoolConfig, Service};
use crate::storage::Root;

/// `pool` options.
#[derive(Debug, Args)]
#[command(after_help = super::CONFIG_AND_UNITS_HELP)]
pub struct PoolArgs {
    /// TOML file with any of these options (keys as the long flags); flags win.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
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
    #[arg(long, value_name = "A-B", value_parser = super::valid::port_range)]
    pub port_range: Option<String>,
    /// Engine cores [default: all CPUs, or those of --cpus].
    #[arg(long)]
    pub cores: Option<usize>,
    /// CPUs to pin the engine to, e.g. 0,2-3.
    #[arg(long, value_name = "LIST", value_parser = super::valid::cpus)]
    pub cpus: Option<String>,
    /// Engine data path: auto, zerocopy or readwrite.
    #[arg(long, value_parser = super::valid::data_path)]
    pub data_path: Option<String>,
    /// Trusted CA certificates (and CRLs, signing policies) that DCAU data connections of GSI
    /// transfers are checked against [default: /etc/grid-security/certificates if present].
    #[arg(long, env = "X509_CERT_DIR", value_name = "DIR")]
    pub ca_dir: Option<std::path::PathBuf>,
    /// Checksums computed while stream uploads arrive (see `serve`).
    #[arg(long, value_name = "LIST", value_parser = super::valid::checksums)]
    pub upload_checksums: Option<String>,
    #[command(flatten)]
    pub data: DataLimitArgs,
    #[command(flatten)]
    pub service: super::service::ServiceArgs,
}

/// A `pool` whose options are checked and files loaded, nothing bound or started yet.
pub(super) struct PoolPlan {
    root: Arc<Root>,
    data: DataPlan,
    link: crate::pool::remote::PoolLinkConfig,
    metrics: Option<super::service::MetricsPlan>,
}

pub(super) fn prepare(args: PoolArgs) -> Result<PoolPlan> {
    let root = super::open_root(&args.root)?;
    let port_range = args.port_range.as_deref().map(parse_port_range).transpose()?;
    let data = DataSide {
        cores: args.cores,
        cpus: args.cpus.as_deref(),
        data_path: args.data_path.as_deref(),
        limits: &args.data,
        upload_checksums: args.upload_checksums.as_deref(),
    }
    .plan(PoolConfig {
        port_range: port_range.clone(),
        data_address: Some(args.data_address),
        ..PoolConfig::default()
    })?;
    let name = args.name.clone().unwrap_or_else(|| args.data_address.to_string());
    let keys = crate::link::auth::LinkKeys::load(&args.key_file)?;
    let key = *keys
        .get(&name)
        .with_context(|| format!("{}: no key for pool '{name}'", args.key_file.display()))?;
    let link = crate::pool::remote::PoolLinkConfig {
        door: args.door,
        name,
        data_address: args.data_address,
        port_range: port_range.map(|r| (*r.start(), *r.end())),
        key,
        trust: dcau_trust(args.ca_dir)?,
    };
    Ok(PoolPlan {
        metrics: args.service.metrics()?,
        root,
        data,
        link,
    })
}

/// The CA directory for DCAU: the one given (it must exist), else the grid default if this
/// host has it; None refuses DCAU transfers with a clear reply.
fn dcau_trust(dir: Option<std::path::PathBuf>) -> Result<Option<crate::gsi::TrustPaths>> {
    match dir {
        Some(d) if d.is_dir() => Ok(Some(crate::gsi::TrustPaths { ca_dir: d })),
        Some(d) => anyhow::bail!("--ca-dir {}: not a directory", d.display()),
        None => {
            let default = std::path::PathBuf::from(crate::gsi::creds::DEFAULT_CA_DIR);
            Ok(default.is_dir().then_some(crate::gsi::TrustPaths { ca_dir: default }))
        }
    }
}

pub(super) fn run(args: PoolArgs, verbose: u8) -> Result<ExitCode> {
    let logging = super::service::Logging::init(verbose, &args.service)?;
    let plan = prepare(args)?;
    let (engine, pool) = plan.data.start(plan.root)?;
    let door = plan.link.door;
    control_runtime()?.block_on(async move {
        super::service::on_hangup(move || super::service::reload_pool(&logging));
        let stop = stop_on_signal();
        if let Some(m) = plan.metrics {
            m.start(stop.clone()).await?;
        }
        crate::pool::remote::serve(Arc::new(Service::new(pool)), plan.link, stop)
            .await
            .with_context(|| format!("--door {door}"))
    })?;
    drop(engine);
    Ok(ExitCode::SUCCESS)
}

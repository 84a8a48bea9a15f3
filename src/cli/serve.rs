//! `serve`: a door with an embedded pool, options from flags and a TOML file.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use super::{control_runtime, parse_port_range, stop_on_signal, DataLimitArgs, DataPlan, DataSide, DoorOptions};
use crate::door::pools::PoolManager;
use crate::door::{auth, Door};
use crate::pool::{PoolConfig, Service};
use crate::storage::Root;

/// `serve` options. Each can also come from the TOML file given with --config; flags win.
#[derive(Debug, Args, Default)]
#[command(after_help = super::CONFIG_AND_UNITS_HELP)]
pub struct ServeArgs {
    /// TOML file with any of these options (keys as the long flags, e.g. port-range = "50000-50100").
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Directory served; clients cannot leave it.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Control address [default: 127.0.0.1:2811].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Passive data ports, e.g. 50000-50100 (for firewalled DTNs).
    #[arg(long, value_name = "A-B", value_parser = super::valid::port_range)]
    pub port_range: Option<String>,
    /// Address announced in passive replies (227/229/127), e.g. the public address behind NAT.
    #[arg(long)]
    pub data_address: Option<IpAddr>,
    /// Engine cores (threads, one io_uring each) [default: all CPUs, or those of --cpus].
    #[arg(long)]
    pub cores: Option<usize>,
    /// CPUs to pin the engine to, e.g. 0,2-3 [default: all this process may use].
    #[arg(long, value_name = "LIST", value_parser = super::valid::cpus)]
    pub cpus: Option<String>,
    /// Maximum concurrent control sessions [default: 256].
    #[arg(long)]
    pub max_sessions: Option<usize>,
    /// Maximum concurrent control sessions from one client address [default: 32].
    #[arg(long)]
    pub max_sessions_per_address: Option<usize>,
    /// Close connections not logged in after this long [default: 30s].
    #[arg(long, value_parser = super::valid::duration)]
    pub login_timeout: Option<String>,
    /// Close idle control connections after this long (e.g. 600, 90s, 10m) [default: 10m].
    #[arg(long, value_parser = super::valid::duration)]
    pub idle_timeout: Option<String>,
    /// After SIGTERM, let running transfers finish for this long [default: 30s].
    #[arg(long, value_parser = super::valid::duration)]
    pub shutdown_grace: Option<String>,
    /// Users file (name:argon2-hash lines, see `ringmover passwd`) for read-write logins.
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Refuse anonymous (read-only) logins.
    #[arg(long)]
    pub no_anonymous: bool,
    /// Each logged-in user (password or GSI) gets their own root instead of --root, e.g.
    /// /data/{user}; a user without one cannot log in. Anonymous users keep --root.
    #[arg(long, value_name = "TEMPLATE")]
    pub user_root: Option<String>,
    /// Checksums computed while stream uploads arrive, so CKSM after STOR needs no re-read:
    /// a comma list of md5, adler32, crc32c, sha1, sha256, sha512, or none [default: adler32].
    #[arg(long, value_name = "LIST", value_parser = super::valid::checksums)]
    pub upload_checksums: Option<String>,
    /// Rate one transfer should reach (e.g. 10gbit): ABUF and transfers without SBUF size
    /// socket buffers to twice its bandwidth-delay product at the control RTT [default: 10gbit].
    #[arg(long, value_name = "RATE", value_parser = super::valid::rate)]
    pub target_rate: Option<String>,
    /// Leave socket buffers to kernel autotuning when a client sends no SBUF.
    #[arg(long)]
    pub no_auto_buffers: bool,
    /// Engine data path: auto (sendfile out, splice in; recv+write where upload checksums are
    /// computed on the receiving core), zerocopy (sendfile/splice) or readwrite (registered
    /// buffers both ways) [default: auto].
    #[arg(long, value_parser = super::valid::data_path)]
    pub data_path: Option<String>,
    /// Networks (comma list of ADDRESS/PREFIX) that data connections may come from or go to
    /// besides each session's client: the other servers of third-party transfers [default: none].
    #[arg(long, value_name = "LIST", value_parser = super::valid::networks)]
    pub trusted_networks: Option<String>,
    /// FEAT lists GETPUT: auto (with remote pools only), always or never [default: auto].
    #[arg(long, value_enum)]
    pub getput: Option<crate::door::GetPut>,
    #[command(flatten)]
    pub data: DataLimitArgs,
    #[command(flatten)]
    pub gsi: super::gsi::GsiArgs,
    #[command(flatten)]
    pub service: super::service::ServiceArgs,
}

/// A `serve` whose options are all checked and files loaded, nothing bound or started yet.
pub(super) struct ServePlan {
    root_path: PathBuf,
    root: Arc<Root>,
    door: crate::door::DoorConfig,
    users: auth::Users,
    listen: SocketAddr,
    data: DataPlan,
    user_root: Option<String>,
    metrics: Option<super::service::MetricsPlan>,
}

pub(super) fn prepare(args: ServeArgs) -> Result<ServePlan> {
    let root_path = args
        .root
        .clone()
        .context("--root is required (or root = \"...\" in --config)")?;
    let root = super::open_root(&root_path)?;
    let port_range = args.port_range.as_deref().map(parse_port_range).transpose()?;
    let mut door = DoorOptions {
        no_anonymous: args.no_anonymous,
        data_address: args.data_address,
        max_sessions: args.max_sessions,
        max_sessions_per_address: args.max_sessions_per_address,
        login_timeout: args.login_timeout.as_deref(),
        idle_timeout: args.idle_timeout.as_deref(),
        shutdown_grace: args.shutdown_grace.as_deref(),
        target_rate: args.target_rate.as_deref(),
        no_auto_buffers: args.no_auto_buffers,
        trusted_networks: args.trusted_networks.as_deref(),
        getput: args.getput.unwrap_or_default(),
        congestion: args.data.congestion.as_deref(),
    }
    .config()?;
    args.gsi.apply(&mut door)?;
    if let Some(range) = &port_range {
        enough_ports(range, door.max_sessions)?;
    }
    let users = match &args.users {
        Some(p) => auth::Users::load(p)?,
        None => auth::Users::empty(),
    };
    if let Some(template) = &args.user_root {
        if !template.contains("{user}") {
            anyhow::bail!("--user-root needs {{user}} in it, e.g. /data/{{user}}");
        }
    }
    let data = DataSide {
        cores: args.cores,
        cpus: args.cpus.as_deref(),
        data_path: args.data_path.as_deref(),
        limits: &args.data,
        upload_checksums: args.upload_checksums.as_deref(),
    }
    .plan(PoolConfig {
        port_range,
        ..PoolConfig::default()
    })?;
    Ok(ServePlan {
        metrics: args.service.metrics()?,
        root_path,
        root,
        door,
        users,
        listen: args.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 2811))),
        data,
        user_root: args.user_root,
    })
}

/// Each session with a passive transfer open holds a port of the range: a range smaller than
/// --max-sessions refuses transfers (425) while sessions are still admitted.
fn enough_ports(range: &std::ops::RangeInclusive<u16>, max_sessions: usize) -> Result<()> {
    let ports = usize::from(*range.end() - *range.start()) + 1;
    if ports < max_sessions {
        anyhow::bail!(
            "--port-range {}-{} has {ports} ports for --max-sessions {max_sessions}: each session with a \
             passive transfer open holds one, so sessions past {ports} would get 425; widen the range or \
             give --max-sessions {ports}",
            range.start(),
            range.end()
        );
    }
    Ok(())
}

pub(super) fn run(args: ServeArgs, verbose: u8) -> Result<ExitCode> {
    let logging = super::service::Logging::init(verbose, &args.service)?;
    let ServePlan {
        root_path,
        root,
        mut door,
        users,
        listen,
        data,
        user_root,
        metrics,
    } = prepare(args)?;
    let (engine, pool) = data.start(root)?;
    if let Some(template) = user_root {
        door.user_roots = Some(Arc::new(crate::door::UserRoots {
            template,
            base: crate::door::UserRootBase::Embedded(pool.clone()),
        }));
    }
    let runtime = control_runtime()?;
    runtime.block_on(async move {
        let pools = Arc::new(PoolManager::embedded(Arc::new(Service::new(pool))));
        let stop = stop_on_signal();
        if let Some(m) = metrics {
            m.start(stop.clone()).await?;
        }
        let door = Door::bind(listen, door, pools, users)
            .await
            .map_err(|e| super::bind_error("--listen", listen, e))?;
        let addr = door.local_addr()?;
        let reloader = door.reloader();
        super::service::on_hangup(move || super::service::reload_door(&logging, &reloader));
        tracing::info!(%addr, root = %root_path.display(), "door listening");
        println!("listening on {addr}");
        door.run(stop).await;
        anyhow::Ok(())
    })?;
    drop(runtime);
    drop(engine);
    Ok(ExitCode::SUCCESS)
}

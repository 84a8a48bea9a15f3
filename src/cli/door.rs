//! `door`: control connections, with pools in other processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use super::{control_runtime, cpu_list, stop_on_signal, DoorOptions};
use crate::door::pools::PoolManager;
use crate::door::{auth, Door};
use crate::engine::{Engine, EngineConfig};

/// `door` options.
#[derive(Debug, Args)]
#[command(after_help = super::CONFIG_AND_UNITS_HELP)]
pub struct DoorArgs {
    /// TOML file with any of these options (keys as the long flags); flags win.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Control address.
    #[arg(long, default_value = "127.0.0.1:2811")]
    pub listen: SocketAddr,
    /// Address pools connect to.
    #[arg(long, default_value = "127.0.0.1:2812")]
    pub pool_listen: SocketAddr,
    /// Users file for read-write logins (see `ringmover passwd`).
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Refuse anonymous (read-only) logins.
    #[arg(long)]
    pub no_anonymous: bool,
    /// Rate one transfer should reach (ABUF and automatic buffers) [default: 10gbit].
    #[arg(long, value_name = "RATE", value_parser = super::valid::rate)]
    pub target_rate: Option<String>,
    /// Leave socket buffers to kernel autotuning when a client sends no SBUF.
    #[arg(long)]
    pub no_auto_buffers: bool,
    /// TCP congestion control of the data connections the door relays: auto (the host's, but
    /// cubic instead of a pacing bbr between two ends on this host), host, or an algorithm.
    #[arg(long, value_name = "ALG", value_parser = super::valid::congestion)]
    pub congestion: Option<String>,
    /// Maximum concurrent control sessions.
    #[arg(long, default_value_t = 256)]
    pub max_sessions: usize,
    /// Maximum concurrent control sessions from one client address.
    #[arg(long, default_value_t = 32)]
    pub max_sessions_per_address: usize,
    /// Close connections not logged in after this long.
    #[arg(long, default_value = "30s", value_parser = super::valid::duration)]
    pub login_timeout: String,
    /// Close idle control connections after this long.
    #[arg(long, default_value = "10m", value_parser = super::valid::duration)]
    pub idle_timeout: String,
    /// After SIGTERM, let running transfers finish for this long.
    #[arg(long, default_value = "30s", value_parser = super::valid::duration)]
    pub shutdown_grace: String,
    /// Networks (comma list) that data connections may come from or go to besides each
    /// session's client (see `serve`).
    #[arg(long, value_name = "LIST", value_parser = super::valid::networks)]
    pub trusted_networks: Option<String>,
    /// CPUs for the door's relay engine (one core), e.g. 3.
    #[arg(long, value_name = "LIST", value_parser = super::valid::cpus)]
    pub cpus: Option<String>,
    /// FEAT lists GETPUT: auto (yes, with remote pools), always or never.
    #[arg(long, value_enum, default_value = "auto")]
    pub getput: crate::door::GetPut,
    /// Each logged-in user (password or GSI) gets a directory beneath every pool's root as
    /// their root, e.g. users/{user} (relative: each pool opens it beneath its own root; it
    /// must exist on the pools). Anonymous users keep the pools' roots.
    #[arg(long, value_name = "TEMPLATE")]
    pub user_root: Option<String>,
    /// Keys file of the pools allowed to join (`name:key` lines; see `ringmover link-key`).
    #[arg(long, value_name = "FILE")]
    pub pool_keys: PathBuf,
    /// Place new files under a path prefix on a named pool, e.g. /raw=pool-a (repeatable;
    /// longest prefix wins; otherwise the least loaded pool).
    #[arg(long = "place", value_name = "PREFIX=POOL")]
    pub placement: Vec<String>,
    #[command(flatten)]
    pub gsi: super::gsi::GsiArgs,
    #[command(flatten)]
    pub service: super::service::ServiceArgs,
}

/// A `door` whose options are checked and files loaded, nothing bound or started yet.
pub(super) struct DoorPlan {
    config: crate::door::DoorConfig,
    users: auth::Users,
    placement: Vec<(String, String)>,
    keys: crate::link::auth::LinkKeys,
    engine: EngineConfig,
    listen: SocketAddr,
    pool_listen: SocketAddr,
    metrics: Option<super::service::MetricsPlan>,
}

pub(super) fn prepare(args: DoorArgs) -> Result<DoorPlan> {
    let mut config = DoorOptions {
        no_anonymous: args.no_anonymous,
        data_address: None,
        max_sessions: Some(args.max_sessions),
        max_sessions_per_address: Some(args.max_sessions_per_address),
        login_timeout: Some(&args.login_timeout),
        idle_timeout: Some(&args.idle_timeout),
        shutdown_grace: Some(&args.shutdown_grace),
        target_rate: args.target_rate.as_deref(),
        no_auto_buffers: args.no_auto_buffers,
        trusted_networks: args.trusted_networks.as_deref(),
        getput: args.getput,
        congestion: args.congestion.as_deref(),
    }
    .config()?;
    args.gsi.apply(&mut config)?;
    if let Some(template) = &args.user_root {
        let escapes = template.starts_with('/') || template.split('/').any(|c| c == "..");
        if !template.contains("{user}") || escapes {
            anyhow::bail!(
                "--user-root needs {{user}} in a path relative to the pools' roots, without '..', e.g. users/{{user}}"
            );
        }
        config.user_roots = Some(Arc::new(crate::door::UserRoots {
            template: template.clone(),
            base: crate::door::UserRootBase::Pools,
        }));
    }
    let users = match &args.users {
        Some(p) => auth::Users::load(p)?,
        None => auth::Users::empty(),
    };
    let placement = args
        .placement
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .with_context(|| format!("invalid --place '{p}': expected PREFIX=POOL"))
        })
        .collect::<Result<Vec<_>>>()?;
    let keys = crate::link::auth::LinkKeys::load(&args.pool_keys)?;
    if keys.is_empty() {
        anyhow::bail!(
            "{}: no pool keys (add one with `ringmover link-key NAME --keys FILE`)",
            args.pool_keys.display()
        );
    }
    // The door's own engine only relays plain-PASV transfers to remote pools.
    let engine = EngineConfig {
        cores: 1,
        cpus: cpu_list(args.cpus.as_deref())?,
        ..EngineConfig::default()
    };
    Ok(DoorPlan {
        metrics: args.service.metrics()?,
        config,
        users,
        placement,
        keys,
        engine,
        listen: args.listen,
        pool_listen: args.pool_listen,
    })
}

pub(super) fn run(args: DoorArgs, verbose: u8) -> Result<ExitCode> {
    let logging = super::service::Logging::init(verbose, &args.service)?;
    let plan = prepare(args)?;
    let engine = Arc::new(Engine::start(&plan.engine)?);
    control_runtime()?.block_on(async move {
        let stop = stop_on_signal();
        if let Some(m) = plan.metrics {
            m.start(stop.clone()).await?;
        }
        let pools = Arc::new(PoolManager::new(plan.keys, plan.placement, engine));
        let pool_listener = tokio::net::TcpListener::bind(plan.pool_listen)
            .await
            .map_err(|e| super::bind_error("--pool-listen", plan.pool_listen, e))?;
        tokio::spawn(pools.clone().accept(pool_listener));
        let door = Door::bind(plan.listen, plan.config, pools, plan.users)
            .await
            .map_err(|e| super::bind_error("--listen", plan.listen, e))?;
        let addr = door.local_addr()?;
        let reloader = door.reloader();
        super::service::on_hangup(move || super::service::reload_door(&logging, &reloader));
        tracing::info!(%addr, pools = %plan.pool_listen, "door listening");
        println!("listening on {addr}");
        door.run(stop).await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

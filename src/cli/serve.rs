//! `serve`: a door with an embedded pool, options from flags and a TOML file.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;

use super::{control_runtime, parse_port_range, stop_on_signal, DataLimitArgs, DataSide, DoorOptions};
use crate::door::pools::PoolManager;
use crate::door::{auth, Door};
use crate::pool::{PoolConfig, Service};
use crate::storage::Root;

/// `serve` options. Each can also come from the TOML file given with --config; flags win.
#[derive(Debug, Args, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[command(after_help = super::UNITS_HELP)]
pub struct ServeArgs {
    /// TOML file with any of these options (keys as the long flags, e.g. port-range = "50000-50100").
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Directory served; clients cannot leave it.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Control address [default: 127.0.0.1:2811].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Passive data ports, e.g. 50000-50100 (for firewalled DTNs).
    #[arg(long, value_name = "A-B")]
    pub port_range: Option<String>,
    /// Address announced in passive replies (227/229/127), e.g. the public address behind NAT.
    #[arg(long)]
    pub data_address: Option<IpAddr>,
    /// Engine cores (threads, one io_uring each) [default: all CPUs, or those of --cpus].
    #[arg(long)]
    pub cores: Option<usize>,
    /// CPUs to pin the engine to, e.g. 0,2-3 [default: all this process may use].
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Maximum concurrent control sessions [default: 256].
    #[arg(long)]
    pub max_sessions: Option<usize>,
    /// Maximum concurrent control sessions from one client address [default: 32].
    #[arg(long)]
    pub max_sessions_per_address: Option<usize>,
    /// Close connections not logged in after this long [default: 30s].
    #[arg(long)]
    pub login_timeout: Option<String>,
    /// Close idle control connections after this long (e.g. 600, 90s, 10m) [default: 10m].
    #[arg(long)]
    pub idle_timeout: Option<String>,
    /// After SIGTERM, let running transfers finish for this long [default: 30s].
    #[arg(long)]
    pub shutdown_grace: Option<String>,
    /// Users file (name:argon2-hash lines, see `ringmover passwd`) for read-write logins.
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Refuse anonymous (read-only) logins.
    #[arg(long)]
    #[serde(default)]
    pub no_anonymous: bool,
    /// Each logged-in user (password or GSI) gets their own root instead of --root, e.g.
    /// /data/{user}; a user without one cannot log in. Anonymous users keep --root.
    #[arg(long, value_name = "TEMPLATE")]
    pub user_root: Option<String>,
    /// Checksums computed while stream uploads arrive, so CKSM after STOR needs no re-read:
    /// a comma list of md5, adler32, crc32c, sha1, sha256, sha512, or none [default: adler32].
    #[arg(long, value_name = "LIST")]
    pub upload_checksums: Option<String>,
    /// Rate one transfer should reach (e.g. 10gbit): ABUF and transfers without SBUF size
    /// socket buffers to twice its bandwidth-delay product at the control RTT [default: 10gbit].
    #[arg(long, value_name = "RATE")]
    pub target_rate: Option<String>,
    /// Leave socket buffers to kernel autotuning when a client sends no SBUF.
    #[arg(long)]
    #[serde(default)]
    pub no_auto_buffers: bool,
    /// Engine data path: auto (sendfile out, splice in; recv+write where upload checksums are
    /// computed on the receiving core), zerocopy (sendfile/splice) or readwrite (registered
    /// buffers both ways) [default: auto].
    #[arg(long)]
    pub data_path: Option<String>,
    /// Networks (comma list of ADDRESS/PREFIX) that data connections may come from or go to
    /// besides each session's client: the other servers of third-party transfers [default: none].
    #[arg(long, value_name = "LIST")]
    pub trusted_networks: Option<String>,
    /// FEAT lists GETPUT: auto (with remote pools only), always or never [default: auto].
    #[arg(long, value_enum)]
    pub getput: Option<crate::door::GetPut>,
    #[command(flatten)]
    #[serde(flatten)]
    pub data: DataLimitArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub gsi: super::gsi::GsiArgs,
}

impl ServeArgs {
    /// Fills options not given on the command line from the config file.
    fn merged(self) -> Result<ServeArgs> {
        let Some(path) = &self.config else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let file: ServeArgs = toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
        Ok(ServeArgs {
            config: self.config,
            root: self.root.or(file.root),
            listen: self.listen.or(file.listen),
            port_range: self.port_range.or(file.port_range),
            data_address: self.data_address.or(file.data_address),
            cores: self.cores.or(file.cores),
            cpus: self.cpus.or(file.cpus),
            max_sessions: self.max_sessions.or(file.max_sessions),
            max_sessions_per_address: self.max_sessions_per_address.or(file.max_sessions_per_address),
            login_timeout: self.login_timeout.or(file.login_timeout),
            idle_timeout: self.idle_timeout.or(file.idle_timeout),
            shutdown_grace: self.shutdown_grace.or(file.shutdown_grace),
            users: self.users.or(file.users),
            no_anonymous: self.no_anonymous || file.no_anonymous,
            user_root: self.user_root.or(file.user_root),
            data_path: self.data_path.or(file.data_path),
            upload_checksums: self.upload_checksums.or(file.upload_checksums),
            target_rate: self.target_rate.or(file.target_rate),
            no_auto_buffers: self.no_auto_buffers || file.no_auto_buffers,
            trusted_networks: self.trusted_networks.or(file.trusted_networks),
            getput: self.getput.or(file.getput),
            data: self.data.or(file.data),
            gsi: self.gsi.or(file.gsi),
        })
    }
}

pub(super) fn run(args: ServeArgs) -> Result<ExitCode> {
    let args = args.merged()?;
    let root_path = args
        .root
        .clone()
        .context("--root is required (or root = \"...\" in --config)")?;
    let root = Arc::new(Root::open(&root_path).with_context(|| format!("opening root {}", root_path.display()))?);
    let port_range = args.port_range.as_deref().map(parse_port_range).transpose()?;
    let mut door_config = DoorOptions {
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
    }
    .config()?;
    args.gsi.apply(&mut door_config)?;
    let users = match &args.users {
        Some(p) => auth::Users::load(p)?,
        None => auth::Users::empty(),
    };
    let listen = args.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 2811)));
    let data = DataSide {
        cores: args.cores,
        cpus: args.cpus.as_deref(),
        data_path: args.data_path.as_deref(),
        limits: &args.data,
        upload_checksums: args.upload_checksums.as_deref(),
    };
    let pool_config = PoolConfig {
        port_range,
        ..PoolConfig::default()
    };
    let (engine, pool) = data.start(root.clone(), pool_config)?;
    if let Some(template) = &args.user_root {
        if !template.contains("{user}") {
            anyhow::bail!("--user-root needs {{user}} in it, e.g. /data/{{user}}");
        }
        door_config.user_roots = Some(Arc::new(crate::door::UserRoots {
            template: template.clone(),
            base: pool.clone(),
        }));
    }

    let runtime = control_runtime()?;
    runtime.block_on(async move {
        let pools = Arc::new(PoolManager::embedded(Arc::new(Service::new(pool))));
        let door = Door::bind(listen, door_config, pools, users)
            .await
            .with_context(|| format!("binding control address {listen}"))?;
        let addr = door.local_addr()?;
        tracing::info!(%addr, root = %root_path.display(), "door listening");
        println!("listening on {addr}");
        door.run(stop_on_signal()).await;
        anyhow::Ok(())
    })?;
    drop(runtime);
    drop(engine);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_config_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(
            &p,
            "root = \"/srv\"\ncores = 4\nport-range = \"1-2\"\nno-anonymous = true\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(p.clone()),
            cores: Some(2),
            ..Default::default()
        }
        .merged()
        .unwrap();
        assert_eq!(args.cores, Some(2));
        assert_eq!(args.root, Some(PathBuf::from("/srv")));
        assert_eq!(args.port_range.as_deref(), Some("1-2"));
        assert!(args.no_anonymous);
        std::fs::write(&p, "bogus = 1\n").unwrap();
        assert!(ServeArgs {
            config: Some(p),
            ..Default::default()
        }
        .merged()
        .is_err());
    }
}

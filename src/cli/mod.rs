//! Command-line interface: argument and config-file parsing, then calls into the library.

mod bench;
mod config;
mod copy;
mod docs;
mod door;
mod gsi;
mod keys;
mod pool;
mod serve;
mod service;
mod tune;
mod valid;
mod wan;

pub use bench::BenchArgs;
pub use config::{parse, ParseError};
pub use copy::CopyArgs;
pub use door::DoorArgs;
pub use keys::{LinkKeyArgs, PasswdArgs};
pub use pool::PoolArgs;
pub use serve::ServeArgs;

use std::io::IsTerminal;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::door::DoorConfig;
use crate::engine::{DataPath, Engine, EngineConfig};
use crate::pool::{Pool, PoolConfig};
use crate::storage::checksum::Algorithm;
use crate::storage::Root;

/// The grammar of every duration and rate option (`units.rs`), shown under each command's help.
macro_rules! units_help {
    () => {
        "Durations: a number with a unit, us, ms, s, m, h or d, or several (600, 90s, 80ms, 10m, 1m 30s; \
humantime's grammar); a bare number is seconds (an RTT needs its unit). Rates: bits per second, with bit, kbit, mbit or gbit, or k, m, g (10gbit, 250m)."
    };
}
const UNITS_HELP: &str = units_help!();

/// Shown under `serve`, `door` and `pool`.
const CONFIG_AND_UNITS_HELP: &str = concat!(
    "Config file (--config FILE, TOML): every option is also a key, spelled as its long flag \
(port-range = \"50000-50100\", no-anonymous = true, place = [\"/raw=pool-a\"]); flags win. One \
file can serve every role: top-level keys apply to each role that has the option, tables \
[serve], [door] and [pool] to one role. `ringmover config check FILE` validates it.\n\n",
    units_help!()
);

/// ringmover: GridFTP v2 server, client and benchmark for data-transfer nodes.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a GridFTP door with an embedded pool.
    Serve(Box<ServeArgs>),
    /// Run a door only: control connections, with pools in other processes (`ringmover pool`).
    Door(DoorArgs),
    /// Run a pool (data mover) that registers with a door and moves data for it.
    Pool(PoolArgs),
    /// Measure: memory-to-memory and file transfers, swept, with iperf3 and Globus in the same run.
    Bench(BenchArgs),
    /// Copy files between ftp:// servers and local paths, or between two servers.
    Copy(CopyArgs),
    /// Add or change a read-write user in a users file (password from the terminal or stdin).
    Passwd(PasswdArgs),
    /// Give a pool a fresh link key in a keys file (the door's --pool-keys, the pool's --key-file).
    LinkKey(LinkKeyArgs),
    /// Check that this host's kernel offers the io_uring features the engine needs.
    Probe,
    /// Host tuning for DTNs: check against fasterdata, apply or revert a sysctl profile.
    Tune(tune::TuneArgs),
    /// Emulate a WAN link (delay, jitter, loss, rate, queue) between two TUN devices.
    WanEmu(wan::WanArgs),
    /// Build (up) or remove (down) a two-namespace lab joined by wan-emu.
    WanLab(wan::LabArgs),
    /// Write the man pages (ringmover.1 and one per command) into a directory.
    Man(docs::ManArgs),
    /// Check a configuration file (every key, value and file it names) without starting anything.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print a shell completion script (e.g. `ringmover completions bash > /etc/bash_completion.d/ringmover`).
    Completions(docs::CompletionArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Check FILE for serve, door or pool: unknown keys and bad values name their line.
    Check(config::CheckArgs),
}

/// Limits on data connections, for `serve` and `pool`.
#[derive(Debug, Args, Default)]
pub struct DataLimitArgs {
    /// How long to wait for a data connection, and for the next one when a MODE E/X upload has
    /// none left before its EOF count [default: 30s].
    #[arg(long, value_parser = valid::duration)]
    pub data_timeout: Option<String>,
    /// Fail a transfer that moves no byte for this long [default: 5m].
    #[arg(long, value_parser = valid::duration)]
    pub stall_timeout: Option<String>,
    /// Most data connections one transfer accepts [default: 64].
    #[arg(long)]
    pub max_data_connections: Option<usize>,
    /// Read and write files with direct I/O (O_DIRECT) through the engine's aligned buffers,
    /// bypassing the page cache: for disks; filesystems that refuse it stay buffered.
    #[arg(long)]
    pub direct_io: bool,
    /// TCP congestion control of data connections: auto (the host's, but cubic instead of a
    /// pacing bbr between two ends on this host), host, or an algorithm such as bbr or cubic.
    #[arg(long, value_name = "ALG", value_parser = valid::congestion)]
    pub congestion: Option<String>,
}

impl DataLimitArgs {
    /// Applies the limits given to a pool configuration.
    fn apply(&self, config: &mut PoolConfig) -> Result<()> {
        if let Some(t) = &self.data_timeout {
            config.connect_timeout = parse_duration(t)?;
        }
        if let Some(t) = &self.stall_timeout {
            config.stall_timeout = parse_duration(t)?;
        }
        if let Some(n) = self.max_data_connections {
            config.max_data_connections = n.max(1);
        }
        config.direct_io = self.direct_io;
        config.congestion = parse_congestion(self.congestion.as_deref())?;
        Ok(())
    }
}

/// `--congestion`; none: auto.
pub fn parse_congestion(arg: Option<&str>) -> Result<crate::pool::tcp::Congestion> {
    arg.map_or(Ok(Default::default()), |a| {
        a.parse().map_err(|e: String| anyhow::anyhow!("--congestion: {e}"))
    })
}

/// The automatic socket-buffer policy: the target rate and this host's limits.
fn buffer_policy(target: Option<&str>, automatic: bool) -> Result<crate::protocol::buffers::BufferPolicy> {
    use crate::protocol::buffers::BufferPolicy;
    use crate::units::parse_rate;
    let host = crate::tune::Host::live();
    let num = |name: &str, field: Option<usize>| host.sysctl_number(name, field);
    let defaults = BufferPolicy::default();
    let both = |a: Option<u64>, b: Option<u64>, d: u64| a.zip(b).map_or(d, |(a, b)| a.min(b));
    Ok(BufferPolicy {
        target_bps: match target {
            Some(t) => parse_rate(t).with_context(|| format!("invalid --target-rate '{t}': e.g. 10gbit"))?,
            None => defaults.target_bps,
        },
        host_max: both(
            num("net.core.rmem_max", None),
            num("net.core.wmem_max", None),
            defaults.host_max,
        ),
        autotune_max: both(
            num("net.ipv4.tcp_rmem", Some(2)),
            num("net.ipv4.tcp_wmem", Some(2)),
            defaults.autotune_max,
        ),
        automatic,
    })
}

/// `0,2-3` as a list of CPU numbers; none: empty (every allowed CPU).
pub fn cpu_list(list: Option<&str>) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for item in list.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || anyhow::anyhow!("--cpus: '{item}' is not a CPU number or range");
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().map_err(|_| bad())?,
                b.trim().parse::<usize>().map_err(|_| bad())?,
            ),
            None => {
                let n = item.parse::<usize>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if a > b || b >= 4096 {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    Ok(out)
}

fn networks_arg(list: Option<&str>) -> Result<Vec<ipnet::IpNet>> {
    list.map_or(Ok(Vec::new()), |l| {
        crate::peers::parse_networks(l).map_err(|e| anyhow::anyhow!("--trusted-networks: {e}"))
    })
}

fn parse_data_path(s: &str) -> Result<DataPath> {
    s.parse().map_err(anyhow::Error::msg)
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| format!("{e:#}"))
}

fn block_size_arg(s: &str) -> Result<u64, String> {
    use crate::protocol::session::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
    let n = size_arg(s)?;
    if (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&n) {
        Ok(n)
    } else {
        Err(format!("a MODE E block size is 4K to 64M, not {n}"))
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let service = matches!(cli.command, Cmd::Serve(_) | Cmd::Door(_) | Cmd::Pool(_));
    if !service {
        init_logging(cli.verbose, !matches!(cli.command, Cmd::WanEmu(_)));
    }
    match cli.command {
        Cmd::Serve(args) => serve::run(*args, cli.verbose),
        Cmd::Passwd(args) => keys::run(args),
        Cmd::LinkKey(args) => keys::link_key(args),
        Cmd::Door(args) => door::run(args, cli.verbose),
        Cmd::Copy(args) => copy::run(args),
        Cmd::Bench(args) => bench::run(args),
        Cmd::Tune(args) => tune::run(args),
        Cmd::WanEmu(args) => wan::run(args),
        Cmd::WanLab(args) => wan::lab(args),
        Cmd::Pool(args) => pool::run(args, cli.verbose),
        Cmd::Man(args) => docs::man(args),
        Cmd::Config(ConfigCmd::Check(args)) => config::check(args),
        Cmd::Completions(args) => docs::completions(args),
        Cmd::Probe => {
            println!("{}", crate::engine::probe()?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Servers log at info by default; the client-side commands (copy, bench, tune) only warn,
/// so their own output stays readable; -v raises both.
fn init_logging(verbose: u8, quiet_default: bool) {
    let default = match (verbose, quiet_default) {
        (0, true) => "warn",
        (0, false) => "info",
        (1, _) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses a duration (`600`, `90s`, `250ms`, `10m`, `2h`; a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration> {
    crate::units::parse_duration(s)
        .with_context(|| format!("invalid duration '{s}': a number of seconds, or with units (90s, 80ms, 10m, 1m 30s)"))
}

/// Parses `md5,adler32` (or `none`) into algorithms.
pub fn parse_checksum_list(s: &str) -> Result<Vec<Algorithm>> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|n| Algorithm::from_name(n.trim()).with_context(|| format!("unknown checksum algorithm '{}'", n.trim())))
        .collect()
}

/// globus-url-copy spells its long options with one dash (`-tcp-bs`); accept those spellings
/// for the options `copy` shares with it.
pub fn normalize_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const GUC: &[&str] = &[
        "-tcp-bs",
        "-bs",
        "-verify-checksum",
        "-checksum-alg",
        "-no-g2",
        "-parallel",
        "-off",
        "-len",
        "-cc",
        "-pp",
        "-fast",
        "-dp",
        "-restart",
        "-rst-retries",
        "-rst-interval",
        "-sync",
        "-sync-level",
        "-vb",
    ];
    args.into_iter()
        .map(|a| match a.to_str() {
            Some(s) if GUC.contains(&s) => format!("-{s}").into(),
            _ => a,
        })
        .collect()
}

/// Parses `A-B` with 1 <= A <= B.
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>> {
    let (a, b) = s
        .split_once('-')
        .with_context(|| format!("invalid port range '{s}': expected A-B"))?;
    let a: u16 = a.trim().parse().with_context(|| format!("invalid port range '{s}'"))?;
    let b: u16 = b.trim().parse().with_context(|| format!("invalid port range '{s}'"))?;
    if a == 0 || a > b {
        bail!("invalid port range '{s}': need 1 <= A <= B");
    }
    Ok(a..=b)
}

/// The control-side options `serve` and `door` share; `None` takes the door's default.
struct DoorOptions<'a> {
    no_anonymous: bool,
    data_address: Option<IpAddr>,
    max_sessions: Option<usize>,
    max_sessions_per_address: Option<usize>,
    login_timeout: Option<&'a str>,
    idle_timeout: Option<&'a str>,
    shutdown_grace: Option<&'a str>,
    target_rate: Option<&'a str>,
    no_auto_buffers: bool,
    trusted_networks: Option<&'a str>,
    getput: crate::door::GetPut,
    congestion: Option<&'a str>,
}

impl DoorOptions<'_> {
    fn config(&self) -> Result<DoorConfig> {
        let defaults = DoorConfig::default();
        let duration =
            |v: Option<&str>, default: Duration| v.map(parse_duration).transpose().map(|d| d.unwrap_or(default));
        Ok(DoorConfig {
            anonymous: !self.no_anonymous,
            data_address: self.data_address,
            max_sessions: self.max_sessions.unwrap_or(defaults.max_sessions).max(1),
            max_sessions_per_address: self
                .max_sessions_per_address
                .unwrap_or(defaults.max_sessions_per_address)
                .max(1),
            login_timeout: duration(self.login_timeout, defaults.login_timeout)?,
            idle_timeout: duration(self.idle_timeout, defaults.idle_timeout)?,
            shutdown_grace: duration(self.shutdown_grace, defaults.shutdown_grace)?,
            banner: defaults.banner,
            buffers: buffer_policy(self.target_rate, !self.no_auto_buffers)?,
            trusted_networks: networks_arg(self.trusted_networks)?,
            getput: self.getput,
            gsi: None,
            tls: None,
            require_tls: false,
            user_roots: None,
            congestion: parse_congestion(self.congestion)?,
        })
    }
}

/// The data side of `serve` and `pool`: the engine and the pool over a root.
struct DataSide<'a> {
    cores: Option<usize>,
    cpus: Option<&'a str>,
    data_path: Option<&'a str>,
    limits: &'a DataLimitArgs,
    upload_checksums: Option<&'a str>,
}

impl DataSide<'_> {
    /// Checks the options; `config` brings what differs between the roles.
    fn plan(&self, mut config: PoolConfig) -> Result<DataPlan> {
        let engine = EngineConfig {
            cores: self.cores.unwrap_or(0),
            path: parse_data_path(self.data_path.unwrap_or("auto"))?,
            cpus: cpu_list(self.cpus)?,
            ..EngineConfig::default()
        }
        .with_direct_io(self.limits.direct_io);
        self.limits.apply(&mut config)?;
        if let Some(list) = self.upload_checksums {
            config.upload_digests = parse_checksum_list(list)?;
        }
        Ok(DataPlan { engine, pool: config })
    }
}

/// The engine and pool of `serve` or `pool`, checked but not started.
struct DataPlan {
    engine: EngineConfig,
    pool: PoolConfig,
}

impl DataPlan {
    /// Starts the engine and the pool over `root`.
    fn start(self, root: Arc<Root>) -> Result<(Arc<Engine>, Arc<Pool>)> {
        let engine = Arc::new(Engine::start(&self.engine)?);
        Ok((engine.clone(), Arc::new(Pool::new(root, engine, self.pool))))
    }
}

/// Opens the directory a server or pool serves, with an error that says what to do.
fn open_root(path: &std::path::Path) -> Result<Arc<Root>> {
    let shown = path.display();
    Root::open(path).map(Arc::new).map_err(|e| match e.errno() {
        Some(libc::ENOENT) => anyhow::anyhow!("root {shown} does not exist: create it, or fix --root"),
        Some(libc::ENOTDIR) => anyhow::anyhow!("root {shown} is not a directory"),
        Some(libc::EACCES) => anyhow::anyhow!(
            "root {shown}: permission denied for user id {} (check the directory and its parents)",
            rustix::process::geteuid().as_raw()
        ),
        _ => anyhow::anyhow!("root {shown}: {}", e.source),
    })
}

/// A failed bind as the operator should read it: which flag, and what to do.
fn bind_error(flag: &str, addr: std::net::SocketAddr, e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "{flag} {addr}: the port is in use by another process (see `ss -ltnp 'sport = :{}'`); stop it or \
             choose another {flag}",
            addr.port()
        ),
        std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => anyhow::anyhow!(
            "{flag} {addr}: ports below 1024 need root or CAP_NET_BIND_SERVICE \
             (AmbientCapabilities=CAP_NET_BIND_SERVICE in the systemd unit)"
        ),
        std::io::ErrorKind::AddrNotAvailable => {
            anyhow::anyhow!("{flag} {addr}: no interface of this host has that address")
        }
        _ => anyhow::anyhow!("{flag} {addr}: {e}"),
    }
}

fn control_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rm-control")
        .enable_all()
        .build()
        .context("starting the control runtime")
}

/// Parses `4G`, `512M`, `64K`, `1.5GiB` or a plain byte count; K, M and G are powers of 1024
/// (as dd and globus-url-copy read them).
pub fn parse_size(s: &str) -> Result<u64> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .with_context(|| format!("invalid size '{s}': e.g. 4G, 512M, 64K or bytes"))
}

/// A flag that turns true on SIGTERM or SIGINT (call inside the runtime).
fn stop_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: stopping");
        let _ = tx.send(true);
    });
    rx
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ranges() {
        assert_eq!(cpu_list(Some("0,2-4, 7")).unwrap(), vec![0, 2, 3, 4, 7]);
        assert_eq!(cpu_list(None).unwrap(), Vec::<usize>::new());
        assert!(cpu_list(Some("3-1")).is_err() && cpu_list(Some("x")).is_err());
        assert_eq!(parse_duration("600").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert!(parse_duration("10x").is_err());
        assert_eq!(parse_port_range("50000-50100").unwrap(), 50000..=50100);
        assert!(parse_port_range("5-1").is_err());
        assert!(parse_port_range("0-1").is_err());
        assert_eq!(
            parse_checksum_list("MD5, sha-256").unwrap(),
            vec![Algorithm::Md5, Algorithm::Sha256]
        );
        assert!(parse_checksum_list("none").unwrap().is_empty());
        assert!(parse_checksum_list("crc32").is_err());
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("x").is_err());
    }
}

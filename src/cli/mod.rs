//! Command-line interface: argument and config-file parsing, then calls into the library.

mod tune;
mod wan;

use std::io::{BufRead, IsTerminal};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::door::pools::PoolManager;
use crate::door::{auth, Door, DoorConfig};
use crate::engine::{DataPath, Engine, EngineConfig};
use crate::pool::{Pool, PoolConfig, Service};
use crate::storage::checksum::Algorithm;
use crate::storage::Root;

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
}

/// `serve` options. Each can also come from the TOML file given with --config; flags win.
#[derive(Debug, Args, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
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
}

/// Limits on data connections, for `serve` and `pool`.
#[derive(Debug, Args, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DataLimitArgs {
    /// How long to wait for a data connection, and for the next one when a MODE E/X upload has
    /// none left before its EOF count [default: 30s].
    #[arg(long)]
    pub data_timeout: Option<String>,
    /// Fail a transfer that moves no byte for this long [default: 5m].
    #[arg(long)]
    pub stall_timeout: Option<String>,
    /// Most data connections one transfer accepts [default: 64].
    #[arg(long)]
    pub max_data_connections: Option<usize>,
    /// Read and write files with direct I/O (O_DIRECT) through the engine's aligned buffers,
    /// bypassing the page cache: for disks; filesystems that refuse it stay buffered.
    #[arg(long)]
    #[serde(default)]
    pub direct_io: bool,
}

impl DataLimitArgs {
    fn or(self, file: DataLimitArgs) -> DataLimitArgs {
        DataLimitArgs {
            data_timeout: self.data_timeout.or(file.data_timeout),
            stall_timeout: self.stall_timeout.or(file.stall_timeout),
            max_data_connections: self.max_data_connections.or(file.max_data_connections),
            direct_io: self.direct_io || file.direct_io,
        }
    }

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
        Ok(())
    }
}

/// `door` options.
#[derive(Debug, Args)]
pub struct DoorArgs {
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
    #[arg(long, value_name = "RATE")]
    pub target_rate: Option<String>,
    /// Leave socket buffers to kernel autotuning when a client sends no SBUF.
    #[arg(long)]
    pub no_auto_buffers: bool,
    /// Maximum concurrent control sessions.
    #[arg(long, default_value_t = 256)]
    pub max_sessions: usize,
    /// Maximum concurrent control sessions from one client address.
    #[arg(long, default_value_t = 32)]
    pub max_sessions_per_address: usize,
    /// Close connections not logged in after this long.
    #[arg(long, default_value = "30s")]
    pub login_timeout: String,
    /// Close idle control connections after this long.
    #[arg(long, default_value = "10m")]
    pub idle_timeout: String,
    /// After SIGTERM, let running transfers finish for this long.
    #[arg(long, default_value = "30s")]
    pub shutdown_grace: String,
    /// Networks (comma list) that data connections may come from or go to besides each
    /// session's client (see `serve`).
    #[arg(long, value_name = "LIST")]
    pub trusted_networks: Option<String>,
    /// CPUs for the door's relay engine (one core), e.g. 3.
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// FEAT lists GETPUT: auto (yes, with remote pools), always or never.
    #[arg(long, value_enum, default_value = "auto")]
    pub getput: crate::door::GetPut,
    /// Keys file of the pools allowed to join (`name:key` lines; see `ringmover link-key`).
    #[arg(long, value_name = "FILE")]
    pub pool_keys: PathBuf,
    /// Place new files under a path prefix on a named pool, e.g. /raw=pool-a (repeatable;
    /// longest prefix wins; otherwise the least loaded pool).
    #[arg(long = "place", value_name = "PREFIX=POOL")]
    pub placement: Vec<String>,
}

/// `pool` options.
#[derive(Debug, Args)]
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

/// `bench` options. Lists (comma-separated) make a sweep over every combination.
#[derive(Debug, Args)]
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

/// `copy` options: globus-url-copy's names (also with one dash) where the meaning is the
/// same, with GNU-style long aliases.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source: ftp://[user[:password]@]host[:port]/path, file:///path or a local path.
    #[arg(required_unless_present = "from_file")]
    pub src: Option<String>,
    /// Destination, as the source; a trailing / names a directory.
    #[arg(required_unless_present = "from_file")]
    pub dst: Option<String>,
    /// Read "SRC DST" pairs, one per line, from this file (# starts a comment).
    #[arg(short = 'f', long = "from-file", value_name = "FILE", conflicts_with_all = ["src", "dst"])]
    pub from_file: Option<PathBuf>,
    /// Parallel streams; more than 1 selects MODE E unless --mode says otherwise.
    #[arg(short = 'p', long = "parallel", visible_alias = "parallelism", default_value_t = 1)]
    pub parallel: u32,
    /// Transfer mode: s (stream), e (extended block) or x (GridFTP v2 MODE X, ringmover peers).
    #[arg(long)]
    pub mode: Option<String>,
    /// Print a JSON record of the transfer.
    #[arg(long)]
    pub json: bool,
    /// MODE X: let the server open the data connections (the client listens, PORT).
    #[arg(long)]
    pub server_active: bool,
    /// TCP buffer size (e.g. 4M): SBUF to the servers, and on our sockets.
    #[arg(long = "tcp-bs", visible_alias = "tcp-buffer-size", value_name = "SIZE", value_parser = size_arg)]
    pub tcp_bs: Option<u64>,
    /// MODE E/X block size (e.g. 4M, 4K..64M) when sending; OPTS RETR BlockSize to the server.
    #[arg(long = "bs", visible_alias = "block-size", value_name = "SIZE", value_parser = block_size_arg)]
    pub bs: Option<u64>,
    /// Compare the checksums of both ends after each file.
    #[arg(long = "verify-checksum")]
    pub verify_checksum: bool,
    /// Checksum algorithm for --verify-checksum, -sync-level 3 and restarted files.
    #[arg(long = "checksum-alg", default_value = "MD5")]
    pub checksum_alg: String,
    /// Do not use GET/PUT even when the server offers them.
    #[arg(long = "no-g2")]
    pub no_g2: bool,
    /// Ask for delayed passive (the data address comes once the file is known).
    #[arg(long = "dp", visible_alias = "delayed-pasv")]
    pub dp: bool,
    /// Copy a directory tree.
    #[arg(short = 'r', long = "recursive")]
    pub recursive: bool,
    /// Download from this byte offset (REST, or ERET P with -len).
    #[arg(long = "off", visible_alias = "offset", value_name = "BYTES")]
    pub off: Option<u64>,
    /// Download only this many bytes (ERET P).
    #[arg(long = "len", visible_alias = "length", value_name = "BYTES")]
    pub len: Option<u64>,
    /// Files in flight at once (one control session each).
    #[arg(long = "cc", visible_alias = "concurrency", default_value_t = 1)]
    pub cc: usize,
    /// Pipeline: send the next file's commands before the current file's final reply.
    #[arg(long = "pp", visible_alias = "pipeline")]
    pub pp: bool,
    /// Keep MODE E data connections open between files.
    #[arg(long = "fast")]
    pub fast: bool,
    /// Try failed transfers again, from the ranges already in place, and verify them.
    #[arg(long = "restart")]
    pub restart: bool,
    /// Further tries per file with -restart (0: no limit).
    #[arg(long = "rst-retries", visible_alias = "restart-retries", default_value_t = 5)]
    pub rst_retries: u32,
    /// Seconds between tries with -restart.
    #[arg(long = "rst-interval", visible_alias = "restart-interval", default_value_t = 1.0)]
    pub rst_interval: f64,
    /// Copy only files that differ at the destination (see -sync-level).
    #[arg(long = "sync")]
    pub sync: bool,
    /// 0: exists; 1: same size; 2: same size and not older; 3: same checksum.
    #[arg(long = "sync-level", default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub sync_level: u8,
    /// Show the progress bar even when stderr is not a terminal.
    #[arg(long = "vb", visible_alias = "progress")]
    pub vb: bool,
    /// No progress bar.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Engine cores for the data streams.
    #[arg(long, default_value_t = 1)]
    pub cores: usize,
    /// CPUs to pin the engine to, e.g. 0,2-3 [default: the least busy at start].
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Engine data path for our side: auto, zerocopy or readwrite.
    #[arg(long = "data-path", default_value = "auto")]
    pub data_path: String,
    /// Read and write local files with direct I/O (O_DIRECT), bypassing the page cache
    /// (filesystems that refuse it stay buffered).
    #[arg(long)]
    pub direct_io: bool,
    /// Record engine op latencies and add their percentiles to the --json record.
    #[arg(long)]
    pub latency: bool,
    /// Do not send ABUF (automatic buffer sizing) to servers that offer it.
    #[arg(long = "no-abuf")]
    pub no_abuf: bool,
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

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let client_side = matches!(cli.command, Cmd::Copy(_) | Cmd::Bench(_) | Cmd::Tune(_));
    init_logging(cli.verbose, client_side);
    match cli.command {
        Cmd::Serve(args) => serve(*args),
        Cmd::Passwd(args) => passwd(args),
        Cmd::LinkKey(args) => {
            crate::link::auth::LinkKeys::add(&args.keys, &args.name)?;
            eprintln!(
                "key for pool '{}' written to {}; give the door this file (--pool-keys) and the pool its line (--key-file)",
                args.name,
                args.keys.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Door(args) => door(args),
        Cmd::Copy(args) => copy(args),
        Cmd::Bench(args) => bench(args),
        Cmd::Tune(args) => tune::run(args),
        Cmd::WanEmu(args) => wan::run(args),
        Cmd::WanLab(args) => wan::lab(args),
        Cmd::Pool(args) => pool(args),
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
        .with_context(|| format!("invalid duration '{s}': a number of seconds, or with a unit us, ms, s, m or h"))
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
            data_path: self.data_path.or(file.data_path),
            upload_checksums: self.upload_checksums.or(file.upload_checksums),
            target_rate: self.target_rate.or(file.target_rate),
            no_auto_buffers: self.no_auto_buffers || file.no_auto_buffers,
            trusted_networks: self.trusted_networks.or(file.trusted_networks),
            getput: self.getput.or(file.getput),
            data: self.data.or(file.data),
        })
    }
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    let args = args.merged()?;
    let root_path = args
        .root
        .clone()
        .context("--root is required (or root = \"...\" in --config)")?;
    let root = Arc::new(Root::open(&root_path).with_context(|| format!("opening root {}", root_path.display()))?);
    let port_range = args.port_range.as_deref().map(parse_port_range).transpose()?;
    let door_config = DoorOptions {
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
    /// Starts the engine and the pool; `config` brings what differs between the roles.
    fn start(&self, root: Arc<Root>, mut config: PoolConfig) -> Result<(Arc<Engine>, Arc<Pool>)> {
        let engine = Arc::new(Engine::start(
            &EngineConfig {
                cores: self.cores.unwrap_or(0),
                path: parse_data_path(self.data_path.unwrap_or("auto"))?,
                cpus: cpu_list(self.cpus)?,
                ..EngineConfig::default()
            }
            .with_direct_io(self.limits.direct_io),
        )?);
        self.limits.apply(&mut config)?;
        if let Some(list) = self.upload_checksums {
            config.upload_digests = parse_checksum_list(list)?;
        }
        Ok((engine.clone(), Arc::new(Pool::new(root, engine, config))))
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

/// Parses `4G`, `512M`, `64K` or a plain byte count.
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num.parse().with_context(|| format!("invalid size '{s}'"))?;
    n.checked_mul(mul).with_context(|| format!("size '{s}' too large"))
}

fn bench(args: BenchArgs) -> Result<ExitCode> {
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

fn copy(args: CopyArgs) -> Result<ExitCode> {
    use crate::client::{self, Mode};
    let mode = match args.mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None if args.parallel > 1 => Mode::E,
        None | Some("s") => Mode::Stream,
        Some("e") => Mode::E,
        Some("x") => Mode::X,
        Some(m) => bail!("unknown mode '{m}': use s, e or x"),
    };
    let pairs = copy_pairs(&args)?;
    let alg = Algorithm::from_name(&args.checksum_alg)
        .with_context(|| format!("unknown checksum '{}'", args.checksum_alg))?;
    if !(0.0..=3600.0).contains(&args.rst_interval) {
        bail!("-rst-interval must be between 0 and 3600 seconds");
    }
    let options = client::CopyOptions {
        mode,
        parallelism: args.parallel.max(1),
        server_active: args.server_active,
        tcp_bs: args.tcp_bs,
        block_size: args.bs,
        verify: args.verify_checksum.then_some(alg),
        checksum: alg,
        g2: !args.no_g2,
        recursive: args.recursive,
        offset: args.off,
        length: args.len,
        concurrency: args.cc.max(1),
        pipeline: args.pp,
        fast: args.fast,
        delayed_passive: args.dp,
        restart: args.restart.then(|| client::Restart {
            retries: args.rst_retries,
            interval: Duration::from_secs_f64(args.rst_interval),
        }),
        sync: args.sync.then_some(args.sync_level),
        abuf: !args.no_abuf,
        // A bar on a terminal unless --json or -q; -vb shows progress anywhere.
        progress: match (args.quiet, args.vb, std::io::stderr().is_terminal()) {
            (true, _, _) => client::Show::Nothing,
            (false, true, true) => client::Show::Bar,
            (false, true, false) => client::Show::Lines,
            (false, false, tty) if tty && !args.json => client::Show::Bar,
            _ => client::Show::Nothing,
        },
    };

    let root = Arc::new(Root::open(std::path::Path::new("/")).context("opening /")?);
    let latency = args.latency.then(crate::engine::OpLatency::new);
    // The engine's Auto path splices received bytes into files (also /dev/null) by itself.
    let path = parse_data_path(&args.data_path)?;
    let engine = Arc::new(Engine::start(
        &EngineConfig {
            cores: args.cores.max(1),
            path,
            op_latency: latency.clone(),
            cpus: cpu_list(args.cpus.as_deref())?,
            ..EngineConfig::default()
        }
        .with_direct_io(args.direct_io),
    )?);
    let pool = Pool::new(
        root,
        engine.clone(),
        PoolConfig {
            upload_digests: Vec::new(),
            // The client writes its local files in place, as globus-url-copy does, so that
            // -restart and -sync see the bytes already there.
            partial_uploads: false,
            // The server always copies an upload into a file: spare it our 4 KiB fragments.
            copy_to_local_peer: true,
            direct_io: args.direct_io,
            ..PoolConfig::default()
        },
    );
    let mut record = control_runtime()?.block_on(client::copy_many(&pool, &pairs, &options))?;
    record.op_latency_us = latency.map(|l| l.summary());
    if args.json {
        println!("{}", serde_json::to_string(&record)?);
    }
    drop(pool);
    drop(engine);
    Ok(ExitCode::SUCCESS)
}

/// The source/destination pairs: from the command line or from the -f file.
fn copy_pairs(args: &CopyArgs) -> Result<Vec<(crate::client::Endpoint, crate::client::Endpoint)>> {
    use crate::client::parse_endpoint;
    if let (Some(s), Some(d)) = (&args.src, &args.dst) {
        return Ok(vec![(parse_endpoint(s)?, parse_endpoint(d)?)]);
    }
    let Some(path) = &args.from_file else {
        bail!("give SRC and DST, or -f FILE");
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(s), Some(d), None) => pairs.push((parse_endpoint(s)?, parse_endpoint(d)?)),
            _ => bail!("{}:{}: expected 'SRC DST'", path.display(), n + 1),
        }
    }
    Ok(pairs)
}

fn door(args: DoorArgs) -> Result<ExitCode> {
    let config = DoorOptions {
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
    }
    .config()?;
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
    let engine = Arc::new(Engine::start(&EngineConfig {
        cores: 1,
        cpus: cpu_list(args.cpus.as_deref())?,
        ..EngineConfig::default()
    })?);
    control_runtime()?.block_on(async move {
        let pools = Arc::new(PoolManager::new(keys, placement, engine));
        let pool_listener = tokio::net::TcpListener::bind(args.pool_listen)
            .await
            .with_context(|| format!("binding pool address {}", args.pool_listen))?;
        tokio::spawn(pools.clone().accept(pool_listener));
        let door = Door::bind(args.listen, config, pools, users)
            .await
            .with_context(|| format!("binding control address {}", args.listen))?;
        let addr = door.local_addr()?;
        tracing::info!(%addr, pools = %args.pool_listen, "door listening");
        println!("listening on {addr}");
        door.run(stop_on_signal()).await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn pool(args: PoolArgs) -> Result<ExitCode> {
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

fn passwd(args: PasswdArgs) -> Result<ExitCode> {
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

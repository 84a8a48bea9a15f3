//! `copy`: the globus-url-copy-style client.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{block_size_arg, control_runtime, cpu_list, parse_data_path, size_arg};
use crate::engine::{Engine, EngineConfig};
use crate::storage::checksum::Algorithm;
use crate::storage::Root;

/// `copy` options: globus-url-copy's names (also with one dash) where the meaning is the
/// same, with GNU-style long aliases.
#[derive(Debug, Args)]
#[command(after_help = super::UNITS_HELP)]
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
    /// gsiftp://: do not authenticate data channels (DCAU N); they are authenticated with
    /// the proxy by default when the server offers DCAU.
    #[arg(long = "nodcau", visible_alias = "no-data-channel-auth")]
    pub nodcau: bool,
    /// gsiftp://: integrity-protect the data channels (PROT S; the data goes in TLS records).
    #[arg(long = "dcsafe", visible_alias = "data-channel-safe", conflicts_with = "dcpriv")]
    pub dcsafe: bool,
    /// gsiftp://: encrypt the data channels (PROT P).
    #[arg(long = "dcpriv", visible_alias = "data-channel-private")]
    pub dcpriv: bool,
    /// gsiftp://: the subject both servers' certificates must have (instead of naming the
    /// host), e.g. "/O=Grid/CN=host/dtn.example.org".
    #[arg(short = 's', long = "subject", value_name = "DN")]
    pub subject: Option<String>,
    /// gsiftp://: the source server's certificate subject (overrides -s).
    #[arg(long = "ss", visible_alias = "source-subject", value_name = "DN")]
    pub ss: Option<String>,
    /// gsiftp://: the destination server's certificate subject (overrides -s).
    #[arg(long = "ds", visible_alias = "dest-subject", value_name = "DN")]
    pub ds: Option<String>,
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
    /// TCP congestion control of data connections: auto (the host's, but cubic instead of a
    /// pacing bbr between two ends on this host), host, or an algorithm such as bbr or cubic.
    #[arg(long, value_name = "ALG", value_parser = super::valid::congestion)]
    pub congestion: Option<String>,
    /// Record engine op latencies and add their percentiles to the --json record.
    #[arg(long)]
    pub latency: bool,
    /// Do not send ABUF (automatic buffer sizing) to servers that offer it.
    #[arg(long = "no-abuf")]
    pub no_abuf: bool,
}

pub(super) fn run(args: CopyArgs) -> Result<ExitCode> {
    use crate::client;
    let mode = client::mode_for(args.mode.as_deref(), args.parallel)?;
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
        no_dcau: args.nodcau,
        data_protection: match (args.dcsafe, args.dcpriv) {
            (_, true) => Some('P'),
            (true, false) => Some('S'),
            _ => None,
        },
        progress: client::Show::choose(args.quiet, args.vb, std::io::stderr().is_terminal(), args.json),
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
    let congestion = super::parse_congestion(args.congestion.as_deref())?;
    let pool = client::local_pool(root, engine.clone(), args.direct_io, congestion);
    let mut record = control_runtime()?.block_on(client::copy_many(&pool, &pairs, &options))?;
    record.op_latency_us = latency.map(|l| l.summary());
    if args.json {
        println!("{}", serde_json::to_string(&record)?);
    }
    drop(pool);
    drop(engine);
    Ok(ExitCode::SUCCESS)
}

/// The source/destination pairs, each server with the subject -s/-ss/-ds gave for it.
fn copy_pairs(args: &CopyArgs) -> Result<Vec<(crate::client::Endpoint, crate::client::Endpoint)>> {
    let expect = |e: crate::client::Endpoint, subject: Option<&String>| match e {
        crate::client::Endpoint::Ftp(mut u) => {
            u.subject = subject.or(args.subject.as_ref()).cloned();
            crate::client::Endpoint::Ftp(u)
        }
        local => local,
    };
    Ok(endpoint_pairs(args)?
        .into_iter()
        .map(|(s, d)| (expect(s, args.ss.as_ref()), expect(d, args.ds.as_ref())))
        .collect())
}

/// The source/destination pairs: from the command line or from the -f file.
fn endpoint_pairs(args: &CopyArgs) -> Result<Vec<(crate::client::Endpoint, crate::client::Endpoint)>> {
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

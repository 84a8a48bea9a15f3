//! `ringmover copy`: files between `ftp://` servers and local paths, or between two servers
//! (third-party), in stream mode, MODE E (parallel streams) or MODE X. The control dialogue
//! runs here; the data moves through the same pool movers the server uses, on this process's
//! engine. Many files run on `-cc` sessions at once; failed transfers restart from the ranges
//! the receiving side reported (`-restart`), and restarted files are verified by checksum.

pub mod control;
mod progress;
mod session;
mod third_party;
mod tree;
pub mod url;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::pool::Pool;
use crate::storage::checksum::Algorithm;
pub use progress::{Progress, Show};
use session::{FileJob, Issued, Resume, Session};
pub use url::{parse_endpoint, Endpoint, FtpUrl};

/// Client failures.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("{0}")]
    Url(String),
    /// GSI (gsiftp://): credentials, the handshake, wrapping.
    #[error("GSI: {0}")]
    Gsi(String),
    #[error("control connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("server said: {0}")]
    Refused(Reply),
    /// The server answered something this client cannot use (a malformed reply or address).
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("protocol: {0}")]
    Reply(#[from] crate::protocol::client::ReplyError),
    #[error("{0}")]
    Lost(String),
    #[error("data transfer: {0}")]
    Data(String),
    #[error("checksum mismatch: {0}")]
    Mismatch(String),
}

/// A server's reply as the client reads it.
pub use crate::protocol::client::ServerReply as Reply;

impl ClientError {
    /// Worth another try with `-restart`: lost connections and transient (4xx) refusals;
    /// a 5xx (no such file, no permission) will not change.
    fn transient(&self) -> bool {
        match self {
            ClientError::Io(_) | ClientError::Lost(_) | ClientError::Data(_) => true,
            ClientError::Refused(reply) => reply.transient(),
            _ => false,
        }
    }
}

/// Transfer mode of a copy.
pub use crate::block::Mode;

/// The mode for `--mode` (s, e or x, any case); without one, MODE E when more than one
/// stream is asked for (as globus-url-copy -p does), else stream mode.
pub fn mode_for(arg: Option<&str>, parallel: u32) -> Result<Mode, ClientError> {
    match arg.map(str::to_ascii_lowercase).as_deref() {
        None if parallel > 1 => Ok(Mode::E),
        None | Some("s") => Ok(Mode::Stream),
        Some("e") => Ok(Mode::E),
        Some("x") => Ok(Mode::X),
        Some(m) => Err(ClientError::Url(format!("unknown mode '{m}': use s, e or x"))),
    }
}

/// The pool that moves the client's side of every copy.
pub fn local_pool(
    root: std::sync::Arc<crate::storage::Root>,
    engine: std::sync::Arc<crate::engine::Engine>,
    direct_io: bool,
    congestion: crate::pool::tcp::Congestion,
) -> Pool {
    Pool::new(
        root,
        engine,
        crate::pool::PoolConfig {
            upload_digests: Vec::new(),
            // The client writes its local files in place, as globus-url-copy does, so that
            // -restart and -sync see the bytes already there.
            partial_uploads: false,
            // The server always copies an upload into a file: spare it our 4 KiB fragments.
            copy_to_local_peer: true,
            direct_io,
            congestion,
            ..crate::pool::PoolConfig::default()
        },
    )
}

/// `-restart`: how often and how far apart failed transfers are tried again.
#[derive(Clone, Copy, Debug)]
pub struct Restart {
    /// Further attempts per file (0: no limit).
    pub retries: u32,
    pub interval: Duration,
}

/// How to copy.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    pub mode: Mode,
    pub parallelism: u32,
    /// MODE X: let the server open the data connections.
    pub server_active: bool,
    /// Socket buffer size (`-tcp-bs`): SBUF to the servers and set on our sockets.
    pub tcp_bs: Option<u64>,
    /// MODE E/X block size (`-bs`): ours when sending, `OPTS RETR BlockSize` to the server.
    pub block_size: Option<u64>,
    /// Compare checksums of both ends after each file (`-verify-checksum`).
    pub verify: Option<Algorithm>,
    /// The algorithm for `-sync-level 3` and for checking restarted files (`-checksum-alg`).
    pub checksum: Algorithm,
    /// Use GET/PUT when the server lists GETPUT (`-no-g2` turns it off).
    pub g2: bool,
    /// Copy a directory tree (`-r`).
    pub recursive: bool,
    /// Download only from this offset (`-off`), and only this many bytes (`-len`).
    pub offset: Option<u64>,
    pub length: Option<u64>,
    /// Files in flight at once, each on its own control session (`-cc`).
    pub concurrency: usize,
    /// Send the next file's commands before the current one's final reply (`-pp`).
    pub pipeline: bool,
    /// Keep MODE E data connections open between files (`-fast`).
    pub fast: bool,
    /// Ask for delayed passive (`-dp`): the data address comes after the file is known.
    pub delayed_passive: bool,
    pub restart: Option<Restart>,
    /// Copy only what differs at this `-sync-level` (0..=3).
    pub sync: Option<u8>,
    pub progress: progress::Show,
    /// Send ABUF (when the server lists it and no -tcp-bs is given).
    pub abuf: bool,
    /// gsiftp://: leave data channels unauthenticated (`DCAU N`).
    pub no_dcau: bool,
    /// gsiftp://: data in TLS records, `PROT S` (`-dcsafe`) or `P` (`-dcpriv`).
    pub data_protection: Option<char>,
}

impl CopyOptions {
    fn partial(&self) -> bool {
        self.offset.is_some() || self.length.is_some()
    }
}

/// What a finished copy reports (`--json`).
#[derive(Debug, Default, serde::Serialize)]
pub struct CopyRecord {
    pub bytes: u64,
    pub seconds: f64,
    pub files: usize,
    /// Files left alone because `-sync` found them up to date.
    pub skipped: usize,
    pub streams: usize,
    pub mode: &'static str,
    /// `ALG:hex` of a single verified file.
    pub checksum: Option<String>,
    /// Transfers tried again after a failure (`-restart`).
    pub retries: u32,
    /// Bytes a restart did not move again (the ranges already in place).
    pub resumed_bytes: u64,
    /// Files moved on the data connections of the file before (`-fast`).
    pub reused_connections: usize,
    /// Engine op latencies (submit to completion), with `--latency`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op_latency_us: Option<crate::engine::LatencySummary>,
}

/// One unit of work.
#[derive(Clone, Debug)]
enum Job {
    Two(FileJob),
    Third { src: FtpUrl, dst: FtpUrl },
}

/// Copies `src` to `dst` (files, or trees with `-r`).
pub async fn copy(pool: &Pool, src: &Endpoint, dst: &Endpoint, o: &CopyOptions) -> Result<CopyRecord, ClientError> {
    copy_many(pool, &[(src.clone(), dst.clone())], o).await
}

/// Copies every pair (globus-url-copy's `-f` list), `-cc` files at a time.
pub async fn copy_many(
    pool: &Pool,
    pairs: &[(Endpoint, Endpoint)],
    o: &CopyOptions,
) -> Result<CopyRecord, ClientError> {
    let started = Instant::now();
    let mut jobs = Vec::new();
    for (src, dst) in pairs {
        jobs.extend(plan(src, dst, o).await?);
    }
    let progress = Progress::new(o.progress);
    let total = jobs.len();
    let jobs = select(jobs, o, &progress).await?;
    let mut record = CopyRecord {
        skipped: total - jobs.len(),
        files: jobs.len(),
        mode: o.mode.letter(),
        ..CopyRecord::default()
    };
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<_>>());
    let workers = (0..o.concurrency.max(1)).map(|_| worker(pool, &queue, o, &progress));
    let results = futures_util::future::join_all(workers).await;
    progress.finish();
    for r in results {
        let s = r?;
        record.bytes += s.bytes;
        record.streams = record.streams.max(s.streams);
        record.retries += s.retries;
        record.resumed_bytes += s.resumed;
        record.reused_connections += s.reused;
        if total == 1 {
            record.checksum = s.checksum;
        }
    }
    record.seconds = started.elapsed().as_secs_f64();
    Ok(record)
}

/// The jobs for one source/destination pair.
async fn plan(src: &Endpoint, dst: &Endpoint, o: &CopyOptions) -> Result<Vec<Job>, ClientError> {
    let two = |remote: &FtpUrl, local: String, download| {
        Job::Two(FileJob {
            remote: remote.clone(),
            local,
            download,
        })
    };
    Ok(match (src, dst) {
        (Endpoint::Ftp(u), Endpoint::Local(p)) if o.recursive => tree::download_jobs(u, &url::absolute(p)?)
            .await?
            .into_iter()
            .map(Job::Two)
            .collect(),
        (Endpoint::Local(p), Endpoint::Ftp(u)) if o.recursive => tree::upload_jobs(&url::absolute(p)?, u)
            .await?
            .into_iter()
            .map(Job::Two)
            .collect(),
        _ if o.recursive => {
            return Err(ClientError::Url(
                "-r copies between an ftp:// directory and a local one".into(),
            ))
        }
        (Endpoint::Ftp(_), Endpoint::Ftp(_)) if o.partial() => {
            return Err(ClientError::Url(
                "-off/-len are not supported for third-party copies yet".into(),
            ))
        }
        (Endpoint::Local(_), Endpoint::Ftp(_)) if o.partial() => {
            return Err(ClientError::Url("-off/-len apply to downloads".into()))
        }
        (Endpoint::Ftp(a), Endpoint::Ftp(b)) => vec![Job::Third {
            src: a.clone(),
            dst: b.with_path(into_dir(&b.path, &a.path)),
        }],
        (Endpoint::Ftp(u), Endpoint::Local(p)) => {
            let local = url::absolute(p)?;
            vec![two(u, into_dir(&local, &u.path), true)]
        }
        (Endpoint::Local(p), Endpoint::Ftp(u)) => {
            let local = url::absolute(p)?;
            vec![two(&u.with_path(into_dir(&u.path, &local)), local, false)]
        }
        _ => return Err(ClientError::Url("at least one side must be ftp://".into())),
    })
}

/// A destination ending in `/` names a directory: the source's file name goes inside it.
fn into_dir(dst: &str, src: &str) -> String {
    match (dst.ends_with('/'), src.rsplit('/').next()) {
        (true, Some(name)) if !name.is_empty() => format!("{dst}{name}"),
        _ => dst.to_string(),
    }
}

/// Adds each file's size to the progress total and, with `-sync`, drops the files already in
/// place. One control session per server does the asking.
async fn select(jobs: Vec<Job>, o: &CopyOptions, progress: &Progress) -> Result<Vec<Job>, ClientError> {
    if o.sync.is_none() && !progress.shown() {
        return Ok(jobs);
    }
    let mut sessions: Vec<(FtpUrl, control::Control)> = Vec::new();
    let mut keep = Vec::new();
    for job in jobs {
        let (src, dst) = match &job {
            Job::Two(j) if j.download => (stat_remote(&mut sessions, &j.remote).await?, tree::local_stat(&j.local)),
            Job::Two(j) => (tree::local_stat(&j.local), stat_remote(&mut sessions, &j.remote).await?),
            Job::Third { src, dst } => (
                stat_remote(&mut sessions, src).await?,
                stat_remote(&mut sessions, dst).await?,
            ),
        };
        let Some(src) = src else {
            keep.push(job); // the transfer itself reports the missing source
            continue;
        };
        if let Some(level) = o.sync {
            if tree::in_sync_by_stat(level, src, dst) && (level < 3 || same_sum(&mut sessions, &job, o).await?) {
                continue;
            }
        }
        let len = o.length.unwrap_or(src.size.saturating_sub(o.offset.unwrap_or(0)));
        progress.add_total(len.min(src.size));
        keep.push(job);
    }
    for (_, c) in sessions {
        c.quit().await;
    }
    Ok(keep)
}

/// The session for `url`'s server among `sessions`, opened when missing.
async fn session_for<'a>(
    sessions: &'a mut Vec<(FtpUrl, control::Control)>,
    url: &FtpUrl,
) -> Result<&'a mut control::Control, ClientError> {
    let i = match sessions.iter().position(|(u, _)| u.same_login(url)) {
        Some(i) => i,
        None => {
            sessions.push((url.clone(), control::Control::connect(url).await?));
            sessions.len() - 1
        }
    };
    Ok(&mut sessions[i].1)
}

async fn stat_remote(
    sessions: &mut Vec<(FtpUrl, control::Control)>,
    url: &FtpUrl,
) -> Result<Option<tree::Stat>, ClientError> {
    tree::remote_stat(session_for(sessions, url).await?, &url.path).await
}

/// `-sync-level 3`: both ends have the same checksum.
async fn same_sum(
    sessions: &mut Vec<(FtpUrl, control::Control)>,
    job: &Job,
    o: &CopyOptions,
) -> Result<bool, ClientError> {
    let alg = o.verify.unwrap_or(o.checksum);
    match job {
        Job::Two(j) => {
            tree::same_checksum(session_for(sessions, &j.remote).await?, &j.remote.path, &j.local, alg).await
        }
        Job::Third { src, dst } => {
            let x = session_for(sessions, src).await?.checksum(alg, &src.path).await?;
            let y = session_for(sessions, dst).await?.checksum(alg, &dst.path).await?;
            Ok(x == y)
        }
    }
}

/// What one worker moved.
#[derive(Default)]
struct WorkerStats {
    bytes: u64,
    streams: usize,
    retries: u32,
    resumed: u64,
    reused: usize,
    checksum: Option<String>,
}

/// Takes jobs from the queue until it is empty, keeping its control session between files
/// on the same server.
async fn worker(
    pool: &Pool,
    queue: &Mutex<VecDeque<Job>>,
    o: &CopyOptions,
    progress: &Progress,
) -> Result<WorkerStats, ClientError> {
    let mut stats = WorkerStats::default();
    let mut session: Option<(FtpUrl, Session)> = None;
    let mut ahead: Option<Issued> = None;
    let pop = || queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
    loop {
        let job = match &ahead {
            Some(i) => Job::Two(i.job().clone()),
            None => match pop() {
                Some(j) => j,
                None => break,
            },
        };
        match job {
            Job::Third { src, dst } => third_with_restarts(&src, &dst, o, progress, &mut stats).await?,
            Job::Two(job) => {
                let issued = ahead.take();
                ahead = two_with_restarts(pool, &mut session, job, issued, queue, o, progress, &mut stats).await?;
            }
        }
    }
    if let Some((_, s)) = session {
        s.control.quit().await;
    }
    Ok(stats)
}

fn x_size_check(o: &CopyOptions, job: &FileJob) -> bool {
    job.download && o.mode == Mode::X && !o.partial()
}

/// MODE X carries no byte or block count, so a whole-file download is checked against the
/// server's SIZE: a connection lost without notice cannot leave a short file reported done.
async fn check_x_download(session: &mut Option<(FtpUrl, Session)>, job: &FileJob) -> Result<(), ClientError> {
    let Some((_, s)) = session.as_mut() else {
        return Err(ClientError::Lost("no session".into()));
    };
    let there = s.control.size(&job.remote.path).await?;
    let here = tree::local_stat(&job.local).map(|st| st.size);
    match (there, here) {
        (Some(a), Some(b)) if a != b => Err(ClientError::Data(format!(
            "MODE X download of {} ended with {b} of its {a} bytes",
            job.remote.path
        ))),
        _ => Ok(()),
    }
}

/// Waits before another try; false when the tries are used up (or restarts are off).
/// Counts the retry in `tries` (this file's) and `stats` (the worker's).
async fn may_retry(
    o: &CopyOptions,
    e: &ClientError,
    tries: &mut u32,
    stats: &mut WorkerStats,
    progress: &Progress,
) -> bool {
    let Some(r) = o.restart.filter(|r| r.retries == 0 || *tries < r.retries) else {
        return false;
    };
    if !e.transient() {
        return false;
    }
    progress.message(&format!("transfer failed ({e}); trying again in {:?}", r.interval));
    tracing::warn!(error = %e, attempt = *tries + 1, "transfer failed; restarting");
    tokio::time::sleep(r.interval).await;
    *tries += 1;
    stats.retries += 1;
    true
}

/// One server ↔ local file, tried again after transient failures from where it stopped.
/// Returns the next file's transfer when it was pipelined behind this one.
#[allow(clippy::too_many_arguments)]
async fn two_with_restarts(
    pool: &Pool,
    session: &mut Option<(FtpUrl, Session)>,
    job: FileJob,
    mut issued: Option<Issued>,
    queue: &Mutex<VecDeque<Job>>,
    o: &CopyOptions,
    progress: &Progress,
    stats: &mut WorkerStats,
) -> Result<Option<Issued>, ClientError> {
    let mut resume = Resume::default();
    let mut file_progress = progress.file();
    let mut tries = 0;
    let moved = loop {
        let attempt = async {
            if !session.as_ref().is_some_and(|(u, _)| u.same_login(&job.remote)) {
                if let Some((_, old)) = session.take() {
                    old.control.quit().await;
                }
                *session = Some((job.remote.clone(), Session::open(&job.remote, o).await?));
            }
            let Some((_, s)) = session.as_mut() else {
                return Err(ClientError::Lost("no session".into()));
            };
            if tries > 0 {
                resume_from_destination(s, &job, o, &mut resume).await?;
                stats.resumed += resume.done.len();
            }
            let i = match issued.take() {
                Some(i) => i,
                None => s.issue(pool, job.clone(), o, &resume).await?,
            };
            // Pipelining: the next file on this server, unless this one is checked afterwards.
            let verify_after = o.verify.is_some() || tries > 0 || x_size_check(o, &job);
            let next = if o.pipeline && !verify_after {
                take_next_same_server(queue, &job.remote)
            } else {
                None
            };
            let (r, ahead) = s
                .complete(pool, i, o, &mut file_progress, &mut resume, next.clone())
                .await;
            // A next file not issued, or issued on a session that failed, goes back.
            if let Some(n) = next.filter(|_| ahead.is_none() || r.is_err()) {
                queue.lock().unwrap_or_else(|e| e.into_inner()).push_front(Job::Two(n));
            }
            r.map(|m| (m, ahead))
        };
        match attempt.await {
            Ok(done) => break done,
            Err(e) => {
                *session = None;
                if !may_retry(o, &e, &mut tries, stats, progress).await {
                    return Err(e);
                }
            }
        }
    };
    let (m, ahead) = moved;
    if x_size_check(o, &job) {
        check_x_download(session, &job).await?;
    }
    stats.bytes += m.bytes;
    stats.streams = stats.streams.max(m.streams);
    stats.reused += usize::from(m.reused);
    if (o.verify.is_some() || tries > 0) && !o.partial() {
        let alg = o.verify.unwrap_or(o.checksum);
        let Some((_, s)) = session.as_mut() else {
            return Err(ClientError::Lost("no session".into()));
        };
        let there = s.control.checksum(alg, &job.remote.path).await?;
        let here = tree::local_checksum(&job.local, alg).await?;
        if there != here {
            return Err(ClientError::Mismatch(format!("{here} here, {there} there")));
        }
        stats.checksum = Some(format!("{}:{here}", alg.name()));
    }
    Ok(ahead)
}

/// Before a restart: in stream mode the destination's size is what arrived (writes are in
/// order), as long as the failed attempt had started writing it.
async fn resume_from_destination(
    s: &mut Session,
    job: &FileJob,
    o: &CopyOptions,
    resume: &mut Resume,
) -> Result<(), ClientError> {
    if o.partial() || o.mode != Mode::Stream || !resume.started {
        return Ok(());
    }
    let size = if job.download {
        tree::local_stat(&job.local).map(|s| s.size)
    } else {
        remote_upload_size(s, &job.remote.path).await?
    };
    if let Some(n) = size {
        resume.done.insert(0, n);
    }
    Ok(())
}

/// The bytes of a failed upload in place on the server: a ringmover server keeps them in the
/// partial file until the upload completes (see `storage::open_upload`); other servers write
/// the file itself.
async fn remote_upload_size(s: &mut Session, path: &str) -> Result<Option<u64>, ClientError> {
    if let Some(partial) = crate::storage::partial_path(path) {
        if let Some(n) = s.control.size(&partial).await? {
            return Ok(Some(n));
        }
    }
    s.control.size(path).await
}

/// Takes the next queued job if it is a transfer with the same server.
fn take_next_same_server(queue: &Mutex<VecDeque<Job>>, url: &FtpUrl) -> Option<FileJob> {
    let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
    match q.front() {
        Some(Job::Two(j)) if j.remote.same_login(url) => match q.pop_front() {
            Some(Job::Two(j)) => Some(j),
            _ => None,
        },
        _ => None,
    }
}

async fn third_with_restarts(
    src: &FtpUrl,
    dst: &FtpUrl,
    o: &CopyOptions,
    progress: &Progress,
    stats: &mut WorkerStats,
) -> Result<(), ClientError> {
    let mut resume = Resume::default();
    let mut file_progress = progress.file();
    let mut tries = 0;
    let moved = loop {
        match third_party::copy(src, dst, o, &mut resume, &mut file_progress).await {
            Ok(m) => break m,
            Err(e) => {
                if !may_retry(o, &e, &mut tries, stats, progress).await {
                    return Err(e);
                }
                stats.resumed += resume.done.len();
            }
        }
    };
    stats.bytes += moved.bytes;
    stats.streams = stats.streams.max(moved.streams);
    if o.verify.is_some() || tries > 0 {
        let alg = o.verify.unwrap_or(o.checksum);
        let sum = third_party::verify(src, dst, alg).await?;
        stats.checksum = Some(format!("{}:{sum}", alg.name()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_directories() {
        assert_eq!(into_dir("/d/", "/src/f.dat"), "/d/f.dat");
        assert_eq!(into_dir("/d/g", "/src/f.dat"), "/d/g");
        assert_eq!(into_dir("/d/", "/src/"), "/d/");
    }

    #[test]
    fn mode_and_progress_defaults() {
        assert_eq!(mode_for(None, 1).unwrap(), Mode::Stream);
        assert_eq!(mode_for(None, 4).unwrap(), Mode::E);
        assert_eq!(mode_for(Some("X"), 4).unwrap(), Mode::X);
        assert!(mode_for(Some("q"), 1).is_err());
        assert_eq!(Show::choose(false, false, true, false), Show::Bar);
        assert_eq!(Show::choose(false, false, true, true), Show::Nothing);
        assert_eq!(Show::choose(false, true, false, false), Show::Lines);
        assert_eq!(Show::choose(true, true, true, false), Show::Nothing);
    }

    #[test]
    fn transient_errors() {
        assert!(ClientError::Lost("x".into()).transient());
        assert!(ClientError::Refused(Reply::new(451, "451 local error")).transient());
        assert!(!ClientError::Refused(Reply::new(550, "550 no such file")).transient());
        assert!(!ClientError::Mismatch("a".into()).transient());
    }
}

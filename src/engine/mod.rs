//! The data engine: one pinned thread and one io_uring per core. Transfers (file/memory to
//! socket, socket to file) are handed to a core through a queue plus an eventfd wake-up and run
//! there to completion; the caller awaits the result. Imports nothing else of ringmover.
//!
//! Paths (`docs/engine-paths.md` has the measurements):
//! - [`DataPath::Zerocopy`]: file→socket with `sendfile(2)` on the core's thread, gated by an
//!   io_uring `PollAdd` for writability; socket→file with `splice(2)` through a pipe, gated by
//!   a poll for readability. io_uring `Splice` is not used: it runs in io-wq workers.
//! - [`DataPath::ReadWrite`]: io_uring `ReadFixed`/`Send` and `Recv`/`WriteFixed` through the
//!   core's registered buffer arena.
//! - [`DataPath::Auto`] (default) picks per transfer: splice in (read/write when an observer
//!   needs the bytes), sendfile out.
//!
//! Memory→socket (listings) always uses io_uring `Send`. Appends always use read/write, since
//! splice cannot write to an `O_APPEND` file.

mod arena;
mod blocks;
mod core;
pub mod direct;
mod parts;
mod placement;
mod read_send;
mod recv_write;
mod transfer;

use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;

use thiserror::Error;
use tokio::sync::oneshot;

pub use self::blocks::{BlockPlan, Receiving};
pub use self::core::probe;

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    core::allowed_cpus()
}

/// Engine failures, per transfer or at start-up.
#[derive(Debug, Error)]
pub enum OpError {
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("transfer cancelled")]
    Cancelled,
    #[error("engine stopped")]
    Stopped,
    #[error("source ended after {got} of {want} bytes")]
    ShortSource { got: u64, want: u64 },
    #[error("MODE E: {0}")]
    Framing(#[from] crate::block::DecodeError),
}

impl OpError {
    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> OpError {
        OpError::Io {
            op,
            source: source.into(),
        }
    }

    pub(crate) fn errno(op: &'static str, res: i32) -> OpError {
        OpError::Io {
            op,
            source: io::Error::from_raw_os_error(-res),
        }
    }
}

/// How bytes move between files and sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DataPath {
    /// The fastest measured for each transfer: splice in, sendfile out (see the module
    /// documentation).
    #[default]
    Auto,
    /// `sendfile(2)` out, `splice(2)` in; both gated by io_uring polls.
    Zerocopy,
    /// io_uring reads and writes through registered buffers, both ways.
    ReadWrite,
}

impl DataPath {
    /// Every path, for tests that must cover all of them.
    pub const ALL: [DataPath; 3] = [DataPath::Auto, DataPath::Zerocopy, DataPath::ReadWrite];
}

impl std::str::FromStr for DataPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DataPath::Auto),
            "zerocopy" | "sendfile" | "splice" => Ok(DataPath::Zerocopy),
            "readwrite" | "read-write" | "rw" => Ok(DataPath::ReadWrite),
            _ => Err(format!("unknown data path '{s}' (use auto, zerocopy or readwrite)")),
        }
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Number of cores (threads); 0 means every CPU this process may run on.
    pub cores: usize,
    pub path: DataPath,
    /// Size of each registered buffer.
    pub buffer_size: usize,
    /// Registered buffers per core.
    pub buffers_per_core: usize,
    /// Index (in this process's allowed CPUs) of the CPU the first core is pinned to.
    pub first_cpu: usize,
    /// The CPUs to pin the cores to (`--cpus`); empty: the allowed CPUs from `first_cpu`.
    pub cpus: Vec<usize>,
    /// Record each op's submit-to-completion time here (benchmarks).
    pub op_latency: Option<OpLatency>,
}

/// A histogram of op latencies in microseconds, shared by the cores that record into it.
#[derive(Clone, Debug)]
pub struct OpLatency(Arc<std::sync::Mutex<hdrhistogram::Histogram<u64>>>);

impl OpLatency {
    pub fn new() -> OpLatency {
        // 1 µs .. 100 s at 3 significant digits: these bounds are valid, so `new` cannot fail.
        let h = hdrhistogram::Histogram::new_with_bounds(1, 100_000_000, 3)
            .unwrap_or_else(|_| hdrhistogram::Histogram::new(3).unwrap_or_else(|_| unreachable!()));
        OpLatency(Arc::new(std::sync::Mutex::new(h)))
    }

    pub(crate) fn record(&self, micros: u64) {
        let mut h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        h.saturating_record(micros.max(1));
    }

    /// A copy of what was recorded so far.
    pub fn snapshot(&self) -> hdrhistogram::Histogram<u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn reset(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).reset();
    }

    /// Count and percentiles so far.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary::of(&self.snapshot())
    }
}

/// Percentiles of an op-latency histogram, in microseconds.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl LatencySummary {
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> LatencySummary {
        LatencySummary {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

impl Default for OpLatency {
    fn default() -> Self {
        OpLatency::new()
    }
}

/// Buffer size through the page cache. A buffer is filled by one copy and emptied by the next
/// on the same CPU; it must still be in that CPU's cache for the second (with the two a
/// receiving stream keeps in turn, and the page-cache pages between). Buffered uploads into
/// ext4 from globus-url-copy, 2 GiB, five rotated rounds, medians: 256 KiB 2.95 s, 128 KiB
/// 3.23 s, 512 KiB 4.31 s, 1 MiB 6.79 s; globus-gridftp-server 2.99 s (2 MiB of L2 per core).
pub const PAGE_CACHE_BUFFER: usize = 256 << 10;

/// Buffers a stream-mode transfer on the registered-buffer paths keeps in turn (`parts.rs`):
/// one op on the device or socket while the other buffer's op runs. MODE E streams keep one.
pub const STREAM_DEPTH: usize = 2;

/// Buffer size with direct I/O.
pub const DIRECT_BUFFER: usize = 4 << 20;

impl EngineConfig {
    /// Direct I/O goes to the device at the buffer's size (a stream-mode transfer keeps two
    /// buffers in turn, a MODE E stream one): 4 MiB buffers (half as many) kept a virtio disk busier than 1 MiB ones (cold reads of
    /// one stream 1.16 → 1.42 GB/s, writes 0.92 → 1.17 GB/s).
    pub fn with_direct_io(mut self, on: bool) -> EngineConfig {
        if on {
            self.buffer_size = DIRECT_BUFFER;
            self.buffers_per_core = 8;
        }
        self
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cores: 0,
            path: DataPath::Auto,
            buffer_size: PAGE_CACHE_BUFFER,
            buffers_per_core: 32,
            first_cpu: 0,
            cpus: Vec::new(),
            op_latency: None,
        }
    }
}

/// Where a transfer's bytes come from.
#[derive(Debug)]
pub enum Source {
    /// MODE E blocks of a shared file, taken from a plan shared by all streams of a transfer;
    /// `last` is the header this stream ends with (EOD, or EOF|EOD on the stream that carries
    /// the EOF message). With `xmode` (a transaction id) the stream speaks MODE X instead:
    /// 25-byte headers, READY before the first block, EOF|EOD|CLOSE at the end.
    Blocks {
        file: Arc<File>,
        plan: Arc<BlockPlan>,
        last: crate::block::Header,
        xmode: Option<u64>,
    },
    /// `length` bytes of `file` from `offset` (to the end when `None`).
    File {
        file: File,
        offset: u64,
        length: Option<u64>,
    },
    /// Bytes in memory (listings).
    Memory(Bytes),
    /// `total` bytes made of `pattern` sent again and again (memory-to-memory benchmarks).
    Repeat { pattern: Bytes, total: u64 },
    /// A connected data socket, read until the peer closes.
    Socket(TcpStream),
}

/// Sees every byte a stream upload writes, in file order, on the core that received it
/// (used for checksums computed on the fly).
pub trait Observer: Send + std::fmt::Debug {
    fn observe(&mut self, data: &[u8]);
    /// Called once after the last byte, when the transfer succeeded.
    fn complete(&mut self) {}
}

/// Where a transfer's bytes go.
#[derive(Debug)]
pub enum Sink {
    /// MODE E or MODE X blocks written at `wire offset + base` into a shared file; the
    /// receiver state is shared by all connections of the transfer.
    Blocks {
        file: Arc<File>,
        receiver: Receiving,
        base: u64,
    },
    Socket(TcpStream),
    /// Received and thrown away: spliced to /dev/null, never copied to user space.
    Discard,
    /// Written at `offset`, or appended when `offset` is `None`. An `observer` is fed on the
    /// read/write paths; the zero-copy splice path never sees the bytes and leaves it unfed.
    File {
        file: File,
        offset: Option<u64>,
        observer: Option<Box<dyn Observer>>,
    },
}

pub(crate) enum Msg {
    Start(transfer::Job),
    Cancel(u64),
    Stop,
}

struct CoreHandle {
    tx: crossbeam_channel::Sender<Msg>,
    wake: Arc<OwnedFd>,
    cpu: Option<usize>,
    thread: Option<JoinHandle<()>>,
}

fn wake(fd: &OwnedFd) {
    // An eventfd write only fails when the counter would overflow, which still wakes the core.
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// The running engine. Dropping it stops the cores after cancelling their transfers.
pub struct Engine {
    cores: Vec<CoreHandle>,
    next_id: AtomicU64,
    placement: Arc<placement::Placement>,
    path: DataPath,
}

impl Engine {
    /// Starts one pinned thread with its ring per core.
    pub fn start(config: &EngineConfig) -> Result<Engine, OpError> {
        let allowed = core::allowed_cpus();
        let subset = config.cores > 0 && config.cores < allowed.len();
        let cpus = if config.cpus.is_empty() && subset {
            // Fewer cores than CPUs: start on the CPUs other ringmover processes use least
            // (a stable sort: without any load, the allowed order).
            let busy = placement::others_busy();
            let mut by_load = allowed;
            by_load.sort_by_key(|c| busy.get(*c).copied().unwrap_or(0));
            by_load
        } else if config.cpus.is_empty() {
            allowed
        } else {
            let chosen: Vec<usize> = config.cpus.iter().copied().filter(|c| allowed.contains(c)).collect();
            if chosen.is_empty() {
                return Err(OpError::io(
                    "engine",
                    std::io::Error::other(format!(
                        "--cpus {:?}: this process may only use CPUs {allowed:?} (its affinity: taskset, \
                         or CPUAffinity= in a systemd unit)",
                        config.cpus
                    )),
                ));
            }
            chosen
        };
        let n = if config.cores == 0 {
            cpus.len().max(1)
        } else {
            config.cores
        };
        let mut cores = Vec::with_capacity(n);
        for i in 0..n {
            let cpu = (!cpus.is_empty()).then(|| cpus[(config.first_cpu + i) % cpus.len()]);
            cores.push(core::spawn(i, cpu, config)?);
        }
        let pinned: Vec<usize> = cores.iter().filter_map(|c| c.cpu).collect();
        tracing::info!(cores = n, cpus = ?pinned, path = ?config.path, "engine started");
        let placement = Arc::new(placement::Placement::new(cores.iter().map(|c| c.cpu).collect(), subset));
        Ok(Engine {
            cores,
            next_id: AtomicU64::new(1),
            placement,
            path: config.path,
        })
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    /// CPUs this process may use on which no ringmover transfer runs now (this process's
    /// or another's): where a helper thread, such as an upload's checksum follower, would
    /// not slow a transfer down.
    pub fn idle_cpus(&self) -> usize {
        self.placement.idle_cpus(&allowed_cpus())
    }

    /// The default data path.
    pub fn path(&self) -> DataPath {
        self.path
    }

    /// Starts a transfer on the core [`placement`] picks: the one receiving the socket's
    /// packets for a remote peer, the least busy on the host otherwise.
    pub fn submit(&self, source: Source, sink: Sink, path: Option<DataPath>) -> TransferHandle {
        self.submit_counted(source, sink, path, Arc::new(AtomicU64::new(0)))
    }

    /// As [`Engine::submit`], adding the bytes moved to a counter shared with other streams.
    pub fn submit_counted(
        &self,
        source: Source,
        sink: Sink,
        path: Option<DataPath>,
        progress: Arc<AtomicU64>,
    ) -> TransferHandle {
        let sock = match (&source, &sink) {
            (Source::Socket(s), _) | (_, Sink::Socket(s)) => Some(s),
            _ => None,
        };
        let placed = self.placement.place(sock, matches!(sink, Sink::Socket(_)));
        let core = placement::Placement::core(&placed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (done_tx, done_rx) = oneshot::channel();
        let job = transfer::Job {
            id,
            source,
            sink,
            path: path.unwrap_or(self.path),
            progress: progress.clone(),
            done: done_tx,
            placed: Some(placed),
        };
        let handle = &self.cores[core];
        // A send fails only when the core has exited; the job (and its reply channel) is then
        // dropped and `finish` reports `Stopped`.
        let _ = handle.tx.send(Msg::Start(job));
        wake(&handle.wake);
        TransferHandle {
            id,
            rx: done_rx,
            progress,
            tx: handle.tx.clone(),
            wake: handle.wake.clone(),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for c in &self.cores {
            let _ = c.tx.send(Msg::Stop);
            wake(&c.wake);
        }
        for c in &mut self.cores {
            if let Some(t) = c.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// A finished transfer: bytes moved, and the data socket when it may be reused (a MODE E
/// stream that ended with EOD but without CLOSE).
#[derive(Debug)]
pub struct Finished {
    pub bytes: u64,
    pub socket: Option<TcpStream>,
}

/// Cancels one transfer (see [`TransferHandle::cancel`]).
#[derive(Clone)]
pub struct Canceller {
    id: u64,
    tx: crossbeam_channel::Sender<Msg>,
    wake: Arc<OwnedFd>,
}

impl Canceller {
    pub fn cancel(&self) {
        let _ = self.tx.send(Msg::Cancel(self.id));
        wake(&self.wake);
    }
}

/// A transfer in flight on a core.
pub struct TransferHandle {
    id: u64,
    rx: oneshot::Receiver<Result<Finished, OpError>>,
    progress: Arc<AtomicU64>,
    tx: crossbeam_channel::Sender<Msg>,
    wake: Arc<OwnedFd>,
}

impl TransferHandle {
    /// Bytes moved so far.
    pub fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// A shared counter of bytes moved so far.
    pub fn progress_counter(&self) -> Arc<AtomicU64> {
        self.progress.clone()
    }

    /// Asks the core to cancel; the transfer then finishes with [`OpError::Cancelled`] unless
    /// it completed first.
    pub fn cancel(&self) {
        self.canceller().cancel();
    }

    /// A handle that can cancel this transfer from elsewhere.
    pub fn canceller(&self) -> Canceller {
        Canceller {
            id: self.id,
            tx: self.tx.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Waits for the result.
    pub async fn finish(&mut self) -> Result<Finished, OpError> {
        (&mut self.rx).await.unwrap_or(Err(OpError::Stopped))
    }

    /// Blocking wait, for threads outside tokio: bytes this transfer moved.
    pub fn finish_blocking(self) -> Result<u64, OpError> {
        self.finish_blocking_full().map(|f| f.bytes)
    }

    /// Blocking wait with the reusable socket.
    pub fn finish_blocking_full(self) -> Result<Finished, OpError> {
        self.rx.blocking_recv().unwrap_or(Err(OpError::Stopped))
    }
}

#[cfg(test)]
mod tests;

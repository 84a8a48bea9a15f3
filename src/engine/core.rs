//! One core: a pinned thread that owns an io_uring, a buffer arena and the transfers placed on
//! it. Every active transfer has exactly one op in flight, keyed by its id as `user_data`; the
//! transfer (and the buffer and fds the op uses) lives until that op's completion arrives.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use io_uring::{opcode, squeue, types, IoUring};
use rustix::event::EventfdFlags;

use super::arena::Arena;
use super::transfer::{Step, Transfer};
use super::{CoreHandle, EngineConfig, Msg, OpError, OpLatency};

/// `user_data` of the eventfd read that wakes the core.
const WAKE: u64 = u64::MAX;
/// `user_data` of cancel requests (their completions carry no news).
const CANCEL: u64 = u64::MAX - 1;
const RING_ENTRIES: u32 = 256;

/// The CPUs this process may run on.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Builds a ring with the flags the design asks for, falling back (with a log line) to a plain
/// ring on kernels that lack them.
fn build_ring() -> std::io::Result<IoUring> {
    let tuned = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .build(RING_ENTRIES);
    match tuned {
        Ok(ring) => Ok(ring),
        Err(e) => {
            tracing::info!("engine: SINGLE_ISSUER|DEFER_TASKRUN unavailable ({e}); using a plain ring");
            IoUring::new(RING_ENTRIES)
        }
    }
}

/// Checks that io_uring works here; returns a short description.
pub fn probe() -> Result<String, OpError> {
    let ring = build_ring().map_err(|e| OpError::io("io_uring_setup", e))?;
    let mut p = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(|e| OpError::io("io_uring probe", e))?;
    let needed = [
        ("PollAdd", opcode::PollAdd::CODE),
        ("Send", opcode::Send::CODE),
        ("Recv", opcode::Recv::CODE),
        ("ReadFixed", opcode::ReadFixed::CODE),
        ("WriteFixed", opcode::WriteFixed::CODE),
        ("AsyncCancel", opcode::AsyncCancel::CODE),
    ];
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(_, c)| !p.is_supported(*c))
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        Ok("io_uring: all required ops supported".into())
    } else {
        Err(OpError::io(
            "io_uring probe",
            std::io::Error::other(format!("missing ops: {}", missing.join(", "))),
        ))
    }
}

pub(crate) fn spawn(index: usize, cpu: Option<usize>, config: &EngineConfig) -> Result<CoreHandle, OpError> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let wake = Arc::new(rustix::event::eventfd(0, EventfdFlags::CLOEXEC).map_err(|e| OpError::io("eventfd", e))?);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let wake_fd = wake.clone();
    let config = config.clone();
    let thread = std::thread::Builder::new()
        .name(format!("rm-core-{index}"))
        .spawn(move || {
            if let Some(cpu) = cpu {
                pin(cpu);
            }
            match CoreLoop::new(rx, wake_fd, &config, CoreStats::new(index, cpu)) {
                Ok(mut core) => {
                    let _ = ready_tx.send(Ok(()));
                    core.run();
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })
        .map_err(|e| OpError::io("spawn core thread", e))?;
    ready_rx.recv().map_err(|_| OpError::Stopped)??;
    Ok(CoreHandle {
        tx,
        wake,
        cpu,
        thread: Some(thread),
    })
}

fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        tracing::warn!("engine: could not pin to CPU {cpu}: {e}");
    }
}

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// What a core needs to build ops: its arena.
pub(crate) struct Ctx<'a> {
    pub(crate) arena: &'a mut Arena,
}

// Field order matters: the ring is dropped before the arena whose buffers it registered.
struct CoreLoop {
    ring: IoUring,
    arena: Arena,
    rx: crossbeam_channel::Receiver<Msg>,
    wake: Arc<OwnedFd>,
    wake_buf: Box<[u8; 8]>,
    wake_armed: bool,
    transfers: HashMap<u64, Transfer>,
    stopping: bool,
    /// With a latency recorder: when each transfer's op in flight was submitted.
    latency: Option<(OpLatency, HashMap<u64, Instant>)>,
    stats: CoreStats,
}

/// This core's metrics, looked up once.
struct CoreStats {
    bytes: Counter,
    ops: Counter,
    queue: Gauge,
    zero_copy: Counter,
}

impl CoreStats {
    fn new(index: usize, cpu: Option<usize>) -> CoreStats {
        let m = crate::metrics::get();
        let cpu = cpu.map_or("any".to_string(), |c| c.to_string());
        let labels = vec![("core", index.to_string()), ("cpu", cpu)];
        CoreStats {
            bytes: m.core_bytes.get_or_create(&labels).clone(),
            ops: m.core_ops.get_or_create(&labels).clone(),
            queue: m.core_queue.get_or_create(&labels).clone(),
            zero_copy: m.core_zero_copy_bytes.get_or_create(&labels).clone(),
        }
    }
}

impl CoreLoop {
    fn new(
        rx: crossbeam_channel::Receiver<Msg>,
        wake: Arc<OwnedFd>,
        config: &EngineConfig,
        stats: CoreStats,
    ) -> Result<CoreLoop, OpError> {
        let ring = build_ring().map_err(|e| OpError::io("io_uring_setup", e))?;
        let arena = Arena::new(&ring, config.buffers_per_core, config.buffer_size);
        Ok(CoreLoop {
            ring,
            arena,
            rx,
            wake,
            wake_buf: Box::new([0; 8]),
            wake_armed: false,
            transfers: HashMap::new(),
            stopping: false,
            latency: config.op_latency.clone().map(|l| (l, HashMap::new())),
            stats,
        })
    }

    fn run(&mut self) {
        loop {
            self.drain_messages();
            if self.stopping && self.transfers.is_empty() {
                break;
            }
            if !self.wake_armed {
                let e = opcode::Read::new(types::Fd(self.wake.as_raw_fd()), self.wake_buf.as_mut_ptr(), 8)
                    .build()
                    .user_data(WAKE);
                self.push(e);
                self.wake_armed = true;
            }
            if let Err(e) = self.ring.submit_and_wait(1) {
                if e.raw_os_error() != Some(libc::EINTR) {
                    tracing::error!("engine: io_uring_enter failed: {e}");
                    break;
                }
            }
            let done: Vec<(u64, i32)> = self.ring.completion().map(|c| (c.user_data(), c.result())).collect();
            self.stats.queue.set(self.transfers.len() as i64);
            for (user_data, res) in done {
                match user_data {
                    WAKE => self.wake_armed = false,
                    CANCEL => {}
                    id => self.advance(id, Some(res)),
                }
            }
        }
        // Leaving with transfers still in flight would free memory the kernel may write to.
        for (_, t) in self.transfers.drain() {
            t.finish(&mut Ctx { arena: &mut self.arena }, Err(OpError::Stopped));
        }
    }

    fn drain_messages(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Start(job) => {
                    let id = job.id;
                    if self.stopping {
                        let _ = job.done.send(Err(OpError::Stopped));
                        continue;
                    }
                    let t = Transfer::new(job, &mut Ctx { arena: &mut self.arena });
                    self.transfers.insert(id, t);
                    self.advance(id, None);
                }
                Msg::Cancel(id) => self.cancel(id),
                Msg::Stop => {
                    self.stopping = true;
                    let ids: Vec<u64> = self.transfers.keys().copied().collect();
                    ids.into_iter().for_each(|id| self.cancel(id));
                }
            }
        }
    }

    fn cancel(&mut self, id: u64) {
        if let Some(t) = self.transfers.get_mut(&id) {
            if !t.cancelled {
                t.cancelled = true;
                self.push(opcode::AsyncCancel::new(id).build().user_data(CANCEL));
            }
        }
    }

    /// Runs a transfer's state machine after its op completed (`res`) or at its start (`None`).
    fn advance(&mut self, id: u64, res: Option<i32>) {
        let Some(t) = self.transfers.get_mut(&id) else {
            return;
        };
        if let (Some((rec, started)), Some(_)) = (&mut self.latency, res) {
            if let Some(at) = started.remove(&id) {
                rec.record(at.elapsed().as_micros() as u64);
            }
        }
        let before = t.moved();
        let step = if t.cancelled && res.is_some() {
            Step::Done(Err(OpError::Cancelled))
        } else {
            t.advance(&mut Ctx { arena: &mut self.arena }, res)
        };
        let moved = t.moved() - before;
        if res.is_some() {
            self.stats.ops.inc();
        }
        if moved > 0 {
            self.stats.bytes.inc_by(moved);
            if t.zero_copy() {
                self.stats.zero_copy.inc_by(moved);
            }
        }
        match step {
            Step::Submit(entry) => {
                if let Some((_, started)) = &mut self.latency {
                    started.insert(id, Instant::now());
                }
                self.push(entry.user_data(id))
            }
            Step::Done(result) => {
                if let Some(t) = self.transfers.remove(&id) {
                    t.finish(&mut Ctx { arena: &mut self.arena }, result);
                }
            }
        }
    }

    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // Entries point only at heap memory (arena slots, boxed headers, heap buffers,
            // `Bytes`, static lines) and fds owned by a transfer in `self.transfers`, or at this
            // loop's `wake_buf`/`wake`; that memory does not move when a transfer value moves.
            // SAFETY: a transfer (with its memory and fds) is removed only after the last
            // completion of its one op in flight, so everything stays valid while the kernel
            // uses it.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                return;
            }
            // Queue full: hand the queued entries to the kernel and retry.
            if let Err(e) = self.ring.submit() {
                tracing::error!("engine: submit failed while the queue was full: {e}");
            }
        }
    }
}

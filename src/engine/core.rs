//! One core: a pinned thread that owns an io_uring, a buffer arena and the transfers placed on
//! it. Every active transfer has one op in flight, or a few in numbered slots; `user_data` is
//! the transfer's id and the slot. The transfer (and the buffers and fds its ops use) lives
//! until the completion of its last op in flight arrives.

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
/// Low bits of `user_data` that carry an op's slot within its transfer.
const SLOT_BITS: u32 = 2;

/// `user_data` of a transfer's op in `slot`. Ids count up from 1 and stay far below 2^62, so
/// this never meets `WAKE` or `CANCEL`.
fn user_data(id: u64, slot: u8) -> u64 {
    id << SLOT_BITS | u64::from(slot)
}

/// The transfer id and slot a `user_data` names.
fn id_and_slot(data: u64) -> (u64, u8) {
    (data >> SLOT_BITS, (data & ((1 << SLOT_BITS) - 1)) as u8)
}

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
    transfers: HashMap<u64, Running>,
    stopping: bool,
    /// With a latency recorder: when each op in flight (by `user_data`) was submitted.
    latency: Option<(OpLatency, HashMap<u64, Instant>)>,
    stats: CoreStats,
}

/// A transfer and what the kernel still holds of it.
struct Running {
    transfer: Transfer,
    /// Bit `i` set: the op in slot `i` is in flight.
    in_flight: u8,
    /// The result of a transfer that ended with ops still in flight (an error, a cancel):
    /// reported once the last of them completed.
    ending: Option<Result<u64, OpError>>,
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
                    data => {
                        let (id, slot) = id_and_slot(data);
                        self.advance(id, Some((slot, res)));
                    }
                }
            }
        }
        // Leaving with transfers still in flight would free memory the kernel may write to.
        for (_, r) in self.transfers.drain() {
            r.transfer
                .finish(&mut Ctx { arena: &mut self.arena }, Err(OpError::Stopped));
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
                    let transfer = Transfer::new(job, &mut Ctx { arena: &mut self.arena });
                    let running = Running {
                        transfer,
                        in_flight: 0,
                        ending: None,
                    };
                    self.transfers.insert(id, running);
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
        let Some(r) = self.transfers.get_mut(&id) else {
            return;
        };
        if r.transfer.cancelled {
            return;
        }
        r.transfer.cancelled = true;
        let in_flight = r.in_flight;
        self.cancel_slots(id, in_flight);
    }

    fn cancel_slots(&mut self, id: u64, slots: u8) {
        for slot in (0..1 << SLOT_BITS).filter(|s| slots & (1 << s) != 0) {
            let target = user_data(id, slot);
            self.push(opcode::AsyncCancel::new(target).build().user_data(CANCEL));
        }
    }

    /// Runs a transfer's state machine after its op in `slot` completed (`done`) or at its
    /// start (`None`).
    fn advance(&mut self, id: u64, done: Option<(u8, i32)>) {
        let Some(r) = self.transfers.get_mut(&id) else {
            return;
        };
        if let Some((slot, _)) = done {
            r.in_flight &= !(1 << slot);
            if let Some((rec, started)) = &mut self.latency {
                if let Some(at) = started.remove(&user_data(id, slot)) {
                    rec.record(at.elapsed().as_micros() as u64);
                }
            }
            self.stats.ops.inc();
        }
        if r.ending.is_some() {
            // Ended already: only waiting for the kernel to give its ops back.
            self.end_if_idle(id);
            return;
        }
        let t = &mut r.transfer;
        let before = t.moved();
        let step = if t.cancelled && done.is_some() {
            Step::Done(Err(OpError::Cancelled))
        } else {
            t.advance(&mut Ctx { arena: &mut self.arena }, done)
        };
        let moved = t.moved() - before;
        if moved > 0 {
            self.stats.bytes.inc_by(moved);
            if t.zero_copy() {
                self.stats.zero_copy.inc_by(moved);
            }
        }
        let step = match step {
            // Nothing in flight and nothing to submit would wait forever.
            Step::Submit(ops) if r.in_flight == 0 && ops.iter().all(Option::is_none) => {
                Step::Done(Err(OpError::Stopped))
            }
            step => step,
        };
        match step {
            Step::Submit(ops) => {
                r.in_flight |= ops.iter().flatten().fold(0, |m, (slot, _)| m | 1 << slot);
                for (slot, entry) in ops.into_iter().flatten() {
                    if let Some((_, started)) = &mut self.latency {
                        started.insert(user_data(id, slot), Instant::now());
                    }
                    self.push(entry.user_data(user_data(id, slot)));
                }
            }
            Step::Done(result) => {
                r.ending = Some(result);
                let rest = r.in_flight;
                if rest != 0 {
                    self.cancel_slots(id, rest);
                }
                self.end_if_idle(id);
            }
        }
    }

    /// Reports an ended transfer once none of its ops is in flight.
    fn end_if_idle(&mut self, id: u64) {
        if self.transfers.get(&id).is_some_and(|r| r.in_flight == 0) {
            if let Some(Running {
                transfer,
                ending: Some(result),
                ..
            }) = self.transfers.remove(&id)
            {
                transfer.finish(&mut Ctx { arena: &mut self.arena }, result);
            }
        }
    }

    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // Entries point only at heap memory (arena slots, boxed headers, heap buffers,
            // `Bytes`, static lines) and fds owned by a transfer in `self.transfers`, or at this
            // loop's `wake_buf`/`wake`; that memory does not move when a transfer value moves.
            // SAFETY: a transfer (with its memory and fds) is removed only after the completion
            // of its last op in flight (`Running::in_flight`, `end_if_idle`), so everything
            // stays valid while the kernel uses it.
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

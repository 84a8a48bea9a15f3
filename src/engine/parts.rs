//! The buffers of a transfer that keeps more than one op in flight (`read_send`,
//! `recv_write`): each buffer has its own state and at most one op in flight, and its index
//! is that op's slot.

use io_uring::squeue;

use super::arena::{Arena, Buffer};
use super::core::Ctx;
use super::transfer::Ops;
use super::OpError;

pub(crate) struct Part<S> {
    pub(crate) buf: Buffer,
    pub(crate) state: S,
    /// The op in flight is a retry after a direct read or write was refused.
    pub(crate) retried: bool,
}

/// One buffer, and a second one when `more` and the arena has a registered one free: a heap
/// buffer would cost an allocation (and is refused by direct I/O); without one the transfer
/// simply runs one op at a time.
pub(crate) fn take<S: Copy>(arena: &mut Arena, more: bool, free: S) -> Vec<Part<S>> {
    let first = arena.take();
    let extra = std::iter::from_fn(|| arena.try_take()).take(if more { super::STREAM_DEPTH - 1 } else { 0 });
    std::iter::once(first)
        .chain(extra)
        .map(|buf| Part {
            buf,
            state: free,
            retried: false,
        })
        .collect()
}

/// Gives the buffers back (once no op of the transfer is in flight).
pub(crate) fn release<S>(parts: Vec<Part<S>>, arena: &mut Arena) {
    parts.into_iter().for_each(|p| arena.give(p.buf));
}

/// A transfer whose buffers each run their own op.
pub(crate) trait Slotted {
    /// Books the completion of buffer `i`'s op; returns the op that buffer needs next, if any.
    fn completed(
        &mut self,
        ctx: &mut Ctx<'_>,
        i: usize,
        res: i32,
        moved: &mut u64,
    ) -> Result<Option<squeue::Entry>, OpError>;

    /// Adds the ops that other buffers can start now.
    fn start(&mut self, ctx: &mut Ctx<'_>, ops: &mut Collect);

    /// Whether every byte moved and no op is in flight.
    fn over(&self) -> bool;

    /// Called once when the transfer is over.
    fn finish(&mut self) {}

    /// Takes the completion of the op in `slot` (none at the start) and returns the ops to
    /// submit next, or `None` at the end. `moved` gets the bytes this completion moved.
    fn step(&mut self, ctx: &mut Ctx<'_>, done: Option<(u8, i32)>, moved: &mut u64) -> Result<Option<Ops>, OpError> {
        let mut ops = Collect::default();
        if let Some((slot, res)) = done {
            let next = self.completed(ctx, usize::from(slot), res, moved)?;
            ops.add(next.map(|op| (slot, op)));
        }
        self.start(ctx, &mut ops);
        if self.over() {
            self.finish();
            return Ok(None);
        }
        Ok(Some(ops.ops()))
    }
}

/// Ops of one step, at most one per buffer.
#[derive(Default)]
pub(crate) struct Collect(Ops);

impl Collect {
    /// The ops of a transfer with a single op to submit.
    pub(crate) fn one(slot: u8, op: squeue::Entry) -> Ops {
        let mut ops = Collect::default();
        ops.add(Some((slot, op)));
        ops.ops()
    }

    pub(crate) fn add(&mut self, op: Option<(u8, squeue::Entry)>) {
        let Some(op) = op else { return };
        let free = self.0.iter_mut().find(|o| o.is_none());
        debug_assert!(free.is_some(), "more ops than buffers");
        if let Some(free) = free {
            *free = Some(op);
        }
    }

    pub(crate) fn ops(self) -> Ops {
        self.0
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::net::TcpStream;

    use super::super::arena::Arena;
    use super::super::core::Ctx;
    use super::Ops;
    use crate::engine::OpError;

    /// The slots of the ops a step asked for.
    pub(crate) fn slots(ops: Result<Option<Ops>, OpError>) -> Vec<u8> {
        let ops = ops.expect("no error").expect("the transfer goes on");
        ops.iter().flatten().map(|(s, _)| *s).collect()
    }

    /// Runs `test` with an arena of `buffers` 4 KiB buffers and a connected socket, builds
    /// the transfer with `make`, and checks that releasing it gives every buffer back.
    pub(crate) fn with_transfer<T>(
        buffers: usize,
        make: impl FnOnce(TcpStream, &mut Arena) -> T,
        test: impl FnOnce(&mut Ctx<'_>, &mut T),
        release: impl FnOnce(T, &mut Arena),
    ) {
        let ring = io_uring::IoUring::new(8).unwrap();
        let mut arena = Arena::new(&ring, buffers, 4096);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (sock, _) = l.accept().unwrap();
        let mut t = make(sock, &mut arena);
        test(&mut Ctx { arena: &mut arena }, &mut t);
        release(t, &mut arena);
        let back = std::iter::from_fn(|| arena.try_take()).count();
        assert_eq!(back, buffers);
    }
}

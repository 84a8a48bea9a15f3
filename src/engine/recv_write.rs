//! Socket→file through the core's registered buffers: io_uring `Recv` into a buffer, then
//! `WriteFixed` from it. With a second buffer free in the arena and positional writes, the
//! next receive runs while the previous buffer is written: a direct write waits for the
//! device, and with one buffer the socket sat unread meanwhile. Appends keep one buffer,
//! since only the file position orders their writes.
//!
//! Each buffer has at most one op in flight and its index is that op's slot. Receives are
//! strictly one at a time, so the stream's bytes arrive in order; each buffer's bytes are
//! written at the offset they arrived for, and the transfer ends only when every write is done.

use std::fs::File;
use std::net::TcpStream;
use std::os::fd::AsRawFd;

use io_uring::{opcode, squeue, types};

use super::arena::{Arena, Buffer};
use super::core::Ctx;
use super::parts::{self, Collect, Part, Slotted};
use super::transfer::completed;
use super::{Observer, OpError};

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Receiving,
    /// `len` bytes received for file offset `at` (`None`: the end, O_APPEND); `done` written.
    Writing {
        at: Option<u64>,
        done: usize,
        len: usize,
    },
}

pub(crate) struct RecvWrite {
    sock: TcpStream,
    file: File,
    /// File offset of the next byte to receive; `None` appends.
    next: Option<u64>,
    observer: Option<Box<dyn Observer>>,
    parts: Vec<Part<State>>,
    /// The peer closed: no receive is started again.
    ended: bool,
}

impl RecvWrite {
    pub(crate) fn new(
        sock: TcpStream,
        file: File,
        offset: Option<u64>,
        observer: Option<Box<dyn Observer>>,
        arena: &mut Arena,
    ) -> RecvWrite {
        RecvWrite {
            sock,
            file,
            next: offset,
            observer,
            // Appends take one buffer: only the file position orders their writes.
            parts: parts::take(arena, offset.is_some(), State::Free),
            ended: false,
        }
    }

    /// Gives the buffers back (the core calls this once no op of the transfer is in flight).
    pub(crate) fn release(self, arena: &mut Arena) {
        parts::release(self.parts, arena);
    }

    /// A receive into a free buffer, unless one is running or the peer closed.
    fn next_receive(&mut self, ctx: &mut Ctx<'_>) -> Option<(u8, squeue::Entry)> {
        let receiving = self.parts.iter().any(|p| p.state == State::Receiving);
        if self.ended || receiving {
            return None;
        }
        let i = self.parts.iter().position(|p| p.state == State::Free)?;
        let part = &mut self.parts[i];
        part.state = State::Receiving;
        let (ptr, _) = ctx.arena.ptr(&mut part.buf);
        let len = ctx.arena.buf_size() as u32;
        let op = opcode::Recv::new(types::Fd(self.sock.as_raw_fd()), ptr, len)
            .flags(libc::MSG_WAITALL)
            .build();
        Some((i as u8, op))
    }
}

impl Slotted for RecvWrite {
    fn start(&mut self, ctx: &mut Ctx<'_>, ops: &mut Collect) {
        ops.add(self.next_receive(ctx));
    }

    fn over(&self) -> bool {
        self.ended && self.parts.iter().all(|p| p.state == State::Free)
    }

    fn finish(&mut self) {
        if let Some(o) = &mut self.observer {
            o.complete();
        }
    }

    fn completed(
        &mut self,
        ctx: &mut Ctx<'_>,
        i: usize,
        res: i32,
        moved: &mut u64,
    ) -> Result<Option<squeue::Entry>, OpError> {
        let part = self.parts.get_mut(i).ok_or(OpError::Stopped)?;
        match part.state {
            State::Free => Err(OpError::Stopped),
            State::Receiving => {
                let n = completed("recv", res)?;
                if n == 0 {
                    self.ended = true;
                    part.state = State::Free;
                    return Ok(None);
                }
                if let Some(o) = &mut self.observer {
                    // The kernel is done with the buffer: the recv completed.
                    o.observe(ctx.arena.bytes(&part.buf, n));
                }
                let at = self.next;
                if let Some(next) = &mut self.next {
                    *next = next
                        .checked_add(n as u64)
                        .ok_or_else(|| OpError::io("recv", std::io::Error::other("file offset overflows")))?;
                }
                part.state = State::Writing { at, done: 0, len: n };
                Ok(Some(write(ctx, &self.file, &mut part.buf, at, 0, n)))
            }
            State::Writing { at, done, len } => {
                // A direct write the kernel refused is written again through the page cache.
                if super::direct::fall_back(&self.file, res, &mut part.retried) {
                    return Ok(Some(write(ctx, &self.file, &mut part.buf, at, done, len)));
                }
                let n = completed("write", res)?;
                if n == 0 {
                    return Err(OpError::io("write", std::io::Error::from_raw_os_error(libc::ENOSPC)));
                }
                *moved += n as u64;
                let done = done + n;
                if done < len {
                    part.state = State::Writing { at, done, len };
                    return Ok(Some(write(ctx, &self.file, &mut part.buf, at, done, len)));
                }
                part.state = State::Free;
                Ok(None)
            }
        }
    }
}

/// The write of the part of `buf`'s `len` received bytes from `done` on, at file offset
/// `at + done` (`at` was checked when the bytes arrived: `at + len` did not overflow).
fn write(ctx: &mut Ctx<'_>, file: &File, buf: &mut Buffer, at: Option<u64>, done: usize, len: usize) -> squeue::Entry {
    let (ptr, fixed) = ctx.arena.ptr(buf);
    let p = ptr.wrapping_add(done);
    let n = (len - done) as u32;
    // Offset -1 (u64::MAX) writes at the file position, which O_APPEND keeps at the end.
    let at = at.map_or(u64::MAX, |a| a + done as u64);
    let fd = types::Fd(file.as_raw_fd());
    match fixed {
        Some(i) => opcode::WriteFixed::new(fd, p, n, i).offset(at).build(),
        None => opcode::Write::new(fd, p, n).offset(at).build(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parts::testing::{self, slots};
    use super::*;

    fn with_transfer(buffers: usize, offset: Option<u64>, test: impl FnOnce(&mut Ctx<'_>, &mut RecvWrite)) {
        let make = |sock, arena: &mut Arena| RecvWrite::new(sock, tempfile::tempfile().unwrap(), offset, None, arena);
        testing::with_transfer(buffers, make, test, RecvWrite::release);
    }

    #[test]
    fn the_next_receive_runs_while_a_buffer_is_written() {
        with_transfer(2, Some(0), |ctx, r| {
            let mut n = 0;
            assert_eq!(slots(r.step(ctx, None, &mut n)), [0], "one receive at the start");
            assert_eq!(
                slots(r.step(ctx, Some((0, 4096)), &mut n)),
                [0, 1],
                "write 0, receive into 1"
            );
            assert_eq!(
                slots(r.step(ctx, Some((1, 100)), &mut n)),
                [1],
                "write 1; no buffer free"
            );
            assert_eq!(
                slots(r.step(ctx, Some((0, 1000)), &mut n)),
                [0],
                "the rest of 0's write"
            );
            assert_eq!(n, 1000);
            assert_eq!(
                slots(r.step(ctx, Some((0, 3096)), &mut n)),
                [0],
                "0 written: receive into it"
            );
            assert_eq!(
                slots(r.step(ctx, Some((0, 0)), &mut n)),
                Vec::<u8>::new(),
                "closed; 1 still writing"
            );
            assert_eq!(
                r.step(ctx, Some((1, 100)), &mut n).unwrap().map(|_| ()),
                None,
                "all written: done"
            );
            assert_eq!(n, 4196);
        });
    }

    #[test]
    fn appends_and_a_lone_buffer_go_one_op_at_a_time() {
        for (buffers, offset) in [(2, None), (1, Some(0))] {
            with_transfer(buffers, offset, |ctx, r| {
                let mut n = 0;
                assert_eq!(slots(r.step(ctx, None, &mut n)), [0]);
                assert_eq!(slots(r.step(ctx, Some((0, 4096)), &mut n)), [0], "write only");
                assert_eq!(slots(r.step(ctx, Some((0, 4096)), &mut n)), [0], "then receive");
                assert!(
                    r.step(ctx, Some((0, 0)), &mut n).unwrap().is_none(),
                    "closed, all written"
                );
            });
        }
    }

    #[test]
    fn errors_and_a_full_disk_end_the_transfer() {
        with_transfer(2, Some(0), |ctx, r| {
            let mut n = 0;
            r.step(ctx, None, &mut n).unwrap();
            r.step(ctx, Some((0, 4096)), &mut n).unwrap();
            assert!(r.step(ctx, Some((1, -libc::ECONNRESET)), &mut n).is_err());
        });
        with_transfer(2, Some(0), |ctx, r| {
            let mut n = 0;
            r.step(ctx, None, &mut n).unwrap();
            r.step(ctx, Some((0, 4096)), &mut n).unwrap();
            assert!(
                r.step(ctx, Some((0, 0)), &mut n).is_err(),
                "a write of nothing is ENOSPC"
            );
        });
    }

    #[test]
    fn an_offset_that_would_overflow_is_an_error() {
        with_transfer(2, Some(u64::MAX - 10), |ctx, r| {
            let mut n = 0;
            r.step(ctx, None, &mut n).unwrap();
            assert!(r.step(ctx, Some((0, 4096)), &mut n).is_err());
        });
    }
}

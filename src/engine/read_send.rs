//! File→socket through the core's registered buffers: `ReadFixed` into a buffer, then `Send`
//! from it. With a second buffer free in the arena, the next part of the file is read while
//! the previous buffer is sent: a direct read waits for the device, and with one buffer the
//! socket sat idle meanwhile.
//!
//! Each buffer has at most one op in flight and its index is that op's slot. Reads ask for
//! consecutive ranges of the file and may run together; sends go strictly in file order, one
//! at a time. A read that comes back short is read on until its range is full or the file ends.

use std::fs::File;
use std::net::TcpStream;
use std::os::fd::AsRawFd;

use io_uring::{opcode, squeue, types};

use super::arena::{Arena, Buffer};
use super::core::Ctx;
use super::parts::{self, Collect, Part, Slotted};
use super::transfer::completed;
use super::OpError;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    /// Reading the range of `len` bytes at `at`, `got` of them in the buffer so far.
    Reading {
        at: u64,
        got: usize,
        len: usize,
    },
    /// Holds the `len` bytes at `at`, waiting for its turn to be sent.
    Ready {
        at: u64,
        len: usize,
    },
    Sending {
        at: u64,
        sent: usize,
        len: usize,
    },
}

impl State {
    /// File offset of the range this buffer holds or reads; `None` when free.
    fn at(self) -> Option<u64> {
        match self {
            State::Free => None,
            State::Reading { at, .. } | State::Ready { at, .. } | State::Sending { at, .. } => Some(at),
        }
    }
}

pub(crate) struct ReadSend {
    file: File,
    sock: TcpStream,
    /// File offset of the next range to read.
    next: u64,
    /// Bytes not yet asked of the file; `None`: up to its end.
    unread: Option<u64>,
    /// Where the requested bytes end (`None`: the file's end).
    end: Option<u64>,
    parts: Vec<Part<State>>,
    /// A read found the file's end: no range after it is asked for.
    ended: bool,
}

impl ReadSend {
    pub(crate) fn new(file: File, sock: TcpStream, offset: u64, length: Option<u64>, arena: &mut Arena) -> ReadSend {
        ReadSend {
            file,
            sock,
            next: offset,
            unread: length,
            end: length.map(|l| offset.saturating_add(l)),
            parts: parts::take(arena, true, State::Free),
            ended: false,
        }
    }

    /// Gives the buffers back (the core calls this once no op of the transfer is in flight).
    pub(crate) fn release(self, arena: &mut Arena) {
        parts::release(self.parts, arena);
    }

    /// A send of the first range in file order once it is read, unless a send is running.
    fn next_send(&mut self, ctx: &mut Ctx<'_>) -> Option<(u8, squeue::Entry)> {
        let (i, part) = (self.parts.iter_mut().enumerate())
            .filter(|(_, p)| p.state != State::Free)
            .min_by_key(|(_, p)| p.state.at())?;
        let State::Ready { at, len } = part.state else {
            return None;
        };
        part.state = State::Sending { at, sent: 0, len };
        Some((i as u8, send(ctx, &self.sock, &mut part.buf, 0, len)))
    }

    /// A read of the next range into a free buffer, while there is one to read.
    fn next_read(&mut self, ctx: &mut Ctx<'_>) -> Option<(u8, squeue::Entry)> {
        if self.ended || self.unread == Some(0) {
            return None;
        }
        let i = self.parts.iter().position(|p| p.state == State::Free)?;
        let size = ctx.arena.buf_size();
        let len = self.unread.map_or(size, |u| u.min(size as u64) as usize);
        let at = self.next;
        // The range ends at or before `end` (checked when made) or the file's end, which is
        // below 2^63.
        self.next = at.saturating_add(len as u64);
        if let Some(u) = &mut self.unread {
            *u -= len as u64;
        }
        let part = &mut self.parts[i];
        part.state = State::Reading { at, got: 0, len };
        Some((i as u8, read(ctx, &self.file, &mut part.buf, at, 0, len)))
    }
}

impl Slotted for ReadSend {
    fn start(&mut self, ctx: &mut Ctx<'_>, ops: &mut Collect) {
        ops.add(self.next_send(ctx));
        // Each buffer gets at most one op per step, so these fit.
        while let Some(op) = self.next_read(ctx) {
            ops.add(Some(op));
        }
    }

    fn over(&self) -> bool {
        (self.ended || self.unread == Some(0)) && self.parts.iter().all(|p| p.state == State::Free)
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
            State::Free | State::Ready { .. } => Err(OpError::Stopped),
            State::Reading { at, got, len } => {
                // A direct read the kernel refused is read again through the page cache.
                if super::direct::fall_back(&self.file, res, &mut part.retried) {
                    return Ok(Some(read(ctx, &self.file, &mut part.buf, at, got, len)));
                }
                let n = completed("read", res)?;
                let got = got + n;
                if n > 0 && got < len {
                    part.state = State::Reading { at, got, len };
                    return Ok(Some(read(ctx, &self.file, &mut part.buf, at, got, len)));
                }
                if n == 0 {
                    // The file ends inside this range: nothing after it is read.
                    self.ended = true;
                    let short = at + got as u64;
                    if let Some(end) = self.end.filter(|&e| e > short) {
                        return Err(OpError::ShortSource { got: short, want: end });
                    }
                }
                part.state = match got {
                    0 => State::Free,
                    len => State::Ready { at, len },
                };
                Ok(None)
            }
            State::Sending { at, sent, len } => {
                let n = completed("send", res)?;
                *moved += n as u64;
                let sent = sent + n;
                if sent < len {
                    part.state = State::Sending { at, sent, len };
                    return Ok(Some(send(ctx, &self.sock, &mut part.buf, sent, len)));
                }
                part.state = State::Free;
                Ok(None)
            }
        }
    }
}

/// The read of the rest of a range of `len` bytes at `at` into `buf`, `got` of them there.
fn read(ctx: &mut Ctx<'_>, file: &File, buf: &mut Buffer, at: u64, got: usize, len: usize) -> squeue::Entry {
    let (ptr, fixed) = ctx.arena.ptr(buf);
    let p = ptr.wrapping_add(got);
    let n = (len - got) as u32;
    let fd = types::Fd(file.as_raw_fd());
    let at = at.saturating_add(got as u64);
    match fixed {
        Some(i) => opcode::ReadFixed::new(fd, p, n, i).offset(at).build(),
        None => opcode::Read::new(fd, p, n).offset(at).build(),
    }
}

/// The send of `buf`'s bytes from `sent` to `len`.
fn send(ctx: &mut Ctx<'_>, sock: &TcpStream, buf: &mut Buffer, sent: usize, len: usize) -> squeue::Entry {
    let (ptr, _) = ctx.arena.ptr(buf);
    opcode::Send::new(types::Fd(sock.as_raw_fd()), ptr.wrapping_add(sent), (len - sent) as u32)
        .flags(libc::MSG_NOSIGNAL)
        .build()
}

#[cfg(test)]
mod tests {
    use super::super::parts::testing::{self, slots};
    use super::*;

    fn with_transfer(buffers: usize, offset: u64, length: Option<u64>, test: impl FnOnce(&mut Ctx<'_>, &mut ReadSend)) {
        let make = |sock, arena: &mut Arena| ReadSend::new(tempfile::tempfile().unwrap(), sock, offset, length, arena);
        testing::with_transfer(buffers, make, test, ReadSend::release);
    }

    #[test]
    fn the_next_range_is_read_while_a_buffer_is_sent_in_file_order() {
        with_transfer(2, 0, None, |ctx, r| {
            let mut n = 0;
            assert_eq!(slots(r.step(ctx, None, &mut n)), [0, 1], "two ranges read at once");
            assert_eq!(
                slots(r.step(ctx, Some((1, 4096)), &mut n)),
                Vec::<u8>::new(),
                "1 waits for 0"
            );
            assert_eq!(slots(r.step(ctx, Some((0, 1000)), &mut n)), [0], "0 short: read on");
            assert_eq!(slots(r.step(ctx, Some((0, 3096)), &mut n)), [0], "0 full: sent");
            assert_eq!(slots(r.step(ctx, Some((0, 96)), &mut n)), [0], "the rest of 0's send");
            assert_eq!(
                slots(r.step(ctx, Some((0, 4000)), &mut n)),
                [1, 0],
                "send 1, read the next range into 0"
            );
            assert_eq!(n, 4096);
            assert_eq!(
                slots(r.step(ctx, Some((0, 0)), &mut n)),
                Vec::<u8>::new(),
                "the file ended; 1 still sending"
            );
            assert_eq!(
                r.step(ctx, Some((1, 4096)), &mut n).unwrap().map(|_| ()),
                None,
                "all sent: done"
            );
            assert_eq!(n, 8192);
        });
    }

    #[test]
    fn a_lone_buffer_goes_one_op_at_a_time() {
        with_transfer(1, 0, None, |ctx, r| {
            let mut n = 0;
            assert_eq!(slots(r.step(ctx, None, &mut n)), [0]);
            assert_eq!(slots(r.step(ctx, Some((0, 4096)), &mut n)), [0], "send");
            assert_eq!(slots(r.step(ctx, Some((0, 4096)), &mut n)), [0], "then read");
            assert!(r.step(ctx, Some((0, 0)), &mut n).unwrap().is_none(), "ended, all sent");
        });
    }

    #[test]
    fn a_length_stops_the_reads_and_a_short_file_is_an_error() {
        with_transfer(2, 10, Some(5000), |ctx, r| {
            let mut n = 0;
            assert_eq!(slots(r.step(ctx, None, &mut n)), [0, 1], "4096 + 904 bytes asked");
            assert_eq!(slots(r.step(ctx, Some((0, 4096)), &mut n)), [0]);
            assert_eq!(slots(r.step(ctx, Some((1, 904)), &mut n)), Vec::<u8>::new());
            assert_eq!(slots(r.step(ctx, Some((0, 4096)), &mut n)), [1], "nothing more to read");
            assert!(r.step(ctx, Some((1, 904)), &mut n).unwrap().is_none());
            assert_eq!(n, 5000);
        });
        with_transfer(2, 0, Some(8192), |ctx, r| {
            let mut n = 0;
            r.step(ctx, None, &mut n).unwrap();
            let short = r.step(ctx, Some((1, 0)), &mut n);
            assert!(matches!(short, Err(OpError::ShortSource { got: 4096, want: 8192 })));
        });
    }

    #[test]
    fn an_empty_range_or_file_ends_at_once() {
        with_transfer(2, 0, Some(0), |ctx, r| {
            assert!(r.step(ctx, None, &mut 0).unwrap().is_none());
        });
        with_transfer(2, 0, None, |ctx, r| {
            let mut n = 0;
            r.step(ctx, None, &mut n).unwrap();
            assert_eq!(
                slots(r.step(ctx, Some((1, 0)), &mut n)),
                Vec::<u8>::new(),
                "0 still reading"
            );
            assert!(r.step(ctx, Some((0, 0)), &mut n).unwrap().is_none());
        });
    }
}

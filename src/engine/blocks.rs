//! MODE E streams on the engine. A sending stream takes blocks from a plan shared by all
//! streams of the transfer, sends each 17-byte header with `MSG_MORE` and then the payload
//! (sendfile, or read+send), and ends with its EOD (or EOF|EOD) header. A receiving stream reads
//! a header, then the payload into a buffer that is written at the block's offset; the framing
//! and EOD accounting are `block`'s.

use std::collections::VecDeque;
use std::fs::File;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use io_uring::{opcode, squeue, types};
use rustix::io::Errno;

use super::arena::Buffer;
use super::core::Ctx;
use super::OpError;
use crate::block::{ConnReceiver, Event, Header, TransferReceiver, HEADER_LEN};

/// The file ranges a MODE E send still has to cover, cut into blocks on demand.
#[derive(Debug)]
pub struct BlockPlan {
    ranges: Mutex<VecDeque<(u64, u64)>>,
    block_size: u64,
    base: u64,
}

impl BlockPlan {
    /// `ranges`: `[start, end)` file ranges to send; `base` is subtracted from file offsets on
    /// the wire (ERET P sends offsets relative to its start).
    pub fn new(ranges: Vec<(u64, u64)>, block_size: u64, base: u64) -> BlockPlan {
        BlockPlan {
            ranges: Mutex::new(ranges.into_iter().collect()),
            block_size: block_size.max(1),
            base,
        }
    }

    /// The next block: (file offset, length).
    fn next(&self) -> Option<(u64, u64)> {
        let mut r = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let (start, end) = *r.front()?;
            if start >= end {
                r.pop_front();
                continue;
            }
            let len = (end - start).min(self.block_size);
            r[0].0 = start + len;
            return Some((start, len));
        }
    }
}

fn send_entry(sock: &TcpStream, p: *const u8, len: usize, more: bool) -> squeue::Entry {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    opcode::Send::new(types::Fd(sock.as_raw_fd()), p, len as u32)
        .flags(flags)
        .build()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendPhase {
    /// Sending `hdr`; then the body of `left` bytes at `at`, or the end if `last`.
    Header {
        last: bool,
    },
    /// Payload via sendfile (zero-copy) or read+send.
    Body,
    Reading,
    Sending,
}

/// One sending stream.
pub(crate) struct BlockSend {
    file: Arc<File>,
    sock: TcpStream,
    plan: Arc<BlockPlan>,
    last: Header,
    /// Boxed: ops point into it while the transfer itself may move (map rehash).
    hdr: Box<[u8; HEADER_LEN]>,
    hdr_sent: usize,
    at: u64,
    left: u64,
    phase: SendPhase,
    zerocopy: bool,
    pub(crate) buf: Option<Buffer>,
    filled: usize,
    sent: usize,
}

impl BlockSend {
    pub(crate) fn new(
        file: Arc<File>,
        sock: TcpStream,
        plan: Arc<BlockPlan>,
        last: Header,
        zerocopy: bool,
        buf: Option<Buffer>,
    ) -> BlockSend {
        let mut s = BlockSend {
            file,
            sock,
            plan,
            last,
            hdr: Box::new([0; HEADER_LEN]),
            hdr_sent: 0,
            at: 0,
            left: 0,
            phase: SendPhase::Header { last: false },
            zerocopy,
            buf,
            filled: 0,
            sent: 0,
        };
        s.next_header();
        s
    }

    /// Prepares the next data header, or the final one when the plan is exhausted.
    fn next_header(&mut self) {
        self.hdr_sent = 0;
        match self.plan.next() {
            Some((off, len)) => {
                *self.hdr = Header::data(off - self.plan.base, len).encode();
                self.at = off;
                self.left = len;
                self.phase = SendPhase::Header { last: false };
            }
            None => {
                *self.hdr = self.last.encode();
                self.phase = SendPhase::Header { last: true };
            }
        }
    }

    /// Keeps the socket unless the final header closed it.
    pub(crate) fn into_socket(self) -> Option<TcpStream> {
        (!self.last.is_close()).then_some(self.sock)
    }

    pub(crate) fn step(
        &mut self,
        ctx: &mut Ctx<'_>,
        res: Option<i32>,
        moved: &mut u64,
    ) -> Result<Option<squeue::Entry>, OpError> {
        if let Some(r) = res {
            if r < 0 {
                return Err(OpError::errno("MODE E send", r));
            }
            let n = r as usize;
            match self.phase {
                SendPhase::Header { last } => {
                    self.hdr_sent += n;
                    if self.hdr_sent == HEADER_LEN {
                        if last {
                            return Ok(None);
                        }
                        self.phase = if self.zerocopy {
                            SendPhase::Body
                        } else {
                            SendPhase::Reading
                        };
                        if self.left == 0 {
                            self.next_header();
                        }
                    }
                }
                SendPhase::Body => {} // a poll or yield completed
                SendPhase::Reading => {
                    if n == 0 {
                        return Err(OpError::ShortSource {
                            got: self.at,
                            want: self.at + self.left,
                        });
                    }
                    self.filled = n;
                    self.sent = 0;
                    self.phase = SendPhase::Sending;
                }
                SendPhase::Sending => {
                    self.sent += n;
                    if self.sent == self.filled {
                        *moved += self.filled as u64;
                        self.at += self.filled as u64;
                        self.left -= self.filled as u64;
                        if self.left == 0 {
                            self.next_header();
                        } else {
                            self.phase = SendPhase::Reading;
                        }
                    }
                }
            }
        }
        loop {
            match self.phase {
                SendPhase::Header { last } => {
                    let p = self.hdr[self.hdr_sent..].as_ptr();
                    return Ok(Some(send_entry(&self.sock, p, HEADER_LEN - self.hdr_sent, !last)));
                }
                SendPhase::Body => match self.sendfile_block(moved)? {
                    Some(entry) => return Ok(Some(entry)),
                    None => self.next_header(),
                },
                SendPhase::Reading => {
                    let buf = self.buf.as_mut().ok_or(OpError::Stopped)?;
                    let (ptr, fixed) = ctx.arena.ptr(buf);
                    let want = self.left.min(ctx.arena.buf_size() as u64) as u32;
                    let fd = types::Fd(self.file.as_raw_fd());
                    return Ok(Some(match fixed {
                        Some(i) => opcode::ReadFixed::new(fd, ptr, want, i).offset(self.at).build(),
                        None => opcode::Read::new(fd, ptr, want).offset(self.at).build(),
                    }));
                }
                SendPhase::Sending => {
                    let buf = self.buf.as_mut().ok_or(OpError::Stopped)?;
                    let (ptr, _) = ctx.arena.ptr(buf);
                    let p = ptr.wrapping_add(self.sent);
                    return Ok(Some(send_entry(&self.sock, p, self.filled - self.sent, false)));
                }
            }
        }
    }

    /// Sends the current block's payload with sendfile; `None` when the block is done.
    fn sendfile_block(&mut self, moved: &mut u64) -> Result<Option<squeue::Entry>, OpError> {
        while self.left > 0 {
            let want = self.left.min(4 << 20) as usize;
            let mut off = self.at;
            match rustix::fs::sendfile(&self.sock, &*self.file, Some(&mut off), want) {
                Ok(0) => {
                    return Err(OpError::ShortSource {
                        got: self.at,
                        want: self.at + self.left,
                    })
                }
                Ok(n) => {
                    self.at += n as u64;
                    self.left -= n as u64;
                    *moved += n as u64;
                }
                Err(Errno::AGAIN) => {
                    return Ok(Some(
                        opcode::PollAdd::new(types::Fd(self.sock.as_raw_fd()), libc::POLLOUT as u32).build(),
                    ))
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(OpError::io("sendfile", e)),
            }
        }
        Ok(None)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecvPhase {
    Header,
    Body,
    Writing,
}

/// One receiving stream.
pub(crate) struct BlockRecv {
    file: Arc<File>,
    sock: TcpStream,
    receiver: Arc<Mutex<TransferReceiver>>,
    conn: ConnReceiver,
    base: u64,
    /// Boxed: ops point into it while the transfer itself may move (map rehash).
    hdr: Box<[u8; HEADER_LEN]>,
    hdr_got: usize,
    /// Wire offset and bytes left of the current block.
    at: u64,
    left: u64,
    phase: RecvPhase,
    pub(crate) buf: Option<Buffer>,
    filled: usize,
    written: usize,
    keep: bool,
}

impl BlockRecv {
    pub(crate) fn new(
        file: Arc<File>,
        sock: TcpStream,
        receiver: Arc<Mutex<TransferReceiver>>,
        base: u64,
        buf: Option<Buffer>,
    ) -> BlockRecv {
        BlockRecv {
            file,
            sock,
            receiver,
            conn: ConnReceiver::new(),
            base,
            hdr: Box::new([0; HEADER_LEN]),
            hdr_got: 0,
            at: 0,
            left: 0,
            phase: RecvPhase::Header,
            buf,
            filled: 0,
            written: 0,
            keep: false,
        }
    }

    /// The socket, when the sender ended with EOD but did not close.
    pub(crate) fn into_socket(self) -> Option<TcpStream> {
        self.keep.then_some(self.sock)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TransferReceiver> {
        self.receiver.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn step(
        &mut self,
        ctx: &mut Ctx<'_>,
        res: Option<i32>,
        moved: &mut u64,
    ) -> Result<Option<squeue::Entry>, OpError> {
        if let Some(r) = res {
            if r < 0 {
                return Err(OpError::errno("MODE E receive", r));
            }
            let n = r as usize;
            match self.phase {
                RecvPhase::Header => {
                    if n == 0 {
                        // Closed: fine before any header or after EOD, an error mid-header.
                        if self.hdr_got > 0 {
                            return Err(crate::block::DecodeError::ClosedMidBlock.into());
                        }
                        self.conn.on_close()?;
                        return Ok(None);
                    }
                    self.hdr_got += n;
                    if self.hdr_got == HEADER_LEN {
                        self.hdr_got = 0;
                        let h = Header::decode(&self.hdr)?;
                        let event = {
                            self.conn
                                .on_header(&h, &mut self.receiver.lock().unwrap_or_else(|e| e.into_inner()))?
                        };
                        match event {
                            Event::Payload { offset, len } => {
                                self.at = offset;
                                self.left = len;
                                if len > 0 {
                                    self.phase = RecvPhase::Body;
                                } else if self.conn.done() {
                                    self.keep = true;
                                    return Ok(None);
                                }
                            }
                            Event::Eod { close } => {
                                self.keep = !close;
                                return Ok(None);
                            }
                        }
                    }
                }
                RecvPhase::Body => {
                    if n == 0 {
                        return Err(crate::block::DecodeError::ClosedMidBlock.into());
                    }
                    self.filled = n;
                    self.written = 0;
                    self.phase = RecvPhase::Writing;
                }
                RecvPhase::Writing => {
                    if n == 0 {
                        return Err(OpError::io("write", std::io::Error::from_raw_os_error(libc::ENOSPC)));
                    }
                    self.written += n;
                    if self.written == self.filled {
                        let len = self.filled as u64;
                        self.lock().stored(self.at, len);
                        self.conn.on_payload(len);
                        *moved += len;
                        self.at += len;
                        self.left -= len;
                        if self.left > 0 {
                            self.phase = RecvPhase::Body;
                        } else if self.conn.done() {
                            self.keep = true;
                            return Ok(None);
                        } else {
                            self.phase = RecvPhase::Header;
                        }
                    }
                }
            }
        }
        let sock = types::Fd(self.sock.as_raw_fd());
        Ok(Some(match self.phase {
            RecvPhase::Header => {
                let p = self.hdr[self.hdr_got..].as_mut_ptr();
                opcode::Recv::new(sock, p, (HEADER_LEN - self.hdr_got) as u32)
                    .flags(libc::MSG_WAITALL)
                    .build()
            }
            RecvPhase::Body => {
                let buf = self.buf.as_mut().ok_or(OpError::Stopped)?;
                let (ptr, _) = ctx.arena.ptr(buf);
                let want = self.left.min(ctx.arena.buf_size() as u64) as u32;
                opcode::Recv::new(sock, ptr, want).flags(libc::MSG_WAITALL).build()
            }
            RecvPhase::Writing => {
                let buf = self.buf.as_mut().ok_or(OpError::Stopped)?;
                let (ptr, fixed) = ctx.arena.ptr(buf);
                let p = ptr.wrapping_add(self.written);
                let len = (self.filled - self.written) as u32;
                let at = self.base + self.at + self.written as u64;
                let fd = types::Fd(self.file.as_raw_fd());
                match fixed {
                    Some(i) => opcode::WriteFixed::new(fd, p, len, i).offset(at).build(),
                    None => opcode::Write::new(fd, p, len).offset(at).build(),
                }
            }
        }))
    }
}

//! MODE E streams on the engine. A sending stream takes blocks from a plan shared by all
//! streams of the transfer, sends each 17-byte header with `MSG_MORE` and then the payload
//! (sendfile, or read+send), and ends with its EOD (or EOF|EOD) header. A receiving stream reads
//! a header, then the payload into a buffer that is written at the block's offset; the framing
//! and EOD accounting are `block`'s.

use std::collections::VecDeque;
use std::fs::File;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use io_uring::{opcode, squeue, types};
use rustix::io::Errno;
use rustix::pipe::SpliceFlags;

use super::arena::Buffer;
use super::core::Ctx;
use super::OpError;

/// Largest splice of a block payload into the pipe (the pipe is sized 1 MiB).
const SPLICE_CHUNK: usize = 1 << 20;
/// Payload bytes one zero-copy receive moves before letting other transfers on the core run.
const SPLICE_BUDGET: u64 = 64 << 20;
use crate::block::xmode::{XHeader, XReceiver, BYE, READY, X_HEADER_LEN};
use crate::block::{ConnReceiver, DecodeError, Event, Header, TransferReceiver, HEADER_LEN};

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

    /// True once every block has been handed out.
    pub fn is_empty(&self) -> bool {
        self.ranges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .all(|(s, e)| s >= e)
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
    /// MODE X: waiting for the receiver's READY line.
    WaitReady,
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
    /// MODE X transaction id; `None` for MODE E.
    xmode: Option<u64>,
    /// Boxed: ops point into it while the transfer itself may move (map rehash). Big enough
    /// for either header; `hdr_len` says which.
    hdr: Box<[u8; X_HEADER_LEN]>,
    hdr_len: usize,
    hdr_sent: usize,
    /// The prepared header is the stream's last.
    hdr_last: bool,
    /// MODE X: the READY line as it arrives.
    line: Box<[u8; 16]>,
    line_got: usize,
    at: u64,
    left: u64,
    phase: SendPhase,
    zerocopy: bool,
    pub(crate) buf: Option<Buffer>,
    filled: usize,
    sent: usize,
    /// The read in flight is a retry after a direct read was refused.
    retried: bool,
}

impl BlockSend {
    /// Payloads go out with sendfile, never copied through user space.
    pub(crate) fn zero_copy(&self) -> bool {
        self.zerocopy
    }

    pub(crate) fn new(
        file: Arc<File>,
        sock: TcpStream,
        plan: Arc<BlockPlan>,
        last: Header,
        xmode: Option<u64>,
        zerocopy: bool,
        buf: Option<Buffer>,
    ) -> BlockSend {
        let mut s = BlockSend {
            file,
            sock,
            plan,
            last,
            xmode,
            hdr: Box::new([0; X_HEADER_LEN]),
            hdr_len: if xmode.is_some() { X_HEADER_LEN } else { HEADER_LEN },
            hdr_sent: 0,
            hdr_last: false,
            line: Box::new([0; 16]),
            line_got: 0,
            at: 0,
            left: 0,
            phase: SendPhase::Header { last: false },
            zerocopy,
            buf,
            filled: 0,
            sent: 0,
            retried: false,
        };
        s.next_header();
        if s.xmode.is_some() {
            s.phase = SendPhase::WaitReady;
        }
        s
    }

    fn encode(&mut self, data: Option<(u64, u64)>) {
        let h = &mut self.hdr;
        match (self.xmode, data) {
            (Some(txid), Some((offset, count))) => h.copy_from_slice(&XHeader::data(offset, count, txid).encode()),
            (Some(txid), None) => h.copy_from_slice(&XHeader::last(txid).encode()),
            (None, Some((offset, count))) => h[..HEADER_LEN].copy_from_slice(&Header::data(offset, count).encode()),
            (None, None) => h[..HEADER_LEN].copy_from_slice(&self.last.encode()),
        }
    }

    /// Prepares the next data header, or the final one when the plan is exhausted.
    fn next_header(&mut self) {
        self.hdr_sent = 0;
        match self.plan.next() {
            Some((off, len)) => {
                self.hdr_last = false;
                self.encode(Some((off - self.plan.base, len)));
                self.at = off;
                self.left = len;
                self.phase = SendPhase::Header { last: false };
            }
            None => {
                self.hdr_last = true;
                self.encode(None);
                self.phase = SendPhase::Header { last: true };
            }
        }
    }

    /// Keeps the socket unless the final header closed it.
    pub(crate) fn into_socket(self) -> Option<TcpStream> {
        // MODE X always closes (EOF|EOD|CLOSE); MODE E keeps the connection unless CLOSE.
        (self.xmode.is_none() && !self.last.is_close()).then_some(self.sock)
    }

    pub(crate) fn step(
        &mut self,
        ctx: &mut Ctx<'_>,
        res: Option<i32>,
        moved: &mut u64,
    ) -> Result<Option<squeue::Entry>, OpError> {
        // A direct read the kernel refused is read again through the page cache.
        let res = res.filter(|&r| {
            self.phase != SendPhase::Reading || !super::direct::fall_back(&self.file, r, &mut self.retried)
        });
        if let Some(r) = res {
            if r < 0 {
                return Err(OpError::errno("MODE E send", r));
            }
            let n = r as usize;
            match self.phase {
                SendPhase::WaitReady => {
                    if n == 0 {
                        // GFD.47: a receiver may close a connection without READY.
                        return Ok(None);
                    }
                    self.line_got += n;
                    let got = &self.line[..self.line_got];
                    if let Some(end) = got.iter().position(|&b| b == b'\n') {
                        if &got[..=end] != READY {
                            return Err(DecodeError::UnknownDescriptor(got[0]).into());
                        }
                        self.phase = SendPhase::Header { last: self.hdr_last };
                    } else if self.line_got == self.line.len() {
                        return Err(DecodeError::UnknownDescriptor(got[0]).into());
                    }
                }
                SendPhase::Header { last } => {
                    self.hdr_sent += n;
                    if self.hdr_sent == self.hdr_len {
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
                SendPhase::WaitReady => {
                    let p = self.line[self.line_got..].as_mut_ptr();
                    let len = (self.line.len() - self.line_got) as u32;
                    return Ok(Some(
                        opcode::Recv::new(types::Fd(self.sock.as_raw_fd()), p, len).build(),
                    ));
                }
                SendPhase::Header { last } => {
                    let p = self.hdr[self.hdr_sent..].as_ptr();
                    return Ok(Some(send_entry(&self.sock, p, self.hdr_len - self.hdr_sent, !last)));
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
    /// MODE X: sending READY.
    SendReady,
    Header,
    Body,
    Writing,
    /// Zero-copy body: waiting for the socket to be readable, then splicing through the pipe.
    Splicing,
    /// MODE X: acknowledging EOD with BYE.
    SendBye,
}

/// A MODE X connection that carried a block, until it ends (see [`XReceiver::only_idle_left`]).
pub(crate) struct Carrying(Arc<Mutex<XReceiver>>);

impl Drop for Carrying {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).release();
    }
}

/// Where a receiving stream accounts its blocks.
#[derive(Debug, Clone)]
pub enum Receiving {
    /// MODE E: EOD counting across connections.
    E(Arc<Mutex<TransferReceiver>>),
    /// MODE X: EOF seen, ranges stored.
    X(Arc<Mutex<XReceiver>>),
}

/// One receiving stream.
pub(crate) struct BlockRecv {
    file: Arc<File>,
    sock: TcpStream,
    receiver: Receiving,
    conn: ConnReceiver,
    base: u64,
    /// Boxed: ops point into it while the transfer itself may move (map rehash).
    hdr: Box<[u8; X_HEADER_LEN]>,
    hdr_len: usize,
    hdr_got: usize,
    /// MODE X: the current block carried EOD.
    eod_after: bool,
    /// Wire offset and bytes left of the current block.
    at: u64,
    left: u64,
    phase: RecvPhase,
    pub(crate) buf: Option<Buffer>,
    filled: usize,
    written: usize,
    keep: bool,
    /// Zero-copy receive: block payloads go socket → pipe → file with splice(2), never
    /// through user space (MODE E/X downloads into /dev/null or a file, `zerocopy` path).
    pipe: Option<(OwnedFd, OwnedFd)>,
    /// The write in flight is a retry after a direct write was refused.
    retried: bool,
    /// MODE X: this connection has carried a block (counted in the receiver until dropped).
    carrying: Option<Carrying>,
    /// The socket's current `SO_RCVLOWAT`: never more than the bytes this stream still
    /// expects for sure (the rest of the block being spliced), so a wake-up cannot be lost.
    lowat: i32,
}

/// The most a MODE E payload splice waits for before it wakes: a whole default block (1 MiB)
/// at once. Capped at the stream-mode 512 KiB (two wake-ups per block), 2 GiB `-p 4`
/// downloads into /dev/null took 0.68–0.94 s; with one wake-up per block 0.32–0.56 s (`-p 2`
/// 0.72–0.83 against 0.23–0.42 s; 2-vCPU VM, 8 alternating rounds). Stream mode gained
/// nothing from a larger mark. The kernel sizes an autotuned receive buffer to twice the mark.
const BLOCK_RCV_LOWAT: i32 = 2 << 20;

impl BlockRecv {
    /// Payloads are spliced into the file, never copied through user space.
    pub(crate) fn zero_copy(&self) -> bool {
        self.pipe.is_some()
    }

    /// A MODE X connection reset before its first header: the sender never took it (nothing
    /// was sent on it, so nothing was lost); not an error. `ConnReceiver::on_close` still
    /// refuses it if a block or an unfinished EOD sequence was under way.
    fn unserved_x_connection(&self, res: i32) -> bool {
        let reset = res == -libc::ECONNRESET || res == -libc::EPIPE;
        let before_any_header = matches!(self.phase, RecvPhase::SendReady)
            || (matches!(self.phase, RecvPhase::Header) && self.hdr_got == 0);
        reset && before_any_header && self.carrying.is_none() && matches!(self.receiver, Receiving::X(_))
    }

    pub(crate) fn new(
        file: Arc<File>,
        sock: TcpStream,
        receiver: Receiving,
        base: u64,
        buf: Option<Buffer>,
        pipe: Option<(OwnedFd, OwnedFd)>,
    ) -> BlockRecv {
        let x = matches!(receiver, Receiving::X(_));
        BlockRecv {
            file,
            sock,
            receiver,
            conn: ConnReceiver::new(),
            base,
            hdr: Box::new([0; X_HEADER_LEN]),
            hdr_len: if x { X_HEADER_LEN } else { HEADER_LEN },
            hdr_got: 0,
            eod_after: false,
            at: 0,
            left: 0,
            phase: if x { RecvPhase::SendReady } else { RecvPhase::Header },
            buf,
            filled: 0,
            written: 0,
            keep: false,
            pipe,
            retried: false,
            carrying: None,
            lowat: 1,
        }
    }

    /// Wake for `want` bytes at most (capped at [`BLOCK_RCV_LOWAT`]).
    fn expect(&mut self, want: u64) {
        let mark = want.clamp(1, BLOCK_RCV_LOWAT as u64) as i32;
        if mark != self.lowat {
            super::transfer::set_rcvlowat(&self.sock, mark);
            self.lowat = mark;
        }
    }

    /// `len` payload bytes of the current block are in the file: account them and pick the
    /// next phase. True when the stream is done.
    fn payload_stored(&mut self, len: u64, moved: &mut u64) -> Result<bool, OpError> {
        match &self.receiver {
            Receiving::E(r) => {
                let mut t = r.lock().unwrap_or_else(|e| e.into_inner());
                t.stored(self.at, len);
                self.conn.on_payload(len, &mut t)?;
            }
            Receiving::X(r) => r.lock().unwrap_or_else(|e| e.into_inner()).stored(self.at, len),
        }
        *moved += len;
        self.at += len;
        self.left -= len;
        if self.left > 0 {
            self.phase = RecvPhase::Body;
        } else if matches!(self.receiver, Receiving::X(_)) {
            self.phase = if self.eod_after {
                RecvPhase::SendBye
            } else {
                RecvPhase::Header
            };
        } else if self.conn.done() {
            self.keep = true;
            return Ok(true);
        } else {
            self.phase = RecvPhase::Header;
        }
        Ok(false)
    }

    /// Splices what the socket has of the current block into the file. Ok(true): the stream
    /// is done; Ok(false): go on from `self.phase` (Splicing again means: wait for data).
    fn splice_body(&mut self, moved: &mut u64) -> Result<bool, OpError> {
        let pipe = self.pipe.take().ok_or(OpError::Stopped)?;
        let r = self.splice_with(&pipe, moved);
        self.pipe = Some(pipe);
        r
    }

    fn splice_with(&mut self, (pipe_r, pipe_w): &(OwnedFd, OwnedFd), moved: &mut u64) -> Result<bool, OpError> {
        let mut budget = SPLICE_BUDGET;
        while self.left > 0 && budget > 0 {
            let want = self.left.min(SPLICE_CHUNK as u64) as usize;
            let n = match rustix::pipe::splice(
                &self.sock,
                None,
                pipe_w,
                None,
                want,
                SpliceFlags::NONBLOCK | SpliceFlags::MOVE,
            ) {
                Ok(0) => return Err(DecodeError::ClosedMidBlock.into()),
                Ok(n) => n,
                Err(Errno::AGAIN) => return Ok(false),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(OpError::io("splice from socket", e)),
            };
            let mut at = self.base + self.at;
            let mut left = n;
            while left > 0 {
                match rustix::pipe::splice(pipe_r, None, &*self.file, Some(&mut at), left, SpliceFlags::MOVE) {
                    Ok(0) => return Err(OpError::io("splice to file", std::io::Error::other("no progress"))),
                    Ok(m) => left -= m,
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(OpError::io("splice to file", e)),
                }
            }
            budget = budget.saturating_sub(n as u64);
            if self.payload_stored(n as u64, moved)? {
                return Ok(true);
            }
            if self.phase != RecvPhase::Body {
                return Ok(false);
            }
            self.phase = RecvPhase::Splicing;
        }
        Ok(false)
    }

    /// The socket, when the sender ended with EOD but did not close.
    pub(crate) fn into_socket(self) -> Option<TcpStream> {
        self.keep.then_some(self.sock)
    }

    /// A complete header arrived: decide what follows. `Ok(true)` ends the stream.
    fn on_header(&mut self) -> Result<bool, OpError> {
        self.hdr_got = 0;
        let e = match &self.receiver {
            Receiving::X(r) => {
                let mut raw = [0u8; X_HEADER_LEN];
                raw.copy_from_slice(&self.hdr[..]);
                let h = XHeader::decode(&raw)?;
                let len = {
                    let mut x = r.lock().unwrap_or_else(|e| e.into_inner());
                    if self.carrying.is_none() {
                        x.carry();
                        self.carrying = Some(Carrying(r.clone()));
                    }
                    x.on_header(&h)?
                };
                self.at = h.offset;
                self.left = len;
                self.eod_after = h.is_eod();
                self.phase = match (len > 0, h.is_eod()) {
                    (true, _) => RecvPhase::Body,
                    (false, true) => RecvPhase::SendBye,
                    (false, false) => RecvPhase::Header,
                };
                return Ok(false);
            }
            Receiving::E(r) => r.clone(),
        };
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(&self.hdr[..HEADER_LEN]);
        let h = Header::decode(&raw)?;
        let event = self
            .conn
            .on_header(&h, &mut e.lock().unwrap_or_else(|e| e.into_inner()))?;
        match event {
            Event::Payload { offset, len } => {
                self.at = offset;
                self.left = len;
                if len > 0 {
                    self.phase = RecvPhase::Body;
                } else if self.conn.done() {
                    self.keep = true;
                    return Ok(true);
                }
            }
            Event::Eod { close } => {
                self.keep = !close;
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(crate) fn step(
        &mut self,
        ctx: &mut Ctx<'_>,
        res: Option<i32>,
        moved: &mut u64,
    ) -> Result<Option<squeue::Entry>, OpError> {
        // A direct write the kernel refused is written again through the page cache.
        let res = res.filter(|&r| {
            self.phase != RecvPhase::Writing || !super::direct::fall_back(&self.file, r, &mut self.retried)
        });
        if let Some(r) = res {
            // The sender may already have closed (GFD.47): BYE is best effort, and a sender
            // that closed with our BYE unread resets the connection.
            if self.phase == RecvPhase::SendBye {
                return Ok(None);
            }
            if r < 0 {
                if self.unserved_x_connection(r) {
                    // A passive MODE X sender that finished closed its listener with this
                    // connection still in its backlog: it never sent anything on it.
                    self.conn.on_close()?;
                    return Ok(None);
                }
                return Err(OpError::errno("MODE E receive", r));
            }
            let n = r as usize;
            match self.phase {
                RecvPhase::SendReady => {
                    if n != READY.len() {
                        return Err(OpError::io("MODE X READY", std::io::Error::other("short send")));
                    }
                    self.phase = RecvPhase::Header;
                }
                RecvPhase::SendBye => return Ok(None),
                RecvPhase::Header => {
                    if n == 0 {
                        // Closed: fine before any header or after EOD, an error mid-header.
                        if self.hdr_got > 0 {
                            return Err(DecodeError::ClosedMidBlock.into());
                        }
                        self.conn.on_close()?;
                        return Ok(None);
                    }
                    self.hdr_got += n;
                    if self.hdr_got == self.hdr_len && self.on_header()? {
                        return Ok(None);
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
                    if self.written == self.filled && self.payload_stored(self.filled as u64, moved)? {
                        return Ok(None);
                    }
                }
                // A poll completion (or the Nop of a used-up budget): splice what is there.
                RecvPhase::Splicing => {
                    if self.splice_body(moved)? {
                        return Ok(None);
                    }
                }
            }
        }
        // Only the splice phases come back here after every wake-up to lower the mark as the
        // block's rest shrinks; an io_uring Recv retries inside the kernel and would wait
        // forever for a mark above what the sender still sends (it keeps the connection).
        match self.phase {
            RecvPhase::Body | RecvPhase::Splicing if self.pipe.is_some() => self.expect(self.left),
            _ => self.expect(1),
        }
        let sock = types::Fd(self.sock.as_raw_fd());
        Ok(Some(match self.phase {
            RecvPhase::SendReady => send_entry(&self.sock, READY.as_ptr(), READY.len(), false),
            RecvPhase::SendBye => send_entry(&self.sock, BYE.as_ptr(), BYE.len(), false),
            RecvPhase::Header => {
                let p = self.hdr[self.hdr_got..].as_mut_ptr();
                opcode::Recv::new(sock, p, (self.hdr_len - self.hdr_got) as u32)
                    .flags(libc::MSG_WAITALL)
                    .build()
            }
            RecvPhase::Body if self.pipe.is_some() => {
                self.phase = RecvPhase::Splicing;
                opcode::PollAdd::new(sock, libc::POLLIN as u32).build()
            }
            RecvPhase::Splicing => opcode::PollAdd::new(sock, libc::POLLIN as u32).build(),
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

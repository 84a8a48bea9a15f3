//! Per-transfer state machines. [`Transfer::advance`] is called with the result of the
//! transfer's previous op (or `None` at the start) and returns the next op or the end.

use std::fs::File;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use io_uring::{opcode, squeue, types};
use rustix::io::Errno;
use rustix::pipe::SpliceFlags;
use tokio::sync::oneshot;

use super::arena::Buffer;
use super::blocks::{BlockRecv, BlockSend};
use super::core::Ctx;
use super::parts::{Collect, Slotted};
use super::read_send::ReadSend;
use super::recv_write::RecvWrite;
use super::{DataPath, Finished, OpError, Sink, Source};

/// Largest single `sendfile`/`splice` call.
const CHUNK: usize = 4 << 20;
/// Bytes a zero-copy loop moves before yielding the thread to other transfers on the core.
const BUDGET: u64 = 64 << 20;
/// Pipe size for splice receives.
const PIPE_SIZE: usize = 1 << 20;
/// Stream-mode receives are woken when this much is queued (or at the end of the stream):
/// each wake-up costs the sender a cross-CPU interrupt, once per 64 KiB segment without it.
pub(crate) const RCV_LOWAT: i32 = 512 << 10;

pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) source: Source,
    pub(crate) sink: Sink,
    pub(crate) path: DataPath,
    pub(crate) progress: Arc<AtomicU64>,
    pub(crate) done: oneshot::Sender<Result<Finished, OpError>>,
    /// Its core's claim, given back when the transfer is dropped.
    pub(crate) placed: Option<super::placement::Placed>,
}

/// Ops to submit, each with its slot: the number its completion comes back with. A transfer
/// with one op in flight at a time uses slot 0.
pub(crate) type Ops = [Option<(u8, squeue::Entry)>; super::STREAM_DEPTH];

pub(crate) enum Step {
    /// Submit these (none while the transfer waits for another op of its own).
    Submit(Ops),
    Done(Result<u64, OpError>),
}

enum Kind {
    /// File→socket with `sendfile(2)`, polled for writability.
    SendFile {
        file: File,
        sock: TcpStream,
        offset: u64,
        remaining: Option<u64>,
    },
    /// Memory→socket with io_uring `Send`.
    SendMemory { data: Bytes, sock: TcpStream, pos: usize },
    /// The same memory again and again until `left` bytes went out.
    SendRepeat {
        data: Bytes,
        sock: TcpStream,
        pos: usize,
        left: u64,
    },
    /// File→socket with io_uring `ReadFixed` then `Send`, two buffers in turn.
    ReadSend(ReadSend),
    /// Socket→file with io_uring `Recv` then `WriteFixed`, two buffers in turn.
    RecvWrite(RecvWrite),
    /// Socket→file with `splice(2)` through a pipe, polled for readability.
    SpliceRecv {
        sock: TcpStream,
        file: File,
        offset: Option<u64>,
        pipe_r: OwnedFd,
        pipe_w: OwnedFd,
    },
    /// Socket→socket (the door's relay for plain PASV to a remote pool): io_uring `Recv`
    /// then `Send` through one buffer.
    Relay {
        from: TcpStream,
        to: TcpStream,
        buf: Option<Buffer>,
        filled: usize,
        sent: usize,
        sending: bool,
    },
    /// A MODE E sending stream.
    BlockSend(BlockSend),
    /// A MODE E receiving stream.
    BlockRecv(BlockRecv),
    /// Unsupported source/sink pair or a set-up failure, reported at the first step.
    Invalid(Option<OpError>),
}

pub(crate) struct Transfer {
    kind: Kind,
    moved: u64,
    progress: Arc<AtomicU64>,
    done: oneshot::Sender<Result<Finished, OpError>>,
    pub(crate) cancelled: bool,
    _placed: Option<super::placement::Placed>,
}

/// Gives a finished transfer's buffers back to the arena and drops its files and sockets,
/// except a MODE E connection that may be reused, which it returns.
fn release(kind: Kind, ctx: &mut Ctx<'_>) -> Option<TcpStream> {
    match kind {
        Kind::RecvWrite(r) => {
            r.release(ctx.arena);
            None
        }
        Kind::ReadSend(r) => {
            r.release(ctx.arena);
            None
        }
        Kind::Relay { buf: Some(b), .. } => {
            ctx.arena.give(b);
            None
        }
        Kind::BlockSend(mut s) => {
            if let Some(b) = s.buf.take() {
                ctx.arena.give(b);
            }
            s.into_socket()
        }
        Kind::BlockRecv(mut r) => {
            if let Some(b) = r.buf.take() {
                ctx.arena.give(b);
            }
            r.into_socket()
        }
        _ => None,
    }
}

fn poll(sock: &TcpStream, events: i16) -> squeue::Entry {
    opcode::PollAdd::new(types::Fd(sock.as_raw_fd()), events as u32).build()
}

impl Transfer {
    pub(crate) fn new(job: Job, ctx: &mut Ctx<'_>) -> Transfer {
        let path = resolve(job.path, &job.source, &job.sink);
        if let (Source::Socket(sock), Sink::Discard | Sink::File { .. }) = (&job.source, &job.sink) {
            set_rcvlowat(sock, RCV_LOWAT);
        }
        let kind = match (job.source, job.sink, path) {
            (Source::File { file, offset, length }, Sink::Socket(sock), DataPath::Zerocopy) => Kind::SendFile {
                file,
                sock,
                offset,
                remaining: length,
            },
            (Source::File { file, offset, length }, Sink::Socket(sock), DataPath::ReadWrite) => {
                Kind::ReadSend(ReadSend::new(file, sock, offset, length, ctx.arena))
            }
            (Source::Memory(data), Sink::Socket(sock), _) => Kind::SendMemory { data, sock, pos: 0 },
            (Source::Repeat { pattern, total }, Sink::Socket(sock), _) if !pattern.is_empty() || total == 0 => {
                Kind::SendRepeat {
                    data: pattern,
                    sock,
                    pos: 0,
                    left: total,
                }
            }
            (Source::Socket(sock), Sink::Discard, _) => {
                match (new_pipe(), std::fs::OpenOptions::new().write(true).open("/dev/null")) {
                    (Ok((pipe_r, pipe_w)), Ok(file)) => Kind::SpliceRecv {
                        sock,
                        file,
                        offset: None,
                        pipe_r,
                        pipe_w,
                    },
                    (Err(e), _) => Kind::Invalid(Some(e)),
                    (_, Err(e)) => Kind::Invalid(Some(OpError::io("open /dev/null", e))),
                }
            }
            (Source::Socket(from), Sink::Socket(to), _) => Kind::Relay {
                from,
                to,
                buf: Some(ctx.arena.take()),
                filled: 0,
                sent: 0,
                sending: false,
            },
            (
                Source::Socket(sock),
                Sink::File {
                    file,
                    offset: Some(offset),
                    ..
                },
                DataPath::Zerocopy,
            ) => match new_pipe() {
                Ok((pipe_r, pipe_w)) => Kind::SpliceRecv {
                    sock,
                    file,
                    offset: Some(offset),
                    pipe_r,
                    pipe_w,
                },
                Err(e) => Kind::Invalid(Some(e)),
            },
            (Source::Socket(sock), Sink::File { file, offset, observer }, _) => {
                Kind::RecvWrite(RecvWrite::new(sock, file, offset, observer, ctx.arena))
            }
            (
                Source::Blocks {
                    file,
                    plan,
                    last,
                    xmode,
                },
                Sink::Socket(sock),
                path,
            ) => {
                let zerocopy = path != DataPath::ReadWrite;
                let buf = (!zerocopy).then(|| ctx.arena.take());
                Kind::BlockSend(BlockSend::new(file, sock, plan, last, xmode, zerocopy, buf))
            }
            (Source::Socket(sock), Sink::Blocks { file, receiver, base }, DataPath::Zerocopy) => match new_pipe() {
                Ok(pipe) => Kind::BlockRecv(BlockRecv::new(file, sock, receiver, base, None, Some(pipe))),
                Err(e) => Kind::Invalid(Some(e)),
            },
            (Source::Socket(sock), Sink::Blocks { file, receiver, base }, _) => {
                Kind::BlockRecv(BlockRecv::new(file, sock, receiver, base, Some(ctx.arena.take()), None))
            }
            _ => Kind::Invalid(Some(OpError::io(
                "transfer",
                std::io::Error::other("unsupported source/sink combination"),
            ))),
        };
        Transfer {
            kind,
            moved: 0,
            progress: job.progress,
            done: job.done,
            cancelled: false,
            _placed: job.placed,
        }
    }

    /// Ends the transfer: returns its buffer, closes its fds (a closed socket is the end of
    /// file in stream mode) and reports the result.
    pub(crate) fn finish(self, ctx: &mut Ctx<'_>, result: Result<u64, OpError>) {
        // The files and sockets are closed before the result goes out: whoever hears of the
        // end may delete the file at once (a full disk's space must come back) or reuse the
        // port.
        let socket = release(self.kind, ctx);
        // Only a cleanly finished stream hands its connection back for reuse.
        let socket = socket.filter(|_| result.is_ok());
        let _ = self.done.send(result.map(|bytes| Finished { bytes, socket }));
    }

    /// Bytes this transfer moved so far.
    pub(crate) fn moved(&self) -> u64 {
        self.moved
    }

    /// Its bytes move without a copy through user space (sendfile or splice).
    pub(crate) fn zero_copy(&self) -> bool {
        match &self.kind {
            Kind::SendFile { .. } | Kind::SpliceRecv { .. } => true,
            Kind::BlockSend(b) => b.zero_copy(),
            Kind::BlockRecv(b) => b.zero_copy(),
            _ => false,
        }
    }

    fn count(&mut self, n: u64) {
        self.moved += n;
        self.progress.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes the completion of the op in a slot (none at the start) and says what comes next.
    pub(crate) fn advance(&mut self, ctx: &mut Ctx<'_>, done: Option<(u8, i32)>) -> Step {
        let mut n = 0;
        let next = match &mut self.kind {
            Kind::RecvWrite(r) => r.step(ctx, done, &mut n),
            Kind::ReadSend(r) => r.step(ctx, done, &mut n),
            _ => self
                .step(ctx, done.map(|(_, res)| res))
                .map(|op| op.map(|e| Collect::one(0, e))),
        };
        if n > 0 {
            self.count(n);
        }
        match next {
            Ok(Some(ops)) => Step::Submit(ops),
            Ok(None) => Step::Done(Ok(self.moved)),
            Err(e) => Step::Done(Err(e)),
        }
    }

    fn step(&mut self, ctx: &mut Ctx<'_>, res: Option<i32>) -> Result<Option<squeue::Entry>, OpError> {
        let moved = self.moved;
        match &mut self.kind {
            Kind::Invalid(e) => Err(e.take().unwrap_or(OpError::Stopped)),
            Kind::BlockSend(b) => {
                let mut n = 0;
                let r = b.step(ctx, res, &mut n);
                self.count(n);
                r
            }
            Kind::BlockRecv(b) => {
                let mut n = 0;
                let r = b.step(ctx, res, &mut n);
                self.count(n);
                r
            }
            Kind::SendFile { .. } => {
                check_poll(res, "poll for writability")?;
                self.sendfile_loop()
            }
            Kind::SpliceRecv { .. } => {
                check_poll(res, "poll for readability")?;
                self.splice_loop()
            }
            Kind::SendMemory { data, sock, pos } => {
                if let Some(r) = res {
                    *pos += completed("send", r)?;
                }
                if *pos >= data.len() {
                    let n = data.len() as u64 - moved;
                    self.count(n);
                    return Ok(None);
                }
                let rest = &data[*pos..];
                let len = rest.len().min(u32::MAX as usize) as u32;
                Ok(Some(
                    opcode::Send::new(types::Fd(sock.as_raw_fd()), rest.as_ptr(), len)
                        .flags(libc::MSG_NOSIGNAL)
                        .build(),
                ))
            }
            Kind::SendRepeat { data, sock, pos, left } => {
                let mut sent = 0;
                if let Some(r) = res {
                    let n = completed("send", r)?;
                    sent = n as u64;
                    *left -= sent.min(*left);
                    *pos = (*pos + n) % data.len().max(1);
                }
                let next = (*left > 0).then(|| {
                    let rest = &data[*pos..];
                    let len = (rest.len() as u64).min(*left) as u32;
                    opcode::Send::new(types::Fd(sock.as_raw_fd()), rest.as_ptr(), len)
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                });
                self.count(sent);
                Ok(next)
            }
            Kind::Relay { .. } => self.relay(ctx, res),
            // Driven by `advance`, several ops at a time.
            Kind::RecvWrite(_) | Kind::ReadSend(_) => Err(OpError::Stopped),
        }
    }

    fn sendfile_loop(&mut self) -> Result<Option<squeue::Entry>, OpError> {
        let Kind::SendFile {
            file,
            sock,
            offset,
            remaining,
        } = &mut self.kind
        else {
            unreachable!()
        };
        let mut budget = BUDGET;
        let mut sent = 0u64;
        let result = loop {
            if *remaining == Some(0) {
                break Ok(None);
            }
            let want = remaining.map_or(CHUNK, |r| r.min(CHUNK as u64) as usize);
            let before = *offset;
            match rustix::fs::sendfile(&*sock, &*file, Some(offset), want) {
                Ok(0) => {
                    break match remaining {
                        Some(r) => Err(OpError::ShortSource {
                            got: before,
                            want: before + *r,
                        }),
                        None => Ok(None),
                    }
                }
                Ok(n) => {
                    sent += n as u64;
                    if let Some(r) = remaining {
                        *r -= n as u64;
                    }
                    budget = budget.saturating_sub(n as u64);
                    if budget == 0 {
                        break Ok(Some(opcode::Nop::new().build()));
                    }
                }
                Err(Errno::AGAIN) => break Ok(Some(poll(sock, libc::POLLOUT))),
                Err(Errno::INTR) => {}
                Err(e) => break Err(OpError::io("sendfile", e)),
            }
        };
        self.count(sent);
        result
    }

    fn splice_loop(&mut self) -> Result<Option<squeue::Entry>, OpError> {
        let Kind::SpliceRecv {
            sock,
            file,
            offset,
            pipe_r,
            pipe_w,
        } = &mut self.kind
        else {
            unreachable!()
        };
        let mut budget = BUDGET;
        let mut got = 0u64;
        let result = loop {
            match rustix::pipe::splice(
                &*sock,
                None,
                &*pipe_w,
                None,
                CHUNK,
                SpliceFlags::NONBLOCK | SpliceFlags::MOVE,
            ) {
                Ok(0) => break Ok(None),
                Ok(n) => {
                    let mut left = n;
                    while left > 0 {
                        match rustix::pipe::splice(&*pipe_r, None, &*file, offset.as_mut(), left, SpliceFlags::MOVE) {
                            Ok(0) => return Err(OpError::io("splice to file", std::io::Error::other("no progress"))),
                            Ok(m) => left -= m,
                            Err(Errno::INTR) => {}
                            Err(e) => return Err(OpError::io("splice to file", e)),
                        }
                    }
                    got += n as u64;
                    budget = budget.saturating_sub(n as u64);
                    if budget == 0 {
                        break Ok(Some(opcode::Nop::new().build()));
                    }
                }
                Err(Errno::AGAIN) => break Ok(Some(poll(sock, libc::POLLIN))),
                Err(Errno::INTR) => {}
                Err(e) => break Err(OpError::io("splice from socket", e)),
            }
        };
        self.count(got);
        result
    }

    fn relay(&mut self, ctx: &mut Ctx<'_>, res: Option<i32>) -> Result<Option<squeue::Entry>, OpError> {
        let Kind::Relay {
            from,
            to,
            buf,
            filled,
            sent,
            sending,
        } = &mut self.kind
        else {
            unreachable!()
        };
        let buf = buf.as_mut().ok_or(OpError::Stopped)?;
        let (ptr, _) = ctx.arena.ptr(buf);
        let mut relayed = 0;
        if let Some(r) = res {
            let n = completed(if *sending { "send" } else { "recv" }, r)?;
            if *sending {
                *sent += n;
                if *sent == *filled {
                    relayed = *filled as u64;
                    *sending = false;
                }
            } else if n == 0 {
                return Ok(None);
            } else {
                *filled = n;
                *sent = 0;
                *sending = true;
            }
        }
        let next = if *sending {
            let p = ptr.wrapping_add(*sent);
            opcode::Send::new(types::Fd(to.as_raw_fd()), p, (*filled - *sent) as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        } else {
            opcode::Recv::new(types::Fd(from.as_raw_fd()), ptr, ctx.arena.buf_size() as u32).build()
        };
        self.count(relayed);
        Ok(Some(next))
    }
}

/// What [`DataPath::Auto`] means for one transfer (measured on loopback, see
/// `docs/engine-paths.md`): received bytes are spliced into the file unless an observer must
/// see them or the file appends; files are sent with `sendfile`.
fn resolve(path: DataPath, source: &Source, sink: &Sink) -> DataPath {
    if path != DataPath::Auto {
        return path;
    }
    match (source, sink) {
        (
            Source::Socket(_),
            Sink::File {
                offset: Some(_),
                observer: None,
                ..
            }
            | Sink::Blocks { .. },
        ) => DataPath::Zerocopy,
        (Source::Socket(_), Sink::File { .. }) => DataPath::ReadWrite,
        _ => DataPath::Zerocopy,
    }
}

/// Sets `SO_RCVLOWAT`. Stream mode ends with the peer's close, which wakes the reader
/// whatever the mark, so a tail shorter than the mark cannot be stranded; MODE E sets it per
/// block to what it still expects. The kernel grows an autotuned receive buffer to hold twice
/// the mark, but not one fixed with `SO_RCVBUF` (SBUF, ABUF): a mark the buffer cannot hold is
/// never reached and the reader never wakes, so then the mark is a quarter of the buffer.
/// Best effort: the default (1 byte) still works.
pub(crate) fn set_rcvlowat(sock: &TcpStream, bytes: libc::c_int) {
    set_lowat(sock, bytes);
    if bytes > 1 {
        let held = rustix::net::sockopt::socket_recv_buffer_size(sock).unwrap_or(0);
        let bound = (held / 4).min(libc::c_int::MAX as usize) as libc::c_int;
        if (held as u64) < 2 * bytes as u64 {
            set_lowat(sock, bound.clamp(1, bytes));
        }
    }
}

fn set_lowat(sock: &TcpStream, bytes: libc::c_int) {
    // SAFETY: a socket fd we own, and a pointer to a c_int that outlives the call, with its size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// A completion result as a byte count, or the errno as an error.
pub(crate) fn completed(op: &'static str, res: i32) -> Result<usize, OpError> {
    if res < 0 {
        Err(OpError::errno(op, res))
    } else {
        Ok(res as usize)
    }
}

/// A poll completion: the events, or an error. `None` (first step) and Nop yields pass.
fn check_poll(res: Option<i32>, op: &'static str) -> Result<(), OpError> {
    match res {
        Some(r) if r < 0 => Err(OpError::errno(op, r)),
        _ => Ok(()),
    }
}

fn new_pipe() -> Result<(OwnedFd, OwnedFd), OpError> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK)
        .map_err(|e| OpError::io("pipe", e))?;
    // A larger pipe means fewer splice round trips; the default 64 KiB still works.
    let _ = rustix::pipe::fcntl_setpipe_size(&w, PIPE_SIZE);
    Ok((r, w))
}

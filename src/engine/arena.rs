//! One registered buffer arena per core. A buffer belongs to the transfer (and its ops in flight)
//! that took it until the transfer ends; when the arena is empty a transfer gets a heap buffer.

use io_uring::IoUring;

/// A buffer held by one transfer.
#[derive(Debug)]
pub(crate) enum Buffer {
    /// Index into the registered arena (usable with `ReadFixed`/`WriteFixed`).
    Fixed(u16),
    /// A plain heap buffer, when the arena was exhausted or could not be registered.
    Heap(Box<[u8]>),
}

pub(crate) struct Arena {
    mem: Box<[u8]>,
    /// Where the first buffer starts in `mem`: aligned for direct I/O.
    base: usize,
    buf_size: usize,
    free: Vec<u16>,
    registered: bool,
}

impl Arena {
    /// Allocates `count` buffers of `buf_size` bytes and registers them with `ring` when the
    /// kernel and `RLIMIT_MEMLOCK` allow; otherwise the buffers are used unregistered.
    pub(crate) fn new(ring: &IoUring, count: usize, buf_size: usize) -> Arena {
        let count = count.min(u16::MAX as usize);
        let align = super::direct::ALIGN;
        let mut mem = vec![0u8; count * buf_size + align].into_boxed_slice();
        let base = mem.as_ptr().align_offset(align).min(align);
        let iovecs: Vec<libc::iovec> = (0..count)
            .map(|i| libc::iovec {
                iov_base: mem[base + i * buf_size..].as_mut_ptr().cast(),
                iov_len: buf_size,
            })
            .collect();
        // SAFETY: the iovecs point into `mem`, which the arena owns and never reallocates. The
        // arena is dropped after the ring (field order in `CoreLoop`), so the kernel never
        // sees a registered buffer that was freed.
        let registered = count > 0 && unsafe { ring.submitter().register_buffers(&iovecs) }.is_ok();
        if !registered {
            warn_unregistered(count * buf_size);
        }
        Arena {
            mem,
            base,
            buf_size,
            free: (0..count as u16).rev().collect(),
            registered,
        }
    }

    pub(crate) fn buf_size(&self) -> usize {
        self.buf_size
    }

    pub(crate) fn take(&mut self) -> Buffer {
        match self.free.pop() {
            Some(i) => Buffer::Fixed(i),
            None => Buffer::Heap(vec![0u8; self.buf_size].into_boxed_slice()),
        }
    }

    /// A buffer of the arena, or none when all are taken (never a heap one).
    pub(crate) fn try_take(&mut self) -> Option<Buffer> {
        self.free.pop().map(Buffer::Fixed)
    }

    /// The first `len` bytes of a buffer, once no op is using it.
    pub(crate) fn bytes<'a>(&'a self, buf: &'a Buffer, len: usize) -> &'a [u8] {
        match buf {
            Buffer::Fixed(i) => {
                let start = self.base + *i as usize * self.buf_size;
                &self.mem[start..start + len.min(self.buf_size)]
            }
            Buffer::Heap(b) => &b[..len.min(b.len())],
        }
    }

    pub(crate) fn give(&mut self, buf: Buffer) {
        if let Buffer::Fixed(i) = buf {
            self.free.push(i);
        }
    }

    /// Start of the buffer's memory and whether it is registered (its index, if so).
    pub(crate) fn ptr(&mut self, buf: &mut Buffer) -> (*mut u8, Option<u16>) {
        match buf {
            Buffer::Fixed(i) => {
                let start = self.base + *i as usize * self.buf_size;
                let p = self.mem[start..start + self.buf_size].as_mut_ptr();
                (p, self.registered.then_some(*i))
            }
            Buffer::Heap(b) => (b.as_mut_ptr(), None),
        }
    }
}

/// Says once per process why buffers are not registered and what fixes it: the kernel counts
/// registered buffers against RLIMIT_MEMLOCK for processes without CAP_IPC_LOCK.
fn warn_unregistered(bytes: usize) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock).current;
        let limit = limit.map_or("unlimited".to_string(), |l| format!("{} KiB", l >> 10));
        tracing::warn!(
            "engine: the kernel refused to register {} MiB of buffers per core (locked-memory limit {limit}); \
             running with unregistered buffers, which costs CPU. Raise the limit: LimitMEMLOCK= in the \
             systemd unit, or `ulimit -l`",
            bytes >> 20
        );
    });
}

//! Direct I/O (`O_DIRECT`) for disk files: reads and writes bypass the page cache, straight
//! between the device and the core's aligned registered buffers. It is best effort. A
//! filesystem that refuses the flag keeps the file buffered, and an op the kernel refuses
//! for alignment (a tail shorter than a block, an unaligned REST offset or MODE E block, a
//! heap buffer) clears the flag for the rest of the file and is retried through the page cache.

use std::fs::File;

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

/// Alignment of the engine's buffers: enough for every device's logical block.
pub(crate) const ALIGN: usize = 4096;

/// Sets `O_DIRECT` on `file`; false when its filesystem refuses it (tmpfs, some FUSE).
pub fn enable(file: &File) -> bool {
    match fcntl_getfl(file) {
        Ok(flags) => fcntl_setfl(file, flags | OFlags::DIRECT).is_ok() && is_direct(file),
        Err(_) => false,
    }
}

/// Whether `file` has `O_DIRECT` set.
pub fn is_direct(file: &File) -> bool {
    fcntl_getfl(file).is_ok_and(|f| f.contains(OFlags::DIRECT))
}

/// A read or write on `file` completed with `res`: on `EINVAL` clears `O_DIRECT` and returns
/// true (the caller submits the op again, buffered) once per op. `retried` is the op's own
/// flag: the streams of a MODE E transfer share the file, so another stream may have cleared
/// the flag already while this op was in flight; a second `EINVAL` is a real error.
pub(crate) fn fall_back(file: &File, res: i32, retried: &mut bool) -> bool {
    if res != -libc::EINVAL || *retried {
        *retried = false;
        return false;
    }
    *retried = true;
    if let Ok(flags) = fcntl_getfl(file) {
        if flags.contains(OFlags::DIRECT) && fcntl_setfl(file, flags - OFlags::DIRECT).is_ok() {
            tracing::debug!("direct I/O refused for an unaligned op; going on through the page cache");
        }
    }
    true
}

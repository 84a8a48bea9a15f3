//! Lower-layer results in protocol terms: storage and pool errors to [`SessionError`], file
//! info to listing facts.

use crate::engine::OpError;
use crate::pool::PoolError;
use crate::protocol::facts::{EntryKind, Facts};
use crate::protocol::vpath::PathError;
use crate::protocol::SessionError;
use crate::storage::{FileInfo, Kind, StorageError};

pub(crate) fn storage_error(e: &StorageError) -> SessionError {
    if e.errno().is_none() && e.source.kind() == std::io::ErrorKind::InvalidInput {
        // Not the file system's answer but the client's argument (an unknown group name).
        return SessionError::BadArgument(e.source.to_string());
    }
    errno_error(e.errno(), e.to_string())
}

/// A storage failure, by errno, as the reply the client gets.
pub(crate) fn errno_error(errno: Option<i32>, message: String) -> SessionError {
    match errno {
        Some(libc::ENOENT) => SessionError::NotFound,
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) | Some(libc::ELOOP) => {
            SessionError::PermissionDenied
        }
        Some(libc::EXDEV) => SessionError::Path(PathError::Escape),
        Some(libc::EEXIST) => SessionError::AlreadyExists,
        Some(libc::ENOTDIR) => SessionError::NotADirectory,
        Some(libc::EISDIR) | Some(libc::EINVAL) => SessionError::NotAFile,
        Some(libc::ENOTEMPTY) => SessionError::NotEmpty,
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => SessionError::NoSpace,
        Some(libc::ENAMETOOLONG) => SessionError::NameTooLong,
        _ => SessionError::Local(message),
    }
}

/// A pool's failure (over the link) as the reply the client gets.
pub(crate) fn link_failure(f: &crate::link::Failure) -> SessionError {
    use crate::link::FailureKind;
    match f.kind {
        FailureKind::Storage => errno_error(f.errno, f.message.clone()),
        FailureKind::DataConnection => SessionError::DataConnection(f.message.clone()),
        FailureKind::ConnectionLost => SessionError::ConnectionLost(f.message.clone()),
        FailureKind::Aborted => SessionError::Aborted,
        FailureKind::Local => SessionError::Local(f.message.clone()),
    }
}

pub(crate) fn engine_error(e: &OpError) -> SessionError {
    match e {
        OpError::Cancelled => SessionError::Aborted,
        OpError::Io { source, .. } if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) => {
            SessionError::NoSpace
        }
        OpError::Io { op: "write", .. } | OpError::ShortSource { .. } | OpError::Stopped => {
            SessionError::Local(e.to_string())
        }
        OpError::Io { .. } | OpError::Framing(_) => SessionError::ConnectionLost(e.to_string()),
    }
}

pub(crate) fn pool_error(e: &PoolError) -> SessionError {
    match e {
        PoolError::Storage(s) => storage_error(s),
        PoolError::NoPort | PoolError::Connect(_) | PoolError::ConnectTimeout(_) => {
            SessionError::DataConnection(e.to_string())
        }
        PoolError::Stalled(_) => SessionError::ConnectionLost(e.to_string()),
        PoolError::Engine(op) => engine_error(op),
    }
}

pub(crate) fn facts(info: FileInfo) -> Facts {
    Facts {
        name: info.name,
        kind: match info.kind {
            Kind::File => EntryKind::File,
            Kind::Dir => EntryKind::Dir,
            Kind::Symlink => EntryKind::Link,
            Kind::Other => EntryKind::Other,
        },
        size: info.size,
        mtime: info.mtime,
        mode: info.mode,
        nlink: info.nlink,
        uid: info.uid,
        gid: info.gid,
    }
}

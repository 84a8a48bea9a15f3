//! Pool results in protocol terms: a pool's [`Failure`] (in this process or over the link) to
//! a [`SessionError`], file info to listing facts.

use crate::link::{Failure, FailureKind};
use crate::link::{FileInfo, Kind};
use crate::protocol::facts::{EntryKind, Facts};
use crate::protocol::vpath::PathError;
use crate::protocol::SessionError;

/// A storage failure, by errno, as the reply the client gets.
fn errno_error(errno: Option<i32>, message: String) -> SessionError {
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

/// A pool's failure as the reply the client gets.
pub(crate) fn link_failure(f: &Failure) -> SessionError {
    match f.kind {
        FailureKind::Storage => errno_error(f.errno, f.message.clone()),
        FailureKind::Argument => SessionError::BadArgument(f.message.clone()),
        FailureKind::NoSpace => SessionError::NoSpace,
        FailureKind::DataConnection => SessionError::DataConnection(f.message.clone()),
        FailureKind::ConnectionLost => SessionError::ConnectionLost(f.message.clone()),
        FailureKind::Aborted => SessionError::Aborted,
        FailureKind::Local => SessionError::Local(f.message.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::OpError;
    use crate::pool::{pool_failure, PoolError};
    use crate::storage::StorageError;

    fn reply_for(e: PoolError) -> SessionError {
        link_failure(&pool_failure(&e))
    }

    fn io(op: &'static str, errno: i32) -> OpError {
        OpError::io(op, std::io::Error::from_raw_os_error(errno))
    }

    #[test]
    fn pool_errors_become_the_replies_a_client_expects() {
        let storage = |errno| {
            PoolError::Storage(StorageError {
                op: "open",
                path: "/f".into(),
                source: std::io::Error::from_raw_os_error(errno),
            })
        };
        assert_eq!(reply_for(storage(libc::ENOENT)), SessionError::NotFound);
        assert_eq!(reply_for(storage(libc::EACCES)), SessionError::PermissionDenied);
        assert_eq!(reply_for(storage(libc::EXDEV)), SessionError::Path(PathError::Escape));
        let unknown_group = PoolError::Storage(StorageError {
            op: "chgrp",
            path: "/f".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no group x"),
        });
        assert_eq!(reply_for(unknown_group), SessionError::BadArgument("no group x".into()));
        assert_eq!(reply_for(PoolError::Engine(OpError::Cancelled)), SessionError::Aborted);
        assert_eq!(
            reply_for(PoolError::Engine(io("write", libc::ENOSPC))),
            SessionError::NoSpace
        );
        assert_eq!(
            reply_for(PoolError::Engine(io("recv", libc::EDQUOT))),
            SessionError::NoSpace
        );
        assert!(matches!(
            reply_for(PoolError::Engine(io("write", libc::EIO))),
            SessionError::Local(_)
        ));
        assert!(matches!(
            reply_for(PoolError::Engine(io("recv", libc::ECONNRESET))),
            SessionError::ConnectionLost(_)
        ));
        assert!(matches!(reply_for(PoolError::NoPort), SessionError::DataConnection(_)));
        assert!(matches!(
            reply_for(PoolError::Stalled(std::time::Duration::from_secs(1))),
            SessionError::ConnectionLost(_)
        ));
    }
}

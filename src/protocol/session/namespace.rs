//! Namespace commands and the storage operations they ask the driver for: CKSM, SITE, and the results of every storage operation.

use super::{Action, Pending, Session};

use crate::protocol::command::{CksmArg, SiteCommand};
use crate::protocol::facts::Facts;
use crate::protocol::reply::{Code, Reply};
use crate::protocol::{facts, feat, vpath, SessionError};

/// A filesystem operation the driver must run, relative to the session root (also what a door
/// asks its pools to run: the pool link carries it as it is).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StorageOp {
    /// Facts of one path (SIZE, MDTM, MLST, RNFR).
    Stat(String),
    /// The entries of a directory, or the facts of a file (the door's listings).
    List(String),
    /// Check that `path` is a directory the user may enter (CWD, CDUP).
    ChangeDir(String),
    MakeDir(String),
    RemoveDir(String),
    Delete(String),
    Rename {
        from: String,
        to: String,
    },
    /// SITE CHMOD: permission bits of a file or directory (symlinks are not followed).
    SetMode {
        path: String,
        mode: u32,
    },
    /// SITE UTIME, MFMT: modification (and access) time, Unix seconds.
    SetTime {
        path: String,
        mtime: i64,
    },
    /// SITE CHGRP: the group, by name or number.
    SetGroup {
        path: String,
        group: String,
    },
    /// Checksum of a file range (CKSM); `algorithm` is a canonical name.
    Checksum {
        algorithm: String,
        path: String,
        offset: u64,
        length: Option<u64>,
    },
}

/// Which pools run a [`StorageOp`] when the files are spread over several.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Find the pool holding this path; its facts are the answer.
    Find(&'a str),
    /// The pool holding this path.
    Holder(&'a str),
    /// Every pool: directories exist on all of them (so new files can go anywhere), and
    /// attributes are set wherever the path is.
    Every,
}

impl StorageOp {
    pub fn scope(&self) -> Scope<'_> {
        match self {
            StorageOp::Stat(p) => Scope::Find(p),
            StorageOp::Delete(p) | StorageOp::Rename { from: p, .. } | StorageOp::Checksum { path: p, .. } => {
                Scope::Holder(p)
            }
            StorageOp::List(_)
            | StorageOp::ChangeDir(_)
            | StorageOp::MakeDir(_)
            | StorageOp::RemoveDir(_)
            | StorageOp::SetMode { .. }
            | StorageOp::SetTime { .. }
            | StorageOp::SetGroup { .. } => Scope::Every,
        }
    }
}

/// Result of a successful [`StorageOp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageDone {
    Stat(Facts),
    /// Lower-case hex checksum.
    Checksum(String),
    Done,
}

impl Session {
    pub(super) fn cmd_cksm(&mut self, arg: CksmArg) -> Result<(), SessionError> {
        let algorithm = feat::checksum_name(&arg.algorithm).ok_or(SessionError::UnknownChecksum(arg.algorithm))?;
        let path = self.resolve(&arg.path)?;
        self.storage(
            Pending::Checksum,
            StorageOp::Checksum {
                algorithm: algorithm.to_string(),
                path,
                offset: arg.offset,
                length: arg.length,
            },
        );
        Ok(())
    }

    pub(super) fn cmd_site(&mut self, site: SiteCommand) -> Result<(), SessionError> {
        match site {
            SiteCommand::Help => self
                .replies
                .push_back(Reply::multi(Code::HELP, feat::site_help_lines())),
            SiteCommand::ClientInfo(_) => self.reply(Code::FILE_ACTION_OK, "OK."),
            SiteCommand::BufSize(n) => {
                self.set_buffer(n)?;
                self.reply(Code::OK, "Buffer size set.");
            }
            SiteCommand::Chmod { mode, path } => {
                let path = self.writable_path(&path)?;
                self.storage(
                    Pending::Done("SITE CHMOD command successful."),
                    StorageOp::SetMode { path, mode },
                );
            }
            SiteCommand::Utime { mtime, path } => {
                let path = self.writable_path(&path)?;
                self.storage(
                    Pending::Done("SITE UTIME command successful."),
                    StorageOp::SetTime { path, mtime },
                );
            }
            SiteCommand::Chgrp { group, path } => {
                let path = self.writable_path(&path)?;
                self.storage(
                    Pending::Done("SITE CHGRP command successful."),
                    StorageOp::SetGroup { path, group },
                );
            }
            SiteCommand::Other(name) => {
                return Err(SessionError::ParamNotImplemented(format!(
                    "SITE {name} is not supported."
                )))
            }
        }
        Ok(())
    }

    pub(super) fn resolve(&self, arg: &str) -> Result<String, SessionError> {
        vpath::resolve(&self.cwd, arg).map_err(SessionError::Path)
    }

    pub(super) fn writable_path(&self, arg: &str) -> Result<String, SessionError> {
        if !self.access.as_ref().is_some_and(|a| a.writable) {
            return Err(SessionError::ReadOnly);
        }
        self.resolve(arg)
    }

    pub(super) fn storage(&mut self, pending: Pending, op: StorageOp) {
        self.pending = pending;
        self.actions.push_back(Action::Storage(op));
    }

    /// Answers [`Action::Storage`].
    pub fn handle_storage(&mut self, result: Result<StorageDone, SessionError>) {
        let pending = std::mem::replace(&mut self.pending, Pending::None);
        let done = match result {
            Ok(done) => done,
            Err(e) => return self.error(e),
        };
        let writable = self.access.as_ref().is_some_and(|a| a.writable);
        match (pending, done) {
            (Pending::Size, StorageDone::Stat(f)) => {
                if f.kind == facts::EntryKind::Dir {
                    self.error(SessionError::NotAFile)
                } else {
                    self.reply(Code::FILE_STATUS, f.size.to_string())
                }
            }
            (Pending::Mdtm, StorageDone::Stat(f)) => self.reply(Code::FILE_STATUS, facts::timeval(f.mtime)),
            (Pending::Mlst, StorageDone::Stat(f)) => {
                let line = format!(" {}", facts::mlsx_line(&f, writable));
                self.push(Reply::multi(
                    Code::FILE_ACTION_OK,
                    vec!["Listing follows:".into(), line, "End.".into()],
                ))
            }
            (Pending::Rnfr(path), StorageDone::Stat(_)) => {
                self.rename_from = Some(path);
                self.reply(Code::PENDING_MORE_INFO, "File exists, ready for destination name.")
            }
            (Pending::Rnto, _) => self.reply(Code::FILE_ACTION_OK, "Rename successful."),
            (Pending::Cwd(path), _) => {
                self.cwd = path;
                self.reply(Code::FILE_ACTION_OK, "CWD command successful.")
            }
            (Pending::Mkd(path), _) => {
                let quoted = path.replace('"', "\"\"");
                self.reply(Code::PATH_CREATED, format!("\"{quoted}\" created."))
            }
            (Pending::Done(text), _) => self.reply(Code::FILE_ACTION_OK, text),
            (Pending::Mfmt(time, path), _) => self.reply(Code::FILE_STATUS, format!("Modify={time}; {path}")),
            (Pending::Checksum, StorageDone::Checksum(hex)) => self.reply(Code::FILE_STATUS, hex),
            (other, done) => {
                // A driver bug: keep the session usable and say so.
                self.error(SessionError::Internal(format!(
                    "unexpected storage result {done:?} for {other:?}"
                )))
            }
        }
    }
}

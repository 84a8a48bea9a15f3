//! MLSR, the recursive MLSD: the door walks the tree one directory at a time through its
//! backend (so remote pools too) and spools the lines to an unlinked temporary file as it
//! goes, so a large tree is never held in memory whole. Symlinks are listed, not followed.

use std::io::{Read, Seek, Write};

use super::Connection;
use crate::door::convert::facts;
use crate::link::Kind;
use crate::link::{MoverRequest, Spool};
use crate::protocol::facts::{listable, mlsx_line, EntryKind};
use crate::protocol::session::{StorageDone, StorageOp};
use crate::protocol::SessionError;

/// Deepest directory level MLSR descends to below its starting point.
pub const MAX_DEPTH: usize = 64;
/// Most entries one MLSR lists.
pub const MAX_ENTRIES: u64 = 1_000_000;

fn spool_error(e: std::io::Error) -> SessionError {
    SessionError::Local(format!("listing spool: {e}"))
}

impl Connection {
    /// The MLSR listing of `path` as a mover request: a spooled file when `in_process` (the
    /// pool is in this process), else its bytes (a remote pool gets them over the link).
    pub(super) async fn recursive_listing(
        &self,
        path: &str,
        writable: bool,
        in_process: bool,
    ) -> Result<MoverRequest, SessionError> {
        let spool = tempfile::tempfile().map_err(spool_error)?;
        let mut out = std::io::BufWriter::new(spool);
        let is_dir = match self.storage(StorageOp::Stat(path.to_string())).await? {
            StorageDone::Stat(f) => f.kind == EntryKind::Dir,
            _ => false,
        };
        if is_dir {
            self.walk(path, writable, &mut out).await?;
        } else {
            for info in self.entries(path).await?.into_iter().filter(|i| listable(&i.name)) {
                writeln_crlf(&mut out, &mlsx_line(&facts(info), writable))?;
            }
        }
        let mut file = out.into_inner().map_err(|e| spool_error(e.into_error()))?;
        if in_process {
            return Ok(MoverRequest::SendSpool(Spool::new(file)));
        }
        let len = file.stream_position().map_err(spool_error)?;
        if len > crate::link::MAX_FRAME as u64 / 2 {
            return Err(SessionError::Local(format!(
                "a {len}-byte recursive listing is too large to hand to a pool; list a subtree"
            )));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.rewind().map_err(spool_error)?;
        file.read_to_end(&mut bytes).map_err(spool_error)?;
        Ok(MoverRequest::SendBytes(bytes.into()))
    }

    /// Lists every directory under `top`, a directory's entries before its subdirectories'.
    async fn walk(&self, top: &str, writable: bool, out: &mut impl Write) -> Result<(), SessionError> {
        let mut stack = vec![(top.trim_end_matches('/').to_string(), String::new(), 0usize)];
        let mut listed = 0u64;
        while let Some((dir, rel, depth)) = stack.pop() {
            let entries = self.entries(if dir.is_empty() { "/" } else { &dir }).await?;
            let mut subdirs = Vec::new();
            for info in entries.into_iter().filter(|i| listable(&i.name)) {
                listed += 1;
                if listed > MAX_ENTRIES {
                    return Err(SessionError::Local(format!(
                        "recursive listing stops at {MAX_ENTRIES} entries; list a subtree"
                    )));
                }
                let name = info.name.clone();
                let shown = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                if info.kind == Kind::Dir {
                    subdirs.push((format!("{dir}/{name}"), shown.clone(), depth + 1));
                }
                let mut f = facts(info);
                f.name = shown;
                writeln_crlf(out, &mlsx_line(&f, writable))?;
            }
            if !subdirs.is_empty() && depth + 1 > MAX_DEPTH {
                return Err(SessionError::Local(format!(
                    "recursive listing stops at depth {MAX_DEPTH}; list a subtree"
                )));
            }
            // Popped in order: the first subdirectory is walked first.
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(())
    }
}

fn writeln_crlf(out: &mut impl Write, line: &str) -> Result<(), SessionError> {
    out.write_all(line.as_bytes())
        .and_then(|_| out.write_all(b"\r\n"))
        .map_err(spool_error)
}

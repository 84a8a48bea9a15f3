//! Namespace operations of a control connection, run on the pools: on the pool holding the
//! path, or on every pool for directories (they exist on all of them) and listings (merged).
//! With the embedded pool there is one pool, and the same code serves it.

use std::collections::HashSet;

use super::Connection;
use crate::door::convert::{facts, link_failure};
use crate::door::pools::PoolHandle;
use crate::link::FileInfo;
use crate::link::{Failure, NsReply};
use crate::protocol::session::{StorageDone, StorageOp};
use crate::protocol::SessionError;

fn err(f: Failure) -> SessionError {
    link_failure(&f)
}

impl Connection {
    pub(super) async fn storage(&self, op: StorageOp) -> Result<StorageDone, SessionError> {
        let m = &self.shared.pools;
        let on_holder = |path: String, op| async move {
            let (pool, _) = m.locate(&path).await.map_err(err)?;
            pool.ns(op).await.map_err(err).map(|_| StorageDone::Done)
        };
        match op {
            StorageOp::Stat(p) => Ok(StorageDone::Stat(facts(m.locate(&p).await.map_err(err)?.1))),
            StorageOp::List(p) => Err(SessionError::Internal(format!("list {p} as an operation"))),
            // Directories exist on every pool, so new files can go anywhere; attributes are
            // set on every pool that holds the path.
            op @ (StorageOp::ChangeDir(_)
            | StorageOp::MakeDir(_)
            | StorageOp::RemoveDir(_)
            | StorageOp::SetMode { .. }
            | StorageOp::SetTime { .. }
            | StorageOp::SetGroup { .. }) => first_ok(m.ns_all(op).await).map(|_| StorageDone::Done),
            StorageOp::Delete(p) => on_holder(p.clone(), StorageOp::Delete(p)).await,
            StorageOp::Rename { from, to } => on_holder(from.clone(), StorageOp::Rename { from, to }).await,
            StorageOp::Checksum {
                algorithm,
                path,
                offset,
                length,
            } => {
                let (pool, _) = m.locate(&path).await.map_err(err)?;
                let op = StorageOp::Checksum {
                    algorithm,
                    path,
                    offset,
                    length,
                };
                match pool.ns(op).await.map_err(err)? {
                    NsReply::Checksum(hex) => Ok(StorageDone::Checksum(hex)),
                    other => Err(SessionError::Internal(format!("pool answered {other:?}"))),
                }
            }
        }
    }

    /// The entries of a directory (or the facts of a file), merged from every pool (a name
    /// present on several pools appears once).
    pub(super) async fn entries(&self, path: &str) -> Result<Vec<FileInfo>, SessionError> {
        let mut merged: Vec<FileInfo> = Vec::new();
        let mut seen = HashSet::new();
        let mut first_err = None;
        let mut any_ok = false;
        let results = self.shared.pools.ns_all(StorageOp::List(path.to_string())).await;
        let several = results.len() > 1;
        for (_, r) in results {
            match r {
                Ok(NsReply::Entries(entries)) if !several => {
                    any_ok = true;
                    merged = entries;
                }
                Ok(NsReply::Entries(entries)) => {
                    any_ok = true;
                    merged.extend(entries.into_iter().filter(|e| seen.insert(e.name.clone())));
                }
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if !any_ok {
            return Err(first_err.map(err).unwrap_or(SessionError::NotFound));
        }
        if several {
            merged.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(merged)
    }
}

/// Ok if any pool succeeded; otherwise the first failure (or "not found" without pools).
fn first_ok(results: Vec<(PoolHandle, Result<NsReply, Failure>)>) -> Result<(), SessionError> {
    let mut first_err = None;
    for (_, r) in results {
        match r {
            Ok(_) => return Ok(()),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.map(err).unwrap_or(SessionError::NotFound))
}

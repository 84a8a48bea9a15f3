//! Namespace operations of a control connection, run on the pools where the operation's
//! [`Scope`] says: the pool holding the path, or every pool (listings are merged). With the
//! embedded pool there is one pool, and the same code serves it.

use std::collections::HashSet;

use super::Connection;
use crate::door::convert::{facts, link_failure};
use crate::door::pools::PoolHandle;
use crate::link::FileInfo;
use crate::link::{Failure, NsReply};
use crate::protocol::session::{Scope, StorageDone, StorageOp};
use crate::protocol::SessionError;

fn err(f: Failure) -> SessionError {
    link_failure(&f)
}

impl Connection {
    /// Runs a storage operation where its [`Scope`] says.
    pub(super) async fn storage(&self, op: StorageOp) -> Result<StorageDone, SessionError> {
        let m = &self.pools();
        let reply = match op.scope() {
            Scope::Find(path) => return Ok(StorageDone::Stat(facts(m.locate(path).await.map_err(err)?.1))),
            Scope::Holder(path) => {
                let (pool, _) = m.locate(path).await.map_err(err)?;
                pool.ns(op).await.map_err(err)?
            }
            Scope::Every => {
                first_ok(m.ns_all(op).await)?;
                NsReply::Done
            }
        };
        match reply {
            NsReply::Done => Ok(StorageDone::Done),
            NsReply::Checksum(hex) => Ok(StorageDone::Checksum(hex)),
            NsReply::Info(info) => Ok(StorageDone::Stat(facts(info))),
            NsReply::Entries(_) => Err(SessionError::Internal("a pool answered with a listing".into())),
        }
    }

    /// The entries of a directory (or the facts of a file), merged from every pool (a name
    /// present on several pools appears once).
    pub(super) async fn entries(&self, path: &str) -> Result<Vec<FileInfo>, SessionError> {
        let mut merged: Vec<FileInfo> = Vec::new();
        let mut seen = HashSet::new();
        let mut first_err = None;
        let mut any_ok = false;
        for (_, r) in self.pools().ns_all(StorageOp::List(path.to_string())).await {
            match r {
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
        // Each pool's list is sorted already: with one pool this only checks it.
        merged.sort_by(|a, b| a.name.cmp(&b.name));
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

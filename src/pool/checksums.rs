//! Checksums the pool already knows: computed on the fly during stream uploads, keyed by path
//! and checked against the file's size and modification time before use, so CKSM right after
//! STOR needs no second read of the file.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::storage::checksum::Algorithm;
use crate::storage::{FileInfo, Root};

/// Most files remembered; beyond it the cache starts over.
const MAX_ENTRIES: usize = 4096;

#[derive(Debug)]
struct Entry {
    size: u64,
    mtime: (i64, i64),
    sums: Vec<(Algorithm, String)>,
}

/// Path → checksums of the file as it was written.
#[derive(Debug, Default)]
pub(crate) struct ChecksumCache {
    entries: Mutex<HashMap<String, Entry>>,
}

fn key(info: &FileInfo) -> (u64, (i64, i64)) {
    (info.size, (info.mtime, info.mtime_nsec))
}

impl ChecksumCache {
    /// Records the checksums of a file that was just written completely.
    pub(crate) fn remember(&self, root: &Root, path: &str, sums: Vec<(Algorithm, String)>) {
        let Ok(info) = root.stat(path) else { return };
        let (size, mtime) = key(&info);
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(path.to_string(), Entry { size, mtime, sums });
    }

    /// A whole-file checksum, if it was recorded and the file has not changed since.
    pub(crate) fn lookup(&self, root: &Root, path: &str, alg: Algorithm) -> Option<String> {
        let info = root.stat(path).ok()?;
        let (size, mtime) = key(&info);
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.get(path).filter(|e| e.size == size && e.mtime == mtime)?;
        e.sums.iter().find(|(a, _)| *a == alg).map(|(_, v)| v.clone())
    }
}

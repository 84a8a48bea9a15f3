//! `-r`: the files under a directory, as jobs; `-sync`: which of them need copying.

use std::time::UNIX_EPOCH;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::control::Control;
use super::session::FileJob;
use super::url::FtpUrl;
use super::ClientError;
use crate::protocol::client::Request;
use crate::storage::checksum::Algorithm;

/// The entries of a remote directory (MLSD over a PASV connection): (name, is_dir).
async fn list_dir(c: &mut Control, path: &str) -> Result<Vec<(String, bool)>, ClientError> {
    let addr = c.pasv().await?;
    let mut data = TcpStream::connect(addr).await?;
    c.send(&Request::Mlsd(path).to_string()).await?;
    let mut listing = Vec::new();
    // A listing is a few kilobytes of metadata: read it directly, not on the engine.
    let (read, reply) = tokio::join!(data.read_to_end(&mut listing), c.until_final());
    read?;
    reply?;
    let text = String::from_utf8_lossy(&listing);
    Ok(text
        .lines()
        .filter_map(|l| {
            let (facts, name) = l.split_once(' ')?;
            let kind = facts
                .split(';')
                .find_map(|f| f.strip_prefix("Type=").or_else(|| f.strip_prefix("type=")))?
                .to_ascii_lowercase();
            let is_dir = kind == "dir";
            (is_dir || kind == "file").then(|| (name.to_string(), is_dir))
        })
        .filter(|(n, _)| n != "." && n != ".." && !n.contains('/'))
        .collect())
}

/// Every file under a remote directory, to the same place under a local one; local
/// directories are created here.
pub async fn download_jobs(url: &FtpUrl, local: &str) -> Result<Vec<FileJob>, ClientError> {
    let mut c = Control::connect(url).await?;
    let mut todo = vec![(
        url.path.trim_end_matches('/').to_string(),
        local.trim_end_matches('/').to_string(),
    )];
    let mut jobs = Vec::new();
    while let Some((remote, here)) = todo.pop() {
        std::fs::create_dir_all(&here)?;
        for (name, is_dir) in list_dir(&mut c, &format!("{remote}/")).await? {
            let (r, l) = (format!("{remote}/{name}"), format!("{here}/{name}"));
            if is_dir {
                todo.push((r, l));
            } else {
                jobs.push(FileJob {
                    remote: url.with_path(r),
                    local: l,
                    download: true,
                });
            }
        }
    }
    c.quit().await;
    Ok(jobs)
}

/// Every file under a local directory, to the same place under a remote one; remote
/// directories are made here (MKD).
pub async fn upload_jobs(local: &str, url: &FtpUrl) -> Result<Vec<FileJob>, ClientError> {
    let mut c = Control::connect(url).await?;
    let mut todo = vec![(
        local.trim_end_matches('/').to_string(),
        url.path.trim_end_matches('/').to_string(),
    )];
    let mut jobs = Vec::new();
    while let Some((here, remote)) = todo.pop() {
        // An existing directory answers 550; a real failure shows on the uploads.
        if !remote.is_empty() {
            c.cmd(&Request::Mkd(&remote).to_string()).await?;
        }
        let mut entries: Vec<_> = std::fs::read_dir(&here)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Some(name) = e.file_name().to_str().map(String::from) else {
                continue;
            };
            let (l, r) = (format!("{here}/{name}"), format!("{remote}/{name}"));
            let kind = e.file_type()?;
            if kind.is_dir() {
                todo.push((l, r));
            } else if kind.is_file() {
                jobs.push(FileJob {
                    remote: url.with_path(r),
                    local: l,
                    download: false,
                });
            }
        }
    }
    c.quit().await;
    Ok(jobs)
}

/// Size and modification time (seconds since 1970) of one end of a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    pub mtime: Option<i64>,
}

pub fn local_stat(path: &str) -> Option<Stat> {
    let m = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64);
    Some(Stat { size: m.len(), mtime })
}

pub async fn remote_stat(c: &mut Control, path: &str) -> Result<Option<Stat>, ClientError> {
    let Some(size) = c.size(path).await? else {
        return Ok(None);
    };
    let mtime = c.mdtm(path).await?.as_deref().and_then(parse_mdtm);
    Ok(Some(Stat { size, mtime }))
}

/// `YYYYMMDDHHMMSS` (UTC) as seconds since 1970.
pub fn parse_mdtm(s: &str) -> Option<i64> {
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|v| v.parse::<u32>().ok());
    let month = time::Month::try_from(n(4..6)? as u8).ok()?;
    let date = time::Date::from_calendar_date(n(0..4)? as i32, month, n(6..8)? as u8).ok()?;
    let t = time::Time::from_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8).ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc().unix_timestamp())
}

/// globus-url-copy's `-sync-level`: 0 = the destination exists; 1 = and has the source's
/// size; 2 = and is not older than the source; 3 = and has the same checksum.
pub fn in_sync_by_stat(level: u8, src: Stat, dst: Option<Stat>) -> bool {
    let Some(dst) = dst else {
        return false;
    };
    match level {
        0 => true,
        1 | 3 => dst.size == src.size,
        _ => dst.size == src.size && matches!((src.mtime, dst.mtime), (Some(s), Some(d)) if d >= s),
    }
}

/// Level 3's checksum comparison for a server ↔ local pair.
pub async fn same_checksum(c: &mut Control, remote: &str, local: &str, alg: Algorithm) -> Result<bool, ClientError> {
    let there = c.checksum(alg, remote).await?;
    Ok(local_checksum(local, alg).await? == there)
}

/// A local file's checksum, computed off the control runtime's threads.
pub async fn local_checksum(path: &str, alg: Algorithm) -> Result<String, ClientError> {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        std::fs::File::open(&path).and_then(|f| crate::storage::checksum::file_checksum(&f, alg, 0, None))
    })
    .await
    .map_err(|e| ClientError::Data(e.to_string()))?
    .map_err(ClientError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_levels() {
        let src = Stat {
            size: 10,
            mtime: Some(100),
        };
        let older = Stat {
            size: 10,
            mtime: Some(50),
        };
        assert!(!in_sync_by_stat(0, src, None));
        assert!(in_sync_by_stat(0, src, Some(Stat { size: 1, mtime: None })));
        assert!(!in_sync_by_stat(1, src, Some(Stat { size: 1, mtime: None })));
        assert!(in_sync_by_stat(1, src, Some(older)));
        assert!(!in_sync_by_stat(2, src, Some(older)));
        assert!(in_sync_by_stat(
            2,
            src,
            Some(Stat {
                size: 10,
                mtime: Some(100)
            })
        ));
        assert_eq!(parse_mdtm("19700101000100"), Some(60));
        assert_eq!(parse_mdtm("2026133"), None);
    }
}

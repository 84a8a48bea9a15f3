//! Root-confined file access. Every path is resolved with `openat2(RESOLVE_BENEATH)` from the
//! root directory's descriptor, so neither `..` nor a symlink (absolute or relative) can reach
//! anything outside the root, even if the tree changes between check and use.
//!
//! Paths given here are the session's virtual paths (`/a/b`, `/` = root). Imports nothing else
//! of ringmover.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use thiserror::Error;

pub mod checksum;

/// A failed storage operation: what, on which path, and the OS error.
#[derive(Debug, Error)]
#[error("{op} {path}: {source}")]
pub struct StorageError {
    pub op: &'static str,
    pub path: String,
    #[source]
    pub source: io::Error,
}

impl StorageError {
    fn new(op: &'static str, path: &str, source: impl Into<io::Error>) -> StorageError {
        StorageError {
            op,
            path: path.to_string(),
            source: source.into(),
        }
    }

    /// The errno, where there is one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// True when the path tried to leave the root (RESOLVE_BENEATH reports EXDEV).
    pub fn is_escape(&self) -> bool {
        self.errno() == Some(libc::EXDEV)
    }
}

/// Kind of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// What a listing or SIZE/MDTM needs to know about one entry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileInfo {
    pub name: String,
    pub kind: Kind,
    pub size: u64,
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_nsec: i64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
}

impl FileInfo {
    fn from_stat(name: String, st: &Stat) -> FileInfo {
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        FileInfo {
            name,
            kind,
            size: st.st_size.max(0) as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as i64,
            mode: st.st_mode & 0o7777,
            nlink: st.st_nlink,
            uid: st.st_uid,
            gid: st.st_gid,
        }
    }
}

/// How a file is opened for writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteMode {
    /// Truncate to zero length first.
    pub truncate: bool,
    /// Every write goes to the end (APPE).
    pub append: bool,
}

/// An upload's open file, and where it goes once the upload succeeds.
#[derive(Debug)]
pub struct Upload {
    pub file: File,
    /// `(partial, final)`: the upload writes the partial file and [`Root::commit_upload`]
    /// renames it over the final name. `None`: it writes the final file in place.
    pub commit: Option<(String, String)>,
}

/// Suffix of the file an upload writes until it has succeeded: `dir/.NAME.ringmover-partial`.
pub const PARTIAL_SUFFIX: &str = ".ringmover-partial";

/// The partial file of an upload to `vpath` (None when the name would be too long).
pub fn partial_path(vpath: &str) -> Option<String> {
    let (parent, name) = split(vpath);
    if name.is_empty() || name.len() + PARTIAL_SUFFIX.len() + 1 > NAME_MAX {
        return None;
    }
    let sep = if parent.ends_with('/') { "" } else { "/" };
    Some(format!("{parent}{sep}.{name}{PARTIAL_SUFFIX}"))
}

/// Longest file name most Linux file systems take.
const NAME_MAX: usize = 255;

/// A directory tree that all access is confined to.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    path: PathBuf,
}

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// The path relative to the root: `/a/b` -> `a/b`, `/` -> `.`.
fn relative(vpath: &str) -> &str {
    let rel = vpath.trim_start_matches('/');
    if rel.is_empty() {
        "."
    } else {
        rel
    }
}

/// Splits a virtual path into its parent and final component.
fn split(vpath: &str) -> (&str, &str) {
    let trimmed = vpath.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(i) => (&trimmed[..i.max(1)], &trimmed[i + 1..]),
        None => ("/", trimmed),
    }
}

impl Root {
    /// Opens the root directory.
    pub fn open(path: &Path) -> Result<Root, StorageError> {
        let shown = path.display().to_string();
        let dir = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| StorageError::new("open root", &shown, e))?;
        Ok(Root {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// A directory beneath this root as a root of its own (a user's part of a pool): resolved
    /// beneath this root, so neither `..` nor a symlink can place it outside.
    pub fn subroot(&self, vpath: &str) -> Result<Root, StorageError> {
        let dir = self.open_at("open root", vpath, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        Ok(Root {
            dir,
            path: self.path.join(relative(vpath)),
        })
    }

    /// The root's real path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_at(&self, op: &'static str, vpath: &str, flags: OFlags, mode: Mode) -> Result<OwnedFd, StorageError> {
        rustix::fs::openat2(&self.dir, relative(vpath), flags | OFlags::CLOEXEC, mode, RESOLVE)
            .map_err(|e| StorageError::new(op, vpath, e))
    }

    /// Opens a regular file for reading.
    pub fn open_read(&self, vpath: &str) -> Result<(File, FileInfo), StorageError> {
        let fd = self.open_at("open", vpath, OFlags::RDONLY, Mode::empty())?;
        let st = rustix::fs::fstat(&fd).map_err(|e| StorageError::new("stat", vpath, e))?;
        let info = FileInfo::from_stat(split(vpath).1.to_string(), &st);
        if info.kind != Kind::File {
            return Err(StorageError::new(
                "open",
                vpath,
                io::Error::from_raw_os_error(libc::EISDIR),
            ));
        }
        Ok((File::from(fd), info))
    }

    /// Opens (creating with mode 0644) a regular file for writing.
    pub fn open_write(&self, vpath: &str, how: WriteMode) -> Result<File, StorageError> {
        let mut flags = OFlags::WRONLY | OFlags::CREATE;
        if how.truncate {
            flags |= OFlags::TRUNC;
        }
        if how.append {
            flags |= OFlags::APPEND;
        }
        let fd = self.open_at("create", vpath, flags, Mode::from_raw_mode(0o644))?;
        Ok(File::from(fd))
    }

    /// Opens the file an upload writes. A fresh upload (`truncate`) and one that continues an
    /// earlier failed upload write the partial file, renamed over `vpath` by
    /// [`commit_upload`](Self::commit_upload) once every byte is in, so a file never looks
    /// complete when it is not. A restart or append onto an existing complete file with no
    /// partial writes that file in place, as the client asked.
    pub fn open_upload(&self, vpath: &str, how: WriteMode) -> Result<Upload, StorageError> {
        let existing = match self.stat(vpath) {
            Ok(info) if info.kind == Kind::Dir => {
                return Err(StorageError::new(
                    "create",
                    vpath,
                    io::Error::from_raw_os_error(libc::EISDIR),
                ))
            }
            // A device, FIFO or socket is never written into, nor replaced by an upload.
            Ok(info) if info.kind != Kind::File => {
                return Err(StorageError::new(
                    "create",
                    vpath,
                    io::Error::from_raw_os_error(libc::EINVAL),
                ))
            }
            Ok(_) => true,
            Err(e) if e.errno() == Some(libc::ENOENT) => false,
            Err(e) => return Err(e),
        };
        let Some(partial) = partial_path(vpath) else {
            let file = self.open_write(vpath, how)?;
            return Ok(Upload { file, commit: None });
        };
        let continuing = self.stat(&partial).is_ok_and(|i| i.kind == Kind::File);
        if existing && !how.truncate && !continuing {
            let file = self.open_write(vpath, how)?;
            return Ok(Upload { file, commit: None });
        }
        let file = self.open_write(&partial, how)?;
        Ok(Upload {
            file,
            commit: Some((partial, vpath.to_string())),
        })
    }

    /// Puts a finished upload's partial file in place under its final name.
    pub fn commit_upload(&self, partial: &str, final_path: &str) -> Result<(), StorageError> {
        self.rename(partial, final_path)
    }

    /// Facts of a path, following symlinks that stay inside the root.
    pub fn stat(&self, vpath: &str) -> Result<FileInfo, StorageError> {
        let fd = self.open_at("stat", vpath, OFlags::PATH, Mode::empty())?;
        let st = rustix::fs::fstat(&fd).map_err(|e| StorageError::new("stat", vpath, e))?;
        let name = if vpath == "/" {
            "/".to_string()
        } else {
            split(vpath).1.to_string()
        };
        Ok(FileInfo::from_stat(name, &st))
    }

    /// The entries of a directory (without `.` and `..`), sorted by name. Symlinks are reported
    /// as themselves, not followed.
    pub fn list(&self, vpath: &str) -> Result<Vec<FileInfo>, StorageError> {
        let fd = self.open_at("list", vpath, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        let dir = rustix::fs::Dir::read_from(&fd).map_err(|e| StorageError::new("list", vpath, e))?;
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| StorageError::new("list", vpath, e))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let Ok(st) = rustix::fs::statat(&fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) else {
                continue; // removed while we listed it
            };
            out.push(FileInfo::from_stat(String::from_utf8_lossy(name).into_owned(), &st));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The facts of `vpath` as a listing: its entries when it is a directory, itself otherwise.
    pub fn list_or_stat(&self, vpath: &str) -> Result<Vec<FileInfo>, StorageError> {
        let info = self.stat(vpath)?;
        if info.kind == Kind::Dir {
            self.list(vpath)
        } else {
            Ok(vec![info])
        }
    }

    fn parent_fd(&self, op: &'static str, vpath: &str) -> Result<(OwnedFd, String), StorageError> {
        let (parent, name) = split(vpath);
        if name.is_empty() || name == "." || name == ".." {
            return Err(StorageError::new(op, vpath, io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let fd = self.open_at(op, parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        Ok((fd, name.to_string()))
    }

    /// Creates a directory (mode 0755).
    pub fn mkdir(&self, vpath: &str) -> Result<(), StorageError> {
        let (dir, name) = self.parent_fd("mkdir", vpath)?;
        rustix::fs::mkdirat(dir.as_fd(), name.as_str(), Mode::from_raw_mode(0o755))
            .map_err(|e| StorageError::new("mkdir", vpath, e))
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, vpath: &str) -> Result<(), StorageError> {
        let (dir, name) = self.parent_fd("rmdir", vpath)?;
        rustix::fs::unlinkat(dir.as_fd(), name.as_str(), AtFlags::REMOVEDIR)
            .map_err(|e| StorageError::new("rmdir", vpath, e))
    }

    /// Removes a file (or a symlink, not its target).
    pub fn delete(&self, vpath: &str) -> Result<(), StorageError> {
        let (dir, name) = self.parent_fd("delete", vpath)?;
        let st = rustix::fs::statat(dir.as_fd(), name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| StorageError::new("delete", vpath, e))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Err(StorageError::new(
                "delete",
                vpath,
                io::Error::from_raw_os_error(libc::EISDIR),
            ));
        }
        rustix::fs::unlinkat(dir.as_fd(), name.as_str(), AtFlags::empty())
            .map_err(|e| StorageError::new("delete", vpath, e))
    }

    /// Renames within the root.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let (from_dir, from_name) = self.parent_fd("rename", from)?;
        let (to_dir, to_name) = self.parent_fd("rename", to)?;
        rustix::fs::renameat(from_dir.as_fd(), from_name.as_str(), to_dir.as_fd(), to_name.as_str())
            .map_err(|e| StorageError::new("rename", from, e))
    }

    /// Checksum of `length` bytes (to the end when `None`) of a file from `offset`.
    pub fn checksum(
        &self,
        vpath: &str,
        alg: checksum::Algorithm,
        offset: u64,
        length: Option<u64>,
    ) -> Result<String, StorageError> {
        let (file, _) = self.open_read(vpath)?;
        checksum::file_checksum(&file, alg, offset, length).map_err(|e| StorageError::new("checksum", vpath, e))
    }

    /// `vpath` itself as an `O_PATH` descriptor, reached through no symlink at all (a
    /// symlink anywhere on the way, the last component included, is `ELOOP`).
    fn open_no_symlinks(&self, op: &'static str, vpath: &str) -> Result<OwnedFd, StorageError> {
        rustix::fs::openat2(
            &self.dir,
            relative(vpath),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE | ResolveFlags::NO_SYMLINKS,
        )
        .map_err(|e| StorageError::new(op, vpath, e))
    }

    /// Runs `f` on the `/proc/self/fd` path of `vpath` opened without following symlinks:
    /// the change lands on exactly the inode that was checked.
    fn on_inode<T>(
        &self,
        op: &'static str,
        vpath: &str,
        f: impl FnOnce(&str) -> rustix::io::Result<T>,
    ) -> Result<T, StorageError> {
        use std::os::fd::AsRawFd;
        let fd = self.open_no_symlinks(op, vpath)?;
        f(&format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|e| StorageError::new(op, vpath, e))
    }

    /// Sets the permission bits (SITE CHMOD).
    pub fn set_mode(&self, vpath: &str, mode: u32) -> Result<(), StorageError> {
        self.on_inode("chmod", vpath, |p| {
            rustix::fs::chmod(p, Mode::from_raw_mode(mode & 0o7777))
        })
    }

    /// Sets the modification and access times, Unix seconds (SITE UTIME, MFMT).
    pub fn set_mtime(&self, vpath: &str, secs: i64) -> Result<(), StorageError> {
        let t = rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        let times = rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        };
        self.on_inode("utime", vpath, |p| {
            rustix::fs::utimensat(rustix::fs::CWD, p, &times, AtFlags::empty())
        })
    }

    /// Sets the group, a name or a number (SITE CHGRP).
    pub fn set_group(&self, vpath: &str, group: &str) -> Result<(), StorageError> {
        let gid = group_id(group).map_err(|e| StorageError::new("chgrp", vpath, e))?;
        self.on_inode("chgrp", vpath, |p| {
            rustix::fs::chown(p, None, Some(rustix::fs::Gid::from_raw(gid)))
        })
    }

    /// Checks that `vpath` is a directory that can be listed.
    pub fn check_dir(&self, vpath: &str) -> Result<(), StorageError> {
        self.open_at("cwd", vpath, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .map(drop)
    }
}

/// A group's number: the number itself, or the name looked up through the system's group
/// database (NSS, so LDAP groups too).
fn group_id(group: &str) -> io::Result<u32> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(n);
    }
    let name = std::ffi::CString::new(group).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: all-zero is a valid `struct group` (pointers null, numbers zero).
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: `name` is NUL-terminated; `entry`, `buf` (with its true length) and `found` are
    // valid for writes for the whole call, and nothing keeps pointers into `buf` afterwards
    // (only the number is read).
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut entry,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    if found.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no group '{group}'"),
        ));
    }
    Ok(entry.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, FileTypeExt};

    fn tree() -> (tempfile::TempDir, Root) {
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("secret"), b"outside").unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), b"hello").unwrap();
        symlink("../secret", root.join("up")).unwrap();
        symlink(outer.path().join("secret"), root.join("abs")).unwrap();
        symlink("d/f", root.join("inside")).unwrap();
        let r = Root::open(&root).unwrap();
        (outer, r)
    }

    #[test]
    fn reads_inside_and_follows_inner_symlinks() {
        let (_t, r) = tree();
        assert_eq!(r.open_read("/d/f").unwrap().1.size, 5);
        assert_eq!(r.open_read("/inside").unwrap().1.size, 5);
        assert_eq!(r.stat("/").unwrap().kind, Kind::Dir);
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let (_t, r) = tree();
        for p in ["/up", "/abs"] {
            let e = r.open_read(p).unwrap_err();
            assert!(e.is_escape(), "{p}: {e}");
            assert!(r
                .open_write(
                    p,
                    WriteMode {
                        truncate: true,
                        append: false
                    }
                )
                .unwrap_err()
                .is_escape());
        }
        assert!(r.stat("/abs").unwrap_err().is_escape());
    }

    #[test]
    fn listing_sorted_and_symlinks_not_followed() {
        let (_t, r) = tree();
        let names: Vec<_> = r.list("/").unwrap().into_iter().map(|i| (i.name, i.kind)).collect();
        assert_eq!(
            names,
            vec![
                ("abs".into(), Kind::Symlink),
                ("d".into(), Kind::Dir),
                ("inside".into(), Kind::Symlink),
                ("up".into(), Kind::Symlink)
            ]
        );
    }

    #[test]
    fn uploads_write_a_partial_file_until_committed() {
        use std::io::Write;
        let (t, r) = tree();
        let fresh = WriteMode {
            truncate: true,
            append: false,
        };
        let resume = WriteMode {
            truncate: false,
            append: false,
        };
        assert_eq!(partial_path("/d/x").as_deref(), Some("/d/.x.ringmover-partial"));
        assert_eq!(partial_path("/x").as_deref(), Some("/.x.ringmover-partial"));
        assert_eq!(partial_path(&format!("/{}", "n".repeat(240))), None);

        let mut up = r.open_upload("/d/x", fresh).unwrap();
        up.file.write_all(b"half").unwrap();
        assert_eq!(
            r.stat("/d/x").unwrap_err().errno(),
            Some(libc::ENOENT),
            "not complete yet"
        );
        // A restart continues the partial file, then puts it in place.
        let up = r.open_upload("/d/x", resume).unwrap();
        let (partial, fin) = up.commit.clone().unwrap();
        assert_eq!((partial.as_str(), fin.as_str()), ("/d/.x.ringmover-partial", "/d/x"));
        std::os::unix::fs::FileExt::write_at(&up.file, b" and the rest", 4).unwrap();
        r.commit_upload(&partial, &fin).unwrap();
        assert_eq!(std::fs::read(t.path().join("root/d/x")).unwrap(), b"half and the rest");
        assert!(r.stat(&partial).is_err());

        // Appending to (or restarting into) a complete file with no partial writes it in place.
        let up = r
            .open_upload(
                "/d/x",
                WriteMode {
                    truncate: false,
                    append: true,
                },
            )
            .unwrap();
        assert!(up.commit.is_none());
        // A fresh upload over an existing file replaces it only when committed.
        let mut up = r.open_upload("/d/x", fresh).unwrap();
        up.file.write_all(b"new").unwrap();
        assert_eq!(std::fs::read(t.path().join("root/d/x")).unwrap(), b"half and the rest");
        assert_eq!(r.open_upload("/d", fresh).unwrap_err().errno(), Some(libc::EISDIR));
        // Special files are neither written into nor replaced.
        let fifo = t.path().join("root/fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert_eq!(r.open_upload("/fifo", fresh).unwrap_err().errno(), Some(libc::EINVAL));
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    }

    #[test]
    fn namespace_operations() {
        let (_t, r) = tree();
        r.mkdir("/new").unwrap();
        assert_eq!(r.mkdir("/new").unwrap_err().errno(), Some(libc::EEXIST));
        r.rename("/d/f", "/new/g").unwrap();
        assert_eq!(r.stat("/new/g").unwrap().size, 5);
        assert_eq!(r.rmdir("/new").unwrap_err().errno(), Some(libc::ENOTEMPTY));
        assert_eq!(r.delete("/new").unwrap_err().errno(), Some(libc::EISDIR));
        r.delete("/new/g").unwrap();
        r.rmdir("/new").unwrap();
        r.delete("/up").unwrap(); // removes the link itself
        assert!(r.check_dir("/d").is_ok());
        assert!(r.check_dir("/inside").is_err());
    }
}

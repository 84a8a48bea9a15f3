//! File facts and their listing formats: MLSx fact lines (RFC 3659 §7), `ls -l` style LIST
//! lines, NLST names and MDTM timestamps. Pure formatting over values the caller gathered.

use time::OffsetDateTime;

/// Kind of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Link,
    Other,
}

/// What a listing needs to know about one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Modification time, seconds since the Unix epoch (UTC).
    pub mtime: i64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
}

/// Listing format of a data-channel listing command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    /// MLSD: machine-readable facts.
    Mlsd,
    /// LIST: `ls -l` style.
    List,
    /// NLST: names only.
    Nlst,
    /// MLSR: MLSD facts of a whole tree, names relative to its top (the door walks it).
    Mlsr,
}

fn datetime(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `YYYYMMDDHHMMSS` in UTC (RFC 3659 §2.3).
pub fn timeval(secs: i64) -> String {
    let t = datetime(secs);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The MLST/MLSD fact string followed by a space and the name (RFC 3659 §7.2).
/// `writable` controls the Perm fact.
pub fn mlsx_line(f: &Facts, writable: bool) -> String {
    let (kind, perm) = match (f.kind, writable) {
        (EntryKind::Dir, true) => ("dir", "elcmfpd"),
        (EntryKind::Dir, false) => ("dir", "el"),
        (_, true) => ("file", "radfw"),
        (_, false) => ("file", "r"),
    };
    let kind = if f.kind == EntryKind::Other {
        "OS.unix=special"
    } else {
        kind
    };
    format!(
        "Type={kind};Size={};Modify={};Perm={perm};UNIX.mode={:04o}; {}",
        f.size,
        timeval(f.mtime),
        f.mode & 0o7777,
        f.name
    )
}

/// One `ls -l` style line, as most FTP clients parse LIST output.
pub fn list_line(f: &Facts, now_secs: i64) -> String {
    let type_char = match f.kind {
        EntryKind::Dir => 'd',
        EntryKind::Link => 'l',
        EntryKind::File => '-',
        EntryKind::Other => '?',
    };
    let mut perms = String::with_capacity(9);
    for shift in [6u32, 3, 0] {
        let bits = (f.mode >> shift) & 7;
        perms.push(if bits & 4 != 0 { 'r' } else { '-' });
        perms.push(if bits & 2 != 0 { 'w' } else { '-' });
        perms.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    let t = datetime(f.mtime);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS[usize::from(u8::from(t.month())) - 1];
    // Within six months: show the time, otherwise the year (as ls does).
    let when = if (now_secs - f.mtime).abs() < 180 * 86400 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        format!("{:>5}", t.year())
    };
    format!(
        "{type_char}{perms} {:>3} {:>8} {:>8} {:>12} {month} {:>2} {when} {}",
        f.nlink,
        f.uid,
        f.gid,
        f.size,
        t.day(),
        f.name
    )
}

/// False for a name a listing cannot carry: a line break in it (a file made on the server's
/// host, not over FTP) would end its line early and let the rest pose as an entry of its own.
pub fn listable(name: &str) -> bool {
    !name.contains(['\r', '\n'])
}

/// Renders a whole listing in `format`, CRLF-terminated lines; names with line breaks are left
/// out (see [`listable`]).
pub fn render_listing(entries: &[Facts], format: ListFormat, writable: bool, now_secs: i64) -> Vec<u8> {
    let mut out = String::new();
    for e in entries.iter().filter(|e| listable(&e.name)) {
        let line = match format {
            ListFormat::Mlsd | ListFormat::Mlsr => mlsx_line(e, writable),
            ListFormat::List => list_line(e, now_secs),
            ListFormat::Nlst => e.name.clone(),
        };
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Facts {
        Facts {
            name: "a b.txt".into(),
            kind: EntryKind::File,
            size: 1234,
            mtime: 1_764_165_000, // 2025-11-26T13:50:00Z
            mode: 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn mlsx_known_answer() {
        assert_eq!(
            mlsx_line(&sample(), false),
            "Type=file;Size=1234;Modify=20251126135000;Perm=r;UNIX.mode=0644; a b.txt"
        );
    }

    #[test]
    fn names_with_line_breaks_stay_out_of_listings() {
        let mut bad = sample();
        bad.name = "x\r\ntype=file;size=1; fake".into();
        let text = render_listing(&[sample(), bad], ListFormat::Mlsd, false, 0);
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains("fake"));
    }

    #[test]
    fn list_line_recent_and_old() {
        let f = sample();
        assert_eq!(
            list_line(&f, f.mtime + 60),
            "-rw-r--r--   1        0        0         1234 Nov 26 13:50 a b.txt"
        );
        assert!(list_line(&f, f.mtime + 365 * 86400).contains("Nov 26  2025 a b.txt"));
    }

    #[test]
    fn timeval_format() {
        assert_eq!(timeval(0), "19700101000000");
    }
}

//! Checksums against the real globus-url-copy (-verify-checksum, -checksum-alg) and over a raw
//! control connection (CKSM ranges, SCKS pass/fail).

mod common;

use common::*;

#[test]
fn verify_checksum_download_and_upload() {
    let srv = Server::start(&[]);
    let out = scratch();
    std::fs::write(srv.path("src.bin"), pattern((5 << 20) + 3, 11)).unwrap();
    // globus-url-copy checksums local files with OpenSSL digests only: ADLER32 is covered by
    // the third-party test below, where both ends are servers.
    for alg in ["MD5", "SHA1", "SHA256"] {
        let dst = out.path().join(format!("down-{alg}"));
        let (ok, text) = guc(&[
            "-verify-checksum",
            "-checksum-alg",
            alg,
            &srv.url("/src.bin"),
            &format!("file://{}", dst.display()),
        ]);
        assert!(ok, "{alg} download: {text}");
        assert_same(&srv.path("src.bin"), &dst);
        let name = format!("up-{alg}");
        let (ok, text) = guc(&[
            "-verify-checksum",
            "-checksum-alg",
            alg,
            &format!("file://{}", dst.display()),
            &srv.user_url(&format!("/{name}")),
        ]);
        assert!(ok, "{alg} upload: {text}");
        assert_same(&dst, &srv.path(&name));
    }
}

#[test]
fn verify_checksum_third_party_adler32() {
    let a = Server::start(&[]);
    let b = Server::start(&[]);
    std::fs::write(a.path("src.bin"), pattern((3 << 20) + 1, 12)).unwrap();
    for alg in ["ADLER32", "MD5"] {
        let name = format!("/copy-{alg}");
        let (ok, text) = guc(&[
            "-verify-checksum",
            "-checksum-alg",
            alg,
            &a.url("/src.bin"),
            &b.user_url(&name),
        ]);
        assert!(ok, "{alg}: {text}");
        assert_same(&a.path("src.bin"), &b.path(&name));
    }
}

#[test]
fn cksm_and_scks_over_control() {
    let srv = Server::start(&[]);
    std::fs::write(srv.path("abc"), b"xxabcxx").unwrap();
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    assert_eq!(
        c.expect("CKSM MD5 2 3 abc", 213).text(),
        "213 900150983cd24fb0d6963f7d28e17f72"
    );
    assert_eq!(c.expect("CKSM adler32 2 3 /abc", 213).text(), "213 024d0127");
    assert_eq!(c.expect("CKSM SHA-256 0 -1 abc", 213).lines[0].len(), 4 + 64);
    assert_eq!(c.expect("CKSM crc32c 2 3 abc", 213).text(), "213 364b3fb7");
    assert_eq!(c.cmd("CKSM CRC32 0 -1 abc").code, 504);
    assert_eq!(c.cmd("CKSM MD5 0 -1 missing").code, 550);
    assert_eq!(c.cmd("CKSM MD5 5 10 abc").code, 451); // past the end of the file
    let feat = c.expect("FEAT", 211).text();
    assert!(feat.contains(" CKSM MD5") && feat.contains(" CKSUM "), "{feat}");

    // SCKS: the right checksum lets the upload complete, a wrong one fails it.
    c.expect("SCKS MD5 900150983CD24FB0D6963F7D28E17F72", 200);
    assert_eq!(c.upload("STOR ok", b"abc").code, 226);
    c.expect("SCKS ADLER32 00000000", 200);
    let r = c.upload("STOR bad", b"abc");
    assert_eq!(r.code, 451, "{}", r.text());
    assert!(r.text().contains("mismatch"));
    // The expectation applied to one upload only.
    assert_eq!(c.upload("STOR next", b"abc").code, 226);
    assert_eq!(c.cmd("SCKS MD4 00").code, 504);
    assert_eq!(c.cmd("SCKS MD5 xyz").code, 501);
}

/// The checksum of a stream upload is computed while the bytes arrive: CKSM right after STOR
/// answers from it. Proven by changing the file's bytes behind the server's back while keeping
/// its size and modification time: the answer is still the checksum of what was uploaded.
#[test]
fn cksm_after_stor_needs_no_reread() {
    let srv = Server::start(&["--upload-checksums", "md5,adler32"]);
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    let data = pattern(3_000_000, 21);
    assert_eq!(c.upload("STOR f", &data).code, 226);
    let md5 = c.expect("CKSM MD5 0 -1 f", 213).text();
    let adler = c.expect("CKSM ADLER32 0 -1 f", 213).text();

    let path = srv.path("f");
    let before = std::fs::metadata(&path).unwrap();
    let mut changed = data.clone();
    changed[100] ^= 0xff;
    std::fs::write(&path, &changed).unwrap();
    let times = [
        libc::timespec {
            tv_sec: before_secs(&before),
            tv_nsec: before_nsec(&before),
        },
        libc::timespec {
            tv_sec: before_secs(&before),
            tv_nsec: before_nsec(&before),
        },
    ];
    let cpath = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path and two valid timespecs.
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, cpath.as_ptr(), times.as_ptr(), 0) },
        0
    );
    assert_eq!(c.expect("CKSM MD5 0 -1 f", 213).text(), md5, "answered from the upload");
    assert_eq!(c.expect("CKSM ADLER32 0 -1 f", 213).text(), adler);
    // Algorithms not computed on the fly, and partial ranges, read the file.
    let sha1 = c.expect("CKSM SHA1 0 -1 f", 213).text();
    let mut h = ringmover::storage::checksum::Hasher::new(ringmover::storage::checksum::Algorithm::Sha1);
    h.update(&changed);
    assert_eq!(sha1, format!("213 {}", h.finish()));

    // A later change of size or time is noticed.
    std::fs::write(&path, b"short").unwrap();
    assert_eq!(
        c.expect("CKSM MD5 0 -1 f", 213).text(),
        format!("213 {}", md5_hex(b"short"))
    );
}

fn before_secs(m: &std::fs::Metadata) -> libc::time_t {
    use std::os::unix::fs::MetadataExt;
    m.mtime() as libc::time_t
}

fn before_nsec(m: &std::fs::Metadata) -> libc::c_long {
    use std::os::unix::fs::MetadataExt;
    m.mtime_nsec() as libc::c_long
}

fn md5_hex(data: &[u8]) -> String {
    let mut h = ringmover::storage::checksum::Hasher::new(ringmover::storage::checksum::Algorithm::Md5);
    h.update(data);
    h.finish()
}

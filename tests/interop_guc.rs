//! ringmover serve driven by the real globus-url-copy (ftp://, stream mode).

mod common;

use common::*;

const SIZES: &[(usize, &str)] = &[(0, "zero"), (1, "one"), ((1 << 20) + 7, "mib7"), (256 << 20, "big")];

#[test]
fn download_sizes_byte_for_byte() {
    let srv = Server::start(&[]);
    let out = scratch();
    for (i, (size, name)) in SIZES.iter().enumerate() {
        std::fs::write(srv.path(name), pattern(*size, i as u8)).unwrap();
        let dst = out.path().join(name);
        let (ok, text) = guc(&[&srv.url(&format!("/{name}")), &format!("file://{}", dst.display())]);
        assert!(ok, "download {name}: {text}");
        assert_same(&srv.path(name), &dst);
    }
    let log = srv.log();
    assert!(
        log.contains("direction=\"download\"") && log.contains("bytes=268435456"),
        "transfer log line: {log}"
    );
}

#[test]
fn upload_sizes_byte_for_byte() {
    let srv = Server::start(&[]);
    let src = scratch();
    for (i, (size, name)) in SIZES.iter().enumerate() {
        let p = src.path().join(name);
        std::fs::write(&p, pattern(*size, 100 + i as u8)).unwrap();
        let (ok, text) = guc(&[&format!("file://{}", p.display()), &srv.user_url(&format!("/{name}"))]);
        assert!(ok, "upload {name}: {text}");
        assert_same(&p, &srv.path(name));
    }
    assert!(srv.log().contains("user=alice"), "{}", srv.log());
}

#[test]
fn upload_every_data_path() {
    for path in ["auto", "zerocopy", "readwrite"] {
        let srv = Server::start(&["--data-path", path]);
        let src = scratch();
        let p = src.path().join("f");
        std::fs::write(&p, pattern((3 << 20) + 11, 7)).unwrap();
        let (ok, text) = guc(&[&format!("file://{}", p.display()), &srv.user_url("/f")]);
        assert!(ok, "{path}: {text}");
        assert_same(&p, &srv.path("f"));
        let dst = src.path().join("back");
        let (ok, text) = guc(&[&srv.url("/f"), &format!("file://{}", dst.display())]);
        assert!(ok, "{path}: {text}");
        assert_same(&p, &dst);
    }
}

#[test]
fn list_and_recursive_download() {
    let srv = Server::start(&[]);
    std::fs::create_dir_all(srv.path("tree/sub")).unwrap();
    std::fs::write(srv.path("tree/a.txt"), b"alpha\n").unwrap();
    std::fs::write(srv.path("tree/sub/b.bin"), pattern(70_000, 3)).unwrap();
    std::fs::write(srv.path("top.txt"), b"top").unwrap();

    let (ok, text) = guc(&["-list", &srv.url("/")]);
    assert!(ok, "{text}");
    assert!(text.contains("tree/") && text.contains("top.txt"), "{text}");

    let out = scratch();
    let dst = format!("file://{}/copy/", out.path().display());
    let (ok, text) = guc(&["-r", "-cd", &srv.url("/tree/"), &dst]);
    assert!(ok, "{text}");
    assert_same(&srv.path("tree/a.txt"), &out.path().join("copy/a.txt"));
    assert_same(&srv.path("tree/sub/b.bin"), &out.path().join("copy/sub/b.bin"));
}

#[test]
fn offset_and_length() {
    let srv = Server::start(&[]);
    let data = pattern(100_000, 9);
    std::fs::write(srv.path("f"), &data).unwrap();
    let out = scratch();

    // -off with -len: ERET P off len (the client writes at the same offset locally).
    let dst = out.path().join("part");
    let (ok, text) = guc(&[
        "-off",
        "1000",
        "-len",
        "3000",
        &srv.url("/f"),
        &format!("file://{}", dst.display()),
    ]);
    assert!(ok, "{text}");
    let got = std::fs::read(&dst).unwrap();
    assert_eq!(got.len(), 4000);
    assert_eq!(&got[1000..], &data[1000..4000]);

    // -off alone: REST off in stream mode.
    let dst = out.path().join("tail");
    let (ok, text) = guc(&["-off", "60000", &srv.url("/f"), &format!("file://{}", dst.display())]);
    assert!(ok, "{text}");
    let got = std::fs::read(&dst).unwrap();
    assert_eq!(got.len(), data.len());
    assert_eq!(&got[60000..], &data[60000..]);
}

#[test]
fn create_dest_makes_directories() {
    let srv = Server::start(&[]);
    let src = scratch();
    let p = src.path().join("f");
    std::fs::write(&p, b"nested").unwrap();
    let (ok, text) = guc(&["-cd", &format!("file://{}", p.display()), &srv.user_url("/a/b/c/f")]);
    assert!(ok, "{text}");
    assert_same(&p, &srv.path("a/b/c/f"));
}

#[test]
fn anonymous_cannot_upload() {
    let srv = Server::start(&[]);
    let src = scratch();
    let p = src.path().join("f");
    std::fs::write(&p, b"x").unwrap();
    let (ok, text) = guc(&[&format!("file://{}", p.display()), &srv.url("/f")]);
    assert!(!ok, "anonymous upload must fail: {text}");
    assert!(text.contains("550"), "{text}");
    assert!(!srv.path("f").exists());
}

#[test]
fn wrong_password_is_refused() {
    let srv = Server::start(&[]);
    let (ok, text) = guc(&["-list", &format!("ftp://{USER}:nope@{}/", srv.addr)]);
    assert!(!ok);
    assert!(text.contains("530"), "{text}");
}

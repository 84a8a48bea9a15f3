//! `ringmover copy` with many files: `-f` lists, `-cc` concurrency, `-pp` pipelining, `-fast`
//! connection reuse, `-r` trees, `-sync` levels, and the `-dp`, `-bs` and `-vb` options.

mod common;

use std::path::Path;

use common::*;

fn copy(args: &[&str]) -> (bool, String, serde_json::Value) {
    let (status, text) = ringmover("copy", args);
    let record = text
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    (status.success(), text, record)
}

const SIZES: [u64; 6] = [0, 1, (1 << 20) + 7, 3 << 20, 65536, (5 << 20) + 1];

/// Files f0..f5 under `dir`.
fn fill(dir: &Path) {
    for (i, size) in SIZES.iter().enumerate() {
        write_big(&dir.join(format!("f{i}")), *size, i as u8 + 1);
    }
}

/// A `-f` list downloading f0..f5 from `base` into `into`.
fn download_list(base: &str, into: &Path) -> tempfile::NamedTempFile {
    let mut text = String::from("# source destination\n");
    for i in 0..SIZES.len() {
        text.push_str(&format!("{base}/f{i} {}/f{i}\n", into.display()));
    }
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

fn assert_all_same(a: &Path, b: &Path) {
    for i in 0..SIZES.len() {
        assert_same(&a.join(format!("f{i}")), &b.join(format!("f{i}")));
    }
}

#[test]
fn lists_with_concurrency_pipelining_and_reuse() {
    let srv = Server::start(&[]);
    fill(srv.root.path());
    let cases: &[(&str, &[&str])] = &[
        ("cc", &["-cc", "3"]),
        ("pp", &["-pp", "-v"]),
        ("fast", &["-p", "4", "-fast"]),
        ("all", &["-p", "2", "-fast", "-pp", "-cc", "2", "-bs", "65536"]),
    ];
    for (name, opts) in cases {
        let local = scratch();
        let list = download_list(&srv.url(""), local.path());
        let mut args = opts.to_vec();
        args.extend(["--json", "-f", list.path().to_str().unwrap()]);
        let (ok, text, record) = copy(&args);
        assert!(ok, "{name}: {text}");
        assert_all_same(srv.root.path(), local.path());
        assert_eq!(record["files"], SIZES.len(), "{name}: {text}");
        assert_eq!(record["bytes"], SIZES.iter().sum::<u64>(), "{name}: {text}");
        if *name == "pp" {
            assert!(text.contains("pipelined"), "{name}: no pipelined commands: {text}");
        }
        if *name == "fast" {
            // One worker, six files in MODE E: every file after the first reuses.
            assert_eq!(record["reused_connections"], SIZES.len() - 1, "{name}: {text}");
        }
    }
    // Uploads of a tree, several at once, pipelined, on kept connections.
    let local = scratch();
    fill(local.path());
    std::fs::create_dir(local.path().join("sub")).unwrap();
    write_big(&local.path().join("sub/deep"), 4097, 9);
    let dst = srv.user_url("/tree");
    let (ok, text, record) = copy(&[
        "--json",
        "-r",
        "-cc",
        "2",
        "-pp",
        "-p",
        "2",
        "-fast",
        local.path().to_str().unwrap(),
        &dst,
    ]);
    assert!(ok, "{text}");
    assert_eq!(record["files"], SIZES.len() + 1, "{text}");
    assert_all_same(local.path(), &srv.path("tree"));
    assert_same(&local.path().join("sub/deep"), &srv.path("tree/sub/deep"));
}

#[test]
fn lists_against_globus_gridftp_server() {
    let globus = Globus::start();
    fill(globus.root.path());
    for opts in [&["-cc", "2", "-pp"][..], &["-p", "4", "-fast", "-pp"]] {
        let local = scratch();
        let list = download_list(&globus.url(""), local.path());
        let mut args = opts.to_vec();
        args.extend(["--json", "-f", list.path().to_str().unwrap()]);
        let (ok, text, record) = copy(&args);
        assert!(ok, "{opts:?}: {text}");
        assert_all_same(globus.root.path(), local.path());
        assert_eq!(record["files"], SIZES.len(), "{opts:?}: {text}");
    }
}

#[test]
fn sync_copies_only_what_differs() {
    let srv = Server::start(&[]);
    fill(srv.root.path());
    let local = scratch();
    let src = srv.url("/");
    let dst = format!("{}/", local.path().display());
    let (ok, text, record) = copy(&["--json", "-r", "-sync", &src, &dst]);
    assert!(ok, "{text}");
    assert_eq!(
        (record["files"].as_u64(), record["skipped"].as_u64()),
        (Some(6), Some(0)),
        "{text}"
    );
    // Nothing changed: all skipped.
    let (ok, text, record) = copy(&["--json", "-r", "-sync", &src, &dst]);
    assert!(ok, "{text}");
    assert_eq!(
        (record["files"].as_u64(), record["skipped"].as_u64()),
        (Some(0), Some(6)),
        "{text}"
    );
    // A shorter local copy and a missing one are copied again at level 1.
    std::fs::write(local.path().join("f2"), b"short").unwrap();
    std::fs::remove_file(local.path().join("f3")).unwrap();
    let (ok, text, record) = copy(&["--json", "-r", "-sync", "-sync-level", "1", &src, &dst]);
    assert!(ok, "{text}");
    assert_eq!(
        (record["files"].as_u64(), record["skipped"].as_u64()),
        (Some(2), Some(4)),
        "{text}"
    );
    assert_all_same(srv.root.path(), local.path());
    // Same size, newer, different bytes: level 2 keeps it, level 3 (checksums) copies it.
    let f5 = local.path().join("f5");
    let mut bytes = std::fs::read(&f5).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&f5, &bytes).unwrap();
    let (_, text, record) = copy(&["--json", "-r", "-sync", "-sync-level", "2", &src, &dst]);
    assert_eq!(record["files"].as_u64(), Some(0), "{text}");
    let (ok, text, record) = copy(&["--json", "-r", "-sync", "-sync-level", "3", &src, &dst]);
    assert!(ok, "{text}");
    assert_eq!(record["files"].as_u64(), Some(1), "{text}");
    assert_all_same(srv.root.path(), local.path());
}

#[test]
fn delayed_passive_block_size_and_progress_lines() {
    let srv = Server::start(&[]);
    write_big(&srv.path("f"), (6 << 20) + 5, 4);
    let local = scratch();
    let d = local.path().join("d");
    // -dp: PASV answers "200 Passive delayed." and the address comes in a 127.
    for opts in [&["-dp", "-no-g2"][..], &["-dp", "-no-g2", "-p", "3", "--mode", "x"]] {
        let mut args = opts.to_vec();
        let src = srv.url("/f");
        args.extend([src.as_str(), d.to_str().unwrap()]);
        let (ok, text, _) = copy(&args);
        assert!(ok, "{opts:?}: {text}");
        assert_same(&srv.path("f"), &d);
    }
    // -bs: small MODE E blocks both ways; a block size the server refuses is a clear error.
    let (ok, text, _) = copy(&["-p", "2", "-bs", "16K", &srv.url("/f"), d.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert_same(&srv.path("f"), &d);
    let (ok, text, _) = copy(&["-p", "2", "-bs", "16K", d.to_str().unwrap(), &srv.user_url("/back")]);
    assert!(ok, "{text}");
    assert_same(&d, &srv.path("back"));
    let (ok, text, _) = copy(&["-p", "2", "-bs", "100", &srv.url("/f"), d.to_str().unwrap()]);
    assert!(!ok && text.contains("a MODE E block size is 4K to 64M"), "{text}");
    // -vb without a terminal: plain progress lines on stderr.
    let (ok, text, _) = copy(&["-vb", &srv.url("/f"), d.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("MB/sec avg"), "{text}");
}

#[test]
fn downloads_into_dev_null_splice_every_mode() {
    let srv = Server::start(&[]);
    write_big(&srv.path("f"), (9 << 20) + 3, 6);
    for opts in [
        &["--mode", "s"][..],
        &["-p", "4"],
        &["--mode", "x", "-p", "2"],
        &["-p", "3", "-bs", "100000"],
    ] {
        let mut args = opts.to_vec();
        let src = srv.url("/f");
        args.extend(["--json", src.as_str(), "/dev/null"]);
        let (ok, text, record) = copy(&args);
        assert!(ok, "{opts:?}: {text}");
        assert_eq!(record["bytes"], (9u64 << 20) + 3, "{opts:?}: {text}");
    }
}

/// A passive MODE X sender that finished over the connections it accepted closes its
/// listener; the receiver's other connections may be refused, or reset when they were still
/// in the sender's backlog (connect, READY or the first header then fail with ECONNRESET).
/// None of them carried a block, so the copy is complete. This failed in about 1 run in 10.
#[test]
fn mode_x_downloads_survive_connections_the_sender_never_took() {
    let srv = Server::start(&[]);
    write_big(&srv.path("f"), (6 << 20) + 5, 9);
    let local = scratch();
    let d = local.path().join("d");
    let src = srv.url("/f");
    for run in 0..40 {
        let (ok, text, _) = copy(&[
            "-q",
            "-dp",
            "-no-g2",
            "-p",
            "3",
            "--mode",
            "x",
            &src,
            d.to_str().unwrap(),
        ]);
        assert!(ok, "run {run}: {text}");
        assert_same(&srv.path("f"), &d);
    }
}

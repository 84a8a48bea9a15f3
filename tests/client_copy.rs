//! `ringmover copy` against ringmover (stream, MODE E, MODE X with either side connecting)
//! and against globus-gridftp-server (stream, MODE E).

mod common;

use std::path::Path;

use common::*;

fn copy(args: &[&str]) -> (bool, String) {
    let (status, text) = ringmover("copy", args);
    (status.success(), text)
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn copy_with_ringmover_in_every_mode() {
    let srv = Server::start(&[]);
    write_big(&srv.path("f"), (9 << 20) + 11, 1);
    let local = scratch();
    let cases: &[&[&str]] = &[
        &["--mode", "s"],
        &["--mode", "e", "-p", "4"],
        &["--mode", "x", "-p", "3"],
        &["--mode", "x", "-p", "2", "--server-active"],
    ];
    for (i, opts) in cases.iter().enumerate() {
        let down = local.path().join(format!("down{i}"));
        let mut args = opts.to_vec();
        let src = srv.url("/f");
        args.extend(["--json", src.as_str(), path_str(&down)]);
        let (ok, text) = copy(&args);
        assert!(ok, "{opts:?} download: {text}");
        assert_same(&srv.path("f"), &down);
        let line = text.lines().find(|l| l.starts_with('{')).expect("JSON record");
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["bytes"], (9u64 << 20) + 11, "{text}");

        let up = format!("/up{i}");
        let mut args = opts.to_vec();
        let dst = srv.user_url(&up);
        args.extend([path_str(&down), dst.as_str()]);
        let (ok, text) = copy(&args);
        assert!(ok, "{opts:?} upload: {text}");
        assert_same(&down, &srv.path(&up));
    }
}

#[test]
fn copy_with_globus_gridftp_server() {
    let globus = Globus::start();
    let root = &globus.root;
    write_big(&root.path().join("g"), (5 << 20) + 3, 2);
    let local = scratch();
    for opts in [&["--mode", "s"][..], &["-p", "4"]] {
        let down = local.path().join("g");
        let mut args = opts.to_vec();
        let src = globus.url("/g");
        args.extend([src.as_str(), path_str(&down)]);
        let (ok, text) = copy(&args);
        assert!(ok, "{opts:?}: {text}");
        assert_same(&root.path().join("g"), &down);
        let dst = globus.url(&format!("/back{}", opts.len()));
        let mut args = opts.to_vec();
        args.extend([path_str(&down), dst.as_str()]);
        let (ok, text) = copy(&args);
        assert!(ok, "{opts:?}: {text}");
        assert_same(&down, &root.path().join(format!("back{}", opts.len())));
    }
}

#[test]
fn copy_refuses_what_it_cannot_do() {
    let srv = Server::start(&[]);
    // gsiftp:// to a server without a host certificate (or without a proxy here).
    let gsi = format!("gsiftp://127.0.0.1:{}/x", srv.addr.port());
    let (ok, text) = copy(&[&gsi, "/tmp/x"]);
    assert!(!ok && (text.contains("GSI") || text.contains("GSSAPI")), "{text}");
    let (ok, text) = copy(&["/tmp/a", "/tmp/b"]);
    assert!(!ok && text.contains("ftp://"), "{text}");
    let (ok, text) = copy(&[&srv.url("/missing"), "/tmp/rm-missing"]);
    assert!(!ok && text.contains("550"), "{text}");
}

#[test]
fn copy_third_party_checksums_buffers_and_g2() {
    let a = Server::start(&[]);
    let b = Server::start(&[]);
    write_big(&a.path("src"), (7 << 20) + 5, 3);
    // Server to server, stream and MODE E, with checksums compared at both ends.
    for opts in [
        &["-verify-checksum"][..],
        &["-p", "4", "-verify-checksum", "-checksum-alg", "ADLER32"],
    ] {
        let name = format!("/copy{}", opts.len());
        let mut args = opts.to_vec();
        let (s, d) = (a.user_url("/src"), b.user_url(&name));
        args.extend([s.as_str(), d.as_str()]);
        let (ok, text) = copy(&args);
        assert!(ok, "{opts:?}: {text}");
        assert_same(&a.path("src"), &b.path(name.trim_start_matches('/')));
    }
    // Downloads with and without -no-g2 (GET/PUT where the server lists GETPUT).
    let local = scratch();
    let dst = local.path().join("d");
    let (ok, text) = copy(&["-tcp-bs", "4194304", "-verify-checksum", &a.url("/src"), path_str(&dst)]);
    assert!(ok, "{text}");
    assert_same(&a.path("src"), &dst);
    let (ok, text) = copy(&["-no-g2", "-p", "2", &a.url("/src"), path_str(&dst)]);
    assert!(ok, "{text}");
    assert_same(&a.path("src"), &dst);
    let log = a.log();
    assert!(log.contains("direction=\"download\""), "{log}");
}

#[test]
fn copy_partial_downloads() {
    let srv = Server::start(&[]);
    write_big(&srv.path("f"), (4 << 20) + 9, 4);
    let want = std::fs::read(srv.path("f")).unwrap();
    let local = scratch();
    let cases: &[(&[&str], usize, Option<usize>)] = &[
        (&["-off", "1000000"], 1_000_000, None),
        (&["-off", "1000000", "-len", "2000000"], 1_000_000, Some(2_000_000)),
        (
            &["-p", "3", "-off", "1000000", "-len", "2000000"],
            1_000_000,
            Some(2_000_000),
        ),
        (&["-p", "3", "-off", "3000000"], 3_000_000, None),
    ];
    for (i, (opts, off, len)) in cases.iter().enumerate() {
        let dst = local.path().join(format!("p{i}"));
        let mut args = opts.to_vec();
        let src = srv.url("/f");
        args.extend([src.as_str(), path_str(&dst)]);
        let (ok, text) = copy(&args);
        assert!(ok, "{opts:?}: {text}");
        let got = std::fs::read(&dst).unwrap();
        let end = len.map_or(want.len(), |l| off + l);
        assert_eq!(got.len(), end, "{opts:?}");
        assert!(got[*off..] == want[*off..end], "{opts:?}");
    }
}

#[test]
fn copy_recursive_download() {
    let srv = Server::start(&[]);
    std::fs::create_dir_all(srv.path("tree/sub/deeper")).unwrap();
    write_big(&srv.path("tree/a"), 100_000, 1);
    write_big(&srv.path("tree/sub/b"), (1 << 20) + 1, 2);
    write_big(&srv.path("tree/sub/deeper/c"), 0, 3);
    let local = scratch();
    let dst = local.path().join("copy");
    for opts in [&["-r"][..], &["-r", "-p", "2"]] {
        let mut args = opts.to_vec();
        let src = srv.url("/tree/");
        args.extend([src.as_str(), path_str(&dst)]);
        let (ok, text) = copy(&args);
        assert!(ok, "{opts:?}: {text}");
        for f in ["a", "sub/b", "sub/deeper/c"] {
            assert_same(&srv.path(&format!("tree/{f}")), &dst.join(f));
        }
        // And back up into a new remote tree.
        let mut args = opts.to_vec();
        let up = srv.user_url(&format!("/up{}", opts.len()));
        args.extend([path_str(&dst), up.as_str()]);
        let (ok, text) = copy(&args);
        assert!(ok, "{opts:?} upload: {text}");
        for f in ["a", "sub/b", "sub/deeper/c"] {
            assert_same(&dst.join(f), &srv.path(&format!("up{}/{f}", opts.len())));
        }
        std::fs::remove_dir_all(&dst).unwrap();
    }
}

/// `--direct-io` on both sides, in every mode, on a disk directory (page cache bypassed where
/// the filesystem allows it, buffered where an op is unaligned), and the read/write path
/// without it: the bytes are identical, also for a partial download from an unaligned
/// offset. (A receive that waited for more than the sender still had to send stalled here.)
#[test]
fn copy_through_registered_buffers_and_direct_io_in_every_mode() {
    let size = (9u64 << 20) + 11;
    for server_opts in [&["--direct-io"][..], &["--data-path", "readwrite"]] {
        let mut opts = server_opts.to_vec();
        opts.extend(["--stall-timeout", "5s"]);
        let srv = Server::start_in(tempfile::tempdir().unwrap(), &opts);
        write_big(&srv.path("f"), size, 3);
        let local = tempfile::tempdir().unwrap();
        let cases: &[&[&str]] = &[
            &["--mode", "s"],
            &["--mode", "e", "-p", "4"],
            &["--mode", "x", "-p", "3"],
        ];
        for (i, mode) in cases.iter().enumerate() {
            let client: Vec<&str> = if server_opts[0] == "--direct-io" {
                vec!["--direct-io"]
            } else {
                vec!["--data-path", "readwrite"]
            };
            let down = local.path().join(format!("down{i}"));
            let mut args = client.clone();
            args.extend_from_slice(mode);
            let src = srv.url("/f");
            args.extend([src.as_str(), path_str(&down)]);
            let (ok, text) = copy(&args);
            assert!(ok, "{server_opts:?} {mode:?} download: {text}");
            assert_same(&srv.path("f"), &down);

            let up = format!("/up{i}");
            let mut args = client.clone();
            args.extend_from_slice(mode);
            let dst = srv.user_url(&up);
            args.extend([path_str(&down), dst.as_str()]);
            let (ok, text) = copy(&args);
            assert!(ok, "{server_opts:?} {mode:?} upload: {text}");
            assert_same(&down, &srv.path(&up));
        }
        let part = local.path().join("part");
        let src = srv.url("/f");
        let (ok, text) = copy(&[
            "--direct-io",
            "--off",
            "4097",
            "--len",
            "1000003",
            src.as_str(),
            path_str(&part),
        ]);
        assert!(ok, "partial: {text}");
        let whole = std::fs::read(srv.path("f")).unwrap();
        let got = std::fs::read(&part).unwrap();
        // Written at the same offset locally, as globus-url-copy does.
        assert_eq!(got.len(), 4097 + 1_000_003);
        assert!(
            got[4097..] == whole[4097..4097 + 1_000_003],
            "partial download from an unaligned offset"
        );
    }
}

#[test]
fn a_file_name_cannot_smuggle_a_command() {
    let srv = Server::start(&[]);
    std::fs::write(srv.path("victim"), b"keep me").unwrap();
    let local = scratch();
    let tree = local.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    // A local name with a line break would become "STOR /up/x\r\nDELE victim" on the wire.
    std::fs::write(tree.join("x\r\nDELE victim"), b"x").unwrap();
    let (ok, text) = copy(&["-r", path_str(&tree), &srv.user_url("/up/")]);
    let victim = std::fs::read(srv.path("victim"));
    assert!(!ok && text.contains("line break"), "{text}");
    assert_eq!(victim.unwrap(), b"keep me", "{text}");
}

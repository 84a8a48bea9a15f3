//! MODE E (parallel streams), connection reuse, striping, buffers, partial transfers, restarts
//! and third-party copies against the real globus-url-copy and globus-gridftp-server.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const GIB: u64 = 1 << 30;

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

#[test]
fn parallel_download_and_upload_sizes() {
    let srv = Server::start(&[]);
    let local = scratch();
    let cases: &[(u64, &str, &[&str])] = &[
        (0, "zero", &["-p", "4"]),
        (1, "one", &["-p", "4"]),
        ((1 << 20) + 7, "mib7", &["-p", "1"]),
        ((1 << 20) + 7, "mib7p8", &["-p", "8"]),
        (GIB, "gib", &["-p", "4"]),
    ];
    for (i, (size, name, opts)) in cases.iter().enumerate() {
        write_big(&srv.path(name), *size, i as u8);
        let down = local.path().join(name);
        let mut args: Vec<&str> = opts.to_vec();
        let (src, dst) = (srv.url(&format!("/{name}")), file_url(&down));
        args.extend([src.as_str(), dst.as_str()]);
        let (ok, text) = guc(&args);
        assert!(ok, "download {name} {opts:?}: {text}");
        assert_same(&srv.path(name), &down);

        let up = format!("/up-{name}");
        let mut args: Vec<&str> = opts.to_vec();
        let (src, dst) = (file_url(&down), srv.user_url(&up));
        args.extend([src.as_str(), dst.as_str()]);
        let (ok, text) = guc(&args);
        assert!(ok, "upload {name} {opts:?}: {text}");
        assert_same(&down, &srv.path(&up));
        std::fs::remove_file(&down).unwrap();
    }
    let log = srv.log();
    assert!(log.contains("streams=8") && log.contains("bytes=1073741824"), "{log}");
}

#[test]
fn fast_multi_file_reuses_connections() {
    let srv = Server::start(&["--getput", "always"]);
    let local = scratch();
    let list = local.path().join("list");
    let mut lines = String::new();
    for i in 0..4 {
        let name = format!("f{i}");
        write_big(&srv.path(&name), 300_000 * (i + 1), i as u8);
        lines.push_str(&format!(
            "{} {}\n",
            srv.url(&format!("/{name}")),
            file_url(&local.path().join(&name))
        ));
    }
    std::fs::write(&list, lines).unwrap();
    // With GETPUT advertised the client sends GET ...;port=...; for every file (it does not
    // reuse then); with -no-g2 it sends a bare RETR on the cached connections and we say 125.
    for g2 in [false, true] {
        let mut args = vec!["-dbg", "-fast", "-p", "2", "-f", list.to_str().unwrap()];
        if !g2 {
            args.push("-no-g2");
        }
        let (ok, text) = guc(&args);
        assert!(ok, "{text}");
        for i in 0..4 {
            let name = format!("f{i}");
            assert_same(&srv.path(&name), &local.path().join(&name));
        }
        if g2 {
            assert!(text.contains("GET path=/f3;port="), "{text}");
        } else {
            assert!(
                text.matches("125 Beginning transfer; reusing existing data connection.")
                    .count()
                    >= 3,
                "{text}"
            );
        }
    }

    // Uploads reuse the passive side's connections too.
    let mut lines = String::new();
    for i in 0..3 {
        let name = format!("f{i}");
        lines.push_str(&format!(
            "{} {}\n",
            file_url(&local.path().join(&name)),
            srv.user_url(&format!("/u{i}"))
        ));
    }
    std::fs::write(&list, lines).unwrap();
    for g2 in [false, true] {
        let mut args = vec!["-dbg", "-fast", "-p", "3", "-f", list.to_str().unwrap()];
        if !g2 {
            args.push("-no-g2");
        }
        let (ok, text) = guc(&args);
        assert!(ok, "{text}");
        for i in 0..3 {
            assert_same(&local.path().join(format!("f{i}")), &srv.path(&format!("u{i}")));
        }
        if !g2 {
            assert!(text.contains("125 Beginning transfer"), "{text}");
        }
    }
}

#[test]
fn stripe_tcp_bs_checksum_and_partial() {
    let srv = Server::start(&[]);
    let local = scratch();
    write_big(&srv.path("src"), (9 << 20) + 3, 1);
    let out = local.path().join("s");
    for opts in [
        &["-stripe", "-p", "2"][..],
        &["-tcp-bs", "4194304", "-p", "2"],
        &["-verify-checksum", "-p", "4"],
    ] {
        let mut args = opts.to_vec();
        let (src, dst) = (srv.url("/src"), file_url(&out));
        args.extend([src.as_str(), dst.as_str()]);
        let (ok, text) = guc(&args);
        assert!(ok, "{opts:?} download: {text}");
        assert_same(&srv.path("src"), &out);
        let mut args = opts.to_vec();
        let (src, dst) = (file_url(&out), srv.user_url("/back"));
        args.extend([src.as_str(), dst.as_str()]);
        let (ok, text) = guc(&args);
        assert!(ok, "{opts:?} upload: {text}");
        assert_same(&out, &srv.path("back"));
        std::fs::remove_file(&out).unwrap();
    }
    // -off/-len in MODE E: ERET P with offsets relative to the section.
    let part = local.path().join("part");
    let (ok, text) = guc(&[
        "-p",
        "3",
        "-off",
        "1000000",
        "-len",
        "5000000",
        &srv.url("/src"),
        &file_url(&part),
    ]);
    assert!(ok, "{text}");
    let want = std::fs::read(srv.path("src")).unwrap();
    let got = std::fs::read(&part).unwrap();
    assert_eq!(got.len(), 6_000_000);
    assert!(got[1_000_000..] == want[1_000_000..6_000_000]);
}

#[test]
fn restart_after_killing_the_client() {
    let srv = Server::start(&[]);
    let local = scratch();
    let src = local.path().join("src");
    write_big(&src, GIB, 5);
    let guc_bin = require_peer("globus-url-copy");
    // Start an upload, kill it mid-transfer, then run it again with -restart.
    let mut child: Child = Command::new(&guc_bin)
        .args(["-p", "4", &file_url(&src), &srv.user_url("/dst")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let _ = child.kill();
    let _ = child.wait();
    let (ok, text) = guc(&["-restart", "-p", "4", &file_url(&src), &srv.user_url("/dst")]);
    assert!(ok, "{text}");
    assert_same(&src, &srv.path("dst"));
    // And the same for a download.
    let mut child = Command::new(&guc_bin)
        .args(["-p", "4", &srv.url("/dst"), &file_url(&local.path().join("down"))])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let _ = child.kill();
    let _ = child.wait();
    let (ok, text) = guc(&[
        "-restart",
        "-p",
        "4",
        &srv.url("/dst"),
        &file_url(&local.path().join("down")),
    ]);
    assert!(ok, "{text}");
    assert_same(&src, &local.path().join("down"));
}

#[test]
fn third_party_with_globus_gridftp_server() {
    let ours = Server::start(&[]);
    let globus = Globus::start();
    write_big(&ours.path("ours.bin"), GIB, 7);
    write_big(&globus.root.path().join("theirs.bin"), (64 << 20) + 5, 8);
    for opts in [&[][..], &["-p", "4"]] {
        let tag = if opts.is_empty() { "s" } else { "p4" };
        // ringmover -> Globus
        let mut args = vec!["-vb"];
        args.extend_from_slice(opts);
        let (src, dst) = (ours.url("/ours.bin"), globus.url(&format!("/from-ours-{tag}")));
        args.extend([src.as_str(), dst.as_str()]);
        let (ok, text) = guc(&args);
        assert!(ok, "ours->globus {opts:?}: {text}");
        assert_same(
            &ours.path("ours.bin"),
            &globus.root.path().join(format!("from-ours-{tag}")),
        );
        assert!(text.contains("bytes"), "no progress shown: {text}");
        // Globus -> ringmover: our receiving side sends the 112/111 markers that -vb reads.
        let mut args = vec!["-vb", "-dbg"];
        args.extend_from_slice(opts);
        let (src, dst) = (globus.url("/theirs.bin"), ours.user_url(&format!("/from-globus-{tag}")));
        args.extend([src.as_str(), dst.as_str()]);
        let (ok, text) = guc(&args);
        assert!(ok, "globus->ours {opts:?}: {text}");
        assert_same(
            &globus.root.path().join("theirs.bin"),
            &ours.path(&format!("from-globus-{tag}")),
        );
        let size = (64 << 20) + 5;
        assert!(
            text.contains(&format!("Stripe Bytes Transferred: {size}")),
            "final perf marker: {text}"
        );
        assert!(
            text.contains(&format!("111 Range Marker 0-{size}")),
            "final range marker: {text}"
        );
    }
}

#[test]
fn third_party_between_two_ringmovers_with_small_files() {
    let a = Server::start(&[]);
    let b = Server::start(&[]);
    for (size, name) in [(0u64, "zero"), (1, "one"), ((1 << 20) + 7, "mib7")] {
        write_big(&a.path(name), size, 3);
        for opts in [&[][..], &["-p", "4"]] {
            let mut args = opts.to_vec();
            let (src, dst) = (
                a.url(&format!("/{name}")),
                b.user_url(&format!("/{name}-{}", opts.len())),
            );
            args.extend([src.as_str(), dst.as_str()]);
            let (ok, text) = guc(&args);
            assert!(ok, "{name} {opts:?}: {text}");
            assert_same(&a.path(name), &b.path(&format!("{name}-{}", opts.len())));
        }
    }
}

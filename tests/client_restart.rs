//! `ringmover copy -restart`: the server dies mid-transfer (SIGKILL) and comes back; the copy
//! resumes from the ranges already in place and verifies the result by checksum.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SIZE: u64 = 768 << 20;
/// Bytes in place at the destination before the server is killed.
const KILL_AT: u64 = 96 << 20;

fn spawn_copy(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ringmover"))
        .arg("copy")
        .args(["--restart", "--rst-interval", "0.3", "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `watched` holds KILL_AT bytes (the copy still running), then restarts the
/// server; returns the copy's JSON record.
fn kill_midway(srv: &mut Server, copy: Child, watched: &Path) -> serde_json::Value {
    interrupt_midway(copy, watched, || srv.restart())
}

fn interrupt_midway(mut copy: Child, watched: &Path, interrupt: impl FnOnce()) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let size = std::fs::metadata(watched).map(|m| m.len()).unwrap_or(0);
        if size >= KILL_AT {
            break;
        }
        assert!(
            copy.try_wait().unwrap().is_none(),
            "the copy ended before the server could be killed"
        );
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    interrupt();
    let out = copy.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "copy failed: {text}");
    let line = text.lines().find(|l| l.starts_with('{')).expect("JSON record");
    serde_json::from_str(line).unwrap()
}

fn assert_resumed(record: &serde_json::Value, what: &str) {
    assert!(record["retries"].as_u64().unwrap() >= 1, "{what}: {record}");
    let resumed = record["resumed_bytes"].as_u64().unwrap();
    assert!(resumed > 0 && resumed < SIZE, "{what}: nothing resumed: {record}");
    assert!(
        record["checksum"].as_str().unwrap_or("").starts_with("MD5:"),
        "{what}: not verified: {record}"
    );
}

#[test]
fn downloads_resume_after_the_server_dies() {
    let mut srv = Server::start(&[]);
    write_big(&srv.path("f"), SIZE, 7);
    let local = scratch();
    for (name, opts) in [("stream", &["--mode", "s"][..]), ("mode E -p 4", &["-p", "4"])] {
        let dst = local.path().join(name.replace(' ', "_"));
        let src = srv.url("/f");
        let mut args = opts.to_vec();
        args.extend([src.as_str(), dst.to_str().unwrap()]);
        let record = kill_midway(&mut srv, spawn_copy(&args), &dst);
        assert_resumed(&record, name);
        assert_same(&srv.path("f"), &dst);
    }
}

#[test]
fn uploads_resume_after_the_server_dies() {
    let mut srv = Server::start(&[]);
    let local = scratch();
    let src = local.path().join("src");
    write_big(&src, SIZE, 8);
    for (name, opts) in [("up", &[][..]), ("up4", &["-p", "4"])] {
        let dst = srv.user_url(&format!("/{name}"));
        // Until it is complete the upload lives in its partial file, not under its name.
        let watched = srv.path(&format!(".{name}.ringmover-partial"));
        let mut args = opts.to_vec();
        args.extend([src.to_str().unwrap(), dst.as_str()]);
        let record = kill_midway(&mut srv, spawn_copy(&args), &watched);
        if opts.is_empty() {
            assert_resumed(&record, name);
        } else {
            // MODE E resumes from the server's once-a-second range markers, which a kill this
            // early may precede: what must hold is the retry and a whole, identical file.
            assert!(record["retries"].as_u64().unwrap() >= 1, "{name}: {record}");
        }
        assert_same(&src, &srv.path(name));
        assert!(!watched.exists(), "{name}: the partial file is gone once complete");
    }
}

#[test]
fn a_missing_file_is_not_retried() {
    let srv = Server::start(&[]);
    let local = scratch();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ringmover"))
        .args(["copy", "--restart", "--rst-interval", "5"])
        .arg(srv.url("/nope"))
        .arg(local.path().join("x"))
        .output()
        .unwrap();
    // A 550 is final: no 5 s wait, a clear error.
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(4), "a 550 was retried");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("550"), "{err}");
}

#[test]
fn restarts_against_globus_gridftp_server() {
    let globus = Globus::start();
    let local = scratch();
    write_big(&globus.root.path().join("g"), SIZE, 9);
    for (name, opts) in [("stream", &["--mode", "s"][..]), ("mode E -p 4", &["-p", "4"])] {
        let dst = local.path().join(name.replace(' ', "_"));
        let src = globus.url("/g");
        let mut args = opts.to_vec();
        args.extend([src.as_str(), dst.to_str().unwrap()]);
        let record = interrupt_midway(spawn_copy(&args), &dst, || {
            assert!(globus.kill_sessions() > 0, "no session process to kill");
        });
        assert_resumed(&record, name);
        assert_same(&globus.root.path().join("g"), &dst);
    }
    let src = local.path().join("stream");
    let watched = globus.root.path().join("up");
    let dst = globus.url("/up");
    let record = interrupt_midway(spawn_copy(&[src.to_str().unwrap(), &dst]), &watched, || {
        assert!(globus.kill_sessions() > 0, "no session process to kill");
    });
    assert_resumed(&record, "stream upload");
    assert_same(&src, &watched);
}

//! Faults mid-transfer: the client, a pool or the door is killed (SIGKILL) while data moves.
//! Nothing incomplete may look complete, and the transfer then completes byte-identical.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::site::*;
use common::*;

const SIZE: u64 = 512 << 20;
/// Bytes in place before the kill.
const KILL_AT: u64 = 64 << 20;

fn copy(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ringmover"))
        .arg("copy")
        .args(["-q", "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `path` holds KILL_AT bytes while `child` still runs.
fn wait_for_bytes(path: &Path, child: &mut Child) {
    let t = Instant::now();
    while std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) < KILL_AT {
        assert!(child.try_wait().unwrap().is_none(), "the copy ended before the fault");
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no progress on {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "copy failed: {text}");
    text
}

/// The copy's JSON record.
fn record(text: &str) -> serde_json::Value {
    let line = text.lines().find(|l| l.starts_with('{')).expect("JSON record");
    serde_json::from_str(line).unwrap()
}

#[test]
fn a_killed_client_leaves_a_partial_file_and_a_rerun_completes() {
    let srv = Server::start(&[]);
    let local = scratch();
    let src = local.path().join("src");
    write_big(&src, SIZE, 11);
    let dst = srv.user_url("/up");
    let partial = srv.path(".up.ringmover-partial");
    let mut child = copy(&["-p", "4", src.to_str().unwrap(), &dst]);
    wait_for_bytes(&partial, &mut child);
    let _ = child.kill();
    let _ = child.wait();
    // The server notices the vanished client and keeps the bytes as a partial file only.
    let t = Instant::now();
    while !srv.log().contains("path=/up") {
        assert!(t.elapsed() < Duration::from_secs(30), "no transfer line: {}", srv.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!srv.log().contains("result=ok"), "{}", srv.log());
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    c.expect("SIZE up", 550);
    assert!(partial.exists());
    // Running the copy again puts the whole file in place.
    finish(copy(&["-p", "4", src.to_str().unwrap(), &dst]));
    assert_same(&src, &srv.path("up"));
    assert!(!partial.exists());
}

#[test]
fn a_killed_pool_comes_back_and_the_copy_completes() {
    let mut site = Site::start(&["127.0.0.2"]);
    let local = scratch();
    let src = local.path().join("src");
    write_big(&src, SIZE, 12);
    let dst = site.user_url("/up");
    let args = ["--restart", "--rst-interval", "1", "--rst-retries", "20", "-p", "4"];
    let mut child = copy(&[&args[..], &[src.to_str().unwrap(), &dst]].concat());
    let partial = site.root(0).join(".up.ringmover-partial");
    wait_for_bytes(&partial, &mut child);
    site.restart_pool(0);
    let record = record(&finish(child));
    assert!(record["retries"].as_u64().unwrap() >= 1, "{record}");
    assert_same(&src, &site.root(0).join("up"));
    assert!(!partial.exists());
    assert!(site.log().contains("taken out of rotation"), "{}", site.log());
}

#[test]
fn a_killed_door_comes_back_and_the_copy_completes() {
    let mut site = Site::start(&["127.0.0.2"]);
    write_big(&site.root(0).join("big"), SIZE, 13);
    let local = scratch();
    let dst = local.path().join("big");
    let args = ["--restart", "--rst-interval", "1", "--rst-retries", "20"];
    let mut child = copy(&[&args[..], &[&site.url("/big"), dst.to_str().unwrap()]].concat());
    wait_for_bytes(&dst, &mut child);
    site.restart_door();
    let record = record(&finish(child));
    assert!(record["retries"].as_u64().unwrap() >= 1, "{record}");
    assert_same(&site.root(0).join("big"), &dst);
}

#[test]
fn a_pool_lost_mid_transfer_is_logged_with_the_bytes_it_moved() {
    use std::io::Read;
    let mut site = Site::start(&["127.0.0.2"]);
    write_big(&site.root(0).join("f"), 64 << 20, 14);
    let mut c = Control::connect(site.control);
    c.expect("USER anonymous", 331);
    c.expect("PASS x", 230);
    c.send("GET path=/f;pasv;");
    let r = c.reply();
    assert_eq!(r.code, 127, "{}", r.text());
    let text = r.text();
    let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
    let n: Vec<u16> = inner.split(',').map(|x| x.parse().unwrap()).collect();
    let addr = std::net::SocketAddr::from(([n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8], n[4] * 256 + n[5]));
    let mut data = std::net::TcpStream::connect(addr).unwrap();
    assert_eq!(c.reply().code, 150);
    // Read a little, slowly: the pool has moved some bytes and reported them.
    let mut buf = vec![0u8; 1 << 20];
    let got = data.read(&mut buf).unwrap();
    assert!(got > 0);
    std::thread::sleep(Duration::from_millis(2500));
    let (mut pool, _root) = site.pools.remove(0);
    let _ = pool.0.kill();
    let _ = pool.0.wait();
    let r = c.final_reply();
    assert_eq!(r.code / 100, 4, "{}", r.text());
    let log = site.log();
    let line = log
        .lines()
        .find(|l| l.contains("ringmover::transfer") && l.contains("path=/f"))
        .expect("a transfer line");
    assert!(!line.contains(" bytes=0 "), "{line}");
}

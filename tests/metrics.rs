//! `--metrics-listen`: scraped while a transfer runs, the counters move by the bytes moved; a
//! token file locks the endpoint.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::{write_big, Control, Server};

fn metrics_addr(server: &Server) -> SocketAddr {
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("metrics listening"))
        .unwrap_or_else(|| panic!("no metrics line: {log}"));
    line.rsplit("addr=").next().unwrap().trim().parse().unwrap()
}

fn get(addr: SocketAddr, extra_header: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n{extra_header}\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// `name{labels} value` lines, summed over the series whose labels contain `with`.
fn value(body: &str, name: &str, with: &str) -> u64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let metric = series.split('{').next().unwrap();
            metric == name && series.contains(with)
        })
        .map(|(_, v)| v.parse::<f64>().unwrap() as u64)
        .sum()
}

fn scrape(addr: SocketAddr) -> HashMap<&'static str, u64> {
    let (code, body) = get(addr, "");
    assert_eq!(code, 200, "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    HashMap::from([
        (
            "bytes",
            value(&body, "ringmover_transfer_bytes_total", "direction=\"download\""),
        ),
        ("ok", value(&body, "ringmover_transfers_total", "result=\"ok\"")),
        (
            "active",
            value(&body, "ringmover_transfers_active", "direction=\"download\""),
        ),
        ("sessions", value(&body, "ringmover_sessions_active", "")),
        ("engine", value(&body, "ringmover_engine_bytes_total", "")),
        ("failures", value(&body, "ringmover_login_failures_total", "password")),
        ("adler32", value(&body, "ringmover_checksum_bytes_total", "adler32")),
        ("abuf", value(&body, "ringmover_abuf_decisions_total", "decision=")),
    ])
}

#[test]
fn counters_move_by_the_bytes_moved_and_show_the_running_transfer() {
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    let size: usize = 48 << 20;
    write_big(&server.path("big"), size as u64, 3);
    let addr = metrics_addr(&server);
    let before = scrape(addr);

    let mut c = server.control();
    c.expect("USER anonymous", 331);
    c.expect("PASS x@y", 230);
    c.expect("TYPE I", 200);
    let mut data = c.pasv();
    assert_eq!(c.cmd("RETR big").code, 150);
    let mut first = vec![0u8; 1 << 20];
    data.read_exact(&mut first).unwrap();
    let during = scrape(addr);
    assert_eq!(during["active"], before["active"] + 1, "{during:?}");
    assert!(during["sessions"] >= 1, "{during:?}");
    let mut rest = Vec::new();
    data.read_to_end(&mut rest).unwrap();
    assert_eq!(first.len() + rest.len(), size);
    assert_eq!(c.final_reply().code, 226);
    c.expect("ABUF", 200);

    let mut bad = server.control();
    bad.expect("USER alice", 331);
    bad.expect("PASS wrong", 530);
    let body = common::pattern(3 << 20, 9);
    let mut up = Control::login(server.addr, common::USER, common::PASSWORD);
    up.expect("TYPE I", 200);
    assert_eq!(up.upload("STOR up", &body).code, 226);

    let after = scrape(addr);
    assert_eq!(after["bytes"] - before["bytes"], size as u64, "{before:?} {after:?}");
    assert_eq!(after["ok"] - before["ok"], 2, "{after:?}");
    assert_eq!(after["active"], before["active"]);
    assert!(
        after["engine"] - before["engine"] >= (size + body.len()) as u64,
        "{after:?}"
    );
    assert_eq!(after["failures"] - before["failures"], 1, "{after:?}");
    assert_eq!(after["adler32"] - before["adler32"], body.len() as u64, "{after:?}");
    assert_eq!(after["abuf"] - before["abuf"], 1, "{after:?}");
}

#[test]
fn a_token_file_locks_the_endpoint() {
    let d = tempfile::tempdir().unwrap();
    let token = d.path().join("token");
    std::fs::write(&token, "open-sesame\n").unwrap();
    let server = Server::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-token-file",
        token.to_str().unwrap(),
    ]);
    let addr = metrics_addr(&server);
    assert_eq!(get(addr, "").0, 401);
    assert_eq!(get(addr, "Authorization: Bearer open-sesamE\r\n").0, 401);
    let (code, body) = get(addr, "Authorization: Bearer open-sesame\r\n");
    assert_eq!(code, 200);
    assert!(body.contains("ringmover_sessions_active"), "{body}");
    // A request that never ends its head is cut off, not buffered without bound.
    let mut s = TcpStream::connect(addr).unwrap();
    let junk = vec![b'a'; 64 << 10];
    let _ = s.write_all(&junk);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
}

#[test]
fn a_door_reports_its_pools_links() {
    let mut site = common::site::Site::start_with(&["127.0.0.2", "127.0.0.3"], &["--metrics-listen", "127.0.0.1:0"]);
    let log = site.log();
    let line = log
        .lines()
        .find(|l| l.contains("metrics listening"))
        .unwrap_or_else(|| panic!("{log}"));
    let addr: SocketAddr = line.rsplit("addr=").next().unwrap().trim().parse().unwrap();
    let (_, body) = get(addr, "");
    assert_eq!(value(&body, "ringmover_pool_linked", "pool=\"127.0.0.2\""), 1, "{body}");
    assert_eq!(value(&body, "ringmover_pool_linked", "pool=\"127.0.0.3\""), 1, "{body}");
    let (mut pool, _root) = site.pools.remove(0);
    let _ = pool.0.kill();
    let _ = pool.0.wait();
    let start = std::time::Instant::now();
    while !site.log().contains("taken out of rotation") {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "{}", site.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (_, body) = get(addr, "");
    assert_eq!(value(&body, "ringmover_pool_linked", "pool=\"127.0.0.2\""), 0, "{body}");
    assert_eq!(value(&body, "ringmover_pool_linked", "pool=\"127.0.0.3\""), 1, "{body}");
    assert_eq!(value(&body, "ringmover_pool_load", ""), 0, "{body}");
}

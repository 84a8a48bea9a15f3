//! ringmover serve over a raw control connection: confinement, permissions, bad input,
//! restart offsets, abort, timeouts, session limits and graceful shutdown.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn path_escapes_get_550() {
    let outer = scratch();
    std::fs::write(outer.path().join("secret"), b"top secret").unwrap();
    let root = tempfile::Builder::new().tempdir_in(outer.path()).unwrap();
    std::os::unix::fs::symlink("../secret", root.path().join("rel-link")).unwrap();
    std::os::unix::fs::symlink(outer.path().join("secret"), root.path().join("abs-link")).unwrap();
    std::fs::create_dir(root.path().join("d")).unwrap();
    std::os::unix::fs::symlink(outer.path(), root.path().join("d/dir-link")).unwrap();
    let srv = Server::start_in(root, &[]);
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    for cmd in [
        "RETR ../secret",
        "RETR /../secret",
        "RETR /d/../../secret",
        "RETR rel-link",
        "RETR abs-link",
        "RETR d/dir-link/secret",
        "SIZE abs-link",
        "CWD ..",
        "CWD d/dir-link",
        "MLST ../secret",
        "DELE ../secret",
        "MKD ../evil",
    ] {
        let mut data = c.pasv();
        let r = c.cmd(cmd);
        assert_eq!(r.code, 550, "{cmd} -> {}", r.text());
        let _ = data.write_all(b"");
    }
    let (_, r) = c.download("LIST ..");
    assert_eq!(r.code, 550);
    // Uploads through a link must not write outside either.
    let r = c.upload("STOR abs-link", b"overwrite");
    assert_eq!(r.code, 550, "{}", r.text());
    assert_eq!(
        std::fs::read(srv.root.path().parent().unwrap().join("secret")).unwrap(),
        b"top secret"
    );
    // Absolute paths are relative to the root.
    std::fs::write(srv.path("inside"), b"ok").unwrap();
    let (data, r) = c.download("RETR /inside");
    assert_eq!((r.code, data.as_slice()), (226, &b"ok"[..]));
}

#[test]
fn anonymous_is_read_only() {
    let srv = Server::start(&[]);
    std::fs::write(srv.path("keep"), b"x").unwrap();
    std::fs::create_dir(srv.path("dir")).unwrap();
    let mut c = Control::login(srv.addr, "anonymous", "globus@");
    for cmd in ["DELE keep", "RMD dir", "MKD new", "RNFR keep", "APPE keep"] {
        assert_eq!(c.cmd(cmd).code, 550, "{cmd}");
    }
    let r = c.upload("STOR new", b"data");
    assert_eq!(r.code, 550);
    assert!(srv.path("keep").exists() && srv.path("dir").exists() && !srv.path("new").exists());
    let (data, r) = c.download("RETR keep");
    assert_eq!((r.code, data.as_slice()), (226, &b"x"[..]));
}

#[test]
fn anonymous_can_be_turned_off() {
    let srv = Server::start(&["--no-anonymous"]);
    let mut c = srv.control();
    assert_eq!(c.cmd("USER anonymous").code, 530);
    assert_eq!(c.cmd("PASV").code, 530);
}

#[test]
fn bad_input_gets_clear_replies() {
    let srv = Server::start(&[]);
    let mut c = srv.control();
    assert_eq!(c.cmd("XYZZY").code, 500);
    c.send_raw(b"RETR \xc3\x28\r\n");
    assert_eq!(c.reply().code, 500);
    c.send_raw(&vec![b'A'; 100_000]);
    c.send_raw(b"\r\n");
    assert_eq!(c.reply().code, 500);
    c.send_raw(b"PWD\n"); // bare LF
    assert_eq!(c.reply().code, 530); // not logged in yet
    assert_eq!(c.cmd("PASS x").code, 503);
    c.expect("USER anonymous", 331);
    c.expect("PASS x", 230);
    assert_eq!(c.cmd("PORT 1,2,3").code, 501);
    assert_eq!(c.cmd("TYPE Q").code, 501);
    assert_eq!(c.cmd("MODE B").code, 504);
    assert_eq!(c.cmd("GET pasv;").code, 501);
    assert_eq!(c.cmd("GET path=/x;pasv;port=127,0,0,1,4,1;").code, 501);
    assert_eq!(c.cmd("GET path=/a;b;pasv;").code, 501);
    // The last ';' may be missing (as on the GridFTP v2 slides): the same answer as with it.
    let with = c.cmd("GET path=/x;").code;
    assert_ne!(with, 501);
    assert_eq!(c.cmd("GET path=/x").code, with);
    assert_eq!(c.cmd("RETR x").code, 425); // no PASV/PORT yet
    assert_eq!(c.cmd("RNTO x").code, 503);
    // Anonymous PORT may only point back at the client, above port 1023.
    assert_eq!(c.cmd("PORT 10,1,2,3,200,1").code, 501);
    assert_eq!(c.cmd("PORT 127,0,0,1,0,21").code, 501);
    assert_eq!(c.cmd("FEAT").lines.last().unwrap(), "211 End.");
    let help = c.expect("SITE HELP", 214).text();
    assert!(help.contains(" RETRBUFSIZE"));
    c.expect("NOOP", 200);
    c.expect("QUIT", 221);
}

#[test]
fn namespace_commands() {
    let srv = Server::start(&[]);
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    assert_eq!(c.expect("MKD d", 257).text(), "257 \"/d\" created.");
    c.expect("CWD d", 250);
    assert_eq!(c.expect("PWD", 257).text(), "257 \"/d\" is current directory.");
    assert_eq!(c.upload("STOR f", b"hello").code, 226);
    assert_eq!(c.expect("SIZE f", 213).text(), "213 5");
    assert_eq!(c.expect("MDTM /d/f", 213).lines[0].len(), 4 + 14);
    let mlst = c.expect("MLST f", 250).text();
    assert!(mlst.contains("Type=file;Size=5;") && mlst.contains(" f"), "{mlst}");
    c.expect("RNFR f", 350);
    c.expect("RNTO g", 250);
    let (names, r) = c.download("NLST");
    assert_eq!((r.code, String::from_utf8(names).unwrap()), (226, "g\r\n".to_string()));
    let (list, _) = c.download("LIST -la");
    assert!(String::from_utf8(list).unwrap().starts_with("-rw-r--r--"));
    c.expect("CDUP", 250);
    assert_eq!(c.cmd("RMD d").code, 550); // not empty
    assert_eq!(c.cmd("DELE d").code, 550); // a directory
    c.expect("DELE d/g", 250);
    c.expect("RMD d", 250);
    assert_eq!(c.cmd("SIZE nothing").code, 550);
    assert!(!srv.path("d").exists());
}

#[test]
fn rest_stor_appe_and_retr() {
    let srv = Server::start(&[]);
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    c.expect("TYPE I", 200);
    assert_eq!(c.upload("STOR f", b"0123456789").code, 226);
    c.expect("REST 4", 350);
    assert_eq!(c.upload("STOR f", b"ab").code, 226);
    assert_eq!(std::fs::read(srv.path("f")).unwrap(), b"0123ab6789");
    assert_eq!(c.upload("APPE f", b"XY").code, 226);
    assert_eq!(std::fs::read(srv.path("f")).unwrap(), b"0123ab6789XY");
    c.expect("REST 10", 350);
    let (data, r) = c.download("RETR f");
    assert_eq!((r.code, data.as_slice()), (226, &b"XY"[..]));
    // REST applies to the next transfer only.
    let (data, _) = c.download("RETR f");
    assert_eq!(data.len(), 12);
    // A REST past the end sends nothing and still succeeds.
    c.expect("REST 100", 350);
    let (data, r) = c.download("RETR f");
    assert_eq!((r.code, data.len()), (226, 0));
    let (data, r) = c.download("ERET P 2 3 f");
    assert_eq!((r.code, data.as_slice()), (226, &b"23a"[..]));
}

#[test]
fn passive_listener_lives_until_next_pasv_or_port() {
    let srv = Server::start(&[]);
    std::fs::write(srv.path("f"), b"abc").unwrap();
    let mut c = Control::login(srv.addr, "anonymous", "x");
    let r = c.expect("PASV", 227).text();
    let inner = &r[r.find('(').unwrap() + 1..r.find(')').unwrap()];
    let n: Vec<u16> = inner.split(',').map(|x| x.parse().unwrap()).collect();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], n[4] * 256 + n[5]));
    for _ in 0..2 {
        let mut data = std::net::TcpStream::connect(addr).unwrap();
        assert_eq!(c.cmd("RETR f").code, 150);
        let mut buf = Vec::new();
        data.read_to_end(&mut buf).unwrap();
        assert_eq!(buf, b"abc");
        assert_eq!(c.reply().code, 226);
    }
    let r = c.expect("EPSV", 229).text();
    assert!(r.contains("(|||") && r.ends_with("|)"), "{r}");
}

#[test]
fn active_mode_port() {
    let srv = Server::start(&[]);
    std::fs::write(srv.path("f"), pattern(500_000, 1)).unwrap();
    let mut c = Control::login(srv.addr, "anonymous", "x");
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    c.expect(&format!("PORT 127,0,0,1,{},{}", port >> 8, port & 0xff), 200);
    assert_eq!(c.cmd("RETR f").code, 150);
    let (mut s, _) = l.accept().unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    assert_eq!(c.reply().code, 226);
    assert_eq!(buf, pattern(500_000, 1));
    c.expect(&format!("EPRT |1|127.0.0.1|{port}|"), 200);
    let (data, r) = c.download("RETR f"); // PASV replaces the PORT
    assert_eq!((r.code, data.len()), (226, 500_000));
}

#[test]
fn abort_stops_a_running_download() {
    let srv = Server::start(&[]);
    std::fs::write(srv.path("big"), pattern(64 << 20, 2)).unwrap();
    let mut c = Control::login(srv.addr, "anonymous", "x");
    let mut data = c.pasv();
    assert_eq!(c.cmd("RETR big").code, 150);
    let mut buf = [0u8; 1024];
    data.read_exact(&mut buf).unwrap(); // the transfer is running; we stop reading
    c.send("ABOR");
    assert_eq!(c.reply().code, 426);
    assert_eq!(c.reply().code, 226);
    c.expect("NOOP", 200);
    assert!(srv.log().contains("result=426"), "{}", srv.log());
}

#[test]
fn commands_sent_during_a_transfer_are_answered_in_order() {
    let srv = Server::start(&[]);
    std::fs::write(srv.path("f"), pattern(8 << 20, 3)).unwrap();
    let mut c = Control::login(srv.addr, "anonymous", "x");
    let mut data = c.pasv();
    c.send("RETR f");
    c.send("NOOP");
    c.send("SIZE f");
    assert_eq!(c.reply().code, 150);
    let mut buf = Vec::new();
    data.read_to_end(&mut buf).unwrap();
    assert_eq!(buf.len(), 8 << 20);
    assert_eq!(c.reply().code, 226);
    assert_eq!(c.reply().code, 200);
    assert_eq!(c.reply().text(), format!("213 {}", 8 << 20));
}

#[test]
fn failed_logins_are_delayed() {
    let srv = Server::start(&[]);
    let mut c = srv.control();
    let t = Instant::now();
    c.expect(&format!("USER {USER}"), 331);
    c.expect("PASS wrong", 530);
    c.expect(&format!("USER {USER}"), 331);
    c.expect("PASS wrong", 530);
    assert!(
        t.elapsed() >= Duration::from_secs(3),
        "1 s then 2 s penalty, took {:?}",
        t.elapsed()
    );
    // Unknown users get the same answer.
    c.expect("USER nobody", 331);
    assert_eq!(c.cmd("PASS wrong").code, 530);
}

#[test]
fn idle_sessions_time_out() {
    let srv = Server::start(&["--idle-timeout", "1"]);
    let mut c = srv.control();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.reply().code, 421);
}

#[test]
fn a_transfer_longer_than_the_idle_timeout_keeps_its_session() {
    let srv = Server::start(&["--idle-timeout", "2s"]);
    std::fs::write(srv.path("f"), pattern(32 << 20, 2)).unwrap();
    let mut c = srv.control();
    c.expect("USER anonymous", 331);
    c.expect("PASS x", 230);
    let mut data = c.pasv();
    assert_eq!(c.cmd("RETR f").code, 150);
    // The server's sends block while the client reads nothing: the transfer outlasts the
    // idle timeout.
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut data, &mut all).unwrap();
    let got = all.len();
    assert_eq!(got, 32 << 20);
    assert!(
        t.elapsed() > Duration::from_secs(2),
        "the transfer was too quick to test"
    );
    assert_eq!(c.final_reply().code, 226);
    c.expect("NOOP", 200);
}

#[test]
fn max_sessions_is_enforced() {
    let srv = Server::start(&["--max-sessions", "1"]);
    let _first = srv.control();
    let mut second = std::io::BufReader::new(std::net::TcpStream::connect(srv.addr).unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut second, &mut line).unwrap();
    assert!(line.starts_with("421"), "{line}");
}

#[test]
fn sigterm_lets_the_running_transfer_finish() {
    let srv = Server::start(&["--shutdown-grace", "20"]);
    std::fs::write(srv.path("big"), pattern(32 << 20, 4)).unwrap();
    let mut c = Control::login(srv.addr, "anonymous", "x");
    let mut data = c.pasv();
    assert_eq!(c.cmd("RETR big").code, 150);
    let mut head = vec![0u8; 1 << 20];
    data.read_exact(&mut head).unwrap();
    srv.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // New sessions are refused while the transfer finishes.
    assert!(std::net::TcpStream::connect(srv.addr).is_err());
    let mut rest = Vec::new();
    data.read_to_end(&mut rest).unwrap();
    assert_eq!(head.len() + rest.len(), 32 << 20);
    assert_eq!(c.reply().code, 226);
    assert_eq!(c.reply().code, 421); // then the session is closed
    let mut srv = srv;
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

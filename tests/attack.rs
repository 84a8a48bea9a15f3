//! The attack battery: what an attacker on the same network tries against a running server,
//! each with real sockets. Every test here once broke ringmover or still guards a hole that
//! was found closed; they must stay closed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// A TCP connection to `to` from the loopback address `from` (127.0.0.0/8 is all ours).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect(&to.into()).unwrap();
    sock.into()
}

/// The address of a 227 reply.
fn pasv_addr(c: &mut Control) -> SocketAddr {
    let r = c.expect("PASV", 227);
    let text = r.text();
    let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
    let n: Vec<u16> = inner.split(',').map(|x| x.parse().unwrap()).collect();
    SocketAddr::from(([n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8], n[4] * 256 + n[5]))
}

/// A MODE E block: descriptor, count, offset (GFD.20).
fn block(desc: u8, offset: u64, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![desc];
    b.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

const EOD: u8 = 0x08;
const EOF: u8 = 0x40;

/// An EOF message announcing `count` EODs.
fn eof(count: u64) -> Vec<u8> {
    let mut b = vec![EOF];
    b.extend_from_slice(&0u64.to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b
}

#[test]
fn a_stranger_cannot_take_a_logged_in_users_passive_connection() {
    let srv = Server::start(&[]);
    let secret = pattern(100_000, 1);
    std::fs::write(srv.path("secret"), &secret).unwrap();
    let mut c = Control::login(srv.addr, USER, PASSWORD);

    // Download: the stranger connects first and gets nothing; the client gets the file.
    let addr = pasv_addr(&mut c);
    let mut stranger = connect_from("127.0.0.2", addr);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.cmd("RETR secret").code, 150);
    let mut data = TcpStream::connect(addr).unwrap();
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(c.final_reply().code, 226);
    assert_eq!(got, secret);
    stranger.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut stolen = Vec::new();
    let _ = stranger.read_to_end(&mut stolen);
    assert!(stolen.is_empty(), "the stranger read {} bytes", stolen.len());

    // Upload: the stranger's content is not stored.
    let addr = pasv_addr(&mut c);
    let mut stranger = connect_from("127.0.0.3", addr);
    let _ = stranger.write_all(b"forged content");
    drop(stranger);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.cmd("STOR up").code, 150);
    let mut data = TcpStream::connect(addr).unwrap();
    data.write_all(b"real content").unwrap();
    drop(data);
    assert_eq!(c.final_reply().code, 226);
    assert_eq!(std::fs::read(srv.path("up")).unwrap(), b"real content");
    assert!(srv.log().contains("dropped data connection from a foreign address"));
}

#[test]
fn trusted_networks_may_connect_for_third_party() {
    let srv = Server::start(&["--trusted-networks", "127.0.0.2/32"]);
    std::fs::write(srv.path("f"), b"third party").unwrap();
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    let addr = pasv_addr(&mut c);
    assert_eq!(c.cmd("RETR f").code, 150);
    let mut data = connect_from("127.0.0.2", addr);
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(c.final_reply().code, 226);
    assert_eq!(got, b"third party");
    // PORT to the trusted network is allowed, to others not.
    c.expect("PORT 127,0,0,2,200,1", 200);
    c.expect("PORT 127,0,0,3,200,1", 501);
}

#[test]
fn logged_in_users_cannot_bounce_to_other_hosts_or_privileged_ports() {
    let srv = Server::start(&[]);
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    c.expect("PORT 127,0,0,2,200,1", 501);
    c.expect("PORT 127,0,0,1,0,25", 501);
    c.expect("EPRT |1|127.0.0.9|4000|", 501);
    c.expect("SPOR 127,0,0,1,200,1 127,0,0,5,200,1", 501);
    c.expect("PUT path=/x;port=127,0,0,2,0,25;", 501);
    c.expect("PORT 127,0,0,1,200,1", 200);
}

#[test]
fn offsets_that_would_wrap_are_refused() {
    let srv = Server::start(&[]);
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    c.expect("REST 18446744073709551615", 501);
    c.expect("REST 9223372036854775808", 501);
    c.expect("ESTO A 18446744073709551615 f", 501);
    c.expect("ERET P 18446744073709551615 1 f", 501);
    c.expect("REST 0-18446744073709551615", 501);
    c.expect("ALLO 18446744073709551615", 501);
    // The refused REST left nothing behind: STOR writes the whole file from 0.
    assert_eq!(c.upload("STOR f", b"whole").code, 226);
    assert_eq!(std::fs::read(srv.path("f")).unwrap(), b"whole");
    // A MODE E block whose offset lands past the largest file offset is refused.
    c.expect("REST 9223372036854775807", 350);
    c.expect("MODE E", 200);
    let addr = pasv_addr(&mut c);
    assert_eq!(c.cmd("ESTO A 0 f").code, 150);
    let mut d = TcpStream::connect(addr).unwrap();
    d.write_all(&block(EOD, 1, b"x")).unwrap();
    // The server may already have refused the block and reset the connection.
    let _ = d.write_all(&eof(1));
    drop(d);
    let r = c.final_reply();
    assert_eq!(r.code / 100, 4, "{}", r.text());
    assert_eq!(std::fs::read(srv.path("f")).unwrap(), b"whole");
}

#[test]
fn mode_e_uploads_always_end_with_a_reply() {
    let srv = Server::start(&["--data-timeout", "2s"]);
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    c.expect("MODE E", 200);
    type Feed = fn(SocketAddr);
    let cases: [(&str, Feed); 4] = [
        ("EOD count never reached", |a| {
            let mut d = TcpStream::connect(a).unwrap();
            d.write_all(&block(0, 0, b"abc")).unwrap();
            d.write_all(&eof(2)).unwrap();
            d.write_all(&block(EOD, 3, b"")).unwrap();
        }),
        ("EOD without EOF", |a| {
            let mut d = TcpStream::connect(a).unwrap();
            d.write_all(&block(EOD, 0, b"abc")).unwrap();
        }),
        ("closed with no bytes", |a| drop(TcpStream::connect(a).unwrap())),
        ("no connection at all", |_| {}),
    ];
    for (what, feed) in cases {
        let addr = pasv_addr(&mut c);
        assert_eq!(c.cmd("STOR e").code, 150, "{what}");
        let t = Instant::now();
        feed(addr);
        let r = c.final_reply();
        assert!(r.code == 426 || r.code == 425, "{what}: {}", r.text());
        assert!(t.elapsed() < Duration::from_secs(15), "{what}: took {:?}", t.elapsed());
    }
}

/// Six connections each carrying one block and its EOD; the first also the EOF.
fn six_connections(c: &mut Control) -> u16 {
    let addr = pasv_addr(c);
    assert_eq!(c.cmd("STOR six").code, 150);
    let conns: Vec<TcpStream> = (0..6u64)
        .map(|i| {
            let mut d = TcpStream::connect(addr).unwrap();
            if i == 0 {
                d.write_all(&eof(6)).unwrap();
            }
            d.write_all(&block(EOD, i, &[b'a' + i as u8])).unwrap();
            d
        })
        .collect();
    let code = c.final_reply().code;
    drop(conns);
    code
}

#[test]
fn passive_accepts_are_capped() {
    let srv = Server::start(&["--data-timeout", "2s", "--max-data-connections", "4"]);
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    c.expect("MODE E", 200);
    assert_eq!(six_connections(&mut c), 426);
    let srv = Server::start(&["--data-timeout", "2s", "--max-data-connections", "8"]);
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    c.expect("MODE E", 200);
    assert_eq!(six_connections(&mut c), 226);
    assert_eq!(std::fs::read(srv.path("six")).unwrap(), b"abcdef");
}

#[test]
fn too_long_names_get_553() {
    let srv = Server::start(&[]);
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    let name = "n".repeat(300);
    c.expect(&format!("MKD {name}"), 553);
    let addr = pasv_addr(&mut c);
    let _keep = TcpStream::connect(addr).unwrap();
    let r = c.cmd(&format!("STOR {name}"));
    assert_eq!(r.code, 553, "{}", r.text());
}

/// USER, PASS with a wrong password, and hang up without waiting for the 530.
fn guess_and_hang_up(from: &str, to: SocketAddr) {
    let mut c = Control::over(connect_from(from, to));
    if c.reply().code != 220 {
        return;
    }
    c.expect(&format!("USER {USER}"), 331);
    c.send("PASS guess");
    std::thread::sleep(Duration::from_millis(20));
}

/// The server's resident memory in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn the_login_delay_holds_when_the_client_hangs_up() {
    let srv = Server::start(&[]);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        guess_and_hang_up("127.0.0.1", srv.addr);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let checked = srv.log().matches("failed login").count();
    // Delays of 1 and 2 s: at most attempts at 0, 1 and 3 s were checked.
    assert!((1..=3).contains(&checked), "{checked} passwords checked in 3 s");
    // The right password waits out what the address owes (4 s after the third failure).
    let mut c = srv.control();
    c.expect(&format!("USER {USER}"), 331);
    let t = Instant::now();
    c.expect(&format!("PASS {PASSWORD}"), 230);
    if checked == 3 {
        assert!(
            t.elapsed() >= Duration::from_secs(2),
            "230 after {:?}: {}",
            t.elapsed(),
            srv.log()
        );
    }
}

#[test]
fn password_guessing_from_many_addresses_is_bounded() {
    let srv = Server::start(&[]);
    let pid = srv.child.id();
    let before = rss_kb(pid);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attackers: Vec<_> = (0..32)
        .map(|i| {
            let (stop, addr) = (stop.clone(), srv.addr);
            std::thread::spawn(move || {
                let from = format!("127.0.1.{}", i + 1);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    guess_and_hang_up(&from, addr);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    let mut peak = 0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(200));
        peak = peak.max(rss_kb(pid));
    }
    // A real user from another address still gets in during the attack.
    let t = Instant::now();
    let mut c = Control::connect(srv.addr);
    c.expect(&format!("USER {USER}"), 331);
    c.expect(&format!("PASS {PASSWORD}"), 230);
    let login = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    attackers.into_iter().for_each(|a| a.join().unwrap());
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kb(pid);
    eprintln!("RSS before {before} kB, peak {peak} kB, after {after} kB; login took {login:?}");
    assert!(login < Duration::from_secs(10), "login took {login:?}");
    assert!(peak < before + 200_000, "RSS grew from {before} to {peak} kB");
}

#[test]
fn sessions_per_address_are_limited() {
    let srv = Server::start(&["--max-sessions-per-address", "2"]);
    let _a = srv.control();
    let _b = srv.control();
    let mut third = Control::over(TcpStream::connect(srv.addr).unwrap());
    assert_eq!(third.reply().code, 421);
    // Another address is not locked out.
    let mut other = Control::over(connect_from("127.0.0.2", srv.addr));
    assert_eq!(other.reply().code, 220);
}

#[test]
fn a_byte_a_second_does_not_hold_a_session() {
    let srv = Server::start(&["--login-timeout", "2s", "--idle-timeout", "3s"]);
    // Before login: bytes but never a line, or lines but no login, end at the login timeout.
    for trickle in [&b"N"[..], b"NOOP\r\n"] {
        let mut c = srv.control();
        let t = Instant::now();
        let mut closed = false;
        while t.elapsed() < Duration::from_secs(6) {
            if c.writer.write_all(trickle).is_err() {
                closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let mut rest = String::new();
        let _ = c.reader.read_to_string(&mut rest);
        assert!(closed || rest.contains("421 Login timeout"), "{rest}");
    }
    // Logged in: only whole lines reset the idle timer.
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) && c.writer.write_all(b"N").is_ok() {
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut rest = String::new();
    let _ = c.reader.read_to_string(&mut rest);
    assert!(rest.contains("421 Idle timeout"), "{rest}");
    assert!(t.elapsed() < Duration::from_secs(5));
    // Too many commands before login.
    let mut c = srv.control();
    for _ in 0..70 {
        if c.writer.write_all(b"NOOP\r\n").is_err() {
            break;
        }
    }
    let mut rest = String::new();
    let _ = c.reader.read_to_string(&mut rest);
    assert!(rest.contains("Too many commands before login"), "{rest}");
}

mod link {
    //! The door's pool port: only pools that prove their key join, handshake frames are small,
    //! and a pool cannot point the door (or its clients) at addresses outside its own.

    use super::*;
    use common::site::*;
    use ringmover::link::auth::{self, LinkKeys};
    use ringmover::link::{read_frame, write_frame, DoorMsg, NsReply, PoolMsg, VERSION};
    use ringmover::storage::{FileInfo, Kind};

    fn door_rss_kb(site: &Site) -> u64 {
        rss_kb(site.door.0.id())
    }

    /// A pool that knows the key of `name` but lies: every file exists, and its data listens
    /// on `announce`.
    async fn lying_pool(door: SocketAddr, name: &str, key: auth::Key, announce: SocketAddr) {
        let s = tokio::net::TcpStream::connect(door).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let own = auth::nonce();
        let hello = PoolMsg::Hello {
            version: VERSION,
            name: name.into(),
            data_address: "127.0.0.2".parse().unwrap(),
            port_range: Some((40000, 40010)),
            nonce: hex::encode(own),
        };
        write_frame(&mut wr, &hello).await.unwrap();
        // A door that does not know the name closes the link instead of challenging.
        let Ok(Some(DoorMsg::Challenge { nonce, .. })) = read_frame(&mut rd).await else {
            return;
        };
        let theirs = auth::parse_nonce(&nonce).unwrap();
        let proof = auth::prove(&key, auth::POOL, &own, &theirs, name);
        if write_frame(&mut wr, &PoolMsg::Proof { proof }).await.is_err() {
            return;
        }
        while let Ok(Some(m)) = read_frame::<_, DoorMsg>(&mut rd).await {
            let reply = match m {
                DoorMsg::Ns { req, .. } => PoolMsg::Reply {
                    req,
                    result: Ok(NsReply::Info(FileInfo {
                        name: "f".into(),
                        kind: Kind::File,
                        size: 10,
                        mtime: 0,
                        mtime_nsec: 0,
                        mode: 0o644,
                        nlink: 1,
                        uid: 0,
                        gid: 0,
                    })),
                },
                DoorMsg::Start { id, .. } => PoolMsg::Listening { id, addr: announce },
                _ => continue,
            };
            if write_frame(&mut wr, &reply).await.is_err() {
                return;
            }
        }
    }

    #[test]
    fn a_pool_without_its_key_cannot_join_or_take_a_name() {
        let site = Site::start(&["127.0.0.2"]);
        std::fs::write(site.root(0).join("f"), b"the real file").unwrap();
        let door = SocketAddr::from(([127, 0, 0, 1], site.pool_port));
        // Another key file, same name: the door's challenge cannot be answered.
        let other = tempfile::tempdir().unwrap();
        let keys = other.path().join("keys");
        LinkKeys::add(&keys, "127.0.0.2").unwrap();
        LinkKeys::add(&keys, "rogue").unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        for name in ["127.0.0.2", "rogue"] {
            let key = *LinkKeys::load(&keys).unwrap().get(name).unwrap();
            let announce = SocketAddr::from(([127, 0, 0, 2], 40000));
            let _ = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), lying_pool(door, name, key, announce)).await
            });
        }
        // The door logs each refusal as its handshake ends, which may trail the close.
        let t = Instant::now();
        let refused =
            |log: &str| log.contains("the pool did not prove the link key") && log.contains("no key for pool 'rogue'");
        while !refused(&site.log()) && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = site.log();
        assert!(refused(&log), "{log}");
        assert_eq!(log.matches("pool registered").count(), 1, "{log}");
        // The real pool still serves.
        let mut c = Control::connect(site.control);
        c.expect("USER anonymous", 331);
        c.expect("PASS x", 230);
        let (data, r) = c.download("RETR f");
        assert_eq!(r.code, 226, "{}", r.text());
        assert_eq!(data, b"the real file");
    }

    #[test]
    fn a_keyed_pool_cannot_point_the_door_elsewhere() {
        let site = Site::start(&[]);
        let door = SocketAddr::from(([127, 0, 0, 1], site.pool_port));
        let key = *LinkKeys::load(&site.keys).unwrap().get("127.0.0.2").unwrap();
        // The door's own control port: a relay to a local service.
        let announce = site.control;
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.spawn(lying_pool(door, "127.0.0.2", key, announce));
        site.wait_for_pools(1);
        let mut c = Control::connect(site.control);
        c.expect("USER anonymous", 331);
        c.expect("PASS x", 230);
        // Plain PASV (the door relays) and GET with pasv (the client is told the address).
        let _data = c.pasv();
        let r = c.cmd("RETR f");
        assert_eq!(r.code, 425, "{}", r.text());
        // No 127 naming the door's control port comes first: the refusal is the only reply.
        let r = c.cmd("GET path=f;pasv;");
        assert_eq!(r.code, 425, "{}", r.text());
        assert!(site.log().contains("outside its own"), "{}", site.log());
    }

    #[test]
    fn large_frames_before_the_handshake_cost_nothing() {
        let site = Site::start(&[]);
        let door = SocketAddr::from(([127, 0, 0, 1], site.pool_port));
        let before = door_rss_kb(&site);
        let mut links: Vec<TcpStream> = (0..8)
            .map(|_| {
                let mut s = TcpStream::connect(door).unwrap();
                s.write_all(&(64u32 << 20).to_be_bytes()).unwrap();
                s.write_all(&[b'{'; 1000]).unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let during = door_rss_kb(&site);
        for s in &mut links {
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            let mut buf = [0u8; 16];
            assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "the door closes such a link");
        }
        eprintln!("door RSS {before} kB before, {during} kB with 8 links of 64 MiB prefixes");
        assert!(during < before + 20_000, "{before} -> {during} kB");
        assert!(site.log().contains("exceeds the limit"), "{}", site.log());
    }
}

#[test]
fn a_killed_upload_never_looks_complete_and_resumes() {
    let mut srv = Server::start(&[]);
    let content = pattern(4 << 20, 9);
    let half = content.len() / 2;
    // The server dies with half the file in.
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    let addr = pasv_addr(&mut c);
    assert_eq!(c.cmd("STOR big").code, 150);
    let mut d = TcpStream::connect(addr).unwrap();
    d.write_all(&content[..half]).unwrap();
    let partial = srv.path(".big.ringmover-partial");
    let t = Instant::now();
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < half as u64 {
        assert!(t.elapsed() < Duration::from_secs(10), "the bytes did not arrive");
        std::thread::sleep(Duration::from_millis(10));
    }
    srv.restart();
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    c.expect("SIZE big", 550);
    c.expect("MLST big", 550);
    assert!(!srv.path("big").exists());
    let r = c.expect("SIZE .big.ringmover-partial", 213);
    assert_eq!(r.text(), format!("213 {half}"));
    // A restart continues the partial file and puts the whole under its name.
    c.expect(&format!("REST {half}"), 350);
    assert_eq!(c.upload("STOR big", &content[half..]).code, 226);
    assert_eq!(std::fs::read(srv.path("big")).unwrap(), content);
    assert!(!partial.exists());

    // A MODE E upload whose client vanishes mid-way: 426, and still no complete-looking file.
    c.expect("MODE E", 200);
    let addr = pasv_addr(&mut c);
    assert_eq!(c.cmd("STOR e").code, 150);
    let mut d = TcpStream::connect(addr).unwrap();
    d.write_all(&block(0, 0, &content[..1000])).unwrap();
    drop(d);
    assert_eq!(c.final_reply().code, 426);
    c.expect("SIZE e", 550);
    assert!(srv.path(".e.ringmover-partial").exists());
}

#[test]
fn paths_stay_inside_the_root() {
    let srv = Server::start(&[]);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"outside").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), srv.path("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc/passwd", srv.path("rel")).unwrap();
    std::os::unix::fs::symlink(outside.path(), srv.path("dir")).unwrap();
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    for p in [
        "../../etc/passwd",
        "/../etc/passwd",
        "abs",
        "rel",
        "dir/secret",
        "%2e%2e/etc/passwd",
    ] {
        let (data, r) = c.download(&format!("RETR {p}"));
        assert!(r.code >= 500, "{p}: {}", r.text());
        assert!(data.is_empty());
    }
    c.expect("CWD dir", 550);
    c.expect("MKD dir/x", 550);
    // Uploads through a symlink out of the root are refused, and nothing lands outside.
    let r = c.upload("STOR dir/planted", b"x");
    assert!(r.code >= 500, "{}", r.text());
    assert!(!outside.path().join("planted").exists());
    assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"outside");
}

#[test]
fn floods_get_replies_not_panics() {
    let srv = Server::start(&[]);
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    // A 10 MB line, then pipelined commands; the session answers and stays usable.
    let mut long = vec![b'A'; 10 << 20];
    long.extend_from_slice(b"\r\n");
    c.send_raw(&long);
    assert_eq!(c.reply().code, 500);
    let burst: String = "NOOP\r\n".repeat(20_000);
    c.send_raw(burst.as_bytes());
    for _ in 0..20_000 {
        assert_eq!(c.reply().code, 200);
    }
    c.expect("SIZE nothing", 550);
    assert!(!srv.log().contains("panicked"));
}

#[test]
fn a_truncated_mode_e_block_is_a_426() {
    let srv = Server::start(&[]);
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    c.expect("MODE E", 200);
    let addr = pasv_addr(&mut c);
    assert_eq!(c.cmd("STOR t").code, 150);
    let mut d = TcpStream::connect(addr).unwrap();
    let mut b = block(0, 0, &[7u8; 1000]);
    b.truncate(17 + 10);
    d.write_all(&b).unwrap();
    drop(d);
    assert_eq!(c.final_reply().code, 426);
    c.expect("SIZE t", 550);
}

/// A 4 MiB tmpfs mounted for the test (root only: CI runs as root).
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn mount() -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "ringmover-test"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs needs root (CI runs as root)");
        SmallFs(dir)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_is_a_452_and_nothing_looks_complete() {
    let fs = SmallFs::mount();
    let root = tempfile::Builder::new().tempdir_in(fs.0.path()).unwrap();
    let srv = Server::start_in(root, &[]);
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    // The server may close the data connection as soon as the disk is full.
    let addr = pasv_addr(&mut c);
    assert_eq!(c.cmd("STOR big").code, 150);
    let mut d = TcpStream::connect(addr).unwrap();
    let _ = d.write_all(&pattern(8 << 20, 3));
    drop(d);
    let r = c.final_reply();
    assert_eq!(r.code, 452, "{}", r.text());
    c.expect("SIZE big", 550);
    // Space comes back once the partial file is deleted.
    c.expect("DELE .big.ringmover-partial", 250);
    assert_eq!(c.upload("STOR small", b"fits").code, 226);
}

#[test]
fn a_symlink_swapped_during_downloads_never_leaks_outside_files() {
    let srv = Server::start(&[]);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"OUTSIDE SECRET").unwrap();
    std::fs::write(srv.path("inside"), b"inside content").unwrap();
    let (link, tmp) = (srv.path("s"), srv.path("s.tmp"));
    std::os::unix::fs::symlink("inside", &link).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, link, tmp, target) = (stop.clone(), link.clone(), tmp.clone(), outside.path().join("secret"));
        std::thread::spawn(move || {
            let mut out = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_file(&tmp);
                let to = if out {
                    target.clone()
                } else {
                    std::path::PathBuf::from("inside")
                };
                std::os::unix::fs::symlink(&to, &tmp).unwrap();
                std::fs::rename(&tmp, &link).unwrap();
                out = !out;
            }
        })
    };
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    let (mut served, mut refused) = (0, 0);
    for _ in 0..600 {
        let (data, r) = c.download("RETR s");
        assert!(!data.windows(6).any(|w| w == b"OUTSIDE"), "leaked the outside file");
        if r.code == 226 {
            assert_eq!(data, b"inside content");
            served += 1;
        } else {
            refused += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    eprintln!("600 RETRs during swaps: {served} served the inside file, {refused} refused");
    assert!(served > 0 && refused > 0, "{served} served, {refused} refused");
}

#[test]
fn uploads_never_replace_or_write_into_special_files() {
    use std::os::unix::fs::FileTypeExt;
    let srv = Server::start(&[]);
    let dev = srv.path("null");
    // A character device 1,3 (/dev/null) inside the root: root only, as CI runs.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &dev,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .expect("mknod needs root (CI runs as root)");
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    let r = c.upload("STOR null", b"replace me");
    assert_eq!(r.code, 550, "{}", r.text());
    assert!(std::fs::symlink_metadata(&dev).unwrap().file_type().is_char_device());
}

#[test]
fn a_name_with_a_line_break_cannot_forge_listing_entries() {
    let srv = Server::start(&[]);
    std::fs::write(srv.path("plain"), b"x").unwrap();
    // Made on the server's host (FTP itself cannot name it): the rest would pose as an entry.
    std::fs::write(srv.path("x\r\ntype=file;size=1; forged"), b"x").unwrap();
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    for cmd in ["MLSD /", "LIST /", "NLST /", "MLSR /"] {
        let (listing, r) = c.download(cmd);
        assert_eq!(r.code, 226, "{cmd}");
        let text = String::from_utf8_lossy(&listing);
        assert!(text.contains("plain") && !text.contains("forged"), "{cmd}: {text}");
    }
}

//! MODE X (GFD.47) between ringmover and a MODE X peer written here from the wire description
//! (`docs/protocol-notes.md#mode-x`; no other implementation is available to test against): both
//! directions, with the server passive and active, several connections each.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use common::*;
use ringmover::block::xmode::{XHeader, BYE, READY, X_HEADER_LEN};

/// Receives one MODE X connection: READY, blocks into `out`, BYE after EOD.
fn x_receive(mut s: TcpStream, out: &std::sync::Mutex<Vec<u8>>) -> bool {
    s.write_all(READY).unwrap();
    let mut eof = false;
    loop {
        let mut h = [0u8; X_HEADER_LEN];
        if s.read_exact(&mut h).is_err() {
            return eof;
        }
        let h = XHeader::decode(&h).unwrap();
        let mut data = vec![0u8; h.count as usize];
        s.read_exact(&mut data).unwrap();
        {
            let mut o = out.lock().unwrap();
            let end = (h.offset + h.count) as usize;
            if o.len() < end {
                o.resize(end, 0);
            }
            o[h.offset as usize..end].copy_from_slice(&data);
        }
        eof |= h.is_eof();
        if h.is_eod() {
            let _ = s.write_all(BYE);
            return eof;
        }
    }
}

/// Sends `blocks` (offset, len) of `data` on one connection after READY, then EOF|EOD|CLOSE.
fn x_send(mut s: TcpStream, data: &[u8], blocks: &[(u64, u64)]) {
    let mut ready = [0u8; 6];
    s.read_exact(&mut ready).unwrap();
    assert_eq!(&ready, READY);
    for &(off, len) in blocks {
        s.write_all(&XHeader::data(off, len, 0).encode()).unwrap();
        s.write_all(&data[off as usize..(off + len) as usize]).unwrap();
    }
    s.write_all(&XHeader::last(0).encode()).unwrap();
    let mut bye = [0u8; 4];
    let _ = s.read_exact(&mut bye);
}

fn pasv_addr(c: &mut Control) -> std::net::SocketAddr {
    let r = c.expect("PASV", 227).text();
    let inner = &r[r.find('(').unwrap() + 1..r.find(')').unwrap()];
    let n: Vec<u16> = inner.split(',').map(|x| x.parse().unwrap()).collect();
    std::net::SocketAddr::from(([127, 0, 0, 1], n[4] * 256 + n[5]))
}

fn port_cmd(l: &TcpListener) -> String {
    let p = l.local_addr().unwrap().port();
    format!("PORT 127,0,0,1,{},{}", p >> 8, p & 0xff)
}

#[test]
fn mode_x_download_passive_and_active() {
    let srv = Server::start(&[]);
    let data = pattern((5 << 20) + 321, 9);
    std::fs::write(srv.path("f"), &data).unwrap();
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    assert!(c.expect("FEAT", 211).text().contains(" MODEX"));
    c.expect("MODE X", 200);

    // Server passive: we (the receiver) open two connections.
    let addr = pasv_addr(&mut c);
    c.send("RETR f");
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let conns: Vec<_> = (0..2)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            let out = out.clone();
            std::thread::spawn(move || x_receive(s, &out))
        })
        .collect();
    assert_eq!(c.reply().code, 150);
    let eofs: Vec<bool> = conns.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(eofs.iter().all(|&e| e), "every connection ends with EOF");
    assert_eq!(c.final_reply().code, 226);
    assert!(out.lock().unwrap()[..] == data[..]);

    // Server active: it opens `parallelism` connections to us.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    c.expect("OPTS RETR Parallelism=3,3,3;", 200);
    c.expect(&port_cmd(&l), 200);
    c.send("RETR f");
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let conns: Vec<_> = (0..3)
        .map(|_| {
            let (s, _) = l.accept().unwrap();
            let out = out.clone();
            std::thread::spawn(move || x_receive(s, &out))
        })
        .collect();
    assert_eq!(c.reply().code, 150);
    for t in conns {
        assert!(t.join().unwrap());
    }
    assert_eq!(c.final_reply().code, 226);
    assert!(out.lock().unwrap()[..] == data[..]);
}

#[test]
fn mode_x_upload_passive_and_active() {
    let srv = Server::start(&[]);
    let data = pattern((3 << 20) + 77, 10);
    let halves = [vec![(2 << 20, (1 << 20) + 77)], vec![(0, 1 << 20), (1 << 20, 1 << 20)]];
    let mut c = Control::login(srv.addr, USER, PASSWORD);
    c.expect("MODE X", 200);

    // Server passive: we (the sender) connect twice, blocks out of order.
    let addr = pasv_addr(&mut c);
    c.send("STOR up1");
    let senders: Vec<_> = halves
        .iter()
        .cloned()
        .map(|blocks| {
            let s = TcpStream::connect(addr).unwrap();
            let data = data.clone();
            std::thread::spawn(move || x_send(s, &data, &blocks))
        })
        .collect();
    assert_eq!(c.reply().code, 150);
    senders.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(c.final_reply().code, 226);
    assert!(std::fs::read(srv.path("up1")).unwrap() == data);

    // Server active: it connects to us twice; we send on both.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    c.expect("OPTS RETR Parallelism=2,2,2;", 200);
    c.expect(&port_cmd(&l), 200);
    c.send("STOR up2");
    let senders: Vec<_> = halves
        .iter()
        .cloned()
        .map(|blocks| {
            let (s, _) = l.accept().unwrap();
            let data = data.clone();
            std::thread::spawn(move || x_send(s, &data, &blocks))
        })
        .collect();
    assert_eq!(c.reply().code, 150);
    senders.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(c.final_reply().code, 226);
    assert!(std::fs::read(srv.path("up2")).unwrap() == data);

    // GET/PUT carry the mode too.
    let r = c.cmd("PUT path=/up3;mode=X;pasv;");
    assert_eq!(r.code, 127, "{}", r.text());
}

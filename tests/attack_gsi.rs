//! An attacker near a GSI session: commands sent in clear after the security exchange and
//! tampered wrapped commands are refused, never run; a stranger on a DCAU passive port is
//! dropped without ending the transfer.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::grid::Grid;
use common::Server;
use ringmover::gsi::{Channel, ClientCredentials, DataAuth, HandshakeStep, InitStep, Role, TrustPaths};

struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        l
    }
    fn send(&mut self, line: &str) {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    }
    fn cmd(&mut self, line: &str) -> String {
        self.send(line);
        self.line()
    }
}

#[test]
fn clear_and_tampered_commands_after_auth_are_refused() {
    let grid = Grid::new();
    let args = grid.server_args("certdir");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    std::fs::write(server.path("victim"), b"keep me").unwrap();

    let (mut c, mut channel, _) = gsi_login(&grid, &server);
    // A clear command after the exchange.
    assert!(c.cmd("DELE /victim").starts_with("533"), "clear command accepted");
    // A wrapped command that does not unwrap.
    let mut token = channel.wrap(b"DELE /victim\r\n").unwrap();
    let last = token.len() - 1;
    token[last] ^= 1;
    let reply = c.cmd(&format!("ENC {}", BASE64.encode(&token)));
    assert!(reply.starts_with("535"), "{reply}");
    assert!(c.cmd("ENC %%%").starts_with("535"));
    assert_eq!(std::fs::read(server.path("victim")).unwrap(), b"keep me");
}

/// A control connection through AUTH GSSAPI and ADAT (delegating), not yet logged in.
fn gsi_login(grid: &Grid, server: &Server) -> (Raw, Channel, ClientCredentials) {
    let stream = TcpStream::connect(server.addr).unwrap();
    let mut c = Raw {
        reader: BufReader::new(stream.try_clone().unwrap()),
        writer: stream,
    };
    assert!(c.line().starts_with("220"));
    assert!(c.cmd("AUTH GSSAPI").starts_with("334"));
    let trust = TrustPaths {
        ca_dir: grid.path("certdir"),
    };
    let creds = ClientCredentials::load(&grid.path("proxy"), &trust).unwrap();
    let (mut init, mut token) = creds.initiator(Some("localhost"), true).unwrap();
    let channel = loop {
        let reply = c.cmd(&format!("ADAT {}", BASE64.encode(&token)));
        let data = reply.trim_end()[4..]
            .strip_prefix("ADAT=")
            .map(|b| BASE64.decode(b).unwrap());
        match init.step(&data.expect("ADAT data")).unwrap() {
            InitStep::Continue(next, out) => (init, token) = (next, out),
            InitStep::Established(done) => {
                assert!(c
                    .cmd(&format!("ADAT {}", BASE64.encode(&done.token)))
                    .starts_with("235"));
                break done.channel;
            }
        }
    };
    (c, channel, creds)
}

/// Sends a wrapped command; the plain text of the wrapped reply's lines.
fn enc(c: &mut Raw, channel: &mut Channel, line: &str) -> String {
    let token = channel.wrap(format!("{line}\r\n").as_bytes()).unwrap();
    c.send(&format!("ENC {}", BASE64.encode(token)));
    read_wrapped(c, channel)
}

fn read_wrapped(c: &mut Raw, channel: &mut Channel) -> String {
    let mut text = String::new();
    loop {
        let l = c.line();
        assert!(l.starts_with("632"), "{l}");
        let plain = channel.unwrap(&BASE64.decode(l[4..].trim()).unwrap()).unwrap();
        text.push_str(&String::from_utf8(plain).unwrap());
        if l.as_bytes()[3] == b' ' {
            return text;
        }
    }
}

/// The client's end of DCAU on a fresh data connection, one TLS record at a time.
fn dcau_initiate(sock: &mut TcpStream, auth: &DataAuth) {
    use std::io::Read;
    let (mut hs, first) = auth.start(Role::Connected).unwrap();
    sock.write_all(&first).unwrap();
    loop {
        let mut record = vec![0u8; 5];
        sock.read_exact(&mut record).unwrap();
        let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
        record.resize(5 + len, 0);
        sock.read_exact(&mut record[5..]).unwrap();
        match auth.step(hs, &record).unwrap() {
            HandshakeStep::Continue(next, out) => {
                sock.write_all(&out).unwrap();
                hs = next;
            }
            HandshakeStep::Done { token, .. } => {
                sock.write_all(&token).unwrap();
                return;
            }
        }
    }
}

#[test]
fn a_stranger_on_a_dcau_passive_port_is_dropped_and_the_transfer_goes_on() {
    use std::io::Read;
    let grid = Grid::new();
    let args = grid.server_args("certdir");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    let content = common::pattern(3 << 20, 9);
    std::fs::write(server.path("f"), &content).unwrap();
    let (mut c, mut channel, creds) = gsi_login(&grid, &server);
    assert!(enc(&mut c, &mut channel, "USER :globus-mapping:").starts_with("331"));
    assert!(enc(&mut c, &mut channel, "PASS x").starts_with("230"));
    assert!(enc(&mut c, &mut channel, "TYPE I").starts_with("200"));
    let pasv = enc(&mut c, &mut channel, "PASV");
    let nums: Vec<u16> = pasv[pasv.find('(').unwrap() + 1..pasv.find(')').unwrap()]
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect();
    let port = nums[4] * 256 + nums[5];
    let token = channel.wrap(b"RETR /f\r\n").unwrap();
    c.send(&format!("ENC {}", BASE64.encode(token)));
    // The stranger comes first (same address, so only DCAU can tell it apart).
    let mut stranger = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stranger.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = stranger.read_to_end(&mut sink);
    assert!(sink.is_empty(), "the stranger got data");
    let mut data = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = DataAuth::new(&creds.credential, &creds.trust, None, false).unwrap();
    dcau_initiate(&mut data, &auth);
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert!(got == content, "{} bytes of {}", got.len(), content.len());
    let mut replies = read_wrapped(&mut c, &mut channel);
    if replies.starts_with("150") {
        replies = read_wrapped(&mut c, &mut channel);
    }
    assert!(replies.starts_with("226"), "{replies}");
    assert!(server.log().contains("dropped data connection"), "{}", server.log());
}

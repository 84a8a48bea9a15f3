//! An attacker on a GSI control channel: commands sent in clear after the security exchange
//! and tampered wrapped commands are refused, never run.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use common::grid::Grid;
use common::Server;
use ringmover::gsi::{ClientCredentials, InitStep, TrustPaths};

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
    let (mut init, mut token) = creds.initiator("localhost", true).unwrap();
    let mut channel = loop {
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

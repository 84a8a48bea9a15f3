//! The client side of the control protocol, sans-IO: replies assembled from lines, the login
//! sequence with the codes each step expects, the command lines the client sends, and what a
//! reply read during a transfer means. `client/` drives it over a socket.

use core::net::SocketAddr;

use thiserror::Error;

use super::command::parse_host_port;
use crate::block::RangeSet;

/// A reply as the client reads it: the code and all its text (lines joined by `\n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerReply {
    pub code: u16,
    pub text: String,
}

impl ServerReply {
    pub fn new(code: u16, text: impl Into<String>) -> ServerReply {
        ServerReply {
            code,
            text: text.into(),
        }
    }

    /// 1xx: more replies follow for the same command.
    pub fn preliminary(&self) -> bool {
        self.code < 200
    }

    /// 4xx or 5xx.
    pub fn refused(&self) -> bool {
        self.code >= 400
    }

    /// A 4xx: the same command may succeed later.
    pub fn transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The text after the code of a one-line reply (`213 1024` → `1024`).
    pub fn body(&self) -> &str {
        self.text.get(4..).unwrap_or_default().trim()
    }
}

impl std::fmt::Display for ServerReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A server answer the client cannot use.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReplyError {
    #[error("not a reply: {0}")]
    NotAReply(String),
    #[error("no address in: {0}")]
    NoAddress(String),
    #[error("bad address in {0}")]
    BadAddress(String),
    #[error("a command may not contain a line break or NUL (from a path or URL?): {0:?}")]
    LineBreak(String),
}

/// One command line as it goes on the wire, CRLF added. A line break (or NUL) inside it, from
/// a file name or a URL, would let it smuggle a second command (`STOR a\r\nDELE b`), so such a
/// line is refused.
pub fn command_line(line: &str) -> Result<String, ReplyError> {
    if line.contains(['\r', '\n', '\0']) {
        return Err(ReplyError::LineBreak(line.chars().take(80).collect()));
    }
    Ok(format!("{line}\r\n"))
}

/// Assembles replies from lines (RFC 959 §4.2: `code-` opens a multi-line reply that the line
/// starting with `code ` ends).
#[derive(Debug, Default)]
pub struct ReplyReader {
    open: Option<(u16, String)>,
}

impl ReplyReader {
    /// Takes one line (without or with its line end); a reply once it is complete.
    pub fn push_line(&mut self, line: &str) -> Result<Option<ServerReply>, ReplyError> {
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some((code, text)) = &mut self.open {
            text.push('\n');
            text.push_str(line.trim_end());
            if line.starts_with(&format!("{code} ")) {
                let (code, text) = self.open.take().unwrap_or_default();
                return Ok(Some(ServerReply::new(code, text)));
            }
            return Ok(None);
        }
        let code: u16 = line
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse().ok())
            .filter(|c| (100..600).contains(c))
            .ok_or_else(|| ReplyError::NotAReply(line.chars().take(80).collect()))?;
        if line.as_bytes().get(3) == Some(&b'-') {
            self.open = Some((code, line.trim_end().to_string()));
            return Ok(None);
        }
        Ok(Some(ServerReply::new(code, line.trim_end())))
    }

    /// True in the middle of a multi-line reply.
    pub fn mid_reply(&self) -> bool {
        self.open.is_some()
    }
}

/// The login sequence: greeting, USER, PASS when asked, TYPE I.
#[derive(Debug)]
pub struct Login {
    user: String,
    password: String,
    step: LoginStep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoginStep {
    Greeting,
    User,
    Pass,
    Type,
    Done,
}

/// What the driver does after a login reply.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginNext {
    /// Send this line, then read the next reply.
    Send(String),
    /// Read the next reply (a preliminary one came).
    Wait,
    /// Logged in with TYPE I.
    Done,
    /// The server refused (or answered out of turn).
    Refused(ServerReply),
}

impl Login {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Login {
        Login {
            user: user.into(),
            password: password.into(),
            step: LoginStep::Greeting,
        }
    }

    /// The first command when the greeting was already read (a security exchange came
    /// between it and the login).
    pub fn after_greeting(&mut self) -> String {
        self.step = LoginStep::User;
        format!("USER {}", self.user)
    }

    /// The next step after `reply` (the first one is the greeting).
    pub fn on_reply(&mut self, reply: ServerReply) -> LoginNext {
        use LoginStep as S;
        if reply.preliminary() {
            return LoginNext::Wait;
        }
        let (next, send) = match (self.step, reply.code) {
            (S::Greeting, 220) => (S::User, Some(format!("USER {}", self.user))),
            (S::User, 331) => (S::Pass, Some(format!("PASS {}", self.password))),
            (S::User | S::Pass, 230 | 202) => (S::Type, Some("TYPE I".to_string())),
            (S::Type, 200) => (S::Done, None),
            _ => return LoginNext::Refused(reply),
        };
        self.step = next;
        match send {
            Some(line) => LoginNext::Send(line),
            None => LoginNext::Done,
        }
    }
}

/// A command the client sends, in the spelling the Globus server and dCache take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Feat,
    Quit,
    Pasv,
    /// ABUF without a rate: the server sizes the buffers from the control RTT.
    Abuf,
    Port(core::net::SocketAddrV4),
    Mode(crate::block::Mode),
    Sbuf(u64),
    /// `OPTS RETR Parallelism=p,p,p;[BlockSize=n;]`.
    OptsRetr {
        parallelism: u32,
        block_size: Option<u64>,
    },
    /// `OPTS PASV AllowDelayed=1;`.
    AllowDelayedPassive,
    /// `TREV RESTART|PERF seconds`.
    RestartMarkers(u64),
    PerfMarkers(u64),
    Rest(&'a Restart),
    Retr(&'a str),
    Stor(&'a str),
    /// `ERET P offset length path`.
    EretPartial {
        offset: u64,
        length: u64,
        path: &'a str,
    },
    /// GET (download) or PUT with `path=`, and `pasv;` or `port=` or neither (reuse).
    GetPut {
        get: bool,
        path: &'a str,
        channel: G2Channel,
    },
    Mlsd(&'a str),
    Mkd(&'a str),
    Size(&'a str),
    Mdtm(&'a str),
    /// `CKSM algorithm 0 -1 path`: the whole file.
    Cksm {
        algorithm: &'a str,
        path: &'a str,
    },
}

/// How a GET/PUT names its data channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum G2Channel {
    /// Neither: the connections of the previous transfer.
    Reuse,
    Pasv,
    Port(core::net::SocketAddrV4),
}

impl std::fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::reply::host_port;
        match self {
            Request::Feat => f.write_str("FEAT"),
            Request::Quit => f.write_str("QUIT"),
            Request::Pasv => f.write_str("PASV"),
            Request::Abuf => f.write_str("ABUF"),
            Request::Port(a) => write!(f, "PORT {}", host_port(*a.ip(), a.port())),
            Request::Mode(m) => write!(f, "MODE {}", m.letter()),
            Request::Sbuf(n) => write!(f, "SBUF {n}"),
            Request::OptsRetr {
                parallelism: p,
                block_size,
            } => {
                write!(f, "OPTS RETR Parallelism={p},{p},{p};")?;
                match block_size {
                    Some(n) => write!(f, "BlockSize={n};"),
                    None => Ok(()),
                }
            }
            Request::AllowDelayedPassive => f.write_str("OPTS PASV AllowDelayed=1;"),
            Request::RestartMarkers(n) => write!(f, "TREV RESTART {n}"),
            Request::PerfMarkers(n) => write!(f, "TREV PERF {n}"),
            Request::Rest(r) => f.write_str(&r.line()),
            Request::Retr(p) => write!(f, "RETR {p}"),
            Request::Stor(p) => write!(f, "STOR {p}"),
            Request::EretPartial { offset, length, path } => write!(f, "ERET P {offset} {length} {path}"),
            Request::GetPut { get, path, channel } => {
                write!(f, "{} path={path};", if *get { "GET" } else { "PUT" })?;
                match channel {
                    G2Channel::Reuse => Ok(()),
                    G2Channel::Pasv => f.write_str("pasv;"),
                    G2Channel::Port(a) => write!(f, "port={};", host_port(*a.ip(), a.port())),
                }
            }
            Request::Mlsd(p) => write!(f, "MLSD {p}"),
            Request::Mkd(p) => write!(f, "MKD {p}"),
            Request::Size(p) => write!(f, "SIZE {p}"),
            Request::Mdtm(p) => write!(f, "MDTM {p}"),
            Request::Cksm { algorithm, path } => write!(f, "CKSM {algorithm} 0 -1 {path}"),
        }
    }
}

/// Where a transfer restarts: REST's argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Stream mode: the data starts at this offset.
    Offset(u64),
    /// MODE E/X: these ranges are in place already.
    Ranges(RangeSet),
}

impl Restart {
    pub fn line(&self) -> String {
        match self {
            Restart::Offset(n) => format!("REST {n}"),
            Restart::Ranges(r) => format!("REST {}", r.to_marker()),
        }
    }
}

/// What a reply read while a transfer runs means to the client.
#[derive(Debug, PartialEq, Eq)]
pub enum TransferReply {
    /// 127: the address to connect to (GET/PUT, delayed passive).
    Address(SocketAddr),
    /// 111: byte ranges the receiving side has stored.
    Ranges(RangeSet),
    /// 112: bytes moved so far.
    Performance(u64),
    /// 125 or 150: the data transfer started.
    Started,
    /// 2xx: the transfer ended well.
    Done,
    /// Any other preliminary reply.
    Other,
    /// 4xx/5xx.
    Refused(ServerReply),
}

impl TransferReply {
    pub fn of(reply: ServerReply) -> Result<TransferReply, ReplyError> {
        Ok(match reply.code {
            127 => TransferReply::Address(parse_paren_address(&reply.text)?),
            111 => TransferReply::Ranges(parse_range_marker(&reply.text).unwrap_or_default()),
            112 => TransferReply::Performance(parse_perf_marker(&reply.text).unwrap_or(0)),
            125 | 150 => TransferReply::Started,
            c if c >= 400 => TransferReply::Refused(reply),
            c if c >= 200 => TransferReply::Done,
            _ => TransferReply::Other,
        })
    }
}

/// The reply to PASV: the server's data address, or None for `200 Passive delayed.`.
pub fn pasv_address(reply: &ServerReply) -> Result<Option<SocketAddr>, Option<ReplyError>> {
    match reply.code {
        227 => parse_paren_address(&reply.text).map(Some).map_err(Some),
        200 => Ok(None),
        _ => Err(None),
    }
}

/// The labels of a 211 FEAT reply (each feature line, trimmed, upper case).
pub fn features(reply: &ServerReply) -> Vec<String> {
    if reply.code != 211 {
        return Vec::new();
    }
    reply
        .text
        .lines()
        .filter(|l| l.starts_with(' '))
        .map(|l| l.trim().to_ascii_uppercase())
        .collect()
}

/// The `(h1,h2,h3,h4,p1,p2)` address in a 227/127 reply.
pub fn parse_paren_address(text: &str) -> Result<SocketAddr, ReplyError> {
    let inner = text
        .find('(')
        .and_then(|i| text[i + 1..].find(')').map(|j| &text[i + 1..i + 1 + j]))
        .ok_or_else(|| ReplyError::NoAddress(text.chars().take(80).collect()))?;
    parse_host_port(inner)
        .map_err(|e| ReplyError::BadAddress(format!("{}: {e}", text.chars().take(80).collect::<String>())))
}

/// The ranges of a `111 Range Marker a-b,c-d` reply (exclusive ends), if it is one.
pub fn parse_range_marker(text: &str) -> Option<RangeSet> {
    let rest = text.get(4..)?;
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    parse_ranges(rest[start..].trim())
}

/// `a-b,c-d` as a set; None when any part is malformed or empty.
pub fn parse_ranges(s: &str) -> Option<RangeSet> {
    let mut set = RangeSet::new();
    for r in s.split(',') {
        let (a, b) = r.trim().split_once('-')?;
        let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
        if a > b {
            return None;
        }
        set.insert(a, b);
    }
    Some(set)
}

/// Bytes moved so far from a 112 perf marker (`Stripe Bytes Transferred: N`).
pub fn parse_perf_marker(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Stripe Bytes Transferred:")
            .and_then(|n| n.trim().parse().ok())
    })
}

/// Fuzz body (`fuzz/fuzz_targets/client_reply.rs`, and a bounded run in the tests): the reply
/// parsers take any server text without panicking, and ranges they accept are well formed.
pub fn fuzz_reply(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = parse_paren_address(&text);
    let _ = parse_perf_marker(&text);
    for ranges in [parse_range_marker(&text), parse_ranges(&text)].into_iter().flatten() {
        assert!(ranges.ranges().iter().all(|(a, b)| a <= b));
    }
    let mut reader = ReplyReader::default();
    for line in text.lines() {
        let _ = reader.push_line(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> ServerReply {
        ServerReply::new(code, text)
    }

    #[test]
    fn replies_from_lines() {
        let mut r = ReplyReader::default();
        assert_eq!(r.push_line("220 ready\r\n").unwrap(), Some(reply(220, "220 ready")));
        assert_eq!(r.push_line("211-Features:").unwrap(), None);
        assert_eq!(r.push_line(" GETPUT").unwrap(), None);
        // A line that only looks like the end (other code) does not end it.
        assert_eq!(r.push_line("212 not yet").unwrap(), None);
        let feat = r.push_line("211 End").unwrap().unwrap();
        assert_eq!(feat.text, "211-Features:\n GETPUT\n212 not yet\n211 End");
        assert_eq!(features(&feat), ["GETPUT"]);
        assert!(!r.mid_reply());
        assert!(matches!(r.push_line("hello"), Err(ReplyError::NotAReply(_))));
        assert!(matches!(r.push_line("999 x"), Err(ReplyError::NotAReply(_))));
    }

    #[test]
    fn requests_are_spelled_as_the_servers_take_them() {
        let a: core::net::SocketAddrV4 = "10.0.0.2:51207".parse().unwrap();
        let cases: Vec<(Request, &str)> = vec![
            (Request::Port(a), "PORT 10,0,0,2,200,7"),
            (Request::Mode(crate::block::Mode::X), "MODE X"),
            (
                Request::OptsRetr {
                    parallelism: 4,
                    block_size: Some(65536),
                },
                "OPTS RETR Parallelism=4,4,4;BlockSize=65536;",
            ),
            (
                Request::EretPartial {
                    offset: 5,
                    length: 10,
                    path: "/f",
                },
                "ERET P 5 10 /f",
            ),
            (
                Request::GetPut {
                    get: false,
                    path: "/a b",
                    channel: G2Channel::Port(a),
                },
                "PUT path=/a b;port=10,0,0,2,200,7;",
            ),
            (
                Request::GetPut {
                    get: true,
                    path: "/f",
                    channel: G2Channel::Pasv,
                },
                "GET path=/f;pasv;",
            ),
            (
                Request::Cksm {
                    algorithm: "ADLER32",
                    path: "/f",
                },
                "CKSM ADLER32 0 -1 /f",
            ),
            (Request::Rest(&Restart::Offset(7)), "REST 7"),
        ];
        for (r, line) in cases {
            assert_eq!(r.to_string(), line);
        }
    }

    #[test]
    fn command_lines_cannot_smuggle_a_second_command() {
        assert_eq!(command_line("STOR /a b").unwrap(), "STOR /a b\r\n");
        for bad in ["STOR a\r\nDELE b", "STOR a\nDELE b", "RETR a\0"] {
            assert!(matches!(command_line(bad), Err(ReplyError::LineBreak(_))), "{bad:?}");
        }
    }

    #[test]
    fn login_expects_each_code_in_turn() {
        let mut l = Login::new("alice", "pw");
        assert_eq!(l.on_reply(reply(120, "120 wait")), LoginNext::Wait);
        assert_eq!(l.on_reply(reply(220, "220 hi")), LoginNext::Send("USER alice".into()));
        assert_eq!(l.on_reply(reply(331, "331 pw")), LoginNext::Send("PASS pw".into()));
        assert_eq!(l.on_reply(reply(230, "230 in")), LoginNext::Send("TYPE I".into()));
        assert_eq!(l.on_reply(reply(200, "200 ok")), LoginNext::Done);
        // Logged in by USER alone; refusals keep their code.
        let mut l = Login::new("anonymous", "x");
        l.on_reply(reply(220, "220 hi"));
        assert_eq!(l.on_reply(reply(230, "230 in")), LoginNext::Send("TYPE I".into()));
        let mut l = Login::new("alice", "bad");
        l.on_reply(reply(220, "220 hi"));
        l.on_reply(reply(331, "331 pw"));
        assert_eq!(
            l.on_reply(reply(530, "530 Login incorrect.")),
            LoginNext::Refused(reply(530, "530 Login incorrect."))
        );
        // A greeting that is not 220 (421 busy) is a refusal.
        let mut l = Login::new("a", "b");
        assert!(matches!(l.on_reply(reply(421, "421 busy")), LoginNext::Refused(r) if r.transient()));
    }

    #[test]
    fn transfer_replies_and_restarts() {
        let of = |code, text: &str| TransferReply::of(reply(code, text));
        assert_eq!(
            of(127, "127 PORT (10,0,0,2,200,7)").unwrap(),
            TransferReply::Address("10.0.0.2:51207".parse().unwrap())
        );
        let TransferReply::Ranges(r) = of(111, "111 Range Marker 0-10,20-30").unwrap() else {
            panic!("not ranges")
        };
        assert_eq!(r.ranges(), [(0, 10), (20, 30)]);
        assert_eq!(Restart::Ranges(r).line(), "REST 0-10,20-30");
        assert_eq!(Restart::Offset(7).line(), "REST 7");
        assert_eq!(of(150, "150 Opening").unwrap(), TransferReply::Started);
        assert_eq!(of(226, "226 Done").unwrap(), TransferReply::Done);
        assert_eq!(of(110, "110 Restart").unwrap(), TransferReply::Other);
        assert!(matches!(of(451, "451 local error").unwrap(), TransferReply::Refused(r) if r.transient()));
        assert!(matches!(of(127, "127 nothing"), Err(ReplyError::NoAddress(_))));
        assert_eq!(pasv_address(&reply(200, "200 Passive delayed.")), Ok(None));
        assert!(pasv_address(&reply(500, "500 no")).is_err());
    }

    #[test]
    fn reply_parsers_survive_mutated_replies() {
        let seeds: &[&[u8]] = &[
            b"111 Range Marker 0-1000,2000-3000",
            b"112-Perf Marker\n Stripe Bytes Transferred: 4096\n112 End.",
            b"227 Entering Passive Mode (127,0,0,1,4,1)",
            b"127 PORT (10,0,0,2,200,7)",
        ];
        crate::protocol::fuzzing::mutated(seeds, 20_000, fuzz_reply);
    }

    #[test]
    fn markers() {
        assert_eq!(
            parse_range_marker("111 Range Marker 0-1000,2000-3000").map(|r| r.ranges().to_vec()),
            Some(vec![(0, 1000), (2000, 3000)])
        );
        assert_eq!(parse_range_marker("111 Range Marker x"), None);
        assert_eq!(parse_ranges("5-1"), None);
        let perf = "112-Perf Marker\n Timestamp: 1.0\n Stripe Index: 0\n Stripe Bytes Transferred: 4096\n Total Stripe Count: 1\n112 End.";
        assert_eq!(parse_perf_marker(perf), Some(4096));
        assert!(parse_paren_address("227 Entering Passive Mode (127,0,0,1,4,1)").is_ok());
    }
}

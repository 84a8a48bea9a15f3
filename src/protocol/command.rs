//! Command lines to [`Command`] values.
//!
//! `command = verb [SP argument]` (RFC 959 §5.3.1). Verbs are case-insensitive; arguments keep
//! their case and inner spaces (paths may contain spaces). Every verb in the "Must-have for
//! interop" list parses, including those whose behaviour is not built yet: the session answers
//! those with 502/504, never with a parse failure.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use thiserror::Error;

pub use super::args::{
    parse_abuf, parse_get_put, parse_opts, parse_opts_list, parse_trev, GetPutParams, LayoutChoice, OptsArg,
    RetrOptions, TrevEvent,
};

/// Why a line did not parse.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ParseError {
    #[error("Command line is not valid UTF-8.")]
    NotUtf8,
    #[error("Empty command line.")]
    Empty,
    #[error("Unknown command '{0}'.")]
    UnknownVerb(String),
    #[error("{0}")]
    BadArgument(String),
}

/// Transfer type (RFC 959 §3.1.1). Only A (with optional N) and I are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferType {
    Ascii,
    Image,
}

/// Transfer mode (RFC 959 §3.4, GFD.20 MODE E, GFD.47 MODE X).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferMode {
    Stream,
    Block,
    Compressed,
    Extended,
    ExtendedX,
}

/// Address family for EPSV (RFC 2428 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpsvArg {
    Any,
    V4,
    V6,
    All,
    Unknown(u32),
}

/// How an RFC 2228 protected command was wrapped; the replies are wrapped the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrap {
    /// Integrity only (`MIC`, replies `631`).
    Mic,
    /// Confidentiality only (`CONF`, replies `633`).
    Conf,
    /// Both (`ENC`, replies `632`).
    Enc,
}

impl Wrap {
    /// The reply code that carries a wrapped reply line.
    pub fn reply_code(self) -> u16 {
        match self {
            Wrap::Mic => 631,
            Wrap::Enc => 632,
            Wrap::Conf => 633,
        }
    }
}

/// A parsed control command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `USER SP username`
    User(String),
    /// `PASS SP password` (the password may be empty)
    Pass(String),
    /// `ACCT SP account`
    Acct(String),
    /// `AUTH SP mechanism` (RFC 2228)
    Auth(String),
    /// `ADAT SP base64` (RFC 2228)
    Adat(String),
    /// `MIC`/`CONF`/`ENC SP base64` (RFC 2228): protected commands
    Protected(Wrap, String),
    /// `PBSZ SP n` (RFC 2228)
    Pbsz(String),
    /// `PROT SP C|S|E|P` (RFC 2228)
    Prot(String),
    /// `CWD SP path`
    Cwd(String),
    /// `CDUP`
    Cdup,
    /// `QUIT`
    Quit,
    /// `REIN`
    Rein,
    /// `PORT SP h1,h2,h3,h4,p1,p2`
    Port(SocketAddr),
    /// `PASV`
    Pasv,
    /// `EPRT SP |af|addr|port|` (RFC 2428 §2)
    Eprt(SocketAddr),
    /// `EPSV [SP 1|2|ALL]` (RFC 2428 §3)
    Epsv(EpsvArg),
    /// `TYPE SP A [N] | I | L 8`
    Type(TransferType),
    /// `STRU SP F|R|P`
    Stru(char),
    /// `MODE SP S|B|C|E|X`
    Mode(TransferMode),
    /// `RETR SP path`
    Retr(String),
    /// `STOR SP path`
    Stor(String),
    /// `STOU`
    Stou,
    /// `APPE SP path`
    Appe(String),
    /// `ALLO SP n [SP R SP m]`
    Allo(u64),
    /// `REST SP offset` (stream) or `REST SP a-b[,c-d...]` (MODE E ranges)
    Rest(RestArg),
    /// `RNFR SP path`
    Rnfr(String),
    /// `RNTO SP path`
    Rnto(String),
    /// `ABOR`
    Abor,
    /// `DELE SP path`
    Dele(String),
    /// `RMD SP path`
    Rmd(String),
    /// `MKD SP path`
    Mkd(String),
    /// `PWD`
    Pwd,
    /// `LIST [SP path]` (leading `-flags` are ignored)
    List(Option<String>),
    /// `NLST [SP path]`
    Nlst(Option<String>),
    /// `SITE SP subcommand [SP args]`
    Site(SiteCommand),
    /// `SYST`
    Syst,
    /// `STAT [SP path]`
    Stat(Option<String>),
    /// `HELP [SP topic]`
    Help(Option<String>),
    /// `NOOP`
    Noop,
    /// `FEAT` (RFC 2389)
    Feat,
    /// `OPTS SP command [SP options]` (RFC 2389)
    Opts(OptsArg),
    /// `SIZE SP path` (RFC 3659 §4)
    Size(String),
    /// `MDTM SP path` (RFC 3659 §3)
    Mdtm(String),
    /// `MLST [SP path]` (RFC 3659 §7)
    Mlst(Option<String>),
    /// `MLSD [SP path]` (RFC 3659 §7)
    Mlsd(Option<String>),
    /// Recursive MLSD (a Globus extension).
    Mlsr(Option<String>),
    /// `SPAS [SP 2]` (GFD.20 §striped passive)
    Spas,
    /// `SPOR SP h,h,h,h,p,p [SP ...]` (GFD.20)
    Spor(Vec<SocketAddr>),
    /// `ERET SP P SP offset SP length SP path` (GFD.20), or a module form
    Eret(EretArg),
    /// `ESTO SP A SP offset SP path` (GFD.20), or a module form
    Esto(EstoArg),
    /// `SBUF SP bytes` (GFD.20)
    Sbuf(u64),
    /// `ABUF [SP rate]` (ringmover): size socket buffers from the measured RTT and a rate
    Abuf(Option<u64>),
    /// `DCAU SP N | A | S SP subject` (GFD.20)
    Dcau(String),
    /// `CKSM SP alg SP offset SP length SP path` (GFD.47); length -1 means to the end
    Cksm(CksmArg),
    /// `SCKS SP alg SP value` (GFD.47): expected checksum of the next upload
    Scks { algorithm: String, value: String },
    /// `GET SP param;[param;...]` (GFD.47)
    Get(GetPutParams),
    /// `PUT SP param;[param;...]` (GFD.47)
    Put(GetPutParams),
    /// `TREV SP PERF|RESTART SP seconds` (Globus); None: an event we do not send
    Trev(Option<(TrevEvent, u64)>),
    /// `MFMT SP time SP path`
    Mfmt(String),
    /// `LANG [SP tag]`
    Lang(Option<String>),
}

/// `REST` argument: a stream offset or a MODE E range list with exclusive ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestArg {
    Offset(u64),
    Ranges(Vec<(u64, u64)>),
}

/// `CKSM` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CksmArg {
    pub algorithm: String,
    pub offset: u64,
    /// `None` for -1 (to the end of the file).
    pub length: Option<u64>,
    pub path: String,
}

/// `ERET` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EretArg {
    /// `P offset length path`: partial retrieve.
    Partial { offset: u64, length: u64, path: String },
    /// Any other module (`mod_name="params" path`).
    Module(String),
}

/// `ESTO` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EstoArg {
    /// `A offset path`: adjusted store.
    Adjusted { offset: u64, path: String },
    /// Any other module.
    Module(String),
}

/// `SITE` subcommands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteCommand {
    Help,
    ClientInfo(String),
    /// `SITE BUFSIZE|RETRBUFSIZE|STORBUFSIZE|SBUFSIZE|RBUFSIZE|... n`
    BufSize(u64),
    /// `SITE CHMOD octal-mode path`
    Chmod {
        mode: u32,
        path: String,
    },
    /// `SITE UTIME yyyymmddhhmmss path` (and the other spellings, see [`parse_utime`]).
    Utime {
        mtime: i64,
        path: String,
    },
    /// `SITE CHGRP group path` (a name or a number)
    Chgrp {
        group: String,
        path: String,
    },
    Other(String),
}

impl Command {
    /// Parses one command line (without its line end).
    pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
        let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
        let line = line.trim_start();
        if line.trim().is_empty() {
            return Err(ParseError::Empty);
        }
        let (verb, arg) = match line.find(' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, ""),
        };
        let verb = verb.to_ascii_uppercase();
        parse_verb(&verb, arg)
    }

    /// The verb as the client would send it (for logs and HELP).
    pub fn verb(&self) -> &'static str {
        use Command::*;
        match self {
            User(_) => "USER",
            Pass(_) => "PASS",
            Acct(_) => "ACCT",
            Auth(_) => "AUTH",
            Adat(_) => "ADAT",
            Protected(Wrap::Mic, _) => "MIC",
            Protected(Wrap::Conf, _) => "CONF",
            Protected(Wrap::Enc, _) => "ENC",
            Pbsz(_) => "PBSZ",
            Prot(_) => "PROT",
            Cwd(_) => "CWD",
            Cdup => "CDUP",
            Quit => "QUIT",
            Rein => "REIN",
            Port(_) => "PORT",
            Pasv => "PASV",
            Eprt(_) => "EPRT",
            Epsv(_) => "EPSV",
            Type(_) => "TYPE",
            Stru(_) => "STRU",
            Mode(_) => "MODE",
            Retr(_) => "RETR",
            Stor(_) => "STOR",
            Stou => "STOU",
            Appe(_) => "APPE",
            Allo(_) => "ALLO",
            Rest(_) => "REST",
            Rnfr(_) => "RNFR",
            Rnto(_) => "RNTO",
            Abor => "ABOR",
            Dele(_) => "DELE",
            Rmd(_) => "RMD",
            Mkd(_) => "MKD",
            Pwd => "PWD",
            List(_) => "LIST",
            Nlst(_) => "NLST",
            Site(_) => "SITE",
            Syst => "SYST",
            Stat(_) => "STAT",
            Help(_) => "HELP",
            Noop => "NOOP",
            Feat => "FEAT",
            Opts(..) => "OPTS",
            Size(_) => "SIZE",
            Mdtm(_) => "MDTM",
            Mlst(_) => "MLST",
            Mlsd(_) => "MLSD",
            Mlsr(_) => "MLSR",
            Spas => "SPAS",
            Spor(_) => "SPOR",
            Eret(_) => "ERET",
            Esto(_) => "ESTO",
            Sbuf(_) => "SBUF",
            Abuf(_) => "ABUF",
            Dcau(_) => "DCAU",
            Cksm(_) => "CKSM",
            Scks { .. } => "SCKS",
            Get(_) => "GET",
            Put(_) => "PUT",
            Trev(_) => "TREV",
            Mfmt(_) => "MFMT",
            Lang(_) => "LANG",
        }
    }
}

/// Every verb we recognise, in the order SITE HELP and HELP list them.
pub const VERBS: &[&str] = &[
    "ABOR", "ABUF", "ACCT", "ADAT", "ALLO", "APPE", "AUTH", "CDUP", "CKSM", "CONF", "CWD", "DCAU", "DELE", "ENC",
    "EPRT", "EPSV", "ERET", "ESTO", "FEAT", "GET", "HELP", "LANG", "LIST", "MDTM", "MFMT", "MIC", "MKD", "MLSD",
    "MLSR", "MLST", "MODE", "NLST", "NOOP", "OPTS", "PASS", "PASV", "PBSZ", "PORT", "PROT", "PUT", "PWD", "QUIT",
    "REIN", "REST", "RETR", "RMD", "RNFR", "RNTO", "SBUF", "SCKS", "SITE", "SIZE", "SPAS", "SPOR", "STAT", "STOR",
    "STOU", "STRU", "SYST", "TREV", "TYPE", "USER",
];

fn parse_verb(verb: &str, arg: &str) -> Result<Command, ParseError> {
    use Command as C;
    let cmd = match verb {
        "USER" => C::User(required(arg)?.to_string()),
        "PASS" => C::Pass(arg.to_string()),
        "ACCT" => C::Acct(required(arg)?.to_string()),
        "AUTH" => C::Auth(required(arg)?.to_string()),
        "ADAT" => C::Adat(required(arg)?.to_string()),
        "MIC" => C::Protected(Wrap::Mic, required(arg)?.to_string()),
        "CONF" => C::Protected(Wrap::Conf, required(arg)?.to_string()),
        "ENC" => C::Protected(Wrap::Enc, required(arg)?.to_string()),
        "PBSZ" => C::Pbsz(required(arg)?.to_string()),
        "PROT" => C::Prot(required(arg)?.to_string()),
        "CWD" | "XCWD" => C::Cwd(required(arg)?.to_string()),
        "CDUP" | "XCUP" => C::Cdup,
        "QUIT" => C::Quit,
        "REIN" => C::Rein,
        "PORT" => C::Port(parse_host_port(required(arg)?)?),
        "PASV" => C::Pasv,
        "EPRT" => C::Eprt(parse_eprt(required(arg)?)?),
        "EPSV" => C::Epsv(parse_epsv(arg)?),
        "TYPE" => C::Type(parse_type(required(arg)?)?),
        "STRU" => C::Stru(parse_letter(required(arg)?, "FRP")?),
        "MODE" => C::Mode(parse_mode(required(arg)?)?),
        "RETR" => C::Retr(required(arg)?.to_string()),
        "STOR" => C::Stor(required(arg)?.to_string()),
        "STOU" => C::Stou,
        "APPE" => C::Appe(required(arg)?.to_string()),
        "ALLO" => C::Allo(parse_allo(required(arg)?)?),
        "REST" => C::Rest(parse_rest(required(arg)?)?),
        "RNFR" => C::Rnfr(required(arg)?.to_string()),
        "RNTO" => C::Rnto(required(arg)?.to_string()),
        "ABOR" => C::Abor,
        "DELE" => C::Dele(required(arg)?.to_string()),
        "RMD" | "XRMD" => C::Rmd(required(arg)?.to_string()),
        "MKD" | "XMKD" => C::Mkd(required(arg)?.to_string()),
        "PWD" | "XPWD" => C::Pwd,
        "LIST" => C::List(list_path(arg)),
        "NLST" => C::Nlst(list_path(arg)),
        "SITE" => C::Site(parse_site(required(arg)?)?),
        "SYST" => C::Syst,
        "STAT" => C::Stat(optional(arg)),
        "HELP" => C::Help(optional(arg)),
        "NOOP" => C::Noop,
        "FEAT" => C::Feat,
        "OPTS" => C::Opts(parse_opts(required(arg)?)?),
        "SIZE" => C::Size(required(arg)?.to_string()),
        "MDTM" => C::Mdtm(required(arg)?.to_string()),
        "MLST" => C::Mlst(optional(arg)),
        "MLSD" => C::Mlsd(optional(arg)),
        "MLSR" => C::Mlsr(optional(arg)),
        "SPAS" => C::Spas,
        "SPOR" => C::Spor(
            required(arg)?
                .split_whitespace()
                .map(parse_host_port)
                .collect::<Result<_, _>>()?,
        ),
        "ERET" => C::Eret(parse_eret(required(arg)?)?),
        "ESTO" => C::Esto(parse_esto(required(arg)?)?),
        "SBUF" => C::Sbuf(parse_u64(required(arg)?)?),
        "ABUF" => C::Abuf(parse_abuf(optional(arg).as_deref())?),
        "DCAU" => C::Dcau(required(arg)?.to_string()),
        "CKSM" => C::Cksm(parse_cksm(required(arg)?)?),
        "SCKS" => {
            let (algorithm, value) = required(arg)?
                .trim()
                .split_once(' ')
                .ok_or_else(|| ParseError::BadArgument("SCKS needs an algorithm and a value.".into()))?;
            C::Scks {
                algorithm: algorithm.to_string(),
                value: value.trim().to_ascii_lowercase(),
            }
        }
        "GET" => C::Get(parse_get_put(required(arg)?)?),
        "PUT" => C::Put(parse_get_put(required(arg)?)?),
        "TREV" => C::Trev(parse_trev(required(arg)?)),
        "MFMT" => C::Mfmt(required(arg)?.to_string()),
        "LANG" => C::Lang(optional(arg)),
        _ => return Err(ParseError::UnknownVerb(truncate(verb, 32))),
    };
    Ok(cmd)
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn required(arg: &str) -> Result<&str, ParseError> {
    if arg.trim().is_empty() {
        Err(ParseError::BadArgument("Command requires an argument.".into()))
    } else {
        Ok(arg)
    }
}

fn optional(arg: &str) -> Option<String> {
    (!arg.trim().is_empty()).then(|| arg.to_string())
}

/// `LIST [SP path]`: `ls`-style flags such as `-la` (sent by many clients) are dropped.
fn list_path(arg: &str) -> Option<String> {
    let mut rest = arg.trim_start();
    while rest.starts_with('-') {
        rest = rest.split_once(' ').map(|(_, r)| r.trim_start()).unwrap_or("");
    }
    optional(rest)
}

fn parse_u64(s: &str) -> Result<u64, ParseError> {
    s.trim()
        .parse()
        .map_err(|_| ParseError::BadArgument(format!("Invalid number '{}'.", truncate(s, 32))))
}

pub use crate::block::MAX_FILE_OFFSET;

/// A file offset, length or size: a number no larger than [`MAX_FILE_OFFSET`].
fn parse_offset(s: &str) -> Result<u64, ParseError> {
    let n = parse_u64(s)?;
    if n > MAX_FILE_OFFSET {
        return Err(ParseError::BadArgument(format!(
            "Offset {n} is past the largest file offset ({MAX_FILE_OFFSET})."
        )));
    }
    Ok(n)
}

/// `host-port = h1,h2,h3,h4,p1,p2` (RFC 959 §4.1.2), each a decimal 0..=255.
pub fn parse_host_port(s: &str) -> Result<SocketAddr, ParseError> {
    let bad = || ParseError::BadArgument("Invalid host-port; expected h1,h2,h3,h4,p1,p2.".into());
    let nums: Vec<u8> = s
        .trim()
        .split(',')
        .map(|p| p.trim().parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    if nums.len() != 6 {
        return Err(bad());
    }
    let ip = Ipv4Addr::new(nums[0], nums[1], nums[2], nums[3]);
    let port = u16::from(nums[4]) << 8 | u16::from(nums[5]);
    if port == 0 {
        return Err(bad());
    }
    Ok(SocketAddr::new(IpAddr::V4(ip), port))
}

/// `EPRT SP <d><net-prt><d><net-addr><d><tcp-port><d>` (RFC 2428 §2).
fn parse_eprt(s: &str) -> Result<SocketAddr, ParseError> {
    let bad = || ParseError::BadArgument("Invalid EPRT argument; expected |af|addr|port|.".into());
    let s = s.trim();
    let delim = s.chars().next().ok_or_else(bad)?;
    if !(33..=126).contains(&(delim as u32)) {
        return Err(bad());
    }
    let parts: Vec<&str> = s.split(delim).collect();
    if parts.len() != 5 || !parts[0].is_empty() || !parts[4].is_empty() {
        return Err(bad());
    }
    let ip: IpAddr = match parts[1] {
        "1" => IpAddr::V4(parts[2].parse().map_err(|_| bad())?),
        "2" => IpAddr::V6(parts[2].parse().map_err(|_| bad())?),
        _ => {
            return Err(ParseError::BadArgument(
                "Network protocol not supported, use (1,2)".into(),
            ))
        }
    };
    let port: u16 = parts[3].parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok(SocketAddr::new(ip, port))
}

fn parse_epsv(s: &str) -> Result<EpsvArg, ParseError> {
    match s.trim().to_ascii_uppercase().as_str() {
        "" => Ok(EpsvArg::Any),
        "1" => Ok(EpsvArg::V4),
        "2" => Ok(EpsvArg::V6),
        "ALL" => Ok(EpsvArg::All),
        other => other
            .parse()
            .map(EpsvArg::Unknown)
            .map_err(|_| ParseError::BadArgument("Invalid EPSV argument.".into())),
    }
}

/// `TYPE SP (A [SP N] | I | L SP 8)` (RFC 959 §4.1.2).
fn parse_type(s: &str) -> Result<TransferType, ParseError> {
    let upper = s.trim().to_ascii_uppercase();
    let words: Vec<&str> = upper.split_whitespace().collect();
    match words.as_slice() {
        ["A"] | ["A", "N"] => Ok(TransferType::Ascii),
        ["I"] | ["L", "8"] => Ok(TransferType::Image),
        _ => Err(ParseError::BadArgument(format!(
            "Unsupported type '{}'.",
            truncate(s, 16)
        ))),
    }
}

fn parse_letter(s: &str, allowed: &str) -> Result<char, ParseError> {
    let t = s.trim().to_ascii_uppercase();
    let mut chars = t.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if allowed.contains(c) => Ok(c),
        _ => Err(ParseError::BadArgument(format!(
            "Unrecognized parameter '{}'.",
            truncate(s, 16)
        ))),
    }
}

fn parse_mode(s: &str) -> Result<TransferMode, ParseError> {
    Ok(match parse_letter(s, "SBCEX")? {
        'S' => TransferMode::Stream,
        'B' => TransferMode::Block,
        'C' => TransferMode::Compressed,
        'E' => TransferMode::Extended,
        _ => TransferMode::ExtendedX,
    })
}

/// `ALLO SP decimal-integer [SP R SP decimal-integer]` (RFC 959 §4.1.3).
fn parse_allo(s: &str) -> Result<u64, ParseError> {
    let first = s.split_whitespace().next().unwrap_or("");
    parse_offset(first)
}

/// `REST SP offset` or `REST SP start-end[,start-end...]` (GFD.20 §restart markers).
fn parse_rest(s: &str) -> Result<RestArg, ParseError> {
    let s = s.trim();
    if !s.contains('-') {
        return parse_offset(s).map(RestArg::Offset);
    }
    let mut ranges = Vec::new();
    for item in s.split(',') {
        let (a, b) = item
            .split_once('-')
            .ok_or_else(|| ParseError::BadArgument("Invalid restart range.".into()))?;
        let (a, b) = (parse_offset(a)?, parse_offset(b)?);
        if b < a {
            return Err(ParseError::BadArgument("Restart range ends before it starts.".into()));
        }
        ranges.push((a, b));
    }
    Ok(RestArg::Ranges(ranges))
}

/// `CKSM SP alg SP offset SP length SP path`, length `-1` meaning to the end.
fn parse_cksm(s: &str) -> Result<CksmArg, ParseError> {
    let mut it = s.splitn(4, ' ');
    let algorithm = it.next().unwrap_or("").to_string();
    let offset = parse_offset(it.next().unwrap_or(""))?;
    let length = match it.next().unwrap_or("").trim() {
        "-1" => None,
        l => Some(parse_offset(l)?),
    };
    let path = required(it.next().unwrap_or(""))?.to_string();
    Ok(CksmArg {
        algorithm,
        offset,
        length,
        path,
    })
}

fn parse_eret(s: &str) -> Result<EretArg, ParseError> {
    let mut it = s.splitn(4, ' ');
    match it.next() {
        Some(m) if m.eq_ignore_ascii_case("P") => {
            let offset = parse_offset(it.next().unwrap_or(""))?;
            let length = parse_offset(it.next().unwrap_or(""))?;
            let path = required(it.next().unwrap_or(""))?.to_string();
            Ok(EretArg::Partial { offset, length, path })
        }
        _ => Ok(EretArg::Module(s.to_string())),
    }
}

fn parse_esto(s: &str) -> Result<EstoArg, ParseError> {
    let mut it = s.splitn(3, ' ');
    match it.next() {
        Some(m) if m.eq_ignore_ascii_case("A") => {
            let offset = parse_offset(it.next().unwrap_or(""))?;
            let path = required(it.next().unwrap_or(""))?.to_string();
            Ok(EstoArg::Adjusted { offset, path })
        }
        _ => Ok(EstoArg::Module(s.to_string())),
    }
}

/// The SITE buffer commands GFD.20 names as predecessors of SBUF, plus the Globus client's table.
const SITE_BUFFER_COMMANDS: &[&str] = &[
    "BUFSIZE",
    "RETRBUFSIZE",
    "STORBUFSIZE",
    "RBUFSIZE",
    "RBUFSZ",
    "RBUFSIZ",
    "SBUFSIZE",
    "SBUFSZ",
    "SBUFSIZ",
];

fn parse_site(s: &str) -> Result<SiteCommand, ParseError> {
    let (sub, rest) = s.trim_start().split_once(' ').unwrap_or((s.trim(), ""));
    let sub = sub.to_ascii_uppercase();
    Ok(match sub.as_str() {
        "HELP" => SiteCommand::Help,
        "CLIENTINFO" => SiteCommand::ClientInfo(rest.to_string()),
        _ if SITE_BUFFER_COMMANDS.contains(&sub.as_str()) => SiteCommand::BufSize(parse_u64(rest)?),
        "CHMOD" => {
            let (mode, path) = word_and_path(rest)?;
            let mode = u32::from_str_radix(mode, 8)
                .ok()
                .filter(|&m| m <= 0o7777)
                .ok_or_else(|| ParseError::BadArgument(format!("Invalid mode '{}'.", truncate(mode, 16))))?;
            SiteCommand::Chmod { mode, path }
        }
        "CHGRP" => {
            let (group, path) = word_and_path(rest)?;
            SiteCommand::Chgrp {
                group: group.to_string(),
                path,
            }
        }
        "UTIME" => {
            let (mtime, path) = parse_utime(rest)?;
            SiteCommand::Utime { mtime, path }
        }
        _ => SiteCommand::Other(truncate(&sub, 32)),
    })
}

/// `WORD SP path`, the path taking the rest of the line (it may hold spaces).
fn word_and_path(s: &str) -> Result<(&str, String), ParseError> {
    let (word, path) = s
        .trim_start()
        .split_once(' ')
        .ok_or_else(|| ParseError::BadArgument("Expected an argument and a path.".into()))?;
    Ok((word, required(path)?.to_string()))
}

/// A `yyyymmddhhmmss` time (UTC) as Unix seconds.
pub fn parse_timeval(s: &str) -> Option<i64> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    let date = time::Date::from_calendar_date(
        n(0..4)? as i32,
        time::Month::try_from(n(4..6)? as u8).ok()?,
        n(6..8)? as u8,
    )
    .ok()?;
    let clock = time::Time::from_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8).ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_utc().unix_timestamp())
}

/// The spellings of `SITE UTIME`: `TIME path` (Globus), `ATIME MTIME CTIME [UTC] path` and
/// `path ATIME MTIME CTIME UTC` (ProFTPD and others). The modification time is the one set.
fn parse_utime(s: &str) -> Result<(i64, String), ParseError> {
    let bad = || ParseError::BadArgument("Expected SITE UTIME yyyymmddhhmmss path.".into());
    let words: Vec<&str> = s.split(' ').filter(|w| !w.is_empty()).collect();
    let leading = words.iter().take_while(|w| parse_timeval(w).is_some()).count();
    if (1..=3).contains(&leading) {
        let mut skip = leading;
        if words.get(skip).is_some_and(|w| w.eq_ignore_ascii_case("UTC")) {
            skip += 1;
        }
        let mtime = parse_timeval(words[(leading - 1).min(1)]).ok_or_else(bad)?;
        let path = words[skip..].join(" ");
        return Ok((mtime, required(&path)?.to_string()));
    }
    // path ATIME MTIME CTIME UTC
    match words.as_slice() {
        [path @ .., _, mtime, _, utc] if utc.eq_ignore_ascii_case("UTC") && !path.is_empty() => {
            let mtime = parse_timeval(mtime).ok_or_else(bad)?;
            Ok((mtime, path.join(" ")))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, ParseError> {
        Command::parse(s.as_bytes())
    }

    #[test]
    fn known_answers() {
        let table: &[(&str, Command)] = &[
            ("USER anonymous", Command::User("anonymous".into())),
            ("pass globus@", Command::Pass("globus@".into())),
            ("PASS", Command::Pass(String::new())),
            ("TYPE I", Command::Type(TransferType::Image)),
            ("type a n", Command::Type(TransferType::Ascii)),
            ("TYPE L 8", Command::Type(TransferType::Image)),
            ("MODE E", Command::Mode(TransferMode::Extended)),
            ("RETR /dir/a file", Command::Retr("/dir/a file".into())),
            (
                "PORT 127,0,0,1,217,105",
                Command::Port("127.0.0.1:55657".parse().unwrap()),
            ),
            ("EPRT |2|::1|6446|", Command::Eprt("[::1]:6446".parse().unwrap())),
            (
                "EPRT |1|132.235.1.2|6275|",
                Command::Eprt("132.235.1.2:6275".parse().unwrap()),
            ),
            ("EPSV", Command::Epsv(EpsvArg::Any)),
            ("EPSV ALL", Command::Epsv(EpsvArg::All)),
            ("REST 1000", Command::Rest(RestArg::Offset(1000))),
            (
                "REST 0-10,20-30",
                Command::Rest(RestArg::Ranges(vec![(0, 10), (20, 30)])),
            ),
            ("ALLO 8388608", Command::Allo(8388608)),
            ("ALLO 100 R 10", Command::Allo(100)),
            ("LIST -la /x", Command::List(Some("/x".into()))),
            ("LIST -la", Command::List(None)),
            ("NLST", Command::Nlst(None)),
            ("SITE HELP", Command::Site(SiteCommand::Help)),
            ("SITE RETRBUFSIZE 4194304", Command::Site(SiteCommand::BufSize(4194304))),
            (
                "SITE CHMOD 640 /a b",
                Command::Site(SiteCommand::Chmod {
                    mode: 0o640,
                    path: "/a b".into(),
                }),
            ),
            (
                "SITE CHGRP grid f",
                Command::Site(SiteCommand::Chgrp {
                    group: "grid".into(),
                    path: "f".into(),
                }),
            ),
            (
                "SITE UTIME 20200102030405 /f",
                Command::Site(SiteCommand::Utime {
                    mtime: 1_577_934_245,
                    path: "/f".into(),
                }),
            ),
            (
                "SITE UTIME 20200101000000 20200102030405 20200101000000 UTC /f",
                Command::Site(SiteCommand::Utime {
                    mtime: 1_577_934_245,
                    path: "/f".into(),
                }),
            ),
            (
                "SITE UTIME /a b 20200101000000 20200102030405 20200101000000 UTC",
                Command::Site(SiteCommand::Utime {
                    mtime: 1_577_934_245,
                    path: "/a b".into(),
                }),
            ),
            ("MFMT 20200102030405 /f", Command::Mfmt("20200102030405 /f".into())),
            (
                "ERET P 1000000 3000000 /src.bin",
                Command::Eret(EretArg::Partial {
                    offset: 1000000,
                    length: 3000000,
                    path: "/src.bin".into(),
                }),
            ),
            (
                "ESTO A 5 /f",
                Command::Esto(EstoArg::Adjusted {
                    offset: 5,
                    path: "/f".into(),
                }),
            ),
            (
                "OPTS RETR Parallelism=4,4,4;",
                Command::Opts(OptsArg::Retr(RetrOptions {
                    parallelism: Some(4),
                    ..RetrOptions::default()
                })),
            ),
            ("SBUF 65536", Command::Sbuf(65536)),
            (
                "CKSM MD5 0 -1 /a b",
                Command::Cksm(CksmArg {
                    algorithm: "MD5".into(),
                    offset: 0,
                    length: None,
                    path: "/a b".into(),
                }),
            ),
            (
                "SCKS adler32 0A0B",
                Command::Scks {
                    algorithm: "adler32".into(),
                    value: "0a0b".into(),
                },
            ),
            (
                "GET path=/f;pasv;",
                Command::Get(GetPutParams {
                    path: "/f".into(),
                    pasv: true,
                    ..GetPutParams::default()
                }),
            ),
            (
                "SPOR 127,0,0,1,1,2",
                Command::Spor(vec!["127.0.0.1:258".parse().unwrap()]),
            ),
        ];
        for (line, want) in table {
            assert_eq!(&p(line).unwrap(), want, "{line}");
        }
    }

    #[test]
    fn garbage_is_rejected_not_panicking() {
        assert_eq!(p(""), Err(ParseError::Empty));
        assert_eq!(p("   "), Err(ParseError::Empty));
        assert!(matches!(p("XYZZY foo"), Err(ParseError::UnknownVerb(_))));
        assert_eq!(Command::parse(b"RETR \xff\xfe"), Err(ParseError::NotUtf8));
        for bad in [
            "PORT 1,2,3",
            "PORT 256,0,0,1,1,1",
            "PORT 127,0,0,1,0,0",
            "EPRT |3|x|1|",
            "EPRT 1|x",
            "TYPE E",
            "MODE Q",
            "REST x",
            "REST 10-5",
            "SBUF -1",
            "RETR",
            "ERET P 1 x /f",
            "SITE BUFSIZE big",
        ] {
            assert!(matches!(p(bad), Err(ParseError::BadArgument(_))), "{bad}");
        }
    }

    #[test]
    fn every_listed_verb_parses_with_a_plausible_argument() {
        for verb in VERBS {
            let line = format!("{verb} {}", sample_arg(verb));
            assert!(
                !matches!(p(&line), Err(ParseError::UnknownVerb(_))),
                "{verb} not recognised"
            );
        }
    }

    fn sample_arg(verb: &str) -> &'static str {
        match verb {
            "PORT" | "SPOR" => "127,0,0,1,4,1",
            "EPRT" => "|1|127.0.0.1|1025|",
            "TYPE" => "I",
            "STRU" => "F",
            "MODE" => "S",
            "ALLO" | "REST" | "SBUF" => "10",
            "CKSM" => "MD5 0 -1 /f",
            "SCKS" => "MD5 00",
            "ERET" => "P 0 1 /f",
            "ESTO" => "A 0 /f",
            "EPSV" => "",
            "SITE" => "HELP",
            _ => "x",
        }
    }
}

//! Typed arguments of the GridFTP extension commands whose argument is a small language of its
//! own: the GET/PUT parameter list, the OPTS RETR and OPTS PASV option lists, TREV events and
//! the ABUF rate. [`super::command`] parses them, so the session sees only checked values.

use core::net::SocketAddr;

use super::command::{parse_host_port, ParseError, TransferMode};

fn bad(text: String) -> ParseError {
    ParseError::BadArgument(text)
}

/// Parameters of a GET or PUT command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetPutParams {
    pub path: String,
    pub pasv: bool,
    pub port: Option<SocketAddr>,
    /// `mode=S|E|X`: the mode for this transfer only.
    pub mode: Option<TransferMode>,
}

/// `GET/PUT SP param;[param;...]`, `param = keyword[=value]` (GFD.47 §GET/PUT as dCache and the
/// Globus client use it). Every parameter ends with `;`, but the last one's may be missing (the
/// GridFTP v2 slides write `PUT pasv;mode=x;file=/disk/my_file`). `file=` is accepted for
/// `path=`; unknown `key=value` parameters are ignored. A bare word other than `pasv` is
/// refused: it is what a path containing `;` turns into, and guessing would transfer the wrong
/// file.
pub fn parse_get_put(args: &str) -> Result<GetPutParams, ParseError> {
    let args = args.trim();
    let list = args.strip_suffix(';').unwrap_or(args);
    let mut p = GetPutParams::default();
    let mut path = None;
    for item in list.split(';') {
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (item.trim().to_ascii_lowercase(), None),
        };
        match (key.as_str(), value) {
            ("path" | "file", Some(v)) if !v.is_empty() => path = Some(v.to_string()),
            ("pasv", None) => p.pasv = true,
            ("port", Some(v)) => p.port = Some(parse_host_port(v)?),
            ("mode", Some(v)) => {
                p.mode = Some(match v.trim().to_ascii_uppercase().as_str() {
                    "S" => TransferMode::Stream,
                    "E" => TransferMode::Extended,
                    "X" => TransferMode::ExtendedX,
                    _ => return Err(bad(format!("Unknown mode '{v}'."))),
                })
            }
            (_, Some(_)) => {}
            (word, None) => return Err(bad(format!("Unexpected '{word}' (paths cannot contain ';')."))),
        }
    }
    p.path = path.ok_or_else(|| bad("Missing path.".into()))?;
    if p.pasv && p.port.is_some() {
        return Err(bad("Cannot use both 'pasv' and 'port'.".into()));
    }
    Ok(p)
}

/// `key=value;` items, case-insensitive keys, lenient about a missing final `;`
/// (`docs/protocol-notes.md#opts-lists`). Rejects items without `=`.
pub fn parse_opts_list(args: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut out = Vec::new();
    for item in args.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| bad(format!("Option '{item}' is not key=value.")))?;
        out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(out)
}

/// How `OPTS RETR StripeLayout=` divides a file over the stripes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutChoice {
    Blocked,
    Partitioned,
}

/// `OPTS RETR` options; `None` where the client did not name one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetrOptions {
    /// `Parallelism=start,min,max`: the start value (at least 1).
    pub parallelism: Option<u32>,
    /// `Markers=seconds`.
    pub markers: Option<u64>,
    /// `BlockSize=bytes` (at least 1): the stripe layout's unit.
    pub block_size: Option<u64>,
    pub layout: Option<LayoutChoice>,
}

/// The argument of OPTS, by the command it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptsArg {
    Utf8,
    Retr(RetrOptions),
    Mlst,
    /// `OPTS PASV AllowDelayed=0|1`; None: not named.
    Pasv {
        allow_delayed: Option<bool>,
    },
    /// A command whose options we do not take (504).
    Other(String),
}

/// `OPTS SP command [SP options]` after the verb.
pub fn parse_opts(arg: &str) -> Result<OptsArg, ParseError> {
    let (name, rest) = arg.split_once(' ').unwrap_or((arg, ""));
    Ok(match name.to_ascii_uppercase().as_str() {
        "UTF8" | "UTF-8" => OptsArg::Utf8,
        "RETR" => OptsArg::Retr(parse_retr_options(rest)?),
        "MLST" => OptsArg::Mlst,
        "PASV" => OptsArg::Pasv {
            allow_delayed: parse_opts_list(rest)?
                .into_iter()
                .rev()
                .find(|(k, _)| k == "allowdelayed")
                .map(|(_, v)| v != "0"),
        },
        other => OptsArg::Other(other.to_string()),
    })
}

fn parse_retr_options(args: &str) -> Result<RetrOptions, ParseError> {
    let mut o = RetrOptions::default();
    for (key, value) in parse_opts_list(args)? {
        match key.as_str() {
            "parallelism" => {
                let n = value
                    .split(',')
                    .next()
                    .and_then(|v| v.trim().parse().ok())
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| bad(format!("Bad parallelism '{value}'.")))?;
                o.parallelism = Some(n);
            }
            "markers" => o.markers = Some(value.parse().map_err(|_| bad(format!("Bad markers '{value}'.")))?),
            "blocksize" => {
                let n = value
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| bad(format!("Bad block size '{value}'.")))?;
                o.block_size = Some(n);
            }
            "stripelayout" => {
                o.layout = Some(match value.to_ascii_lowercase().as_str() {
                    "blocked" => LayoutChoice::Blocked,
                    "partitioned" => LayoutChoice::Partitioned,
                    _ => return Err(bad(format!("Bad stripe layout '{value}'."))),
                })
            }
            _ => {}
        }
    }
    Ok(o)
}

/// Which markers TREV sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrevEvent {
    /// 112 performance markers (both directions).
    Perf,
    /// 111 restart markers.
    Restart,
}

/// `TREV SP PERF|RESTART SP seconds`; None: an event we do not send (504).
pub fn parse_trev(arg: &str) -> Option<(TrevEvent, u64)> {
    let mut words = arg.split_whitespace();
    let event = match words.next()?.to_ascii_uppercase().as_str() {
        "PERF" => TrevEvent::Perf,
        "RESTART" => TrevEvent::Restart,
        _ => return None,
    };
    Some((event, words.next()?.parse().ok()?))
}

/// `ABUF [SP rate]`: the rate in bits per second (`units::parse_rate`'s grammar).
pub fn parse_abuf(arg: Option<&str>) -> Result<Option<u64>, ParseError> {
    arg.map(|r| {
        crate::units::parse_rate(r)
            .filter(|bps| *bps >= 1.0)
            .map(|bps| bps as u64)
            .ok_or_else(|| bad(format!("Bad rate '{r}'.")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_put_lists_with_and_without_the_last_semicolon() {
        let p = parse_get_put("path=/d/f;pasv;").unwrap();
        assert_eq!((p.path.as_str(), p.pasv, p.port), ("/d/f", true, None));
        // As on the GridFTP v2 slides: no closing ';'.
        let p = parse_get_put("pasv;mode=x;file=/disk/my_file").unwrap();
        assert_eq!(
            (p.path.as_str(), p.pasv, p.mode),
            ("/disk/my_file", true, Some(TransferMode::ExtendedX))
        );
        assert_eq!(parse_get_put("pasv;mode=x;file=/disk/my_file;").unwrap(), p);
        for bad in [
            "pasv;",
            "path=/a;b;",
            "path=/f;mode=q;",
            "path=/f;pasv;port=127,0,0,1,4,1;",
            ";",
        ] {
            assert!(parse_get_put(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn opts_retr_pasv_trev_and_abuf() {
        let OptsArg::Retr(o) = parse_opts("RETR Parallelism=4,2,8;StripeLayout=Partitioned;BlockSize=65536").unwrap()
        else {
            panic!("not RETR options")
        };
        assert_eq!(
            o,
            RetrOptions {
                parallelism: Some(4),
                markers: None,
                block_size: Some(65536),
                layout: Some(LayoutChoice::Partitioned),
            }
        );
        assert!(parse_opts("RETR Parallelism=0;").is_err());
        assert!(parse_opts("RETR garbage;").is_err());
        assert_eq!(
            parse_opts("pasv AllowDelayed=1;").unwrap(),
            OptsArg::Pasv {
                allow_delayed: Some(true)
            }
        );
        assert_eq!(parse_opts("FOO x").unwrap(), OptsArg::Other("FOO".into()));
        assert_eq!(parse_trev("perf 5"), Some((TrevEvent::Perf, 5)));
        assert_eq!(parse_trev("RESTART x"), None);
        assert_eq!(parse_abuf(Some("10gbit")).unwrap(), Some(10_000_000_000));
        assert!(parse_abuf(Some("fast")).is_err());
    }

    #[test]
    fn opts_retr_is_lenient() {
        assert_eq!(
            parse_opts_list("Parallelism=4,4,4;").unwrap(),
            vec![("parallelism".into(), "4,4,4".into())]
        );
        assert_eq!(
            parse_opts_list("StripeLayout=Blocked;BlockSize=1048576").unwrap().len(),
            2
        );
        assert!(parse_opts_list("garbage;").is_err());
    }

    #[test]
    fn get_put_parameters() {
        let p = parse_get_put("path=/d/f;pasv;").unwrap();
        assert_eq!((p.path.as_str(), p.pasv, p.port, p.mode), ("/d/f", true, None, None));
        let p = parse_get_put("pasv;path=/a b;mode=e;tid=7;").unwrap();
        assert_eq!((p.path.as_str(), p.mode), ("/a b", Some(TransferMode::Extended)));
        let p = parse_get_put("file=/x;port=127,0,0,1,4,1;").unwrap();
        assert_eq!(p.port, Some("127.0.0.1:1025".parse().unwrap()));
        // The last ';' may be missing.
        assert_eq!(parse_get_put("path=/x").unwrap().path, "/x");
        for bad in [
            "pasv;",
            "path=/x;pasv;port=1,2,3,4,5,6;",
            "path=/a;b;",
            "path=/x;mode=Q;",
            "path=;",
        ] {
            assert!(parse_get_put(bad).is_err(), "{bad}");
        }
    }
}

//! FTP replies: the code table, single and multi-line formatting.
//!
//! Every numeric reply code the server sends is named here, once (`codes!`), with its default
//! text. Other modules build replies through these names, never through bare numbers.

use std::fmt::Write as _;

/// A reply code with its default text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Code(pub u16);

macro_rules! codes {
    ($($name:ident = $num:literal, $text:literal;)*) => {
        impl Code {
            $(#[doc = $text] pub const $name: Code = Code($num);)*

            /// The default text for this code.
            pub fn default_text(self) -> &'static str {
                match self.0 {
                    $($num => $text,)*
                    _ => "",
                }
            }
        }
    };
}

codes! {
    RESTART_MARKER = 111, "Range Marker";
    PERF_MARKER = 112, "Perf Marker";
    DATA_CONN_REUSED = 125, "Beginning transfer; reusing existing data connection.";
    DELAYED_PASV = 127, "Entering Passive Mode";
    EXT_DELAYED_PASV = 129, "Entering Extended Passive Mode";
    FILE_STATUS_OK = 150, "Beginning transfer.";
    OK = 200, "Command successful.";
    TLS_READY = 234, "Security data exchange complete.";
    SECURITY_DONE = 235, "Security data exchange complete.";
    SECURITY_DATA = 334, "Security data needed.";
    SECURITY_MORE = 335, "Security data acceptable; more needed.";
    PROTECTION_DENIED = 533, "Command protection level denied for policy reasons.";
    POLICY_DENIED = 534, "Request denied for policy reasons.";
    SECURITY_FAILED = 535, "Failed security check.";
    PROT_NOT_SUPPORTED = 536, "Requested PROT level not supported by mechanism.";
    SUPERFLUOUS = 202, "Command not needed here.";
    SYSTEM_STATUS = 211, "System status.";
    FILE_STATUS = 213, "File status.";
    HELP = 214, "Help.";
    SYSTEM_TYPE = 215, "UNIX Type: L8";
    READY = 220, "ringmover GridFTP server ready.";
    CLOSING = 221, "Goodbye.";
    TRANSFER_COMPLETE = 226, "Transfer Complete.";
    PASSIVE = 227, "Entering Passive Mode";
    EXT_PASSIVE = 229, "Entering Extended Passive Mode";
    LOGGED_IN = 230, "User logged in, proceed.";
    FILE_ACTION_OK = 250, "Requested file action okay, completed.";
    PATH_CREATED = 257, "Path created.";
    NEED_PASSWORD = 331, "Password required.";
    PENDING_MORE_INFO = 350, "Requested file action pending further information.";
    NOT_AVAILABLE = 421, "Service not available, closing control connection.";
    CANT_OPEN_DATA = 425, "Can't open data connection.";
    TRANSFER_ABORTED = 426, "Connection closed; transfer aborted.";
    LOCAL_ERROR = 451, "Requested action aborted: local error in processing.";
    INSUFFICIENT_STORAGE = 452, "Insufficient storage space.";
    SYNTAX_ERROR = 500, "Syntax error, command unrecognized.";
    PARAM_SYNTAX_ERROR = 501, "Syntax error in parameters or arguments.";
    NOT_IMPLEMENTED = 502, "Command not implemented.";
    BAD_SEQUENCE = 503, "Bad sequence of commands.";
    PARAM_NOT_IMPLEMENTED = 504, "Command not implemented for that parameter.";
    NOT_LOGGED_IN = 530, "Not logged in.";
    FILE_UNAVAILABLE = 550, "Requested action not taken.";
    EXCEEDED_STORAGE = 552, "Exceeded storage allocation.";
    NAME_NOT_ALLOWED = 553, "File name not allowed.";
    NET_PROTO_NOT_SUPPORTED = 522, "Network protocol not supported.";
}

impl Code {
    /// True for 1xx replies, which precede the final reply of a command.
    pub fn is_preliminary(self) -> bool {
        (100..200).contains(&self.0)
    }
}

/// One reply: a code and one or more lines of text.
///
/// Multi-line replies follow RFC 959 §4.2: `NNN-first`, then the middle lines as given (a line
/// that starts with a space is written verbatim), then `NNN last`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: Code,
    pub lines: Vec<String>,
    /// Every line carries the code (`632-` … `632 `): RFC 2228 wrapped replies.
    pub coded: bool,
}

impl Reply {
    /// A one-line reply with the code's default text.
    pub fn code(code: Code) -> Reply {
        Reply::new(code, code.default_text())
    }

    /// A one-line reply with custom text.
    pub fn new(code: Code, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![sanitize(text.into())],
            coded: false,
        }
    }

    /// A multi-line reply. `lines` must hold at least the first and the last line.
    pub fn multi(code: Code, lines: Vec<String>) -> Reply {
        let lines = if lines.is_empty() {
            vec![code.default_text().to_string()]
        } else {
            lines.into_iter().map(sanitize).collect()
        };
        Reply {
            code,
            lines,
            coded: false,
        }
    }

    /// An RFC 2228 wrapped reply: one base64 token per line of the plain reply, each line
    /// with the code (`632-`, and `632 ` for the last).
    pub fn wrapped(code: Code, tokens: Vec<String>) -> Reply {
        Reply {
            code,
            lines: tokens.into_iter().map(sanitize).collect(),
            coded: true,
        }
    }

    /// The wire form, CRLF-terminated.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        let n = self.lines.len();
        for (i, line) in self.lines.iter().enumerate() {
            if i + 1 == n {
                let _ = write!(out, "{} {}\r\n", self.code.0, line);
            } else if i == 0 || self.coded {
                let _ = write!(out, "{}-{}\r\n", self.code.0, line);
            } else if line.starts_with(' ') {
                let _ = write!(out, "{line}\r\n");
            } else {
                // A middle line must not look like a final line: indent it.
                let _ = write!(out, " {line}\r\n");
            }
        }
        out
    }
}

/// Text must not contain CR or LF: they would end the reply early and let a client-supplied name
/// inject reply lines.
fn sanitize(text: String) -> String {
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], " ")
    } else {
        text
    }
}

/// Formats a host-port as `h1,h2,h3,h4,p1,p2` (RFC 959 PASV/PORT).
pub fn host_port(ip: core::net::Ipv4Addr, port: u16) -> String {
    let o = ip.octets();
    format!("{},{},{},{},{},{}", o[0], o[1], o[2], o[3], port >> 8, port & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        assert_eq!(Reply::code(Code::CLOSING).to_wire(), "221 Goodbye.\r\n");
        assert_eq!(
            Reply::new(Code::OK, "Type set to I.").to_wire(),
            "200 Type set to I.\r\n"
        );
    }

    #[test]
    fn multi_line_keeps_space_lines_and_indents_others() {
        let r = Reply::multi(
            Code::SYSTEM_STATUS,
            vec![
                "Extensions supported".into(),
                " SIZE".into(),
                "MDTM".into(),
                "End.".into(),
            ],
        );
        assert_eq!(
            r.to_wire(),
            "211-Extensions supported\r\n SIZE\r\n MDTM\r\n211 End.\r\n"
        );
    }

    #[test]
    fn crlf_in_text_cannot_inject_lines() {
        let r = Reply::new(Code::FILE_UNAVAILABLE, "no such file a\r\n230 ok");
        assert_eq!(r.to_wire(), "550 no such file a  230 ok\r\n");
    }

    #[test]
    fn host_port_format() {
        assert_eq!(host_port("127.0.0.1".parse().unwrap(), 54697), "127,0,0,1,213,169");
    }
}

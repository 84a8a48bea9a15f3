//! RFC 2228 on the control channel: `AUTH GSSAPI`, the `ADAT` exchange, then every command
//! wrapped (`ENC`/`MIC`/`CONF`) and every reply line wrapped (`632`/`631`/`633`), plus PBSZ,
//! PROT and DCAU. The mechanism itself (GSI: TLS records) is the driver's; the session only
//! sees tokens and a [`Protection`] to wrap and unwrap with.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::{Action, Pending, Session};
use crate::protocol::command::{Command, ParseError, Wrap};
use crate::protocol::reply::{Code, Reply};
use crate::protocol::SessionError;

/// An established security context as a record layer.
pub trait Protection: Send + Sync + std::fmt::Debug {
    fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, String>;
    fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, String>;
}

/// The driver's answer to [`Action::Adat`].
#[derive(Debug)]
pub enum AdatOutcome {
    /// Send this token back (335) and expect another ADAT.
    Continue(Vec<u8>),
    /// The context is established (235); commands from now on come wrapped.
    Done {
        token: Option<Vec<u8>>,
        protection: Box<dyn Protection>,
        /// The client delegated a credential (data channels are then authenticated, DCAU A).
        delegated: bool,
    },
    /// The exchange failed; the reason goes to the client.
    Failed(String),
}

/// Where the control channel's security stands.
#[derive(Debug, Default)]
pub(super) enum Security {
    #[default]
    Clear,
    /// AUTH GSSAPI accepted; ADAT tokens expected.
    Exchanging,
    Protected {
        channel: Box<dyn Protection>,
        /// How the last command came; its replies go back the same way.
        wrap: Wrap,
    },
    /// FTPS: the whole control connection runs in TLS (the driver's), lines are plain here.
    Tls,
}

/// Data channel authentication (GFD.20 DCAU) as the client asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dcau {
    None,
    /// Authenticate as the control channel's user.
    Self_,
    /// Authenticate; the peer must be this subject.
    Subject(String),
}

impl Dcau {
    /// The letter DCAU uses for it.
    pub fn letter(&self) -> &'static str {
        match self {
            Dcau::None => "N",
            Dcau::Self_ => "A",
            Dcau::Subject(_) => "S",
        }
    }
}

/// Data channel protection (RFC 2228 PROT) as the client asked for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Prot {
    /// `C`: data in clear (after the DCAU handshake, with GSI).
    #[default]
    Clear,
    /// `P` (and `S`, which Globus protects the same way): data in TLS records.
    Private,
}

impl Prot {
    /// The letter PROT uses for it.
    pub fn letter(self) -> &'static str {
        match self {
            Prot::Clear => "C",
            Prot::Private => "P",
        }
    }
}

/// Largest PBSZ we agree to (the wrapped-buffer size for PROT S/P).
const MAX_PBSZ: u64 = 1 << 20;

/// A wrapped command may hold this many lines.
const MAX_WRAPPED_LINES: usize = 4;

impl Session {
    /// True once AUTH and ADAT have set up a protected control channel.
    pub fn protected(&self) -> bool {
        matches!(self.security, Security::Protected { .. })
    }

    /// True once the control channel is protected by GSI or runs in TLS (PBSZ and PROT may
    /// follow).
    pub fn secured(&self) -> bool {
        matches!(self.security, Security::Protected { .. } | Security::Tls)
    }

    /// Queues a reply, wrapped when the channel is protected.
    pub(super) fn push(&mut self, reply: Reply) {
        let Security::Protected { channel, wrap } = &mut self.security else {
            self.replies.push_back(reply);
            return;
        };
        let mut tokens = Vec::with_capacity(reply.lines.len());
        for line in reply.to_wire().split_inclusive("\r\n") {
            match channel.wrap(line.as_bytes()) {
                Ok(token) => tokens.push(BASE64.encode(token)),
                Err(_) => {
                    // A reply we cannot protect must not go out in clear: end the session.
                    self.closed = true;
                    self.actions.push_back(Action::Close);
                    return;
                }
            }
        }
        self.replies.push_back(Reply::wrapped(Code(wrap.reply_code()), tokens));
    }

    /// A line on a protected channel: only wrapped commands are taken.
    pub(super) fn handle_wrapped_line(&mut self, line: &[u8]) {
        match Command::parse(line) {
            Ok(Command::Protected(wrap, arg)) => self.handle_protected(wrap, &arg),
            Ok(_) => self.replies.push_back(Reply::from(&SessionError::Unprotected)),
            Err(ParseError::Empty) => {}
            Err(e) => self.replies.push_back(Reply::from(&SessionError::Parse(e))),
        }
    }

    fn handle_protected(&mut self, wrap: Wrap, arg: &str) {
        let Security::Protected { channel, wrap: last } = &mut self.security else {
            return;
        };
        *last = wrap;
        let plain = BASE64
            .decode(arg.trim())
            .map_err(|_| "the wrapped command is not base64".to_string())
            .and_then(|token| channel.unwrap(&token));
        let plain = match plain {
            Ok(p) => p,
            Err(why) => {
                let err = SessionError::SecurityFailed(format!("Could not unwrap the command: {why}."));
                self.replies.push_back(Reply::from(&err));
                return;
            }
        };
        let lines: Vec<&[u8]> = plain
            .split(|&b| b == b'\n')
            .map(trim_line_end)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.len() > MAX_WRAPPED_LINES {
            self.error(SessionError::BadArgument(
                "Too many commands in one wrapped line.".into(),
            ));
            return;
        }
        for inner in lines {
            match Command::parse(inner) {
                Ok(Command::Protected(..) | Command::Auth(_) | Command::Adat(_)) => {
                    self.error(SessionError::BadSequence("Security is already set up."))
                }
                Ok(cmd) => self.handle_command(cmd),
                Err(ParseError::Empty) => {}
                Err(e) => self.error(SessionError::Parse(e)),
            }
        }
    }

    pub(super) fn cmd_auth(&mut self, mechanism: &str) -> Result<(), SessionError> {
        let mechanism = mechanism.trim().to_ascii_uppercase();
        if matches!(mechanism.as_str(), "TLS" | "TLS-C" | "SSL" | "TLS-P") {
            return self.start_tls();
        }
        if mechanism != "GSSAPI" {
            return Err(SessionError::ParamNotImplemented(
                "Unsupported authentication type; this server offers GSSAPI and TLS.".into(),
            ));
        }
        if !self.config.gsi {
            return Err(SessionError::ParamNotImplemented(
                "GSSAPI is not configured on this server (no host certificate).".into(),
            ));
        }
        if self.access.is_some() || self.secured() {
            return Err(SessionError::BadSequence(
                "Security is already set up or a user is logged in.",
            ));
        }
        self.security = Security::Exchanging;
        self.reply(Code::SECURITY_DATA, "Using authentication type; ADAT must follow.");
        Ok(())
    }

    /// RFC 4217: `234`, then the driver runs TLS on the connection from the next byte on.
    fn start_tls(&mut self) -> Result<(), SessionError> {
        if !self.config.tls {
            return Err(SessionError::ParamNotImplemented(
                "TLS is not configured on this server (no --tls-cert).".into(),
            ));
        }
        if self.access.is_some() || !matches!(self.security, Security::Clear) {
            return Err(SessionError::BadSequence(
                "Security is already set up or a user is logged in.",
            ));
        }
        self.reply(Code::TLS_READY, "AUTH TLS successful.");
        self.security = Security::Tls;
        self.actions.push_back(Action::StartTls);
        Ok(())
    }

    pub(super) fn cmd_adat(&mut self, arg: &str) -> Result<(), SessionError> {
        if !matches!(self.security, Security::Exchanging) {
            return Err(SessionError::BadSequence("Send AUTH GSSAPI first."));
        }
        let token = BASE64
            .decode(arg.trim())
            .map_err(|_| SessionError::BadArgument("ADAT data is not base64.".into()))?;
        self.pending = Pending::Adat;
        self.actions.push_back(Action::Adat(token));
        Ok(())
    }

    /// Answers [`Action::Adat`].
    pub fn handle_adat(&mut self, outcome: AdatOutcome) {
        if !matches!(self.pending, Pending::Adat) {
            return;
        }
        self.pending = Pending::None;
        match outcome {
            AdatOutcome::Continue(token) => {
                self.reply(Code::SECURITY_MORE, format!("ADAT={}", BASE64.encode(token)));
            }
            AdatOutcome::Done {
                token,
                protection,
                delegated,
            } => {
                let text = match token {
                    Some(t) => format!("ADAT={}", BASE64.encode(t)),
                    None => "GSSAPI Authentication successful.".into(),
                };
                self.reply(Code::SECURITY_DONE, text);
                self.security = Security::Protected {
                    channel: protection,
                    wrap: Wrap::Enc,
                };
                // GFD.20: after RFC 2228 authentication data channels default to DCAU A.
                self.delegated = delegated;
                if delegated && self.config.dcau {
                    self.dcau = Dcau::Self_;
                }
            }
            AdatOutcome::Failed(why) => {
                self.security = Security::Clear;
                self.error(SessionError::SecurityFailed(format!(
                    "GSSAPI authentication failed: {why}"
                )));
            }
        }
    }

    pub(super) fn cmd_pbsz(&mut self, arg: &str) -> Result<(), SessionError> {
        let size: u64 = arg
            .trim()
            .parse()
            .map_err(|_| SessionError::BadArgument("PBSZ needs a number.".into()))?;
        if !self.secured() {
            return Err(SessionError::BadSequence("PBSZ needs AUTH first."));
        }
        let size = size.min(MAX_PBSZ);
        self.pbsz = Some(size);
        self.reply(Code::OK, format!("PBSZ={size}"));
        Ok(())
    }

    pub(super) fn cmd_prot(&mut self, arg: &str) -> Result<(), SessionError> {
        if !self.secured() {
            return Err(SessionError::BadSequence("PROT needs AUTH first."));
        }
        let level = arg.trim().to_ascii_uppercase();
        let tls = matches!(self.security, Security::Tls);
        let (wanted, text) = match level.as_str() {
            "C" => (Prot::Clear, "Protection level set to Clear."),
            // GSI protects S and P alike (TLS records); FTPS knows P only.
            "S" if !tls => (Prot::Private, "Protection level set to Safe."),
            "P" => (Prot::Private, "Protection level set to Private."),
            "S" | "E" => {
                return Err(SessionError::ProtNotSupported(
                    "Only PROT C and P are offered here (PROT S with GSI).",
                ))
            }
            _ => return Err(SessionError::BadArgument("PROT takes C, S, E or P.".into())),
        };
        if wanted == Prot::Private && !tls && !(self.config.dcau && self.dcau != Dcau::None) {
            // GFD.20: protection runs in the data channel's DCAU context.
            return Err(SessionError::ProtNotSupported(
                "PROT S/P need data channel authentication: DCAU A or S (with a delegated credential).",
            ));
        }
        self.set_prot(wanted);
        self.reply(Code::OK, text);
        Ok(())
    }

    /// A new PROT level: cached data connections were set up under the old one.
    fn set_prot(&mut self, wanted: Prot) {
        if wanted != self.prot {
            self.prot = wanted;
            self.actions.push_back(Action::ResetData);
            self.reusable = None;
        }
    }

    pub(super) fn cmd_dcau(&mut self, arg: &str) -> Result<(), SessionError> {
        let arg = arg.trim();
        let (mode, subject) = arg.split_once(' ').unwrap_or((arg, ""));
        let wanted = match mode.to_ascii_uppercase().as_str() {
            "N" => Dcau::None,
            "A" => Dcau::Self_,
            "S" if subject.trim().is_empty() => {
                return Err(SessionError::BadArgument("DCAU S expected subject.".into()))
            }
            "S" => Dcau::Subject(subject.trim().to_string()),
            _ => return Err(SessionError::ParamNotImplemented("Bad DCAU mode.".into())),
        };
        if wanted != Dcau::None && !(self.config.dcau && self.delegated) {
            return Err(SessionError::ParamNotImplemented(
                "No delegated credential: send DCAU N (or log in with GSI and delegate).".into(),
            ));
        }
        let letter = &mode[..1].to_ascii_uppercase();
        if wanted != self.dcau {
            // GFD.20: cached connections were set up under the old setting.
            self.dcau = wanted;
            self.actions.push_back(Action::ResetData);
            self.reusable = None;
        }
        if self.dcau == Dcau::None && !matches!(self.security, Security::Tls) {
            // GSI protection needs the DCAU context.
            self.set_prot(Prot::Clear);
        }
        self.reply(Code::OK, format!("DCAU {letter}."));
        Ok(())
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\r' | b'\0'] = l {
        l = rest;
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::session::{Access, SessionConfig, Timeouts};

    /// A toy context: a token is the plaintext XOR 0x5a behind a one-byte tag; a token without
    /// the tag is refused, as a tampered TLS record would be.
    #[derive(Debug)]
    struct Xor;

    impl Protection for Xor {
        fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, String> {
            Ok(std::iter::once(0xA5).chain(plain.iter().map(|b| b ^ 0x5a)).collect())
        }
        fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, String> {
            match token.split_first() {
                Some((0xA5, rest)) => Ok(rest.iter().map(|b| b ^ 0x5a).collect()),
                _ => Err("bad record".into()),
            }
        }
    }

    fn session(gsi: bool) -> Session {
        let mut s = Session::new(SessionConfig {
            allow_anonymous: true,
            trusted_networks: Vec::new(),
            advertise_getput: true,
            peer_ip: "10.0.0.9".parse().unwrap(),
            banner: "hi".into(),
            buffers: Default::default(),
            timeouts: Timeouts::default(),
            gsi,
            dcau: gsi,
            tls: gsi,
            require_tls: false,
        });
        s.poll_reply();
        s
    }

    fn wire(s: &mut Session) -> Vec<String> {
        std::iter::from_fn(|| s.poll_reply()).map(|r| r.to_wire()).collect()
    }

    fn enc(line: &str) -> Vec<u8> {
        format!(
            "ENC {}",
            BASE64.encode(Xor.wrap(format!("{line}\r\n").as_bytes()).unwrap())
        )
        .into_bytes()
    }

    /// The plain reply lines inside wrapped reply lines (each `63x-`/`63x ` + base64).
    fn unwrapped(wire: &str) -> Vec<String> {
        wire.split_terminator("\r\n")
            .map(|l| {
                assert!(l.starts_with("632-") || l.starts_with("632 "), "{l}");
                let token = BASE64.decode(&l[4..]).unwrap();
                String::from_utf8(Xor.unwrap(&token).unwrap()).unwrap()
            })
            .collect()
    }

    /// AUTH, ADAT rounds, then a protected session up to the login (a credential delegated).
    fn protected() -> Session {
        protected_delegating(true)
    }

    fn protected_delegating(delegated: bool) -> Session {
        let mut s = session(true);
        s.handle_line(b"AUTH GSSAPI");
        assert_eq!(wire(&mut s), ["334 Using authentication type; ADAT must follow.\r\n"]);
        s.handle_line(format!("ADAT {}", BASE64.encode(b"hello")).as_bytes());
        assert_eq!(s.poll_action(), Some(Action::Adat(b"hello".to_vec())));
        assert!(s.busy());
        s.handle_adat(AdatOutcome::Continue(b"more".to_vec()));
        assert_eq!(wire(&mut s), [format!("335 ADAT={}\r\n", BASE64.encode(b"more"))]);
        s.handle_line(b"ADAT AA==");
        assert_eq!(s.poll_action(), Some(Action::Adat(vec![0])));
        s.handle_adat(AdatOutcome::Done {
            token: None,
            protection: Box::new(Xor),
            delegated,
        });
        assert_eq!(wire(&mut s), ["235 GSSAPI Authentication successful.\r\n"]);
        s
    }

    #[test]
    fn auth_adat_then_every_command_and_reply_is_wrapped() {
        let mut s = protected();
        // Clear commands are refused, in clear.
        s.handle_line(b"USER :globus-mapping:");
        let got = wire(&mut s);
        assert!(got[0].starts_with("533 "), "{got:?}");
        // Wrapped: :globus-mapping: is mapped by the driver, not an anonymous login.
        s.handle_line(&enc("USER :globus-mapping:"));
        assert_eq!(
            unwrapped(&wire(&mut s)[0]),
            ["331 Password required for :globus-mapping:.\r\n"]
        );
        s.handle_line(&enc("PASS dummy"));
        let Some(Action::Authenticate { user, .. }) = s.poll_action() else {
            panic!("no authentication asked for")
        };
        assert_eq!(user, ":globus-mapping:");
        s.handle_auth(Some(Access {
            user: "tester".into(),
            writable: true,
        }));
        assert_eq!(unwrapped(&wire(&mut s)[0]), ["230 User tester logged in.\r\n"]);
        // A multi-line reply: one wrapped line per plain line.
        s.handle_line(&enc("FEAT"));
        let feat = wire(&mut s).concat();
        let plain = unwrapped(&feat);
        assert!(plain.len() > 3 && plain[0].starts_with("211-") && plain.last().unwrap() == "211 End.\r\n");
        assert_eq!(feat.matches("632 ").count(), 1, "only the last line ends the reply");
    }

    #[test]
    fn a_tampered_or_nested_command_is_refused() {
        let mut s = protected();
        s.handle_line(format!("ENC {}", BASE64.encode(b"\x00USER x")).as_bytes());
        let got = wire(&mut s);
        assert!(got[0].starts_with("535 Could not unwrap"), "{got:?}");
        s.handle_line(b"ENC !!!");
        assert!(wire(&mut s)[0].starts_with("535 "));
        s.handle_line(&enc("AUTH GSSAPI"));
        assert!(unwrapped(&wire(&mut s)[0])[0].starts_with("503 "));
        assert_eq!(s.poll_action(), None);
    }

    #[test]
    fn refusals_before_and_around_the_exchange() {
        let mut s = session(false);
        for (line, code) in [
            ("AUTH GSSAPI", "504"),
            ("AUTH TLS", "504"),
            ("ADAT AA==", "503"),
            ("PBSZ 0", "503"),
            ("PROT P", "503"),
            ("ENC AA==", "503"),
        ] {
            s.handle_line(line.as_bytes());
            let got = wire(&mut s);
            assert!(got[0].starts_with(code), "{line}: {got:?}");
        }
        let mut s = session(true);
        s.handle_line(b"AUTH GSSAPI");
        s.handle_line(b"ADAT not-base64!");
        assert!(wire(&mut s)[1].starts_with("501 "));
        s.handle_line(b"ADAT AA==");
        s.poll_action();
        s.handle_adat(AdatOutcome::Failed("certificate revoked".into()));
        let got = wire(&mut s);
        assert_eq!(got, ["535 GSSAPI authentication failed: certificate revoked\r\n"]);
        assert!(!s.protected());
        // A failed exchange starts over with AUTH.
        s.handle_line(b"ADAT AA==");
        assert!(wire(&mut s)[0].starts_with("503 "));
    }

    #[test]
    fn pbsz_prot_and_dcau_after_auth() {
        let mut s = logged_in(true);
        let mut ask = |line: &str| {
            unwrapped(&{
                s.handle_line(&enc(line));
                wire(&mut s).concat()
            })[0]
                .clone()
        };
        assert_eq!(ask("PBSZ 1048576"), "200 PBSZ=1048576\r\n");
        assert_eq!(ask("PBSZ 99999999999"), "200 PBSZ=1048576\r\n");
        assert!(ask("PBSZ x").starts_with("501 "));
        assert!(ask("PROT C").starts_with("200 "));
        assert!(ask("PROT E").starts_with("536 "));
        assert!(ask("PROT Q").starts_with("501 "));
        assert!(ask("DCAU N").starts_with("200 "));
    }

    #[test]
    fn prot_s_and_p_ride_on_dcau() {
        let mut s = logged_in(true);
        s.handle_line(&enc("PROT P"));
        assert_eq!(
            unwrapped(&wire(&mut s)[0]),
            ["200 Protection level set to Private.\r\n"]
        );
        assert_eq!(s.poll_action(), Some(Action::ResetData));
        s.handle_line(&enc("PORT 10,0,0,9,4,1"));
        s.handle_line(&enc("RETR /f"));
        let t = std::iter::from_fn(|| s.poll_action())
            .find_map(|a| match a {
                Action::Transfer(t) => Some(t),
                _ => None,
            })
            .unwrap();
        assert_eq!((t.dcau, t.prot), (Dcau::Self_, Prot::Private));
        s.handle_transfer_started(false);
        s.handle_transfer_done(Ok(0));
        wire(&mut s);
        // DCAU N takes the protection with it; without DCAU PROT S/P are refused.
        s.handle_line(&enc("DCAU N"));
        wire(&mut s);
        assert_eq!(s.prot, Prot::Clear);
        s.handle_line(&enc("PROT S"));
        assert!(unwrapped(&wire(&mut s)[0])[0].starts_with("536 "));
        let mut s = logged_in(false);
        s.handle_line(&enc("PROT P"));
        assert!(
            unwrapped(&wire(&mut s)[0])[0].starts_with("536 "),
            "no delegated credential"
        );
    }

    fn logged_in(delegated: bool) -> Session {
        let mut s = protected_delegating(delegated);
        s.handle_line(&enc("USER tester"));
        s.handle_line(&enc("PASS x"));
        s.poll_action();
        s.handle_auth(Some(Access {
            user: "tester".into(),
            writable: true,
        }));
        wire(&mut s);
        s
    }

    /// The DCAU setting the next transfer carries.
    fn transfer_dcau(s: &mut Session) -> Dcau {
        s.handle_line(&enc("PORT 10,0,0,9,4,1"));
        s.handle_line(&enc("RETR /f"));
        let dcau = std::iter::from_fn(|| s.poll_action())
            .find_map(|a| match a {
                Action::Transfer(t) => Some(t.dcau),
                _ => None,
            })
            .expect("a transfer");
        s.handle_transfer_started(false);
        s.handle_transfer_done(Ok(0));
        wire(s);
        dcau
    }

    #[test]
    fn dcau_defaults_to_a_with_a_delegated_credential() {
        let mut s = logged_in(true);
        assert_eq!(transfer_dcau(&mut s), Dcau::Self_);
        s.handle_line(&enc("DCAU N"));
        assert_eq!(unwrapped(&wire(&mut s)[0]), ["200 DCAU N.\r\n"]);
        assert_eq!(
            s.poll_action(),
            Some(Action::ResetData),
            "cached connections were authenticated"
        );
        assert_eq!(transfer_dcau(&mut s), Dcau::None);
        s.handle_line(&enc("DCAU S /O=Grid/CN=Peer"));
        assert_eq!(unwrapped(&wire(&mut s)[0]), ["200 DCAU S.\r\n"]);
        assert_eq!(transfer_dcau(&mut s), Dcau::Subject("/O=Grid/CN=Peer".into()));
        s.handle_line(&enc("DCAU S"));
        assert!(unwrapped(&wire(&mut s)[0])[0].starts_with("501 "));
        s.handle_line(&enc("DCAU X"));
        assert!(unwrapped(&wire(&mut s)[0])[0].starts_with("504 "));
    }

    #[test]
    fn without_delegation_data_channels_are_not_authenticated() {
        let mut s = logged_in(false);
        assert_eq!(transfer_dcau(&mut s), Dcau::None);
        s.handle_line(&enc("DCAU A"));
        let got = unwrapped(&wire(&mut s)[0]);
        assert!(got[0].starts_with("504 No delegated credential"), "{got:?}");
        assert_eq!(transfer_dcau(&mut s), Dcau::None);
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;
    use crate::protocol::session::{SessionConfig, Timeouts};

    fn session(tls: bool, require_tls: bool) -> Session {
        let mut s = Session::new(SessionConfig {
            allow_anonymous: true,
            trusted_networks: Vec::new(),
            advertise_getput: false,
            peer_ip: "192.0.2.7".parse().unwrap(),
            banner: "hi".into(),
            buffers: Default::default(),
            timeouts: Timeouts::default(),
            gsi: false,
            dcau: false,
            tls,
            require_tls,
        });
        s.poll_reply();
        s
    }

    fn replies(s: &mut Session) -> Vec<String> {
        std::iter::from_fn(|| s.poll_reply()).map(|r| r.to_wire()).collect()
    }

    #[test]
    fn auth_tls_hands_the_connection_to_tls_then_pbsz_and_prot() {
        let mut s = session(true, true);
        s.handle_line(b"USER alice");
        assert!(
            replies(&mut s)[0].starts_with("534 "),
            "--require-tls refuses USER in clear"
        );
        s.handle_line(b"PBSZ 0");
        assert!(replies(&mut s)[0].starts_with("503 "));
        s.handle_line(b"AUTH TLS");
        assert_eq!(replies(&mut s), ["234 AUTH TLS successful.\r\n"]);
        assert_eq!(s.poll_action(), Some(Action::StartTls));
        // From here the driver decrypts; lines are plain.
        s.handle_line(b"PBSZ 0");
        s.handle_line(b"PROT C");
        s.handle_line(b"USER alice");
        let got = replies(&mut s);
        assert_eq!(got[0], "200 PBSZ=0\r\n");
        assert!(got[1].starts_with("200 ") && got[2].starts_with("331 "), "{got:?}");
        s.handle_line(b"AUTH TLS");
        s.handle_line(b"AUTH GSSAPI");
        let got = replies(&mut s);
        assert!(
            got.iter().all(|r| r.starts_with("503 ") || r.starts_with("504 ")),
            "{got:?}"
        );
        // FTPS knows PROT C and P.
        s.handle_line(b"PROT P");
        s.handle_line(b"PROT S");
        let got = replies(&mut s);
        assert!(got[0].starts_with("200 ") && got[1].starts_with("536 "), "{got:?}");
        assert_eq!(s.prot, Prot::Private);
    }

    #[test]
    fn without_a_certificate_auth_tls_is_refused_and_not_listed() {
        let mut s = session(false, false);
        s.handle_line(b"AUTH TLS");
        assert!(replies(&mut s)[0].starts_with("504 "));
        assert_eq!(s.poll_action(), None);
        s.handle_line(b"FEAT");
        assert!(!replies(&mut s).concat().contains("AUTH TLS"));
        let mut s = session(true, false);
        s.handle_line(b"FEAT");
        assert!(replies(&mut s).concat().contains(" AUTH TLS\r\n"));
    }
}

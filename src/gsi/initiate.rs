//! The initiating side of a GSI context, as Globus clients run it (and as both ends of a data
//! channel do with DCAU: the side that opened the TCP connection initiates).
//!
//! ```text
//!   Handshake --TLS 1.2 done--> send '0' --> Done
//!       |--TLS 1.3 done--> Sync (wait for the acceptor's next record, its `\0`) --> send '0' --> Done
//! ```
//! With TLS 1.3 the initiator speaks last in the handshake, so the acceptor sends one byte to
//! hand the turn back before the initiator sends its delegation flag: `0`, or `D` and then
//! the proxy certificate it signs for the key in the acceptor's certificate request.

use openssl::ssl::{ErrorCode, Ssl, SslContext, SslStream, SslVersion};

use super::accept::{read_all, reason, refusal, verified_peer};
use super::channel::Channel;
use super::creds::Credential;
use super::mem::Pipe;
use super::names::PeerIdentity;
use super::GsiError;

enum State {
    Handshake,
    Sync(PeerIdentity),
    /// `D` sent: waiting for the acceptor's certificate request.
    Request(PeerIdentity),
}

/// What to delegate to the acceptor, if anything.
#[derive(Clone)]
pub struct Delegation {
    pub credential: std::sync::Arc<Credential>,
    /// A limited proxy (as globus-url-copy delegates): enough for data and third-party
    /// transfers, refused where a job would be started.
    pub limited: bool,
}

/// One GSI context being initiated.
pub struct Initiator {
    tls: SslStream<Pipe>,
    state: State,
    delegation: Option<Delegation>,
    /// Run the delegation flag step (not on PROT S/P data channels).
    flags: bool,
}

/// What one token from the acceptor led to.
pub enum InitStep {
    /// Send this token and feed the acceptor's next one.
    Continue(Initiator, Vec<u8>),
    Established(Box<Initiated>),
}

/// A finished context: the last token to send, who the acceptor is, the record layer.
pub struct Initiated {
    pub token: Vec<u8>,
    pub peer: PeerIdentity,
    pub channel: Channel,
}

impl Initiator {
    /// Starts the handshake; the returned token (the ClientHello) goes first.
    pub(crate) fn start(
        context: &SslContext,
        host: Option<&str>,
        delegation: Option<Delegation>,
        flags: bool,
    ) -> Result<(Initiator, Vec<u8>), GsiError> {
        let mut ssl = Ssl::new(context).map_err(GsiError::tls("TLS session"))?;
        if let Some(host) = host {
            // The server's certificate must name the host we asked for.
            let param = ssl.param_mut();
            match host.parse::<std::net::IpAddr>() {
                Ok(ip) => param.set_ip(ip),
                Err(_) => param.set_host(host),
            }
            .map_err(GsiError::tls("host name check"))?;
        }
        let tls = SslStream::new(ssl, Pipe::default()).map_err(GsiError::tls("TLS session"))?;
        let mut me = Initiator {
            tls,
            state: State::Handshake,
            delegation,
            flags,
        };
        match me.tls.connect() {
            Err(e) if e.code() == ErrorCode::WANT_READ => {}
            Ok(()) => return Err(GsiError::Handshake("finished without the peer".into())),
            Err(e) => return Err(GsiError::Handshake(reason(&e))),
        }
        let first = me.tls.get_mut().take_output();
        Ok((me, first))
    }

    /// Feeds one token from the acceptor.
    pub fn step(mut self, token: &[u8]) -> Result<InitStep, GsiError> {
        self.tls.get_mut().feed(token);
        match std::mem::replace(&mut self.state, State::Handshake) {
            State::Handshake => match self.tls.connect() {
                Ok(()) => {
                    let peer = verified_peer(&self.tls)?;
                    if !self.flags {
                        return Ok(self.established(peer));
                    }
                    let tls13 = self.tls.ssl().version2() == Some(SslVersion::TLS1_3);
                    if tls13 {
                        // Our Finished goes now; the flag after the acceptor's answer.
                        let out = self.tls.get_mut().take_output();
                        self.state = State::Sync(peer);
                        return Ok(InitStep::Continue(self, out));
                    }
                    self.finish(peer)
                }
                Err(e) if e.code() == ErrorCode::WANT_READ => {
                    let out = self.tls.get_mut().take_output();
                    Ok(InitStep::Continue(self, out))
                }
                Err(e) => Err(GsiError::Handshake(refusal(&self.tls, &e))),
            },
            State::Sync(peer) => {
                // The acceptor's `\0` (a session ticket, if one came, carries no data).
                let got = read_all(&mut self.tls).map_err(GsiError::Handshake)?;
                if got.is_empty() {
                    self.state = State::Sync(peer);
                    return Ok(InitStep::Continue(self, Vec::new()));
                }
                self.finish(peer)
            }
            State::Request(peer) => {
                let der = read_all(&mut self.tls).map_err(GsiError::Delegation)?;
                if der.is_empty() {
                    self.state = State::Request(peer);
                    return Ok(InitStep::Continue(self, Vec::new()));
                }
                let delegation = self.delegation.clone().ok_or(GsiError::NoPeer)?;
                let cert = super::proxy::sign_request(&der, &delegation.credential, delegation.limited)?;
                self.write(&cert)?;
                Ok(self.established(peer))
            }
        }
    }

    /// Sends the delegation flag: `D` and wait for the request, or `0` and done.
    fn finish(mut self, peer: PeerIdentity) -> Result<InitStep, GsiError> {
        if self.delegation.is_some() {
            self.write(b"D")?;
            let out = self.tls.get_mut().take_output();
            self.state = State::Request(peer);
            return Ok(InitStep::Continue(self, out));
        }
        self.write(b"0")?;
        Ok(self.established(peer))
    }

    fn established(mut self, peer: PeerIdentity) -> InitStep {
        let token = self.tls.get_mut().take_output();
        InitStep::Established(Box::new(Initiated {
            token,
            peer,
            channel: Channel::new(self.tls),
        }))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), GsiError> {
        super::accept::write_step(&mut self.tls, bytes)
    }
}

//! Security on data connections, without I/O.
//!
//! GSI (GFD.20 DCAU): each data connection runs its own GSI context, no delegation, the side
//! that opened the TCP connection initiating; both present the user's (delegated) proxy. With
//! PROT C the two sides then exchange the delegation flags (`\0` and `0`) and the data flows
//! in clear on the same socket; with PROT S/P there are no flags and the data itself travels
//! in TLS records (globus-url-copy `-dcsafe`/`-dcpriv`, seen on the wire).
//!
//! FTPS (RFC 4217 PROT P): plain TLS, the server always the TLS server, no client certificate.

use openssl::ssl::SslContext;

use super::accept::{Acceptor, Step};
use super::channel::Channel;
use super::creds::{gsi_context, Credential, TrustPaths};
use super::ftps::{FtpsContext, TlsServer};
use super::initiate::{InitStep, Initiator};
use super::names::{dn, is_proxy, PeerIdentity};
use super::GsiError;

/// Whom the other end of a data connection must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// DCAU A: the same person as ours (the subject of our credential's end-entity certificate).
    Same(String),
    /// DCAU S: this subject (the end-entity subject, or the presented certificate's own).
    Subject(String),
}

enum Kind {
    Gsi { context: SslContext, expected: Expected },
    Ftps(FtpsContext),
}

/// What a mover needs to secure its data connections.
pub struct DataAuth {
    kind: Kind,
    /// PROT S/P: the data goes in TLS records (else only the handshake is in TLS).
    private: bool,
}

impl std::fmt::Debug for DataAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let expected = match &self.kind {
            Kind::Gsi { expected, .. } => Some(expected),
            Kind::Ftps(_) => None,
        };
        f.debug_struct("DataAuth")
            .field("expected", &expected)
            .field("private", &self.private)
            .finish()
    }
}

/// Which end of the data connection we are: who opened it initiates (GSI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Accepted,
    Connected,
}

/// A data connection's handshake in progress.
pub enum Handshake {
    Accepting(Acceptor),
    Initiating(Initiator),
    Tls(TlsServer),
}

/// What one record from the peer led to.
pub enum HandshakeStep {
    Continue(Handshake, Vec<u8>),
    /// Send `token`; with `channel` (PROT S/P) the data then goes through it.
    Done {
        token: Vec<u8>,
        channel: Option<Channel>,
    },
}

impl DataAuth {
    /// DCAU A (`subject` None) or S with the session's delegated credential; `private` for
    /// PROT S/P.
    pub fn new(
        credential: &Credential,
        trust: &TrustPaths,
        subject: Option<&str>,
        private: bool,
    ) -> Result<DataAuth, GsiError> {
        let expected = match subject {
            Some(s) => Expected::Subject(s.to_string()),
            None => Expected::Same(identity_of(credential)?),
        };
        Ok(DataAuth {
            kind: Kind::Gsi {
                context: gsi_context(credential, trust, None)?,
                expected,
            },
            private,
        })
    }

    /// FTPS PROT P with the server's certificate.
    pub fn ftps(context: &FtpsContext) -> DataAuth {
        DataAuth {
            kind: Kind::Ftps(context.clone()),
            private: true,
        }
    }

    /// PROT S/P: the data itself is in TLS.
    pub fn private(&self) -> bool {
        self.private
    }

    /// Starts the handshake for our `role`; the first token (if any) goes out at once.
    pub fn start(&self, role: Role) -> Result<(Handshake, Vec<u8>), GsiError> {
        match (&self.kind, role) {
            (Kind::Gsi { context, .. }, Role::Accepted) => Ok((
                Handshake::Accepting(Acceptor::with_context(context, None, !self.private)?),
                Vec::new(),
            )),
            (Kind::Gsi { context, .. }, Role::Connected) => {
                let (i, first) = Initiator::start(context, None, None, !self.private)?;
                Ok((Handshake::Initiating(i), first))
            }
            // RFC 4217: the server is the TLS server whoever opened the connection.
            (Kind::Ftps(context), _) => Ok((Handshake::Tls(TlsServer::for_data(context)?), Vec::new())),
        }
    }

    /// Feeds one TLS record from the peer.
    pub fn step(&self, hs: Handshake, record: &[u8]) -> Result<HandshakeStep, GsiError> {
        let private = self.private;
        let done = |token: Vec<u8>, channel: Channel, peer: Option<&PeerIdentity>| {
            if let Some(p) = peer {
                self.check(p)?;
            }
            Ok(HandshakeStep::Done {
                token,
                channel: private.then_some(channel),
            })
        };
        match hs {
            Handshake::Accepting(a) => match a.step(record)? {
                Step::Continue(a, out) => Ok(HandshakeStep::Continue(Handshake::Accepting(a), out)),
                Step::Established(e) => done(e.token.unwrap_or_default(), e.channel, Some(&e.peer)),
            },
            Handshake::Initiating(i) => match i.step(record)? {
                InitStep::Continue(i, out) => Ok(HandshakeStep::Continue(Handshake::Initiating(i), out)),
                InitStep::Established(e) => done(e.token, e.channel, Some(&e.peer)),
            },
            Handshake::Tls(mut t) => {
                let (out, plain) = t.receive(record)?;
                if !t.established() {
                    return Ok(HandshakeStep::Continue(Handshake::Tls(t), out));
                }
                if !plain.is_empty() {
                    return Err(GsiError::Handshake("data before the handshake ended".into()));
                }
                done(out, t.into_channel(), None)
            }
        }
    }

    /// Refuses a peer that is not whom DCAU asked for.
    pub fn check(&self, peer: &PeerIdentity) -> Result<(), GsiError> {
        let Kind::Gsi { expected, .. } = &self.kind else {
            return Ok(());
        };
        let ok = match expected {
            Expected::Same(me) => peer.subject == *me,
            Expected::Subject(s) => peer.subject == *s || peer.presented == *s,
        };
        if ok {
            return Ok(());
        }
        let (Expected::Same(want) | Expected::Subject(want)) = expected;
        Err(GsiError::Handshake(format!(
            "data connection authenticated as {}, expected {want}",
            peer.subject
        )))
    }
}

/// The end-entity subject behind a (proxy) credential.
fn identity_of(credential: &Credential) -> Result<String, GsiError> {
    credential
        .chain
        .iter()
        .find(|c| !is_proxy(c))
        .map(|c| dn(c.subject_name()))
        .ok_or(GsiError::NoPeer)
}

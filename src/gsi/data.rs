//! Data channel authentication (GFD.20 DCAU): each data connection runs its own GSI context,
//! no delegation, the side that opened the TCP connection initiating; both present the
//! user's (delegated) proxy. With PROT C the data then flows in clear on the same socket.

use openssl::ssl::SslContext;

use super::accept::Acceptor;
use super::creds::{gsi_context, Credential, TrustPaths};
use super::initiate::Initiator;
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

/// What a mover needs to authenticate its data connections.
pub struct DataAuth {
    context: SslContext,
    expected: Expected,
}

impl std::fmt::Debug for DataAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataAuth").field("expected", &self.expected).finish()
    }
}

impl DataAuth {
    /// DCAU A (`subject` None) or S with the session's delegated credential.
    pub fn new(credential: &Credential, trust: &TrustPaths, subject: Option<&str>) -> Result<DataAuth, GsiError> {
        let expected = match subject {
            Some(s) => Expected::Subject(s.to_string()),
            None => Expected::Same(identity_of(credential)?),
        };
        Ok(DataAuth {
            context: gsi_context(credential, trust, None)?,
            expected,
        })
    }

    /// The passive side of a data connection.
    pub fn acceptor(&self) -> Result<Acceptor, GsiError> {
        Acceptor::with_context(&self.context, None)
    }

    /// The active side: the initiator and its first token.
    pub fn initiator(&self) -> Result<(Initiator, Vec<u8>), GsiError> {
        Initiator::start(&self.context, None, None)
    }

    /// Refuses a peer that is not whom DCAU asked for.
    pub fn check(&self, peer: &PeerIdentity) -> Result<(), GsiError> {
        let ok = match &self.expected {
            Expected::Same(me) => peer.subject == *me,
            Expected::Subject(s) => peer.subject == *s || peer.presented == *s,
        };
        if ok {
            Ok(())
        } else {
            Err(GsiError::Handshake(format!(
                "data connection authenticated as {}, expected {}",
                peer.subject,
                match &self.expected {
                    Expected::Same(s) | Expected::Subject(s) => s,
                }
            )))
        }
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

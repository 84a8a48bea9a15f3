//! GSI on one control connection: runs the ADAT tokens through the acceptor (off the control
//! threads: delegation generates a key) and logs the user in by the grid-mapfile.

use super::Connection;
use crate::gsi::{Acceptor, Channel, Credential, DataAuth, PeerIdentity, Step};
use crate::link::{DataAuthRef, Grant};
use crate::protocol::session::{AdatOutcome, Dcau, Prot, Protection, TransferRequest};
use crate::protocol::SessionError;

impl Protection for Channel {
    fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, String> {
        Channel::wrap(self, plain)
    }

    fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, String> {
        Channel::unwrap(self, token)
    }
}

/// Who authenticated on this connection, and what they delegated.
pub(super) struct GsiPeer {
    pub(super) identity: PeerIdentity,
    pub(super) delegated: Option<Credential>,
    /// The data channels' context for the DCAU and PROT settings it was made for.
    pub(super) data_auth: Option<((Dcau, Prot), DataAuthRef)>,
}

impl Connection {
    /// FTPS: TLS from the next byte on. Commands that came in clear behind `AUTH TLS` are
    /// dropped unread: they could not have been protected (RFC 4217 command injection).
    pub(super) fn start_tls(&mut self) -> std::io::Result<()> {
        let Some(context) = &self.live.tls else {
            return Err(std::io::Error::other("AUTH TLS without a TLS certificate"));
        };
        self.tls = Some(crate::gsi::TlsServer::new(context).map_err(std::io::Error::other)?);
        self.framer = crate::protocol::framer::LineFramer::default();
        if !self.queued.is_empty() {
            tracing::warn!(peer = %self.peer, lines = self.queued.len(), "dropped commands sent in clear after AUTH TLS");
            self.queued.clear();
        }
        Ok(())
    }

    /// Answers one ADAT token.
    pub(super) async fn adat(&mut self, token: Vec<u8>) {
        let outcome = self.adat_step(token).await;
        self.session.handle_adat(outcome);
    }

    async fn adat_step(&mut self, token: Vec<u8>) -> AdatOutcome {
        let Some(config) = self.live.gsi.clone() else {
            return AdatOutcome::Failed("GSI is not configured".into());
        };
        let acceptor = match self.gsi_acceptor.take() {
            Some(a) => a,
            None => match Acceptor::new(&config.credentials) {
                Ok(a) => a,
                Err(e) => return AdatOutcome::Failed(e.to_string()),
            },
        };
        let step = tokio::task::spawn_blocking(move || acceptor.step(&token)).await;
        match step {
            Ok(Ok(Step::Continue(acceptor, out))) => {
                self.gsi_acceptor = Some(acceptor);
                AdatOutcome::Continue(out)
            }
            Ok(Ok(Step::Established(done))) if done.peer.limited && config.refuse_limited => {
                tracing::warn!(peer = %self.peer, subject = %done.peer.subject, "GSI authentication refused: a limited proxy");
                gsi_failure();
                AdatOutcome::Failed("this server refuses limited proxies".into())
            }
            Ok(Ok(Step::Established(done))) => {
                tracing::info!(
                    peer = %self.peer,
                    subject = %done.peer.subject,
                    limited = done.peer.limited,
                    delegated = done.delegated.is_some(),
                    "GSI authenticated"
                );
                let delegated = done.delegated.is_some();
                self.gsi_peer = Some(GsiPeer {
                    identity: done.peer,
                    delegated: done.delegated,
                    data_auth: None,
                });
                AdatOutcome::Done {
                    token: done.token,
                    protection: Box::new(done.channel),
                    delegated,
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(peer = %self.peer, "GSI authentication refused: {e}");
                gsi_failure();
                AdatOutcome::Failed(e.to_string())
            }
            Err(e) => AdatOutcome::Failed(format!("internal error: {e}")),
        }
    }

    /// How the data connections of `req` on `pool` are secured: a ready [`DataAuth`] for the
    /// embedded pool, a sealed [`Grant`] for a remote one (it builds its own with its CA
    /// directory), neither for DCAU N. A transfer the door relays (plain PASV to a remote
    /// pool) cannot be authenticated end to end and is refused.
    pub(super) fn data_security(
        &mut self,
        req: &TransferRequest,
        pool: &crate::door::pools::PoolHandle,
        proxied: bool,
    ) -> Result<(Option<DataAuthRef>, Option<Grant>), SessionError> {
        let (dcau, prot) = (&req.dcau, req.prot);
        let remote = match pool {
            crate::door::pools::PoolHandle::Local(_) => None,
            crate::door::pools::PoolHandle::Remote(p) => Some(p),
        };
        // FTPS PROT P (a TLS control connection): the server's certificate on every data
        // connection.
        if let (Some(tls), Some(_), Prot::Private) = (&self.live.tls, &self.tls, prot) {
            if remote.is_some() {
                return Err(SessionError::DataConnection(
                    "PROT P: the pool of this file runs in another process; send PROT C".into(),
                ));
            }
            return Ok((Some(DataAuthRef(std::sync::Arc::new(DataAuth::ftps(tls)))), None));
        }
        let subject = match dcau {
            Dcau::None => return Ok((None, None)),
            Dcau::Self_ => None,
            Dcau::Subject(s) => Some(s.as_str()),
        };
        let refuse = |why: &str| SessionError::DataConnection(format!("DCAU: {why}; send DCAU N"));
        if proxied {
            return Err(refuse(
                "the door relays this transfer to a pool in another process (use GET/PUT or delayed passive)",
            ));
        }
        let (Some(peer), Some(config)) = (self.gsi_peer.as_mut(), &self.live.gsi) else {
            return Err(refuse("no GSI login"));
        };
        let credential = peer
            .delegated
            .as_ref()
            .ok_or_else(|| refuse("no delegated credential"))?;
        let private = prot == Prot::Private;
        if let Some(pool) = remote {
            let pem = credential.to_pem().map_err(|e| refuse(&e.to_string()))?;
            let sealed = pool.seal(&pem).map_err(|e| refuse(&e.to_string()))?;
            let subject = subject.map(str::to_string);
            return Ok((
                None,
                Some(Grant {
                    sealed,
                    subject,
                    private,
                }),
            ));
        }
        let key = (dcau.clone(), prot);
        if let Some((made_for, auth)) = &peer.data_auth {
            if *made_for == key {
                return Ok((Some(auth.clone()), None));
            }
        }
        let auth = DataAuth::new(credential, &config.trust, subject, private).map_err(|e| refuse(&e.to_string()))?;
        let auth = DataAuthRef(std::sync::Arc::new(auth));
        peer.data_auth = Some((key, auth.clone()));
        Ok((Some(auth), None))
    }

    /// A USER/PASS after GSI authentication: the password is not looked at; the subject must
    /// map to the requested local user (or, for `:globus-mapping:`, to any).
    pub(super) fn authenticate_gsi(&mut self, user: &str) {
        let (Some(peer), Some(config)) = (&self.gsi_peer, &self.live.gsi) else {
            self.session.handle_auth(None);
            return;
        };
        let subject = &peer.identity.subject;
        match config.gridmap.map(subject, user) {
            Some(local) => {
                tracing::info!(peer = %self.peer, %subject, user = local, "login (GSI)");
                let user = local.to_string();
                self.log_in(user);
            }
            None => {
                tracing::warn!(peer = %self.peer, %subject, requested = user, "GSI login refused: not in the grid-mapfile");
                gsi_failure();
                let refusal = SessionError::NotMapped(subject.clone());
                self.session.handle_auth_refused(refusal);
            }
        }
    }
}

fn gsi_failure() {
    crate::metrics::get()
        .login_failures
        .get_or_create(&crate::metrics::label("method", "gsi"))
        .inc();
}

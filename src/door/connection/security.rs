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
    /// embedded pool, a sealed [`Grant`] for a remote one (it builds its own), neither for
    /// DCAU N. A PROT C transfer the door relays (plain PASV to a remote pool) is
    /// authenticated by the door itself (`relay`; the pool accepts only the door's
    /// connections); under PROT S/P the pool is the TLS end through the door (`pass_through`).
    pub(super) fn data_security(
        &mut self,
        req: &TransferRequest,
        pool: &crate::door::pools::PoolHandle,
        proxied: bool,
    ) -> Result<DataSecurity, SessionError> {
        let remote = match pool {
            crate::door::pools::PoolHandle::Local(_) => None,
            crate::door::pools::PoolHandle::Remote(p) => Some(p),
        };
        // FTPS PROT P (a TLS control connection): the server's certificate on every data
        // connection; a remote pool gets it sealed and is the TLS server itself.
        if let Some(tls) = self.ftps_private(req) {
            let Some(pool) = remote else {
                return Ok(DataSecurity::plan(ftps_auth(&tls)));
            };
            let refuse = |why: String| SessionError::DataConnection(format!("PROT P: {why}; send PROT C"));
            let pem = tls.pem().map_err(|e| refuse(e.to_string()))?;
            let grant = Grant {
                sealed: pool.seal(&pem).map_err(|e| refuse(e.to_string()))?,
                subject: None,
                private: true,
                ftps: true,
            };
            return Ok(DataSecurity::sealed(grant, proxied));
        }
        if req.dcau == Dcau::None {
            return Ok(DataSecurity::default());
        }
        // PROT C through the door: the door authenticates the client's connections and
        // relays the clear data. PROT S/P go end to end to the pool instead (below).
        if proxied && req.prot == Prot::Clear {
            return Ok(DataSecurity {
                relay: self.door_side_auth(req)?,
                ..DataSecurity::default()
            });
        }
        let Some(pool) = remote else {
            return Ok(DataSecurity::plan(self.local_auth(req)?));
        };
        let credential = self.delegated()?;
        let refuse = |e: crate::link::LinkError| dcau_refusal(&e.to_string());
        let pem = credential.to_pem().map_err(|e| dcau_refusal(&e.to_string()))?;
        let grant = Grant {
            sealed: pool.seal(&pem).map_err(refuse)?,
            subject: dcau_subject(&req.dcau).map(str::to_string),
            private: req.prot != Prot::Clear,
            ftps: false,
        };
        Ok(DataSecurity::sealed(grant, proxied))
    }

    /// The security of connections the door itself accepts and serves: listings it sends,
    /// and PROT C relays (the door authenticates, then relays clear bytes). With PROT S/P
    /// the door is the end of the TLS records (`relay::secure_client`).
    pub(super) fn door_side_auth(&mut self, req: &TransferRequest) -> Result<Option<DataAuthRef>, SessionError> {
        if let Some(tls) = self.ftps_private(req) {
            return Ok(Some(ftps_auth(&tls)));
        }
        match &req.dcau {
            Dcau::None => Ok(None),
            _ => self.local_auth(req).map(Some),
        }
    }

    /// The server's FTPS certificate when `req`'s data goes in TLS under FTPS (a TLS control
    /// connection and PROT P).
    fn ftps_private(&self, req: &TransferRequest) -> Option<std::sync::Arc<crate::gsi::FtpsContext>> {
        match (&self.live.tls, &self.tls, req.prot) {
            (Some(tls), Some(_), Prot::Private) => Some(tls.clone()),
            _ => None,
        }
    }

    /// The session's delegated credential, for DCAU.
    fn delegated(&self) -> Result<&Credential, SessionError> {
        let peer = self.gsi_peer.as_ref().ok_or_else(|| dcau_refusal("no GSI login"))?;
        peer.delegated
            .as_ref()
            .ok_or_else(|| dcau_refusal("no delegated credential"))
    }

    /// A DataAuth in this process, cached per (DCAU, PROT).
    fn local_auth(&mut self, req: &TransferRequest) -> Result<DataAuthRef, SessionError> {
        let key = (req.dcau.clone(), req.prot);
        if let Some((made_for, auth)) = self.gsi_peer.as_ref().and_then(|p| p.data_auth.as_ref()) {
            if *made_for == key {
                return Ok(auth.clone());
            }
        }
        let config = self.live.gsi.clone().ok_or_else(|| dcau_refusal("no GSI login"))?;
        let credential = self.delegated()?;
        let private = req.prot == Prot::Private;
        let auth = DataAuth::new(credential, &config.trust, dcau_subject(&req.dcau), private)
            .map_err(|e| dcau_refusal(&e.to_string()))?;
        let auth = DataAuthRef(std::sync::Arc::new(auth));
        if let Some(peer) = self.gsi_peer.as_mut() {
            peer.data_auth = Some((key, auth.clone()));
        }
        Ok(auth)
    }

    /// A USER/PASS after GSI authentication: the password is not looked at; the subject must
    /// map to the requested local user (or, for `:globus-mapping:`, to any).
    pub(super) async fn authenticate_gsi(&mut self, user: &str) {
        let (Some(peer), Some(config)) = (&self.gsi_peer, &self.live.gsi) else {
            self.session.handle_auth(None);
            return;
        };
        let subject = &peer.identity.subject;
        match config.gridmap.map(subject, user) {
            Some(local) => {
                tracing::info!(peer = %self.peer, %subject, user = local, "login (GSI)");
                let user = local.to_string();
                self.log_in(user).await;
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

/// How one transfer's data connections are secured (see `data_security`).
#[derive(Default)]
pub(super) struct DataSecurity {
    /// For the embedded pool's mover.
    pub(super) auth: Option<DataAuthRef>,
    /// For a remote pool's mover, sealed.
    pub(super) grant: Option<Grant>,
    /// For the door's own ends of relayed connections.
    pub(super) relay: Option<DataAuthRef>,
    /// The pool secures the client's relayed connections itself (PROT S/P, FTPS PROT P):
    /// the door passes their bytes both ways untouched.
    pub(super) pass_through: bool,
}

impl DataSecurity {
    fn sealed(grant: Grant, proxied: bool) -> DataSecurity {
        DataSecurity {
            grant: Some(grant),
            pass_through: proxied,
            ..DataSecurity::default()
        }
    }

    fn plan(auth: DataAuthRef) -> DataSecurity {
        DataSecurity {
            auth: Some(auth),
            ..DataSecurity::default()
        }
    }
}

fn ftps_auth(tls: &crate::gsi::FtpsContext) -> DataAuthRef {
    DataAuthRef(std::sync::Arc::new(DataAuth::ftps(tls)))
}

fn dcau_refusal(why: &str) -> SessionError {
    SessionError::DataConnection(format!("DCAU: {why}; send DCAU N"))
}

fn dcau_subject(dcau: &Dcau) -> Option<&str> {
    match dcau {
        Dcau::Subject(s) => Some(s.as_str()),
        _ => None,
    }
}

fn gsi_failure() {
    crate::metrics::get()
        .login_failures
        .get_or_create(&crate::metrics::label("method", "gsi"))
        .inc();
}

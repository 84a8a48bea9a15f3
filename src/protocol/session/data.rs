//! The data channel: MODE, PASV/EPSV/SPAS (and their delayed forms), PORT/EPRT/SPOR.

use core::net::{IpAddr, SocketAddr};

use super::{Action, DataState, Pending, Session};

use crate::protocol::command::{EpsvArg, TransferMode};
use crate::protocol::reply::{host_port, Code, Reply};
use crate::protocol::SessionError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveStyle {
    Pasv,
    Epsv,
    Spas,
    /// GET/PUT `pasv`: "127 PORT (...)".
    GetPut,
}

fn is_v4_mapped(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
}

impl Session {
    pub(super) fn cmd_mode(&mut self, mode: TransferMode) -> Result<(), SessionError> {
        let letter = match mode {
            TransferMode::Stream => "S",
            TransferMode::Extended => "E",
            TransferMode::ExtendedX => "X",
            _ => return Err(SessionError::ParamNotImplemented("Unsupported transfer mode.".into())),
        };
        if self.mode != mode {
            self.reset_data_cache();
        }
        self.mode = mode;
        self.reply(Code::OK, format!("Mode set to {letter}."));
        Ok(())
    }

    /// Forgets cached MODE E connections (RFC 959 data state changed).
    pub(super) fn reset_data_cache(&mut self) {
        self.reusable = None;
        self.actions.push_back(Action::ResetData);
    }

    /// The client speaks real IPv6 (not an IPv4-mapped address): PASV's reply cannot carry
    /// an address for it.
    pub(super) fn client_is_ipv6(&self) -> bool {
        self.config.peer_ip.is_ipv6() && !is_v4_mapped(self.config.peer_ip)
    }

    /// PASV-style replies are refused to an IPv6 client (522 in RFC 2428 terms).
    pub(super) fn check_pasv_reachable(&self, style: PassiveStyle) -> Result<(), SessionError> {
        if style == PassiveStyle::Pasv && self.client_is_ipv6() {
            return Err(SessionError::ProtocolNotSupported);
        }
        Ok(())
    }

    /// A new data channel replaces an open passive listener: the driver closes it.
    pub(super) fn drop_passive(&mut self) {
        if self.data == DataState::Passive {
            self.actions.push_back(Action::DropPassive);
        }
    }

    pub(super) fn cmd_passive(&mut self, style: PassiveStyle) -> Result<(), SessionError> {
        if self.epsv_all && style != PassiveStyle::Epsv {
            return Err(SessionError::BadSequence("EPSV ALL in effect; only EPSV is allowed."));
        }
        self.check_pasv_reachable(style)?;
        self.reset_data_cache();
        if self.delayed_passive {
            //= docs/protocol-notes.md#delayed-passive
            //# PASV | EPSV | SPAS -> 200 Passive delayed.; the address comes as 127/129 with the
            //# transfer command.
            self.drop_passive();
            self.data = DataState::Delayed(style);
            self.reply(Code::OK, "Passive delayed.");
            return Ok(());
        }
        self.open_passive(style);
        Ok(())
    }

    pub(super) fn open_passive(&mut self, style: PassiveStyle) {
        self.pending = Pending::Passive { style };
        self.actions.push_back(Action::OpenPassive {
            ipv6: self.config.peer_ip.is_ipv6(),
        });
    }

    pub(super) fn cmd_epsv(&mut self, arg: EpsvArg) -> Result<(), SessionError> {
        let v6 = self.client_is_ipv6();
        match arg {
            EpsvArg::All => {
                self.epsv_all = true;
                self.reply(Code::OK, "EPSV ALL accepted.");
                Ok(())
            }
            EpsvArg::Any => self.cmd_passive(PassiveStyle::Epsv),
            EpsvArg::V4 if !v6 => self.cmd_passive(PassiveStyle::Epsv),
            EpsvArg::V6 if v6 => self.cmd_passive(PassiveStyle::Epsv),
            _ => Err(SessionError::ProtocolNotSupported),
        }
    }

    /// Answers [`Action::OpenPassive`] with the address to announce.
    pub fn handle_passive(&mut self, result: Result<SocketAddr, SessionError>) {
        let Pending::Passive { style } = std::mem::replace(&mut self.pending, Pending::None) else {
            return;
        };
        match result {
            Ok(addr) => match self.passive_reply(style, addr, false) {
                Ok(reply) => {
                    self.data = DataState::Passive;
                    self.push(reply);
                }
                Err(e) => {
                    self.data = DataState::None;
                    self.error(e)
                }
            },
            Err(e) => {
                self.data = DataState::None;
                self.error(e)
            }
        }
    }

    /// The mover of a delayed-passive or GET/PUT `pasv` transfer listens at `addr`: sends the
    /// 127/129 reply that precedes 150.
    pub fn handle_listening(&mut self, addr: SocketAddr) {
        let Some(style) = self.announcing.take() else { return };
        match self.passive_reply(style, addr, true) {
            Ok(reply) => self.push(reply),
            Err(e) => self.error(e),
        }
    }

    /// 227/229 (immediate) or 127/129 (delayed) passive replies; GET/PUT uses dCache's
    /// "127 PORT (...)".
    pub(super) fn passive_reply(
        &self,
        style: PassiveStyle,
        addr: SocketAddr,
        delayed: bool,
    ) -> Result<Reply, SessionError> {
        let v4 = match addr.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(ip) => ip.to_ipv4_mapped(),
        };
        let (pasv_code, epsv_code) = if delayed {
            (Code::DELAYED_PASV, Code::EXT_DELAYED_PASV)
        } else {
            (Code::PASSIVE, Code::EXT_PASSIVE)
        };
        Ok(match (style, v4) {
            (PassiveStyle::GetPut, Some(ip)) => Reply::new(pasv_code, format!("PORT ({})", host_port(ip, addr.port()))),
            (PassiveStyle::Epsv, _) => Reply::new(
                epsv_code,
                format!("Entering Extended Passive Mode (|||{}|)", addr.port()),
            ),
            (PassiveStyle::Pasv, Some(ip)) => Reply::new(
                pasv_code,
                format!("Entering Passive Mode ({})", host_port(ip, addr.port())),
            ),
            // GFD.20 striped passive: one address line per stripe (we have one stripe).
            (PassiveStyle::Spas, v4) => {
                let line = match v4 {
                    Some(ip) => format!(" {}", host_port(ip, addr.port())),
                    None => format!(" |2|{}|{}|", addr.ip(), addr.port()),
                };
                Reply::multi(
                    epsv_code,
                    vec!["Entering Striped Passive Mode.".into(), line, "End".into()],
                )
            }
            (PassiveStyle::Pasv | PassiveStyle::GetPut, None) => return Err(SessionError::ProtocolNotSupported),
        })
    }

    /// Bounce protection (`docs/protocol-notes.md#bounce`), for every session: data connections
    /// go back to the client or a trusted network, never to a privileged port.
    pub(super) fn check_port_target(&self, addrs: &[SocketAddr]) -> Result<(), SessionError> {
        let peers = crate::peers::DataPeers {
            client: self.config.peer_ip,
            trusted: self.config.trusted_networks.clone(),
        };
        if addrs.iter().any(|a| !peers.allows(a.ip()) || a.port() < 1024) {
            return Err(SessionError::PortRefused);
        }
        Ok(())
    }

    pub(super) fn cmd_active(&mut self, addrs: Vec<SocketAddr>) -> Result<(), SessionError> {
        if self.epsv_all {
            return Err(SessionError::BadSequence("EPSV ALL in effect; only EPSV is allowed."));
        }
        self.check_port_target(&addrs)?;
        self.drop_passive();
        self.reset_data_cache();
        self.data = DataState::Active(addrs);
        self.reply(Code::OK, "PORT Command successful.");
        Ok(())
    }
}

//! Logging in: USER, PASS and what is allowed before.

use std::time::Duration;

use super::{Access, Action, Pending, Session};

use crate::protocol::command::Command;
use crate::protocol::reply::Code;
use crate::protocol::SessionError;

/// Failed logins allowed on one connection before it is closed.
pub const MAX_LOGIN_FAILURES: u32 = 5;

/// Names that log in anonymously. `:globus-mapping:` asks the server to map the user from the
/// security context; over plain `ftp://` there is none, so it is an anonymous login, as
/// globus-gridftp-server does it (and refused when anonymous access is off).
pub(super) const ANONYMOUS_NAMES: &[&str] = &["anonymous", "ftp", ":globus-mapping:"];

pub(super) fn allowed_before_login(cmd: &Command) -> bool {
    use Command as C;
    matches!(
        cmd,
        C::User(_)
            | C::Pass(_)
            | C::Quit
            | C::Feat
            | C::Help(_)
            | C::Syst
            | C::Noop
            | C::Auth(_)
            | C::Adat(_)
            | C::Protected(..)
            | C::Pbsz(_)
            | C::Prot(_)
            | C::Opts(..)
            | C::Abor
    )
}

pub(super) fn display_name(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(64).collect()
}

impl Session {
    /// How long the driver should wait before delivering a failed login: doubles with each
    /// failure on this connection (1, 2, 4, 8 s).
    pub fn auth_penalty(&self) -> Duration {
        let n = self.login_failures.clamp(1, 4) - 1;
        Duration::from_secs(1 << n)
    }

    /// Whether `name` logs in anonymously. After GSI authentication every name (even
    /// `anonymous`) is mapped from the certificate instead, and the password is not looked at.
    fn anonymous_name(&self, name: &str) -> bool {
        !self.protected() && ANONYMOUS_NAMES.iter().any(|a| a.eq_ignore_ascii_case(name))
    }

    pub(super) fn cmd_user(&mut self, name: String) -> Result<(), SessionError> {
        if self.access.is_some() {
            return Err(SessionError::BadSequence("Already logged in."));
        }
        if self.config.require_tls && !self.secured() {
            return Err(SessionError::TlsRequired);
        }
        let anonymous = self.anonymous_name(&name);
        if anonymous && !self.config.allow_anonymous {
            return Err(SessionError::AnonymousDisabled);
        }
        self.reply(
            Code::NEED_PASSWORD,
            format!("Password required for {}.", display_name(&name)),
        );
        self.user = Some(name);
        Ok(())
    }

    pub(super) fn cmd_pass(&mut self, password: String) -> Result<(), SessionError> {
        if self.access.is_some() {
            return Err(SessionError::BadSequence("Already logged in."));
        }
        let user = self
            .user
            .take()
            .ok_or(SessionError::BadSequence("Login with USER first."))?;
        if self.anonymous_name(&user) {
            self.handle_login(Some(Access {
                user: "anonymous".into(),
                writable: false,
            }));
            return Ok(());
        }
        self.pending = Pending::Auth;
        self.actions.push_back(Action::Authenticate { user, password });
        Ok(())
    }

    /// Answers [`Action::Authenticate`]: `Some` when the password was right.
    pub fn handle_auth(&mut self, result: Option<Access>) {
        if !matches!(self.pending, Pending::Auth) {
            return;
        }
        self.pending = Pending::None;
        self.handle_login(result);
    }

    /// Answers [`Action::Authenticate`] with a refusal that says why (a GSI subject the
    /// grid-mapfile does not map); it counts as a failed login.
    pub fn handle_auth_refused(&mut self, why: SessionError) {
        if !matches!(self.pending, Pending::Auth) {
            return;
        }
        self.pending = Pending::None;
        self.login_failures += 1;
        self.error(why);
    }

    pub(super) fn handle_login(&mut self, result: Option<Access>) {
        match result {
            Some(access) => {
                self.reply(
                    Code::LOGGED_IN,
                    format!("User {} logged in.", display_name(&access.user)),
                );
                self.access = Some(access);
            }
            None => {
                self.login_failures += 1;
                if self.login_failures >= MAX_LOGIN_FAILURES {
                    self.error(SessionError::TooManyFailures);
                    self.closed = true;
                    self.actions.push_back(Action::Close);
                } else {
                    self.error(SessionError::LoginIncorrect);
                }
            }
        }
    }
}

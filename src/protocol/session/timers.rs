//! The session's clock: the driver passes time in (how long the session has existed), asks
//! when it next needs to be woken ([`Session::poll_timeout`]) and reports that time
//! ([`Session::handle_timeout`]). The session itself reads no clock, so its timeouts are tested
//! on virtual time.

use std::time::Duration;

use super::{Action, Session};
use crate::protocol::reply::Code;

/// How long a control connection may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From the greeting until a successful login.
    pub login: Duration,
    /// Without a complete command line (a transfer counts as activity until it ends).
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            login: Duration::from_secs(30),
            idle: Duration::from_secs(600),
        }
    }
}

impl Session {
    /// A command was handled at `now` (time since the session started); after a transfer,
    /// the time it ended.
    pub fn handle_activity(&mut self, now: Duration) {
        self.last_activity = self.last_activity.max(now);
    }

    /// When the session must next be woken with [`Session::handle_timeout`]; None once it
    /// is closing.
    pub fn poll_timeout(&self) -> Option<Duration> {
        (!self.closed).then(|| self.deadline().0)
    }

    /// Time has come to `now`: past the deadline, the session answers 421 and asks the
    /// driver to close.
    pub fn handle_timeout(&mut self, now: Duration) {
        let (deadline, why) = self.deadline();
        if self.closed || now < deadline {
            return;
        }
        self.reply(Code::NOT_AVAILABLE, why);
        self.closed = true;
        self.actions.push_back(Action::Close);
    }

    /// The earlier of the idle and (before login) the login deadline, and what its 421 says.
    fn deadline(&self) -> (Duration, &'static str) {
        let t = self.config.timeouts;
        let idle = self.last_activity.saturating_add(t.idle);
        if self.access.is_some() || idle <= t.login {
            (idle, "Idle timeout; closing control connection.")
        } else {
            (t.login, "Login timeout; closing control connection.")
        }
    }
}

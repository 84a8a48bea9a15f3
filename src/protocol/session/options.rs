//! Options: OPTS, ABUF/SBUF buffer sizing, TREV markers.

use super::{Session, DEFAULT_STRIPE_UNIT, MAX_BLOCK_SIZE, MAX_PARALLELISM, MIN_BLOCK_SIZE};

use crate::block::layout::StripeLayout;
use crate::protocol::command::{LayoutChoice, OptsArg, RetrOptions, TrevEvent};
use crate::protocol::reply::Code;
use crate::protocol::SessionError;

impl Session {
    pub(super) fn cmd_opts(&mut self, arg: OptsArg) -> Result<(), SessionError> {
        match arg {
            OptsArg::Utf8 => self.reply(Code::OK, "UTF8 mode is always on."),
            OptsArg::Retr(o) => {
                self.set_retr_options(o);
                self.reply(Code::OK, "OPTS Command Successful.");
            }
            OptsArg::Mlst => self.reply(Code::OK, "MLST OPTS Type;Size;Modify;Perm;UNIX.mode;"),
            OptsArg::Pasv { allow_delayed } => {
                if let Some(on) = allow_delayed {
                    self.delayed_passive = on;
                }
                self.reply(Code::OK, "OPTS Command Successful.");
            }
            OptsArg::Other(name) => {
                return Err(SessionError::ParamNotImplemented(format!(
                    "OPTS {name} is not supported."
                )))
            }
        }
        Ok(())
    }

    fn set_retr_options(&mut self, o: RetrOptions) {
        if let Some(n) = o.parallelism {
            self.parallelism = n.min(MAX_PARALLELISM);
        }
        if let Some(n) = o.markers {
            self.markers_send = Some(n);
        }
        // BlockSize is the stripe layout's unit (any positive size). A unit that is also a
        // valid MODE E block size sizes the blocks too, so that each block lies in one unit;
        // others leave the block size at its default.
        if let Some(n) = o.block_size {
            self.block_size = (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&n).then_some(n);
        }
        match (o.layout, o.block_size) {
            (Some(LayoutChoice::Partitioned), _) => self.layout = Some(StripeLayout::Partitioned),
            (Some(LayoutChoice::Blocked), u) | (None, u @ Some(_)) => {
                let unit = u.or(match self.layout {
                    Some(StripeLayout::Blocked(b)) => Some(b),
                    _ => None,
                });
                self.layout = Some(StripeLayout::Blocked(unit.unwrap_or(DEFAULT_STRIPE_UNIT)));
            }
            (None, None) => {}
        }
    }

    /// `ABUF [rate]`: twice the bandwidth-delay product of the control RTT, as SBUF would set it.
    pub(super) fn cmd_abuf(&mut self, rate: Option<u64>) -> Result<(), SessionError> {
        let rate = rate.map(|bps| bps as f64);
        let (want, fixed) = self.config.buffers.choose(self.control_rtt_us, rate);
        self.buffer_size = fixed;
        self.abuf_rate = rate;
        let shown = rate.unwrap_or(self.config.buffers.target_bps) / 1e6;
        let how = match fixed {
            Some(_) => "fixed".to_string(),
            None => format!("autotuning, up to {}", self.config.buffers.autotune_max),
        };
        self.reply(
            Code::OK,
            format!(
                "ABUF {want} {how} (RTT {:.2} ms, {shown:.0} Mbit/s)",
                self.control_rtt_us as f64 / 1e3
            ),
        );
        Ok(())
    }

    /// The socket buffer size fixed for the next transfers (SBUF, or ABUF where autotuning
    /// would fall short); None leaves them to kernel autotuning.
    pub fn fixed_buffer(&self) -> Option<u64> {
        self.buffer_size
    }

    /// The driver's latest measurement of the control connection's RTT (TCP_INFO).
    pub fn set_control_rtt(&mut self, micros: u64) {
        self.control_rtt_us = micros;
    }

    pub(super) fn set_buffer(&mut self, n: u64) -> Result<(), SessionError> {
        // 0 means "system default" (autotuning); anything else is clamped by the kernel.
        if n > 1 << 30 {
            return Err(SessionError::BadArgument("Buffer size must be at most 1 GiB.".into()));
        }
        self.buffer_size = (n > 0).then_some(n);
        Ok(())
    }

    pub(super) fn cmd_trev(&mut self, event: Option<(TrevEvent, u64)>) -> Result<(), SessionError> {
        match event {
            Some((TrevEvent::Perf, n)) => {
                self.markers_receive = Some(n);
                self.markers_send = Some(n);
            }
            Some((TrevEvent::Restart, n)) => self.markers_receive = Some(n),
            None => return Err(SessionError::NotImplemented("Unsupported event.")),
        }
        self.reply(Code::OK, "Command Successful.");
        Ok(())
    }
}

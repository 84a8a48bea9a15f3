//! Options: OPTS, ABUF/SBUF buffer sizing, TREV markers.

use super::{Session, DEFAULT_STRIPE_UNIT, MAX_BLOCK_SIZE, MAX_PARALLELISM, MIN_BLOCK_SIZE};

use crate::block::layout::StripeLayout;
use crate::protocol::reply::Code;
use crate::protocol::SessionError;
use crate::units::parse_rate;

/// `OPTS RETR` options: `key=value;` items, case-insensitive keys, lenient about a missing final
/// `;` (`docs/protocol-notes.md#opts-lists`). Returns the pairs; rejects items without `=`.
pub fn parse_opts_list(args: &str) -> Result<Vec<(String, String)>, SessionError> {
    let mut out = Vec::new();
    for item in args.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| SessionError::BadArgument(format!("Option '{item}' is not key=value.")))?;
        out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(out)
}

impl Session {
    pub(super) fn cmd_opts(&mut self, name: &str, args: &str) -> Result<(), SessionError> {
        match name {
            "UTF8" | "UTF-8" => self.reply(Code::OK, "UTF8 mode is always on."),
            "RETR" => {
                let (mut unit, mut partitioned) = (None, None);
                for (key, value) in parse_opts_list(args)? {
                    match key.as_str() {
                        // parallelism=start,min,max: the start value is used.
                        "parallelism" => {
                            let n: u32 = value
                                .split(',')
                                .next()
                                .and_then(|v| v.trim().parse().ok())
                                .filter(|&n| n >= 1)
                                .ok_or_else(|| SessionError::BadArgument(format!("Bad parallelism '{value}'.")))?;
                            self.parallelism = n.min(MAX_PARALLELISM);
                        }
                        "markers" => {
                            let n = value
                                .parse()
                                .map_err(|_| SessionError::BadArgument(format!("Bad markers '{value}'.")))?;
                            self.markers_send = Some(n);
                        }
                        // BlockSize is the stripe layout's unit (any positive size). A unit that
                        // is also a valid MODE E block size sizes the blocks too, so that each
                        // block lies in one unit; others leave the block size at its default.
                        "blocksize" => {
                            let n: u64 = value
                                .trim()
                                .parse()
                                .ok()
                                .filter(|&n| n >= 1)
                                .ok_or_else(|| SessionError::BadArgument(format!("Bad block size '{value}'.")))?;
                            unit = Some(n);
                            self.block_size = (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&n).then_some(n);
                        }
                        "stripelayout" => match value.trim().to_ascii_lowercase().as_str() {
                            "blocked" => partitioned = Some(false),
                            "partitioned" => partitioned = Some(true),
                            _ => return Err(SessionError::BadArgument(format!("Bad stripe layout '{value}'."))),
                        },
                        _ => {}
                    }
                }
                match (partitioned, unit) {
                    (Some(true), _) => self.layout = Some(StripeLayout::Partitioned),
                    (Some(false), u) | (None, u @ Some(_)) => {
                        let unit = u.or(match self.layout {
                            Some(StripeLayout::Blocked(b)) => Some(b),
                            _ => None,
                        });
                        self.layout = Some(StripeLayout::Blocked(unit.unwrap_or(DEFAULT_STRIPE_UNIT)));
                    }
                    (None, None) => {}
                }
                self.reply(Code::OK, "OPTS Command Successful.");
            }
            "MLST" => self.reply(Code::OK, "MLST OPTS Type;Size;Modify;Perm;UNIX.mode;"),
            "PASV" => {
                for (key, value) in parse_opts_list(args)? {
                    if key == "allowdelayed" {
                        self.delayed_passive = value.trim() != "0";
                    }
                }
                self.reply(Code::OK, "OPTS Command Successful.");
            }
            _ => {
                return Err(SessionError::ParamNotImplemented(format!(
                    "OPTS {name} is not supported."
                )))
            }
        }
        Ok(())
    }

    /// `ABUF [rate]`: twice the bandwidth-delay product of the control RTT, as SBUF would set it.
    pub(super) fn cmd_abuf(&mut self, rate: Option<&str>) -> Result<(), SessionError> {
        let rate = match rate {
            Some(r) => Some(parse_rate(r).ok_or_else(|| SessionError::BadArgument(format!("Bad rate '{r}'.")))?),
            None => None,
        };
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

    pub(super) fn cmd_trev(&mut self, arg: &str) -> Result<(), SessionError> {
        let mut words = arg.split_whitespace();
        let (event, secs) = (
            words.next().unwrap_or("").to_ascii_uppercase(),
            words.next().and_then(|w| w.parse().ok()),
        );
        match (event.as_str(), secs) {
            ("PERF", Some(n)) => {
                self.markers_receive = n;
                self.markers_send = Some(n);
            }
            ("RESTART", Some(n)) => self.markers_receive = n,
            _ => return Err(SessionError::NotImplemented("Unsupported event.")),
        }
        self.reply(Code::OK, "Command Successful.");
        Ok(())
    }
}

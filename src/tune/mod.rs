//! `ringmover tune`: a read-only check of this host against the ESnet fasterdata host-tuning
//! recommendations for a target rate and RTT (`check`), and sysctl profiles applied with a
//! revert file (`profile`).

pub mod check;
mod ethtool;
pub mod profile;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use check::check;

/// What the host should carry: one flow's rate over a path's round trip.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub bits_per_s: f64,
    pub rtt: Duration,
    /// A 100G-class host (larger backlog, jumbo frames expected).
    pub hundred_g: bool,
}

impl Target {
    /// `10g` or `100g`, with an RTT.
    pub fn new(name: &str, rtt: Duration) -> Option<Target> {
        let (bits, hundred_g) = match name.to_ascii_lowercase().as_str() {
            "10g" => (10e9, false),
            "25g" => (25e9, false),
            "40g" => (40e9, true),
            "100g" => (100e9, true),
            _ => return None,
        };
        Some(Target {
            bits_per_s: bits,
            rtt,
            hundred_g,
        })
    }

    /// Bandwidth-delay product in bytes: what one flow must keep in flight.
    pub fn bdp(&self) -> u64 {
        (self.bits_per_s / 8.0 * self.rtt.as_secs_f64()) as u64
    }
}

/// How an item compares with the recommendation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    /// Off in a way that caps throughput for the target: `tune check` exits 1.
    Critical,
    /// Informational: nothing to compare.
    Info,
    /// Could not be read here.
    Unknown,
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub item: String,
    pub current: String,
    pub recommended: String,
    pub why: String,
    /// The command that fixes it (empty when nothing is to be done).
    pub fix: String,
    pub status: Status,
}

/// Where the host's files are read from: `/` normally, a prepared tree in tests.
#[derive(Clone, Debug)]
pub struct Host {
    pub root: PathBuf,
    /// Live host: ioctls, io_uring and rlimits may be queried (not under a test root).
    pub live: bool,
}

impl Host {
    pub fn live() -> Host {
        Host {
            root: PathBuf::from("/"),
            live: true,
        }
    }

    pub fn at(root: &Path) -> Host {
        Host {
            root: root.to_path_buf(),
            live: false,
        }
    }

    /// A file's trimmed contents, `rel` relative to the root (e.g. `proc/sys/net/core/rmem_max`).
    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(rel))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// A sysctl by its dotted name.
    pub fn sysctl(&self, name: &str) -> Option<String> {
        self.read(&sysctl_path(name))
    }

    /// A numeric sysctl, or field `field` of a vector one (`tcp_rmem`'s max is field 2).
    pub fn sysctl_number(&self, name: &str, field: Option<usize>) -> Option<u64> {
        number_field(&self.sysctl(name)?, field)
    }
}

/// A sysctl value as a number, or field `field` of a vector value.
pub fn number_field(value: &str, field: Option<usize>) -> Option<u64> {
    match field {
        Some(i) => value.split_whitespace().nth(i)?.parse().ok(),
        None => value.parse().ok(),
    }
}

/// `net.core.rmem_max` → `proc/sys/net/core/rmem_max`.
pub fn sysctl_path(name: &str) -> String {
    format!("proc/sys/{}", name.replace('.', "/"))
}

/// A table for a terminal.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<28} {:<28} {:<28} {:<8} {}\n",
        "item", "current", "recommended", "status", "why / fix"
    );
    for r in rows {
        let status = format!("{:?}", r.status).to_ascii_lowercase();
        out.push_str(&format!(
            "{:<28} {:<28} {:<28} {:<8} {}\n",
            r.item,
            clip(&r.current, 28),
            clip(&r.recommended, 28),
            status,
            r.why
        ));
        if !r.fix.is_empty() {
            out.push_str(&format!("{:<94}   fix: {}\n", "", r.fix));
        }
    }
    out
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(n - 1).collect();
        c.push('…');
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_rtt() {
        let t = Target::new("10g", Duration::from_millis(50)).unwrap();
        assert_eq!(t.bdp(), 62_500_000);
        assert!(Target::new("7g", Duration::ZERO).is_none());
        assert_eq!(sysctl_path("net.ipv4.tcp_rmem"), "proc/sys/net/ipv4/tcp_rmem");
    }
}

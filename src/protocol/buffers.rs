//! Automatic socket-buffer sizing (`ABUF`, and transfers without SBUF): a buffer of twice the
//! bandwidth-delay product of the control connection's RTT at the target rate, within the
//! host's limits. Sans-IO: the driver supplies the RTT and the limits.

/// The smallest buffer ABUF chooses.
pub const MIN_BUFFER: u64 = 64 << 10;

/// What automatic sizing works with.
#[derive(Clone, Debug, PartialEq)]
pub struct BufferPolicy {
    /// The rate one transfer should reach, in bits per second.
    pub target_bps: f64,
    /// The most a socket may be given (min of net.core.rmem_max and wmem_max).
    pub host_max: u64,
    /// The most kernel autotuning reaches by itself (min of tcp_rmem and tcp_wmem maxima).
    pub autotune_max: u64,
    /// Size transfers without SBUF automatically (when autotuning would fall short).
    pub automatic: bool,
}

impl Default for BufferPolicy {
    fn default() -> Self {
        BufferPolicy {
            target_bps: 10e9,
            host_max: 4 << 20,
            autotune_max: 4 << 20,
            automatic: true,
        }
    }
}

impl BufferPolicy {
    /// Twice the bandwidth-delay product for `rtt_us` at `rate` (or the target), clamped to
    /// [MIN_BUFFER, host_max].
    pub fn size_for(&self, rtt_us: u64, rate_bps: Option<f64>) -> u64 {
        let rate = rate_bps
            .filter(|r| r.is_finite() && *r > 0.0)
            .unwrap_or(self.target_bps);
        let bdp = rate / 8.0 * rtt_us as f64 / 1e6;
        ((2.0 * bdp) as u64).clamp(MIN_BUFFER, self.host_max.max(MIN_BUFFER))
    }

    /// The buffer wanted (2×BDP within limits) and, when a fixed size beats the kernel's
    /// autotuning, that size: fixing a buffer turns autotuning off, so it is fixed only where
    /// autotuning cannot reach the want and the host allows more than autotuning does.
    pub fn choose(&self, rtt_us: u64, rate_bps: Option<f64>) -> (u64, Option<u64>) {
        let want = self.size_for(rtt_us, rate_bps);
        let fixed = (want > self.autotune_max).then_some(want);
        (want, fixed)
    }

    /// For a transfer without SBUF: the fixed size `choose` picks, if automatic sizing is on.
    pub fn automatic_for(&self, rtt_us: u64, rate_bps: Option<f64>) -> Option<u64> {
        if !self.automatic {
            return None;
        }
        self.choose(rtt_us, rate_bps).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let p = BufferPolicy {
            target_bps: 1e9,
            host_max: 64 << 20,
            autotune_max: 4 << 20,
            automatic: true,
        };
        // 1 Gbit/s × 50 ms = 6.25 MB; twice that.
        assert_eq!(p.size_for(50_000, None), 12_500_000);
        assert_eq!(p.size_for(50, None), MIN_BUFFER);
        assert_eq!(p.size_for(500_000, Some(10e9)), 64 << 20);
        assert_eq!(p.automatic_for(50_000, None), Some(12_500_000));
        assert_eq!(p.automatic_for(1_000, None), None, "autotuning reaches 250 kB");
        // Where the host caps fixed buffers below what autotuning reaches, autotuning wins.
        let tight = BufferPolicy {
            host_max: 4 << 20,
            autotune_max: 32 << 20,
            ..p.clone()
        };
        assert_eq!(tight.choose(50_000, None), (4 << 20, None));
    }
}

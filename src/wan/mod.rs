//! `ringmover wan-emu`: a userspace WAN link between two TUN devices (for hosts without
//! `tc netem`). Each direction has its own thread: packets read from one device get random
//! or burst loss, a bounded queue (tail drop) in front of a rate limit, one-way delay with
//! jitter (order kept), optional reordering, and are written to the other device.

pub mod lab;
pub mod tun;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One direction's impairments (both directions get the same).
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// One-way delay.
    pub delay: Duration,
    /// Each packet's delay varies uniformly within ±jitter (packet order is kept).
    pub jitter: Duration,
    /// Independent random loss probability (0..1).
    pub loss: f64,
    /// Gilbert burst loss: (P(good→bad), P(bad→good)) per packet; every packet sent in the
    /// bad state is lost.
    pub burst: Option<(f64, f64)>,
    /// Probability that a packet skips the delay line (arrives ahead of earlier ones).
    pub reorder: f64,
    /// Rate limit in bits per second (None: unlimited).
    pub rate_bps: Option<f64>,
    /// Bytes that may wait for the rate limit before the tail is dropped.
    pub queue_bytes: u64,
    pub seed: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            reorder: 0.0,
            rate_bps: None,
            queue_bytes: 4 << 20,
            seed: 1,
        }
    }
}

/// Counters of one direction.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub forwarded: AtomicU64,
    pub lost: AtomicU64,
    pub queue_drops: AtomicU64,
    pub reordered: AtomicU64,
}

/// What happens to one packet.
#[derive(Debug, PartialEq)]
enum Fate {
    Lost,
    QueueFull,
    /// Write it at this instant.
    At(Instant),
    /// Write it now, ahead of the queued ones.
    Now,
}

/// The per-direction decision state.
struct Shaper {
    cfg: LinkConfig,
    rng: fastrand::Rng,
    bad: bool,
    /// When the rate limit has sent the last accepted packet.
    busy_until: Instant,
    /// Delivery time of the last queued packet (keeps order under jitter).
    last_due: Instant,
}

impl Shaper {
    fn new(cfg: LinkConfig, seed: u64) -> Shaper {
        let now = Instant::now();
        Shaper {
            rng: fastrand::Rng::with_seed(seed),
            cfg,
            bad: false,
            busy_until: now,
            last_due: now,
        }
    }

    fn decide(&mut self, len: usize, now: Instant) -> Fate {
        if let Some((enter, leave)) = self.cfg.burst {
            let flip = if self.bad { leave } else { enter };
            if self.rng.f64() < flip {
                self.bad = !self.bad;
            }
            if self.bad {
                return Fate::Lost;
            }
        }
        if self.cfg.loss > 0.0 && self.rng.f64() < self.cfg.loss {
            return Fate::Lost;
        }
        let departure = match self.cfg.rate_bps {
            Some(rate) => {
                let start = self.busy_until.max(now);
                // Rounded: the float time of whole packets must not lose a byte of room.
                let backlog = ((start - now).as_secs_f64() * rate / 8.0).round();
                if backlog + len as f64 > self.cfg.queue_bytes as f64 {
                    return Fate::QueueFull;
                }
                self.busy_until = start + Duration::from_secs_f64(len as f64 * 8.0 / rate);
                self.busy_until
            }
            None => now,
        };
        if self.cfg.reorder > 0.0 && self.rng.f64() < self.cfg.reorder {
            return Fate::Now;
        }
        let j = self.cfg.jitter.as_secs_f64();
        let delay = (self.cfg.delay.as_secs_f64() + (self.rng.f64() * 2.0 - 1.0) * j).max(0.0);
        let due = (departure + Duration::from_secs_f64(delay)).max(self.last_due);
        self.last_due = due;
        Fate::At(due)
    }
}

/// Moves packets from `from` to `to` until reading fails (the device went away).
fn pump(mut from: File, mut to: File, cfg: LinkConfig, seed: u64, stats: Arc<Stats>) -> std::io::Result<()> {
    rustix::fs::fcntl_setfl(&from, rustix::fs::OFlags::NONBLOCK)?;
    let mut shaper = Shaper::new(cfg, seed);
    let mut line: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        let wait = line.front().map(|(due, _)| due.saturating_duration_since(now));
        let timeout = rustix::event::Timespec {
            tv_sec: wait.map_or(1, |w| w.as_secs() as i64),
            tv_nsec: wait.map_or(0, |w| i64::from(w.subsec_nanos())),
        };
        let mut fds = [rustix::event::PollFd::new(&from, rustix::event::PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            match shaper.decide(n, Instant::now()) {
                Fate::Lost => {
                    stats.lost.fetch_add(1, Ordering::Relaxed);
                }
                Fate::QueueFull => {
                    stats.queue_drops.fetch_add(1, Ordering::Relaxed);
                }
                Fate::Now => {
                    stats.reordered.fetch_add(1, Ordering::Relaxed);
                    deliver(&mut to, &buf[..n], &stats);
                }
                Fate::At(due) => line.push_back((due, buf[..n].to_vec())),
            }
        }
        let now = Instant::now();
        while line.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, p)) = line.pop_front() {
                deliver(&mut to, &p, &stats);
            }
        }
    }
}

/// Writes one packet; a packet the stack refuses is counted as lost, like a dropped frame.
fn deliver(to: &mut File, packet: &[u8], stats: &Stats) {
    // A TUN write takes the whole packet or fails.
    match to.write(packet) {
        Ok(n) if n == packet.len() => stats.forwarded.fetch_add(1, Ordering::Relaxed),
        _ => stats.lost.fetch_add(1, Ordering::Relaxed),
    };
}

/// The thread moving one direction's packets.
pub type Direction = std::thread::JoinHandle<std::io::Result<()>>;

/// Opens both devices and runs both directions; returns once both devices are open, with the
/// per-direction counters (a→b, b→a) and the threads.
pub fn start(name_a: &str, name_b: &str, cfg: &LinkConfig) -> std::io::Result<([Arc<Stats>; 2], Vec<Direction>)> {
    let a = tun::open(name_a)?;
    let b = tun::open(name_b)?;
    let stats = [Arc::new(Stats::default()), Arc::new(Stats::default())];
    let mut threads = Vec::new();
    for (i, (from, to)) in [(a.try_clone()?, b.try_clone()?), (b, a)].into_iter().enumerate() {
        let (cfg, s) = (cfg.clone(), stats[i].clone());
        let seed = cfg.seed.wrapping_add(i as u64);
        threads.push(
            std::thread::Builder::new()
                .name(format!("wan-{i}"))
                .spawn(move || pump(from, to, cfg, seed, s))?,
        );
    }
    Ok((stats, threads))
}

/// `0.1%` → 0.001; a bare number is a probability.
pub fn parse_probability(s: &str) -> Option<f64> {
    let s = s.trim();
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok()? / 100.0,
        None => s.parse().ok()?,
    };
    (0.0..=1.0).contains(&v).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(parse_probability("0.1%"), Some(0.001));
        assert_eq!(parse_probability("0.5"), Some(0.5));
        assert_eq!(parse_probability("150%"), None);
    }

    #[test]
    fn loss_rate_queue_and_order() {
        let now = Instant::now();
        let mut s = Shaper::new(
            LinkConfig {
                loss: 0.01,
                ..LinkConfig::default()
            },
            7,
        );
        let lost = (0..100_000).filter(|_| s.decide(100, now) == Fate::Lost).count();
        assert!((800..1200).contains(&lost), "{lost}");

        // 8 Mbit/s = 1 byte per µs: a 1000-byte packet departs 1 ms after the previous one;
        // 3000 bytes of queue hold three packets, the fourth is dropped.
        let mut s = Shaper::new(
            LinkConfig {
                rate_bps: Some(8e6),
                queue_bytes: 3000,
                delay: Duration::from_millis(10),
                ..LinkConfig::default()
            },
            1,
        );
        // The shaper starts idle at its creation: measure from there.
        let now = s.busy_until;
        let fates: Vec<Fate> = (0..4).map(|_| s.decide(1000, now)).collect();
        assert_eq!(fates[0], Fate::At(now + Duration::from_millis(11)));
        assert_eq!(fates[2], Fate::At(now + Duration::from_millis(13)));
        assert_eq!(fates[3], Fate::QueueFull);

        // Jitter never reorders.
        let mut s = Shaper::new(
            LinkConfig {
                delay: Duration::from_millis(5),
                jitter: Duration::from_millis(4),
                ..LinkConfig::default()
            },
            3,
        );
        let mut last = now;
        for i in 0..1000 {
            let Fate::At(due) = s.decide(100, now + Duration::from_micros(i * 10)) else {
                panic!("no delivery time");
            };
            assert!(due >= last);
            last = due;
        }

        // Burst loss: losses come in runs.
        let mut s = Shaper::new(
            LinkConfig {
                burst: Some((0.01, 0.3)),
                ..LinkConfig::default()
            },
            5,
        );
        let lost: Vec<bool> = (0..100_000).map(|_| s.decide(100, now) == Fate::Lost).collect();
        let total = lost.iter().filter(|l| **l).count();
        let runs = lost.windows(2).filter(|w| !w[0] && w[1]).count();
        // Stationary loss 0.01 / 0.31 ≈ 3.2%, mean run 1 / 0.3 ≈ 3.3 packets.
        assert!((2500..4000).contains(&total), "{total}");
        assert!(total as f64 / runs as f64 > 2.5, "{total} in {runs} runs");
    }
}

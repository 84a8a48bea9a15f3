//! Per-address admission: how many control sessions one address holds, and the login delay it
//! owes after failed passwords. The state lives in the door, not in a connection, so a client
//! that hangs up after a wrong PASS meets its delay on the next connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::peers::canonical;

/// Failures are forgotten after this long without another.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// The longest delay one address can owe before its next attempt.
const MAX_DELAY: Duration = Duration::from_secs(16);

#[derive(Debug, Default)]
struct Entry {
    sessions: usize,
    failures: u32,
    /// No password of this address is checked before then.
    blocked_until: Option<Instant>,
    last_failure: Option<Instant>,
}

impl Entry {
    fn forgotten(&self, now: Instant) -> bool {
        self.sessions == 0 && self.last_failure.is_none_or(|t| now.duration_since(t) >= FORGET_AFTER)
    }
}

/// The door's per-address state.
#[derive(Debug)]
pub struct AddressGuard {
    entries: Mutex<HashMap<IpAddr, Entry>>,
    max_sessions_per_address: usize,
}

/// A session slot of one address; given back on drop.
#[derive(Debug)]
pub struct AddressSlot {
    guard: Arc<AddressGuard>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.guard.lock();
        if let Some(e) = map.get_mut(&self.ip) {
            e.sessions = e.sessions.saturating_sub(1);
            if e.forgotten(Instant::now()) {
                map.remove(&self.ip);
            }
        }
    }
}

impl AddressGuard {
    pub fn new(max_sessions_per_address: usize) -> AddressGuard {
        AddressGuard {
            entries: Mutex::default(),
            max_sessions_per_address: max_sessions_per_address.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session slot for `ip`, or `None` when that address holds its maximum already.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let ip = canonical(ip);
        let mut map = self.lock();
        let e = map.entry(ip).or_default();
        if e.sessions >= self.max_sessions_per_address {
            return None;
        }
        e.sessions += 1;
        Some(AddressSlot {
            guard: self.clone(),
            ip,
        })
    }

    /// Claims the right to check a password of `ip` now, or says how long it must still wait.
    /// An address with failures gets one check at a time: the claim blocks it for the current
    /// delay until [`fail`](Self::fail) or [`succeed`](Self::succeed) settles it.
    pub fn claim(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.lock();
        let Some(e) = map.get_mut(&canonical(ip)) else {
            return Ok(());
        };
        if let Some(t) = e.blocked_until.filter(|&t| t > now) {
            return Err(t - now);
        }
        if e.failures > 0 {
            e.blocked_until = Some(now + delay_after(e.failures));
        }
        Ok(())
    }

    /// Records a failed password: the address's next attempt waits 1, 2, 4, 8, then 16 s.
    pub fn fail(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, e| !e.forgotten(now));
        let e = map.entry(canonical(ip)).or_default();
        e.failures = e.failures.saturating_add(1);
        let delay = delay_after(e.failures);
        e.blocked_until = Some(now + delay);
        e.last_failure = Some(now);
        delay
    }

    /// A right password clears the address's failures.
    pub fn succeed(&self, ip: IpAddr) {
        if let Some(e) = self.lock().get_mut(&canonical(ip)) {
            e.failures = 0;
            e.blocked_until = None;
            e.last_failure = None;
        }
    }

    /// Addresses with state (sessions or recent failures).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// The wait after `failures` failed passwords: 1, 2, 4, 8, then 16 s.
fn delay_after(failures: u32) -> Duration {
    Duration::from_secs(1 << failures.saturating_sub(1).min(4)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_per_address_and_release() {
        let g = Arc::new(AddressGuard::new(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let s1 = g.admit(a).unwrap();
        let _s2 = g.admit(mapped).unwrap();
        assert!(g.admit(a).is_none());
        assert!(g.admit("10.0.0.2".parse().unwrap()).is_some());
        drop(s1);
        assert!(g.admit(a).is_some());
    }

    #[test]
    fn failures_block_the_next_attempt_and_double() {
        let g = AddressGuard::new(4);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(g.claim(ip), Ok(()));
        assert_eq!(g.claim(ip), Ok(()), "no failures: checks may run side by side");
        let delays: Vec<u64> = (0..6).map(|_| g.fail(ip).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 16]);
        assert!(g.claim(ip).unwrap_err() > Duration::from_secs(15));
        assert_eq!(g.claim("10.0.0.2".parse().unwrap()), Ok(()));
        g.succeed(ip);
        assert_eq!(g.claim(ip), Ok(()));
        assert_eq!(g.fail(ip).as_secs(), 1);
    }

    #[test]
    fn state_without_sessions_or_failures_is_dropped() {
        let g = Arc::new(AddressGuard::new(4));
        for i in 0..100u8 {
            drop(g.admit(IpAddr::from([10, 0, 1, i])).unwrap());
        }
        assert_eq!(g.tracked(), 0);
    }
}

//! Delegation keys made ahead of time. An RSA-2048 key takes 0.1-0.2 s to generate, which a
//! GSI login with delegation would otherwise wait for; a background thread keeps a few ready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;

use super::GsiError;

/// Keys of one size kept ready.
pub struct KeyPool {
    bits: u32,
    keep: usize,
    ready: Mutex<Vec<PKey<Private>>>,
    filling: AtomicBool,
}

impl std::fmt::Debug for KeyPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPool")
            .field("bits", &self.bits)
            .field("keep", &self.keep)
            .finish()
    }
}

impl KeyPool {
    /// A pool that keeps `keep` keys of `bits` ready, filled in the background from now on.
    pub fn new(bits: u32, keep: usize) -> Arc<KeyPool> {
        let pool = Arc::new(KeyPool {
            bits,
            keep,
            ready: Mutex::new(Vec::new()),
            filling: AtomicBool::new(false),
        });
        pool.clone().refill();
        pool
    }

    /// A fresh key of `bits`: a ready one when there is one, else made now.
    pub fn take(self: &Arc<Self>, bits: u32) -> Result<PKey<Private>, GsiError> {
        if bits == self.bits {
            let ready = self.ready.lock().map(|mut r| r.pop()).unwrap_or(None);
            self.clone().refill();
            if let Some(k) = ready {
                return Ok(k);
            }
        }
        generate(bits)
    }

    /// Tops the pool up on a background thread (one at a time).
    fn refill(self: Arc<Self>) {
        if self.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let spawned = std::thread::Builder::new().name("gsi-keys".into()).spawn(move || {
            idle_priority();
            while self.ready.lock().map(|r| r.len() < self.keep).unwrap_or(false) {
                match generate(self.bits) {
                    Ok(k) => {
                        if let Ok(mut r) = self.ready.lock() {
                            r.push(k);
                        }
                    }
                    Err(_) => break,
                }
            }
            self.filling.store(false, Ordering::Release);
        });
        if spawned.is_err() {
            // No thread: keys are made when asked for.
        }
    }
}

/// Runs this thread only when a CPU would otherwise idle: key making must not slow the
/// transfers that run beside it.
fn idle_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid policy and a
    // parameter that lives across the call; failure leaves the thread as it was.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
}

fn generate(bits: u32) -> Result<PKey<Private>, GsiError> {
    let rsa = Rsa::generate(bits).map_err(GsiError::tls("delegation key"))?;
    PKey::from_rsa(rsa).map_err(GsiError::tls("delegation key"))
}

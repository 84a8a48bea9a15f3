//! Which engine core runs a new transfer.
//!
//! A peer on another host: the core that receives the socket's packets (`SO_INCOMING_CPU`, the
//! NIC queue's CPU), when the engine has one there. A peer on this host (loopback, or the
//! socket's own address): `SO_INCOMING_CPU` names the *peer's* CPU (loopback runs the sender's
//! softirq), so following it put a ringmover client and server on one CPU, halving both. There,
//! and when the incoming CPU is unknown, the core goes to the CPU with the fewest running
//! transfers on the whole host: this process's, plus those other ringmover processes publish
//! in `/dev/shm/ringmover-cpus/<pid>`. Ties go to the lowest CPU for a receiving transfer and
//! the highest for a sending one, so the two ends of one transfer starting at the same moment
//! still land apart.

use std::net::{IpAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Where ringmover processes publish the CPUs their transfers run on.
const REGISTRY: &str = "/dev/shm/ringmover-cpus";

/// The engine's placement state: running transfers per core.
#[derive(Debug)]
pub(crate) struct Placement {
    cpus: Vec<Option<usize>>,
    active: Vec<AtomicUsize>,
    file: Option<PathBuf>,
    /// Serialises rewrites of this process's registry file.
    publishing: Mutex<()>,
    /// The engine holds a few CPUs chosen at start (a client): it publishes them as busy
    /// from the start, so that a server on this host places the other end of a transfer
    /// elsewhere even when it places its end first.
    reserved: bool,
}

/// A transfer's claim on its core; given back when the transfer ends.
#[derive(Debug)]
pub(crate) struct Placed {
    placement: Arc<Placement>,
    core: usize,
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.placement.active[self.core].fetch_sub(1, Ordering::Relaxed);
        self.placement.publish();
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Placement {
    /// `cpus`: the CPU each core is pinned to (None: not pinned); `reserved`: publish them
    /// as busy for the engine's lifetime.
    pub(crate) fn new(cpus: Vec<Option<usize>>, reserved: bool) -> Placement {
        let file = registry_dir().map(|d| d.join(std::process::id().to_string()));
        let placement = Placement {
            active: cpus.iter().map(|_| AtomicUsize::new(0)).collect(),
            cpus,
            file,
            publishing: Mutex::new(()),
            reserved,
        };
        if reserved {
            placement.publish();
        }
        placement
    }

    /// Picks the core for a transfer on `sock` (sending when `sends`) and claims it.
    pub(crate) fn place(self: &Arc<Self>, sock: Option<&TcpStream>, sends: bool) -> Placed {
        let core = self.pick(sock, sends);
        self.active[core].fetch_add(1, Ordering::Relaxed);
        self.publish();
        Placed {
            placement: self.clone(),
            core,
        }
    }

    pub(crate) fn core(placed: &Placed) -> usize {
        placed.core
    }

    fn pick(&self, sock: Option<&TcpStream>, sends: bool) -> usize {
        if let Some(s) = sock.filter(|s| !peer_is_local(s)) {
            if let Ok(cpu) = rustix::net::sockopt::socket_incoming_cpu(s) {
                if let Some(i) = self.cpus.iter().position(|&c| c == Some(cpu as usize)) {
                    return i;
                }
            }
        }
        let others = others_busy();
        let load = |i: usize| {
            let mine = self.active[i].load(Ordering::Relaxed);
            let theirs = self.cpus[i].map_or(0, |c| others.get(c).copied().unwrap_or(0));
            mine + theirs
        };
        let order: Vec<usize> = if sends {
            (0..self.cpus.len()).rev().collect()
        } else {
            (0..self.cpus.len()).collect()
        };
        order.into_iter().min_by_key(|&i| load(i)).unwrap_or(0)
    }

    /// How many of `allowed` carry no transfer of this process or another.
    pub(crate) fn idle_cpus(&self, allowed: &[usize]) -> usize {
        let others = others_busy();
        let mine: Vec<usize> = (0..self.cpus.len())
            .filter(|&i| self.active[i].load(Ordering::Relaxed) > 0)
            .filter_map(|i| self.cpus[i])
            .collect();
        allowed
            .iter()
            .filter(|&&c| others.get(c).copied().unwrap_or(0) == 0 && !mine.contains(&c))
            .count()
    }

    /// Rewrites this process's registry file.
    fn publish(&self) {
        let Some(file) = &self.file else { return };
        let _guard = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = file.with_extension("tmp");
        if std::fs::write(&tmp, self.registry_text()).is_ok() {
            let _ = std::fs::rename(&tmp, file);
        }
    }

    /// `cpu count` lines of this process's busy CPUs.
    fn registry_text(&self) -> String {
        let mut text = String::new();
        for (i, a) in self.active.iter().enumerate() {
            let n = a.load(Ordering::Relaxed) + usize::from(self.reserved);
            if let (Some(cpu), true) = (self.cpus[i], n > 0) {
                text.push_str(&format!("{cpu} {n}\n"));
            }
        }
        text
    }
}

/// The registry directory, created world-writable with the sticky bit (like /tmp) so every
/// user's ringmover can publish; None where /dev/shm is not there.
fn registry_dir() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = PathBuf::from(REGISTRY);
    if !dir.is_dir() {
        std::fs::create_dir(&dir).ok()?;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
    }
    Some(dir)
}

/// Running transfers per CPU of the other live ringmover processes on this host.
pub(crate) fn others_busy() -> Vec<usize> {
    let mut busy = Vec::new();
    let Ok(entries) = std::fs::read_dir(REGISTRY) else {
        return busy;
    };
    let me = std::process::id();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            // A process that died without cleaning up.
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for line in text.lines() {
            let mut w = line.split_whitespace();
            if let (Some(Ok(cpu)), Some(Ok(n))) = (w.next().map(str::parse::<usize>), w.next().map(str::parse::<usize>))
            {
                if cpu < 4096 {
                    if busy.len() <= cpu {
                        busy.resize(cpu + 1, 0);
                    }
                    busy[cpu] += n.min(1 << 16);
                }
            }
        }
    }
    busy
}

/// True when the socket's peer runs on this host.
fn peer_is_local(s: &TcpStream) -> bool {
    match (s.peer_addr(), s.local_addr()) {
        (Ok(p), Ok(l)) => {
            let p = p.ip().to_canonical();
            p.is_loopback() || p == l.ip().to_canonical() || p == IpAddr::from([0u8; 4])
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_of_one_transfer_land_apart_and_claims_are_given_back() {
        let p = Arc::new(Placement {
            cpus: vec![Some(0), Some(1), Some(2)],
            active: (0..3).map(|_| AtomicUsize::new(0)).collect(),
            file: None,
            publishing: Mutex::new(()),
            reserved: false,
        });
        let recv = p.place(None, false);
        let send = p.place(None, true);
        assert_eq!((Placement::core(&recv), Placement::core(&send)), (0, 2));
        let third = p.place(None, false);
        assert_eq!(Placement::core(&third), 1, "the least busy core");
        assert_eq!(p.registry_text(), "0 1\n1 1\n2 1\n");
        drop((recv, send, third));
        assert!(p.active.iter().all(|a| a.load(Ordering::Relaxed) == 0));
        assert_eq!(p.registry_text(), "");
    }

    #[test]
    fn a_reserving_engine_publishes_its_cpus_while_idle() {
        let p = Placement {
            cpus: vec![Some(3)],
            active: vec![AtomicUsize::new(0)],
            file: None,
            publishing: Mutex::new(()),
            reserved: true,
        };
        assert_eq!(p.registry_text(), "3 1\n");
        p.active[0].fetch_add(1, Ordering::Relaxed);
        assert_eq!(p.registry_text(), "3 2\n");
    }
}

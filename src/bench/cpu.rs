//! CPU time: the whole machine's busy time (/proc/stat: user, system, irq, softirq, so io-wq
//! and network softirq work count wherever it lands), one process's, and reaped children's.

/// Busy seconds of all CPUs so far (everything but idle and iowait).
pub fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let f: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = f
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    busy / ticks()
}

/// CPU seconds of process `pid` (user + system, all threads, plus its reaped children).
pub fn process(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime, stime, cutime, cstime are fields 14-17 of the line: 11-14 after the name.
    (t(11) + t(12) + t(13) + t(14)) / ticks()
}

/// CPU seconds of this process's children that have been waited for.
pub fn children() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_CHILDREN is a valid `who`, and `u` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn ticks() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

/// A stopwatch for one measured run: wall time and the three CPU figures.
pub struct Meter {
    wall: std::time::Instant,
    machine: f64,
    children: f64,
    server: Option<(u32, f64)>,
}

/// What a meter saw.
pub struct Reading {
    pub seconds: f64,
    pub machine: f64,
    pub client: f64,
    pub server: Option<f64>,
}

impl Meter {
    /// Starts measuring; `server` is a long-running process to account separately.
    pub fn start(server: Option<u32>) -> Meter {
        Meter {
            wall: std::time::Instant::now(),
            machine: machine_busy(),
            children: children(),
            server: server.map(|p| (p, process(p))),
        }
    }

    pub fn stop(self) -> Reading {
        self.stop_settled(std::time::Duration::ZERO)
    }

    /// Stops the clock now but reads the CPU counters after `settle`, for work that ends just
    /// after the measured event (a server reaping its session process).
    pub fn stop_settled(self, settle: std::time::Duration) -> Reading {
        let seconds = self.wall.elapsed().as_secs_f64();
        std::thread::sleep(settle);
        Reading {
            seconds,
            machine: machine_busy() - self.machine,
            client: children() - self.children,
            server: self.server.map(|(p, c)| process(p) - c),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_move_forward() {
        let m = super::Meter::start(Some(std::process::id()));
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let r = m.stop();
        assert!(r.seconds > 0.0 && r.machine >= 0.0 && r.server.is_some_and(|s| s >= 0.0));
    }
}

//! The rows of `tune check`. Recommendations follow ESnet fasterdata (host-tuning/linux,
//! 100g-tuning, packet-pacing); see tuning/README.md for each knob and its source.

use std::path::Path;

use super::{ethtool, Host, Row, Status, Target};

/// What to check besides the sysctls.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Network interface of the data path (default: the default route's).
    pub iface: Option<String>,
    /// The directory `serve --root` will use (O_DIRECT check).
    pub root: Option<std::path::PathBuf>,
    /// CPUs the engine runs on (default: all).
    pub engine_cpus: Vec<usize>,
}

fn row(item: &str, current: String, recommended: String, why: &str, fix: String, status: Status) -> Row {
    Row {
        item: item.into(),
        current,
        recommended,
        why: why.into(),
        fix,
        status,
    }
}

fn unreadable(item: &str, why: &str) -> Row {
    row(
        item,
        "unreadable".into(),
        "-".into(),
        why,
        String::new(),
        Status::Unknown,
    )
}

/// Every row for `target` on `host`.
pub fn check(host: &Host, target: &Target, scope: &Scope) -> Vec<Row> {
    let mut rows = Vec::new();
    let bdp = target.bdp();
    for name in ["net.core.rmem_max", "net.core.wmem_max"] {
        rows.push(max_row(host, name, None, bdp));
    }
    for name in ["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"] {
        rows.push(max_row(host, name, Some(2), bdp));
    }
    rows.push(congestion(host));
    rows.push(sysctl_is(
        host,
        "net.core.default_qdisc",
        &["fq"],
        "fq",
        "fq paces each flow; without it bbr paces inside TCP with a timer per burst, which costs CPU at high rates",
    ));
    rows.push(sysctl_is(
        host,
        "net.ipv4.tcp_mtu_probing",
        &["1", "2"],
        "1",
        "finds the path MTU where ICMP is filtered (jumbo-frame hosts)",
    ));
    let backlog = if target.hundred_g { 250_000 } else { 30_000 };
    rows.push(at_least(
        host,
        "net.core.netdev_max_backlog",
        backlog,
        "packets queued per CPU before the stack drops them at high rates",
    ));
    let iface = scope.iface.clone().or_else(|| default_iface(host));
    match &iface {
        Some(i) => nic_rows(host, target, i, scope, &mut rows),
        None => rows.push(unreadable("interface", "no default route; give --iface")),
    }
    rows.push(governor(host));
    rows.extend(live_rows(host, scope));
    rows
}

/// The largest socket-buffer size the kernel accepts: these sysctls are C ints.
pub const KERNEL_BUFFER_MAX: u64 = i32::MAX as u64;

/// The buffer to recommend for a BDP: a socket must hold the BDP plus the kernel's overhead,
/// so the next power of two at or above 2×BDP (fasterdata: 64 MiB for 10G up to 100 ms), and
/// never more than the kernel accepts.
pub fn buffer_for(bdp: u64) -> u64 {
    bdp.saturating_mul(2)
        .checked_next_power_of_two()
        .unwrap_or(u64::MAX)
        .clamp(64 << 20, KERNEL_BUFFER_MAX)
}

/// Streams needed when one socket cannot hold 2×BDP; 1 when it can.
pub fn streams_for(bdp: u64) -> u64 {
    bdp.saturating_mul(2).div_ceil(KERNEL_BUFFER_MAX).max(1)
}

fn max_row(host: &Host, name: &str, field: Option<usize>, bdp: u64) -> Row {
    let want = buffer_for(bdp);
    let streams = streams_for(bdp);
    let why = if streams > 1 {
        format!(
            "one flow needs its bandwidth-delay product of socket buffer, and one socket cannot hold 2×BDP \
             (the kernel caps buffers at {KERNEL_BUFFER_MAX} B): use {streams} or more parallel streams (-p)"
        )
    } else {
        "one flow needs its bandwidth-delay product of socket buffer".to_string()
    };
    let why = why.as_str();
    let Some(v) = host.sysctl(name) else {
        return unreadable(name, why);
    };
    let Some(max) = super::number_field(&v, field) else {
        return unreadable(name, why);
    };
    let status = if max < bdp.min(want) {
        Status::Critical
    } else if max < want {
        Status::Warn
    } else {
        Status::Ok
    };
    let recommended = match (field, name.ends_with("wmem")) {
        (Some(_), true) => format!("4096 65536 {want}"),
        (Some(_), false) => format!("4096 87380 {want}"),
        (None, _) => want.to_string(),
    };
    let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
    let fix = if status == Status::Ok {
        String::new()
    } else {
        format!("sysctl -w {name}=\"{recommended}\"")
    };
    row(name, v, recommended, &format!("{why} (BDP {bdp} B)"), fix, status)
}

fn congestion(host: &Host) -> Row {
    let name = "net.ipv4.tcp_congestion_control";
    let why = "bbr or htcp recover from loss on long paths far better than cubic/reno";
    let Some(cur) = host.sysctl(name) else {
        return unreadable(name, why);
    };
    let avail = host
        .sysctl("net.ipv4.tcp_available_congestion_control")
        .unwrap_or_default();
    let good = ["bbr", "htcp"];
    if good.contains(&cur.as_str()) {
        return row(name, cur, "bbr or htcp".into(), why, String::new(), Status::Ok);
    }
    let pick = good
        .iter()
        .find(|g| avail.split_whitespace().any(|a| a == **g))
        .unwrap_or(&"bbr");
    let fix = format!("modprobe tcp_{pick}; sysctl -w {name}={pick}");
    row(
        name,
        format!("{cur} (available: {avail})"),
        (*pick).into(),
        why,
        fix,
        Status::Warn,
    )
}

fn sysctl_is(host: &Host, name: &str, ok: &[&str], want: &str, why: &str) -> Row {
    match host.sysctl(name) {
        None => unreadable(name, why),
        Some(v) if ok.contains(&v.as_str()) => row(name, v, want.into(), why, String::new(), Status::Ok),
        Some(v) => row(
            name,
            v,
            want.into(),
            why,
            format!("sysctl -w {name}={want}"),
            Status::Warn,
        ),
    }
}

fn at_least(host: &Host, name: &str, min: u64, why: &str) -> Row {
    match host.sysctl_number(name, None) {
        None => unreadable(name, why),
        Some(v) if v >= min => row(name, v.to_string(), min.to_string(), why, String::new(), Status::Ok),
        Some(v) => row(
            name,
            v.to_string(),
            min.to_string(),
            why,
            format!("sysctl -w {name}={min}"),
            Status::Warn,
        ),
    }
}

/// The interface of the default route (/proc/net/route: destination 00000000).
fn default_iface(host: &Host) -> Option<String> {
    let routes = host.read("proc/net/route")?;
    routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"00000000")).then(|| f[0].to_string())
    })
}

fn nic_rows(host: &Host, target: &Target, iface: &str, scope: &Scope, rows: &mut Vec<Row>) {
    let base = format!("sys/class/net/{iface}");
    let mtu_why = "9000-byte frames cut per-packet cost (R&E paths carry them end to end)";
    match host.read(&format!("{base}/mtu")).and_then(|m| m.parse::<u32>().ok()) {
        None => rows.push(unreadable(&format!("{iface} mtu"), mtu_why)),
        Some(m) => {
            let status = match (m >= 9000, target.hundred_g) {
                (true, _) => Status::Ok,
                (false, true) => Status::Warn,
                (false, false) => Status::Info,
            };
            let fix = if m >= 9000 {
                String::new()
            } else {
                format!("ip link set dev {iface} mtu 9000  # only if the whole path carries jumbo frames")
            };
            rows.push(row(
                &format!("{iface} mtu"),
                m.to_string(),
                "9000".into(),
                mtu_why,
                fix,
                status,
            ));
        }
    }
    let numa = host.read(&format!("{base}/device/numa_node"));
    rows.push(row(
        &format!("{iface} numa node"),
        numa.clone().unwrap_or_else(|| "none (virtual device)".into()),
        "engine cores on this node".into(),
        "crossing NUMA nodes costs memory bandwidth on every byte",
        match numa.as_deref() {
            Some(n) if n != "-1" => {
                format!("ringmover serve --cores N  # CPUs of node {n}: /sys/devices/system/node/node{n}/cpulist")
            }
            _ => String::new(),
        },
        Status::Info,
    ));
    rows.push(irq_row(host, iface, scope));
    rows.push(rps_row(host, iface));
    if host.live {
        ethtool_rows(iface, rows);
    } else {
        rows.push(unreadable(
            &format!("{iface} rings/offloads"),
            "ethtool ioctls only on a live host",
        ));
    }
}

/// The CPUs the NIC's interrupts go to, against the engine's CPUs.
fn irq_row(host: &Host, iface: &str, scope: &Scope) -> Row {
    let item = format!("{iface} irq affinity");
    let why = "a stream is fastest on the core that takes its NIC queue's interrupts";
    let Some(table) = host.read("proc/interrupts") else {
        return unreadable(&item, why);
    };
    let mut cpus: Vec<usize> = Vec::new();
    let mut irqs = 0;
    for line in table.lines().filter(|l| l.contains(iface)) {
        let Some(irq) = line
            .split(':')
            .next()
            .map(str::trim)
            .filter(|i| i.chars().all(|c| c.is_ascii_digit()))
        else {
            continue;
        };
        irqs += 1;
        if let Some(list) = host.read(&format!("proc/irq/{irq}/smp_affinity_list")) {
            cpus.extend(parse_cpu_list(&list));
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    if irqs == 0 {
        return row(
            &item,
            "no IRQs named after it".into(),
            "-".into(),
            why,
            String::new(),
            Status::Info,
        );
    }
    let engine = &scope.engine_cpus;
    let covered = engine.is_empty() || cpus.iter().all(|c| engine.contains(c));
    row(
        &item,
        format!("{irqs} IRQs on CPUs {}", format_cpus(&cpus)),
        "engine cores include them".into(),
        why,
        if covered {
            String::new()
        } else {
            "ringmover serve --cores N (or move the IRQs: echo CPU > /proc/irq/N/smp_affinity_list)".into()
        },
        if covered { Status::Ok } else { Status::Warn },
    )
}

fn rps_row(host: &Host, iface: &str) -> Row {
    let item = format!("{iface} rps/xps");
    let why = "RPS/XPS spread a single-queue NIC's work over CPUs; multi-queue NICs rarely need it";
    let dir = host.root.join(format!("sys/class/net/{iface}/queues"));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return unreadable(&item, why);
    };
    let (mut rps, mut xps, mut queues) = (0, 0, 0);
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let mask =
            |f: &str| std::fs::read_to_string(e.path().join(f)).map(|m| m.trim().trim_matches(['0', ',']).is_empty());
        if name.starts_with("rx-") {
            queues += 1;
            rps += usize::from(matches!(mask("rps_cpus"), Ok(false)));
        } else if name.starts_with("tx-") {
            xps += usize::from(matches!(mask("xps_cpus"), Ok(false)));
        }
    }
    row(
        &item,
        format!("{queues} rx queues, rps on {rps}, xps on {xps}"),
        "multi-queue: off; single queue: rps over the node's CPUs".into(),
        why,
        String::new(),
        Status::Info,
    )
}

fn ethtool_rows(iface: &str, rows: &mut Vec<Row>) {
    let item = format!("{iface} rings");
    let why = "larger NIC rings absorb bursts at 10/100G (fasterdata: rx/tx to the maximum)";
    match ethtool::rings(iface) {
        Ok((rx, rx_max, tx, tx_max)) => {
            let full = rx >= rx_max && tx >= tx_max;
            rows.push(row(
                &item,
                format!("rx {rx} tx {tx}"),
                format!("rx {rx_max} tx {tx_max}"),
                why,
                if full {
                    String::new()
                } else {
                    format!("ethtool -G {iface} rx {rx_max} tx {tx_max}")
                },
                if full { Status::Ok } else { Status::Warn },
            ));
        }
        Err(e) => rows.push(row(
            &item,
            format!("not reported ({e})"),
            "-".into(),
            why,
            String::new(),
            Status::Unknown,
        )),
    }
    let item = format!("{iface} channels");
    let why = "one queue per engine core lets each core own its streams' interrupts";
    match ethtool::channels(iface) {
        Ok((combined, max, rx, tx)) => rows.push(row(
            &item,
            format!("combined {combined} (rx {rx} tx {tx})"),
            format!("combined {max}"),
            why,
            if combined < max {
                format!("ethtool -L {iface} combined {max}")
            } else {
                String::new()
            },
            Status::Info,
        )),
        Err(e) => rows.push(row(
            &item,
            format!("not reported ({e})"),
            "-".into(),
            why,
            String::new(),
            Status::Unknown,
        )),
    }
    let offs = ethtool::offloads(iface);
    let shown: Vec<String> = offs
        .iter()
        .map(|(n, v)| match v {
            Ok(on) => format!("{n} {}", if *on { "on" } else { "off" }),
            Err(_) => format!("{n} ?"),
        })
        .collect();
    let off: Vec<&str> = offs
        .iter()
        .filter(|(_, v)| matches!(v, Ok(false)))
        .map(|(n, _)| *n)
        .collect();
    rows.push(row(
        &format!("{iface} offloads"),
        shown.join(", "),
        "tso on, gso on, gro on".into(),
        "segmentation/receive offloads save a per-packet trip through the stack",
        if off.is_empty() {
            String::new()
        } else {
            format!(
                "ethtool -K {iface} {}",
                off.iter().map(|o| format!("{o} on")).collect::<Vec<_>>().join(" ")
            )
        },
        if off.is_empty() { Status::Ok } else { Status::Warn },
    ));
}

fn governor(host: &Host) -> Row {
    let item = "cpu frequency governor";
    let why = "performance keeps cores at full clock; powersave costs single-stream rate";
    let Ok(entries) = std::fs::read_dir(host.root.join("sys/devices/system/cpu")) else {
        return unreadable(item, why);
    };
    let mut govs: Vec<String> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .trim_start_matches("cpu")
                .parse::<u32>()
                .is_ok()
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("cpufreq/scaling_governor")).ok())
        .map(|g| g.trim().to_string())
        .collect();
    govs.sort();
    govs.dedup();
    match govs.as_slice() {
        [] => row(
            item,
            "no cpufreq (a VM?)".into(),
            "performance".into(),
            why,
            String::new(),
            Status::Unknown,
        ),
        [g] if g == "performance" => row(item, g.clone(), "performance".into(), why, String::new(), Status::Ok),
        _ => row(
            item,
            govs.join(","),
            "performance".into(),
            why,
            "cpupower frequency-set -g performance".into(),
            Status::Warn,
        ),
    }
}

/// io_uring, RLIMIT_MEMLOCK and O_DIRECT: only on the live host.
fn live_rows(host: &Host, scope: &Scope) -> Vec<Row> {
    if !host.live {
        return vec![unreadable(
            "io_uring / memlock / O_DIRECT",
            "only checked on a live host",
        )];
    }
    let mut rows = Vec::new();
    let why = "the data engine runs on io_uring";
    rows.push(match crate::engine::probe() {
        Ok(msg) => row("io_uring", msg, "all ops".into(), why, String::new(), Status::Ok),
        Err(e) => row(
            "io_uring",
            e.to_string(),
            "all ops".into(),
            why,
            "sysctl -w kernel.io_uring_disabled=0  # and a kernel ≥ 6.1".into(),
            Status::Critical,
        ),
    });
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let want = (cpus * 16) << 20;
    let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock).current;
    let why = "registered buffers (16 MiB per engine core) must fit under RLIMIT_MEMLOCK";
    rows.push(match limit {
        None => row(
            "RLIMIT_MEMLOCK",
            "unlimited".into(),
            want.to_string(),
            why,
            String::new(),
            Status::Ok,
        ),
        Some(l) if l >= want => row(
            "RLIMIT_MEMLOCK",
            l.to_string(),
            want.to_string(),
            why,
            String::new(),
            Status::Ok,
        ),
        Some(l) => row(
            "RLIMIT_MEMLOCK",
            l.to_string(),
            want.to_string(),
            &format!("{why}; below it the engine falls back to unregistered buffers"),
            "ulimit -l unlimited  # or LimitMEMLOCK=infinity in the systemd unit".into(),
            Status::Warn,
        ),
    });
    if let Some(root) = &scope.root {
        rows.push(odirect_row(root));
    }
    rows
}

fn odirect_row(root: &Path) -> Row {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = root.join(format!(".ringmover-odirect-{}", std::process::id()));
    let r = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe);
    let _ = std::fs::remove_file(&probe);
    let why = "O_DIRECT lets disk-to-disk transfers bypass the page cache";
    match r {
        Ok(_) => row(
            "--root O_DIRECT",
            "supported".into(),
            "supported".into(),
            why,
            String::new(),
            Status::Ok,
        ),
        Err(e) => row(
            "--root O_DIRECT",
            format!("no ({e})"),
            "supported".into(),
            &format!("{why} (tmpfs never supports it)"),
            String::new(),
            Status::Info,
        ),
    }
}

/// `0-3,8,10-11` → CPUs.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    s.split(',')
        .filter_map(|part| {
            let part = part.trim();
            match part.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?..=b.parse().ok()?).collect::<Vec<usize>>()),
                None => part.parse().ok().map(|c| vec![c]),
            }
        })
        .flatten()
        .collect()
}

fn format_cpus(cpus: &[usize]) -> String {
    if cpus.is_empty() {
        return "(none)".into();
    }
    cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn find<'a>(rows: &'a [Row], item: &str) -> &'a Row {
        rows.iter()
            .find(|r| r.item == item)
            .unwrap_or_else(|| panic!("no row {item}"))
    }

    #[test]
    fn a_prepared_host_is_judged_row_by_row() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        put(r, "proc/sys/net/core/rmem_max", "212992\n");
        put(r, "proc/sys/net/core/wmem_max", "134217728\n");
        put(r, "proc/sys/net/ipv4/tcp_rmem", "4096\t131072\t6291456\n");
        put(r, "proc/sys/net/ipv4/tcp_wmem", "4096 16384 134217728\n");
        put(r, "proc/sys/net/ipv4/tcp_congestion_control", "cubic\n");
        put(
            r,
            "proc/sys/net/ipv4/tcp_available_congestion_control",
            "reno cubic htcp\n",
        );
        put(r, "proc/sys/net/core/default_qdisc", "fq\n");
        put(r, "proc/sys/net/ipv4/tcp_mtu_probing", "0\n");
        put(r, "proc/sys/net/core/netdev_max_backlog", "1000\n");
        put(
            r,
            "proc/net/route",
            "Iface\tDestination\tGateway\neth7\t00000000\t0102A8C0\n",
        );
        put(r, "sys/class/net/eth7/mtu", "9000\n");
        put(r, "sys/class/net/eth7/device/numa_node", "1\n");
        put(r, "sys/class/net/eth7/queues/rx-0/rps_cpus", "0\n");
        put(
            r,
            "proc/interrupts",
            "           CPU0 CPU1\n 40:  1 2 PCI-MSI eth7-rx-0\n 41: 3 4 PCI-MSI eth7-tx-0\n",
        );
        put(r, "proc/irq/40/smp_affinity_list", "0-1\n");
        put(r, "proc/irq/41/smp_affinity_list", "3\n");
        put(r, "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "powersave\n");
        let target = Target::new("10g", Duration::from_millis(50)).unwrap();
        let scope = Scope {
            engine_cpus: vec![0, 1, 2],
            ..Scope::default()
        };
        let rows = check(&Host::at(r), &target, &scope);
        assert_eq!(find(&rows, "net.core.rmem_max").status, Status::Critical);
        assert_eq!(find(&rows, "net.core.wmem_max").status, Status::Ok);
        assert_eq!(find(&rows, "net.ipv4.tcp_rmem").status, Status::Critical);
        assert!(find(&rows, "net.ipv4.tcp_rmem").fix.contains("4096 87380 134217728"));
        let cc = find(&rows, "net.ipv4.tcp_congestion_control");
        assert_eq!((cc.status, cc.recommended.as_str()), (Status::Warn, "htcp"));
        assert_eq!(find(&rows, "net.core.default_qdisc").status, Status::Ok);
        assert_eq!(find(&rows, "net.ipv4.tcp_mtu_probing").status, Status::Warn);
        assert_eq!(find(&rows, "net.core.netdev_max_backlog").status, Status::Warn);
        assert_eq!(find(&rows, "eth7 mtu").status, Status::Ok);
        let irq = find(&rows, "eth7 irq affinity");
        assert_eq!(irq.status, Status::Warn, "{irq:?}"); // CPU 3 is outside the engine
        assert!(irq.current.contains("CPUs 0,1,3"));
        assert_eq!(find(&rows, "cpu frequency governor").status, Status::Warn);
        assert!(find(&rows, "eth7 numa node").fix.contains("node1"));
        assert_eq!(find(&rows, "io_uring / memlock / O_DIRECT").status, Status::Unknown);
    }

    #[test]
    fn buffer_recommendations_stay_within_what_the_kernel_accepts() {
        let bdp = |t: &str, ms| Target::new(t, Duration::from_millis(ms)).unwrap().bdp();
        assert_eq!(buffer_for(bdp("10g", 50)), 128 << 20);
        assert_eq!(buffer_for(bdp("100g", 80)), KERNEL_BUFFER_MAX);
        assert_eq!(streams_for(bdp("100g", 80)), 1);
        assert_eq!(streams_for(bdp("100g", 300)), 4); // 2×3.75 GB over 2 GiB sockets
        assert_eq!(buffer_for(u64::MAX), KERNEL_BUFFER_MAX);
        assert_eq!(streams_for(u64::MAX), u64::MAX.div_ceil(KERNEL_BUFFER_MAX));
    }

    #[test]
    fn missing_files_are_unknown_not_errors() {
        let d = tempfile::tempdir().unwrap();
        let target = Target::new("100g", Duration::from_millis(10)).unwrap();
        let rows = check(&Host::at(d.path()), &target, &Scope::default());
        assert!(rows.iter().all(|r| r.status == Status::Unknown), "{rows:#?}");
        assert_eq!(parse_cpu_list("0-2,5"), vec![0, 1, 2, 5]);
    }
}

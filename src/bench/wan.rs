//! `ringmover bench --wan rtt=50ms,loss=0.001%,rate=1gbit`: a sweep through the WAN
//! emulator. A lab (two namespaces joined by wan-emu) is built for the run; for each
//! congestion control the download benchmark (ringmover, globus-url-copy ⇄
//! globus-gridftp-server, globus-url-copy ⇄ ringmover) runs across it, then iperf3 at the same
//! points. The lab's hosts get per-namespace TCP autotuning limits large enough for the path.

use std::net::TcpListener;
use std::process::Stdio;

use super::{cpu, files, BenchError, Case, Net, Plan, Point, Sample, Scenario};
use crate::wan::lab::{Lab, SERVER_IP};

/// What to emulate and sweep.
#[derive(Clone, Debug)]
pub struct WanPlan {
    /// wan-emu options built from the spec.
    pub emu: Vec<String>,
    pub ccs: Vec<String>,
    pub prefix: String,
}

/// `rtt=50ms,loss=0.001%,rate=1gbit[,jitter=1ms][,queue=8M][,burst=0.1%,30%]` → wan-emu
/// options (the one-way delay is half the RTT).
pub fn parse_spec(spec: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut parts = spec.split(',').peekable();
    while let Some(part) = parts.next() {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not key=value (rtt, loss, rate, jitter, queue, burst)"))?;
        match k.trim() {
            "rtt" => {
                let rtt = crate::units::parse_rtt(v).ok_or_else(|| format!("bad rtt '{v}'"))?;
                out.extend(["--delay".to_string(), format!("{}us", rtt.as_micros() / 2)]);
            }
            "loss" => out.extend(["--loss".into(), v.into()]),
            "rate" => out.extend(["--rate".into(), v.into()]),
            "jitter" => out.extend(["--jitter".into(), v.into()]),
            "queue" => out.extend(["--queue".into(), v.into()]),
            // burst=ENTER,LEAVE: the leave probability is the next comma-separated part.
            "burst" => {
                let leave = parts.next().ok_or("burst wants ENTER,LEAVE")?;
                out.extend(["--burst-loss".into(), format!("{v},{leave}")]);
            }
            other => return Err(format!("unknown key '{other}'")),
        }
    }
    Ok(out)
}

/// Removes the lab when the bench ends, however it ends.
struct LabGuard(Lab);

impl Drop for LabGuard {
    fn drop(&mut self) {
        self.0.down();
    }
}

pub fn run(plan: &Plan, wan: &WanPlan, done: &mut dyn FnMut(&Case)) -> Result<Vec<Case>, BenchError> {
    let lab = Lab::new(&wan.prefix);
    lab.up(&plan.exe, &wan.emu)
        .map_err(|e| BenchError::tool("wan lab", e))?;
    let guard = LabGuard(lab);
    let lab = &guard.0;
    // The lab's hosts are tuned as DTNs would be: autotuning may grow to 256 MiB.
    for (name, value) in [
        ("net.ipv4.tcp_rmem", "4096 131072 268435456"),
        ("net.ipv4.tcp_wmem", "4096 16384 268435456"),
    ] {
        lab.sysctl(name, value).map_err(|e| BenchError::tool("sysctl", e))?;
    }
    let (client_cpus, server_cpus) = super::split_cpus();
    let net = Net {
        host: SERVER_IP.into(),
        server_ns: Some(lab.ns("server")),
        client_ns: Some(lab.ns("client")),
        server_cpus,
        client_cpus,
    };
    let wplan = Plan { net, ..plan.clone() };
    let mut cases = Vec::new();
    for cc in &wan.ccs {
        lab.sysctl("net.ipv4.tcp_congestion_control", cc).map_err(|e| {
            // A namespace may only pick what the host allows.
            let allowed = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_allowed_congestion_control").unwrap_or_default();
            BenchError::tool(
                "congestion control",
                format!(
                    "{e}; the host allows [{}] in namespaces (sysctl -w net.ipv4.tcp_allowed_congestion_control=\"{} {cc}\" adds it)",
                    allowed.trim(),
                    allowed.trim()
                ),
            )
        })?;
        let mut tag = |c: &Case| -> Case {
            let mut c = c.clone();
            c.scenario = Scenario::Wan;
            c.cc = Some(cc.clone());
            done(&c);
            c
        };
        let got = files::run(&wplan, Scenario::Download, &mut |_| {})?;
        cases.extend(got.iter().map(&mut tag));
        if plan.peers {
            let mut seen = Vec::new();
            for point in plan.points() {
                if seen.contains(&(point.streams, point.tcp_bs)) {
                    continue;
                }
                seen.push((point.streams, point.tcp_bs));
                let runs = (0..plan.runs)
                    .map(|_| iperf3(&wplan, point))
                    .collect::<Result<Vec<_>, _>>()?;
                cases.push(tag(&Case::new(Scenario::Wan, "iperf3", point, runs)));
            }
        }
    }
    Ok(cases)
}

/// True when a socket in the server namespace listens on `port`.
fn listens(net: &Net, port: &str) -> bool {
    net.server_cmd("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty())
}

/// iperf3 across the lab: `-P streams`, `-w` for a fixed buffer, `size` bytes.
fn iperf3(plan: &Plan, p: Point) -> Result<Sample, BenchError> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let mut server = plan
        .net
        .server_cmd("iperf3")
        .args(["-s", "-1", "-B", &plan.net.host, "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::Iperf(format!("cannot start iperf3: {e}")))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    // Probe with ss, not a connection: `iperf3 -s -1` serves exactly one client.
    while !listens(&plan.net, &port) {
        if std::time::Instant::now() > deadline {
            let _ = server.kill();
            return Err(BenchError::Iperf("server did not start".into()));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (n, streams) = (plan.size.to_string(), p.streams.to_string());
    let mut cmd = plan.net.client_cmd("iperf3");
    cmd.args(["-c", &plan.net.host, "-p", &port, "-J", "-n", &n, "-P", &streams]);
    let window = p.tcp_bs.map(|b| b.to_string());
    if let Some(w) = &window {
        cmd.args(["-w", w]);
    }
    let meter = cpu::Meter::start(Some(server.id()));
    let out = cmd.output()?;
    let _ = server.wait();
    let r = meter.stop();
    let bps = super::iperf3_bps(&out)?;
    let gb = plan.size as f64 / 1e9;
    Ok(Sample {
        gbytes_per_s: bps / 8.0 / 1e9,
        cpu_s_per_gb: r.machine / gb,
        client_cpu_s_per_gb: Some(r.client / gb),
        server_cpu_s_per_gb: None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn specs() {
        let args = super::parse_spec("rtt=50ms,loss=0.001%,rate=1gbit,burst=0.1%,30%").unwrap();
        assert_eq!(
            args,
            [
                "--delay",
                "25000us",
                "--loss",
                "0.001%",
                "--rate",
                "1gbit",
                "--burst-loss",
                "0.1%,30%"
            ]
        );
        assert!(super::parse_spec("rtt").is_err());
        assert!(super::parse_spec("speed=9").is_err());
    }
}

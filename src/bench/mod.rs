//! `ringmover bench`, first slice: memory-to-memory over loopback, one stream, on the engine
//! (a repeated in-memory buffer sent with io_uring `Send`, received with splice to /dev/null,
//! sender and receiver on different cores), with iperf3 measured in the same run for the ratio.
//! CPU is counted for the whole process (io-wq and softirq work included, where it lands).

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use thiserror::Error;

use crate::engine::{Engine, EngineConfig, OpError, Sink, Source};

#[derive(Debug, Error)]
pub enum BenchError {
    #[error(transparent)]
    Engine(#[from] OpError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("iperf3: {0}")]
    Iperf(String),
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub gbytes_per_s: f64,
    pub cpu_s_per_gb: f64,
}

/// Medians of one case.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub name: String,
    pub runs: Vec<Sample>,
    pub median_gbytes_per_s: f64,
    pub median_cpu_s_per_gb: f64,
}

impl Case {
    fn new(name: &str, runs: Vec<Sample>) -> Case {
        let med = |f: fn(&Sample) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        Case {
            name: name.into(),
            median_gbytes_per_s: med(|s| s.gbytes_per_s),
            median_cpu_s_per_gb: med(|s| s.cpu_s_per_gb),
            runs,
        }
    }
}

/// Process CPU seconds so far (user + system, all threads).
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / rustix::param::clock_ticks_per_second() as f64
}

/// Memory-to-memory on the engine: `runs` transfers of `size` bytes.
pub fn memory_to_memory(size: u64, runs: usize, buffer: Option<usize>) -> Result<Case, BenchError> {
    let sender = Engine::start(&EngineConfig {
        cores: 1,
        first_cpu: 0,
        ..EngineConfig::default()
    })?;
    let receiver = Engine::start(&EngineConfig {
        cores: 1,
        first_cpu: 1,
        ..EngineConfig::default()
    })?;
    let pattern = Bytes::from(vec![0x5au8; 1 << 20]);
    let mut samples = Vec::new();
    for _ in 0..runs {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let a = TcpStream::connect(l.local_addr()?)?;
        let (b, _) = l.accept()?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        if let Some(n) = buffer {
            // Fixed buffers beat autotuning for one loopback stream (uring-paths.md).
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(&a, n);
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&b, n);
        }
        let (cpu0, t0) = (process_cpu(), Instant::now());
        let recv = receiver.submit(Source::Socket(b), Sink::Discard, None);
        let send = sender.submit(
            Source::Repeat {
                pattern: pattern.clone(),
                total: size,
            },
            Sink::Socket(a),
            None,
        );
        send.finish_blocking()?;
        let got = recv.finish_blocking()?;
        let (secs, cpu) = (t0.elapsed().as_secs_f64(), process_cpu() - cpu0);
        let gb = got as f64 / 1e9;
        samples.push(Sample {
            gbytes_per_s: gb / secs,
            cpu_s_per_gb: cpu / gb,
        });
    }
    Ok(Case::new("ringmover m2m (Send → splice to /dev/null)", samples))
}

/// iperf3, one stream, client on CPU 0 and server on CPU 1 (`-Z` for sendfile).
pub fn iperf3(size: u64, runs: usize, zerocopy: bool) -> Result<Case, BenchError> {
    let mut samples = Vec::new();
    for _ in 0..runs {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
        let mut server = Command::new("iperf3")
            .args(["-s", "-1", "-A", "1", "-p", &port])
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| BenchError::Iperf(format!("cannot start iperf3 (apt-get install iperf3): {e}")))?;
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut args = vec!["-c", "127.0.0.1", "-p", &port, "-A", "0", "-J"];
        let n = size.to_string();
        args.extend(["-n", &n]);
        if zerocopy {
            args.push("-Z");
        }
        let out = Command::new("iperf3").args(&args).output()?;
        let _ = server.wait();
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| BenchError::Iperf(format!("bad JSON output: {e}")))?;
        let bps = v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .ok_or_else(|| BenchError::Iperf(format!("no result: {}", String::from_utf8_lossy(&out.stderr))))?;
        let gbps = bps / 8.0 / 1e9;
        // iperf3 reports each side's CPU as a percentage of one CPU over the test.
        let cpu = &v["end"]["cpu_utilization_percent"];
        let secs = size as f64 / (bps / 8.0);
        let cpu_s =
            (cpu["host_total"].as_f64().unwrap_or(0.0) + cpu["remote_total"].as_f64().unwrap_or(0.0)) / 100.0 * secs;
        samples.push(Sample {
            gbytes_per_s: gbps,
            cpu_s_per_gb: cpu_s / (size as f64 / 1e9),
        });
    }
    Ok(Case::new(if zerocopy { "iperf3 -Z" } else { "iperf3" }, samples))
}

/// A table of cases with each one's throughput ratio to the first iperf3 case.
pub fn table(cases: &[Case]) -> String {
    let base = cases
        .iter()
        .find(|c| c.name.starts_with("iperf3"))
        .map(|c| c.median_gbytes_per_s);
    let mut out = format!("{:<44} {:>8} {:>10} {:>10}\n", "case", "GB/s", "CPU-s/GB", "vs iperf3");
    for c in cases {
        let ratio = base
            .filter(|b| *b > 0.0)
            .map_or("-".to_string(), |b| format!("x{:.2}", c.median_gbytes_per_s / b));
        out.push_str(&format!(
            "{:<44} {:>8.2} {:>10.3} {:>10}\n",
            c.name, c.median_gbytes_per_s, c.median_cpu_s_per_gb, ratio
        ));
    }
    out
}

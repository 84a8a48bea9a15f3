//! `ringmover bench`: memory-to-memory (engine, no disk, no control channel) and file
//! transfers through a server (download tmpfs → /dev/null, upload into tmpfs), swept over
//! streams, block size, socket buffer and engine path, with iperf3 and globus-url-copy +
//! globus-gridftp-server measured in the same run, run for run interleaved. CPU is counted
//! for the whole machine from /proc/stat (io-wq and softirq work included) and per side.

pub mod cpu;
pub mod files;
pub mod m2m;
pub mod report;
pub mod wan;

use std::path::PathBuf;

use serde::Serialize;
use thiserror::Error;

use crate::engine::{DataPath, LatencySummary, OpError};

#[derive(Debug, Error)]
pub enum BenchError {
    #[error(transparent)]
    Engine(#[from] OpError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("iperf3: {0}")]
    Iperf(String),
    #[error("{tool}: {why}")]
    Tool { tool: String, why: String },
}

impl BenchError {
    fn tool(tool: &str, why: impl std::fmt::Display) -> BenchError {
        BenchError::Tool {
            tool: tool.into(),
            why: why.to_string(),
        }
    }
}

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Memory to memory over loopback: no disk, no control channel.
    M2m,
    /// A tmpfs file from a server into /dev/null.
    Download,
    /// A tmpfs file into a new file on a server's tmpfs.
    Upload,
    /// A file read from a cold page cache in `--dir` (a disk) into /dev/null, beside fio.
    DiskRead,
    /// A tmpfs file into a new file in `--dir` (a disk), synced, beside fio.
    DiskWrite,
    /// Downloads (and iperf3) through the WAN emulator between two namespaces.
    Wan,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::M2m => "m2m",
            Scenario::Download => "download",
            Scenario::Upload => "upload",
            Scenario::DiskRead => "disk-read",
            Scenario::DiskWrite => "disk-write",
            Scenario::Wan => "wan",
        }
    }

    /// Whether the server's side is a disk file (direct I/O and fio are measured too).
    pub fn disk(self) -> bool {
        matches!(self, Scenario::DiskRead | Scenario::DiskWrite)
    }

    /// Whether the file starts on the server.
    pub fn reads_server(self) -> bool {
        matches!(self, Scenario::Download | Scenario::DiskRead)
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        match s {
            "m2m" => Some(Scenario::M2m),
            "download" | "dl" => Some(Scenario::Download),
            "upload" | "ul" => Some(Scenario::Upload),
            "disk-read" => Some(Scenario::DiskRead),
            "disk-write" => Some(Scenario::DiskWrite),
            _ => None,
        }
    }
}

/// One point of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Point {
    pub streams: u32,
    /// MODE E block size of file transfers; None: the default (1 MiB).
    pub block_size: Option<u64>,
    /// Fixed socket buffers; None: kernel autotuning.
    pub tcp_bs: Option<u64>,
    /// Our engine's data path.
    #[serde(serialize_with = "path_name")]
    pub path: DataPath,
}

fn path_name<S: serde::Serializer>(p: &DataPath, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{p:?}").to_ascii_lowercase())
}

impl Point {
    /// A short label, e.g. `p4 bs1M tcp-auto auto`.
    pub fn label(&self) -> String {
        format!(
            "p{} bs{} tcp-{} {}",
            self.streams,
            self.block_size.map_or("1M".into(), human),
            self.tcp_bs.map_or("auto".into(), human),
            format!("{:?}", self.path).to_ascii_lowercase()
        )
    }
}

/// `4194304` → `4M`.
pub fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}G", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}M", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}K", n >> 10),
        n => n.to_string(),
    }
}

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub gbytes_per_s: f64,
    /// Busy time of the whole machine per GB moved.
    pub cpu_s_per_gb: f64,
    /// The client (or sender) process alone.
    pub client_cpu_s_per_gb: Option<f64>,
    /// The server (or receiver) process alone.
    pub server_cpu_s_per_gb: Option<f64>,
}

impl Sample {
    fn from_reading(bytes: u64, r: &cpu::Reading) -> Sample {
        let gb = bytes as f64 / 1e9;
        Sample {
            gbytes_per_s: gb / r.seconds.max(1e-9),
            cpu_s_per_gb: r.machine / gb,
            client_cpu_s_per_gb: Some(r.client / gb),
            server_cpu_s_per_gb: r.server.map(|s| s / gb),
        }
    }
}

/// The runs of one tool at one point, and their medians.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub scenario: Scenario,
    pub tool: String,
    pub point: Point,
    pub runs: Vec<Sample>,
    pub median: Sample,
    /// Our engine's op latencies (submit to completion) over all runs.
    pub op_latency_us: Option<LatencySummary>,
    /// Congestion control of a WAN run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cc: Option<String>,
}

impl Case {
    fn new(scenario: Scenario, tool: &str, point: Point, runs: Vec<Sample>) -> Case {
        let med = |f: fn(&Sample) -> Option<f64>| {
            let mut v: Vec<f64> = runs.iter().filter_map(f).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        };
        Case {
            scenario,
            tool: tool.into(),
            point,
            median: Sample {
                gbytes_per_s: med(|s| Some(s.gbytes_per_s)).unwrap_or(0.0),
                cpu_s_per_gb: med(|s| Some(s.cpu_s_per_gb)).unwrap_or(0.0),
                client_cpu_s_per_gb: med(|s| s.client_cpu_s_per_gb),
                server_cpu_s_per_gb: med(|s| s.server_cpu_s_per_gb),
            },
            runs,
            op_latency_us: None,
            cc: None,
        }
    }

    /// The point's label, with the congestion control of a WAN run.
    pub fn label(&self) -> String {
        match &self.cc {
            Some(cc) => format!("{} {cc}", self.point.label()),
            None => self.point.label(),
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub scenarios: Vec<Scenario>,
    pub size: u64,
    pub runs: usize,
    pub streams: Vec<u32>,
    pub block_sizes: Vec<Option<u64>>,
    pub tcp_bs: Vec<Option<u64>>,
    pub paths: Vec<DataPath>,
    /// Measure iperf3 (m2m) and globus-url-copy + globus-gridftp-server (files) too.
    pub peers: bool,
    /// Where the files go (tmpfs by default).
    pub dir: PathBuf,
    /// This program, to run `serve` and `copy` as separate processes.
    pub exe: PathBuf,
    /// Where servers and clients run.
    pub net: Net,
    /// A GSI test grid (`scripts/gsi-testgrid.sh DIR`): download and upload also run over
    /// gsiftp:// with DCAU A + PROT C, ours and Globus's.
    pub gsi: Option<PathBuf>,
}

/// The allowed CPUs split in two taskset lists, (client: lower half, server: upper half); none
/// with fewer than two CPUs.
pub fn split_cpus() -> (Option<String>, Option<String>) {
    let cpus = crate::engine::allowed_cpus();
    if cpus.len() < 2 {
        return (None, None);
    }
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let (client, server) = cpus.split_at(cpus.len() / 2);
    (Some(list(client)), Some(list(server)))
}

/// Where the file benchmarks run: loopback, or the two namespaces of a WAN lab.
#[derive(Clone, Debug)]
pub struct Net {
    /// The servers' address.
    pub host: String,
    pub server_ns: Option<String>,
    pub client_ns: Option<String>,
    /// Disjoint CPU sets (taskset lists) for the server and the client sides, as iperf3 `-A`
    /// pins its ends: two processes' threads on one CPU halve each other.
    pub server_cpus: Option<String>,
    pub client_cpus: Option<String>,
}

impl Net {
    pub fn loopback() -> Net {
        let (client_cpus, server_cpus) = split_cpus();
        Net {
            host: "127.0.0.1".into(),
            server_ns: None,
            client_ns: None,
            server_cpus,
            client_cpus,
        }
    }

    fn wrap(ns: &Option<String>, cpus: &Option<String>, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(c) = cpus {
            argv.extend(["taskset".into(), "-c".into(), c.into()]);
        }
        if let Some(ns) = ns {
            argv.extend(["ip".into(), "netns".into(), "exec".into(), ns.into()]);
        }
        argv.push(program.as_ref().to_os_string());
        let mut c = std::process::Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    }

    /// A server-side command (in the server namespace and on the server CPUs, if any).
    pub fn server_cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        Net::wrap(&self.server_ns, &self.server_cpus, program)
    }

    /// A client-side command (in the client namespace and on the client CPUs, if any).
    pub fn client_cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        Net::wrap(&self.client_ns, &self.client_cpus, program)
    }

    /// True once something listens at host:port, seen from the client side.
    pub fn listening(&self, port: u16) -> bool {
        match &self.client_ns {
            None => std::net::TcpStream::connect((self.host.as_str(), port)).is_ok(),
            Some(_) => self
                .client_cmd("bash")
                .args(["-c", &format!("exec 3<>/dev/tcp/{}/{port}", self.host)])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        }
    }
}

impl Plan {
    /// Every combination of the swept values.
    pub fn points(&self) -> Vec<Point> {
        let mut out = Vec::new();
        for &streams in &self.streams {
            for &block_size in &self.block_sizes {
                for &tcp_bs in &self.tcp_bs {
                    for &path in &self.paths {
                        out.push(Point {
                            streams,
                            block_size,
                            tcp_bs,
                            path,
                        });
                    }
                }
            }
        }
        out
    }
}

/// Runs the plan; `done` sees each case as it completes (progress on a terminal).
pub fn run(plan: &Plan, mut done: impl FnMut(&Case)) -> Result<Vec<Case>, BenchError> {
    let mut cases = Vec::new();
    for &scenario in &plan.scenarios {
        let got = match scenario {
            Scenario::M2m => m2m::run(plan, &mut done)?,
            Scenario::Download | Scenario::Upload | Scenario::DiskRead | Scenario::DiskWrite => {
                files::run(plan, scenario, &mut done)?
            }
            Scenario::Wan => return Err(BenchError::tool("bench", "the wan scenario runs with --wan")),
        };
        cases.extend(got);
    }
    Ok(cases)
}

/// The bits per second iperf3 reported in `-J` output, or why there are none.
fn iperf3_bps(out: &std::process::Output) -> Result<f64, BenchError> {
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| BenchError::Iperf(format!("bad JSON output: {e}")))?;
    v["end"]["sum_received"]["bits_per_second"].as_f64().ok_or_else(|| {
        let why = v["error"]
            .as_str()
            .map_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned(), String::from);
        BenchError::Iperf(format!("no result: {why}"))
    })
}

/// A named way to take one sample.
type Tool<'a> = (String, Box<dyn FnMut() -> Result<Sample, BenchError> + 'a>);

/// Runs every tool once per round, `runs` rounds: slow drift of a noisy machine then hits
/// every tool alike. Every other round runs the tools in reverse, so no tool always runs right
/// after the same one (what a run leaves behind, such as a deleted file's pages, differs).
/// Returns each tool's samples.
fn interleaved(runs: usize, tools: &mut [Tool<'_>]) -> Result<Vec<(String, Vec<Sample>)>, BenchError> {
    let mut out: Vec<(String, Vec<Sample>)> = tools.iter().map(|(n, _)| (n.clone(), Vec::new())).collect();
    let n = tools.len();
    for round in 0..runs {
        for k in 0..n {
            let i = if round % 2 == 0 { k } else { n - 1 - k };
            out[i].1.push((tools[i].1)()?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_other_round_runs_in_reverse() {
        let order = std::cell::RefCell::new(Vec::new());
        let tool = |name: &'static str| -> Tool<'_> {
            let order = &order;
            (
                name.into(),
                Box::new(move || {
                    order.borrow_mut().push(name);
                    Ok(Sample {
                        gbytes_per_s: 1.0,
                        cpu_s_per_gb: 1.0,
                        client_cpu_s_per_gb: None,
                        server_cpu_s_per_gb: None,
                    })
                }),
            )
        };
        let mut tools = vec![tool("a"), tool("b"), tool("c")];
        let out = interleaved(3, &mut tools).unwrap();
        assert_eq!(*order.borrow(), ["a", "b", "c", "c", "b", "a", "a", "b", "c"]);
        assert!(out.iter().all(|(_, runs)| runs.len() == 3));
    }
}

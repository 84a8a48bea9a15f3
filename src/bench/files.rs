//! File transfers through a server: download a tmpfs file into /dev/null, upload a tmpfs file
//! into a new tmpfs file, and the same with the server's file on a disk (read from a cold page
//! cache; written and synced). Ours: `ringmover copy` against `ringmover serve` (on disks also
//! both with `--direct-io`); the peers: globus-url-copy against globus-gridftp-server,
//! globus-url-copy against ringmover, and on disks fio with the same block size. Each client
//! is a separate process timed from start to exit, an upload until its file is synced; every
//! tool gets one warm-up run.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{cpu, interleaved, BenchError, Case, Plan, Point, Sample, Scenario, Tool};
use crate::engine::LatencySummary;

const BENCH_USER: &str = "bench";
const BENCH_PASSWORD: &str = "bench-password";

/// A server process, killed on drop.
struct Server {
    child: Child,
    port: u16,
    /// Directory the server serves (files are named by full path for Globus, by root-relative
    /// path for ringmover).
    root: PathBuf,
    globus: bool,
    host: String,
    /// gsiftp:// with this test grid's credentials (DCAU A, PROT C).
    grid: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn ours(plan: &Plan, root: &Path, p: Point, direct: bool) -> Result<Server, BenchError> {
        Server::ours_with(plan, root, p, direct, None)
    }

    /// Ours, taking GSI logins with the grid's host credential when `grid` is given.
    fn ours_with(plan: &Plan, root: &Path, p: Point, direct: bool, grid: Option<&Path>) -> Result<Server, BenchError> {
        let users = root.with_extension("users");
        crate::door::auth::Users::set_password(&users, BENCH_USER, BENCH_PASSWORD)
            .map_err(|e| BenchError::tool("users file", e))?;
        let path = format!("{:?}", p.path).to_ascii_lowercase();
        let listen = format!("{}:0", plan.net.host);
        let mut child = plan
            .net
            .server_cmd(&plan.exe)
            .arg("serve")
            .arg("--root")
            .arg(root)
            .args(["--listen", &listen, "--data-path", &path, "--users"])
            .arg(&users)
            .args(direct.then_some("--direct-io"))
            .args(grid.map(gsi_server_args).unwrap_or_default())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let port = line
            .trim()
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .ok_or_else(|| BenchError::tool("ringmover serve", format!("unexpected output {line:?}")))?;
        Ok(Server {
            child,
            port,
            root: root.to_path_buf(),
            globus: false,
            host: plan.net.host.clone(),
            grid: grid.map(Path::to_path_buf),
        })
    }

    fn globus(root: &Path, net: &super::Net) -> Result<Server, BenchError> {
        Server::globus_with(root, net, None)
    }

    /// Globus, with GSI logins (mapped by the grid's `globus-gridmap`) when `grid` is given.
    fn globus_with(root: &Path, net: &super::Net, grid: Option<&Path>) -> Result<Server, BenchError> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let conf = root.with_extension("gridftp.conf");
        std::fs::write(&conf, "")?;
        let log = root.with_extension("gridftp.log");
        let mut cmd = net.server_cmd("globus-gridftp-server");
        cmd.arg("-c")
            .arg(&conf)
            .args(grid.is_none().then_some("-aa"))
            .args(["-s", "-p", &port.to_string()])
            .args([
                "-control-interface",
                &net.host,
                "-data-interface",
                &net.host,
                "-d",
                "error",
            ])
            .arg("-l")
            .arg(&log)
            .arg("-home-dir")
            .arg(root)
            .arg("-restrict-paths")
            .arg(root);
        if let Some(g) = grid {
            cmd.env("X509_USER_CERT", g.join("host.pem"))
                .env("X509_USER_KEY", g.join("host.key"))
                .env("X509_CERT_DIR", g.join("certdir"))
                .env("GRIDMAP", g.join("globus-gridmap"));
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 && grid.is_none() {
            cmd.args(["-anonymous-user", "nobody"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                BenchError::tool(
                    "globus-gridftp-server",
                    format!("{e} (apt-get install globus-gridftp-server-progs)"),
                )
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !net.listening(port) {
            if Instant::now() > deadline {
                return Err(BenchError::tool("globus-gridftp-server", "did not start listening"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Server {
            child,
            port,
            root: root.to_path_buf(),
            globus: true,
            host: net.host.clone(),
            grid: grid.map(Path::to_path_buf),
        })
    }

    /// URL of `name` in the served directory. Anonymous, as for Globus, except uploads to
    /// ringmover, which need a user (its argon2 check is part of the measured cost).
    fn url(&self, name: &str, upload: bool) -> String {
        if self.grid.is_some() {
            // The host certificate names localhost; the login is mapped from the proxy.
            let path = if self.globus {
                format!("{}/{name}", self.root.display())
            } else {
                format!("/{name}")
            };
            return format!("gsiftp://localhost:{}{path}", self.port);
        }
        match (self.globus, upload) {
            (true, _) => format!("ftp://{}:{}{}/{name}", self.host, self.port, self.root.display()),
            (false, false) => format!("ftp://{}:{}/{name}", self.host, self.port),
            (false, true) => format!("ftp://{BENCH_USER}:{BENCH_PASSWORD}@{}:{}/{name}", self.host, self.port),
        }
    }
}

/// Runs one client process and measures it, until `synced` (an uploaded file) is on its
/// disk; ours returns its op-latency summary too.
fn timed(
    mut cmd: Command,
    size: u64,
    server: &Server,
    synced: Option<&Path>,
) -> Result<(Sample, Option<LatencySummary>), BenchError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let meter = cpu::Meter::start(Some(server.child.id()));
    let out = cmd.stdin(Stdio::null()).output()?;
    if let (Some(p), true) = (synced, out.status.success()) {
        std::fs::File::open(p)?.sync_all()?;
    }
    // Globus reaps its per-session process a moment after the client exits.
    let r = meter.stop_settled(Duration::from_millis(100));
    if !out.status.success() {
        return Err(BenchError::tool(
            &tool,
            format!(
                "failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    let latency = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| serde_json::from_value(v["op_latency_us"].clone()).ok());
    Ok((Sample::from_reading(size, &r), latency))
}

/// `serve` flags for a GSI server with the test grid's host credential.
fn gsi_server_args(grid: &Path) -> Vec<std::ffi::OsString> {
    let p = |n: &str| grid.join(n).into_os_string();
    vec![
        "--cert".into(),
        p("host.pem"),
        "--key".into(),
        p("host.key"),
        "--ca-dir".into(),
        p("certdir"),
        "--gridmap".into(),
        p("gridmap"),
    ]
}

/// A client command with the grid's proxy and trust roots.
fn with_proxy(mut cmd: Command, grid: &Path) -> Command {
    cmd.env("X509_CERT_DIR", grid.join("certdir"))
        .env("X509_USER_PROXY", grid.join("proxy"));
    cmd
}

/// The tool names of the gsiftp:// rows (DCAU A, PROT C; and PROT P, the data in TLS).
pub const GSI_OURS: &str = "ringmover copy ⇄ ringmover gsiftp";
pub const GSI_GLOBUS: &str = "guc ⇄ globus-gridftp-server gsiftp";
pub const GSI_OURS_P: &str = "ringmover copy ⇄ ringmover gsiftp -dcpriv";
pub const GSI_GLOBUS_P: &str = "guc ⇄ globus-gridftp-server gsiftp -dcpriv";

/// `ringmover copy` between `src` and `dst`.
fn ours_cmd(plan: &Plan, p: Point, src: &str, dst: &str, direct: bool) -> Command {
    ours_cmd_with(plan, p, src, dst, direct, &[])
}

/// `ringmover copy` with extra options before the URLs.
fn ours_cmd_with(plan: &Plan, p: Point, src: &str, dst: &str, direct: bool, extra: &[&str]) -> Command {
    let mut cmd = plan.net.client_cmd(&plan.exe);
    cmd.args(["copy", "--json", "--latency", "-q"]);
    cmd.args(direct.then_some("--direct-io"));
    let path = format!("{:?}", p.path).to_ascii_lowercase();
    cmd.args(["--data-path", &path]);
    if p.streams == 1 {
        cmd.args(["--mode", "s"]);
    }
    guc_options(&mut cmd, p);
    cmd.args(extra);
    cmd.args([src, dst]);
    cmd
}

/// `-p`, `-bs` and `-tcp-bs` for a point: globus-url-copy's spelling, which `ringmover copy`
/// takes too.
fn guc_options(cmd: &mut Command, p: Point) {
    if p.streams > 1 {
        cmd.args(["-p", &p.streams.to_string()]);
    }
    if let Some(bs) = p.block_size.filter(|_| p.streams > 1) {
        cmd.args(["-bs", &bs.to_string()]);
    }
    if let Some(t) = p.tcp_bs {
        cmd.args(["-tcp-bs", &t.to_string()]);
    }
}

/// globus-url-copy between `src` and `dst` (stream mode for one stream, MODE E otherwise).
fn guc_cmd(plan: &Plan, p: Point, src: &str, dst: &str) -> Command {
    guc_cmd_with(plan, p, src, dst, &[])
}

/// globus-url-copy with extra options before the URLs.
fn guc_cmd_with(plan: &Plan, p: Point, src: &str, dst: &str, extra: &[&str]) -> Command {
    let mut cmd = plan.net.client_cmd("globus-url-copy");
    guc_options(&mut cmd, p);
    cmd.args(extra);
    cmd.args([src, dst]);
    cmd
}

/// The source file, written once (incompressible bytes do not matter on loopback; a
/// repeated pattern keeps creation fast).
fn make_source(path: &Path, size: u64) -> Result<(), BenchError> {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(4 << 20, std::fs::File::create(path)?);
    let block: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// Work directories are named `ringmover-bench-<pid>-…`, so that a later bench can remove
/// those an interrupted one left behind (gigabytes, often in /dev/shm).
fn work_dir(parent: &Path) -> std::io::Result<tempfile::TempDir> {
    remove_orphans(parent);
    tempfile::Builder::new()
        .prefix(&format!("ringmover-bench-{}-", std::process::id()))
        .tempdir_in(parent)
}

/// Removes the work directories of bench processes that no longer run.
fn remove_orphans(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("ringmover-bench-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(dir = %e.path().display(), "removing the work directory of an interrupted bench");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

pub fn run(plan: &Plan, scenario: Scenario, done: &mut dyn FnMut(&Case)) -> Result<Vec<Case>, BenchError> {
    let work = work_dir(&plan.dir)?;
    // Each server its own directory: a run deletes the previous run's file in it first, and a
    // buffered writer that follows a direct one finds no freed page-cache pages to reuse (on the
    // VM measured, 0.25 against 0.7 GB/s into ext4), which the peers' directory never sees.
    let (ours_root, globus_root) = (work.path().join("ours"), work.path().join("globus"));
    let direct_root = work.path().join("direct");
    for d in [&ours_root, &globus_root, &direct_root] {
        std::fs::create_dir(d)?;
        // Globus writes as the anonymous user.
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o1777))?;
    }
    // What a disk write sends comes from memory.
    let shm = Path::new("/dev/shm");
    let local_dir = if scenario == Scenario::DiskWrite && shm.is_dir() {
        Some(work_dir(shm)?)
    } else {
        None
    };
    let local = local_dir.as_ref().map_or(work.path(), |d| d.path()).join("local");
    if scenario.reads_server() {
        make_source(&ours_root.join("src"), plan.size)?;
        std::fs::hard_link(ours_root.join("src"), globus_root.join("src"))?;
        std::fs::hard_link(ours_root.join("src"), direct_root.join("src"))?;
    } else {
        make_source(&local, plan.size)?;
    }
    if scenario == Scenario::DiskRead {
        drop_caches()?;
    }
    let globus = if plan.peers {
        Some(Server::globus(&globus_root, &plan.net)?)
    } else {
        None
    };
    let mut cases = Vec::new();
    let mut peers_done = Vec::new();
    for point in plan.points() {
        let server = Server::ours(plan, &ours_root, point, false)?;
        let direct_server = if scenario.disk() {
            Some(Server::ours(plan, &direct_root, point, true)?)
        } else {
            None
        };
        let ours = &server;
        let latencies = std::cell::RefCell::new(Vec::new());
        let local_s = local.to_string_lossy().into_owned();
        let src_of = |s: &Server| -> (String, String) {
            if scenario.reads_server() {
                (s.url("src", false), "/dev/null".to_string())
            } else {
                (local_s.clone(), s.url("up", true))
            }
        };
        // Before each run: no upload left from the last one, no page cache for a disk read.
        let prepare = |s: &Server| -> Result<Option<PathBuf>, BenchError> {
            match scenario {
                Scenario::DiskRead => drop_caches().map(|_| None),
                Scenario::Upload | Scenario::DiskWrite => {
                    let up = s.root.join("up");
                    let _ = std::fs::remove_file(&up);
                    Ok(Some(up))
                }
                _ => Ok(None),
            }
        };
        // The peers have no engine path: once per (streams, block, buffer).
        let key = (point.streams, point.block_size, point.tcp_bs);
        let with_peers = !peers_done.contains(&key);
        let gsi = match (&plan.gsi, scenario) {
            (Some(g), Scenario::Download | Scenario::Upload) => Some((
                Server::ours_with(plan, &ours_root, point, false, Some(g))?,
                match with_peers && plan.peers {
                    true => Some(Server::globus_with(&globus_root, &plan.net, Some(g))?),
                    false => None,
                },
                g.clone(),
            )),
            _ => None,
        };
        let mut tools: Vec<Tool<'_>> = Vec::new();
        let ours_tool = |s: &Server, cmd: Command| -> Result<Sample, BenchError> {
            let synced = prepare(s)?;
            let (sample, l) = timed(cmd, plan.size, s, synced.as_deref())?;
            latencies.borrow_mut().extend(l);
            Ok(sample)
        };
        let (s, d) = src_of(ours);
        tools.push((
            "ringmover copy ⇄ ringmover".into(),
            Box::new(move || ours_tool(ours, ours_cmd(plan, point, &s, &d, false))),
        ));
        if let Some(direct) = direct_server.as_ref() {
            let (s, d) = src_of(direct);
            tools.push((
                DIRECT_TOOL.into(),
                Box::new(move || ours_tool(direct, ours_cmd(plan, point, &s, &d, true))),
            ));
        }
        if let Some(g) = globus.as_ref().filter(|_| with_peers) {
            let (s, d) = src_of(g);
            tools.push((
                "guc ⇄ globus-gridftp-server".into(),
                Box::new(move || {
                    let synced = prepare(g)?;
                    Ok(timed(guc_cmd(plan, point, &s, &d), plan.size, g, synced.as_deref())?.0)
                }),
            ));
            let (s, d) = src_of(ours);
            tools.push((
                "guc ⇄ ringmover".into(),
                Box::new(move || {
                    let synced = prepare(ours)?;
                    Ok(timed(guc_cmd(plan, point, &s, &d), plan.size, ours, synced.as_deref())?.0)
                }),
            ));
        }
        if let Some((ours_gsi, globus_gsi, grid)) = gsi.as_ref() {
            for (ours_name, globus_name, ours_opt, globus_opt) in [
                (GSI_OURS, GSI_GLOBUS, None, None),
                (GSI_OURS_P, GSI_GLOBUS_P, Some("--dcpriv"), Some("-dcpriv")),
            ] {
                let (s, d) = src_of(ours_gsi);
                let cmd = move || {
                    let extra: Vec<&str> = ours_opt.into_iter().collect();
                    with_proxy(ours_cmd_with(plan, point, &s, &d, false, &extra), grid)
                };
                tools.push((ours_name.into(), Box::new(move || ours_tool(ours_gsi, cmd()))));
                if let Some(g) = globus_gsi.as_ref() {
                    let (s, d) = src_of(g);
                    tools.push((
                        globus_name.into(),
                        Box::new(move || {
                            let synced = prepare(g)?;
                            let extra: Vec<&str> = globus_opt.into_iter().collect();
                            let cmd = with_proxy(guc_cmd_with(plan, point, &s, &d, &extra), grid);
                            Ok(timed(cmd, plan.size, g, synced.as_deref())?.0)
                        }),
                    ));
                }
            }
        }
        if scenario == Scenario::Upload && with_peers && plan.peers {
            let root = ours_root.clone();
            tools.push((
                NEW_FILE_TOOL.into(),
                Box::new(move || write_new_file(&plan.net, &root, plan.size)),
            ));
        }
        if scenario.disk() && with_peers && plan.peers {
            let root = ours_root.clone();
            tools.push((
                FIO_TOOL.into(),
                Box::new(move || fio(scenario, &root, plan.size, point.streams)),
            ));
        }
        peers_done.push(key);
        // Warm-up: one untimed run of each tool (page cache, tmpfs pages, TCP autotuning).
        interleaved(1, &mut tools)?;
        latencies.borrow_mut().clear();
        for (name, runs) in interleaved(plan.runs, &mut tools)? {
            let mut case = Case::new(scenario, &name, point, runs);
            if name.starts_with("ringmover copy") {
                case.op_latency_us = median_latency(&latencies.borrow());
            }
            done(&case);
            cases.push(case);
        }
        drop(tools);
        let _ = std::fs::remove_file(ours.root.join("up"));
        let _ = std::fs::remove_file(ours.root.join("ceiling"));
    }
    Ok(cases)
}

/// The upload scenario's ceiling: a new file in the server's directory written from memory
/// on the server's CPUs (page allocation and one copy, the least a receiver does).
pub const NEW_FILE_TOOL: &str = "dd /dev/zero → new file";

/// `dd` writing `size` bytes of zeros into a new file beside the uploads, synced, on the
/// server side's CPUs. On a VM the allocation of fresh pages is often what limits uploads of
/// every tool (it swung 0.4–2.7 GB/s here while rewriting existing pages ran at 3–3.8 GB/s).
/// As with the uploads, the last run's file goes just before the next run: memory a VM leaves
/// free for a while can go back to its host (free page reporting) and cost more to take again.
fn write_new_file(net: &super::Net, dir: &Path, size: u64) -> Result<Sample, BenchError> {
    const BLOCK: u64 = 4 << 20;
    let file = dir.join("ceiling");
    let _ = std::fs::remove_file(&file);
    let count = size.div_ceil(BLOCK);
    let meter = cpu::Meter::start(None);
    let out = net
        .server_cmd("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .arg(format!("bs={BLOCK}"))
        .arg(format!("count={count}"))
        .arg("conv=fsync")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BenchError::tool("dd", e))?;
    let r = meter.stop();
    if !out.status.success() {
        return Err(BenchError::tool(
            "dd",
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(Sample::from_reading(count * BLOCK, &r))
}

/// Our row with `--direct-io` on both sides (disk scenarios).
pub const DIRECT_TOOL: &str = "ringmover copy ⇄ ringmover --direct-io";
/// fio's row (disk scenarios): the device's sequential ceiling at our block size.
pub const FIO_TOOL: &str = "fio";

/// Empties the page cache, so that a disk read starts cold (needs root).
fn drop_caches() -> Result<(), BenchError> {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| BenchError::tool("disk-read", format!("cannot drop the page cache (run as root): {e}")))
}

/// fio reading the source or writing a new file in `dir` sequentially as the engine does with
/// `--direct-io`: direct I/O in blocks of its buffer size, one job per stream (each its
/// share), at the engine's queue depth per stream: 2 in stream mode (a stream reads its next
/// range while sending, and receives while writing), 1 per MODE E stream.
fn fio(scenario: Scenario, dir: &Path, size: u64, streams: u32) -> Result<Sample, BenchError> {
    let jobs = u64::from(streams.max(1));
    let bs = crate::engine::DIRECT_BUFFER as u64;
    let share = (size / jobs) / bs * bs;
    let depth = if streams == 1 { crate::engine::STREAM_DEPTH } else { 1 };
    let (rw, file) = match scenario {
        Scenario::DiskRead => {
            drop_caches()?;
            ("read", dir.join("src"))
        }
        _ => {
            let f = dir.join("fio-write");
            let _ = std::fs::remove_file(&f);
            ("write", f)
        }
    };
    let mut cmd = Command::new("fio");
    cmd.args(["--name=bench", "--rw", rw, "--direct=1", "--ioengine=libaio"])
        .arg(format!("--iodepth={depth}"))
        .arg(format!("--bs={bs}"))
        .arg(format!("--size={share}"))
        .arg(format!("--offset_increment={share}"))
        .arg(format!("--numjobs={jobs}"))
        .arg("--end_fsync=1")
        .arg("--group_reporting")
        .arg(format!("--filename={}", file.display()));
    let meter = cpu::Meter::start(None);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BenchError::tool("fio", format!("{e} (apt-get install fio)")))?;
    let r = meter.stop();
    if rw == "write" {
        let _ = std::fs::remove_file(&file);
    }
    if !out.status.success() {
        return Err(BenchError::tool(
            "fio",
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(Sample::from_reading(share * jobs, &r))
}

/// The run with the median p50 stands for the point (histograms of separate processes).
fn median_latency(all: &[LatencySummary]) -> Option<LatencySummary> {
    let mut v = all.to_vec();
    v.sort_by_key(|l| l.p50);
    v.get(v.len() / 2).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_directories_of_dead_benches_are_removed() {
        let parent = tempfile::tempdir().unwrap();
        let dead = parent.path().join("ringmover-bench-999999999-abc");
        let mine = parent
            .path()
            .join(format!("ringmover-bench-{}-def", std::process::id()));
        let other = parent.path().join("ringmover-benchmark-notes");
        for d in [&dead, &mine, &other] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("f"), b"x").unwrap();
        }
        remove_orphans(parent.path());
        assert!(!dead.exists());
        assert!(mine.exists() && other.exists());
    }
}

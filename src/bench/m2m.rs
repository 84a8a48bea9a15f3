//! Memory to memory over loopback on the engine: an in-memory file (memfd) sent with
//! `sendfile` on one core, each stream its own range, received with splice to /dev/null on the
//! other; iperf3 (and `iperf3 -Z`) with the same stream count and pinning in the same run.

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

use std::fs::File;

use super::report::{M2M_SEND, M2M_SENDFILE};
use super::{cpu, interleaved, BenchError, Case, Plan, Point, Sample, Scenario, Tool};
use crate::engine::{Engine, EngineConfig, OpLatency, Sink, Source};

const FILL_BLOCK: usize = 1 << 20;

pub fn run(plan: &Plan, done: &mut dyn FnMut(&Case)) -> Result<Vec<Case>, BenchError> {
    let latency = OpLatency::new();
    // Disjoint halves of the allowed CPUs, as iperf3 -A pins its two ends.
    let half = (crate::engine::allowed_cpus().len() / 2).max(1);
    let sender = Engine::start(&EngineConfig {
        cores: half,
        first_cpu: 0,
        op_latency: Some(latency.clone()),
        ..EngineConfig::default()
    })?;
    let receiver = Engine::start(&EngineConfig {
        cores: half,
        first_cpu: half,
        ..EngineConfig::default()
    })?;
    let memory = memory_file(plan.size)?;
    let mut cases = Vec::new();
    let mut peers_done = Vec::new();
    // Neither the engine path nor the block size applies here (sendfile from memory into a
    // discarding splice): one point per stream count and socket buffer.
    let mut points = plan.points();
    points.dedup_by_key(|p| (p.streams, p.tcp_bs));
    for point in points {
        latency.reset();
        let mut tools: Vec<Tool<'_>> = vec![
            (
                M2M_SENDFILE.into(),
                Box::new(|| engine_run(&sender, &receiver, Some(&memory), plan.size, point)),
            ),
            (
                M2M_SEND.into(),
                Box::new(|| engine_run(&sender, &receiver, None, plan.size, point)),
            ),
        ];
        // iperf3 has no block-size or path knob: once per (streams, socket buffer).
        let peer_key = (point.streams, point.tcp_bs);
        let with_peers = plan.peers && !peers_done.contains(&peer_key);
        if with_peers {
            peers_done.push(peer_key);
            tools.push(("iperf3".into(), Box::new(|| iperf3(plan.size, point, false))));
            tools.push(("iperf3 -Z".into(), Box::new(|| iperf3(plan.size, point, true))));
        }
        for (name, runs) in interleaved(plan.runs, &mut tools)? {
            let mut case = Case::new(Scenario::M2m, &name, point, runs);
            if name == M2M_SENDFILE {
                case.op_latency_us = Some(latency.summary());
            }
            done(&case);
            cases.push(case);
        }
    }
    Ok(cases)
}

/// `size` bytes of a pattern in an anonymous in-memory file.
fn memory_file(size: u64) -> Result<File, BenchError> {
    use std::io::Write;
    let fd =
        rustix::fs::memfd_create("ringmover-bench", rustix::fs::MemfdFlags::CLOEXEC).map_err(std::io::Error::from)?;
    let mut f = File::from(fd);
    let block = vec![0x5au8; FILL_BLOCK];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    Ok(f)
}

/// One engine run: `streams` connections, each sending its share of `memory` with sendfile,
/// or (without it) a 1 MiB buffer again and again with io_uring `Send`.
fn engine_run(
    sender: &Engine,
    receiver: &Engine,
    memory: Option<&File>,
    size: u64,
    p: Point,
) -> Result<Sample, BenchError> {
    let n = u64::from(p.streams.max(1));
    let pattern = bytes::Bytes::from(vec![0x5au8; FILL_BLOCK]);
    let mut pairs = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let a = TcpStream::connect(l.local_addr()?)?;
        let (b, _) = l.accept()?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        if let Some(bs) = p.tcp_bs {
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(&a, bs as usize);
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&b, bs as usize);
        }
        pairs.push((a, b));
    }
    let meter = cpu::Meter::start(None);
    let mut handles = Vec::new();
    let mut offset = 0;
    for (i, (a, b)) in pairs.into_iter().enumerate() {
        let share = size / n + u64::from((i as u64) < size % n);
        let recv = receiver.submit(Source::Socket(b), Sink::Discard, None);
        let source = match memory {
            Some(m) => Source::File {
                file: m.try_clone()?,
                offset,
                length: Some(share),
            },
            None => Source::Repeat {
                pattern: pattern.clone(),
                total: share,
            },
        };
        offset += share;
        handles.push((sender.submit(source, Sink::Socket(a), None), recv));
    }
    let mut got = 0;
    for (send, recv) in handles {
        send.finish_blocking()?;
        got += recv.finish_blocking()?;
    }
    let r = meter.stop();
    let gb = got as f64 / 1e9;
    Ok(Sample {
        gbytes_per_s: gb / r.seconds.max(1e-9),
        cpu_s_per_gb: r.machine / gb,
        client_cpu_s_per_gb: None,
        server_cpu_s_per_gb: None,
    })
}

/// A one-shot iperf3 server on CPU 1 and its port. A free port of 127.0.0.1 can still be
/// taken for iperf3's wildcard bind (many TIME-WAIT connections after a load test): a server
/// that exits at once is tried again on another port.
fn iperf3_server() -> Result<(std::process::Child, String), BenchError> {
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
        let mut server = Command::new("iperf3")
            .args(["-s", "-1", "-A", "1", "-p", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| BenchError::Iperf(format!("cannot start iperf3 (apt-get install iperf3): {e}")))?;
        std::thread::sleep(std::time::Duration::from_millis(200));
        if server.try_wait()?.is_none() {
            return Ok((server, port));
        }
    }
    Err(BenchError::Iperf(
        "iperf3 -s could not listen on five free ports".into(),
    ))
}

/// iperf3 with `-P streams`, client on CPU 0 and server on CPU 1 (`-Z`: sendfile).
fn iperf3(size: u64, p: Point, zerocopy: bool) -> Result<Sample, BenchError> {
    let (mut server, port) = iperf3_server()?;
    let (n, streams) = (size.to_string(), p.streams.to_string());
    let mut args = vec![
        "-c",
        "127.0.0.1",
        "-p",
        &port,
        "-A",
        "0",
        "-J",
        "-n",
        &n,
        "-P",
        &streams,
    ];
    let window = p.tcp_bs.map(|b| b.to_string());
    if let Some(w) = &window {
        args.extend(["-w", w]);
    }
    if zerocopy {
        args.push("-Z");
    }
    let meter = cpu::Meter::start(Some(server.id()));
    let out = Command::new("iperf3").args(&args).output()?;
    let _ = server.wait();
    let r = meter.stop();
    let bps = super::iperf3_bps(&out)?;
    // iperf3's rate is its own (start-up excluded); the CPU is all the machine spent, and both
    // iperf3 processes (reaped children) for the client column.
    let gb = size as f64 / 1e9;
    Ok(Sample {
        gbytes_per_s: bps / 8.0 / 1e9,
        cpu_s_per_gb: r.machine / gb,
        client_cpu_s_per_gb: Some(r.client / gb),
        server_cpu_s_per_gb: None,
    })
}

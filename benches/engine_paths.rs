//! Loopback throughput of each engine data path, file→socket and socket→file, in one run so
//! the figures compare with each other (this machine is noisy: read ratios, not absolutes).
//!
//! `cargo bench --bench engine_paths [-- SIZE_MIB [RUNS]]` (defaults 1024 MiB, 3 runs). The
//! source file lives in /dev/shm; the socket→file case writes to a fresh /dev/shm file.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use ringmover::engine::{DataPath, Engine, EngineConfig, Sink, Source};

fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (b, _) = l.accept().expect("accept");
    a.set_nonblocking(true).expect("nonblocking");
    (a, b)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let mib: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let runs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let dir = tempfile::Builder::new()
        .prefix("rm-bench")
        .tempdir_in("/dev/shm")
        .expect("tmpfs dir");
    let src = dir.path().join("src");
    let chunk = vec![0xa5u8; 1 << 20];
    let mut f = File::create(&src).expect("create");
    for _ in 0..mib {
        f.write_all(&chunk).expect("write");
    }
    drop(f);
    let bytes = (mib as u64) << 20;
    println!(
        "{:<12} {:<14} {:>8} (median of {runs}, {mib} MiB, GB/s)",
        "path", "direction", "GB/s"
    );
    for path in DataPath::ALL {
        let engine = Engine::start(&EngineConfig {
            cores: 1,
            path,
            ..EngineConfig::default()
        })
        .expect("engine");
        let mut send = Vec::new();
        let mut recv = Vec::new();
        for run in 0..runs {
            let (ours, mut theirs) = pair();
            let t = Instant::now();
            let h = engine.submit(
                Source::File {
                    file: File::open(&src).expect("open"),
                    offset: 0,
                    length: None,
                },
                Sink::Socket(ours),
                None,
            );
            let mut buf = vec![0u8; 4 << 20];
            while theirs.read(&mut buf).expect("read") > 0 {}
            assert_eq!(h.finish_blocking().expect("send"), bytes);
            send.push(bytes as f64 / t.elapsed().as_secs_f64() / 1e9);

            let dst = dir.path().join(format!("dst{run}"));
            let (ours, mut theirs) = pair();
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&dst)
                .expect("dst");
            let t = Instant::now();
            let h = engine.submit(
                Source::Socket(ours),
                Sink::File {
                    file,
                    offset: Some(0),
                    observer: None,
                },
                None,
            );
            for _ in 0..mib {
                theirs.write_all(&chunk).expect("send");
            }
            drop(theirs);
            assert_eq!(h.finish_blocking().expect("recv"), bytes);
            recv.push(bytes as f64 / t.elapsed().as_secs_f64() / 1e9);
            let _ = std::fs::remove_file(&dst);
        }
        println!(
            "{:<12} {:<14} {:>8.2}",
            format!("{path:?}"),
            "file→socket",
            median(send)
        );
        println!(
            "{:<12} {:<14} {:>8.2}",
            format!("{path:?}"),
            "socket→file",
            median(recv)
        );
    }
}

//! Every data path runs the same cases (ripgrep's tester pattern): file→socket with offsets and
//! lengths, socket→file at an offset and appended, memory→socket, and cancellation.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use super::*;

fn engine(path: DataPath) -> Engine {
    Engine::start(&EngineConfig {
        cores: 2,
        path,
        buffer_size: 64 << 10,
        buffers_per_core: 2,
    })
    .unwrap()
}

fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    a.set_nonblocking(true).unwrap();
    (a, b)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn temp_with(data: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("f");
    std::fs::write(&p, data).unwrap();
    (d, p)
}

#[test]
fn file_to_socket_every_path() {
    let data = pattern(3 << 20 | 7);
    let (_d, p) = temp_with(&data);
    for path in DataPath::ALL {
        let e = engine(path);
        for (offset, length) in [(0u64, None), (1000, None), (5, Some(300_001u64)), (0, Some(0))] {
            let (ours, mut theirs) = pair();
            let file = File::open(&p).unwrap();
            let h = e.submit(Source::File { file, offset, length }, Sink::Socket(ours), None);
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).unwrap();
            let n = h.finish_blocking().unwrap();
            let end = length.map_or(data.len(), |l| offset as usize + l as usize);
            assert_eq!(got, &data[offset as usize..end], "{path:?} {offset} {length:?}");
            assert_eq!(n as usize, got.len());
        }
    }
}

#[test]
fn short_file_with_length_is_an_error() {
    let (_d, p) = temp_with(&pattern(1000));
    for path in DataPath::ALL {
        let e = engine(path);
        let (ours, mut theirs) = pair();
        let h = e.submit(
            Source::File {
                file: File::open(&p).unwrap(),
                offset: 0,
                length: Some(5000),
            },
            Sink::Socket(ours),
            None,
        );
        let mut got = Vec::new();
        let _ = theirs.read_to_end(&mut got);
        assert!(
            matches!(h.finish_blocking(), Err(OpError::ShortSource { .. })),
            "{path:?}"
        );
    }
}

#[test]
fn socket_to_file_every_path() {
    let data = pattern(2 << 20 | 13);
    for path in DataPath::ALL {
        let e = engine(path);
        for offset in [Some(0u64), Some(10), None] {
            let (_d, p) = temp_with(b"0123456789");
            let file = std::fs::OpenOptions::new()
                .write(true)
                .append(offset.is_none())
                .open(&p)
                .unwrap();
            let (ours, mut theirs) = pair();
            let h = e.submit(Source::Socket(ours), Sink::File { file, offset }, None);
            theirs.write_all(&data).unwrap();
            drop(theirs);
            assert_eq!(h.finish_blocking().unwrap() as usize, data.len());
            let got = std::fs::read(&p).unwrap();
            let start = offset.unwrap_or(10) as usize;
            assert_eq!(got.len(), start + data.len(), "{path:?} {offset:?}");
            assert!(got[start..] == data[..], "{path:?} {offset:?}");
        }
    }
}

#[test]
fn memory_to_socket() {
    let e = engine(DataPath::Zerocopy);
    let data = Bytes::from(pattern(1 << 20));
    let (ours, mut theirs) = pair();
    let h = e.submit(Source::Memory(data.clone()), Sink::Socket(ours), None);
    let mut got = Vec::new();
    theirs.read_to_end(&mut got).unwrap();
    assert_eq!(h.finish_blocking().unwrap(), data.len() as u64);
    assert_eq!(got, data);
}

#[test]
fn cancel_stalled_transfer_and_buffers_come_back() {
    let data = pattern(64 << 20);
    let (_d, p) = temp_with(&data);
    for path in DataPath::ALL {
        let e = engine(path);
        let (ours, theirs) = pair(); // never read: the sender stalls once buffers fill
        let h = e.submit(
            Source::File {
                file: File::open(&p).unwrap(),
                offset: 0,
                length: None,
            },
            Sink::Socket(ours),
            None,
        );
        while h.progress() == 0 {
            std::thread::yield_now();
        }
        h.cancel();
        assert!(matches!(h.finish_blocking(), Err(OpError::Cancelled)), "{path:?}");
        drop(theirs);
        // Receive cancelled too (nothing ever arrives).
        let (_d2, p2) = temp_with(b"");
        let (ours, _theirs) = pair();
        let file = std::fs::OpenOptions::new().write(true).open(&p2).unwrap();
        let h = e.submit(Source::Socket(ours), Sink::File { file, offset: Some(0) }, None);
        std::thread::sleep(std::time::Duration::from_millis(20));
        h.cancel();
        assert!(matches!(h.finish_blocking(), Err(OpError::Cancelled)), "{path:?}");
    }
}

#[test]
fn peer_reset_is_an_error_not_a_hang() {
    let data = pattern(32 << 20);
    let (_d, p) = temp_with(&data);
    for path in DataPath::ALL {
        let e = engine(path);
        let (ours, theirs) = pair();
        let h = e.submit(
            Source::File {
                file: File::open(&p).unwrap(),
                offset: 0,
                length: None,
            },
            Sink::Socket(ours),
            None,
        );
        drop(theirs);
        assert!(matches!(h.finish_blocking(), Err(OpError::Io { .. })), "{path:?}");
    }
}

#[test]
fn data_path_names() {
    assert_eq!("readwrite".parse::<DataPath>(), Ok(DataPath::ReadWrite));
    assert_eq!("zerocopy".parse::<DataPath>(), Ok(DataPath::Zerocopy));
    assert_eq!("auto".parse::<DataPath>(), Ok(DataPath::Auto));
    assert!("x".parse::<DataPath>().is_err());
}

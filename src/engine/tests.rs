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
        first_cpu: 0,
        cpus: Vec::new(),
        op_latency: Some(super::OpLatency::new()),
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
            let h = e.submit(
                Source::Socket(ours),
                Sink::File {
                    file,
                    offset,
                    observer: None,
                },
                None,
            );
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
        let h = e.submit(
            Source::Socket(ours),
            Sink::File {
                file,
                offset: Some(0),
                observer: None,
            },
            None,
        );
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

#[test]
fn relay_socket_to_socket() {
    let e = engine(DataPath::Auto);
    let data = pattern((2 << 20) + 17);
    let (from_ours, mut from_theirs) = pair();
    let (to_ours, mut to_theirs) = pair();
    let h = e.submit(Source::Socket(from_ours), Sink::Socket(to_ours), None);
    let send = data.clone();
    let writer = std::thread::spawn(move || from_theirs.write_all(&send).unwrap());
    let mut got = Vec::new();
    to_theirs.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(h.finish_blocking().unwrap(), data.len() as u64);
    assert!(got == data);
}

#[test]
fn repeated_memory_into_discard() {
    let sender = engine(DataPath::Auto);
    let (ours, theirs) = pair();
    theirs.set_nonblocking(true).unwrap();
    let total = (24 << 20) + 5;
    let pattern = Bytes::from(pattern(1 << 20));
    let send = sender.submit(Source::Repeat { pattern, total }, Sink::Socket(ours), None);
    let recv = sender.submit(Source::Socket(theirs), Sink::Discard, None);
    assert_eq!(send.finish_blocking().unwrap(), total);
    assert_eq!(recv.finish_blocking().unwrap(), total);
}

mod mode_e {
    use super::*;
    use crate::block::{ConnReceiver, Event, Header, TransferReceiver, HEADER_LEN};
    use crate::engine::Receiving;
    use std::sync::{Arc, Mutex};

    /// A blocking MODE E reader for one stream: writes payloads into `out`, returns the socket
    /// when the stream ended with EOD but without CLOSE.
    fn read_stream(mut s: TcpStream, t: &Mutex<TransferReceiver>, out: &Mutex<Vec<u8>>) -> Option<TcpStream> {
        let mut conn = ConnReceiver::new();
        loop {
            let mut h = [0u8; HEADER_LEN];
            s.read_exact(&mut h).unwrap();
            let h = Header::decode(&h).unwrap();
            let event = conn.on_header(&h, &mut t.lock().unwrap()).unwrap();
            match event {
                Event::Payload { offset, len } => {
                    let mut data = vec![0u8; len as usize];
                    s.read_exact(&mut data).unwrap();
                    t.lock().unwrap().stored(offset, len);
                    conn.on_payload(len, &mut t.lock().unwrap()).unwrap();
                    let mut o = out.lock().unwrap();
                    let end = (offset + len) as usize;
                    if o.len() < end {
                        o.resize(end, 0);
                    }
                    o[offset as usize..end].copy_from_slice(&data);
                    if conn.done() {
                        return Some(s);
                    }
                }
                Event::Eod { close } => return (!close).then_some(s),
            }
        }
    }

    fn send_streams(
        e: &Engine,
        file: &Arc<File>,
        plan: Arc<BlockPlan>,
        n: usize,
        close: bool,
    ) -> (Vec<TransferHandle>, Vec<TcpStream>) {
        let mut handles = Vec::new();
        let mut theirs = Vec::new();
        for i in 0..n {
            let (ours, t) = pair();
            let last = if i == 0 {
                Header::eof(n as u64, close)
            } else {
                Header::eod(close)
            };
            handles.push(e.submit(
                Source::Blocks {
                    file: file.clone(),
                    plan: plan.clone(),
                    last,
                    xmode: None,
                },
                Sink::Socket(ours),
                None,
            ));
            theirs.push(t);
        }
        (handles, theirs)
    }

    #[test]
    fn parallel_send_every_path() {
        let data = pattern((5 << 20) + 123);
        let (_d, p) = temp_with(&data);
        for path in DataPath::ALL {
            let e = engine(path);
            let file = Arc::new(File::open(&p).unwrap());
            // Send [100, len) as a partial transfer: wire offsets relative to 100.
            let plan = Arc::new(BlockPlan::new(vec![(100, data.len() as u64)], 256 << 10, 100));
            let (handles, theirs) = send_streams(&e, &file, plan, 4, false);
            let t = Arc::new(Mutex::new(TransferReceiver::new(Some(data.len() as u64 - 100))));
            let out = Arc::new(Mutex::new(Vec::new()));
            let readers: Vec<_> = theirs
                .into_iter()
                .map(|s| {
                    let (t, out) = (t.clone(), out.clone());
                    std::thread::spawn(move || read_stream(s, &t, &out))
                })
                .collect();
            let mut sent = 0;
            for h in handles {
                let f = h.finish_blocking_full().unwrap();
                assert!(f.socket.is_some(), "no CLOSE: the connection is kept");
                sent += f.bytes;
            }
            for r in readers {
                assert!(r.join().unwrap().is_some());
            }
            assert!(t.lock().unwrap().complete(), "{path:?}");
            assert_eq!(sent, data.len() as u64 - 100);
            assert!(out.lock().unwrap()[..] == data[100..], "{path:?}");
        }
    }

    #[test]
    fn parallel_receive_out_of_order_and_reuse() {
        // Zerocopy splices the payloads; the others receive into buffers and write them.
        for path in [DataPath::Auto, DataPath::Zerocopy, DataPath::ReadWrite] {
            receive_out_of_order(path);
        }
    }

    fn receive_out_of_order(path: DataPath) {
        let data = pattern((3 << 20) + 77);
        let e = engine(path);
        let (_d, p) = temp_with(b"");
        let file = Arc::new(std::fs::OpenOptions::new().write(true).open(&p).unwrap());
        let receiver = Arc::new(Mutex::new(TransferReceiver::new(None)));
        let mut handles = Vec::new();
        let mut senders = Vec::new();
        for _ in 0..3 {
            let (ours, theirs) = pair();
            let sink = Sink::Blocks {
                file: file.clone(),
                receiver: Receiving::E(receiver.clone()),
                base: 5,
            };
            handles.push(e.submit(Source::Socket(ours), sink, None));
            senders.push(theirs);
        }
        // Blocks of 100 000 bytes, dealt backwards over the three connections.
        let mut blocks: Vec<(u64, u64)> = (0..data.len() as u64)
            .step_by(100_000)
            .map(|o| (o, 100_000.min(data.len() as u64 - o)))
            .collect();
        blocks.reverse();
        for (i, (off, len)) in blocks.iter().enumerate() {
            let s = &mut senders[i % 3];
            s.write_all(&Header::data(*off, *len).encode()).unwrap();
            s.write_all(&data[*off as usize..(*off + *len) as usize]).unwrap();
        }
        senders[1].write_all(&Header::eof(3, false).encode()).unwrap();
        senders[0].write_all(&Header::eod(true).encode()).unwrap();
        senders[2].write_all(&Header::eod(false).encode()).unwrap();
        let kept: Vec<bool> = handles
            .into_iter()
            .map(|h| h.finish_blocking_full().unwrap().socket.is_some())
            .collect();
        assert_eq!(kept, vec![false, true, true]);
        assert!(receiver.lock().unwrap().complete());
        let got = std::fs::read(&p).unwrap();
        assert_eq!(got.len(), 5 + data.len());
        assert!(got[5..] == data[..]);
    }

    #[test]
    fn receive_rejects_bad_framing() {
        for path in [DataPath::Auto, DataPath::Zerocopy] {
            rejects_bad_framing(path);
        }
    }

    fn rejects_bad_framing(path: DataPath) {
        let e = engine(path);
        let (_d, p) = temp_with(b"");
        let file = Arc::new(std::fs::OpenOptions::new().write(true).open(&p).unwrap());
        for bad in [
            vec![0x80u8; HEADER_LEN],
            [Header::data(0, 10).encode().to_vec(), vec![1, 2, 3]].concat(),
        ] {
            let receiver = Arc::new(Mutex::new(TransferReceiver::new(None)));
            let (ours, mut theirs) = pair();
            let h = e.submit(
                Source::Socket(ours),
                Sink::Blocks {
                    file: file.clone(),
                    receiver: Receiving::E(receiver),
                    base: 0,
                },
                None,
            );
            theirs.write_all(&bad).unwrap();
            drop(theirs);
            let r = h.finish_blocking();
            assert!(matches!(r, Err(OpError::Framing(_))), "{path:?}: {r:?}");
        }
    }
}

/// Direct I/O through the registered buffers: aligned transfers keep `O_DIRECT` (the
/// device path was used), a tail or offset the kernel refuses falls back to the page cache
/// for the rest of the file, and the bytes are the same either way.
#[test]
fn direct_io_reads_and_writes() {
    let e = engine(DataPath::ReadWrite);
    let aligned = pattern(1 << 20);
    let odd = pattern((1 << 20) + 13);
    for data in [&aligned, &odd] {
        let (_d, p) = temp_with(data);
        // To the end of the file the reads are whole buffers and the last one comes back
        // short: direct throughout. With a length the last read asks for the odd rest.
        for (length, stays_direct) in [(None, true), (Some(data.len() as u64), data.len() % 4096 == 0)] {
            let file = File::open(&p).unwrap();
            if !direct::enable(&file) {
                eprintln!("skipped: the filesystem of {} refuses O_DIRECT", p.display());
                return;
            }
            let probe = file.try_clone().unwrap();
            let (ours, mut theirs) = pair();
            let h = e.submit(
                Source::File {
                    file,
                    offset: 0,
                    length,
                },
                Sink::Socket(ours),
                None,
            );
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).unwrap();
            assert_eq!(h.finish_blocking().unwrap() as usize, data.len());
            assert!(got == *data);
            assert_eq!(
                direct::is_direct(&probe),
                stays_direct,
                "read of {} ({length:?})",
                data.len()
            );
        }

        let (_d2, q) = temp_with(b"");
        let file = std::fs::OpenOptions::new().write(true).open(&q).unwrap();
        assert!(direct::enable(&file));
        let probe = file.try_clone().unwrap();
        let (ours, mut theirs) = pair();
        let sink = Sink::File {
            file,
            offset: Some(0),
            observer: None,
        };
        let h = e.submit(Source::Socket(ours), sink, None);
        theirs.write_all(data).unwrap();
        drop(theirs);
        assert_eq!(h.finish_blocking().unwrap() as usize, data.len());
        assert!(std::fs::read(&q).unwrap() == *data);
        assert_eq!(
            direct::is_direct(&probe),
            data.len() % 4096 == 0,
            "write of {}",
            data.len()
        );
    }
}

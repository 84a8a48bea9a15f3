//! Per-core throughput of the MODE E codec and the checksums (criterion, GB/s of payload).
//! `cargo bench --bench codec_checksums`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringmover::block::{Header, StreamDecoder, TransferReceiver, HEADER_LEN};
use ringmover::storage::checksum::{Algorithm, Hasher};

/// A MODE E stream of `blocks` blocks of `size` bytes, then EOF|EOD.
fn stream(blocks: u64, size: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity((blocks * (size + HEADER_LEN as u64)) as usize + HEADER_LEN);
    let payload = vec![0x5au8; size as usize];
    for i in 0..blocks {
        v.extend_from_slice(&Header::data(i * size, size).encode());
        v.extend_from_slice(&payload);
    }
    v.extend_from_slice(&Header::eof(1, true).encode());
    v
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("mode_e_decode");
    for size in [64u64 << 10, 256 << 10, 1 << 20] {
        let data = stream(32, size);
        g.throughput(Throughput::Bytes(32 * size));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, data| {
            b.iter(|| {
                let mut t = TransferReceiver::new(None);
                let mut d = StreamDecoder::default();
                let mut ev = Vec::new();
                for chunk in data.chunks(64 << 10) {
                    d.push(chunk, &mut t, &mut ev).expect("valid stream");
                }
                assert!(t.complete());
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("mode_e_header");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_decode", |b| {
        b.iter(|| {
            let h = Header::data(std::hint::black_box(123_456), 1 << 20);
            Header::decode(&h.encode()).expect("valid header")
        })
    });
    g.finish();
}

fn checksums(c: &mut Criterion) {
    let data = vec![0xa5u8; 8 << 20];
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(data.len() as u64));
    for alg in Algorithm::ALL {
        g.bench_function(alg.name(), |b| {
            b.iter(|| {
                let mut h = Hasher::new(alg);
                h.update(&data);
                h.finish()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(2));
    targets = codec, checksums
}
criterion_main!(benches);

//! File checksums for CKSM/SCKS: MD5, Adler-32, CRC32C, SHA-1, SHA-256, SHA-512, written as
//! lower-case hex (Adler-32 and CRC32C as 8 digits, as Globus prints them).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use md5::Digest;

/// A checksum algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Adler32,
    Crc32c,
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// Every algorithm, in FEAT order.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Md5,
        Algorithm::Adler32,
        Algorithm::Crc32c,
        Algorithm::Sha1,
        Algorithm::Sha256,
        Algorithm::Sha512,
    ];

    /// Accepts both Globus (`SHA1`) and dCache (`SHA-1`) spellings, in any case.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        let n: String = name
            .chars()
            .filter(|&c| c != '-')
            .collect::<String>()
            .to_ascii_uppercase();
        Some(match n.as_str() {
            "MD5" => Algorithm::Md5,
            "ADLER32" => Algorithm::Adler32,
            "CRC32C" => Algorithm::Crc32c,
            "SHA1" => Algorithm::Sha1,
            "SHA256" => Algorithm::Sha256,
            "SHA512" => Algorithm::Sha512,
            _ => return None,
        })
    }

    /// The canonical (Globus) name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Adler32 => "ADLER32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

/// The metrics counter of an algorithm's bytes, looked up once per process: updates come
/// as often as every received chunk.
fn bytes_counter(alg: Algorithm) -> &'static prometheus_client::metrics::counter::Counter {
    static COUNTERS: [std::sync::OnceLock<prometheus_client::metrics::counter::Counter>; 6] =
        [const { std::sync::OnceLock::new() }; 6];
    COUNTERS[alg as usize].get_or_init(|| {
        let label = crate::metrics::label("algorithm", alg.name().to_ascii_lowercase());
        crate::metrics::get().checksum_bytes.get_or_create(&label).clone()
    })
}

/// An incremental checksum.
pub enum Hasher {
    Md5(md5::Md5),
    Adler32(simd_adler32::Adler32),
    Crc32c(u32),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(alg: Algorithm) -> Hasher {
        match alg {
            Algorithm::Md5 => Hasher::Md5(md5::Md5::new()),
            Algorithm::Adler32 => Hasher::Adler32(simd_adler32::Adler32::new()),
            Algorithm::Crc32c => Hasher::Crc32c(0),
            Algorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Which algorithm this is.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Md5(_) => Algorithm::Md5,
            Hasher::Adler32(_) => Algorithm::Adler32,
            Hasher::Crc32c(_) => Algorithm::Crc32c,
            Hasher::Sha1(_) => Algorithm::Sha1,
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Adler32(h) => h.write(data),
            Hasher::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
        bytes_counter(self.algorithm()).inc_by(data.len() as u64);
    }

    /// Lower-case hex.
    pub fn finish(self) -> String {
        fn hex(b: &[u8]) -> String {
            b.iter().map(|x| format!("{x:02x}")).collect()
        }
        match self {
            Hasher::Md5(h) => hex(&h.finalize()),
            Hasher::Adler32(h) => format!("{:08x}", h.finish()),
            Hasher::Crc32c(c) => format!("{c:08x}"),
            Hasher::Sha1(h) => hex(&h.finalize()),
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sha512(h) => hex(&h.finalize()),
        }
    }
}

/// Checksums `length` bytes (to the end when `None`) of `file` from `offset`.
pub fn file_checksum(file: &File, alg: Algorithm, offset: u64, length: Option<u64>) -> io::Result<String> {
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = offset;
    let mut left = length.unwrap_or(u64::MAX);
    while left > 0 {
        let want = (buf.len() as u64).min(left) as usize;
        let n = match file.read_at(&mut buf[..want], at) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        at += n as u64;
        left -= n as u64;
    }
    if length.is_some() && left > 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "range extends past the end of the file",
        ));
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers_for_abc() {
        let want = [
            (Algorithm::Md5, "900150983cd24fb0d6963f7d28e17f72"),
            (Algorithm::Adler32, "024d0127"),
            (Algorithm::Crc32c, "364b3fb7"),
            (Algorithm::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                Algorithm::Sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
        ];
        for (alg, hex) in want {
            let mut h = Hasher::new(alg);
            h.update(b"a");
            h.update(b"bc");
            assert_eq!(h.finish(), hex, "{alg:?}");
        }
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"abc");
        assert!(h.finish().starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn names() {
        assert_eq!(Algorithm::from_name("sha-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::from_name("Adler32"), Some(Algorithm::Adler32));
        assert_eq!(Algorithm::from_name("crc32"), None);
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
        }
    }

    #[test]
    fn ranges_of_a_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"xxabcxx").unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(
            file_checksum(&f, Algorithm::Md5, 2, Some(3)).unwrap(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert!(file_checksum(&f, Algorithm::Md5, 5, Some(3)).is_err());
        assert_eq!(file_checksum(&f, Algorithm::Adler32, 7, None).unwrap(), "00000001");
    }
}

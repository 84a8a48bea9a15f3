//! The 17-byte MODE E block header: descriptor (u8), byte count (u64 BE), offset (u64 BE).

use super::{desc, DecodeError};

/// Header length in bytes.
pub const HEADER_LEN: usize = 17;

/// One block header. For an EOF message (`desc::EOF` set) `offset` holds the EOD count and
/// `count` is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub desc: u8,
    pub count: u64,
    pub offset: u64,
}

impl Header {
    /// A data block header.
    pub fn data(offset: u64, count: u64) -> Header {
        Header { desc: 0, count, offset }
    }

    /// An empty EOD block (with CLOSE when the connection is not kept).
    pub fn eod(close: bool) -> Header {
        Header {
            desc: desc::EOD | if close { desc::CLOSE } else { 0 },
            count: 0,
            offset: 0,
        }
    }

    /// The EOF message, which also ends its connection (EOF|EOD, as Globus sends it).
    pub fn eof(eod_count: u64, close: bool) -> Header {
        Header {
            desc: desc::EOF | desc::EOD | if close { desc::CLOSE } else { 0 },
            count: 0,
            offset: eod_count,
        }
    }

    /// The wire form.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.desc;
        b[1..9].copy_from_slice(&self.count.to_be_bytes());
        b[9..17].copy_from_slice(&self.offset.to_be_bytes());
        b
    }

    /// Parses a header, rejecting descriptor bits other than EOF, EOD and CLOSE.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, DecodeError> {
        let desc = b[0];
        if desc & !desc::KNOWN != 0 {
            return Err(DecodeError::UnknownDescriptor(desc));
        }
        let mut count = [0u8; 8];
        let mut offset = [0u8; 8];
        count.copy_from_slice(&b[1..9]);
        offset.copy_from_slice(&b[9..17]);
        Ok(Header {
            desc,
            count: u64::from_be_bytes(count),
            offset: u64::from_be_bytes(offset),
        })
    }

    pub fn is_eof(&self) -> bool {
        self.desc & desc::EOF != 0
    }

    pub fn is_eod(&self) -> bool {
        self.desc & desc::EOD != 0
    }

    pub fn is_close(&self) -> bool {
        self.desc & desc::CLOSE != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // desc=0 count=262144 offset=786432, as in the Globus p4 transcript.
        let h = Header::data(786432, 262144);
        let wire = [0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0x0c, 0, 0];
        assert_eq!(h.encode(), wire);
        assert_eq!(Header::decode(&wire), Ok(h));
        let eof = Header::eof(4, false);
        assert_eq!(eof.encode()[0], 0x48);
        assert_eq!(eof.encode()[16], 4);
        assert!(eof.is_eof() && eof.is_eod() && !eof.is_close());
    }

    #[test]
    fn unknown_bits_rejected() {
        for bad in [0x80u8, 0x20, 0x10, 0x01, 0x02, 0x4c | 0x01] {
            let mut w = [0u8; HEADER_LEN];
            w[0] = bad;
            assert_eq!(Header::decode(&w), Err(DecodeError::UnknownDescriptor(bad)));
        }
    }

    #[test]
    fn round_trip() {
        for h in [
            Header::eod(true),
            Header::eod(false),
            Header::eof(1, true),
            Header::data(u64::MAX - 5, 5),
        ] {
            assert_eq!(Header::decode(&h.encode()), Ok(h));
        }
    }
}

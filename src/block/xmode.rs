//! MODE X (GridFTP v2 extended block mode, as dCache implements it; `docs/protocol-notes.md#mode-x`):
//! a 25-byte header (descriptor, count, offset, transaction id; big-endian), and text
//! lines from the receiver to the sender on the same connection: `READY` before any block,
//! `BYE` after EOD, `CLOSE` to ask the sender to stop using the connection. There is no EOD
//! count: the transfer is complete once an EOF was seen and every connection has ended.

use super::{desc, DecodeError};

/// Header length in bytes.
pub const X_HEADER_LEN: usize = 25;

/// Receiver → sender messages.
pub const READY: &[u8] = b"READY\n";
pub const BYE: &[u8] = b"BYE\n";
pub const CLOSE: &[u8] = b"CLOSE\n";

/// One MODE X block header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XHeader {
    pub desc: u8,
    pub count: u64,
    pub offset: u64,
    pub txid: u64,
}

impl XHeader {
    pub fn data(offset: u64, count: u64, txid: u64) -> XHeader {
        XHeader {
            desc: 0,
            count,
            offset,
            txid,
        }
    }

    /// What a sender ends every connection with.
    pub fn last(txid: u64) -> XHeader {
        XHeader {
            desc: desc::EOF | desc::EOD | desc::CLOSE,
            count: 0,
            offset: 0,
            txid,
        }
    }

    pub fn encode(&self) -> [u8; X_HEADER_LEN] {
        let mut b = [0u8; X_HEADER_LEN];
        b[0] = self.desc;
        b[1..9].copy_from_slice(&self.count.to_be_bytes());
        b[9..17].copy_from_slice(&self.offset.to_be_bytes());
        b[17..25].copy_from_slice(&self.txid.to_be_bytes());
        b
    }

    /// Parses a header; only EOF, EOD and CLOSE may be set.
    pub fn decode(b: &[u8; X_HEADER_LEN]) -> Result<XHeader, DecodeError> {
        if b[0] & !desc::KNOWN != 0 {
            return Err(DecodeError::UnknownDescriptor(b[0]));
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(w)
        };
        Ok(XHeader {
            desc: b[0],
            count: word(1),
            offset: word(9),
            txid: word(17),
        })
    }

    pub fn is_eof(&self) -> bool {
        self.desc & desc::EOF != 0
    }

    pub fn is_eod(&self) -> bool {
        self.desc & desc::EOD != 0
    }
}

/// Transfer-wide MODE X state: stored ranges, whether an EOF arrived, the size limit.
#[derive(Debug, Default)]
pub struct XReceiver {
    size_limit: Option<u64>,
    stored: super::RangeSet,
    eof: bool,
    /// Connections that carried a block and have not ended.
    carrying: usize,
}

impl XReceiver {
    pub fn new(size_limit: Option<u64>) -> XReceiver {
        XReceiver {
            size_limit,
            ..XReceiver::default()
        }
    }

    /// Checks a header; returns the payload length to read.
    pub fn on_header(&mut self, h: &XHeader) -> Result<u64, DecodeError> {
        if h.is_eof() {
            self.eof = true;
        }
        let end = h.offset.checked_add(h.count).ok_or(DecodeError::Overflow {
            offset: h.offset,
            count: h.count,
        })?;
        if let Some(size) = self.size_limit {
            if h.count > 0 && end > size {
                return Err(DecodeError::PastSize {
                    offset: h.offset,
                    count: h.count,
                    size,
                });
            }
        }
        Ok(h.count)
    }

    /// A connection carried its first block.
    pub fn carry(&mut self) {
        self.carrying += 1;
    }

    /// A connection that carried blocks ended.
    pub fn release(&mut self) {
        self.carrying = self.carrying.saturating_sub(1);
    }

    /// EOF was seen and every connection that carried data has ended: what is still open
    /// never got a block (a sender that finished before accepting it) and never will.
    pub fn only_idle_left(&self) -> bool {
        self.eof && self.carrying == 0
    }

    pub fn stored(&mut self, offset: u64, len: u64) {
        self.stored.insert(offset, offset.saturating_add(len));
    }

    pub fn ranges(&self) -> &super::RangeSet {
        &self.stored
    }

    /// An EOF was seen (the mover also waits for every connection to end).
    pub fn eof_seen(&self) -> bool {
        self.eof
    }
}

/// What a receiver does with a line-reading result from the sender side: nothing is expected
/// from the sender, so this only validates receiver-to-sender lines on the sender's side.
pub fn parse_line(line: &[u8]) -> Result<&'static [u8], DecodeError> {
    match line {
        l if l == READY => Ok(READY),
        l if l == BYE => Ok(BYE),
        l if l == CLOSE => Ok(CLOSE),
        _ => Err(DecodeError::UnknownDescriptor(line.first().copied().unwrap_or(0))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only connections that never carried a block count as idle, and only after EOF: a
    /// connection still carrying data keeps the receive open.
    #[test]
    fn idle_connections_after_eof() {
        let mut r = XReceiver::new(None);
        r.carry();
        r.carry();
        assert_eq!(r.on_header(&XHeader::data(0, 10, 0)), Ok(10));
        assert!(!r.only_idle_left());
        assert_eq!(r.on_header(&XHeader::last(0)), Ok(0));
        r.release();
        assert!(!r.only_idle_left(), "the other carrying connection is still open");
        r.release();
        assert!(r.only_idle_left());
    }

    #[test]
    fn header_round_trip_and_known_answer() {
        let h = XHeader::data(0x0102, 0x10, 7);
        let w = h.encode();
        assert_eq!(w[0], 0);
        assert_eq!(&w[1..9], &[0, 0, 0, 0, 0, 0, 0, 0x10]);
        assert_eq!(&w[9..17], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&w[17..25], &[0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(XHeader::decode(&w), Ok(h));
        let last = XHeader::last(0);
        assert!(last.is_eof() && last.is_eod());
        assert_eq!(last.encode()[0], 0x4c);
        let mut bad = w;
        bad[0] = 0x80;
        assert_eq!(XHeader::decode(&bad), Err(DecodeError::UnknownDescriptor(0x80)));
    }

    #[test]
    fn receiver_accepts_many_eofs_and_checks_sizes() {
        let mut r = XReceiver::new(Some(100));
        assert_eq!(r.on_header(&XHeader::data(0, 50, 0)), Ok(50));
        assert!(!r.eof_seen());
        assert_eq!(r.on_header(&XHeader::last(0)), Ok(0));
        assert_eq!(r.on_header(&XHeader::last(0)), Ok(0), "every connection ends with EOF");
        assert!(r.eof_seen());
        assert!(matches!(
            r.on_header(&XHeader::data(90, 20, 0)),
            Err(DecodeError::PastSize { .. })
        ));
        assert_eq!(parse_line(b"READY\n"), Ok(READY));
        assert!(parse_line(b"RESEND\n").is_err());
    }
}

//! Receiving MODE E: per-connection framing state and the transfer-wide EOD accounting
//! (GFD.20 §EOD/EOF: end of file is reached when the EODs received equal the count in the EOF
//! message, whichever connections carried them and in whatever order).

use super::{DecodeError, Header, RangeSet, HEADER_LEN};

/// Transfer-wide state, shared by all connections of one transfer.
#[derive(Debug, Default)]
pub struct TransferReceiver {
    size_limit: Option<u64>,
    stored: RangeSet,
    eods: u64,
    expected: Option<u64>,
}

impl TransferReceiver {
    /// `size_limit`: offsets at or past it are rejected (an announced size, or a partial
    /// transfer's length).
    pub fn new(size_limit: Option<u64>) -> TransferReceiver {
        TransferReceiver {
            size_limit,
            ..TransferReceiver::default()
        }
    }

    fn check_block(&self, offset: u64, count: u64) -> Result<(), DecodeError> {
        let end = offset
            .checked_add(count)
            .ok_or(DecodeError::Overflow { offset, count })?;
        match self.size_limit {
            Some(size) if end > size => Err(DecodeError::PastSize { offset, count, size }),
            _ => Ok(()),
        }
    }

    fn eod(&mut self) -> Result<(), DecodeError> {
        self.eods += 1;
        self.check_count()
    }

    fn eof(&mut self, count: u64) -> Result<(), DecodeError> {
        if self.expected.is_some() {
            return Err(DecodeError::SecondEof);
        }
        if count == 0 {
            return Err(DecodeError::BadEodCount(count));
        }
        self.expected = Some(count);
        self.check_count()
    }

    fn check_count(&self) -> Result<(), DecodeError> {
        match self.expected {
            Some(expected) if self.eods > expected => Err(DecodeError::TooManyEods {
                got: self.eods,
                expected,
            }),
            _ => Ok(()),
        }
    }

    /// Records payload bytes as safely stored.
    pub fn stored(&mut self, offset: u64, len: u64) {
        self.stored.insert(offset, offset.saturating_add(len));
    }

    /// The ranges stored so far.
    pub fn ranges(&self) -> &RangeSet {
        &self.stored
    }

    /// True once the EOF message arrived and every announced connection sent its EOD.
    pub fn complete(&self) -> bool {
        self.expected == Some(self.eods)
    }

    /// The EOD count announced by EOF, once it arrived.
    pub fn expected_eods(&self) -> Option<u64> {
        self.expected
    }
}

/// What a header tells the connection's reader to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Read `len` payload bytes for file offset `offset` (len may be 0), then another header.
    Payload { offset: u64, len: u64 },
    /// This connection carries no more data for this transfer; `close` says the sender closes
    /// it (otherwise it may be reused for the next transfer).
    Eod { close: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum ConnState {
    #[default]
    Fresh,
    Data,
    Done,
}

/// One connection's framing state.
#[derive(Debug, Default)]
pub struct ConnReceiver {
    state: ConnState,
    in_block: u64,
    /// The block being read carries EOD: it counts once its payload is stored, so the
    /// transfer is not complete while its last bytes are still on the way to the file.
    eod_pending: bool,
}

impl ConnReceiver {
    pub fn new() -> ConnReceiver {
        ConnReceiver::default()
    }

    /// Handles a decoded header.
    pub fn on_header(&mut self, h: &Header, t: &mut TransferReceiver) -> Result<Event, DecodeError> {
        if self.state == ConnState::Done {
            return Err(DecodeError::DataAfterEod);
        }
        if h.is_eof() {
            // The EOF message carries the count in `offset` and no payload.
            t.eof(h.offset)?;
        } else if h.count > 0 || !h.is_eod() {
            t.check_block(h.offset, h.count)?;
        }
        let payload = if h.is_eof() { 0 } else { h.count };
        if h.is_eod() {
            if payload > 0 {
                self.in_block = payload;
                self.eod_pending = true;
                self.state = ConnState::Done;
                return Ok(Event::Payload {
                    offset: h.offset,
                    len: payload,
                });
            }
            t.eod()?;
            self.state = ConnState::Done;
            return Ok(Event::Eod { close: h.is_close() });
        }
        self.state = ConnState::Data;
        self.in_block = payload;
        Ok(Event::Payload {
            offset: h.offset,
            len: payload,
        })
    }

    /// Reports payload bytes of the current block as stored; the last ones of an EOD block
    /// count its EOD.
    pub fn on_payload(&mut self, n: u64, t: &mut TransferReceiver) -> Result<(), DecodeError> {
        self.in_block = self.in_block.saturating_sub(n);
        if self.in_block == 0 && self.eod_pending {
            self.eod_pending = false;
            t.eod()?;
        }
        Ok(())
    }

    /// True when the connection has ended its part (EOD seen and its payload read).
    pub fn done(&self) -> bool {
        self.state == ConnState::Done && self.in_block == 0
    }

    /// The peer closed the connection. Fine before any header (an unused stream) or after EOD;
    /// an error in the middle of a block or after data without EOD.
    pub fn on_close(&self) -> Result<(), DecodeError> {
        if self.in_block > 0 {
            return Err(DecodeError::ClosedMidBlock);
        }
        match self.state {
            ConnState::Fresh | ConnState::Done => Ok(()),
            ConnState::Data => Err(DecodeError::ClosedBeforeEod),
        }
    }
}

/// A byte-level decoder over [`ConnReceiver`], for tests and fuzzing: feed bytes, get events.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    conn: ConnReceiver,
    header: Vec<u8>,
    payload_left: u64,
    payload_offset: u64,
}

impl StreamDecoder {
    /// Feeds bytes; returns `(offset, len)` runs of payload and EOD events, in order.
    pub fn push(&mut self, mut data: &[u8], t: &mut TransferReceiver, out: &mut Vec<Event>) -> Result<(), DecodeError> {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(data.len() as u64);
                out.push(Event::Payload {
                    offset: self.payload_offset,
                    len: n,
                });
                t.stored(self.payload_offset, n);
                self.payload_offset += n;
                self.payload_left -= n;
                self.conn.on_payload(n, t)?;
                data = &data[n as usize..];
                continue;
            }
            if self.conn.done() {
                return Err(DecodeError::DataAfterEod);
            }
            let need = HEADER_LEN - self.header.len();
            let take = need.min(data.len());
            self.header.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.header.len() == HEADER_LEN {
                let mut raw = [0u8; HEADER_LEN];
                raw.copy_from_slice(&self.header);
                self.header.clear();
                let h = Header::decode(&raw)?;
                match self.conn.on_header(&h, t)? {
                    Event::Payload { offset, len } => {
                        self.payload_offset = offset;
                        self.payload_left = len;
                    }
                    eod => out.push(eod),
                }
            }
        }
        Ok(())
    }

    /// The connection closed.
    pub fn close(&self) -> Result<(), DecodeError> {
        if !self.header.is_empty() {
            return Err(DecodeError::ClosedMidBlock);
        }
        self.conn.on_close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(h: Header, payload: &[u8]) -> Vec<u8> {
        let mut v = h.encode().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn feed(streams: &[Vec<u8>], t: &mut TransferReceiver) -> Result<(), DecodeError> {
        for s in streams {
            let mut d = StreamDecoder::default();
            let mut ev = Vec::new();
            // Feed in awkward pieces to exercise partial headers.
            for piece in s.chunks(5) {
                d.push(piece, t, &mut ev)?;
            }
            d.close()?;
        }
        Ok(())
    }

    #[test]
    fn an_eod_block_counts_once_its_payload_is_stored() {
        let mut t = TransferReceiver::new(None);
        // EOF (with its own EOD) on one connection, a last data block with EOD on another.
        ConnReceiver::new().on_header(&Header::eof(2, false), &mut t).unwrap();
        let mut c = ConnReceiver::new();
        let h = Header {
            desc: crate::block::desc::EOD,
            count: 10,
            offset: 0,
        };
        assert_eq!(c.on_header(&h, &mut t), Ok(Event::Payload { offset: 0, len: 10 }));
        assert!(!t.complete(), "complete before the last block's bytes are in the file");
        c.on_payload(4, &mut t).unwrap();
        assert!(!t.complete());
        c.on_payload(6, &mut t).unwrap();
        assert!(t.complete() && c.done());
    }

    #[test]
    fn any_order_any_connection_with_eof_first() {
        let mut t = TransferReceiver::new(Some(30));
        let a = [
            block(Header::eof(3, false), b""),
            block(Header::data(20, 10), &[2; 10]),
            block(Header::eod(false), b""),
        ]
        .concat();
        let b = [block(Header::data(0, 10), &[0; 10]), block(Header::eod(true), b"")].concat();
        let c = [
            block(Header::data(10, 0), b""),
            block(
                Header {
                    desc: super::super::desc::EOD,
                    count: 10,
                    offset: 10,
                },
                &[1; 10],
            ),
        ]
        .concat();
        // EOF|EOD on `a` counts as a's EOD; a second EOD on `a` is data after EOD.
        assert_eq!(feed(std::slice::from_ref(&a), &mut t), Err(DecodeError::DataAfterEod));
        let mut t = TransferReceiver::new(Some(30));
        let a = [block(Header::data(20, 10), &[2; 10]), block(Header::eof(3, false), b"")].concat();
        feed(&[c, a, b], &mut t).unwrap();
        assert!(t.complete());
        assert!(t.ranges().covers(30));
    }

    #[test]
    fn not_complete_until_all_eods() {
        let mut t = TransferReceiver::new(None);
        feed(
            &[[block(Header::data(0, 4), b"abcd"), block(Header::eof(2, true), b"")].concat()],
            &mut t,
        )
        .unwrap();
        assert!(!t.complete());
        feed(&[block(Header::eod(true), b"")], &mut t).unwrap();
        assert!(t.complete());
        // One EOD too many.
        assert!(matches!(
            feed(&[block(Header::eod(true), b"")], &mut t),
            Err(DecodeError::TooManyEods { .. })
        ));
    }

    #[test]
    fn tolerated_oddities() {
        let mut t = TransferReceiver::new(None);
        // A connection closed before its first header.
        feed(&[Vec::new()], &mut t).unwrap();
        // Zero-length and overlapping blocks.
        let s = [
            block(Header::data(0, 0), b""),
            block(Header::data(0, 6), b"abcdef"),
            block(Header::data(3, 6), b"defghi"),
            block(Header::eof(1, true), b""),
        ]
        .concat();
        feed(&[s], &mut t).unwrap();
        assert!(t.complete());
        assert_eq!(t.ranges().ranges(), &[(0, 9)]);
    }

    #[test]
    fn rejected_streams() {
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            (
                block(Header::data(95, 10), &[0; 10]),
                DecodeError::PastSize {
                    offset: 95,
                    count: 10,
                    size: 100,
                },
            ),
            (
                [block(Header::eof(1, false), b""), block(Header::eof(1, false), b"")].concat(),
                DecodeError::DataAfterEod,
            ),
            (
                [7u8].into_iter().chain([0; 16]).collect(),
                DecodeError::UnknownDescriptor(7),
            ),
            (block(Header::data(0, 10), &[0; 4]), DecodeError::ClosedMidBlock),
            (block(Header::data(0, 4), &[0; 4]), DecodeError::ClosedBeforeEod),
            (Header::data(0, 4).encode()[..9].to_vec(), DecodeError::ClosedMidBlock),
            (
                block(Header::data(u64::MAX, 2), b""),
                DecodeError::Overflow {
                    offset: u64::MAX,
                    count: 2,
                },
            ),
            (block(Header::eof(0, true), b""), DecodeError::BadEodCount(0)),
        ];
        for (stream, want) in cases {
            let mut t = TransferReceiver::new(Some(100));
            assert_eq!(feed(&[stream], &mut t), Err(want.clone()), "{want}");
        }
        // A second EOF on another connection.
        let mut t = TransferReceiver::new(None);
        feed(&[block(Header::eof(2, false), b"")], &mut t).unwrap();
        assert_eq!(
            feed(&[block(Header::eof(2, false), b"")], &mut t),
            Err(DecodeError::SecondEof)
        );
    }
}

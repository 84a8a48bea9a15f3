//! Control-channel line framer: bytes in, bounded lines out.
//!
//! Lines end at LF; a CR before it is dropped, so clients that send bare LF work too. Telnet
//! IAC sequences (sent before ABOR by some clients, RFC 959 §4.1.3) are removed. A line longer
//! than the limit is reported once as [`Frame::TooLong`] and its bytes are discarded up to the
//! next LF, so buffer growth is capped at the limit.

use std::collections::VecDeque;

/// Default maximum command line length in bytes, without the line end.
pub const MAX_LINE: usize = 8192;

/// One framed unit.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line without its line end.
    Line(Vec<u8>),
    /// A line exceeded the limit; its contents were dropped.
    TooLong,
}

/// Splits a byte stream into command lines.
#[derive(Debug)]
pub struct LineFramer {
    max: usize,
    buf: Vec<u8>,
    discarding: bool,
    iac_pending: bool,
    out: VecDeque<Frame>,
}

impl Default for LineFramer {
    fn default() -> Self {
        LineFramer::new(MAX_LINE)
    }
}

impl LineFramer {
    /// A framer that accepts lines up to `max` bytes.
    pub fn new(max: usize) -> LineFramer {
        LineFramer {
            max,
            buf: Vec::new(),
            discarding: false,
            iac_pending: false,
            out: VecDeque::new(),
        }
    }

    /// Feeds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        for &b in data {
            if self.iac_pending {
                self.iac_pending = false;
                continue;
            }
            match b {
                0xff => self.iac_pending = true,
                b'\n' => self.end_line(),
                _ if self.discarding => {}
                _ if self.buf.len() >= self.max => {
                    self.buf.clear();
                    self.discarding = true;
                    self.out.push_back(Frame::TooLong);
                }
                _ => self.buf.push(b),
            }
        }
    }

    fn end_line(&mut self) {
        if self.discarding {
            self.discarding = false;
            return;
        }
        let mut line = std::mem::take(&mut self.buf);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.out.push_back(Frame::Line(line));
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> Option<Frame> {
        self.out.pop_front()
    }

    /// Bytes held for an incomplete line (bounded by the limit).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8], max: usize) -> Vec<Frame> {
        let mut f = LineFramer::new(max);
        f.push(input);
        std::iter::from_fn(|| f.next_frame()).collect()
    }

    #[test]
    fn crlf_and_bare_lf() {
        assert_eq!(
            frames(b"USER a\r\nPASS b\nNOOP", 100),
            vec![Frame::Line(b"USER a".to_vec()), Frame::Line(b"PASS b".to_vec())]
        );
    }

    #[test]
    fn split_across_pushes() {
        let mut f = LineFramer::default();
        f.push(b"NO");
        assert_eq!(f.next_frame(), None);
        f.push(b"OP\r");
        assert_eq!(f.next_frame(), None);
        f.push(b"\n");
        assert_eq!(f.next_frame(), Some(Frame::Line(b"NOOP".to_vec())));
    }

    #[test]
    fn one_mebibyte_without_newline_is_capped() {
        let mut f = LineFramer::new(MAX_LINE);
        f.push(&vec![b'A'; 1 << 20]);
        assert_eq!(f.next_frame(), Some(Frame::TooLong));
        assert_eq!(f.next_frame(), None);
        assert!(f.buffered() <= MAX_LINE);
        f.push(b"AAA\r\nNOOP\r\n");
        assert_eq!(f.next_frame(), Some(Frame::Line(b"NOOP".to_vec())));
    }

    #[test]
    fn telnet_iac_removed() {
        assert_eq!(
            frames(b"\xff\xf4\xff\xf2ABOR\r\n", 100),
            vec![Frame::Line(b"ABOR".to_vec())]
        );
    }
}

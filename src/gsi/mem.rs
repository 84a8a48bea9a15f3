//! The stream under OpenSSL: tokens in memory (handshakes carried in ADAT lines or read a
//! record at a time), then, for a data channel's record layer, the socket itself.

use std::io::{self, Read, Write};

/// A non-blocking byte stream the caller hands over (a data connection's socket).
pub trait Transport: Read + Write + Send + Sync {}

impl<T: Read + Write + Send + Sync> Transport for T {}

#[derive(Default)]
pub(crate) struct Pipe {
    input: Vec<u8>,
    read_at: usize,
    output: Vec<u8>,
    /// Once attached, reads past the fed bytes and writes with no output pending go to the
    /// socket directly (non-blocking: `WouldBlock` reaches OpenSSL as "want read/write").
    socket: Option<Box<dyn Transport>>,
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe")
            .field("unread", &self.unread())
            .field("output", &self.output.len())
            .field("attached", &self.socket.is_some())
            .finish()
    }
}

impl Pipe {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.read_at == self.input.len() {
            self.input.clear();
            self.read_at = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    pub(crate) fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Input bytes OpenSSL has not read yet.
    pub(crate) fn unread(&self) -> usize {
        self.input.len() - self.read_at
    }

    /// From now on the records come from and go to `socket` (non-blocking).
    pub(crate) fn attach(&mut self, socket: Box<dyn Transport>) {
        self.socket = Some(socket);
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = &self.input[self.read_at..];
        if left.is_empty() {
            return match &mut self.socket {
                Some(s) => s.read(buf),
                // More bytes come with the next token.
                None => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        let n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.read_at += n;
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.socket {
            Some(s) if self.output.is_empty() => s.write(buf),
            _ => {
                self.output.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

//! MODE E framing (GFD.20 §extended block mode), sans-IO: the 17-byte header, descriptor bits,
//! EOD/EOF/EOD-count accounting across connections, and byte-range sets with exclusive ends.
//! Imports nothing else of ringmover; touches no sockets, files or clocks.
#![forbid(unsafe_code)]

pub mod fuzzing;
mod header;
pub mod layout;
mod ranges;
mod receive;
pub mod xmode;

pub use header::{Header, HEADER_LEN};

/// How a transfer's data travels: plain stream mode, or MODE E / MODE X blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    #[default]
    Stream,
    E,
    X,
}

impl Mode {
    /// The letter of the MODE command.
    pub fn letter(self) -> &'static str {
        match self {
            Mode::Stream => "S",
            Mode::E => "E",
            Mode::X => "X",
        }
    }
}

/// Which way a transfer's bytes go, seen from the side that runs the mover: a download is
/// `Send` on the server and `Receive` on the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    Send,
    Receive,
}

/// Largest file offset or size a client may name: file offsets are signed 64-bit (`off_t`), so
/// anything larger would wrap on its way to the disk.
pub const MAX_FILE_OFFSET: u64 = i64::MAX as u64;

pub use ranges::RangeSet;
pub use receive::{ConnReceiver, Event, StreamDecoder, TransferReceiver};

use thiserror::Error;

/// Descriptor bits (GFD.20 table of descriptor codes).
pub mod desc {
    /// End of block is end of record (legacy; rejected).
    pub const EOR: u8 = 0x80;
    /// This header is the EOF message: the offset field carries the EOD count.
    pub const EOF: u8 = 0x40;
    /// Suspected errors in data block (legacy; rejected).
    pub const ERRORS: u8 = 0x20;
    /// Block is a restart marker (legacy; rejected, markers go on the control channel).
    pub const RESTART: u8 = 0x10;
    /// No more data on this connection.
    pub const EOD: u8 = 0x08;
    /// The sender closes this connection after this block.
    pub const CLOSE: u8 = 0x04;
    /// The bits a receiver accepts (as dCache does: anything else is an error).
    pub const KNOWN: u8 = EOF | EOD | CLOSE;
}

/// Why a MODE E stream was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unknown descriptor bits 0x{0:02x}")]
    UnknownDescriptor(u8),
    #[error("second EOF message")]
    SecondEof,
    #[error("EOF announces {0} data connections")]
    BadEodCount(u64),
    #[error("block {offset}+{count} lies past the announced size {size}")]
    PastSize { offset: u64, count: u64, size: u64 },
    #[error("block offset {offset} + count {count} overflows")]
    Overflow { offset: u64, count: u64 },
    #[error("connection closed in the middle of a block")]
    ClosedMidBlock,
    #[error("connection closed after data but before EOD")]
    ClosedBeforeEod,
    #[error("data after EOD on the same connection")]
    DataAfterEod,
    #[error("{got} EODs arrived but EOF announced {expected}")]
    TooManyEods { got: u64, expected: u64 },
}

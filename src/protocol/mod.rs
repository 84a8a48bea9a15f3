//! Sans-IO GridFTP control protocol: line framing, command parsing, replies and the server
//! session state machine. Imports nothing else of ringmover; touches no sockets, files or clocks.
#![forbid(unsafe_code)]

mod args;
pub mod buffers;
pub mod client;
pub mod command;
pub mod facts;
pub mod feat;
pub mod framer;
pub mod fuzzing;
pub mod reply;
pub mod session;
pub mod vpath;

mod error;

pub use command::Command;
pub use error::SessionError;
pub use reply::{Code, Reply};
pub use session::{Action, Session, SessionConfig};

//! ringmover: a GridFTP v2 server, client and benchmark for data-transfer nodes.
//!
//! Layers: [`protocol`] is the sans-IO control protocol; [`storage`]
//! confines file access to a root; [`engine`] runs data movement on per-core io_uring threads;
//! [`pool`] executes transfers on the engine; [`door`] runs control connections on tokio.
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

pub mod bench;
pub mod block;
pub mod cli;
pub mod client;
pub mod door;
pub mod engine;
pub mod gsi;
pub mod link;
pub mod metrics;
pub mod peers;
pub mod pool;
pub mod protocol;
pub mod secrets;
pub mod storage;
pub mod tune;
pub mod units;
pub mod wan;

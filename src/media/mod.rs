//! Media for SIP legs: the RTP relay engine, its reactors, and the pure, sans-IO units they
//! drive — the port budget, symmetric-RTP latching, stream rewriting, G.711, RFC 4733
//! telephone-events, RTCP statistics and the call recorder. Apart from the engine, its reactors
//! and sockets, and the recorder's writer thread, none of them reads a clock or touches a
//! socket: time and packets are arguments.

pub mod batch;
pub mod codec;
pub(crate) mod dtmf;
pub mod engine;
pub mod g711;
pub mod latch;
pub(crate) mod leg;
pub mod local;
pub(crate) mod metrics;
pub mod ports;
pub(crate) mod reactor;
pub(crate) mod recorder;
pub(crate) mod rewrite;
pub(crate) mod rtcp;
pub(crate) mod sockets;

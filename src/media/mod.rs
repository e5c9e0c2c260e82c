//! Media for SIP legs. For now only the RTP port budget; the relay arrives with the media engine.

pub mod latch;
pub mod ports;
pub mod recorder;
pub mod rewrite;

//! Media for SIP legs: the RTP port budget and the pure, sans-IO units the RTP engine is built
//! from (G.711, RFC 4733 telephone-events, RTCP statistics). None of them reads a clock or touches
//! a socket: time and packets are arguments.

pub mod engine;
pub mod dtmf;
pub mod g711;
pub mod ports;
pub mod rtcp;

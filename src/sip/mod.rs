//! SIP: the wire layer, sans-IO transactions and dialogs, the user-agent core, and the tokio
//! driver that owns the sockets and the clock.

mod b2bua;
mod connection;
pub mod core;
pub mod dialog;
pub mod digest;
pub mod driver;
pub mod ids;
pub mod message;
pub(crate) mod metrics;
pub mod owners;
pub mod peer;
pub mod registrar;
pub mod sdp;
pub mod shared;
pub mod srtp;
mod srtp_edge;
pub mod tls;
pub mod transaction;
mod webrtc_edge;
pub mod wire;

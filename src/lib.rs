//! Tandem: a SIP/WebRTC media gateway for contact centres in which every call rides on a chat.
//!
//! The protocol cores ([`sip`]'s transactions and dialogs) are sans-IO state machines driven with
//! `handle_*(now, input)` and drained with `poll_*`; thin tokio drivers own sockets and clocks.

/// Every binary built on Tandem (the gateway, its benches and tests) allocates with mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod bridge;
pub mod chat;
pub(crate) mod cluster;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
mod guard;
pub mod hub;
pub mod legs;
pub mod media;
pub mod metrics;
mod presentation;
pub mod routing;
pub mod rtc;
mod secret;
pub mod server;
pub mod sip;
pub mod sms;
pub mod telemetry;

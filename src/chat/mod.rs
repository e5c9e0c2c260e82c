//! Chat: the store of interactions and transcripts, files, and transcript rendering.
//!
//! The chat's *rules* (idempotent messages, receipts, inactivity) live in
//! [`crate::bridge::Interaction`]; this module keeps what the chat needs around them.

pub mod files;
pub mod retention;
pub mod store;
pub(crate) mod transcript;

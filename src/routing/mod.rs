//! Agents on the other side of every chat: who is offered a new chat, and how.
//!
//! [`router::Router`] is the sans-IO core (presence, capacity, ring-all / round-robin /
//! longest-idle offers, the queue with its estimated wait, SMS offers to mobile operators).
//! [`driver`] runs it in one tokio task, watches each interaction's events, and turns the
//! router's decisions into interaction commands and agent events.

pub(crate) mod driver;
pub mod password;
pub mod router;
pub(crate) mod settings;

//! The Interaction: the one owner of a conversation and the only place where the rules of
//! DESIGN §1 live.
//!
//! [`Interaction`] is a sans-IO state machine (queued → offered → active → closing → closed)
//! holding the chat and its legs (voice calls and video, each with its own [`LegState`]). Every
//! change is an [`Event`] with a per-interaction `seq`; the durable events are the transcript.
//! Refusals are [`RuleError`]s with stable codes. The ordered teardown is one plan
//! ([`EventKind::TeardownStarted`]) carried out by the machine: release calls → wait → release
//! video → wait → close the chat → [`Action::PersistTranscript`].
//!
//! This folder is pure: no tokio, no store. `crate::hub` runs each Interaction in its own tokio
//! task; everything else (the customer API,
//! later the agent API, SIP and WebRTC drivers) sends it commands and subscribes to its events.

pub(crate) mod dial_plan;
mod error;
mod event;

mod interaction;
mod token;
mod types;

pub use dial_plan::DialPlan;
pub(crate) use dial_plan::{E164, NumberError};
pub use error::RuleError;
pub use event::{
    AgentDevice, EndReason, Event, EventKind, LegKind, LegState, LegTarget, Phase, ReceiptKind,
    TeardownStep,
};
pub use interaction::{Accepted, Action, CallerId, Command, Interaction, Leg, Rules, Timer};
pub(crate) use interaction::{location_context, merge_context};
pub use token::JoinSecret;
pub(crate) use types::random_hex;
pub use types::{AgentId, Customer, HeldCall, InteractionId, LegId, Party, Time};

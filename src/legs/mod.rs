//! Leg drivers: they carry out what an [`Interaction`](crate::bridge::Interaction) decides about
//! its media legs, and report back what happened to them.
//!
//! The Interaction owns every rule (who may call, when video may start, the teardown order); a
//! driver only turns [`Action::StartLeg`](crate::bridge::Action::StartLeg),
//! [`Action::ReleaseLeg`](crate::bridge::Action::ReleaseLeg) and
//! [`Action::Signal`](crate::bridge::Action::Signal) into peers, offers and media paths, and
//! answers with [`Command::LegUp`](crate::bridge::Command::LegUp) and
//! [`Command::LegReleased`](crate::bridge::Command::LegReleased). A release is always answered,
//! even for a leg the driver never knew, so a teardown never waits for nothing.
//!
//! The driver depends on two narrow traits rather than on the hub and the WebRTC service
//! themselves, so its bookkeeping is tested in memory ([`Interactions`], [`webrtc::Peers`]).

pub mod webrtc;

use std::future::Future;

use crate::bridge::hub::Hub;
use crate::bridge::{AgentId, Command, InteractionId, Party};

/// What a leg driver needs of the interactions: to command them as the system, and to know
/// which agent holds one.
pub trait Interactions: Send + Sync + 'static {
    /// Sends `command` as [`Party::System`]; a refusal is returned as its stable code.
    fn command(
        &self,
        id: &InteractionId,
        command: Command,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// The agent who accepted the interaction, if any.
    fn agent(&self, id: &InteractionId) -> impl Future<Output = Option<AgentId>> + Send;
}

impl Interactions for Hub {
    async fn command(&self, id: &InteractionId, command: Command) -> Result<(), String> {
        match Hub::command(self, id, Party::System, command).await {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn agent(&self, id: &InteractionId) -> Option<AgentId> {
        let summary = self.get(id)?.summary().await.ok()?;
        summary.agent.map(AgentId)
    }
}

//! What the transcript says of an event: one line for a person reading the chat afterwards,
//! routing and calls included; nothing for what says nothing to a reader (typing, receipts,
//! signalling, status and queue bookkeeping).

use crate::bridge::{Event, EventKind, LegState, Party};
use crate::chat::transcript::format_time;

fn who(party: &Party, customer: &str) -> String {
    match party {
        Party::Customer => customer.to_string(),
        Party::Agent(id) => format!("agent {id}"),
        Party::System => "system".into(),
    }
}

/// One line for a durable event: `None` for events that say nothing to a reader.
pub fn line(event: &Event, customer: &str) -> Option<String> {
    let text = match &event.kind {
        EventKind::Created {
            service, context, ..
        } => format!("* chat opened for {service} by {customer}; context {context}"),
        EventKind::Status { .. } | EventKind::Queue { .. } => return None,
        EventKind::Offered { agent, .. } => format!("* offered to agent {agent}"),
        EventKind::Withdrawn { agent } => format!("* offer to agent {agent} withdrawn"),
        EventKind::PartyJoined {
            party,
            display_name,
        } => format!("* {display_name} ({}) joined", who(party, customer)),
        EventKind::PartyLeft {
            party,
            display_name,
        } => format!("* {display_name} ({}) left", who(party, customer)),
        EventKind::Message { from, text, .. } => format!("{}: {text}", who(from, customer)),
        EventKind::File {
            from,
            file_name,
            file_type,
            size,
            ..
        } => format!(
            "{} sent a file: {file_name} ({file_type}, {size} bytes)",
            who(from, customer)
        ),
        EventKind::Location {
            latitude,
            longitude,
        } => format!("* location {latitude}, {longitude}"),
        EventKind::Context { data } => format!("* context {data}"),
        EventKind::FormData { data } => format!("* form {data}"),
        EventKind::Receipt { .. } | EventKind::Typing { .. } | EventKind::Signaling { .. } => {
            return None;
        }
        EventKind::Leg {
            leg,
            kind,
            state,
            reason,
            duration_s,
            ..
        } => {
            let state = match state {
                LegState::AwaitingApproval => "requested, awaiting the agent",
                LegState::Connecting => "connecting",
                LegState::Up => "up",
                LegState::Releasing => "releasing",
                LegState::Released => "ended",
            };
            let reason = match (reason.as_deref(), duration_s) {
                (Some(r), Some(d)) => format!(" ({r}, after {d} s)"),
                (Some(r), None) => format!(" ({r})"),
                (None, Some(d)) => format!(" (after {d} s)"),
                (None, None) => String::new(),
            };
            format!("* {kind:?} {leg} {state}{reason}")
                .replace("Voice", "call")
                .replace("Video", "video")
        }
        EventKind::Dtmf { leg, digit } => format!("* call {leg}: the customer keyed {digit}"),
        EventKind::Recording { leg, file } => format!("* call {leg} recorded: {file}"),
        EventKind::TimeoutWarning { remaining_s } => {
            format!("* inactivity warning: {remaining_s} s left")
        }
        EventKind::InactivityTimeout => "* inactivity timeout".into(),
        EventKind::TeardownStarted { reason, .. } => format!("* ending: {reason:?}"),
        EventKind::ChatClosed { .. } => "* chat closed".into(),
    };
    Some(format!("[{}] {text}", format_time(event.at.millis())))
}

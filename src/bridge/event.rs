//! What an interaction says happened. The durable events, in `seq` order, are its transcript.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::types::{AgentId, Customer, LegId, Party, Time};

/// One change of an interaction.
///
/// Durable events carry a `seq` that starts at 1 and has no gaps, so a client resuming from
/// `seq = n` misses nothing and sees nothing twice. Ephemeral events (typing, WebRTC signalling)
/// are delivered live only: they carry no `seq` and are never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub at: Time,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The life of an interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for routing to find an agent.
    Queued,
    /// Offered to one or more agents, none has accepted yet.
    Offered,
    /// An agent accepted: chat flows, calls and video may be made.
    Active,
    /// The ordered teardown is running.
    Closing,
    /// Over; the transcript is complete.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegKind {
    Voice,
    Video,
}

/// Where a leg goes on the customer's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "number", rename_all = "snake_case")]
pub enum LegTarget {
    /// The customer's app (WebRTC or SIP from the app).
    App,
    /// The customer's phone, through the service's trunk.
    Phone(String),
}

/// Where the agent takes a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentDevice {
    /// The agent desktop's own WebRTC leg.
    #[default]
    Browser,
    /// The SIP softphone registered under the agent's name.
    Softphone,
    /// The agent's own mobile phone (`agents.mobile`), dialled through the service's trunk.
    Mobile,
}

/// The life of one leg. A leg is live until it is `Released`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegState {
    /// Video asked for by the customer; the agent has not decided yet.
    AwaitingApproval,
    /// Being set up by its driver (dialling, offering).
    Connecting,
    /// Media flows.
    Up,
    /// Release sent, waiting for the driver to confirm (or the teardown timeout).
    Releasing,
    /// Gone.
    Released,
}

impl LegState {
    pub(crate) fn is_live(self) -> bool {
        self != LegState::Released
    }
}

/// Why an interaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The agent disconnected the chat (no legs were up).
    AgentDisconnected,
    /// The agent ended the whole session.
    AgentEndedSession,
    /// The customer ended the chat.
    CustomerEnded,
    /// The customer's app went away.
    CustomerVanished,
    /// Nobody wrote for the service's inactivity timeout.
    Inactivity,
    /// An operator closed it (admin).
    Administrative,
    /// Nobody accepted it within the maximum wait.
    NoAgentAvailable,
    /// The customer's phone call that opened it was hung up before an agent accepted.
    Abandoned,
}

/// One step of the ordered teardown (DESIGN §1 rule 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum TeardownStep {
    /// Release these calls and wait for their answers or the timeout.
    ReleaseCalls { legs: Vec<LegId> },
    /// Then release video the same way.
    ReleaseVideo { legs: Vec<LegId> },
    /// Then disconnect the chat.
    CloseChat,
    /// Then persist the finished transcript.
    Persist,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    Delivered,
    Read,
}

/// What happened. Serialized with an `event` tag; the API translates these to the customer's
/// wire events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The interaction exists.
    Created {
        service: String,
        customer: Customer,
        context: Value,
    },
    /// The phase changed.
    Status {
        phase: Phase,
    },
    /// Routing offered the chat to an agent, with the context to pop (rule 8).
    Offered {
        agent: AgentId,
        context: Value,
    },
    /// The waiting customer's place in the queue and estimated wait.
    Queue {
        position: u32,
        ewt_s: u64,
    },
    /// An offer to an agent was withdrawn.
    Withdrawn {
        agent: AgentId,
    },
    PartyJoined {
        party: Party,
        display_name: String,
    },
    PartyLeft {
        party: Party,
        display_name: String,
    },
    /// A chat message; `msg_id` is the sender's id (the client's for retries, else generated).
    Message {
        msg_id: String,
        from: Party,
        text: String,
    },
    /// A file was sent into the chat.
    File {
        file_id: String,
        file_name: String,
        file_type: String,
        size: u64,
        from: Party,
    },
    /// Ephemeral.
    Typing {
        from: Party,
        typing: bool,
    },
    /// The customer's position.
    Location {
        latitude: f64,
        longitude: f64,
    },
    /// Free context pushed by the app (merged into the interaction's context).
    Context {
        data: Value,
    },
    /// A form the customer filled in.
    FormData {
        data: Value,
    },
    /// A delivery or read receipt for a message of the other party.
    Receipt {
        ref_msg_id: String,
        receipt: ReceiptKind,
        by: Party,
    },
    /// A leg changed state.
    Leg {
        leg: LegId,
        kind: LegKind,
        state: LegState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<LegTarget>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// On release of a leg that was up: how long it was up, in whole seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_s: Option<u64>,
    },
    /// A call was recorded: `file` is the WAV file's name in the recording directory
    /// (customer left, agent right), fetched at `/admin/v1/interactions/{id}/recordings/{file}`.
    Recording {
        leg: LegId,
        file: String,
    },
    /// A digit the customer keyed on a call (`•` when the service masks them).
    Dtmf {
        leg: LegId,
        digit: char,
    },
    /// Ephemeral WebRTC signalling from the gateway to one party.
    Signaling {
        from: Party,
        to: Party,
        data: Value,
    },
    /// Half of the inactivity timeout has passed without a message.
    TimeoutWarning {
        remaining_s: u64,
    },
    /// The inactivity timeout expired; the teardown follows.
    InactivityTimeout,
    /// The ordered teardown begins; `plan` is every step it will take.
    TeardownStarted {
        reason: EndReason,
        plan: Vec<TeardownStep>,
    },
    /// The chat is disconnected; nothing follows but the final status.
    ChatClosed {
        reason: EndReason,
    },
}

impl EventKind {
    /// Ephemeral events are delivered live and never stored or numbered.
    pub(crate) fn is_ephemeral(&self) -> bool {
        matches!(self, EventKind::Typing { .. } | EventKind::Signaling { .. })
    }
    /// The wire name (the serde tag).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Created { .. } => "created",
            EventKind::Status { .. } => "status",
            EventKind::Offered { .. } => "offered",
            EventKind::Queue { .. } => "queue",
            EventKind::Withdrawn { .. } => "withdrawn",
            EventKind::PartyJoined { .. } => "party_joined",
            EventKind::PartyLeft { .. } => "party_left",
            EventKind::Message { .. } => "message",
            EventKind::File { .. } => "file",
            EventKind::Typing { .. } => "typing",
            EventKind::Location { .. } => "location",
            EventKind::Context { .. } => "context",
            EventKind::FormData { .. } => "form_data",
            EventKind::Receipt { .. } => "receipt",
            EventKind::Leg { .. } => "leg",
            EventKind::Recording { .. } => "recording",
            EventKind::Dtmf { .. } => "dtmf",
            EventKind::Signaling { .. } => "signaling",
            EventKind::TimeoutWarning { .. } => "timeout_warning",
            EventKind::InactivityTimeout => "inactivity_timeout",
            EventKind::TeardownStarted { .. } => "teardown_started",
            EventKind::ChatClosed { .. } => "chat_closed",
        }
    }
}

//! What travels between nodes over NATS: subjects and JSON bodies.
//!
//! Per interaction `<id>`:
//! - `tandem.ix.<id>.req` — request/reply to its owner: a [`Request`] in, a [`Reply`] out.
//!   Only the owner subscribes, so "no responders" means nobody serves it right now.
//! - `tandem.ix.<id>.ev` — every event the owner publishes, after it is stored, in order.
//!
//! And for the cluster: `tandem.ix.created` (a new interaction: [`Created`]) and
//! `tandem.node.released` (a node handed its interactions over: take them now).
//!
//! Routing: `tandem.routing.ask` — request/reply to the node that leads routing (an [`Ask`]
//! in, a [`RoutingAnswer`] out); `tandem.routing.leader` — a node that starts leading says so
//! (its name); `tandem.agent.heard` — what agents' desks hear ([`Heard`]), for every node.

use serde::{Deserialize, Serialize};

use crate::bridge::{Accepted, Command, InteractionId, Party, RuleError};
use crate::chat::store::StoreError;
use crate::hub::{HubError, Summary};
use crate::routing::driver::{Answer, Snapshot};
use crate::routing::router::{RoutingError, Staff};

/// Where a node that hands its interactions over says so.
pub const RELEASED: &str = "tandem.node.released";
/// Where new interactions are announced.
pub const CREATED: &str = "tandem.ix.created";
/// Where desks ask the node that leads routing.
pub const ROUTING_ASK: &str = "tandem.routing.ask";
/// Where a node that starts leading routing says so.
pub const ROUTING_LEADER: &str = "tandem.routing.leader";
/// Where agents' desks hear what routing tells them, on every node.
pub const HEARD: &str = "tandem.agent.heard";

/// Routing's [`Answer`] as it crosses the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingAnswer {
    Snapshot(Snapshot),
    Staff(Staff),
    Done,
    Refused(RoutingError),
    Failed(WireError),
}

impl From<Answer> for RoutingAnswer {
    fn from(answer: Answer) -> RoutingAnswer {
        match answer {
            Answer::Snapshot(s) => RoutingAnswer::Snapshot(s),
            Answer::Staff(s) => RoutingAnswer::Staff(s),
            Answer::Done => RoutingAnswer::Done,
            Answer::Refused(e) => RoutingAnswer::Refused(e),
            Answer::Failed(e) => RoutingAnswer::Failed(e.into()),
        }
    }
}

impl From<RoutingAnswer> for Answer {
    fn from(answer: RoutingAnswer) -> Answer {
        match answer {
            RoutingAnswer::Snapshot(s) => Answer::Snapshot(s),
            RoutingAnswer::Staff(s) => Answer::Staff(s),
            RoutingAnswer::Done => Answer::Done,
            RoutingAnswer::Refused(e) => Answer::Refused(e),
            RoutingAnswer::Failed(e) => Answer::Failed(e.into()),
        }
    }
}

/// Whether `id` can name an interaction in a subject: what [`InteractionId::random`] makes,
/// and nothing that could reach into another subject (`.`, `*`, `>`, spaces).
pub fn subject_safe(id: &InteractionId) -> bool {
    !id.0.is_empty()
        && id.0.len() <= 64
        && id
            .0
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The owner's request subject of `id` (which must be [`subject_safe`]).
pub fn requests(id: &InteractionId) -> String {
    format!("tandem.ix.{id}.req")
}

/// The event subject of `id` (which must be [`subject_safe`]).
pub fn events(id: &InteractionId) -> String {
    format!("tandem.ix.{id}.ev")
}

/// A request to an interaction's owner.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Command { by: Party, command: Command },
    Summary,
}

/// The owner's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Accepted(Accepted),
    Summary(Box<Summary>),
    Error(WireError),
}

/// A [`HubError`] as it crosses the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireError {
    Rule(RuleError),
    NotFound,
    Closed,
    TooMany(String),
    Store(String),
    StoreUnavailable,
    NotStored,
    Moved,
    Unavailable,
}

impl From<HubError> for WireError {
    fn from(e: HubError) -> WireError {
        match e {
            HubError::Rule(r) => WireError::Rule(r),
            HubError::NotFound => WireError::NotFound,
            HubError::Closed => WireError::Closed,
            HubError::TooMany { what } => WireError::TooMany(what.into()),
            HubError::Store(s) => WireError::Store(s.to_string()),
            HubError::StoreUnavailable => WireError::StoreUnavailable,
            HubError::NotStored => WireError::NotStored,
            HubError::Moved => WireError::Moved,
            HubError::Unavailable => WireError::Unavailable,
        }
    }
}

impl From<WireError> for HubError {
    fn from(e: WireError) -> HubError {
        match e {
            WireError::Rule(r) => HubError::Rule(r),
            WireError::NotFound => HubError::NotFound,
            WireError::Closed => HubError::Closed,
            WireError::TooMany(what) => HubError::TooMany {
                what: if what == "device" { "device" } else { "node" },
            },
            WireError::Store(message) => {
                HubError::Store(StoreError::Database(sqlx::Error::Protocol(message)))
            }
            WireError::StoreUnavailable => HubError::StoreUnavailable,
            WireError::NotStored => HubError::NotStored,
            // The node that ran it moved it on while answering: to the asker, the same as a
            // node that does not answer yet.
            WireError::Moved | WireError::Unavailable => HubError::Unavailable,
        }
    }
}

/// A new interaction, announced to the cluster.
#[derive(Debug, Serialize, Deserialize)]
pub struct Created {
    pub id: InteractionId,
    pub service: String,
    pub node: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_name_subjects() {
        assert!(subject_safe(&InteractionId::fresh()));
        for bad in ["", "a.b", "a*", ">", "a b", &"x".repeat(65)] {
            assert!(!subject_safe(&InteractionId(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn routing_asks_and_answers_survive_the_wire() {
        use crate::bridge::AgentId;
        use crate::routing::driver::Ask;
        use crate::routing::router::Presence;
        let ask = Ask::Tabs {
            agent: AgentId("alice".into()),
            node: "a".into(),
            tabs: 2,
            seq: 7,
        };
        let back: Ask = serde_json::from_slice(&serde_json::to_vec(&ask).unwrap()).unwrap();
        assert_eq!(back, ask);
        let chat = InteractionId::fresh();
        let snapshot = Snapshot {
            presence: Presence::Available,
            load: 1,
            offers: vec![chat.clone()],
            chats: vec![],
            first_messages: [(chat.clone(), "hello".to_string())].into(),
        };
        let wire = RoutingAnswer::from(Answer::Snapshot(snapshot));
        let back: RoutingAnswer =
            serde_json::from_slice(&serde_json::to_vec(&wire).unwrap()).unwrap();
        assert!(matches!(
            Answer::from(back),
            Answer::Snapshot(s) if s.offers == [chat.clone()] && s.first_messages[&chat] == "hello"
        ));
        for answer in [
            Answer::Refused(RoutingError::OfferNotAvailable),
            Answer::Failed(HubError::Closed),
        ] {
            let wire = serde_json::to_vec(&RoutingAnswer::from(answer)).unwrap();
            let back: RoutingAnswer = serde_json::from_slice(&wire).unwrap();
            assert!(matches!(
                Answer::from(back),
                Answer::Refused(RoutingError::OfferNotAvailable) | Answer::Failed(HubError::Closed)
            ));
        }
    }

    #[test]
    fn commands_and_answers_survive_the_wire() {
        let request = Request::Command {
            by: Party::Customer,
            command: Command::SendMessage {
                msg_id: Some("m1".into()),
                text: "hello".into(),
            },
        };
        let back: Request = serde_json::from_slice(&serde_json::to_vec(&request).unwrap()).unwrap();
        assert!(matches!(
            back,
            Request::Command { by: Party::Customer, command: Command::SendMessage { text, .. } }
                if text == "hello"
        ));
        for error in [
            WireError::Rule(RuleError::MessageTooLong { max: 10 }),
            WireError::Closed,
            WireError::TooMany("device".into()),
        ] {
            let reply = Reply::Error(error.clone());
            let back: Reply = serde_json::from_slice(&serde_json::to_vec(&reply).unwrap()).unwrap();
            assert!(matches!(back, Reply::Error(e) if e == error));
        }
    }
}

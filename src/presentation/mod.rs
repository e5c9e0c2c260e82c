//! What each audience sees of an interaction's events: one function per audience over the
//! same [`Event`](crate::bridge::Event), so the rules about who may see what live here and
//! nowhere else.
//!
//! - [`customer::view`]: the customer's app and web chat (the Bright Pattern Mobile/Web
//!   Messaging API v1 events, plus our additions), over the long poll, the WebSocket and the
//!   history.
//! - [`agent::view`]: the desk of the agent who has the chat, live and in its history; routing
//!   adds what is addressed to one agent ([`agent::offer`], [`agent::withdrawn`] …).
//! - [`operator::view`]: a mobile operator's page on the link of an SMS offer.
//! - [`transcript::line`]: the transcript people read afterwards.
//!
//! The rules, in one place:
//! - Routing is the staff's business: offers, withdrawals and queue bookkeeping reach agents and
//!   the transcript, never the customer (who sees only the queue position and the wait).
//! - Context and location the app pushed, the keys the customer pressed during a call, and
//!   recordings are for the staff and the transcript; the customer's app already knows its own.
//! - Signalling reaches only the party it is addressed to, and is never written down; nor are
//!   typing notices and read receipts, which say nothing to a later reader.
//! - The customer's device id is their credential: no view shows it to an operator.
//! - Every durable event a view shows carries its `seq` (to resume after) and its time.

pub mod agent;
pub mod customer;
pub mod operator;
pub mod transcript;

pub(crate) use crate::bridge::{location_context as location, merge_context};

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::bridge::{AgentId, Customer, Event, EventKind, InteractionId, LegId, Party, Time};

    const AT: u64 = 1_704_094_200_000;

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            seq: Some(seq),
            at: Time(AT),
            kind,
        }
    }

    fn opened() -> Event {
        event(
            1,
            EventKind::Created {
                service: "claims".into(),
                customer: Customer {
                    device: "device-secret".into(),
                    name: Some("Ann".into()),
                    phone: Some("+15550100".into()),
                },
                context: json!({"policy": "P-1"}),
            },
        )
    }

    /// What the three audiences see of `kind` after the chat's opening.
    fn seen(kind: EventKind) -> (Option<Value>, Option<Value>, Option<String>) {
        let id = InteractionId("chat-1".into());
        let mut scene = agent::Scene::new(id.clone(), String::new());
        agent::view(&mut scene, &opened().kind);
        let event = event(7, kind);
        let desk =
            agent::view(&mut scene, &event.kind).map(|v| agent::stamp(v, &id, event.seq, event.at));
        (
            customer::view(&event),
            desk,
            transcript::line(&event, "Ann"),
        )
    }

    #[test]
    fn routing_is_for_the_staff_and_the_transcript() {
        let (customer, desk, line) = seen(EventKind::Offered {
            agent: AgentId::from("alice"),
            context: json!({}),
        });
        assert_eq!(
            customer, None,
            "the customer never sees who was offered the chat"
        );
        assert_eq!(
            desk, None,
            "the offer goes to the offered agent, not the chat's desk"
        );
        assert_eq!(
            line.as_deref(),
            Some("[2024-01-01 07:30:00] * offered to agent alice")
        );
    }

    #[test]
    fn signalling_reaches_only_its_addressee_and_is_never_written_down() {
        let to_agent = EventKind::Signaling {
            from: Party::System,
            to: Party::Agent(AgentId::from("alice")),
            data: json!({"type": "OFFER_CALL", "sdp": "v=0"}),
        };
        assert_eq!(seen(to_agent), (None, None, None));
        let to_customer = EventKind::Signaling {
            from: Party::System,
            to: Party::Customer,
            data: json!({"type": "OFFER_CALL", "sdp": "v=0"}),
        };
        let (customer, desk, line) = seen(to_customer);
        assert_eq!(
            customer.unwrap(),
            json!({"event": "chat_session_signaling", "party_id": "system",
                   "data": {"type": "OFFER_CALL", "sdp": "v=0"}, "seq": 7, "timestamp": AT})
        );
        assert_eq!((desk, line), (None, None));
    }

    #[test]
    fn keys_and_context_are_for_the_staff() {
        let (customer, desk, line) = seen(EventKind::Dtmf {
            leg: LegId(1),
            digit: '5',
        });
        assert_eq!(customer, None);
        assert_eq!(
            desk.unwrap(),
            json!({"event": "dtmf", "leg": 1, "digit": "5", "chat_id": "chat-1", "seq": 7,
                   "timestamp": AT})
        );
        assert_eq!(
            line.as_deref(),
            Some("[2024-01-01 07:30:00] * call leg-1: the customer keyed 5")
        );

        let (customer, desk, line) = seen(EventKind::Location {
            latitude: 48.5,
            longitude: 2.25,
        });
        assert_eq!(customer, None);
        let desk = desk.unwrap();
        assert_eq!(
            desk["context"],
            json!({"policy": "P-1", "location": {"latitude": 48.5, "longitude": 2.25}}),
            "the desk sees the context merged as the interaction merges it"
        );
        assert_eq!(
            line.as_deref(),
            Some("[2024-01-01 07:30:00] * location 48.5, 2.25")
        );
    }

    #[test]
    fn typing_is_shown_live_to_the_other_side_only() {
        let (customer, desk, line) = seen(EventKind::Typing {
            from: Party::Customer,
            typing: true,
        });
        assert_eq!(
            customer, None,
            "the customer is not told of their own typing"
        );
        assert_eq!(desk.unwrap()["event"], "typing");
        assert_eq!(line, None);
    }

    #[test]
    fn a_message_is_seen_by_everyone_in_their_own_words() {
        let (customer, desk, line) = seen(EventKind::Message {
            msg_id: "m1".into(),
            from: Party::Customer,
            text: "my car".into(),
        });
        assert_eq!(
            customer.unwrap(),
            json!({"event": "chat_session_message", "msg_id": "m1", "msg": "my car",
                   "party_id": "customer", "seq": 7, "timestamp": AT})
        );
        assert_eq!(
            desk.unwrap(),
            json!({"event": "message", "msg_id": "m1", "from": "customer", "msg": "my car",
                   "chat_id": "chat-1", "seq": 7, "timestamp": AT})
        );
        assert_eq!(line.as_deref(), Some("[2024-01-01 07:30:00] Ann: my car"));
    }

    #[test]
    fn an_operator_never_sees_the_customers_device() {
        let me = AgentId::from("olga");
        let page = operator::view(&opened(), &me, "tok").unwrap();
        assert_eq!(
            page,
            json!({"event": "created", "service": "claims", "context": {"policy": "P-1"},
                   "customer": {"name": "Ann", "phone": "+15550100"}, "seq": 1, "at": AT})
        );
        assert!(!page.to_string().contains("device-secret"));
    }

    #[test]
    fn the_desks_history_is_its_live_view() {
        let id = InteractionId("chat-1".into());
        let joined = event(
            2,
            EventKind::PartyJoined {
                party: Party::Agent(AgentId::from("alice")),
                display_name: "Alice".into(),
            },
        );
        let history = agent::history(&id, &[opened(), joined]);
        assert_eq!(
            history,
            vec![json!({"event": "accepted", "service": "claims",
                        "customer": {"device": "device-secret", "name": "Ann", "phone": "+15550100"},
                        "context": {"policy": "P-1"}, "display_name": "Alice",
                        "chat_id": "chat-1", "seq": 2, "timestamp": AT})]
        );
    }
}

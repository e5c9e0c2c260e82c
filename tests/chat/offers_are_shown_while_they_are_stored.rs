//! Routing's offers acknowledge nothing: an agent sees an offer while the write that stores it
//! is still under way, a commit sooner. A message, which its sender is told was accepted, is
//! heard of only once it is stored.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tandem::bridge::{AgentId, Command, Customer, Event, EventKind, Party, Phase};
use tandem::config::Config;
use tokio::sync::broadcast;

use crate::stalling::{StallingJournal, stalling_hub};

/// Long enough that a held write is waited for rather than given up on.
const PATIENCE: Duration = Duration::from_secs(600);
/// How long any condition may take to come true on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// The next event heard, within the deadline.
async fn heard(live: &mut broadcast::Receiver<Arc<Event>>, what: &str) -> Arc<Event> {
    tokio::time::timeout(DEADLINE, live.recv())
        .await
        .unwrap_or_else(|_| panic!("{what} is not heard"))
        .expect("the interaction's events go on")
}

/// Waits until the journal holds `n` writes.
async fn until_held(journal: &StallingJournal, n: usize) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while journal.held() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} writes are not held"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn offers_are_shown_while_they_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(
        "[[services]]\nname = \"claims\"\nentries = [\"claims-app\"]\ndepartment = \"claims\"\n",
    )
    .unwrap();
    let (hub, journal) = stalling_hub(config, dir.path(), PATIENCE, None).await;
    let store = hub.store().clone();
    let customer = Customer {
        device: "device-1".into(),
        name: None,
        phone: None,
    };
    let (id, _) = hub.create("claims", customer, json!({})).await.unwrap();
    let handle = hub.get(&id).expect("the chat runs here");
    let mut live = handle.subscribe(0).await.unwrap().live;

    // Routing offers the chat while the store holds the chat's writes.
    journal.stall(&id);
    let offering = tokio::spawn({
        let handle = handle.clone();
        async move {
            let offer = Command::Offer {
                agent: AgentId::from("alice"),
            };
            handle.command(Party::System, offer).await
        }
    });
    let status = heard(&mut live, "the chat's new phase").await;
    assert!(
        matches!(
            status.kind,
            EventKind::Status {
                phase: Phase::Offered
            }
        ),
        "{status:?}"
    );
    let offered = heard(&mut live, "the offer").await;
    assert!(
        matches!(&offered.kind, EventKind::Offered { agent, .. } if agent.0 == "alice"),
        "{offered:?}"
    );
    assert_eq!(journal.held(), 1, "heard while its write is held");
    assert!(
        !store
            .events(&id, 0)
            .await
            .unwrap()
            .iter()
            .any(|e| matches!(e.kind, EventKind::Offered { .. })),
        "the offer is not stored yet"
    );
    assert!(!offering.is_finished(), "the offer is answered once stored");

    // The write goes on: the offer is stored as it was heard, then answered.
    journal.recover();
    let accepted = offering.await.unwrap().expect("the offer is carried out");
    assert_eq!(accepted.seq, offered.seq);
    let stored = store.events(&id, 0).await.unwrap();
    assert!(
        stored
            .iter()
            .any(|e| e.seq == offered.seq && e.kind == offered.kind),
        "the offer is stored as it was heard: {stored:?}"
    );

    // A customer's message is heard of only once it is stored.
    journal.stall(&id);
    let sending = tokio::spawn({
        let handle = handle.clone();
        async move {
            let message = Command::SendMessage {
                msg_id: Some("m-1".into()),
                text: "hello".into(),
            };
            handle.command(Party::Customer, message).await
        }
    });
    until_held(&journal, 1).await;
    assert!(
        matches!(live.try_recv(), Err(broadcast::error::TryRecvError::Empty)),
        "nothing is heard of the message while its write is held"
    );
    journal.recover();
    let message = heard(&mut live, "the message").await;
    assert!(
        matches!(&message.kind, EventKind::Message { text, .. } if text == "hello"),
        "{message:?}"
    );
    assert!(
        store
            .events(&id, 0)
            .await
            .unwrap()
            .iter()
            .any(|e| e.seq == message.seq),
        "the message was stored before it was heard"
    );
    sending.await.unwrap().expect("the message is accepted");
}

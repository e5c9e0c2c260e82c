//! One store scenario, run against every backend.

use std::sync::Arc;

use tandem::bridge::{Event, EventKind, InteractionId, Phase, Time};
use tandem::chat::store::{FileRecord, InteractionRecord, MobileLinkRecord, Store, Write};
use tandem::metrics::Metrics;

fn event(seq: u64, text: &str) -> Event {
    Event {
        seq: Some(seq),
        at: Time(1_700_000_000_000 + seq),
        kind: EventKind::Message {
            msg_id: format!("c-{seq}"),
            from: tandem::bridge::Party::Customer,
            text: text.into(),
        },
    }
}

fn record(id: &str) -> InteractionRecord {
    InteractionRecord {
        id: InteractionId::from(id),
        service: "claims".into(),
        device: "dev-1".into(),
        phase: Phase::Queued,
        created_at: 1_700_000_000_000,
        closed_at: None,
        last_seq: 0,
    }
}

pub async fn scenario(url: &str) {
    let metrics = Arc::new(Metrics::default());
    let store = Store::open(url, 4, metrics.clone()).await.expect("open");
    store.ping().await.unwrap();
    let id = InteractionId::from("i-1");
    store
        .write(vec![
            Write::NewInteraction(record("i-1")),
            Write::Event(id.clone(), event(1, "hello")),
            Write::Event(
                id.clone(),
                event(2, "a long message ".repeat(1000).as_str()),
            ),
            Write::Progress {
                id: id.clone(),
                phase: Phase::Active,
                last_seq: 2,
                closed_at: None,
            },
        ])
        .await
        .unwrap();

    // Many writers at once are folded into group commits, and all of them land.
    let mut tasks = Vec::new();
    for n in 0..50u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = InteractionId(format!("many-{n}"));
            store
                .write(vec![
                    Write::NewInteraction(record(&id.0)),
                    Write::Event(id, event(1, "hi")),
                ])
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }

    // A duplicate seq fails its own write only.
    let dup = store
        .write(vec![Write::Event(id.clone(), event(2, "again"))])
        .await;
    assert!(dup.is_err());

    let events = store.events(&id, 0).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], event(1, "hello"));
    assert_eq!(store.events(&id, 1).await.unwrap().len(), 1);
    let rec = store.interaction(&id).await.unwrap().unwrap();
    assert_eq!(rec.phase, Phase::Active);
    assert_eq!(rec.last_seq, 2);
    assert_eq!(store.open_interactions().await.unwrap().len(), 51);

    // A burst of events in one write (more than one multi-row statement holds) lands whole.
    let bulk = InteractionId::from("bulk");
    let mut writes = vec![Write::NewInteraction(record("bulk"))];
    writes.extend((1..=90).map(|seq| Write::Event(bulk.clone(), event(seq, "offer"))));
    // Rows' progress is written in multi-row statements too; a row's last change stands.
    let progress = |id: &InteractionId, phase, last_seq| Write::Progress {
        id: id.clone(),
        phase,
        last_seq,
        closed_at: None,
    };
    writes.push(progress(&bulk, Phase::Offered, 45));
    writes
        .extend((0..50).map(|n| progress(&InteractionId(format!("many-{n}")), Phase::Offered, 1)));
    writes.push(progress(&bulk, Phase::Active, 90));
    store.write(writes).await.unwrap();
    let stored = store.events(&bulk, 0).await.unwrap();
    assert_eq!(
        stored,
        (1..=90).map(|seq| event(seq, "offer")).collect::<Vec<_>>()
    );
    let rec = store.interaction(&bulk).await.unwrap().unwrap();
    assert_eq!((rec.phase, rec.last_seq), (Phase::Active, 90));
    let rec = store
        .interaction(&InteractionId::from("many-49"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rec.phase, rec.last_seq), (Phase::Offered, 1));

    // Mobile links: stored, updated in place, found by token or offer, forgotten when old.
    let link = |token: &str, state: &str, session: Option<&str>, sent_at: u64| MobileLinkRecord {
        token: token.into(),
        chat: id.clone(),
        agent: "olga".into(),
        state: state.into(),
        session: session.map(Into::into),
        sent_at,
    };
    store
        .write(vec![
            Write::MobileLink(link("old", "expired", None, 10)),
            Write::MobileLink(link("t-1", "offered", None, 1_000)),
        ])
        .await
        .unwrap();
    let claimed = link("t-1", "claimed", Some("key"), 1_000);
    store
        .write(vec![Write::MobileLink(claimed.clone())])
        .await
        .unwrap();
    assert_eq!(
        store.mobile_link("t-1").await.unwrap(),
        Some(claimed.clone())
    );
    assert_eq!(
        store.mobile_link_for_offer(&id, "olga").await.unwrap(),
        Some(claimed)
    );
    store
        .write(vec![Write::ForgetMobileLinks { sent_before: 500 }])
        .await
        .unwrap();
    assert_eq!(store.mobile_link("old").await.unwrap(), None);
    assert!(store.mobile_link("t-1").await.unwrap().is_some());

    let file = FileRecord {
        id: "f-1".into(),
        sha256: "ab".repeat(32),
        name: "crash.jpg".into(),
        content_type: "image/jpeg".into(),
        size: 1234,
        device: "dev-1".into(),
        service: "claims".into(),
        created_at: 1,
    };
    store
        .write(vec![Write::NewFile(file.clone())])
        .await
        .unwrap();
    assert!(!store.is_linked("f-1", &id).await.unwrap());
    let link = Write::Link {
        file_id: "f-1".into(),
        id: id.clone(),
    };
    store.write(vec![link.clone(), link]).await.unwrap();
    assert!(store.is_linked("f-1", &id).await.unwrap());
    assert_eq!(store.file("f-1").await.unwrap(), Some(file));
    assert_eq!(store.file("nope").await.unwrap(), None);

    store
        .write(vec![Write::Progress {
            id: id.clone(),
            phase: Phase::Closed,
            last_seq: 2,
            closed_at: Some(1_700_000_001_000),
        }])
        .await
        .unwrap();
    drop(store);

    // Reopening (and migrating again) keeps everything.
    let store = Store::open(url, 2, metrics.clone()).await.expect("reopen");
    assert_eq!(store.open_interactions().await.unwrap().len(), 51);
    let rec = store.interaction(&id).await.unwrap().unwrap();
    assert_eq!(rec.phase, Phase::Closed);
    assert_eq!(rec.closed_at, Some(1_700_000_001_000));
    assert_eq!(store.events(&id, 0).await.unwrap().len(), 2);
    assert_eq!(store.events(&bulk, 0).await.unwrap().len(), 90);
    assert!(store.mobile_link("t-1").await.unwrap().is_some());
    assert_eq!(store.recent_interactions(5).await.unwrap().len(), 5);
    assert!(metrics.render().contains("tandem_store_latency_seconds"));
}

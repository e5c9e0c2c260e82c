//! Files are kept `files.retention_days` after the last chat they were sent into ended (or
//! after their upload, if never sent), and never while a chat of theirs is open; bytes shared
//! with a file still kept stay on disk. The sweep's decision on a virtual clock, over what the
//! real store (SQLite) says of the files, then carried out on the store and the disk.

use std::sync::Arc;
use std::time::Duration;

use tandem::bridge::{InteractionId, Phase};
use tandem::chat::files::FileStore;
use tandem::chat::retention::sweep;
use tandem::chat::store::{FileRecord, InteractionRecord, Store, Write};
use tandem::metrics::Metrics;

const DAY: u64 = 86_400_000;
const T0: u64 = 1_700_000_000_000;

fn chat(id: &str, closed_at: Option<u64>) -> Write {
    Write::NewInteraction(InteractionRecord {
        id: InteractionId::from(id),
        service: "claims".into(),
        device: "dev-1".into(),
        phase: if closed_at.is_some() {
            Phase::Closed
        } else {
            Phase::Active
        },
        created_at: T0,
        closed_at,
        last_seq: 0,
    })
}

fn file(id: &str, sha256: &str) -> Write {
    Write::NewFile(FileRecord {
        id: id.into(),
        sha256: sha256.into(),
        name: format!("{id}.png"),
        content_type: "image/png".into(),
        size: 10,
        device: "dev-1".into(),
        service: "claims".into(),
        created_at: T0,
    })
}

fn link(file_id: &str, chat: &str) -> Write {
    Write::Link {
        file_id: file_id.into(),
        id: InteractionId::from(chat),
    }
}

#[tokio::test]
async fn the_sweep_deletes_files_of_long_ended_chats_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/tandem.db", dir.path().display());
    let store = Store::open(&url, 2, Arc::new(Metrics::default()))
        .await
        .unwrap();
    let disk = FileStore::new(dir.path().join("files"));
    let shared = disk.put(b"the same picture").unwrap();
    let own = disk.put(b"a picture of its own").unwrap();
    let fresh = disk.put(b"a new picture").unwrap();
    store
        .write(vec![
            chat("ended-early", Some(T0 + DAY)),
            chat("ended-late", Some(T0 + 20 * DAY)),
            chat("open", None),
            file("in-ended-chat", &own),
            link("in-ended-chat", "ended-early"),
            file("in-two-chats", &shared),
            link("in-two-chats", "ended-early"),
            link("in-two-chats", "ended-late"),
            file("same-bytes-in-open-chat", &shared),
            link("same-bytes-in-open-chat", "open"),
            file("never-sent", &fresh),
        ])
        .await
        .unwrap();
    let uses = store.file_uses().await.unwrap();
    assert_eq!(uses.len(), 4);
    let retention = Duration::from_millis(30 * DAY);

    // Before any retention ran out, nothing goes.
    let early = sweep(&uses, T0 + 29 * DAY, retention);
    assert!(early.records.is_empty(), "{early:?}");
    // A month after the first chat ended and the upload: that chat's file and the unsent one.
    let mut month = sweep(&uses, T0 + 31 * DAY, retention);
    month.records.sort();
    assert_eq!(month.records, ["in-ended-chat", "never-sent"]);
    assert_eq!(month.blobs.len(), 2);
    // Much later: the file of two chats too, but its bytes stay for the open chat's file.
    let late = sweep(&uses, T0 + 400 * DAY, retention);
    assert!(late.records.contains(&"in-two-chats".to_string()));
    assert!(
        !late
            .records
            .contains(&"same-bytes-in-open-chat".to_string())
    );
    assert!(!late.blobs.contains(&shared), "{late:?}");

    // Carried out: records leave the store, the bytes no record names leave the disk.
    store
        .write(vec![Write::ForgetFiles {
            ids: late.records.clone(),
        }])
        .await
        .unwrap();
    for blob in &late.blobs {
        disk.remove(blob).unwrap();
    }
    assert!(store.file("in-ended-chat").await.unwrap().is_none());
    assert!(store.file("never-sent").await.unwrap().is_none());
    assert!(
        store
            .file("same-bytes-in-open-chat")
            .await
            .unwrap()
            .is_some()
    );
    assert!(!disk.path(&own).exists());
    assert!(!disk.path(&fresh).exists());
    assert!(disk.path(&shared).exists());
    let open = InteractionId::from("open");
    assert!(
        store
            .is_linked("same-bytes-in-open-chat", &open)
            .await
            .unwrap()
    );
    assert_eq!(store.chat_files(&open).await.unwrap(), (1, 10));
    assert_eq!(store.file_uses().await.unwrap().len(), 1);
}

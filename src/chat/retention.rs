//! How long uploaded files are kept, and the periodic sweep that deletes the rest.
//!
//! A file belongs to the chats it was sent into; once all of them have ended, it is kept
//! `files.retention_days` after the last one ended, then its record goes and, when no other
//! record shares its bytes (the store is content-addressed), its bytes too. A file uploaded
//! but never sent into a chat is kept as long after its upload. A file in a chat still open
//! is never deleted.
//!
//! [`sweep`] is the decision alone, over what the store says of each file and the time: pure,
//! and tested on a virtual clock. [`run`] is the thin driver that asks the store every
//! `files.sweep_interval_s` and deletes what the decision names.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::files::FileStore;
use super::store::{Store, Write};

/// What the store knows of a file's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUse {
    pub id: String,
    pub sha256: String,
    /// When it was uploaded (ms since the epoch).
    pub created_at: u64,
    /// Chats it was sent into.
    pub chats: u64,
    /// Of those, chats still open.
    pub open_chats: u64,
    /// When the last of its chats ended (ms), if any did.
    pub last_closed_at: Option<u64>,
}

/// What a sweep deletes: file records, and the bytes no remaining record needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    pub records: Vec<String>,
    pub blobs: Vec<String>,
}

/// The files past their retention at `now` (ms), and the bytes that go with them.
pub fn sweep(files: &[FileUse], now: u64, retention: Duration) -> Sweep {
    let keep_ms = retention.as_millis() as u64;
    let expired = |f: &FileUse| {
        if f.open_chats > 0 {
            return false;
        }
        let since = match (f.chats, f.last_closed_at) {
            (0, _) => f.created_at,
            (_, Some(closed)) => closed,
            // Sent into chats that are gone from the store: as old as its upload.
            (_, None) => f.created_at,
        };
        since.saturating_add(keep_ms) <= now
    };
    let mut out = Sweep::default();
    let mut needed: HashSet<&str> = HashSet::new();
    let mut dropped: HashSet<&str> = HashSet::new();
    for file in files {
        if expired(file) {
            out.records.push(file.id.clone());
            dropped.insert(&file.sha256);
        } else {
            needed.insert(&file.sha256);
        }
    }
    let mut blobs: Vec<String> = dropped
        .into_iter()
        .filter(|sha| !needed.contains(sha))
        .map(str::to_string)
        .collect();
    blobs.sort();
    out.blobs = blobs;
    out
}

/// Sweeps every `interval` until `stop`: files past `retention` leave the store, then the disk.
pub(crate) async fn run(
    store: Store,
    files: FileStore,
    retention: Duration,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = sweep_once(&store, &files, retention).await {
            tracing::warn!("file retention sweep: {e}");
        }
    }
}

async fn sweep_once(
    store: &Store,
    files: &FileStore,
    retention: Duration,
) -> Result<(), super::store::StoreError> {
    let uses = store.file_uses().await?;
    let now = crate::bridge::Time::now().millis();
    let Sweep { records, blobs } = sweep(&uses, now, retention);
    if records.is_empty() {
        return Ok(());
    }
    // Records first: a file whose record is gone is never served, whatever the disk holds.
    store
        .write(vec![Write::ForgetFiles {
            ids: records.clone(),
        }])
        .await?;
    let files = files.clone();
    let removed = tokio::task::spawn_blocking(move || {
        blobs.iter().filter(|sha| files.remove(sha).is_ok()).count()
    })
    .await
    .unwrap_or(0);
    tracing::info!(records = records.len(), removed, "expired files deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    fn file(
        id: &str,
        sha: &str,
        created: u64,
        chats: u64,
        open: u64,
        closed: Option<u64>,
    ) -> FileUse {
        FileUse {
            id: id.into(),
            sha256: sha.into(),
            created_at: created,
            chats,
            open_chats: open,
            last_closed_at: closed,
        }
    }

    #[test]
    fn files_go_retention_after_their_last_chat_ended_and_never_while_one_is_open() {
        let retention = Duration::from_millis(30 * DAY);
        let files = [
            file("ended-long-ago", "a", 0, 1, 0, Some(DAY)),
            file("ended-lately", "b", 0, 1, 0, Some(20 * DAY)),
            file("still-open", "c", 0, 2, 1, Some(DAY)),
            file("never-sent", "d", 0, 0, 0, None),
            file("never-sent-new", "e", 25 * DAY, 0, 0, None),
        ];
        let at = |days| sweep(&files, days * DAY, retention).records;
        assert!(at(30).contains(&"never-sent".to_string()));
        assert!(!at(30).contains(&"ended-long-ago".to_string()));
        assert_eq!(at(31), ["ended-long-ago", "never-sent"]);
        assert_eq!(at(50), ["ended-long-ago", "ended-lately", "never-sent"]);
        assert_eq!(
            at(1000),
            [
                "ended-long-ago",
                "ended-lately",
                "never-sent",
                "never-sent-new"
            ]
        );
    }

    #[test]
    fn shared_bytes_stay_while_a_record_still_needs_them() {
        let retention = Duration::from_millis(DAY);
        let files = [
            file("old", "same", 0, 1, 0, Some(0)),
            file("kept", "same", 0, 1, 1, None),
            file("alone", "own", 0, 0, 0, None),
        ];
        let out = sweep(&files, 10 * DAY, retention);
        assert_eq!(out.records, ["old", "alone"]);
        assert_eq!(out.blobs, ["own"]);
        // Once the other record goes too, so do the bytes.
        let later = [file("kept", "same", 0, 1, 0, Some(DAY))];
        assert_eq!(sweep(&later, 10 * DAY, retention).blobs, ["same"]);
    }
}

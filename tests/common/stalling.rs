//! A journal (the hub's way to the store) whose writes for chosen interactions wait until the
//! test lets them go: a locked row or a slow disk, on demand.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tandem::bridge::{Action, InteractionId};
use tandem::chat::store::{Store, StoreError, Write};
use tandem::config::Config;
use tandem::hub::{Hub, Journal};
use tandem::metrics::Metrics;
use tokio::sync::{mpsc, watch};

/// A hub of `config` on a fresh SQLite store in `dir`, writing through a stalling journal;
/// commands wait `patience` for their commit.
pub async fn stalling_hub(
    mut config: Config,
    dir: &Path,
    patience: Duration,
    legs: Option<mpsc::UnboundedSender<(InteractionId, Action)>>,
) -> (Hub, Arc<StallingJournal>) {
    config.store.url = format!("sqlite://{}/tandem.db", dir.display());
    let metrics = Arc::new(Metrics::default());
    let store = Store::open(&config.store.url, 4, metrics.clone())
        .await
        .unwrap();
    let journal = StallingJournal::new(store.clone());
    let hub = Hub::open_with_journal(
        Arc::new(config),
        store,
        journal.clone(),
        patience,
        metrics,
        legs,
    )
    .await
    .unwrap();
    (hub, journal)
}

/// The store, except that the writes of the stalled interactions wait until they are let go.
pub struct StallingJournal {
    store: Store,
    stalled: Mutex<HashSet<InteractionId>>,
    /// Counts the times the test let the held writes go.
    let_go: watch::Sender<u64>,
    /// Writes waiting now.
    held: Arc<AtomicUsize>,
}

fn interaction_of(write: &Write) -> Option<&InteractionId> {
    match write {
        Write::Event(id, _) | Write::Progress { id, .. } | Write::Link { id, .. } => Some(id),
        Write::NewInteraction(record) => Some(&record.id),
        _ => None,
    }
}

impl StallingJournal {
    pub fn new(store: Store) -> Arc<StallingJournal> {
        Arc::new(StallingJournal {
            store,
            stalled: Mutex::new(HashSet::new()),
            let_go: watch::channel(0).0,
            held: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The interaction's writes from now on wait.
    pub fn stall(&self, id: &InteractionId) {
        self.stalled.lock().unwrap().insert(id.clone());
    }

    /// The store takes the held writes, and those that come after.
    pub fn recover(&self) {
        self.stalled.lock().unwrap().clear();
        self.let_go.send_modify(|g| *g += 1);
    }

    /// How many writes are waiting to be let go now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

impl Journal for StallingJournal {
    fn write(&self, writes: Vec<Write>) -> BoxFuture<'static, Result<(), StoreError>> {
        let store = self.store.clone();
        let stalled = {
            let stalled = self.stalled.lock().unwrap();
            writes
                .iter()
                .filter_map(interaction_of)
                .any(|id| stalled.contains(id))
        };
        let mut let_go = self.let_go.subscribe();
        let generation = *let_go.borrow();
        let held = self.held.clone();
        Box::pin(async move {
            if stalled {
                held.fetch_add(1, Ordering::SeqCst);
                let _ = let_go.wait_for(|g| *g > generation).await;
                held.fetch_sub(1, Ordering::SeqCst);
            }
            store.write(writes).await
        })
    }
}

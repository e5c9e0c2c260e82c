//! Registrations shared between nodes through the store.
//!
//! On a PostgreSQL store (what several nodes share) every node writes the changes its
//! registrar makes to the `registrations` table and tells the others with `NOTIFY`; each node
//! listens, reads the rows of the address of record that changed and hands them to its
//! registrar, whose lookups fall back to them when the node has no binding of its own. So a
//! softphone registered through one node can be called from any other (and from the same
//! node after it restarted and forgot its own bindings), and the INVITE path reads memory,
//! never waits for the database. A full read every [`RESYNC`] (and whenever
//! the listening connection was lost and came back) heals a missed notification, and sweeps
//! expired rows. The choice is automatic: nodes on one PostgreSQL database that did not share
//! their registrations would reach an agent or not depending on which node a call lands on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::registrar::{Binding, BindingChange};
use crate::chat::store::{RegistrationChange, RegistrationRecord, Store};

/// The `NOTIFY` channel.
const CHANNEL: &str = "tandem_registrations";

/// How often everything is read again.
const RESYNC: Duration = Duration::from_secs(30);

/// Changes written at once; more wait for the next batch.
const QUEUE: usize = 4096;

/// `NOTIFY` payloads are limited to 8000 bytes; past this a notification asks for a full read.
const MAX_PAYLOAD: usize = 7000;

/// What the registrar learns of other nodes' bindings.
#[derive(Debug)]
pub(crate) enum Elsewhere {
    /// Every binding in the store, replacing what was known.
    All(HashMap<String, Vec<Binding>>),
    /// The bindings in the store of one address of record.
    Aor(String, Vec<Binding>),
    /// Another node removed a contact of an address of record (every contact for `None`).
    Forget(String, Option<String>),
}

/// The node's end of the sharing: changes go in, what other nodes did comes out.
pub(crate) struct Sharing {
    pub changes: mpsc::Sender<Vec<BindingChange>>,
    pub elsewhere: mpsc::Receiver<Elsewhere>,
}

/// What one notification says.
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Notice {
    /// The node that made the changes (it does not read its own).
    node: String,
    /// Addresses of record whose bindings changed.
    #[serde(default)]
    aors: Vec<String>,
    /// Contacts removed, `(aor, contact)`; no contact means all of them.
    #[serde(default)]
    removed: Vec<(String, Option<String>)>,
    /// Too much to say: read everything.
    #[serde(default)]
    all: bool,
}

impl Notice {
    fn of(node: &str, changes: &[BindingChange]) -> Notice {
        let mut notice = Notice {
            node: node.to_string(),
            ..Notice::default()
        };
        for change in changes {
            let aor = match change {
                BindingChange::Bound { aor, .. } => aor,
                BindingChange::Unbound { aor, contact } => {
                    notice.removed.push((aor.clone(), Some(contact.clone())));
                    aor
                }
                BindingChange::UnboundAll { aor } => {
                    notice.removed.push((aor.clone(), None));
                    aor
                }
            };
            if !notice.aors.contains(aor) {
                notice.aors.push(aor.clone());
            }
        }
        notice
    }

    fn payload(&self) -> String {
        let text = serde_json::to_string(self).expect("a notice serializes");
        if text.len() <= MAX_PAYLOAD {
            return text;
        }
        let all = Notice {
            node: self.node.clone(),
            all: true,
            ..Notice::default()
        };
        serde_json::to_string(&all).expect("a notice serializes")
    }
}

/// Starts sharing the registrations of the node at `node` (its SIP address) through `store`,
/// listening on the database at `url`.
pub(crate) fn start(
    store: Store,
    url: String,
    node: SocketAddr,
    shutdown: CancellationToken,
) -> Sharing {
    let (changes, writes) = mpsc::channel(QUEUE);
    let (tell, elsewhere) = mpsc::channel(QUEUE);
    let task = Task {
        store,
        url,
        node: node.to_string(),
        tell,
    };
    tokio::spawn(task.run(writes, shutdown));
    Sharing { changes, elsewhere }
}

struct Task {
    store: Store,
    url: String,
    node: String,
    tell: mpsc::Sender<Elsewhere>,
}

impl Task {
    async fn run(
        self,
        mut writes: mpsc::Receiver<Vec<BindingChange>>,
        shutdown: CancellationToken,
    ) {
        let mut listener = self.listen().await;
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(changes) = writes.recv() => self.write(&changes).await,
                notified = notification(listener.as_mut()) => match notified {
                    Ok(Some(payload)) => self.notified(&payload).await,
                    // The connection was lost and is back: what it missed is read again.
                    Ok(None) => self.read_all().await,
                    Err(e) => {
                        tracing::warn!("registrations: listening failed: {e}");
                        listener = None;
                    }
                },
                _ = resync.tick() => {
                    if listener.is_none() {
                        listener = self.listen().await;
                    }
                    if let Err(e) = self.store.sweep_registrations(unix_ms()).await {
                        tracing::debug!("registrations: sweep failed: {e}");
                    }
                    self.read_all().await;
                }
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = match PgListener::connect(&self.url).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!("registrations: cannot listen for other nodes' changes: {e}");
                return None;
            }
        };
        match listener.listen(CHANNEL).await {
            Ok(()) => Some(listener),
            Err(e) => {
                tracing::warn!("registrations: cannot listen for other nodes' changes: {e}");
                None
            }
        }
    }

    /// Writes what this node's registrar changed, then tells the other nodes.
    async fn write(&self, changes: &[BindingChange]) {
        let rows: Vec<RegistrationChange> = changes.iter().map(|c| self.row(c)).collect();
        if let Err(e) = self.store.change_registrations(&rows).await {
            tracing::warn!("registrations: not shared with other nodes: {e}");
            return;
        }
        let payload = Notice::of(&self.node, changes).payload();
        if let Err(e) = self.store.notify_registrations(CHANNEL, &payload).await {
            tracing::warn!("registrations: other nodes not told: {e}");
        }
    }

    fn row(&self, change: &BindingChange) -> RegistrationChange {
        match change {
            BindingChange::Bound { aor, binding } => {
                let left = binding.expires_at.saturating_duration_since(Instant::now());
                RegistrationChange::Bind(RegistrationRecord {
                    aor: aor.clone(),
                    contact: binding.contact.clone(),
                    node: self.node.clone(),
                    source: binding.source.to_string(),
                    transport: binding.transport.clone(),
                    q: binding.q,
                    expires_at: unix_ms() + left.as_millis() as u64,
                })
            }
            BindingChange::Unbound { aor, contact } => RegistrationChange::Unbind {
                aor: aor.clone(),
                contact: contact.clone(),
            },
            BindingChange::UnboundAll { aor } => RegistrationChange::UnbindAll { aor: aor.clone() },
        }
    }

    async fn notified(&self, payload: &str) {
        let notice: Notice = match serde_json::from_str(payload) {
            Ok(notice) => notice,
            Err(e) => {
                tracing::warn!("registrations: unreadable notification: {e}");
                return self.read_all().await;
            }
        };
        if notice.node == self.node {
            return;
        }
        if notice.all {
            return self.read_all().await;
        }
        for (aor, contact) in notice.removed {
            let _ = self.tell.send(Elsewhere::Forget(aor, contact)).await;
        }
        for aor in notice.aors {
            match self.store.registrations(Some(&aor), unix_ms()).await {
                Ok(rows) => {
                    let bindings: Vec<Binding> = rows.iter().filter_map(binding).collect();
                    tracing::debug!(%aor, bindings = bindings.len(), "registered elsewhere");
                    let _ = self.tell.send(Elsewhere::Aor(aor, bindings)).await;
                }
                Err(e) => tracing::warn!(%aor, "registrations: cannot read: {e}"),
            }
        }
    }

    async fn read_all(&self) {
        match self.store.registrations(None, unix_ms()).await {
            Ok(rows) => {
                let mut all: HashMap<String, Vec<Binding>> = HashMap::new();
                for row in &rows {
                    if let Some(b) = binding(row) {
                        all.entry(row.aor.clone()).or_default().push(b);
                    }
                }
                for (aor, bindings) in &all {
                    tracing::debug!(%aor, bindings = bindings.len(), "registered elsewhere");
                }
                let _ = self.tell.send(Elsewhere::All(all)).await;
            }
            Err(e) => tracing::warn!("registrations: cannot read: {e}"),
        }
    }
}

/// A stored contact as the registrar keeps it; `None` for a row whose source is unreadable.
fn binding(row: &RegistrationRecord) -> Option<Binding> {
    let left = row.expires_at.saturating_sub(unix_ms());
    Some(Binding {
        contact: row.contact.clone(),
        source: row.source.parse().ok()?,
        transport: row.transport.clone(),
        expires_at: Instant::now() + Duration::from_millis(left),
        q: row.q,
    })
}

async fn notification(listener: Option<&mut PgListener>) -> Result<Option<String>, sqlx::Error> {
    match listener {
        Some(listener) => Ok(listener.try_recv().await?.map(|n| n.payload().to_string())),
        None => std::future::pending().await,
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(aor: &str, contact: &str) -> BindingChange {
        BindingChange::Bound {
            aor: aor.into(),
            binding: Binding {
                contact: contact.into(),
                source: "127.0.0.1:5070".parse().unwrap(),
                transport: "UDP".into(),
                expires_at: Instant::now(),
                q: 1000,
            },
        }
    }

    #[test]
    fn a_notice_names_each_address_of_record_once_and_every_removal() {
        let changes = [
            bound("alice", "sip:a@1"),
            BindingChange::Unbound {
                aor: "alice".into(),
                contact: "sip:a@2".into(),
            },
            BindingChange::UnboundAll { aor: "bob".into() },
        ];
        let notice = Notice::of("127.0.0.2:5060", &changes);
        assert_eq!(notice.aors, ["alice", "bob"]);
        assert_eq!(
            notice.removed,
            [
                ("alice".to_string(), Some("sip:a@2".to_string())),
                ("bob".to_string(), None)
            ]
        );
        let read: Notice = serde_json::from_str(&notice.payload()).unwrap();
        assert_eq!(read, notice);
    }

    #[test]
    fn a_notice_too_long_for_notify_asks_for_a_full_read() {
        let long = "x".repeat(600);
        let changes: Vec<BindingChange> = (0..20)
            .map(|i| BindingChange::Unbound {
                aor: format!("user{i}"),
                contact: format!("sip:{long}@{i}"),
            })
            .collect();
        let payload = Notice::of("n", &changes).payload();
        assert!(payload.len() <= MAX_PAYLOAD);
        let read: Notice = serde_json::from_str(&payload).unwrap();
        assert!(read.all && read.aors.is_empty());
    }
}

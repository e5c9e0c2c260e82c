//! The durable store: interactions, their transcripts (the durable events), file records and
//! the links texted to mobile operators.
//!
//! **Why sqlx's `Any` driver.** SQLite (the embedded default) and PostgreSQL (several nodes) run
//! the *same* SQL here: the schema uses only `TEXT` and `BIGINT`, queries use `$n` placeholders
//! (both backends accept them), and the data is a handful of plain columns with the event body
//! as JSON text. `Any` picks the backend from the URL at run time, so there is one code path to
//! test and no trait with two implementations that could drift apart. What `Any` cannot express
//! (SQLite pragmas) is set in one `after_connect` hook.
//!
//! **Durability.** SQLite runs in WAL mode with `synchronous = FULL`: a commit that returned is
//! on disk, so it survives `kill -9` and power loss. Callers persist *before* they acknowledge.
//!
//! **Group commit.** Every write goes through one writer task that folds the writes queued
//! meanwhile into one transaction (SQLite has a single writer anyway); each caller still waits
//! for the commit of its own write.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row, SqlStr};
use tokio::sync::{mpsc, oneshot};

use crate::bridge::{Event, InteractionId, Phase};
use crate::metrics::{Metrics, Part, registered};

mod sip;
pub(crate) use sip::{RegistrationChange, RegistrationRecord};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an error.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored event does not parse (written by a newer version?).
    #[error("corrupt record {what}: {reason}")]
    Corrupt { what: String, reason: String },
    /// The directory of the SQLite file could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The writer task is gone (shutting down).
    #[error("the store is shutting down")]
    Closed,
    /// A write for an interaction this node no longer owns (another node took it over): it
    /// was refused, so a stale owner cannot add to a history that has moved on.
    #[error("this node no longer owns the interaction")]
    NotOwner,
}

/// One interaction as listed in the store.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InteractionRecord {
    pub id: InteractionId,
    pub service: String,
    /// The customer's credential: never listed.
    #[serde(skip_serializing)]
    pub device: String,
    pub phase: Phase,
    pub created_at: u64,
    pub closed_at: Option<u64>,
    /// The last `seq` when the phase last changed (the row is not rewritten per message; the
    /// events table is the authority).
    pub last_seq: u64,
}

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FileRecord {
    pub id: String,
    pub sha256: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// The device that uploaded it.
    pub device: String,
    pub service: String,
    pub created_at: u64,
}

/// A link texted to a mobile operator, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MobileLinkRecord {
    pub token: String,
    pub chat: InteractionId,
    pub agent: String,
    /// `offered`, `claimed`, `taken` or `expired`.
    pub state: String,
    /// The key the claim handed out.
    pub session: Option<String>,
    pub sent_at: u64,
}

/// An agent's own settings, as stored (they override the configuration's).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettingsRecord {
    pub agent: String,
    pub mobile: Option<String>,
    /// `on`, `off` or `schedule`.
    pub mobile_mode: String,
    /// The weekly schedule as JSON.
    pub mobile_schedule: Option<String>,
    pub updated_at: u64,
}

/// One write; a batch of them commits atomically.
#[derive(Debug, Clone)]
pub enum Write {
    NewInteraction(InteractionRecord),
    Event(InteractionId, Event),
    /// The interaction's phase and last seq after its latest events.
    Progress {
        id: InteractionId,
        phase: Phase,
        last_seq: u64,
        closed_at: Option<u64>,
    },
    NewFile(FileRecord),
    /// A file was sent into an interaction.
    Link {
        file_id: String,
        id: InteractionId,
    },
    /// A mobile operator's link, new or changed.
    MobileLink(MobileLinkRecord),
    /// Mobile links sent before this time (ms) are forgotten.
    ForgetMobileLinks {
        sent_before: u64,
    },
    /// Files past their retention are forgotten, with their links to chats.
    ForgetFiles {
        ids: Vec<String>,
    },
}

struct Job {
    writes: Vec<Write>,
    done: oneshot::Sender<Result<(), Refused>>,
}

/// Why a commit failed.
#[derive(Debug, Clone)]
enum Refused {
    /// The fencing check found an interaction of the batch owned by another node.
    NotOwner,
    Database(String),
}

impl From<sqlx::Error> for Refused {
    fn from(e: sqlx::Error) -> Refused {
        Refused::Database(e.to_string())
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NotOwner => f.write_str("not the owner"),
            Refused::Database(e) => f.write_str(e),
        }
    }
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    writer: mpsc::Sender<Job>,
}

/// A node's lease as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub node: String,
    pub http_url: String,
    pub sip_uri: String,
    /// Unix ms.
    pub lease_until: u64,
}

fn migrator() -> Migrator {
    Migrator {
        migrations: Cow::Owned(vec![
            Migration::new(
                1,
                "interactions".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!("../../migrations/0001_interactions.sql")),
                false,
            ),
            Migration::new(
                2,
                "mobile links".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!("../../migrations/0002_mobile_links.sql")),
                false,
            ),
            Migration::new(
                3,
                "agent settings".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!("../../migrations/0003_agent_settings.sql")),
                false,
            ),
            Migration::new(
                4,
                "cluster".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!("../../migrations/0004_cluster.sql")),
                false,
            ),
            Migration::new(
                5,
                "sip registrations".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!("../../migrations/0005_sip_registrations.sql")),
                false,
            ),
            Migration::new(
                6,
                "leaders".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!("../../migrations/0006_leaders.sql")),
                false,
            ),
            Migration::new(
                7,
                "agent logins".into(),
                MigrationType::Simple,
                SqlStr::from_static(include_str!("../../migrations/0007_agent_logins.sql")),
                false,
            ),
        ]),
        ..Migrator::DEFAULT
    }
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Queued => "queued",
        Phase::Offered => "offered",
        Phase::Active => "active",
        Phase::Closing => "closing",
        Phase::Closed => "closed",
    }
}

fn parse_phase(s: &str) -> Result<Phase, StoreError> {
    serde_json::from_value(serde_json::Value::String(s.into())).map_err(|e| StoreError::Corrupt {
        what: format!("phase {s:?}"),
        reason: e.to_string(),
    })
}

impl Store {
    /// Connects (creating an SQLite file and its directory if needed) and migrates.
    pub async fn open(
        url: &str,
        max_connections: u32,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        Store::open_as(url, max_connections, metrics, None).await
    }

    /// [`Store::open`] for node `node` of a cluster: new interactions are written as its own,
    /// and every write to an interaction is fenced: it commits only while `node` owns it.
    pub async fn open_as(
        url: &str,
        max_connections: u32,
        metrics: Arc<Metrics>,
        node: Option<String>,
    ) -> Result<Store, StoreError> {
        install_default_drivers();
        let url = prepare_sqlite(url)?;
        // A pooled connection is pinged before each use, to find one the server dropped. A
        // SQLite connection is a file in this process: the ping only cost every commit and
        // read one more round trip to its thread.
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(!sqlite)
            .after_connect(|conn, _| -> BoxFuture<'_, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        migrator().run(&pool).await?;
        let (writer, jobs) = mpsc::channel(4096);
        tokio::spawn(write_loop(
            pool.clone(),
            jobs,
            metrics.part::<StoreMetrics>(),
            node,
        ));
        Ok(Store { pool, writer })
    }

    /// Commits `writes` atomically (with whatever else is queued); returns once they are durable.
    pub async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(Job { writes, done })
            .await
            .map_err(|_| StoreError::Closed)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Refused::NotOwner)) => Err(StoreError::NotOwner),
            Ok(Err(Refused::Database(message))) => {
                Err(StoreError::Database(sqlx::Error::Protocol(message)))
            }
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Reachability check for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Interactions not closed yet (to restore after a restart).
    pub async fn open_interactions(&self) -> Result<Vec<InteractionRecord>, StoreError> {
        self.interactions_where("closed_at IS NULL", 1_000_000)
            .await
    }

    /// The most recent interactions, newest first.
    pub async fn recent_interactions(
        &self,
        limit: i64,
    ) -> Result<Vec<InteractionRecord>, StoreError> {
        self.interactions_where("1 = 1", limit).await
    }

    async fn interactions_where(
        &self,
        condition: &'static str,
        limit: i64,
    ) -> Result<Vec<InteractionRecord>, StoreError> {
        let sql = format!(
            "SELECT id, service, device, phase, created_at, closed_at, last_seq \
             FROM interactions WHERE {condition} ORDER BY created_at DESC LIMIT $1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    pub async fn interaction(
        &self,
        id: &InteractionId,
    ) -> Result<Option<InteractionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, service, device, phase, created_at, closed_at, last_seq \
             FROM interactions WHERE id = $1",
        )
        .bind(id.0.clone())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// The durable events of an interaction with `seq > after`, in order.
    pub async fn events(&self, id: &InteractionId, after: u64) -> Result<Vec<Event>, StoreError> {
        self.events_between(id, after, u64::MAX, u32::MAX).await
    }

    /// The newest `limit` durable events with `after < seq < before`, in order.
    pub(crate) async fn events_between(
        &self,
        id: &InteractionId,
        after: u64,
        before: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        // Seqs are stored as BIGINT: a client's seq beyond that range is past every event
        // (a plain cast would wrap it negative and replay the whole chat).
        let column = |seq: u64| i64::try_from(seq).unwrap_or(i64::MAX);
        let mut rows = sqlx::query(
            "SELECT seq, body FROM events WHERE interaction_id = $1 AND seq > $2 AND seq < $3 \
             ORDER BY seq DESC LIMIT $4",
        )
        .bind(id.0.clone())
        .bind(column(after))
        .bind(column(before))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.reverse();
        rows.iter()
            .map(|row| {
                let body: String = row.try_get("body")?;
                serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                    what: format!("event {id}/{}", row.try_get::<i64, _>("seq").unwrap_or(-1)),
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    pub async fn file(&self, file_id: &str) -> Result<Option<FileRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, sha256, name, content_type, size, device, service, created_at \
             FROM files WHERE id = $1",
        )
        .bind(file_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(FileRecord {
            id: row.try_get("id")?,
            sha256: row.try_get("sha256")?,
            name: row.try_get("name")?,
            content_type: row.try_get("content_type")?,
            size: row.try_get::<i64, _>("size")? as u64,
            device: row.try_get("device")?,
            service: row.try_get("service")?,
            created_at: row.try_get::<i64, _>("created_at")? as u64,
        }))
    }

    /// The mobile link with this token.
    pub async fn mobile_link(&self, token: &str) -> Result<Option<MobileLinkRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT token, interaction_id, agent, state, session, sent_at \
             FROM mobile_links WHERE token = $1",
        )
        .bind(token.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(mobile_link_from_row).transpose()
    }

    /// The latest link texted for the offer of `chat` to `agent`.
    pub async fn mobile_link_for_offer(
        &self,
        chat: &InteractionId,
        agent: &str,
    ) -> Result<Option<MobileLinkRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT token, interaction_id, agent, state, session, sent_at \
             FROM mobile_links WHERE interaction_id = $1 AND agent = $2 \
             ORDER BY sent_at DESC LIMIT 1",
        )
        .bind(chat.0.clone())
        .bind(agent.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(mobile_link_from_row).transpose()
    }

    /// Every agent's stored settings.
    pub(crate) async fn agent_settings(&self) -> Result<Vec<AgentSettingsRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT agent, mobile, mobile_mode, mobile_schedule, updated_at FROM agent_settings",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AgentSettingsRecord {
                    agent: row.try_get("agent")?,
                    mobile: row.try_get("mobile")?,
                    mobile_mode: row.try_get("mobile_mode")?,
                    mobile_schedule: row.try_get("mobile_schedule")?,
                    updated_at: row.try_get::<i64, _>("updated_at")? as u64,
                })
            })
            .collect()
    }

    /// Stores an agent's settings (durable when this returns).
    pub(crate) async fn put_agent_settings(
        &self,
        record: &AgentSettingsRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_settings (agent, mobile, mobile_mode, mobile_schedule, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (agent) DO UPDATE SET mobile = $2, mobile_mode = $3, \
             mobile_schedule = $4, updated_at = $5",
        )
        .bind(record.agent.clone())
        .bind(record.mobile.clone())
        .bind(record.mobile_mode.clone())
        .bind(record.mobile_schedule.clone())
        .bind(record.updated_at as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a login token by its SHA-256 (durable when this returns), and forgets the
    /// tokens that expired before `now`.
    pub(crate) async fn put_login(
        &self,
        token_sha256: &str,
        agent: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM agent_logins WHERE expires_at < $1")
            .bind(now as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO agent_logins (token_sha256, agent, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(token_sha256.to_string())
        .bind(agent.to_string())
        .bind(expires_at as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The agent and expiry of the login token whose SHA-256 is `token_sha256`, if stored.
    pub(crate) async fn login(
        &self,
        token_sha256: &str,
    ) -> Result<Option<(String, u64)>, StoreError> {
        let row = sqlx::query("SELECT agent, expires_at FROM agent_logins WHERE token_sha256 = $1")
            .bind(token_sha256.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok((
                row.try_get("agent")?,
                row.try_get::<i64, _>("expires_at")? as u64,
            ))
        })
        .transpose()
    }

    /// Which of the tokens whose SHA-256 are `token_sha256s` are still stored.
    pub(crate) async fn stored_logins(
        &self,
        token_sha256s: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let mut stored = HashSet::new();
        for chunk in token_sha256s.chunks(64) {
            let places: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT token_sha256 FROM agent_logins WHERE token_sha256 IN ({})",
                places.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for sha in chunk {
                query = query.bind(sha.clone());
            }
            for row in query.fetch_all(&self.pool).await? {
                stored.insert(row.try_get("token_sha256")?);
            }
        }
        Ok(stored)
    }

    /// Forgets every login token of `agent` (durable when this returns).
    pub(crate) async fn end_logins(&self, agent: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM agent_logins WHERE agent = $1")
            .bind(agent.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The interactions an agent joined, newest first: the chats they handled.
    pub(crate) async fn agent_interactions(
        &self,
        agent: &str,
        limit: i64,
    ) -> Result<Vec<InteractionRecord>, StoreError> {
        // The party is stored as its JSON: match the agent's exactly (LIKE's wildcards in
        // the name escaped).
        let party = serde_json::to_string(&crate::bridge::Party::Agent(agent.into()))
            .expect("a party serializes");
        let escaped = party
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let rows = sqlx::query(
            "SELECT i.id, i.service, i.device, i.phase, i.created_at, i.closed_at, i.last_seq \
             FROM interactions i WHERE i.id IN (SELECT e.interaction_id FROM events e \
             WHERE e.kind = 'party_joined' AND e.body LIKE $1 ESCAPE '\\') \
             ORDER BY i.created_at DESC LIMIT $2",
        )
        .bind(format!("%\"party\":{escaped}%"))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// The files sent into an interaction: how many, and their bytes.
    pub async fn chat_files(&self, id: &InteractionId) -> Result<(u64, u64), StoreError> {
        self.count_files(
            "FROM file_links l JOIN files f ON f.id = l.file_id WHERE l.interaction_id = $1",
            id.0.clone(),
        )
        .await
    }

    /// The files a device uploaded and has not sent into any chat yet: how many, their bytes.
    pub(crate) async fn unsent_files(&self, device: &str) -> Result<(u64, u64), StoreError> {
        self.count_files(
            "FROM files f WHERE f.device = $1 \
             AND NOT EXISTS (SELECT 1 FROM file_links l WHERE l.file_id = f.id)",
            device.to_string(),
        )
        .await
    }

    async fn count_files(&self, from: &'static str, key: String) -> Result<(u64, u64), StoreError> {
        let sql = format!(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(f.size), 0) AS BIGINT) AS bytes {from}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        Ok((
            row.try_get::<i64, _>("n")? as u64,
            row.try_get::<i64, _>("bytes")? as u64,
        ))
    }

    /// Every file with what the retention sweep needs to know of its chats.
    pub async fn file_uses(&self) -> Result<Vec<super::retention::FileUse>, StoreError> {
        let rows = sqlx::query(
            "SELECT f.id, f.sha256, f.created_at, \
             COUNT(l.interaction_id) AS chats, \
             CAST(COALESCE(SUM(CASE WHEN l.interaction_id IS NOT NULL AND i.closed_at IS NULL \
                  THEN 1 ELSE 0 END), 0) AS BIGINT) AS open_chats, \
             MAX(i.closed_at) AS last_closed_at \
             FROM files f \
             LEFT JOIN file_links l ON l.file_id = f.id \
             LEFT JOIN interactions i ON i.id = l.interaction_id \
             GROUP BY f.id, f.sha256, f.created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(super::retention::FileUse {
                    id: row.try_get("id")?,
                    sha256: row.try_get("sha256")?,
                    created_at: row.try_get::<i64, _>("created_at")? as u64,
                    chats: row.try_get::<i64, _>("chats")? as u64,
                    open_chats: row.try_get::<i64, _>("open_chats")? as u64,
                    last_closed_at: row
                        .try_get::<Option<i64>, _>("last_closed_at")?
                        .map(|t| t as u64),
                })
            })
            .collect()
    }

    /// Whether a file was sent into an interaction.
    pub async fn is_linked(&self, file_id: &str, id: &InteractionId) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT file_id FROM file_links WHERE file_id = $1 AND interaction_id = $2",
        )
        .bind(file_id.to_string())
        .bind(id.0.clone())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }
}

/// Node leases and interaction ownership, for a cluster (see `crate::cluster`).
impl Store {
    /// Writes this node's row with a fresh lease (a node that comes back renews its old row).
    pub async fn register_node(&self, node: &NodeRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO nodes (node, http_url, sip_uri, lease_until) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (node) DO UPDATE SET http_url = $2, sip_uri = $3, lease_until = $4",
        )
        .bind(node.node.clone())
        .bind(node.http_url.clone())
        .bind(node.sip_uri.clone())
        .bind(node.lease_until as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Extends `node`'s lease to `until`; false when its row is gone (another node declared
    /// it dead and took its interactions).
    pub(crate) async fn renew_lease(&self, node: &str, until: u64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE nodes SET lease_until = $2 WHERE node = $1")
            .bind(node.to_string())
            .bind(until as i64)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every node's row.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let rows = sqlx::query("SELECT node, http_url, sip_uri, lease_until FROM nodes")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(NodeRecord {
                    node: row.try_get("node")?,
                    http_url: row.try_get("http_url")?,
                    sip_uri: row.try_get("sip_uri")?,
                    lease_until: row.try_get::<i64, _>("lease_until")?.max(0) as u64,
                })
            })
            .collect()
    }

    /// Takes over the open interactions of `dead`, whose lease ended before `now`: in one
    /// transaction its row is deleted (only if its lease is still over, so a node that came
    /// back keeps what it has) and its interactions become `me`'s. Of several nodes trying at
    /// once, the one whose delete removed the row wins; the others get nothing.
    pub async fn take_over(
        &self,
        me: &str,
        dead: &str,
        now: u64,
    ) -> Result<Vec<InteractionId>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM nodes WHERE node = $1 AND lease_until < $2")
            .bind(dead.to_string())
            .bind(now as i64)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "UPDATE interactions SET owner = $1 WHERE owner = $2 AND closed_at IS NULL \
             RETURNING id",
        )
        .bind(me.to_string())
        .bind(dead.to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| Ok(InteractionId(row.try_get("id")?)))
            .collect()
    }

    /// Takes the open interactions nobody owns: released by a node that stopped, owned by a
    /// node whose row is gone, or opened before the store served a cluster.
    pub(crate) async fn adopt_orphans(&self, me: &str) -> Result<Vec<InteractionId>, StoreError> {
        let rows = sqlx::query(
            "UPDATE interactions SET owner = $1 WHERE closed_at IS NULL AND (owner IS NULL \
             OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.node = interactions.owner)) \
             RETURNING id",
        )
        .bind(me.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(InteractionId(row.try_get("id")?)))
            .collect()
    }

    /// The open interactions `node` owns.
    pub(crate) async fn owned_interactions(
        &self,
        node: &str,
    ) -> Result<Vec<InteractionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, service, device, phase, created_at, closed_at, last_seq \
             FROM interactions WHERE owner = $1 AND closed_at IS NULL",
        )
        .bind(node.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// An open interaction and the node that owns it (none: nobody yet).
    pub async fn open_interaction_owner(
        &self,
        id: &InteractionId,
    ) -> Result<Option<(InteractionRecord, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, service, device, phase, created_at, closed_at, last_seq, owner \
             FROM interactions WHERE id = $1 AND closed_at IS NULL",
        )
        .bind(id.0.clone())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((record_from_row(&row)?, row.try_get("owner")?)))
    }

    /// Claims (or keeps) `role` for `node` until `until`: granted when nobody holds it, when
    /// `node` does, or when the holder's lease ended before `now`. Answers who holds it now
    /// and until when; of several nodes claiming at once, one wins.
    pub async fn claim_role(
        &self,
        role: &str,
        node: &str,
        until: u64,
        now: u64,
    ) -> Result<(String, u64), StoreError> {
        sqlx::query(
            "INSERT INTO leaders (role, node, lease_until) VALUES ($1, $2, $3) \
             ON CONFLICT (role) DO UPDATE SET node = excluded.node, \
             lease_until = excluded.lease_until \
             WHERE leaders.node = excluded.node OR leaders.lease_until < $4",
        )
        .bind(role.to_string())
        .bind(node.to_string())
        .bind(until as i64)
        .bind(now as i64)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT node, lease_until FROM leaders WHERE role = $1")
            .bind(role.to_string())
            .fetch_one(&self.pool)
            .await?;
        let holder: String = row.try_get("node")?;
        let held_until = row.try_get::<i64, _>("lease_until")?.max(0) as u64;
        Ok((holder, held_until))
    }

    /// Gives `role` up if `node` holds it, so that the next claim takes it at once.
    pub async fn resign_role(&self, role: &str, node: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE leaders SET lease_until = 0 WHERE role = $1 AND node = $2")
            .bind(role.to_string())
            .bind(node.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Gives up `node`'s interactions and lease at once (a node that stops): the others adopt
    /// them at their next look, without waiting for the lease to run out.
    pub(crate) async fn release_node(&self, node: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let released = sqlx::query(
            "UPDATE interactions SET owner = NULL WHERE owner = $1 AND closed_at IS NULL",
        )
        .bind(node.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM nodes WHERE node = $1")
            .bind(node.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(released.rows_affected())
    }
}

fn record_from_row(row: &sqlx::any::AnyRow) -> Result<InteractionRecord, StoreError> {
    Ok(InteractionRecord {
        id: InteractionId(row.try_get("id")?),
        service: row.try_get("service")?,
        device: row.try_get("device")?,
        phase: parse_phase(&row.try_get::<String, _>("phase")?)?,
        created_at: row.try_get::<i64, _>("created_at")? as u64,
        closed_at: row
            .try_get::<Option<i64>, _>("closed_at")?
            .map(|t| t as u64),
        last_seq: row.try_get::<i64, _>("last_seq")? as u64,
    })
}

fn mobile_link_from_row(row: &sqlx::any::AnyRow) -> Result<MobileLinkRecord, StoreError> {
    Ok(MobileLinkRecord {
        token: row.try_get("token")?,
        chat: InteractionId(row.try_get("interaction_id")?),
        agent: row.try_get("agent")?,
        state: row.try_get("state")?,
        session: row.try_get("session")?,
        sent_at: row.try_get::<i64, _>("sent_at")? as u64,
    })
}

/// `sqlite://data/x.db` → creates `data/` and asks SQLite to create the file.
fn prepare_sqlite(url: &str) -> Result<String, StoreError> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(url.to_string());
    };
    let path = rest.split('?').next().unwrap_or(rest);
    if let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// The store's metrics.
struct StoreMetrics {
    /// Time of one store transaction (a group commit of many writes).
    latency: Histogram,
}

impl Part for StoreMetrics {
    fn register(registry: &mut Registry) -> Self {
        let latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        StoreMetrics {
            latency: registered(
                registry,
                "store_latency_seconds",
                "Duration of store transactions",
                latency,
            ),
        }
    }
}

/// The single writer: folds queued jobs into one transaction.
async fn write_loop(
    pool: AnyPool,
    mut jobs: mpsc::Receiver<Job>,
    metrics: Arc<StoreMetrics>,
    node: Option<String>,
) {
    let node = node.as_deref();
    const MAX_BATCH: usize = 512;
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let all: Vec<&Write> = batch.iter().flat_map(|j| j.writes.iter()).collect();
        let result = commit(&pool, &all, node).await;
        metrics.latency.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                for job in batch {
                    let _ = job.done.send(Ok(()));
                }
            }
            Err(_) if batch.len() > 1 => {
                // One bad write must not fail its neighbours: retry each job alone.
                for job in batch {
                    let writes: Vec<&Write> = job.writes.iter().collect();
                    let result = commit(&pool, &writes, node).await;
                    let _ = job.done.send(result);
                }
            }
            Err(e) => {
                tracing::warn!("store write failed: {e}");
                for job in batch {
                    let _ = job.done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A query on any backend, before it runs.
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Row counts of the multi-row `INSERT`s: a batch is cut greedily into these, so that a few
/// prepared statements serve every batch size and the statement cache stays small.
const CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// Inserts `rows` with one statement per chunk: `head` is `INSERT INTO t (c1, …, cn)`, each
/// row binds `columns` values. A burst of writes is then a handful of statements, not one
/// round trip to the database per row.
async fn insert_rows<T>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    head: &str,
    columns: usize,
    rows: &[T],
    bind: impl for<'q> Fn(AnyQuery<'q>, &T) -> AnyQuery<'q>,
) -> Result<(), sqlx::Error> {
    rows_statements(tx, head, "", columns, rows, bind).await
}

/// Runs `{head} VALUES (…), (…) {tail}` with one statement per chunk of `rows`.
async fn rows_statements<T>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    head: &str,
    tail: &str,
    columns: usize,
    rows: &[T],
    bind: impl for<'q> Fn(AnyQuery<'q>, &T) -> AnyQuery<'q>,
) -> Result<(), sqlx::Error> {
    // SQLite looks a numbered parameter's name up by walking a list of them, so binding the
    // 320 numbered parameters of a 64-row statement took 50 000 steps; anonymous `?` cost
    // nothing to look up. PostgreSQL takes numbered parameters only.
    let numbered = !tx.backend_name().eq_ignore_ascii_case("sqlite");
    let mut rest = rows;
    while !rest.is_empty() {
        let n = CHUNKS
            .into_iter()
            .find(|&n| n <= rest.len())
            .expect("chunks end with 1");
        let (chunk, after) = rest.split_at(n);
        let values: Vec<String> = (0..n)
            .map(|r| {
                let cells: Vec<String> = (1..=columns)
                    .map(|c| {
                        if numbered {
                            format!("${}", r * columns + c)
                        } else {
                            "?".to_string()
                        }
                    })
                    .collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        let sql = format!("{head} VALUES {}{tail}", values.join(", "));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            query = bind(query, row);
        }
        query.execute(&mut **tx).await?;
        rest = after;
    }
    Ok(())
}

/// Applies `writes` in one transaction. New interactions go first, then the rows' progress, and
/// events last, each kind in multi-row statements; the rest in order between them. The tables
/// have no constraints between each other, so this is the same as applying the writes one by one.
async fn commit(pool: &AnyPool, writes: &[&Write], node: Option<&str>) -> Result<(), Refused> {
    let mut tx = pool.begin().await?;
    let mut interactions = Vec::new();
    let mut events = Vec::new();
    for write in writes {
        match write {
            Write::NewInteraction(r) => interactions.push(r),
            Write::Event(id, event) => events.push((id, event)),
            _ => {}
        }
    }
    insert_rows(
        &mut tx,
        "INSERT INTO interactions \
         (id, service, device, phase, created_at, closed_at, last_seq, owner)",
        8,
        &interactions,
        |q, r| {
            q.bind(r.id.0.clone())
                .bind(r.service.clone())
                .bind(r.device.clone())
                .bind(phase_name(r.phase))
                .bind(r.created_at as i64)
                .bind(r.closed_at.map(|t| t as i64))
                .bind(r.last_seq as i64)
                .bind(node.map(str::to_string))
        },
    )
    .await?;
    if let Some(node) = node {
        fence(&mut tx, writes, node).await?;
    }
    // The interactions' rows change with one statement per chunk too; the last change of a row
    // in the batch is the one that stands. Both backends name a VALUES list's columns
    // `column1`, `column2`, … and take `UPDATE … FROM`.
    let mut progress: Vec<(&InteractionId, Phase, u64, Option<u64>)> = Vec::new();
    let mut at: HashMap<&InteractionId, usize> = HashMap::new();
    for write in writes {
        if let Write::Progress {
            id,
            phase,
            last_seq,
            closed_at,
        } = write
        {
            let row = (id, *phase, *last_seq, *closed_at);
            match at.get(id) {
                Some(&i) => progress[i] = row,
                None => {
                    at.insert(id, progress.len());
                    progress.push(row);
                }
            }
        }
    }
    rows_statements(
        &mut tx,
        "UPDATE interactions SET phase = v.column2, last_seq = v.column3, \
         closed_at = v.column4 FROM (",
        ") AS v WHERE interactions.id = v.column1",
        4,
        &progress,
        |q, (id, phase, last_seq, closed_at)| {
            q.bind(id.0.clone())
                .bind(phase_name(*phase))
                .bind(*last_seq as i64)
                .bind(closed_at.map(|t| t as i64))
        },
    )
    .await?;
    for write in writes {
        match write {
            Write::NewInteraction(_) | Write::Event(..) | Write::Progress { .. } => {}
            Write::NewFile(f) => {
                sqlx::query(
                    "INSERT INTO files \
                     (id, sha256, name, content_type, size, device, service, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(f.id.clone())
                .bind(f.sha256.clone())
                .bind(f.name.clone())
                .bind(f.content_type.clone())
                .bind(f.size as i64)
                .bind(f.device.clone())
                .bind(f.service.clone())
                .bind(f.created_at as i64)
                .execute(&mut *tx)
                .await?;
            }
            Write::Link { file_id, id } => {
                sqlx::query(
                    "INSERT INTO file_links (file_id, interaction_id) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(file_id.clone())
                .bind(id.0.clone())
                .execute(&mut *tx)
                .await?;
            }
            Write::MobileLink(l) => {
                sqlx::query(
                    "INSERT INTO mobile_links \
                     (token, interaction_id, agent, state, session, sent_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (token) DO UPDATE SET state = $4, session = $5",
                )
                .bind(l.token.clone())
                .bind(l.chat.0.clone())
                .bind(l.agent.clone())
                .bind(l.state.clone())
                .bind(l.session.clone())
                .bind(l.sent_at as i64)
                .execute(&mut *tx)
                .await?;
            }
            Write::ForgetFiles { ids } => {
                for id in ids {
                    for sql in [
                        "DELETE FROM file_links WHERE file_id = $1",
                        "DELETE FROM files WHERE id = $1",
                    ] {
                        sqlx::query(sql).bind(id.clone()).execute(&mut *tx).await?;
                    }
                }
            }
            Write::ForgetMobileLinks { sent_before } => {
                sqlx::query("DELETE FROM mobile_links WHERE sent_at < $1")
                    .bind(*sent_before as i64)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    insert_rows(
        &mut tx,
        "INSERT INTO events (interaction_id, seq, at, kind, body)",
        5,
        &events,
        |q, (id, event)| {
            let body = serde_json::to_string(event).expect("events serialize");
            q.bind(id.0.clone())
                .bind(event.seq.unwrap_or(0) as i64)
                .bind(event.at.millis() as i64)
                .bind(event.kind.name())
                .bind(body)
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Refuses the batch unless `node` owns every interaction it writes to. The rows are locked
/// for share until the commit, so a takeover (which updates them) waits for this batch, and
/// this batch, coming after a takeover, sees the new owner: a stale owner's late write can
/// never land after its successor read the history. PostgreSQL only (a cluster's store).
async fn fence(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    writes: &[&Write],
    node: &str,
) -> Result<(), Refused> {
    let mut ids: Vec<&str> = writes
        .iter()
        .filter_map(|w| match w {
            Write::Event(id, _) | Write::Progress { id, .. } | Write::Link { id, .. } => {
                Some(id.0.as_str())
            }
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for chunk in ids.chunks(1000) {
        let places: Vec<String> = (2..chunk.len() + 2).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT id FROM interactions WHERE owner = $1 AND id IN ({}) FOR SHARE",
            places.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(node.to_string());
        for id in chunk {
            query = query.bind(id.to_string());
        }
        let owned = query.fetch_all(&mut **tx).await?;
        if owned.len() != chunk.len() {
            return Err(Refused::NotOwner);
        }
    }
    Ok(())
}

//! What the SIP side of several nodes shares through the store: who owns an interaction
//! (read from the cluster's `nodes` and `interactions.owner`) and where agents' softphones are
//! registered (the `registrations` table).

use sqlx::Row;

use super::{Store, StoreError};
use crate::bridge::InteractionId;

/// One registered contact, as the table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRecord {
    /// The account's user name (its address of record's user part).
    pub aor: String,
    /// The Contact URI as the phone wrote it.
    pub contact: String,
    /// The SIP address of the node that took the REGISTER.
    pub node: String,
    /// Where the REGISTER came from (`IP:port`): requests for the contact go there.
    pub source: String,
    pub transport: String,
    /// RFC 3261 `q` in thousandths.
    pub q: u16,
    /// Unix milliseconds.
    pub expires_at: u64,
}

/// A change a REGISTER made, written as it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RegistrationChange {
    /// A contact added or refreshed.
    Bind(RegistrationRecord),
    /// A contact removed (`Expires: 0`).
    Unbind { aor: String, contact: String },
    /// Every contact of the address of record removed (`Contact: *`).
    UnbindAll { aor: String },
}

fn column(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Store {
    /// The SIP address of the node that owns interaction `id` while its lease runs past
    /// `now_ms` (unix ms); `None` when no live node owns it.
    pub(crate) async fn owner_sip(
        &self,
        id: &InteractionId,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT n.sip_uri FROM interactions i JOIN nodes n ON n.node = i.owner \
             WHERE i.id = $1 AND n.lease_until > $2",
        )
        .bind(id.0.clone())
        .bind(column(now_ms))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("sip_uri")).transpose()?)
    }

    /// Applies `changes` in order, in one transaction.
    pub(crate) async fn change_registrations(
        &self,
        changes: &[RegistrationChange],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for change in changes {
            match change {
                RegistrationChange::Bind(r) => {
                    sqlx::query(
                        "INSERT INTO registrations \
                         (aor, contact, node, source, transport, q, expires_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (aor, contact) DO UPDATE SET node = $3, source = $4, \
                         transport = $5, q = $6, expires_at = $7",
                    )
                    .bind(r.aor.clone())
                    .bind(r.contact.clone())
                    .bind(r.node.clone())
                    .bind(r.source.clone())
                    .bind(r.transport.clone())
                    .bind(i64::from(r.q))
                    .bind(column(r.expires_at))
                    .execute(&mut *tx)
                    .await?;
                }
                RegistrationChange::Unbind { aor, contact } => {
                    sqlx::query("DELETE FROM registrations WHERE aor = $1 AND contact = $2")
                        .bind(aor.clone())
                        .bind(contact.clone())
                        .execute(&mut *tx)
                        .await?;
                }
                RegistrationChange::UnbindAll { aor } => {
                    sqlx::query("DELETE FROM registrations WHERE aor = $1")
                        .bind(aor.clone())
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The contacts unexpired at `now_ms`: of `aor` alone, or of every address of record.
    pub(crate) async fn registrations(
        &self,
        aor: Option<&str>,
        now_ms: u64,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT aor, contact, node, source, transport, q, expires_at FROM registrations \
             WHERE expires_at > $1 AND ($2 = '' OR aor = $2) ORDER BY aor, contact",
        )
        .bind(column(now_ms))
        .bind(aor.unwrap_or("").to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RegistrationRecord {
                    aor: row.try_get("aor")?,
                    contact: row.try_get("contact")?,
                    node: row.try_get("node")?,
                    source: row.try_get("source")?,
                    transport: row.try_get("transport")?,
                    q: u16::try_from(row.try_get::<i64, _>("q")?).unwrap_or(1000),
                    expires_at: row.try_get::<i64, _>("expires_at")?.max(0) as u64,
                })
            })
            .collect()
    }

    /// Forgets the contacts that expired before `now_ms` (the lookups ignore them already).
    pub(crate) async fn sweep_registrations(&self, now_ms: u64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM registrations WHERE expires_at <= $1")
            .bind(column(now_ms))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Tells the other nodes on PostgreSQL (`NOTIFY`) that registrations changed; `payload`
    /// names what. Elsewhere (SQLite, one node) nobody listens and nothing is sent.
    pub(crate) async fn notify_registrations(
        &self,
        channel: &str,
        payload: &str,
    ) -> Result<(), StoreError> {
        if !self.is_postgres() {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel.to_string())
            .bind(payload.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn is_postgres(&self) -> bool {
        self.pool
            .connect_options()
            .database_url
            .scheme()
            .starts_with("postgres")
    }
}

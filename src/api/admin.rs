//! Health, readiness, metrics, and the operators' view of interactions, transcripts and call
//! recordings.
//!
//! `/healthz` and `/readyz` are open (load balancers probe them). Everything else needs
//! `Authorization: Bearer <admin.token>`; `/metrics` also takes `admin.metrics_token`, so a
//! scraper need not hold the keys to transcripts. With no token configured, admin answers only
//! on a loopback listener (the single-machine default) and is refused anywhere else. Admin may
//! have a listener of its own (`admin.listen`), kept off the public address.

use std::time::Duration;

use super::query::Query;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::transcript::TranscriptQuery;
use super::{ApiError, AppState};
use crate::bridge::{EventKind, InteractionId};
use crate::config::Config;

/// What an admin request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `/metrics` only.
    Metrics,
    /// Interactions, transcripts, recordings (and metrics).
    Everything,
}

/// Whether a request with `authorization` may see `scope`.
pub fn authorize(
    config: &Config,
    authorization: Option<&[u8]>,
    scope: Scope,
) -> Result<(), ApiError> {
    let admin = &config.admin;
    let Some(given) = authorization.and_then(|v| v.strip_prefix(b"Bearer ")) else {
        if admin.token.is_none() && admin.metrics_token.is_none() {
            let listener = admin.listen.unwrap_or(config.http.listen);
            return if listener.ip().is_loopback() {
                Ok(())
            } else {
                Err(ApiError::AdminDisabled)
            };
        }
        return Err(ApiError::AdminCredentialsRequired);
    };
    let matches = |token: &Option<String>| {
        token
            .as_deref()
            .is_some_and(|t| crate::secret::same(given.trim_ascii(), t.as_bytes()))
    };
    if matches(&admin.token) || (scope == Scope::Metrics && matches(&admin.metrics_token)) {
        Ok(())
    } else {
        Err(ApiError::AdminTokenInvalid)
    }
}

/// Middleware of the admin routes ([`Scope::Everything`]) and of `/metrics`
/// ([`Scope::Metrics`]): the request goes on only if it may see `scope`.
pub async fn require(
    State((state, scope)): State<(AppState, Scope)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    authorize(state.config(), bearer(&request), scope)?;
    Ok(next.run(request).await)
}

/// The request's `Authorization` header, as sent.
fn bearer(request: &axum::extract::Request) -> Option<&[u8]> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store answers.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), state.store().ping()).await {
        Ok(Ok(())) => Ok(Json(json!({"store": "ok"}))),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(ApiError::Store(crate::chat::store::StoreError::Closed)),
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics().sample_runtime();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
}

/// The open interactions of this node, and the most recent ones in the store.
pub async fn interactions(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let mut open = Vec::new();
    for handle in state.hub().handles().into_iter().take(limit as usize) {
        if let Ok(summary) = handle.summary().await {
            open.push(summary);
        }
    }
    let recent = state.store().recent_interactions(limit).await?;
    let mut list = json!({"open": open, "recent": recent});
    redact(&mut list);
    Ok(Json(list))
}

/// Removes the customer's device id (the only credential a customer API client has) from
/// whatever an operator is shown.
fn redact(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Object(customer)) = object.get_mut("customer") {
                customer.remove("device");
            }
            object.values_mut().for_each(redact);
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// `?format=json` (default: every durable event), `text` or `html`.
pub async fn transcript(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<TranscriptQuery>,
) -> Result<Response, ApiError> {
    let id = InteractionId(id);
    let record = state
        .store()
        .interaction(&id)
        .await?
        .ok_or(ApiError::ChatNotFound)?;
    let events = state.store().events(&id, 0).await?;
    let title = || format!("Interaction {id} ({})", record.service);
    query.answer("json", events, title, |events| {
        let mut transcript = json!({"interaction": record, "events": events});
        redact(&mut transcript);
        transcript
    })
}

/// `GET /admin/v1/interactions/{id}/recordings/{file}`: a call recording (two-channel WAV,
/// customer left, agent right). Only a file the interaction's transcript lists is served, and
/// only by a plain file name: anything that could name another path is refused first.
pub async fn recording(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let plain = !file.starts_with('.')
        && file.ends_with(".wav")
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !plain || file.len() > 255 {
        return Err(ApiError::BadRecordingName);
    }
    let id = InteractionId(id);
    let events = state.store().events(&id, 0).await?;
    let listed = events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Recording { file: f, .. } if *f == file));
    let dir = state.config().sip.recording_dir.as_deref();
    let (true, Some(dir)) = (listed, dir) else {
        return Err(ApiError::RecordingNotFound);
    };
    let path = std::path::Path::new(dir).join(&file);
    let opened = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::RecordingNotFound)?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(opened));
    Ok((
        [
            (header::CONTENT_TYPE, "audio/wav".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        body,
    )
        .into_response())
}

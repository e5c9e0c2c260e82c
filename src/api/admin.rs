//! Health, readiness, metrics, and the operators' view of interactions, transcripts and call
//! recordings.
//!
//! These listen with everything else on the configured (loopback by default) address; put
//! them behind the operators' proxy before exposing the port.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::bridge::{EventKind, InteractionId};
use crate::chat::transcript;

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
    Ok(Json(json!({"open": open, "recent": recent})))
}

#[derive(Deserialize)]
pub struct TranscriptQuery {
    format: Option<String>,
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
    Ok(match query.format.as_deref().unwrap_or("json") {
        "text" => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            transcript::to_text(&events),
        )
            .into_response(),
        "html" => {
            let title = format!("Interaction {id} ({})", record.service);
            (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                transcript::to_html(&title, &events),
            )
                .into_response()
        }
        "json" => Json(json!({"interaction": record, "events": events})).into_response(),
        other => return Err(ApiError::BadJson(format!("unknown format {other:?}"))),
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

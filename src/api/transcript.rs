//! Transcripts over HTTP, for agents, mobile operators and admins alike: plain text, an HTML
//! page, or JSON.

use axum::Json;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::ApiError;
use crate::bridge::Event;
use crate::chat::transcript;

/// `?format=text|html|json`.
#[derive(Deserialize)]
pub struct TranscriptQuery {
    format: Option<String>,
}

impl TranscriptQuery {
    /// `events` in the format asked for (`default` when none): text, an HTML page titled
    /// `title`, or the JSON that `json` makes of them; `bad_json` for any other format.
    pub fn answer(
        &self,
        default: &str,
        events: Vec<Event>,
        title: impl FnOnce() -> String,
        json: impl FnOnce(Vec<Event>) -> Value,
    ) -> Result<Response, ApiError> {
        match self.format(default) {
            "json" => Ok(Json(json(events)).into_response()),
            _ => self.page(default, &events, title),
        }
    }

    /// `events` as text or as an HTML page titled `title`; `bad_json` for any other format.
    pub fn page(
        &self,
        default: &str,
        events: &[Event],
        title: impl FnOnce() -> String,
    ) -> Result<Response, ApiError> {
        Ok(match self.format(default) {
            "text" => (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                transcript::to_text(events),
            )
                .into_response(),
            "html" => (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                transcript::to_html(&title(), events),
            )
                .into_response(),
            other => return Err(ApiError::BadJson(format!("unknown format {other:?}"))),
        })
    }

    fn format<'a>(&'a self, default: &'a str) -> &'a str {
        self.format.as_deref().unwrap_or(default)
    }
}

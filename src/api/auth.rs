//! `Authorization: MOBILE-API-140-327-PLAIN appId="<entry>", clientId="<device>"`.
//!
//! The app entry names the service; the client id is the device, the only one that may see
//! its chats. A browser cannot send this header on a WebSocket: it buys a short-lived socket
//! ticket with it over HTTP instead (`POST chats/{id}/ws_token`, see `ws.rs`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, AppState};

const SCHEME: &str = "MOBILE-API-140-327-PLAIN";
const MAX_ID: usize = 256;

/// An authenticated customer app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub app_id: String,
    pub service: String,
    pub device: String,
}

/// Parses the header value into `(appId, clientId)`.
pub fn parse(value: &str) -> Option<(String, String)> {
    let rest = value.trim().strip_prefix(SCHEME)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let (mut app, mut client) = (None, None);
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        let val = val.trim().strip_prefix('"')?.strip_suffix('"')?;
        if val.is_empty() || val.len() > MAX_ID || val.contains('"') {
            return None;
        }
        match key.trim() {
            "appId" => app = Some(val.to_string()),
            "clientId" => client = Some(val.to_string()),
            _ => {}
        }
    }
    Some((app?, client?))
}

impl Client {
    /// The app `app_id` on `device`, if `app_id` names a configured service entry and `device`
    /// is not the identity of another channel (an SMS customer's `sms:<number>`: whoever
    /// claimed it would read that customer's chat and receive their next texts).
    pub fn of(state: &AppState, app_id: String, device: String) -> Result<Client, ApiError> {
        if device.starts_with(crate::sms::channel::DEVICE_PREFIX) {
            return Err(ApiError::ClientIdReserved);
        }
        let service = state
            .config()
            .service_for_entry(&app_id)
            .ok_or_else(|| ApiError::UnknownApp(app_id.clone()))?
            .name
            .clone();
        Ok(Client {
            app_id,
            service,
            device,
        })
    }

    /// The client the request's `Authorization` header names; `None` without the header.
    pub fn from_headers(
        headers: &axum::http::HeaderMap,
        state: &AppState,
    ) -> Option<Result<Client, ApiError>> {
        let value = headers.get(axum::http::header::AUTHORIZATION)?;
        Some(
            value
                .to_str()
                .ok()
                .and_then(parse)
                .ok_or(ApiError::Unauthorized)
                .and_then(|(app_id, device)| Client::of(state, app_id, device)),
        )
    }
}

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Client::from_headers(&parts.headers, state).unwrap_or(Err(ApiError::Unauthorized))
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn the_header_is_parsed_strictly() {
        assert_eq!(
            parse(r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="d1""#),
            Some(("claims-app".into(), "d1".into()))
        );
        assert_eq!(
            parse(r#"MOBILE-API-140-327-PLAIN clientId="d1",appId="a""#),
            Some(("a".into(), "d1".into()))
        );
        assert_eq!(parse(r#"Bearer appId="a", clientId="d1""#), None);
        assert_eq!(parse(r#"MOBILE-API-140-327-PLAIN appId="a""#), None);
        assert_eq!(
            parse(r#"MOBILE-API-140-327-PLAIN appId=a, clientId="d1""#),
            None
        );
        assert_eq!(
            parse(r#"MOBILE-API-140-327-PLAINappId="a", clientId="d1""#),
            None
        );
    }
}

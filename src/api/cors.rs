//! CORS for the websites that embed the customer web chat (`chat.allowed_origins`).
//!
//! The widget runs in the embedding page, so its calls to the customer API and its imports of
//! `/chat/` modules come from that page's origin. Only the origins listed are answered with
//! `Access-Control-Allow-Origin` (echoing the one origin, never `*`), and only on those two
//! prefixes: the agent, admin and operator endpoints never speak CORS. No credentials are
//! involved (the customer API authenticates with its own header, not cookies), so none are
//! allowed. A preflight from any other origin is refused with `403 origin_not_allowed`; a
//! simple request from one is served without the header, and the browser keeps the answer
//! from the page.
//!
//! WebSockets are not subject to CORS; a browser opens the customer socket with a ticket it
//! could only obtain through an allowed (or same-origin) call.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// The paths an embedding page may reach.
const PREFIXES: &[&str] = &["/clientweb/api/v1/", "/chat/"];
/// What the customer API needs beyond a simple request.
const ALLOW_METHODS: &str = "GET, POST";
const ALLOW_HEADERS: &str = "authorization, content-type";
/// How long a browser may keep a preflight's answer (seconds).
const MAX_AGE: &str = "600";

/// The middleware: answers preflights and marks answers to allowed origins.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if !PREFIXES.iter().any(|p| path.starts_with(p)) {
        return next.run(request).await;
    }
    let origin = request.headers().get(header::ORIGIN).cloned();
    let allowed = origin
        .as_ref()
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| is_allowed(&state.config().chat.allowed_origins, o));
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = match (preflight, allowed) {
        (true, true) => StatusCode::NO_CONTENT.into_response(),
        (true, false) => ApiError::OriginNotAllowed.into_response(),
        (false, _) => next.run(request).await,
    };
    let headers = response.headers_mut();
    // Answers differ by origin: caches must keep them apart.
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let (true, Some(origin)) = (allowed, origin) {
        allow(headers, origin, preflight);
    }
    response
}

fn allow(headers: &mut HeaderMap, origin: HeaderValue, preflight: bool) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE),
        );
    } else {
        // The file name of a download.
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("content-disposition"),
        );
    }
}

/// Whether `origin` is one of `allowed` (scheme and host compare without case, RFC 6454 §4).
fn is_allowed(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::is_allowed;

    #[test]
    fn origins_match_whole_and_without_case() {
        let allowed = vec!["https://www.example.com".to_string()];
        assert!(is_allowed(&allowed, "https://www.example.com"));
        assert!(is_allowed(&allowed, "HTTPS://WWW.EXAMPLE.COM"));
        for other in [
            "http://www.example.com",
            "https://www.example.com:8443",
            "https://www.example.com.evil.net",
            "https://example.com",
            "null",
            "",
        ] {
            assert!(!is_allowed(&allowed, other), "{other}");
        }
        assert!(!is_allowed(&[], "https://www.example.com"));
    }
}

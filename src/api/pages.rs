//! The web pages the gateway serves itself: the files under `web/`, embedded in the binary at
//! build time, so `tandem run` needs nothing beside it and no front-end build step.
//!
//! Each application is a folder: `/desk/` (the Agent Desktop), `/chat/` (the customer web chat),
//! `/mobile/` (the mobile operator's page, whose shell `/m/{token}` serves) and `/vendor/`
//! (pinned third-party libraries with their licences). A folder's own path serves
//! its `index.html`; anything else is served by name with a type from its extension.
//!
//! Responses carry a strong `ETag` (the file's SHA-256), so a browser revalidates with
//! `If-None-Match` and a new release is never hidden behind a stale cache; `Cache-Control:
//! no-cache` makes it ask every time. Pages get a content security policy that lets them load
//! only from this origin (images may come from anywhere: map tiles), and the desk may not be
//! framed by another site.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};

use super::ApiError;

static WEB: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/web");

/// The folders of `web/` served as applications, and whether another site may frame them.
const APPS: &[(&str, Framing)] = &[
    ("desk", Framing::SameOrigin),
    ("chat", Framing::Anyone),
    ("vendor", Framing::Anyone),
    ("mobile", Framing::SameOrigin),
];

#[derive(Clone, Copy)]
enum Framing {
    SameOrigin,
    Anyone,
}

/// Content security policy of our pages: scripts, styles and connections only to this origin
/// (`'self'` covers its `ws:`/`wss:` too); pictures and media also from `data:` and `blob:`
/// (previews, WebRTC), and images from any host for map tiles.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob: http: https:; \
                   media-src 'self' blob:; object-src 'none'; base-uri 'none'";
const CSP_SAME_ORIGIN_FRAMES: &str = "default-src 'self'; img-src 'self' data: blob: http: https:; \
                   media-src 'self' blob:; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'self'";

/// The routes of every application in [`APPS`].
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    for &(app, framing) in APPS {
        let root = format!("/{app}/");
        router = router
            .route(
                &format!("/{app}"),
                get(move || async move { Redirect::permanent(&format!("/{app}/")) }),
            )
            .route(
                &root,
                get(move |headers: HeaderMap| async move {
                    serve(&format!("{app}/index.html"), framing, &headers)
                }),
            )
            .route(
                &format!("/{app}/{{*path}}"),
                get(
                    move |Path(path): Path<String>, headers: HeaderMap| async move {
                        serve(&format!("{app}/{path}"), framing, &headers)
                    },
                ),
            );
    }
    router
}

/// One embedded file, or `404 no_such_endpoint`.
fn serve(path: &str, framing: Framing, headers: &HeaderMap) -> Response {
    let Some(file) = files().get(path) else {
        return ApiError::NoSuchEndpoint.into_response();
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == file.etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        file.contents.into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, file.mime.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::ETAG, file.etag.clone());
    if file.mime == "text/html" {
        let policy = match framing {
            Framing::SameOrigin => HeaderValue::from_static(CSP_SAME_ORIGIN_FRAMES),
            Framing::Anyone => HeaderValue::from_static(CSP),
        };
        h.insert(header::CONTENT_SECURITY_POLICY, policy);
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

/// An embedded file with what its responses say of it.
struct WebFile {
    contents: &'static [u8],
    mime: HeaderValue,
    /// A strong validator: the first half of the file's SHA-256.
    etag: HeaderValue,
}

/// Every embedded file by its path under `web/`, indexed once.
fn files() -> &'static HashMap<&'static str, WebFile> {
    static FILES: OnceLock<HashMap<&'static str, WebFile>> = OnceLock::new();
    FILES.get_or_init(|| {
        let mut files = HashMap::new();
        let mut dirs = vec![&WEB];
        while let Some(dir) = dirs.pop() {
            dirs.extend(dir.dirs());
            for file in dir.files() {
                let Some(path) = file.path().to_str() else {
                    continue;
                };
                let mime = mime_guess::from_path(path).first_or_octet_stream();
                let digest = Sha256::digest(file.contents());
                let etag = format!("\"{}\"", hex::encode(&digest[..16]));
                files.insert(
                    path,
                    WebFile {
                        contents: file.contents(),
                        mime: HeaderValue::from_str(mime.essence_str())
                            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
                        etag: HeaderValue::from_str(&etag).expect("hex is a valid header"),
                    },
                );
            }
        }
        files
    })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str, etag: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(tag) = etag {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        routes::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_application_folder_serves_its_index_with_a_policy() {
        let page = get("/desk/", None).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html");
        let policy = page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(policy.contains("default-src 'self'"), "{policy}");
        assert!(policy.contains("frame-ancestors 'self'"), "{policy}");
        // The customer chat may be framed by the sites that embed it.
        let chat = get("/chat/", None).await;
        let policy = chat.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(!policy.contains("frame-ancestors"), "{policy}");
    }

    #[tokio::test]
    async fn the_bare_folder_name_redirects_to_the_folder() {
        let response = get("/desk", None).await;
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(response.headers()[header::LOCATION], "/desk/");
    }

    #[tokio::test]
    async fn a_known_etag_is_answered_not_modified() {
        let first = get("/chat/index.html", None).await;
        let tag = first.headers()[header::ETAG].to_str().unwrap().to_string();
        assert!(tag.starts_with('"') && tag.len() == 34, "{tag}");
        let again = get("/chat/index.html", Some(&tag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let stale = get("/chat/index.html", Some("\"0\"")).await;
        assert_eq!(stale.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_files_and_escapes_are_not_found() {
        for path in [
            "/desk/nope.js",
            "/desk/../mobile.html",
            "/desk/%2e%2e/mobile.html",
        ] {
            let response = get(path, None).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }
}

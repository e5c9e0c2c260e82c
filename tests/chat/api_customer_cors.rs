//! CORS for the websites that embed the web chat: the origins in `chat.allowed_origins` get
//! their preflights answered and `Access-Control-Allow-Origin` on the customer API and on
//! `/chat/`; any other origin (and every origin by default) gets none, a preflight from it is
//! refused with `403 origin_not_allowed`, and the agent and admin APIs never speak CORS.

use crate::api;

use api::Api;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};

const SITE: &str = "http://127.0.0.1:8081";

async fn with_origins(origins: &str) -> Api {
    let config = api::CONFIG.replace(
        "[chat]\n",
        &format!("[chat]\nallowed_origins = {origins}\n"),
    );
    Api::with_config(&config).await
}

fn preflight(path: &str, origin: &str) -> Request<Body> {
    Request::builder()
        .method("OPTIONS")
        .uri(path)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .body(Body::empty())
        .unwrap()
}

fn get(path: &str, origin: &str) -> Request<Body> {
    Request::get(path)
        .header("origin", origin)
        .header("authorization", api::auth("dev-1"))
        .body(Body::empty())
        .unwrap()
}

fn allow_origin(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn an_allowed_origin_may_call_the_customer_api_and_load_the_chat() {
    let api = with_origins(&format!("[\"{SITE}\"]")).await;

    let (status, _, headers) = api.raw(preflight("/clientweb/api/v1/chats", SITE)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(allow_origin(&headers), Some(SITE));
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    assert!(headers.get("access-control-allow-credentials").is_none());
    assert!(headers["vary"].to_str().unwrap().contains("Origin"));

    let (status, _, headers) = api.raw(get("/clientweb/api/v1/availability", SITE)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(allow_origin(&headers), Some(SITE));
    // An error answer is readable by the page too (it shows the code).
    let (status, _, headers) = api
        .raw(get("/clientweb/api/v1/chats/nope/history", SITE))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(allow_origin(&headers), Some(SITE));
    // The widget's modules and styles load from /chat/ (module scripts need CORS).
    for file in ["/chat/app.js", "/chat/widget.js", "/chat/chat.css"] {
        let (status, _, headers) = api.raw(get(file, SITE)).await;
        assert_eq!(status, StatusCode::OK, "{file}");
        assert_eq!(allow_origin(&headers), Some(SITE), "{file}");
    }
    // Origins compare whole: another port, scheme or a longer host is another origin.
    for other in [
        "http://127.0.0.1:8082",
        "https://127.0.0.1:8081",
        "http://127.0.0.1:80810",
    ] {
        let (status, _, headers) = api.raw(preflight("/clientweb/api/v1/chats", other)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{other}");
        assert_eq!(allow_origin(&headers), None, "{other}");
    }
}

#[tokio::test]
async fn no_origin_is_allowed_by_default_and_staff_apis_never_speak_cors() {
    let api = Api::new().await;
    let (status, body, headers) = api.raw(preflight("/clientweb/api/v1/chats", SITE)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "origin_not_allowed");
    assert_eq!(allow_origin(&headers), None);
    // A simple request is served (the browser keeps the answer from the page).
    let (status, _, headers) = api.raw(get("/clientweb/api/v1/availability", SITE)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(allow_origin(&headers), None);
    // Requests without an Origin (apps, same-origin GETs) are untouched.
    let request = Request::get("/clientweb/api/v1/availability")
        .header("authorization", api::auth("dev-1"))
        .body(Body::empty())
        .unwrap();
    let (status, _, headers) = api.raw(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(allow_origin(&headers), None);

    let api = with_origins(&format!("[\"{SITE}\"]")).await;
    for path in [
        "/agent/v1/login",
        "/admin/v1/interactions",
        "/metrics",
        "/desk/",
    ] {
        let (status, _, headers) = api.raw(preflight(path, SITE)).await;
        assert_eq!(allow_origin(&headers), None, "{path}");
        assert_ne!(status, StatusCode::NO_CONTENT, "{path}");
    }
}

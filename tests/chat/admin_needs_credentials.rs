//! Administration is not open to whoever reaches the port: with `admin.token` set, every admin
//! endpoint needs it as a bearer token (and `/metrics` also takes the scraper's
//! `admin.metrics_token`); with no token, admin answers only on a loopback listener and refuses
//! everyone on a public one; `admin.listen` moves admin off the public listener. Listings never
//! show a customer's credential (the device id).

use crate::api;

use api::{Api, CONFIG};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;

const TOKEN: &str = "operators-secret-0123456789";
const SCRAPER: &str = "prometheus-secret-0123456789";

async fn get(api: &Api, uri: &str, bearer: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::get(uri);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let (status, body, _) = api.raw(request.body(Body::empty()).unwrap()).await;
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, json)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn with(extra: &str) -> String {
    format!("{CONFIG}\n{extra}")
}

#[tokio::test]
async fn with_a_token_every_admin_endpoint_needs_it() {
    let api = Api::with_config(&with(&format!(
        "[admin]\ntoken = \"{TOKEN}\"\nmetrics_token = \"{SCRAPER}\"\n"
    )))
    .await;
    let chat = api.create_chat("dev-secret-1").await;
    let transcript = format!("/admin/v1/interactions/{chat}/transcript");
    for uri in ["/admin/v1/interactions", transcript.as_str(), "/metrics"] {
        let (status, body) = get(&api, uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {body}");
        assert_eq!(code(&body), "admin_credentials_required", "{uri}");
        let (status, body) = get(&api, uri, Some("operators-secret-012345678X")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {body}");
        assert_eq!(code(&body), "admin_token_invalid", "{uri}");
        let (status, body) = get(&api, uri, Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    }
    // The scraper's token reads metrics and nothing else.
    assert_eq!(get(&api, "/metrics", Some(SCRAPER)).await.0, StatusCode::OK);
    let (status, body) = get(&api, "/admin/v1/interactions", Some(SCRAPER)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Health stays open for load balancers.
    assert_eq!(get(&api, "/healthz", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_listing_never_shows_a_customers_credential() {
    let api = Api::new().await;
    let chat = api.create_chat("dev-secret-2").await;
    let (status, list) = get(&api, "/admin/v1/interactions", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["open"][0]["id"], chat.as_str());
    let (_, transcript) = get(
        &api,
        &format!("/admin/v1/interactions/{chat}/transcript"),
        None,
    )
    .await;
    for text in [list.to_string(), transcript.to_string()] {
        assert!(!text.contains("dev-secret-2"), "{text}");
    }
}

#[tokio::test]
async fn without_a_token_a_public_listener_refuses_admin() {
    let public = CONFIG.replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\"");
    assert_ne!(public, CONFIG);
    let api = Api::with_config(&public).await;
    for uri in ["/admin/v1/interactions", "/metrics"] {
        let (status, body) = get(&api, uri, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {body}");
        assert_eq!(code(&body), "admin_disabled", "{uri}");
    }
    assert_eq!(get(&api, "/healthz", None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_listener_of_its_own_takes_admin_off_the_public_one() {
    let api = Api::with_config(&with("[admin]\nlisten = \"127.0.0.1:0\"\n")).await;
    for uri in ["/admin/v1/interactions", "/metrics"] {
        let (status, body) = get(&api, uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
    }
    let admin = tandem::api::admin_app(api.state.clone());
    let response =
        tower::ServiceExt::oneshot(admin, Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

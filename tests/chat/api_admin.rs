//! Health, readiness, metrics, the interaction list and transcripts (JSON, text, HTML).

use crate::api;

use api::Api;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

async fn get(api: &Api, uri: &str) -> (StatusCode, String, String) {
    let (status, body, headers) = api
        .raw(Request::get(uri).body(Body::empty()).unwrap())
        .await;
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, String::from_utf8(body).unwrap(), content_type)
}

#[tokio::test]
async fn operators_see_health_metrics_interactions_and_transcripts() {
    let api = Api::new().await;
    assert_eq!(get(&api, "/healthz").await.0, StatusCode::OK);
    let (status, body, _) = get(&api, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let chat = api.create_chat("dev-1").await;
    api.accept(&chat).await;
    api.say(&chat, "dev-1", "c-1", "my <b>car</b> broke down")
        .await;

    let (_, metrics, content_type) = get(&api, "/metrics").await;
    assert!(content_type.contains("openmetrics"));
    assert!(metrics.contains("tandem_open_interactions 1"), "{metrics}");
    assert!(metrics.contains("tandem_messages_total 1"), "{metrics}");
    assert!(metrics.contains("tandem_store_latency_seconds_count"));

    let (_, list, _) = get(&api, "/admin/v1/interactions").await;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["open"][0]["id"], chat.as_str());
    assert_eq!(list["open"][0]["phase"], "active");
    assert_eq!(list["open"][0]["context"], json!({"policy": "P-1"}));
    assert_eq!(list["recent"][0]["id"], chat.as_str());

    let base = format!("/admin/v1/interactions/{chat}/transcript");
    let (_, text, _) = get(&api, &format!("{base}?format=text")).await;
    assert!(text.contains("chat opened for claims by Carol"), "{text}");
    assert!(text.contains("Alice (agent alice) joined"), "{text}");
    assert!(text.contains("Carol: my <b>car</b> broke down"), "{text}");
    let (_, html, content_type) = get(&api, &format!("{base}?format=html")).await;
    assert!(content_type.starts_with("text/html"));
    assert!(html.contains("my &lt;b&gt;car&lt;/b&gt; broke down"));
    let (_, json, _) = get(&api, &base).await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["events"][0]["event"], "created");
    let (status, _, _) = get(&api, "/admin/v1/interactions/nope/transcript").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

//! Files: multipart upload with a size limit, type sniffed from the bytes, stored once by
//! content hash, served with their type only to the chat's device.

use crate::api;

use api::{Api, code, png};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

fn multipart(name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "XyZ123boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(api: &Api, device: &str, name: &str, bytes: &[u8]) -> (StatusCode, Value) {
    let (content_type, body) = multipart(name, bytes);
    let request = Request::post("/clientweb/api/v1/files")
        .header("authorization", api::auth(device))
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    let (status, body, _) = api.raw(request).await;
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn an_image_is_uploaded_sent_and_served_to_the_chats_device_only() {
    let api = Api::new().await;
    let chat = api.create_chat("dev-1").await;
    let image = png(b"pixels");

    let (status, file) = upload(&api, "dev-1", "crash.png", &image).await;
    assert_eq!(status, StatusCode::OK, "{file}");
    assert_eq!(file["file_type"], "image/png");
    let file_id = file["file_id"].as_str().unwrap();

    // Not in the chat yet: not served.
    let uri = format!("/clientweb/api/v1/chats/{chat}/files/{file_id}");
    assert_eq!(
        code(&api.call("GET", &uri, "dev-1", None).await),
        (404, "file_not_found")
    );

    // Another device cannot send it into its own chat.
    let other = api.create_chat("dev-2").await;
    let answer = api
        .send(
            &other,
            "dev-2",
            json!([{"event": "chat_session_file", "file_id": file_id}]),
        )
        .await;
    assert_eq!(code(&answer), (404, "file_not_found"));

    let (status, body) = api
        .send(
            &chat,
            "dev-1",
            json!([{"event": "chat_session_file", "file_id": file_id}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let history = api.history(&chat, "dev-1").await;
    let sent = history
        .iter()
        .find(|e| e["event"] == "chat_session_file")
        .unwrap();
    assert_eq!(sent["file_name"], "crash.png");
    assert_eq!(sent["file_type"], "image/png");

    let request = Request::get(&uri)
        .header("authorization", api::auth("dev-1"))
        .body(Body::empty())
        .unwrap();
    let (status, bytes, headers) = api.raw(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, image);
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(
        code(&api.call("GET", &uri, "dev-2", None).await),
        (404, "chat_not_found")
    );

    // The same bytes again are stored once.
    let (status, _) = upload(&api, "dev-1", "again.png", &image).await;
    assert_eq!(status, StatusCode::OK);
    let stored: usize = std::fs::read_dir(api.dir.path().join("files"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn oversized_mistyped_and_empty_files_are_refused() {
    let api = Api::new().await;
    let answer = upload(&api, "dev-1", "big.png", &png(&[0u8; 5000])).await;
    assert_eq!(code(&answer), (413, "file_too_large"));
    let answer = upload(&api, "dev-1", "notes.txt", b"just some text").await;
    assert_eq!(code(&answer), (415, "file_type_not_allowed"));
    let answer = upload(&api, "dev-1", "empty.png", b"").await;
    assert_eq!(code(&answer), (400, "empty_file"));
    let request = Request::post("/clientweb/api/v1/files")
        .header("authorization", api::auth("dev-1"))
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let (status, body, _) = api.raw(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("bad_upload"));
}

//! Files from the customer's side for the desk journeys: a real (decodable) picture and a PDF,
//! uploaded over the customer API and sent into the chat.
#![allow(dead_code)]

use std::net::SocketAddr;

use serde_json::{Value, json};

/// An 8×6 red PNG that a browser decodes (its `naturalWidth` is 8).
pub fn red_png() -> Vec<u8> {
    hex::decode(
        "89504e470d0a1a0a0000000d4948445200000008000000060802000000716748ac00000011494441\
         54789c633821278715310ca40400698830c16485a2e20000000049454e44ae426082",
    )
    .unwrap()
}

/// A small PDF (its magic is what the gateway sniffs).
pub fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec()
}

/// Uploads `bytes` as `name` for the customer `auth`; the file id.
pub async fn upload(
    http: &reqwest::Client,
    addr: SocketAddr,
    auth: &str,
    bytes: Vec<u8>,
    name: &str,
) -> String {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string());
    let answer: Value = http
        .post(format!("http://{addr}/clientweb/api/v1/files"))
        .header("authorization", auth)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["file_id"]
        .as_str()
        .unwrap_or_else(|| panic!("an upload: {answer}"))
        .to_string()
}

/// The `chat_session_file` event that sends an uploaded file into the chat.
pub fn file_event(file_id: &str) -> Value {
    json!([{"event": "chat_session_file", "file_id": file_id}])
}

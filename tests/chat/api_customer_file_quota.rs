//! A chat holds a bounded number of files and bytes: sending one more into it, or uploading
//! more than one chat's worth without sending it, is refused with `413
//! chat_file_quota_exceeded`. Against the real binary over 127.0.0.1.

use crate::common;

use std::net::SocketAddr;

use serde_json::{Value, json};

const CONFIG: &str = r#"
[files]
max_bytes = 4096
allowed_types = ["image/png"]
max_files_per_chat = 2
max_bytes_per_chat = 3000

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
"#;

fn auth(device: &str) -> String {
    format!(r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="{device}""#)
}

/// The smallest thing taken for a PNG, padded to `size` bytes.
fn png(size: usize, salt: u8) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0".to_vec();
    bytes.resize(size, salt);
    bytes
}

struct Customer {
    http: reqwest::Client,
    at: SocketAddr,
    device: &'static str,
}

impl Customer {
    async fn create_chat(&self) -> String {
        let answer: Value = self
            .http
            .post(format!("http://{}/clientweb/api/v1/chats", self.at))
            .header("authorization", auth(self.device))
            .json(&json!({"from": "Carol"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["chat_id"].as_str().expect("a chat").to_string()
    }

    async fn upload(&self, bytes: Vec<u8>) -> (u16, Value) {
        let part = reqwest::multipart::Part::bytes(bytes).file_name("photo.png");
        let response = self
            .http
            .post(format!("http://{}/clientweb/api/v1/files", self.at))
            .header("authorization", auth(self.device))
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn send(&self, chat: &str, file: &Value) -> (u16, Value) {
        let file_id = file["file_id"].as_str().expect("a file id");
        let response = self
            .http
            .post(format!(
                "http://{}/clientweb/api/v1/chats/{chat}/events",
                self.at
            ))
            .header("authorization", auth(self.device))
            .json(&json!({"events": [{"event": "chat_session_file", "file_id": file_id}]}))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

fn code(answer: &(u16, Value)) -> (u16, &str) {
    (
        answer.0,
        answer.1["error"]["code"].as_str().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_holds_at_most_its_quota_of_files() {
    let gateway = common::Gateway::start(CONFIG);
    let carol = Customer {
        http: reqwest::Client::new(),
        at: gateway.http,
        device: "carol",
    };
    let chat = carol.create_chat().await;
    for salt in [1, 2] {
        let (status, file) = carol.upload(png(100, salt)).await;
        assert_eq!(status, 200, "{file}");
        let sent = carol.send(&chat, &file).await;
        assert_eq!(sent.0, 200, "{sent:?}");
    }
    // A third file uploads (it may go to another chat) but does not go into this one.
    let (status, third) = carol.upload(png(100, 3)).await;
    assert_eq!(status, 200, "{third}");
    let answer = carol.send(&chat, &third).await;
    assert_eq!(
        code(&answer),
        (413, "chat_file_quota_exceeded"),
        "{answer:?}"
    );

    // Uploads not sent anywhere are bounded by one chat's worth too: by count…
    let (status, fourth) = carol.upload(png(100, 4)).await;
    assert_eq!(status, 200, "{fourth}");
    let answer = carol.upload(png(100, 5)).await;
    assert_eq!(
        code(&answer),
        (413, "chat_file_quota_exceeded"),
        "{answer:?}"
    );

    // …and by bytes, even under the per-file limit.
    let dave = Customer {
        device: "dave",
        ..carol
    };
    let (status, big) = dave.upload(png(2500, 6)).await;
    assert_eq!(status, 200, "{big}");
    let answer = dave.upload(png(1000, 7)).await;
    assert_eq!(
        code(&answer),
        (413, "chat_file_quota_exceeded"),
        "{answer:?}"
    );
    let (status, small) = dave.upload(png(400, 8)).await;
    assert_eq!(status, 200, "{small}");
}

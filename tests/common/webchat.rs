//! The customer web chat in headless Chromium against the real binary, with the agent over the
//! agent API: the gateway's config, the chat page's address, the steps every journey starts
//! with, and small files that a browser really renders.
//!
//! The including test file provides `crate::common` (the gateway), `crate::chat_browser` and
//! `crate::agent_desk` (the agent's socket), so one `Desk` type serves every helper.
#![allow(dead_code)] // each test file uses a part of it

use std::net::SocketAddr;

use serde_json::{Value, json};
use tandem::routing::password;

use crate::agent_desk::Desk;
use crate::chat_browser::{Browser, Page};

pub const APP: &str = "claims-app";
pub const CUSTOMER: &str = "Carol";
pub const PHONE: &str = "+15550123";

/// One video-capable service and the agent Alice (password `desk`), plus `extra` TOML.
pub fn config(extra: &str) -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[[services]]
name = "claims"
entries = ["{APP}"]
department = "claims"
routing = "ring_all"
video_allowed = true
{extra}

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

/// The chat page for the claims app on `gateway`.
pub fn chat_url(gateway: SocketAddr) -> String {
    format!("http://{gateway}/chat/?app={APP}")
}

/// On the start panel: gives the name and phone number and starts the chat; waits until the
/// page says it is waiting for an agent.
pub async fn start_chat(browser: &mut Browser, page: Page, name: &str, phone: &str) {
    browser.shows(page, "button", "Start chat").await;
    browser.fill(page, "Your name", name).await;
    browser
        .fill(page, "Phone number (optional, to be called back)", phone)
        .await;
    browser.click(page, "button", "Start chat").await;
    browser.sees(page, "Waiting for an agent").await;
}

/// The agent takes the chat of the customer called `name`: its id and the offer she got.
pub async fn accept(desk: &mut Desk, name: &str) -> (String, Value) {
    let offer = desk
        .until(|v| v["event"] == "offer" && v["customer"]["name"] == name)
        .await;
    let chat = offer["chat_id"].as_str().unwrap().to_string();
    let accepted = desk
        .command(json!({"command": "accept", "chat_id": chat}))
        .await;
    assert_eq!(accepted["event"], "ack", "{accepted}");
    (chat, offer)
}

/// The agent uploads a file and sends it into `chat`.
pub async fn agent_sends_file(
    http: &reqwest::Client,
    gateway: SocketAddr,
    desk: &mut Desk,
    chat: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Value {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string());
    let uploaded: Value = http
        .post(format!("http://{gateway}/agent/v1/files"))
        .bearer_auth(&desk.token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let file_id = uploaded["file_id"]
        .as_str()
        .unwrap_or_else(|| panic!("an uploaded file: {uploaded}"))
        .to_string();
    let sent = desk
        .command(json!({"command": "send_file", "chat_id": chat, "file_id": file_id}))
        .await;
    assert_eq!(sent["event"], "ack", "{sent}");
    uploaded
}

/// The bytes of a file of `chat`, as the agent downloads it.
pub async fn agent_downloads(
    http: &reqwest::Client,
    gateway: SocketAddr,
    desk: &Desk,
    chat: &str,
    file_id: &str,
) -> Vec<u8> {
    let response = http
        .get(format!(
            "http://{gateway}/agent/v1/chats/{chat}/files/{file_id}"
        ))
        .bearer_auth(&desk.token)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.bytes().await.unwrap().to_vec()
}

/// A PNG a browser renders: `width`×`height` pixels of one colour (zlib with stored blocks,
/// RFC 1950/1951, so no compressor is needed).
pub fn png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    // Each row: filter type 0 (none), then the pixels.
    let row: Vec<u8> = std::iter::once(0)
        .chain(rgb.iter().copied().cycle().take(3 * width as usize))
        .collect();
    let raw = row.repeat(height as usize);
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", zlib), (b"IEND", Vec::new())] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(&data);
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    out
}

/// A one-page PDF (as far as type sniffing and a download go).
pub fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n\
      2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
        .to_vec()
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// JavaScript: how many bubbles of the conversation show exactly `text`.
pub fn bubbles_with(text: &str) -> String {
    format!(
        "(() => {{ const want = {}; let n = 0; \
         const roots = [document, ...[...document.querySelectorAll('*')].filter(e => e.shadowRoot).map(e => e.shadowRoot)]; \
         for (const r of roots) for (const b of r.querySelectorAll('.tandem-bubble')) if (b.innerText === want) n++; \
         return n; }})()",
        serde_json::to_string(text).unwrap()
    )
}

/// JavaScript: the pictures shown in the conversation that the browser decoded (width > 0).
pub const PICTURES_SHOWN: &str = "(() => { \
    const roots = [document, ...[...document.querySelectorAll('*')].filter(e => e.shadowRoot).map(e => e.shadowRoot)]; \
    let n = 0; for (const r of roots) for (const img of r.querySelectorAll('.tandem-log img')) \
    if (img.complete && img.naturalWidth > 0) n++; return n; })()";

/// JavaScript: the receipt status (`sending`, `sent`, `delivered`, `read`) shown under the
/// customer's message whose text is `text`, or null.
pub fn receipt_of(text: &str) -> String {
    format!(
        "(() => {{ const want = {}; \
         const roots = [document, ...[...document.querySelectorAll('*')].filter(e => e.shadowRoot).map(e => e.shadowRoot)]; \
         for (const r of roots) for (const li of r.querySelectorAll('.tandem-log li.from-customer')) {{ \
           const b = li.querySelector('.tandem-bubble'); \
           if (b && b.innerText === want) return li.querySelector('.tandem-receipt').dataset.status; }} \
         return null; }})()",
        serde_json::to_string(text).unwrap()
    )
}

/// A website on its own loopback port (another origin than the gateway) whose page embeds the
/// chat with one tag. Its styles would wreck a widget that shared them: every font, buttons
/// green with dashed borders, every input and text area hidden.
pub struct Site {
    pub addr: SocketAddr,
    /// The gateway the page's tag loads the chat from (known once it is started).
    pub gateway: std::sync::Arc<std::sync::OnceLock<SocketAddr>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Site {
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// Serves the site; `context` is the tag's `data-context`.
pub async fn serve_site(context: &str) -> Site {
    let gateway: std::sync::Arc<std::sync::OnceLock<SocketAddr>> = Default::default();
    let page = {
        let gateway = gateway.clone();
        let context = context.to_string();
        move || {
            let gateway = *gateway
                .get()
                .expect("the gateway is started before the page is asked");
            format!(
                r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme Insurance</title>
<style>
  * {{ font-family: "Comic Sans MS", cursive !important; letter-spacing: 3px !important; }}
  body {{ color: rgb(255, 0, 0); font-size: 30px; background: #fffbe6; }}
  button {{ background: rgb(0, 255, 0) !important; border: 5px dashed red !important; }}
  input, textarea {{ display: none !important; }}
  div, p, section {{ padding: 40px !important; }}
</style>
</head>
<body>
<h1>Acme Insurance</h1>
<p>Report a claim online, or talk to us.</p>
<button type="button" id="site-button">Get a quote</button>
<script src="http://{gateway}/chat/widget.js" data-app-id="{APP}" data-context='{context}' async></script>
</body>
</html>
"#
            )
        }
    };
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = page();
            async move { axum::response::Html(html) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Site {
        addr,
        gateway,
        server,
    }
}

/// The config line that lets the site at `site` embed the chat.
pub fn allow(site: SocketAddr) -> String {
    format!("[chat]\nallowed_origins = [\"http://{site}\"]\n")
}

/// The gateway's next offer to the agent's own browser leg on `chat` (its SDP).
pub async fn agent_offer(desk: &mut Desk, chat: &str) -> String {
    let offer = desk
        .until(|v| {
            v["event"] == "webrtc_signaling"
                && v["chat_id"] == chat
                && v["data"]["type"] == "OFFER_CALL"
        })
        .await;
    offer["data"]["sdp"].as_str().unwrap().to_string()
}

/// The agent's browser leg answers the gateway's offer with `sdp`.
pub async fn agent_answer(desk: &mut Desk, chat: &str, sdp: &str) {
    let answered = desk
        .command(json!({"command": "webrtc_signaling", "chat_id": chat,
                        "data": {"type": "ANSWER_CALL", "sdp": sdp}}))
        .await;
    assert_eq!(answered["event"], "ack", "{answered}");
}

/// JavaScript: whether the banner that says the connection is being restored is hidden.
pub const CONNECTED: &str = "(() => { \
    const roots = [document, ...[...document.querySelectorAll('*')].filter(e => e.shadowRoot).map(e => e.shadowRoot)]; \
    return roots.every(r => [...r.querySelectorAll('.tandem-connection')].every(b => b.hidden)); })()";

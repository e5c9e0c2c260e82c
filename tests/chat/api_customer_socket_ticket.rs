//! A browser cannot send `Authorization` on a WebSocket: it buys a ticket over HTTP (with the
//! header) and opens the chat's socket with it in the query. The ticket opens that chat for
//! that device only, for a minute, and does not carry the device id; a socket with neither
//! header nor ticket, a forged or altered ticket, or another chat's ticket is refused before
//! the upgrade. Over real HTTP on 127.0.0.1.

use crate::api;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn ticket(http: &reqwest::Client, base: &str, chat: &str, device: &str) -> (u16, Value) {
    let response = http
        .post(format!("{base}/chats/{chat}/ws_token"))
        .header("authorization", api::auth(device))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The HTTP status of a WebSocket handshake to `url` without any header, and the socket if it
/// was upgraded.
async fn open(
    url: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let request = url.into_client_request().unwrap();
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("{url}: {e}"),
    }
}

#[tokio::test]
async fn a_ticket_opens_its_chats_socket_for_its_device_only() {
    let api = api::Api::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = api.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();
    let base = format!("http://{addr}/clientweb/api/v1");
    let chat = api.create_chat("dev-1").await;
    let other = api.create_chat("dev-2").await;

    // Another device's chat has no ticket for this one; no header, no ticket.
    let (status, body) = ticket(&http, &base, &other, "dev-1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("chat_not_found"))
    );
    let response = http
        .post(format!("{base}/chats/{chat}/ws_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    let (status, body) = ticket(&http, &base, &chat, "dev-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 60);
    let token = body["token"].as_str().unwrap().to_string();
    assert!(
        !token.contains(&hex::encode("dev-1")) && !token.contains("dev-1"),
        "the device id, the customer's lasting credential, stays out of the URL: {token}"
    );
    let url = body["url"].as_str().unwrap();
    assert!(
        url.ends_with(&format!("/chats/{chat}/ws?token={token}")),
        "{url}"
    );

    // The ticket opens the socket, which replays the chat from the start.
    let ws_base = format!("ws://{addr}/clientweb/api/v1/chats");
    let mut ws = open(&format!("{ws_base}/{chat}/ws?token={token}&after_seq=0"))
        .await
        .expect("the ticket opens the socket");
    let first = loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = frame {
            break serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    assert_eq!(first["event"], "chat_session_status", "{first}");
    assert_eq!(first["state"], "queued");

    // Not for another chat, not without a ticket, not altered.
    assert_eq!(
        open(&format!("{ws_base}/{other}/ws?token={token}"))
            .await
            .err(),
        Some(401)
    );
    assert_eq!(open(&format!("{ws_base}/{chat}/ws")).await.err(), Some(401));
    let mut altered = token.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
    let altered = String::from_utf8(altered).unwrap();
    assert_eq!(
        open(&format!("{ws_base}/{chat}/ws?token={altered}"))
            .await
            .err(),
        Some(401)
    );
    // A ticket cannot be stretched: a later expiry breaks the signature.
    let (expiry, rest) = token.split_once('.').unwrap();
    let later: u64 = expiry.parse::<u64>().unwrap() + 3_600_000;
    assert_eq!(
        open(&format!("{ws_base}/{chat}/ws?token={later}.{rest}"))
            .await
            .err(),
        Some(401)
    );
    // The header still works as it always did, and wins over a ticket.
    let mut request = format!("{ws_base}/{chat}/ws?token=garbage")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", api::auth("dev-1").parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
    let errors = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        errors.contains("tandem_api_errors_total{code=\"token_invalid\"} 3"),
        "{}",
        errors
            .lines()
            .filter(|l| l.contains("api_errors"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    server.abort();
}

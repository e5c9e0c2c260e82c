//! An agent's socket, opened as the Agent Desktop opens it.

use std::net::SocketAddr;

use serde_json::{Value, json};

pub type AgentSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Logs the agent `name` in over HTTP and opens its socket with the token, with Nagle's
/// algorithm off as browsers have it (an agent's frames for its chats go out back to back).
pub async fn open(
    http: &reqwest::Client,
    addr: SocketAddr,
    name: &str,
    password: &str,
) -> AgentSocket {
    let login: Value = http
        .post(format!("http://{addr}/agent/v1/login"))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("a login token");
    tokio_tungstenite::connect_async_with_config(
        format!("ws://{addr}/agent/v1/ws?token={token}"),
        None,
        true,
    )
    .await
    .unwrap()
    .0
}

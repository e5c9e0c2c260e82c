//! One customer cannot fill the shared pools of WebSockets and long polls: each chat and each
//! device (`clientId`) has a budget of its own (`429` with a stable code past it), and agents'
//! sockets come from a pool customers never draw from, so an agent's socket still opens when
//! every customer socket is taken. Against the real binary over 127.0.0.1.

use crate::common;

use std::net::SocketAddr;

use serde_json::{Value, json};
use tandem::routing::password;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn config() -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[http]
max_websockets = 6
max_long_polls = 6
max_connections_per_chat = 2
max_connections_per_device = 3
max_agent_websockets = 2

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"

[[agents]]
name = "alice"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

fn auth(device: &str) -> String {
    format!(r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="{device}""#)
}

async fn create_chat(http: &reqwest::Client, at: SocketAddr, device: &str) -> String {
    let answer: Value = http
        .post(format!("http://{at}/clientweb/api/v1/chats"))
        .header("authorization", auth(device))
        .json(&json!({"from": device}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["chat_id"].as_str().expect("a chat").to_string()
}

/// Opens the chat's socket as `device`: the socket, or the refusal's status and code.
async fn open(at: SocketAddr, device: &str, chat: &str) -> Result<Socket, (u16, String)> {
    let url = format!("ws://{at}/clientweb/api/v1/chats/{chat}/ws");
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", auth(device).parse().unwrap());
    refusal(
        tokio_tungstenite::connect_async(request)
            .await
            .map(|(ws, _)| ws),
    )
}

fn refusal(
    result: Result<Socket, tokio_tungstenite::tungstenite::Error>,
) -> Result<Socket, (u16, String)> {
    match result {
        Ok(ws) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body: Value = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            let code = body["error"]["code"].as_str().unwrap_or_default();
            Err((status, code.to_string()))
        }
        Err(e) => panic!("the socket neither opened nor was refused: {e}"),
    }
}

fn refused(result: Result<Socket, (u16, String)>) -> (u16, String) {
    match result {
        Ok(_) => panic!("the socket opened"),
        Err(refusal) => refusal,
    }
}

async fn agent_socket(http: &reqwest::Client, at: SocketAddr) -> Result<Socket, (u16, String)> {
    let login: Value = http
        .post(format!("http://{at}/agent/v1/login"))
        .json(&json!({"name": "alice", "password": "desk"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("a token");
    let url = format!("ws://{at}/agent/v1/ws?token={token}");
    refusal(
        tokio_tungstenite::connect_async(url)
            .await
            .map(|(ws, _)| ws),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_stays_within_its_budgets_and_agents_still_get_in() {
    let gateway = common::Gateway::start(&config());
    let at = gateway.http;
    let http = reqwest::Client::new();

    // One chat: two sockets, not three.
    let hog_a = create_chat(&http, at, "hog").await;
    let hog_b = create_chat(&http, at, "hog").await;
    let mut held = vec![
        open(at, "hog", &hog_a).await.expect("first socket"),
        open(at, "hog", &hog_a).await.expect("second socket"),
    ];
    assert_eq!(
        refused(open(at, "hog", &hog_a).await),
        (429, "too_many_connections_for_chat".into())
    );
    // One device: three in all, sockets and long polls alike.
    held.push(open(at, "hog", &hog_b).await.expect("third socket"));
    assert_eq!(
        refused(open(at, "hog", &hog_b).await),
        (429, "too_many_connections_for_device".into())
    );
    let poll = http
        .get(format!("http://{at}/clientweb/api/v1/chats/{hog_b}/events"))
        .header("authorization", auth("hog"))
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status().as_u16(), 429);
    let body: Value = poll.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections_for_device");

    // Other customers take the rest of the customers' pool…
    for device in ["c1", "c2", "c3"] {
        let chat = create_chat(&http, at, device).await;
        held.push(open(at, device, &chat).await.expect("a customer socket"));
    }
    let late = create_chat(&http, at, "late").await;
    assert_eq!(
        refused(open(at, "late", &late).await),
        (429, "too_many".into())
    );

    // …and the agent still gets in.
    let desk = agent_socket(&http, at).await;
    assert!(
        desk.is_ok(),
        "the agent's socket is refused: {:?}",
        desk.err()
    );

    // A closed socket gives its place back (the server sees the close a moment later).
    let mut first = held.remove(0);
    first.close(None).await.unwrap();
    drop(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match open(at, "hog", &hog_a).await {
            Ok(ws) => {
                held.push(ws);
                break;
            }
            Err(refusal) => {
                assert!(std::time::Instant::now() < deadline, "still {refusal:?}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    drop(held);
    drop(gateway);
}

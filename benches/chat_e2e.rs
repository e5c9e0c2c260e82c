//! Customer messages end to end, and the memory of open interactions.
//!
//! Latency: a customer's message over loopback → persisted (SQLite, group commit,
//! synchronous=FULL) → seen on the agent side's subscription of the interaction (what the agent
//! WebSocket will forward). It is sent twice over: as `POST chats/{id}/events` (run `latency`),
//! and as a frame on the chat's WebSocket (run `socket`), which is how the web chat sends while
//! its socket is up. Many customers write at once, each waiting for its previous message (the
//! answer, or the socket's `ack`); the clock starts once every chat is open. Each run also
//! prints the gateway's own CPU per message (it runs on a runtime of its own, and its threads'
//! time on CPU is read from `/proc/self/task/*/schedstat`: the customers' HTTP and WebSocket
//! clients share the machine but are not counted), and the store's transactions in that
//! window: how many, how many messages each carried, and how long each took.
//! Memory: resident set growth for N open interactions, each with an agent and a message.
//!
//! `cargo bench --bench chat_e2e [memory|latency|socket]` runs the full sizes; without `--bench` (as
//! under `cargo test --all-targets`) it runs a small pass as a smoke test.

#[path = "support/gateway_cpu.rs"]
mod gateway_cpu;
#[path = "support/store_stats.rs"]
mod store_stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use store_stats::store_totals;
use tandem::api::{self, AppState};
use tandem::bridge::{AgentId, Command, Customer, EventKind, InteractionId, Party};
use tandem::chat::files::FileStore;
use tandem::chat::store::Store;
use tandem::config::Config;
use tandem::hub::Hub;
use tandem::metrics::Metrics;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn hub_in(dir: &std::path::Path) -> (Hub, Arc<Metrics>, Config) {
    let mut config = Config::parse(
        "[chat]\nmax_chats_per_device = 1000000\nmax_open_interactions = 1000000\n\
         [[services]]\nname = \"claims\"\nentries = [\"claims-app\"]\ndepartment = \"claims\"\n",
    )
    .unwrap();
    config.store.url = format!("sqlite://{}/tandem.db", dir.display());
    config.files.dir = format!("{}/files", dir.display());
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let metrics = Arc::new(Metrics::default());
    let store = Store::open(&config.store.url, 8, metrics.clone())
        .await
        .unwrap();
    let hub = Hub::open(Arc::new(config.clone()), store, metrics.clone(), None)
        .await
        .unwrap();
    (hub, metrics, config)
}

async fn open_chat(hub: &Hub, n: usize) -> InteractionId {
    let customer = Customer {
        device: format!("dev-{n}"),
        name: Some("Carol".into()),
        phone: None,
    };
    let (id, _) = hub
        .create("claims", customer, json!({"policy": n}))
        .await
        .unwrap();
    hub.command(
        &id,
        Party::Agent(AgentId(format!("agent-{n}"))),
        Command::Accept {
            display_name: "Agent".into(),
        },
    )
    .await
    .unwrap();
    id
}

async fn memory(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (hub, _, _) = hub_in(dir.path()).await;
    let before = rss_kib();
    let mut tasks = Vec::new();
    for shard in 0..64 {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            for n in (shard..n).step_by(64) {
                let id = open_chat(&hub, n).await;
                hub.command(
                    &id,
                    Party::Customer,
                    Command::SendMessage {
                        msg_id: Some("c-1".into()),
                        text: "my car broke down on the highway".into(),
                    },
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = rss_kib();
    println!(
        "memory: {n} open interactions: RSS {} MiB → {} MiB (+{:.1} KiB each)",
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) as f64 / n as f64
    );
}

/// How the customers send: `POST chats/{id}/events` (each message a request), or the chat's
/// WebSocket (what the web chat uses while it is connected; each message a frame, answered by
/// an `ack` frame once it is durable).
#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Post,
    Socket,
}

async fn latency(transport: Transport, customers: usize, per_customer: usize) {
    let dir = tempfile::tempdir().unwrap();
    // The gateway runs on a runtime of its own (threads named `gateway`, with SQLite's worker),
    // the customers on this one: the CPU time of the gateway's threads is then its cost alone.
    let gateway = gateway_cpu::runtime();
    let path = dir.path().to_path_buf();
    let (hub, metrics, server, chats) = gateway
        .spawn(async move {
            let (hub, metrics, config) = hub_in(&path).await;
            let files = FileStore::new(path.join("files"));
            let state = AppState::new(tandem::server::parts(hub.clone(), files));
            // The HTTP side as the gateway serves it (its accept loop, budgets and socket
            // options).
            let server = api::serve(api::bind(&config).await.unwrap(), state);
            // Every chat is open, and every agent side subscribed, before the clock starts:
            // the rate is that of messages, not of opening chats one by one.
            let mut chats = Vec::with_capacity(customers);
            for c in 0..customers {
                let id = open_chat(&hub, c).await;
                let handle = hub.get(&id).unwrap();
                let agent_side = handle.subscribe(u64::MAX).await.unwrap().live;
                chats.push((c, id, agent_side));
            }
            (hub, metrics, server, chats)
        })
        .await
        .unwrap();
    let addr = server.addr;
    let http = reqwest::Client::new();
    let start = Arc::new(tokio::sync::Barrier::new(customers + 1));
    let mut tasks = Vec::new();
    for (c, id, mut agent_side) in chats {
        let http = http.clone();
        let url = format!("http://{addr}/clientweb/api/v1/chats/{id}/events");
        let auth = format!(r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="dev-{c}""#);
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            let mut socket = match transport {
                Transport::Post => None,
                Transport::Socket => Some(open_socket(addr, &id, &auth).await),
            };
            start.wait().await;
            let mut samples = Vec::with_capacity(per_customer);
            for m in 0..per_customer {
                let msg_id = format!("c-{m}");
                let events = json!([{"event": "chat_session_message", "msg_id": msg_id, "msg": "where is the tow truck?"}]);
                let t0 = Instant::now();
                let answer = match &mut socket {
                    None => {
                        let r = http
                            .post(&url)
                            .header("authorization", &auth)
                            .json(&json!({ "events": events }))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                        r.json::<serde_json::Value>().await.unwrap()
                    }
                    Some(socket) => {
                        let frame = json!({"events": events, "ref": msg_id}).to_string();
                        socket.send(Message::text(frame)).await.unwrap();
                        ack(socket, &msg_id).await
                    }
                };
                assert_eq!(answer["accepted"][0]["duplicate"], false, "{answer}");
                loop {
                    let e = agent_side.recv().await.unwrap();
                    if matches!(&e.kind, EventKind::Message { msg_id: id, .. } if *id == msg_id) {
                        break;
                    }
                }
                samples.push(t0.elapsed());
            }
            samples
        }));
    }
    start.wait().await;
    let commits_before = store_totals(&metrics);
    let cpu_before = gateway_cpu::used();
    let started = Instant::now();
    let mut all: Vec<Duration> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let wall = started.elapsed();
    let cpu = gateway_cpu::used() - cpu_before;
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    let over = match transport {
        Transport::Post => "POST",
        Transport::Socket => "WebSocket",
    };
    println!(
        "messages over {over}: {} from {customers} customers in {:.2} s = {:.0} msg/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        wall.as_secs_f64(),
        all.len() as f64 / wall.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        all.last().unwrap().as_secs_f64() * 1e3,
    );
    let per_message = cpu.as_secs_f64() / all.len() as f64;
    println!(
        "  gateway: {:.0} µs of CPU per message ({:.2} cores), {:.0} msg/s per core of it",
        per_message * 1e6,
        cpu.as_secs_f64() / wall.as_secs_f64(),
        1.0 / per_message,
    );
    let (commits, spent) = store_totals(&metrics);
    let (commits, spent) = (commits - commits_before.0, spent - commits_before.1);
    println!(
        "  store: {commits:.0} commits, {:.0} messages each, {:.2} ms each on average",
        all.len() as f64 / commits.max(1.0),
        spent * 1e3 / commits.max(1.0),
    );
    gateway.spawn(server.stop()).await.unwrap();
    drop(hub);
    gateway.shutdown_background();
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The chat's WebSocket, opened as an app opens it (with `Authorization`).
async fn open_socket(addr: std::net::SocketAddr, id: &InteractionId, auth: &str) -> Socket {
    let mut request = format!("ws://{addr}/clientweb/api/v1/chats/{id}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", auth.parse().unwrap());
    // Nagle's algorithm off, as browsers have it.
    tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .unwrap()
        .0
}

/// Reads the socket up to the `ack` of the frame sent with `reference` (the chat's own events,
/// the customer's message among them, come on the same socket and are passed over).
async fn ack(socket: &mut Socket, reference: &str) -> serde_json::Value {
    while let Some(frame) = socket.next().await {
        let Message::Text(text) = frame.unwrap() else {
            continue;
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        match value["event"].as_str() {
            Some("ack") if value["ref"] == reference => return value,
            Some("error") => panic!("the message was refused: {value}"),
            _ => {}
        }
    }
    panic!("the socket closed before the ack of {reference}")
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("customers")
        .enable_all()
        .build()
        .unwrap();
    // Words after the flags pick runs: `memory`, `latency` (over POST), `socket` (all three by
    // default).
    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |name: &str| picked.is_empty() || picked.iter().any(|p| p == name);
    runtime.block_on(async {
        let (chats, customers, per_customer) = if full {
            (10_000, 200, 100)
        } else {
            (200, 4, 10)
        };
        if run("memory") {
            memory(chats).await;
        }
        if run("latency") {
            latency(Transport::Post, customers, per_customer).await;
        }
        if run("socket") {
            latency(Transport::Socket, customers, per_customer).await;
        }
    });
}

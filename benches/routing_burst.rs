//! A burst of new customer chats routed to many agents, end to end over loopback.
//!
//! Agents log in over HTTP, open the agent WebSocket and go available. Then every customer
//! `POST`s a new chat at once. Measured per chat: from the `POST` to the first `offer` frame
//! read on any agent's socket, and from the agent sending `accept` to its `ack`. The burst runs
//! once with a `ring_all` service and once with `round_robin`, each on a fresh gateway.
//!
//! `cargo bench --bench routing_burst` runs 1000 chats over 200 agents (`-- round_robin` or
//! `-- ring_all` runs one mode); without `--bench` (as under `cargo test --all-targets`) it runs
//! a small pass as a smoke test. It prints "burst starts" on stderr for profilers to attach.

#[path = "support/agent_socket.rs"]
mod agent_socket;
#[path = "support/gateway_cpu.rs"]
mod gateway_cpu;
#[path = "support/store_stats.rs"]
mod store_stats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use store_stats::store_totals;
use tandem::api::{self, AppState};
use tandem::chat::files::FileStore;
use tandem::chat::store::Store;
use tandem::config::Config;
use tandem::hub::Hub;
use tandem::metrics::Metrics;
use tandem::routing::password;
use tokio_tungstenite::tungstenite::Message;

/// Chats one agent can hold: capacity 200 % at 20 % a chat. Twice what an even spread needs,
/// so that ring-all's first-come claiming below never runs an agent out of room.
const CHATS_PER_AGENT: usize = 10;

fn config(agents: usize, mode: &str, hash: &str) -> String {
    let mut text = format!(
        "[http]\nmax_connections_per_source = 100000\n\
         [chat]\ncreates_per_minute_per_source = 100000\ncreates_burst_per_source = 100000\n\
         [routing]\nchat_load_percent = 20\nmax_wait_s = 600\n\
         [[services]]\nname = \"claims\"\nentries = [\"claims-app\"]\ndepartment = \"claims\"\n\
         routing = \"{mode}\"\n"
    );
    for a in 0..agents {
        text.push_str(&format!(
            "[[agents]]\nname = \"agent-{a}\"\npassword_hash = \"{hash}\"\n\
             departments = [\"claims\"]\ncapacity_percent = 200\n"
        ));
    }
    text
}

/// What the agents' sockets saw, keyed by chat id.
#[derive(Default)]
struct Seen {
    first_offer: HashMap<String, Instant>,
    /// Which agent accepts each chat: the first one with room to read its offer.
    claimed: HashMap<String, usize>,
    claims: Vec<usize>,
    accept_sent: HashMap<String, Instant>,
    accept: Vec<Duration>,
    failures: Vec<String>,
}

async fn agent(
    http: reqwest::Client,
    addr: std::net::SocketAddr,
    index: usize,
    seen: Arc<Mutex<Seen>>,
    ring_all: bool,
    done: tokio::sync::mpsc::UnboundedSender<()>,
) -> tokio::task::JoinHandle<()> {
    let ws = agent_socket::open(&http, addr, &format!("agent-{index}"), "desk").await;
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::Text(
        json!({"command": "set_state", "state": "available", "ref": "ready"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        let frame = rx.next().await.expect("socket open").unwrap();
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["ref"] == "ready" {
            assert_eq!(v["event"], "ack", "{v}");
            break;
        }
    }
    tokio::spawn(async move {
        while let Some(Ok(frame)) = rx.next().await {
            let at = Instant::now();
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            match v["event"].as_str() {
                Some("offer") => {
                    let chat = v["chat_id"].as_str().unwrap().to_string();
                    let mine = {
                        let mut seen = seen.lock().unwrap();
                        seen.first_offer.entry(chat.clone()).or_insert(at);
                        let room = !ring_all || seen.claims[index] < CHATS_PER_AGENT;
                        if room && !seen.claimed.contains_key(&chat) {
                            seen.claimed.insert(chat.clone(), index);
                            seen.claims[index] += 1;
                            seen.accept_sent.insert(chat.clone(), Instant::now());
                            true
                        } else {
                            false
                        }
                    };
                    if mine {
                        let accept = json!({"command": "accept", "chat_id": chat, "ref": chat});
                        tx.send(Message::Text(accept.to_string().into()))
                            .await
                            .unwrap();
                    }
                }
                Some("ack") => {
                    let chat = v["ref"].as_str().unwrap_or_default();
                    let mut seen = seen.lock().unwrap();
                    if let Some(sent) = seen.accept_sent.get(chat).copied() {
                        seen.accept.push(at - sent);
                        let _ = done.send(());
                    }
                }
                Some("error") => {
                    seen.lock().unwrap().failures.push(v.to_string());
                    let _ = done.send(());
                }
                _ => {}
            }
        }
    })
}

fn pct(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e3
}

async fn burst(mode: &str, agents: usize, chats: usize, hash: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(&config(agents, mode, hash)).unwrap();
    config.store.url = format!("sqlite://{}/tandem.db", dir.path().display());
    config.files.dir = format!("{}/files", dir.path().display());
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let metrics = Arc::new(Metrics::default());
    let observed = metrics.clone();
    // The gateway runs on a runtime of its own, the agents and customers on this one: the CPU
    // time of the gateway's threads over the burst is its cost alone.
    let gateway = gateway_cpu::runtime();
    let files = FileStore::new(dir.path().join("files"));
    let server = gateway
        .spawn(async move {
            let store = Store::open(&config.store.url, 8, metrics.clone())
                .await
                .unwrap();
            let hub = Hub::open(Arc::new(config.clone()), store, metrics, None)
                .await
                .unwrap();
            let state = AppState::new(tandem::server::parts(hub, files));
            // The HTTP side as the gateway serves it (its accept loop, budgets and socket
            // options).
            api::serve(api::bind(&config).await.unwrap(), state)
        })
        .await
        .unwrap();
    let addr = server.addr;
    let http = reqwest::Client::new();

    let seen = Arc::new(Mutex::new(Seen {
        claims: vec![0; agents],
        ..Seen::default()
    }));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let setup = Instant::now();
    let mut logins = Vec::new();
    for index in 0..agents {
        let (http, seen, done) = (http.clone(), seen.clone(), done_tx.clone());
        let ring_all = mode == "ring_all";
        logins.push(tokio::spawn(agent(http, addr, index, seen, ring_all, done)));
    }
    let mut readers = Vec::new();
    for l in logins {
        readers.push(l.await.unwrap());
    }
    let setup = setup.elapsed();

    // A mark for profilers attaching to the burst alone (the logins hash passwords).
    eprintln!("{mode}: burst starts");
    let cpu_before = gateway_cpu::used();
    let started = Instant::now();
    let mut posts = Vec::new();
    for c in 0..chats {
        let http = http.clone();
        posts.push(tokio::spawn(async move {
            let auth =
                format!(r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="burst-{c}""#);
            let t0 = Instant::now();
            let r = http
                .post(format!("http://{addr}/clientweb/api/v1/chats"))
                .header("authorization", auth)
                .json(&json!({"from": "Carol", "parameters": {"policy": c}}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            let answered = t0.elapsed();
            assert!(status.is_success(), "{status} {body}");
            (body["chat_id"].as_str().unwrap().to_string(), t0, answered)
        }));
    }
    let mut posted = HashMap::new();
    let mut created = Vec::new();
    for p in posts {
        let (chat, t0, answered) = p.await.unwrap();
        posted.insert(chat, t0);
        created.push(answered);
    }
    let mut answered = 0;
    while answered < chats {
        match tokio::time::timeout(Duration::from_secs(60), done_rx.recv()).await {
            Ok(Some(())) => answered += 1,
            _ => break,
        }
    }
    let total = started.elapsed();
    let cpu = gateway_cpu::used() - cpu_before;

    {
        let mut seen = seen.lock().unwrap();
        let mut offer: Vec<Duration> = posted
            .iter()
            .filter_map(|(chat, t0)| seen.first_offer.get(chat).map(|at| *at - *t0))
            .collect();
        let busiest = seen.claims.iter().max().copied().unwrap_or(0);
        println!(
            "{mode}: {chats} chats over {agents} agents (logins {:.1} s); all accepted in {:.2} s; \
             POST→offer p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} offered); \
             accept→ack p50 {:.2} ms, p99 {:.2} ms ({} acked, {} errors); busiest agent {busiest}",
            setup.as_secs_f64(),
            total.as_secs_f64(),
            pct(&mut offer, 0.50),
            pct(&mut offer, 0.99),
            offer.last().unwrap().as_secs_f64() * 1e3,
            offer.len(),
            pct(&mut seen.accept, 0.50),
            pct(&mut seen.accept, 0.99),
            seen.accept.len(),
            seen.failures.len(),
        );
        let (commits, spent) = store_totals(&observed);
        println!(
            "  store: {commits} commits since start, {:.2} ms each on average; \
             POST→answer p50 {:.2} ms, p99 {:.2} ms",
            spent * 1e3 / commits.max(1.0),
            pct(&mut created, 0.50),
            pct(&mut created, 0.99),
        );
        // The gateway's CPU for the whole burst: however the work is spread, the last chat
        // cannot be served before this much CPU time has been spent on two cores.
        println!(
            "  gateway: {:.0} µs of CPU per chat (created, offered, accepted), {:.0} ms in all = \
             {:.0} ms on two cores",
            cpu.as_secs_f64() * 1e6 / chats as f64,
            cpu.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3 / 2.0,
        );
        if let Some(f) = seen.failures.first() {
            println!("  first error: {f}");
        }
    }
    for r in readers {
        r.abort();
    }
    gateway.spawn(server.stop()).await.unwrap();
    gateway.shutdown_background();
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("clients")
        .enable_all()
        .build()
        .unwrap();
    // One hash for every agent: argon2 is deliberately slow and the logins verify it anyway.
    let hash = password::hash("desk");
    let (agents, chats) = if full { (200, 1000) } else { (4, 20) };
    // `cargo bench --bench routing_burst -- round_robin` runs one mode.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    runtime.block_on(async {
        for mode in ["ring_all", "round_robin"] {
            if !only.is_empty() && !only.iter().any(|m| m == mode) {
                continue;
            }
            burst(mode, agents, chats, &hash).await;
        }
    });
}

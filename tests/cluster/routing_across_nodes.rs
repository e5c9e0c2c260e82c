//! Agents logged in on any node are offered the chats of their department, wherever the chat
//! runs, and ring-all keeps its rule cluster-wide: the first accept wins, once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tandem::bridge::{EventKind, InteractionId, Party, Phase};
use tandem::chat::store::Store;
use tandem::routing::password;

use crate::agent_desk::Desk;
use crate::nodes::{Cluster, PATIENCE, Setup};

const PASSWORD: &str = "desk";

/// Ring-all to every agent, with room for many chats each, and a source that may open many.
pub fn config(agents: usize) -> String {
    let hash = password::hash(PASSWORD);
    let mut toml = String::from(
        "routing = \"ring_all\"\n\
         [routing]\nchat_load_percent = 5\noffer_timeout_s = 600\nmax_wait_s = 3600\n\
         [chat]\ncreates_per_minute_per_source = 100000\ncreates_burst_per_source = 1000\n",
    );
    for n in 0..agents {
        toml.push_str(&format!(
            "[[agents]]\nname = \"agent{n}\"\npassword_hash = \"{hash}\"\ndepartments = [\"claims\"]\n"
        ));
    }
    toml
}

/// Opens a chat on node `i` for the device `device`; its id.
pub async fn open_chat(cluster: &Cluster, i: usize, device: &str) -> String {
    let auth = format!(r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="{device}""#);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = cluster
            .http
            .post(format!("{}/chats", cluster.nodes[i].api()))
            .header("authorization", &auth)
            .json(&json!({"from": device}))
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let body: Value = answer.json().await.unwrap();
        if status == 200 {
            return body["chat_id"].as_str().expect("a chat id").to_string();
        }
        assert!(Instant::now() < deadline, "{status}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The agents who joined `chat`, from its history in the store.
async fn joined(store: &Store, chat: &str) -> Vec<String> {
    store
        .events(&InteractionId(chat.to_string()), 0)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::PartyJoined {
                party: Party::Agent(agent),
                ..
            } => Some(agent.0),
            _ => None,
        })
        .collect()
}

/// Logs `agent` in on node `i` and makes them available; retried while routing has no leader
/// yet (a cluster that just started).
pub async fn desk_on(cluster: &Cluster, i: usize, agent: &str) -> Desk {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let token =
            crate::agent_desk::login(&cluster.http, cluster.nodes[i].addr(), agent, PASSWORD).await;
        let url = format!("ws://{}/agent/v1/ws?token={token}", cluster.nodes[i].addr());
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut desk = Desk::from_socket(ws, token);
        let hello = desk.next().await;
        if hello["event"] == "hello" {
            let ready = desk
                .command(json!({"command": "set_state", "state": "available"}))
                .await;
            if ready["event"] == "ack" {
                return desk;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{agent} cannot be at a desk on node {i}: {hello}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_on_one_node_is_offered_to_desks_on_the_others() {
    let cluster = Cluster::start_with(3, &config(2)).await;
    let mut alice = desk_on(&cluster, 1, "agent0").await;
    let mut bob = desk_on(&cluster, 2, "agent1").await;

    let chat = cluster.open_chat(0).await;
    for desk in [&mut alice, &mut bob] {
        desk.until(|v| v["event"] == "offer" && v["chat_id"] == chat.as_str())
            .await;
    }
    // Both take it at once: one wins, the other is refused, once.
    let accept = json!({"command": "accept", "chat_id": chat});
    let (a, b) = tokio::join!(alice.command(accept.clone()), bob.command(accept));
    let (winner, loser, won_by) = match (a["event"].as_str(), b["event"].as_str()) {
        (Some("ack"), Some("error")) => (&mut alice, b, "agent0"),
        (Some("error"), Some("ack")) => (&mut bob, a, "agent1"),
        _ => panic!("not exactly one accept won: {a} / {b}"),
    };
    assert_eq!(loser["error"]["code"], "offer_not_available", "{loser}");

    // The chat goes on between the customer on A and the agent on another node.
    crate::nodes::post_until_taken(&cluster.http, &cluster.nodes[0].api(), &chat, "c-1").await;
    winner
        .until(|v| v["event"] == "message" && v["chat_id"] == chat.as_str() && v["msg"] == "c-1")
        .await;
    winner.say(&chat, "hello from another node").await;
    let history = cluster.history(0, &chat).await;
    assert!(
        history.iter().any(|e| e["event"] == "chat_session_message"
            && e["msg"] == "hello from another node"
            && e["party_id"] == won_by),
        "{history:#?}"
    );
    assert_eq!(joined(&cluster.store().await, &chat).await, [won_by]);
}

/// NATS delivers an announcement at most once (and nothing while a node reconnects): a chat
/// the leader never heard of is found among the open ones in the store, and routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_whose_announcement_is_lost_is_routed_all_the_same() {
    let setup = Setup {
        extra: config(1),
        // Node a's announcements of new chats go nowhere.
        nats_publish_denied: vec![(0, "tandem.ix.created".to_string())],
        ..Setup::default()
    };
    let cluster = Cluster::start_setup(2, &setup).await;
    let mut desk = desk_on(&cluster, 1, "agent0").await;
    let chat = cluster.open_chat(0).await;
    desk.until(|v| v["event"] == "offer" && v["chat_id"] == chat.as_str())
        .await;
    let reply = desk
        .command(json!({"command": "accept", "chat_id": chat}))
        .await;
    assert_eq!(reply["event"], "ack", "{reply}");
    assert_eq!(joined(&cluster.store().await, &chat).await, ["agent0"]);
}

const RACE_AGENTS: usize = 20;
const RACE_CHATS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_chats_raced_for_by_twenty_agents_on_three_nodes() {
    let cluster = Cluster::start_with(3, &config(RACE_AGENTS)).await;
    let mut desks = Vec::new();
    for n in 0..RACE_AGENTS {
        desks.push((n, desk_on(&cluster, n % 3, &format!("agent{n}")).await));
    }

    // Every desk takes every offer it sees, at once, until the race is over.
    let (done, _) = tokio::sync::watch::channel(false);
    let mut racers = Vec::new();
    for (n, mut desk) in desks {
        let mut done = done.subscribe();
        let addr = cluster.nodes[n % 3].addr();
        racers.push(tokio::spawn(async move {
            let mut won = Vec::new();
            loop {
                // Offers that came while an accept waited for its answer are kept pending.
                let event = match desk.pending.pop_front() {
                    Some(event) => event,
                    None => {
                        let frame = tokio::select! {
                            frame = desk.frame(Duration::from_millis(500)) => frame,
                            _ = done.changed() => return (n, won),
                        };
                        let Some(event) = frame else { continue };
                        event
                    }
                };
                if event["event"] == "resync" {
                    // The tab fell behind: as the desk does, it reloads what it has.
                    let token = desk.token.clone();
                    let (fresh, hello) = Desk::open(addr, &token).await;
                    desk = fresh;
                    for offer in hello["offers"].as_array().into_iter().flatten() {
                        desk.pending
                            .push_back(json!({"event": "offer", "chat_id": offer["chat_id"]}));
                    }
                    continue;
                }
                if event["event"] != "offer" {
                    continue;
                }
                let chat = event["chat_id"].as_str().unwrap().to_string();
                let reply = desk
                    .command(json!({"command": "accept", "chat_id": chat}))
                    .await;
                if reply["event"] == "ack" {
                    won.push(chat);
                }
            }
        }));
    }

    let mut chats = Vec::new();
    for n in 0..RACE_CHATS {
        chats.push(open_chat(&cluster, n % 3, &format!("device-{n}")).await);
    }

    // Wait until every chat has its agent, then stop the racers.
    let deadline = Instant::now() + PATIENCE * 3;
    let store = cluster.store().await;
    loop {
        let mut assigned = 0;
        for chat in &chats {
            let record = store
                .interaction(&InteractionId(chat.clone()))
                .await
                .unwrap()
                .expect("stored");
            if record.phase == Phase::Active {
                assigned += 1;
            }
        }
        if assigned == RACE_CHATS {
            break;
        }
        if Instant::now() > deadline {
            for chat in &chats {
                if joined(&store, chat).await.is_empty() {
                    let events = store.events(&InteractionId(chat.clone()), 0).await;
                    eprintln!("{chat}: {events:#?}");
                }
            }
            for node in &cluster.nodes {
                eprintln!("node {}:\n{}", node.name, node.log());
            }
            panic!("{assigned} of {RACE_CHATS} chats were taken");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    done.send(true).unwrap();
    let mut winners: HashMap<String, Vec<usize>> = HashMap::new();
    for racer in racers {
        let (n, won) = racer.await.unwrap();
        for chat in won {
            winners.entry(chat).or_default().push(n);
        }
    }

    // Every chat accepted exactly once: one acknowledged accept, one agent in its history.
    for chat in &chats {
        let acks = winners.get(chat).cloned().unwrap_or_default();
        assert_eq!(acks.len(), 1, "chat {chat} acknowledged to agents {acks:?}");
        let expected = format!("agent{}", acks[0]);
        assert_eq!(
            joined(&store, chat).await,
            [expected],
            "chat {chat}'s history"
        );
    }
}

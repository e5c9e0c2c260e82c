//! The real binary is killed with SIGKILL while customers write; after a restart every
//! acknowledged message is there and the open chat goes on.

use crate::restart;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use restart::{free_port, start, wait_ready};
use serde_json::{Value, json};

const AUTH: &str = r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="dev-1""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_by_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nlisten = \"127.0.0.1:{sip}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [store]\nurl = \"sqlite://data/tandem.db\"\n[files]\ndir = \"data/files\"\n\
             [[services]]\nname = \"claims\"\nentries = [\"claims-app\"]\ndepartment = \"claims\"\n",
            sip = free_port()
        ),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let api = format!("{base}/clientweb/api/v1");
    let http = reqwest::Client::new();

    let mut gateway = start(dir.path(), &config);
    wait_ready(&http, &base, dir.path()).await;
    let chat: Value = http
        .post(format!("{api}/chats"))
        .header("authorization", AUTH)
        .json(&json!({"from": "Carol"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat = chat["chat_id"].as_str().unwrap().to_string();

    // Writers keep posting; each records the messages the gateway acknowledged.
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (http, api, chat, acked) = (http.clone(), api.clone(), chat.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let msg_id = format!("w{w}-{n}");
                let sent = http
                    .post(format!("{api}/chats/{chat}/events"))
                    .header("authorization", AUTH)
                    .json(&json!({"events": [{"event": "chat_session_message", "msg_id": msg_id, "msg": "hello"}]}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().insert(msg_id);
                    }
                    _ => return,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SIGKILL while writes are in flight.
    gateway.0.kill().unwrap();
    gateway.0.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    drop(gateway);

    let _gateway = start(dir.path(), &config);
    wait_ready(&http, &base, dir.path()).await;
    // The whole history, page by page from the newest.
    let mut events: Vec<Value> = Vec::new();
    let mut before = String::new();
    loop {
        let page: Value = http
            .get(format!("{api}/chats/{chat}/history{before}"))
            .header("authorization", AUTH)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut older = page["events"].as_array().unwrap().clone();
        older.append(&mut events);
        events = older;
        match page["next_before_seq"].as_u64() {
            Some(seq) => before = format!("?before_seq={seq}"),
            None => break,
        }
    }
    let stored: HashSet<String> = events
        .iter()
        .filter(|e| e["event"] == "chat_session_message")
        .map(|e| e["msg_id"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost: {lost:?}",
        lost.len()
    );
    // Seqs are still dense: nothing half-written.
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    // The chat came back open: the customer goes on writing, retries are still idempotent.
    let retry_id = acked.iter().next().unwrap().clone();
    let r: Value = http
        .post(format!("{api}/chats/{chat}/events"))
        .header("authorization", AUTH)
        .json(&json!({"events": [
            {"event": "chat_session_message", "msg_id": retry_id, "msg": "hello"},
            {"event": "chat_session_message", "msg_id": "after-restart", "msg": "still there?"}
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["accepted"][0]["duplicate"], true, "{r}");
    assert_eq!(r["accepted"][1]["duplicate"], false, "{r}");
}

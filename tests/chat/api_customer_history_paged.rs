//! A long chat is read a page at a time, and a client resuming from its start still gets every
//! event once even when the chat's task no longer keeps the oldest in memory: they come from the
//! store. Seqs beyond any real one are past the end, never a wrap back to the start.

use crate::api;

use api::{Api, code};
use serde_json::{Value, json};
use tandem::hub::LOG_MAX_EVENTS;

const DEVICE: &str = "dev-1";

/// Sends `count` customer messages `m0`, `m1`, … in posts of 5 (the test API's limit).
async fn chatter(api: &Api, chat: &str, count: usize) {
    for start in (0..count).step_by(5) {
        let events: Vec<Value> = (start..count.min(start + 5))
            .map(|n| json!({"event": "chat_session_message", "msg_id": format!("m{n}"), "msg": format!("m{n}")}))
            .collect();
        let answer = api.send(chat, DEVICE, json!(events)).await;
        assert_eq!(answer.0.as_u16(), 200, "{}", answer.1);
    }
}

fn texts(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "chat_session_message")
        .map(|e| e["msg"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn history_comes_in_pages_newest_first_and_whole_when_followed() {
    let api = Api::new().await;
    let chat = api.create_chat(DEVICE).await;
    chatter(&api, &chat, 450).await;
    let url = format!("/clientweb/api/v1/chats/{chat}/history");

    // The default page is the newest events, oldest of them first.
    let (status, first) = api.call("GET", &url, DEVICE, None).await;
    assert_eq!(status.as_u16(), 200);
    let page = texts(first["events"].as_array().unwrap());
    assert!(page.len() < 450 && page.len() >= 100, "{}", page.len());
    assert_eq!(page.last().unwrap(), "m449");

    // Followed back to the start, the pages hold every message once, in order.
    let mut pages = Vec::new();
    let mut before = None::<u64>;
    loop {
        let query = match before {
            Some(seq) => format!("{url}?limit=100&before_seq={seq}"),
            None => format!("{url}?limit=100"),
        };
        let (status, body) = api.call("GET", &query, DEVICE, None).await;
        assert_eq!(status.as_u16(), 200, "{body}");
        assert!(body["events"].as_array().unwrap().len() <= 100);
        pages.insert(0, texts(body["events"].as_array().unwrap()));
        match body["next_before_seq"].as_u64() {
            Some(seq) => before = Some(seq),
            None => break,
        }
    }
    let all: Vec<String> = pages.concat();
    let expected: Vec<String> = (0..450).map(|n| format!("m{n}")).collect();
    assert_eq!(all, expected);

    // A bad page is a JSON error, not axum's text.
    let answer = api
        .call("GET", &format!("{url}?limit=many"), DEVICE, None)
        .await;
    assert_eq!(code(&answer), (400, "bad_query"));
    let answer = api
        .call("GET", &format!("{url}?before_seq=-1"), DEVICE, None)
        .await;
    assert_eq!(code(&answer), (400, "bad_query"));
}

#[tokio::test]
async fn a_client_resuming_from_the_start_of_a_long_chat_misses_nothing() {
    let api = Api::new().await;
    let chat = api.create_chat(DEVICE).await;
    let count = LOG_MAX_EVENTS + 100;
    chatter(&api, &chat, count).await;

    // Polls from seq 0 follow the chat to its end: the oldest events come from the store.
    let mut seen = Vec::new();
    let mut after = 0u64;
    loop {
        let url = format!("/clientweb/api/v1/chats/{chat}/events?after_seq={after}");
        let (status, body) = api.call("GET", &url, DEVICE, None).await;
        assert_eq!(status.as_u16(), 200, "{body}");
        let events = body["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        after = events
            .iter()
            .filter_map(|e| e["seq"].as_u64())
            .max()
            .unwrap();
        seen.extend(texts(events));
    }
    let expected: Vec<String> = (0..count).map(|n| format!("m{n}")).collect();
    assert_eq!(seen, expected);

    // A seq past any real one is the end of the chat, not a wrap to its start.
    let url = format!(
        "/clientweb/api/v1/chats/{chat}/events?after_seq={}",
        u64::MAX
    );
    let (status, body) = api.call("GET", &url, DEVICE, None).await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(body["events"], json!([]));
}

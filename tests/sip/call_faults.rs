//! Faults in the middle of a click-to-call, over real sockets: the agent's desktop socket dies
//! (and she comes back in time, or not), and the gateway is sent SIGTERM with the phone up.
//!
//! The rig is the click-to-call one (`common/trunk_call.rs`): SIPp as the customer's phone
//! behind the trunk echoing RTP, the agent's browser as a webrtc-rs peer, the customer's app on
//! the chat's WebSocket. After each fault `/metrics` must come back to what an idle gateway
//! with the same chats shows: no SIP dialog, pending call, transaction or app call, no media
//! leg or RTP port, no WebRTC peer, no more tokio tasks.
//!
//! Order is proven by `seq` numbers, by what the phone logged before answering the BYE, and by
//! the transcript; waits are bounded and nothing asserts on time.

use crate::trunk_call as trunk;

use std::time::Duration;

use serde_json::{Value, json};
use trunk::agent_desk::Desk;
use trunk::webrtc::AudioCodec;
use trunk::{ECHOED, Rig, audio_received, gauge, phone_result};

/// The grace an agent gets in the test where she comes back: long enough never to expire.
const LONG_GRACE: &str = "[routing]\nreconnect_grace_s = 300\n";
/// The grace in the test where she does not: short, to keep the test short.
const SHORT_GRACE: &str = "[routing]\nreconnect_grace_s = 2\n";

/// Kills the agent's socket and waits until the gateway has seen it go.
fn kill_desk(rig: &mut Rig) {
    rig.desk.kill();
    rig.metrics_until(trunk::SETTLE, "the agent's socket closed", |m| {
        gauge(m, "tandem_agent_sockets") == Some(0)
    });
}

/// The `seq` of the first event in `events` matching `pred`.
fn seq_of(events: &[Value], pred: impl Fn(&Value) -> bool) -> u64 {
    events
        .iter()
        .find(|e| pred(e))
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or_else(|| panic!("no such event with a seq in {events:#?}"))
}

/// The interaction's durable events, from the admin API.
async fn transcript(rig: &Rig, chat: &str) -> Vec<Value> {
    let body: Value = rig
        .http
        .get(format!(
            "http://{}/admin/v1/interactions/{chat}/transcript",
            rig.gateway.http
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["events"].as_array().cloned().unwrap_or_default()
}

/// The open interactions the admin API lists.
async fn open_interactions(rig: &Rig) -> Vec<Value> {
    let body: Value = rig
        .http
        .get(format!("http://{}/admin/v1/interactions", rig.gateway.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["open"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reconnecting_within_the_grace_keeps_chat_and_call() {
    let mut rig = Rig::start_with(LONG_GRACE).await;
    let idle = rig.idle();
    let logs = tempfile::tempdir().unwrap();
    let phone = rig.phone("phone_answer.xml", 1, &logs.path().join("phone.log"));
    let chat = rig.chat();
    let client = rig.call_and_talk(AudioCodec::Pcmu, ECHOED).await;

    kill_desk(&mut rig);
    let (desk, hello) = Desk::open(rig.gateway.http, &rig.desk.token.clone()).await;
    rig.desk = desk;

    // The new socket is told about the chat and its call, which is still up.
    let cards = hello["chats"].as_array().cloned().unwrap_or_default();
    let card = cards
        .iter()
        .find(|c| c["chat_id"] == chat.as_str())
        .unwrap_or_else(|| panic!("the chat is the agent's again: {hello}"));
    assert_eq!(card["phase"], "active", "{card}");
    assert_eq!(
        card["legs"],
        json!([{"leg": 1, "kind": "voice", "state": "up"}]),
        "{card}"
    );
    // Audio still flows both ways through the phone's echo.
    let heard = client.audio_packets_received();
    assert!(
        audio_received(&client, heard + ECHOED).await,
        "the agent hears the phone again ({} packets)\n{}",
        client.audio_packets_received(),
        rig.gateway.log_text()
    );
    // The chat goes on, both ways, and the customer never saw the agent leave.
    rig.desk
        .chat_both_ways(&mut rig.customer, "are you there?", "still here")
        .await;
    assert!(
        !rig.customer
            .saw(|v| v["event"] == "chat_session_party_left" || v["state"] == "released"),
        "{:#?}",
        rig.customer.log
    );

    // The agent, on her new socket, ends the call as usual.
    let released = rig
        .desk
        .command(json!({"command": "release_call", "chat_id": chat}))
        .await;
    assert_eq!(released["event"], "ack", "release_call: {released}");
    rig.desk.call_state(&chat, "released").await;
    client.close().await;
    let stats = phone_result(phone).await;
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "phone: {stats:?}"
    );
    rig.idle_again(&idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_who_does_not_come_back_loses_the_call_before_the_chat_is_requeued() {
    let mut rig = Rig::start_with(SHORT_GRACE).await;
    let idle = rig.idle();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("phone.log");
    let phone = rig.phone("phone_answer.xml", 1, &log);
    let chat = rig.chat();
    let client = rig.call_and_talk(AudioCodec::Pcmu, ECHOED).await;

    kill_desk(&mut rig);
    // When the grace expires the customer sees the call end, and only then the agent leave
    // and the chat wait again.
    let queued = rig
        .customer
        .until(|v| v["event"] == "chat_session_status" && v["state"] == "queued")
        .await;
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("call 1 answering BYE"),
        "the chat was re-queued before the phone answered the BYE; phone log: {logged:?}\n{}",
        rig.gateway.log_text()
    );
    let seen = rig.customer.log.clone();
    let released = seq_of(&seen, |v| {
        v["event"] == "chat_session_call_state" && v["state"] == "released"
    });
    let left = seq_of(&seen, |v| v["event"] == "chat_session_party_left");
    assert!(
        released < left && Some(left) < queued["seq"].as_u64(),
        "call released ({released}), agent left ({left}), then queued: {seen:#?}"
    );
    // The transcript says the same, and why the call ended.
    let events = transcript(&rig, &chat).await;
    let ended = events
        .iter()
        .find(|e| e["event"] == "leg" && e["state"] == "releasing")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(ended["reason"], "the agent is gone", "{ended}");

    // The agent's peer is closed by the gateway.
    let mut closed = false;
    for _ in 0..100 {
        closed = client.is_closed();
        if closed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "the agent's peer: {:?}", client.connection_state());
    client.close().await;
    let stats = phone_result(phone).await;
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "phone: {stats:?}"
    );

    // The chat waits, with no leg; the customer can still write into it.
    let open = open_interactions(&rig).await;
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["phase"], "queued", "{open:#?}");
    assert_eq!(open[0]["legs"], json!([]), "{open:#?}");
    rig.customer.say("hello?").await;
    rig.idle_again(&idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_phone_up_hangs_up_first_and_a_restart_finds_it_closed() {
    let mut rig = Rig::start().await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("phone.log");
    let phone = rig.phone("phone_answer.xml", 1, &log);
    let chat = rig.chat();
    let client = rig.call_and_talk(AudioCodec::Pcmu, ECHOED).await;

    let status = tokio::task::block_in_place(|| rig.gateway.terminate());
    assert!(
        status.success(),
        "exit {status:?}\n{}",
        rig.gateway.log_text()
    );
    // The phone got the BYE and answered it; the customer was told the chat ended.
    let stats = phone_result(phone).await;
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "phone: {stats:?}\n{}",
        rig.gateway.log_text()
    );
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("call 1 answering BYE"), "{logged:?}");
    rig.customer
        .until(|v| v["event"] == "chat_session_ended")
        .await;
    client.close().await;

    // Started again on the same store: the interaction is closed, its call released by the
    // BYE's answer before the chat closed (not at the restart), and nothing is open.
    tokio::task::block_in_place(|| rig.gateway.restart());
    assert_eq!(open_interactions(&rig).await, Vec::<Value>::new());
    let events = transcript(&rig, &chat).await;
    let released = seq_of(&events, |e| e["event"] == "leg" && e["state"] == "released");
    let closed = seq_of(&events, |e| e["event"] == "chat_closed");
    assert!(released < closed, "{events:#?}");
    assert!(
        !events.iter().any(|e| e["reason"] == "restart"),
        "no leg was left for the restart to release: {events:#?}"
    );
    let metrics = rig.nothing_left();
    assert_eq!(
        gauge(&metrics, "tandem_open_interactions"),
        Some(0),
        "{metrics}"
    );
}

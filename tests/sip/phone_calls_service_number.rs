//! Phone calls to a service number: the call opens a new interaction (with its chat), routed
//! to agents like a chat while the call waits ringing; the agent who accepts gets the call on
//! the browser. And a call naming a chat joins it from any number with the chat's join token.
//!
//! The caller is SIPp on the trunk's address (a UAC offering PCMA and echoing RTP, so the
//! agent hears her own audio back only if it went to the phone and returned). The agent is the
//! webrtc-rs client answering the gateway's offer on the agent socket.
//!
//! Proven here: the offer shows a phone call; accepting answers the call and bridges audio
//! both ways; the transcript lists the call; the chat goes on after the caller hangs up and
//! ends with `end_session`. A caller hanging up while queued ends the interaction (the offer is
//! withdrawn); nobody accepting gets the caller 480 with a Reason. A stranger's call with the
//! chat's token joins. `/metrics` shows nothing left behind after each.
//!
//! Every wait is bounded; assertions are on events, packet counts and SIPp's results.

use crate::common;
use crate::trunk_call as trunk;

use serde_json::{Value, json};
use tandem::routing::password;
use trunk::agent_desk::Desk;
use trunk::webrtc::AudioCodec;
use trunk::{answer_on_browser, audio_received, nothing_left, phone_result};

/// The service number SIPp dials.
const SERVICE_NUMBER: &str = "+15559000";
/// The caller's number.
const CALLER: &str = "+15550177";
/// Echoed audio packets the agent must receive: one second at 50 packets a second.
const ECHOED: u64 = 50;

/// `claims` answers +15559000 from the trunk `carrier` on `trunk_port`; `max_wait_s` bounds
/// the queue.
fn config(trunk_port: u16, max_wait_s: u64) -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[[sip.trunks]]
name = "carrier"
addresses = ["127.0.0.1:{trunk_port}"]

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
routing = "ring_all"
trunk = "carrier"
caller_id = "+15550100"
numbers = ["{SERVICE_NUMBER}"]

[routing]
max_wait_s = {max_wait_s}

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

/// SIPp on `port` running `scenario` once as `caller`, holding `-d` for `pause_ms`.
fn caller(
    gateway: &common::Gateway,
    port: u16,
    scenario: &std::path::Path,
    caller: &str,
    pause_ms: u32,
    extra: &[&str],
) -> tokio::task::JoinHandle<common::SippStats> {
    let pause = pause_ms.to_string();
    let mut args = vec![
        "-sf",
        scenario.to_str().unwrap(),
        "-rtp_echo",
        "-m",
        "1",
        "-key",
        "caller",
        caller,
        "-d",
        &pause,
    ];
    args.extend_from_slice(extra);
    let phone = common::sipp_spawn_on(port, gateway.sip, &args);
    tokio::task::spawn_blocking(move || phone.wait())
}

/// The gateway with a trunk on a free port and a queue of 60 s, and alice logged in: the
/// gateway, the trunk's port, an HTTP client and alice's desk.
async fn start_with_agent() -> (common::Gateway, u16, reqwest::Client, Desk) {
    let trunk = common::free_port();
    let gateway = common::Gateway::start(&config(trunk, 60));
    let http = reqwest::Client::new();
    let desk = Desk::login(&http, gateway.http, "alice", "desk").await;
    (gateway, trunk, http, desk)
}

/// The offer of a phone call to the service number, from `CALLER`.
async fn phone_offer(desk: &mut Desk) -> Value {
    let offer = desk.until(|v| v["event"] == "offer").await;
    assert_eq!(offer["service"], "claims", "{offer}");
    assert_eq!(offer["context"]["channel"], "phone", "{offer}");
    assert_eq!(offer["context"]["caller"], CALLER, "{offer}");
    assert_eq!(offer["context"]["number"], SERVICE_NUMBER, "{offer}");
    assert_eq!(offer["customer"]["phone"], CALLER, "{offer}");
    offer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_the_service_number_reaches_the_agent_who_accepts_it() {
    let (gateway, trunk, http, mut desk) = start_with_agent().await;
    let scenario = common::scenario("phone_calls_service_number.xml");
    // The phone hangs up eight seconds after the answer.
    let phone = caller(&gateway, trunk, &scenario, CALLER, 8000, &[]);

    let offer = phone_offer(&mut desk).await;
    let chat = offer["chat_id"].as_str().unwrap().to_string();
    let accepted = desk
        .command(json!({"command": "accept", "chat_id": chat}))
        .await;
    assert_eq!(accepted["event"], "ack", "{accepted}");
    let client = answer_on_browser(&mut desk, &gateway, &chat, AudioCodec::Pcmu).await;
    desk.call_state(&chat, "up").await;
    assert!(
        audio_received(&client, ECHOED).await,
        "the agent hears her audio back through the caller's echo ({} packets)\n{}",
        client.audio_packets_received(),
        gateway.log_text()
    );
    let released = desk.call_state(&chat, "released").await;
    assert_eq!(
        released["reason"], "the customer's phone hung up",
        "{released}"
    );
    client.close().await;
    let stats = phone_result(phone).await;
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "caller: {stats:?}\ngateway log:\n{}",
        gateway.log_text()
    );

    // The chat goes on after the call: the agent writes, then ends the session.
    desk.say(&chat, "thanks for calling").await;
    let transcript = desk.transcript(&http, gateway.http, &chat).await;
    let states: Vec<&str> = transcript
        .iter()
        .filter(|e| e["event"] == "leg" && e["kind"] == "voice")
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(
        states,
        vec!["connecting", "up", "released"],
        "{transcript:#?}"
    );
    assert!(
        transcript
            .iter()
            .any(|e| e["event"] == "leg" && e["target"]["number"] == CALLER),
        "{transcript:#?}"
    );
    let ended = desk
        .command(json!({"command": "end_session", "chat_id": chat}))
        .await;
    assert_eq!(ended["event"], "ack", "{ended}");
    desk.until(|v| v["event"] == "ended" && v["chat_id"] == chat.as_str())
        .await;
    nothing_left(&gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_hangs_up_in_the_queue_ends_the_interaction_and_its_offer() {
    let (gateway, trunk, _, mut desk) = start_with_agent().await;
    let scenario = common::scenario("phone_cancels_while_queued.xml");
    // Rings three seconds, then CANCEL.
    let phone = caller(&gateway, trunk, &scenario, CALLER, 3000, &[]);
    let offer = phone_offer(&mut desk).await;
    let chat = offer["chat_id"].as_str().unwrap().to_string();
    let withdrawn = desk.event("withdrawn", &chat).await;
    assert_eq!(withdrawn["reason"], "ended", "{withdrawn}");
    let stats = phone_result(phone).await;
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "caller: {stats:?}\ngateway log:\n{}",
        gateway.log_text()
    );
    // Too late to take it.
    let late = desk
        .command(json!({"command": "accept", "chat_id": chat}))
        .await;
    assert_eq!(late["event"], "error", "{late} after {withdrawn}");
    // The stored transcript (the agent never joined, so the admin's view) says why it ended.
    let path = format!("/admin/v1/interactions/{chat}/transcript");
    let body = tokio::task::block_in_place(|| gateway.http_get(&path));
    let transcript: Value = serde_json::from_str(&body).unwrap();
    let events = transcript["events"].as_array().cloned().unwrap_or_default();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "chat_closed" && e["reason"] == "abandoned"),
        "{transcript:#}"
    );
    assert!(
        events.iter().any(|e| e["event"] == "leg"
            && e["state"] == "released"
            && e["reason"] == "caller hung up"),
        "{transcript:#}"
    );
    nothing_left(&gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_accepting_gets_the_caller_480_with_a_reason() {
    let trunk = common::free_port();
    // Nobody is logged in; the queue gives up after two seconds at most.
    let gateway = common::Gateway::start(&config(trunk, 2));
    let scenario = common::scenario("phone_calls_service_number.xml");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("caller.log");
    let log_arg = log.to_str().unwrap().to_string();
    let phone = caller(
        &gateway,
        trunk,
        &scenario,
        CALLER,
        1,
        &["-trace_logs", "-log_file", &log_arg],
    );
    let stats = phone_result(phone).await;
    // The scenario takes a 480 only with its Reason header, and logs it.
    assert_eq!(
        (stats.exit_code, stats.failed),
        (0, 0),
        "caller: {stats:?}\ngateway log:\n{}",
        gateway.log_text()
    );
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("refused: Reason: SIP;cause=480"),
        "{logged}\ngateway log:\n{}",
        gateway.log_text()
    );
    let text = gateway.log_text();
    assert!(text.contains("phone call opened an interaction"), "{text}");
    nothing_left(&gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_the_chats_join_token_joins_from_another_number() {
    let (gateway, _, http, mut desk) = start_with_agent().await;
    let created: Value = http
        .post(format!("http://{}/clientweb/api/v1/chats", gateway.http))
        .header(
            "authorization",
            trunk::agent_desk::auth("claims-app", "app-1"),
        )
        .json(&json!({"from": "Carol", "phone_number": "+15550123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat = created["chat_id"].as_str().unwrap().to_string();
    let token = created["join_token"]
        .as_str()
        .expect("a join token")
        .to_string();
    assert_eq!(token.len(), 64, "{created}");
    desk.event("offer", &chat).await;
    let accepted = desk
        .command(json!({"command": "accept", "chat_id": chat}))
        .await;
    assert_eq!(accepted["event"], "ack", "{accepted}");

    // The app's own SIP client calls from a number that is not the chat's, with the token.
    let template = std::fs::read_to_string(common::scenario("phone_calls_in.xml")).unwrap();
    let with_token = template.replace(
        "      X-Interaction-Id: [interaction]\n",
        "      X-Interaction-Id: [interaction]\n      X-Interaction-Token: [token]\n",
    );
    assert_ne!(with_token, template);
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("phone_calls_in_with_token.xml");
    std::fs::write(&scenario, with_token).unwrap();
    let phone = caller(
        &gateway,
        common::free_port(),
        &scenario,
        "+15559999",
        6000,
        &["-key", "interaction", &chat, "-key", "token", &token],
    );
    let connecting = desk.call_state(&chat, "connecting").await;
    assert_eq!(connecting["kind"], "voice", "{connecting}");
    let client = answer_on_browser(&mut desk, &gateway, &chat, AudioCodec::Pcmu).await;
    desk.call_state(&chat, "up").await;
    assert!(
        audio_received(&client, ECHOED).await,
        "the agent hears her audio back ({} packets)\n{}",
        client.audio_packets_received(),
        gateway.log_text()
    );
    desk.call_state(&chat, "released").await;
    client.close().await;
    let stats = phone_result(phone).await;
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "caller: {stats:?}\ngateway log:\n{}",
        gateway.log_text()
    );
    nothing_left(&gateway);
}

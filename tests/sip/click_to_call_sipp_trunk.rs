//! Click to call: the agent calls the customer's phone from the chat, through the service's
//! trunk, and talks on the browser.
//!
//! The customer's phone is SIPp listening on the trunk's address. Every scenario fails the call
//! unless the INVITE dials the chat's number from the service's caller id and carries the
//! interaction's headers (`X-Interaction-Id`, `X-Service`, `User-to-User` as hex); the
//! answering ones echo RTP (`-rtp_echo`). The agent is the webrtc-rs client answering the
//! gateway's offer on the agent socket, and the customer's app holds the chat's WebSocket.
//!
//! Proven here: repeated calls in one chat, each with audio both ways and released by the
//! agent (a second call while one is up is refused), all listed in the transcript; a busy and
//! an unanswered phone reported with their reasons; the customer hanging up while the chat goes
//! on; `end_session` ending the chat for the customer only after the phone answered the BYE;
//! and nothing left behind in `/metrics` after each.
//!
//! Every wait is bounded; the assertions are on events, their order, packet counts and SIPp's
//! results, never on time.

use crate::common;
use crate::trunk_call as trunk;

use serde_json::json;
use trunk::webrtc::AudioCodec;
use trunk::{
    ECHOED, ECHOED_BEFORE_HANGUP, NUMBER, Rig, audio_received, invites_logged, phone_result,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_calls_the_customer_three_times_in_one_chat() {
    let mut rig = Rig::start().await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("phone.log");
    let phone = rig.phone("phone_answer.xml", 3, &log);
    let chat = rig.chat();

    for (n, codec) in [AudioCodec::Pcmu, AudioCodec::Opus, AudioCodec::Pcmu]
        .into_iter()
        .enumerate()
    {
        let client = rig.call_and_talk(codec, ECHOED).await;
        // One call at a time.
        let again = rig.call_customer().await;
        assert_eq!(again["event"], "error", "call {n}: {again}");
        assert_eq!(again["error"]["code"], "call_in_progress", "{again}");
        // The agent hangs up; the phone gets the BYE.
        let released = rig
            .desk
            .command(json!({"command": "release_call", "chat_id": chat}))
            .await;
        assert_eq!(released["event"], "ack", "release_call: {released}");
        let ended = rig.desk.call_state(&chat, "released").await;
        assert_eq!(ended["kind"], "voice", "{ended}");
        client.close().await;
    }

    // Every call rang before it was answered.
    let ringing = rig
        .desk
        .log
        .iter()
        .filter(|v| v["event"] == "call_state" && v["reason"] == "ringing")
        .count();
    assert_eq!(ringing, 3, "{:#?}", rig.desk.log);

    // The phone took three calls, each INVITE with the headers, each ended by our BYE.
    let stats = phone_result(phone).await;
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 3, 0),
        "phone: {stats:?}\ngateway log:\n{}",
        rig.gateway.log_text()
    );
    assert_eq!(invites_logged(&log, &chat), 3);

    // The transcript lists three calls to the phone, each up and then ended.
    let events = rig
        .desk
        .transcript(&rig.http, rig.gateway.http, &chat)
        .await;
    let calls = |state: &str| {
        events
            .iter()
            .filter(|e| {
                e["event"] == "leg"
                    && e["kind"] == "voice"
                    && e["state"] == state
                    && (state != "connecting" || e["target"]["number"] == NUMBER)
            })
            .filter_map(|e| e["leg"].as_u64())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (placed, up, ended) = (calls("connecting"), calls("up"), calls("released"));
    assert_eq!(placed.len(), 3, "{events:#?}");
    assert_eq!((&up, &ended), (&placed, &placed), "{events:#?}");
    rig.nothing_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_phone_and_a_phone_nobody_answers_are_reported_to_the_agent() {
    let mut rig = Rig::start().await;
    let logs = tempfile::tempdir().unwrap();
    let chat = rig.chat();

    for (scenario, reason) in [
        ("phone_busy.xml", "the customer's phone is busy"),
        ("phone_no_answer.xml", "the customer's phone did not answer"),
    ] {
        let log = logs.path().join(scenario).with_extension("log");
        let phone = rig.phone(scenario, 1, &log);
        let called = rig.call_customer().await;
        assert_eq!(called["event"], "ack", "call_customer: {called}");
        let released = rig.desk.call_state(&chat, "released").await;
        assert_eq!(released["reason"], reason, "{released}");
        let stats = phone_result(phone).await;
        assert_eq!(
            (stats.exit_code, stats.successful, stats.failed),
            (0, 1, 0),
            "{scenario}: {stats:?}"
        );
        assert_eq!(invites_logged(&log, &chat), 1);
        rig.nothing_left();
    }
    // The unanswered phone rang first.
    assert!(
        rig.desk
            .log
            .iter()
            .any(|v| v["event"] == "call_state" && v["reason"] == "ringing"),
        "{:#?}",
        rig.desk.log
    );
    // The chat goes on.
    rig.customer.say("are you still there?").await;
    rig.desk
        .until(|v| v["event"] == "message" && v["msg"] == "are you still there?")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_hangs_up_and_the_chat_goes_on() {
    let mut rig = Rig::start().await;
    let idle = rig.idle();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("phone.log");
    let phone = rig.phone("phone_hangs_up.xml", 1, &log);
    let chat = rig.chat();

    let client = rig
        .call_and_talk(AudioCodec::Opus, ECHOED_BEFORE_HANGUP)
        .await;
    let released = rig.desk.call_state(&chat, "released").await;
    assert_eq!(
        released["reason"], "the customer's phone hung up",
        "{released}"
    );
    client.close().await;
    let stats = phone_result(phone).await;
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "phone: {stats:?}\ngateway log:\n{}",
        rig.gateway.log_text()
    );
    assert_eq!(invites_logged(&log, &chat), 1);

    // The chat is still on, both ways.
    rig.desk
        .chat_both_ways(&mut rig.customer, "sorry, the line dropped", "no problem")
        .await;
    rig.idle_again(&idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_session_ends_the_chat_only_after_the_phone_answered_the_bye() {
    let mut rig = Rig::start().await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("phone.log");
    // The phone answers the BYE a second late, logging just before its 200 goes out.
    let phone = rig.phone("phone_answer.xml", 1, &log);
    let chat = rig.chat();

    let client = rig.call_and_talk(AudioCodec::Pcmu, ECHOED).await;
    let ended = rig
        .desk
        .command(json!({"command": "end_session", "chat_id": chat}))
        .await;
    assert_eq!(ended["event"], "ack", "end_session: {ended}");

    // When the customer learns the chat ended, the phone has already answered the BYE.
    rig.customer
        .until(|v| v["event"] == "chat_session_ended")
        .await;
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("call 1 answering BYE"),
        "the chat ended before the phone answered the BYE; phone log: {logged:?}\ngateway log:\n{}",
        rig.gateway.log_text()
    );
    // The agent saw the call released before the chat ended.
    let released = rig.desk.call_state(&chat, "released").await;
    let closed = rig
        .desk
        .until(|v| v["event"] == "ended" && v["chat_id"] == chat.as_str())
        .await;
    let (released_at, closed_at) = (released["seq"].as_u64(), closed["seq"].as_u64());
    assert!(
        released_at.is_some() && released_at < closed_at,
        "{released} then {closed}"
    );
    client.close().await;

    let stats = phone_result(phone).await;
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "phone: {stats:?}"
    );
    assert_eq!(invites_logged(&log, &chat), 1);
    rig.nothing_left();
}

/// The customer's phone calling the gateway for chat `chat` from `caller` (SIPp as a UAC),
/// holding an answered call for `hold_ms`. It calls through the trunk (from its address), whose
/// carrier vouches for the caller id.
fn phone_calls_in(
    rig: &Rig,
    chat: &str,
    caller: &str,
    hold_ms: u32,
) -> tokio::task::JoinHandle<common::SippStats> {
    let scenario = common::scenario("phone_calls_in.xml");
    let hold = hold_ms.to_string();
    let phone = common::sipp_spawn_on(
        rig.phone_port,
        rig.gateway.sip,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-rtp_echo",
            "-m",
            "1",
            "-key",
            "interaction",
            chat,
            "-key",
            "caller",
            caller,
            "-d",
            &hold,
        ],
    );
    tokio::task::spawn_blocking(move || phone.wait())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_calling_in_for_the_chat_reaches_the_agent_and_strangers_do_not() {
    let mut rig = Rig::start().await;
    let chat = rig.chat();

    // Someone else calling in with the chat's id is refused, with a Reason.
    let stranger = phone_calls_in(&rig, &chat, "+15559999", 1);
    let stats = phone_result(stranger).await;
    assert_eq!(
        (stats.exit_code, stats.failed),
        (0, 0),
        "stranger: {stats:?}"
    );
    assert!(
        !rig.desk.saw(|v| v["event"] == "call_state"),
        "no call for a stranger: {:#?}",
        rig.desk.log
    );

    // The customer's own phone joins as the chat's voice leg and reaches the agent's browser.
    let phone = phone_calls_in(&rig, &chat, NUMBER, 8000);
    let connecting = rig.desk.call_state(&chat, "connecting").await;
    assert_eq!(connecting["kind"], "voice", "{connecting}");
    let client = rig.answer_on_browser(AudioCodec::Pcmu).await;
    rig.desk.call_state(&chat, "up").await;
    assert!(
        audio_received(&client, ECHOED_BEFORE_HANGUP).await,
        "the agent hears her audio back through the phone's echo ({} packets)\n{}",
        client.audio_packets_received(),
        rig.gateway.log_text()
    );
    // The phone hangs up; the chat goes on.
    let released = rig.desk.call_state(&chat, "released").await;
    assert_eq!(
        released["reason"], "the customer's phone hung up",
        "{released}"
    );
    let stats = phone_result(phone).await;
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "phone: {stats:?}\ngateway log:\n{}",
        rig.gateway.log_text()
    );
    client.close().await;

    // Once the chat is over, a call for it gets 480 with a Reason.
    let ended = rig
        .desk
        .command(json!({"command": "end_session", "chat_id": chat}))
        .await;
    assert_eq!(ended["event"], "ack", "{ended}");
    rig.desk.until(|v| v["event"] == "ended").await;
    let late = phone_calls_in(&rig, &chat, NUMBER, 1);
    let stats = phone_result(late).await;
    assert_eq!(
        (stats.exit_code, stats.failed),
        (0, 0),
        "late call: {stats:?}"
    );
    let log = rig.gateway.log_text();
    let refused = |code: &str| {
        log.lines()
            .any(|l| l.contains("incoming call refused") && l.contains(code))
    };
    assert!(
        refused("code=not_permitted") && refused("code=interaction_closed"),
        "the stranger and the late call were refused for their reasons:\n{log}"
    );
    rig.nothing_left();
}

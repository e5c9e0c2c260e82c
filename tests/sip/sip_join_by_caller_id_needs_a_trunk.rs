//! A call that joins a chat by its caller id must come from a trunk, whose carrier vouches for
//! the number; from anywhere else only the chat's join token admits it.
//!
//! SIPp is the caller (`phone_calls_in.xml`, naming the chat in `X-Interaction-Id` and echoing
//! RTP): from another loopback address with the chat's number in From it is refused with `403`
//! and a Reason; the same number from the trunk's address joins and the agent hears her audio
//! back; a caller from the other address with the chat's join token joins too.

use crate::common;
use crate::trunk_call as trunk;

use std::path::Path;

use tandem::bridge::{InteractionId, JoinSecret};
use trunk::webrtc::AudioCodec;
use trunk::{ECHOED_BEFORE_HANGUP, NUMBER, Rig, audio_received, phone_result};

const SECRET: &str = "the join token key of this test";
/// A source that is not the trunk (`127.0.0.1:<phone port>`).
const STRANGER_IP: &str = "127.0.0.2";

/// SIPp calling in for `chat` from `caller`, on `ip:port`, with `scenario`; its log actions
/// go to `log`; an answered call is held `hold_ms`.
#[allow(clippy::too_many_arguments)]
fn calls_in(
    rig: &Rig,
    scenario: &Path,
    ip: &str,
    port: u16,
    chat: &str,
    caller: &str,
    extra: &[&str],
    log: &Path,
) -> tokio::task::JoinHandle<common::SippStats> {
    let mut args = vec![
        "-i",
        ip,
        "-sf",
        scenario.to_str().unwrap(),
        "-rtp_echo",
        "-m",
        "1",
        "-d",
        "8000",
        "-key",
        "interaction",
        chat,
        "-key",
        "caller",
        caller,
        "-trace_logs",
        "-log_file",
        log.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let phone = common::sipp_spawn_on(port, rig.gateway.sip, &args);
    tokio::task::spawn_blocking(move || phone.wait())
}

/// The call joins: the agent's browser gets it, hears her audio back through the caller's
/// echo, and the caller hangs up; SIPp completed one call.
async fn joins(rig: &mut Rig, phone: tokio::task::JoinHandle<common::SippStats>, what: &str) {
    let chat = rig.chat();
    let connecting = rig.desk.call_state(&chat, "connecting").await;
    assert_eq!(connecting["kind"], "voice", "{what}: {connecting}");
    let client = rig.answer_on_browser(AudioCodec::Pcmu).await;
    rig.desk.call_state(&chat, "up").await;
    assert!(
        audio_received(&client, ECHOED_BEFORE_HANGUP).await,
        "{what}: the agent hears her audio back ({} packets)\n{}",
        client.audio_packets_received(),
        rig.gateway.log_text()
    );
    rig.desk.call_state(&chat, "released").await;
    client.close().await;
    let stats = phone_result(phone).await;
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "{what}: {stats:?}\ngateway log:\n{}",
        rig.gateway.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_caller_id_is_refused_outside_a_trunk_and_a_token_joins_from_anywhere() {
    let mut rig = Rig::start_with(&format!("[chat]\njoin_token_secret = \"{SECRET}\"\n")).await;
    let chat = rig.chat();
    let logs = tempfile::tempdir().unwrap();
    let scenario = common::scenario("phone_calls_in.xml");

    // The chat's own number in From, sent from an address that is not the trunk: 403.
    let log = logs.path().join("spoofed.log");
    let spoofed = calls_in(
        &rig,
        &scenario,
        STRANGER_IP,
        common::free_port(),
        &chat,
        NUMBER,
        &[],
        &log,
    );
    let stats = phone_result(spoofed).await;
    assert_eq!(
        (stats.exit_code, stats.failed),
        (0, 0),
        "spoofed: {stats:?}"
    );
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("refused: Reason: SIP;cause=403"),
        "the spoofed call got 403 with a Reason:\n{logged}\ngateway log:\n{}",
        rig.gateway.log_text()
    );
    assert!(
        !rig.desk.saw(|v| v["event"] == "call_state"),
        "no call reached the agent: {:#?}",
        rig.desk.log
    );
    let gateway_log = rig.gateway.log_text();
    assert!(
        gateway_log
            .lines()
            .any(|l| l.contains("incoming call refused") && l.contains("code=caller_not_vouched")),
        "{gateway_log}"
    );

    // The same number from the trunk's address joins.
    let from_trunk = calls_in(
        &rig,
        &scenario,
        "127.0.0.1",
        rig.phone_port,
        &chat,
        NUMBER,
        &[],
        &logs.path().join("trunk.log"),
    );
    joins(&mut rig, from_trunk, "from the trunk").await;

    // From the stranger's address, any number, with the chat's join token: joins.
    let template = std::fs::read_to_string(&scenario).unwrap();
    let with_token = template.replace(
        "      X-Interaction-Id: [interaction]\n",
        "      X-Interaction-Id: [interaction]\n      X-Interaction-Token: [token]\n",
    );
    assert_ne!(with_token, template);
    let token_scenario = logs.path().join("phone_calls_in_with_token.xml");
    std::fs::write(&token_scenario, with_token).unwrap();
    let token = JoinSecret::new(SECRET.as_bytes()).token(&InteractionId::from(chat.as_str()));
    let with_token = calls_in(
        &rig,
        &token_scenario,
        STRANGER_IP,
        common::free_port(),
        &chat,
        "+15559999",
        &["-key", "token", &token],
        &logs.path().join("token.log"),
    );
    joins(&mut rig, with_token, "with the token").await;
    rig.nothing_left();
}

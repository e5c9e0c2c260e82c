//! A customer's app calls from its chat and the agent takes the call on the SIP softphone
//! registered under the agent's name. The app is the webrtc-rs client on the customer API's
//! WebSocket; the softphone is SIPp: it registers as alice with digest authentication, then
//! (on the same port) answers the gateway's INVITE with RTP echo, failing the call unless the
//! INVITE carries the interaction's headers (`softphone_answer_app_call.xml`). The app hears
//! its own audio back through the softphone, with PCMU passed through or Opus transcoded to
//! G.711 and back, and a release from either side reaches the softphone as a BYE. A softphone
//! that is not registered, or answers 486, ends the app's call with a reason instead.
//!
//! Every wait is bounded; the assertions are on packet counts and SIPp's results, not on time.

use crate::agent_desk;
use crate::common;
use crate::webrtc_client;

use std::time::Duration;

use agent_desk::{Customer, Desk, EVENT_TIMEOUT};
use serde_json::{Value, json};
use tandem::routing::password;
use webrtc_client::{AudioCodec, ClientOptions, WebRtcClient};

/// Echoed audio packets the app must receive: three seconds' worth at 50 packets a second.
const ECHOED: u64 = 150;

fn config() -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[sip]
agent_answer_timeout_s = 10

[registrar]
algorithms = ["MD5"]

[[registrar.accounts]]
user = "alice"
password = "alice-secret"

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
routing = "ring_all"

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

/// The `call_state` event that releases the voice call.
async fn call_released(desk: &mut Desk) -> Value {
    desk.until(|v| v["event"] == "call_state" && v["state"] == "released")
        .await
}

/// The app's chat from a device of its own.
async fn open_app(http: &reqwest::Client, gateway: &common::Gateway) -> Customer {
    Customer::open_with(
        http,
        gateway.http,
        "claims-app",
        "softphone-test",
        json!({"from": "Carol"}),
    )
    .await
}

/// The app asks for a call the softphone cannot take: the agent's `accept_call` is
/// acknowledged, and both the app (`END_CALL`) and the agent (`released`) get a reason that
/// says `why`.
async fn call_ends_with_reason(gateway: &common::Gateway, why: &str) {
    let http = reqwest::Client::new();
    let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;
    let mut app = open_app(&http, gateway).await;
    let call = request_call_on_softphone(&mut desk, &mut app).await;
    assert_eq!(call["event"], "ack", "accept_call: {call}");

    let ended = app.signalled("END_CALL").await;
    let reason = ended["data"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(why), "{ended}");
    let released = call_released(&mut desk).await;
    assert!(
        released["reason"].as_str().is_some_and(|r| r.contains(why)),
        "{released}"
    );
}

/// Registers alice from a fresh port with SIPp (digest, MD5); the port to answer calls on.
fn register_softphone(gateway: &common::Gateway) -> u16 {
    let port = common::free_port();
    common::register_on(port, gateway.sip, "alice", "alice-secret");
    port
}

/// The chat is offered to the agent, who takes it; the app sees it connected and asks for a
/// call without video; the agent accepts it on the softphone. The answer to `accept_call`.
async fn request_call_on_softphone(desk: &mut Desk, app: &mut Customer) -> Value {
    desk.accept(app).await;
    app.signal(json!({"type": "REQUEST_CALL", "offerVideo": false}))
        .await;
    desk.command_until_ack(
        json!({"command": "accept_call", "chat_id": app.chat, "device": "softphone"}),
        Duration::from_secs(5),
    )
    .await
}

/// Waits (bounded) until `client` has received more than `count` audio packets.
async fn audio_received(client: &WebRtcClient, count: u64) -> bool {
    for _ in 0..300 {
        if client.audio_packets_received() > count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Waits (bounded) until the gateway holds no SIP call and no media leg: nothing leaked.
fn nothing_left(gateway: &common::Gateway) {
    tokio::task::block_in_place(|| {
        gateway.wait_for_metric("tandem_sip_calls 0");
        gateway.wait_for_metric("tandem_media_legs 0");
    });
}

/// Who ends the call.
#[derive(Debug, Clone, Copy)]
enum Release {
    /// The app sends `END_CALL`.
    Customer,
    /// The agent sends `release_call`.
    Agent,
}

/// The whole call: the softphone answers and echoes, the app hears itself, `release` ends it
/// and the softphone sees the BYE.
async fn app_hears_itself_through_the_softphone(codec: AudioCodec, release: Release) {
    let gateway = common::Gateway::start(&config());
    let port = register_softphone(&gateway);
    let logs = tempfile::tempdir().unwrap();
    let actions = logs.path().join("actions.log");
    let answer = common::scenario("softphone_answer_app_call.xml");
    let softphone = common::sipp_spawn_on(
        port,
        gateway.sip,
        &[
            "-sf",
            answer.to_str().unwrap(),
            "-rtp_echo",
            "-m",
            "1",
            "-trace_logs",
            "-log_file",
            actions.to_str().unwrap(),
        ],
    );
    let softphone = tokio::task::spawn_blocking(move || softphone.wait());

    let http = reqwest::Client::new();
    let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;
    let mut app = open_app(&http, &gateway).await;
    let call = request_call_on_softphone(&mut desk, &mut app).await;
    assert_eq!(call["event"], "ack", "accept_call: {call}");

    // The gateway offers the app; the app answers with its one codec and sends audio.
    let offer = app.signalled("OFFER_CALL").await;
    assert_eq!(offer["data"]["offerVideo"], false, "{offer}");
    let client = WebRtcClient::new(ClientOptions {
        audio_codec: codec,
        video: false,
    })
    .await;
    let sdp = client.answer(offer["data"]["sdp"].as_str().unwrap()).await;
    app.signal(json!({"type": "ANSWER_CALL", "sdp": sdp})).await;
    assert!(
        client.wait_connected(EVENT_TIMEOUT).await,
        "the app's peer connects\n{}",
        gateway.log_text()
    );
    client.start_sending_audio().await;
    desk.until(|v| v["event"] == "call_state" && v["state"] == "up")
        .await;

    // The softphone echoes: the app's own audio comes back to it, in its own codec.
    let heard = audio_received(&client, ECHOED).await;
    assert!(
        heard,
        "the app got {} audio packets back (sent {})\ngateway log:\n{}",
        client.audio_packets_received(),
        client.audio_packets_sent(),
        gateway.log_text()
    );
    let expected = match codec {
        AudioCodec::Opus => "audio/opus",
        AudioCodec::Pcmu => "audio/pcmu",
    };
    assert_eq!(
        client
            .audio_codec_received()
            .map(|c| c.to_ascii_lowercase()),
        Some(expected.to_string())
    );

    match release {
        Release::Customer => app.signal(json!({"type": "END_CALL"})).await,
        Release::Agent => {
            let released = desk
                .command(json!({"command": "release_call", "chat_id": app.chat}))
                .await;
            assert_eq!(released["event"], "ack", "release_call: {released}");
            let ended = app.signalled("END_CALL").await;
            assert!(ended["data"]["reason"].is_string(), "{ended}");
        }
    }
    let released = call_released(&mut desk).await;
    assert_eq!(released["kind"], "voice", "{released}");
    client.close().await;

    // The softphone saw the BYE and answered it: its one call succeeded, every regexp on the
    // INVITE matched, and the headers it logged name this chat.
    let stats = tokio::time::timeout(Duration::from_secs(90), softphone)
        .await
        .expect("SIPp ends within its own timeout")
        .unwrap();
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "softphone: {stats:?}\ngateway log:\n{}",
        gateway.log_text()
    );
    // The echo went through the softphone: both engine legs of the call (the SIP side and
    // the app's local side) carried the audio each way.
    let mut legs = Vec::new();
    for _ in 0..50 {
        legs = gateway.closed_legs();
        if legs.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(legs.len(), 2, "{legs:?}\n{}", gateway.log_text());
    for (inbound, outbound) in legs {
        assert!(
            inbound > ECHOED && outbound > ECHOED,
            "{inbound} in, {outbound} out"
        );
    }
    let logged = std::fs::read_to_string(&actions).unwrap_or_default();
    let uui = hex::encode(app.chat.as_bytes());
    assert!(
        logged.contains(&format!("X-Interaction-Id={} User-to-User={uui}", app.chat)),
        "the INVITE's headers name chat {}: {logged:?}",
        app.chat
    );
    nothing_left(&gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_call_in_pcmu_passes_through_to_the_softphone_and_back() {
    app_hears_itself_through_the_softphone(AudioCodec::Pcmu, Release::Customer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_call_in_opus_is_transcoded_to_the_softphone_and_back() {
    app_hears_itself_through_the_softphone(AudioCodec::Opus, Release::Agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_softphone_that_is_not_registered_ends_the_app_call_with_a_reason() {
    let gateway = common::Gateway::start(&config());
    call_ends_with_reason(&gateway, "not registered").await;
    nothing_left(&gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_softphone_ends_the_app_call_as_busy() {
    let gateway = common::Gateway::start(&config());
    let port = register_softphone(&gateway);
    let busy = common::scenario("softphone_busy.xml");
    let softphone = common::sipp_spawn_on(
        port,
        gateway.sip,
        &["-sf", busy.to_str().unwrap(), "-m", "1"],
    );
    let softphone = tokio::task::spawn_blocking(move || softphone.wait());

    call_ends_with_reason(&gateway, "busy").await;
    let stats = tokio::time::timeout(Duration::from_secs(90), softphone)
        .await
        .expect("SIPp ends within its own timeout")
        .unwrap();
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "softphone: {stats:?}"
    );
    nothing_left(&gateway);
}

//! A customer's app in a real browser calls through the gateway with voice and video: headless
//! Chromium runs `tests/browser/webrtc_app.html` (driven by `webrtc_app.mjs` with
//! playwright-core), creates a chat over the customer API and asks for a call with video once an
//! agent has joined. The agent, over the agent API, accepts the chat, accepts the call and
//! allows video; the gateway offers to the app (it always offers), Chromium answers with its
//! fake camera and microphone, and inbound audio and video RTP reach the page. The agent's own
//! media leg is the webrtc-rs test client, answering whatever offer the gateway signals to the
//! agent's socket, so media flows both ways. Missing Chromium, Node or playwright-core fail the
//! test: nothing is skipped.

use crate::common;
use crate::desk;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use desk::{AudioCodec, ClientOptions, Desk, WebRtcClient, config};
use serde_json::{Value, json};

/// How long the browser may take from launch to media on both kinds.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(45);

/// The SDP of an offer the gateway signals to the agent, if `event` is one.
fn offer_sdp(event: &Value) -> Option<String> {
    let data = event.get("data").unwrap_or(event);
    let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
    if !kind.eq_ignore_ascii_case("OFFER_CALL") && !kind.eq_ignore_ascii_case("offer") {
        return None;
    }
    data.get("sdp").and_then(Value::as_str).map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_in_chromium_gets_voice_and_video_from_the_agent() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run scripts/test (npm install --prefix tests/browser)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/test (apt-get install chromium)"
    );

    let gateway = common::Gateway::start(&config(""));
    let base = format!("http://{}", gateway.http);
    let http = reqwest::Client::new();
    let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;

    let browser = tokio::process::Command::new("node")
        .arg(browser_dir.join("webrtc_app.mjs"))
        .args([
            base.as_str(),
            &BROWSER_TIMEOUT.as_millis().to_string(),
            "claims-app",
            "chromium-app",
            "50",
        ])
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let mut browser = tokio::spawn(browser);

    // The page's chat is offered to the agent, who takes it; the page then asks for a call
    // with video, which the agent accepts and allows.
    let offer = desk.until(|v| v["event"] == "offer").await;
    let chat = offer["chat_id"].as_str().unwrap().to_string();
    let accepted = desk
        .command(json!({"command": "accept", "chat_id": chat}))
        .await;
    assert_eq!(accepted["event"], "ack", "{accepted}");
    let call = desk
        .command_until_ack(
            json!({"command": "accept_call", "chat_id": chat}),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(call["event"], "ack", "accept_call: {call}");
    let video = desk
        .command_until_ack(
            json!({"command": "allow_video", "chat_id": chat}),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(video["event"], "ack", "allow_video: {video}");

    // The agent's leg answers every offer the gateway makes it (the first, then with video)
    // until the browser run is over.
    let agent = WebRtcClient::new(ClientOptions {
        audio_codec: AudioCodec::Opus,
        video: true,
    })
    .await;
    let (mut sending_audio, mut sending_video) = (false, false);
    let out = loop {
        let event = match desk.pending.pop_front() {
            Some(event) => Some(event),
            None if desk.closed => break (&mut browser).await,
            None => tokio::select! {
                done = &mut browser => break done,
                event = desk.frame(Duration::from_millis(500)) => event,
            },
        };
        let Some(sdp) = event.as_ref().and_then(offer_sdp) else {
            continue;
        };
        let answer = agent.answer(&sdp).await;
        let reply = desk
            .command(json!({"command": "webrtc_signaling", "chat_id": chat,
                            "data": {"type": "ANSWER_CALL", "sdp": answer}}))
            .await;
        assert_eq!(reply["event"], "ack", "the agent's answer: {reply}");
        if agent.wait_connected(Duration::from_secs(10)).await {
            if !sending_audio {
                agent.start_sending_audio().await;
                sending_audio = true;
            }
            // Video comes with the renegotiation after the agent allowed it.
            if !sending_video && sdp.contains("\nm=video ") {
                agent.start_sending_video().await;
                sending_video = true;
            }
        }
    };
    let out = out.expect("the browser task joins").expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser run failed\nstdout:\n{stdout}\nstderr:\n{stderr}\ngateway log:\n{}",
        gateway.log_text()
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let stats = &result["stats"];
    let packets = |key: &str| stats[key].as_u64().unwrap_or(0);
    assert!(
        packets("inboundAudioPackets") > 0 && packets("inboundVideoPackets") > 0,
        "Chromium received audio and video: {result:#}\ngateway log:\n{}",
        gateway.log_text()
    );
    assert_eq!(result["app"]["rejected"], Value::Null, "{result:#}");
    assert!(
        agent.audio_packets_received() > 0 && agent.video_packets_received() > 0,
        "the agent received Chromium's audio ({}) and video ({})",
        agent.audio_packets_received(),
        agent.video_packets_received()
    );
    agent.close().await;
}

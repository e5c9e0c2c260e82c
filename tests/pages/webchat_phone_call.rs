//! The customer asks, from the web chat, to be called on the phone, in headless Chromium on a
//! desktop and on a phone: the page offers the number given at the start, shows the request
//! waiting for the agent, then the call's progress while the chat goes on, and its end. The
//! agent accepts over the agent API and talks on her browser (a webrtc-rs peer); the customer's
//! phone is SIPp behind the service's trunk, answering and echoing, and checking that the
//! INVITE dials the number the customer gave and names the chat.

use crate::chat_browser as browser;
use crate::common;
use crate::desk;
use crate::webchat;

use desk::{agent_desk, webrtc};

use std::time::Duration;

use agent_desk::Desk;
use browser::{Browser, Device};
use serde_json::json;
use webchat::{CUSTOMER, PHONE, chat_url};
use webrtc::{AudioCodec, ClientOptions, WebRtcClient};

async fn journey(device: Device) {
    let phone_port = common::free_port();
    let gateway = common::Gateway::start(&webchat::config(&format!(
        "trunk = \"carrier\"\ncaller_id = \"+15550100\"\n\
         [[sip.trunks]]\nname = \"carrier\"\naddresses = [\"127.0.0.1:{phone_port}\"]\n"
    )));
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("phone.log");
    let scenario = common::scenario("phone_answer.xml");
    let phone = common::sipp_spawn_on(
        phone_port,
        gateway.sip,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-rtp_echo",
            "-m",
            "1",
            "-trace_logs",
            "-log_file",
            log.to_str().unwrap(),
        ],
    );
    let phone = tokio::task::spawn_blocking(move || phone.wait());

    let http = reqwest::Client::new();
    let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;
    let mut browser = Browser::launch(&format!("phone-call-{}", device.name())).await;
    let page = browser.open(&chat_url(gateway.http), device, None).await;
    webchat::start_chat(&mut browser, page, CUSTOMER, PHONE).await;
    let (chat, _) = webchat::accept(&mut desk, CUSTOMER).await;
    browser.sees(page, "Alice joined the chat").await;

    // The customer asks to be called, at the number given at the start.
    browser.click(page, "button", "Call me on my phone").await;
    let number = browser
        .on(page, json!({"cmd": "eval", "js": "(() => { const i = document.querySelector('input[name=callback]'); return i.value; })()"}))
        .await;
    assert_eq!(number, PHONE, "the number given at the start is offered");
    browser.click(page, "button", "Call me").await;
    browser
        .sees(page, &format!("Waiting for Alice to call you at {PHONE}"))
        .await;
    browser.screenshot(page, "1-phone-call-requested").await;
    let requested = desk
        .until(|v| {
            v["event"] == "call_state" && v["kind"] == "voice" && v["state"] == "awaiting_approval"
        })
        .await;
    assert_eq!(requested["chat_id"], chat.as_str());
    assert_eq!(
        requested["number"], PHONE,
        "the agent is told the number to call: {requested}"
    );

    // Alice accepts on her browser; the phone rings, answers, and they talk.
    let accepted = desk
        .command(json!({"command": "accept_call", "chat_id": chat}))
        .await;
    assert_eq!(accepted["event"], "ack", "{accepted}");
    let agent = WebRtcClient::new(ClientOptions {
        audio_codec: AudioCodec::Opus,
        video: false,
    })
    .await;
    let offer = webchat::agent_offer(&mut desk, &chat).await;
    let answer = agent.answer(&offer).await;
    webchat::agent_answer(&mut desk, &chat, &answer).await;
    assert!(agent.wait_connected(Duration::from_secs(20)).await);
    agent.start_sending_audio().await;
    browser.sees(page, "On the phone with Alice.").await;
    desk.call_state(&chat, "up").await;
    // The phone echoes: Alice hears her own audio back through it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while agent.audio_packets_received() < 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent hears the phone\n{}",
            gateway.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The chat goes on during the call, and the call is shown meanwhile.
    browser
        .fill(page, "Message", "I can hear you on my phone.")
        .await;
    browser.click(page, "button", "Send").await;
    desk.until(|v| v["event"] == "message" && v["msg"] == "I can hear you on my phone.")
        .await;
    desk.say(&chat, "Great, I am sending the form meanwhile.")
        .await;
    browser
        .sees(page, "Great, I am sending the form meanwhile.")
        .await;
    browser.sees(page, "On the phone with Alice.").await;
    browser.screenshot(page, "2-on-the-phone").await;

    // Alice hangs up: the page says the call ended, and how long it was.
    let released = desk
        .command(json!({"command": "release_call", "chat_id": chat}))
        .await;
    assert_eq!(released["event"], "ack", "{released}");
    browser.sees(page, "The phone call ended after").await;
    browser.shows(page, "button", "Call me on my phone").await;
    browser.screenshot(page, "3-phone-call-ended").await;
    let stats = tokio::time::timeout(Duration::from_secs(90), phone)
        .await
        .expect("SIPp ends")
        .unwrap();
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "phone: {stats:?}\ngateway log:\n{}",
        gateway.log_text()
    );
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains(&format!("X-Interaction-Id={chat}")),
        "the INVITE named the chat: {logged}"
    );
    agent.close().await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_call_asked_for_on_a_desktop() {
    journey(Device::Desktop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_call_asked_for_on_a_phone() {
    journey(Device::Phone).await;
}

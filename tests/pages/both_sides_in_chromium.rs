//! Both sides in one headless Chromium, against the real binary: the customer on the web chat
//! (`/chat/`, a phone-sized context with its fake camera, microphone and position) and the agent
//! on the Agent Desktop (`/desk/`, a desktop-sized context of its own). Nothing in between is
//! simulated: what one side does in its page is what the other sees in its page.
//!
//! The customer starts a chat; the agent is offered it and accepts; they write to each other and
//! each sees the other's messages read; the customer sends a picture (the agent sees it inline
//! and enlarges it) and shares her location (the agent sees it on the map); she asks for a
//! voice call, the agent accepts it and they hear each other (`getStats()`: packets and audio
//! energy both ways); the agent releases it. She asks for a video call; the agent allows the
//! video, which takes the call with it (nothing is left to accept); video flows both ways; she
//! stops her video and they keep talking; the agent cannot end the chat while the call is up,
//! releases the call, then ends the chat; the customer sees the chat ended and reads its
//! transcript. `/metrics` is idle afterwards.
//!
//! Each step saves the two screens under `target/desk-screenshots/both-sides/`
//! (`NN-step-customer.png`, `NN-step-agent.png`).

use crate::chat_browser as browser;
use crate::common;
use crate::desk_browser;
use crate::webchat;

use std::path::Path;
use std::time::Duration;

use browser::{Browser, Device, Page};
use serde_json::{Value, json};
use webchat::{CUSTOMER, PHONE, chat_url};

/// Where the customer's browser says she is.
const HERE: (f64, f64) = (48.8584, 2.2945);
/// How long media may take to arrive, or to change.
const MEDIA: Duration = Duration::from_secs(30);
/// Packets each side must receive of the other's audio: over a second of it.
const AUDIO_PACKETS: u64 = 50;

/// The audio each side received of the other's, and the energy it played out.
#[derive(Debug, Clone, Copy, Default)]
struct Heard {
    customer_packets: u64,
    customer_energy: f64,
    agent_packets: u64,
    agent_energy: f64,
}

/// The browser with the customer's page and the agent's.
struct BothSides {
    browser: Browser,
    customer: Page,
    agent: Page,
}

impl BothSides {
    /// Saves what each side sees now as `<step>-customer.png` and `<step>-agent.png`.
    async fn screenshots(&mut self, step: &str) {
        self.browser
            .screenshot(self.customer, &format!("{step}-customer"))
            .await;
        self.browser
            .screenshot(self.agent, &format!("{step}-agent"))
            .await;
    }

    /// The customer's call statistics (`getStats()` in her page).
    async fn customer_stats(&mut self) -> Value {
        self.browser
            .eval(self.customer, "window.TandemChat.callStats()")
            .await
    }

    /// The agent's call statistics (`getStats()` in the desk).
    async fn agent_stats(&mut self) -> Value {
        self.browser
            .eval(self.agent, "window.tandemDesk.stats()")
            .await
    }

    /// What each side heard so far (`getStats()` in each page).
    async fn heard(&mut self) -> Heard {
        let (c, a) = (self.customer_stats().await, self.agent_stats().await);
        Heard {
            customer_packets: c["inbound"]["audio"].as_u64().unwrap(),
            customer_energy: c["audioEnergy"].as_f64().unwrap(),
            agent_packets: a["inboundAudioPackets"].as_u64().unwrap(),
            agent_energy: a["inboundAudioEnergy"].as_f64().unwrap(),
        }
    }

    /// Waits until each side has received over [`AUDIO_PACKETS`] more of the other's audio
    /// packets than `since`, with sound in them (the energy played out grows too).
    async fn voice_both_ways(&mut self, what: &str, since: Heard) {
        let deadline = tokio::time::Instant::now() + MEDIA;
        loop {
            let now = self.heard().await;
            if now.customer_packets > since.customer_packets + AUDIO_PACKETS
                && now.agent_packets > since.agent_packets + AUDIO_PACKETS
                && now.customer_energy > since.customer_energy
                && now.agent_energy > since.agent_energy
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never: {what}
before: {since:?}
now: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// JavaScript for the desk: the receipt shown under the agent's own message `text`.
fn desk_receipt(text: &str) -> String {
    format!(
        "(() => {{ const want = {}; \
         const li = [...document.querySelectorAll('#messages li.mine')] \
           .find(li => li.querySelector('.text')?.innerText === want); \
         return li?.querySelector('.receipt')?.innerText ?? null; }})()",
        serde_json::to_string(text).unwrap()
    )
}

/// JavaScript for the desk: the picture `name` shown inline, decoded by the browser.
fn desk_picture(name: &str) -> String {
    format!(
        "(() => {{ const img = document.querySelector(`#messages img[alt^=\"Picture {name} \"]`); \
         return !!img && img.complete && img.naturalWidth > 0; }})()"
    )
}

/// JavaScript for the desk: both video windows shown, with pictures.
const DESK_VIDEOS: &str = "(() => { \
    const seen = (id) => { const v = document.getElementById(id); \
      return !v.closest('[hidden]') && v.videoWidth > 0; }; \
    return seen('local-video') && seen('remote-video'); })()";

/// JavaScript for the customer's page: both video windows shown, with pictures.
const CUSTOMER_VIDEOS: &str = "(() => { \
    const v = (name) => document.querySelector(`video[aria-label=\"${name}\"]`); \
    const seen = (e) => !!e && !e.hidden && !e.closest('[hidden]') && e.videoWidth > 0; \
    return seen(v(\"The agent's video\")) && seen(v('Your video')); })()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_and_an_agent_each_in_a_browser() {
    // Tiles from a port where nothing listens, as on a desk without internet.
    let gateway = common::Gateway::start(&webchat::config(
        "\n[desk]\nmap_tiles_url = \"http://127.0.0.1:9/tiles/{z}/{x}/{y}.png\"\n",
    ));
    let base = format!("http://{}", gateway.http);
    let mut browser = Browser::launch("both-sides").await;
    // Both screens go with the desk's journeys' screenshots.
    browser.shots =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/desk-screenshots/both-sides");

    // The agent logs in at her desk and gets ready.
    let agent = browser
        .open_granting(
            &format!("{base}/desk/"),
            Device::Desktop,
            &["notifications", "camera", "microphone"],
        )
        .await;
    browser.fill(agent, "Name", "alice").await;
    browser.fill(agent, "Password", "desk").await;
    browser.click(agent, "button", "Log in").await;
    browser.sees(agent, "Connected").await;
    browser.select(agent, "Presence", "Ready").await;

    // The customer, on her phone, starts a chat; the agent is offered it and takes it.
    let customer = browser
        .open(&chat_url(gateway.http), Device::Phone, Some(HERE))
        .await;
    let mut both = BothSides {
        browser,
        customer,
        agent,
    };
    let b = &mut both.browser;
    webchat::start_chat(b, customer, CUSTOMER, PHONE).await;
    b.shows(agent, "button", "Accept chat from Carol").await;
    b.sees(agent, "New chat: claims").await;
    both.screenshots("01-offered").await;
    let b = &mut both.browser;
    b.click(agent, "button", "Accept chat from Carol").await;
    b.shows(agent, "heading", "Chat with Carol (claims)").await;
    b.sees(customer, "Alice joined the chat").await;
    b.sees(customer, "Chatting with Alice").await;

    // They write to each other; each sees the other's message read.
    let question = "Someone backed into my car in a car park. Am I covered?";
    b.fill(customer, "Message", question).await;
    b.click(customer, "button", "Send").await;
    b.sees_in(agent, ("list", "Conversation"), question).await;
    b.until(
        customer,
        "the agent read the customer's message",
        &format!("{} === 'read'", webchat::receipt_of(question)),
        MEDIA,
    )
    .await;
    let reply = "You are. Could you send me a picture of the damage?";
    b.fill(agent, "Message", reply).await;
    b.click(agent, "button", "Send").await;
    b.sees_in(customer, ("log", "Conversation"), reply).await;
    b.until(
        agent,
        "the customer read the agent's reply",
        &format!("{} === 'Read'", desk_receipt(reply)),
        MEDIA,
    )
    .await;
    both.screenshots("02-messages-read").await;

    // A picture: the customer sees it sent, the agent sees it inline and enlarges it.
    let b = &mut both.browser;
    let picture = webchat::png(160, 120, [200, 40, 40]);
    b.attach(
        customer,
        "Attach a file",
        "damage.png",
        "image/png",
        &picture,
    )
    .await;
    b.until(
        customer,
        "the picture shown in the customer's conversation",
        &format!("{} >= 1", webchat::PICTURES_SHOWN),
        MEDIA,
    )
    .await;
    b.shows(agent, "button", "Enlarge picture damage.png").await;
    b.until(
        agent,
        "the picture shown inline on the desk",
        &desk_picture("damage.png"),
        MEDIA,
    )
    .await;
    both.screenshots("03-picture").await;
    let b = &mut both.browser;
    b.click(agent, "button", "Enlarge picture damage.png").await;
    b.shows(agent, "dialog", "Picture").await;
    let enlarged = b
        .eval(
            agent,
            "(() => { const i = document.getElementById('image-large'); \
             return [i.complete ? i.naturalWidth : 0, i.getBoundingClientRect().width]; })()",
        )
        .await;
    assert_eq!(enlarged[0], 160, "the enlarged picture is the customer's");
    assert!(
        enlarged[1].as_f64().unwrap() > 400.0,
        "and larger than inline: {enlarged}"
    );
    b.screenshot(agent, "04-picture-enlarged-agent").await;
    b.click_in(agent, ("dialog", "Picture"), "button", "Close")
        .await;
    b.hides(agent, "dialog", "Picture").await;

    // Her location: the agent sees it on the map, with a marker and a link.
    b.click(customer, "button", "Share my location").await;
    b.sees(customer, "You shared your location.").await;
    let area = ("region", "Context Information");
    b.sees_in(agent, area, "48.85840, 2.29450").await;
    b.shows(agent, "img", "Map of the customer's location")
        .await;
    b.until(
        agent,
        "a marker on the map",
        "document.querySelector('#map .leaflet-marker-icon') !== null",
        MEDIA,
    )
    .await;
    let link = b
        .on(
            agent,
            json!({"cmd": "eval", "js": "document.querySelector('#location-text a').href"}),
        )
        .await;
    assert!(
        link.as_str().unwrap().contains("mlat=48.8584"),
        "the link goes to her position: {link}"
    );
    both.screenshots("05-location").await;

    // A voice call in the browser: she asks, the agent accepts, they hear each other.
    let b = &mut both.browser;
    b.click(customer, "button", "Voice call").await;
    b.sees(customer, "Waiting for Alice to accept the call")
        .await;
    b.sees(agent, "The customer asks for a call.").await;
    both.screenshots("06-call-requested").await;
    let b = &mut both.browser;
    b.click(agent, "button", "Accept call").await;
    b.sees(customer, "On a call with Alice.").await;
    b.sees_in(customer, ("log", "Conversation"), "The call started.")
        .await;
    let contact = ("region", "Contact Info");
    b.sees_in(agent, contact, "Connected").await;
    both.voice_both_ways("voice both ways", Heard::default())
        .await;
    let b = &mut both.browser;
    let plays = b
        .eval(
            agent,
            "(() => { const a = document.getElementById('remote-audio'); \
             return !!a.srcObject && !a.paused; })()",
        )
        .await;
    assert_eq!(plays, json!(true), "the desk plays the customer's voice");
    both.screenshots("07-voice-call").await;

    // The agent releases it; both see it ended.
    let b = &mut both.browser;
    b.click_in(agent, contact, "button", "Release call").await;
    b.sees(customer, "The call ended.").await;
    b.shows(customer, "button", "Video call").await;
    b.sees_in(agent, contact, "Call ended").await;
    b.sees_in(agent, ("list", "Conversation"), "Call ended after")
        .await;

    // A video call: she asks; the agent allows the video, which takes the call with it.
    b.click(customer, "button", "Video call").await;
    b.sees(customer, "Waiting for Alice to accept the video call")
        .await;
    b.sees(agent, "The customer asks for video.").await;
    b.sees(agent, "The customer asks for a call.").await;
    both.screenshots("08-video-requested").await;
    // Allowing the video takes the call with it: the call's Accept goes at once (the gateway
    // would refuse it with `no_call_request`), not only once the gateway reports the call.
    let b = &mut both.browser;
    let accept_left = b
        .eval(
            agent,
            "(async () => { \
               const button = (name) => [...document.querySelectorAll('#requests button')] \
                 .find(b => b.textContent === name); \
               button('Allow video').click(); \
               await new Promise(r => setTimeout(r, 0)); \
               await new Promise(r => requestAnimationFrame(r)); \
               return !!button('Accept call'); })()",
        )
        .await;
    assert_eq!(accept_left, json!(false), "Accept call is gone with Allow");
    b.hides(agent, "button", "Accept call").await;
    b.hides(agent, "button", "Allow video").await;
    b.until(agent, "both video windows on the desk", DESK_VIDEOS, MEDIA)
        .await;
    b.until(
        customer,
        "both video windows in the chat",
        CUSTOMER_VIDEOS,
        MEDIA,
    )
    .await;
    b.sees(customer, "On a video call with Alice.").await;
    let (c, a) = (both.customer_stats().await, both.agent_stats().await);
    assert!(c["frameWidth"].as_u64().unwrap() > 0, "{c}");
    assert!(a["inboundVideoPackets"].as_u64().unwrap() > 0, "{a}");
    assert!(a["outboundVideoPackets"].as_u64().unwrap() > 0, "{a}");
    let since = both.heard().await;
    both.voice_both_ways("voice with the video", since).await;
    assert_eq!(
        both.browser.count(agent, "button", "Stop video").await,
        0,
        "the agent has no control to stop video alone"
    );
    both.screenshots("09-video-call").await;

    // She stops her video: the windows close on both sides, the voice goes on.
    let b = &mut both.browser;
    b.click(customer, "button", "Stop video").await;
    b.hides(agent, "video", "Customer's video").await;
    b.sees(customer, "On a call with Alice.").await;
    b.sees(customer, "You stopped the video. The call goes on.")
        .await;
    b.sees_in(agent, ("list", "Conversation"), "Video ended")
        .await;
    b.until(
        customer,
        "the video windows gone from the chat",
        "(() => [...document.querySelectorAll('video')].every(v => v.hidden || !!v.closest('[hidden]')))()",
        MEDIA,
    )
    .await;
    let since = both.heard().await;
    both.voice_both_ways("voice after the video stopped", since)
        .await;
    let b = &mut both.browser;
    b.sees_in(agent, contact, "Connected").await;
    both.screenshots("10-video-stopped-voice-goes-on").await;

    // The chat cannot end before the call; the agent releases it, then ends the chat.
    let b = &mut both.browser;
    b.sees(agent, "Release the call first.").await;
    assert_eq!(
        b.eval(agent, "document.getElementById('end-chat').disabled")
            .await,
        json!(true),
        "End chat waits for the call"
    );
    b.click_in(agent, contact, "button", "Release call").await;
    b.shows(customer, "button", "Voice call").await;
    assert_eq!(b.count_text(customer, "The call ended.").await, 2);
    b.sees_in(agent, contact, "Call ended").await;
    b.click(agent, "button", "End chat").await;
    b.sees(agent, "Chat ended (agent disconnected)").await;
    b.shows(agent, "link", "Transcript").await;

    // The customer sees the chat ended, and reads its transcript.
    b.sees(customer, "The chat has ended").await;
    assert_eq!(b.count(customer, "textbox", "Message").await, 0);
    b.click(customer, "button", "View transcript").await;
    b.shows(customer, "region", "Transcript").await;
    let transcript = b.text(customer, "region", "Transcript").await;
    for line in [
        format!("{CUSTOMER}: {question}"),
        format!("Alice: {reply}"),
        format!("{CUSTOMER} sent a file: damage.png"),
    ] {
        assert!(
            transcript.contains(&line),
            "{line:?} in the transcript:\n{transcript}"
        );
    }
    both.screenshots("11-ended-with-transcript").await;

    both.browser.quit().await;
    desk_browser::assert_idle(&gateway);
}

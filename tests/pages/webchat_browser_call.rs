//! A voice and video call in the web chat's browser, in headless Chromium (fake camera and
//! microphone) on a desktop and on a phone, with the agent over the agent API and her own
//! browser leg a second Chromium page answering the gateway's offers (so both sides send real
//! VP8 that the other decodes): the customer asks for a video call and sees it wait for the
//! agent; the agent allows the video before accepting (which takes the call with video); the
//! customer then receives audio and video (`getStats()`), sees both video windows (the agent's
//! with `videoWidth > 0`), stops her video alone and keeps talking, and hangs up. A declined
//! and an expired request are shown as such.

use crate::chat_browser as browser;
use crate::common;
use crate::desk;
use crate::webchat;

use desk::agent_desk;

use std::time::Duration;

use agent_desk::Desk;
use browser::{Browser, Device, Page};
use serde_json::{Value, json};
use webchat::{CUSTOMER, PHONE, chat_url};

/// How long the customer's media may take to arrive, or to change.
const MEDIA: Duration = Duration::from_secs(30);
/// Packets of the agent's media the page must receive: over a second of audio, a few frames.
const AUDIO_PACKETS: u64 = 50;
const VIDEO_PACKETS: u64 = 30;

/// The agent's browser leg: a Chromium page of its own (any page of the loopback origin is a
/// secure context) with the fake camera and microphone, answering on one peer connection.
const AGENT_LEG: &str = r#"(() => {
  window.agentLeg = {
    pc: null,
    stream: null,
    async answer(sdp) {
      if (!this.pc) {
        this.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
        this.pc = new RTCPeerConnection();
      }
      const pc = this.pc;
      await pc.setRemoteDescription({ type: "offer", sdp });
      for (const t of pc.getTransceivers()) {
        if (t.currentDirection === "stopped" || t.stopped) continue;
        const track = this.stream.getTracks().find((x) => x.kind === t.receiver.track.kind);
        if (t.sender.track !== track) await t.sender.replaceTrack(track);
        t.direction = "sendrecv";
      }
      await pc.setLocalDescription(await pc.createAnswer());
      await new Promise((done) => {
        if (pc.iceGatheringState === "complete") return done();
        pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && done());
        setTimeout(done, 3000);
      });
      return pc.localDescription.sdp;
    },
    async stats() {
      const out = { audio: 0, video: 0 };
      if (!this.pc) return out;
      (await this.pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp") out[s.kind] += s.packetsReceived || 0;
      });
      return out;
    },
  };
  return true;
})()"#;

struct AgentLeg {
    page: Page,
    chat: String,
}

impl AgentLeg {
    /// Answers the offers waiting or arriving within a moment; other events stay pending.
    async fn serve(&mut self, desk: &mut Desk, browser: &mut Browser) {
        let chat = self.chat.clone();
        let is_offer = move |v: &Value| {
            v["event"] == "webrtc_signaling"
                && v["chat_id"] == chat.as_str()
                && v["data"]["type"] == "OFFER_CALL"
        };
        loop {
            let offer = match desk.take(&is_offer) {
                Some(offer) => offer,
                None => match desk.frame(Duration::from_millis(100)).await {
                    Some(v) if is_offer(&v) => v,
                    Some(v) => {
                        desk.pending.push_back(v);
                        continue;
                    }
                    None => return,
                },
            };
            let sdp = serde_json::to_string(offer["data"]["sdp"].as_str().unwrap()).unwrap();
            let answer = browser
                .eval(self.page, &format!("window.agentLeg.answer({sdp})"))
                .await;
            webchat::agent_answer(desk, &self.chat, answer.as_str().unwrap()).await;
        }
    }

    /// What the agent's leg received: `{audio, video}` packets.
    async fn received(&self, browser: &mut Browser) -> (u64, u64) {
        let s = browser.eval(self.page, "window.agentLeg.stats()").await;
        (s["audio"].as_u64().unwrap(), s["video"].as_u64().unwrap())
    }
}

/// Keeps the agent's leg answering until `js` holds in the page; fails saying `what`.
async fn until(
    browser: &mut Browser,
    page: Page,
    desk: &mut Desk,
    agent: &mut AgentLeg,
    what: &str,
    js: &str,
) {
    let deadline = tokio::time::Instant::now() + MEDIA;
    loop {
        agent.serve(desk, browser).await;
        if browser.eval(page, js).await == json!(true) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let stats = browser.eval(page, "window.TandemChat.callStats()").await;
            let console = browser.on(page, json!({"cmd": "console"})).await;
            panic!(
                "never: {what}\nstats: {stats}\nconsole: {console:#}\nagent saw: {:#?}",
                desk.log
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// JavaScript: the call's statistics as the page's standard `getStats()` has them.
const STATS: &str = "window.TandemChat.callStats()";

/// JavaScript: the two video windows as a person sees them (shown, with a picture).
const VIDEOS: &str = "(() => { \
    const v = (name) => document.querySelector(`video[aria-label=\"${name}\"]`); \
    const seen = (e) => !!e && !e.hidden && !e.closest('[hidden]') && e.videoWidth > 0; \
    return { agent: seen(v(\"The agent's video\")), mine: seen(v('Your video')) }; })()";

async fn journey(device: Device) {
    let gateway = common::Gateway::start(&webchat::config("[chat]\ncall_request_timeout_s = 4\n"));
    let http = reqwest::Client::new();
    let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;
    let mut browser = Browser::launch(&format!("browser-call-{}", device.name())).await;
    let page = browser.open(&chat_url(gateway.http), device, None).await;
    webchat::start_chat(&mut browser, page, CUSTOMER, PHONE).await;
    let (chat, _) = webchat::accept(&mut desk, CUSTOMER).await;
    browser.sees(page, "Alice joined the chat").await;

    // The customer asks for a video call; it waits for Alice.
    browser.click(page, "button", "Video call").await;
    browser
        .sees(page, "Waiting for Alice to accept the video call")
        .await;
    browser.shows(page, "button", "Cancel call request").await;
    for kind in ["voice", "video"] {
        desk.until_keeping(|v| {
            v["event"] == "call_state" && v["kind"] == kind && v["state"] == "awaiting_approval"
        })
        .await;
    }
    browser.screenshot(page, "1-waiting-for-the-agent").await;

    // Alice allows the video first: that takes the call, with video.
    let allowed = desk
        .command(json!({"command": "allow_video", "chat_id": chat}))
        .await;
    assert_eq!(allowed["event"], "ack", "{allowed}");
    let leg_page = browser
        .open(
            &format!("http://{}/healthz", gateway.http),
            Device::Desktop,
            None,
        )
        .await;
    assert_eq!(browser.eval(leg_page, AGENT_LEG).await, json!(true));
    let mut agent = AgentLeg {
        page: leg_page,
        chat: chat.clone(),
    };
    let enough = format!(
        "{STATS}.then(s => s.inbound.audio > {AUDIO_PACKETS} && s.inbound.video > {VIDEO_PACKETS})"
    );
    until(
        &mut browser,
        page,
        &mut desk,
        &mut agent,
        "audio and video from the agent",
        &enough,
    )
    .await;
    let both = format!("(() => {{ const v = {VIDEOS}; return v.agent && v.mine; }})()");
    until(
        &mut browser,
        page,
        &mut desk,
        &mut agent,
        "both video windows",
        &both,
    )
    .await;
    browser.sees(page, "On a video call with Alice.").await;
    let stats = browser.eval(page, STATS).await;
    assert!(stats["frameWidth"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["outbound"]["video"].as_u64().unwrap() > 0, "{stats}");
    browser.screenshot(page, "2-video-call").await;
    // Alice hears and sees the customer.
    let deadline = tokio::time::Instant::now() + MEDIA;
    loop {
        let (audio, video) = agent.received(&mut browser).await;
        if audio > AUDIO_PACKETS && video > VIDEO_PACKETS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent gets the customer's media"
        );
        agent.serve(&mut desk, &mut browser).await;
    }

    // The customer stops her video alone: the windows go, the voice stays.
    browser.click(page, "button", "Stop video").await;
    let gone = format!("(() => {{ const v = {VIDEOS}; return !v.agent && !v.mine; }})()");
    until(
        &mut browser,
        page,
        &mut desk,
        &mut agent,
        "the video windows gone",
        &gone,
    )
    .await;
    desk.until_keeping(|v| {
        v["event"] == "call_state" && v["kind"] == "video" && v["state"] == "released"
    })
    .await;
    let before = browser.eval(page, STATS).await["inbound"]["audio"]
        .as_u64()
        .unwrap();
    let (agent_before, _) = agent.received(&mut browser).await;
    let more = format!(
        "{STATS}.then(s => s.inbound.audio > {} )",
        before + AUDIO_PACKETS
    );
    until(
        &mut browser,
        page,
        &mut desk,
        &mut agent,
        "audio goes on without video",
        &more,
    )
    .await;
    let (agent_after, _) = agent.received(&mut browser).await;
    assert!(agent_after > agent_before, "the agent still hears her");
    browser.sees(page, "On a call with Alice.").await;
    assert!(
        !desk.saw(|v| v["event"] == "call_state"
            && v["kind"] == "voice"
            && v["state"] == "released"),
        "the call goes on: {:#?}",
        desk.log
    );
    browser
        .screenshot(page, "3-voice-after-video-stopped")
        .await;

    // She hangs up.
    browser.click(page, "button", "Hang up").await;
    browser.sees(page, "You hung up.").await;
    desk.until(|v| v["event"] == "call_state" && v["kind"] == "voice" && v["state"] == "released")
        .await;
    browser.shows(page, "button", "Voice call").await;
    let stats = browser.eval(page, STATS).await;
    assert_eq!(stats["connection"], "none", "the peer is closed: {stats}");

    // A declined request, then one nobody answers.
    browser.click(page, "button", "Voice call").await;
    desk.until(|v| v["event"] == "call_state" && v["state"] == "awaiting_approval")
        .await;
    let declined = desk
        .command(json!({"command": "decline_call", "chat_id": chat}))
        .await;
    assert_eq!(declined["event"], "ack", "{declined}");
    browser.sees(page, "The agent declined the call.").await;
    browser.click(page, "button", "Voice call").await;
    browser
        .sees(page, "The call request was not answered in time.")
        .await;
    browser.shows(page, "button", "Voice call").await;
    browser.screenshot(page, "4-declined-and-expired").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_call_in_the_browser_on_a_desktop() {
    journey(Device::Desktop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_call_in_the_browser_on_a_phone() {
    journey(Device::Phone).await;
}

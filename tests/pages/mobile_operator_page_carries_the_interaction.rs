//! A mobile operator answers a claims chat on her phone and carries the whole interaction from
//! the page of the SMS link: the customer's picture, the context with the accident's position,
//! the customer's number and calls through the gateway, the customer's requests, her own
//! devices, and the transcript at the end.
//!
//! Everything is real: the gateway binary; the SMS provider a local HTTP sink that captures
//! the link; the customer's app over the customer API (its WebSocket); the operator's page in
//! headless Chromium emulating a phone (`tests/browser/mobile_operator.mjs`, Playwright's
//! "Pixel 7"); and the two phones behind the service's trunk played by one SIPp
//! (`trunk_phones_talk_and_echo.xml`): the customer's phone talks (SIPp's A-law capture) and
//! the operator's mobile echoes (`-rtp_echo`), so the customer's voice goes through the
//! gateway's bridge to the mobile and comes back to the customer's phone, where the test
//! counts it.
//!
//! Proven here, as a person sees it on the page: the picture rendered (`naturalWidth > 0`), a
//! PDF as a link, the context as a list with a `geo:` link and a web map link, a live location
//! update, the number; the chat opened on a second device is "already taken by you on another
//! device" and moves there after a confirmation (the first device is told), and back; a reload
//! resumes it; the
//! Call button connects both phones (audio echoed), End is refused while the call is up with
//! the reason shown, Hang up releases it; a video request is declined saying video needs the
//! desk (the customer is told so) while the voice request beside it waits for Accept/Decline;
//! a phone-call request accepted dials a second call; End ends the chat and the transcript
//! stays on the page with the picture and both calls. Screenshots go to
//! `target/mobile-screenshots/`. Every wait is bounded; nothing asserts on time.

use crate::agent_desk as desk;
use crate::common;
use crate::mobile_browser as browser;
use crate::picture;
use crate::sms;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use browser::Phones;
use desk::Customer;
use serde_json::{Value, json};
use tandem::routing::password;

/// The customer's phone number, which SIPp recognises in the request URI.
const NUMBER: &str = "+15550123";
/// Olga's own mobile: where her SMS offers go and her calls ring.
const MOBILE: &str = "+15550101";
/// The device names of the operator's two browsers.
const PHONE: &str = "phone";
const OTHER: &str = "other-phone";

fn config(provider: &str, trunk_port: u16, recordings: &Path) -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[http]
long_poll_timeout_s = 5

[sms]
url = "{provider}"

[sip]
recording_dir = "{}"

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
recording = true
video_allowed = true

[[agents]]
name = "olga"
display_name = "Olga"
password_hash = "{hash}"
departments = ["claims"]
mobile = "{MOBILE}"
mobile_mode = "on"
"#,
        recordings.display()
    )
}

/// The two phones behind the trunk for one call: SIPp on the trunk's address, its media port
/// echoing (the mobile), the customer's phone talking from the media port + 4, where the
/// test listens in its place and counts what the gateway sends back.
struct TrunkPhones {
    sipp: common::Sipp,
    log: PathBuf,
    heard: Arc<AtomicU64>,
    _pcap: tempfile::TempDir,
}

impl TrunkPhones {
    fn start(gateway: &common::Gateway, trunk_port: u16, log: PathBuf) -> TrunkPhones {
        let (media, ear) = media_ports();
        let heard = Arc::new(AtomicU64::new(0));
        let counter = heard.clone();
        std::thread::spawn(move || {
            ear.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut buf = [0u8; 2048];
            // Ends 30 s after the last packet (the call is over by then).
            while ear.recv_from(&mut buf).is_ok() {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let pcap = common::pcap_dir();
        let scenario = common::scenario("trunk_phones_talk_and_echo.xml");
        let (port, media) = (trunk_port.to_string(), media.to_string());
        let sipp = common::sipp_spawn_in_dir(
            pcap.path(),
            gateway.sip,
            &[
                "-p",
                &port,
                "-mp",
                &media,
                "-sf",
                scenario.to_str().unwrap(),
                "-rtp_echo",
                "-m",
                "2",
                "-trace_logs",
                "-log_file",
                log.to_str().unwrap(),
            ],
        );
        TrunkPhones {
            sipp,
            log,
            heard,
            _pcap: pcap,
        }
    }

    fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the customer's phone has talked for its four seconds.
    async fn played(&self) {
        let line = format!("number={NUMBER} played");
        for _ in 0..300 {
            if self.logged().contains(&line) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the customer's phone never talked:\n{}", self.logged());
    }

    /// Waits for SIPp's end; the numbers it was called on, each INVITE naming `chat`.
    async fn finished(self, chat: &str) -> (common::SippStats, Vec<String>, u64) {
        let stats = tokio::time::timeout(
            Duration::from_secs(90),
            tokio::task::spawn_blocking(move || self.sipp.wait()),
        )
        .await
        .expect("SIPp ends within its own timeout")
        .unwrap();
        let logged = std::fs::read_to_string(&self.log).unwrap_or_default();
        let expected = format!(
            "X-Interaction-Id={chat} User-to-User={}",
            hex::encode(chat.as_bytes())
        );
        let invites: Vec<&str> = logged
            .lines()
            .filter(|l| l.contains("X-Interaction-Id="))
            .collect();
        assert!(
            invites.iter().all(|l| l.ends_with(&expected)),
            "every INVITE names chat {chat}: {logged}"
        );
        let mut numbers: Vec<String> = invites
            .iter()
            .filter_map(|l| Some(l.split("number=").nth(1)?.split(' ').next()?.to_string()))
            .collect();
        numbers.sort();
        (stats, numbers, self.heard.load(Ordering::Relaxed))
    }
}

/// A SIPp media port whose next four are free too, and a socket bound on the media port + 4
/// (the customer phone's RTP address): nobody else can echo there.
fn media_ports() -> (u16, UdpSocket) {
    let seed = (std::process::id() % 997) as u16;
    for i in 0..2000u16 {
        let base = 40_000 + ((seed * 13 + i * 8) % 9_000) / 8 * 8;
        let probes: Vec<_> = (base..base + 4)
            .map(|p| UdpSocket::bind(("127.0.0.1", p)))
            .collect();
        if probes.iter().any(Result::is_err) {
            continue;
        }
        if let Ok(ear) = UdpSocket::bind(("127.0.0.1", base + 4)) {
            return (base, ear);
        }
    }
    panic!("no free media ports");
}

/// The customer's app uploads `bytes` as `name`; the file id.
async fn upload(
    http: &reqwest::Client,
    gateway: &common::Gateway,
    device: &str,
    name: &str,
    bytes: Vec<u8>,
) -> String {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string());
    let answer: Value = http
        .post(format!("http://{}/clientweb/api/v1/files", gateway.http))
        .header("authorization", desk::auth("claims-app", device))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["file_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a file id: {answer}"))
        .to_string()
}

/// The interaction's events as an operator sees them in the admin API, once `pred` holds (the
/// store may write the last events a moment after the page shows them).
async fn admin_transcript(
    http: &reqwest::Client,
    gateway: &common::Gateway,
    chat: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let url = format!(
        "http://{}/admin/v1/interactions/{chat}/transcript",
        gateway.http
    );
    let mut events = Vec::new();
    for _ in 0..100 {
        let body: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        events = body["events"].as_array().cloned().unwrap_or_default();
        if pred(&events) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the transcript never got there: {events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mobile_operator_carries_the_whole_interaction_from_her_phone() {
    let mut provider = sms::FakeProvider::start().await;
    let trunk_port = common::free_port();
    let recordings = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let gateway = common::Gateway::start(&config(&provider.url(), trunk_port, recordings.path()));
    let http = reqwest::Client::new();

    // The customer opens a claims chat from the app, with her number and the app's context.
    let device = "carol-phone";
    let context = json!({
        "policy_number": "P-2024-0042",
        "vehicle": "Renault Clio AB-123-CD",
        "accident": {"latitude": 48.8584, "longitude": 2.2945},
    });
    let mut customer = Customer::open_with(
        &http,
        gateway.http,
        "claims-app",
        device,
        json!({"from": "Carol", "phone_number": NUMBER, "parameters": context}),
    )
    .await;
    let chat = customer.chat.clone();
    customer
        .say("A van backed into my car at the crossroads.")
        .await;
    let photo = upload(&http, &gateway, device, "dent.png", picture::png(240, 160)).await;
    let form = upload(
        &http,
        &gateway,
        device,
        "claim-form.pdf",
        b"%PDF-1.4\n% the claim form\n".to_vec(),
    )
    .await;
    customer
        .send(json!([{"event": "chat_session_file", "file_id": photo},
                     {"event": "chat_session_file", "file_id": form}]))
        .await;

    // Nobody is at a desk: Olga gets the offer by SMS, and opens its link on her phone.
    let offer = provider.next(Duration::from_secs(20)).await;
    assert_eq!(offer.to(), MOBILE);
    let link = offer.link();
    let mut ui = Phones::start("mobile-screenshots").await;
    let opened = ui.open(PHONE, &link).await;
    assert_eq!(opened["state"], "chatting", "{opened:#}");
    assert_eq!(opened["title"], "Chat with Carol");
    assert_eq!(opened["number"], NUMBER);
    customer
        .until(|v| v["event"] == "chat_session_party_joined" && v["display_name"] == "Olga")
        .await;
    ui.see_in_log(PHONE, "A van backed into my car").await;

    // The picture renders, fetched with the link's session.
    let shown = ui.picture(PHONE).await;
    assert_eq!(shown["natural_width"], 240, "{shown}");
    assert_eq!(shown["alt"], "Picture from Carol: dent.png", "{shown}");
    // Other files are links.
    ui.see(PHONE, "link", None, "claim-form.pdf").await;
    // The context: a list, and the accident's position opens the phone's maps or a web map.
    let page = ui.look(PHONE).await;
    let row = |label: &str| {
        page["context"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["label"] == label)
            .unwrap_or_else(|| panic!("{label} in {:#}", page["context"]))
            .clone()
    };
    assert_eq!(row("Policy number")["text"], "P-2024-0042");
    assert_eq!(row("Vehicle")["text"], "Renault Clio AB-123-CD");
    let accident = row("Accident");
    assert_eq!(
        accident["links"][0],
        json!({"name": "Open 48.8584, 2.2945 in maps", "href": "geo:48.8584,2.2945?q=48.8584,2.2945"})
    );
    assert_eq!(accident["links"][1]["name"], "Web map");
    assert!(
        accident["links"][1]["href"]
            .as_str()
            .unwrap()
            .starts_with("https://www.openstreetmap.org/?mlat=48.8584&mlon=2.2945"),
        "{accident}"
    );
    ui.screenshot(PHONE, "01-chat-with-picture-and-context")
        .await;
    // A location the app sends later joins the list.
    customer
        .send(json!([{"event": "chat_session_location", "latitude": 48.86, "longitude": 2.29}]))
        .await;
    ui.see(PHONE, "link", None, "Open 48.86, 2.29 in maps")
        .await;

    // Her other phone: the chat is hers already; she moves it there, after a confirmation.
    let other = ui.open(OTHER, &link).await;
    assert_eq!(other["state"], "claimed_elsewhere", "{other:#}");
    assert_eq!(
        other["notice"],
        "This chat is already taken by you on another device."
    );
    ui.screenshot(OTHER, "02-already-taken-by-you").await;
    ui.tap(OTHER, "Move the chat here", None).await;
    ui.screenshot(OTHER, "03-move-confirmation").await;
    ui.tap(
        OTHER,
        "Move here",
        Some((
            "dialog",
            "Move this chat to this device? The other device stops showing it.",
        )),
    )
    .await;
    ui.state(OTHER, "chatting").await;
    ui.see_in_log(OTHER, "A van backed into my car").await;
    let left = ui.state(PHONE, "moved").await;
    assert_eq!(left["notice"], "This chat moved to another device.");
    // And back to the first phone, which resumes where it stood; a reload keeps it there.
    ui.tap(PHONE, "Move the chat back here", None).await;
    ui.tap(
        PHONE,
        "Move here",
        Some((
            "dialog",
            "Move this chat to this device? The other device stops showing it.",
        )),
    )
    .await;
    ui.state(PHONE, "chatting").await;
    ui.state(OTHER, "moved").await;
    let reloaded = ui.reload(PHONE).await;
    assert_eq!(reloaded["state"], "chatting", "{reloaded:#}");
    ui.picture(PHONE).await;
    ui.fill(
        PHONE,
        "Message to the customer",
        "I see the dent. I'll call you now.",
    )
    .await;
    ui.tap(PHONE, "Send", None).await;
    customer
        .until(|v| v["event"] == "chat_session_message" && v["party_id"] == "olga")
        .await;

    // One tap calls the customer through the gateway, Olga on her own mobile.
    let phones = TrunkPhones::start(&gateway, trunk_port, logs.path().join("call-1.log"));
    ui.tap(PHONE, "Call customer", None).await;
    ui.see_call(PHONE, "On the call with Carol").await;
    customer
        .until(|v| v["event"] == "chat_session_call_state" && v["state"] == "up")
        .await;
    phones.played().await;
    ui.screenshot(PHONE, "04-on-the-call").await;
    // End is refused while the call is up, and the page says why.
    ui.tap(PHONE, "End chat", None).await;
    ui.tap(
        PHONE,
        "End chat",
        Some(("dialog", "End this chat? The customer is told it is over.")),
    )
    .await;
    ui.see(
        PHONE,
        "alert",
        None,
        "Hang up the call before ending the chat.",
    )
    .await;
    ui.screenshot(PHONE, "05-end-refused-while-the-call-is-up")
        .await;
    ui.tap(PHONE, "Hang up", None).await;
    ui.see_call(PHONE, "Last call ended: you hung up").await;
    ui.see_in_log(PHONE, "Call 1 ended (you hung up").await;
    let (first, numbers, heard) = phones.finished(&chat).await;
    assert_eq!(
        (first.exit_code, first.successful, first.failed),
        (0, 2, 0),
        "{first:?}\ngateway log:\n{}",
        gateway.log_text()
    );
    // Both phones were dialled through the trunk, the customer's and Olga's own.
    assert_eq!(numbers, [MOBILE, NUMBER], "{numbers:?}");
    // The customer's voice went to the mobile and its echo came back to the customer's phone.
    assert!(
        heard > 100,
        "the customer's phone heard {heard} packets back"
    );

    // The app asks for a call with video: video is declined at once, saying it needs the desk,
    // while the voice request waits for Olga, who declines it.
    customer
        .signal(json!({"type": "REQUEST_CALL", "offerVideo": true}))
        .await;
    let refused = customer
        .until(|v| v["event"] == "chat_session_signaling" && v["data"]["type"] == "CALL_REJECTED")
        .await;
    assert_eq!(
        refused["data"]["reason_code"], "video_needs_desk",
        "{refused}"
    );
    assert_eq!(refused["data"]["video"], true, "{refused}");
    ui.see_in_log(PHONE, "Video declined: video needs an agent at a desk")
        .await;
    ui.see(
        PHONE,
        "alert",
        Some("Call request"),
        "Carol asks for a voice call from the app.",
    )
    .await;
    ui.screenshot(PHONE, "06-call-request-and-video-declined")
        .await;
    ui.tap(PHONE, "Decline", None).await;
    let declined = customer
        .until(|v| v["event"] == "chat_session_signaling" && v["data"]["type"] == "CALL_REJECTED")
        .await;
    assert_eq!(declined["data"]["reason_code"], "declined", "{declined}");
    ui.see_in_log(PHONE, "You declined the call request").await;

    // The customer asks to be called on her phone: Accept dials, as the Call button does.
    customer.signal(json!({"type": "REQUEST_PHONE_CALL"})).await;
    ui.see(
        PHONE,
        "alert",
        Some("Call request"),
        "Carol asks to be called at +15550123.",
    )
    .await;
    let phones = TrunkPhones::start(&gateway, trunk_port, logs.path().join("call-2.log"));
    ui.tap(PHONE, "Accept and call", None).await;
    ui.see_call(PHONE, "On the call with Carol").await;
    phones.played().await;
    ui.tap(PHONE, "Hang up", None).await;
    ui.see_in_log(PHONE, "Call 2 ended (you hung up").await;
    let (second, numbers, heard) = phones.finished(&chat).await;
    assert_eq!(
        (second.exit_code, second.successful, second.failed),
        (0, 2, 0),
        "{second:?}\ngateway log:\n{}",
        gateway.log_text()
    );
    assert_eq!(numbers, [MOBILE, NUMBER], "{numbers:?}");
    assert!(
        heard > 100,
        "the customer's phone heard {heard} packets back"
    );

    // Olga ends the chat; the transcript stays, with the picture and both calls.
    ui.tap(PHONE, "End chat", None).await;
    ui.tap(
        PHONE,
        "End chat",
        Some(("dialog", "End this chat? The customer is told it is over.")),
    )
    .await;
    let ended = ui.state(PHONE, "ended").await;
    customer.until(|v| v["event"] == "chat_session_ended").await;
    ui.see(PHONE, "heading", None, "Transcript").await;
    let log: Vec<String> = ended["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let has = |text: &str| log.iter().any(|l| l.contains(text));
    for line in [
        "A van backed into my car",
        "dent.png",
        "Call 1: calling +15550123",
        "Call 1 connected",
        "Call 1 was recorded",
        "Call 1 ended (you hung up",
        "Video declined",
        "You declined the call request",
        "Carol asked to be called at +15550123",
        "Call 2 connected",
        "Call 2 ended (you hung up",
        "The chat has ended",
    ] {
        assert!(has(line), "{line:?} in the transcript: {log:#?}");
    }
    let kept = ui.picture(PHONE).await;
    assert_eq!(kept["natural_width"], 240, "{kept}");
    ui.screenshot(PHONE, "08-transcript-end").await;
    ui.scroll(PHONE, "top").await;
    ui.screenshot(PHONE, "07-transcript-start").await;
    let look = ui.look(PHONE).await;
    assert!(
        look["console"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| !l.as_str().unwrap_or("").contains("pageerror")),
        "{:#}",
        look["console"]
    );
    ui.quit().await;

    // The gateway's record: both calls to the customer's number, recorded, in order.
    let events = admin_transcript(&http, &gateway, &chat, |events| {
        events.iter().filter(|e| e["event"] == "recording").count() == 2
    })
    .await;
    let placed = events
        .iter()
        .filter(|e| {
            e["event"] == "leg"
                && e["state"] == "connecting"
                && e["target"]["number"] == NUMBER
                && e["reason"].is_null()
        })
        .count();
    assert_eq!(placed, 2, "{events:#?}");
    // Audio went both ways on both phones' legs of both calls.
    let legs = gateway.closed_legs();
    let talking = legs
        .iter()
        .filter(|(inbound, outbound)| *inbound > 100 && *outbound > 100)
        .count();
    assert_eq!(talking, 4, "{legs:?}\n{}", gateway.log_text());
}

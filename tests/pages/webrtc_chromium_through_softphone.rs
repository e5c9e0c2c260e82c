//! A real browser's audio through a G.711 softphone, both ways: headless Chromium as the
//! customer's app (`tests/browser/webrtc_app.html`, voice only) calls from its chat, and the
//! agent takes the call on a SIPp softphone that echoes RTP.
//!
//! - Left to its own choice, Chromium keeps the order of the gateway's offer, which puts PCMU
//!   first for a peer bridged to SIP: its G.711 passes through untouched.
//! - Made to answer with Opus alone, its Opus is decoded to G.711 for the softphone, echoed,
//!   and encoded back to Opus. The offer asks for narrowband Opus (`maxplaybackrate=8000`),
//!   and Chromium sends nothing wider: the gateway counts the band of every Opus packet.
//!
//! Either way the page's statistics show the codec arriving and audio decoded to something
//! audible (Chromium's fake microphone beeps). Silence would mean one of the two directions was
//! not understood.

use crate::agent_desk;
use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use agent_desk::Desk;
use serde_json::{Value, json};
use tandem::routing::password;

const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);
/// Chromium's `totalAudioEnergy` of audio worth hearing (see `webrtc_app.mjs`).
const AUDIBLE: f64 = 0.01;

fn config() -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[registrar]
algorithms = ["MD5"]

[[registrar.accounts]]
user = "alice"
password = "alice-secret"

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

/// What one call through the softphone showed.
struct Heard {
    /// Chromium's statistics once it heard enough.
    browser: Value,
    /// The gateway's count of Opus packets from the browser: narrowband, and wider.
    opus_in: (u64, u64),
}

/// One call from Chromium's app (answering with `codec` alone, or with its own choice when
/// empty) to a softphone that echoes.
async fn echoed_through_a_softphone(codec: &str) -> Heard {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run scripts/test (npm install --prefix tests/browser)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "{chromium} is missing");

    let gateway = common::Gateway::start(&config());
    let port = common::free_port();
    common::register_on(port, gateway.sip, "alice", "alice-secret");
    let answer = common::scenario("softphone_answer_app_call.xml");
    let softphone = common::sipp_spawn_on(
        port,
        gateway.sip,
        &["-sf", answer.to_str().unwrap(), "-rtp_echo", "-m", "1"],
    );
    let softphone = tokio::task::spawn_blocking(move || softphone.wait());

    let http = reqwest::Client::new();
    let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;
    let base = format!("http://{}", gateway.http);
    let browser = tokio::process::Command::new("node")
        .arg(browser_dir.join("webrtc_app.mjs"))
        .args([
            base.as_str(),
            &BROWSER_TIMEOUT.as_millis().to_string(),
            "claims-app",
            "chromium",
            "100",
            "0",
            codec,
        ])
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let browser = tokio::spawn(browser);

    let offer = desk.until(|v| v["event"] == "offer").await;
    let chat = offer["chat_id"].as_str().unwrap().to_string();
    let accepted = desk
        .command(json!({"command": "accept", "chat_id": chat}))
        .await;
    assert_eq!(accepted["event"], "ack", "{accepted}");
    let call = desk
        .command_until_ack(
            json!({"command": "accept_call", "chat_id": chat, "device": "softphone"}),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(call["event"], "ack", "accept_call: {call}");

    let out = browser
        .await
        .expect("the browser task joins")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser run failed\nstdout:\n{stdout}\nstderr:\n{stderr}\ngateway log:\n{}",
        gateway.log_text()
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(
        result["ok"],
        true,
        "{result:#}\ngateway log:\n{}",
        gateway.log_text()
    );
    // The beeps come back at about 0.5 in a couple of seconds; silence, or audio Chromium
    // could not decode, stays below 1e-8.
    assert!(
        result["stats"]["inboundAudioEnergy"]
            .as_f64()
            .unwrap_or(0.0)
            > AUDIBLE,
        "Chromium decoded audible audio: {result:#}"
    );

    // The browser left: the call ended and the softphone answered the BYE.
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
    let opus_in = tokio::task::block_in_place(|| opus_bands(&gateway));
    Heard {
        browser: result,
        opus_in,
    }
}

/// The gateway's count of Opus packets from its peers by band, `(narrow, wide)`, as its
/// metrics show it once the peer is gone (so nothing more is counted).
fn opus_bands(gateway: &common::Gateway) -> (u64, u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = gateway.http_get("/metrics");
        let value = |line: &str| -> Option<u64> {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        };
        let peers = value("tandem_webrtc_peers ");
        let narrow = value("tandem_webrtc_opus_in{band=\"narrow\"} ");
        let wide = value("tandem_webrtc_opus_in{band=\"wide\"} ");
        if let (Some(0), Some(narrow), Some(wide)) = (peers, narrow, wide) {
            return (narrow, wide);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no WebRTC metrics with the peer gone:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The audio codecs Chromium received, as `audio/...` MIME types.
fn inbound_codecs(result: &Value) -> Vec<String> {
    result["stats"]["inboundCodecs"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| c.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_takes_g711_on_a_call_bridged_to_a_softphone() {
    let heard = echoed_through_a_softphone("").await;
    let codecs = inbound_codecs(&heard.browser);
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| c == "audio/PCMU"),
        "Chromium followed the offer's order: {:#}",
        heard.browser
    );
    assert_eq!(heard.opus_in, (0, 0), "no Opus was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_hears_its_opus_echoed_through_a_g711_softphone() {
    let heard = echoed_through_a_softphone("opus").await;
    assert!(
        inbound_codecs(&heard.browser)
            .iter()
            .any(|c| c == "audio/opus"),
        "Chromium received Opus: {:#}",
        heard.browser
    );
    // Asked for narrowband, Chromium sends nothing wider, from the first packet on.
    let (narrow, wide) = heard.opus_in;
    assert!(
        narrow > 50 && wide == 0,
        "Opus packets from Chromium: {narrow} narrowband, {wide} wider"
    );
}

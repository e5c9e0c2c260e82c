//! SIP over WebSocket (RFC 7118) with a browser softphone: JsSIP (npm) in headless Chromium
//! registers as the agent `alice` over `wss` (the gateway's certificate comes from PEM files
//! the test made), gets a trunk call bridged to her, answers it, and audio flows both ways:
//! the browser's `getStats()` counts RTP in and out, and so do the gateway's media legs.
//!
//! The browser only speaks WebRTC media; the INVITE it gets must carry a DTLS-SRTP offer, and
//! its answer is bridged to the trunk's plain RTP. When the trunk hangs up, the browser gets
//! the BYE and no WebRTC peer is left.
//!
//! Driven by `tests/browser/jssip_agent.mjs`; missing Chromium, Node or the npm packages fail
//! the test (`scripts/test` installs them).

use crate::certs;
use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// JsSIP in Chromium, reporting what happens as JSON lines.
struct Browser {
    child: Child,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Browser {
    fn start(wss: &str, uri: &str, password: &str) -> Browser {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        for package in ["playwright-core", "jssip"] {
            assert!(
                dir.join("node_modules").join(package).is_dir(),
                "{package} is missing: run scripts/test (npm install --prefix tests/browser)"
            );
        }
        let mut child = Command::new("node")
            .arg(dir.join("jssip_agent.mjs"))
            .args([wss, uri, password, "120"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line)
                    && tx.send(event).is_err()
                {
                    return;
                }
            }
        });
        Browser {
            child,
            events,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for an event that satisfies `wanted`; every event seen is kept.
    fn until(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        if let Some(found) = self.seen.iter().find(|e| wanted(e)) {
            return found.clone();
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    self.seen.push(event.clone());
                    if wanted(&event) {
                        return event;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "the browser never reported {what}; it reported {:#?}",
            self.seen
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn jssip_in_chromium_registers_over_wss_and_answers_a_trunk_call_with_audio_both_ways() {
    let pki = tempfile::tempdir().unwrap();
    let ca = certs::TestCa::new(pki.path(), "tandem-test-ca");
    let leaf = ca.leaf(pki.path(), "gateway", &["127.0.0.1"]);
    let ws_port = common::free_port();
    // JsSIP answers digest challenges with MD5 only: its account says so, others keep SHA-256.
    let gateway = common::Gateway::start(&format!(
        "{}[sip.websocket]\nlisten = \"127.0.0.1:{ws_port}\"\nsecure = true\n\
         [[sip.trunks]]\nname = \"carrier\"\naddresses = [\"127.0.0.1\"]\n\
         [[registrar.accounts]]\nuser = \"alice\"\npassword = \"alice-secret\"\n\
         algorithms = [\"MD5\"]\n",
        certs::sip_tls_section(common::free_port(), &leaf, &ca.pem)
    ));
    let mut browser = Browser::start(
        &format!("wss://127.0.0.1:{ws_port}"),
        "sip:alice@127.0.0.1",
        "alice-secret",
    );
    browser.until("its registration", |e| {
        assert_ne!(e["event"], "registration_failed", "{e}");
        e["event"] == "registered"
    });
    let log = gateway.log_text();
    let registered = log
        .lines()
        .find(|l| l.contains("registered user=alice"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(registered.contains("transport=\"WSS\""), "{registered}");
    // The start says where browsers connect.
    assert!(
        log.lines()
            .any(|l| l.contains("SIP: ") && l.contains(&format!("wss 127.0.0.1:{ws_port}"))),
        "{log}"
    );

    // The trunk (SIPp over UDP, playing a recording) calls alice; the browser answers.
    let dir = common::pcap_dir();
    let trunk = std::thread::spawn({
        let (sip, cwd) = (gateway.sip, dir.path().to_path_buf());
        move || common::sipp_in(&cwd, sip, &["-sn", "uac_pcap", "-s", "alice", "-m", "1"])
    });
    let incoming = browser.until("the INVITE", |e| e["event"] == "incoming");
    let offer = incoming["sdp"].as_str().unwrap();
    assert!(
        offer.contains("UDP/TLS/RTP/SAVPF") && offer.contains("a=fingerprint:"),
        "the browser must be offered DTLS-SRTP: {offer}"
    );
    browser.until("the call confirmed", |e| {
        assert_ne!(
            e["event"],
            "failed",
            "{e}\ngateway:\n{}",
            gateway.log_text()
        );
        e["event"] == "confirmed"
    });
    // The recording plays for about nine seconds: the browser hears it and talks back.
    let stats = browser.until("audio both ways", |e| {
        e["event"] == "stats"
            && e["received"].as_u64() > Some(100)
            && e["sent"].as_u64() > Some(100)
    });
    let trunk = trunk.join().unwrap();
    assert_eq!(
        (trunk.exit_code, trunk.successful, trunk.failed),
        (0, 1, 0),
        "{trunk:?}\ngateway:\n{}",
        gateway.log_text()
    );
    // The trunk's BYE reaches the browser.
    browser.until("the end of the call", |e| e["event"] == "ended");

    // Both SIP media legs carried audio both ways, and the WebRTC peer is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.closed_legs().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let legs = gateway.closed_legs();
    assert_eq!(legs.len(), 2, "{stats}\n{}", gateway.log_text());
    for (inbound, outbound) in legs {
        assert!(
            inbound > 100 && outbound > 100,
            "{inbound} in, {outbound} out"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = gateway.http_get("/metrics");
        if metrics.lines().any(|l| l == "tandem_webrtc_peers 0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a WebRTC peer was left:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

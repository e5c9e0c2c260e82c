//! Click to call with the agent on a phone: the agent calls the customer's phone from the chat
//! and talks on the SIP softphone registered under her name, or on her own mobile; Tandem
//! bridges the two SIP calls in its media engine and records them for a service that records.
//!
//! The phones behind the trunk are one SIPp UAS on the trunk's address
//! (`trunk_phone_plays.xml`): the customer's phone plays SIPp's A-law capture, the agent's
//! mobile stays silent. The softphone is a SIPp UAS that registered as alice and echoes RTP
//! (`softphone_answer_app_call.xml`, PCMU, so the bridge transcodes). Every scenario fails the
//! call unless its INVITE carries the interaction's headers.
//!
//! Proven here: three calls one after the other in one chat, each with audio both ways
//! through the bridge (the engine legs' packet counts, and the recording's two channels), the
//! headers on both INVITEs, `release_call` hanging up both phones, the transcript listing the call and its recording, the recording fetched over the
//! admin API (and names that could escape its directory refused), and nothing left behind in
//! `/metrics`. Every wait is bounded; nothing asserts on time.

use crate::agent_desk as desk;
use crate::common;
use crate::desk_phone::{self, MOBILE, NUMBER};

use std::path::{Path, PathBuf};
use std::time::Duration;

use desk::{Customer, Desk};
use serde_json::{Value, json};

struct Rig {
    gateway: common::Gateway,
    phone_port: u16,
    http: reqwest::Client,
    desk: Desk,
    customer: Customer,
    recordings: tempfile::TempDir,
    logs: tempfile::TempDir,
    pcap: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Rig {
        let phone_port = common::free_port();
        let recordings = tempfile::tempdir().unwrap();
        let gateway = common::Gateway::start(&desk_phone::config_with_agent_phones(
            phone_port,
            recordings.path(),
        ));
        let http = reqwest::Client::new();
        let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;
        let mut customer =
            Customer::open(&http, gateway.http, "claims-app", "phone-to-phone", NUMBER).await;
        desk.accept(&mut customer).await;
        Rig {
            gateway,
            phone_port,
            http,
            desk,
            customer,
            recordings,
            logs: tempfile::tempdir().unwrap(),
            pcap: common::pcap_dir(),
        }
    }

    fn chat(&self) -> String {
        self.customer.chat.clone()
    }

    fn log(&self, name: &str) -> PathBuf {
        self.logs.path().join(name)
    }

    /// The phones behind the trunk, taking `calls` calls.
    fn phones(&self, calls: u32) -> common::Sipp {
        let scenario = common::scenario("trunk_phone_plays.xml");
        let (port, calls, log) = (
            self.phone_port.to_string(),
            calls.to_string(),
            self.log("phones.log"),
        );
        common::sipp_spawn_in_dir(
            self.pcap.path(),
            self.gateway.sip,
            &[
                "-p",
                &port,
                "-sf",
                scenario.to_str().unwrap(),
                "-m",
                &calls,
                "-trace_logs",
                "-log_file",
                log.to_str().unwrap(),
            ],
        )
    }

    /// Alice's softphone: registered, then answering `calls` calls with RTP echo.
    fn softphone(&self, calls: u32) -> common::Sipp {
        let calls = calls.to_string();
        let port = common::free_port();
        common::register_on(port, self.gateway.sip, "alice", "alice-secret");
        let scenario = common::scenario("softphone_answer_app_call.xml");
        let log = self.log("softphone.log");
        common::sipp_spawn_on(
            port,
            self.gateway.sip,
            &[
                "-sf",
                scenario.to_str().unwrap(),
                "-rtp_echo",
                "-m",
                &calls,
                "-trace_logs",
                "-log_file",
                log.to_str().unwrap(),
            ],
        )
    }

    /// The chat's `nth` call, with the agent on `device`; waits until the call is up and the
    /// customer's phone has played its four seconds for the `nth` time.
    async fn call_on(&mut self, device: &str, nth: usize) {
        let chat = self.chat();
        let called = self
            .desk
            .command(json!({"command": "call_customer", "chat_id": chat, "device": device}))
            .await;
        assert_eq!(called["event"], "ack", "call_customer: {called}");
        let state = self
            .desk
            .until(|v| {
                v["event"] == "call_state"
                    && v["chat_id"] == chat.as_str()
                    && (v["state"] == "up" || v["state"] == "released")
            })
            .await;
        assert_eq!(
            state["state"],
            "up",
            "{state}\ngateway log:\n{}",
            self.gateway.log_text()
        );
        let played = self.log("phones.log");
        let mut done = false;
        for _ in 0..200 {
            let text = std::fs::read_to_string(&played).unwrap_or_default();
            if text.matches(&format!("number={NUMBER} played")).count() >= nth {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            done,
            "the customer's phone played\n{}",
            self.gateway.log_text()
        );
    }

    /// `release_call`; the agent's `call_state` saying the call ended.
    async fn release(&mut self) -> Value {
        let chat = self.chat();
        let released = self
            .desk
            .command(json!({"command": "release_call", "chat_id": chat}))
            .await;
        assert_eq!(released["event"], "ack", "release_call: {released}");
        self.desk.call_state(&chat, "released").await
    }

    /// The interaction's events as operators see them; retried until `pred` holds, since
    /// the store may write the last events a moment after the agent hears of them.
    async fn admin_transcript(&self, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let url = format!(
            "http://{}/admin/v1/interactions/{}/transcript",
            self.gateway.http,
            self.chat()
        );
        let mut events = Vec::new();
        for _ in 0..50 {
            let body: Value = self
                .http
                .get(&url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            events = body["events"].as_array().cloned().unwrap_or_default();
            if pred(&events) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the transcript never got there: {events:#?}");
    }

    fn nothing_left(&self) {
        tokio::task::block_in_place(|| {
            for line in [
                "tandem_sip_calls 0",
                "tandem_media_legs 0",
                "tandem_app_calls 0",
            ] {
                self.gateway.wait_for_metric(line);
            }
        });
    }
}

/// The SIPp log lines naming an INVITE: each must name `chat` in both headers.
fn invites_logged(log: &Path, chat: &str) -> Vec<String> {
    let logged = std::fs::read_to_string(log).unwrap_or_default();
    let expected = format!(
        "X-Interaction-Id={chat} User-to-User={}",
        hex::encode(chat.as_bytes())
    );
    let invites: Vec<String> = logged
        .lines()
        .filter(|l| l.contains("X-Interaction-Id="))
        .map(str::to_string)
        .collect();
    assert!(
        invites.iter().all(|l| l.ends_with(&expected)),
        "every INVITE names chat {chat}: {logged:?}"
    );
    invites
}

/// Whether both channels of a WAV carry audio: samples louder than a whisper on each.
fn loud_channels(path: &Path) -> (usize, usize) {
    let mut wav = hound::WavReader::open(path).unwrap();
    let spec = wav.spec();
    assert_eq!((spec.channels, spec.sample_rate), (2, 8000), "{spec:?}");
    let samples: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
    let loud = |channel: usize| {
        samples
            .iter()
            .skip(channel)
            .step_by(2)
            .filter(|s| s.unsigned_abs() > 500)
            .count()
    };
    (loud(0), loud(1))
}

async fn sipp_result(sipp: common::Sipp) -> common::SippStats {
    tokio::time::timeout(
        Duration::from_secs(90),
        tokio::task::spawn_blocking(move || sipp.wait()),
    )
    .await
    .expect("SIPp ends within its own timeout")
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customers_phone_and_the_agents_softphone_talk_through_tandem_and_are_recorded() {
    let mut rig = Rig::start().await;
    let chat = rig.chat();
    let softphone = rig.softphone(3);
    let phones = rig.phones(3);
    // Three calls in one chat, one after the other; the first one's end is checked below.
    rig.call_on("softphone", 1).await;
    let ended = rig.release().await;
    for nth in 2..=3 {
        rig.call_on("softphone", nth).await;
        let again = rig.release().await;
        assert_eq!(again["recording"], format!("{chat}-{nth}.wav"), "{again}");
    }

    // release_call hung up both phones each time; each saw three calls with the interaction's
    // headers.
    let (phones, softphone) = (sipp_result(phones).await, sipp_result(softphone).await);
    for (who, stats) in [("phone", &phones), ("softphone", &softphone)] {
        assert_eq!(
            (stats.exit_code, stats.successful, stats.failed),
            (0, 3, 0),
            "{who}: {stats:?}\ngateway log:\n{}",
            rig.gateway.log_text()
        );
    }
    assert_eq!(invites_logged(&rig.log("phones.log"), &chat).len(), 3);
    assert_eq!(invites_logged(&rig.log("softphone.log"), &chat).len(), 3);
    rig.nothing_left();

    // Audio went both ways through the bridge: the phone's leg took its audio in and sent the
    // softphone's echo out, and the softphone's leg the other way round.
    let talking: Vec<_> = rig
        .gateway
        .closed_legs()
        .into_iter()
        .filter(|(inbound, outbound)| *inbound > 100 && *outbound > 100)
        .collect();
    assert_eq!(talking.len(), 6, "{}", rig.gateway.log_text());

    // The call is recorded, customer left and agent right, and the agent was told where.
    let file = format!("{chat}-1.wav");
    assert_eq!(ended["recording"], file.as_str(), "{ended}");
    let url = format!("/admin/v1/interactions/{chat}/recordings/{file}");
    assert_eq!(ended["recording_url"], url.as_str(), "{ended}");
    let path = rig.recordings.path().join(&file);
    let (left, right) = loud_channels(&path);
    assert!(
        left > 8000 && right > 8000,
        "{left} and {right} loud samples"
    );

    // The transcript lists the call to the phone and its recording before its end.
    let events = rig
        .admin_transcript(|events| events.iter().any(|e| e["event"] == "recording"))
        .await;
    let at = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred);
    let placed = at(&|e| {
        e["event"] == "leg" && e["state"] == "connecting" && e["target"]["number"] == NUMBER
    });
    let up = at(&|e| e["event"] == "leg" && e["state"] == "up");
    let recorded = at(&|e| e["event"] == "recording" && e["file"] == file.as_str());
    let released = at(&|e| e["event"] == "leg" && e["state"] == "released");
    assert!(
        placed < up && up < recorded && recorded < released && placed.is_some(),
        "{events:#?}"
    );

    // Operators fetch it; names that are not a plain file name of this call are refused.
    let fetched = rig
        .http
        .get(format!("http://{}{url}", rig.gateway.http))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    let bytes = fetched.bytes().await.unwrap();
    assert_eq!(bytes.as_ref(), std::fs::read(&path).unwrap().as_slice());
    for (name, status, code) in [
        ("..%2Ftandem.toml", 400, "bad_recording_name"),
        (
            "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd.wav",
            400,
            "bad_recording_name",
        ),
        (".hidden.wav", 400, "bad_recording_name"),
        ("other-1.wav", 404, "recording_not_found"),
    ] {
        let refused = rig
            .http
            .get(format!(
                "http://{}/admin/v1/interactions/{chat}/recordings/{name}",
                rig.gateway.http
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), status, "{name}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{name}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_takes_the_call_on_her_own_mobile_through_the_trunk() {
    let mut rig = Rig::start().await;
    let chat = rig.chat();
    let phones = rig.phones(2);
    rig.call_on("mobile", 1).await;
    rig.release().await;

    let phones = sipp_result(phones).await;
    assert_eq!(
        (phones.exit_code, phones.successful, phones.failed),
        (0, 2, 0),
        "{phones:?}\ngateway log:\n{}",
        rig.gateway.log_text()
    );
    // One INVITE to the customer's number and one to alice's mobile, both naming the chat.
    let invites = invites_logged(&rig.log("phones.log"), &chat);
    let numbers: std::collections::BTreeSet<_> = invites
        .iter()
        .filter_map(|l| l.split("number=").nth(1)?.split(' ').next())
        .collect();
    assert_eq!(
        numbers,
        [NUMBER, MOBILE].into_iter().collect(),
        "{invites:?}"
    );
    rig.nothing_left();

    // The customer's audio reached the mobile through the bridge.
    let legs = rig.gateway.closed_legs();
    assert!(
        legs.iter().any(|(inbound, _)| *inbound > 100) && legs.iter().any(|(_, out)| *out > 100),
        "{legs:?}"
    );
    let path = rig.recordings.path().join(format!("{chat}-1.wav"));
    let (left, _) = loud_channels(&path);
    assert!(left > 8000, "{left} loud samples of the customer");
}

//! The click-to-call rig over real sockets: the gateway binary with the `claims` service
//! dialling through a trunk whose next hop is SIPp as the customer's phone, the agent's desk
//! and the customer's chat (`agent_desk.rs`), and the agent's browser as a webrtc-rs peer.
//!
//! [`Rig::start`] gets as far as a chat the agent accepted; [`Rig::phone`] starts the phone;
//! [`Rig::call_and_talk`] places a call and waits until the agent hears the phone's echo;
//! [`Rig::nothing_left`] waits until the gateway holds no call, leg, peer or port.
#![allow(dead_code)] // each test file uses a part of it

pub(crate) use crate::agent_desk;
pub(crate) use crate::webrtc_client as webrtc;

use std::path::Path;
use std::time::Duration;

use agent_desk::{Customer, Desk, EVENT_TIMEOUT};
use serde_json::{Value, json};
use tandem::routing::password;
use webrtc::{AudioCodec, ClientOptions, WebRtcClient};

use crate::common;

/// The chat's phone number, which SIPp checks in the request URI.
pub const NUMBER: &str = "+15550123";
/// Echoed audio packets the agent must receive per call: three seconds at 50 packets a second.
pub const ECHOED: u64 = 150;
/// What the agent must hear before the phone that hangs up by itself does so (it echoes for
/// eight seconds from its answer; the agent's peer connects meanwhile): one second's worth.
pub const ECHOED_BEFORE_HANGUP: u64 = 50;

/// The gateway's config: the `claims` service dials through the trunk `carrier`, whose next
/// hop is the phone (SIPp) on `phone_port`, as caller id +15550100.
pub fn config(phone_port: u16) -> String {
    config_with_trunk(phone_port, "")
}

/// As [`config`], with `trunk_lines` (TOML keys) added to the trunk `carrier`.
pub fn config_with_trunk(phone_port: u16, trunk_lines: &str) -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[[sip.trunks]]
name = "carrier"
addresses = ["127.0.0.1:{phone_port}"]
{trunk_lines}

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
routing = "ring_all"
trunk = "carrier"
caller_id = "+15550100"

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

/// The gateway with its trunk pointing at a free port, the agent logged in and the customer's
/// chat accepted by her.
pub struct Rig {
    pub gateway: common::Gateway,
    pub phone_port: u16,
    pub http: reqwest::Client,
    pub desk: Desk,
    pub customer: Customer,
}

impl Rig {
    pub async fn start() -> Rig {
        Rig::start_with("").await
    }

    /// As [`Rig::start`], with `extra` TOML in the gateway's config.
    pub async fn start_with(extra: &str) -> Rig {
        Rig::start_on(common::free_port(), "", extra).await
    }

    /// As [`Rig::start_with`], with the phone on `phone_port` and `trunk_lines` (TOML keys)
    /// added to the trunk.
    pub async fn start_on(phone_port: u16, trunk_lines: &str, extra: &str) -> Rig {
        let gateway = common::Gateway::start(&format!(
            "{}\n{extra}",
            config_with_trunk(phone_port, trunk_lines)
        ));
        let http = reqwest::Client::new();
        let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;
        let mut customer =
            Customer::open(&http, gateway.http, "claims-app", "click-to-call", NUMBER).await;
        desk.accept(&mut customer).await;
        Rig {
            gateway,
            phone_port,
            http,
            desk,
            customer,
        }
    }

    /// Starts SIPp as the customer's phone on the trunk's address with `scenario`, for `calls`
    /// calls; the log actions go to `log`.
    pub fn phone(
        &self,
        scenario: &str,
        calls: u32,
        log: &Path,
    ) -> tokio::task::JoinHandle<common::SippStats> {
        let scenario = common::scenario(scenario);
        let calls = calls.to_string();
        let phone = common::sipp_spawn_on(
            self.phone_port,
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
        );
        tokio::task::spawn_blocking(move || phone.wait())
    }

    pub fn chat(&self) -> String {
        self.customer.chat.clone()
    }

    /// `call_customer` on the chat's number; its answer.
    pub async fn call_customer(&mut self) -> Value {
        let chat = self.chat();
        self.desk
            .command(json!({"command": "call_customer", "chat_id": chat}))
            .await
    }

    /// Answers the gateway's offer for the agent's browser with a new client sending `codec`,
    /// and waits until the client is connected and sending.
    pub async fn answer_on_browser(&mut self, codec: AudioCodec) -> WebRtcClient {
        let chat = self.chat();
        answer_on_browser(&mut self.desk, &self.gateway, &chat, codec).await
    }

    /// Places a call the phone answers: the agent's browser connects, the call is up, and the
    /// agent hears more than `echoed` packets of her own audio back from the phone's echo.
    pub async fn call_and_talk(&mut self, codec: AudioCodec, echoed: u64) -> WebRtcClient {
        let called = self.call_customer().await;
        assert_eq!(called["event"], "ack", "call_customer: {called}");
        let client = self.answer_on_browser(codec).await;
        let chat = self.chat();
        self.desk.call_state(&chat, "up").await;
        let heard = audio_received(&client, echoed).await;
        assert!(
            heard,
            "the agent got {} audio packets back (sent {})\ngateway log:\n{}",
            client.audio_packets_received(),
            client.audio_packets_sent(),
            self.gateway.log_text()
        );
        client
    }

    /// Waits (bounded) until the gateway holds no SIP call or call state, media leg, RTP
    /// port, WebRTC peer or call; the last `/metrics`.
    pub fn nothing_left(&self) -> String {
        nothing_left(&self.gateway)
    }

    /// Waits (bounded) until nothing of a call is left, no SIP transaction either (a BYE's
    /// server transaction lingers for 64·T1), and no more tasks run than `idle` did.
    pub fn idle_again(&self, idle: &Idle) -> String {
        self.nothing_left();
        self.metrics_until(TRANSACTIONS_SETTLE, "idle again", |m| {
            TRANSACTION_GAUGES.iter().all(|g| gauge(m, g) == Some(0))
                && gauge(m, "tandem_tasks").is_some_and(|t| t <= idle.tasks)
                && gauge(m, "tandem_open_interactions") == Some(idle.interactions)
        })
    }

    /// What runs while nothing but the chat is up: the values [`Rig::idle_again`] waits for.
    pub fn idle(&self) -> Idle {
        let metrics = self.nothing_left();
        Idle {
            tasks: gauge(&metrics, "tandem_tasks").expect("tandem_tasks in /metrics"),
            interactions: gauge(&metrics, "tandem_open_interactions")
                .expect("tandem_open_interactions in /metrics"),
        }
    }

    /// Polls `/metrics` until `ok` holds, for at most `within` (see [`metrics_until`]).
    pub fn metrics_until(&self, within: Duration, what: &str, ok: impl Fn(&str) -> bool) -> String {
        metrics_until(&self.gateway, within, what, ok)
    }
}

/// Answers the gateway's offer for the agent's browser on `chat` with a new client sending
/// `codec`, and waits until the client is connected and sending.
pub async fn answer_on_browser(
    desk: &mut Desk,
    gateway: &common::Gateway,
    chat: &str,
    codec: AudioCodec,
) -> WebRtcClient {
    let offer = desk
        .until(|v| {
            v["event"] == "webrtc_signaling"
                && v["chat_id"] == chat
                && v["data"]["type"] == "OFFER_CALL"
        })
        .await;
    assert_eq!(offer["data"]["offerVideo"], false, "{offer}");
    let client = WebRtcClient::new(ClientOptions {
        audio_codec: codec,
        video: false,
    })
    .await;
    let sdp = client.answer(offer["data"]["sdp"].as_str().unwrap()).await;
    let answered = desk
        .command(json!({"command": "webrtc_signaling", "chat_id": chat,
                        "data": {"type": "ANSWER_CALL", "sdp": sdp}}))
        .await;
    assert_eq!(
        answered["event"],
        "ack",
        "{answered}\nagent saw: {:#?}\ngateway log:\n{}",
        desk.log,
        gateway.log_text()
    );
    assert!(
        client.wait_connected(EVENT_TIMEOUT).await,
        "the agent's peer connects\n{}",
        gateway.log_text()
    );
    client.start_sending_audio().await;
    client
}

/// Waits (bounded) until `gateway` holds no SIP call or call state, media leg, RTP port,
/// WebRTC peer or call; the last `/metrics`.
pub fn nothing_left(gateway: &common::Gateway) -> String {
    metrics_until(gateway, SETTLE, "no call left", |m| {
        CALL_GAUGES.iter().all(|g| gauge(m, g) == Some(0))
    })
}

/// Polls `/metrics` until `ok` holds, for at most `within`; the last text. Fails naming
/// `what`, with the metrics and the gateway's log.
pub fn metrics_until(
    gateway: &common::Gateway,
    within: Duration,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    tokio::task::block_in_place(|| {
        let deadline = std::time::Instant::now() + within;
        loop {
            let metrics = gateway.http_get("/metrics");
            if ok(&metrics) {
                return metrics;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "/metrics never showed {what}:\n{metrics}\ngateway log:\n{}",
                    gateway.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

/// The gauges of resources a call holds, all zero when no call is up.
pub const CALL_GAUGES: &[&str] = &[
    "tandem_sip_calls",
    "tandem_sip_app_calls",
    r#"tandem_sip_pending{kind="invites"}"#,
    r#"tandem_sip_pending{kind="outgoing"}"#,
    r#"tandem_sip_pending{kind="bridges"}"#,
    "tandem_media_legs",
    "tandem_rtp_ports",
    "tandem_webrtc_peers",
    "tandem_app_calls",
];

/// SIP transactions, both sides.
pub const TRANSACTION_GAUGES: &[&str] = &[
    r#"tandem_sip_transactions{side="server"}"#,
    r#"tandem_sip_transactions{side="client"}"#,
];

/// A guard against a release that never comes (the SIP side publishes once a second).
pub const SETTLE: Duration = Duration::from_secs(20);
/// As [`SETTLE`], past the 32 s a completed non-INVITE server transaction is kept.
pub const TRANSACTIONS_SETTLE: Duration = Duration::from_secs(60);

/// The values of an idle gateway that a fault must not leave raised.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    pub tasks: i64,
    pub interactions: i64,
}

/// The value of the gauge `name` (with its labels, as written) in a `/metrics` text.
pub fn gauge(metrics: &str, name: &str) -> Option<i64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Waits (bounded) until `client` has received more than `count` audio packets.
pub async fn audio_received(client: &WebRtcClient, count: u64) -> bool {
    for _ in 0..300 {
        if client.audio_packets_received() > count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// SIPp's result, within its own timeout.
pub async fn phone_result(phone: tokio::task::JoinHandle<common::SippStats>) -> common::SippStats {
    tokio::time::timeout(Duration::from_secs(90), phone)
        .await
        .expect("SIPp ends within its own timeout")
        .unwrap()
}

/// The lines SIPp's log actions wrote for the INVITEs: one per call, naming `chat`.
pub fn invites_logged(log: &Path, chat: &str) -> usize {
    let logged = std::fs::read_to_string(log).unwrap_or_default();
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
        "every INVITE names chat {chat}: {logged:?}"
    );
    invites.len()
}

//! An app call between a customer and an agent, every part over real loopback sockets: the
//! gateway binary, the agent's desk on `/agent/v1/ws`, the customer's app on the customer API's
//! `chats/{id}/ws`, and a webrtc-rs peer on each side for the media (the app's, and the agent
//! browser's own leg).
//!
//! [`Session::open`] gets as far as an active chat; [`Session::start_call`] asks for a call (and
//! video), has the agent take it and answers the gateway's offers on both sides until the legs
//! are up. [`Session::pump_until`] keeps answering offers (renegotiations) while a test waits for
//! packets or events. Every wait is bounded; a step that does not happen fails the test with the
//! events seen and the gateway's log.
#![allow(dead_code)] // each test file uses a part of the session

pub(crate) use crate::agent_desk;
pub(crate) use crate::webrtc_client as webrtc;

use std::time::Duration;

use serde_json::{Value, json};
use tandem::routing::password;

use crate::common::Gateway;
pub use agent_desk::{Customer, Desk};
pub use webrtc::{AudioCodec, ClientOptions, WebRtcClient};

/// How long one step (an event, an answer, a connection) may take: a guard against hanging.
pub const STEP: Duration = agent_desk::EVENT_TIMEOUT;
/// Packets each side must receive of the other's media: over a second of audio.
pub const ENOUGH_PACKETS: u64 = 50;

pub const DEVICE: &str = "app-1";

/// One video-capable service and one agent, plus `extra` TOML.
pub fn config(extra: &str) -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
routing = "ring_all"
video_allowed = true

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "{hash}"
departments = ["claims"]
{extra}
"#
    )
}

pub fn auth() -> String {
    agent_desk::auth("claims-app", DEVICE)
}

/// The signalling payload of an event from either socket (`data` of `webrtc_signaling` or
/// `chat_session_signaling`).
pub fn signal(event: &Value) -> Option<&Value> {
    match event["event"].as_str()? {
        "webrtc_signaling" | "chat_session_signaling" => event.get("data"),
        _ => None,
    }
}

pub fn signal_type(event: &Value) -> Option<&str> {
    signal(event)?.get("type")?.as_str()
}

pub fn is_offer(event: &Value) -> bool {
    signal_type(event) == Some("OFFER_CALL")
}

/// An agent `call_state` event of `kind` (voice, video) in `state`.
pub fn call_state(event: &Value, kind: &str, state: &str) -> bool {
    event["event"] == "call_state" && event["kind"] == kind && event["state"] == state
}

/// A change to an SDP offer.
pub type Rewrite = Box<dyn Fn(&str) -> String + Send>;

/// A chat with an agent, a customer and a webrtc-rs peer for each, over one gateway.
pub struct Session {
    pub gateway: Gateway,
    pub http: reqwest::Client,
    pub base: String,
    pub desk: Desk,
    pub app: Customer,
    pub chat: String,
    pub customer: WebRtcClient,
    pub agent: WebRtcClient,
    /// Offers the customer's peer answered, and the agent's.
    pub customer_offers: Vec<Value>,
    pub agent_offers: Vec<Value>,
    /// Applied to the gateway's offers before the customer's peer sees them.
    pub rewrite_customer_offer: Option<Rewrite>,
}

impl Session {
    /// Starts a gateway with `extra` config, logs the agent in, opens the customer's chat and
    /// has the agent accept it.
    pub async fn open(extra: &str) -> Session {
        let gateway = Gateway::start(&config(extra));
        let base = format!("http://{}", gateway.http);
        let http = reqwest::Client::new();

        let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;
        let mut app = Customer::open_with(
            &http,
            gateway.http,
            "claims-app",
            DEVICE,
            json!({"phone_number": "+15550100", "from": "Carol",
                   "parameters": {"policy": "P-1"}}),
        )
        .await;
        let chat = app.chat.clone();

        let offer = desk.until_keeping(|v| v["event"] == "offer").await;
        assert_eq!(offer["chat_id"], chat.as_str());
        let accepted = desk
            .command(json!({"command": "accept", "chat_id": chat}))
            .await;
        assert_eq!(accepted["event"], "ack", "{accepted}");
        app.until_keeping(|v| v["event"] == "chat_session_status" && v["state"] == "connected")
            .await;

        let options = ClientOptions {
            audio_codec: AudioCodec::Opus,
            video: true,
        };
        Session {
            gateway,
            http,
            base,
            desk,
            app,
            chat,
            customer: WebRtcClient::new(options).await,
            agent: WebRtcClient::new(options).await,
            customer_offers: Vec::new(),
            agent_offers: Vec::new(),
            rewrite_customer_offer: None,
        }
    }

    /// A `chat_session_signaling` event from the customer; the ack or error.
    pub async fn customer_signal(&mut self, data: Value) -> Value {
        self.app
            .command(json!({"events": [{"event": "chat_session_signaling", "data": data}]}))
            .await
    }

    /// An agent command on this chat; the ack or error.
    pub async fn agent_command(&mut self, command: &str) -> Value {
        self.desk
            .command(json!({"command": command, "chat_id": self.chat}))
            .await
    }

    /// The customer asks for a call (with video if `video`); the agent is told.
    pub async fn request_call(&mut self, video: bool) {
        let ack = self
            .customer_signal(json!({"type": "REQUEST_CALL", "offerVideo": video}))
            .await;
        assert_eq!(ack["event"], "ack", "REQUEST_CALL: {ack}");
        self.desk
            .until_keeping(|v| call_state(v, "voice", "awaiting_approval"))
            .await;
        if video {
            self.desk
                .until_keeping(|v| call_state(v, "video", "awaiting_approval"))
                .await;
        }
    }

    /// The customer asks, the agent accepts (and allows video if `video`), both peers answer
    /// until the legs are up and both peers are connected.
    pub async fn start_call(&mut self, video: bool) {
        self.request_call(video).await;
        let ack = self.agent_command("accept_call").await;
        assert_eq!(ack["event"], "ack", "accept_call: {ack}");
        if video {
            let ack = self.agent_command("allow_video").await;
            assert_eq!(ack["event"], "ack", "allow_video: {ack}");
        }
        self.pump_until("the voice leg up", |s| {
            s.desk.saw(|v| call_state(v, "voice", "up"))
        })
        .await;
        if video {
            self.pump_until("the video leg up, and video offered to both", |s| {
                s.desk.saw(|v| call_state(v, "video", "up"))
                    && s.customer_offers.iter().any(|o| o["offerVideo"] == true)
                    && s.agent_offers.iter().any(|o| o["offerVideo"] == true)
            })
            .await;
        }
        assert!(
            self.customer.wait_connected(STEP).await,
            "the customer's peer connects"
        );
        assert!(
            self.agent.wait_connected(STEP).await,
            "the agent's peer connects"
        );
    }

    /// Both peers send audio (and video once it was negotiated).
    pub async fn start_media(&self, video: bool) {
        self.customer.start_sending_audio().await;
        self.agent.start_sending_audio().await;
        if video {
            self.customer.start_sending_video().await;
            self.agent.start_sending_video().await;
        }
    }

    /// Answers every offer to either peer until `done` holds; fails after [`STEP`].
    pub async fn pump_until(&mut self, what: &str, done: impl Fn(&Session) -> bool) {
        let deadline = tokio::time::Instant::now() + STEP;
        while !done(self) {
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "never: {what}\n{}\ncustomer {:?} (audio in {}, video in {}), agent {:?} \
                     (audio in {}, video in {})\ngateway log:\n{}",
                    self.seen(),
                    self.customer.connection_state(),
                    self.customer.audio_packets_received(),
                    self.customer.video_packets_received(),
                    self.agent.connection_state(),
                    self.agent.audio_packets_received(),
                    self.agent.video_packets_received(),
                    self.gateway.log_text()
                );
            }
            self.pump().await;
        }
    }

    /// Answers the offers already received, then waits a little for more events.
    pub async fn pump(&mut self) {
        while let Some(offer) = self.desk.take(is_offer) {
            self.answer_agent(offer).await;
        }
        while let Some(offer) = self.app.take(is_offer) {
            self.answer_customer(offer).await;
        }
        let within = Duration::from_millis(100);
        let (from_desk, event) = tokio::select! {
            event = self.desk.frame(within) => (true, event),
            event = self.app.frame(within) => (false, event),
        };
        if let Some(event) = event {
            if from_desk {
                self.desk.pending.push_back(event);
            } else {
                self.app.pending.push_back(event);
            }
        }
    }

    async fn answer_agent(&mut self, offer: Value) {
        let data = signal(&offer).expect("an offer").clone();
        let sdp = data["sdp"].as_str().expect("an SDP offer");
        let answer = self.agent.answer(sdp).await;
        self.agent_offers.push(data);
        let reply = self
            .desk
            .command(json!({"command": "webrtc_signaling", "chat_id": self.chat,
                         "data": {"type": "ANSWER_CALL", "sdp": answer}}))
            .await;
        assert_eq!(reply["event"], "ack", "the agent's answer: {reply}");
    }

    async fn answer_customer(&mut self, offer: Value) {
        let data = signal(&offer).expect("an offer").clone();
        let mut sdp = data["sdp"].as_str().expect("an SDP offer").to_string();
        if let Some(rewrite) = &self.rewrite_customer_offer {
            sdp = rewrite(&sdp);
        }
        let answer = self.customer.answer(&sdp).await;
        self.customer_offers.push(data);
        let reply = self
            .customer_signal(json!({"type": "ANSWER_CALL", "sdp": answer}))
            .await;
        assert_eq!(reply["event"], "ack", "the customer's answer: {reply}");
    }

    /// Until both peers have received more than `n` audio packets of the other.
    pub async fn until_audio_both_ways(&mut self, n: u64) {
        self.pump_until(&format!("over {n} audio packets each way"), |s| {
            s.customer.audio_packets_received() > n && s.agent.audio_packets_received() > n
        })
        .await;
    }

    /// A chat message from the customer; the ack.
    pub async fn customer_says(&mut self, msg_id: &str, text: &str) -> Value {
        self.app
            .command(
                json!({"events": [{"event": "chat_session_message", "msg_id": msg_id,
                                      "msg": text}]}),
            )
            .await
    }

    /// `GET chats/{id}/history` as the customer: its events.
    pub async fn history(&self) -> Vec<Value> {
        let body: Value = self
            .http
            .get(format!(
                "{}/clientweb/api/v1/chats/{}/history",
                self.base, self.chat
            ))
            .header("authorization", auth())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["events"]
            .as_array()
            .unwrap_or_else(|| panic!("history: {body}"))
            .clone()
    }

    /// The chat's transcript as text, from the admin API.
    pub async fn transcript(&self) -> String {
        self.http
            .get(format!(
                "{}/admin/v1/interactions/{}/transcript?format=text",
                self.base, self.chat
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// What both sockets saw, for failure messages.
    pub fn seen(&self) -> String {
        let lines = |log: &[Value]| {
            log.iter()
                .map(|v| {
                    let mut v = v.clone();
                    // SDP bodies drown everything else.
                    if let Some(data) = v.get_mut("data").and_then(Value::as_object_mut)
                        && data.contains_key("sdp")
                    {
                        data.insert("sdp".into(), json!("…"));
                    }
                    format!("  {v}")
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        format!(
            "agent's desk saw:\n{}\ncustomer's app saw:\n{}",
            lines(&self.desk.log),
            lines(&self.app.log)
        )
    }
}

//! The customer's app with its own WebRTC peer (webrtc-rs) for the desk's voice and video
//! journeys. A background task owns the app's chat socket and answers every offer the gateway
//! makes the app (the first one and each renegotiation), sending audio (and video while it is
//! negotiated), while the test asks for calls or drops video through [`AppPeer`].
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::desk::{AudioCodec, ClientOptions, Customer, WebRtcClient, is_offer, signal};

enum Ask {
    /// A `chat_session_signaling` from the app; answered with its ack.
    Signal(Value, oneshot::Sender<Value>),
    /// The app drops video: stops sending it and answers the next offer without it.
    DropVideo(oneshot::Sender<Value>),
    /// Any client events; answered with the ack.
    Send(Value, oneshot::Sender<Value>),
}

pub struct AppPeer {
    asks: mpsc::UnboundedSender<Ask>,
    pub client: Arc<WebRtcClient>,
    task: tokio::task::JoinHandle<Customer>,
}

impl AppPeer {
    /// Takes over the app's socket; the peer answers offers from now on.
    pub async fn start(customer: Customer) -> AppPeer {
        let client = Arc::new(
            WebRtcClient::new(ClientOptions {
                audio_codec: AudioCodec::Opus,
                video: true,
            })
            .await,
        );
        let (asks, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(customer, client.clone(), rx));
        AppPeer { asks, client, task }
    }

    pub async fn signal(&self, data: Value) -> Value {
        let (tx, rx) = oneshot::channel();
        self.asks.send(Ask::Signal(data, tx)).unwrap();
        rx.await.unwrap()
    }

    pub async fn drop_video(&self) -> Value {
        let (tx, rx) = oneshot::channel();
        self.asks.send(Ask::DropVideo(tx)).unwrap();
        rx.await.unwrap()
    }

    pub async fn send(&self, events: Value) -> Value {
        let (tx, rx) = oneshot::channel();
        self.asks.send(Ask::Send(events, tx)).unwrap();
        rx.await.unwrap()
    }

    /// Waits (bounded) until `ok` holds of the client.
    pub async fn until(&self, what: &str, ok: impl Fn(&WebRtcClient) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !ok(&self.client) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the app's peer never: {what} (audio in {}, video in {})",
                self.client.audio_packets_received(),
                self.client.video_packets_received()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the task; the app's socket back.
    pub async fn stop(self) -> Customer {
        drop(self.asks);
        self.task.await.unwrap()
    }
}

async fn run(
    mut app: Customer,
    client: Arc<WebRtcClient>,
    mut asks: mpsc::UnboundedReceiver<Ask>,
) -> Customer {
    let (mut sending_audio, mut sending_video) = (false, false);
    loop {
        while let Some(offer) = app.take(is_offer) {
            let data = signal(&offer).unwrap().clone();
            let sdp = data["sdp"].as_str().unwrap();
            let answer = client.answer(sdp).await;
            let ack = app
                .command(json!({"events": [{"event": "chat_session_signaling",
                                            "data": {"type": "ANSWER_CALL", "sdp": answer}}]}))
                .await;
            assert_eq!(ack["event"], "ack", "the app's answer: {ack}");
            if client.wait_connected(Duration::from_secs(10)).await {
                if !sending_audio {
                    client.start_sending_audio().await;
                    sending_audio = true;
                }
                let video = sdp.contains("\nm=video ") && !sdp.contains("\nm=video 0 ");
                if video && !sending_video && data["offerVideo"] == true {
                    client.start_sending_video().await;
                    sending_video = true;
                }
            }
        }
        tokio::select! {
            ask = asks.recv() => match ask {
                None => return app,
                Some(Ask::Signal(data, reply)) => {
                    let ack = app.command(json!({"events": [{"event": "chat_session_signaling", "data": data}]})).await;
                    let _ = reply.send(ack);
                }
                Some(Ask::DropVideo(reply)) => {
                    client.drop_video().await;
                    sending_video = false;
                    let ack = app.command(json!({"events": [{"event": "chat_session_signaling", "data": {"type": "END_VIDEO"}}]})).await;
                    let _ = reply.send(ack);
                }
                Some(Ask::Send(events, reply)) => {
                    let ack = app.command(json!({"events": events})).await;
                    let _ = reply.send(ack);
                }
            },
            frame = app.frame(Duration::from_millis(200)) => {
                if let Some(event) = frame {
                    app.pending.push_back(event);
                }
            }
        }
    }
}

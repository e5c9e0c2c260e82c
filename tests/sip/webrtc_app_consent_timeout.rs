//! The customer's app vanishes from the network in the middle of a call: its webrtc-rs peer
//! reaches the gateway through a UDP relay in the test, and the relay stops passing packets
//! either way, so the gateway hears nothing more (no DTLS close, no RTCP BYE, no STUN). With
//! `[rtc] consent_timeout_s = 3` the gateway ends the call for lack of ICE consent: the agent
//! sees the call released with a reason, the agent's peer is closed by the gateway, the app is
//! told on its chat socket, and the chat stays active.
//!
//! webrtc-rs sends a consent check every 2 s, so 3 s is the shortest timeout a live client
//! keeps (at 2 s a healthy call is ended); the test first proves a live call outlasts it.

use crate::desk;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use desk::{ENOUGH_PACKETS, Session, call_state, signal, signal_type};
use tokio::net::UdpSocket;

/// Forwards UDP between one client and `target` until cut; after that, drops everything.
struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        back.connect(target).await.unwrap();
        let addr = front.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let cut_flag = cut.clone();
        let task = tokio::spawn(async move {
            let (mut a, mut b) = ([0u8; 2048], [0u8; 2048]);
            let mut client: Option<SocketAddr> = None;
            loop {
                tokio::select! {
                    got = front.recv_from(&mut a) => {
                        let Ok((n, from)) = got else { continue };
                        client = Some(from);
                        if !cut_flag.load(Ordering::Relaxed) {
                            let _ = back.send(&a[..n]).await;
                        }
                    }
                    got = back.recv(&mut b) => {
                        let Ok(n) = got else { continue };
                        if let Some(client) = client
                            && !cut_flag.load(Ordering::Relaxed)
                        {
                            let _ = front.send_to(&b[..n], client).await;
                        }
                    }
                }
            }
        });
        Relay { addr, cut, task }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_app_loses_its_call_on_consent_timeout_and_keeps_its_chat() {
    let mut s = Session::open("[rtc]\nconsent_timeout_s = 3\n").await;
    let relay = Relay::start(s.gateway.rtc).await;
    let (gateway_port, relay_port) = (
        format!(" {} ", s.gateway.rtc.port()),
        format!(" {} ", relay.addr.port()),
    );
    // The customer's peer sees the relay where the gateway's candidate was.
    s.rewrite_customer_offer = Some(Box::new(move |sdp: &str| {
        sdp.split_inclusive('\n')
            .map(|line| {
                if line.starts_with("a=candidate") || line.starts_with("m=") {
                    line.replace(&gateway_port, &relay_port)
                } else {
                    line.to_string()
                }
            })
            .collect()
    }));
    s.start_call(false).await;
    s.start_media(false).await;
    s.until_audio_both_ways(ENOUGH_PACKETS).await;

    // A live client keeps its consent: over three seconds of audio, longer than the timeout,
    // and the call is still up.
    let audio = s.customer.audio_packets_received();
    s.pump_until("150 more audio packets while connected", |s| {
        s.customer.audio_packets_received() > audio + 150
    })
    .await;
    assert!(
        !s.desk.saw(|v| call_state(v, "voice", "released")),
        "a healthy call was ended:\n{}\ngateway log:\n{}",
        s.seen(),
        s.gateway.log_text()
    );

    // The app drops off the network.
    relay.cut.store(true, Ordering::Relaxed);
    s.pump_until("the agent sees the call released", |s| {
        s.desk.saw(|v| call_state(v, "voice", "released"))
    })
    .await;
    let released = s
        .desk
        .log
        .iter()
        .find(|v| call_state(v, "voice", "released"))
        .cloned()
        .unwrap();
    let reason = released["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("consent"), "{released}");
    s.pump_until("the gateway closes the agent's peer", |s| {
        s.agent.is_closed()
    })
    .await;
    let ended = s
        .app
        .until_keeping(|v| signal_type(v) == Some("END_CALL"))
        .await;
    assert_eq!(
        signal(&ended).unwrap()["reason"],
        reason.as_str(),
        "{ended}"
    );
    assert!(
        s.gateway.log_text().contains("WebRTC peer closed"),
        "the gateway logs why"
    );

    // The chat is still on, both ways.
    let ack = s.customer_says("m-back", "my signal dropped").await;
    assert_eq!(ack["event"], "ack", "{ack}");
    s.desk
        .until_keeping(|v| v["event"] == "message" && v["msg"] == "my signal dropped")
        .await;
    assert!(!s.app.saw(|v| v["event"] == "chat_session_ended"));
    assert!(!s.desk.saw(|v| v["event"] == "ended"));
    let transcript = s.transcript().await;
    assert!(
        transcript.contains(&format!("* call leg-1 ended ({reason}, after ")),
        "{transcript}"
    );
    s.customer.close().await;
    s.agent.close().await;
}

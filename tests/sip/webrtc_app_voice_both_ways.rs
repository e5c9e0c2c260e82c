//! A voice call from the customer's app to the agent's browser, both played by webrtc-rs peers
//! over loopback: the customer asks (`REQUEST_CALL`), the agent accepts, the gateway offers
//! both peers, both answer, and each side receives the other's audio through the gateway. The
//! customer hangs up; both peers are closed and the chat goes on. Afterwards the customer's
//! history has no signalling in it, while the transcript keeps the call's outcome: requested,
//! up, and ended by the customer.

use crate::desk;

use desk::{ENOUGH_PACKETS, Session, call_state};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_flows_both_ways_and_only_the_call_outcome_is_kept() {
    let mut s = Session::open("").await;
    s.start_call(false).await;
    for offer in s.customer_offers.iter().chain(&s.agent_offers) {
        assert_eq!(offer["offerVideo"], false, "a voice call offers no video");
        let sdp = offer["sdp"].as_str().unwrap();
        assert!(sdp.contains("\nm=audio ") && !sdp.contains("\nm=video "));
    }
    s.start_media(false).await;
    s.until_audio_both_ways(ENOUGH_PACKETS).await;
    assert_eq!(
        s.customer
            .audio_codec_received()
            .as_deref()
            .map(str::to_lowercase),
        Some("audio/opus".into())
    );

    // The customer hangs up: the agent sees the call released, and both peers are closed.
    let ack = s.customer_signal(json!({"type": "END_CALL"})).await;
    assert_eq!(ack["event"], "ack", "END_CALL: {ack}");
    s.pump_until("the agent sees the call released", |s| {
        s.desk.saw(|v| call_state(v, "voice", "released"))
    })
    .await;
    s.pump_until("both peers closed by the gateway", |s| {
        s.customer.is_closed() && s.agent.is_closed()
    })
    .await;
    let releasing = s
        .desk
        .log
        .iter()
        .find(|v| call_state(v, "voice", "releasing"))
        .cloned()
        .unwrap_or_else(|| panic!("a releasing state\n{}", s.seen()));
    assert_eq!(releasing["reason"], "ended by the customer", "{releasing}");

    // The chat is still on.
    let ack = s.customer_says("m-after", "still there?").await;
    assert_eq!(ack["event"], "ack", "{ack}");
    let message = s
        .desk
        .until_keeping(|v| v["event"] == "message" && v["msg_id"] == "m-after")
        .await;
    assert_eq!(message["msg"], "still there?");

    // History: the chat, never an offer, an answer or a request.
    let history = s.history().await;
    assert!(
        history
            .iter()
            .any(|e| e["event"] == "chat_session_message" && e["msg"] == "still there?"),
        "{history:#?}"
    );
    let signalling: Vec<&Value> = history
        .iter()
        .filter(|e| e["event"] == "chat_session_signaling")
        .collect();
    assert!(
        signalling.is_empty(),
        "signalling is not history: {signalling:#?}"
    );
    assert!(
        !serde_json::to_string(&history).unwrap().contains("v=0"),
        "no SDP in history"
    );

    // Transcript: the call's outcome, in order, and who ended it.
    let transcript = s.transcript().await;
    let expected = [
        "* call leg-1 requested, awaiting the agent",
        "* call leg-1 up",
        "* call leg-1 releasing (ended by the customer)",
        "* call leg-1 ended",
    ];
    let mut from = 0;
    for line in expected {
        let at = transcript[from..]
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} after offset {from} in:\n{transcript}"));
        from += at + line.len();
    }
    assert!(
        !transcript.contains("OFFER_CALL") && !transcript.contains("v=0"),
        "signalling is not in the transcript:\n{transcript}"
    );
    s.customer.close().await;
    s.agent.close().await;
}

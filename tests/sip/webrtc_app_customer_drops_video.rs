//! Only the customer may drop video alone: during a call with video between two webrtc-rs
//! peers, the agent's `drop_video` is refused with `only_customer_may_drop_video` and changes
//! nothing; the customer's `END_VIDEO` ends the video leg, the gateway renegotiates both peers
//! without video, video stops arriving, and the voice call goes on.

use crate::desk;

use desk::{ENOUGH_PACKETS, Session, call_state, signal_type};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_drops_video_and_keeps_the_call() {
    let mut s = Session::open("").await;
    s.start_call(true).await;
    s.start_media(true).await;
    s.until_audio_both_ways(ENOUGH_PACKETS).await;
    s.pump_until("video both ways", |s| {
        s.customer.video_packets_received() > 10 && s.agent.video_packets_received() > 10
    })
    .await;

    // The agent may not drop the customer's video.
    let refused = s.agent_command("drop_video").await;
    assert_eq!(refused["event"], "error", "{refused}");
    assert_eq!(
        refused["error"]["code"], "only_customer_may_drop_video",
        "{refused}"
    );
    let video = s.customer.video_packets_received();
    s.pump_until("video still flows after the refusal", |s| {
        s.customer.video_packets_received() > video + 10
    })
    .await;
    assert!(!s.desk.saw(|v| call_state(v, "video", "releasing")));

    // The customer drops it.
    let offers_before = (s.customer_offers.len(), s.agent_offers.len());
    s.customer.drop_video().await;
    let ack = s
        .customer_signal(serde_json::json!({"type": "END_VIDEO"}))
        .await;
    assert_eq!(ack["event"], "ack", "END_VIDEO: {ack}");
    s.pump_until(
        "the video leg released and both peers re-offered without video",
        |s| {
            s.desk.saw(|v| call_state(v, "video", "released"))
                && s.customer_offers[offers_before.0..]
                    .iter()
                    .any(|o| o["offerVideo"] == false)
                && s.agent_offers[offers_before.1..]
                    .iter()
                    .any(|o| o["offerVideo"] == false)
        },
    )
    .await;
    let releasing = s
        .desk
        .log
        .iter()
        .find(|v| call_state(v, "video", "releasing"))
        .cloned()
        .unwrap();
    assert_eq!(releasing["reason"], "ended by the customer", "{releasing}");

    // Voice goes on; video has stopped.
    let audio = (
        s.customer.audio_packets_received(),
        s.agent.audio_packets_received(),
    );
    s.pump_until("audio settles after the renegotiation", |s| {
        s.customer.audio_packets_received() > audio.0 + 10
            && s.agent.audio_packets_received() > audio.1 + 10
    })
    .await;
    let video = (
        s.customer.video_packets_received(),
        s.agent.video_packets_received(),
    );
    let audio = (
        s.customer.audio_packets_received(),
        s.agent.audio_packets_received(),
    );
    s.pump_until("audio still grows after the drop", |s| {
        s.customer.audio_packets_received() > audio.0 + ENOUGH_PACKETS
            && s.agent.audio_packets_received() > audio.1 + ENOUGH_PACKETS
    })
    .await;
    assert_eq!(
        (
            s.customer.video_packets_received(),
            s.agent.video_packets_received()
        ),
        video,
        "no video after the drop"
    );
    assert!(
        !s.desk
            .saw(|v| call_state(v, "voice", "releasing") || call_state(v, "voice", "released")),
        "{}",
        s.seen()
    );
    assert!(!s.app.saw(|v| signal_type(v) == Some("END_CALL")));
    let transcript = s.transcript().await;
    assert!(
        transcript.contains("* video leg-2 releasing (ended by the customer)"),
        "{transcript}"
    );
    s.customer.close().await;
    s.agent.close().await;
}

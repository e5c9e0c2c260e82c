//! Video from the customer's app once the agent allows it: the app asks for a call with video,
//! the agent accepts the call and then allows the video, the gateway renegotiates both
//! webrtc-rs peers with a video section, and video flows both ways next to the audio. A
//! keyframe request (RTCP PLI) from either side reaches the other side's sender.

use crate::desk;

use desk::{ENOUGH_PACKETS, Session, call_state};

/// Video packets each side must receive: a few seconds of 15 fps VP8 with keyframes.
const VIDEO_PACKETS: u64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_video_flows_both_ways_and_keyframe_requests_are_relayed() {
    let mut s = Session::open("").await;
    s.start_call(true).await;

    // The first offers are voice alone; video comes with a renegotiation on the same peers.
    for offers in [&s.customer_offers, &s.agent_offers] {
        assert_eq!(offers[0]["offerVideo"], false, "{offers:#?}");
        let last = offers.last().unwrap();
        assert_eq!(last["offerVideo"], true);
        assert!(last["sdp"].as_str().unwrap().contains("\nm=video "));
    }
    assert!(s.desk.saw(|v| call_state(v, "video", "connecting")));

    s.start_media(true).await;
    s.until_audio_both_ways(ENOUGH_PACKETS).await;
    s.pump_until(
        &format!("over {VIDEO_PACKETS} video packets each way"),
        |s| {
            s.customer.video_packets_received() > VIDEO_PACKETS
                && s.agent.video_packets_received() > VIDEO_PACKETS
        },
    )
    .await;
    assert_eq!(
        s.customer
            .video_codec_received()
            .as_deref()
            .map(str::to_lowercase),
        Some("video/vp8".into())
    );

    // The agent asks for a keyframe: the customer's peer is asked too. Then the other way.
    let customer_before = s.customer.pli_received();
    for _ in 0..3 {
        assert!(s.agent.send_pli().await, "the agent has video to ask about");
    }
    s.pump_until("the agent's PLI reaches the customer", |s| {
        s.customer.pli_received() > customer_before
    })
    .await;
    let agent_before = s.agent.pli_received();
    for _ in 0..3 {
        assert!(
            s.customer.send_pli().await,
            "the customer has video to ask about"
        );
    }
    s.pump_until("the customer's PLI reaches the agent", |s| {
        s.agent.pli_received() > agent_before
    })
    .await;

    // Audio went on through the renegotiation.
    let audio = (
        s.customer.audio_packets_received(),
        s.agent.audio_packets_received(),
    );
    s.pump_until("audio still flows with video", |s| {
        s.customer.audio_packets_received() > audio.0 && s.agent.audio_packets_received() > audio.1
    })
    .await;
    s.customer.close().await;
    s.agent.close().await;
}

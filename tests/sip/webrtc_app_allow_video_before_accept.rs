//! An agent who allows the customer's video before accepting the call, end to end: the app asks
//! for a call with video, the agent presses Allow first. The gateway takes that as accepting the
//! call with video: the call is offered to both webrtc-rs peers, then video joins it, and voice
//! and video flow both ways (before, the app got a video-only offer and the call ended "busy").
//! The agent's later Accept finds nothing left to accept.

use crate::desk;

use desk::{ENOUGH_PACKETS, Session, call_state};

/// Video packets each side must receive: a few seconds of 15 fps VP8.
const VIDEO_PACKETS: u64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowing_video_first_accepts_the_call_with_video() {
    let mut s = Session::open("").await;
    s.request_call(true).await;
    let ack = s.agent_command("allow_video").await;
    assert_eq!(ack["event"], "ack", "allow_video: {ack}");

    s.pump_until("voice and video up, video offered to both", |s| {
        s.desk.saw(|v| call_state(v, "voice", "up"))
            && s.desk.saw(|v| call_state(v, "video", "up"))
            && s.customer_offers.iter().any(|o| o["offerVideo"] == true)
            && s.agent_offers.iter().any(|o| o["offerVideo"] == true)
    })
    .await;
    // The call was taken before the video, and nothing ended busy.
    let voice_connecting = s
        .desk
        .log
        .iter()
        .position(|v| call_state(v, "voice", "connecting"))
        .expect("the call connecting");
    let video_connecting = s
        .desk
        .log
        .iter()
        .position(|v| call_state(v, "video", "connecting"))
        .expect("the video connecting");
    assert!(voice_connecting < video_connecting, "{}", s.seen());
    assert!(
        !s.desk.saw(|v| call_state(v, "voice", "released")),
        "{}",
        s.seen()
    );
    // Every offer the app got carried audio: never video alone.
    for offer in &s.customer_offers {
        assert!(
            offer["sdp"].as_str().unwrap().contains("\nm=audio "),
            "{offer}"
        );
    }
    assert!(s.customer.wait_connected(desk::STEP).await);
    assert!(s.agent.wait_connected(desk::STEP).await);

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

    let late = s.agent_command("accept_call").await;
    assert_eq!(late["event"], "error", "{late}");
    assert_eq!(late["error"]["code"], "no_call_request", "{late}");

    let released = s.agent_command("release_call").await;
    assert_eq!(released["event"], "ack", "{released}");
    s.pump_until("the call released", |s| {
        s.desk.saw(|v| call_state(v, "voice", "released"))
    })
    .await;
    s.customer.close().await;
    s.agent.close().await;
}

//! The agent declines the customer's video and takes the call: the app gets `CALL_REJECTED`
//! with reason code `declined` and `video: true`, is never offered video, and the voice call
//! between the two webrtc-rs peers goes on.

use crate::desk;

use desk::{ENOUGH_PACKETS, Session, call_state, signal, signal_type};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_video_is_rejected_and_voice_goes_on() {
    let mut s = Session::open("").await;
    s.request_call(true).await;
    let ack = s.agent_command("decline_video").await;
    assert_eq!(ack["event"], "ack", "decline_video: {ack}");
    let rejected = s
        .app
        .until_keeping(|v| signal_type(v) == Some("CALL_REJECTED"))
        .await;
    let data = signal(&rejected).unwrap();
    assert_eq!(data["reason_code"], "declined", "{rejected}");
    assert_eq!(data["video"], true, "{rejected}");
    let released = s
        .desk
        .until_keeping(|v| call_state(v, "video", "released"))
        .await;
    assert_eq!(released["reason"], "declined", "{released}");

    let ack = s.agent_command("accept_call").await;
    assert_eq!(ack["event"], "ack", "accept_call: {ack}");
    s.pump_until("the voice leg up", |s| {
        s.desk.saw(|v| call_state(v, "voice", "up"))
    })
    .await;
    assert!(s.customer.wait_connected(desk::STEP).await);
    assert!(s.agent.wait_connected(desk::STEP).await);
    s.start_media(false).await;
    s.until_audio_both_ways(ENOUGH_PACKETS).await;

    // Declined stays declined: nobody was offered video, none flowed.
    for offer in s.customer_offers.iter().chain(&s.agent_offers) {
        assert_eq!(offer["offerVideo"], false, "{offer}");
    }
    assert_eq!(s.customer.video_packets_received(), 0);
    assert_eq!(s.agent.video_packets_received(), 0);
    let ack = s.agent_command("allow_video").await;
    assert_eq!(ack["event"], "error", "nothing left to allow: {ack}");
    assert_eq!(ack["error"]["code"], "no_video_request", "{ack}");
    assert!(
        !s.app.saw(|v| signal_type(v) == Some("END_CALL")),
        "the call was not ended:\n{}",
        s.seen()
    );
    s.customer.close().await;
    s.agent.close().await;
}

//! The agent ends the session while a call with video is up between two webrtc-rs peers. The
//! teardown goes in order — the call (with its video), then the chat — and the customer's own
//! event stream shows it: `END_CALL` arrives before `chat_session_ended`. Both peers are
//! closed by the gateway, the transcript lists the legs ending before the chat closes, and the
//! gateway has no interaction open afterwards.

use crate::desk;

use desk::{ENOUGH_PACKETS, Session, call_state, signal_type};
use serde_json::Value;

fn position(log: &[Value], what: &str, pred: impl Fn(&Value) -> bool) -> usize {
    log.iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no {what} in {log:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_the_session_releases_the_call_and_video_before_the_chat() {
    let mut s = Session::open("").await;
    s.start_call(true).await;
    s.start_media(true).await;
    s.until_audio_both_ways(ENOUGH_PACKETS).await;
    s.pump_until("video both ways", |s| {
        s.customer.video_packets_received() > 10 && s.agent.video_packets_received() > 10
    })
    .await;
    let metrics = s.gateway.http_get("/metrics");
    assert!(
        metrics.lines().any(|l| l == "tandem_open_interactions 1"),
        "{metrics}"
    );

    let ack = s.agent_command("end_session").await;
    assert_eq!(ack["event"], "ack", "end_session: {ack}");
    s.app
        .until_keeping(|v| v["event"] == "chat_session_ended")
        .await;
    s.desk.until_keeping(|v| v["event"] == "ended").await;

    // The customer's stream: the call ends, then the chat.
    let app = &s.app.log;
    let end_call = position(app, "END_CALL", |v| signal_type(v) == Some("END_CALL"));
    let chat_ended = position(app, "chat_session_ended", |v| {
        v["event"] == "chat_session_ended"
    });
    assert!(end_call < chat_ended, "END_CALL first:\n{}", s.seen());
    // The agent's: both legs released, then the chat ended.
    let desk = &s.desk.log;
    let voice = position(desk, "voice released", |v| {
        call_state(v, "voice", "released")
    });
    let video = position(desk, "video released", |v| {
        call_state(v, "video", "released")
    });
    let ended = position(desk, "ended", |v| v["event"] == "ended");
    assert!(voice < ended && video < ended, "{}", s.seen());

    s.pump_until("both peers closed by the gateway", |s| {
        s.customer.is_closed() && s.agent.is_closed()
    })
    .await;
    let transcript = s.transcript().await;
    let at = |line: &str| {
        transcript
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} in:\n{transcript}"))
    };
    let chat_closed = at("* chat closed");
    assert!(at("* call leg-1 ended") < chat_closed, "{transcript}");
    assert!(at("* video leg-2 ended") < chat_closed, "{transcript}");

    // Nothing left open. (/metrics has no gauge of WebRTC peers; the interaction's is it.)
    tokio::task::block_in_place(|| s.gateway.wait_for_metric("tandem_open_interactions 0"));
    s.customer.close().await;
    s.agent.close().await;
}

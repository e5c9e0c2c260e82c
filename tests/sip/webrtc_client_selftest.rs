//! The WebRTC test client proves itself before it judges the gateway: two clients on loopback,
//! one offering (a role only this test gives it), connect over ICE and DTLS-SRTP and each
//! counts the other's audio and video; a keyframe request crosses and is counted; the PCMU
//! preference is honoured with `PCMU/8000` (no channel count, which str0m refuses).

use crate::webrtc_client;

use std::time::Duration;

use webrtc_client::{AudioCodec, ClientOptions, WebRtcClient};

/// Polls `done` every 20 ms for up to `within`.
async fn eventually(within: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

async fn pair(options: ClientOptions) -> (WebRtcClient, WebRtcClient, String, String) {
    let offerer = WebRtcClient::new(options).await;
    let answerer = WebRtcClient::new(options).await;
    let offer = offerer.offer().await;
    let answer = answerer.answer(&offer).await;
    offerer.accept_answer(&answer).await;
    for (who, client) in [("offerer", &offerer), ("answerer", &answerer)] {
        assert!(
            client.wait_connected(Duration::from_secs(10)).await,
            "{who} connects; state {:?}\noffer:\n{offer}\nanswer:\n{answer}",
            client.connection_state()
        );
    }
    (offerer, answerer, offer, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_exchange_opus_and_vp8_and_keyframe_requests() {
    let run = async {
        let (a, b, offer, answer) = pair(ClientOptions {
            audio_codec: AudioCodec::Opus,
            video: true,
        })
        .await;
        for sdp in [&offer, &answer] {
            assert!(
                sdp.contains("a=candidate:") && sdp.contains(" 127.0.0.1 "),
                "a loopback host candidate:\n{sdp}"
            );
        }
        assert!(answer.contains("opus/48000/2"), "{answer}");
        assert!(answer.contains("VP8/90000"), "{answer}");
        for client in [&a, &b] {
            client.start_sending_audio().await;
            client.start_sending_video().await;
        }
        // 2 s of media: ~100 audio packets and ~30 video frames each way.
        let flowing = eventually(Duration::from_secs(10), || {
            [&a, &b]
                .iter()
                .all(|c| c.audio_packets_received() > 50 && c.video_packets_received() > 20)
        })
        .await;
        assert!(
            flowing,
            "media both ways: a got {}/{} (audio/video), b got {}/{}",
            a.audio_packets_received(),
            a.video_packets_received(),
            b.audio_packets_received(),
            b.video_packets_received()
        );
        assert_eq!(b.audio_codec_received().as_deref(), Some("audio/opus"));
        assert_eq!(a.video_codec_received().as_deref(), Some("video/VP8"));

        eprintln!(
            "a got {}/{} and sent {}/{} (audio packets/video packets, audio packets/video frames)",
            a.audio_packets_received(),
            a.video_packets_received(),
            a.audio_packets_sent(),
            a.video_frames_sent()
        );
        assert_eq!(a.pli_received(), 0, "nobody asked for a keyframe yet");
        assert!(b.send_pli().await, "b has a's video to ask about");
        assert!(
            eventually(Duration::from_secs(5), || a.pli_received() >= 1).await,
            "a counts b's keyframe request"
        );

        a.close().await;
        assert!(
            eventually(Duration::from_secs(10), || b.is_closed()).await,
            "b sees a leave; state {:?}",
            b.connection_state()
        );
        b.close().await;
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the self-test ends within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pcmu_client_answers_pcmu_alone_without_a_channel_count() {
    let run = async {
        let options = ClientOptions {
            audio_codec: AudioCodec::Pcmu,
            video: false,
        };
        let (a, b, _, answer) = pair(options).await;
        assert!(answer.contains("a=rtpmap:0 PCMU/8000\r\n"), "{answer}");
        assert!(!answer.contains("PCMU/8000/1"), "{answer}");
        assert!(!answer.contains("opus"), "PCMU alone: {answer}");
        assert!(!answer.contains("m=video"), "{answer}");
        a.start_sending_audio().await;
        b.start_sending_audio().await;
        let flowing = eventually(Duration::from_secs(10), || {
            a.audio_packets_received() > 25 && b.audio_packets_received() > 25
        })
        .await;
        assert!(
            flowing,
            "PCMU both ways: a got {}, b got {}",
            a.audio_packets_received(),
            b.audio_packets_received()
        );
        assert_eq!(a.audio_codec_received().as_deref(), Some("audio/PCMU"));
        assert_eq!(a.video_packets_received(), 0);
        a.close().await;
        b.close().await;
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the self-test ends within 60 s");
}

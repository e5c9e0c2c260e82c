//! Recording a bridged call writes one stereo 8 kHz WAV file: what the customer's leg received
//! on the left, the agent's on the right, each decoded from its own G.711 law.

use crate::media_common;

use std::time::Duration;

use media_common::*;
use tandem::media::engine::Forwarding;
use tandem::media::g711;
use tandem::sip::sdp::Codec;

/// 20 ms of a tone in `codec`.
fn tone(codec: Codec, hz: f64, i: u32) -> Vec<u8> {
    let pcm: Vec<i16> = (0..160)
        .map(|n| {
            let t = f64::from(i * 160 + n) / 8000.0;
            ((t * hz * std::f64::consts::TAU).sin() * 8000.0) as i16
        })
        .collect();
    let mut out = Vec::new();
    g711::encode(codec, &pcm, &mut out);
    out
}

#[test]
fn both_sides_land_in_their_channel() {
    let (mut engine, _events) = engine();
    let dir = tempfile::tempdir().unwrap();
    let (customer, agent) = (Peer::new(), Peer::new());
    let (c, c_addr) = open_leg(&mut engine, Some(customer.addr()));
    let (a, a_addr) = open_leg(&mut engine, Some(agent.addr()));
    latch(&engine, c, &customer, c_addr, 1);
    latch(&engine, a, &agent, a_addr, 2);
    let to_agent = Forwarding {
        transcode: Some((Codec::Pcmu, Codec::Pcma)),
        telephone_event: None,
    };
    let to_customer = Forwarding {
        transcode: Some((Codec::Pcma, Codec::Pcmu)),
        telephone_event: None,
    };
    engine.bridge(c, a, to_agent, to_customer);
    engine
        .record(c, a, "call/../1@example", dir.path())
        .unwrap();

    // A second of audio, both sides at once, paced like a phone.
    for i in 0..50u32 {
        let seq = i as u16;
        customer.send(
            &rtp(0, false, seq, 160 * i, 1, &tone(Codec::Pcmu, 440.0, i)),
            c_addr,
        );
        agent.send(
            &rtp(8, false, seq, 160 * i, 2, &tone(Codec::Pcma, 1000.0, i)),
            a_addr,
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    engine
        .stop_recording(c)
        .expect("a recording was running")
        .join()
        .unwrap();

    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "one file, inside the directory");
    let mut wav = hound::WavReader::open(files[0].as_ref().unwrap().path()).unwrap();
    let spec = wav.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let samples: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
    let loud = |channel: usize| {
        samples
            .iter()
            .skip(channel)
            .step_by(2)
            .filter(|s| s.abs() > 1000)
            .count()
    };
    assert!(
        loud(0) > 4000,
        "the customer is heard on the left: {}",
        loud(0)
    );
    assert!(
        loud(1) > 4000,
        "the agent is heard on the right: {}",
        loud(1)
    );
    let counters = engine.recorder_counters();
    assert_eq!(
        counters.errors.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(engine.close(c).is_some());
}

#[test]
fn recording_a_leg_that_is_not_open_fails() {
    let (mut engine, _events) = engine();
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = open_leg(&mut engine, None);
    let missing = tandem::media::engine::LegPort(1);
    assert!(engine.record(c, missing, "x", dir.path()).is_err());
}

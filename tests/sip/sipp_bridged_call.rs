//! A trunk call to an agent's number is bridged to the agent's registered softphone with its
//! media anchored in the relay: SIPp `uac_pcap` is the trunk, a SIPp UAS with `-rtp_echo` that
//! registered with digest is the agent, and the audio travels both ways through Tandem.

use crate::common;

const CONFIG: &str = "[sip]\nagent_answer_timeout_s = 10\n\
    [[sip.trunks]]\nname = \"carrier\"\naddresses = [\"127.0.0.1\"]\n\
    [registrar]\nalgorithms = [\"MD5\"]\n\
    [[registrar.accounts]]\nuser = \"alice\"\npassword = \"alice-secret\"\n";

/// Registers alice from `port`, then answers calls there with RTP echo.
fn agent(gateway: &common::Gateway, calls: &str) -> (common::Sipp, u16) {
    let port = common::free_port();
    common::register_on(port, gateway.sip, "alice", "alice-secret");
    let uas = common::scenario("uas_agent.xml");
    let agent = common::sipp_spawn_on(
        port,
        gateway.sip,
        &["-sf", uas.to_str().unwrap(), "-rtp_echo", "-m", calls],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    (agent, port)
}

/// A gateway that records bridged calls into `dir`.
fn recording_gateway(dir: &std::path::Path) -> common::Gateway {
    common::Gateway::start(&format!(
        "[sip]\nrecording_dir = \"{}\"\n{}",
        dir.display(),
        CONFIG.trim_start_matches("[sip]\nagent_answer_timeout_s = 10\n")
    ))
}

#[test]
fn a_trunk_call_reaches_the_registered_agent_and_audio_flows_both_ways() {
    let gateway = common::Gateway::start(CONFIG);
    let (agent, _) = agent(&gateway, "2");
    let dir = common::pcap_dir();
    let trunk = common::sipp_in(
        dir.path(),
        gateway.sip,
        &["-sn", "uac_pcap", "-s", "alice", "-m", "2", "-l", "1"],
    );
    assert_eq!((trunk.successful, trunk.failed), (2, 0), "{trunk:?}");
    let agent = agent.wait();
    assert_eq!((agent.successful, agent.failed), (2, 0), "{agent:?}");

    // Every leg carried audio both ways: the trunk's packets reached the agent, and the
    // agent's echo came back to the trunk.
    let log = gateway.log_text();
    let legs = gateway.closed_legs();
    assert_eq!(legs.len(), 4, "{log}");
    for (inbound, outbound) in legs {
        assert!(
            inbound > 100 && outbound > 100,
            "{inbound} in, {outbound} out"
        );
    }
}

#[test]
fn a_hold_reinvite_passes_through_the_bridge() {
    let gateway = common::Gateway::start(CONFIG);
    let (agent, _) = agent(&gateway, "1");
    let hold = common::scenario("hold_uac.xml");
    let trunk = common::sipp(
        gateway.sip,
        &["-sf", hold.to_str().unwrap(), "-s", "alice", "-m", "1"],
    );
    assert_eq!((trunk.successful, trunk.failed), (1, 0), "{trunk:?}");
    let agent = agent.wait();
    assert_eq!((agent.successful, agent.failed), (1, 0), "{agent:?}");
}

#[test]
fn a_bridged_call_is_recorded_as_a_two_channel_wav() {
    let recordings = tempfile::tempdir().unwrap();
    let gateway = recording_gateway(recordings.path());
    let (agent, _) = agent(&gateway, "1");
    let dir = common::pcap_dir();
    let trunk = common::sipp_in(
        dir.path(),
        gateway.sip,
        &["-sn", "uac_pcap", "-s", "alice", "-m", "1"],
    );
    assert_eq!((trunk.successful, trunk.failed), (1, 0), "{trunk:?}");
    agent.wait();
    // The file is finished when the legs close, a moment after the BYE.
    let mut files = Vec::new();
    for _ in 0..50 {
        files = std::fs::read_dir(recordings.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        if !files.is_empty() && hound::WavReader::open(&files[0]).is_ok_and(|r| r.duration() > 0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(files.len(), 1, "{files:?}");
    let mut wav = hound::WavReader::open(&files[0]).unwrap();
    let spec = wav.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    // SIPp's pcap plays about 5 s of audio; both sides carry it (the agent echoes).
    let seconds = wav.duration() as f64 / 8000.0;
    assert!(seconds > 3.0, "{seconds} s");
    let samples: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
    let loud = |channel: usize| {
        samples
            .iter()
            .skip(channel)
            .step_by(2)
            .filter(|s| s.abs() > 1000)
            .count()
    };
    assert!(loud(0) > 8000, "customer channel has audio");
    assert!(loud(1) > 8000, "agent channel has audio");
}

#[test]
fn a_recording_survives_the_gateway_being_killed_mid_call() {
    let recordings = tempfile::tempdir().unwrap();
    let gateway = recording_gateway(recordings.path());
    let (agent, _) = agent(&gateway, "1");
    let dir = common::pcap_dir();
    let trunk = common::sipp_spawn_in_dir(
        dir.path(),
        gateway.sip,
        &["-sn", "uac_pcap", "-s", "alice", "-m", "1"],
    );
    // Let about three seconds of audio be recorded, then kill the gateway without warning.
    std::thread::sleep(std::time::Duration::from_secs(4));
    gateway.kill9();
    drop(trunk);
    drop(agent);
    let files: Vec<_> = std::fs::read_dir(recordings.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let wav = hound::WavReader::open(&files[0]).expect("a valid WAV up to the last flush");
    let seconds = wav.duration() as f64 / 8000.0;
    assert!(seconds >= 1.0, "{seconds} s recorded before the kill");
}

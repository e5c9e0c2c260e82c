//! baresip, a real softphone, registers as an agent with digest authentication, answers a call
//! bridged from the trunk by itself, and audio flows both ways through Tandem.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

const CONFIG: &str = "[[sip.trunks]]\nname = \"carrier\"\naddresses = [\"127.0.0.1\"]\n\
    [registrar]\nalgorithms = [\"MD5\"]\n\
    [[registrar.accounts]]\nuser = \"alice\"\npassword = \"alice-secret\"\n";

#[test]
fn baresip_answers_a_bridged_call_and_audio_flows_both_ways() {
    let gateway = common::Gateway::start(CONFIG);
    let home = tempfile::tempdir().unwrap();
    let port = common::free_port();
    // Headless: a sine tone as the microphone, a file as the speaker; no sound card.
    std::fs::write(
        home.path().join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{port}\nsip_transports udp\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule ausine.so\nmodule aufile.so\n\
             module account.so\nmodule menu.so\naudio_player aufile,{}\naudio_source ausine,440\n\
             ausrc_srate 48000\nausrc_channels 2\n",
            home.path().join("heard.wav").display()
        ),
    )
    .unwrap();
    std::fs::write(
        home.path().join("accounts"),
        format!(
            "<sip:alice@{}>;auth_pass=alice-secret;answermode=auto;regint=300\n",
            gateway.sip
        ),
    )
    .unwrap();
    let mut baresip = Command::new("baresip")
        .arg("-f")
        .arg(home.path())
        .args(["-t", "40"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("baresip is installed (scripts/test installs Debian's baresip)");

    // Wait until the registration is in, by calling: 480 means not yet registered.
    let dir = common::pcap_dir();
    let mut trunk = None;
    for _ in 0..20 {
        let attempt = common::sipp_in(
            dir.path(),
            gateway.sip,
            &["-sn", "uac_pcap", "-s", "alice", "-m", "1"],
        );
        if attempt.successful == 1 {
            trunk = Some(attempt);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = baresip.kill();
    let _ = baresip.wait();
    let trunk = trunk.expect("the call to baresip was never answered");
    assert_eq!(trunk.failed, 0, "{trunk:?}");

    let log = gateway.log_text();
    let legs = gateway.closed_legs();
    assert_eq!(legs.len(), 2, "{log}");
    for (inbound, outbound) in legs {
        // Each leg both received (its peer talked) and sent (the other peer's audio).
        assert!(
            inbound > 100 && outbound > 100,
            "{inbound} in, {outbound} out"
        );
    }
}

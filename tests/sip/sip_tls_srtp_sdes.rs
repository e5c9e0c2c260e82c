//! SRTP with SDES keys (RFC 4568) on a TLS leg: baresip, with TLS as its only transport and
//! SRTP mandatory, calls echo offering `RTP/SAVP` with keys in `a=crypto`. The gateway answers
//! with its own key for `AES_CM_128_HMAC_SHA1_80`; baresip's tone reaches echo decrypted and
//! comes back encrypted, and baresip decrypts and hears it.

use crate::certs;
use crate::common;

use std::time::Duration;

/// The largest received and sent rates baresip's status line showed (`audio=RX/TX (bit/s)`).
fn best_rates(log: &str) -> (u64, u64) {
    log.split(['\r', '\n'])
        .filter_map(|line| {
            let rates = line.split("audio=").nth(1)?.split(' ').next()?;
            let (rx, tx) = rates.split_once('/')?;
            Some((rx.parse::<u64>().ok()?, tx.parse::<u64>().ok()?))
        })
        .fold((0, 0), |(a, b), (rx, tx)| (a.max(rx), b.max(tx)))
}

#[test]
fn baresip_calls_echo_with_srtp_over_tls_and_hears_itself() {
    let pki = tempfile::tempdir().unwrap();
    let ca = certs::TestCa::new(pki.path(), "tandem-test-ca");
    let leaf = ca.leaf(pki.path(), "gateway", &["127.0.0.1"]);
    let tls_port = common::free_port();
    let gateway = common::Gateway::start(&certs::sip_tls_section(tls_port, &leaf, &ca.pem));
    let home = tempfile::tempdir().unwrap();
    let port = common::free_port();
    std::fs::write(
        home.path().join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{port}\nsip_transports tls\nsip_cafile {}\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule srtp.so\n\
             module ausine.so\nmodule aufile.so\nmodule account.so\nmodule menu.so\n\
             audio_player aufile,{}\naudio_source ausine,440\nausrc_srate 48000\nausrc_channels 2\n",
            ca.pem.display(),
            home.path().join("heard.wav").display()
        ),
    )
    .unwrap();
    std::fs::write(
        home.path().join("accounts"),
        format!("<sip:caller@127.0.0.1:{tls_port};transport=tls>;regint=0;mediaenc=srtp-mand\n"),
    )
    .unwrap();
    let output = std::process::Command::new("baresip")
        .arg("-f")
        .arg(home.path())
        .args([
            "-e",
            &format!("/dial sip:echo@127.0.0.1:{tls_port};transport=tls"),
            "-t",
            "10",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("baresip is installed (scripts/test installs Debian's baresip)");
    let log = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)"),
        "{log}\ngateway:\n{}",
        gateway.log_text()
    );
    // baresip received and decrypted the echo (undecryptable packets are dropped, not counted).
    assert!(
        log.contains("incoming rtp for 'audio' established"),
        "{log}"
    );
    let (rx, tx) = best_rates(&log);
    assert!(
        rx > 32_000 && tx > 32_000,
        "rx {rx} bit/s, tx {tx} bit/s\n{log}"
    );

    // The gateway's side: every packet from baresip was authentic, and echo's leg carried it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gateway.closed_legs().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let legs = gateway.closed_legs();
    assert_eq!(legs.len(), 1, "{}", gateway.log_text());
    let (inbound, outbound) = legs[0];
    assert!(
        inbound > 100 && outbound > 100,
        "{inbound} in, {outbound} out"
    );
    let text = gateway.log_text();
    let stopped = text
        .lines()
        .find(|l| l.contains("SRTP relay stopped"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(stopped.contains("refused=0"), "{stopped}");
}

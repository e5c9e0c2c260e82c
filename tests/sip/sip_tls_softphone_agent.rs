//! SIP over TLS (RFC 3261 §26, RFC 5630) with a real softphone: baresip (OpenSSL) registers
//! as an agent on the gateway's TLS listener, which presents a certificate from PEM files the
//! test made, and answers a trunk call bridged to it over that TLS connection; audio flows
//! both ways through Tandem.

use crate::certs;
use crate::common;
use crate::softphones;

use std::time::Duration;

#[test]
fn baresip_registers_over_tls_and_answers_a_bridged_call() {
    let pki = tempfile::tempdir().unwrap();
    let ca = certs::TestCa::new(pki.path(), "tandem-test-ca");
    let leaf = ca.leaf(pki.path(), "gateway", &["127.0.0.1"]);
    let tls_port = common::free_port();
    let gateway = common::Gateway::start(&format!(
        "{}[[sip.trunks]]\nname = \"carrier\"\naddresses = [\"127.0.0.1\"]\n\
         [registrar]\nalgorithms = [\"MD5\"]\n\
         [[registrar.accounts]]\nuser = \"alice\"\npassword = \"alice-secret\"\n",
        certs::sip_tls_section(tls_port, &leaf, &ca.pem)
    ));
    let baresip = softphones::Baresip::start(
        &format!(
            "<sip:alice@127.0.0.1:{tls_port};transport=tls>;auth_pass=alice-secret;\
             answermode=auto;regint=300\n"
        ),
        &format!("sip_cafile {}\n", ca.pem.display()),
        60,
    );

    // The registration arrives over TLS.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !gateway.log_text().contains("registered user=alice") {
        assert!(
            std::time::Instant::now() < deadline,
            "baresip never registered\nbaresip:\n{}\ngateway:\n{}",
            baresip.log(),
            gateway.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = gateway.log_text();
    let registered = log
        .lines()
        .find(|l| l.contains("registered user=alice"))
        .unwrap();
    assert!(
        registered.contains("transport=\"TLS\"") && registered.contains(";transport=tls"),
        "{registered}"
    );

    // The trunk (SIPp over UDP, playing a recording) calls alice; she answers on TLS.
    let dir = common::pcap_dir();
    let trunk = common::sipp_in(
        dir.path(),
        gateway.sip,
        &["-sn", "uac_pcap", "-s", "alice", "-m", "1"],
    );
    assert_eq!(
        (trunk.exit_code, trunk.successful, trunk.failed),
        (0, 1, 0),
        "{trunk:?}\nbaresip:\n{}\ngateway:\n{}",
        baresip.log(),
        gateway.log_text()
    );
    assert!(
        baresip.log().contains("Call established"),
        "{}",
        baresip.log()
    );
    // Both legs close once the BYE went through.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gateway.closed_legs().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let legs = gateway.closed_legs();
    assert_eq!(legs.len(), 2, "{}", gateway.log_text());
    for (inbound, outbound) in legs {
        // Each leg both received (its peer talked) and sent (the other peer's audio).
        assert!(
            inbound > 100 && outbound > 100,
            "{inbound} in, {outbound} out"
        );
    }
}

#[test]
fn baresip_calls_echo_over_tls_and_hears_itself() {
    let pki = tempfile::tempdir().unwrap();
    let ca = certs::TestCa::new(pki.path(), "tandem-test-ca");
    let leaf = ca.leaf(pki.path(), "gateway", &["127.0.0.1"]);
    let tls_port = common::free_port();
    let gateway = common::Gateway::start(&certs::sip_tls_section(tls_port, &leaf, &ca.pem));
    // TLS is its one transport: the call cannot go any other way. It dials once started and
    // quits (hanging up) after ten seconds.
    let log = softphones::Baresip::dial_once(
        &format!("sip:echo@127.0.0.1:{tls_port};transport=tls"),
        &format!("<sip:caller@127.0.0.1:{tls_port};transport=tls>;regint=0\n"),
        &format!("sip_transports tls\nsip_cafile {}\n", ca.pem.display()),
        10,
    );
    assert!(
        log.contains("Call established"),
        "{log}\ngateway:\n{}",
        gateway.log_text()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gateway.closed_legs().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let legs = gateway.closed_legs();
    assert_eq!(legs.len(), 1, "{}", gateway.log_text());
    let (inbound, outbound) = legs[0];
    // Echo sends back what it gets: baresip's tone went there and came back.
    assert!(
        inbound > 100 && outbound > 100,
        "{inbound} in, {outbound} out"
    );
}

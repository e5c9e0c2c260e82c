//! Calls out through a trunk over TLS (RFC 5630): the agent calls the customer through the
//! trunk `carrier` with `transport = "tls"`, whose next hop is baresip (OpenSSL) listening for
//! TLS with a certificate the test made.
//!
//! With the carrier's certificate signed by the CA in `sip.tls.ca_file`, the call is placed
//! (`sips:`), answered, and audio flows both ways. With a certificate from a CA the gateway
//! does not trust, the handshake is refused with a log line naming the peer and the reason,
//! nothing is sent to the carrier, and the agent hears at once that the call failed.

use crate::certs;
use crate::common;
use crate::softphones;
use crate::trunk_call as trunk;

use std::time::Duration;

use serde_json::json;
use trunk::webrtc::AudioCodec;
use trunk::{NUMBER, Rig, audio_received};

/// baresip as the customer's phone: it answers calls to the chat's number by itself, on TLS
/// with the certificate `leaf`. Its TLS port is one above its UDP/TCP port.
fn tls_phone(leaf: &certs::Leaf) -> softphones::Baresip {
    softphones::Baresip::start(
        &format!("<sip:{NUMBER}@127.0.0.1>;regint=0;answermode=auto\n"),
        &format!("sip_certificate {}\n", leaf.combined.display()),
        90,
    )
}

/// The gateway with its own certificate, trusting `ca`, whose trunk goes over TLS to `phone`.
async fn rig(pki: &std::path::Path, ca: &certs::TestCa, phone: &softphones::Baresip) -> Rig {
    let gateway_leaf = ca.leaf(pki, "gateway", &["127.0.0.1"]);
    let tls = certs::sip_tls_section(common::free_port(), &gateway_leaf, &ca.pem);
    Rig::start_on(phone.port + 1, "transport = \"tls\"\n", &tls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_calls_the_customer_through_a_tls_trunk() {
    let pki = tempfile::tempdir().unwrap();
    let ca = certs::TestCa::new(pki.path(), "carrier-and-gateway-ca");
    let phone = tls_phone(&ca.leaf(pki.path(), "carrier", &["127.0.0.1"]));
    let mut rig = rig(pki.path(), &ca, &phone).await;
    let chat = rig.chat();

    let called = rig.call_customer().await;
    assert_eq!(called["event"], "ack", "call_customer: {called}");
    let client = rig.answer_on_browser(AudioCodec::Pcmu).await;
    let up = tokio::time::timeout(Duration::from_secs(30), rig.desk.call_state(&chat, "up")).await;
    assert!(
        up.is_ok(),
        "the call never came up\nbaresip:\n{}\ngateway:\n{}",
        phone.log(),
        rig.gateway.log_text()
    );
    // The phone's tone reaches the agent; the agent's audio reaches the phone.
    assert!(
        audio_received(&client, 100).await,
        "the agent got {} packets\ngateway:\n{}",
        client.audio_packets_received(),
        rig.gateway.log_text()
    );
    let log = phone.log();
    assert!(log.contains("Call established"), "{log}");
    assert!(
        log.contains("incoming rtp for 'audio' established"),
        "{log}"
    );

    let released = rig
        .desk
        .command(json!({"command": "release_call", "chat_id": chat}))
        .await;
    assert_eq!(released["event"], "ack", "release_call: {released}");
    rig.desk.call_state(&chat, "released").await;
    client.close().await;
    rig.nothing_left();
    // The phone's leg carried audio both ways.
    let legs = rig.gateway.closed_legs();
    assert!(
        legs.iter()
            .any(|&(inbound, outbound)| inbound > 50 && outbound > 50),
        "{legs:?}\n{}",
        rig.gateway.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_with_a_certificate_we_do_not_trust_gets_nothing() {
    let pki = tempfile::tempdir().unwrap();
    let ours = certs::TestCa::new(pki.path(), "our-ca");
    let stranger = certs::TestCa::new(pki.path(), "stranger-ca");
    let phone = tls_phone(&stranger.leaf(pki.path(), "impostor", &["127.0.0.1"]));
    let mut rig = rig(pki.path(), &ours, &phone).await;
    let chat = rig.chat();

    let called = rig.call_customer().await;
    assert_eq!(called["event"], "ack", "call_customer: {called}");
    let released = rig.desk.call_state(&chat, "released").await;
    // At once as a transport error (RFC 3261 §8.1.3.1: a 503), not after Timer B's 408.
    assert_eq!(
        released["reason"], "the customer's phone refused the call (503)",
        "{released}"
    );

    let log = rig.gateway.log_text();
    let refused = log
        .lines()
        .find(|l| l.contains("TLS handshake") && l.contains("refused"))
        .unwrap_or_else(|| panic!("no log line says the handshake was refused:\n{log}"));
    assert!(
        refused.contains(&format!("127.0.0.1:{}", phone.port + 1))
            && refused.contains("UnknownIssuer"),
        "{refused}"
    );
    // Not one SIP message reached the impostor.
    assert!(!phone.log().contains("Incoming call"), "{}", phone.log());
    rig.nothing_left();
}

//! Digest algorithms per registrar account: baresip 1.0, which cannot register while any
//! SHA-256 challenge is offered, registers with MD5 on an account held to MD5, while linphonec
//! registers another account with SHA-256, the gateway's first choice for everyone else.

use crate::common;
use crate::softphones;

use std::time::{Duration, Instant};

const CONFIG: &str = "[registrar]\nalgorithms = [\"SHA-256\", \"MD5\"]\n\
    [[registrar.accounts]]\nuser = \"alice\"\npassword = \"alice-secret\"\nalgorithms = [\"MD5\"]\n\
    [[registrar.accounts]]\nuser = \"bob\"\npassword = \"bob-secret\"\n";

/// Waits until the gateway's log says `user` registered, and returns the line.
fn authenticated(gateway: &common::Gateway, user: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let needle = format!("user={user} ");
    loop {
        if let Some(line) = gateway
            .log_text()
            .lines()
            .find(|l| l.contains(": registered ") && l.contains(&needle))
        {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{user} never registered; log:\n{}",
            gateway.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn baresip_registers_with_md5_while_linphone_uses_sha256() {
    let gateway = common::Gateway::start(CONFIG);
    let baresip = softphones::Baresip::start(
        &format!(
            "<sip:alice@{}>;auth_pass=alice-secret;regint=300\n",
            gateway.sip
        ),
        "sip_transports udp\n",
        30,
    );
    let port = common::free_port();
    let _linphone = softphones::Linphone::start(&format!(
        "[sip]\nsip_port={port}\nsip_tcp_port=-1\nsip_tls_port=-1\nuse_ipv6=0\ndefault_proxy=0\n\
         register_only_when_network_is_up=0\n\
         [auth_info_0]\nusername=bob\npasswd=bob-secret\nrealm=tandem\n\
         [proxy_0]\nreg_proxy=<sip:{0}>\nreg_identity=sip:bob@{1}\nreg_expires=300\nreg_sendregister=1\npublish=0\n\
         [sound]\ncapture_dev_id=\n",
        gateway.sip,
        gateway.sip.ip(),
    ));
    let alice = authenticated(&gateway, "alice", Duration::from_secs(20));
    assert!(
        alice.contains("MD5") && !alice.contains("SHA-256"),
        "{alice}\n{}",
        baresip.log()
    );
    let bob = authenticated(&gateway, "bob", Duration::from_secs(20));
    assert!(bob.contains("SHA-256"), "{bob}");
    gateway.wait_for_metric("tandem_sip_registrations 2");
}

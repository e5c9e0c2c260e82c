//! Kamailio in front of the gateway, record-routing and stateful (`tests/kamailio/record_route.cfg`):
//! it relays requests inside a dialog only along their route set, so a call works only if the
//! gateway echoes Record-Route into its 18x/2xx (RFC 3261 §12.1.1) and sends its own in-dialog
//! requests along the route set too.
//!
//! Proven here: SIPp's calls to echo through the proxy (ACK, UPDATE, hold re-INVITE, BYE from
//! the caller); a carrier's call through the proxy bridged to an agent who registered through
//! it, with requests inside both dialogs crossing the proxy both ways (the hold relayed to the
//! agent, the agent's BYE, the gateway's BYE to the caller); a click-to-call leaving through
//! the proxy as the gateway's outbound proxy (a loose `Route`), its ACK and BYE following the
//! route set; and nothing refused by the proxy.

use crate::common;
use crate::kamailio;
use crate::trunk_call as trunk;

use std::net::SocketAddr;

/// Kamailio's log, the gateway's and SIPp's output, for failure messages.
fn logs(proxy: &kamailio::Kamailio, gateway: &common::Gateway, sipp: &common::SippStats) -> String {
    format!(
        "sipp: {sipp:?}\n--- kamailio\n{}\n--- gateway\n{}",
        proxy.log_text(),
        gateway.log_text()
    )
}

#[test]
fn sipp_calls_echo_through_a_record_routing_proxy() {
    let gateway = common::Gateway::start("");
    let proxy = kamailio::Kamailio::start(kamailio::Kamailio::reserve(), gateway.sip);
    let scenario = common::scenario("proxied_echo_uac.xml");
    let port = common::free_port();
    let caller: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let stats = common::sipp_on(
        port,
        proxy.addr,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-s",
            "echo",
            "-m",
            "20",
            "-l",
            "5",
        ],
    )
    .wait();
    let why = logs(&proxy, &gateway, &stats);
    assert_eq!(stats.exit_code, 0, "{why}");
    assert_eq!((stats.successful, stats.failed), (20, 0), "{why}");
    assert!(proxy.unrouted().is_empty(), "{why}");
    // Every request inside the dialogs went through the proxy, and only on its route.
    for (method, count) in [("ACK", 40), ("UPDATE", 20), ("INVITE", 20), ("BYE", 20)] {
        assert_eq!(
            proxy.in_dialog_from(method, caller),
            count,
            "{method}: {why}"
        );
    }
}

#[test]
fn a_carrier_call_through_the_proxy_reaches_an_agent_registered_through_it() {
    let proxy_addr = kamailio::Kamailio::reserve();
    // Everything reaches the gateway from the proxy, so the proxy is the trunk; SIPp answers
    // only the first challenge, with MD5.
    let gateway = common::Gateway::start(&format!(
        "[[sip.trunks]]\nname = \"sbc\"\naddresses = [\"{proxy_addr}\"]\n\
         [[registrar.accounts]]\nuser = \"alice\"\npassword = \"alice-secret\"\nalgorithms = [\"MD5\"]\n"
    ));
    let proxy = kamailio::Kamailio::start(proxy_addr, gateway.sip);

    // The agent registers through the proxy, then answers on the same port.
    let agent_port = common::free_port();
    let agent: SocketAddr = format!("127.0.0.1:{agent_port}").parse().unwrap();
    common::register_on(agent_port, proxy.addr, "alice", "alice-secret");
    let agent_scenario = common::scenario("proxied_agent_uas.xml");
    let softphone = common::sipp_spawn_on(
        agent_port,
        proxy.addr,
        &["-sf", agent_scenario.to_str().unwrap(), "-m", "1"],
    );

    let caller_port = common::free_port();
    let caller: SocketAddr = format!("127.0.0.1:{caller_port}").parse().unwrap();
    let trunk_scenario = common::scenario("proxied_trunk_uac.xml");
    let call = common::sipp_on(
        caller_port,
        proxy.addr,
        &[
            "-sf",
            trunk_scenario.to_str().unwrap(),
            "-s",
            "alice",
            "-m",
            "1",
        ],
    )
    .wait();
    let why = logs(&proxy, &gateway, &call);
    assert_eq!(
        (call.exit_code, call.successful, call.failed),
        (0, 1, 0),
        "{why}"
    );
    let softphone = softphone.wait();
    assert_eq!(
        (softphone.exit_code, softphone.successful, softphone.failed),
        (0, 1, 0),
        "agent: {softphone:?}\n{why}"
    );
    assert!(proxy.unrouted().is_empty(), "{why}");

    // Caller → gateway: ACK, the hold re-INVITE and its ACK.
    assert_eq!(proxy.in_dialog_from("ACK", caller), 2, "{why}");
    assert_eq!(proxy.in_dialog_from("INVITE", caller), 1, "{why}");
    // Gateway → agent: the ACK of the answer, the hold passed on and its ACK.
    assert_eq!(proxy.in_dialog_from("ACK", gateway.sip), 2, "{why}");
    assert_eq!(proxy.in_dialog_from("INVITE", gateway.sip), 1, "{why}");
    // Agent → gateway: the BYE; gateway → caller: its BYE, along the caller's route set.
    assert_eq!(proxy.in_dialog_from("BYE", agent), 1, "{why}");
    assert_eq!(proxy.in_dialog_from("BYE", gateway.sip), 1, "{why}");
    gateway.wait_for_metric("tandem_sip_calls 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_to_call_leaves_through_the_outbound_proxy() {
    let proxy_addr = kamailio::Kamailio::reserve();
    let mut rig =
        trunk::Rig::start_with(&format!("[sip]\noutbound_proxy = \"{proxy_addr}\"\n")).await;
    let proxy = kamailio::Kamailio::start(proxy_addr, rig.gateway.sip);
    let traces = tempfile::tempdir().unwrap();
    let phone = rig.phone(
        "proxied_phone_answer.xml",
        1,
        &traces.path().join("phone.log"),
    );
    let chat = rig.chat();
    let client = rig
        .call_and_talk(trunk::webrtc::AudioCodec::Pcmu, trunk::ECHOED)
        .await;
    let released = rig
        .desk
        .command(serde_json::json!({"command": "release_call", "chat_id": chat}))
        .await;
    assert_eq!(released["event"], "ack", "release_call: {released}");
    rig.desk.call_state(&chat, "released").await;
    client.close().await;
    let stats = trunk::phone_result(phone).await;
    let why = logs(&proxy, &rig.gateway, &stats);
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "{why}"
    );
    assert!(proxy.unrouted().is_empty(), "{why}");
    // The INVITE reached the proxy with the customer's number as its destination.
    let phone_uri = format!("to sip:{}@127.0.0.1:{}", trunk::NUMBER, rig.phone_port);
    let invites: Vec<String> = proxy
        .relayed()
        .into_iter()
        .filter(|l| l.starts_with(&format!("INVITE new from {} ", rig.gateway.sip)))
        .collect();
    assert_eq!(invites.len(), 1, "{why}");
    assert!(invites[0].contains(&phone_uri), "{}\n{why}", invites[0]);
    assert_eq!(proxy.in_dialog_from("ACK", rig.gateway.sip), 1, "{why}");
    // The phone answers the BYE a second late, so the BYE may be retransmitted meanwhile.
    assert!(proxy.in_dialog_from("BYE", rig.gateway.sip) >= 1, "{why}");
    rig.nothing_left();
}

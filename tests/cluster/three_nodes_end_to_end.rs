//! Three nodes as one contact centre, end to end: PostgreSQL, `nats-server`, Kamailio (the
//! shipped dispatcher configuration, probing the nodes with OPTIONS) and three Tandem nodes
//! whose SIP listens on 127.0.0.2, 127.0.0.3 and 127.0.0.4.
//!
//! A customer talks to node A only (HTTP and WebSocket), the agent's desk to node B only. The
//! agent accepts the chat; the customer's phone (SIPp) calls in for it through Kamailio, whose
//! dispatcher picks node C first; C redirects the call to the chat's owner A, Kamailio follows,
//! A answers, and the agent's browser (a WebRTC peer) hears her audio echoed back by the phone.
//! The agent releases the call (the phone gets the BYE through the proxy), then ends the chat:
//! the events show the call released before the chat ended.
//!
//! Then a second chat, opened through node C, whose owner is killed with SIGKILL mid-chat:
//! another node takes it over, the customer goes on through A, the agent keeps writing from B,
//! every message that was acknowledged is in its history, and the agent ends it.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::agent_desk::{Customer, Desk};
use crate::common;
use crate::kamailio::Kamailio;
use crate::nodes::{
    Cluster, PATIENCE, Setup, message_ids, post, post_until_taken, strictly_increasing,
};
use crate::webrtc_client::{AudioCodec, ClientOptions, WebRtcClient};

/// The chat's phone number: the caller id the trunk (Kamailio) vouches for.
pub(crate) const NUMBER: &str = "+15550123";
/// Echoed audio packets the agent must hear back: three seconds at 50 packets a second.
pub(crate) const ECHOED: u64 = 150;
/// Node indices: the customer's node, the agent's, and the one the dispatcher picks first.
pub(crate) const A: usize = 0;
pub(crate) const B: usize = 1;
pub(crate) const C: usize = 2;

/// Every node: the `claims` service rings all agents and dials through the trunk
/// `dispatcher`, which is Kamailio at `proxy`; the agent alice.
pub(crate) fn setup(proxy: SocketAddr) -> Setup {
    let hash = tandem::routing::password::hash("desk");
    Setup {
        own_addresses: true,
        extra: format!(
            "routing = \"ring_all\"\ntrunk = \"dispatcher\"\ncaller_id = \"+15550100\"\n\
             [[sip.trunks]]\nname = \"dispatcher\"\naddresses = [\"{proxy}\"]\n\
             [[agents]]\nname = \"alice\"\ndisplay_name = \"Alice\"\n\
             password_hash = \"{hash}\"\ndepartments = [\"claims\"]\n"
        ),
        ..Setup::default()
    }
}

/// A Call-ID the dispatcher sends to `node` first. It chooses by a hash of the Call-ID, the
/// same for every method: OPTIONS through the proxy, each from a port of its own, until its
/// log shows one relayed to `node`. Probes no node answers (one sent to a node that died) are
/// passed over.
pub(crate) fn call_id_dispatched_to(proxy: &Kamailio, node: SocketAddr) -> String {
    for k in 0..200 {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let local = socket.local_addr().unwrap();
        let call_id = format!("three-nodes-{k}-{}@127.0.0.1", local.port());
        let target = proxy.addr;
        let options = format!(
            "OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-pick{k};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p{k}\r\nTo: <sip:{target}>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        socket.send_to(options.as_bytes(), target).unwrap();
        let mut buf = [0u8; 4096];
        let answered = socket
            .recv_from(&mut buf)
            .is_ok_and(|(n, _)| buf[..n].starts_with(b"SIP/2.0 200"));
        if !answered {
            // Sent to a node that is gone (the dispatcher has not marked it down yet).
            continue;
        }
        let line = format!("OPTIONS new from {local} ");
        let went = proxy
            .relayed()
            .into_iter()
            .find(|l| l.starts_with(&line))
            .unwrap_or_else(|| panic!("the proxy did not log {line:?}:\n{}", proxy.log_text()));
        if went.ends_with(&format!("via sip:{node}")) {
            return call_id;
        }
    }
    panic!("no Call-ID of 200 hashes to {node}:\n{}", proxy.log_text());
}

/// SIPp as the customer's phone, calling the proxy for `chat` from its number with `call_id`,
/// echoing RTP, until the gateway's BYE.
pub(crate) fn phone_calls_in(proxy: &Kamailio, chat: &str, call_id: &str) -> common::Sipp {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cluster/scenarios/phone_joins_through_dispatcher.xml");
    common::sipp_spawn_on(
        common::free_port(),
        proxy.addr,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-rtp_echo",
            "-m",
            "1",
            "-key",
            "interaction",
            chat,
            "-key",
            "caller",
            NUMBER,
            "-cid_str",
            call_id,
        ],
    )
}

/// Answers the call's offer to the agent's browser with a new PCMU peer, and waits until it is
/// connected and sending.
pub(crate) async fn answer_on_browser(
    desk: &mut Desk,
    chat: &str,
    logs: impl Fn() -> String,
) -> WebRtcClient {
    let offer = desk
        .until(|v| {
            v["event"] == "webrtc_signaling"
                && v["chat_id"] == chat
                && v["data"]["type"] == "OFFER_CALL"
        })
        .await;
    let client = WebRtcClient::new(ClientOptions {
        audio_codec: AudioCodec::Pcmu,
        video: false,
    })
    .await;
    let sdp = client.answer(offer["data"]["sdp"].as_str().unwrap()).await;
    let answered = desk
        .command(json!({"command": "webrtc_signaling", "chat_id": chat,
                        "data": {"type": "ANSWER_CALL", "sdp": sdp}}))
        .await;
    assert_eq!(answered["event"], "ack", "{answered}\n{}", logs());
    assert!(
        client.wait_connected(PATIENCE).await,
        "the agent's peer connects\n{}",
        logs()
    );
    client.start_sending_audio().await;
    client
}

/// The value of the gauge `name` in a `/metrics` text.
fn gauge(metrics: &str, name: &str) -> Option<i64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

async fn metrics(cluster: &Cluster, i: usize) -> String {
    cluster
        .http
        .get(format!("{}/metrics", cluster.nodes[i].base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Every node's log and the proxy's, for failure messages.
pub(crate) fn logs(cluster: &Cluster, proxy: &Kamailio) -> String {
    let mut text = format!("--- kamailio\n{}", proxy.log_text());
    for node in &cluster.nodes {
        text.push_str(&format!(
            "\n--- node {} ({})\n{}",
            node.name,
            node.sip,
            node.log()
        ));
    }
    text
}

/// The seq of the first event of `history` that `pred` picks.
fn seq_of(history: &[Value], pred: impl Fn(&Value) -> bool) -> Option<u64> {
    history
        .iter()
        .find(|e| pred(e))
        .and_then(|e| e["seq"].as_u64())
}

/// Three nodes behind the dispatcher; a customer's chat opened on A (HTTP and WebSocket to A
/// only), taken by the agent alice at a desk on B.
pub(crate) async fn chat_on_a_taken_on_b() -> (Cluster, Kamailio, Desk, Customer) {
    let proxy_addr = Kamailio::reserve();
    let cluster = Cluster::start_setup(3, &setup(proxy_addr)).await;
    let sips: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.sip).collect();
    let proxy = Kamailio::start_dispatcher(proxy_addr, &sips);
    let http = &cluster.http;
    let mut desk = Desk::login(http, cluster.nodes[B].http_addr, "alice", "desk").await;
    let mut customer = Customer::open(
        http,
        cluster.nodes[A].http_addr,
        "claims-app",
        "dev-1",
        NUMBER,
    )
    .await;
    desk.accept(&mut customer).await;
    (cluster, proxy, desk, customer)
}

/// Waits for the phone (SIPp run by [`phone_calls_in`]) to end its one call successfully, on
/// the gateway's BYE.
pub(crate) async fn hung_up(
    phone: tokio::task::JoinHandle<common::SippStats>,
    logs: impl Fn() -> String,
) {
    let stats = tokio::time::timeout(PATIENCE, phone)
        .await
        .expect("SIPp ends within its own timeout")
        .unwrap();
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "phone: {stats:?}\n{}",
        logs()
    );
}

/// Waits until the agent has heard `client`'s audio echoed back by the phone.
pub(crate) async fn hears_echo(client: &WebRtcClient, logs: impl Fn() -> String) {
    let deadline = Instant::now() + PATIENCE;
    while client.audio_packets_received() <= ECHOED {
        assert!(
            Instant::now() < deadline,
            "the agent got {} audio packets back (sent {})\n{}",
            client.audio_packets_received(),
            client.audio_packets_sent(),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_and_its_call_across_three_nodes_then_a_chat_whose_owner_dies() {
    let (mut cluster, proxy, mut desk, mut customer) = chat_on_a_taken_on_b().await;
    let store = cluster.store().await;
    let owner = |chat: &str| {
        let (store, id) = (store.clone(), tandem::bridge::InteractionId::from(chat));
        async move {
            store
                .open_interaction_owner(&id)
                .await
                .unwrap()
                .and_then(|(_, owner)| owner)
        }
    };

    // The customer on A, the agent on B: she accepted, and they talk.
    let http = cluster.http.clone();
    let chat = customer.chat.clone();
    desk.chat_both_ways(&mut customer, "my car was hit", "I am sorry, let us see")
        .await;
    assert_eq!(owner(&chat).await.as_deref(), Some("a"), "opened on A");

    // The phone calls in for the chat through the proxy, which tries C first.
    let call_id = call_id_dispatched_to(&proxy, cluster.nodes[C].sip);
    let dispatched_before = proxy.invites_dispatched().len();
    let phone = phone_calls_in(&proxy, &chat, &call_id);
    let phone = tokio::task::spawn_blocking(move || phone.wait());
    let connecting = desk.call_state(&chat, "connecting").await;
    assert_eq!(connecting["kind"], "voice", "{connecting}");
    let client = answer_on_browser(&mut desk, &chat, || logs(&cluster, &proxy)).await;
    desk.call_state(&chat, "up").await;
    hears_echo(&client, || logs(&cluster, &proxy)).await;

    // Where the call went: dispatched to C, redirected to A, and held by A alone.
    let dispatched = proxy.invites_dispatched()[dispatched_before..].to_vec();
    assert_eq!(
        dispatched,
        vec![cluster.nodes[C].sip.to_string()],
        "{}",
        logs(&cluster, &proxy)
    );
    let to_a = format!("sip:+15559000@{} ", cluster.nodes[A].sip);
    assert_eq!(
        proxy
            .redirects()
            .iter()
            .filter(|r| r.starts_with(&to_a))
            .count(),
        1,
        "C redirected the call to A: {}",
        logs(&cluster, &proxy)
    );
    // (The SIP side publishes its gauges once a second: A's call shows once it has.)
    let deadline = Instant::now() + PATIENCE;
    while gauge(&metrics(&cluster, A).await, "tandem_sip_calls") != Some(1) {
        assert!(Instant::now() < deadline, "node A shows no SIP call");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in [B, C] {
        let text = metrics(&cluster, i).await;
        assert_eq!(
            gauge(&text, "tandem_sip_calls"),
            Some(0),
            "SIP calls on node {}: {text}",
            cluster.nodes[i].name
        );
    }

    // The agent releases the call; the phone gets the BYE through the proxy and answers it.
    let released = desk
        .command(json!({"command": "release_call", "chat_id": chat}))
        .await;
    assert_eq!(released["event"], "ack", "release_call: {released}");
    let released = desk.call_state(&chat, "released").await;
    client.close().await;
    hung_up(phone, || logs(&cluster, &proxy)).await;
    assert!(proxy.unrouted().is_empty(), "{}", logs(&cluster, &proxy));

    // Then the chat ends: after the call, as the agent's events and the history show.
    let ended = desk
        .command(json!({"command": "end_session", "chat_id": chat}))
        .await;
    assert_eq!(ended["event"], "ack", "end_session: {ended}");
    customer.until(|v| v["event"] == "chat_session_ended").await;
    let closed = desk
        .until(|v| v["event"] == "ended" && v["chat_id"] == chat.as_str())
        .await;
    assert!(
        released["seq"].as_u64().is_some() && released["seq"].as_u64() < closed["seq"].as_u64(),
        "{released} then {closed}"
    );
    let history = cluster.history(A, &chat).await;
    assert!(strictly_increasing(&history));
    let call_released = seq_of(&history, |e| {
        e["event"] == "chat_session_call_state" && e["state"] == "released"
    });
    let chat_ended = seq_of(&history, |e| e["event"] == "chat_session_ended");
    assert!(
        call_released.is_some() && chat_ended.is_some() && call_released < chat_ended,
        "the call is released before the chat ends: {history:#?}"
    );
    let deadline = Instant::now() + PATIENCE;
    while gauge(&metrics(&cluster, A).await, "tandem_sip_calls") != Some(0) {
        assert!(Instant::now() < deadline, "node A still holds a SIP call");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A second chat, opened through C and owned by it; the agent on B takes it.
    let mut second = Customer::open(
        &http,
        cluster.nodes[C].http_addr,
        "claims-app",
        "dev-1",
        NUMBER,
    )
    .await;
    let chat = second.chat.clone();
    desk.accept(&mut second).await;
    desk.chat_both_ways(&mut second, "and my bike too", "let me note that")
        .await;
    assert_eq!(owner(&chat).await.as_deref(), Some("c"), "opened on C");
    let (api_a, api_c) = (cluster.nodes[A].api(), cluster.nodes[C].api());
    let mut acked = Vec::new();
    for n in 0..10 {
        let msg_id = format!("before-{n}");
        let seq = post(&http, &api_c, &chat, &msg_id)
            .await
            .unwrap_or_else(|e| panic!("{msg_id}: {e:?}"));
        assert!(seq > 0, "{msg_id} acknowledged with a seq");
        acked.push(msg_id);
    }

    // Its owner dies. The customer goes on through A, retrying until a node has taken the
    // chat over; the agent on B reads on and answers.
    cluster.nodes[C].kill9();
    for n in 0..10 {
        let msg_id = format!("after-{n}");
        post_until_taken(&http, &api_a, &chat, &msg_id).await;
        acked.push(msg_id);
    }
    let new_owner = owner(&chat).await;
    assert!(
        matches!(new_owner.as_deref(), Some("a" | "b")),
        "owned by {new_owner:?}"
    );
    desk.until(|v| {
        v["event"] == "message" && v["chat_id"] == chat.as_str() && v["msg"] == "after-9"
    })
    .await;
    let said = desk
        .command_until_ack(
            json!({"command": "send_message", "chat_id": chat, "msg": "all noted"}),
            PATIENCE,
        )
        .await;
    assert_eq!(said["event"], "ack", "{said}");

    // Nothing acknowledged is lost, and the chat is finished.
    let ended = desk
        .command_until_ack(json!({"command": "end_session", "chat_id": chat}), PATIENCE)
        .await;
    assert_eq!(ended["event"], "ack", "end_session: {ended}");
    desk.until(|v| v["event"] == "ended" && v["chat_id"] == chat.as_str())
        .await;
    let history = cluster.history(A, &chat).await;
    let stored: HashSet<String> = message_ids(&history).into_iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|m| !stored.contains(*m)).collect();
    assert!(lost.is_empty(), "acknowledged messages lost: {lost:?}");
    assert!(strictly_increasing(&history), "seqs only go up");
    assert!(
        history
            .iter()
            .any(|e| e["event"] == "chat_session_message" && e["msg"] == "all noted"),
        "the agent's answer after the takeover is in the history"
    );
    assert_eq!(
        history
            .iter()
            .filter(|e| e["event"] == "chat_session_ended")
            .count(),
        1,
        "{history:#?}"
    );
}

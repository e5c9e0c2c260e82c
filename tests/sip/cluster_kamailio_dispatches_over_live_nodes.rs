//! Kamailio with the shipped configuration (`config/kamailio/tandem.cfg`) in front of two
//! nodes on one PostgreSQL store: SIPp's calls to echo through it are spread over both nodes;
//! once one node is killed, the dispatcher's OPTIONS probes take it out and every new call is
//! answered by the other; once it runs again, its probes put it back in.

use crate::common;
use crate::kamailio::{Kamailio, Node};
use crate::postgres::Postgres;

/// `count` echo calls through the proxy, four at a time.
fn echo_calls(proxy: &Kamailio, count: usize) -> common::SippStats {
    let scenario = common::scenario("clustered_echo_uac.xml");
    let count = count.to_string();
    common::sipp(
        proxy.addr,
        &["-sf", scenario.to_str().unwrap(), "-m", &count, "-l", "4"],
    )
}

fn logs(proxy: &Kamailio, nodes: &[&Node], sipp: &common::SippStats) -> String {
    let mut text = format!("sipp: {sipp:?}\n--- kamailio\n{}", proxy.log_text());
    for node in nodes {
        text.push_str(&format!("\n--- node {}\n{}", node.sip, node.log_text()));
    }
    text
}

#[test]
fn kamailio_spreads_calls_over_live_nodes_and_takes_a_dead_one_out() {
    let postgres = Postgres::start();
    let proxy_addr = Kamailio::reserve();
    let a = Node::start("127.0.0.2", &postgres.url(), proxy_addr, "");
    let mut b = Node::start("127.0.0.3", &postgres.url(), proxy_addr, "");
    let proxy = Kamailio::start_dispatcher(proxy_addr, &[a.sip, b.sip]);

    let stats = echo_calls(&proxy, 24);
    let why = logs(&proxy, &[&a, &b], &stats);
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 24, 0),
        "{why}"
    );
    let dispatched = proxy.invites_dispatched();
    assert_eq!(dispatched.len(), 24, "{why}");
    for node in [a.sip, b.sip] {
        assert!(
            dispatched.contains(&node.to_string()),
            "no call on {node}: {dispatched:?}\n{why}"
        );
    }

    // A crash: the probes find it and take it out.
    b.kill9();
    proxy.wait_for_log(&format!("node down sip:{}", b.sip));
    let stats = echo_calls(&proxy, 24);
    let why = logs(&proxy, &[&a], &stats);
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 24, 0),
        "{why}"
    );
    let after = &proxy.invites_dispatched()[dispatched.len()..];
    assert_eq!(after.len(), 24, "{why}");
    assert!(
        after.iter().all(|node| *node == a.sip.to_string()),
        "{after:?}\n{why}"
    );

    // Back: answering its probes again puts it back in.
    b.restart();
    proxy.wait_for_log(&format!("node up sip:{}", b.sip));
    let before = proxy.invites_dispatched().len();
    let stats = echo_calls(&proxy, 24);
    let why = logs(&proxy, &[&a, &b], &stats);
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 24, 0),
        "{why}"
    );
    let again = &proxy.invites_dispatched()[before..];
    assert!(again.contains(&b.sip.to_string()), "{again:?}\n{why}");
}

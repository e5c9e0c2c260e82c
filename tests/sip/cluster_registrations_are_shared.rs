//! A softphone registered through Kamailio with whichever node the dispatcher chose is called
//! through another node: the registration is in the shared store, and the node that took it
//! is dead by then, so the call can only have found it there.

use std::process::Command;

use crate::common;
use crate::kamailio::{Kamailio, Node};
use crate::postgres::Postgres;

const ACCOUNT: &str = "[[registrar.accounts]]\nuser = \"alice\"\npassword = \"alice-secret\"\n\
                       algorithms = [\"MD5\"]\n";

/// The rows `sql` selects, one line each (psql's unaligned output).
fn psql(postgres: &Postgres, sql: &str) -> Vec<String> {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &postgres.port.to_string()])
        .args(["-U", "tandem", "-d", "postgres", "-Atc", sql])
        .output()
        .expect("psql is installed with PostgreSQL");
    assert!(out.status.success(), "{sql}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn a_softphone_registered_through_one_node_is_called_through_another() {
    let postgres = Postgres::start();
    let proxy_addr = Kamailio::reserve();
    let mut nodes = [
        Node::start("127.0.0.2", &postgres.url(), proxy_addr, ACCOUNT),
        Node::start("127.0.0.3", &postgres.url(), proxy_addr, ACCOUNT),
    ];
    let proxy = Kamailio::start_dispatcher(proxy_addr, &[nodes[0].sip, nodes[1].sip]);

    let agent_port = common::free_port();
    common::register_on(agent_port, proxy.addr, "alice", "alice-secret");
    let registered = psql(
        &postgres,
        "SELECT node || ' ' || contact FROM registrations WHERE aor = 'alice'",
    );
    let [row] = registered.as_slice() else {
        panic!("one binding of alice: {registered:?}\n{}", proxy.log_text());
    };
    let contact = format!("sip:alice@127.0.0.1:{agent_port}");
    let took = nodes
        .iter()
        .position(|n| *row == format!("{} {contact}", n.sip))
        .unwrap_or_else(|| panic!("{row:?} names no node"));
    let other = 1 - took;
    // The other node heard of it (NOTIFY) and holds it; then the node that took it dies.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !nodes[other].log_text().contains("aor=alice bindings=1") {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never learned alice's binding:\n{}",
            nodes[other].sip,
            nodes[other].log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let dead = nodes[took].sip;
    nodes[took].kill9();
    proxy.wait_for_log(&format!("node down sip:{dead}"));

    let agent = common::scenario("clustered_agent_uas.xml");
    let softphone = common::sipp_spawn_on(
        agent_port,
        proxy.addr,
        &["-sf", agent.to_str().unwrap(), "-m", "3"],
    );
    let caller = common::scenario("clustered_trunk_uac.xml");
    let calls = common::sipp(
        proxy.addr,
        &[
            "-sf",
            caller.to_str().unwrap(),
            "-s",
            "alice",
            "-m",
            "3",
            "-l",
            "1",
        ],
    );
    let why = format!(
        "calls: {calls:?}\n--- kamailio\n{}\n--- node\n{}",
        proxy.log_text(),
        nodes[other].log_text()
    );
    assert_eq!(
        (calls.exit_code, calls.successful, calls.failed),
        (0, 3, 0),
        "{why}"
    );
    let softphone = softphone.wait();
    assert_eq!(
        (softphone.exit_code, softphone.successful, softphone.failed),
        (0, 3, 0),
        "softphone: {softphone:?}\n{why}"
    );
    // Each call reached the softphone from the surviving node, through the proxy.
    let survivor = nodes[other].sip;
    let relayed = proxy.relayed();
    let to_phone = relayed
        .iter()
        .filter(|l| l.starts_with(&format!("INVITE new from {survivor} to {contact}")))
        .count();
    assert_eq!(to_phone, 3, "{why}");

    // Unregistering (through the survivor, which holds no binding of its own) removes the
    // row.
    let unregister = common::scenario("unregister_only.xml");
    let done = common::sipp_on(
        agent_port,
        proxy.addr,
        &[
            "-sf",
            unregister.to_str().unwrap(),
            "-s",
            "alice",
            "-au",
            "alice",
            "-ap",
            "alice-secret",
            "-m",
            "1",
        ],
    )
    .wait();
    assert_eq!((done.exit_code, done.successful), (0, 1), "{done:?}\n{why}");
    let left = psql(
        &postgres,
        "SELECT contact FROM registrations WHERE aor = 'alice'",
    );
    assert!(left.is_empty(), "{left:?}");
}

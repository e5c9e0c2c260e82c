//! Several nodes as one, measured: real PostgreSQL, `nats-server` and Tandem nodes (the release
//! binary) on loopback, as the cluster tests start them.
//!
//! - **Chat messages end to end**: customers `POST chats/{id}/events` to their node, each
//!   waiting for the acknowledgement of one message before it sends the next; the latency of a
//!   message runs from its POST to the agent's desktop WebSocket receiving it. Figures for one
//!   node, for customers on node A with the agent on node B, and for customers and agents
//!   spread over two and three nodes (each chat's agent on another node than its customer):
//!   messages per second, p50/p99 latency, and the nodes' CPU time (utime + stime from
//!   `/proc/<pid>/stat`) per message: on a machine with two cores the throughput is bounded by
//!   the cores, so CPU per message shows what each extra node costs.
//! - **Takeover**: the owner of a chat is killed with SIGKILL; the time from the kill to the
//!   first message a surviving node acknowledges for that chat (bounded by the lease).
//!
//! `cargo bench --bench cluster` runs the full sizes (`-- WORD` only the layouts whose name
//! contains WORD); without `--bench` (as under `cargo test
//! --all-targets`) a small pass. Every run is bounded in count and in time; a peer that cannot
//! start (PostgreSQL, nats-server, a node) fails the bench.

#![allow(dead_code)]

#[path = "../tests/common/agent_desk.rs"]
mod agent_desk;
#[path = "../tests/cluster/nodes.rs"]
mod nodes;
#[path = "../tests/common/postgres.rs"]
mod postgres;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_desk::Desk;
use nodes::{Cluster, Setup, post};
use serde_json::json;

/// A whole run (starting excluded) may take this long; the posting stops at the bound.
const RUN_BOUND: Duration = Duration::from_secs(90);
/// A chat is offered to the agent meant for it within this long.
const OFFER_BOUND: Duration = Duration::from_secs(15);

/// Agents `agent-0` … `agent-{n-1}`, each taking up to a hundred chats, and limits on chat
/// creation raised for the load.
fn setup(agents: usize, standalone: bool) -> Setup {
    let hash = tandem::routing::password::hash("desk");
    let mut extra = String::from(
        "routing = \"ring_all\"\n\
         [chat]\nmax_chats_per_device = 100000\ncreates_per_minute_per_source = 100000\n\
         creates_burst_per_source = 100000\n[routing]\nchat_load_percent = 1\n",
    );
    for k in 0..agents {
        extra.push_str(&format!(
            "[[agents]]\nname = \"agent-{k}\"\ndisplay_name = \"Agent {k}\"\n\
             password_hash = \"{hash}\"\ndepartments = [\"claims\"]\n"
        ));
    }
    Setup {
        extra,
        standalone,
        ..Setup::default()
    }
}

/// Clock ticks of CPU (user + system) the process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

fn ticks_per_second() -> u64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output();
    out.ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The parent of process `pid`.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// CPU ticks of `pid` and its children (PostgreSQL's backends are its postmaster's children).
fn tree_cpu(pid: u32) -> u64 {
    let children: u64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| parent(p) == Some(pid))
        .map(cpu_ticks)
        .sum();
    cpu_ticks(pid) + children
}

/// CPU ticks so far of the nodes, PostgreSQL, NATS and this process (the customers and the
/// agents' desks, which share the two cores with them).
fn cpu(cluster: &Cluster) -> [u64; 4] {
    [
        cluster.nodes.iter().map(|n| cpu_ticks(n.pid())).sum(),
        cluster.postgres.pid().map_or(0, tree_cpu),
        cpu_ticks(cluster.nats.pid()),
        cpu_ticks(std::process::id()),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

/// What one run measured.
struct Figures {
    name: String,
    nodes: usize,
    messages: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    /// CPU per message of the nodes, PostgreSQL, NATS and the load (this process), µs.
    cpu_us_per_message: [f64; 4],
}

/// Where the customers and the agents of a run are: chat `i` of a cluster of `nodes` nodes is
/// opened and written through node `customer(i, nodes)` and taken by the agent whose desk is
/// on node `desk(i, nodes)`.
struct Layout {
    name: &'static str,
    nodes: usize,
    /// A gateway without `[cluster]` on the same PostgreSQL store: the cost of the cluster.
    standalone: bool,
    customer: fn(usize, usize) -> usize,
    desk: fn(usize, usize) -> usize,
}

const LAYOUTS: &[Layout] = &[
    Layout {
        name: "one gateway, no cluster",
        nodes: 1,
        standalone: true,
        customer: |_, _| 0,
        desk: |_, _| 0,
    },
    Layout {
        name: "one node cluster",
        nodes: 1,
        standalone: false,
        customer: |_, _| 0,
        desk: |_, _| 0,
    },
    Layout {
        name: "customers on A, agent on B",
        nodes: 3,
        standalone: false,
        customer: |_, _| 0,
        desk: |_, _| 1,
    },
    Layout {
        name: "2 nodes, agent on the other",
        nodes: 2,
        standalone: false,
        customer: |i, n| i % n,
        desk: |i, n| (i + 1) % n,
    },
    Layout {
        name: "3 nodes, agent on another",
        nodes: 3,
        standalone: false,
        customer: |i, n| i % n,
        desk: |i, n| (i + 1) % n,
    },
    Layout {
        name: "2 nodes, agent on the same",
        nodes: 2,
        standalone: false,
        customer: |i, n| i % n,
        desk: |i, n| i % n,
    },
    Layout {
        name: "3 nodes, agent on the same",
        nodes: 3,
        standalone: false,
        customer: |i, n| i % n,
        desk: |i, n| i % n,
    },
];

/// `chats` chats laid out as `layout` says; each customer posts `messages` messages one after
/// another.
async fn messages(layout: &Layout, chats: usize, messages: usize) -> Figures {
    let (name, n) = (layout.name, layout.nodes);
    let customer = |i: usize| (layout.customer)(i, n);
    let desk = |i: usize| (layout.desk)(i, n);
    let cluster = Cluster::start_setup(n, &setup(n, layout.standalone)).await;
    let http = cluster.http.clone();
    let mut desks = Vec::new();
    for k in 0..n {
        let addr = cluster.nodes[k].http_addr;
        desks.push(Desk::login(&http, addr, &format!("agent-{k}"), "desk").await);
    }
    // Open the chats one by one; the agent meant for each takes it.
    let mut opened = Vec::new();
    for i in 0..chats {
        let chat = cluster.open_chat(customer(i)).await;
        let agent = &mut desks[desk(i)];
        let offered = tokio::time::timeout(
            OFFER_BOUND,
            agent.until(|v| v["event"] == "offer" && v["chat_id"] == chat.as_str()),
        )
        .await;
        if offered.is_err() {
            let logs: Vec<String> = cluster
                .nodes
                .iter()
                .map(|n| format!("--- node {}\n{}", n.name, n.log()))
                .collect();
            panic!(
                "{name}: chat {i} ({chat}, opened on node {}) was not offered to the agent on \
                 node {} within {OFFER_BOUND:?}\n{}",
                customer(i),
                desk(i),
                logs.join("\n")
            );
        }
        let accepted = agent
            .command(json!({"command": "accept", "chat_id": chat}))
            .await;
        assert_eq!(accepted["event"], "ack", "accept {chat}: {accepted}");
        opened.push((chat, desk(i)));
    }
    let mut expected = vec![0usize; n];
    for (_, k) in &opened {
        expected[*k] += messages;
    }

    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let start = Instant::now();
    let deadline = start + RUN_BOUND;
    let cpu_before = cpu(&cluster);
    // Each desk reads until it has every message of its chats, or the bound.
    let mut readers = Vec::new();
    for (k, mut agent) in desks.into_iter().enumerate() {
        let expected = expected[k];
        readers.push(tokio::spawn(async move {
            let mut received = Vec::with_capacity(expected);
            while received.len() < expected && Instant::now() < deadline {
                let Some(event) = agent.frame(Duration::from_millis(500)).await else {
                    continue;
                };
                if event["event"] == "message"
                    && let Some(msg) = event["msg"].as_str()
                {
                    received.push((msg.to_string(), Instant::now()));
                }
                // What the desk saw is not kept: a long run would hold it all.
                agent.log.clear();
            }
            received
        }));
    }
    let mut writers = Vec::new();
    for (i, (chat, _)) in opened.iter().enumerate() {
        let (http, api, chat, sent) = (
            http.clone(),
            cluster.nodes[customer(i)].api(),
            chat.clone(),
            sent.clone(),
        );
        writers.push(tokio::spawn(async move {
            for m in 0..messages {
                if Instant::now() > deadline {
                    break;
                }
                let msg_id = format!("c{i}-m{m}");
                sent.lock().unwrap().insert(msg_id.clone(), Instant::now());
                if let Err(e) = post(&http, &api, &chat, &msg_id).await {
                    panic!("{msg_id} refused: {e:?}");
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("a customer failed");
    }
    let mut latencies = Vec::new();
    let mut last = start;
    for reader in readers {
        for (msg, at) in reader.await.unwrap() {
            if let Some(sent_at) = sent.lock().unwrap().get(&msg) {
                latencies.push(at.duration_since(*sent_at));
                last = last.max(at);
            }
        }
    }
    let cpu_after = cpu(&cluster);
    let posted = sent.lock().unwrap().len();
    assert_eq!(
        latencies.len(),
        posted,
        "{name}: the agents received {} of {posted} messages within {RUN_BOUND:?}",
        latencies.len()
    );
    latencies.sort();
    let elapsed = last.duration_since(start).as_secs_f64().max(1e-9);
    Figures {
        name: name.to_string(),
        nodes: n,
        messages: posted,
        per_second: posted as f64 / elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        cpu_us_per_message: std::array::from_fn(|k| {
            (cpu_after[k] - cpu_before[k]) as f64 * 1e6
                / ticks_per_second() as f64
                / posted.max(1) as f64
        }),
    }
}

/// `rounds` times: a chat opened on node A, A killed with SIGKILL, then a message posted
/// through B again and again until it is acknowledged; the time from the kill to that
/// acknowledgement. A is started again between rounds.
async fn takeover(rounds: usize) -> Vec<Duration> {
    let mut cluster = Cluster::start_setup(3, &setup(0, false)).await;
    let mut times = Vec::new();
    for round in 0..rounds {
        let chat = cluster.open_chat(0).await;
        let first = cluster.post(0, &chat, &format!("r{round}-before")).await;
        assert!(first.is_ok(), "round {round}: {first:?}");
        let killed = Instant::now();
        cluster.nodes[0].kill9();
        let bound = killed + RUN_BOUND;
        loop {
            match cluster.post(1, &chat, &format!("r{round}-after")).await {
                Ok(_) => break,
                Err((503, code)) if code == "owner_unavailable" => {}
                Err((0, _)) => {}
                Err(e) => panic!("round {round}: refused {e:?}"),
            }
            assert!(
                Instant::now() < bound,
                "round {round}: not taken over within {RUN_BOUND:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        times.push(killed.elapsed());
        cluster.nodes[0].restart();
        cluster.nodes[0].wait_ready(&cluster.http).await;
    }
    times
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // `cargo bench --bench cluster -- same` runs the layouts whose name contains `same` only.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (chats, per_chat, rounds) = if full { (40, 1500, 5) } else { (3, 5, 1) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut runs = Vec::new();
        for layout in LAYOUTS
            .iter()
            .filter(|l| only.is_empty() || only.iter().any(|o| l.name.contains(o.as_str())))
        {
            runs.push(messages(layout, chats, per_chat).await);
        }
        let taken = takeover(rounds).await;

        println!(
            "chat messages end to end, {chats} customers × {per_chat} messages each, \
             POST → agent's WebSocket"
        );
        println!(
            "{:<28} {:>5} {:>8} {:>7} {:>7} {:>7} {:>11} {:>9} {:>9} {:>9}",
            "run",
            "nodes",
            "messages",
            "msg/s",
            "p50 ms",
            "p99 ms",
            "nodes µs/m",
            "PG µs/m",
            "NATS µs/m",
            "load µs/m"
        );
        for r in &runs {
            let [nodes_cpu, pg_cpu, nats_cpu, load_cpu] = r.cpu_us_per_message;
            println!(
                "{:<28} {:>5} {:>8} {:>7.0} {:>7} {:>7} {:>11.0} {:>9.0} {:>9.0} {:>9.0}",
                r.name,
                r.nodes,
                r.messages,
                r.per_second,
                ms(r.p50),
                ms(r.p99),
                nodes_cpu,
                pg_cpu,
                nats_cpu,
                load_cpu
            );
        }
        println!(
            "(CPU per message: utime + stime from /proc/<pid>/stat over the run, of all the \
             nodes together, of PostgreSQL's postmaster and backends, of nats-server, and of \
             this process: the customers and the agents' desks)"
        );
        let listed: Vec<String> = taken.iter().map(|d| ms(*d)).collect();
        println!(
            "takeover after kill -9 of the owner (lease {} s), kill → first message acknowledged \
             through another node: {} ms",
            nodes::LEASE_S,
            listed.join(", ")
        );
    });
}

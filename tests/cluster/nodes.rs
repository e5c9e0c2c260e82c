//! A cluster on loopback for one test: a private PostgreSQL, a private `nats-server`, and
//! Tandem nodes (the real binary) on their own ports, all stopped by PID when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::postgres::Postgres;

/// How long a condition may take on a loaded machine before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// The lease of the test nodes: short, so a takeover comes quickly (never asserted).
pub const LEASE_S: u64 = 3;

pub const AUTH: &str = r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="dev-1""#;

/// A port free on both UDP and TCP now, below the kernel's ephemeral range: the ports of the
/// whole cluster are picked before its nodes start, and a port the kernel could hand to an
/// earlier node's outgoing connection (to PostgreSQL, to NATS) would be taken by then.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() % 1000) as u16;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 31_000 + ((seed * 17 + offset * 7) % 1700);
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

/// A private NATS server, where each node connects as a user of its own.
pub struct Nats {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// Starts `nats-server` on loopback with a user for each of `nodes`, who may publish
    /// anything but what `denied` names for them, and waits until it takes connections; fails
    /// the test if it cannot (scripts/test installs it).
    pub fn start(nodes: &[String], denied: &[(usize, String)]) -> Nats {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let users: Vec<String> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let deny: Vec<String> = denied
                    .iter()
                    .filter(|(n, _)| *n == i)
                    .map(|(_, subject)| format!("{subject:?}"))
                    .collect();
                format!(
                    "{{user: {node:?}, password: {:?}, permissions: {{publish: {{deny: [{}]}}}}}}",
                    Nats::password(node),
                    deny.join(", ")
                )
            })
            .collect();
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {:?} }}\n\
             authorization {{ users: [\n{}\n] }}\n",
            dir.path().join("js").display().to_string(),
            users.join(",\n")
        );
        let config_path = dir.path().join("nats.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is not installed (scripts/test installs it)");
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nats {
            child,
            port,
            _dir: dir,
        }
    }

    /// With characters a URL must percent-encode.
    fn password(node: &str) -> String {
        format!("secret/of {node}")
    }

    /// The URL node `node` connects with, its user and password in it.
    pub fn url_for(&self, node: &str) -> String {
        let password = Nats::password(node);
        let password =
            percent_encoding::utf8_percent_encode(&password, percent_encoding::NON_ALPHANUMERIC);
        format!("nats://{node}:{password}@127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Tandem node.
pub struct Node {
    pub name: String,
    pub base: String,
    /// Its HTTP socket (the customer and agent APIs).
    pub http_addr: SocketAddr,
    /// Its SIP socket.
    pub sip: SocketAddr,
    dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn api(&self) -> String {
        format!("{}/clientweb/api/v1", self.base)
    }

    /// The address of the node's HTTP API.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tandem.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["run", "--config"])
            .arg(&self.config)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tandem");
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tandem.log")).unwrap_or_default()
    }

    /// Waits until the node answers `/readyz`.
    pub async fn wait_ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {} did not become ready:\n{}", self.name, self.log());
    }

    /// `kill -9`, and reaped.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and waits until the process has exited.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node {} ignored SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the node again on the same configuration (the same node id).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// How [`Cluster::start_setup`] configures every node.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// SIP on a loopback address of each node's own (127.0.0.2, 127.0.0.3 …) rather than
    /// 127.0.0.1, so a proxy's log and a peer tell the nodes apart by address.
    pub own_addresses: bool,
    /// TOML appended to each node's configuration right after the `claims` service: keys
    /// before the first table header go into that service (`trunk = …`), tables after it
    /// add what the test needs (`[[sip.trunks]]`, `[[agents]]` …).
    pub extra: String,
    /// No `[cluster]` section: each node a gateway of its own on the shared store, as one
    /// node runs without a cluster (NATS is started all the same, and unused).
    pub standalone: bool,
    /// Subjects a node may not publish on NATS, by the node's index.
    pub nats_publish_denied: Vec<(usize, String)>,
}

/// PostgreSQL, NATS and the nodes.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub http: reqwest::Client,
    pub postgres: Postgres,
    pub nats: Nats,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts PostgreSQL, NATS and `n` nodes named `a`, `b`, `c` …, and waits until each is
    /// ready.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, "").await
    }

    /// [`Cluster::start`] with `extra` TOML in every node's configuration, right after the
    /// `claims` service's lines (so it may go on with that service, then add tables).
    pub async fn start_with(n: usize, extra: &str) -> Cluster {
        Cluster::start_on(Postgres::start(), n, extra, &|_| None).await
    }

    /// [`Cluster::start_with`] on `postgres`, node `i` reaching it at `store_of(i)` when that
    /// is set (through a proxy that can be cut, say).
    pub async fn start_on(
        postgres: Postgres,
        n: usize,
        extra: &str,
        store_of: &dyn Fn(usize) -> Option<String>,
    ) -> Cluster {
        let setup = Setup {
            extra: extra.to_string(),
            ..Setup::default()
        };
        Cluster::start_setup_on(postgres, n, &setup, store_of).await
    }

    /// As [`Cluster::start`], each node configured as `setup` says.
    pub async fn start_setup(n: usize, setup: &Setup) -> Cluster {
        Cluster::start_setup_on(Postgres::start(), n, setup, &|_| None).await
    }

    /// [`Cluster::start_on`], each node configured as `setup` says.
    pub async fn start_setup_on(
        postgres: Postgres,
        n: usize,
        setup: &Setup,
        store_of: &dyn Fn(usize) -> Option<String>,
    ) -> Cluster {
        let names: Vec<String> = (0..n)
            .map(|i| ((b'a' + i as u8) as char).to_string())
            .collect();
        let nats = Nats::start(&names, &setup.nats_publish_denied);
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("files");
        let mut nodes = Vec::new();
        for (i, name) in names.into_iter().enumerate() {
            let node_dir = dir.path().join(&name);
            std::fs::create_dir_all(&node_dir).unwrap();
            let (http, sip, rtc) = (free_port(), free_port(), free_port());
            let sip_ip = if setup.own_addresses {
                format!("127.0.0.{}", 2 + i)
            } else {
                "127.0.0.1".to_string()
            };
            let sip: SocketAddr = format!("{sip_ip}:{sip}").parse().unwrap();
            // Media ports below the ephemeral range too (see `free_port`).
            let rtp = 30_000 + i as u16 * 200;
            let cluster_section = if setup.standalone {
                String::new()
            } else {
                format!(
                    "[cluster]\nnode = \"{name}\"\nnats_url = \"{}\"\nlease_s = {LEASE_S}\n\
                     http_url = \"http://127.0.0.1:{http}\"\nsip_uri = \"sip:{sip}\"\n",
                    nats.url_for(&name)
                )
            };
            let config = format!(
                "[sip]\nlisten = \"{sip}\"\n\
                 [media]\nrtp_port_min = {rtp}\nrtp_port_max = {}\n\
                 [http]\nlisten = \"127.0.0.1:{http}\"\n\
                 [rtc]\nlisten = \"127.0.0.1:{rtc}\"\n\
                 [store]\nurl = \"{}\"\n\
                 [files]\ndir = \"{}\"\n\
                 {}\
                 [[services]]\nname = \"claims\"\nentries = [\"claims-app\"]\ndepartment = \"claims\"\n\
                 {}\n",
                rtp + 199,
                store_of(i).unwrap_or_else(|| postgres.url()),
                files.display(),
                cluster_section,
                setup.extra,
            );
            let path = node_dir.join("tandem.toml");
            std::fs::write(&path, config).unwrap();
            let mut node = Node {
                name,
                base: format!("http://127.0.0.1:{http}"),
                http_addr: format!("127.0.0.1:{http}").parse().unwrap(),
                sip,
                dir: node_dir,
                config: path,
                child: None,
            };
            node.spawn();
            nodes.push(node);
        }
        let cluster = Cluster {
            nodes,
            http: reqwest::Client::new(),
            postgres,
            nats,
            _dir: dir,
        };
        for node in &cluster.nodes {
            node.wait_ready(&cluster.http).await;
        }
        cluster
    }

    /// Opens a chat on node `i`; its id.
    pub async fn open_chat(&self, i: usize) -> String {
        let chat: Value = self
            .http
            .post(format!("{}/chats", self.nodes[i].api()))
            .header("authorization", AUTH)
            .json(&json!({"from": "Carol"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        chat["chat_id"].as_str().expect("a chat id").to_string()
    }

    /// Posts one message through node `i`: its `seq` when acknowledged, else the status and
    /// error code.
    pub async fn post(&self, i: usize, chat: &str, msg_id: &str) -> Result<u64, (u16, String)> {
        post(&self.http, &self.nodes[i].api(), chat, msg_id).await
    }

    /// Posts through node `i` until a node serves the chat ([`post_until_taken`]).
    pub async fn post_until_taken(&self, i: usize, chat: &str, msg_id: &str) -> u64 {
        post_until_taken(&self.http, &self.nodes[i].api(), chat, msg_id).await
    }

    /// The whole history of `chat`, read through node `i`.
    pub async fn history(&self, i: usize, chat: &str) -> Vec<Value> {
        let mut events: Vec<Value> = Vec::new();
        let mut before = String::new();
        loop {
            let page: Value = self
                .http
                .get(format!(
                    "{}/chats/{chat}/history{before}",
                    self.nodes[i].api()
                ))
                .header("authorization", AUTH)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mut older = page["events"].as_array().expect("a history").clone();
            older.append(&mut events);
            events = older;
            match page["next_before_seq"].as_u64() {
                Some(seq) => before = format!("?before_seq={seq}"),
                None => return events,
            }
        }
    }

    /// The store, as a test reads it.
    pub async fn store(&self) -> tandem::chat::store::Store {
        tandem::chat::store::Store::open(&self.postgres.url(), 2, Default::default())
            .await
            .unwrap()
    }
}

/// The messages' ids of a history, in order.
pub fn message_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "chat_session_message")
        .map(|e| e["msg_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Whether the seqs of `events` only go up.
pub fn strictly_increasing(events: &[Value]) -> bool {
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    seqs.windows(2).all(|w| w[0] < w[1])
}

pub fn dir_of(node: &Node) -> &Path {
    &node.dir
}

/// Posts one message to the customer API at `api`: its `seq` when acknowledged (0 for a
/// retry already stored), else the status (0: no answer) and error code.
pub async fn post(
    http: &reqwest::Client,
    api: &str,
    chat: &str,
    msg_id: &str,
) -> Result<u64, (u16, String)> {
    let sent = http
        .post(format!("{api}/chats/{chat}/events"))
        .header("authorization", AUTH)
        .json(&json!({"events": [{"event": "chat_session_message", "msg_id": msg_id, "msg": msg_id}]}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| (0, e.to_string()))?;
    let status = sent.status().as_u16();
    let body: Value = sent.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return Err((status, body["error"]["code"].as_str().unwrap_or("").into()));
    }
    Ok(body["accepted"][0]["seq"].as_u64().unwrap_or(0))
}

/// [`post`], retried while the chat's owner does not answer (it died and is not taken over
/// yet, or it is moving): only `503 owner_unavailable` (or no answer) is retried.
pub async fn post_until_taken(http: &reqwest::Client, api: &str, chat: &str, msg_id: &str) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match post(http, api, chat, msg_id).await {
            Ok(seq) => return seq,
            Err((status, code)) => {
                assert!(
                    (status == 503 && code == "owner_unavailable") || status == 0,
                    "refused: {status} {code}"
                );
                assert!(
                    Instant::now() < deadline,
                    "no node served the chat: {status} {code}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

//! Kamailio in front of the gateway: the record-routing stateful proxy of
//! `tests/kamailio/record_route.cfg`, on a private port, stopped (by PID) when dropped.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub struct Kamailio {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Kamailio {
    /// A free UDP port for the proxy, to put in the gateway's configuration before either runs.
    pub fn reserve() -> SocketAddr {
        format!("127.0.0.1:{}", super::common::free_port())
            .parse()
            .unwrap()
    }

    /// Starts the proxy on `addr` in front of the gateway at `gateway`, and waits until an
    /// OPTIONS sent to it comes back answered by the gateway.
    pub fn start(addr: SocketAddr, gateway: SocketAddr) -> Kamailio {
        let dir = tempfile::tempdir().unwrap();
        let template =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kamailio/record_route.cfg");
        let config = std::fs::read_to_string(template)
            .unwrap()
            .replace("@LISTEN@", &format!("udp:{addr}"))
            .replace("@GATEWAY@", &format!("sip:{gateway}"))
            .replace("@GATEWAY_IP@", &gateway.ip().to_string())
            .replace("@GATEWAY_PORT@", &gateway.port().to_string());
        Kamailio::spawn(addr, dir, &config)
    }

    fn wait_ready(&self) {
        if !super::common::answers_options(self.addr, Duration::from_secs(20)) {
            panic!(
                "kamailio never relayed an OPTIONS; log:\n{}",
                self.log_text()
            );
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The "relay METHOD in-dialog|new from SRC ..." lines of the proxy's log.
    pub fn relayed(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|l| l.split_once("relay ").map(|(_, rest)| rest.to_string()))
            .collect()
    }

    /// How many `method` requests the proxy relayed inside dialogs from `source` (`IP:port`).
    pub fn in_dialog_from(&self, method: &str, source: SocketAddr) -> usize {
        let prefix = format!("{method} in-dialog from {source} ");
        self.relayed()
            .iter()
            .filter(|l| l.starts_with(&prefix))
            .count()
    }

    /// In-dialog requests the proxy refused because they carried no route to it.
    pub fn unrouted(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("unrouted "))
            .map(String::from)
            .collect()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // Kamailio forks its workers; they leave with the main process on SIGTERM.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kamailio with the shipped configuration (`config/kamailio/tandem.cfg`): the dispatcher in
/// front of several Tandem nodes.
impl Kamailio {
    /// Starts the dispatcher on `addr` in front of `nodes`, and waits until an OPTIONS sent
    /// to it comes back answered by a node.
    pub fn start_dispatcher(addr: SocketAddr, nodes: &[SocketAddr]) -> Kamailio {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("tandem.list");
        let lines: String = nodes.iter().map(|n| format!("1 sip:{n} 0 0\n")).collect();
        std::fs::write(&list, lines).unwrap();
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kamailio/tandem.cfg");
        let config = std::fs::read_to_string(template)
            .unwrap()
            .replace("@LISTEN@", &format!("udp:{addr}"))
            .replace("@NODES@", list.to_str().unwrap())
            .replace("@MODULES@", "/usr/lib/x86_64-linux-gnu/kamailio/modules/")
            // One worker relays every reply in order. With several, a node's 180 relayed by
            // one can reach SIPp after its 200 relayed by another: legal over UDP (a UAC drops
            // a provisional answer after the final one), but SIPp's scenarios take it for an
            // unexpected message and abort the call.
            .replace("children=2", "children=1");
        Kamailio::spawn(addr, dir, &config)
    }

    fn spawn(addr: SocketAddr, dir: tempfile::TempDir, config: &str) -> Kamailio {
        let cfg = dir.path().join("kamailio.cfg");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.path().join("kamailio.log");
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-n", "1", "-P"])
            .arg(dir.path().join("kamailio.pid"))
            .arg("-w")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kamailio is installed (scripts/test installs Debian's kamailio)");
        let kamailio = Kamailio {
            child,
            addr,
            dir,
            log,
        };
        kamailio.wait_ready();
        kamailio
    }

    /// Waits (generously: probes time out after seconds, and the machine may be loaded) until
    /// the log has a line containing `text`.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.log_text().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("kamailio never logged {text:?}; log:\n{}", self.log_text());
    }

    /// The nodes new INVITEs were dispatched to, in order (`IP:port` of each).
    pub fn invites_dispatched(&self) -> Vec<String> {
        self.relayed()
            .iter()
            .filter(|l| l.starts_with("INVITE new from "))
            .filter_map(|l| l.split(" via sip:").nth(1))
            .map(|node| node.split_whitespace().next().unwrap_or("").to_string())
            .collect()
    }

    /// The `redirect to URI` lines: calls a node sent to the interaction's owner.
    pub fn redirects(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|l| {
                l.split_once("redirect to ")
                    .map(|(_, rest)| rest.to_string())
            })
            .collect()
    }
}

/// A Tandem node of a cluster: on its own loopback address, with a shared PostgreSQL store and
/// the dispatcher as its trunk; killed (by PID) when dropped.
pub struct Node {
    child: Option<Child>,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Node {
    /// Starts a node listening for SIP on `ip` with `store_url`, trusting `proxy` as a trunk,
    /// plus `extra` TOML for `[sip]`; waits until it answers OPTIONS.
    pub fn start(ip: &str, store_url: &str, proxy: SocketAddr, extra: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let port = super::common::free_port();
        let sip: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", super::common::free_port())
            .parse()
            .unwrap();
        let rtc = super::common::free_port();
        // RTP ports of their own, one range per node this test process starts: between the
        // SIP ports (21000–29999) and Linux's ephemeral range (32768–), where no single-node
        // gateway draws its range, so a node never races another test for a media port.
        static NODES: AtomicU16 = AtomicU16::new(0);
        let rtp = 30000 + (NODES.fetch_add(1, Ordering::Relaxed) % 13) * 200;
        let data = dir.path().display();
        let config = format!(
            "[sip]\nlisten = \"{sip}\"\necho = true\n{extra}\n\
             [[sip.trunks]]\nname = \"dispatcher\"\naddresses = [\"{proxy}\"]\n\
             [media]\nrtp_port_min = {rtp}\nrtp_port_max = {}\n\
             [http]\nlisten = \"{http}\"\n[rtc]\nlisten = \"127.0.0.1:{rtc}\"\n\
             [store]\nurl = \"{store_url}\"\n[files]\ndir = \"{data}/files\"\n",
            rtp + 199
        );
        std::fs::write(dir.path().join("tandem.toml"), config).unwrap();
        let log = dir.path().join("tandem.log");
        let mut node = Node {
            child: None,
            sip,
            http,
            dir,
            log,
        };
        node.restart();
        node
    }

    /// Starts the node (again, after [`Node::kill9`]) on the same configuration; its log goes
    /// on in the same file. Waits until it answers OPTIONS.
    pub fn restart(&mut self) {
        self.kill9();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["run", "--config"])
            .arg(self.dir.path().join("tandem.toml"))
            .env("RUST_LOG", "info,tandem::sip::shared=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tandem starts");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        if !super::common::answers_options(self.sip, Duration::from_secs(60)) {
            panic!(
                "node {} never answered OPTIONS; log:\n{}",
                self.sip,
                self.log_text()
            );
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the node with SIGKILL (by its PID), as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

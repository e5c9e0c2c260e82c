//! Kamailio in front of the gateway: the record-routing stateful proxy of
//! `tests/kamailio/record_route.cfg`, on a private port, stopped (by PID) when dropped.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

    fn wait_ready(&self) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut i = 0;
        while Instant::now() < deadline {
            i += 1;
            let options = format!(
                "OPTIONS sip:{0} SIP/2.0\r\nVia: SIP/2.0/UDP {1};branch=z9hG4bK-kready{i};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:{0}>\r\n\
                 Call-ID: kready-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                self.addr,
                socket.local_addr().unwrap()
            );
            socket.send_to(options.as_bytes(), self.addr).unwrap();
            let mut buf = [0u8; 4096];
            if let Ok((n, _)) = socket.recv_from(&mut buf)
                && buf[..n].starts_with(b"SIP/2.0 200")
            {
                return;
            }
        }
        panic!(
            "kamailio never relayed an OPTIONS; log:\n{}",
            self.log_text()
        );
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

//! The real binary on a config file, started and restarted in one data directory, so a test
//! can kill it and start it again on the same state.
#![allow(dead_code)] // each test file uses a part of it

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The running binary; killed and reaped when dropped.
pub struct Gateway(pub Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts the binary on `config` in `dir`, its log appended to `dir/tandem.log`.
pub fn start(dir: &std::path::Path, config: &std::path::Path) -> Gateway {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("tandem.log"))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["run", "--config"])
        .arg(config)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start tandem");
    Gateway(child)
}

/// Waits until `base` answers `/readyz`; fails with the log after 90 s (a restart replays the
/// store, and the suite runs on a loaded machine).
pub async fn wait_ready(http: &reqwest::Client, base: &str, dir: &std::path::Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while std::time::Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "tandem did not become ready: {}",
        std::fs::read_to_string(dir.join("tandem.log")).unwrap_or_default()
    );
}

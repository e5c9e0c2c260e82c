//! The Agent Desktop in headless Chromium for the journey tests: runs a script of
//! `tests/browser/` with node and playwright-core and talks to it line by line, so a test can
//! drive the customer's side (the customer API, SIPp, a WebRTC peer) between the page's steps.
//!
//! The script prints `{"step": NAME, …}` lines and waits for `{"go": NAME, …}` answers where
//! it needs the test to act; its last line is `{"ok": …}`. Every wait is bounded.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// How long one step of the page may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails unless node's playwright-core and Chromium are there (nothing is skipped).
pub fn check_tools() -> String {
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run scripts/test (npm install --prefix tests/browser)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/test (apt-get install chromium)"
    );
    chromium
}

pub struct DeskBrowser {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    pub seen: Vec<Value>,
}

impl DeskBrowser {
    /// Runs `tests/browser/{script}` against `base` with `args`.
    pub fn start(script: &str, base: &str, args: &[&str]) -> DeskBrowser {
        let chromium = check_tools();
        let mut child = tokio::process::Command::new("node")
            .arg(browser_dir().join(script))
            .arg(base)
            .args(args)
            .env("CHROMIUM", chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
        let stderr = tokio::spawn(async move {
            let mut all = String::new();
            while let Ok(Some(line)) = err.next_line().await {
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        DeskBrowser {
            child,
            stdin,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    async fn line(&mut self) -> Value {
        let line = tokio::time::timeout(STEP_TIMEOUT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the page took over {STEP_TIMEOUT:?}; saw {:?}", self.seen))
            .expect("node's output");
        let Some(line) = line else {
            let _ = self.child.wait().await;
            let stderr = (&mut self.stderr).await.unwrap_or_default();
            panic!(
                "the browser script ended early; saw {:#?}\nstderr:\n{stderr}",
                self.seen
            );
        };
        let value: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| json!({"step": "log", "line": line}));
        if value.get("ok") == Some(&Value::Bool(false)) {
            panic!("the browser journey failed: {value:#}");
        }
        self.seen.push(value.clone());
        value
    }

    /// Waits until the page reports `name`; its data.
    pub async fn step(&mut self, name: &str) -> Value {
        loop {
            let v = self.line().await;
            if v["step"] == name {
                return v;
            }
            if v.get("ok").is_some() {
                panic!("the journey ended before {name:?}: {v:#}");
            }
        }
    }

    /// Answers the page's `name` with `data`.
    pub async fn go(&mut self, name: &str, data: Value) {
        let mut data = if data.is_object() { data } else { json!({}) };
        data["go"] = json!(name);
        let line = format!("{data}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Waits for the page's `name`, then answers it.
    pub async fn answer(&mut self, name: &str, data: Value) -> Value {
        let asked = self.step(name).await;
        self.go(name, data).await;
        asked
    }

    /// The journey's last line (`ok` true), once the script exits.
    pub async fn finish(mut self) -> Value {
        loop {
            let v = self.line().await;
            if v.get("ok").is_some() {
                let status = self.child.wait().await.unwrap();
                assert!(status.success(), "{v:#}");
                return v;
            }
        }
    }
}

/// Waits until `/metrics` shows every gauge an idle gateway has: no interactions, calls,
/// peers, legs or agent sockets left behind by the journey.
pub fn assert_idle(gateway: &crate::common::Gateway) {
    for line in [
        "tandem_open_interactions 0",
        "tandem_agent_sockets 0",
        "tandem_sip_calls 0",
        "tandem_webrtc_peers 0",
        "tandem_media_legs 0",
        "tandem_app_calls 0",
    ] {
        wait_metric(gateway, line);
    }
}

fn wait_metric(gateway: &crate::common::Gateway, line: &str) {
    let mut metrics = String::new();
    for _ in 0..200 {
        metrics = gateway.http_get("/metrics");
        if metrics.lines().any(|l| l == line) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("/metrics never showed {line:?}:\n{metrics}");
}

//! The mobile operator's phones in headless Chromium, driven by `tests/browser/mobile_operator.mjs`
//! (playwright-core, Playwright's "Pixel 7" emulation, one browser context per device). A test
//! sends steps and reads their outcomes; a failed step fails the test with what the page showed.
//! Missing Chromium, Node or playwright-core fail the test: nothing is skipped.
#![allow(dead_code)] // each test file uses a part of the harness

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// The bound on one step (each step waits at most 60 s inside the browser).
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Phones {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    next: u64,
    /// Where screenshots go.
    pub shots: PathBuf,
    stderr: PathBuf,
}

impl Phones {
    /// Starts the driver; screenshots go to `target/<shots>/`.
    pub async fn start(shots: &str) -> Phones {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let browser_dir = root.join("tests/browser");
        assert!(
            browser_dir.join("node_modules/playwright-core").is_dir(),
            "playwright-core is missing: run scripts/test (npm install --prefix tests/browser)"
        );
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            Path::new(&chromium).exists(),
            "{chromium} is missing: run scripts/test (apt-get install chromium)"
        );
        let shots = root.join("target").join(shots);
        std::fs::create_dir_all(&shots).unwrap();
        let stderr = shots.join("driver.log");
        let mut child = tokio::process::Command::new("node")
            .arg(browser_dir.join("mobile_operator.mjs"))
            .arg(&shots)
            .env("CHROMIUM", &chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Phones {
            child,
            stdin,
            stdout,
            next: 0,
            shots,
            stderr,
        }
    }

    /// Runs `step`; its outcome, whether it worked or not.
    pub async fn try_step(&mut self, mut step: Value) -> Value {
        self.next += 1;
        step["id"] = json!(self.next);
        let line = format!("{step}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        loop {
            let read = tokio::time::timeout(STEP_TIMEOUT, self.stdout.next_line()).await;
            let line = match read {
                Ok(Ok(Some(line))) => line,
                other => panic!(
                    "the browser driver did not answer {step}: {other:?}\n{}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                ),
            };
            // Anything else on stdout (a stray log line) is not an answer.
            if let Ok(answer) = serde_json::from_str::<Value>(&line)
                && answer["id"] == self.next
            {
                return answer;
            }
        }
    }

    /// Runs `step`, which must work; its outcome.
    pub async fn step(&mut self, step: Value) -> Value {
        let answer = self.try_step(step.clone()).await;
        assert_eq!(
            answer["ok"], true,
            "step {step} failed: {}\npage showed: {:#}",
            answer["error"], answer["seen"]
        );
        answer
    }

    pub async fn open(&mut self, device: &str, url: &str) -> Value {
        self.step(json!({"do": "open", "device": device, "url": url}))
            .await
    }

    pub async fn reload(&mut self, device: &str) -> Value {
        self.step(json!({"do": "reload", "device": device})).await
    }

    /// Waits for `body[data-state=state]`; what the page shows then.
    pub async fn state(&mut self, device: &str, state: &str) -> Value {
        self.step(json!({"do": "state", "device": device, "state": state}))
            .await
    }

    /// Waits until an element of `role` (named `name`, if given) shows `text`; its text.
    pub async fn see(
        &mut self,
        device: &str,
        role: &str,
        name: Option<&str>,
        text: &str,
    ) -> String {
        let mut step = json!({"do": "see", "device": device, "role": role, "text": text});
        if let Some(name) = name {
            step["name"] = json!(name);
        }
        self.step(step).await["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until the chat's log shows an item with `text`.
    pub async fn see_in_log(&mut self, device: &str, text: &str) -> String {
        let step = json!({"do": "see", "device": device, "role": "listitem", "text": text});
        self.step(step).await["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until the call's status (in the Customer panel) shows `text`.
    pub async fn see_call(&mut self, device: &str, text: &str) -> String {
        let step = json!({"do": "see", "device": device, "role": "status", "text": text,
                          "within": {"role": "region", "name": "Customer"}});
        self.step(step).await["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Taps the button named `name` (inside the dialog or region `within`, if given).
    pub async fn tap(&mut self, device: &str, name: &str, within: Option<(&str, &str)>) {
        let mut step = json!({"do": "click", "device": device, "role": "button", "name": name});
        if let Some((role, name)) = within {
            step["within"] = json!({"role": role, "name": name});
        }
        self.step(step).await;
    }

    pub async fn fill(&mut self, device: &str, label: &str, text: &str) {
        self.step(json!({"do": "fill", "device": device, "label": label, "text": text}))
            .await;
    }

    /// Waits until a picture in the chat has rendered; `{alt, natural_width, natural_height}`.
    pub async fn picture(&mut self, device: &str) -> Value {
        self.step(json!({"do": "picture", "device": device})).await
    }

    /// What the page shows now.
    pub async fn look(&mut self, device: &str) -> Value {
        self.step(json!({"do": "look", "device": device})).await
    }

    pub async fn scroll(&mut self, device: &str, to: &str) {
        self.step(json!({"do": "scroll", "device": device, "to": to}))
            .await;
    }

    /// Saves `target/<shots>/<name>.png`.
    pub async fn screenshot(&mut self, device: &str, name: &str) -> PathBuf {
        self.step(json!({"do": "screenshot", "device": device, "name": name}))
            .await;
        self.shots.join(format!("{name}.png"))
    }

    pub async fn quit(mut self) {
        self.try_step(json!({"do": "quit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

//! Headless Chromium driven from a test, one command at a time: `tests/browser/webchat_driver.mjs`
//! (playwright-core) reads JSON commands on stdin and answers each on stdout, so a test can
//! interleave what the customer does in the browser with what the agent does over the agent
//! API, and assert on what the customer sees.
//!
//! Controls are found by role and accessible name, fields by their label, as a person finds
//! them. Every command is bounded (the driver's own step limit, and [`COMMAND_TIMEOUT`] here);
//! a failed one fails the test with the page's console. Chromium, Node and playwright-core
//! missing fail the test: nothing is skipped.
#![allow(dead_code)] // each test file uses a part of it

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// The bound on one command (the driver gives each step 20 s of its own).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The screen the customer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// A desktop window, 1280×860.
    Desktop,
    /// Playwright's emulation of a Pixel 7: 412×839, touch, a mobile user agent.
    Phone,
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Device::Desktop => "desktop",
            Device::Phone => "phone",
        }
    }
}

/// One page (with its own browser context: storage, permissions, network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page(pub u64);

pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next: u64,
    /// Where screenshots go.
    pub shots: PathBuf,
}

/// The folder of the browser scripts.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

impl Browser {
    /// Starts the driver (and Chromium in it); screenshots go under
    /// `target/chat-screenshots/<folder>`.
    pub async fn launch(folder: &str) -> Browser {
        let dir = browser_dir();
        assert!(
            dir.join("node_modules/playwright-core").is_dir(),
            "playwright-core is missing: run scripts/test (npm install --prefix tests/browser)"
        );
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            Path::new(&chromium).exists(),
            "{chromium} is missing: run scripts/test (apt-get install chromium)"
        );
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("webchat_driver.mjs"))
            .env("CHROMIUM", &chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let shots = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/chat-screenshots")
            .join(folder);
        Browser {
            child,
            stdin,
            lines,
            next: 1,
            shots,
        }
    }

    /// Runs one command; its value, or `Err` with the driver's message.
    pub async fn try_call(&mut self, mut command: Value) -> Result<Value, String> {
        let id = self.next;
        self.next += 1;
        command["id"] = json!(id);
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .expect("the driver's output")
                    .expect("the driver answers (it exited)");
                // Anything that is not an answer (a stray log line) is passed over.
                if let Ok(answer) = serde_json::from_str::<Value>(&line)
                    && answer["id"] == json!(id)
                {
                    return answer;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {command} within {COMMAND_TIMEOUT:?}"));
        if answer["ok"] == true {
            Ok(answer["value"].clone())
        } else {
            Err(answer["error"].as_str().unwrap_or("?").to_string())
        }
    }

    /// Runs one command on `page`; fails the test with the page's console if it fails.
    pub async fn on(&mut self, page: Page, mut command: Value) -> Value {
        command["page"] = json!(page.0);
        match self.try_call(command.clone()).await {
            Ok(value) => value,
            Err(error) => {
                let console = self
                    .try_call(json!({"cmd": "console", "page": page.0}))
                    .await
                    .unwrap_or_default();
                let shot = self.shots.join("failure.png");
                let _ = self
                    .try_call(json!({"cmd": "screenshot", "page": page.0,
                                     "path": shot.display().to_string()}))
                    .await;
                panic!(
                    "{command} failed: {error}\npage console:\n{}\n(screenshot: {})",
                    console
                        .as_array()
                        .map(|l| l
                            .iter()
                            .map(|v| v.as_str().unwrap_or("").to_string())
                            .collect::<Vec<_>>()
                            .join("\n"))
                        .unwrap_or_default(),
                    shot.display()
                )
            }
        }
    }

    /// Opens `url` on `device`, with the browser's location at `geolocation` if given.
    pub async fn open(
        &mut self,
        url: &str,
        device: Device,
        geolocation: Option<(f64, f64)>,
    ) -> Page {
        let mut command = json!({"cmd": "open", "url": url, "device": device.name()});
        if let Some((latitude, longitude)) = geolocation {
            command["geolocation"] = json!({"latitude": latitude, "longitude": longitude});
        }
        let page = self
            .try_call(command)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        Page(page.as_u64().unwrap())
    }

    /// Opens `url` on `device` with the browser's `permissions` granted instead of the
    /// customer's (camera, microphone, geolocation): the agent's desk wants notifications.
    pub async fn open_granting(&mut self, url: &str, device: Device, permissions: &[&str]) -> Page {
        let command = json!({"cmd": "open", "url": url, "device": device.name(),
                             "permissions": permissions});
        let page = self
            .try_call(command)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        Page(page.as_u64().unwrap())
    }

    pub async fn click(&mut self, page: Page, role: &str, name: &str) {
        self.on(page, json!({"cmd": "click", "role": role, "name": name}))
            .await;
    }

    pub async fn fill(&mut self, page: Page, label: &str, text: &str) {
        self.on(page, json!({"cmd": "fill", "label": label, "text": text}))
            .await;
    }

    /// Chooses `option` in the drop-down labelled `label`.
    pub async fn select(&mut self, page: Page, label: &str, option: &str) {
        self.on(
            page,
            json!({"cmd": "select", "label": label, "option": option}),
        )
        .await;
    }

    /// Clicks the control `role` named `name` inside the landmark or control `within`
    /// (`(role, name)`), as a person looks for a button in one panel.
    pub async fn click_in(&mut self, page: Page, within: (&str, &str), role: &str, name: &str) {
        self.on(
            page,
            json!({"cmd": "click", "role": role, "name": name,
                   "within": {"role": within.0, "name": within.1}}),
        )
        .await;
    }

    /// Waits until `text` (a substring) is shown inside `within` (`(role, name)`).
    pub async fn sees_in(&mut self, page: Page, within: (&str, &str), text: &str) {
        self.on(
            page,
            json!({"cmd": "wait", "text": text,
                   "within": {"role": within.0, "name": within.1}}),
        )
        .await;
    }

    /// Waits until the control `role` named `name` is shown.
    pub async fn shows(&mut self, page: Page, role: &str, name: &str) {
        self.on(page, json!({"cmd": "wait", "role": role, "name": name}))
            .await;
    }

    /// Waits until the control `role` named `name` is gone or hidden.
    pub async fn hides(&mut self, page: Page, role: &str, name: &str) {
        self.on(
            page,
            json!({"cmd": "wait", "role": role, "name": name, "state": "hidden"}),
        )
        .await;
    }

    /// Waits until `text` is shown somewhere in the page (a substring).
    pub async fn sees(&mut self, page: Page, text: &str) {
        self.on(page, json!({"cmd": "wait", "text": text})).await;
    }

    /// How many elements show `text` (a substring) now.
    pub async fn count_text(&mut self, page: Page, text: &str) -> u64 {
        self.on(page, json!({"cmd": "count", "text": text}))
            .await
            .as_u64()
            .unwrap()
    }

    /// How many controls `role` named `name` there are now.
    pub async fn count(&mut self, page: Page, role: &str, name: &str) -> u64 {
        self.on(page, json!({"cmd": "count", "role": role, "name": name}))
            .await
            .as_u64()
            .unwrap()
    }

    /// The inner text of the first element `role` named `name`.
    pub async fn text(&mut self, page: Page, role: &str, name: &str) -> String {
        self.on(page, json!({"cmd": "text", "role": role, "name": name}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The value of a JavaScript expression in the page (promises are awaited).
    pub async fn eval(&mut self, page: Page, js: &str) -> Value {
        self.on(page, json!({"cmd": "eval", "js": js})).await
    }

    /// Polls `js` until it is true (`what` says what is awaited), within `within`.
    pub async fn until(&mut self, page: Page, what: &str, js: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.eval(page, js).await == json!(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let console = self.on(page, json!({"cmd": "console"})).await;
                panic!("never: {what} ({js})\nconsole: {console:#}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Saves a screenshot as `<shots>/<name>.png`.
    pub async fn screenshot(&mut self, page: Page, name: &str) {
        let path = self.shots.join(format!("{name}.png"));
        self.on(
            page,
            json!({"cmd": "screenshot", "path": path.display().to_string()}),
        )
        .await;
    }

    /// Gives a file to the file input labelled `label`.
    pub async fn attach(&mut self, page: Page, label: &str, name: &str, mime: &str, bytes: &[u8]) {
        self.on(
            page,
            json!({"cmd": "files", "label": label,
                   "files": [{"name": name, "mimeType": mime, "hex": hex::encode(bytes)}]}),
        )
        .await;
    }

    pub async fn quit(mut self) {
        let _ = self.stdin.write_all(b"{\"cmd\":\"quit\"}\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

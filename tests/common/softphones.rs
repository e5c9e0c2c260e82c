//! Real softphones for interop tests: baresip and linphonec, headless, each in its own
//! directory, stopped (by PID) when dropped.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

/// A running baresip with its own configuration directory.
pub struct Baresip {
    child: Child,
    pub home: tempfile::TempDir,
    /// The SIP port it listens on (UDP/TCP; TLS one above).
    pub port: u16,
}

impl Baresip {
    /// Starts baresip listening on loopback with `accounts` (its `accounts` file, one account
    /// per line) and `extra` lines for its `config`; a sine tone is its microphone and a WAV
    /// file its speaker, so no sound card is needed. It quits by itself after `seconds`.
    pub fn start(accounts: &str, extra: &str, seconds: u32) -> Baresip {
        let (home, port) = baresip_home(accounts, extra);
        let log = std::fs::File::create(home.path().join("baresip.log")).unwrap();
        let child = Command::new("baresip")
            .arg("-f")
            .arg(home.path())
            .args(["-t", &seconds.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip is installed (scripts/test installs Debian's baresip)");
        Baresip { child, home, port }
    }

    /// Runs baresip (set up as [`Baresip::start`] does) to dial `target` once and quit after
    /// `seconds`; what it printed.
    pub fn dial_once(target: &str, accounts: &str, extra: &str, seconds: u32) -> String {
        let (home, _) = baresip_home(accounts, extra);
        let output = Command::new("baresip")
            .arg("-f")
            .arg(home.path())
            .args(["-e", &format!("/dial {target}"), "-t", &seconds.to_string()])
            .stdin(Stdio::null())
            .output()
            .expect("baresip is installed (scripts/test installs Debian's baresip)");
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("baresip.log")).unwrap_or_default()
    }
}

/// A baresip configuration directory and the port it listens on.
fn baresip_home(accounts: &str, extra: &str) -> (tempfile::TempDir, u16) {
    let home = tempfile::tempdir().unwrap();
    let port = super::common::free_port();
    std::fs::write(
        home.path().join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{port}\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule ausine.so\nmodule aufile.so\n\
             module account.so\nmodule menu.so\naudio_player aufile,{}\naudio_source ausine,440\n\
             ausrc_srate 48000\nausrc_channels 2\n{extra}",
            home.path().join("heard.wav").display()
        ),
    )
    .unwrap();
    std::fs::write(home.path().join("accounts"), accounts).unwrap();
    (home, port)
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running linphonec, driven through its standard input.
pub struct Linphone {
    child: Child,
    stdin: Option<ChildStdin>,
    pub home: tempfile::TempDir,
}

impl Linphone {
    /// Starts linphonec with `rc` as its configuration (no IPv6, audio from and to files).
    /// It opens no SIP socket unless `$HOME/.local/share/linphone` exists, so it gets a home.
    pub fn start(rc: &str) -> Linphone {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".local/share/linphone")).unwrap();
        let rc_path = home.path().join("rc");
        std::fs::write(&rc_path, rc).unwrap();
        let log = std::fs::File::create(home.path().join("linphonec.log")).unwrap();
        let mut child = Command::new("linphonec")
            .arg("-c")
            .arg(&rc_path)
            .args(["-d", "3", "-l"])
            .arg(home.path().join("linphone-debug.log"))
            .env("HOME", home.path())
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("linphonec is installed (scripts/test installs Debian's linphone-cli)");
        let stdin = child.stdin.take();
        Linphone { child, stdin, home }
    }

    /// Types a command at its prompt.
    pub fn command(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    pub fn log(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        read(&self.home.path().join("linphonec.log"))
            + &read(&self.home.path().join("linphone-debug.log"))
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        self.command("quit");
        drop(self.stdin.take());
        for _ in 0..30 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

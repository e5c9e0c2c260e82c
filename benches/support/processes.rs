//! The processes a bench runs beside itself, and what `/proc` says about them: the real
//! `tandem` binary with a generated config, SIPp, free loopback ports, CPU and memory.
//!
//! Every process is started here with its own directory, and killed by its PID when its handle
//! is dropped, so a bench that fails half-way leaves nothing behind.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A port free on both UDP and TCP right now, from the kernel's ephemeral range.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a loopback TCP port")
            .port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The first even port of `len` consecutive UDP ports free right now, between 10000 and 20000:
/// below the kernel's ephemeral range (which the clients' sockets take) and the test suite's
/// ranges. The search starts at a place that depends on the PID, so runs side by side differ.
pub fn free_udp_run(len: u16) -> u16 {
    let span = 10_000 - len;
    let mut base = 10_000 + (std::process::id() as u16 % span) / 2 * 2;
    for _ in 0..span / 2 {
        match (base..base + len).find(|p| UdpSocket::bind(("127.0.0.1", *p)).is_err()) {
            None => return base,
            Some(busy) => base = busy + 1 + busy % 2,
        }
        if base + len >= 20_000 {
            base = 10_000;
        }
    }
    panic!("no run of {len} free UDP ports between 10000 and 20000");
}

trait DieWithBench {
    /// Has the kernel kill the child if the bench dies first (a signal, a timeout), when no
    /// `Drop` runs.
    fn die_with_bench(&mut self) -> &mut Self;
}

impl DieWithBench for Command {
    fn die_with_bench(&mut self) -> &mut Self {
        // SAFETY: prctl is async-signal-safe, as code between fork and exec must be.
        unsafe {
            self.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            })
        }
    }
}

/// The gateway binary run with a config file written for the bench, logging to a file.
pub struct Gateway {
    child: Child,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Gateway {
    /// Starts `tandem run` on fresh loopback ports (SIP, HTTP, WebRTC) with the store in a
    /// temporary directory; `extra` is the rest of the config and must not repeat `[sip]`,
    /// `[http]`, `[rtc]`, `[store]` or `[files]`, whose keys come as `sip`, `http`, `rtc`.
    pub fn start(sip: &str, http: &str, rtc: &str, extra: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let sip_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let http_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let rtc_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let data = dir.path().display();
        let config = format!(
            "[sip]\nlisten = \"{sip_addr}\"\n{sip}\n[http]\nlisten = \"{http_addr}\"\n{http}\n\
             [rtc]\nlisten = \"{rtc_addr}\"\n{rtc}\n[store]\nurl = \"sqlite://{data}/tandem.db\"\n\
             [files]\ndir = \"{data}/files\"\n{extra}\n"
        );
        let path = dir.path().join("tandem.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.path().join("tandem.log");
        let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .die_with_bench()
            .args(["run", "--config"])
            .arg(&path)
            // The driver's debug lines include each closed media leg's packet counts.
            .env("RUST_LOG", "info,tandem::sip::driver=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the tandem binary starts");
        Gateway {
            child,
            sip: sip_addr,
            http: http_addr,
            dir,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) until `/readyz` answers 200.
    pub async fn ready(&mut self, http: &reqwest::Client) {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("tandem exited with {status}:\n{}", self.log_text());
            }
            let url = format!("http://{}/readyz", self.http);
            if let Ok(r) = http.get(url).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("tandem never got ready:\n{}", self.log_text());
    }

    /// The value of the gauge `name` (no labels) on `/metrics`.
    pub async fn gauge(&self, http: &reqwest::Client, name: &str) -> Option<f64> {
        let text = http
            .get(format!("http://{}/metrics", self.http))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `(packets_in, packets_out)` of every media leg the gateway closed, from its log.
    pub fn closed_legs(&self) -> Vec<(u64, u64)> {
        let number = |line: &str, key: &str| -> Option<u64> {
            let at = line.find(key)? + key.len();
            line[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        self.log_text()
            .lines()
            .filter(|l| l.contains("media leg closed"))
            .filter_map(|l| Some((number(l, "packets_in: ")?, number(l, "packets_out: ")?)))
            .collect()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIPp as a UAS on `port`, running `scenario` for `calls` calls (then it exits), echoing RTP
/// on `media_port`, bounded by `timeout` in all.
pub struct Sipp {
    child: Child,
    dir: tempfile::TempDir,
}

/// What SIPp's `-trace_stat` file says at the end.
#[derive(Debug)]
pub struct SippStats {
    pub exit_code: Option<i32>,
    pub successful: u64,
    pub failed: u64,
    pub retransmissions: u64,
}

impl Sipp {
    pub fn answer(
        scenario: &Path,
        port: u16,
        media_port: u16,
        echo_port: u16,
        calls: usize,
        timeout: Duration,
    ) -> Sipp {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("sipp")
            .die_with_bench()
            .args(["-sf", scenario.to_str().unwrap()])
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            // SIPp's own media sockets: the scenario's SDP names `echo_port`, where the bench
            // echoes, so SIPp's echo (one socket with the system's default buffer for every
            // call) is not what the gateway's audio is judged by.
            .args(["-mp", &media_port.to_string()])
            .args(["-key", "echo_port", &echo_port.to_string()])
            .args(["-m", &calls.to_string()])
            // Without a large buffer, SIPp's UDP socket overflows under bursts of INVITEs.
            .args(["-buff_size", "4194304", "-nostdin"])
            .args([
                "-timeout",
                &format!("{}s", timeout.as_secs()),
                "-timeout_error",
            ])
            .args(["-trace_stat", "-fd", "1", "-stf", "stats.csv"])
            .args(["-trace_err", "-error_file", "errors.log"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp is installed (Debian's sip-tester)");
        Sipp { child, dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `within` for SIPp to exit by itself (killing it otherwise), then reads its
    /// statistics.
    pub async fn finish(mut self, within: Duration) -> SippStats {
        let deadline = tokio::time::Instant::now() + within;
        let mut exit_code = None;
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                exit_code = status.code();
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stats = std::fs::read_to_string(self.dir.path().join("stats.csv")).unwrap_or_default();
        let columns: Vec<&str> = stats.lines().last().unwrap_or("").split(';').collect();
        // 0-based: 15 is "SuccessfulCall(C)", 17 "FailedCall(C)", 57 retransmissions.
        let column = |i: usize| columns.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
        SippStats {
            exit_code,
            successful: column(15),
            failed: column(17),
            retransmissions: column(57),
        }
    }

    /// SIPp's error log (unexpected messages, failed regexps).
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("errors.log")).unwrap_or_default()
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Seconds of CPU (user + system) process `pid` has used so far ("self" for this one).
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in MiB.
pub fn status_mib(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The machine's load averages over 1, 5 and 15 minutes.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The machine's CPU time so far, in seconds: `(busy, all)` summed over every core
/// (`/proc/stat`); busy is everything but idle and I/O wait.
pub fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let all: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    ((all - idle) as f64 / hz, all as f64 / hz)
}

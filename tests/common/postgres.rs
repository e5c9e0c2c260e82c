//! A private PostgreSQL server on loopback for one test binary. It panics (the test fails)
//! when the server cannot be started: a store test never silently skips PostgreSQL.

use std::path::PathBuf;
use std::process::Command;

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is not installed (scripts/test installs it)")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("no /usr/lib/postgresql/*/bin/initdb");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_str().unwrap().to_string();
        // initdb refuses root: the server runs as the postgres user in a directory it owns.
        let root = is_root();
        if root {
            run(Command::new("chown").args(["postgres", &path]));
        }
        let as_postgres = |program: PathBuf| {
            if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            }
        };
        run(as_postgres(bin.join("initdb"))
            .args(["-D", &format!("{path}/data"), "-A", "trust", "-U", "tandem"])
            .arg("--no-sync"));
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        run(as_postgres(bin.join("pg_ctl")).args([
            "-D",
            &format!("{path}/data"),
            "-o",
            &format!("-k {path} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"),
            "-l",
            &format!("{path}/log"),
            "-w",
            "start",
        ]));
        Postgres { dir, bin, port }
    }

    pub fn url(&self) -> String {
        format!("postgres://tandem@127.0.0.1:{}/postgres", self.port)
    }
}

fn is_root() -> bool {
    // `id -u` rather than libc, to keep the test free of unsafe code.
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let path = self.dir.path().to_str().unwrap().to_string();
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = c
            .args(["-D", &format!("{path}/data"), "-m", "immediate", "stop"])
            .output();
    }
}

impl Postgres {
    /// The server's main process (the postmaster), from its pid file; its backends are its
    /// children.
    pub fn pid(&self) -> Option<u32> {
        let file = self.dir.path().join("data/postmaster.pid");
        let text = std::fs::read_to_string(file).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

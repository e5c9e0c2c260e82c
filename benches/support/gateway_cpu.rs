//! The gateway on a runtime of its own, so that its CPU time can be told from its clients'.

use std::time::Duration;

/// A runtime for the gateway's tasks: two workers, as on the machine, named `gateway`.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gateway")
        .enable_all()
        .build()
        .unwrap()
}

/// CPU time so far of the gateway's threads: its runtime's and SQLite's workers
/// (`/proc/self/task/*/schedstat`).
pub fn used() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let nanos = tasks
        .flatten()
        .filter(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            comm.starts_with("gateway") || comm.starts_with("sqlx-sqlite")
        })
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum();
    Duration::from_nanos(nanos)
}

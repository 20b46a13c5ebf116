//! A bounded SQL writer for tests and examples of failure under writes: one row committed
//! per `psql` call (each call a new connection, as a web request's), numbered, each
//! acknowledged commit recorded with when it was acknowledged; then a count of what was lost.

#![allow(dead_code)] // each test and example uses its own subset

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Rows a writer commits at most, whatever happens.
pub const MAX_ROWS: u64 = 5_000;
/// The longest a writer runs, whatever happens.
pub const MAX_WRITING: Duration = Duration::from_secs(60);

/// `sql` through psql at `url` (2 s to connect); its output, or why it failed.
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([url, "-X", "-tAc", sql])
        .env("PGCONNECT_TIMEOUT", "2")
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A writer inserting `1, 2, 3, ...` into `table (id bigint primary key)` until stopped.
#[derive(Debug)]
pub struct Writer {
    started: Instant,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(u64, Duration)>>,
}

impl Writer {
    /// Starts writing to `table` at `url`.
    pub fn start(url: &str, table: &str) -> Writer {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let (url, table, halt) = (url.to_string(), table.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut id = 0;
            while !halt.load(Ordering::Acquire) && id < MAX_ROWS && started.elapsed() < MAX_WRITING
            {
                id += 1;
                if psql(&url, &format!("insert into {table} values ({id})")).is_ok() {
                    acked.push((id, started.elapsed()));
                }
            }
            acked
        });
        Writer {
            started,
            stop,
            thread,
        }
    }

    /// Since it started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops it; every acknowledged row and when (since the start).
    pub fn stop(self) -> Vec<(u64, Duration)> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

/// What a run of writes around a failure at `failed_at` shows.
#[derive(Debug)]
pub struct Tally {
    /// Acknowledged commits.
    pub acked: usize,
    /// Of them, before the failure.
    pub before: usize,
    /// From the failure to the first commit acknowledged after it.
    pub resumed: Option<Duration>,
    /// Acknowledged rows not in the table.
    pub lost: Vec<u64>,
    /// Rows in the table (a commit may land without its acknowledgement reaching the writer).
    pub rows: usize,
}

/// Reads `table` at `url` and counts what the writes `acked` left.
pub fn tally(
    url: &str,
    table: &str,
    acked: &[(u64, Duration)],
    failed_at: Duration,
) -> Result<Tally, String> {
    let present: BTreeSet<u64> = psql(url, &format!("select id from {table}"))?
        .lines()
        .map(|l| l.parse().map_err(|e| format!("{l:?}: {e}")))
        .collect::<Result<_, String>>()?;
    Ok(Tally {
        acked: acked.len(),
        before: acked.iter().filter(|(_, t)| *t < failed_at).count(),
        resumed: acked
            .iter()
            .find(|(_, t)| *t > failed_at)
            .map(|(_, t)| *t - failed_at),
        lost: acked
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !present.contains(id))
            .collect(),
        rows: present.len(),
    })
}

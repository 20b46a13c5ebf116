//! One container process: how it is started, how its output reaches the Log service, how it
//! is stopped, measured and health-checked, and how an orphan of a killed program is found.
//!
//! Each process leads its own process group, so a stop reaches everything it started (a
//! shell's children too). Its stdout and stderr are read line by line and sent to the Log
//! service in batches (every 100 ms or 1,000 lines), as the awslogs driver does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mvi_core::log::{LogEvent, Logs};
use mvi_core::metric::{Datum, Metrics, Unit};
use mvi_core::{ErrorKind, Op, Result};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::sim::Sim;

/// Longest log event; longer lines are split (CloudWatch Logs takes 256 KiB per event).
const MAX_LINE: u64 = 256 * 1024 - 26;
/// Lines sent in one batch at most.
const BATCH_LINES: usize = 1_000;
/// How long a line may wait for its batch.
const BATCH_DELAY: Duration = Duration::from_millis(100);
/// Variables of the host passed to containers (everything else is the image's and spec's).
const HOST_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER"];

/// What to start.
#[derive(Debug)]
pub(crate) struct Launch {
    pub argv: Vec<String>,
    pub rootfs: PathBuf,
    pub working_dir: PathBuf,
    /// Environment, secrets included: never shown by Debug.
    pub env: SecretEnv,
}

/// An environment whose values may be secret: `Debug` shows the names only.
pub(crate) struct SecretEnv(pub BTreeMap<String, zeroize::Zeroizing<String>>);

impl std::fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// A process record kept in the state, so the next open can find an orphan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PidRecord {
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22): tells our process
    /// from another that got the same pid later.
    pub start_ticks: u64,
}

/// A started process.
#[derive(Debug)]
pub(crate) struct Running {
    pub child: Child,
    pub record: PidRecord,
    /// Ends once both output pipes are closed and the last batch is sent.
    pub pump: JoinHandle<()>,
}

/// Starts `launch` in its own process group, its output going to `group`/`stream`.
pub(crate) fn start(
    op: Op,
    launch: &Launch,
    logs: Arc<dyn Logs>,
    sim: Arc<Sim>,
    group: String,
    stream: String,
) -> Result<Running> {
    let Some((program, args)) = launch.argv.split_first() else {
        return Err(op.invalid(
            "command",
            "nothing to run: the image has no entrypoint or cmd and the spec no command",
        ));
    };
    let program = resolve_program(&launch.rootfs, &launch.working_dir, program);
    let mut cmd = Command::new(&program);
    cmd.args(args)
        .current_dir(&launch.working_dir)
        .env_clear()
        .envs(
            HOST_ENV
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))),
        )
        .envs(launch.env.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        op.err(
            ErrorKind::InvalidArgument,
            program.display().to_string(),
            format!("cannot start the container's program: {e}"),
        )
    })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    let record = PidRecord {
        pid,
        start_ticks: start_ticks(pid).unwrap_or(0),
    };
    let (tx, rx) = mpsc::channel(4 * BATCH_LINES);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(read_lines(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(read_lines(err, tx.clone()));
    }
    drop(tx);
    let pump = tokio::spawn(send_batches(rx, logs, sim, group, stream));
    Ok(Running {
        child,
        record,
        pump,
    })
}

/// `/app/run.sh` is looked up in the image first, `./run.sh` in the working directory, a bare
/// name on `PATH` (the host's: processes are not chrooted).
fn resolve_program(rootfs: &Path, working_dir: &Path, program: &str) -> PathBuf {
    let path = Path::new(program);
    if path.is_absolute() {
        let in_image = super::rootfs::inside(rootfs, program);
        if in_image.exists() {
            return in_image;
        }
        return path.to_path_buf();
    }
    if program.contains('/') {
        return working_dir.join(path);
    }
    path.to_path_buf()
}

async fn read_lines(pipe: impl AsyncRead + Unpin, tx: mpsc::Sender<String>) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.strip_suffix('\n').unwrap_or(&line);
                let line = line.strip_suffix('\r').unwrap_or(line);
                if tx.send(line.to_string()).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn send_batches(
    mut rx: mpsc::Receiver<String>,
    logs: Arc<dyn Logs>,
    sim: Arc<Sim>,
    group: String,
    stream: String,
) {
    let mut batch: Vec<LogEvent> = Vec::new();
    loop {
        let deadline = tokio::time::sleep(BATCH_DELAY);
        tokio::pin!(deadline);
        let closed = loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(line) => {
                        batch.push(LogEvent::new(sim.now(), line));
                        if batch.len() >= BATCH_LINES {
                            break false;
                        }
                    }
                    None => break true,
                },
                _ = &mut deadline, if !batch.is_empty() => break false,
            }
        };
        if !batch.is_empty() {
            // A failed put (the group deleted meanwhile) loses this batch only; the
            // container keeps running, as with the awslogs driver.
            if let Err(e) = logs
                .put_events(&group, &stream, std::mem::take(&mut batch))
                .await
            {
                tracing::warn!("container logs to {group}/{stream} lost: {e}");
            }
        }
        if closed {
            return;
        }
    }
}

/// Sends `signal` to the process group led by `pid` (gone already is fine).
pub(crate) fn signal_group(pid: i32, signal: Signal) {
    if pid > 1 {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// Stops a process gracefully: SIGTERM to its group, SIGKILL after `grace`; then makes sure
/// nothing of the group is left. Returns the exit status if there was one.
pub(crate) async fn stop(
    running: &mut Running,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    let pid = running.record.pid;
    signal_group(pid, Signal::SIGTERM);
    let status = match tokio::time::timeout(grace, running.child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            signal_group(pid, Signal::SIGKILL);
            running.child.wait().await.ok()
        }
    };
    signal_group(pid, Signal::SIGKILL);
    status
}

/// Field 22 of `/proc/<pid>/stat`: the process's start time in ticks since boot.
pub(crate) fn start_ticks(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The fields of `/proc/<pid>/stat` after the command name (field 3 on).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces or parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Kills the group of a process recorded by an earlier run, if that very process still
/// lives (same pid and start time). Returns whether it did.
pub(crate) fn kill_orphan(record: &PidRecord) -> bool {
    if record.pid <= 1 || record.start_ticks == 0 {
        return false;
    }
    if start_ticks(record.pid) == Some(record.start_ticks) {
        signal_group(record.pid, Signal::SIGKILL);
        true
    } else {
        false
    }
}

/// CPU time (user + system, in ticks) and resident memory (bytes) of a process.
fn usage(pid: i32) -> Option<(u64, u64)> {
    let f = stat_fields(pid)?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Some((ticks, rss_kib * 1024))
}

/// Linux reports `/proc` times in USER_HZ, 100 per second on every architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// Samples a process's CPU and memory every `every`, to namespace `mvi/Container` with
/// dimensions Service and Replica, until aborted.
pub(crate) async fn sample(
    pid: i32,
    every: Duration,
    cpu_millis: u32,
    metrics: Arc<dyn Metrics>,
    sim: Arc<Sim>,
    service: String,
    replica: String,
) {
    let mut last: Option<(u64, tokio::time::Instant)> = None;
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some((ticks, rss)) = usage(pid) else {
            return;
        };
        let now = tokio::time::Instant::now();
        let mut data = vec![Datum::new("MemoryUsed", rss as f64, sim.now()).unit(Unit::Bytes)];
        if let Some((prev, at)) = last {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                let used = ticks.saturating_sub(prev) as f64 / TICKS_PER_SECOND / secs;
                // As ECS: percent of the CPU reserved for the container.
                let reserved = f64::from(cpu_millis.max(1)) / 1000.0;
                data.push(
                    Datum::new("CPUUtilization", 100.0 * used / reserved, sim.now())
                        .unit(Unit::Percent),
                );
            }
        }
        last = Some((ticks, now));
        let data = data
            .into_iter()
            .map(|d| {
                d.dimension("Service", service.clone())
                    .dimension("Replica", replica.clone())
            })
            .collect();
        if let Err(e) = metrics.put_data("mvi/Container", data).await {
            tracing::warn!("container metrics of {replica} lost: {e}");
        }
    }
}

/// One HTTP GET of `http://127.0.0.1:<port><path>` within `timeout`: whether it answered 2xx.
pub(crate) async fn http_ok(port: u16, path: &str, timeout: Duration) -> bool {
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let Ok(uri) = format!("http://127.0.0.1:{port}{path}").parse::<hyper::Uri>() else {
        return false;
    };
    matches!(
        tokio::time::timeout(timeout, client.get(uri)).await,
        Ok(Ok(resp)) if resp.status().is_success()
    )
}

/// A free loopback port for a replica to listen on, released for it to bind.
///
/// Picked below the kernel's ephemeral range (`ip_local_port_range`, 32768–60999 by default),
/// from a rotating position: the replica binds it only once it starts (a gated app, seconds
/// later), and a port of the ephemeral range could meanwhile be taken as the local port of any
/// outgoing connection or `bind(0)` on the machine, which never happens below the range. Falls
/// back to the kernel's pick when the whole range is busy.
pub(crate) fn free_port(op: Op) -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if ephemeral_start > SPAN + 1024 {
        let low = ephemeral_start - SPAN;
        // Each process starts at its own place in the span, so two clouds on one machine
        // rarely try the same ports.
        let _ = NEXT.compare_exchange(
            u32::MAX,
            std::process::id().wrapping_mul(2_654_435_761) % SPAN,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        for _ in 0..SPAN {
            let port = low + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port as u16)) {
                drop(l);
                return Ok(port as u16);
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| {
            op.err(
                ErrorKind::Unavailable,
                "127.0.0.1",
                format!("no free loopback port: {e}"),
            )
        })
}

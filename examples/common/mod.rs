//! Helpers shared by the examples.
#![allow(dead_code)] // each example uses its own subset

pub mod app_stack;
#[path = "../../tests/common/repo.rs"]
pub mod repo;

use std::time::Duration;

use mvi::{Error, ErrorKind, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An error of an example's own step.
pub fn failed(what: &str, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        mvi::Service::Backend,
        "example",
        format!("{what}: {why}"),
    )
}

/// A local cloud on `root`, emptied first: a killed earlier run's processes are stopped when
/// its root is opened, then the folder goes.
pub async fn fresh_cloud(root: &std::path::Path) -> Result<mvi::Cloud> {
    if root.exists() {
        drop(mvi::local::LocalCloud::builder().root(root).build().await?);
        std::fs::remove_dir_all(root).map_err(|e| failed("cannot clear the state root", e))?;
    }
    mvi::local::LocalCloud::builder().root(root).build().await
}

/// `clients` each sending `GET /` to `url` every `pause` until `stop`; the first few
/// failures are printed. Returns (sent, failed).
pub fn traffic(
    url: String,
    clients: usize,
    pause: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64)> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    tokio::spawn(async move {
        let (sent, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (url, stop, sent, bad) = (url.clone(), stop.clone(), sent.clone(), bad.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Acquire) {
                        sent.fetch_add(1, Ordering::Relaxed);
                        let r = http_get(&url, "/").await;
                        if !matches!(r, Ok((200, _))) && bad.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("a request failed: {r:?}");
                        }
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        (sent.load(Ordering::Relaxed), bad.load(Ordering::Relaxed))
    })
}

/// A plain HTTP/1.1 GET (the examples keep their dependencies to mvi and tokio).
pub async fn http_get(url: &str, path: &str) -> Result<(u16, String)> {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let io = async {
        let mut s = tokio::net::TcpStream::connect(host).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(15), io)
        .await
        .map_err(|_| failed("GET", "timed out"))?
        .map_err(|e| failed("GET", e))?;
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    Ok((status, body))
}

/// Shows what flowed while the app served: lines of its logs matching `pattern`, and the
/// load balancer's request count (after one flush of the batched logs and metrics).
pub async fn show_telemetry(cloud: &mvi::Cloud, pattern: &str, limit: usize) -> Result<()> {
    use mvi::log::FilterEvents;
    use mvi::metric::{GetStatistics, MetricId, Statistic};
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let lines = cloud
        .logs()?
        .filter_events(FilterEvents::new("/mvi/containers/web", pattern).limit(limit))
        .await?;
    println!("  app logs (/mvi/containers/web, {pattern:?}):");
    for line in &lines.items {
        println!("    [{}] {}", line.stream, line.message);
    }
    let now = chrono::Utc::now();
    let stats = cloud
        .metrics()?
        .get_statistics(GetStatistics::new(
            MetricId::new("mvi/LoadBalancer", "RequestCount")
                .dimension("LoadBalancer", "quickstart"),
            now - chrono::Duration::minutes(5),
            now + chrono::Duration::minutes(1),
            Duration::from_secs(600),
            [Statistic::Sum],
        ))
        .await?;
    let total: f64 = stats.iter().filter_map(|d| d.get(Statistic::Sum)).sum();
    println!("  load balancer metric RequestCount: {total}");
    Ok(())
}

/// Prints each step as it starts and finishes: a live progress display.
pub fn show_progress(stack: &mvi::stack::Stack) -> tokio::task::JoinHandle<()> {
    let mut events = stack.events();
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            match e {
                mvi::stack::Event::Started { urn, op } => {
                    println!("    {op:<8} {} ...", short(&urn))
                }
                mvi::stack::Event::Finished { urn, op, duration } => {
                    println!("    {op:<8} {} done in {duration:.0?}", short(&urn))
                }
                mvi::stack::Event::Failed { urn, op, error } => {
                    println!("    {op:<8} {} FAILED: {error}", short(&urn))
                }
                mvi::stack::Event::Skipped { urn, because } => println!(
                    "    skipped  {} (because {} failed)",
                    short(&urn),
                    short(&because)
                ),
                mvi::stack::Event::Progress { urn, message } => {
                    println!("             {}: {message}", short(&urn))
                }
                mvi::stack::Event::Notice { message } => println!("    note: {message}"),
            }
        }
    })
}

fn short(urn: &str) -> &str {
    urn.rsplit("::").next().unwrap_or(urn)
}

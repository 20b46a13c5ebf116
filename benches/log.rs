//! Benchmark of the local Logs service, on disk in a temporary directory.
//!
//! Figures:
//! - `log/put_events`: events per second put in batches of 1,000 events of ~100 bytes
//!   (criterion's `thrpt`, in elements/s). The target is at least 200,000 events/s.
//! - tail delivery latency: time from calling `put_events` to the event coming out of a tail
//!   started earlier, for single events and for the last event of 1,000-event batches,
//!   printed as percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use mvi::log::{LogEvent, TailEvents};
use mvi::{Clock, Logs, SystemClock};

const BATCH: usize = 1_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn open(dir: &std::path::Path) -> Arc<dyn Logs> {
    let cloud = mvi::local::LocalCloud::builder()
        .root(dir)
        .seed(1)
        .build()
        .await
        .expect("local cloud");
    cloud.logs().expect("logs service").clone()
}

/// A batch of `n` events of about 100 bytes, in time order from `first_ms`.
fn batch(first_ms: i64, n: usize) -> Vec<LogEvent> {
    (0..n)
        .map(|i| {
            let ms = first_ms + i as i64;
            let t = mvi::Timestamp::from_timestamp_millis(ms).expect("timestamp");
            LogEvent::new(
                t,
                format!("{ms:013} INFO request handled path=/api/v1/items status=200 duration_ms=12 user=alice"),
            )
        })
        .collect()
}

fn put_events(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = rt.block_on(open(dir.path()));
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut run = 0u32;
    group.bench_function("put_events", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            // A fresh group per sample keeps memory and disk bounded; its deletion is not timed.
            run += 1;
            let name = format!("bench-{run}");
            let logs = logs.clone();
            async move {
                logs.create_group(&name, None).await.expect("group");
                logs.create_stream(&name, "s").await.expect("stream");
                let now = SystemClock.now().timestamp_millis();
                let batches: Vec<Vec<LogEvent>> = (0..iters)
                    .map(|i| batch(now + (i as i64) * BATCH as i64, BATCH))
                    .collect();
                let start = Instant::now();
                for events in batches {
                    logs.put_events(&name, "s", events).await.expect("put");
                }
                let took = start.elapsed();
                logs.delete_group(&name).await.expect("delete");
                took
            }
        })
    });
    group.finish();
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    println!(
        "log tail latency, {label} (n={}): p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0)
    );
}

fn tail_latency(_c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    rt.block_on(async {
        let logs = open(dir.path()).await;
        logs.create_group("tail", None).await.expect("group");
        logs.create_stream("tail", "s").await.expect("stream");
        let now = SystemClock.now().timestamp_millis();

        // A reader task on the runtime, as a program would have, notes when the last event
        // of each put arrives; the writer notes when it called put. Puts are paced so each
        // is delivered before the next, and the two lists match up in order.
        for (run, (label, size, rounds, pause)) in [
            ("1-event puts", 1usize, 1_000usize, Duration::from_millis(1)),
            (
                "last event of 1,000-event puts",
                BATCH,
                100,
                Duration::from_millis(5),
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let mut tail = logs.tail(TailEvents::new("tail")).await.expect("tail");
            let reader = tokio::spawn(async move {
                let mut arrived = Vec::with_capacity(rounds);
                for _ in 0..rounds {
                    for _ in 0..size {
                        tail.next().await.expect("tail ended").expect("tail error");
                    }
                    arrived.push(Instant::now());
                }
                arrived
            });
            let mut sent = Vec::with_capacity(rounds);
            for round in 0..rounds {
                // Each run after the other in time, so every batch appends.
                let first = now + (run * 10_000_000 + round * size) as i64;
                let events = batch(first, size);
                sent.push(Instant::now());
                logs.put_events("tail", "s", events).await.expect("put");
                tokio::time::sleep(pause).await;
            }
            let arrived = reader.await.expect("reader");
            let latencies = sent
                .iter()
                .zip(&arrived)
                .map(|(s, a)| a.duration_since(*s))
                .collect();
            percentiles(label, latencies);
        }
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = put_events, tail_latency
}
criterion_main!(benches);

//! Benchmark of the local Metric service, on disk (a temporary directory):
//!
//! - `put_data`, batches of 1,000 points: points per second (the target is ≥ 500,000/s);
//! - `get_statistics` with p99 (and the average) over 100,000 points in one period.
//!
//! Criterion prints its usual figures (throughput in elements/s for the puts); a plain summary
//! follows, one line per figure. Run with `cargo bench --bench metric`; the whole run takes
//! well under a minute.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use mvi::local::Sim;
use mvi::local::metric::LocalMetrics;
use mvi::local::storage::Ctx;
use mvi::metric::{Datum, GetStatistics, MetricId, Metrics, Statistic, Unit};
use mvi::{Clock, Service, SystemClock, Timestamp};

const BATCH: usize = 1000;
const STATS_POINTS: usize = 100_000;
const NAMESPACE: &str = "Bench/App";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn open(dir: &std::path::Path) -> LocalMetrics {
    let sim = Arc::new(Sim::new(1, Arc::new(SystemClock), "bench".into()));
    let ctx = Ctx::new(Some(dir), Service::Metric, sim).expect("state directory");
    LocalMetrics::open(ctx)
        .await
        .expect("open the metric service")
}

/// A batch of `BATCH` points of one series, `step_micros` apart from `first` on.
fn batch(name: &str, first: i64, step_micros: i64, seq: usize) -> Vec<Datum> {
    (0..BATCH)
        .map(|i| {
            let n = seq * BATCH + i;
            let t = Timestamp::from_timestamp_micros(first + n as i64 * step_micros)
                .expect("timestamp in range");
            // Values spread over 0..1000 without a pattern a sort could exploit.
            let value = ((n * 7919) % 1000) as f64;
            Datum::new(name, value, t)
                .dimension("Host", "web-1")
                .unit(Unit::Milliseconds)
        })
        .collect()
}

fn main() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = Arc::new(rt.block_on(open(dir.path())));
    let start = SystemClock.now().timestamp_micros() - 3_600_000_000;

    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();

    // Batched puts, each call one log write.
    let mut group = c.benchmark_group("metric");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut seq = 0;
    group.bench_function("put_data 1000 points (disk)", |b| {
        b.to_async(&rt).iter_batched(
            || {
                seq += 1;
                batch("Put", start, 10, seq)
            },
            |data| {
                let m = metrics.clone();
                async move { m.put_data(NAMESPACE, data).await.expect("put_data") }
            },
            BatchSize::SmallInput,
        );
    });

    // p99 over 100,000 points: one series, one hour, one period.
    let end = start + 3_600_000_000;
    let step = 3_600_000_000 / STATS_POINTS as i64;
    rt.block_on(async {
        for seq in 0..STATS_POINTS / BATCH {
            let data = batch("Stats", start, step, seq);
            metrics.put_data(NAMESPACE, data).await.expect("put_data");
        }
    });
    let request = GetStatistics::new(
        MetricId::new(NAMESPACE, "Stats").dimension("Host", "web-1"),
        Timestamp::from_timestamp_micros(start).expect("start"),
        Timestamp::from_timestamp_micros(end).expect("end"),
        Duration::from_secs(3600),
        [Statistic::P99, Statistic::Average],
    );
    group.throughput(Throughput::Elements(STATS_POINTS as u64));
    group.bench_function("get_statistics p99 over 100k points", |b| {
        b.to_async(&rt).iter(|| {
            let m = metrics.clone();
            let req = request.clone();
            async move { m.get_statistics(req).await.expect("get_statistics") }
        });
    });
    group.finish();

    // The plain summary, measured once more outside criterion so the figures stand alone.
    let fresh = tempfile::tempdir().expect("temp dir");
    let summary = rt.block_on(async {
        let m = open(fresh.path()).await;
        let batches: Vec<Vec<Datum>> = (0..300).map(|s| batch("Put", start, 10, s)).collect();
        let points = (batches.len() * BATCH) as f64;
        let t = Instant::now();
        for data in batches {
            m.put_data(NAMESPACE, data).await.expect("put_data");
        }
        let put_rate = points / t.elapsed().as_secs_f64();

        let mut times = Vec::new();
        let mut p99 = None;
        for _ in 0..15 {
            let t = Instant::now();
            let got = metrics
                .get_statistics(request.clone())
                .await
                .expect("get_statistics");
            times.push(t.elapsed());
            p99 = got.first().and_then(|d| d.get(Statistic::P99));
        }
        times.sort();
        (put_rate, times[times.len() / 2], p99)
    });
    let (put_rate, stats_time, p99) = summary;
    println!();
    println!("metric summary (local, on disk, release build)");
    println!(
        "  put_data, batches of {BATCH}: {:.0} points/s (target >= 500000)",
        put_rate
    );
    println!(
        "  get_statistics p99 + average over {STATS_POINTS} points: {:.2} ms (median of 15; p99 = {})",
        stats_time.as_secs_f64() * 1e3,
        p99.map_or("none".to_string(), |v| v.to_string())
    );
    c.final_summary();
}

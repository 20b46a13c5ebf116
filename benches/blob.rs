//! Benchmark of the local Blob service, on disk (a temporary directory), release build.
//!
//! Figures:
//! - `blob/put_get_1k` (criterion): one put then one get of a 1 KiB object, by a single
//!   caller. Each put is a durable commit (one fsync), so this mostly measures the disk.
//! - `blob/put_1k_memory`, `blob/get_1k_memory` (criterion): a put, and a get, of a 1 KiB
//!   object on an in-memory cloud (`in_memory()`, as `serve --memory`): the service's own
//!   cost with no disk under it.
//! - `put+get 1 KiB, N callers` (printed): ops/s (a put and a get count as two) with N tasks
//!   working at once for two seconds. Concurrent puts share commits (the writer thread
//!   commits whatever is waiting together), so this is the service's throughput.
//! - `1 GiB streamed put` (printed): time, MiB/s, and the growth of the process's peak
//!   resident memory (VmHWM, reset before the put) over its resident memory before it: the
//!   body streams to disk, so the growth must stay far below the object's size. Then the
//!   same for reading it back as a stream.
//!
//! Run: `cargo bench --bench blob` (add `-- --quick` for a short check).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use futures::StreamExt;
use mvi::blob::{Body, GetObject, PutObject};
use mvi::prelude::*;
use mvi::{ByteStream, Bytes};

const BUCKET: &str = "bench";
const MIB: usize = 1024 * 1024;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud = rt
        .block_on(
            mvi::local::LocalCloud::builder()
                .root(dir.path())
                .seed(1)
                .build(),
        )
        .expect("local cloud");
    let blob: Arc<dyn Blob> = cloud.blob().expect("blob service").clone();
    rt.block_on(blob.create_bucket(BUCKET))
        .expect("create bucket");

    // First, while the process is small: the large streamed object and its memory.
    rt.block_on(large_object(&blob));

    let payload = Bytes::from(vec![b'x'; 1024]);
    for callers in [16, 64, 256] {
        let ops = rt.block_on(concurrent(&blob, &payload, callers, Duration::from_secs(2)));
        println!("blob put+get 1 KiB, {callers:>3} callers: {ops:>9.0} ops/s (on disk, durable)");
    }

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("blob");
    group.throughput(Throughput::Elements(2));
    group.bench_function("put_get_1k", |b| {
        let mut n = 0u64;
        b.to_async(&rt).iter(|| {
            n += 1;
            let (blob, payload) = (blob.clone(), payload.clone());
            async move {
                let key = format!("seq/{}", n % 1000);
                blob.put(BUCKET, &key, payload).await.expect("put");
                black_box(blob.get(BUCKET, &key).await.expect("get"));
            }
        })
    });
    group.throughput(Throughput::Elements(1));
    let memory = rt
        .block_on(
            mvi::local::LocalCloud::builder()
                .in_memory()
                .seed(1)
                .build(),
        )
        .expect("in-memory cloud");
    let mem_blob: Arc<dyn Blob> = memory.blob().expect("blob service").clone();
    rt.block_on(mem_blob.create_bucket(BUCKET))
        .expect("create bucket");
    let mut n = 0u64;
    group.bench_function("put_1k_memory", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let (blob, payload) = (mem_blob.clone(), payload.clone());
            async move {
                let key = format!("seq/{}", n % 1000);
                black_box(blob.put(BUCKET, &key, payload).await.expect("put"));
            }
        })
    });
    group.bench_function("get_1k_memory", |b| {
        b.to_async(&rt).iter(|| {
            n += 7;
            let blob = mem_blob.clone();
            async move {
                let key = format!("seq/{}", n % 1000);
                black_box(blob.get(BUCKET, &key).await.expect("get"));
            }
        })
    });
    group.finish();

    c.final_summary();
}

/// Ops per second of `callers` tasks each doing put-then-get of 1 KiB objects for `time`.
async fn concurrent(blob: &Arc<dyn Blob>, payload: &Bytes, callers: usize, time: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|task| {
            let (blob, payload) = (blob.clone(), payload.clone());
            let (stop, ops) = (stop.clone(), ops.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("c{callers}/{task}/{}", n % 100);
                    blob.put(BUCKET, &key, payload.clone()).await.expect("put");
                    black_box(blob.get(BUCKET, &key).await.expect("get"));
                    ops.fetch_add(2, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(time).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }
    ops.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// A field of /proc/self/status in KiB (Linux), or 0 elsewhere.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak resident memory (VmHWM) to the current one, so the next reading is the
/// peak of what follows; false where the kernel does not allow it.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn memory_report(what: &str, bytes: u64, elapsed: Duration, rss_before: u64, reset: bool) {
    let peak = status_kib("VmHWM:");
    let growth_mib = peak.saturating_sub(rss_before) as f64 / 1024.0;
    println!(
        "blob {what}: {:.1} s, {:.0} MiB/s; peak RSS grew {growth_mib:.1} MiB over {:.1} MiB{}",
        elapsed.as_secs_f64(),
        bytes as f64 / MIB as f64 / elapsed.as_secs_f64(),
        rss_before as f64 / 1024.0,
        if reset {
            ""
        } else {
            " (peak not resettable: includes earlier peaks)"
        }
    );
}

async fn large_object(blob: &Arc<dyn Blob>) {
    const CHUNKS: usize = 1024;
    // Every chunk is a new allocation the service must let go of, as from a network body.
    let body: ByteStream = Box::pin(futures::stream::iter(0..CHUNKS).map(|i| {
        let mut chunk = vec![(i % 251) as u8; MIB];
        chunk[0] = (i / 251) as u8;
        Ok(Bytes::from(chunk))
    }));
    let reset = reset_peak();
    let rss_before = status_kib("VmRSS:");
    let start = Instant::now();
    let meta = blob
        .put_object(PutObject::new(BUCKET, "large", Body::Stream(body)))
        .await
        .expect("1 GiB put");
    memory_report(
        "1 GiB streamed put",
        meta.size,
        start.elapsed(),
        rss_before,
        reset,
    );

    let reset = reset_peak();
    let rss_before = status_kib("VmRSS:");
    let start = Instant::now();
    let mut body = blob
        .get_object(GetObject::new(BUCKET, "large"))
        .await
        .expect("1 GiB get")
        .body;
    let mut read = 0u64;
    while let Some(chunk) = body.next().await {
        read += chunk.expect("chunk").len() as u64;
    }
    assert_eq!(read, meta.size, "read back the whole object");
    memory_report(
        "1 GiB streamed get",
        read,
        start.elapsed(),
        rss_before,
        reset,
    );
    blob.delete_object(BUCKET, "large").await.expect("delete");
}

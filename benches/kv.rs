//! Benchmark of the local KV service, on disk (a temporary directory), release build.
//!
//! Figures, printed by criterion as time per operation and throughput (ops/s):
//! - `kv/fsync_baseline`: a 4 KiB write plus `fdatasync` on the same disk, without mvi: the
//!   floor for anything that makes each write durable before acknowledging it.
//! - `kv/put_durable`: one unconditional put from a single writer; each is its own durable
//!   redb commit (one fsync), so this measures the disk's fsync as much as the service.
//! - `kv/put_durable_16_writers`: sixteen tasks putting at once; throughput counts puts.
//!   Concurrent puts share durable commits (group commit), so this is well above the single
//!   writer's figure on a disk where an fsync dominates.
//! - `kv/put_conditional`: a put with `Condition::equals` on a version attribute (the
//!   optimistic-concurrency write): the read of the current item happens in the same commit.
//! - `kv/get`: a point read of one of 10,000 items.
//! - `kv/query_page_100`: one page of 100 items of a partition.
//! - `kv/put_memory`, `kv/get_memory`: a put and a point read on an in-memory cloud
//!   (`in_memory()`, as `serve --memory`): the service's own cost with no disk under it.
//!
//! Run: `cargo bench --bench kv` (add `-- --quick` for a short check).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use mvi::kv::{Condition, Key, KeyAttr, KeyType, PutItem, Query, TableSpec};
use mvi::prelude::*;
use mvi::{Bytes, item};

const ITEMS: i64 = 10_000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
    let kv: Arc<dyn Kv> = cloud.kv().expect("kv service").clone();
    let payload = Bytes::from(vec![b'x'; 100]);

    rt.block_on(async {
        load_bench_table(&kv, &payload).await;
        kv.create_table(
            TableSpec::new("events", KeyAttr::new("pk", KeyType::Str))
                .sort_key(KeyAttr::new("sk", KeyType::Number)),
        )
        .await
        .expect("create table");
        let rows: Vec<_> = (0..1000)
            .map(|n| item! { "pk" => "p", "sk" => n, "data" => payload.clone() })
            .collect();
        for chunk in rows.chunks(25) {
            kv.batch_put("events", chunk.to_vec()).await.expect("load");
        }
        kv.put("bench", item! { "id" => "versioned", "version" => 0 })
            .await
            .expect("put");
    });

    let mut group = c.benchmark_group("kv");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));

    // The floor for any store that makes each write durable before acknowledging it: one
    // 4 KiB write and one fdatasync on the same disk.
    let probe_path = dir.path().join("fsync-probe");
    let mut probe = std::fs::File::create(&probe_path).expect("probe file");
    group.bench_function("fsync_baseline", |b| {
        use std::io::{Seek, SeekFrom, Write};
        let page = [0x5a_u8; 4096];
        b.iter(|| {
            probe.seek(SeekFrom::Start(0)).expect("seek");
            probe.write_all(&page).expect("write");
            probe.sync_data().expect("fdatasync");
        })
    });

    bench_put(&mut group, "put_durable", &rt, &kv, &payload);

    // Sixteen writers at once: their puts share durable commits (group commit).
    group.throughput(Throughput::Elements(16));
    let mut round = 0_i64;
    group.bench_function("put_durable_16_writers", |b| {
        b.to_async(&rt).iter(|| {
            round += 1;
            let puts: Vec<_> = (0..16)
                .map(|w| {
                    let kv = kv.clone();
                    let item = item! {
                        "id" => format!("c-{w}-{}", round % 1000),
                        "data" => payload.clone(),
                    };
                    tokio::spawn(async move { kv.put("bench", item).await })
                })
                .collect();
            async move {
                for put in futures::future::join_all(puts).await {
                    put.expect("task").expect("put");
                }
            }
        })
    });
    group.throughput(Throughput::Elements(1));

    let mut version = 0_i64;
    group.bench_function("put_conditional", |b| {
        b.to_async(&rt).iter(|| {
            let put = PutItem::new(
                "bench",
                item! { "id" => "versioned", "version" => version + 1 },
            )
            .condition(Condition::equals("version", version));
            version += 1;
            let kv = kv.clone();
            async move { kv.put_item(put).await.expect("conditional put") }
        })
    });

    bench_get(&mut group, "get", &rt, &kv);

    group.throughput(Throughput::Elements(100));
    group.bench_function("query_page_100", |b| {
        b.to_async(&rt).iter(|| {
            let kv = kv.clone();
            async move {
                let page = kv
                    .query(Query::new("events", "p").limit(100))
                    .await
                    .expect("query");
                black_box(page.items.len())
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
    let mem_kv: Arc<dyn Kv> = memory.kv().expect("kv service").clone();
    rt.block_on(load_bench_table(&mem_kv, &payload));
    bench_put(&mut group, "put_memory", &rt, &mem_kv, &payload);
    bench_get(&mut group, "get_memory", &rt, &mem_kv);
    group.finish();
}

/// Creates the table `bench` and loads it with `ITEMS` items, in batches: the set-up is not
/// what is measured.
async fn load_bench_table(kv: &Arc<dyn Kv>, payload: &Bytes) {
    kv.create_table(TableSpec::new("bench", KeyAttr::new("id", KeyType::Str)))
        .await
        .expect("create table");
    let rows: Vec<_> = (0..ITEMS)
        .map(|n| item! { "id" => format!("user-{n:06}"), "data" => payload.clone() })
        .collect();
    for chunk in rows.chunks(25) {
        kv.batch_put("bench", chunk.to_vec()).await.expect("load");
    }
}

/// `id`: one unconditional put after another into `bench`, over its items.
fn bench_put(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    rt: &tokio::runtime::Runtime,
    kv: &Arc<dyn Kv>,
    payload: &Bytes,
) {
    let mut n = 0_i64;
    group.bench_function(id, |b| {
        b.to_async(rt).iter(|| {
            n += 1;
            let item = item! { "id" => format!("w-{}", n % ITEMS), "data" => payload.clone() };
            let kv = kv.clone();
            async move { kv.put("bench", item).await.expect("put") }
        })
    });
}

/// `id`: point reads of the loaded items of `bench`, spread over them.
fn bench_get(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    rt: &tokio::runtime::Runtime,
    kv: &Arc<dyn Kv>,
) {
    let mut i = 0_i64;
    group.bench_function(id, |b| {
        b.to_async(rt).iter(|| {
            i = (i + 7919) % ITEMS;
            let key = Key::new(format!("user-{i:06}"));
            let kv = kv.clone();
            async move { black_box(kv.get_item("bench", key).await.expect("get")) }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

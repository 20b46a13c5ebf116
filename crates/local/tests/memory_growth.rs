//! An in-memory cloud's KV and Blob services do not grow while writes overwrite the same
//! items and objects.
//!
//! In memory, most commits are non-durable (the cheaper kind) and redb keeps the records of
//! the pages they free in its own memory until a durable commit reclaims them; the service
//! commits durably once in a while for that. Without it, every write would leave a few dozen
//! bytes behind for good. The bytes the process holds are counted by its allocator.

// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use bytes::Bytes;
use mvi_core::kv::{KeyAttr, KeyType, TableSpec};
use mvi_core::{BlobExt, KvExt, item};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `write` `count` times and returns how many more bytes the process holds after the
/// last `count - warm_up` than after the first `warm_up`.
async fn growth<F>(warm_up: u32, count: u32, mut write: F) -> mvi_core::Result<isize>
where
    F: AsyncFnMut(u32) -> mvi_core::Result<()>,
{
    for n in 0..warm_up {
        write(n).await?;
    }
    let before = LIVE.load(Ordering::Relaxed);
    for n in warm_up..count {
        write(n).await?;
    }
    Ok(LIVE.load(Ordering::Relaxed) - before)
}

/// One test, so that nothing else allocates meanwhile: the KV service, then the Blob service.
#[tokio::test(flavor = "current_thread")]
async fn overwrites_in_memory_do_not_grow_the_process() -> mvi_core::Result<()> {
    let cloud = mvi_local::LocalCloud::builder()
        .in_memory()
        .seed(1)
        .build()
        .await?;
    let kv = cloud.kv()?.clone();
    kv.create_table(TableSpec::new(
        "overwritten",
        KeyAttr::new("id", KeyType::Str),
    ))
    .await?;
    let grown = growth(5_000, 25_000, async |n| {
        let item = item! { "id" => format!("k{}", n % 100), "n" => n, "pad" => "x".repeat(200) };
        kv.put("overwritten", item).await
    })
    .await?;
    assert!(
        grown < 256 << 10,
        "KV: the process holds {grown} more bytes after 20,000 overwrites of the same 100 items"
    );

    let blob = cloud.blob()?.clone();
    blob.create_bucket("overwritten").await?;
    let grown = growth(5_000, 25_000, async |n| {
        let body = Bytes::from(vec![n as u8; 1024]);
        blob.put("overwritten", &format!("k{}", n % 100), body)
            .await
            .map(drop)
    })
    .await?;
    assert!(
        grown < 256 << 10,
        "Blob: the process holds {grown} more bytes after 20,000 overwrites of the same 100 objects"
    );
    Ok(())
}

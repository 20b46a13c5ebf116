//! Blob cases.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use mvi_core::blob::{
    Blob, Body, ByteRange, CompletedPart, GetObject, ListObjects, MIN_PART_SIZE, PutMode, PutObject,
};
use mvi_core::{BlobExt, ByteStream, ErrorKind};

use crate::{Ctx, Outcome, ensure, expect_err};

/// Every Blob case, as tests against `$target`.
#[macro_export]
macro_rules! blob_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
            blob_put_get_roundtrip => $crate::blob::put_get_roundtrip;
            blob_get_missing_is_not_found => $crate::blob::get_missing_is_not_found;
            blob_head_returns_metadata => $crate::blob::head_returns_metadata;
            blob_overwrite_and_delete => $crate::blob::overwrite_and_delete;
            blob_range_reads => $crate::blob::range_reads;
            blob_list_prefix_delimiter_pagination => $crate::blob::list_prefix_delimiter_pagination;
            blob_conditional_create_conflict => $crate::blob::conditional_create_conflict;
            blob_conditional_update_stale_etag => $crate::blob::conditional_update_stale_etag;
            blob_concurrent_creators_one_wins => $crate::blob::concurrent_creators_one_wins [AtomicConditionalWrites];
            blob_conditional_get => $crate::blob::conditional_get;
            blob_invalid_bucket_names => $crate::blob::invalid_bucket_names;
            blob_invalid_keys => $crate::blob::invalid_keys;
            blob_missing_bucket_is_not_found => $crate::blob::missing_bucket_is_not_found;
            blob_bucket_lifecycle => $crate::blob::bucket_lifecycle;
            blob_copy_keeps_content_type_and_metadata => $crate::blob::copy_keeps_content_type_and_metadata;
            blob_multipart_roundtrip => $crate::blob::multipart_roundtrip;
            blob_multipart_small_part_rejected => $crate::blob::multipart_small_part_rejected;
            blob_multipart_bad_part_list => $crate::blob::multipart_bad_part_list;
            blob_large_streamed_object => $crate::blob::large_streamed_object;
            blob_failed_stream_leaves_object_unchanged => $crate::blob::failed_stream_leaves_object_unchanged;
            blob_persists_across_reopen => $crate::blob::persists_across_reopen [Reopen];
        }
    };
}

/// A put object reads back byte for byte, with its size and MD5 ETag.
pub async fn put_get_roundtrip(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("roundtrip");
    blob.create_bucket(&bucket).await?;
    let meta = blob.put(&bucket, "hello.txt", "hello world").await?;
    ensure!(meta.size == 11, "size {} != 11", meta.size);
    ensure!(
        meta.etag == "5eb63bbbe01eeed093cb22bb8f5acdc3",
        "etag {} is not the MD5 of the content",
        meta.etag
    );
    let got = blob.get(&bucket, "hello.txt").await?;
    ensure!(got.as_ref() == b"hello world", "read back {got:?}");
    blob.delete_object(&bucket, "hello.txt").await?;
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// Reading a key that does not exist is NotFound, naming the key.
pub async fn get_missing_is_not_found(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("missing");
    blob.create_bucket(&bucket).await?;
    let err = expect_err!(blob.get(&bucket, "nope").await, NotFound);
    ensure!(
        err.to_string().contains("nope"),
        "error does not name the key: {err}"
    );
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// Head gives size, ETag, content type and user metadata (keys lower-cased) without the
/// content, and agrees with what the put returned; a missing key is NotFound.
pub async fn head_returns_metadata(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("head");
    blob.create_bucket(&bucket).await?;
    let put = blob
        .put_object(
            PutObject::new(&bucket, "doc.json", r#"{"a":1}"#)
                .content_type("application/json")
                .metadata("owner", "ops")
                .metadata("Build", "42"),
        )
        .await?;
    let head = blob.head_object(&bucket, "doc.json").await?;
    ensure!(
        head == put,
        "head {head:?} differs from the put's answer {put:?}"
    );
    ensure!(head.size == 7, "size {}", head.size);
    ensure!(
        head.bucket == bucket && head.key == "doc.json",
        "names {head:?}"
    );
    ensure!(
        head.content_type.as_deref() == Some("application/json"),
        "content type {:?}",
        head.content_type
    );
    ensure!(
        head.metadata.get("owner").map(String::as_str) == Some("ops")
            && head.metadata.get("build").map(String::as_str) == Some("42")
            && head.metadata.len() == 2,
        "metadata {:?}",
        head.metadata
    );
    let age = (ctx.now() - head.last_modified).num_seconds().abs();
    ensure!(
        age < 3600,
        "last_modified {} is far from now",
        head.last_modified
    );
    expect_err!(blob.head_object(&bucket, "absent").await, NotFound);
    blob.delete_object(&bucket, "doc.json").await?;
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// An overwrite replaces content and ETag; a delete removes the object; deleting a missing
/// key succeeds (as S3).
pub async fn overwrite_and_delete(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("overwrite");
    blob.create_bucket(&bucket).await?;
    let first = blob.put(&bucket, "k", "first").await?;
    let second = blob.put(&bucket, "k", "second version").await?;
    ensure!(first.etag != second.etag, "the ETag did not change");
    let got = blob.get(&bucket, "k").await?;
    ensure!(got.as_ref() == b"second version", "read back {got:?}");
    let empty = blob.put(&bucket, "empty", Bytes::new()).await?;
    ensure!(
        empty.size == 0 && empty.etag == "d41d8cd98f00b204e9800998ecf8427e",
        "empty object {empty:?}"
    );
    ensure!(
        blob.get(&bucket, "empty").await?.is_empty(),
        "empty object has content"
    );
    blob.delete_object(&bucket, "k").await?;
    expect_err!(blob.get(&bucket, "k").await, NotFound);
    blob.delete_object(&bucket, "k").await?;
    blob.delete_object(&bucket, "empty").await?;
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// Range reads: bounded (clipped to the size), from an offset, a suffix; a range starting
/// past the end or an empty one is InvalidArgument.
pub async fn range_reads(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("range");
    blob.create_bucket(&bucket).await?;
    let content = "0123456789abcdefghij"; // 20 bytes
    blob.put(&bucket, "r", content).await?;
    let cases = [
        (ByteRange::Bounded { start: 2, end: 5 }, (2, 5), "234"),
        (
            ByteRange::Bounded {
                start: 15,
                end: 100,
            },
            (15, 20),
            "fghij",
        ),
        (ByteRange::From(17), (17, 20), "hij"),
        (ByteRange::Suffix(4), (16, 20), "ghij"),
        (ByteRange::Suffix(50), (0, 20), content),
    ];
    for (range, want_range, want) in cases {
        let out = blob
            .get_object(GetObject::new(&bucket, "r").range(range))
            .await?;
        ensure!(
            out.range == want_range,
            "{range:?}: range {:?}, want {want_range:?}",
            out.range
        );
        ensure!(
            out.meta.size == 20,
            "{range:?}: meta.size {} is not the whole size",
            out.meta.size
        );
        let got = out.bytes().await?;
        ensure!(
            got.as_ref() == want.as_bytes(),
            "{range:?}: read {got:?}, want {want:?}"
        );
    }
    for bad in [
        ByteRange::From(20),
        ByteRange::Bounded { start: 25, end: 30 },
        ByteRange::Bounded { start: 5, end: 5 },
    ] {
        expect_err!(
            blob.get_object(GetObject::new(&bucket, "r").range(bad))
                .await,
            InvalidArgument
        );
    }
    blob.delete_object(&bucket, "r").await?;
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// Listing by prefix with a delimiter, two entries per page: objects and common prefixes in
/// order, each common prefix exactly once across pages, no page larger than asked.
pub async fn list_prefix_delimiter_pagination(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("list");
    blob.create_bucket(&bucket).await?;
    let keys = [
        "logs/a.txt",
        "logs/b.txt",
        "logs/2024/01/x",
        "logs/2024/02/y",
        "logs/2025/z",
        "logs/c.txt",
        "logs/d/e",
        "other/f",
        "top",
    ];
    for k in keys {
        blob.put(&bucket, k, k).await?;
    }
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = blob
            .list_objects(
                ListObjects::new(&bucket)
                    .prefix("logs/")
                    .delimiter("/")
                    .max_keys(2)
                    .continuation(token),
            )
            .await?;
        pages += 1;
        let n = page.objects.len() + page.common_prefixes.len();
        ensure!(n <= 2, "page {pages} has {n} entries, more than max_keys 2");
        ensure!(
            n > 0 || page.next.is_none(),
            "page {pages} is empty yet says more follow"
        );
        objects.extend(page.objects.into_iter().map(|o| o.key));
        prefixes.extend(page.common_prefixes);
        ensure!(pages < 20, "the listing does not end");
        match page.next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    ensure!(
        objects == ["logs/a.txt", "logs/b.txt", "logs/c.txt"],
        "objects {objects:?}"
    );
    ensure!(
        prefixes == ["logs/2024/", "logs/2025/", "logs/d/"],
        "common prefixes {prefixes:?}"
    );
    ensure!(pages == 3, "6 entries at 2 per page took {pages} pages");

    // Without a delimiter: every key under the prefix, in order.
    let all: Vec<String> = blob
        .list_all(&bucket, "logs/2024/")
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    ensure!(
        all == ["logs/2024/01/x", "logs/2024/02/y"],
        "prefix listing {all:?}"
    );
    // The whole bucket, top level.
    let top = blob
        .list_objects(ListObjects::new(&bucket).delimiter("/"))
        .await?;
    let top_keys: Vec<&str> = top.objects.iter().map(|o| o.key.as_str()).collect();
    ensure!(top_keys == ["top"], "top-level objects {top_keys:?}");
    ensure!(
        top.common_prefixes == ["logs/", "other/"] && top.next.is_none(),
        "top-level prefixes {:?} next {:?}",
        top.common_prefixes,
        top.next
    );
    let meta = top.objects.first().ok_or("no object listed")?;
    ensure!(meta.size == 3, "listed size {}", meta.size);

    for k in keys {
        blob.delete_object(&bucket, k).await?;
    }
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// A create-only put (if-none-match: *) fails with PreconditionFailed when the key exists,
/// leaving the object as it was.
pub async fn conditional_create_conflict(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("create");
    blob.create_bucket(&bucket).await?;
    let put = |body: &'static str| PutObject::new(&bucket, "lock", body).mode(PutMode::Create);
    blob.put_object(put("mine")).await?;
    expect_err!(blob.put_object(put("yours")).await, PreconditionFailed);
    let got = blob.get(&bucket, "lock").await?;
    ensure!(
        got.as_ref() == b"mine",
        "the failed create changed the object: {got:?}"
    );
    blob.delete_object(&bucket, "lock").await?;
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// An update (if-match) with the current ETag succeeds; with a stale one it is
/// PreconditionFailed and changes nothing.
pub async fn conditional_update_stale_etag(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("update");
    blob.create_bucket(&bucket).await?;
    let v1 = blob.put(&bucket, "state", "v1").await?;
    let v2 = blob
        .put_object(PutObject::new(&bucket, "state", "v2").mode(PutMode::Update(v1.etag.clone())))
        .await?;
    expect_err!(
        blob.put_object(PutObject::new(&bucket, "state", "v3").mode(PutMode::Update(v1.etag)))
            .await,
        PreconditionFailed
    );
    let got = blob.get(&bucket, "state").await?;
    ensure!(
        got.as_ref() == b"v2",
        "the stale update changed the object: {got:?}"
    );
    ensure!(
        blob.head_object(&bucket, "state").await?.etag == v2.etag,
        "ETag is not v2's"
    );
    blob.delete_object(&bucket, "state").await?;
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// Sixteen tasks race to create the same key: exactly one wins, the others get
/// PreconditionFailed, and the object holds the winner's content.
pub async fn concurrent_creators_one_wins(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("race");
    blob.create_bucket(&bucket).await?;
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (blob, bucket, barrier) = (blob.clone(), bucket.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let req =
                    PutObject::new(&bucket, "leader", format!("task {i}")).mode(PutMode::Create);
                (i, blob.put_object(req).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (i, result) = task.await?;
        match result {
            Ok(_) => winners.push(i),
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {}
            Err(e) => return Err(format!("task {i}: unexpected error {e}").into()),
        }
    }
    ensure!(winners.len() == 1, "winners: {winners:?}");
    let got = blob.get(&bucket, "leader").await?;
    let want = format!("task {}", winners[0]);
    ensure!(
        got.as_ref() == want.as_bytes(),
        "content {got:?} is not the winner's {want}"
    );
    blob.delete_object(&bucket, "leader").await?;
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// A get with if-match fails unless the ETag matches; with if-none-match fails if it does.
pub async fn conditional_get(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("condget");
    blob.create_bucket(&bucket).await?;
    let meta = blob.put(&bucket, "k", "content").await?;
    let other = "0123456789abcdef0123456789abcdef";
    let got = blob
        .get_object(GetObject::new(&bucket, "k").if_match(&meta.etag))
        .await?
        .bytes()
        .await?;
    ensure!(got.as_ref() == b"content", "if-match read {got:?}");
    expect_err!(
        blob.get_object(GetObject::new(&bucket, "k").if_match(other))
            .await,
        PreconditionFailed
    );
    expect_err!(
        blob.get_object(GetObject::new(&bucket, "k").if_none_match(&meta.etag))
            .await,
        PreconditionFailed
    );
    let got = blob
        .get_object(GetObject::new(&bucket, "k").if_none_match(other))
        .await?
        .bytes()
        .await?;
    ensure!(got.as_ref() == b"content", "if-none-match read {got:?}");
    blob.delete_object(&bucket, "k").await?;
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// Bucket names that break S3's rules are InvalidArgument, and no bucket is made.
pub async fn invalid_bucket_names(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let long = format!("{}-{}", ctx.name("x"), "a".repeat(60));
    let bad = [
        "ab",
        "Upper-Case",
        "under_score",
        "-leading-hyphen",
        "trailing-hyphen-",
        "two..dots",
        "192.168.10.1",
        "xn--punycode",
        long.as_str(),
    ];
    for name in bad {
        let err = expect_err!(blob.create_bucket(name).await, InvalidArgument);
        ensure!(
            err.to_string().contains(name),
            "the error does not name the bucket: {err}"
        );
    }
    let listed = blob.list_buckets().await?;
    ensure!(
        !listed.iter().any(|b| bad.contains(&b.name.as_str())),
        "an invalid bucket was created"
    );
    Ok(())
}

/// Empty keys and keys over 1024 bytes are InvalidArgument; a 1024-byte key is fine.
pub async fn invalid_keys(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("keys");
    blob.create_bucket(&bucket).await?;
    expect_err!(blob.put(&bucket, "", "x").await, InvalidArgument);
    let too_long = "k".repeat(1025);
    expect_err!(blob.put(&bucket, &too_long, "x").await, InvalidArgument);
    // A huge key is refused with a short error: a part of it and its length.
    let huge = "k".repeat(10 << 20);
    for e in [
        expect_err!(blob.put(&bucket, &huge, "x").await, InvalidArgument),
        expect_err!(blob.get(&bucket, &huge).await, InvalidArgument),
    ] {
        let shown = e.to_string();
        ensure!(
            shown.len() < 2_000,
            "a 10 MB key made a {} byte error",
            shown.len()
        );
        ensure!(
            shown.contains("… (10485"),
            "the key's length is not given: {shown}"
        );
    }
    // Multi-byte characters count in bytes: 342 × 3 bytes = 1026.
    expect_err!(
        blob.put(&bucket, &"€".repeat(342), "x").await,
        InvalidArgument
    );
    let longest = "k".repeat(1024);
    blob.put(&bucket, &longest, "x").await?;
    let got = blob.get(&bucket, &longest).await?;
    ensure!(got.as_ref() == b"x", "read back {got:?}");
    let unicode = "dir/ünïcødé ☃.txt";
    blob.put(&bucket, unicode, "snow").await?;
    ensure!(
        blob.get(&bucket, unicode).await?.as_ref() == b"snow",
        "unicode key did not read back"
    );
    blob.delete_object(&bucket, &longest).await?;
    blob.delete_object(&bucket, unicode).await?;
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// Every operation on a bucket that does not exist is NotFound, naming the bucket.
pub async fn missing_bucket_is_not_found(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("absent");
    let err = expect_err!(blob.put(&bucket, "k", "x").await, NotFound);
    ensure!(
        err.to_string().contains(&bucket),
        "error does not name the bucket: {err}"
    );
    expect_err!(blob.get(&bucket, "k").await, NotFound);
    expect_err!(blob.head_object(&bucket, "k").await, NotFound);
    expect_err!(blob.delete_object(&bucket, "k").await, NotFound);
    expect_err!(blob.list_objects(ListObjects::new(&bucket)).await, NotFound);
    expect_err!(blob.delete_bucket(&bucket).await, NotFound);
    expect_err!(
        blob.create_multipart_upload(&bucket, "k", None).await,
        NotFound
    );
    Ok(())
}

/// A bucket is created once (again is AlreadyExists), listed, cannot be deleted while it
/// holds an object (PreconditionFailed), and is gone once deleted.
pub async fn bucket_lifecycle(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("lifecycle");
    let info = blob.create_bucket(&bucket).await?;
    ensure!(info.name == bucket, "created {info:?}");
    expect_err!(blob.create_bucket(&bucket).await, AlreadyExists);
    let listed = blob.list_buckets().await?;
    ensure!(
        listed.iter().any(|b| b.name == bucket),
        "bucket not listed: {listed:?}"
    );
    blob.put(&bucket, "k", "x").await?;
    let err = expect_err!(blob.delete_bucket(&bucket).await, PreconditionFailed);
    ensure!(
        err.to_string().contains(&bucket),
        "error does not name the bucket: {err}"
    );
    ensure!(
        blob.get(&bucket, "k").await?.as_ref() == b"x",
        "the refused delete touched the object"
    );
    blob.delete_object(&bucket, "k").await?;
    blob.delete_bucket(&bucket).await?;
    let listed = blob.list_buckets().await?;
    ensure!(
        !listed.iter().any(|b| b.name == bucket),
        "deleted bucket still listed"
    );
    expect_err!(blob.put(&bucket, "k", "x").await, NotFound);
    Ok(())
}

/// A copy has the source's content, ETag, content type and metadata, across buckets; a
/// missing source is NotFound.
pub async fn copy_keeps_content_type_and_metadata(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let src = ctx.name("copy-src");
    let dst = ctx.name("copy-dst");
    blob.create_bucket(&src).await?;
    blob.create_bucket(&dst).await?;
    let original = blob
        .put_object(
            PutObject::new(&src, "page.html", "<h1>hi</h1>")
                .content_type("text/html")
                .metadata("author", "ada"),
        )
        .await?;
    let copy = blob
        .copy_object(&src, "page.html", &dst, "copy.html")
        .await?;
    ensure!(
        copy.bucket == dst && copy.key == "copy.html",
        "copy names {copy:?}"
    );
    ensure!(
        copy.etag == original.etag,
        "ETag {} != {}",
        copy.etag,
        original.etag
    );
    let head = blob.head_object(&dst, "copy.html").await?;
    ensure!(
        head.content_type.as_deref() == Some("text/html"),
        "content type {:?}",
        head.content_type
    );
    ensure!(
        head.metadata.get("author").map(String::as_str) == Some("ada"),
        "metadata {:?}",
        head.metadata
    );
    let got = blob.get(&dst, "copy.html").await?;
    ensure!(got.as_ref() == b"<h1>hi</h1>", "copied content {got:?}");
    // The source is untouched.
    ensure!(
        blob.get(&src, "page.html").await?.as_ref() == b"<h1>hi</h1>",
        "the source changed"
    );
    expect_err!(blob.copy_object(&src, "absent", &dst, "x").await, NotFound);
    for (b, k) in [(&src, "page.html"), (&dst, "copy.html")] {
        blob.delete_object(b, k).await?;
    }
    blob.delete_bucket(&src).await?;
    blob.delete_bucket(&dst).await?;
    Ok(())
}

fn filled(byte: u8, len: usize) -> Bytes {
    Bytes::from(vec![byte; len])
}

/// A multipart upload of two 5 MiB parts and a short last part reads back as their
/// concatenation, with S3's multipart ETag (MD5 of the part MD5s, then `-3`); uploading a
/// part again replaces it.
pub async fn multipart_roundtrip(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("multipart");
    blob.create_bucket(&bucket).await?;
    let id = blob
        .create_multipart_upload(&bucket, "big.bin", Some("application/octet-stream".into()))
        .await?;
    // Part 2 is first uploaded with the wrong content, then replaced.
    blob.upload_part(&bucket, "big.bin", &id, 2, filled(b'x', 10).into())
        .await?;
    let e1 = blob
        .upload_part(
            &bucket,
            "big.bin",
            &id,
            1,
            filled(b'a', MIN_PART_SIZE).into(),
        )
        .await?;
    let e2 = blob
        .upload_part(
            &bucket,
            "big.bin",
            &id,
            2,
            filled(b'b', MIN_PART_SIZE).into(),
        )
        .await?;
    let e3 = blob
        .upload_part(&bucket, "big.bin", &id, 3, "tail".into())
        .await?;
    ensure!(
        e1 == "79b281060d337b9b2b84ccf390adcf74" && e3 == "7aea2552dfe7eb84b9443b6fc9ba6e01",
        "part ETags {e1} {e3} are not the parts' MD5s"
    );
    let parts = vec![
        CompletedPart {
            number: 1,
            etag: e1,
        },
        CompletedPart {
            number: 2,
            etag: e2,
        },
        CompletedPart {
            number: 3,
            etag: e3,
        },
    ];
    let meta = blob
        .complete_multipart_upload(&bucket, "big.bin", &id, parts)
        .await?;
    let size = 2 * MIN_PART_SIZE as u64 + 4;
    ensure!(meta.size == size, "size {} != {size}", meta.size);
    ensure!(
        meta.etag == "1af560d38fa58b7629ca9d6c912c720b-3",
        "multipart ETag {}",
        meta.etag
    );
    let head = blob.head_object(&bucket, "big.bin").await?;
    ensure!(
        head.content_type.as_deref() == Some("application/octet-stream"),
        "content type {:?}",
        head.content_type
    );
    let got = blob.get(&bucket, "big.bin").await?;
    ensure!(got.len() as u64 == size, "read {} bytes", got.len());
    ensure!(
        got[..MIN_PART_SIZE].iter().all(|&b| b == b'a')
            && got[MIN_PART_SIZE..2 * MIN_PART_SIZE]
                .iter()
                .all(|&b| b == b'b')
            && &got[2 * MIN_PART_SIZE..] == b"tail",
        "content is not the parts in order"
    );
    // A range across the boundary of parts 1 and 2.
    let start = MIN_PART_SIZE as u64 - 2;
    let across = blob
        .get_object(
            GetObject::new(&bucket, "big.bin").range(ByteRange::Bounded {
                start,
                end: start + 4,
            }),
        )
        .await?
        .bytes()
        .await?;
    ensure!(
        across.as_ref() == b"aabb",
        "range across parts read {across:?}"
    );
    // The upload is finished: it accepts no more parts.
    expect_err!(
        blob.upload_part(&bucket, "big.bin", &id, 4, "more".into())
            .await,
        NotFound
    );
    blob.delete_object(&bucket, "big.bin").await?;
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// Completing an upload whose first part is under 5 MiB is InvalidArgument and leaves no
/// object; an aborted upload is gone.
pub async fn multipart_small_part_rejected(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("smallpart");
    blob.create_bucket(&bucket).await?;
    let id = blob.create_multipart_upload(&bucket, "k", None).await?;
    let e1 = blob
        .upload_part(&bucket, "k", &id, 1, filled(b'a', 1024).into())
        .await?;
    let e2 = blob
        .upload_part(&bucket, "k", &id, 2, filled(b'b', 1024).into())
        .await?;
    let parts = vec![
        CompletedPart {
            number: 1,
            etag: e1,
        },
        CompletedPart {
            number: 2,
            etag: e2,
        },
    ];
    expect_err!(
        blob.complete_multipart_upload(&bucket, "k", &id, parts)
            .await,
        InvalidArgument
    );
    expect_err!(blob.head_object(&bucket, "k").await, NotFound);
    blob.abort_multipart_upload(&bucket, "k", &id).await?;
    expect_err!(
        blob.upload_part(&bucket, "k", &id, 3, "x".into()).await,
        NotFound
    );
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// Completing with an unknown part, a wrong part ETag, or parts out of order is
/// InvalidArgument; a part number outside 1..=10000 is InvalidArgument; an unknown upload
/// id is NotFound. The upload survives the failed attempts and completes.
pub async fn multipart_bad_part_list(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("badparts");
    blob.create_bucket(&bucket).await?;
    let id = blob.create_multipart_upload(&bucket, "k", None).await?;
    let e1 = blob
        .upload_part(&bucket, "k", &id, 1, filled(b'a', MIN_PART_SIZE).into())
        .await?;
    let e2 = blob.upload_part(&bucket, "k", &id, 2, "end".into()).await?;
    let part = |number: u32, etag: &str| CompletedPart {
        number,
        etag: etag.to_owned(),
    };
    for bad in [
        vec![part(1, &e1), part(3, &e2)],
        vec![part(1, &e1), part(2, "0123456789abcdef0123456789abcdef")],
        vec![part(2, &e2), part(1, &e1)],
    ] {
        expect_err!(
            blob.complete_multipart_upload(&bucket, "k", &id, bad).await,
            InvalidArgument
        );
    }
    expect_err!(
        blob.upload_part(&bucket, "k", &id, 0, "x".into()).await,
        InvalidArgument
    );
    expect_err!(
        blob.upload_part(&bucket, "k", &id, 10_001, "x".into())
            .await,
        InvalidArgument
    );
    expect_err!(
        blob.upload_part(&bucket, "k", "no-such-upload", 1, "x".into())
            .await,
        NotFound
    );
    let meta = blob
        .complete_multipart_upload(&bucket, "k", &id, vec![part(1, &e1), part(2, &e2)])
        .await?;
    ensure!(
        meta.size == MIN_PART_SIZE as u64 + 3 && meta.etag.ends_with("-2"),
        "completed {meta:?}"
    );
    blob.delete_object(&bucket, "k").await?;
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// The content of the large-object cases: 1 MiB chunks of a pattern that differs by position.
fn chunk(i: usize) -> Bytes {
    const MIB: usize = 1024 * 1024;
    Bytes::from(
        (0..MIB)
            .map(|j| (j * 31 + i * 7) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn chunk_stream(chunks: usize) -> ByteStream {
    Box::pin(futures::stream::iter((0..chunks).map(|i| Ok(chunk(i)))))
}

/// A 20 MiB object put as a stream of 1 MiB chunks reads back intact (also as a stream, and
/// by range), with the same ETag as the same bytes put in one piece.
pub async fn large_streamed_object(ctx: &mut Ctx) -> Outcome {
    const CHUNKS: usize = 20;
    const MIB: u64 = 1024 * 1024;
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("large");
    blob.create_bucket(&bucket).await?;
    let streamed = blob
        .put_object(PutObject::new(
            &bucket,
            "streamed",
            Body::Stream(chunk_stream(CHUNKS)),
        ))
        .await?;
    ensure!(
        streamed.size == CHUNKS as u64 * MIB,
        "size {}",
        streamed.size
    );
    let whole: Vec<u8> = (0..CHUNKS).flat_map(|i| chunk(i).to_vec()).collect();
    let in_one = blob.put(&bucket, "whole", whole.clone()).await?;
    ensure!(
        streamed.etag == in_one.etag,
        "streamed ETag {} != one-piece ETag {}",
        streamed.etag,
        in_one.etag
    );
    let mut body = blob
        .get_object(GetObject::new(&bucket, "streamed"))
        .await?
        .body;
    let mut read = Vec::with_capacity(whole.len());
    while let Some(piece) = body.next().await {
        read.extend_from_slice(&piece?);
    }
    ensure!(read.len() == whole.len(), "read {} bytes", read.len());
    ensure!(read == whole, "streamed content differs");
    let (start, end) = (3 * MIB - 10, 5 * MIB + 10);
    let range = blob
        .get_object(GetObject::new(&bucket, "streamed").range(ByteRange::Bounded { start, end }))
        .await?
        .bytes()
        .await?;
    ensure!(
        range.as_ref() == &whole[start as usize..end as usize],
        "range of the streamed object differs"
    );
    blob.delete_object(&bucket, "streamed").await?;
    blob.delete_object(&bucket, "whole").await?;
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// A put whose body stream fails part-way fails, and leaves the previous object untouched.
pub async fn failed_stream_leaves_object_unchanged(ctx: &mut Ctx) -> Outcome {
    let blob = ctx.cloud().blob()?.clone();
    let bucket = ctx.name("failstream");
    blob.create_bucket(&bucket).await?;
    let before = blob.put(&bucket, "k", "before").await?;
    let failing: ByteStream = Box::pin(futures::stream::iter((0..4).map(|i| {
        if i < 3 {
            Ok(chunk(i))
        } else {
            Err(mvi_core::Error::new(
                ErrorKind::Unavailable,
                mvi_core::Service::Blob,
                "test-body",
                "the body's source broke",
            ))
        }
    })));
    let result = blob
        .put_object(PutObject::new(&bucket, "k", Body::Stream(failing)))
        .await;
    ensure!(
        result.is_err(),
        "a put with a failing body succeeded: {result:?}"
    );
    let head = blob.head_object(&bucket, "k").await?;
    ensure!(
        head.etag == before.etag,
        "the failed put replaced the object"
    );
    ensure!(
        blob.get(&bucket, "k").await?.as_ref() == b"before",
        "content changed"
    );
    blob.delete_object(&bucket, "k").await?;
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

/// Buckets, small and large objects, and an unfinished multipart upload survive a restart.
pub async fn persists_across_reopen(ctx: &mut Ctx) -> Outcome {
    let bucket = ctx.name("persist");
    let big: Vec<u8> = (0..3).flat_map(|i| chunk(i).to_vec()).collect();
    let (small_etag, big_etag, upload, part_etag) = {
        let blob = ctx.cloud().blob()?.clone();
        blob.create_bucket(&bucket).await?;
        let small = blob
            .put_object(PutObject::new(&bucket, "small", "tiny").content_type("text/plain"))
            .await?;
        let large = blob.put(&bucket, "dir/large", big.clone()).await?;
        let upload = blob.create_multipart_upload(&bucket, "parts", None).await?;
        let part_etag = blob
            .upload_part(&bucket, "parts", &upload, 1, "only part".into())
            .await?;
        (small.etag, large.etag, upload, part_etag)
    };
    ctx.reopen().await?;
    let blob: Arc<dyn Blob> = ctx.cloud().blob()?.clone();
    ensure!(
        blob.list_buckets().await?.iter().any(|b| b.name == bucket),
        "bucket lost"
    );
    let small = blob.head_object(&bucket, "small").await?;
    ensure!(
        small.etag == small_etag && small.content_type.as_deref() == Some("text/plain"),
        "small object metadata {small:?}"
    );
    ensure!(
        blob.get(&bucket, "small").await?.as_ref() == b"tiny",
        "small content"
    );
    let large = blob
        .get_object(GetObject::new(&bucket, "dir/large"))
        .await?;
    ensure!(
        large.meta.etag == big_etag,
        "large ETag {}",
        large.meta.etag
    );
    ensure!(
        large.bytes().await?.as_ref() == big.as_slice(),
        "large content"
    );
    let keys: Vec<String> = blob
        .list_all(&bucket, "")
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    ensure!(keys == ["dir/large", "small"], "listing {keys:?}");
    let done = blob
        .complete_multipart_upload(
            &bucket,
            "parts",
            &upload,
            vec![CompletedPart {
                number: 1,
                etag: part_etag,
            }],
        )
        .await?;
    ensure!(done.etag.ends_with("-1"), "completed ETag {}", done.etag);
    ensure!(
        blob.get(&bucket, "parts").await?.as_ref() == b"only part",
        "multipart content after reopen"
    );
    for k in ["small", "dir/large", "parts"] {
        blob.delete_object(&bucket, k).await?;
    }
    blob.delete_bucket(&bucket).await?;
    Ok(())
}

//! Blob cases.

use mvi_core::BlobExt;

use crate::{Ctx, Outcome, ensure, expect_err};

/// Every Blob case, as tests against `$target`.
#[macro_export]
macro_rules! blob_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
            blob_put_get_roundtrip => $crate::blob::put_get_roundtrip;
            blob_get_missing_is_not_found => $crate::blob::get_missing_is_not_found;
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

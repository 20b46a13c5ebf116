//! Blob on S3.
//!
//! Names are checked with core's validators before any request, so a bad bucket name or key
//! fails the same way as on the local backend. ETags are returned without S3's quotes and
//! quoted again on the way out. A streamed body is spooled to a temporary file first: S3's
//! single-part put needs its length up front, and a stream that fails part-way must leave
//! the old object untouched (nothing is sent until the whole body is in hand).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream as S3Stream, DateTime as S3Time};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CompletedMultipartUpload, CompletedPart as S3Part,
    CreateBucketConfiguration,
};
use futures::StreamExt;
use mvi_core::blob::{
    Blob, Body, BucketInfo, ByteRange, CompletedPart, GetObject, GetObjectOutput, ListObjects,
    ListPage, MAX_LIST_KEYS, MAX_PART_NUMBER, ObjectMeta, PutMode, PutObject, validate_bucket_name,
    validate_key,
};
use mvi_core::{ByteStream, Op, Result, Service, Timestamp};
use tokio::io::AsyncWriteExt;

use crate::error::map;

const fn op(name: &'static str) -> Op {
    Op::new(Service::Blob, name)
}

/// The Blob service on Amazon S3 (or an S3-compatible endpoint).
#[derive(Debug, Clone)]
pub struct S3Blob {
    client: Client,
}

impl S3Blob {
    /// Blob over an S3 client.
    pub fn new(client: Client) -> Self {
        S3Blob { client }
    }

    fn region(&self) -> Option<String> {
        self.client.config().region().map(|r| r.to_string())
    }

    /// The object's metadata, read back after a write (S3's write answers lack the time).
    async fn meta_after_write(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<ObjectMeta> {
        let meta = self.head_object(bucket, key).await?;
        Ok(match etag.map(unquote) {
            // Another writer got in between the write and the head: report our write's
            // ETag (the rest is best effort in that race).
            Some(e) if e != meta.etag => ObjectMeta { etag: e, ..meta },
            _ => meta,
        })
    }
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

fn quote(etag: &str) -> String {
    if etag == "*" || etag.starts_with('"') {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

fn time(t: Option<&S3Time>) -> Timestamp {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or_else(chrono::Utc::now)
}

fn lower(metadata: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    metadata
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.to_lowercase(), v.clone()))
        .collect()
}

fn path(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

/// Percent-encodes a key for `x-amz-copy-source`, keeping `/`.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A request body with a known length; a spooled stream keeps its file until dropped.
struct Payload {
    stream: S3Stream,
    _spool: Option<tempfile::TempPath>,
}

async fn payload(op: Op, resource: &str, body: Body) -> Result<Payload> {
    let mut chunks = match body {
        Body::Bytes(b) => {
            return Ok(Payload {
                stream: S3Stream::from(b),
                _spool: None,
            });
        }
        Body::Stream(s) => s,
    };
    let io = |e: std::io::Error| op.internal(resource, e);
    let (file, spool) = tempfile::NamedTempFile::new().map_err(io)?.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    while let Some(chunk) = chunks.next().await {
        file.write_all(&chunk?).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    drop(file);
    let stream = S3Stream::from_path(&spool)
        .await
        .map_err(|e| op.internal(resource, e))?;
    Ok(Payload {
        stream,
        _spool: Some(spool),
    })
}

fn range_header(op: Op, resource: &str, range: ByteRange) -> Result<String> {
    Ok(match range {
        ByteRange::Bounded { start, end } if end <= start => {
            return Err(op.invalid(resource, format!("empty range {start}..{end}")));
        }
        ByteRange::Bounded { start, end } => format!("bytes={start}-{}", end - 1),
        ByteRange::From(start) => format!("bytes={start}-"),
        ByteRange::Suffix(0) => return Err(op.invalid(resource, "empty suffix range")),
        ByteRange::Suffix(n) => format!("bytes=-{n}"),
    })
}

/// `bytes START-LAST/TOTAL` → (start, end exclusive, total).
fn parse_content_range(s: &str) -> Option<(u64, u64, u64)> {
    let rest = s.strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, last) = span.split_once('-')?;
    Some((
        start.parse().ok()?,
        last.parse::<u64>().ok()? + 1,
        total.parse().ok()?,
    ))
}

#[async_trait]
impl Blob for S3Blob {
    async fn create_bucket(&self, bucket: &str) -> Result<BucketInfo> {
        let op = op("create_bucket");
        validate_bucket_name(op, bucket)?;
        let region = self.region();
        let mut req = self.client.create_bucket().bucket(bucket);
        match region.as_deref() {
            None | Some("us-east-1") => {
                // us-east-1 answers 200 when the caller already owns the bucket.
                if self
                    .client
                    .head_bucket()
                    .bucket(bucket)
                    .send()
                    .await
                    .is_ok()
                {
                    return Err(op.already_exists(bucket, "the bucket exists"));
                }
            }
            Some(r) => {
                req = req.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(r))
                        .build(),
                );
            }
        }
        req.send().await.map_err(|e| map(op, bucket, e))?;
        Ok(BucketInfo {
            name: bucket.to_owned(),
            created: chrono::Utc::now(),
        })
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let op = op("delete_bucket");
        validate_bucket_name(op, bucket)?;
        self.client
            .delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| map(op, bucket, e))?;
        Ok(())
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let op = op("list_buckets");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_buckets()
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| map(op, "", e))?;
            out.extend(page.buckets().iter().filter_map(|b| {
                Some(BucketInfo {
                    name: b.name()?.to_owned(),
                    created: time(b.creation_date()),
                })
            }));
            match page.continuation_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn put_object(&self, req: PutObject) -> Result<ObjectMeta> {
        let op = op("put_object");
        validate_bucket_name(op, &req.bucket)?;
        validate_key(op, &req.bucket, &req.key)?;
        let resource = path(&req.bucket, &req.key);
        let body = payload(op, &resource, req.body).await?;
        let metadata: HashMap<String, String> = req
            .metadata
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect();
        let mut put = self
            .client
            .put_object()
            .bucket(&req.bucket)
            .key(&req.key)
            .body(body.stream)
            .set_content_type(req.content_type)
            .set_metadata((!metadata.is_empty()).then_some(metadata));
        put = match &req.mode {
            PutMode::Overwrite => put,
            PutMode::Create => put.if_none_match("*"),
            PutMode::Update(etag) => put.if_match(quote(etag)),
        };
        let out = put.send().await.map_err(|e| map(op, &resource, e))?;
        self.meta_after_write(&req.bucket, &req.key, out.e_tag())
            .await
    }

    async fn get_object(&self, req: GetObject) -> Result<GetObjectOutput> {
        let op = op("get_object");
        validate_bucket_name(op, &req.bucket)?;
        validate_key(op, &req.bucket, &req.key)?;
        let resource = path(&req.bucket, &req.key);
        let range = req
            .range
            .map(|r| range_header(op, &resource, r))
            .transpose()?;
        let out = self
            .client
            .get_object()
            .bucket(&req.bucket)
            .key(&req.key)
            .set_range(range)
            .set_if_match(req.if_match.as_deref().map(quote))
            .set_if_none_match(req.if_none_match.as_deref().map(quote))
            .send()
            .await
            .map_err(|e| map(op, &resource, e))?;
        let length = out.content_length().unwrap_or(0).max(0) as u64;
        let (start, end, size) = out
            .content_range()
            .and_then(parse_content_range)
            .unwrap_or((0, length, length));
        let meta = ObjectMeta {
            bucket: req.bucket.clone(),
            key: req.key.clone(),
            size,
            etag: out.e_tag().map(unquote).unwrap_or_default(),
            last_modified: time(out.last_modified()),
            content_type: out.content_type().map(str::to_owned),
            metadata: lower(out.metadata()),
        };
        let body: ByteStream = Box::pin(futures::stream::unfold(Some(out.body), move |state| {
            let resource = resource.clone();
            async move {
                let mut s = state?;
                match s.try_next().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), Some(s))),
                    Ok(None) => None,
                    Err(e) => Some((Err(op.internal(resource, e)), None)),
                }
            }
        }));
        Ok(GetObjectOutput {
            meta,
            range: (start, end),
            body,
        })
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        let op = op("head_object");
        validate_bucket_name(op, bucket)?;
        validate_key(op, bucket, key)?;
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map(op, path(bucket, key), e))?;
        Ok(ObjectMeta {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().map(unquote).unwrap_or_default(),
            last_modified: time(out.last_modified()),
            content_type: out.content_type().map(str::to_owned),
            metadata: lower(out.metadata()),
        })
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        let op = op("delete_object");
        validate_bucket_name(op, bucket)?;
        validate_key(op, bucket, key)?;
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map(op, path(bucket, key), e))?;
        Ok(())
    }

    async fn copy_object(
        &self,
        from_bucket: &str,
        from_key: &str,
        to_bucket: &str,
        to_key: &str,
    ) -> Result<ObjectMeta> {
        let op = op("copy_object");
        validate_bucket_name(op, from_bucket)?;
        validate_key(op, from_bucket, from_key)?;
        validate_bucket_name(op, to_bucket)?;
        validate_key(op, to_bucket, to_key)?;
        let out = self
            .client
            .copy_object()
            .copy_source(format!("{from_bucket}/{}", encode_key(from_key)))
            .bucket(to_bucket)
            .key(to_key)
            .send()
            .await
            .map_err(|e| map(op, path(from_bucket, from_key), e))?;
        let etag = out.copy_object_result().and_then(|r| r.e_tag());
        self.meta_after_write(to_bucket, to_key, etag).await
    }

    async fn list_objects(&self, req: ListObjects) -> Result<ListPage> {
        let op = op("list_objects");
        validate_bucket_name(op, &req.bucket)?;
        let max = req.max_keys.unwrap_or(MAX_LIST_KEYS);
        if max == 0 || max > MAX_LIST_KEYS {
            return Err(op.invalid(
                &req.bucket,
                format!("max_keys must be 1 to {MAX_LIST_KEYS}"),
            ));
        }
        let out = self
            .client
            .list_objects_v2()
            .bucket(&req.bucket)
            .set_prefix(req.prefix)
            .set_delimiter(req.delimiter)
            .max_keys(max as i32)
            .set_continuation_token(req.continuation)
            .send()
            .await
            .map_err(|e| map(op, &req.bucket, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectMeta {
                    bucket: req.bucket.clone(),
                    key: o.key()?.to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().map(unquote).unwrap_or_default(),
                    last_modified: time(o.last_modified()),
                    content_type: None,
                    metadata: BTreeMap::new(),
                })
            })
            .collect();
        let common_prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_owned))
            .collect();
        let next = match out.is_truncated() {
            Some(true) => out.next_continuation_token().map(str::to_owned),
            _ => None,
        };
        Ok(ListPage {
            objects,
            common_prefixes,
            next,
        })
    }

    async fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: Option<String>,
    ) -> Result<String> {
        let op = op("create_multipart_upload");
        validate_bucket_name(op, bucket)?;
        validate_key(op, bucket, key)?;
        let out = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_content_type(content_type)
            .send()
            .await
            .map_err(|e| map(op, path(bucket, key), e))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| op.internal(path(bucket, key), "S3 returned no upload id"))
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Body,
    ) -> Result<String> {
        let op = op("upload_part");
        validate_bucket_name(op, bucket)?;
        validate_key(op, bucket, key)?;
        let resource = path(bucket, key);
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(op.invalid(
                resource,
                format!("part numbers are 1 to {MAX_PART_NUMBER}, not {number}"),
            ));
        }
        let body = payload(op, &resource, body).await?;
        let out = self
            .client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number as i32)
            .body(body.stream)
            .send()
            .await
            .map_err(|e| map(op, format!("{resource} (upload {upload_id})"), e));
        match out {
            Ok(out) => Ok(out.e_tag().map(unquote).unwrap_or_default()),
            // S3 answers NoSuchUpload for an unknown or finished upload; moto (5.2.5) fails
            // with a bare HTTP 500 instead. Ask whether the upload exists before calling the
            // failure internal (only on this error path, so S3 pays nothing).
            Err(e) if e.kind() == mvi_core::ErrorKind::Internal => {
                let probe = self
                    .client
                    .list_parts()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .max_parts(1)
                    .send()
                    .await
                    .map_err(|p| map(op, "", p));
                match probe {
                    Err(p) if p.is_not_found() => Err(op.not_found(
                        format!("{resource} (upload {upload_id})"),
                        "no such upload (it was never started, or is finished or aborted)",
                    )),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<ObjectMeta> {
        let op = op("complete_multipart_upload");
        validate_bucket_name(op, bucket)?;
        validate_key(op, bucket, key)?;
        let parts = parts
            .iter()
            .map(|p| {
                S3Part::builder()
                    .part_number(p.number as i32)
                    .e_tag(quote(&p.etag))
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| map(op, format!("{} (upload {upload_id})", path(bucket, key)), e))?;
        self.meta_after_write(bucket, key, out.e_tag()).await
    }

    async fn abort_multipart_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let op = op("abort_multipart_upload");
        validate_bucket_name(op, bucket)?;
        validate_key(op, bucket, key)?;
        self.client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| map(op, format!("{} (upload {upload_id})", path(bucket, key)), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_and_quotes() {
        assert_eq!(parse_content_range("bytes 2-4/20"), Some((2, 5, 20)));
        assert_eq!(parse_content_range("nonsense"), None);
        assert_eq!(quote("abc"), "\"abc\"");
        assert_eq!(unquote("\"abc\""), "abc");
        assert_eq!(encode_key("dir/a b€"), "dir/a%20b%E2%82%AC");
    }
}

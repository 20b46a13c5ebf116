//! The S3 endpoint: Amazon S3's REST protocol over the local Blob service, through `s3s`.
//!
//! `s3s` parses requests (path-style and virtual-hosted-style), verifies SigV4 signatures
//! (headers, presigned URLs, aws-chunked streaming bodies), and serializes answers and errors
//! in S3's XML shapes; this module maps each operation onto [`Blob`] and each [`Error`] onto
//! the S3 error code clients branch on. Bodies stream both ways: an object is never held in
//! memory whole, and an upload whose body breaks off (or whose `Content-MD5` does not match)
//! fails before anything is stored, since the local Blob commits only at the end of a body.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use mvi_core::access::{Account, Request as AccessRequest};
use mvi_core::blob::{
    Blob, Body, ByteRange, CompletedPart, GetObject, ListObjects, ObjectMeta, PutMode, PutObject,
};
use mvi_core::{ByteStream, Error, ErrorKind, Op, Service};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{self, ETag, ETagCondition, Range, StreamingBlob, Timestamp};
use s3s::host::{S3Host, VirtualHost};
use s3s::path::S3Path;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::Backends;
use super::keys::AccessKeys;

mod integrity;

/// The largest body of a single PUT (S3's limit: 5 GiB); larger objects take a multipart
/// upload.
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// The S3 operations, over a Blob service that may not be there yet (the cloud is still
/// opening) or any more (it was dropped).
pub(super) struct S3Door {
    backends: Arc<Backends>,
}

impl S3Door {
    pub(super) fn new(backends: Arc<Backends>) -> Self {
        S3Door { backends }
    }

    fn blob(&self) -> S3Result<Arc<dyn Blob>> {
        self.backends.blob().ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::ServiceUnavailable,
                "the local cloud serving this endpoint is not open",
            )
        })
    }
}

/// An mvi error as the S3 error a client expects (code and status), with mvi's message: the
/// Blob service's typed reason when it gives one, else the error's kind.
fn s3_err(e: Error) -> S3Error {
    use mvi_core::blob::Reason;
    let code = match (Reason::of(&e), e.kind()) {
        (Some(Reason::NoSuchBucket), _) => S3ErrorCode::NoSuchBucket,
        (Some(Reason::NoSuchUpload), _) => S3ErrorCode::NoSuchUpload,
        (Some(Reason::BucketNotEmpty), _) => S3ErrorCode::BucketNotEmpty,
        (Some(Reason::InvalidBucketName), _) => S3ErrorCode::InvalidBucketName,
        (Some(Reason::KeyTooLong), _) => S3ErrorCode::KeyTooLongError,
        (Some(Reason::BadDigest), _) => S3ErrorCode::BadDigest,
        (Some(Reason::InvalidRange), _) => S3ErrorCode::InvalidRange,
        (Some(Reason::InvalidPartOrder), _) => S3ErrorCode::InvalidPartOrder,
        (Some(Reason::EntityTooSmall), _) => S3ErrorCode::EntityTooSmall,
        (Some(Reason::InvalidPart), _) => S3ErrorCode::InvalidPart,
        (Some(Reason::MetadataTooLarge), _) => S3ErrorCode::MetadataTooLarge,
        (Some(Reason::NotModified), _) => S3ErrorCode::NotModified,
        (_, ErrorKind::NotFound) => S3ErrorCode::NoSuchKey,
        (_, ErrorKind::AlreadyExists) => S3ErrorCode::BucketAlreadyOwnedByYou,
        (_, ErrorKind::PreconditionFailed) => S3ErrorCode::PreconditionFailed,
        (_, ErrorKind::InvalidArgument) => S3ErrorCode::InvalidArgument,
        (_, ErrorKind::PermissionDenied | ErrorKind::Unauthenticated) => S3ErrorCode::AccessDenied,
        (_, ErrorKind::RateLimited) => S3ErrorCode::SlowDown,
        (_, ErrorKind::Unavailable) => S3ErrorCode::ServiceUnavailable,
        (_, ErrorKind::Timeout) => S3ErrorCode::RequestTimeout,
        (_, ErrorKind::Unsupported) => S3ErrorCode::NotImplemented,
        _ => S3ErrorCode::InternalError,
    };
    S3Error::with_message(code, e.to_string())
}

fn timestamp(t: mvi_core::Timestamp) -> Timestamp {
    Timestamp::from(std::time::SystemTime::from(t))
}

fn etag(s: &str) -> ETag {
    ETag::Strong(s.to_owned())
}

fn metadata(meta: &ObjectMeta) -> Option<dto::Metadata> {
    (!meta.metadata.is_empty()).then(|| {
        meta.metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// S3's `Range` header as a Blob byte range (S3 ranges are inclusive).
fn byte_range(range: Range) -> ByteRange {
    match range {
        Range::Int {
            first,
            last: Some(last),
        } => ByteRange::Bounded {
            start: first,
            end: last.saturating_add(1),
        },
        Range::Int { first, last: None } => ByteRange::From(first),
        Range::Suffix { length } => ByteRange::Suffix(length),
    }
}

fn condition(c: &ETagCondition) -> String {
    match c {
        ETagCondition::Any => "*".to_owned(),
        ETagCondition::ETag(e) => e.value().to_owned(),
    }
}

/// Checks `If-Match` and `If-None-Match` against an object's ETag (for HEAD and copy sources;
/// GET's are the Blob service's own): a failed If-Match is 412, a matching If-None-Match is
/// `none_match` (304 for HEAD, 412 for a copy source, as S3 answers).
fn check_etag(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    etag: &str,
    none_match: S3ErrorCode,
) -> S3Result<()> {
    if let Some(c) = if_match
        && !c.is_any()
        && condition(c) != etag
    {
        return Err(S3Error::with_message(
            S3ErrorCode::PreconditionFailed,
            format!(
                "the object's ETag is {etag}, not {} (if-match)",
                condition(c)
            ),
        ));
    }
    if let Some(c) = if_none_match
        && (c.is_any() || condition(c) == etag)
    {
        return Err(S3Error::with_message(
            none_match,
            format!("the object's ETag is {etag} (if-none-match)"),
        ));
    }
    Ok(())
}

/// A request body as a Blob body, checked against `expected` (`Content-MD5`, checksums) as
/// it ends; read errors (a client that stops mid-body, a bad chunk signature) and mismatches
/// end the stream with an error, so nothing is stored.
fn request_body(
    blob: Option<StreamingBlob>,
    name: &str,
    expected: integrity::Expected,
) -> S3Result<(Body, integrity::Computed)> {
    let name = name.to_owned();
    let stream: ByteStream = match blob {
        Some(blob) => Box::pin(blob.map_err(move |e| {
            Op::new(Service::Blob, "put_object")
                .invalid(&name, format!("the request body could not be read: {e}"))
        })),
        None => mvi_core::common::once_stream(Bytes::new()),
    };
    let (stream, computed) = integrity::checked(stream, expected)?;
    Ok((Body::Stream(stream), computed))
}

/// The checksum fields PutObject and UploadPart share: what the input sends, what the output
/// gives back.
trait Checksums {
    fn sent(
        &self,
    ) -> (
        Option<String>,
        dto::Checksum,
        Option<dto::ChecksumAlgorithm>,
    );
}

trait ReturnsChecksums {
    fn with_checksums(self, sums: dto::Checksum) -> Self;
}

macro_rules! upload_checksums {
    ($input:ty, $output:ty) => {
        impl Checksums for $input {
            fn sent(
                &self,
            ) -> (
                Option<String>,
                dto::Checksum,
                Option<dto::ChecksumAlgorithm>,
            ) {
                let sums = dto::Checksum {
                    checksum_crc32: self.checksum_crc32.clone(),
                    checksum_crc32c: self.checksum_crc32c.clone(),
                    checksum_crc64nvme: self.checksum_crc64nvme.clone(),
                    checksum_sha1: self.checksum_sha1.clone(),
                    checksum_sha256: self.checksum_sha256.clone(),
                    ..Default::default()
                };
                (
                    self.content_md5.clone(),
                    sums,
                    self.checksum_algorithm.clone(),
                )
            }
        }

        impl ReturnsChecksums for $output {
            fn with_checksums(mut self, sums: dto::Checksum) -> Self {
                self.checksum_crc32 = sums.checksum_crc32;
                self.checksum_crc32c = sums.checksum_crc32c;
                self.checksum_crc64nvme = sums.checksum_crc64nvme;
                self.checksum_sha1 = sums.checksum_sha1;
                self.checksum_sha256 = sums.checksum_sha256;
                self
            }
        }
    };
}

upload_checksums!(dto::PutObjectInput, dto::PutObjectOutput);
upload_checksums!(dto::UploadPartInput, dto::UploadPartOutput);

/// What an upload's headers say its body must match.
fn expected_integrity<T: Checksums>(req: &S3Request<T>) -> integrity::Expected {
    let (md5, checksums, algorithm) = req.input.sent();
    integrity::Expected {
        md5,
        checksums,
        algorithm,
        trailer: req
            .headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        trailers: req.trailing_headers.clone(),
    }
}

/// A response body: Blob streams are `Send`, `s3s` wants `Sync` too, which a mutex gives
/// without ever being contended (only the one poller touches it).
struct SyncBody(Mutex<ByteStream>);

impl Stream for SyncBody {
    type Item = mvi_core::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let inner = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        inner.as_mut().poll_next(cx)
    }
}

fn check_put_size(len: Option<i64>) -> S3Result<()> {
    match len {
        Some(n) if n as u64 > MAX_PUT_SIZE => Err(S3Error::with_message(
            S3ErrorCode::EntityTooLarge,
            format!(
                "a single PUT takes at most {MAX_PUT_SIZE} bytes ({n} were sent); use a multipart upload"
            ),
        )),
        _ => Ok(()),
    }
}

fn list_page_size(max_keys: Option<i32>) -> S3Result<usize> {
    match max_keys {
        None => Ok(mvi_core::blob::MAX_LIST_KEYS),
        Some(n) if n < 0 => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "max-keys must not be negative",
        )),
        Some(n) => Ok((n as usize).min(mvi_core::blob::MAX_LIST_KEYS)),
    }
}

fn object(o: &ObjectMeta) -> dto::Object {
    dto::Object {
        key: Some(o.key.clone()),
        e_tag: Some(etag(&o.etag)),
        size: Some(o.size as i64),
        last_modified: Some(timestamp(o.last_modified)),
        storage_class: Some(dto::ObjectStorageClass::from_static(
            dto::ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl S3 for S3Door {
    async fn list_buckets(
        &self,
        _req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let buckets = self.blob()?.list_buckets().await.map_err(s3_err)?;
        Ok(S3Response::new(dto::ListBucketsOutput {
            buckets: Some(
                buckets
                    .into_iter()
                    .map(|b| dto::Bucket {
                        name: Some(b.name),
                        creation_date: Some(timestamp(b.created)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        let bucket = &req.input.bucket;
        self.blob()?.create_bucket(bucket).await.map_err(s3_err)?;
        Ok(S3Response::new(dto::CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        let blob = self.blob()?;
        let page = blob
            .list_objects(ListObjects::new(&req.input.bucket).max_keys(1))
            .await
            .map_err(s3_err)?;
        drop(page);
        Ok(S3Response::new(dto::HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        self.head_bucket(req.map_input(|i| dto::HeadBucketInput {
            bucket: i.bucket,
            ..Default::default()
        }))
        .await?;
        Ok(S3Response::new(dto::GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        self.blob()?
            .delete_bucket(&req.input.bucket)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::DeleteBucketOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let expected = expected_integrity(&req);
        let i = req.input;
        check_put_size(i.content_length)?;
        let mode = match (&i.if_none_match, &i.if_match) {
            (Some(ETagCondition::Any), _) => PutMode::Create,
            (Some(_), _) => {
                return Err(S3Error::with_message(
                    S3ErrorCode::NotImplemented,
                    "If-None-Match on PUT takes only '*'",
                ));
            }
            (None, Some(c)) => PutMode::Update(condition(c)),
            (None, None) => PutMode::Overwrite,
        };
        let name = format!("{}/{}", i.bucket, i.key);
        let (body, computed) = request_body(i.body, &name, expected)?;
        let mut put = PutObject::new(i.bucket, i.key, body).mode(mode);
        put.content_type = i.content_type;
        put.metadata = i.metadata.unwrap_or_default().into_iter().collect();
        let meta = self.blob()?.put_object(put).await.map_err(s3_err)?;
        Ok(S3Response::new(
            dto::PutObjectOutput {
                e_tag: Some(etag(&meta.etag)),
                size: Some(meta.size as i64),
                ..Default::default()
            }
            .with_checksums(computed.take()),
        ))
    }

    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let i = req.input;
        let mut get = GetObject::new(&i.bucket, &i.key);
        get.range = i.range.map(byte_range);
        get.if_match = i.if_match.as_ref().map(condition);
        get.if_none_match = i.if_none_match.as_ref().map(condition);
        // S3 answers a matching If-None-Match with 304 Not Modified, not 412: s3_err maps
        // the reason.
        let out = self.blob()?.get_object(get).await.map_err(s3_err)?;
        let (start, end) = out.range;
        let content_range = i
            .range
            .is_some()
            .then(|| format!("bytes {start}-{}/{}", end.saturating_sub(1), out.meta.size));
        Ok(S3Response::new(dto::GetObjectOutput {
            body: Some(StreamingBlob::wrap(SyncBody(Mutex::new(out.body)))),
            content_length: Some((end - start) as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            content_type: out.meta.content_type.clone(),
            e_tag: Some(etag(&out.meta.etag)),
            last_modified: Some(timestamp(out.meta.last_modified)),
            metadata: metadata(&out.meta),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let i = req.input;
        let meta = self
            .blob()?
            .head_object(&i.bucket, &i.key)
            .await
            .map_err(s3_err)?;
        check_etag(
            i.if_match.as_ref(),
            i.if_none_match.as_ref(),
            &meta.etag,
            S3ErrorCode::NotModified,
        )?;
        Ok(S3Response::new(dto::HeadObjectOutput {
            content_length: Some(meta.size as i64),
            accept_ranges: Some("bytes".into()),
            content_type: meta.content_type.clone(),
            e_tag: Some(etag(&meta.etag)),
            last_modified: Some(timestamp(meta.last_modified)),
            metadata: metadata(&meta),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        self.blob()?
            .delete_object(&req.input.bucket, &req.input.key)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let i = req.input;
        if i.delete.objects.len() > 1000 {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                "a DeleteObjects request names at most 1000 keys",
            ));
        }
        let blob = self.blob()?;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for o in i.delete.objects {
            match blob.delete_object(&i.bucket, &o.key).await {
                Ok(()) => deleted.push(dto::DeletedObject {
                    key: Some(o.key),
                    ..Default::default()
                }),
                Err(e) => {
                    let err = s3_err(e);
                    errors.push(dto::Error {
                        code: Some(err.code().as_str().to_owned()),
                        message: err.message().map(str::to_owned),
                        key: Some(o.key),
                        ..Default::default()
                    });
                }
            }
        }
        let quiet = i.delete.quiet.unwrap_or(false);
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        let i = req.input;
        let dto::CopySource::Bucket { bucket, key, .. } = &i.copy_source else {
            return Err(S3Error::with_message(
                S3ErrorCode::NotImplemented,
                "copies from access points and outposts are not supported",
            ));
        };
        let blob = self.blob()?;
        if i.copy_source_if_match.is_some() || i.copy_source_if_none_match.is_some() {
            let src = blob.head_object(bucket, key).await.map_err(s3_err)?;
            check_etag(
                i.copy_source_if_match.as_ref(),
                i.copy_source_if_none_match.as_ref(),
                &src.etag,
                S3ErrorCode::PreconditionFailed,
            )?;
        }
        let meta = blob
            .copy_object(bucket, key, &i.bucket, &i.key)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::CopyObjectOutput {
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: Some(etag(&meta.etag)),
                last_modified: Some(timestamp(meta.last_modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let i = req.input;
        let max = list_page_size(i.max_keys)?;
        let mut list = ListObjects::new(&i.bucket).max_keys(max.max(1));
        list.prefix = i.prefix.clone();
        list.delimiter = i.delimiter.clone();
        list.continuation = i.continuation_token.clone();
        if list.continuation.is_none()
            && let Some(after) = &i.start_after
        {
            // The key just after `start_after` (its successor in byte order).
            list.continuation = Some(hex::encode(format!("{after}\0")));
        }
        let page = if max == 0 {
            self.blob()?
                .list_objects(ListObjects::new(&i.bucket).max_keys(1))
                .await
                .map_err(s3_err)?;
            mvi_core::blob::ListPage {
                objects: Vec::new(),
                common_prefixes: Vec::new(),
                next: None,
            }
        } else {
            self.blob()?.list_objects(list).await.map_err(s3_err)?
        };
        let key_count = (page.objects.len() + page.common_prefixes.len()) as i32;
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: Some(i.prefix.unwrap_or_default()),
            delimiter: i.delimiter,
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token: i.continuation_token,
            start_after: i.start_after,
            is_truncated: Some(page.next.is_some()),
            next_continuation_token: page.next,
            contents: Some(page.objects.iter().map(object).collect()),
            common_prefixes: Some(
                page.common_prefixes
                    .into_iter()
                    .map(|p| dto::CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            encoding_type: i.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let v2 = req.map_input(|i| dto::ListObjectsV2Input {
            bucket: i.bucket,
            delimiter: i.delimiter,
            encoding_type: i.encoding_type,
            max_keys: i.max_keys,
            prefix: i.prefix,
            start_after: i.marker,
            ..Default::default()
        });
        let marker = v2.input.start_after.clone();
        let out = self.list_objects_v2(v2).await?.output;
        // Version 1 pages by marker: the last key (or prefix) of this page.
        let next_marker = out.is_truncated.unwrap_or(false).then(|| {
            let last_key = out.contents.iter().flatten().filter_map(|o| o.key.clone());
            let last_prefix = out
                .common_prefixes
                .iter()
                .flatten()
                .filter_map(|p| p.prefix.clone());
            last_key.chain(last_prefix).max().unwrap_or_default()
        });
        Ok(S3Response::new(dto::ListObjectsOutput {
            name: out.name,
            prefix: out.prefix,
            marker,
            max_keys: out.max_keys,
            is_truncated: out.is_truncated,
            contents: out.contents,
            common_prefixes: out.common_prefixes,
            delimiter: out.delimiter,
            next_marker,
            encoding_type: out.encoding_type,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let i = req.input;
        let id = self
            .blob()?
            .create_multipart_upload(&i.bucket, &i.key, i.content_type)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::CreateMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        let expected = expected_integrity(&req);
        let i = req.input;
        check_put_size(i.content_length)?;
        let number = u32::try_from(i.part_number).map_err(|_| {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "part numbers are between 1 and 10000",
            )
        })?;
        let name = format!("{}/{}", i.bucket, i.key);
        let (body, computed) = request_body(i.body, &name, expected)?;
        let tag = self
            .blob()?
            .upload_part(&i.bucket, &i.key, &i.upload_id, number, body)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(
            dto::UploadPartOutput {
                e_tag: Some(etag(&tag)),
                ..Default::default()
            }
            .with_checksums(computed.take()),
        ))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let i = req.input;
        let parts = i
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let number = p.part_number.and_then(|n| u32::try_from(n).ok());
                match (number, p.e_tag) {
                    (Some(number), Some(tag)) => Ok(CompletedPart {
                        number,
                        etag: tag.into_value(),
                    }),
                    _ => Err(S3Error::with_message(
                        S3ErrorCode::MalformedXML,
                        "every part needs a PartNumber and an ETag",
                    )),
                }
            })
            .collect::<S3Result<Vec<_>>>()?;
        let meta = self
            .blob()?
            .complete_multipart_upload(&i.bucket, &i.key, &i.upload_id, parts)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::CompleteMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            e_tag: Some(etag(&meta.etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let i = req.input;
        self.blob()?
            .abort_multipart_upload(&i.bucket, &i.key, &i.upload_id)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
    }
}

/// Secret keys for `s3s`'s signature checks, from the endpoint's access keys.
pub(super) struct KeyLookup(pub(super) Arc<AccessKeys>);

#[async_trait::async_trait]
impl S3Auth for KeyLookup {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.lookup(access_key) {
            Some(k) => Ok(SecretKey::from(k.secret.expose())),
            None => Err(S3Error::with_message(
                S3ErrorCode::InvalidAccessKeyId,
                "the AWS access key id does not exist in this local cloud",
            )),
        }
    }
}

/// Authorization: every request's operation and resource, as the IAM action and ARN AWS
/// checks, against the policy of the access key that signed it.
pub(super) struct PolicyCheck {
    pub(super) keys: Arc<AccessKeys>,
    pub(super) account: Account,
}

/// The IAM action of an S3 operation (as AWS documents them: most are `s3:<Operation>`).
fn iam_action(op: &str) -> String {
    let action = match op {
        "HeadObject" => "GetObject",
        "HeadBucket" | "ListObjects" | "ListObjectsV2" => "ListBucket",
        "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload"
        | "CopyObject"
        | "UploadPartCopy" => "PutObject",
        "DeleteObjects" => "DeleteObject",
        "ListBuckets" => "ListAllMyBuckets",
        "ListMultipartUploads" => "ListBucketMultipartUploads",
        "ListParts" => "ListMultipartUploadParts",
        other => other,
    };
    format!("s3:{action}")
}

impl PolicyCheck {
    fn require(&self, access_key: Option<&str>, action: &str, resource: &str) -> S3Result<()> {
        let Some(id) = access_key else {
            return Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                "anonymous requests are not allowed: sign requests with an access key",
            ));
        };
        let principal = self.keys.lookup(id).map(|k| k.principal);
        match principal {
            Some(p) if p.policy.allows(&AccessRequest::new(action, resource)) => Ok(()),
            Some(p) => Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                format!(
                    "{} is not authorized to perform {action} on resource {resource}",
                    p.name
                ),
            )),
            None => Err(s3_error!(InvalidAccessKeyId)),
        }
    }
}

#[async_trait::async_trait]
impl S3Access for PolicyCheck {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let action = iam_action(cx.s3_op().name());
        let resource = match cx.s3_path() {
            S3Path::Root => "*".to_owned(),
            S3Path::Bucket { bucket } => self.account.bucket_arn(bucket),
            S3Path::Object { bucket, key } => self.account.object_arn(bucket, key),
        };
        let id = cx.credentials().map(|c| c.access_key.clone());
        self.require(id.as_deref(), &action, &resource)
    }

    async fn copy_object(&self, req: &mut S3Request<dto::CopyObjectInput>) -> S3Result<()> {
        // Reading the source needs s3:GetObject on it, besides s3:PutObject on the target.
        if let dto::CopySource::Bucket { bucket, key, .. } = &req.input.copy_source {
            let id = req.credentials.as_ref().map(|c| c.access_key.clone());
            self.require(
                id.as_deref(),
                "s3:GetObject",
                &self.account.object_arn(bucket, key),
            )?;
        }
        Ok(())
    }

    async fn delete_objects(&self, req: &mut S3Request<dto::DeleteObjectsInput>) -> S3Result<()> {
        let id = req.credentials.as_ref().map(|c| c.access_key.clone());
        for o in &req.input.delete.objects {
            self.require(
                id.as_deref(),
                "s3:DeleteObject",
                &self.account.object_arn(&req.input.bucket, &o.key),
            )?;
        }
        Ok(())
    }
}

/// Virtual-hosted-style addressing on the endpoint's own names (`photos.localhost:4566`);
/// every other host (`127.0.0.1:4566`, a container's view of the host) is path-style.
pub(super) struct Hosts {
    pub(super) domains: Vec<String>,
}

impl S3Host for Hosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        for domain in &self.domains {
            if host.eq_ignore_ascii_case(domain) {
                return Ok(VirtualHost::new(domain.as_str()));
            }
            if let Some(bucket) = host
                .len()
                .checked_sub(domain.len() + 1)
                .filter(|&at| {
                    host.is_char_boundary(at)
                        && host[at..].starts_with('.')
                        && host[at + 1..].eq_ignore_ascii_case(domain)
                })
                .map(|at| &host[..at])
                .filter(|b| !b.is_empty())
            {
                return Ok(VirtualHost::new(domain.as_str()).with_bucket(bucket));
            }
        }
        Ok(VirtualHost::new(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_split_virtual_buckets_from_path_style() {
        let hosts = Hosts {
            domains: vec!["localhost:4566".into(), "127.0.0.1:4566".into()],
        };
        let bucket = |h: &str| {
            hosts
                .parse_host_header(h)
                .ok()
                .and_then(|v| v.bucket().map(str::to_owned))
        };
        assert_eq!(bucket("localhost:4566"), None);
        assert_eq!(bucket("127.0.0.1:4566"), None);
        assert_eq!(bucket("photos.localhost:4566").as_deref(), Some("photos"));
        assert_eq!(bucket("a.b.localhost:4566").as_deref(), Some("a.b"));
        assert_eq!(bucket("host.docker.internal:4566"), None);
        assert_eq!(bucket(".localhost:4566"), None);
    }

    #[test]
    fn actions_are_iams() {
        assert_eq!(iam_action("GetObject"), "s3:GetObject");
        assert_eq!(iam_action("HeadObject"), "s3:GetObject");
        assert_eq!(iam_action("ListObjectsV2"), "s3:ListBucket");
        assert_eq!(iam_action("UploadPart"), "s3:PutObject");
        assert_eq!(iam_action("DeleteObjects"), "s3:DeleteObject");
        assert_eq!(iam_action("ListBuckets"), "s3:ListAllMyBuckets");
    }

    #[test]
    fn errors_map_to_s3_codes() {
        use mvi_core::blob::Reason;
        let op = Op::new(Service::Blob, "get_object");
        let code = |e: Error| s3_err(e).code().as_str().to_owned();
        // The Blob service's typed reason decides, never the message's text.
        assert_eq!(
            code(Reason::NoSuchBucket.tag(op.not_found("b", "gone"))),
            "NoSuchBucket"
        );
        assert_eq!(code(op.not_found("b", "no such bucket")), "NoSuchKey");
        assert_eq!(code(op.not_found("b/k", "no such key")), "NoSuchKey");
        assert_eq!(
            code(Reason::BucketNotEmpty.tag(op.precondition("b", "the bucket holds 3 objects"))),
            "BucketNotEmpty"
        );
        assert_eq!(code(op.precondition("b/k", "etag")), "PreconditionFailed");
        assert_eq!(
            code(Reason::NotModified.tag(op.precondition("b/k", "etag"))),
            "NotModified"
        );
        assert_eq!(
            code(Reason::InvalidBucketName.tag(op.invalid("b", "too short"))),
            "InvalidBucketName"
        );
        assert_eq!(
            code(Reason::InvalidRange.tag(op.invalid("b/k", "past the end"))),
            "InvalidRange"
        );
        assert_eq!(code(op.invalid("b/k", "a range")), "InvalidArgument");
    }
}

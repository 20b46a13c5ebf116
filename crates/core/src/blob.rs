//! Blob: object storage (S3 on AWS, files under the state root locally).
//!
//! Buckets follow S3's naming rules ([`validate_bucket_name`]); keys are UTF-8, 1 to 1024
//! bytes. Every object has an ETag: the hex MD5 of its content for single-part puts (as S3),
//! and `md5-of-part-md5s-N` for multipart uploads. Conditional puts are typed ([`PutMode`]).

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::common::{ByteStream, Timestamp, collect_bytes, once_stream};
use crate::error::{Op, Result};

/// The largest object key, in bytes (as S3).
pub const MAX_KEY_LEN: usize = 1024;
/// The smallest part of a multipart upload, except the last (as S3: 5 MiB).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// The highest part number of a multipart upload (as S3).
pub const MAX_PART_NUMBER: u32 = 10_000;
/// The most keys a listing page returns (as S3).
pub const MAX_LIST_KEYS: usize = 1000;

/// The body of a put: bytes in memory or a stream (for objects larger than memory).
pub enum Body {
    /// The whole body in memory.
    Bytes(Bytes),
    /// A stream of chunks, read once.
    Stream(ByteStream),
}

impl Body {
    /// Turns the body into a stream.
    pub fn into_stream(self) -> ByteStream {
        match self {
            Body::Bytes(b) => once_stream(b),
            Body::Stream(s) => s,
        }
    }

    /// Reads the whole body into memory.
    pub async fn into_bytes(self) -> Result<Bytes> {
        match self {
            Body::Bytes(b) => Ok(b),
            Body::Stream(s) => collect_bytes(s).await,
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
            Body::Stream(_) => f.write_str("Body::Stream(..)"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::Bytes(b)
    }
}
impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Self {
        Body::Bytes(b.into())
    }
}
impl From<&'static [u8]> for Body {
    fn from(b: &'static [u8]) -> Self {
        Body::Bytes(Bytes::from_static(b))
    }
}
impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::Bytes(Bytes::from_static(s.as_bytes()))
    }
}
impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::Bytes(s.into())
    }
}
impl From<ByteStream> for Body {
    fn from(s: ByteStream) -> Self {
        Body::Stream(s)
    }
}

/// How a put treats an existing object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PutMode {
    /// Write whatever is there (the default).
    #[default]
    Overwrite,
    /// Write only if no object has this key (`If-None-Match: *`).
    Create,
    /// Write only if the current object has this ETag (`If-Match`).
    Update(String),
}

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    /// The bucket's name.
    pub name: String,
    /// When it was created.
    pub created: Timestamp,
}

/// What is known of an object without reading its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The entity tag (hex MD5 for single-part objects, without quotes).
    pub etag: String,
    /// When the object was last written.
    pub last_modified: Timestamp,
    /// The content type, if one was given.
    pub content_type: Option<String>,
    /// User metadata (S3's `x-amz-meta-*`), keys lower-case.
    pub metadata: BTreeMap<String, String>,
}

/// A put request.
#[derive(Debug)]
#[non_exhaustive]
pub struct PutObject {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// The content.
    pub body: Body,
    /// Conditional behaviour.
    pub mode: PutMode,
    /// Content type (`text/html`).
    pub content_type: Option<String>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
}

impl PutObject {
    /// A plain overwrite of `bucket/key` with `body`.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>, body: impl Into<Body>) -> Self {
        PutObject {
            bucket: bucket.into(),
            key: key.into(),
            body: body.into(),
            mode: PutMode::Overwrite,
            content_type: None,
            metadata: BTreeMap::new(),
        }
    }

    /// Sets the conditional mode.
    pub fn mode(mut self, mode: PutMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the content type.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Adds one user-metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// A byte range to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// Bytes `start..end` (end exclusive); clipped to the object's size.
    Bounded {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// From `start` to the end.
    From(u64),
    /// The last `n` bytes.
    Suffix(u64),
}

/// A get request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetObject {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// Only these bytes.
    pub range: Option<ByteRange>,
    /// Fail with PreconditionFailed unless the ETag matches.
    pub if_match: Option<String>,
    /// Fail with PreconditionFailed if the ETag matches (S3 answers 304 Not Modified).
    pub if_none_match: Option<String>,
}

impl GetObject {
    /// A get of the whole of `bucket/key`.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        GetObject {
            bucket: bucket.into(),
            key: key.into(),
            range: None,
            if_match: None,
            if_none_match: None,
        }
    }

    /// Reads only `range`.
    pub fn range(mut self, range: ByteRange) -> Self {
        self.range = Some(range);
        self
    }

    /// Requires the object's ETag to be `etag`.
    pub fn if_match(mut self, etag: impl Into<String>) -> Self {
        self.if_match = Some(etag.into());
        self
    }

    /// Requires the object's ETag not to be `etag`.
    pub fn if_none_match(mut self, etag: impl Into<String>) -> Self {
        self.if_none_match = Some(etag.into());
        self
    }
}

/// The answer to a get: the object's metadata and its content as a stream.
pub struct GetObjectOutput {
    /// The object's metadata (size is the whole object's).
    pub meta: ObjectMeta,
    /// The bytes returned: the whole object, or the requested range (start, end exclusive).
    pub range: (u64, u64),
    /// The content.
    pub body: ByteStream,
}

impl GetObjectOutput {
    /// Reads the whole body into memory.
    pub async fn bytes(self) -> Result<Bytes> {
        collect_bytes(self.body).await
    }
}

impl fmt::Debug for GetObjectOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetObjectOutput")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// A listing request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ListObjects {
    /// The bucket.
    pub bucket: String,
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Group keys sharing a prefix up to this delimiter into `common_prefixes` (usually "/").
    pub delimiter: Option<String>,
    /// At most this many entries (objects plus common prefixes) per page; at most 1000.
    pub max_keys: Option<usize>,
    /// The `next` token of the previous page.
    pub continuation: Option<String>,
}

impl ListObjects {
    /// Lists `bucket`.
    pub fn new(bucket: impl Into<String>) -> Self {
        ListObjects {
            bucket: bucket.into(),
            ..Default::default()
        }
    }

    /// Only keys starting with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Groups by `delimiter`.
    pub fn delimiter(mut self, delimiter: impl Into<String>) -> Self {
        self.delimiter = Some(delimiter.into());
        self
    }

    /// Page size.
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = Some(n);
        self
    }

    /// Continues after a previous page.
    pub fn continuation(mut self, token: Option<String>) -> Self {
        self.continuation = token;
        self
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Objects, in key order.
    pub objects: Vec<ObjectMeta>,
    /// Prefixes ending in the delimiter, in order, each listed once across pages.
    pub common_prefixes: Vec<String>,
    /// Token of the next page; `None` on the last.
    pub next: Option<String>,
}

/// A part uploaded in a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedPart {
    /// Part number, 1 to 10,000.
    pub number: u32,
    /// The part's ETag as returned by `upload_part`.
    pub etag: String,
}

/// Object storage.
///
/// The required methods are the service's core; [`BlobExt`] adds conveniences over them.
#[async_trait]
pub trait Blob: fmt::Debug + Send + Sync + 'static {
    /// Creates a bucket. AlreadyExists if it does; InvalidArgument if the name breaks S3's rules.
    async fn create_bucket(&self, bucket: &str) -> Result<BucketInfo>;
    /// Deletes an empty bucket. PreconditionFailed if it still holds objects.
    async fn delete_bucket(&self, bucket: &str) -> Result<()>;
    /// All buckets, by name.
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>>;

    /// Writes an object (streams large bodies; never holds more than a chunk in memory locally).
    async fn put_object(&self, req: PutObject) -> Result<ObjectMeta>;
    /// Reads an object or a range of it.
    async fn get_object(&self, req: GetObject) -> Result<GetObjectOutput>;
    /// An object's metadata.
    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta>;
    /// Deletes an object. Deleting a missing key succeeds (as S3); a missing bucket is NotFound.
    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()>;
    /// Copies an object, with its content type and metadata.
    async fn copy_object(
        &self,
        from_bucket: &str,
        from_key: &str,
        to_bucket: &str,
        to_key: &str,
    ) -> Result<ObjectMeta>;
    /// One page of keys.
    async fn list_objects(&self, req: ListObjects) -> Result<ListPage>;

    /// Starts a multipart upload; returns its upload id.
    async fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: Option<String>,
    ) -> Result<String>;
    /// Uploads one part (1..=10,000); returns its ETag. Parts but the last must be ≥ 5 MiB.
    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Body,
    ) -> Result<String>;
    /// Assembles the parts, in the order given, into the object.
    async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<ObjectMeta>;
    /// Abandons an upload and its parts.
    async fn abort_multipart_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()>;
}

/// Conveniences over [`Blob`], for every implementation.
#[async_trait]
pub trait BlobExt: Blob {
    /// Overwrites `bucket/key` with `body`.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Body> + Send,
    ) -> Result<ObjectMeta> {
        self.put_object(PutObject::new(bucket, key, body)).await
    }

    /// Reads the whole of `bucket/key` into memory.
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes> {
        self.get_object(GetObject::new(bucket, key))
            .await?
            .bytes()
            .await
    }

    /// Every object under `prefix`, following pagination.
    async fn list_all(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .list_objects(ListObjects::new(bucket).prefix(prefix).continuation(token))
                .await?;
            out.extend(page.objects);
            match page.next {
                Some(next) => token = Some(next),
                None => return Ok(out),
            }
        }
    }
}

impl<T: Blob + ?Sized> BlobExt for T {}

/// Why a Blob operation was refused, in S3's terms, for callers that answer with S3's codes
/// (the local S3 endpoint) or branch on the cause: carried as the error's source, so the
/// error's kind and message stay as they are. `Reason::of(&err)` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The bucket does not exist (`NoSuchBucket`).
    NoSuchBucket,
    /// The multipart upload does not exist (`NoSuchUpload`).
    NoSuchUpload,
    /// The bucket still holds objects (`BucketNotEmpty`).
    BucketNotEmpty,
    /// The bucket name breaks S3's rules (`InvalidBucketName`).
    InvalidBucketName,
    /// The object key is empty or too long (`KeyTooLongError`).
    KeyTooLong,
    /// The body does not match its digest or checksum (`BadDigest`).
    BadDigest,
    /// The range is not satisfiable (`InvalidRange`).
    InvalidRange,
    /// Completed parts out of order or repeated (`InvalidPartOrder`).
    InvalidPartOrder,
    /// A part other than the last is below the minimum size (`EntityTooSmall`).
    EntityTooSmall,
    /// A completed part was not uploaded, or its ETag or number is wrong (`InvalidPart`).
    InvalidPart,
    /// The user metadata is too large (`MetadataTooLarge`).
    MetadataTooLarge,
    /// A read's If-None-Match matched: the object is not modified (`304 Not Modified`).
    NotModified,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for Reason {}

impl Reason {
    /// The reason `e` carries, if it is a Blob refusal with one.
    pub fn of(e: &crate::Error) -> Option<Reason> {
        std::error::Error::source(e)?.downcast_ref().copied()
    }

    /// `e`, carrying this reason.
    pub fn tag(self, e: crate::Error) -> crate::Error {
        e.with_source(self)
    }
}

/// Checks `name` against S3's bucket naming rules: 3–63 characters of lower-case letters,
/// digits, dots and hyphens; starts and ends with a letter or digit; no two adjacent dots;
/// not shaped like an IP address; no `xn--` prefix or `-s3alias` suffix.
pub fn validate_bucket_name(op: Op, name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Reason::InvalidBucketName.tag(op.invalid(name, format!("invalid bucket name: {why}"))))
    };
    if name.len() < 3 || name.len() > 63 {
        return bad("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return bad("only lower-case letters, digits, '.' and '-' are allowed");
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return bad("must start and end with a letter or digit");
    }
    if name.contains("..") {
        return bad("must not contain two adjacent dots");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("must not be formatted as an IP address");
    }
    if name.starts_with("xn--") || name.ends_with("-s3alias") {
        return bad("the prefix 'xn--' and suffix '-s3alias' are reserved");
    }
    Ok(())
}

/// Checks an object key: 1 to 1024 bytes of UTF-8 (S3's rule).
pub fn validate_key(op: Op, bucket: &str, key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Reason::KeyTooLong.tag(op.invalid(
            format!("{bucket}/{key}"),
            format!("object keys must be 1 to {MAX_KEY_LEN} bytes long"),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Service;

    #[test]
    fn bucket_names() {
        let op = Op::new(Service::Blob, "create_bucket");
        for ok in ["abc", "my-bucket.logs", "a1b2c3", &"a".repeat(63)] {
            assert!(validate_bucket_name(op, ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "ABC",
            "-abc",
            "abc-",
            "a..b",
            "192.168.0.1",
            "xn--abc",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(validate_bucket_name(op, bad).is_err(), "{bad}");
        }
    }
}

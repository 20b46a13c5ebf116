//! The local Blob service: S3-style buckets and objects on the local disk (or in memory).
//!
//! How it is stored, under the service's directory `blob/`:
//!
//! - `meta.redb`: a redb database holding buckets, object metadata (size, ETag, content type,
//!   user metadata, where the content is), multipart uploads and their parts. Objects are
//!   keyed by (bucket, key), so a listing is a sorted range scan, and every change is one
//!   durable write transaction, so a conditional put checks and writes atomically.
//! - Content up to 64 KiB goes inline, into the object's own record: a small put changes one
//!   entry and is one durable commit, with no file to write.
//! - Larger content goes to `data/<random id>`: streamed to a new file while its MD5 is
//!   computed (never held whole in memory), fsynced, and only then named by a metadata commit.
//!   Replaced content is deleted after the commit. A crash can therefore only leave a file
//!   nothing names, and such orphans are deleted when the service opens.
//! - Multipart parts are stored the same way; completing an upload moves the parts, in
//!   order, into the object's list of segments, without copying their bytes.
//!
//! Every metadata change goes through one writer thread that commits whatever changes are
//! waiting together (`blob/writer.rs`): concurrent puts share one fsync, and each is durable when
//! it returns. Reads use redb read transactions (snapshots) and stream files in 64 KiB
//! chunks. In memory (no state root) the database is an in-memory redb and large content is
//! kept as shared `Bytes`: the same code, another store (`blob/store.rs`).

mod list;
mod store;
mod writer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use md5::{Digest, Md5};
use mvi_core::blob::{
    Blob, Body, BucketInfo, ByteRange, CompletedPart, GetObject, GetObjectOutput, ListObjects,
    ListPage, MAX_LIST_KEYS, MAX_PART_NUMBER, MIN_PART_SIZE, ObjectMeta, PutMode, PutObject,
    Reason, validate_bucket_name, validate_key,
};
use mvi_core::{ErrorKind, Op, Result, Service, Timestamp};
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use crate::sim::Sim;
use crate::storage::{Ctx, db_error, io_error};
use store::{Piece, Segment, Sink, Store, Written};
use writer::{BUCKETS, INLINE, META, OBJECTS, PARTS, Tables, UPLOADS, Writer};

/// The largest body one put or one part may carry (as S3: 5 GiB).
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// The most bytes of user metadata (keys plus values) an object may carry (as S3: 2 KiB).
pub const MAX_METADATA_SIZE: usize = 2048;

/// How many files of an object a read opens before it starts (see `open_object`).
const EAGER_OPENS: usize = 32;
/// How many times a read starts over when the content it found was replaced under it.
const READ_ATTEMPTS: usize = 8;

fn op(name: &'static str) -> Op {
    Op::new(Service::Blob, name)
}

#[derive(Serialize, Deserialize)]
struct BucketRecord {
    created_micros: i64,
}

#[derive(Serialize, Deserialize)]
struct ObjectRecord<'a> {
    size: u64,
    etag: String,
    modified_micros: i64,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
    /// Where the content is, in order, when it is not in `data`: a large object's one piece,
    /// or a multipart object's parts.
    segments: Vec<Segment>,
    /// The content itself, for a small object: kept in its record so that a small put
    /// changes one entry of one table (borrowed from the database page when read).
    #[serde(borrow)]
    data: Option<&'a [u8]>,
}

impl ObjectRecord<'_> {
    /// The record without its inline content, no longer borrowing the database.
    fn detach(self) -> ObjectRecord<'static> {
        ObjectRecord {
            size: self.size,
            etag: self.etag,
            modified_micros: self.modified_micros,
            content_type: self.content_type,
            metadata: self.metadata,
            segments: self.segments,
            data: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct UploadRecord {
    bucket: String,
    key: String,
    content_type: Option<String>,
    created_micros: i64,
}

#[derive(Serialize, Deserialize)]
struct PartRecord {
    md5: [u8; 16],
    segment: Option<Segment>,
}

impl PartRecord {
    fn size(&self) -> u64 {
        self.segment.as_ref().map_or(0, |s| s.len)
    }
}

fn time(micros: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

fn encode<T: Serialize>(op: Op, value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| op.internal(META, e))
}

fn decode<'a, T: Deserialize<'a>>(op: Op, resource: &str, bytes: &'a [u8]) -> Result<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| op.internal(resource, format!("corrupt metadata record: {e}")))
}

/// `bucket/key`, the name errors about an object carry.
fn object_name(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

/// An ETag as given by a caller, without the quotes HTTP puts around it.
fn bare(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

trait Db<T> {
    /// Maps a redb error to an Internal error about the metadata database.
    fn db(self, op: Op) -> Result<T>;
}

impl<T, E: Into<redb::Error>> Db<T> for std::result::Result<T, E> {
    fn db(self, op: Op) -> Result<T> {
        self.map_err(|e| db_error(op, META, e))
    }
}

fn require_bucket(
    op: Op,
    buckets: &impl ReadableTable<&'static str, &'static [u8]>,
    bucket: &str,
) -> Result<()> {
    match buckets.get(bucket).db(op)? {
        Some(_) => Ok(()),
        None => Err(Reason::NoSuchBucket.tag(op.not_found(bucket, "no such bucket"))),
    }
}

/// An object's record, without its inline content.
fn read_object(
    op: Op,
    objects: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    bucket: &str,
    key: &str,
) -> Result<Option<ObjectRecord<'static>>> {
    match objects.get((bucket, key)).db(op)? {
        Some(v) => decode::<ObjectRecord<'_>>(op, &object_name(bucket, key), v.value())
            .map(|r| Some(r.detach())),
        None => Ok(None),
    }
}

fn read_upload(
    op: Op,
    uploads: &impl ReadableTable<&'static str, &'static [u8]>,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<UploadRecord> {
    let missing = || {
        Reason::NoSuchUpload.tag(op.not_found(
            object_name(bucket, key),
            format!("no multipart upload {upload_id:?} for this key"),
        ))
    };
    let record: UploadRecord = match uploads.get(upload_id).db(op)? {
        Some(v) => decode(op, upload_id, v.value())?,
        None => return Err(missing()),
    };
    if record.bucket != bucket || record.key != key {
        return Err(missing());
    }
    Ok(record)
}

fn meta_of(bucket: &str, key: &str, r: &ObjectRecord<'_>) -> ObjectMeta {
    ObjectMeta {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size: r.size,
        etag: r.etag.clone(),
        last_modified: time(r.modified_micros),
        content_type: r.content_type.clone(),
        metadata: r.metadata.clone(),
    }
}

/// Checks a put's mode against the object it would replace.
fn check_mode(
    op: Op,
    name: &str,
    mode: &PutMode,
    current: Option<&ObjectRecord<'_>>,
) -> Result<()> {
    match (mode, current) {
        (PutMode::Overwrite, _) | (PutMode::Create, None) => Ok(()),
        (PutMode::Create, Some(_)) => Err(op.precondition(
            name,
            "the object already exists (put mode Create, if-none-match: *)",
        )),
        (PutMode::Update(_), None) => {
            Err(op.not_found(name, "no such key to update (put mode Update, if-match)"))
        }
        (PutMode::Update(etag), Some(cur)) if bare(etag) == cur.etag => Ok(()),
        (PutMode::Update(etag), Some(cur)) => Err(op.precondition(
            name,
            format!(
                "the object's ETag is {}, not {} (put mode Update, if-match)",
                cur.etag,
                bare(etag)
            ),
        )),
    }
}

/// Checks the conditions of a get against the object's ETag.
fn check_get_conditions(op: Op, name: &str, req: &GetObject, etag: &str) -> Result<()> {
    if let Some(want) = &req.if_match
        && bare(want) != "*"
        && bare(want) != etag
    {
        return Err(op.precondition(
            name,
            format!("the object's ETag is {etag}, not {} (if-match)", bare(want)),
        ));
    }
    if let Some(not) = &req.if_none_match
        && (bare(not) == "*" || bare(not) == etag)
    {
        return Err(Reason::NotModified.tag(op.precondition(
            name,
            format!("the object's ETag is {etag} (if-none-match: not modified)"),
        )));
    }
    Ok(())
}

/// The bytes `start..end` a range selects from an object of `size` bytes.
fn resolve_range(op: Op, name: &str, range: Option<ByteRange>, size: u64) -> Result<(u64, u64)> {
    let past_end = |start: u64| {
        Reason::InvalidRange.tag(op.invalid(
            name,
            format!("the range starts at byte {start} but the object has {size} bytes"),
        ))
    };
    match range {
        None => Ok((0, size)),
        Some(ByteRange::Bounded { start, end }) if start >= end => {
            Err(Reason::InvalidRange.tag(op.invalid(
                name,
                format!("the range {start}..{end} is empty: its end must be past its start"),
            )))
        }
        Some(ByteRange::Bounded { start, .. }) | Some(ByteRange::From(start)) if start >= size => {
            Err(past_end(start))
        }
        Some(ByteRange::Bounded { start, end }) => Ok((start, end.min(size))),
        Some(ByteRange::From(start)) => Ok((start, size)),
        Some(ByteRange::Suffix(0)) => {
            Err(Reason::InvalidRange.tag(op.invalid(name, "a suffix range of 0 bytes is empty")))
        }
        Some(ByteRange::Suffix(n)) => Ok((size - n.min(size), size)),
    }
}

/// Checks a content type and user metadata (S3's rules: header-safe text, keys lower-cased,
/// at most 2 KiB in all) and returns the metadata with lower-case keys.
fn check_metadata(
    op: Op,
    name: &str,
    content_type: Option<&str>,
    metadata: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    if let Some(ct) = content_type
        && (ct.len() > 1024 || ct.chars().any(char::is_control))
    {
        return Err(op.invalid(
            name,
            "the content type must be at most 1024 bytes without control characters",
        ));
    }
    let mut total = 0;
    let mut out = BTreeMap::new();
    for (k, v) in metadata {
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(op.invalid(
                name,
                format!("metadata key {k:?} must be printable ASCII without spaces or ':'"),
            ));
        }
        if v.chars().any(char::is_control) {
            return Err(op.invalid(
                name,
                format!("metadata value of {k:?} must not contain control characters"),
            ));
        }
        total += k.len() + v.len();
        out.insert(k.to_ascii_lowercase(), v);
    }
    if total > MAX_METADATA_SIZE {
        return Err(Reason::MetadataTooLarge.tag(op.invalid(
            name,
            format!("user metadata is {total} bytes; at most {MAX_METADATA_SIZE} are allowed"),
        )));
    }
    Ok(out)
}

/// Removes the inline pieces of `segments` and returns the ids of the stored ones, to delete
/// from the data store once the transaction has committed.
fn free(op: Op, t: &mut Tables<'_>, segments: &[Segment]) -> Result<Vec<String>> {
    let mut stored = Vec::new();
    for seg in segments {
        if seg.inline {
            t.inline.remove(seg.id.as_str()).db(op)?;
        } else {
            stored.push(seg.id.clone());
        }
    }
    Ok(stored)
}

/// Stores a written part's content in the inline table, if it is small enough to go inline.
fn insert_inline(op: Op, t: &mut Tables<'_>, written: &Written) -> Result<()> {
    if let (Some(seg), Some(bytes)) = (&written.segment, &written.inline) {
        t.inline.insert(seg.id.as_str(), bytes.as_ref()).db(op)?;
    }
    Ok(())
}

/// Removes every part of `upload_id`, returning their records.
fn take_parts(op: Op, t: &mut Tables<'_>, upload_id: &str) -> Result<Vec<(u32, PartRecord)>> {
    let mut parts = Vec::new();
    for entry in t
        .parts
        .range((upload_id, 0u32)..=(upload_id, u32::MAX))
        .db(op)?
    {
        let (k, v) = entry.db(op)?;
        parts.push((k.value().1, decode::<PartRecord>(op, upload_id, v.value())?));
    }
    for (number, _) in &parts {
        t.parts.remove((upload_id, *number)).db(op)?;
    }
    Ok(parts)
}

/// What a put writes besides the body.
struct PutArgs {
    bucket: String,
    key: String,
    mode: PutMode,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
}

/// The local Blob service. See the module documentation for how it stores objects.
pub struct LocalBlob {
    db: Arc<redb::Database>,
    store: Arc<Store>,
    sim: Arc<Sim>,
    // Last: dropping it waits for the writer thread, after which the database closes.
    writer: Writer,
}

impl std::fmt::Debug for LocalBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBlob")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl LocalBlob {
    /// Opens the service's state (`blob/meta.redb` and `blob/data/` under `ctx.dir`, or
    /// memory), deleting content files that no metadata names (left by a crash).
    pub async fn open(ctx: Ctx) -> Result<Self> {
        let op = op("open");
        let db = Arc::new(ctx.open_redb(op, "meta.redb")?);
        let store = match &ctx.dir {
            Some(dir) => {
                let data = dir.join("data");
                std::fs::create_dir_all(&data).map_err(|e| io_error(op, &data, e))?;
                Store::Dir(data)
            }
            None => Store::Memory(Default::default()),
        };
        let store = Arc::new(store);
        {
            // Create every table, so that reads never meet a missing one.
            let txn = db.begin_write().db(op)?;
            drop(Tables::open(op, &txn)?);
            txn.commit().db(op)?;
        }
        if matches!(*store, Store::Dir(_)) {
            let (db2, store2) = (db.clone(), store.clone());
            let removed = tokio::task::spawn_blocking(move || {
                let referenced = referenced_pieces(op, &db2)?;
                store2.remove_orphans(op, &referenced)
            })
            .await
            .map_err(|e| op.internal(META, e))??;
            if removed > 0 {
                tracing::info!("blob: removed {removed} unreferenced data file(s)");
            }
        }
        // In memory a commit syncs nothing: writes commit on the caller's task.
        let writer = if matches!(*store, Store::Dir(_)) {
            Writer::start(op, db.clone())?
        } else {
            Writer::inline(db.clone())
        };
        Ok(LocalBlob {
            db,
            store,
            sim: ctx.sim,
            writer,
        })
    }

    fn read_txn(&self, op: Op) -> Result<redb::ReadTransaction> {
        self.db.begin_read().db(op)
    }

    /// Checks a put before its body is read, so a put to a missing bucket or a doomed
    /// conditional put fails without streaming the body. The write transaction checks again.
    fn precheck_put(&self, op: Op, bucket: &str, key: &str, mode: &PutMode) -> Result<()> {
        let txn = self.read_txn(op)?;
        require_bucket(op, &txn.open_table(BUCKETS).db(op)?, bucket)?;
        if *mode != PutMode::Overwrite {
            let current = read_object(op, &txn.open_table(OBJECTS).db(op)?, bucket, key)?;
            check_mode(op, &object_name(bucket, key), mode, current.as_ref())?;
        }
        Ok(())
    }

    async fn write_object(&self, op: Op, args: PutArgs, body: Body) -> Result<ObjectMeta> {
        let name = object_name(&args.bucket, &args.key);
        validate_key(op, &args.bucket, &args.key)?;
        let metadata = check_metadata(op, &name, args.content_type.as_deref(), args.metadata)?;
        // A small body in memory costs nothing to take in: the commit's own checks suffice.
        if !matches!(&body, Body::Bytes(b) if b.len() <= store::INLINE_MAX) {
            self.precheck_put(op, &args.bucket, &args.key, &args.mode)?;
        }
        let sink = Sink::new(self.store.clone(), op, name.clone(), MAX_PUT_SIZE);
        let mut written = sink.drain(body.into_stream()).await?;
        let sim = self.sim.clone();
        let PutArgs {
            bucket,
            key,
            mode,
            content_type,
            ..
        } = args;
        let (meta, freed) = self
            .writer
            .write(op, move |t| {
                require_bucket(op, &t.buckets, &bucket)?;
                let old = read_object(op, &t.objects, &bucket, &key)?;
                check_mode(op, &name, &mode, old.as_ref())?;
                let record = ObjectRecord {
                    size: written.size(),
                    etag: hex::encode(written.md5),
                    modified_micros: sim.now().timestamp_micros(),
                    content_type,
                    metadata,
                    segments: match &written.inline {
                        Some(_) => Vec::new(),
                        None => written.segment.clone().into_iter().collect(),
                    },
                    data: written.inline.as_deref(),
                };
                t.objects
                    .insert(
                        (bucket.as_str(), key.as_str()),
                        encode(op, &record)?.as_slice(),
                    )
                    .db(op)?;
                let freed = match old {
                    Some(old) => free(op, t, &old.segments)?,
                    None => Vec::new(),
                };
                // Kept here, not after the answer arrives: a caller that stops waiting must
                // not delete a file a committed record names. Should this commit fail, the
                // file is an orphan that the next open removes.
                if let Some(p) = written.pending.take() {
                    p.keep();
                }
                Ok((meta_of(&bucket, &key, &record), freed))
            })
            .await?;
        self.store.remove(freed).await;
        Ok(meta)
    }

    async fn open_object(&self, op: Op, req: GetObject) -> Result<GetObjectOutput> {
        let name = object_name(&req.bucket, &req.key);
        validate_key(op, &req.bucket, &req.key)?;
        for _ in 0..READ_ATTEMPTS {
            // One snapshot: the record and its inline content agree.
            let (record, (start, end), data, inline) = {
                let txn = self.read_txn(op)?;
                require_bucket(op, &txn.open_table(BUCKETS).db(op)?, &req.bucket)?;
                let objects = txn.open_table(OBJECTS).db(op)?;
                let guard = objects
                    .get((req.bucket.as_str(), req.key.as_str()))
                    .db(op)?
                    .ok_or_else(|| op.not_found(&name, "no such key"))?;
                let full: ObjectRecord<'_> = decode(op, &name, guard.value())?;
                check_get_conditions(op, &name, &req, &full.etag)?;
                let (start, end) = resolve_range(op, &name, req.range, full.size)?;
                // A small object's requested bytes, copied out of the database page.
                let data = match full.data {
                    Some(d) => Some(
                        d.get(start as usize..end as usize)
                            .map(Bytes::copy_from_slice)
                            .ok_or_else(|| {
                                op.internal(&name, "inline content is shorter than recorded")
                            })?,
                    ),
                    None => None,
                };
                let record = full.detach();
                let inline_table = txn.open_table(INLINE).db(op)?;
                let mut inline = HashMap::new();
                for (seg, _, _) in overlapping(&record.segments, start, end) {
                    if seg.inline {
                        let bytes = inline_table
                            .get(seg.id.as_str())
                            .db(op)?
                            .map(|v| Bytes::copy_from_slice(v.value()))
                            .ok_or_else(|| op.internal(&name, "inline content is missing"))?;
                        inline.insert(seg.id.clone(), bytes);
                    }
                }
                (record, (start, end), data, inline)
            };
            let mut pieces: Vec<Piece> = data.into_iter().map(Piece::Bytes).collect();
            let mut gone = false;
            for (seg, from, to) in overlapping(&record.segments, start, end) {
                if seg.inline {
                    let bytes = inline.get(&seg.id).cloned().unwrap_or_default();
                    let slice = bytes
                        .get(from as usize..to as usize)
                        .map(|s| bytes.slice_ref(s))
                        .ok_or_else(|| {
                            op.internal(&name, "inline content is shorter than recorded")
                        })?;
                    pieces.push(Piece::Bytes(slice));
                } else {
                    match self.store.pieces(seg, from, to) {
                        Some(p) => pieces.extend(p),
                        None => {
                            gone = true;
                            break;
                        }
                    }
                }
            }
            // Open the files now: if an overwrite deleted one since the snapshot, read the new
            // metadata instead of failing; once open, a file stays readable after it is
            // deleted, so the read sees one version whole. Past the first few (a multipart
            // object of many parts) files open as the read reaches them.
            if !gone {
                for piece in pieces.iter_mut().take(EAGER_OPENS) {
                    if !piece.open(op).await? {
                        gone = true;
                        break;
                    }
                }
            }
            if gone {
                continue;
            }
            let meta = meta_of(&req.bucket, &req.key, &record);
            return Ok(GetObjectOutput {
                meta,
                range: (start, end),
                body: store::stream(op, name, pieces),
            });
        }
        Err(op.err(
            ErrorKind::Unavailable,
            name,
            "the object kept being replaced while it was read; read it again",
        ))
    }
}

/// The segments overlapping bytes `start..end` of an object, each with the part of it
/// (segment-relative `from..to`) that falls in the range.
fn overlapping(
    segments: &[Segment],
    start: u64,
    end: u64,
) -> impl Iterator<Item = (&Segment, u64, u64)> {
    let mut at = 0u64;
    segments.iter().filter_map(move |seg| {
        let seg_start = at;
        at += seg.len;
        let (from, to) = (start.max(seg_start), end.min(at));
        (from < to).then(|| (seg, from - seg_start, to - seg_start))
    })
}

/// Every piece id in the data store that metadata names (objects and parts).
fn referenced_pieces(op: Op, db: &redb::Database) -> Result<HashSet<String>> {
    let txn = db.begin_read().db(op)?;
    let mut ids = HashSet::new();
    for entry in txn.open_table(OBJECTS).db(op)?.iter().db(op)? {
        let (_, v) = entry.db(op)?;
        let record: ObjectRecord<'_> = decode(op, META, v.value())?;
        ids.extend(
            record
                .segments
                .into_iter()
                .filter(|s| !s.inline)
                .map(|s| s.id),
        );
    }
    for entry in txn.open_table(PARTS).db(op)?.iter().db(op)? {
        let (_, v) = entry.db(op)?;
        let record: PartRecord = decode(op, META, v.value())?;
        ids.extend(record.segment.filter(|s| !s.inline).map(|s| s.id));
    }
    Ok(ids)
}

#[async_trait]
impl Blob for LocalBlob {
    async fn create_bucket(&self, bucket: &str) -> Result<BucketInfo> {
        let op = op("create_bucket");
        validate_bucket_name(op, bucket)?;
        let bucket = bucket.to_owned();
        let created = self.sim.now();
        self.writer
            .write(op, move |t| {
                if t.buckets.get(bucket.as_str()).db(op)?.is_some() {
                    return Err(op.already_exists(&bucket, "the bucket already exists"));
                }
                let record = BucketRecord {
                    created_micros: created.timestamp_micros(),
                };
                t.buckets
                    .insert(bucket.as_str(), encode(op, &record)?.as_slice())
                    .db(op)?;
                Ok(BucketInfo {
                    name: bucket,
                    created: time(record.created_micros),
                })
            })
            .await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let op = op("delete_bucket");
        let bucket = bucket.to_owned();
        let freed = self
            .writer
            .write(op, move |t| {
                require_bucket(op, &t.buckets, &bucket)?;
                let not_empty = match t.objects.range((bucket.as_str(), "")..).db(op)?.next() {
                    Some(entry) => entry.db(op)?.0.value().0 == bucket,
                    None => false,
                };
                if not_empty {
                    return Err(Reason::BucketNotEmpty.tag(op.precondition(
                        &bucket,
                        "the bucket is not empty: delete its objects first",
                    )));
                }
                // Unfinished multipart uploads go with the bucket.
                let mut uploads = Vec::new();
                for entry in t.uploads.iter().db(op)? {
                    let (k, v) = entry.db(op)?;
                    let record: UploadRecord = decode(op, k.value(), v.value())?;
                    if record.bucket == bucket {
                        uploads.push(k.value().to_owned());
                    }
                }
                let mut freed = Vec::new();
                for id in &uploads {
                    for (_, part) in take_parts(op, t, id)? {
                        freed.extend(free(op, t, &part.segment.into_iter().collect::<Vec<_>>())?);
                    }
                    t.uploads.remove(id.as_str()).db(op)?;
                }
                t.buckets.remove(bucket.as_str()).db(op)?;
                Ok(freed)
            })
            .await?;
        self.store.remove(freed).await;
        Ok(())
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let op = op("list_buckets");
        let txn = self.read_txn(op)?;
        let mut out = Vec::new();
        for entry in txn.open_table(BUCKETS).db(op)?.iter().db(op)? {
            let (k, v) = entry.db(op)?;
            let record: BucketRecord = decode(op, k.value(), v.value())?;
            out.push(BucketInfo {
                name: k.value().to_owned(),
                created: time(record.created_micros),
            });
        }
        Ok(out)
    }

    async fn put_object(&self, req: PutObject) -> Result<ObjectMeta> {
        let args = PutArgs {
            bucket: req.bucket,
            key: req.key,
            mode: req.mode,
            content_type: req.content_type,
            metadata: req.metadata,
        };
        self.write_object(op("put_object"), args, req.body).await
    }

    async fn get_object(&self, req: GetObject) -> Result<GetObjectOutput> {
        self.open_object(op("get_object"), req).await
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        let op = op("head_object");
        validate_key(op, bucket, key)?;
        let txn = self.read_txn(op)?;
        require_bucket(op, &txn.open_table(BUCKETS).db(op)?, bucket)?;
        let record = read_object(op, &txn.open_table(OBJECTS).db(op)?, bucket, key)?
            .ok_or_else(|| op.not_found(object_name(bucket, key), "no such key"))?;
        Ok(meta_of(bucket, key, &record))
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        let op = op("delete_object");
        validate_key(op, bucket, key)?;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let freed = self
            .writer
            .write(op, move |t| {
                require_bucket(op, &t.buckets, &bucket)?;
                let old = read_object(op, &t.objects, &bucket, &key)?;
                match old {
                    Some(old) => {
                        t.objects.remove((bucket.as_str(), key.as_str())).db(op)?;
                        free(op, t, &old.segments)
                    }
                    None => Ok(Vec::new()),
                }
            })
            .await?;
        self.store.remove(freed).await;
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
        validate_key(op, to_bucket, to_key)?;
        self.precheck_put(op, to_bucket, to_key, &PutMode::Overwrite)?;
        let source = self
            .open_object(op, GetObject::new(from_bucket, from_key))
            .await?;
        let args = PutArgs {
            bucket: to_bucket.to_owned(),
            key: to_key.to_owned(),
            mode: PutMode::Overwrite,
            content_type: source.meta.content_type,
            metadata: source.meta.metadata,
        };
        self.write_object(op, args, Body::Stream(source.body)).await
    }

    async fn list_objects(&self, req: ListObjects) -> Result<ListPage> {
        let op = op("list_objects");
        let start = match &req.continuation {
            Some(token) => Some(list::decode_token(token).ok_or_else(|| {
                op.invalid(
                    &req.bucket,
                    "the continuation token is not one this service made",
                )
            })?),
            None => None,
        };
        let query = list::Query {
            bucket: &req.bucket,
            prefix: req.prefix.as_deref().unwrap_or(""),
            delimiter: req.delimiter.as_deref().filter(|d| !d.is_empty()),
            max_keys: req.max_keys.unwrap_or(MAX_LIST_KEYS).min(MAX_LIST_KEYS),
            start,
        };
        let txn = self.read_txn(op)?;
        require_bucket(op, &txn.open_table(BUCKETS).db(op)?, &req.bucket)?;
        let raw = list::page(op, &txn.open_table(OBJECTS).db(op)?, &query)?;
        let mut objects = Vec::with_capacity(raw.objects.len());
        for (key, value) in raw.objects {
            let record: ObjectRecord<'_> = decode(op, &object_name(&req.bucket, &key), &value)?;
            objects.push(meta_of(&req.bucket, &key, &record));
        }
        Ok(ListPage {
            objects,
            common_prefixes: raw.common_prefixes,
            next: raw.next,
        })
    }

    async fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: Option<String>,
    ) -> Result<String> {
        let op = op("create_multipart_upload");
        validate_key(op, bucket, key)?;
        check_metadata(
            op,
            &object_name(bucket, key),
            content_type.as_deref(),
            BTreeMap::new(),
        )?;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let sim = self.sim.clone();
        self.writer
            .write(op, move |t| {
                require_bucket(op, &t.buckets, &bucket)?;
                // Ids come from the seeded simulator; after a restart with the same seed it
                // draws ids it drew before, so skip any still in use.
                let id = loop {
                    let id = sim.id("upload");
                    if t.uploads.get(id.as_str()).db(op)?.is_none() {
                        break id;
                    }
                };
                let record = UploadRecord {
                    bucket,
                    key,
                    content_type,
                    created_micros: sim.now().timestamp_micros(),
                };
                t.uploads
                    .insert(id.as_str(), encode(op, &record)?.as_slice())
                    .db(op)?;
                Ok(id)
            })
            .await
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
        let name = object_name(bucket, key);
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(Reason::InvalidPart.tag(op.invalid(
                &name,
                format!("part number {number} is not between 1 and {MAX_PART_NUMBER}"),
            )));
        }
        {
            let txn = self.read_txn(op)?;
            read_upload(op, &txn.open_table(UPLOADS).db(op)?, bucket, key, upload_id)?;
        }
        let sink = Sink::new(self.store.clone(), op, name, MAX_PUT_SIZE);
        let mut written = sink.drain(body.into_stream()).await?;
        let etag = hex::encode(written.md5);
        let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        let freed = self
            .writer
            .write(op, move |t| {
                read_upload(op, &t.uploads, &bucket, &key, &upload_id)?;
                let old = match t.parts.get((upload_id.as_str(), number)).db(op)? {
                    Some(v) => Some(decode::<PartRecord>(op, &upload_id, v.value())?),
                    None => None,
                };
                let record = PartRecord {
                    md5: written.md5,
                    segment: written.segment.clone(),
                };
                insert_inline(op, t, &written)?;
                t.parts
                    .insert(
                        (upload_id.as_str(), number),
                        encode(op, &record)?.as_slice(),
                    )
                    .db(op)?;
                let freed = match old.and_then(|o| o.segment) {
                    Some(seg) => free(op, t, &[seg])?,
                    None => Vec::new(),
                };
                if let Some(p) = written.pending.take() {
                    p.keep();
                }
                Ok(freed)
            })
            .await?;
        self.store.remove(freed).await;
        Ok(etag)
    }

    async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<ObjectMeta> {
        let op = op("complete_multipart_upload");
        let name = object_name(bucket, key);
        if parts.is_empty() {
            return Err(Reason::InvalidPart
                .tag(op.invalid(&name, "a multipart upload needs at least one part")));
        }
        if let Some(w) = parts.windows(2).find(|w| w[0].number >= w[1].number) {
            return Err(Reason::InvalidPartOrder.tag(op.invalid(
                &name,
                format!(
                    "parts must be listed in ascending order of number, without repeats: {} then {}",
                    w[0].number, w[1].number
                ),
            )));
        }
        let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        let sim = self.sim.clone();
        let (meta, freed) = self
            .writer
            .write(op, move |t| {
                let upload = read_upload(op, &t.uploads, &bucket, &key, &upload_id)?;
                require_bucket(op, &t.buckets, &bucket)?;
                // Every check first: nothing changes unless the upload completes.
                let mut stored: HashMap<u32, PartRecord> = HashMap::new();
                for entry in t
                    .parts
                    .range((upload_id.as_str(), 0u32)..=(upload_id.as_str(), u32::MAX))
                    .db(op)?
                {
                    let (k, v) = entry.db(op)?;
                    stored.insert(k.value().1, decode(op, &upload_id, v.value())?);
                }
                let mut md5s = Md5::new();
                let mut segments = Vec::with_capacity(parts.len());
                let mut size = 0u64;
                for (i, part) in parts.iter().enumerate() {
                    let record = stored.get(&part.number).ok_or_else(|| {
                        Reason::InvalidPart.tag(
                            op.invalid(&name, format!("part {} was not uploaded", part.number)),
                        )
                    })?;
                    if bare(&part.etag) != hex::encode(record.md5) {
                        return Err(Reason::InvalidPart.tag(op.invalid(
                            &name,
                            format!(
                                "part {}'s ETag is {}, not {}",
                                part.number,
                                hex::encode(record.md5),
                                bare(&part.etag)
                            ),
                        )));
                    }
                    let last = i + 1 == parts.len();
                    if !last && record.size() < MIN_PART_SIZE as u64 {
                        return Err(Reason::EntityTooSmall.tag(op.invalid(
                            &name,
                            format!(
                                "part {} is {} bytes; every part but the last must be at least {MIN_PART_SIZE} bytes",
                                part.number,
                                record.size()
                            ),
                        )));
                    }
                    md5s.update(record.md5);
                    size += record.size();
                    segments.extend(record.segment.clone());
                }
                let old = read_object(op, &t.objects, &bucket, &key)?;
                let record = ObjectRecord {
                    size,
                    etag: format!("{}-{}", hex::encode(md5s.finalize()), parts.len()),
                    modified_micros: sim.now().timestamp_micros(),
                    content_type: upload.content_type,
                    metadata: BTreeMap::new(),
                    segments,
                    data: None,
                };
                t.objects
                    .insert((bucket.as_str(), key.as_str()), encode(op, &record)?.as_slice())
                    .db(op)?;
                // The listed parts now belong to the object; the others are freed.
                let used: HashSet<u32> = parts.iter().map(|p| p.number).collect();
                let mut freed = match old {
                    Some(old) => free(op, t, &old.segments)?,
                    None => Vec::new(),
                };
                for (number, part) in take_parts(op, t, &upload_id)? {
                    if !used.contains(&number) {
                        freed.extend(free(op, t, &part.segment.into_iter().collect::<Vec<_>>())?);
                    }
                }
                t.uploads.remove(upload_id.as_str()).db(op)?;
                Ok((meta_of(&bucket, &key, &record), freed))
            })
            .await?;
        self.store.remove(freed).await;
        Ok(meta)
    }

    async fn abort_multipart_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let op = op("abort_multipart_upload");
        let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        let freed = self
            .writer
            .write(op, move |t| {
                read_upload(op, &t.uploads, &bucket, &key, &upload_id)?;
                let mut freed = Vec::new();
                for (_, part) in take_parts(op, t, &upload_id)? {
                    freed.extend(free(op, t, &part.segment.into_iter().collect::<Vec<_>>())?);
                }
                t.uploads.remove(upload_id.as_str()).db(op)?;
                Ok(freed)
            })
            .await?;
        self.store.remove(freed).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use mvi_core::{BlobExt, SystemClock};

    fn ctx(root: &std::path::Path) -> Ctx {
        let sim = Arc::new(Sim::new(7, Arc::new(SystemClock), "test".into()));
        Ctx::new(Some(root), Service::Blob, sim).unwrap()
    }

    fn data_files(root: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root.join("blob/data"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A crash between writing a data file and committing its metadata leaves a file nothing
    /// names; the next open deletes it and keeps the files objects use.
    #[tokio::test]
    async fn orphans_are_removed_on_open() {
        let root = tempfile::tempdir().unwrap();
        let big = vec![7u8; store::INLINE_MAX + 1];
        {
            let blob = LocalBlob::open(ctx(root.path())).await.unwrap();
            blob.create_bucket("b-1").await.unwrap();
            blob.put("b-1", "big", big.clone()).await.unwrap();
            blob.put("b-1", "small", "x").await.unwrap();
        }
        let kept = data_files(root.path());
        assert_eq!(kept.len(), 1, "one file for the large object: {kept:?}");
        std::fs::write(root.path().join("blob/data/0123456789abcdef"), b"torn").unwrap();
        let blob = LocalBlob::open(ctx(root.path())).await.unwrap();
        assert_eq!(data_files(root.path()), kept);
        assert_eq!(
            blob.get("b-1", "big").await.unwrap().as_ref(),
            big.as_slice()
        );
    }

    /// Overwrites and deletes free the replaced files; a put that fails mid-stream or on its
    /// precondition leaves no file.
    #[tokio::test]
    async fn replaced_and_failed_content_leaves_no_file() {
        let root = tempfile::tempdir().unwrap();
        let blob = LocalBlob::open(ctx(root.path())).await.unwrap();
        blob.create_bucket("b-2").await.unwrap();
        let big = || vec![1u8; store::INLINE_MAX * 2];
        blob.put("b-2", "k", big()).await.unwrap();
        blob.put("b-2", "k", big()).await.unwrap();
        assert_eq!(data_files(root.path()).len(), 1);
        let conflict = blob
            .put_object(
                PutObject::new(
                    "b-2",
                    "k",
                    Body::Stream(mvi_core::common::once_stream(Bytes::from(big()))),
                )
                .mode(PutMode::Create),
            )
            .await;
        assert_eq!(conflict.unwrap_err().kind(), ErrorKind::PreconditionFailed);
        let failing: mvi_core::ByteStream = Box::pin(futures::stream::iter([
            Ok(Bytes::from(big())),
            Err(op("test").invalid("body", "broken")),
        ]));
        assert!(
            blob.put_object(PutObject::new("b-2", "j", Body::Stream(failing)))
                .await
                .is_err()
        );
        assert_eq!(data_files(root.path()).len(), 1);
        blob.delete_object("b-2", "k").await.unwrap();
        assert!(data_files(root.path()).is_empty());
    }

    /// Reading while the object is overwritten gives the old or the new content, never an
    /// error or a mix.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_during_overwrites_see_whole_versions() {
        let root = tempfile::tempdir().unwrap();
        let blob = Arc::new(LocalBlob::open(ctx(root.path())).await.unwrap());
        blob.create_bucket("b-3").await.unwrap();
        let version = |v: u8| vec![v; store::INLINE_MAX * 3];
        blob.put("b-3", "k", version(0)).await.unwrap();
        let writer = {
            let blob = blob.clone();
            tokio::spawn(async move {
                for v in 1..=40u8 {
                    blob.put("b-3", "k", version(v)).await.unwrap();
                }
            })
        };
        while !writer.is_finished() {
            let got = blob.get("b-3", "k").await.unwrap();
            assert_eq!(got.len(), store::INLINE_MAX * 3);
            assert!(
                got.iter().all(|&b| b == got[0]),
                "a read mixed two versions"
            );
        }
        writer.await.unwrap();
    }
}

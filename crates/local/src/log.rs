//! The local Logs service: CloudWatch Logs' groups, streams and events on one machine.
//!
//! # Storage
//!
//! Every event is kept in memory, per stream, sorted by (timestamp, sequence number), so reads,
//! filters and pagination are binary searches and merges over memory. On disk
//! (`ctx.dir = Some(dir)`) the same structures are also written down:
//!
//! ```text
//! log/<group-id>/group.meta              name, retention, streams (postcard, atomic_write)
//! log/<group-id>/<stream-id>/<seq>.log   the stream's segment files (see `segments`)
//! ```
//!
//! Directory ids come from the seeded [`Sim`](crate::Sim) rather than from the names, since a
//! group name may be 512 characters and contain `/`. Metadata changes (create, delete, retention)
//! are rare and written atomically and durably. Events are appended one record per batch with
//! one `write` before `put_events` returns, without fsync: a killed process (kill -9) loses
//! nothing that was acknowledged, since the data is in the OS page cache; a power loss may lose
//! the last batches, and the torn record it leaves is detected by checksum and cut off when the
//! stream is opened again. In memory (`ctx.dir = None`) only the in-memory part exists; the code
//! paths are the same, with the files left out.
//!
//! # Time and retention
//!
//! Timestamps are kept in milliseconds, as CloudWatch does. Events older than
//! `now - retention` (`now` from the simulator's clock) are never returned; they are dropped
//! from memory when a call touches their stream, and a segment file is deleted once its newest
//! event has expired. Events that are already expired when put are accepted and dropped, as
//! CloudWatch does.
//!
//! # Tail
//!
//! Each group has a `tokio::sync::broadcast` channel; every accepted batch is sent to it after
//! it is stored, so a tail sees new events as soon as `put_events` returns. A tail holds only
//! the channel and a `Weak` reference to the service, so it never keeps the service alive;
//! deleting the group drops the sender, which ends every tail of it.

mod segments;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use async_trait::async_trait;
use mvi_core::log::{
    FilterEvents, FilterPattern, GetEvents, LogEvent, LogGroup, LogRecord, LogStream,
    MAX_BATCH_EVENTS, MAX_EVENT_SIZE, TailEvents, validate_group_name, validate_retention,
    validate_stream_name,
};
use mvi_core::{BoxStream, Error, ErrorKind, Logs, Op, Page, Result, Service, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::storage::{Ctx, atomic_write, io_error};
use segments::StreamFiles;

/// The most events one page returns (CloudWatch's limit too).
const MAX_PAGE: usize = 10_000;
/// Events a tail reads from storage per lock when it starts with stored events.
const TAIL_HISTORY_PAGE: usize = 1_000;
/// Batches a slow tail may fall behind before it misses some.
const TAIL_BUFFER: usize = 1_024;
/// The metadata file in each group's directory.
const GROUP_META: &str = "group.meta";

fn op(operation: &'static str) -> Op {
    Op::new(Service::Log, operation)
}

fn millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

fn timestamp(ms: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// One stored event.
struct Event {
    ts: i64,
    seq: u64,
    ingested: i64,
    message: String,
}

/// A stream: its events in (timestamp, seq) order and, on disk, its files.
struct Stream {
    created: i64,
    /// Directory name under the group's directory.
    id: String,
    events: Vec<Event>,
    /// The sequence number of the next event put.
    next_seq: u64,
    files: Option<StreamFiles>,
}

impl Stream {
    /// Forgets events older than `cutoff` and deletes the segments holding only those.
    fn expire(&mut self, cutoff: Option<i64>) {
        let Some(cutoff) = cutoff else { return };
        let old = self.events.partition_point(|e| e.ts < cutoff);
        if old > 0 {
            self.events.drain(..old);
        }
        if let Some(files) = &mut self.files {
            files.expire(cutoff);
        }
    }

    /// Adds events numbered from `first_seq` (chronological among themselves), keeping the
    /// order. Batches usually arrive in time order and are just appended; an older batch is
    /// merged in (the stable sort sees two sorted runs and merges them in linear time).
    fn insert(&mut self, new: impl IntoIterator<Item = Event>) {
        let mut new = new.into_iter().peekable();
        let Some(first) = new.peek() else { return };
        let at = self.events.partition_point(|e| e.ts <= first.ts);
        let in_order = at == self.events.len();
        self.events.extend(new);
        if !in_order {
            self.events[at..].sort_by_key(|e| (e.ts, e.seq));
        }
    }
}

/// A group, its streams and its tail channel.
struct Group {
    /// Directory name under the service's directory.
    id: String,
    /// Tells this group from an earlier one of the same name (tails must not cross over).
    generation: u64,
    retention_days: Option<u32>,
    created: i64,
    streams: BTreeMap<String, Stream>,
    tail: broadcast::Sender<Arc<Vec<LogRecord>>>,
}

impl Group {
    fn new(id: String, generation: u64, retention_days: Option<u32>, created: i64) -> Self {
        Group {
            id,
            generation,
            retention_days,
            created,
            streams: BTreeMap::new(),
            tail: broadcast::channel(TAIL_BUFFER).0,
        }
    }

    /// The oldest timestamp still visible at `now`.
    fn cutoff(&self, now: i64) -> Option<i64> {
        self.retention_days
            .map(|days| now.saturating_sub(i64::from(days) * 86_400_000))
    }

    fn expire(&mut self, now: i64) {
        let cutoff = self.cutoff(now);
        for stream in self.streams.values_mut() {
            stream.expire(cutoff);
        }
    }

    fn info(&self, name: &str) -> LogGroup {
        LogGroup {
            name: name.to_string(),
            retention_days: self.retention_days,
            created: timestamp(self.created),
        }
    }

    fn meta(&self, name: &str) -> GroupMeta {
        GroupMeta {
            name: name.to_string(),
            retention_days: self.retention_days,
            created: self.created,
            streams: self
                .streams
                .iter()
                .map(|(name, s)| StreamMeta {
                    name: name.clone(),
                    created: s.created,
                    id: s.id.clone(),
                })
                .collect(),
        }
    }
}

/// `group.meta`.
#[derive(Debug, Serialize, Deserialize)]
struct GroupMeta {
    name: String,
    retention_days: Option<u32>,
    created: i64,
    streams: Vec<StreamMeta>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StreamMeta {
    name: String,
    created: i64,
    id: String,
}

/// Every group, behind one lock: calls are short, and one lock keeps a put, its tail
/// delivery and a tail's subscription in one order.
#[derive(Default)]
struct State {
    groups: BTreeMap<String, Group>,
    /// Directory ids in use (a reopened simulator with the same seed repeats its ids).
    ids: HashSet<String>,
    generations: u64,
}

/// The shared part of the service; tails hold it weakly.
struct Inner {
    ctx: Ctx,
    state: Mutex<State>,
}

/// A position in time order across streams: after the event `(ts, stream, seq)`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    ts: i64,
    seq: u64,
    stream: String,
}

impl Cursor {
    fn encode(&self) -> String {
        format!("{}:{}:{}", self.ts, self.seq, self.stream)
    }

    fn decode(op: Op, token: &str) -> Result<Self> {
        let bad = || op.invalid(token, "not a pagination token of this service");
        let mut parts = token.splitn(3, ':');
        let ts = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let seq = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let stream = parts.next().ok_or_else(bad)?.to_string();
        Ok(Cursor { ts, seq, stream })
    }
}

/// A read over some streams of a group, in (timestamp, stream, seq) order.
struct Query<'a> {
    pattern: &'a FilterPattern,
    start: Option<i64>,
    end: Option<i64>,
    after: Option<&'a Cursor>,
    limit: usize,
}

/// What a query found: events with their positions, and whether more match.
struct Found {
    items: Vec<(Cursor, LogRecord)>,
    more: bool,
}

/// Runs `q` over `streams` (sorted by name, each at most once): a k-way merge of the
/// streams' sorted events, starting at each stream's first event past the cursor.
fn query(streams: &[(&String, &Stream)], cutoff: Option<i64>, q: &Query<'_>) -> Found {
    let low = match (q.start, cutoff) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    // (ts, stream index, seq, position): the index stands for the name, as `streams` is sorted.
    let mut heap = BinaryHeap::with_capacity(streams.len());
    for (index, (name, stream)) in streams.iter().enumerate() {
        let events = &stream.events;
        let mut pos = low.map_or(0, |low| events.partition_point(|e| e.ts < low));
        if let Some(c) = q.after {
            let past = match name.as_str().cmp(c.stream.as_str()) {
                std::cmp::Ordering::Less => events.partition_point(|e| e.ts <= c.ts),
                std::cmp::Ordering::Equal => {
                    events.partition_point(|e| (e.ts, e.seq) <= (c.ts, c.seq))
                }
                std::cmp::Ordering::Greater => events.partition_point(|e| e.ts < c.ts),
            };
            pos = pos.max(past);
        }
        if let Some(e) = events.get(pos) {
            heap.push(Reverse((e.ts, index, e.seq, pos)));
        }
    }
    let mut items = Vec::new();
    let mut more = false;
    while let Some(Reverse((ts, index, _, pos))) = heap.pop() {
        if q.end.is_some_and(|end| ts >= end) {
            // Every other stream's next event is at least as late.
            break;
        }
        let Some((name, stream)) = streams.get(index) else {
            continue;
        };
        if let Some(e) = stream.events.get(pos + 1) {
            heap.push(Reverse((e.ts, index, e.seq, pos + 1)));
        }
        let Some(e) = stream.events.get(pos) else {
            continue;
        };
        if !q.pattern.matches(&e.message) {
            continue;
        }
        if items.len() == q.limit {
            more = true;
            break;
        }
        items.push((
            Cursor {
                ts: e.ts,
                seq: e.seq,
                stream: (*name).clone(),
            },
            LogRecord {
                stream: (*name).clone(),
                timestamp: timestamp(e.ts),
                ingested: timestamp(e.ingested),
                message: e.message.clone(),
            },
        ));
    }
    Found { items, more }
}

fn check_limit(op: Op, group: &str, limit: Option<usize>) -> Result<usize> {
    match limit {
        None => Ok(MAX_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(op.invalid(
            group,
            format!("limit must be between 1 and {MAX_PAGE}, got {n}"),
        )),
    }
}

/// The streams a request names (all when empty), sorted and unique; NotFound for a stream
/// the group lacks.
fn select<'a>(
    op: Op,
    group_name: &str,
    group: &'a Group,
    names: &[String],
) -> Result<Vec<(&'a String, &'a Stream)>> {
    if names.is_empty() {
        return Ok(group.streams.iter().collect());
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        validate_stream_name(op, group_name, name)?;
        let entry = group
            .streams
            .get_key_value(name)
            .ok_or_else(|| op.not_found(format!("{group_name}/{name}"), "no such log stream"))?;
        out.push(entry);
    }
    out.sort_by(|a, b| a.0.cmp(b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

fn no_group(op: Op, group: &str) -> Error {
    op.not_found(group, "no such log group")
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere mid-call; the maps are still consistent
        // enough to read and each call re-validates what it touches.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> i64 {
        millis(self.ctx.sim.now())
    }

    fn group_dir(&self, group: &Group) -> Option<PathBuf> {
        self.ctx.dir.as_ref().map(|d| d.join(&group.id))
    }

    /// Writes a group's metadata (on disk only).
    fn save(&self, op: Op, name: &str, group: &Group) -> Result<()> {
        let Some(dir) = self.group_dir(group) else {
            return Ok(());
        };
        let bytes = postcard::to_stdvec(&group.meta(name)).map_err(|e| op.internal(name, e))?;
        atomic_write(op, &dir.join(GROUP_META), &bytes)
    }

    /// A directory id not used by any group or stream.
    fn fresh_id(&self, state: &mut State, prefix: &str) -> String {
        loop {
            let id = self.ctx.sim.id(prefix);
            if state.ids.insert(id.clone()) {
                return id;
            }
        }
    }

    /// One page of history for a tail: events of the group (if it is still the same one)
    /// stored before the tail subscribed (below `marks`), at or after `history.since`, after
    /// `history.after`. Moves `history.after` on and returns the events and whether more
    /// may follow; `None` once the group is gone.
    fn tail_history(
        &self,
        name: &str,
        generation: u64,
        streams: &[String],
        pattern: &FilterPattern,
        history: &mut History,
    ) -> Option<(Vec<LogRecord>, bool)> {
        let op = op("tail");
        let mut state = self.lock();
        let now = self.now();
        let group = state.groups.get_mut(name)?;
        if group.generation != generation {
            return None;
        }
        group.expire(now);
        let selected = select(op, name, group, streams).ok()?;
        let found = query(
            &selected,
            group.cutoff(now),
            &Query {
                pattern,
                start: Some(history.since),
                end: None,
                after: history.after.as_ref(),
                limit: TAIL_HISTORY_PAGE,
            },
        );
        if let Some((last, _)) = found.items.last() {
            history.after = Some(last.clone());
        }
        let marks = &history.marks;
        let records = found
            .items
            .into_iter()
            .filter(|(c, _)| marks.get(&c.stream).is_some_and(|m| c.seq < *m))
            .map(|(_, r)| r)
            .collect();
        Some((records, found.more))
    }
}

/// The local Logs service.
pub struct LocalLogs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalLogs {
    /// Where the state is and how many groups it holds: never the events, which may be
    /// large and may hold anything a program logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let groups = self.inner.lock().groups.len();
        f.debug_struct("LocalLogs")
            .field("dir", &self.inner.ctx.dir)
            .field("groups", &groups)
            .finish()
    }
}

impl LocalLogs {
    /// Opens the service's state: reads every group's metadata and segments (cutting off a
    /// torn last record), or starts empty in memory.
    pub async fn open(ctx: Ctx) -> Result<Self> {
        let mut state = State::default();
        if let Some(dir) = &ctx.dir {
            load(dir, millis(ctx.sim.now()), &mut state)?;
        }
        Ok(LocalLogs {
            inner: Arc::new(Inner {
                ctx,
                state: Mutex::new(state),
            }),
        })
    }
}

/// Reads every group under `dir` into `state`. A directory without `group.meta` is what a
/// crash during create or delete leaves: it is removed.
fn load(dir: &Path, now: i64, state: &mut State) -> Result<()> {
    let op = op("open");
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(op, dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(op, dir, e))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let meta_path = path.join(GROUP_META);
        let bytes = match std::fs::read(&meta_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::remove_dir_all(&path).map_err(|e| io_error(op, &path, e))?;
                continue;
            }
            Err(e) => return Err(io_error(op, &meta_path, e)),
        };
        let meta: GroupMeta = postcard::from_bytes(&bytes)
            .map_err(|e| op.internal(meta_path.display().to_string(), e))?;
        state.generations += 1;
        let mut group = Group::new(
            id.clone(),
            state.generations,
            meta.retention_days,
            meta.created,
        );
        let cutoff = group.cutoff(now);
        let mut known = HashSet::new();
        for s in meta.streams {
            let stream_dir = path.join(&s.id);
            let mut events = Vec::new();
            let (files, next_seq) = StreamFiles::open(op, &stream_dir, |e| {
                if cutoff.is_none_or(|c| e.timestamp >= c) {
                    events.push(Event {
                        ts: e.timestamp,
                        seq: e.seq,
                        ingested: e.ingested,
                        message: e.message,
                    });
                }
            })?;
            events.sort_by_key(|e| (e.ts, e.seq));
            let mut stream = Stream {
                created: s.created,
                id: s.id.clone(),
                events,
                next_seq,
                files: Some(files),
            };
            stream.expire(cutoff);
            known.insert(s.id.clone());
            state.ids.insert(s.id);
            group.streams.insert(s.name, stream);
        }
        // Leftovers of a crash: a stream directory made but never recorded, a temp file.
        let leftovers = std::fs::read_dir(&path).map_err(|e| io_error(op, &path, e))?;
        for leftover in leftovers.flatten() {
            let name = leftover.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == GROUP_META || known.contains(name) {
                continue;
            }
            let p = leftover.path();
            let removed = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            if let Err(e) = removed {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove a leftover log file");
            }
        }
        state.ids.insert(id);
        state.groups.insert(meta.name, group);
    }
    Ok(())
}

/// Checks a batch and returns its timestamps in milliseconds.
fn check_batch(op: Op, resource: &str, events: &[LogEvent]) -> Result<Vec<i64>> {
    if events.len() > MAX_BATCH_EVENTS {
        return Err(op.invalid(
            resource,
            format!(
                "a batch holds at most {MAX_BATCH_EVENTS} events, got {}",
                events.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        if e.message.is_empty() {
            return Err(op.invalid(resource, format!("event {i} has an empty message")));
        }
        if e.message.len() > MAX_EVENT_SIZE {
            return Err(op.invalid(
                resource,
                format!(
                    "event {i} is {} bytes; a message holds at most {MAX_EVENT_SIZE}",
                    e.message.len()
                ),
            ));
        }
        let ts = millis(e.timestamp);
        if let Some(prev) = out.last()
            && ts < *prev
        {
            return Err(op.invalid(
                resource,
                format!(
                    "events must be in chronological order: event {i} ({}) is older than event {} ({})",
                    e.timestamp,
                    i - 1,
                    timestamp(*prev)
                ),
            ));
        }
        out.push(ts);
    }
    Ok(out)
}

#[async_trait]
impl Logs for LocalLogs {
    async fn create_group(&self, name: &str, retention_days: Option<u32>) -> Result<LogGroup> {
        let op = op("create_group");
        validate_group_name(op, name)?;
        validate_retention(op, name, retention_days)?;
        let inner = &self.inner;
        let mut state = inner.lock();
        if state.groups.contains_key(name) {
            return Err(op.already_exists(name, "the log group exists"));
        }
        let id = inner.fresh_id(&mut state, "group");
        state.generations += 1;
        let group = Group::new(id, state.generations, retention_days, inner.now());
        if let Some(dir) = inner.group_dir(&group) {
            std::fs::create_dir_all(&dir).map_err(|e| io_error(op, &dir, e))?;
            inner.save(op, name, &group)?;
        }
        let info = group.info(name);
        state.groups.insert(name.to_string(), group);
        Ok(info)
    }

    async fn delete_group(&self, name: &str) -> Result<()> {
        let op = op("delete_group");
        validate_group_name(op, name)?;
        let inner = &self.inner;
        let mut state = inner.lock();
        let group = state.groups.get(name).ok_or_else(|| no_group(op, name))?;
        if let Some(dir) = inner.group_dir(group) {
            // Without its metadata the directory is garbage that `open` removes, so deleting
            // that one file first makes the deletion crash-safe.
            let meta = dir.join(GROUP_META);
            std::fs::remove_file(&meta).map_err(|e| io_error(op, &meta, e))?;
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(path = %dir.display(), error = %e,
                    "cannot remove a deleted log group's files now; they go at next open");
            }
        }
        // Dropping the group drops its tail sender, which ends its tails.
        if let Some(group) = state.groups.remove(name) {
            state.ids.remove(&group.id);
            for stream in group.streams.values() {
                state.ids.remove(&stream.id);
            }
        }
        Ok(())
    }

    async fn list_groups(&self) -> Result<Vec<LogGroup>> {
        let state = self.inner.lock();
        Ok(state.groups.iter().map(|(n, g)| g.info(n)).collect())
    }

    async fn set_retention(&self, name: &str, retention_days: Option<u32>) -> Result<()> {
        let op = op("set_retention");
        validate_group_name(op, name)?;
        validate_retention(op, name, retention_days)?;
        let inner = &self.inner;
        let mut state = inner.lock();
        let now = inner.now();
        let group = state
            .groups
            .get_mut(name)
            .ok_or_else(|| no_group(op, name))?;
        let before = group.retention_days;
        group.retention_days = retention_days;
        if let Err(e) = inner.save(op, name, group) {
            group.retention_days = before;
            return Err(e);
        }
        group.expire(now);
        Ok(())
    }

    async fn create_stream(&self, group_name: &str, name: &str) -> Result<LogStream> {
        let op = op("create_stream");
        validate_group_name(op, group_name)?;
        validate_stream_name(op, group_name, name)?;
        let inner = &self.inner;
        let mut state = inner.lock();
        let resource = format!("{group_name}/{name}");
        match state.groups.get(group_name) {
            None => return Err(no_group(op, group_name)),
            Some(g) if g.streams.contains_key(name) => {
                return Err(op.already_exists(resource, "the log stream exists"));
            }
            Some(_) => {}
        }
        let id = inner.fresh_id(&mut state, "stream");
        let now = inner.now();
        let group = state
            .groups
            .get_mut(group_name)
            .ok_or_else(|| no_group(op, group_name))?;
        let files = match inner.group_dir(group) {
            Some(dir) => Some(StreamFiles::create(op, &dir.join(&id))?),
            None => None,
        };
        group.streams.insert(
            name.to_string(),
            Stream {
                created: now,
                id: id.clone(),
                events: Vec::new(),
                next_seq: 0,
                files,
            },
        );
        if let Err(e) = inner.save(op, group_name, group) {
            group.streams.remove(name);
            state.ids.remove(&id);
            return Err(e);
        }
        Ok(LogStream {
            name: name.to_string(),
            created: timestamp(now),
            last_event: None,
        })
    }

    async fn list_streams(&self, group_name: &str) -> Result<Vec<LogStream>> {
        let op = op("list_streams");
        validate_group_name(op, group_name)?;
        let inner = &self.inner;
        let mut state = inner.lock();
        let now = inner.now();
        let group = state
            .groups
            .get_mut(group_name)
            .ok_or_else(|| no_group(op, group_name))?;
        group.expire(now);
        Ok(group
            .streams
            .iter()
            .map(|(name, s)| LogStream {
                name: name.clone(),
                created: timestamp(s.created),
                last_event: s.events.last().map(|e| timestamp(e.ts)),
            })
            .collect())
    }

    async fn put_events(&self, group_name: &str, name: &str, events: Vec<LogEvent>) -> Result<()> {
        let op = op("put_events");
        validate_group_name(op, group_name)?;
        validate_stream_name(op, group_name, name)?;
        let resource = format!("{group_name}/{name}");
        let stamps = check_batch(op, &resource, &events)?;
        let inner = &self.inner;
        let now = inner.now();
        // Encoding (the costly part) happens before taking the lock.
        let record = match (&inner.ctx.dir, stamps.last()) {
            (Some(_), Some(_)) => Some(segments::encode(op, &resource, now, &stamps, &events)?),
            _ => None,
        };
        let mut state = inner.lock();
        let group = state
            .groups
            .get_mut(group_name)
            .ok_or_else(|| no_group(op, group_name))?;
        let cutoff = group.cutoff(now);
        let stream = group
            .streams
            .get_mut(name)
            .ok_or_else(|| op.not_found(&resource, "no such log stream"))?;
        let Some(&max_ts) = stamps.last() else {
            return Ok(());
        };
        stream.expire(cutoff);
        let first_seq = stream.next_seq;
        let count = stamps.len() as u64;
        if let (Some(files), Some(record)) = (&mut stream.files, &record) {
            files.append(op, first_seq, count, record, max_ts)?;
        }
        stream.next_seq += count;
        let expired = cutoff.map_or(0, |c| stamps.partition_point(|t| *t < c));
        let tailing = group.tail.receiver_count() > 0;
        let mut delivery = Vec::new();
        let new = stamps
            .iter()
            .zip(events)
            .enumerate()
            .skip(expired)
            .map(|(i, (ts, e))| {
                if tailing {
                    delivery.push(LogRecord {
                        stream: name.to_string(),
                        timestamp: timestamp(*ts),
                        ingested: timestamp(now),
                        message: e.message.clone(),
                    });
                }
                Event {
                    ts: *ts,
                    seq: first_seq + i as u64,
                    ingested: now,
                    message: e.message,
                }
            });
        stream.insert(new);
        if !delivery.is_empty() {
            // No receiver left (they all dropped just now) is fine: nobody is tailing.
            let _ = group.tail.send(Arc::new(delivery));
        }
        Ok(())
    }

    async fn get_events(&self, req: GetEvents) -> Result<Page<LogRecord>> {
        let op = op("get_events");
        validate_group_name(op, &req.group)?;
        validate_stream_name(op, &req.group, &req.stream)?;
        let limit = check_limit(op, &req.group, req.limit)?;
        let after = req
            .cursor
            .as_deref()
            .map(|c| Cursor::decode(op, c))
            .transpose()?;
        let pattern = FilterPattern::default();
        self.read(
            op,
            &req.group,
            std::slice::from_ref(&req.stream),
            &Query {
                pattern: &pattern,
                start: req.start.map(millis),
                end: req.end.map(millis),
                after: after.as_ref(),
                limit,
            },
        )
    }

    async fn filter_events(&self, req: FilterEvents) -> Result<Page<LogRecord>> {
        let op = op("filter_events");
        validate_group_name(op, &req.group)?;
        let pattern = FilterPattern::parse(op, &req.pattern)?;
        let limit = check_limit(op, &req.group, req.limit)?;
        let after = req
            .cursor
            .as_deref()
            .map(|c| Cursor::decode(op, c))
            .transpose()?;
        self.read(
            op,
            &req.group,
            &req.streams,
            &Query {
                pattern: &pattern,
                start: req.start.map(millis),
                end: req.end.map(millis),
                after: after.as_ref(),
                limit,
            },
        )
    }

    async fn tail(&self, req: TailEvents) -> Result<BoxStream<LogRecord>> {
        let op = op("tail");
        validate_group_name(op, &req.group)?;
        let pattern = FilterPattern::parse(op, &req.pattern)?;
        let inner = &self.inner;
        let mut state = inner.lock();
        let now = inner.now();
        let group = state
            .groups
            .get_mut(&req.group)
            .ok_or_else(|| no_group(op, &req.group))?;
        group.expire(now);
        // Checks the names; the live part filters by name as streams may come later.
        select(op, &req.group, group, &req.streams)?;
        // Subscribing and noting each stream's next sequence number under one lock splits
        // events cleanly: those numbered below the mark come from storage, the rest live.
        let rx = group.tail.subscribe();
        let history = req.since.map(|since| History {
            since: millis(since),
            after: None,
            marks: group
                .streams
                .iter()
                .map(|(n, s)| (n.clone(), s.next_seq))
                .collect(),
        });
        let tail = Tail {
            inner: Arc::downgrade(inner),
            group: req.group,
            generation: group.generation,
            streams: req.streams.into_iter().collect(),
            pattern,
            history,
            pending: VecDeque::new(),
            rx,
        };
        drop(state);
        Ok(Box::pin(futures::stream::unfold(
            tail,
            |mut tail| async move {
                let item = tail.next().await?;
                Some((item, tail))
            },
        )))
    }
}

impl LocalLogs {
    /// One page of `q` over `streams` of `group_name` (all streams when empty).
    fn read(
        &self,
        op: Op,
        group_name: &str,
        streams: &[String],
        q: &Query<'_>,
    ) -> Result<Page<LogRecord>> {
        let inner = &self.inner;
        let mut state = inner.lock();
        let now = inner.now();
        let group = state
            .groups
            .get_mut(group_name)
            .ok_or_else(|| no_group(op, group_name))?;
        group.expire(now);
        let selected = select(op, group_name, group, streams)?;
        let found = query(&selected, group.cutoff(now), q);
        let next = if found.more {
            found.items.last().map(|(c, _)| c.encode())
        } else {
            None
        };
        Ok(Page {
            items: found.items.into_iter().map(|(_, r)| r).collect(),
            next,
        })
    }
}

/// Where a tail that started with stored events is in them.
struct History {
    since: i64,
    after: Option<Cursor>,
    /// Each stream's first sequence number that the live channel delivers.
    marks: HashMap<String, u64>,
}

/// A running tail.
struct Tail {
    inner: Weak<Inner>,
    group: String,
    generation: u64,
    streams: HashSet<String>,
    pattern: FilterPattern,
    history: Option<History>,
    pending: VecDeque<LogRecord>,
    rx: broadcast::Receiver<Arc<Vec<LogRecord>>>,
}

impl Tail {
    fn wanted(&self, record: &LogRecord) -> bool {
        (self.streams.is_empty() || self.streams.contains(&record.stream))
            && self.pattern.matches(&record.message)
    }

    /// The next event, `None` once the group (or the service) is gone.
    async fn next(&mut self) -> Option<Result<LogRecord>> {
        loop {
            if let Some(record) = self.pending.pop_front() {
                return Some(Ok(record));
            }
            if let Some(history) = &mut self.history {
                let inner = self.inner.upgrade()?;
                let streams: Vec<String> = self.streams.iter().cloned().collect();
                let (records, more) = inner.tail_history(
                    &self.group,
                    self.generation,
                    &streams,
                    &self.pattern,
                    history,
                )?;
                self.pending.extend(records);
                if !more {
                    self.history = None;
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(batch) => {
                    let wanted: Vec<LogRecord> =
                        batch.iter().filter(|r| self.wanted(r)).cloned().collect();
                    self.pending.extend(wanted);
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Some(Err(Error::new(
                        ErrorKind::Unavailable,
                        Service::Log,
                        "tail",
                        format!(
                            "the tail fell behind and skipped {missed} batches of events; \
                             read them with filter_events"
                        ),
                    )
                    .with_resource(self.group.clone())));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sim;
    use mvi_core::ManualClock;

    fn ctx(dir: Option<&Path>, clock: Arc<dyn mvi_core::Clock>) -> Ctx {
        let sim = Arc::new(Sim::new(1, clock, "test".into()));
        Ctx::new(dir, Service::Log, sim).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn expired_segments_are_deleted_from_disk() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let clock = ManualClock::new(chrono::Utc::now());
        let logs = LocalLogs::open(ctx(Some(tmp.path()), Arc::new(clock.clone())))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        logs.create_group("g", Some(1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        logs.create_stream("g", "s")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let big = "x".repeat(100_000);
        for _ in 0..200 {
            let ev = vec![LogEvent::new(mvi_core::Clock::now(&clock), big.clone())];
            logs.put_events("g", "s", ev)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let count = |logs: &LocalLogs| {
            let state = logs.inner.lock();
            state
                .groups
                .get("g")
                .and_then(|g| g.streams.get("s"))
                .map(|s| s.files.as_ref().map_or(0, |f| f.segment_count()))
        };
        assert!(count(&logs).is_some_and(|n| n >= 2));
        clock.advance(std::time::Duration::from_secs(2 * 86_400));
        let page = logs
            .get_events(GetEvents::new("g", "s"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(page.items.is_empty());
        assert_eq!(count(&logs), Some(0));
    }
}

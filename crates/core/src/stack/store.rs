//! Where a stack's state lives, and the lock that keeps two runs from changing it at once.
//!
//! - [`FileStore`] (the default): a folder per stack holding `state.json` (the last
//!   snapshot, written atomically), `journal.log` (one checksummed record per step since,
//!   synced before the step's effect is relied on; concurrent steps share one `fdatasync`,
//!   and the file grows in preallocated zeros so a sync has no length to update) and `lock.json` (the lease, read and
//!   replaced under an OS file lock on `lock.guard`).
//! - [`BlobStore`]: objects in a bucket of any backend's Blob service (S3 on AWS):
//!   `<prefix><stack>/state.json`, rewritten after every step with a conditional put on its
//!   last ETag, and `<prefix><stack>/lock.json`, taken with a create-only conditional put
//!   and taken over or renewed with one conditional on its ETag.
//!
//! A lock is a lease ([`LockHolder`], [`LEASE`]): it names its holder (host, process id and
//! start time, program), is renewed while the run lasts, and carries a generation that every
//! write of the run checks (fencing).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::blob::{Blob, PutMode, PutObject};
use crate::common::Timestamp;
use crate::error::{Error, ErrorKind, Op, Result, Service, io_error};
use crate::records::RecordFile;

/// How long a lock lasts without renewal. A run renews its lock every third of this, so a
/// lock whose lease ran out is held by nobody alive (or by a machine that lost its way to
/// the store), and another run may take it over.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// Who holds a stack's lock: a lease naming its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When that process started (clock ticks since boot, as `/proc/<pid>/stat` says), so a
    /// process id reused by another program is not taken for the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// The program (its executable's name).
    #[serde(default)]
    pub program: String,
    /// Since when.
    pub since: Timestamp,
    /// What it is doing (`up`, `destroy`, `refresh`).
    pub operation: String,
    /// Until when the lease lasts unless renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    /// The fencing token of this taking of the lock: writes of the run check the lock still
    /// carries it, so a run that lost its lock cannot overwrite newer state.
    #[serde(default)]
    pub generation: u64,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), if it runs.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

impl LockHolder {
    /// This process, about to run `operation`.
    pub fn me(operation: &str) -> Self {
        let program = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        LockHolder {
            host: host_name(),
            pid: std::process::id(),
            pid_start: process_start(std::process::id()),
            program,
            since: chrono::Utc::now(),
            operation: operation.to_string(),
            expires: None,
            generation: 0,
        }
    }

    /// Why nobody holds this lock any more (its process is gone on this host, or its lease
    /// ran out), or `None` if its holder may still be running.
    pub fn stale(&self) -> Option<String> {
        if self.host == host_name() && std::path::Path::new("/proc/self/stat").exists() {
            match process_start(self.pid) {
                None => return Some(format!("process {} is gone", self.pid)),
                Some(start) if self.pid_start.is_some_and(|s| s != start) => {
                    return Some(format!(
                        "process {} is gone (its id now names another process)",
                        self.pid
                    ));
                }
                Some(_) => {}
            }
        }
        match self.expires {
            Some(t) if t < chrono::Utc::now() => Some(format!(
                "its lease expired at {}",
                t.format("%Y-%m-%d %H:%M:%S UTC")
            )),
            _ => None,
        }
    }

    /// This holder with a fresh lease.
    fn leased(&self, generation: u64) -> Self {
        let mut h = self.clone();
        h.generation = generation;
        h.expires = Some(chrono::Utc::now() + LEASE);
        h
    }
}

/// A fencing token no earlier taking of a lock had.
fn new_generation(previous: Option<&LockHolder>) -> u64 {
    let now = chrono::Utc::now()
        .timestamp_nanos_opt()
        .map_or(0, |n| n.unsigned_abs());
    now.max(previous.map_or(0, |p| p.generation) + 1)
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.operation)?;
        if !self.program.is_empty() {
            write!(f, "{}, ", self.program)?;
        }
        write!(
            f,
            "pid {} on {}, since {})",
            self.pid,
            self.host,
            self.since.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

fn op(operation: &'static str) -> Op {
    Op::new(Service::Stack, operation)
}

fn locked(stack: &str, holder: &LockHolder) -> Error {
    op("lock").precondition(
        stack,
        format!(
            "the stack is locked by {holder}; it may still be running. If it is not, \
             `state unlock --force` (Stack::unlock(true)) removes the lock"
        ),
    )
}

fn unreadable_lock() -> LockHolder {
    LockHolder {
        host: "unknown".into(),
        pid: 0,
        pid_start: None,
        program: String::new(),
        since: chrono::Utc::now(),
        operation: "an unreadable lock".into(),
        expires: None,
        generation: 0,
    }
}

/// The error of a write by a run whose lock another run has taken.
fn fenced(stack: &str, now: Option<&LockHolder>) -> Error {
    let by = now.map_or_else(|| "nobody".to_string(), |h| h.to_string());
    op("save_state").precondition(
        stack,
        format!(
            "this run no longer holds the stack's lock (it is held by {by}); the write was \
             refused, so the newer state is intact"
        ),
    )
}

/// A write refused because this store does not hold the stack's lock at all.
fn unlocked(stack: &str) -> Error {
    op("save_state").precondition(
        stack,
        "the state is written only under the stack's lock; take it first",
    )
}

/// A place to keep stack states.
///
/// A lock is a lease (see [`LEASE`]): [`StateStore::lock`] takes it (over from a stale
/// holder if need be), [`StateStore::renew`] extends it, and every write of the holder is
/// fenced: refused once another run has taken the lock.
#[async_trait]
pub trait StateStore: fmt::Debug + Send + Sync + 'static {
    /// Takes `stack`'s lock for `holder`. A lock whose holder is stale (its process gone on
    /// this host, or its lease expired) is taken over: the stale holder is returned, so the
    /// caller can say so. PreconditionFailed naming the holder if it may still be running.
    async fn lock(&self, stack: &str, holder: &LockHolder) -> Result<Option<LockHolder>>;
    /// Extends the lease of the lock this store took; PreconditionFailed if it was lost.
    async fn renew(&self, stack: &str) -> Result<()>;
    /// Releases the lock this store took (nothing if another run holds it now).
    async fn unlock(&self, stack: &str) -> Result<()>;
    /// Releases the lock at once, without an executor (a run dropped mid-way); false when
    /// the store cannot, and [`StateStore::unlock`] must run instead.
    fn unlock_now(&self, stack: &str) -> bool {
        let _ = stack;
        false
    }
    /// Who holds the lock now, if anyone.
    async fn holder(&self, stack: &str) -> Result<Option<LockHolder>>;
    /// Removes the lock if it is stale, or whoever holds it with `force`; returns who held
    /// it. Without `force`, a holder that may still be running is PreconditionFailed.
    async fn break_lock(&self, stack: &str, force: bool) -> Result<Option<LockHolder>>;
    /// The last snapshot and the journal entries since (empty and `None` for a new stack).
    /// Without the lock, a load changes nothing.
    async fn load(&self, stack: &str) -> Result<(Option<Vec<u8>>, Vec<Vec<u8>>)>;
    /// Whether [`StateStore::append`] is supported (else every step saves a snapshot).
    fn journaled(&self) -> bool;
    /// Appends journal entries durably (one step's worth). Called concurrently for
    /// independent steps: a store may make several appends durable at once (group commit),
    /// but returns from each only once its entries are durable. Fenced.
    async fn append(&self, stack: &str, entries: &[Vec<u8>]) -> Result<()>;
    /// Replaces the snapshot with `doc`, durably and atomically, and empties the journal.
    /// Fenced.
    async fn snapshot(&self, stack: &str, doc: &[u8]) -> Result<()>;
}

/// Stack states in a local folder (see the module doc).
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    journals: std::sync::Mutex<std::collections::HashMap<String, Arc<Journal>>>,
    /// The locks this store took (and has not released), by stack: only a load under the
    /// lock may cut a torn journal tail (other readers never change the file), and writes
    /// check the lock still carries this holder's generation.
    held: std::sync::Mutex<std::collections::HashMap<String, LockHolder>>,
}

/// A stack's journal file, with group commit: appends queue their records, and one
/// committer (a blocking task, started by the append that finds none running) writes every
/// queued record with one write and makes them durable with one `fdatasync`, then answers
/// each append; records queued meanwhile make the next batch. So concurrent steps share a
/// sync and cost one thread hop per batch, not one per record.
///
/// Fencing is checked by the committer, once per batch, right before the write: the batch is
/// written only if `lock.json` still carries the generation each of its appends was made
/// under.
#[derive(Debug)]
struct Journal {
    stack: String,
    file: std::sync::Mutex<RecordFile>,
    queue: std::sync::Mutex<Queue>,
    /// The stack's `lock.json`.
    lock: PathBuf,
}

/// The appends waiting for the committer, and whether one is running.
#[derive(Debug, Default)]
struct Queue {
    waiting: Vec<Waiting>,
    committing: bool,
}

/// An append waiting for the committer: its framed records, the lock generation it was
/// made under, and where to say when they are durable.
#[derive(Debug)]
struct Waiting {
    framed: Vec<u8>,
    generation: u64,
    done: tokio::sync::oneshot::Sender<std::result::Result<(), Arc<Error>>>,
}

/// The journal grows by this much at a time, zeros synced with the new length, so that an
/// append's `fdatasync` has no file size to update.
const JOURNAL_CHUNK: u64 = 1 << 20;

impl Journal {
    fn new(stack: &str, file: RecordFile, lock: PathBuf) -> Arc<Self> {
        Arc::new(Journal {
            stack: stack.to_string(),
            file: std::sync::Mutex::new(file),
            queue: Default::default(),
            lock,
        })
    }

    /// Appends framed records, made under the lock of `generation`, and returns once they
    /// are durable.
    async fn append(self: &Arc<Self>, op: Op, framed: Vec<u8>, generation: u64) -> Result<()> {
        let (done, rx) = tokio::sync::oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.waiting.push(Waiting {
                framed,
                generation,
                done,
            });
            !std::mem::replace(&mut q.committing, true)
        };
        if start {
            let journal = self.clone();
            tokio::task::spawn_blocking(move || journal.commit(op));
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            // The batch's error, told to each of its appends.
            Ok(Err(e)) => Err(op.err(e.kind(), e.resource().unwrap_or_default(), e.message())),
            Err(_) => Err(op.err(
                ErrorKind::Internal,
                "journal",
                "the journal's committer stopped before answering",
            )),
        }
    }

    /// Writes and syncs batches until the queue is empty.
    fn commit(&self, op: Op) {
        loop {
            let batch = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if q.waiting.is_empty() {
                    q.committing = false;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            // Fencing: the appends made under the lock's current generation are written;
            // any other (the lock was taken over) is refused, and writes nothing.
            let now = read_holder(&self.lock);
            let current = now.as_ref().map(|h| h.generation);
            let (batch, refused): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .partition(|w| Some(w.generation) == current);
            for w in refused {
                let _ = w
                    .done
                    .send(Err(Arc::new(fenced(&self.stack, now.as_ref()))));
            }
            let mut bytes = Vec::with_capacity(batch.iter().map(|w| w.framed.len()).sum());
            for w in &batch {
                bytes.extend_from_slice(&w.framed);
            }
            let done = if bytes.is_empty() {
                Ok(())
            } else {
                self.write(op, &bytes).map_err(Arc::new)
            };
            for w in batch {
                // An append that gave up waiting is fine.
                let _ = w.done.send(done.clone());
            }
        }
    }

    fn write(&self, op: Op, bytes: &[u8]) -> Result<()> {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if !f.fits(bytes.len() as u64) {
            f.preallocate(op, (bytes.len() as u64).max(JOURNAL_CHUNK))?;
        }
        f.append_framed(op, bytes)?;
        f.sync(op)
    }
}

impl FileStore {
    /// States under `dir` (created as needed), one folder per stack.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileStore {
            dir: dir.into(),
            journals: Default::default(),
            held: Default::default(),
        }
    }

    fn stack_dir(&self, stack: &str) -> Result<PathBuf> {
        let dir = self.dir.join(stack);
        std::fs::create_dir_all(&dir).map_err(|e| io_error(op("open_state"), &dir, e))?;
        Ok(dir)
    }

    fn journal(&self, stack: &str) -> Result<Arc<Journal>> {
        let mut journals = self.journals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(j) = journals.get(stack) {
            return Ok(j.clone());
        }
        let path = self.stack_dir(stack)?.join("journal.log");
        let file = RecordFile::open(op("open_state"), &path, false, |_| {
            Ok(crate::records::Replay::Applied)
        })?;
        let j = Journal::new(stack, file, self.lock_file(stack));
        journals.insert(stack.to_string(), j.clone());
        Ok(j)
    }
}

fn read_holder(path: &Path) -> Option<LockHolder> {
    std::fs::read(path)
        .ok()
        .map(|b| serde_json::from_slice(&b).unwrap_or_else(|_| unreadable_lock()))
}

impl FileStore {
    fn lock_path(&self, stack: &str) -> Result<PathBuf> {
        Ok(self.stack_dir(stack)?.join("lock.json"))
    }

    /// Where the lock is, without making the folder: for reads on every write (fencing).
    fn lock_file(&self, stack: &str) -> PathBuf {
        self.dir.join(stack).join("lock.json")
    }

    /// Runs `f` holding the stack's lock guard (`lock.guard`, an exclusive OS file lock):
    /// taking, renewing, releasing and breaking the lock read and replace `lock.json` as
    /// one step, so two processes never both take over a stale lock.
    fn guarded<T>(&self, stack: &str, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
        let path = self.lock_path(stack)?;
        let guard_path = path.with_file_name("lock.guard");
        let guard = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&guard_path)
            .map_err(|e| io_error(op("lock"), &guard_path, e))?;
        guard
            .lock()
            .map_err(|e| io_error(op("lock"), &guard_path, e))?;
        let out = f(&path);
        // Closing the file releases the OS lock too; unlocking first says so plainly.
        let _ = guard.unlock();
        out
    }

    fn write_lock(path: &Path, holder: &LockHolder) -> Result<()> {
        let json = serde_json::to_vec_pretty(holder).map_err(|e| op("lock").internal("lock", e))?;
        crate::records::atomic_write(op("lock"), path, &json)
    }

    fn held(&self, stack: &str) -> Option<LockHolder> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(stack)
            .cloned()
    }

    /// Refuses a write unless this store still holds the stack's lock (fencing).
    fn fence(&self, stack: &str) -> Result<()> {
        let Some(mine) = self.held(stack) else {
            return Err(unlocked(stack));
        };
        let now = read_holder(&self.lock_file(stack));
        match now {
            Some(h) if h.generation == mine.generation => Ok(()),
            other => Err(fenced(stack, other.as_ref())),
        }
    }

    fn release(&self, stack: &str) -> Result<()> {
        let Some(mine) = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(stack)
        else {
            return Ok(());
        };
        self.guarded(stack, |path| match read_holder(path) {
            Some(h) if h.generation == mine.generation => match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error(op("unlock"), path, e)),
            },
            // Taken over (or broken) meanwhile: not ours to remove.
            _ => Ok(()),
        })
    }
}

#[async_trait]
impl StateStore for FileStore {
    async fn lock(&self, stack: &str, holder: &LockHolder) -> Result<Option<LockHolder>> {
        let (taken, previous) = self.guarded(stack, |path| {
            let current = read_holder(path);
            if let Some(h) = &current
                && h.stale().is_none()
            {
                return Err(locked(stack, h));
            }
            let mine = holder.leased(new_generation(current.as_ref()));
            Self::write_lock(path, &mine)?;
            Ok((mine, current))
        })?;
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stack.to_string(), taken);
        Ok(previous)
    }

    async fn renew(&self, stack: &str) -> Result<()> {
        let Some(mine) = self.held(stack) else {
            return Err(fenced(stack, None));
        };
        let renewed = self.guarded(stack, |path| match read_holder(path) {
            Some(h) if h.generation == mine.generation => {
                let renewed = mine.leased(mine.generation);
                Self::write_lock(path, &renewed)?;
                Ok(renewed)
            }
            other => Err(fenced(stack, other.as_ref())),
        })?;
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stack.to_string(), renewed);
        Ok(())
    }

    async fn unlock(&self, stack: &str) -> Result<()> {
        self.release(stack)
    }

    fn unlock_now(&self, stack: &str) -> bool {
        if let Err(e) = self.release(stack) {
            tracing::warn!(stack, error = %e, "could not release the stack's lock");
        }
        true
    }

    async fn holder(&self, stack: &str) -> Result<Option<LockHolder>> {
        Ok(read_holder(&self.lock_file(stack)))
    }

    async fn break_lock(&self, stack: &str, force: bool) -> Result<Option<LockHolder>> {
        self.guarded(stack, |path| {
            let Some(h) = read_holder(path) else {
                return Ok(None);
            };
            if !force && h.stale().is_none() {
                return Err(op("unlock").precondition(
                    stack,
                    format!(
                        "the lock is held by {h}, which may still be running; force the unlock \
                         only if it is not"
                    ),
                ));
            }
            match std::fs::remove_file(path) {
                Ok(()) => Ok(Some(h)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(h)),
                Err(e) => Err(io_error(op("unlock"), path, e)),
            }
        })
    }

    async fn load(&self, stack: &str) -> Result<(Option<Vec<u8>>, Vec<Vec<u8>>)> {
        let dir = self.stack_dir(stack)?;
        let path = dir.join("state.json");
        let snapshot = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(op("load_state"), &path, e)),
        };
        let mut entries = Vec::new();
        let jpath = dir.join("journal.log");
        let collect = |payload: &[u8]| {
            entries.push(payload.to_vec());
            Ok(crate::records::Replay::Applied)
        };
        let holding = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(stack);
        if holding {
            // Under the lock: read, cut a torn tail off, and append from there.
            let file = RecordFile::open(op("load_state"), &jpath, false, collect)?;
            self.journals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    stack.to_string(),
                    Journal::new(stack, file, self.lock_file(stack)),
                );
        } else {
            // Without it (a preview, outputs): read only, whoever is appending.
            RecordFile::read(op("load_state"), &jpath, collect)?;
        }
        Ok((snapshot, entries))
    }

    fn journaled(&self) -> bool {
        true
    }

    async fn append(&self, stack: &str, entries: &[Vec<u8>]) -> Result<()> {
        // The lock file is read by the committer, once for the batch this append joins.
        let Some(mine) = self.held(stack) else {
            return Err(unlocked(stack));
        };
        let journal = self.journal(stack)?;
        let mut buf = Vec::new();
        for e in entries {
            crate::records::frame(op("save_state"), stack, &mut buf, e)?;
        }
        journal.append(op("save_state"), buf, mine.generation).await
    }

    async fn snapshot(&self, stack: &str, doc: &[u8]) -> Result<()> {
        self.fence(stack)?;
        let dir = self.stack_dir(stack)?;
        let path = dir.join("state.json");
        let op = op("save_state");
        crate::records::atomic_write(op, &path, doc)?;
        let journal = self.journal(stack)?;
        let mut f = journal.file.lock().unwrap_or_else(|e| e.into_inner());
        f.clear(op)
    }
}

/// Stack states as objects in a bucket of a Blob service (S3 on AWS; see the module doc).
#[derive(Debug, Clone)]
pub struct BlobStore {
    blob: Arc<dyn Blob>,
    bucket: String,
    prefix: String,
    /// The locks this store took, by stack.
    held: Arc<std::sync::Mutex<std::collections::HashMap<String, BlobLock>>>,
}

/// A lock this [`BlobStore`] holds: the lease, the lock object's ETag (renewal replaces it
/// only if unchanged), and the state object's ETag as last read or written (a snapshot
/// replaces it only if unchanged).
#[derive(Debug, Clone)]
struct BlobLock {
    holder: LockHolder,
    lock_etag: String,
    state_etag: Option<String>,
}

impl BlobStore {
    /// States in `bucket` (which must exist) under `prefix` (e.g. `stacks/`).
    pub fn new(blob: Arc<dyn Blob>, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        BlobStore {
            blob,
            bucket: bucket.into(),
            prefix: prefix.into(),
            held: Default::default(),
        }
    }

    fn key(&self, stack: &str, file: &str) -> String {
        format!("{}{stack}/{file}", self.prefix)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, BlobLock>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock object's holder and ETag, if there is one.
    async fn read_lock(&self, stack: &str) -> Result<Option<(LockHolder, String)>> {
        let got = self
            .blob
            .get_object(crate::blob::GetObject::new(
                &self.bucket,
                self.key(stack, "lock.json"),
            ))
            .await;
        match got {
            Ok(out) => {
                let etag = out.meta.etag.clone();
                let bytes = out.bytes().await?;
                let holder = serde_json::from_slice(&bytes).unwrap_or_else(|_| unreadable_lock());
                Ok(Some((holder, etag)))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put_lock(&self, stack: &str, holder: &LockHolder, mode: PutMode) -> Result<String> {
        let json = serde_json::to_vec_pretty(holder).map_err(|e| op("lock").internal(stack, e))?;
        let put = PutObject::new(&self.bucket, self.key(stack, "lock.json"), json)
            .mode(mode)
            .content_type("application/json");
        Ok(self.blob.put_object(put).await?.etag)
    }

    /// Refuses a write unless the lock object still carries this store's generation.
    async fn fence(&self, stack: &str) -> Result<BlobLock> {
        let Some(mine) = self.held().get(stack).cloned() else {
            return Err(op("save_state").precondition(
                stack,
                "the state is written only under the stack's lock; take it first",
            ));
        };
        match self.read_lock(stack).await? {
            Some((h, _)) if h.generation == mine.holder.generation => Ok(mine),
            other => Err(fenced(stack, other.as_ref().map(|(h, _)| h))),
        }
    }
}

#[async_trait]
impl StateStore for BlobStore {
    async fn lock(&self, stack: &str, holder: &LockHolder) -> Result<Option<LockHolder>> {
        let fresh = holder.leased(new_generation(None));
        let (mine, etag, previous) = match self.put_lock(stack, &fresh, PutMode::Create).await {
            Ok(etag) => (fresh, etag, None),
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                let Some((current, etag)) = self.read_lock(stack).await? else {
                    return Err(op("lock").err(
                        ErrorKind::Unavailable,
                        stack,
                        "the lock was released while being taken; try again",
                    ));
                };
                if current.stale().is_none() {
                    return Err(locked(stack, &current));
                }
                // Take it over only if nobody changed it since it was read.
                let mine = holder.leased(new_generation(Some(&current)));
                match self.put_lock(stack, &mine, PutMode::Update(etag)).await {
                    Ok(etag) => (mine, etag, Some(current)),
                    Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                        return Err(locked(stack, &current));
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        self.held().insert(
            stack.to_string(),
            BlobLock {
                holder: mine,
                lock_etag: etag,
                state_etag: None,
            },
        );
        Ok(previous)
    }

    async fn renew(&self, stack: &str) -> Result<()> {
        let Some(mine) = self.held().get(stack).cloned() else {
            return Err(fenced(stack, None));
        };
        let renewed = mine.holder.leased(mine.holder.generation);
        match self
            .put_lock(stack, &renewed, PutMode::Update(mine.lock_etag.clone()))
            .await
        {
            Ok(etag) => {
                if let Some(l) = self.held().get_mut(stack) {
                    l.holder = renewed;
                    l.lock_etag = etag;
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                let now = self.read_lock(stack).await.ok().flatten();
                Err(fenced(stack, now.as_ref().map(|(h, _)| h)))
            }
            Err(e) => Err(e),
        }
    }

    async fn unlock(&self, stack: &str) -> Result<()> {
        let Some(mine) = self.held().remove(stack) else {
            return Ok(());
        };
        match self.read_lock(stack).await? {
            Some((h, _)) if h.generation == mine.holder.generation => {
                self.blob
                    .delete_object(&self.bucket, &self.key(stack, "lock.json"))
                    .await
            }
            // Taken over (or broken) meanwhile: not ours to remove.
            _ => Ok(()),
        }
    }

    async fn holder(&self, stack: &str) -> Result<Option<LockHolder>> {
        Ok(self.read_lock(stack).await?.map(|(h, _)| h))
    }

    async fn break_lock(&self, stack: &str, force: bool) -> Result<Option<LockHolder>> {
        let Some((h, _)) = self.read_lock(stack).await? else {
            return Ok(None);
        };
        if !force && h.stale().is_none() {
            return Err(op("unlock").precondition(
                stack,
                format!(
                    "the lock is held by {h}, which may still be running; force the unlock only \
                     if it is not"
                ),
            ));
        }
        self.blob
            .delete_object(&self.bucket, &self.key(stack, "lock.json"))
            .await?;
        Ok(Some(h))
    }

    async fn load(&self, stack: &str) -> Result<(Option<Vec<u8>>, Vec<Vec<u8>>)> {
        let got = self
            .blob
            .get_object(crate::blob::GetObject::new(
                &self.bucket,
                self.key(stack, "state.json"),
            ))
            .await;
        let (bytes, etag) = match got {
            Ok(out) => {
                let etag = out.meta.etag.clone();
                (Some(out.bytes().await?.to_vec()), Some(etag))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => (None, None),
            Err(e) => return Err(e),
        };
        if let Some(l) = self.held().get_mut(stack) {
            l.state_etag = etag;
        }
        Ok((bytes, Vec::new()))
    }

    fn journaled(&self) -> bool {
        false
    }

    async fn append(&self, stack: &str, _entries: &[Vec<u8>]) -> Result<()> {
        Err(op("save_state").unsupported(format!(
            "the blob store of stack {stack} keeps snapshots only"
        )))
    }

    async fn snapshot(&self, stack: &str, doc: &[u8]) -> Result<()> {
        // Fenced twice: the lock must still be this run's, and the state must be the one
        // this run read or wrote last (a conditional put), so even a write racing a
        // takeover cannot replace newer state.
        let mine = self.fence(stack).await?;
        let mode = match mine.state_etag {
            Some(etag) => PutMode::Update(etag),
            None => PutMode::Create,
        };
        let put = PutObject::new(&self.bucket, self.key(stack, "state.json"), doc.to_vec())
            .mode(mode)
            .content_type("application/json");
        match self.blob.put_object(put).await {
            Ok(meta) => {
                if let Some(l) = self.held().get_mut(stack) {
                    l.state_etag = Some(meta.etag);
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => Err(op("save_state")
                .precondition(
                    stack,
                    "the state was written by another run since this run read it; the write \
                     was refused, so the newer state is intact",
                )),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many concurrent appends (a group commit shares syncs among them) all land, each
    /// exactly once and whole, and a load after replays them all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_all_land_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::new(dir.path()));
        store.lock("s", &LockHolder::me("test")).await.unwrap();
        store.load("s").await.unwrap();
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .append("s", &[format!("entry {i}").into_bytes()])
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let (_, entries) = store.load("s").await.unwrap();
        let mut got: Vec<String> = entries
            .into_iter()
            .map(|e| String::from_utf8(e).unwrap())
            .collect();
        got.sort();
        let mut want: Vec<String> = (0..300).map(|i| format!("entry {i}")).collect();
        want.sort();
        assert_eq!(got, want);
        // A reader without the lock sees the same, past the preallocated zeros.
        let (_, read) = FileStore::new(dir.path()).load("s").await.unwrap();
        assert_eq!(read.len(), 300);
    }

    /// An append made after another store took the lock over is refused by the committer,
    /// and writes nothing.
    #[tokio::test]
    async fn an_append_after_a_takeover_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = FileStore::new(dir.path());
        a.lock("s", &LockHolder::me("a")).await.unwrap();
        a.load("s").await.unwrap();
        a.append("s", &[b"first".to_vec()]).await.unwrap();
        let b = FileStore::new(dir.path());
        b.break_lock("s", true).await.unwrap();
        b.lock("s", &LockHolder::me("b")).await.unwrap();
        let e = a.append("s", &[b"late".to_vec()]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PreconditionFailed, "{e}");
        assert!(e.to_string().contains("no longer holds"), "{e}");
        let (_, entries) = b.load("s").await.unwrap();
        assert_eq!(entries, vec![b"first".to_vec()]);
    }
}

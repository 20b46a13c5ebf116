//! Where a stack's state lives, and the lock that keeps two runs from changing it at once.
//!
//! - [`FileStore`] (the default): a folder per stack holding `state.json` (the last
//!   snapshot, written atomically), `journal.log` (one checksummed record per step since,
//!   synced before the step's effect is relied on) and `lock.json` (created exclusively).
//! - [`BlobStore`]: objects in a bucket of any backend's Blob service (S3 on AWS):
//!   `<prefix><stack>/state.json`, rewritten after every step, and `<prefix><stack>/lock.json`,
//!   taken with a create-only conditional put.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::blob::{Blob, BlobExt, PutMode, PutObject};
use crate::common::Timestamp;
use crate::error::{Error, ErrorKind, Op, Result, Service, io_error};
use crate::records::RecordFile;

/// Who holds a stack's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Since when.
    pub since: Timestamp,
    /// What it is doing (`up`, `destroy`, `refresh`).
    pub operation: String,
}

impl LockHolder {
    /// This process, about to run `operation`.
    pub fn me(operation: &str) -> Self {
        LockHolder {
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into()),
            pid: std::process::id(),
            since: chrono::Utc::now(),
            operation: operation.to_string(),
        }
    }
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (pid {} on {}, since {})",
            self.operation,
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
            "the stack is locked by {holder}; if that run is dead, break the lock with Stack::break_lock"
        ),
    )
}

/// A place to keep stack states.
#[async_trait]
pub trait StateStore: fmt::Debug + Send + Sync + 'static {
    /// Takes `stack`'s lock for `holder`; PreconditionFailed naming the current holder if
    /// another has it.
    async fn lock(&self, stack: &str, holder: &LockHolder) -> Result<()>;
    /// Releases the lock (when held by this process).
    async fn unlock(&self, stack: &str) -> Result<()>;
    /// Removes the lock whoever holds it; returns who did.
    async fn break_lock(&self, stack: &str) -> Result<Option<LockHolder>>;
    /// The last snapshot and the journal entries since (empty and `None` for a new stack).
    async fn load(&self, stack: &str) -> Result<(Option<Vec<u8>>, Vec<Vec<u8>>)>;
    /// Whether [`StateStore::append`] is supported (else every step saves a snapshot).
    fn journaled(&self) -> bool;
    /// Appends journal entries durably (one step's worth). Called concurrently for
    /// independent steps: a store may make several appends durable at once (group commit),
    /// but returns from each only once its entries are durable.
    async fn append(&self, stack: &str, entries: &[Vec<u8>]) -> Result<()>;
    /// Replaces the snapshot with `doc`, durably and atomically, and empties the journal.
    async fn snapshot(&self, stack: &str, doc: &[u8]) -> Result<()>;
}

/// Stack states in a local folder (see the module doc).
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    journals: std::sync::Mutex<std::collections::HashMap<String, Arc<Journal>>>,
    /// The stacks whose lock this store took (and has not released): only a load under the
    /// lock may cut a torn journal tail; other readers never change the file.
    held: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// A stack's journal file, with group commit: concurrent appends write their records one
/// after the other, and one `fdatasync` makes every record written before it durable, so
/// an append that finds its record already synced by another returns without syncing.
#[derive(Debug)]
struct Journal {
    /// The file, and how many appends were written to it.
    file: std::sync::Mutex<(RecordFile, u64)>,
    /// How many appends are known durable; held while syncing, so syncs queue up.
    synced: std::sync::Mutex<u64>,
}

impl Journal {
    fn new(file: RecordFile) -> Arc<Self> {
        Arc::new(Journal {
            file: std::sync::Mutex::new((file, 0)),
            synced: std::sync::Mutex::new(0),
        })
    }

    /// Appends framed records and returns once they are durable.
    fn append(&self, op: Op, framed: &[u8]) -> Result<()> {
        let mine = {
            let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
            f.0.append_framed(op, framed)?;
            f.1 += 1;
            f.1
        };
        let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        if *synced >= mine {
            // Another append's sync, started after this write, covered it.
            return Ok(());
        }
        let f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let upto = f.1;
        f.0.sync(op)?;
        *synced = upto;
        Ok(())
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
        let j = Journal::new(file);
        journals.insert(stack.to_string(), j.clone());
        Ok(j)
    }
}

fn read_holder(path: &Path) -> Option<LockHolder> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

#[async_trait]
impl StateStore for FileStore {
    async fn lock(&self, stack: &str, holder: &LockHolder) -> Result<()> {
        let path = self.stack_dir(stack)?.join("lock.json");
        let json = serde_json::to_vec_pretty(holder).map_err(|e| op("lock").internal(stack, e))?;
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let current = read_holder(&path).unwrap_or(LockHolder {
                    host: "unknown".into(),
                    pid: 0,
                    since: chrono::Utc::now(),
                    operation: "an unreadable lock".into(),
                });
                return Err(locked(stack, &current));
            }
            Err(e) => return Err(io_error(op("lock"), &path, e)),
        };
        use std::io::Write;
        file.write_all(&json)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error(op("lock"), &path, e))?;
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stack.to_string());
        Ok(())
    }

    async fn unlock(&self, stack: &str) -> Result<()> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(stack);
        let path = self.stack_dir(stack)?.join("lock.json");
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(op("unlock"), &path, e)),
        }
    }

    async fn break_lock(&self, stack: &str) -> Result<Option<LockHolder>> {
        let path = self.stack_dir(stack)?.join("lock.json");
        let holder = read_holder(&path);
        self.unlock(stack).await?;
        Ok(holder)
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
            .contains(stack);
        if holding {
            // Under the lock: read, cut a torn tail off, and append from there.
            let file = RecordFile::open(op("load_state"), &jpath, false, collect)?;
            self.journals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(stack.to_string(), Journal::new(file));
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
        let journal = self.journal(stack)?;
        let mut buf = Vec::new();
        for e in entries {
            crate::records::frame(op("save_state"), stack, &mut buf, e)?;
        }
        let op = op("save_state");
        tokio::task::spawn_blocking(move || journal.append(op, &buf))
            .await
            .map_err(|e| op.internal(stack, e))?
    }

    async fn snapshot(&self, stack: &str, doc: &[u8]) -> Result<()> {
        let dir = self.stack_dir(stack)?;
        let path = dir.join("state.json");
        let op = op("save_state");
        crate::records::atomic_write(op, &path, doc)?;
        let journal = self.journal(stack)?;
        let mut f = journal.file.lock().unwrap_or_else(|e| e.into_inner());
        f.0.clear(op)
    }
}

/// Stack states as objects in a bucket of a Blob service (S3 on AWS; see the module doc).
#[derive(Debug, Clone)]
pub struct BlobStore {
    blob: Arc<dyn Blob>,
    bucket: String,
    prefix: String,
}

impl BlobStore {
    /// States in `bucket` (which must exist) under `prefix` (e.g. `stacks/`).
    pub fn new(blob: Arc<dyn Blob>, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        BlobStore {
            blob,
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    fn key(&self, stack: &str, file: &str) -> String {
        format!("{}{stack}/{file}", self.prefix)
    }
}

#[async_trait]
impl StateStore for BlobStore {
    async fn lock(&self, stack: &str, holder: &LockHolder) -> Result<()> {
        let json = serde_json::to_vec_pretty(holder).map_err(|e| op("lock").internal(stack, e))?;
        let key = self.key(stack, "lock.json");
        let put = PutObject::new(&self.bucket, &key, json)
            .mode(PutMode::Create)
            .content_type("application/json");
        match self.blob.put_object(put).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                let current = self
                    .blob
                    .get(&self.bucket, &key)
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(LockHolder {
                        host: "unknown".into(),
                        pid: 0,
                        since: chrono::Utc::now(),
                        operation: "an unreadable lock".into(),
                    });
                Err(locked(stack, &current))
            }
            Err(e) => Err(e),
        }
    }

    async fn unlock(&self, stack: &str) -> Result<()> {
        self.blob
            .delete_object(&self.bucket, &self.key(stack, "lock.json"))
            .await
    }

    async fn break_lock(&self, stack: &str) -> Result<Option<LockHolder>> {
        let holder = self
            .blob
            .get(&self.bucket, &self.key(stack, "lock.json"))
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        self.unlock(stack).await?;
        Ok(holder)
    }

    async fn load(&self, stack: &str) -> Result<(Option<Vec<u8>>, Vec<Vec<u8>>)> {
        match self
            .blob
            .get(&self.bucket, &self.key(stack, "state.json"))
            .await
        {
            Ok(b) => Ok((Some(b.to_vec()), Vec::new())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok((None, Vec::new())),
            Err(e) => Err(e),
        }
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
        let put = PutObject::new(&self.bucket, self.key(stack, "state.json"), doc.to_vec())
            .content_type("application/json");
        self.blob.put_object(put).await.map(|_| ())
    }
}

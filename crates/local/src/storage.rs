//! Where a local service keeps its state: a directory under the state root, or memory.
//!
//! Also the one place that turns native storage errors (io, redb) into mvi errors, and the
//! atomic-write helper every file-backed service uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mvi_core::{Error, ErrorKind, Op, Result, Service};

use crate::sim::Sim;

pub use mvi_core::records;

/// What a service is given when it opens.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The service's own directory (created), or `None` for in-memory state.
    pub dir: Option<PathBuf>,
    /// Time, ids, principal.
    pub sim: Arc<Sim>,
}

impl Ctx {
    /// A context for `service` under `root` (`root/<service>`), creating the directory.
    pub fn new(root: Option<&Path>, service: Service, sim: Arc<Sim>) -> Result<Self> {
        let dir = match root {
            Some(root) => {
                let dir = root.join(service.as_str());
                std::fs::create_dir_all(&dir)
                    .map_err(|e| io_error(Op::new(service, "open"), &dir, e))?;
                Some(dir)
            }
            None => None,
        };
        Ok(Ctx { dir, sim })
    }

    /// Opens (or creates) the redb database `name` in the service's directory, or an
    /// in-memory one.
    pub fn open_redb(&self, op: Op, name: &str) -> Result<redb::Database> {
        match &self.dir {
            Some(dir) => {
                let path = dir.join(name);
                redb::Database::create(&path).map_err(|e| {
                    let kind = match &e {
                        redb::DatabaseError::DatabaseAlreadyOpen => ErrorKind::Unavailable,
                        _ => ErrorKind::Internal,
                    };
                    let hint = if kind == ErrorKind::Unavailable {
                        "the state root is already open in this or another process"
                    } else {
                        "cannot open the database file"
                    };
                    op.err(kind, path.display().to_string(), format!("{hint}: {e}"))
                        .with_source(e)
                })
            }
            None => redb::Database::builder()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .map_err(|e| op.internal("memory", e)),
        }
    }
}

pub use mvi_core::error::io_error;

/// How often an in-memory database commits durably: one commit in this many.
const MEMORY_RECLAIM_EVERY: u64 = 256;

/// Commits to an in-memory redb database. Nothing there can be made durable, so a commit is
/// a non-durable one (`Durability::None`, less than half the work of a durable commit on the
/// same backend), except one in [`MEMORY_RECLAIM_EVERY`]: redb reclaims the pages that
/// non-durable commits free only at a durable commit, so without one the process would keep
/// a few dozen bytes for every write, for good.
#[derive(Debug, Default)]
pub struct MemoryCommits {
    commits: std::sync::atomic::AtomicU64,
}

impl MemoryCommits {
    /// Commits `txn`, durably if it is the one in [`MEMORY_RECLAIM_EVERY`].
    pub fn commit(&self, mut txn: redb::WriteTransaction) -> std::result::Result<(), redb::Error> {
        let n = self
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !(n + 1).is_multiple_of(MEMORY_RECLAIM_EVERY) {
            txn.set_durability(redb::Durability::None)?;
        }
        Ok(txn.commit()?)
    }
}

/// Maps any redb error to an Internal mvi error about `resource`.
pub fn db_error(op: Op, resource: &str, e: impl Into<redb::Error>) -> Error {
    let e: redb::Error = e.into();
    op.internal(resource, e)
}

pub use mvi_core::records::{atomic_write, sync_dir};

/// A small control-plane state (VPCs, VMs, an image index) kept as one JSON document: loaded
/// on open, changed only through [`JsonState::mutate`], which validates on a copy and
/// persists it atomically before swapping it in, so a refused change or a failed write leaves
/// the state as it was — in memory and on disk.
#[derive(Debug)]
pub struct JsonState<S> {
    path: Option<PathBuf>,
    state: std::sync::Mutex<S>,
}

impl<S> JsonState<S>
where
    S: Clone + Default + serde::Serialize + serde::de::DeserializeOwned,
{
    /// Loads `file` from the service's folder (empty state if there is none yet), or starts
    /// empty in memory.
    pub fn open(ctx: &Ctx, op: Op, file: &str) -> Result<Self> {
        let path = ctx.dir.as_ref().map(|d| d.join(file));
        let state = match &path {
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| op.internal(path.display().to_string(), e))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => S::default(),
                Err(e) => return Err(io_error(op, path, e)),
            },
            None => S::default(),
        };
        Ok(JsonState {
            path,
            state: std::sync::Mutex::new(state),
        })
    }

    /// The current state, for reading.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, S> {
        // Changes swap in a fully built state (see `mutate`), so a poisoned lock still
        // guards a consistent one.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on a copy of the state; if it succeeds, persists the copy and keeps it.
    pub fn mutate<T>(&self, op: Op, f: impl FnOnce(&mut S) -> Result<T>) -> Result<T> {
        let mut state = self.lock();
        let mut next = state.clone();
        let out = f(&mut next)?;
        if let Some(path) = &self.path {
            let json = serde_json::to_vec_pretty(&next).map_err(|e| op.internal("state", e))?;
            atomic_write(op, path, &json)?;
        }
        *state = next;
        Ok(out)
    }
}

//! The audit trail: one JSON line per key operation in `crypto/audit.jsonl`, or a list in
//! memory.
//!
//! Each event is appended with a single `write` to a file opened in append mode and never
//! fsynced: the kernel has it as soon as the call returns, so it survives the process being
//! killed, while `encrypt` and `decrypt` stay a few microseconds (an fsync per event would
//! cost milliseconds). A power loss can lose the last events; the trail is a record, not the
//! source of truth of any key. Queries read the file; a line torn by a crash mid-write is cut
//! off when the service opens.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mvi_core::crypto::{AuditEvent, AuditQuery};
use mvi_core::{Op, Result};

use crate::storage::io_error;

/// Where events go.
#[derive(Debug)]
pub(super) enum AuditLog {
    /// In-memory mode: the events themselves.
    Memory(Mutex<Vec<AuditEvent>>),
    /// On disk: the append-only file.
    File {
        /// `crypto/audit.jsonl`.
        path: PathBuf,
        /// Opened for appending; the lock keeps lines whole and ordered.
        file: Mutex<File>,
    },
}

impl AuditLog {
    /// An in-memory trail.
    pub(super) fn memory() -> Self {
        AuditLog::Memory(Mutex::new(Vec::new()))
    }

    /// Opens (or creates) the trail at `path`, cutting off a torn last line.
    pub(super) fn open(op: Op, path: &Path) -> Result<Self> {
        let fail = |e| io_error(op, path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(fail)?;
        let len = file.metadata().map_err(fail)?.len();
        if len > 0 {
            // Find the end of the last whole line; a crash can leave a partial one after it,
            // which the next append would otherwise glue onto a valid event.
            let whole = last_newline_end(&mut file, len).map_err(fail)?;
            if whole < len {
                tracing::warn!(
                    path = %path.display(),
                    torn_bytes = len - whole,
                    "cutting off a torn last line of the crypto audit trail"
                );
                file.set_len(whole).map_err(fail)?;
            }
        }
        Ok(AuditLog::File {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Appends `event`.
    pub(super) fn record(&self, op: Op, event: AuditEvent) -> Result<()> {
        match self {
            AuditLog::Memory(events) => {
                lock(events).push(event);
                Ok(())
            }
            AuditLog::File { path, file } => {
                let mut line = serde_json::to_vec(&event).map_err(|e| op.internal("audit", e))?;
                line.push(b'\n');
                // One write of a whole line to an O_APPEND file: lines never interleave.
                lock(file)
                    .write_all(&line)
                    .map_err(|e| io_error(op, path, e))
            }
        }
    }

    /// The events matching `query`, oldest first.
    pub(super) fn query(&self, op: Op, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let keep = |e: &AuditEvent| {
            query.key_id.as_ref().is_none_or(|k| &e.key_id == k)
                && query.since.is_none_or(|t| e.time >= t)
        };
        let limit = query.limit.unwrap_or(usize::MAX);
        let mut out = VecDeque::new();
        let mut push = |e: AuditEvent| {
            if limit == 0 {
                return;
            }
            if out.len() == limit {
                out.pop_front();
            }
            out.push_back(e);
        };
        match self {
            AuditLog::Memory(events) => {
                lock(events)
                    .iter()
                    .filter(|e| keep(e))
                    .cloned()
                    .for_each(push);
            }
            AuditLog::File { path, file } => {
                // Hold the writer's lock so the read sees whole lines only.
                let guard = lock(file);
                let fail = |e| io_error(op, path, e);
                let reader = File::open(path).map_err(fail)?;
                for (n, line) in BufReader::new(reader).lines().enumerate() {
                    let line = line.map_err(fail)?;
                    let event: AuditEvent = serde_json::from_str(&line)
                        .map_err(|e| op.internal(format!("{}:{}", path.display(), n + 1), e))?;
                    if keep(&event) {
                        push(event);
                    }
                }
                drop(guard);
            }
        }
        Ok(out.into())
    }
}

/// The offset just past the last `\n` of a file of `len` bytes (0 if there is none).
fn last_newline_end(file: &mut File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = buf
            .get_mut(..usize::try_from(end - start).unwrap_or(0))
            .unwrap_or_default();
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Locks `m`, carrying on after a panic elsewhere: the guarded data stays valid (a list of
/// whole events, a file handle).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

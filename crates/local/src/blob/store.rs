//! Where object content lives: small pieces inline in redb, the rest in a data store.
//!
//! The data store is one of two places behind the same interface, so the metadata logic in
//! the parent module is written once:
//!
//! - `Dir`: one file per stored piece under `blob/data/`, named by a random 128-bit id. A file
//!   is written and fsynced before the metadata that names it commits, so a crash can leave
//!   only an unreferenced file, which [`Store::remove_orphans`] deletes on the next open.
//! - `Memory`: the chunks as they arrived, shared `Bytes` in a map (nothing is copied).
//!
//! Content is hashed (MD5, for the ETag) while it streams in, and never held whole in memory
//! on disk: only pieces up to [`INLINE_MAX`] bytes are buffered, to go inline into redb.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use mvi_core::{ByteStream, ErrorKind, Op, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::storage::{io_error, sync_dir};

/// Content up to this size is stored inline in the metadata database, so a small put is one
/// durable commit (and no file, no directory fsync).
pub(super) const INLINE_MAX: usize = 64 * 1024;

/// The size of the chunks a read yields from a file.
const READ_CHUNK: usize = 64 * 1024;

/// One contiguous piece of an object's content: a single-part object has one, a multipart
/// object one per part, an empty object none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Segment {
    /// The piece's id: its key in the inline table or its name in the data store.
    pub id: String,
    /// Its length in bytes.
    pub len: u64,
    /// Whether it lives in the inline table (else in the data store).
    pub inline: bool,
}

/// The data store for pieces too large to go inline.
pub(super) enum Store {
    /// Files in this directory.
    Dir(PathBuf),
    /// Chunks in memory, by piece id.
    Memory(Mutex<HashMap<String, Arc<[Bytes]>>>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Dir(dir) => f.debug_tuple("Dir").field(dir).finish(),
            Store::Memory(_) => f.write_str("Memory"),
        }
    }
}

/// A fresh piece id. Random rather than drawn from the seeded `Sim`: a reopened service with
/// the same seed would draw the same ids again and overwrite pieces that are still in use.
/// These ids never reach the caller, so they need not be reproducible.
pub(super) fn new_piece_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Store {
    fn path(dir: &Path, id: &str) -> PathBuf {
        dir.join(id)
    }

    fn memory_items(
        items: &Mutex<HashMap<String, Arc<[Bytes]>>>,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<[Bytes]>>> {
        // A poisoned lock only means another thread panicked while holding it; the map is
        // still a valid map.
        items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes stored pieces that no longer belong to anything. Best effort: a piece that
    /// cannot be deleted now is an orphan the next open removes.
    pub(super) async fn remove(self: &Arc<Self>, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let store = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            for id in &ids {
                store.remove_now(id);
            }
        });
        if let Err(e) = task.await {
            tracing::warn!("blob: freeing replaced data failed: {e}");
        }
    }

    /// Deletes one piece now (blocking, small: one unlink or one map removal).
    pub(super) fn remove_now(&self, id: &str) {
        match self {
            Store::Dir(dir) => {
                let path = Self::path(dir, id);
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!("blob: cannot delete {}: {e}", path.display());
                }
            }
            Store::Memory(items) => {
                Self::memory_items(items).remove(id);
            }
        }
    }

    /// Deletes every file in the data directory that `referenced` does not name: pieces
    /// written before a crash, or freed by a delete that was cut short. Runs once at open,
    /// before any write can be in flight.
    pub(super) fn remove_orphans(&self, op: Op, referenced: &HashSet<String>) -> Result<usize> {
        let Store::Dir(dir) = self else {
            return Ok(0);
        };
        let mut removed = 0;
        let entries = std::fs::read_dir(dir).map_err(|e| io_error(op, dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(op, dir, e))?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| referenced.contains(n)) {
                continue;
            }
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| io_error(op, &path, e))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// The pieces of `seg` covering bytes `from..to` of the segment, ready to stream; `None`
    /// if the piece is gone (replaced by a write that committed after the caller's read).
    pub(super) fn pieces(&self, seg: &Segment, from: u64, to: u64) -> Option<Vec<Piece>> {
        match self {
            Store::Dir(dir) => Some(vec![Piece::File {
                path: Self::path(dir, &seg.id),
                offset: from,
                len: to.saturating_sub(from),
                file: None,
            }]),
            Store::Memory(items) => {
                let chunks = Self::memory_items(items).get(&seg.id).cloned()?;
                Some(slice_chunks(&chunks, from, to))
            }
        }
    }
}

/// The parts of `chunks` (one logical byte string) covering `from..to`.
fn slice_chunks(chunks: &[Bytes], from: u64, to: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut at = 0u64;
    for chunk in chunks {
        let len = chunk.len() as u64;
        let (start, end) = (from.max(at), to.min(at + len));
        if start < end {
            // In range by construction: at <= start < end <= at + len.
            let (s, e) = ((start - at) as usize, (end - at) as usize);
            out.push(Piece::Bytes(chunk.slice(s..e)));
        }
        at += len;
        if at >= to {
            break;
        }
    }
    out
}

/// Removes a written piece when dropped, unless [`Pending::keep`] was called: a put that
/// fails (precondition, error, or a caller that gives up mid-stream) leaves nothing behind.
pub(super) struct Pending {
    store: Arc<Store>,
    id: Option<String>,
}

impl Pending {
    /// The metadata naming the piece committed: it stays.
    pub(super) fn keep(mut self) {
        self.id = None;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.store.remove_now(&id);
        }
    }
}

/// A body, stored: its segment (none if empty), the bytes to put inline, its MD5.
pub(super) struct Written {
    /// Where the content is.
    pub segment: Option<Segment>,
    /// The content, when it goes inline into the metadata database.
    pub inline: Option<Bytes>,
    /// MD5 of the content.
    pub md5: [u8; 16],
    /// The stored piece, removed unless kept after the metadata commits.
    pub pending: Option<Pending>,
}

impl Written {
    /// The size of the content.
    pub(super) fn size(&self) -> u64 {
        self.segment.as_ref().map_or(0, |s| s.len)
    }
}

enum SinkState {
    /// Not yet larger than [`INLINE_MAX`]: held, to go inline.
    Small(Vec<Bytes>),
    /// Spilled to a file in the data directory.
    File {
        file: tokio::fs::File,
        path: PathBuf,
        id: String,
        pending: Pending,
    },
    /// Spilled to the memory store (chunks kept as they came).
    Memory(Vec<Bytes>),
}

/// Receives a body chunk by chunk, hashing it and spilling it to the store once it outgrows
/// [`INLINE_MAX`].
pub(super) struct Sink {
    store: Arc<Store>,
    op: Op,
    resource: String,
    limit: u64,
    md5: Md5,
    size: u64,
    state: SinkState,
}

impl Sink {
    /// A sink for `resource` (named in errors) accepting at most `limit` bytes.
    pub(super) fn new(store: Arc<Store>, op: Op, resource: String, limit: u64) -> Self {
        Sink {
            store,
            op,
            resource,
            limit,
            md5: Md5::new(),
            size: 0,
            state: SinkState::Small(Vec::new()),
        }
    }

    /// Reads the whole of `stream` into the sink and stores it.
    pub(super) async fn drain(mut self, mut stream: ByteStream) -> Result<Written> {
        use futures::StreamExt;
        while let Some(chunk) = stream.next().await {
            self.push(chunk?).await?;
        }
        self.finish().await
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> mvi_core::Error {
        let (op, path) = (self.op, path.to_path_buf());
        move |e| io_error(op, &path, e)
    }

    async fn push(&mut self, chunk: Bytes) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(self.op.invalid(
                &self.resource,
                format!(
                    "the body is larger than {} bytes, the most one request may carry",
                    self.limit
                ),
            ));
        }
        self.md5.update(&chunk);
        match &mut self.state {
            SinkState::Small(held) => {
                if self.size <= INLINE_MAX as u64 {
                    held.push(chunk);
                    return Ok(());
                }
                let mut held = std::mem::take(held);
                held.push(chunk);
                self.spill(held).await
            }
            SinkState::File { file, path, .. } => {
                let path = path.clone();
                file.write_all(&chunk).await.map_err(self.io(&path))
            }
            SinkState::Memory(chunks) => {
                chunks.push(chunk);
                Ok(())
            }
        }
    }

    /// Moves the held chunks to the data store, which takes every further chunk.
    async fn spill(&mut self, held: Vec<Bytes>) -> Result<()> {
        match &*self.store {
            Store::Memory(_) => {
                self.state = SinkState::Memory(held);
                Ok(())
            }
            Store::Dir(dir) => {
                let id = new_piece_id();
                let path = Store::path(dir, &id);
                let mut file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .await
                    .map_err(self.io(&path))?;
                // From here on the file is removed if anything fails.
                let pending = Pending {
                    store: self.store.clone(),
                    id: Some(id.clone()),
                };
                for chunk in &held {
                    file.write_all(chunk).await.map_err(self.io(&path))?;
                }
                self.state = SinkState::File {
                    file,
                    path,
                    id,
                    pending,
                };
                Ok(())
            }
        }
    }

    /// Makes the content durable (on disk: fsync of the file and of its directory) and says
    /// where it is.
    async fn finish(self) -> Result<Written> {
        let md5: [u8; 16] = self.md5.clone().finalize().into();
        let len = self.size;
        let (segment, inline, pending) = match self.state {
            SinkState::Small(held) if len == 0 || held.is_empty() => (None, None, None),
            SinkState::Small(held) => {
                let bytes = match <[Bytes; 1]>::try_from(held) {
                    Ok([one]) => one,
                    Err(held) => {
                        let mut buf = BytesMut::with_capacity(len as usize);
                        for chunk in held {
                            buf.extend_from_slice(&chunk);
                        }
                        buf.freeze()
                    }
                };
                let seg = Segment {
                    id: new_piece_id(),
                    len,
                    inline: true,
                };
                (Some(seg), Some(bytes), None)
            }
            SinkState::Memory(chunks) => {
                let id = new_piece_id();
                if let Store::Memory(items) = &*self.store {
                    Store::memory_items(items).insert(id.clone(), chunks.into());
                }
                let pending = Pending {
                    store: self.store.clone(),
                    id: Some(id.clone()),
                };
                let seg = Segment {
                    id,
                    len,
                    inline: false,
                };
                (Some(seg), None, Some(pending))
            }
            SinkState::File {
                mut file,
                path,
                id,
                pending,
            } => {
                let fail = |e| io_error(self.op, &path, e);
                file.flush().await.map_err(fail)?;
                file.sync_all().await.map_err(fail)?;
                drop(file);
                // The new name must be durable before the metadata that refers to it is.
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                tokio::task::spawn_blocking(move || sync_dir(&dir))
                    .await
                    .map_err(|e| self.op.internal(&self.resource, e))?
                    .map_err(fail)?;
                let seg = Segment {
                    id,
                    len,
                    inline: false,
                };
                (Some(seg), None, Some(pending))
            }
        };
        Ok(Written {
            segment,
            inline,
            md5,
            pending,
        })
    }
}

/// One contiguous run of bytes of a read.
pub(super) enum Piece {
    /// Bytes in memory (inline content, or a slice of a memory-store chunk).
    Bytes(Bytes),
    /// `len` bytes of a file from `offset`, opened on first read.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        file: Option<tokio::fs::File>,
    },
}

impl Piece {
    /// Opens the file of a file piece now, so that a piece deleted by a concurrent overwrite
    /// is noticed before the read starts (the caller then reads the metadata again). `Ok(false)`
    /// if the file is gone.
    pub(super) async fn open(&mut self, op: Op) -> Result<bool> {
        if let Piece::File {
            path, offset, file, ..
        } = self
            && file.is_none()
        {
            match open_at(path, *offset).await {
                Ok(f) => *file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(io_error(op, path, e)),
            }
        }
        Ok(true)
    }
}

async fn open_at(path: &Path, offset: u64) -> std::io::Result<tokio::fs::File> {
    let mut f = tokio::fs::File::open(path).await?;
    if offset > 0 {
        f.seek(std::io::SeekFrom::Start(offset)).await?;
    }
    Ok(f)
}

/// The content of a read, as a stream of chunks of at most [`READ_CHUNK`] bytes from files
/// (memory pieces are yielded as they are).
pub(super) fn stream(op: Op, resource: String, pieces: Vec<Piece>) -> ByteStream {
    let state = Reader {
        op,
        resource,
        pieces: pieces.into(),
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        match st.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), st)),
            Ok(None) => None,
            Err(e) => {
                // End the stream after the error.
                st.pieces.clear();
                Some((Err(e), st))
            }
        }
    }))
}

struct Reader {
    op: Op,
    resource: String,
    pieces: VecDeque<Piece>,
}

impl Reader {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            let Some(front) = self.pieces.front_mut() else {
                return Ok(None);
            };
            match front {
                Piece::Bytes(b) => {
                    let b = std::mem::take(b);
                    self.pieces.pop_front();
                    if !b.is_empty() {
                        return Ok(Some(b));
                    }
                }
                Piece::File { len: 0, .. } => {
                    self.pieces.pop_front();
                }
                Piece::File {
                    path,
                    offset,
                    len,
                    file,
                } => {
                    let op = self.op;
                    if file.is_none() {
                        match open_at(path, *offset).await {
                            Ok(f) => *file = Some(f),
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                                return Err(op.err(
                                    ErrorKind::Unavailable,
                                    &self.resource,
                                    "the object was replaced while it was being read; read it again",
                                ));
                            }
                            Err(e) => return Err(io_error(op, path, e)),
                        }
                    }
                    let Some(f) = file.as_mut() else {
                        continue;
                    };
                    let want = (*len).min(READ_CHUNK as u64) as usize;
                    let mut buf = vec![0u8; want];
                    let got = f.read(&mut buf).await.map_err(|e| io_error(op, path, e))?;
                    if got == 0 {
                        return Err(op.internal(
                            &self.resource,
                            format!(
                                "data file {} is shorter than its metadata says",
                                path.display()
                            ),
                        ));
                    }
                    buf.truncate(got);
                    *len -= got as u64;
                    *offset += got as u64;
                    return Ok(Some(Bytes::from(buf)));
                }
            }
        }
    }
}

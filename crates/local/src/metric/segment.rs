//! The points log: every accepted `put_data` batch, appended to `points.log` as one record.
//!
//! A record is a 4-byte little-endian body length followed by the postcard body
//! ([`BatchRecord`]), written with a single `write` so a batch is either wholly in the file or
//! (after a crash in the middle of the write) a torn tail. Replay on open reads the records in
//! order; the first one that is cut short or does not decode ends the log and the file is
//! truncated there, so later appends start on a clean record boundary. A write that fails part
//! way is undone the same way at once (the file is cut back to its previous length), so a torn
//! record can only ever be the last one.
//!
//! The file is locked (`flock`) while open: a second open of the same state root, in this or
//! another process, gets `Unavailable` instead of interleaving its appends with ours.

use std::borrow::Cow;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use mvi_core::metric::{Dimensions, Unit};
use mvi_core::{ErrorKind, Op, Result};
use serde::{Deserialize, Serialize};

use crate::storage::io_error;

/// Bodies larger than this are not records but damage: the largest valid batch (1,000 points,
/// each with 30 dimensions of the longest names and values) is about 40 MiB.
const MAX_RECORD: u32 = 64 << 20;

/// One data point of a series, as kept in memory and in the log.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct Point {
    /// Microseconds since the Unix epoch.
    pub micros: i64,
    /// The value (finite: checked before it is accepted).
    pub value: f64,
    /// The unit it was reported with.
    pub unit: Unit,
}

/// The log record of one `put_data` batch: its points grouped by series. Borrowed when
/// written (no copies of the batch), owned when replayed.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct BatchRecord<'a> {
    /// The namespace of every point of the batch.
    pub namespace: Cow<'a, str>,
    /// The points, by series.
    pub series: Vec<SeriesRecord<'a>>,
}

/// The points of one series within a [`BatchRecord`].
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SeriesRecord<'a> {
    /// Metric name.
    pub name: Cow<'a, str>,
    /// Dimensions.
    pub dimensions: Cow<'a, Dimensions>,
    /// The points, sorted by time.
    pub points: Cow<'a, [Point]>,
}

/// The open, locked points log.
#[derive(Debug)]
pub(super) struct PointLog {
    path: PathBuf,
    file: File,
    /// Length of the file up to the end of the last complete record.
    len: u64,
    /// Set when a failed write could not be undone: appending after a torn record would hide
    /// the later records from replay, so the log refuses writes until it is reopened.
    broken: bool,
    /// The encoding buffer, kept between batches to avoid an allocation per call.
    buf: Vec<u8>,
}

impl PointLog {
    /// Opens (or creates) and locks the log at `path`, passing every complete record to
    /// `apply` in order, and cuts off a torn or damaged tail.
    pub fn open(op: Op, path: &Path, mut apply: impl FnMut(BatchRecord<'static>)) -> Result<Self> {
        let fail = |e| io_error(op, path, e);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(fail)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(op.err(
                    ErrorKind::Unavailable,
                    path.display().to_string(),
                    "the state root is already open in this or another process",
                ));
            }
            Err(TryLockError::Error(e)) => return Err(fail(e)),
        }
        let file_len = file.metadata().map_err(fail)?.len();

        let mut reader = BufReader::with_capacity(1 << 20, &file);
        let mut good: u64 = 0;
        let mut body = Vec::new();
        let damage = loop {
            if good == file_len {
                break None;
            }
            let mut head = [0u8; 4];
            if let Err(e) = reader.read_exact(&mut head) {
                break Some(eof_or(e, "a record's length is cut short").map_err(fail)?);
            }
            let body_len = u32::from_le_bytes(head);
            let end = good + 4 + u64::from(body_len);
            if body_len == 0 || body_len > MAX_RECORD || end > file_len {
                break Some("a record's length runs past the end of the file");
            }
            body.resize(body_len as usize, 0);
            if let Err(e) = reader.read_exact(&mut body) {
                break Some(eof_or(e, "a record is cut short").map_err(fail)?);
            }
            match postcard::from_bytes::<BatchRecord<'static>>(&body) {
                Ok(record) => apply(record),
                Err(_) => break Some("a record does not decode"),
            }
            good = end;
        };
        drop(reader);

        if let Some(why) = damage {
            // Only the tail can be torn (see the module doc): what follows the last complete
            // record was never acknowledged to a caller.
            tracing::warn!(
                path = %path.display(),
                kept = good,
                dropped = file_len - good,
                "metric points log: {why}; truncating the torn tail"
            );
            file.set_len(good).map_err(fail)?;
            file.sync_all().map_err(fail)?;
        }

        Ok(PointLog {
            path: path.to_path_buf(),
            file,
            len: good,
            broken: false,
            buf: Vec::new(),
        })
    }

    /// Appends `record` with one write. On error the file is cut back to where it was, so the
    /// batch is not in the log and the caller may retry.
    pub fn append(&mut self, op: Op, record: &BatchRecord<'_>) -> Result<()> {
        if self.broken {
            return Err(op.err(
                ErrorKind::Unavailable,
                self.resource(),
                "an earlier write failed and could not be undone; reopen the service",
            ));
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.extend_from_slice(&[0; 4]);
        let mut buf =
            postcard::to_extend(record, buf).map_err(|e| op.internal(self.resource(), e))?;
        let body_len = u32::try_from(buf.len().saturating_sub(4))
            .ok()
            .filter(|len| *len <= MAX_RECORD)
            .ok_or_else(|| op.invalid(record.namespace.as_ref(), "the batch is too large"))?;
        if let Some(head) = buf.get_mut(..4) {
            head.copy_from_slice(&body_len.to_le_bytes());
        }
        let written = self.file.write_all(&buf);
        let total = buf.len() as u64;
        self.buf = buf;
        match written {
            Ok(()) => {
                self.len += total;
                Ok(())
            }
            Err(e) => {
                if self.file.set_len(self.len).is_err() {
                    self.broken = true;
                }
                Err(io_error(op, &self.path, e))
            }
        }
    }

    fn resource(&self) -> String {
        self.path.display().to_string()
    }
}

/// A short read at the end of the file is a torn record (`Ok(why)`); any other read error is
/// a real error and must not be mistaken for damage to cut off.
fn eof_or(e: std::io::Error, why: &'static str) -> std::io::Result<&'static str> {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Ok(why)
    } else {
        Err(e)
    }
}

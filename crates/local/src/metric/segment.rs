//! The points log: every accepted `put_data` batch, appended to `points.log` as one record of a
//! [`RecordFile`]:
//!
//! ```text
//! [payload length: u32 LE][first 8 bytes of SHA-256(payload)][payload: postcard BatchRecord]
//! ```
//!
//! written with a single `write`, so a batch is either wholly in the file or (after a crash in
//! the middle of the write) a torn tail. Replay on open reads the records in order; the first
//! one that is cut short, fails its checksum or does not decode ends the log and the file is
//! truncated there, so later appends start on a clean record boundary. A write that fails part
//! way is undone the same way at once (the file is cut back to its previous length), so a torn
//! record can only ever be the last one.
//!
//! The file is locked (`flock`) while open: a second open of the same state root, in this or
//! another process, gets `Unavailable` instead of interleaving its appends with ours.

use std::borrow::Cow;
use std::path::Path;

use mvi_core::metric::{Dimensions, Unit};
use mvi_core::{Op, Result};
use serde::{Deserialize, Serialize};

use crate::storage::records::{self, RecordFile, Replay};

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
    file: RecordFile,
    /// The encoding buffer, kept between batches to avoid an allocation per call.
    buf: Vec<u8>,
}

impl PointLog {
    /// Opens (or creates) and locks the log at `path`, passing every complete record to
    /// `apply` in order, and cuts off a torn or damaged tail.
    pub fn open(op: Op, path: &Path, mut apply: impl FnMut(BatchRecord<'static>)) -> Result<Self> {
        let file = RecordFile::open(op, path, true, |payload| {
            match postcard::from_bytes::<BatchRecord<'static>>(payload) {
                Ok(record) => {
                    apply(record);
                    Ok(Replay::Applied)
                }
                Err(_) => Ok(Replay::Undecodable),
            }
        })?;
        Ok(PointLog {
            file,
            buf: Vec::new(),
        })
    }

    /// Appends `record` with one write. On error the file is cut back to where it was, so the
    /// batch is not in the log and the caller may retry.
    pub fn append(&mut self, op: Op, record: &BatchRecord<'_>) -> Result<()> {
        self.buf.clear();
        let resource = record.namespace.as_ref();
        records::frame_with(op, resource, &mut self.buf, |buf| {
            postcard::to_io(record, buf)
                .map(drop)
                .map_err(|e| op.internal(resource, e))
        })?;
        self.file.append_framed(op, &self.buf)
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a record's payload holds (random, or a real metric batch cut and flipped), it
        /// decodes or is refused, on a 256 KiB stack: never a panic.
        #[test]
        fn metric_batches_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..256), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()) {
            let real = postcard::to_allocvec(&BatchRecord { namespace: "App/Web".into(), series: Vec::new() }).unwrap_or_default();
            let ok = crate::fuzz::postcard_decodes_or_refuses::<BatchRecord<'static>>(bytes, real, cut, flip);
            prop_assert!(ok, "the decoder panicked");
        }
    }
}

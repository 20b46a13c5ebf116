//! The segment files of one log stream.
//!
//! A stream's events live in append-only files named after the sequence number of their
//! first event (`00000000000000000000.log`, ...), rotated at [`SEGMENT_BYTES`]. A segment is a
//! [`RecordFile`]: each `put_events` batch is one checksummed record, written with one `write`
//! call:
//!
//! ```text
//! [payload length: u32 LE][first 8 bytes of SHA-256(payload)][payload: postcard Batch]
//! ```
//!
//! A batch is therefore all-or-nothing after a crash. The checksum tells a torn or damaged
//! tail (a crash mid-write) from data, and replay ends at a zeroed header (a power loss);
//! [`StreamFiles::open`] cuts the file at the first bad record instead of failing. Sequence
//! numbers are not stored: an event's number is its position counted from the segment's
//! first, so the files stay lean.
//!
//! Retention deletes whole segments once their newest event has expired; events of a
//! partly expired segment are hidden by the reader until the whole file can go. Only the
//! newest segment of a stream appended to since it was opened is kept open (reopening it
//! reads it once more, to find where its records end).

use std::path::{Path, PathBuf};

use mvi_core::log::LogEvent;
use mvi_core::{Op, Result};
use serde::{Deserialize, Serialize};

use crate::storage::io_error;
use crate::storage::records::{self, RecordFile, Replay};

/// A segment is closed and a new one started once it reaches this size.
pub(super) const SEGMENT_BYTES: u64 = 8 << 20;

/// One batch as written.
#[derive(Serialize)]
struct BatchRef<'a> {
    ingested: i64,
    events: Vec<(i64, &'a str)>,
}

/// One batch as read back.
#[derive(Deserialize)]
struct BatchOwned {
    ingested: i64,
    events: Vec<(i64, String)>,
}

/// An event read from disk, with its sequence number in the stream.
#[derive(Debug)]
pub(super) struct LoadedEvent {
    pub seq: u64,
    pub timestamp: i64,
    pub ingested: i64,
    pub message: String,
}

/// Encodes a batch (timestamps in milliseconds, already checked) as one framed record.
pub(super) fn encode(
    op: Op,
    resource: &str,
    ingested: i64,
    timestamps: &[i64],
    events: &[LogEvent],
) -> Result<Vec<u8>> {
    let batch = BatchRef {
        ingested,
        events: timestamps
            .iter()
            .zip(events)
            .map(|(ts, e)| (*ts, e.message.as_str()))
            .collect(),
    };
    let size: usize = events.iter().map(|e| e.message.len() + 16).sum();
    let mut buf = Vec::with_capacity(records::HEADER + size + 16);
    records::frame_with(op, resource, &mut buf, |buf| {
        postcard::to_io(&batch, buf)
            .map(drop)
            .map_err(|e| op.internal(resource, e))
    })?;
    Ok(buf)
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Bytes of whole records.
    size: u64,
    /// The sequence number after its last event: appends continue a segment only from here,
    /// since numbers are counted from the file's name.
    end_seq: u64,
    /// The newest event's timestamp, `None` while the segment is empty.
    max_ts: Option<i64>,
}

/// The segment files of one stream, and the open handle of the newest.
#[derive(Debug)]
pub(super) struct StreamFiles {
    dir: PathBuf,
    segments: Vec<Segment>,
    /// `segments.last()`, open for appending; opened lazily.
    active: Option<RecordFile>,
}

impl StreamFiles {
    /// A new, empty stream directory.
    pub(super) fn create(op: Op, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(op, dir, e))?;
        Ok(StreamFiles {
            dir: dir.to_path_buf(),
            segments: Vec::new(),
            active: None,
        })
    }

    /// Opens a stream directory, handing every stored event to `each` in file order, and
    /// returns the files and the next free sequence number. A torn or corrupt record ends its
    /// segment: the file is truncated there.
    pub(super) fn open(
        op: Op,
        dir: &Path,
        mut each: impl FnMut(LoadedEvent),
    ) -> Result<(Self, u64)> {
        let mut names = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            // Recorded in the metadata but never written to (or lost): an empty stream.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Self::create(op, dir)?, 0));
            }
            Err(e) => return Err(io_error(op, dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_error(op, dir, e))?;
            let name = entry.file_name();
            let Some(first_seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            names.push((first_seq, entry.path()));
        }
        names.sort();

        let mut segments = Vec::with_capacity(names.len());
        let mut next_seq = 0;
        for (first_seq, path) in names {
            let mut seq = first_seq;
            let mut max_ts = None;
            // Closed again at once, so that only streams appended to hold a file open.
            let file = RecordFile::open(op, &path, false, |payload| {
                let Ok(batch) = postcard::from_bytes::<BatchOwned>(payload) else {
                    return Ok(Replay::Undecodable);
                };
                for (timestamp, message) in batch.events {
                    max_ts = Some(max_ts.map_or(timestamp, |m: i64| m.max(timestamp)));
                    each(LoadedEvent {
                        seq,
                        timestamp,
                        ingested: batch.ingested,
                        message,
                    });
                    seq += 1;
                }
                Ok(Replay::Applied)
            })?;
            next_seq = next_seq.max(seq);
            segments.push(Segment {
                path,
                size: file.len(),
                end_seq: seq,
                max_ts,
            });
        }
        Ok((
            StreamFiles {
                dir: dir.to_path_buf(),
                segments,
                active: None,
            },
            next_seq,
        ))
    }

    /// Appends one framed record (from [`encode`]) holding `events` events numbered from
    /// `first_seq`, whose newest timestamp is `max_ts`. One `write` to the OS, no fsync. On
    /// failure the segment is cut back to its previous length so later records never follow
    /// a partial one.
    pub(super) fn append(
        &mut self,
        op: Op,
        first_seq: u64,
        events: u64,
        record: &[u8],
        max_ts: i64,
    ) -> Result<()> {
        let rotate = self
            .segments
            .last()
            .is_none_or(|s| s.size >= SEGMENT_BYTES || s.end_seq != first_seq);
        if rotate {
            self.active = None;
            let path = self.dir.join(format!("{first_seq:020}.log"));
            let file = RecordFile::open(op, &path, false, |_| Ok(Replay::Applied))?;
            self.segments.push(Segment {
                path,
                size: file.len(),
                end_seq: first_seq,
                max_ts: None,
            });
            self.active = Some(file);
        }
        let Some(segment) = self.segments.last_mut() else {
            return Err(op.internal(self.dir.display().to_string(), "no segment to append to"));
        };
        let file = match &mut self.active {
            Some(file) => file,
            // Its records were replayed when the stream was opened; this only finds the end.
            None => self
                .active
                .insert(RecordFile::open(op, &segment.path, false, |_| {
                    Ok(Replay::Applied)
                })?),
        };
        file.append_framed(op, record)?;
        segment.size = file.len();
        segment.end_seq = first_seq + events;
        segment.max_ts = Some(segment.max_ts.map_or(max_ts, |m| m.max(max_ts)));
        Ok(())
    }

    /// Deletes every segment whose newest event is older than `cutoff`. A file that cannot
    /// be deleted now is kept (its events stay hidden) and tried again next time.
    pub(super) fn expire(&mut self, cutoff: i64) {
        if !self
            .segments
            .iter()
            .any(|s| s.max_ts.is_some_and(|t| t < cutoff))
        {
            return;
        }
        // If the active segment goes, the next append starts a new one.
        if self
            .segments
            .last()
            .is_some_and(|s| s.max_ts.is_some_and(|t| t < cutoff))
        {
            self.active = None;
        }
        self.segments.retain(|segment| {
            if segment.max_ts.is_none_or(|t| t >= cutoff) {
                return true;
            }
            match std::fs::remove_file(&segment.path) {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(path = %segment.path.display(), error = %e,
                        "cannot delete an expired log segment; will retry");
                    true
                }
            }
        });
    }

    /// How many segment files the stream has (for tests of reclamation).
    #[cfg(test)]
    pub(super) fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvi_core::Service;

    const OP: Op = Op::new(Service::Log, "test");

    fn events(n: usize) -> (Vec<i64>, Vec<LogEvent>) {
        let ts: Vec<i64> = (0..n as i64).collect();
        let ev = ts
            .iter()
            .map(|t| LogEvent::new(chrono::DateTime::default(), format!("event {t}")))
            .collect();
        (ts, ev)
    }

    fn load(dir: &Path) -> (Vec<LoadedEvent>, u64) {
        let mut got = Vec::new();
        let (_, next) =
            StreamFiles::open(OP, dir, |e| got.push(e)).unwrap_or_else(|e| panic!("{e}"));
        (got, next)
    }

    #[test]
    fn torn_tail_is_truncated_and_earlier_batches_survive() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().join("s");
        let mut files = StreamFiles::create(OP, &dir).unwrap_or_else(|e| panic!("{e}"));
        let (ts, ev) = events(3);
        let rec = encode(OP, "g/s", 5, &ts, &ev).unwrap_or_else(|e| panic!("{e}"));
        files
            .append(OP, 0, 3, &rec, 2)
            .unwrap_or_else(|e| panic!("{e}"));
        files
            .append(OP, 3, 3, &rec, 2)
            .unwrap_or_else(|e| panic!("{e}"));
        drop(files);
        let path = dir.join(format!("{:020}.log", 0));
        let full = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        // Tear the second record in every possible place: the first always survives.
        for cut in rec.len()..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap_or_else(|e| panic!("{e}"));
            let (got, next) = load(&dir);
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert_eq!(next, 3);
            assert_eq!(got[2].message, "event 2");
            let len = std::fs::metadata(&path)
                .map(|m| m.len())
                .unwrap_or_default();
            assert_eq!(len, rec.len() as u64, "truncated to the good prefix");
        }
        // A flipped byte in the payload is caught by the checksum.
        let mut bad = full.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        // Zeros after a power loss are not records either.
        let mut zeros = full[..rec.len()].to_vec();
        zeros.extend_from_slice(&[0u8; 64]);
        for damaged in [bad, zeros] {
            std::fs::write(&path, &damaged).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(load(&dir).0.len(), 3);
            // Appends after a cut continue the same segment on a clean boundary.
            let (mut files, next) =
                StreamFiles::open(OP, &dir, |_| {}).unwrap_or_else(|e| panic!("{e}"));
            files
                .append(OP, next, 3, &rec, 2)
                .unwrap_or_else(|e| panic!("{e}"));
            drop(files);
            let (got, next) = load(&dir);
            assert_eq!((got.len(), next), (6, 6));
            assert_eq!(got[5].message, "event 2");
            assert_eq!(files_in(&dir), 1);
        }
    }

    fn files_in(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|d| d.count())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn segments_rotate_and_expire_whole() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().join("s");
        let mut files = StreamFiles::create(OP, &dir).unwrap_or_else(|e| panic!("{e}"));
        let big = "x".repeat(200_000);
        for t in 0..100i64 {
            let seq = t as u64;
            let ev = vec![LogEvent::new(chrono::DateTime::default(), big.clone())];
            let rec = encode(OP, "g/s", 0, &[t], &ev).unwrap_or_else(|e| panic!("{e}"));
            files
                .append(OP, seq, 1, &rec, t)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let before = files.segment_count();
        assert!(before >= 2, "{before} segments");
        files.expire(50);
        let after = files.segment_count();
        assert!(after < before && after >= 1, "{before} -> {after}");
        let (got, next) = load(&dir);
        assert_eq!(next, 100);
        assert!(got.iter().all(|e| e.timestamp as u64 == e.seq));
        assert!(got.first().is_some_and(|e| e.timestamp <= 50));
        files.expire(1_000);
        assert_eq!(files.segment_count(), 0);
        let ev = vec![LogEvent::new(chrono::DateTime::default(), "after")];
        let rec = encode(OP, "g/s", 0, &[2_000], &ev).unwrap_or_else(|e| panic!("{e}"));
        files
            .append(OP, 100, 1, &rec, 2_000)
            .unwrap_or_else(|e| panic!("{e}"));
        let (got, next) = load(&dir);
        assert_eq!((got.len(), next), (1, 101));
    }

    #[test]
    fn a_missing_stream_directory_opens_empty() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().join("gone");
        let (got, next) = load(&dir);
        assert!(got.is_empty() && next == 0);
        assert!(dir.is_dir());
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a record's payload holds (random, or a real log batch cut and flipped), it
        /// decodes or is refused, on a 256 KiB stack: never a panic.
        #[test]
        fn log_batches_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..256), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()) {
            let real = postcard::to_allocvec(&BatchRef { ingested: 1, events: vec![(2, "an event"), (3, "é")] }).unwrap_or_default();
            let ok = crate::fuzz::postcard_decodes_or_refuses::<BatchOwned>(bytes, real, cut, flip);
            prop_assert!(ok, "the decoder panicked");
        }
    }
}

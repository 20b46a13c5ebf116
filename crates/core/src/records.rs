//! An append-only file of checksummed records: the write-ahead and event logs of the local
//! services are built on it.
//!
//! On disk a file is nothing but records, back to back (then, if preallocated, zeros), each
//!
//! ```text
//! [payload length: u32 LE][checksum: first 8 bytes of SHA-256(payload)][payload]
//! ```
//!
//! written with one `write` call, so after a crash (even a kill -9 in the middle of a write)
//! the file holds whole records followed at most by one torn record. [`RecordFile::open`]
//! replays the whole records in order and cuts the file back to the end of the last one: a
//! torn tail was never acknowledged, and later appends start on a clean boundary. The
//! checksum tells a flipped byte from data. A record whose checksum holds but whose payload
//! the caller cannot decode ([`Replay::Undecodable`]) is cut off the same way. But damage
//! is only taken for a torn tail when no valid record follows it: a damaged record with
//! whole records after it is corruption, refused (`Internal`, naming the file and the
//! offset) with the file left byte for byte as it was. [`RecordFile::read`] replays without
//! ever changing the file, for readers that do not hold the writer's lock. An append that fails part way is undone at once; if even that
//! fails, the file refuses further appends until reopened, so a torn record can only ever be
//! the last one.
//!
//! An append reaches the operating system before it returns (it survives the process being
//! killed); [`RecordFile::sync`] makes it survive a power loss too.
//!
//! A file may be preallocated ([`RecordFile::preallocate`]): zeros written ahead of the
//! records, so that syncing an append flushes only data, not a new file size (on ext4 that
//! halves the cost of an fdatasync). Replay ends quietly at a zeroed header.
//!
//! Several records can be framed into one buffer ([`frame`], [`frame_with`]) and appended
//! with one write ([`RecordFile::append_framed`]), for instance encoded outside a lock.

use std::fmt::Display;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{ErrorKind, Op, Result, io_error};
use sha2::{Digest, Sha256};

/// Bytes of the record header: length and checksum.
pub const HEADER: usize = 12;
/// Payloads larger than this are damage, not records.
pub const MAX_PAYLOAD: usize = 256 << 20;

/// An open record file.
#[derive(Debug)]
pub struct RecordFile {
    path: PathBuf,
    file: File,
    /// The end of the last whole record, where the next one is written.
    len: u64,
    /// The file's length: `len` plus any preallocated zeros.
    allocated: u64,
    /// Set when a failed append could not be undone.
    broken: bool,
}

/// What [`RecordFile::open`]'s callback made of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// The record was taken: replay goes on with the next.
    Applied,
    /// The payload does not decode: the record and everything after it are cut off, as a
    /// torn tail is.
    Undecodable,
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// Frames `payload` as one record, appended to `buf`. A payload over [`MAX_PAYLOAD`] is
/// `InvalidArgument` about `resource`, and `buf` is left as it was.
pub fn frame(op: Op, resource: impl Display, buf: &mut Vec<u8>, payload: &[u8]) -> Result<()> {
    frame_with(op, resource, buf, |buf| {
        buf.extend_from_slice(payload);
        Ok(())
    })
}

/// Frames one record whose payload `write` appends to `buf` (serialised in place, without a
/// copy). If `write` fails, or the payload is over [`MAX_PAYLOAD`] (`InvalidArgument` about
/// `resource`), `buf` is left as it was.
pub fn frame_with(
    op: Op,
    resource: impl Display,
    buf: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER]);
    if let Err(e) = write(buf) {
        buf.truncate(start);
        return Err(e);
    }
    let body = start + HEADER;
    let len = buf.len() - body;
    let Some(len) = u32::try_from(len).ok().filter(|_| len <= MAX_PAYLOAD) else {
        buf.truncate(start);
        return Err(op.invalid(
            resource.to_string(),
            format!("a record of {len} bytes is too large to store (at most {MAX_PAYLOAD})"),
        ));
    };
    let sum = checksum(&buf[body..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..body].copy_from_slice(&sum);
    Ok(())
}

impl RecordFile {
    /// Opens (or creates) the file at `path`, calls `each` with every whole record in order,
    /// and cuts off a torn or damaged tail (and an [`Replay::Undecodable`] record with what
    /// follows it). An error from `each` ends the open with that error, cutting nothing. With
    /// `exclusive`, the file is locked for as long as it is open: a second open, in this or
    /// another process, is `Unavailable`.
    pub fn open(
        op: Op,
        path: &Path,
        exclusive: bool,
        each: impl FnMut(&[u8]) -> Result<Replay>,
    ) -> Result<Self> {
        let fail = |e| io_error(op, path, e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(fail)?;
        if exclusive {
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
        }
        let file_len = file.metadata().map_err(fail)?.len();
        let (good, damage) = replay(op, path, &file, file_len, each)?;
        let mut allocated = file_len;
        if let Some(why) = damage {
            tracing::warn!(
                path = %path.display(),
                kept = good,
                dropped = file_len - good,
                "{why}; cutting the torn tail off"
            );
            file.set_len(good).map_err(fail)?;
            file.sync_all().map_err(fail)?;
            allocated = good;
        }
        Ok(RecordFile {
            path: path.to_path_buf(),
            file,
            len: good,
            allocated,
            broken: false,
        })
    }

    /// Calls `each` with every whole record of the file at `path`, in order, without ever
    /// changing the file: for readers that do not hold the writer's lock. A torn tail is
    /// left where it is (the writer cuts it); damage followed by valid records is refused as
    /// [`RecordFile::open`] refuses it. A missing file has no records. Returns the length of
    /// the whole records.
    pub fn read(op: Op, path: &Path, each: impl FnMut(&[u8]) -> Result<Replay>) -> Result<u64> {
        let fail = |e| io_error(op, path, e);
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(fail(e)),
        };
        let file_len = file.metadata().map_err(fail)?.len();
        Ok(replay(op, path, &file, file_len, each)?.0)
    }

    /// Appends already framed records (see [`frame`]) with one write.
    pub fn append_framed(&mut self, op: Op, framed: &[u8]) -> Result<()> {
        if self.broken {
            return Err(op.err(
                ErrorKind::Unavailable,
                self.path.display().to_string(),
                "an earlier write failed and could not be undone; reopen the service",
            ));
        }
        match self.file.write_all_at(framed, self.len) {
            Ok(()) => {
                self.len += framed.len() as u64;
                self.allocated = self.allocated.max(self.len);
                Ok(())
            }
            Err(e) => {
                // Cut back to the last whole record (dropping any preallocation), so a torn
                // record never stands before a later one.
                if self.file.set_len(self.len).is_err() {
                    self.broken = true;
                }
                self.allocated = self.len;
                Err(io_error(op, &self.path, e))
            }
        }
    }

    /// Appends one record with one write.
    pub fn append(&mut self, op: Op, payload: &[u8]) -> Result<()> {
        let mut buf = Vec::with_capacity(HEADER + payload.len());
        frame(op, self.path.display(), &mut buf, payload)?;
        self.append_framed(op, &buf)
    }

    /// Makes every append so far durable (fdatasync).
    pub fn sync(&self, op: Op) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| io_error(op, &self.path, e))
    }

    /// Whether `bytes` more fit in the preallocated space (see [`RecordFile::preallocate`]).
    pub fn fits(&self, bytes: u64) -> bool {
        self.len.saturating_add(bytes) <= self.allocated
    }

    /// Empties the file, durably.
    pub fn clear(&mut self, op: Op) -> Result<()> {
        let fail = |e| io_error(op, &self.path, e);
        self.file.set_len(0).map_err(fail)?;
        self.file.sync_all().map_err(fail)?;
        self.len = 0;
        self.allocated = 0;
        self.broken = false;
        Ok(())
    }

    /// Writes zeros so that at least `bytes` follow the last record, and syncs them with the
    /// file's new length: appends into that space are then synced without a metadata update.
    pub fn preallocate(&mut self, op: Op, bytes: u64) -> Result<()> {
        let target = self.len.saturating_add(bytes);
        if self.allocated >= target {
            return Ok(());
        }
        let fail = |e| io_error(op, &self.path, e);
        let zeros = vec![0u8; 1 << 20];
        let mut at = self.allocated;
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], at).map_err(fail)?;
            at += n as u64;
        }
        self.file.sync_all().map_err(fail)?;
        self.allocated = target;
        Ok(())
    }

    /// Bytes of whole records in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Replays the whole records of `file` through `each`. Returns where they end and, when
/// they end in damage, why. Damage is only a torn tail when no valid record follows it: a
/// damaged record with valid ones after it is corruption in the middle of the file, refused
/// as `Internal` naming the file and the offset, and nothing is changed.
fn replay(
    op: Op,
    path: &Path,
    file: &File,
    file_len: u64,
    mut each: impl FnMut(&[u8]) -> Result<Replay>,
) -> Result<(u64, Option<&'static str>)> {
    let fail = |e| io_error(op, path, e);
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut good: u64 = 0;
    let mut payload = Vec::new();
    let damage = loop {
        if good + HEADER as u64 > file_len && good < file_len && is_zero_tail(file, good, file_len)
        {
            break None;
        }
        if good == file_len {
            break None;
        }
        let mut head = [0u8; HEADER];
        if let Err(e) = reader.read_exact(&mut head) {
            break Some(eof_or(e, "a record header is cut short").map_err(fail)?);
        }
        if head == [0u8; HEADER] {
            // Preallocated space: the records end here, cleanly.
            break None;
        }
        let (len, sum) = head.split_at(4);
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let end = good + (HEADER + len) as u64;
        if len > MAX_PAYLOAD || end > file_len {
            break Some("a record's length runs past the end of the file");
        }
        payload.resize(len, 0);
        if let Err(e) = reader.read_exact(&mut payload) {
            break Some(eof_or(e, "a record is cut short").map_err(fail)?);
        }
        if checksum(&payload) != sum {
            break Some("a record's checksum does not match");
        }
        if each(&payload)? == Replay::Undecodable {
            break Some("a record does not decode");
        }
        good = end;
    };
    if let Some(why) = damage
        && let Some(at) = next_valid(file, good, file_len).map_err(fail)?
    {
        return Err(op.err(
            ErrorKind::Internal,
            path.display().to_string(),
            format!(
                "the file is damaged at byte {good} ({why}) and a valid record follows at byte {at}: not a torn tail but corruption; the file was left as it is (restore it from a backup, or move it away to start empty)"
            ),
        ));
    }
    Ok((good, damage))
}

/// The offset of the first valid record (its checksum holding) that starts after `from`, if
/// any: what tells damage in the middle of a file from a torn tail.
fn next_valid(file: &File, from: u64, to: u64) -> std::io::Result<Option<u64>> {
    let mut rest = vec![0u8; usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut rest, from)?;
    for i in 1..rest.len().saturating_sub(HEADER - 1) {
        let head = &rest[i..i + HEADER];
        if head.iter().all(|b| *b == 0) {
            continue;
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let Some(body) = rest.get(i + HEADER..i + HEADER + len) else {
            continue;
        };
        if len <= MAX_PAYLOAD && checksum(body) == head[4..HEADER] {
            return Ok(Some(from + i as u64));
        }
    }
    Ok(None)
}

/// Whether the bytes from `from` to `to` (fewer than a header) are all zero: the end of a
/// preallocated file.
fn is_zero_tail(file: &File, from: u64, to: u64) -> bool {
    let mut buf = vec![0u8; (to - from) as usize];
    file.read_exact_at(&mut buf, from).is_ok() && buf.iter().all(|b| *b == 0)
}

/// Writes `bytes` to `path` atomically and durably: a temp file in the same directory,
/// fsync, rename over `path`, fsync of the directory. A crash leaves either the old or the
/// new content, never a mix.
pub fn atomic_write(op: Op, path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let fail = |e: std::io::Error| io_error(op, path, e);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    sync_dir(dir).map_err(fail)
}

/// fsyncs a directory so a rename or a new file in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A short read at the end is a torn record (`Ok(why)`); any other read error is a real
/// error, never mistaken for damage to cut off.
fn eof_or(e: std::io::Error, why: &'static str) -> std::io::Result<&'static str> {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Ok(why)
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Service;

    const OP: Op = Op::new(Service::Backend, "test");

    fn replay(path: &Path) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let _f = RecordFile::open(OP, path, false, |p| {
            out.push(p.to_vec());
            Ok(Replay::Applied)
        })
        .unwrap();
        out
    }

    #[test]
    fn torn_or_damaged_tails_are_cut_at_every_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        {
            let mut f = RecordFile::open(OP, &path, true, |_| Ok(Replay::Applied)).unwrap();
            f.append(OP, b"first").unwrap();
            f.append(OP, b"second record").unwrap();
            f.sync(OP).unwrap();
        }
        let whole = std::fs::read(&path).unwrap();
        let first_end = HEADER + 5;
        for cut in 0..whole.len() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let got = replay(&path);
            let want: Vec<Vec<u8>> = if cut < first_end {
                vec![]
            } else {
                vec![b"first".to_vec()]
            };
            assert_eq!(got, want, "cut at {cut}");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len() as usize,
                if cut < first_end { 0 } else { first_end }
            );
        }
        let mut flipped = whole.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert_eq!(replay(&path), vec![b"first".to_vec()]);
        // Appends after a cut start on a clean boundary.
        let mut f = RecordFile::open(OP, &path, false, |_| Ok(Replay::Applied)).unwrap();
        f.append(OP, b"third").unwrap();
        drop(f);
        assert_eq!(replay(&path), vec![b"first".to_vec(), b"third".to_vec()]);
    }

    #[test]
    fn exclusive_open_is_refused_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        let _a = RecordFile::open(OP, &path, true, |_| Ok(Replay::Applied)).unwrap();
        let err = RecordFile::open(OP, &path, true, |_| Ok(Replay::Applied)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn preallocated_space_ends_replay_quietly_and_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        let mut f = RecordFile::open(OP, &path, false, |_| Ok(Replay::Applied)).unwrap();
        f.preallocate(OP, 4096).unwrap();
        f.append(OP, b"one").unwrap();
        f.append(OP, b"two").unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            4096,
            "appends stay inside"
        );
        drop(f);
        assert_eq!(replay(&path), vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            4096,
            "replay keeps the space"
        );
        let mut f = RecordFile::open(OP, &path, false, |_| Ok(Replay::Applied)).unwrap();
        f.append(OP, b"three").unwrap();
        // A torn record inside preallocated space is cut like any other.
        let torn = f.len() + 5;
        drop(f);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[torn as usize] = 7;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            replay(&path),
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
    }

    #[test]
    fn clear_empties() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        let mut f = RecordFile::open(OP, &path, false, |_| Ok(Replay::Applied)).unwrap();
        f.append(OP, b"x").unwrap();
        f.clear(OP).unwrap();
        f.append(OP, b"y").unwrap();
        drop(f);
        assert_eq!(replay(&path), vec![b"y".to_vec()]);
    }

    #[test]
    fn an_undecodable_last_record_is_cut_but_one_in_the_middle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        let mut f = RecordFile::open(OP, &path, false, |_| Ok(Replay::Applied)).unwrap();
        for payload in [&b"good"[..], b"bad", b"later"] {
            f.append(OP, payload).unwrap();
        }
        drop(f);
        let undecodable = |bad: &'static [u8]| {
            move |p: &[u8]| -> Result<Replay> {
                Ok(if p == bad {
                    Replay::Undecodable
                } else {
                    Replay::Applied
                })
            }
        };
        let before = std::fs::read(&path).unwrap();
        let err = RecordFile::open(OP, &path, false, undecodable(b"bad")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(
            err.message().contains(&format!("at byte {}", HEADER + 4)),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file was changed"
        );
        let f = RecordFile::open(OP, &path, false, undecodable(b"later")).unwrap();
        assert_eq!(f.len(), (2 * HEADER + 4 + 3) as u64);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), f.len());
        // An error from the callback is the open's error, and cuts nothing.
        drop(f);
        let err = RecordFile::open(OP, &path, false, |p| {
            if p == b"bad" {
                Err(OP.invalid("r", "refused"))
            } else {
                Ok(Replay::Applied)
            }
        })
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert_eq!(replay(&path), vec![b"good".to_vec(), b"bad".to_vec()]);
    }

    #[test]
    fn damage_before_valid_records_is_refused_and_the_file_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        let mut f = RecordFile::open(OP, &path, true, |_| Ok(Replay::Applied)).unwrap();
        for payload in [&b"one"[..], b"two two", b"three three three"] {
            f.append(OP, payload).unwrap();
        }
        drop(f);
        let whole = std::fs::read(&path).unwrap();
        let last_start = whole.len() - (HEADER + 17);
        // A flipped bit anywhere before the last record: refused, untouched. In the last
        // record: a torn tail, cut.
        for at in 0..whole.len() {
            let mut bytes = whole.clone();
            bytes[at] ^= 0x10;
            std::fs::write(&path, &bytes).unwrap();
            let opened = RecordFile::open(OP, &path, false, |_| Ok(Replay::Applied));
            if at < last_start {
                let e = opened
                    .err()
                    .unwrap_or_else(|| panic!("damage at {at} not refused"));
                assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
                assert!(e.to_string().contains("r.log"), "{e}");
                assert_eq!(std::fs::read(&path).unwrap(), bytes, "changed at {at}");
                // Readers are refused the same way, and change nothing either.
                assert!(RecordFile::read(OP, &path, |_| Ok(Replay::Applied)).is_err());
            } else {
                assert_eq!(opened.unwrap().len(), last_start as u64, "flip at {at}");
            }
        }
    }

    #[test]
    fn readers_never_change_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        let mut f = RecordFile::open(OP, &path, false, |_| Ok(Replay::Applied)).unwrap();
        f.append(OP, b"whole").unwrap();
        f.append(OP, b"torn record").unwrap();
        drop(f);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&path, &bytes).unwrap();
        let mut seen = Vec::new();
        let len = RecordFile::read(OP, &path, |p| {
            seen.push(p.to_vec());
            Ok(Replay::Applied)
        })
        .unwrap();
        assert_eq!(seen, vec![b"whole".to_vec()]);
        assert_eq!(len, (HEADER + 5) as u64);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "a reader cut the tail"
        );
        assert_eq!(
            RecordFile::read(OP, &dir.path().join("none"), |_| Ok(Replay::Applied)).unwrap(),
            0
        );
    }

    #[test]
    fn framed_records_append_as_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        let mut buf = Vec::new();
        frame(OP, "r", &mut buf, b"one").unwrap();
        frame_with(OP, "r", &mut buf, |b| {
            b.extend_from_slice(b"two");
            Ok(())
        })
        .unwrap();
        // A failed or oversized frame leaves the buffer as it was.
        let before = buf.clone();
        let err = frame_with(OP, "r", &mut buf, |b| {
            b.extend_from_slice(b"half");
            Err(OP.invalid("r", "cannot encode"))
        })
        .unwrap_err();
        assert_eq!(err.message(), "cannot encode");
        assert_eq!(buf, before);
        let err = frame_with(OP, "r", &mut buf, |b| {
            b.resize(b.len() + MAX_PAYLOAD + 1, 0);
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert_eq!(buf, before);
        let mut f = RecordFile::open(OP, &path, false, |_| Ok(Replay::Applied)).unwrap();
        f.append_framed(OP, &buf).unwrap();
        assert_eq!(f.len(), buf.len() as u64);
        f.append(OP, b"three").unwrap();
        drop(f);
        assert_eq!(
            replay(&path),
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
    }
}

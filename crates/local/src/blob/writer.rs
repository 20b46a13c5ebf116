//! One writer thread that commits metadata changes in batches (group commit).
//!
//! A durable redb commit costs an fsync (milliseconds on many disks), and redb runs one
//! write transaction at a time. So every metadata change is a job sent to this thread, which
//! runs all the jobs waiting at that moment in one write transaction and commits once: under
//! concurrent load one fsync acknowledges many writes, and each write is still durable when
//! its caller hears back. Jobs run one after another inside the transaction, so a conditional
//! write checks and writes with no other writer in between.
//!
//! A job must make every check before its first change: a job that fails with anything but
//! an `Internal` error has changed nothing, and the batch goes on. An `Internal` error (a
//! storage fault) may have left a job half done, so the whole batch is rolled back and every
//! job in it answered with an error.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use mvi_core::{Error, ErrorKind, Op, Result, Service};
use redb::{Database, Table, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use crate::storage::{MemoryCommits, db_error};

/// Bucket name → `BucketRecord`.
pub(super) const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
/// (bucket, key) → `ObjectRecord`. Sorted, so a listing is a range scan.
pub(super) const OBJECTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("objects");
/// Piece id → content, for multipart parts small enough to go inline (a small object keeps
/// its content in its own record instead).
pub(super) const INLINE: TableDefinition<&str, &[u8]> = TableDefinition::new("inline");
/// Upload id → `UploadRecord`.
pub(super) const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
/// (upload id, part number) → `PartRecord`.
pub(super) const PARTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("parts");

/// The resource named in metadata storage errors.
pub(super) const META: &str = "blob/meta.redb";

/// Every table, open in one write transaction.
pub(super) struct Tables<'t> {
    pub buckets: Table<'t, &'static str, &'static [u8]>,
    pub objects: Table<'t, (&'static str, &'static str), &'static [u8]>,
    pub inline: Table<'t, &'static str, &'static [u8]>,
    pub uploads: Table<'t, &'static str, &'static [u8]>,
    pub parts: Table<'t, (&'static str, u32), &'static [u8]>,
}

impl<'t> Tables<'t> {
    /// Opens (creating if needed) every table in `txn`.
    pub(super) fn open(op: Op, txn: &'t WriteTransaction) -> Result<Self> {
        let db = |e: redb::TableError| db_error(op, META, e);
        Ok(Tables {
            buckets: txn.open_table(BUCKETS).map_err(db)?,
            objects: txn.open_table(OBJECTS).map_err(db)?,
            inline: txn.open_table(INLINE).map_err(db)?,
            uploads: txn.open_table(UPLOADS).map_err(db)?,
            parts: txn.open_table(PARTS).map_err(db)?,
        })
    }
}

type Value = Box<dyn Any + Send>;
type Work = Box<dyn FnOnce(&mut Tables<'_>) -> Result<Value> + Send>;

struct Job {
    op: Op,
    work: Work,
    reply: oneshot::Sender<Result<Value>>,
}

/// The most jobs in one transaction: bounds the time a batch holds its callers.
const MAX_BATCH: usize = 1024;

/// The handle of the writer thread. Dropping it lets the thread finish the jobs already sent
/// and waits for it, so the database file is closed when the service is dropped.
///
/// In memory there is no sync to share, so there is no thread either: each write runs its own
/// one-job batch on the caller's task (redb still admits one write transaction at a time), and
/// commits it mostly non-durably ([`MemoryCommits`]).
pub(super) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    inline: Option<(Arc<Database>, MemoryCommits)>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("thread", &self.thread.is_some())
            .field("inline", &self.inline.is_some())
            .finish()
    }
}

impl Writer {
    /// Starts the writer thread over `db`.
    pub(super) fn start(op: Op, db: Arc<Database>) -> Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mvi-blob-writer".into())
            .spawn(move || run(&db, &rx))
            .map_err(|e| op.internal(META, e))?;
        Ok(Writer {
            jobs: Some(tx),
            thread: Some(thread),
            inline: None,
        })
    }

    /// A writer that commits each write on the caller's task (for an in-memory database).
    pub(super) fn inline(db: Arc<Database>) -> Self {
        Writer {
            jobs: None,
            thread: None,
            inline: Some((db, MemoryCommits::default())),
        }
    }

    /// Runs `work` in the next batch and answers once the batch is durably committed.
    pub(super) async fn write<T, F>(&self, op: Op, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tables<'_>) -> Result<T> + Send + 'static,
    {
        let stopped = || op.internal(META, "the blob writer thread has stopped");
        let (reply, answer) = oneshot::channel();
        let job = Job {
            op,
            work: Box::new(move |t| work(t).map(|v| Box::new(v) as Value)),
            reply,
        };
        match &self.inline {
            Some((db, commits)) => {
                run_batch(db, &mut VecDeque::from([job]), |txn| commits.commit(txn))
            }
            None => self
                .jobs
                .as_ref()
                .ok_or_else(stopped)?
                .send(job)
                .map_err(|_| stopped())?,
        }
        let value = answer.await.map_err(|_| stopped())??;
        value
            .downcast::<T>()
            .map(|v| *v)
            .map_err(|_| op.internal(META, "the blob writer answered with the wrong type"))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("blob: the writer thread panicked");
        }
    }
}

fn run(db: &Database, jobs: &mpsc::Receiver<Job>) {
    let mut queue = VecDeque::new();
    loop {
        if queue.is_empty() {
            match jobs.recv() {
                Ok(job) => queue.push_back(job),
                // Every sender is gone: the service was dropped.
                Err(mpsc::RecvError) => return,
            }
        }
        while queue.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => queue.push_back(job),
                Err(_) => break,
            }
        }
        run_batch(db, &mut queue, |txn| {
            txn.commit().map_err(redb::Error::from)
        });
    }
}

/// Runs jobs from the front of `queue` in one transaction, commits it with `commit`, and
/// answers them. Jobs after a failed one stay queued for the next batch.
fn run_batch(
    db: &Database,
    queue: &mut VecDeque<Job>,
    commit: impl FnOnce(WriteTransaction) -> std::result::Result<(), redb::Error>,
) {
    let Some(op) = queue.front().map(|j| j.op) else {
        return;
    };
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            let e = db_error(op, META, e);
            for job in queue.drain(..) {
                let _ = job.reply.send(Err(echo(&e, job.op)));
            }
            return;
        }
    };
    let mut done: Vec<(Op, oneshot::Sender<Result<Value>>, Result<Value>)> = Vec::new();
    let mut broken: Option<Error> = None;
    match Tables::open(op, &txn) {
        Err(e) => broken = Some(e),
        Ok(mut tables) => {
            while let Some(Job {
                op: job_op,
                work,
                reply,
            }) = queue.pop_front()
            {
                let result = work(&mut tables);
                let poisoned = matches!(&result, Err(e) if e.kind() == ErrorKind::Internal);
                if poisoned {
                    broken = result.as_ref().err().map(|e| echo(e, op));
                }
                done.push((job_op, reply, result));
                if poisoned || done.len() >= MAX_BATCH {
                    break;
                }
            }
        }
    }
    let failure = match broken {
        Some(e) => {
            // Roll back; dropping the transaction would too, but say so.
            if let Err(abort) = txn.abort() {
                tracing::error!("blob: aborting a failed batch failed: {abort}");
            }
            Some(e)
        }
        None => commit(txn).err().map(|e| db_error(op, META, e)),
    };
    for (job_op, reply, result) in done {
        let answer = match (&failure, result) {
            (_, Err(e)) => Err(e),
            (Some(f), Ok(_)) => Err(echo(f, job_op)),
            (None, Ok(v)) => Ok(v),
        };
        // The caller may have given up waiting; its write is committed regardless.
        let _ = reply.send(answer);
    }
}

/// The same failure, reported to another job's operation.
fn echo(e: &Error, op: Op) -> Error {
    let msg = format!("the batch this write was part of failed: {}", e.message());
    let err = Error::new(e.kind(), Service::Blob, op.operation, msg);
    match e.resource() {
        Some(r) => err.with_resource(r),
        None => err,
    }
}

//! Group commit: concurrent writes share one durable redb commit.
//!
//! redb admits one write transaction at a time and a durable commit costs an fsync, so
//! writers that each committed alone would queue for the disk one fsync after another.
//! Instead, a write is queued as a job; the first writer to find no commit running becomes the
//! leader and, on the blocking pool, runs every queued job in one transaction, in queue order,
//! then commits once and tells each writer its outcome. Writes that arrive meanwhile form the
//! next group. A single writer gets one commit per write, as before; sixteen concurrent
//! writers share a few.
//!
//! Each job runs against the state its predecessors in the group left, so conditions are
//! evaluated exactly as if the writes had committed one by one. A job that is refused
//! (bad input, failed condition) changes nothing, because every job checks before it writes;
//! the others still commit. A storage error (kind `Internal`) aborts the whole group and
//! fails every write in it: nothing of it is written. No writer is told "done" before the
//! commit that holds its write is durable.
//!
//! There is no background task: the leader's loop ends when the queue is empty. It holds the
//! database only while it runs a group, and lets go of it before it tells the writers, so a
//! program that drops the service after its last write can reopen the file at once.

use std::sync::{Arc, Mutex, Weak};

use mvi_core::{Error, ErrorKind, Op, Result};
use redb::{Database, WriteTransaction};
use tokio::sync::oneshot;

/// A queued write. Given the group's transaction (or why there is none), it does its part
/// and returns how it went.
type Job = Box<dyn FnOnce(std::result::Result<&WriteTransaction, &str>) -> Done + Send>;

/// Reports a job's final outcome to its writer, given why its group failed, if it did.
type Finish = Box<dyn FnOnce(Option<&str>) + Send>;

/// The outcome of one job, before the group's commit.
struct Done {
    /// A storage error: the group must not commit.
    fatal: bool,
    finish: Finish,
}

/// The write side of the KV database.
pub(super) struct GroupCommit {
    /// The service owns the database; a leader only borrows it per group.
    db: Weak<Database>,
    queue: Arc<Mutex<Queue>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// Whether a leader is running: it will pick up anything queued.
    leader: bool,
}

impl GroupCommit {
    pub(super) fn new(db: &Arc<Database>) -> Self {
        GroupCommit {
            db: Arc::downgrade(db),
            queue: Arc::new(Mutex::new(Queue::default())),
        }
    }

    /// Runs `f` in a durable write transaction (shared with concurrent writes) and returns
    /// its result once the transaction is committed.
    pub(super) async fn write<T, F>(&self, op: Op, resource: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let res = resource.to_string();
        let job: Job = Box::new(move |txn| {
            let out = match txn {
                Ok(txn) => f(txn),
                Err(why) => Err(op.internal(&res, why.to_string())),
            };
            let fatal = matches!(&out, Err(e) if e.kind() == ErrorKind::Internal);
            Done {
                fatal,
                finish: Box::new(move |failure| {
                    let out = match (out, failure) {
                        (Ok(_), Some(why)) => Err(op.internal(&res, why.to_string())),
                        (out, _) => out,
                    };
                    // The writer may have stopped waiting; the write stands either way.
                    let _ = tx.send(out);
                }),
            }
        });
        let lead = {
            let mut q = lock(&self.queue);
            q.jobs.push(job);
            !std::mem::replace(&mut q.leader, true)
        };
        if lead {
            let leader = Leader {
                db: self.db.clone(),
                queue: self.queue.clone(),
                released: false,
            };
            match tokio::runtime::Handle::try_current() {
                // Not awaited: this writer waits for its own outcome like every other.
                Ok(rt) => drop(rt.spawn_blocking(move || leader.run())),
                // Polled outside tokio: no blocking pool to hand the fsync to, so block here
                // (rather than panic as `spawn_blocking` would).
                Err(_) => leader.run(),
            }
        }
        rx.await.map_err(|_| lost(op, resource)).and_then(|out| out)
    }
}

fn lost(op: Op, resource: &str) -> Error {
    op.internal(resource, "the write was dropped before it committed")
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    // The queue stays consistent even if a holder panicked: it is only pushed and taken.
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

/// The right to commit the queued jobs, held by one thread at a time.
struct Leader {
    db: Weak<Database>,
    queue: Arc<Mutex<Queue>>,
    /// Set when the loop hands leadership back normally.
    released: bool,
}

impl Leader {
    /// Commits groups until the queue is empty.
    fn run(mut self) {
        loop {
            let jobs = {
                let mut q = lock(&self.queue);
                if q.jobs.is_empty() {
                    // In the same critical section as the check, so a job pushed after it
                    // finds no leader and starts one.
                    q.leader = false;
                    self.released = true;
                    return;
                }
                std::mem::take(&mut q.jobs)
            };
            let (done, failure) = match self.db.upgrade() {
                Some(db) => run_group(&db, jobs),
                // Unreachable while a writer waits (it holds the service), but never a panic.
                None => {
                    let why = "the KV service was closed";
                    let done = jobs.into_iter().map(|job| job(Err(why))).collect();
                    (done, Some(why.to_string()))
                }
            };
            // The database handle is released by now: tell the writers.
            for d in done {
                (d.finish)(failure.as_deref());
            }
        }
    }
}

impl Drop for Leader {
    /// A leader that never ran (its runtime shut down first) or panicked hands leadership
    /// back and drops the queued jobs, whose writers get an error, rather than leaving every
    /// later write waiting for a leader that will not come.
    fn drop(&mut self) {
        if !self.released {
            let jobs = {
                let mut q = lock(&self.queue);
                q.leader = false;
                std::mem::take(&mut q.jobs)
            };
            drop(jobs);
        }
    }
}

/// Runs `jobs` in one transaction and commits it unless one failed in storage. Returns
/// each job's outcome and why the group failed, if it did.
fn run_group(db: &Database, jobs: Vec<Job>) -> (Vec<Done>, Option<String>) {
    let txn = db
        .begin_write()
        .map_err(|e| format!("cannot begin a write transaction: {e}"));
    let done: Vec<Done> = jobs
        .into_iter()
        .map(|job| job(txn.as_ref().map_err(String::as_str)))
        .collect();
    let failure = match txn {
        Err(why) => Some(why),
        Ok(txn) if done.iter().any(|d| d.fatal) => {
            // Abort errors add nothing: the group already failed and is not written.
            let _ = txn.abort();
            Some(
                "a storage error in a write committed together with this one aborted it; \
                 nothing was written"
                    .to_string(),
            )
        }
        Ok(txn) => txn
            .commit()
            .err()
            .map(|e| format!("the commit failed: {e}")),
    };
    (done, failure)
}

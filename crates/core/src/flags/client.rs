//! The in-memory flag client: evaluations without I/O, refreshed in the background.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::Flags;
use super::eval::{Compiled, ErrorCode, EvalContext, Evaluation, FlagValue};
use super::store::Stored;

/// Every flag of a [`Flags`] store in memory (see [`Flags::client`]). Cheap to clone; the
/// background refresh stops when the last clone is dropped. Evaluations read a snapshot
/// swapped in whole by each refresh, so one evaluation never sees half a change.
#[derive(Debug, Clone)]
pub struct FlagClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    snapshot: ArcSwap<Snapshot>,
    refresh: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    poll: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self
            .refresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// The flags as last read.
#[derive(Debug, Default)]
struct Snapshot {
    /// False until the store was read once.
    loaded: bool,
    flags: HashMap<String, Entry>,
    /// The last refresh's failure, if it failed (the flags are those read before).
    error: Option<String>,
    /// How many refreshes changed something.
    changes: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    version: i64,
    flag: Result<Arc<Compiled>, String>,
}

impl FlagClient {
    pub(crate) async fn start(flags: Flags, poll: Duration) -> FlagClient {
        let inner = Arc::new(Inner {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            refresh: std::sync::Mutex::new(None),
            poll,
        });
        refresh(&flags, &inner).await;
        let weak = Arc::downgrade(&inner);
        let task = tokio::spawn(poll_loop(flags, weak, poll));
        *inner.refresh.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        FlagClient { inner }
    }

    /// The value of flag `key` for `ctx`, or `default` if it cannot be had (no such flag, off,
    /// another type, the store not read yet). No I/O, no allocation beyond the value's own.
    pub fn value<T: FlagValue>(&self, key: &str, default: T, ctx: &EvalContext) -> T {
        let snapshot = self.inner.snapshot.load();
        match snapshot.flags.get(key) {
            Some(Entry { flag: Ok(c), .. }) => c.value(default, ctx),
            _ => default,
        }
    }

    /// A boolean flag's value.
    pub fn bool_value(&self, key: &str, default: bool, ctx: &EvalContext) -> bool {
        self.value(key, default, ctx)
    }

    /// A string flag's value.
    pub fn string_value(&self, key: &str, default: &str, ctx: &EvalContext) -> String {
        let snapshot = self.inner.snapshot.load();
        match snapshot.flags.get(key) {
            Some(Entry { flag: Ok(c), .. }) => c.value(default.to_string(), ctx),
            _ => default.to_string(),
        }
    }

    /// A number flag's value.
    pub fn number_value(&self, key: &str, default: f64, ctx: &EvalContext) -> f64 {
        self.value(key, default, ctx)
    }

    /// The whole evaluation of flag `key` for `ctx`: value, variant, reason, error code.
    pub fn evaluate<T: FlagValue>(
        &self,
        key: &str,
        default: T,
        ctx: &EvalContext,
    ) -> Evaluation<T> {
        let snapshot = self.inner.snapshot.load();
        match snapshot.flags.get(key) {
            Some(Entry { flag: Ok(c), .. }) => c.evaluate(default, ctx),
            Some(Entry { flag: Err(why), .. }) => {
                Evaluation::failed(key, default, ErrorCode::ParseError, why.clone())
            }
            None if !snapshot.loaded => Evaluation::failed(
                key,
                default,
                ErrorCode::ProviderNotReady,
                format!(
                    "the flags could not be read yet: {}",
                    snapshot.error.as_deref().unwrap_or("not loaded")
                ),
            ),
            None => Evaluation::failed(
                key,
                default,
                ErrorCode::FlagNotFound,
                format!("no flag {key:?}"),
            ),
        }
    }

    /// Whether the store has been read at least once.
    pub fn is_ready(&self) -> bool {
        self.inner.snapshot.load().loaded
    }

    /// Why the last refresh failed, if it did (the flags are then those read before).
    pub fn last_error(&self) -> Option<String> {
        self.inner.snapshot.load().error.clone()
    }

    /// The keys of the flags held, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.inner.snapshot.load().flags.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// How often the client reads the store.
    pub fn poll_interval(&self) -> Duration {
        self.inner.poll
    }

    /// How many refreshes have changed the flags held (a test or a dashboard can wait on it).
    pub fn changes(&self) -> u64 {
        self.inner.snapshot.load().changes
    }
}

async fn poll_loop(flags: Flags, inner: Weak<Inner>, poll: Duration) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is now: the flags were just read
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        refresh(&flags, &inner).await;
    }
}

/// Reads every flag and swaps in a new snapshot if anything changed; compiles only the flags
/// whose version changed. A failed read keeps the flags and records why.
async fn refresh(flags: &Flags, inner: &Inner) {
    let old = inner.snapshot.load_full();
    match flags.load_all().await {
        Ok(all) => {
            let same = old.loaded
                && old.error.is_none()
                && all.len() == old.flags.len()
                && all
                    .iter()
                    .all(|(k, s)| old.flags.get(k).is_some_and(|e| e.version == s.version));
            if same {
                return;
            }
            let flags = all
                .into_iter()
                .map(|(key, stored)| {
                    let entry = match old.flags.get(&key) {
                        Some(e) if e.version == stored.version => e.clone(),
                        _ => compile(stored),
                    };
                    (key, entry)
                })
                .collect();
            inner.snapshot.store(Arc::new(Snapshot {
                loaded: true,
                flags,
                error: None,
                changes: old.changes + 1,
            }));
        }
        Err(e) => {
            tracing::warn!(table = flags.table(), error = %e, "could not refresh the flags; keeping those read before");
            inner.snapshot.store(Arc::new(Snapshot {
                loaded: old.loaded,
                flags: old.flags.clone(),
                error: Some(e.to_string()),
                changes: old.changes,
            }));
        }
    }
}

fn compile(stored: Stored) -> Entry {
    let flag = stored
        .flag
        .and_then(|f| Compiled::new(f).map_err(|e| e.to_string()))
        .map(Arc::new);
    Entry {
        version: stored.version,
        flag,
    }
}

//! The simulator's shared sources of time and randomness.
//!
//! Every generated id comes from one seeded generator, so a run with the same seed makes the
//! same ids in the same order and a failing simulation can be replayed. Key material and AES
//! nonces never come from here: they always come from the operating system's secure source.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mvi_core::{Clock, Result, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Time and deterministic randomness for every local service.
#[derive(Debug)]
pub struct Sim {
    seed: u64,
    rng: Mutex<Draws>,
    clock: Arc<dyn Clock>,
    principal: String,
}

/// The generator, and how far into its stream a persistent cloud has reserved: a cloud
/// reopened on the same root goes on from the reserved mark, so it never makes an id it
/// made before (which would name an existing resource).
#[derive(Debug)]
struct Draws {
    rng: ChaCha8Rng,
    /// `<root>/sim.json`, for a persistent cloud.
    file: Option<PathBuf>,
    /// The stream position (in 32-bit words) up to which draws are reserved on disk.
    reserved: u128,
}

/// How many words of the stream are reserved at a time (one file write per 2,048 ids).
const RESERVE: u128 = 4096;

#[derive(Serialize, Deserialize)]
struct Reserved {
    /// The stream position up to which earlier runs may have drawn.
    reserved: u128,
}

impl Sim {
    /// A simulator seeded with `seed`, reading time from `clock`, acting as `principal`.
    pub fn new(seed: u64, clock: Arc<dyn Clock>, principal: String) -> Self {
        Sim {
            seed,
            rng: Mutex::new(Draws {
                rng: ChaCha8Rng::seed_from_u64(seed),
                file: None,
                reserved: 0,
            }),
            clock,
            principal,
        }
    }

    /// Makes ids unique across runs on `root`: goes on from where the last run on it
    /// stopped (as recorded in `<root>/sim.json`) and records how far this one may go.
    pub fn persist(&self, root: &Path) -> Result<()> {
        let op = mvi_core::Op::new(mvi_core::Service::Backend, "open");
        let file = root.join("sim.json");
        let reserved = match std::fs::read(&file) {
            Ok(bytes) => {
                serde_json::from_slice::<Reserved>(&bytes)
                    .map_err(|e| {
                        op.internal(
                            file.display().to_string(),
                            format!("the simulator's id record is damaged ({e})"),
                        )
                    })?
                    .reserved
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(crate::storage::io_error(op, &file, e)),
        };
        let mut d = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        d.rng.set_word_pos(reserved);
        d.reserved = reserved;
        d.file = Some(file);
        d.reserve(op)
    }

    /// The seed (printed by failing simulations so they can be replayed).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Who the simulated caller is (recorded in audit trails).
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// A new id `prefix-<16 hex digits>`, deterministic for a given seed and call order.
    pub fn id(&self, prefix: &str) -> String {
        format!("{prefix}-{:016x}", self.next_u64())
    }

    /// The next deterministic 64-bit number.
    pub fn next_u64(&self) -> u64 {
        // A poisoned lock only means another thread panicked while drawing a number; the
        // generator's state is still a valid state.
        let mut d = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let n = d.rng.random();
        if d.file.is_some() && d.rng.get_word_pos() >= d.reserved {
            let op = mvi_core::Op::new(mvi_core::Service::Backend, "id");
            if let Err(e) = d.reserve(op) {
                // Ids stay unique within this run; only a later reopen could repeat them.
                tracing::warn!(error = %e, "could not record the simulator's id reservation");
            }
        }
        n
    }
}

impl Draws {
    /// Records, durably, that draws up to the next block may be made.
    fn reserve(&mut self, op: mvi_core::Op) -> Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let next = self.rng.get_word_pos().max(self.reserved) + RESERVE;
        let json = serde_json::to_vec(&Reserved { reserved: next })
            .map_err(|e| op.internal("sim.json", e))?;
        mvi_core::records::atomic_write(op, file, &json)?;
        self.reserved = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim() -> Sim {
        Sim::new(7, Arc::new(mvi_core::SystemClock), "test".into())
    }

    #[test]
    fn a_reopened_root_never_makes_an_id_it_made_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let s = sim();
            s.persist(dir.path()).unwrap();
            // More than one reservation block's worth, and a few.
            for _ in 0..2100 {
                assert!(seen.insert(s.id("vpc")), "an id was made twice");
            }
        }
        // Without a root, the same seed makes the same ids (replayable simulations).
        assert_eq!(sim().id("x"), sim().id("x"));
    }
}

//! The simulator's shared sources of time and randomness.
//!
//! Every generated id comes from one seeded generator, so a run with the same seed makes the
//! same ids in the same order and a failing simulation can be replayed. Key material and AES
//! nonces never come from here: they always come from the operating system's secure source.

use std::sync::{Arc, Mutex};

use mvi_core::{Clock, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Time and deterministic randomness for every local service.
#[derive(Debug)]
pub struct Sim {
    seed: u64,
    rng: Mutex<ChaCha8Rng>,
    clock: Arc<dyn Clock>,
    principal: String,
}

impl Sim {
    /// A simulator seeded with `seed`, reading time from `clock`, acting as `principal`.
    pub fn new(seed: u64, clock: Arc<dyn Clock>, principal: String) -> Self {
        Sim {
            seed,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            clock,
            principal,
        }
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
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        rng.random()
    }
}

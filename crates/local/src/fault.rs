//! Fault injection for the simulator: make any service fail with a probability, or answer
//! late, deterministically by seed.
//!
//! [`Faults`] is a [`Layer`]: `LocalCloud::builder().faults(faults.clone())` wraps every
//! service of the cloud in it, and the program (or its test) changes the rules at any time:
//!
//! ```no_run
//! # async fn demo() -> mvi_core::Result<()> {
//! use std::time::Duration;
//! use mvi_core::Service;
//! use mvi_local::{Faults, FaultRule, LocalCloud};
//!
//! let faults = Faults::new(42);
//! let cloud = LocalCloud::builder().in_memory().faults(faults.clone()).build().await?;
//! faults.set(Service::Kv, FaultRule::errors(0.2).latency(Duration::from_millis(5)))?;
//! // ... one KV call in five now fails with a retryable `Unavailable` error ...
//! faults.clear();
//! # Ok(()) }
//! ```
//!
//! Which calls fail comes from one ChaCha generator seeded by the seed given, so a program
//! that makes the same calls in the same order sees the same failures (the error message
//! names the seed). Faults apply to the calls the program makes through the `Cloud`; the
//! simulator's services calling each other inside (a container writing its logs) are not
//! affected. Host failures (a crashed VM, a failed zone) are injected on the VM service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mvi_core::{Error, ErrorKind, Layer, Op, Result, Service};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What to inject into the calls of one service (or of all).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// Probability that a call fails, 0.0 to 1.0.
    pub error_rate: f64,
    /// The kind of the injected error (default `Unavailable`, which is retryable).
    pub kind: ErrorKind,
    /// Added before every call.
    pub latency: Duration,
}

impl FaultRule {
    /// Fail a share `rate` of calls with `Unavailable`.
    pub fn errors(rate: f64) -> Self {
        FaultRule {
            error_rate: rate,
            kind: ErrorKind::Unavailable,
            latency: Duration::ZERO,
        }
    }

    /// Only delay calls by `latency`.
    pub fn delay(latency: Duration) -> Self {
        FaultRule::errors(0.0).latency(latency)
    }

    /// Sets the added latency.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the kind of the injected errors.
    pub fn kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }
}

#[derive(Debug)]
struct State {
    rng: ChaCha8Rng,
    all: Option<FaultRule>,
    services: HashMap<Service, FaultRule>,
    injected: u64,
}

/// Fault injection rules, shared by every clone (see the module doc).
#[derive(Debug, Clone)]
pub struct Faults {
    seed: u64,
    state: Arc<Mutex<State>>,
}

impl Faults {
    /// No faults yet; failures will be drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        Faults {
            seed,
            state: Arc::new(Mutex::new(State {
                rng: ChaCha8Rng::seed_from_u64(seed),
                all: None,
                services: HashMap::new(),
                injected: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the rules whole, so a poisoned lock still guards valid ones.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Injects `rule` into every call of `service` (replacing its previous rule).
    pub fn set(&self, service: Service, rule: FaultRule) -> Result<()> {
        check(&rule)?;
        self.lock().services.insert(service, rule);
        Ok(())
    }

    /// Injects `rule` into every call of every service without a rule of its own.
    pub fn set_all(&self, rule: FaultRule) -> Result<()> {
        check(&rule)?;
        self.lock().all = Some(rule);
        Ok(())
    }

    /// Removes every rule: calls run normally again.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.all = None;
        s.services.clear();
    }

    /// How many errors have been injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }
}

fn check(rule: &FaultRule) -> Result<()> {
    if !(0.0..=1.0).contains(&rule.error_rate) {
        return Err(Op::new(Service::Backend, "set_fault").invalid(
            "fault rule",
            format!("error_rate {} must be between 0 and 1", rule.error_rate),
        ));
    }
    Ok(())
}

#[async_trait]
impl Layer for Faults {
    async fn before(&self, service: Service, operation: &'static str) -> Result<()> {
        let (latency, fail) = {
            let mut s = self.lock();
            let Some(rule) = s.services.get(&service).or(s.all.as_ref()).cloned() else {
                return Ok(());
            };
            // Draw only when a rule can fail, so adding latency alone does not shift which
            // later calls fail.
            let fail = rule.error_rate > 0.0 && s.rng.random::<f64>() < rule.error_rate;
            if fail {
                s.injected += 1;
            }
            (rule.latency, fail.then_some(rule.kind))
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match fail {
            Some(kind) => Err(Error::new(
                kind,
                service,
                operation,
                format!("injected fault (fault seed {})", self.seed),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalCloud;
    use mvi_core::KvExt;
    use mvi_core::kv::{KeyAttr, KeyType, TableSpec};

    async fn outcomes(seed: u64) -> Vec<bool> {
        let faults = Faults::new(seed);
        let cloud = LocalCloud::builder()
            .in_memory()
            .faults(faults.clone())
            .build()
            .await
            .unwrap();
        let kv = cloud.kv().unwrap();
        kv.create_table(TableSpec::new("faulty", KeyAttr::new("id", KeyType::Str)))
            .await
            .unwrap();
        faults.set(Service::Kv, FaultRule::errors(0.5)).unwrap();
        let mut out = Vec::new();
        for i in 0..40 {
            let r = kv
                .put("faulty", mvi_core::item! { "id" => format!("k{i}") })
                .await;
            if let Err(e) = &r {
                assert_eq!(e.kind(), ErrorKind::Unavailable);
                assert!(e.is_retryable());
                assert!(e.to_string().contains("injected fault"), "{e}");
            }
            out.push(r.is_ok());
        }
        assert_eq!(
            faults.injected() as usize,
            out.iter().filter(|ok| !**ok).count()
        );
        // Other services are untouched, and clearing heals.
        cloud.blob().unwrap().create_bucket("fine").await.unwrap();
        faults.clear();
        kv.put("faulty", mvi_core::item! { "id" => "after" })
            .await
            .unwrap();
        out
    }

    #[tokio::test]
    async fn same_seed_same_failures() {
        let a = outcomes(7).await;
        assert_eq!(a, outcomes(7).await);
        assert!(a.iter().any(|ok| *ok) && a.iter().any(|ok| !*ok), "{a:?}");
        assert_ne!(a, outcomes(8).await);
    }

    #[tokio::test]
    async fn every_call_fails_at_rate_one_and_latency_is_added() {
        let faults = Faults::new(1);
        let cloud = LocalCloud::builder()
            .in_memory()
            .faults(faults.clone())
            .build()
            .await
            .unwrap();
        faults
            .set_all(FaultRule::errors(1.0).kind(ErrorKind::Timeout))
            .unwrap();
        let err = cloud.blob().unwrap().list_buckets().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(err.operation(), "list_buckets");
        faults
            .set_all(FaultRule::delay(Duration::from_millis(30)))
            .unwrap();
        let start = std::time::Instant::now();
        cloud.blob().unwrap().list_buckets().await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(faults.set_all(FaultRule::errors(1.5)).is_err());
    }
}

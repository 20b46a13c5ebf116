//! API fault injection: make the calls of any service fail with a probability, or answer
//! late, deterministically by seed, on any backend.
//!
//! [`Faults`] is a [`Layer`]: `Cloud::layer(Arc::new(faults.clone()))` wraps every service of
//! a cloud in it (the local builder has `.faults(faults.clone())` for the same), and the
//! program, its test, or a fault experiment ([`crate::experiment`]) changes the rules at any
//! time:
//!
//! ```no_run
//! # async fn demo(cloud: mvi_core::Cloud) -> mvi_core::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use mvi_core::Service;
//! use mvi_core::fault::{Faults, FaultRule};
//!
//! let faults = Faults::new(42);
//! let cloud = cloud.layer(Arc::new(faults.clone()));
//! faults.set(Service::Kv, FaultRule::errors(0.2).latency(Duration::from_millis(5)))?;
//! // ... one KV call in five now fails with a retryable `Unavailable` error ...
//! faults.clear();
//! # Ok(()) }
//! ```
//!
//! Which calls fail comes from one ChaCha generator seeded by the seed given, so a program
//! that makes the same calls in the same order sees the same failures (the error message
//! names the seed). Faults apply to the calls the program makes through the `Cloud`; a
//! backend's services calling each other inside (a local container writing its logs) are not
//! affected. Host failures (a crashed VM, a failed zone) are the local backend's
//! ([`crate::experiment::HostFaults`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Error, ErrorKind, Layer, Op, Result, Service};
use async_trait::async_trait;
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
    /// The operations the rule applies to (`put_item`, `get_object`: the trait methods'
    /// names); empty means every operation of the service.
    pub operations: Vec<String>,
}

impl FaultRule {
    /// Fail a share `rate` of calls with `Unavailable`.
    pub fn errors(rate: f64) -> Self {
        FaultRule {
            error_rate: rate,
            kind: ErrorKind::Unavailable,
            latency: Duration::ZERO,
            operations: Vec::new(),
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

    /// Applies the rule only to `operations` (the trait methods' names, as errors name them).
    pub fn operations<S: Into<String>>(mut self, operations: impl IntoIterator<Item = S>) -> Self {
        self.operations = operations.into_iter().map(Into::into).collect();
        self
    }

    fn applies_to(&self, operation: &str) -> bool {
        self.operations.is_empty() || self.operations.iter().any(|o| o == operation)
    }
}

#[derive(Debug)]
struct State {
    rng: ChaCha8Rng,
    all: Option<FaultRule>,
    services: HashMap<Service, FaultRule>,
    /// Rules added on top of those, each until withdrawn (a fault experiment's actions).
    injections: BTreeMap<u64, (Service, FaultRule)>,
    next_injection: u64,
    injected: u64,
}

/// A rule added with [`Faults::inject`], to withdraw it with [`Faults::withdraw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Injection(u64);

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
                injections: BTreeMap::new(),
                next_injection: 0,
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

    /// The rule of `service` (its own; `None` when it has none).
    pub fn rule(&self, service: Service) -> Option<FaultRule> {
        self.lock().services.get(&service).cloned()
    }

    /// The rule of every service without one of its own.
    pub fn rule_all(&self) -> Option<FaultRule> {
        self.lock().all.clone()
    }

    /// Puts back `rule` as `service`'s own rule (`None` removes it), as a fault experiment
    /// does when it reverts.
    pub fn restore(&self, service: Service, rule: Option<FaultRule>) {
        let mut s = self.lock();
        match rule {
            Some(rule) => s.services.insert(service, rule),
            None => s.services.remove(&service),
        };
    }

    /// Adds `rule` to the calls of `service` on top of every other rule, until withdrawn:
    /// rules injected so never replace one another or the service's own, so actions that
    /// overlap (two experiments, or an experiment and a test's own rule) each revert only
    /// what they added. Latencies add up; each rule that can fail draws on its own.
    pub fn inject(&self, service: Service, rule: FaultRule) -> Result<Injection> {
        check(&rule)?;
        let mut s = self.lock();
        s.next_injection += 1;
        let id = s.next_injection;
        s.injections.insert(id, (service, rule));
        Ok(Injection(id))
    }

    /// Removes a rule added with [`Faults::inject`] (nothing if it is gone already).
    pub fn withdraw(&self, injection: Injection) {
        self.lock().injections.remove(&injection.0);
    }

    /// How many injected rules are in force.
    pub fn injections(&self) -> usize {
        self.lock().injections.len()
    }

    /// Removes every rule, injected ones too: calls run normally again.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.all = None;
        s.services.clear();
        s.injections.clear();
    }

    /// How many errors have been injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }
}

fn check(rule: &FaultRule) -> Result<()> {
    let op = Op::new(Service::Backend, "set_fault");
    if !(0.0..=1.0).contains(&rule.error_rate) {
        return Err(op.invalid(
            "fault rule",
            format!("error_rate {} must be between 0 and 1", rule.error_rate),
        ));
    }
    if let Some(bad) = rule
        .operations
        .iter()
        .find(|o| o.is_empty() || !o.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    {
        return Err(op.invalid(
            "fault rule",
            format!(
                "operation {} is not an operation name (lower case and `_`, as `put_item`)",
                crate::error::quote(bad)
            ),
        ));
    }
    Ok(())
}

#[async_trait]
impl Layer for Faults {
    async fn before(&self, service: Service, operation: &'static str) -> Result<()> {
        let (latency, fail) = {
            let mut s = self.lock();
            let own = s.services.get(&service).or(s.all.as_ref());
            let rules: Vec<FaultRule> = own
                .into_iter()
                .chain(
                    s.injections
                        .values()
                        .filter(|(svc, _)| *svc == service)
                        .map(|(_, rule)| rule),
                )
                .filter(|r| r.applies_to(operation))
                .cloned()
                .collect();
            let mut latency = Duration::ZERO;
            let mut fail = None;
            for rule in rules {
                latency += rule.latency;
                // Draw only when a rule can fail, so adding latency alone does not shift
                // which later calls fail.
                if rule.error_rate > 0.0
                    && s.rng.random::<f64>() < rule.error_rate
                    && fail.is_none()
                {
                    fail = Some(rule.kind);
                }
            }
            if fail.is_some() {
                s.injected += 1;
            }
            (latency, fail)
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

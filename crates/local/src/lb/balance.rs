//! Choosing where a request goes: a target group by weight (smooth weighted round robin, as
//! nginx does, so the split is exact and deterministic without any randomness), then a target
//! within the group by the group's algorithm, among the targets that may get traffic.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use hyper::http::uri::Authority;
use mvi_core::lb::{Algorithm, TargetGroupSpec, TargetHealth};

use super::telemetry::Counters;

/// Health as an atomic byte, read on every request without a lock.
const INITIAL: u8 = 0;
const HEALTHY: u8 = 1;
const UNHEALTHY: u8 = 2;

/// A registered target and what the data plane and the health checker know about it.
#[derive(Debug)]
pub(crate) struct TargetRt {
    /// `ip:port`, as registered.
    pub addr: String,
    /// The parsed address.
    pub sock: SocketAddr,
    /// The address as a URI authority, parsed once for every forwarded request.
    pub authority: Authority,
    health: AtomicU8,
    /// Deregistered: finishing in-flight requests, gets no new ones.
    pub draining: AtomicBool,
    /// Its security groups do not admit the load balancer's (see `lb::Inner::blocked`).
    pub blocked: AtomicBool,
    /// Requests (HTTP) or connections (TCP) in flight.
    pub in_flight: AtomicUsize,
    /// Consecutive passed checks.
    pub passes: AtomicU32,
    /// Consecutive failed checks.
    pub failures: AtomicU32,
    /// The last check's result, for `target_health`.
    pub reason: Mutex<String>,
    /// Keep-alive connections to it that no request is using (see `proxy::Upstream`).
    pub idle: Mutex<Vec<super::proxy::Upstream>>,
}

impl TargetRt {
    /// A new target in the `Initial` state.
    pub fn new(addr: String, sock: SocketAddr, authority: Authority) -> Self {
        TargetRt {
            addr,
            sock,
            authority,
            health: AtomicU8::new(INITIAL),
            draining: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            passes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            reason: Mutex::new("initial health checks in progress".into()),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Its health as reported.
    pub fn health(&self) -> TargetHealth {
        if self.draining.load(Ordering::Acquire) {
            return TargetHealth::Draining;
        }
        match self.health.load(Ordering::Acquire) {
            HEALTHY => TargetHealth::Healthy,
            UNHEALTHY => TargetHealth::Unhealthy,
            _ => TargetHealth::Initial,
        }
    }

    /// Records a health state (`Healthy`, `Unhealthy` or `Initial`) and why.
    pub fn set_health(&self, health: TargetHealth, reason: impl Into<String>) {
        let v = match health {
            TargetHealth::Healthy => HEALTHY,
            TargetHealth::Unhealthy => UNHEALTHY,
            _ => INITIAL,
        };
        self.health.store(v, Ordering::Release);
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason.into();
    }

    /// The last check's result.
    pub fn reason(&self) -> String {
        if self.draining.load(Ordering::Acquire) {
            return "target is deregistering".into();
        }
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Passed health checks and is neither draining nor blocked.
    fn serves(&self) -> bool {
        self.reachable() && self.health.load(Ordering::Acquire) == HEALTHY
    }

    /// Could get traffic if the group fails open: not draining, not blocked.
    fn reachable(&self) -> bool {
        !self.draining.load(Ordering::Acquire) && !self.blocked.load(Ordering::Acquire)
    }
}

/// Counts a request in flight on a target for as long as it lives.
#[derive(Debug)]
pub(crate) struct InFlight(pub Arc<TargetRt>);

impl InFlight {
    /// Counts one more request on `target`.
    pub fn new(target: Arc<TargetRt>) -> Self {
        target.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(target)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A target group at run time.
#[derive(Debug)]
pub(crate) struct GroupRt {
    /// Its definition.
    pub spec: TargetGroupSpec,
    /// Registered and draining targets.
    pub targets: RwLock<Vec<Arc<TargetRt>>>,
    next: AtomicUsize,
}

impl GroupRt {
    /// A group with no targets.
    pub fn new(spec: TargetGroupSpec) -> Self {
        GroupRt {
            spec,
            targets: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
        }
    }

    /// A snapshot of the targets.
    pub fn targets(&self) -> Vec<Arc<TargetRt>> {
        self.targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The target for the next request, counted in flight on it, or `None` if no target may
    /// get traffic.
    ///
    /// The count is taken while the target list is read-locked, so a drain (which removes a
    /// target under the write lock once nothing is in flight) never misses a request that
    /// picked the target just before it was deregistered.
    ///
    /// Healthy targets get the traffic. If there is none, the group *fails open* as ELBv2
    /// does: every target that is not draining (and not blocked by security groups) gets
    /// traffic, whatever its health, so a health check that is wrong everywhere does not take
    /// the whole service down.
    pub fn pick(&self) -> Option<InFlight> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        let healthy = targets.iter().filter(|t| t.serves()).count();
        let (eligible, n): (fn(&TargetRt) -> bool, usize) = if healthy > 0 {
            (TargetRt::serves, healthy)
        } else {
            let open = targets.iter().filter(|t| t.reachable()).count();
            (TargetRt::reachable, open)
        };
        if n == 0 {
            return None;
        }
        // Counting and then walking avoids building a list on every request.
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut candidates = targets.iter().filter(|t| eligible(t));
        let chosen = match self.spec.algorithm {
            Algorithm::RoundRobin => candidates.nth(start).cloned(),
            Algorithm::LeastOutstandingRequests => {
                // Ties go to the first in turn from a rotating start, so equal targets share.
                let all: Vec<&Arc<TargetRt>> = candidates.collect();
                (0..n)
                    .filter_map(|i| all.get((start + i) % n))
                    .min_by_key(|t| t.in_flight.load(Ordering::Acquire))
                    .map(|t| Arc::clone(t))
            }
        };
        let picked = chosen.map(InFlight::new);
        drop(targets);
        picked
    }
}

/// A listener's target groups and weights, with the smooth weighted round robin's state.
#[derive(Debug)]
pub(crate) struct Weighted {
    entries: Vec<Entry>,
    total: i64,
    current: Mutex<Vec<i64>>,
}

/// One target group of a listener.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The group.
    pub group: Arc<GroupRt>,
    weight: i64,
    /// What its requests through this load balancer count in (its per-group metrics).
    pub counters: Arc<Counters>,
}

impl Weighted {
    /// Groups with their weights and the counters of their traffic.
    pub fn new(entries: Vec<(Arc<GroupRt>, u32, Arc<Counters>)>) -> Self {
        let entries: Vec<Entry> = entries
            .into_iter()
            .map(|(group, w, counters)| Entry {
                group,
                weight: i64::from(w),
                counters,
            })
            .collect();
        let total = entries.iter().map(|e| e.weight).sum();
        let current = Mutex::new(vec![0; entries.len()]);
        Weighted {
            entries,
            total,
            current,
        }
    }

    /// The group for the next request, or `None` if every weight is 0.
    pub fn pick(&self) -> Option<&Entry> {
        let mut positive = self.entries.iter().filter(|e| e.weight > 0);
        let first = positive.next()?;
        if positive.next().is_none() {
            // One group: no state to update, no lock on the hot path.
            return Some(first);
        }
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        for (e, c) in self.entries.iter().zip(current.iter_mut()) {
            *c += e.weight;
        }
        let mut best: Option<usize> = None;
        // The group with the largest current weight wins and gives back the total.
        for (i, (e, c)) in self.entries.iter().zip(current.iter()).enumerate() {
            if e.weight > 0 && best.is_none_or(|b| current.get(b).is_some_and(|bc| c > bc)) {
                best = Some(i);
            }
        }
        let b = best?;
        if let Some(c) = current.get_mut(b) {
            *c -= self.total;
        }
        self.entries.get(b)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mvi_core::lb::Protocol;

    fn group(name: &str, algorithm: Algorithm, n: u16) -> Arc<GroupRt> {
        let mut spec = TargetGroupSpec::new(name, Protocol::Http);
        spec.algorithm = algorithm;
        let g = GroupRt::new(spec);
        for i in 0..n {
            let addr = format!("127.0.0.1:{}", 9000 + i);
            let t = TargetRt::new(addr.clone(), addr.parse().unwrap(), addr.parse().unwrap());
            t.set_health(TargetHealth::Healthy, "ok");
            g.targets.write().unwrap().push(Arc::new(t));
        }
        Arc::new(g)
    }

    fn picks(g: &GroupRt, n: usize) -> Vec<String> {
        (0..n).map(|_| g.pick().unwrap().0.addr.clone()).collect()
    }

    #[test]
    fn round_robin_cycles_over_healthy_targets() {
        let g = group("g", Algorithm::RoundRobin, 3);
        g.targets()[1].set_health(TargetHealth::Unhealthy, "down");
        let p = picks(&g, 4);
        assert_eq!(
            p,
            [
                "127.0.0.1:9000",
                "127.0.0.1:9002",
                "127.0.0.1:9000",
                "127.0.0.1:9002"
            ]
        );
    }

    #[test]
    fn fails_open_when_nothing_is_healthy_but_never_to_draining() {
        let g = group("g", Algorithm::RoundRobin, 2);
        let t = g.targets();
        t[0].set_health(TargetHealth::Unhealthy, "down");
        t[1].set_health(TargetHealth::Initial, "new");
        let mut p = picks(&g, 4);
        p.sort();
        p.dedup();
        assert_eq!(p.len(), 2, "fail open spreads over both: {p:?}");
        t[0].draining.store(true, Ordering::Release);
        t[1].blocked.store(true, Ordering::Release);
        assert!(g.pick().is_none());
    }

    #[test]
    fn least_outstanding_requests_avoids_busy_targets() {
        let g = group("g", Algorithm::LeastOutstandingRequests, 3);
        let t = g.targets();
        let _busy0 = InFlight::new(t[0].clone());
        let _busy2 = InFlight::new(t[2].clone());
        let _busy2b = InFlight::new(t[2].clone());
        for _ in 0..5 {
            assert_eq!(g.pick().unwrap().0.addr, "127.0.0.1:9001");
        }
        drop(_busy0);
        let _b1 = InFlight::new(t[1].clone());
        let _b1b = InFlight::new(t[1].clone());
        assert_eq!(g.pick().unwrap().0.addr, "127.0.0.1:9000");
    }

    #[test]
    fn smooth_weighted_round_robin_is_exact_and_interleaved() {
        let a = group("a", Algorithm::RoundRobin, 1);
        let b = group("b", Algorithm::RoundRobin, 1);
        let w = Weighted::new(vec![(a, 3, Default::default()), (b, 1, Default::default())]);
        let names: Vec<&str> = (0..8)
            .map(|_| w.pick().unwrap().group.spec.name.as_str())
            .collect();
        assert_eq!(names, ["a", "a", "b", "a", "a", "a", "b", "a"]);
    }

    #[test]
    fn zero_weights_get_nothing() {
        let a = group("a", Algorithm::RoundRobin, 1);
        let b = group("b", Algorithm::RoundRobin, 1);
        let w = Weighted::new(vec![
            (a.clone(), 100, Default::default()),
            (b.clone(), 0, Default::default()),
        ]);
        assert!((0..10).all(|_| w.pick().unwrap().group.spec.name == "a"));
        let none = Weighted::new(vec![(a, 0, Default::default()), (b, 0, Default::default())]);
        assert!(none.pick().is_none());
    }
}

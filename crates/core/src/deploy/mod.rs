//! Deployments: how a container service moves from one revision to the next, and back when
//! the new one does not work.
//!
//! Every change of what a service runs (image, command, environment, secrets, resources,
//! health check) is a new numbered **revision**. A [`Deployment`] in the service's definition
//! says how the running replicas move to it:
//!
//! - [`Strategy::Rolling`] (the default): new replicas are started beside the old ones within
//!   [`Rolling::max_surge`], an old one is drained and stopped only when a new one is
//!   available, never leaving fewer than the desired count minus [`Rolling::max_unavailable`].
//!   The backend runs it (the local simulator itself; ECS's rolling update on AWS).
//! - [`Strategy::BlueGreen`]: the new revision runs as a second set of replicas in a preview
//!   target group, is checked, and then takes all traffic at once.
//! - [`Strategy::Canary`]: traffic moves to the new revision in weighted steps
//!   ([`TrafficShift`]; linear is equal steps), judged at each step by an [`Analysis`] of the
//!   load balancer's metrics.
//!
//! Whatever the strategy, a revision that does not become available within the
//! [`Deployment::progress_deadline`], whose replicas fail to start
//! [`circuit_breaker_threshold`] times, or whose analysis fails, is **rolled back**: the
//! service runs its last good revision again, the call fails with
//! [`ErrorKind::DeploymentFailed`](crate::ErrorKind::DeploymentFailed) naming the service,
//! the revision, the cause and the rollback, and the recorded definition is the one running.
//!
//! The rules every backend applies the same way (how a count or percent resolves, the
//! circuit breaker's threshold, checks of the definition) live here.

mod analysis;
mod traffic;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use analysis::Verdict;
pub use traffic::log_group;

use crate::cloud::Cloud;
use crate::common::Clock;
use crate::container::{ServiceInfo, ServiceSpec, same_revision};
use crate::error::{ErrorKind, Op, Result, Service};

/// Called with the service's name and one sentence for every step of a deployment.
pub type Progress = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Deploys `spec`: creates the service if it does not exist, else moves it to the new
/// definition by `spec.deployment` (see the module doc). Blue-green and canary drive the
/// Container, Load Balancer and Metric services of `cloud`; rolling is the Container
/// service's own.
pub async fn deploy(cloud: &Cloud, spec: ServiceSpec) -> Result<ServiceInfo> {
    Deployer::new(cloud).deploy(spec).await
}

/// Runs deployments with options: a progress callback, the clock analyses read metrics by.
#[derive(Clone)]
pub struct Deployer {
    cloud: Cloud,
    progress: Option<Progress>,
    clock: Option<Arc<dyn Clock>>,
}

impl std::fmt::Debug for Deployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployer")
            .field("backend", &self.cloud.backend())
            .finish_non_exhaustive()
    }
}

impl Deployer {
    /// Deployments on `cloud`.
    pub fn new(cloud: &Cloud) -> Self {
        Deployer {
            cloud: cloud.clone(),
            progress: None,
            clock: None,
        }
    }

    /// Calls `progress` with every step.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The clock analysis windows are read by (the backend's clock; the system's by
    /// default).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    fn controller(&self, name: &str) -> Result<traffic::Controller> {
        traffic::Controller::new(&self.cloud, name, self.progress.clone(), self.clock.clone())
    }

    /// Deploys `spec` (see [`deploy`]).
    pub async fn deploy(&self, spec: ServiceSpec) -> Result<ServiceInfo> {
        let op = Op::new(Service::Container, "deploy");
        validate(
            op,
            &spec.name,
            &spec.deployment,
            spec.target_group.as_deref(),
        )?;
        let containers = self.cloud.containers()?.clone();
        let current = match containers.describe_service(&spec.name).await {
            Ok(info) => info,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return containers.create_service(spec).await;
            }
            Err(e) => return Err(e),
        };
        if matches!(spec.deployment.strategy, Strategy::Rolling(_))
            || (same_revision(&current.spec, &spec) && current.rollout.is_none())
        {
            return self
                .watched(containers.update_service(spec.clone()), &spec.name)
                .await;
        }
        self.controller(&spec.name)?.run(spec).await
    }

    /// Promotes a blue-green deployment that waits for it (`auto_promote` off): all
    /// traffic moves to the new revision, then the scale-down delay and the clean-up run.
    pub async fn promote(&self, service: &str) -> Result<ServiceInfo> {
        self.controller(service)?.promote().await
    }

    /// Rolls back a blue-green or canary deployment in progress: all traffic back to the
    /// last good revision at once, the new replicas stopped.
    pub async fn rollback(&self, service: &str) -> Result<ServiceInfo> {
        self.controller(service)?.rollback().await
    }

    /// Runs `call` (a backend's own rolling update) while passing the service's new events
    /// to the progress callback.
    async fn watched(
        &self,
        call: impl std::future::Future<Output = Result<ServiceInfo>>,
        name: &str,
    ) -> Result<ServiceInfo> {
        let Some(progress) = self.progress.clone() else {
            return call.await;
        };
        let containers = self.cloud.containers()?.clone();
        let seen = containers
            .describe_service(name)
            .await
            .map(|i| i.events.last().map(|e| (e.at, e.message.clone())))
            .unwrap_or_default();
        let last_seen = std::sync::Mutex::new(seen);
        let watcher = async {
            loop {
                let last = last_seen.lock().map(|l| l.clone()).unwrap_or_default();
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Ok(info) = containers.describe_service(name).await {
                    let start = last
                        .as_ref()
                        .and_then(|l| {
                            info.events
                                .iter()
                                .position(|e| (e.at, e.message.clone()) == *l)
                                .map(|i| i + 1)
                        })
                        .unwrap_or(0);
                    for e in &info.events[start..] {
                        progress(name, &e.message);
                    }
                    if let (Some(e), Ok(mut l)) = (info.events.last(), last_seen.lock()) {
                        *l = Some((e.at, e.message.clone()));
                    }
                }
            }
        };
        let result = tokio::select! {
            r = call => r,
            () = watcher => unreachable!("the watcher never ends"),
        };
        // What happened after the last look: the end of the deployment.
        if let Ok(info) = containers.describe_service(name).await {
            let start = last_seen
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .and_then(|l| {
                    info.events
                        .iter()
                        .position(|e| (e.at, e.message.clone()) == l)
                        .map(|i| i + 1)
                })
                .unwrap_or(0);
            for e in &info.events[start..] {
                progress(name, &e.message);
            }
        }
        result
    }
}

/// A number of replicas, absolute or as a percent of the desired count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Count {
    /// This many replicas.
    Replicas(u32),
    /// This percent of the desired count.
    Percent(u32),
}

impl Count {
    /// The count for `desired` replicas, a percent rounded up (`up`) or down.
    pub fn resolve(self, desired: u32, up: bool) -> u32 {
        match self {
            Count::Replicas(n) => n,
            Count::Percent(p) => {
                let scaled = u64::from(desired) * u64::from(p);
                let n = if up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        }
    }
}

/// A rolling update's bounds (Kubernetes' names; ECS's defaults: minimum healthy 100 %,
/// maximum 200 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Rolling {
    /// Replicas that may run above the desired count during the update (rounded up).
    pub max_surge: Count,
    /// Replicas below the desired count that may be unavailable during the update (rounded
    /// down).
    pub max_unavailable: Count,
}

impl Default for Rolling {
    fn default() -> Self {
        Rolling {
            max_surge: Count::Percent(100),
            max_unavailable: Count::Percent(0),
        }
    }
}

impl Rolling {
    /// A rolling update with these bounds.
    pub fn new(max_surge: Count, max_unavailable: Count) -> Self {
        Rolling {
            max_surge,
            max_unavailable,
        }
    }

    /// `(surge, unavailable)` for `desired` replicas. When both resolve to 0 (a small
    /// service with percent bounds), one replica may be unavailable, as Kubernetes does, so
    /// the update can progress.
    pub fn bounds(&self, desired: u32) -> (u32, u32) {
        let surge = self.max_surge.resolve(desired, true);
        let unavailable = self.max_unavailable.resolve(desired, false).min(desired);
        if surge == 0 && unavailable == 0 {
            (0, 1.min(desired))
        } else {
            (surge, unavailable)
        }
    }
}

/// One step of a traffic shift: the new revision's share of the traffic, held for a bake
/// time while it is analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Percent of the traffic to the new revision (1–100).
    pub weight: u32,
    /// How long the weight is held (and analysed) before the next step.
    pub bake: Duration,
}

/// A metric condition that must hold at every analysis (a custom check).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricCondition {
    /// A name for messages (`"error budget"`).
    pub name: String,
    /// The metric.
    pub metric: crate::metric::MetricId,
    /// The statistic over the analysis interval.
    pub statistic: crate::metric::Statistic,
    /// The comparison that makes the check *fail*.
    pub fails_when: crate::metric::Comparison,
    /// The threshold.
    pub threshold: f64,
}

/// How a new revision's traffic is judged: the canary target group's success rate and p99
/// latency from the load balancer's metrics, and any custom condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Analysis {
    /// Time between analyses (and the window each one reads).
    pub interval: Duration,
    /// The least share of the new revision's requests that may not be 5xx (0–1).
    pub min_success_rate: f64,
    /// The highest p99 response time allowed.
    pub max_p99: Duration,
    /// Fewer requests than this in a window is too few to judge: the analysis waits.
    pub min_requests: u64,
    /// Failed analyses tolerated; one more aborts (Argo Rollouts' `failureLimit`).
    pub failure_limit: u32,
    /// Custom conditions.
    pub conditions: Vec<MetricCondition>,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            interval: Duration::from_secs(60),
            min_success_rate: 0.99,
            max_p99: Duration::from_millis(500),
            min_requests: 20,
            failure_limit: 0,
            conditions: Vec::new(),
        }
    }
}

/// Blue-green: the new revision runs as a second set of replicas in a preview target group,
/// then takes all traffic at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BlueGreen {
    /// The target group the new replicas register with before promotion.
    pub preview_target_group: String,
    /// A path that must answer 2xx through a listener forwarding to the preview target
    /// group before promotion.
    pub preview_path: Option<String>,
    /// An analysis of the preview target group's traffic before promotion.
    pub analysis: Option<Analysis>,
    /// Promote as soon as the checks pass (else wait for an explicit promote).
    pub auto_promote: bool,
    /// How long the old replicas stay after promotion, during which a rollback moves the
    /// traffic back at once.
    pub scale_down_delay: Duration,
}

impl BlueGreen {
    /// Blue-green through `preview_target_group`: no checks, promoted at once, old replicas
    /// kept 30 s.
    pub fn new(preview_target_group: impl Into<String>) -> Self {
        BlueGreen {
            preview_target_group: preview_target_group.into(),
            preview_path: None,
            analysis: None,
            auto_promote: true,
            scale_down_delay: Duration::from_secs(30),
        }
    }
}

/// Canary or linear: the traffic moves to the new revision in weighted steps between the
/// service's target group and a canary target group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrafficShift {
    /// The target group the new replicas register with while traffic shifts.
    pub canary_target_group: String,
    /// The steps, in order; the last is 100 %.
    pub steps: Vec<Step>,
    /// The analysis run at every step.
    pub analysis: Analysis,
}

impl TrafficShift {
    /// A canary: `percent` of the traffic for `bake`, then all of it.
    pub fn canary(canary_target_group: impl Into<String>, percent: u32, bake: Duration) -> Self {
        TrafficShift {
            canary_target_group: canary_target_group.into(),
            steps: vec![
                Step {
                    weight: percent,
                    bake,
                },
                Step {
                    weight: 100,
                    bake: Duration::ZERO,
                },
            ],
            analysis: Analysis::default(),
        }
    }

    /// Linear: `percent` more of the traffic every `every`, until all of it.
    pub fn linear(canary_target_group: impl Into<String>, percent: u32, every: Duration) -> Self {
        let step = percent.clamp(1, 100);
        let mut steps: Vec<Step> = (1..)
            .map(|i| step.saturating_mul(i))
            .take_while(|w| *w < 100)
            .map(|weight| Step {
                weight,
                bake: every,
            })
            .collect();
        steps.push(Step {
            weight: 100,
            bake: Duration::ZERO,
        });
        TrafficShift {
            canary_target_group: canary_target_group.into(),
            steps,
            analysis: Analysis::default(),
        }
    }

    /// ECS's preset: 5 % for 10 minutes, then all.
    pub fn canary_5_percent_10_minutes(canary_target_group: impl Into<String>) -> Self {
        Self::canary(canary_target_group, 5, Duration::from_secs(600))
    }

    /// ECS's preset: 10 % more every 6 minutes.
    pub fn linear_10_percent_every_6_minutes(canary_target_group: impl Into<String>) -> Self {
        Self::linear(canary_target_group, 10, Duration::from_secs(360))
    }
}

/// How a service moves to a new revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Strategy {
    /// Replace replicas in turn (the default).
    Rolling(Rolling),
    /// Run the new revision beside the old one, then switch all traffic at once.
    BlueGreen(BlueGreen),
    /// Move traffic in weighted steps, analysed at each.
    Canary(TrafficShift),
}

impl Strategy {
    /// `rolling`, `blue-green` or `canary`, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Rolling(_) => "rolling",
            Strategy::BlueGreen(_) => "blue-green",
            Strategy::Canary(_) => "canary",
        }
    }
}

/// A service's deployment settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Deployment {
    /// How replicas move to a new revision.
    pub strategy: Strategy,
    /// A revision whose replicas are not all available this long after the deployment
    /// started (or after its last progress) is rolled back.
    pub progress_deadline: Duration,
}

impl Default for Deployment {
    fn default() -> Self {
        Deployment {
            strategy: Strategy::Rolling(Rolling::default()),
            progress_deadline: Duration::from_secs(600),
        }
    }
}

impl Deployment {
    /// A deployment by `strategy` with the default progress deadline (10 minutes).
    pub fn new(strategy: Strategy) -> Self {
        Deployment {
            strategy,
            ..Deployment::default()
        }
    }

    /// Sets the progress deadline.
    pub fn progress_deadline(mut self, deadline: Duration) -> Self {
        self.progress_deadline = deadline;
        self
    }

    /// The rolling bounds, when the strategy is rolling.
    pub fn rolling(&self) -> Option<&Rolling> {
        match &self.strategy {
            Strategy::Rolling(r) => Some(r),
            _ => None,
        }
    }
}

/// Failed replica starts of a new revision that trip the circuit breaker: half the desired
/// count, at least 3, at most 200 (ECS's deployment circuit breaker).
pub fn circuit_breaker_threshold(desired: u32) -> u32 {
    desired.div_ceil(2).clamp(3, 200)
}

/// Checks a deployment's settings for service `name` (the rules both backends apply before
/// anything changes).
pub fn validate(op: Op, name: &str, d: &Deployment, target_group: Option<&str>) -> Result<()> {
    if d.progress_deadline.is_zero() {
        return Err(op.invalid(name, "the progress deadline must be above 0"));
    }
    let check_analysis = |a: &Analysis| -> Result<()> {
        if a.interval.is_zero() {
            return Err(op.invalid(name, "the analysis interval must be above 0"));
        }
        if !(0.0..=1.0).contains(&a.min_success_rate) {
            return Err(op.invalid(
                name,
                format!(
                    "min_success_rate is a share from 0 to 1, not {}",
                    a.min_success_rate
                ),
            ));
        }
        Ok(())
    };
    let traffic_group = |strategy: &str, group: &str| -> Result<()> {
        let Some(stable) = target_group else {
            return Err(op.invalid(
                name,
                format!("a {strategy} deployment moves load balancer traffic: the service needs a target group"),
            ));
        };
        crate::lb::validate_name(op, "target group", group)?;
        if group == stable {
            return Err(op.invalid(
                name,
                format!("the {strategy} target group {group:?} must differ from the service's target group"),
            ));
        }
        Ok(())
    };
    match &d.strategy {
        Strategy::Rolling(r) => {
            if let Count::Percent(p) = r.max_unavailable
                && p > 100
            {
                return Err(
                    op.invalid(name, format!("max_unavailable is at most 100 %, not {p} %"))
                );
            }
            if r.max_surge == Count::Replicas(0) && r.max_unavailable == Count::Replicas(0) {
                return Err(op.invalid(
                    name,
                    "max_surge and max_unavailable cannot both be 0: no replica could be replaced",
                ));
            }
        }
        Strategy::BlueGreen(b) => {
            traffic_group("blue-green", &b.preview_target_group)?;
            if let Some(p) = &b.preview_path
                && !p.starts_with('/')
            {
                return Err(op.invalid(name, format!("the preview path {p:?} must start with '/'")));
            }
            if let Some(a) = &b.analysis {
                check_analysis(a)?;
            }
        }
        Strategy::Canary(c) => {
            traffic_group("canary", &c.canary_target_group)?;
            check_analysis(&c.analysis)?;
            if c.steps.is_empty() {
                return Err(op.invalid(name, "a canary needs at least one step"));
            }
            let mut last = 0;
            for s in &c.steps {
                if s.weight == 0 || s.weight > 100 || s.weight <= last {
                    return Err(op.invalid(
                        name,
                        format!("canary step weights rise from 1 to 100 %; {} % after {last} % does not", s.weight),
                    ));
                }
                last = s.weight;
            }
            if last != 100 {
                return Err(op.invalid(name, "the last canary step must be 100 %"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Service;

    #[test]
    fn counts_resolve_as_ecs_and_kubernetes_round() {
        assert_eq!(Count::Percent(100).resolve(3, true), 3);
        assert_eq!(Count::Percent(25).resolve(3, true), 1);
        assert_eq!(Count::Percent(25).resolve(3, false), 0);
        assert_eq!(Count::Replicas(2).resolve(10, false), 2);
        assert_eq!(Rolling::default().bounds(3), (3, 0));
        let small = Rolling::new(Count::Percent(0), Count::Percent(25));
        assert_eq!(small.bounds(2), (0, 1), "both zero: one may be unavailable");
        assert_eq!(small.bounds(0), (0, 0));
    }

    #[test]
    fn circuit_breaker_threshold_is_half_at_least_3_at_most_200() {
        assert_eq!(circuit_breaker_threshold(1), 3);
        assert_eq!(circuit_breaker_threshold(7), 4);
        assert_eq!(circuit_breaker_threshold(1000), 200);
    }

    #[test]
    fn presets_and_linear_steps() {
        let l = TrafficShift::linear_10_percent_every_6_minutes("c");
        let weights: Vec<u32> = l.steps.iter().map(|s| s.weight).collect();
        assert_eq!(weights, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
        assert_eq!(l.steps[0].bake, Duration::from_secs(360));
        let c = TrafficShift::canary_5_percent_10_minutes("c");
        assert_eq!(c.steps.len(), 2);
        assert_eq!((c.steps[0].weight, c.steps[0].bake.as_secs()), (5, 600));
        let thirds = TrafficShift::linear("c", 33, Duration::from_secs(1));
        let weights: Vec<u32> = thirds.steps.iter().map(|s| s.weight).collect();
        assert_eq!(weights, [33, 66, 99, 100]);
    }

    #[test]
    fn bad_settings_are_refused_naming_what_is_wrong() {
        let op = Op::new(Service::Container, "update_service");
        let ok = |d: &Deployment, tg| validate(op, "web", d, tg);
        assert!(ok(&Deployment::default(), None).is_ok());
        let both_zero = Deployment::new(Strategy::Rolling(Rolling::new(
            Count::Replicas(0),
            Count::Replicas(0),
        )));
        assert!(
            ok(&both_zero, None)
                .unwrap_err()
                .message()
                .contains("both be 0")
        );
        let canary = Deployment::new(Strategy::Canary(TrafficShift::canary(
            "web-canary",
            5,
            Duration::from_secs(1),
        )));
        assert!(
            ok(&canary, None)
                .unwrap_err()
                .message()
                .contains("needs a target group")
        );
        assert!(ok(&canary, Some("web")).is_ok());
        let same = Deployment::new(Strategy::BlueGreen(BlueGreen::new("web")));
        assert!(
            ok(&same, Some("web"))
                .unwrap_err()
                .message()
                .contains("must differ")
        );
        let mut falling = TrafficShift::canary("c", 50, Duration::from_secs(1));
        falling.steps.insert(
            1,
            Step {
                weight: 20,
                bake: Duration::ZERO,
            },
        );
        let e = ok(&Deployment::new(Strategy::Canary(falling)), Some("web")).unwrap_err();
        assert!(e.message().contains("20 % after 50 %"), "{e}");
        assert!(
            ok(
                &Deployment::default().progress_deadline(Duration::ZERO),
                None
            )
            .is_err()
        );
    }
}

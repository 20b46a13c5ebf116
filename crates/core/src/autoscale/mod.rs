//! Autoscaling: a container service between a minimum and a maximum number of replicas,
//! driven by metrics already in the Metric service, with the Kubernetes HPA's algorithm
//! ([`hpa`]): target tracking on the replicas' CPU, on requests per replica through the load
//! balancer, or on any metric with a statistic; stabilization windows and scaling policies;
//! scheduled changes of the bounds before a known peak.
//!
//! [`AutoScaler`] is the controller. It runs on any backend that has the Containers and
//! Metrics services (and Load Balancers for requests per replica): each
//! [`AutoScaler::evaluate`] reads the last evaluation period of every metric on the given
//! clock, decides, and sets the service's replica count; [`AutoScaler::run`] evaluates every
//! period until dropped. Every decision is recorded: returned (a [`Decision`]), sent to
//! subscribers, written as a line to the log group `/mvi/autoscale/<service>`, and as the
//! metrics `DesiredReplicas` and `CurrentReplicas` (namespace `mvi/AutoScaling`, dimension
//! `Service`), so a user can see why it scaled and graph it.
//!
//! A deployment in progress is not fought, as Application Auto Scaling does not fight ECS's:
//! while the service reports a rollout, a scale-in is recorded and waits (the rollout's own
//! surge and drain are not demand), and a scale-out goes ahead: the backend applies the new
//! count to the revision being rolled out.

pub mod hpa;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cloud::Cloud;
use crate::common::{Clock, Timestamp};
use crate::container::{Containers, InstanceState, ServiceInfo};
use crate::error::{Op, Result, Service};
use crate::lb::{LoadBalancers, metric_names};
use crate::log::{LogEvent, Logs};
use crate::metric::{Datum, GetStatistics, MetricId, Metrics, Statistic, Unit};

pub use hpa::{
    Behavior, Limit, Policy, PolicyKind, Reading, Recommender, Rules, Sample, Select, TOLERANCE,
};

fn op(operation: &'static str) -> Op {
    Op::new(Service::Container, operation)
}

/// The namespace of the scalers' own metrics.
pub const NAMESPACE: &str = "mvi/AutoScaling";

/// What a scaler tracks, and the value it keeps it at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricTarget {
    /// The replicas' average CPU utilization, in percent of their reservation (the samples
    /// of `CPUUtilization` in `mvi/Container`, dimensions `Service` and `Replica`).
    Cpu {
        /// The utilization to keep, percent.
        target: f64,
    },
    /// Requests per replica per second through the load balancers forwarding to
    /// `target_group` (their `RequestCount`).
    RequestsPerReplica {
        /// The target group.
        target_group: String,
        /// Requests per second per replica to keep.
        target: f64,
    },
    /// Any metric with a statistic over the evaluation period.
    Custom {
        /// The metric.
        metric: MetricId,
        /// The statistic (a `Sum` of a count: per second).
        statistic: Statistic,
        /// The value to keep.
        target: f64,
        /// Whether the target is per replica (the value is divided among them, as
        /// requests are) or for the whole service (a queue's age, a latency).
        per_replica: bool,
    },
}

/// A scheduled change of the bounds: from each time the cron expression fires (five fields,
/// UTC, as container schedules), the minimum and the maximum given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledAction {
    /// Its name: 1–64 letters, digits, hyphens and underscores, unique in the scaler.
    pub name: String,
    /// When: `0 8 * * 1-5` is weekdays at 08:00 UTC.
    pub cron: String,
    /// The new minimum, if it changes.
    pub min: Option<u32>,
    /// The new maximum, if it changes.
    pub max: Option<u32>,
}

/// An autoscaler's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScalerSpec {
    /// The container service it scales.
    pub service: String,
    /// At least this many replicas.
    pub min: u32,
    /// At most this many.
    pub max: u32,
    /// What it tracks; several: the largest proposal wins.
    pub metrics: Vec<MetricTarget>,
    /// How fast it may scale (HPA's defaults unless set).
    #[serde(default)]
    pub behavior: Behavior,
    /// Scheduled changes of the bounds.
    #[serde(default)]
    pub schedules: Vec<ScheduledAction>,
    /// How often it evaluates, and the window of metrics each evaluation reads (15 s).
    pub period: Duration,
    /// No change while the ratio of value to target is within this of 1 (0.1).
    pub tolerance: f64,
}

impl ScalerSpec {
    /// Scales `service` between `min` and `max` replicas, with HPA's defaults.
    pub fn new(service: impl Into<String>, min: u32, max: u32) -> Self {
        ScalerSpec {
            service: service.into(),
            min,
            max,
            metrics: Vec::new(),
            behavior: Behavior::default(),
            schedules: Vec::new(),
            period: Duration::from_secs(15),
            tolerance: hpa::TOLERANCE,
        }
    }

    /// Tracks `metric` too.
    pub fn track(mut self, metric: MetricTarget) -> Self {
        self.metrics.push(metric);
        self
    }

    /// Sets the behavior.
    pub fn behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = behavior;
        self
    }

    /// Adds a scheduled action.
    pub fn schedule(mut self, action: ScheduledAction) -> Self {
        self.schedules.push(action);
        self
    }

    /// Sets the evaluation period.
    pub fn period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// Checks the definition whole: bounds, targets, policies, cron expressions.
    pub fn check(&self) -> Result<()> {
        let op = op("put_scaler");
        let bad = |why: String| Err(op.invalid(&self.service, why));
        if self.min > self.max {
            return bad(format!("min {} is above max {}", self.min, self.max));
        }
        if self.max == 0 {
            return bad("max must be at least 1".into());
        }
        if self.metrics.is_empty() && self.schedules.is_empty() {
            return bad("a scaler tracks at least one metric or has a schedule".into());
        }
        for m in &self.metrics {
            let target = match m {
                MetricTarget::Cpu { target }
                | MetricTarget::RequestsPerReplica { target, .. }
                | MetricTarget::Custom { target, .. } => *target,
            };
            if !(target.is_finite() && target > 0.0) {
                return bad(format!("a metric's target must be above 0, not {target}"));
            }
        }
        if self.period < Duration::from_secs(1) {
            return bad(format!(
                "the period must be at least 1 s, not {:?}",
                self.period
            ));
        }
        if !(0.0..1.0).contains(&self.tolerance) {
            return bad(format!(
                "the tolerance must be in [0, 1), not {}",
                self.tolerance
            ));
        }
        for (dir, rules) in [
            ("scale_up", &self.behavior.scale_up),
            ("scale_down", &self.behavior.scale_down),
        ] {
            for p in &rules.policies {
                if p.value == 0 || p.period.is_zero() || p.period > Duration::from_secs(1800) {
                    return bad(format!(
                        "{dir}: a policy needs a value above 0 and a period of 1 s to 30 min ({p:?})"
                    ));
                }
            }
            if rules.stabilization > Duration::from_secs(3600) {
                return bad(format!("{dir}: the stabilization window is at most 1 hour"));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &self.schedules {
            crate::container::validate_name(op, "scheduled action", &s.name, 64)?;
            if !names.insert(s.name.as_str()) {
                return bad(format!("two scheduled actions are named {:?}", s.name));
            }
            crate::container::parse_cron(op, &s.name, &s.cron)?;
            if let (Some(lo), Some(hi)) = (s.min, s.max)
                && lo > hi
            {
                return bad(format!("schedule {:?}: min {lo} is above max {hi}", s.name));
            }
        }
        Ok(())
    }
}

/// One evaluation: what was read, what was decided and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// When (the clock's time).
    pub at: Timestamp,
    /// The service.
    pub service: String,
    /// Replicas before.
    pub current: u32,
    /// Each metric's proposal (none when it had no data), in the order of the spec.
    pub proposals: Vec<Option<u32>>,
    /// The replica count set (or kept).
    pub desired: u32,
    /// Why it is that.
    pub limit: Limit,
    /// The bounds in force.
    pub min: u32,
    /// The bounds in force.
    pub max: u32,
    /// Whether the count was changed.
    pub scaled: bool,
    /// Why nothing was done, when the scaler held back (a deployment in progress, no data).
    pub held: Option<String>,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proposals: Vec<String> = self
            .proposals
            .iter()
            .map(|p| p.map_or("-".into(), |n| n.to_string()))
            .collect();
        write!(
            f,
            "{}: {} → {} replicas ({:?}; proposals [{}]; bounds {}..={})",
            self.service,
            self.current,
            self.desired,
            self.limit,
            proposals.join(", "),
            self.min,
            self.max
        )?;
        if let Some(why) = &self.held {
            write!(f, "; held: {why}")?;
        }
        Ok(())
    }
}

/// A scaler as a backend runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalerInfo {
    /// Its definition.
    pub spec: ScalerSpec,
    /// The bounds in force (a scheduled action changes them).
    pub min: u32,
    /// The bounds in force.
    pub max: u32,
    /// When it last evaluated.
    pub last: Option<Timestamp>,
    /// Its last decisions, oldest first (at most [`HISTORY`]).
    pub decisions: Vec<Decision>,
}

impl Controller {
    /// What [`crate::Containers::describe_scaler`] reports of this controller.
    pub fn info(&self) -> ScalerInfo {
        ScalerInfo {
            spec: self.spec.clone(),
            min: self.bounds.0,
            max: self.bounds.1,
            last: self.last,
            decisions: self.history(),
        }
    }

    /// Whether it is due at `now`: never evaluated, or a period of whole seconds since the
    /// last time (so each evaluation reads the period after the last one's, see `window`).
    pub fn due(&self, now: Timestamp) -> bool {
        self.last.is_none_or(|t| {
            (second(now) - second(t)).to_std().unwrap_or(Duration::ZERO) >= self.spec.period
        })
    }
}

/// The services a scaler reads and drives.
#[derive(Debug, Clone)]
pub struct Services {
    /// The service scaled.
    pub containers: Arc<dyn Containers>,
    /// Where the metrics are read, and its own written.
    pub metrics: Arc<dyn Metrics>,
    /// For requests per replica.
    pub load_balancers: Option<Arc<dyn LoadBalancers>>,
    /// Where the decisions are logged.
    pub logs: Option<Arc<dyn Logs>>,
}

impl Services {
    /// `cloud`'s (Containers and Metrics needed; Load Balancers and Logs if it has them).
    pub fn of(cloud: &Cloud) -> Result<Self> {
        Ok(Services {
            containers: cloud.containers()?.clone(),
            metrics: cloud.metrics()?.clone(),
            load_balancers: cloud.load_balancers().ok().cloned(),
            logs: cloud.logs().ok().cloned(),
        })
    }
}

/// Decisions a controller keeps.
pub const HISTORY: usize = 20;

/// One scaler's state between evaluations: its spec, the HPA history, the bounds in force,
/// its last decisions. A backend that runs scalers keeps one per service and evaluates it
/// every period; [`AutoScaler`] pairs one with services and a clock.
#[derive(Debug, Clone)]
pub struct Controller {
    spec: ScalerSpec,
    recommender: Option<Recommender>,
    bounds: (u32, u32),
    last: Option<Timestamp>,
    history: std::collections::VecDeque<Decision>,
}

impl Controller {
    /// A controller of `spec` (checked whole).
    pub fn new(spec: ScalerSpec) -> Result<Self> {
        spec.check()?;
        Ok(Controller {
            bounds: (spec.min, spec.max),
            spec,
            recommender: None,
            last: None,
            history: Default::default(),
        })
    }

    /// The spec.
    pub fn spec(&self) -> &ScalerSpec {
        &self.spec
    }

    /// The bounds in force (the spec's, or the last scheduled action's).
    pub fn bounds(&self) -> (u32, u32) {
        self.bounds
    }

    /// When it last evaluated.
    pub fn last(&self) -> Option<Timestamp> {
        self.last
    }

    /// The last [`HISTORY`] decisions, oldest first.
    pub fn history(&self) -> Vec<Decision> {
        self.history.iter().cloned().collect()
    }

    /// One evaluation at `now`: applies the scheduled actions due, reads the metrics of the
    /// last period, decides with the HPA algorithm, sets the replica count if it changes,
    /// and records the decision (log line, metrics, history).
    pub async fn evaluate(&mut self, s: &Services, now: Timestamp) -> Result<Decision> {
        self.apply_schedules(now);
        let info = s.containers.describe_service(&self.spec.service).await?;
        let current = info.spec.replicas;
        let (min, max) = self.bounds;
        let recommender = self
            .recommender
            .get_or_insert_with(|| Recommender::new(now, current));
        let mut proposals = Vec::with_capacity(self.spec.metrics.len());
        for m in &self.spec.metrics {
            proposals.push(
                propose(
                    &self.spec,
                    m,
                    &info,
                    &*s.metrics,
                    s.load_balancers.as_deref(),
                    now,
                )
                .await?,
            );
        }
        let known: Vec<u32> = proposals.iter().flatten().copied().collect();
        let missing = known.len() < proposals.len();
        // HPA: with a metric missing, only a scale-up proceeds; with none, nothing (but the
        // bounds, which hold whatever the metrics).
        let mut held = None;
        let wanted = match known.iter().max() {
            Some(&n) if missing && n < current => {
                held = Some("a metric has no data: no scale-down".to_string());
                current
            }
            Some(&n) => n,
            None => {
                if !self.spec.metrics.is_empty() {
                    held = Some("no metric has data".to_string());
                }
                current
            }
        };
        let (desired, limit) =
            recommender.next(now, current, wanted, min, max, &self.spec.behavior);
        let mut scaled = false;
        if desired != current {
            // As Application Auto Scaling does for ECS: scaling in waits for a deployment to
            // finish (its drain and surge are not demand); scaling out does not (the
            // backend applies the count to the revision being deployed).
            if info.rollout.is_some() && desired < current {
                held = Some(format!(
                    "a deployment is in progress; scaling in to {desired} replicas waits for it to finish"
                ));
            } else {
                s.containers
                    .scale_service(&self.spec.service, desired)
                    .await?;
                scaled = true;
            }
        }
        let decision = Decision {
            at: now,
            service: self.spec.service.clone(),
            current,
            proposals,
            desired: if scaled || held.is_none() {
                desired
            } else {
                current
            },
            limit,
            min,
            max,
            scaled,
            held,
        };
        self.last = Some(now);
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(decision.clone());
        record(s, &decision).await;
        Ok(decision)
    }

    /// Applies the scheduled actions whose cron fired since the last evaluation.
    fn apply_schedules(&mut self, now: Timestamp) {
        let since = self.last.unwrap_or(now - chrono::Duration::seconds(1));
        for a in &self.spec.schedules {
            // Checked when the controller was made.
            let Ok(cron) = crate::container::parse_cron(op("evaluate"), &a.name, &a.cron) else {
                continue;
            };
            let fired = cron
                .find_next_occurrence(&since, false)
                .is_ok_and(|t| t <= now);
            if fired {
                let (mut lo, mut hi) = self.bounds;
                if let Some(m) = a.min {
                    lo = m;
                }
                if let Some(m) = a.max {
                    hi = m;
                }
                self.bounds = (lo.min(hi), hi.max(lo));
                tracing::info!(service = %self.spec.service, action = %a.name, min = lo, max = hi, "scheduled bounds");
            }
        }
    }
}

/// Logs and graphs a decision. Best effort: a failure is traced, never the evaluation's.
async fn record(s: &Services, d: &Decision) {
    if let Some(logs) = &s.logs {
        let group = log_group(&d.service);
        let line = serde_json::json!({
            "message": d.to_string(), "current": d.current, "desired": d.desired,
            "limit": d.limit, "proposals": d.proposals, "scaled": d.scaled, "held": d.held,
        })
        .to_string();
        let put = async {
            match logs.create_group(&group, None).await {
                Ok(_) => {}
                Err(e) if e.kind() == crate::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            match logs.create_stream(&group, "decisions").await {
                Ok(_) => {}
                Err(e) if e.kind() == crate::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            logs.put_events(&group, "decisions", vec![LogEvent::new(d.at, line)])
                .await
        };
        if let Err(e) = put.await {
            tracing::warn!(service = %d.service, error = %e, "autoscaler decision not logged");
        }
    }
    let data = [
        ("DesiredReplicas", d.desired),
        ("CurrentReplicas", d.current),
    ]
    .into_iter()
    .map(|(name, v)| {
        Datum::new(name, f64::from(v), d.at)
            .unit(Unit::Count)
            .dimension("Service", d.service.clone())
    })
    .collect();
    if let Err(e) = s.metrics.put_data(NAMESPACE, data).await {
        tracing::warn!(service = %d.service, error = %e, "autoscaler metrics not recorded");
    }
}

/// A scaler run by the program itself: a [`Controller`] with a cloud's services and a clock
/// (see the module doc).
#[derive(Debug)]
pub struct AutoScaler {
    controller: Controller,
    services: Services,
    clock: Arc<dyn Clock>,
    events: tokio::sync::broadcast::Sender<Decision>,
}

impl AutoScaler {
    /// A controller of `spec` on `cloud`, reading time from `clock` (the cloud's: a manual
    /// clock in tests). Checks the spec and that the service exists.
    pub async fn new(cloud: &Cloud, spec: ScalerSpec, clock: Arc<dyn Clock>) -> Result<Self> {
        let controller = Controller::new(spec)?;
        let services = Services::of(cloud)?;
        services
            .containers
            .describe_service(&controller.spec.service)
            .await?;
        let (events, _) = tokio::sync::broadcast::channel(256);
        Ok(AutoScaler {
            controller,
            services,
            clock,
            events,
        })
    }

    /// Every decision from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Decision> {
        self.events.subscribe()
    }

    /// The spec.
    pub fn spec(&self) -> &ScalerSpec {
        self.controller.spec()
    }

    /// The bounds in force (the spec's, or the last scheduled action's).
    pub fn bounds(&self) -> (u32, u32) {
        self.controller.bounds()
    }

    /// The controller (its history).
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// Evaluates every period (of the tokio clock) until the future is dropped; a failed
    /// evaluation is logged and the next one tries again.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.controller.spec.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.evaluate().await {
                tracing::warn!(service = %self.controller.spec.service, error = %e, "autoscaler evaluation failed");
            }
        }
    }

    /// One evaluation at the clock's time (see [`Controller::evaluate`]); the decision is
    /// also sent to subscribers.
    pub async fn evaluate(&mut self) -> Result<Decision> {
        let d = self
            .controller
            .evaluate(&self.services, self.clock.now())
            .await?;
        let _ = self.events.send(d.clone());
        Ok(d)
    }
}

/// The log group a scaler writes its decisions to.
pub fn log_group(service: &str) -> String {
    format!("/mvi/autoscale/{service}")
}

/// `t` truncated to its second.
fn second(t: Timestamp) -> Timestamp {
    chrono::DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// The statistics of `metric` over the period of whole seconds that ended at the start of
/// the current second: the current second is not over, so the next evaluation reads it.
/// Evaluations a period apart (see [`Controller::due`]) read each second once, and a point
/// is read at most one period after it was made.
async fn window(
    metrics: &dyn Metrics,
    metric: MetricId,
    period: Duration,
    now: Timestamp,
    stats: &[Statistic],
    one_period: bool,
) -> Result<Vec<crate::metric::Datapoint>> {
    let end = second(now);
    let start = end - chrono::Duration::from_std(period).unwrap_or(chrono::Duration::seconds(15));
    let step = if one_period {
        period.max(Duration::from_secs(1))
    } else {
        Duration::from_secs(1)
    };
    metrics
        .get_statistics(GetStatistics::new(
            metric,
            start,
            end,
            step,
            stats.iter().copied(),
        ))
        .await
}

/// Sum and count of the points of a window: for an average over it.
fn sum_count(points: &[crate::metric::Datapoint]) -> (f64, f64) {
    points.iter().fold((0.0, 0.0), |(s, c), p| {
        (
            s + p.get(Statistic::Sum).unwrap_or(0.0),
            c + p.get(Statistic::SampleCount).unwrap_or(0.0),
        )
    })
}

/// What one metric proposes; `None` when it has no data.
async fn propose(
    spec: &ScalerSpec,
    m: &MetricTarget,
    info: &ServiceInfo,
    metrics: &dyn Metrics,
    lbs: Option<&dyn LoadBalancers>,
    now: Timestamp,
) -> Result<Option<u32>> {
    let current = info.spec.replicas;
    let live: Vec<_> = info
        .instances
        .iter()
        .filter(|i| !matches!(i.state, InstanceState::Stopped))
        .collect();
    // Ready as a Kubernetes pod is: passing its health check when it has one (a replica
    // still starting is Running then), else running.
    let checked = info.spec.container.health_check.is_some();
    let is_ready = |state: InstanceState| {
        state == InstanceState::Healthy || (!checked && state == InstanceState::Running)
    };
    let ready = live.iter().filter(|i| is_ready(i.state)).count() as u32;
    let tolerance = (spec.tolerance, spec.tolerance);
    let secs = spec.period.as_secs_f64();
    Ok(match m {
        MetricTarget::Cpu { target } => {
            let mut samples = Vec::with_capacity(live.len());
            for i in &live {
                let id = MetricId::new("mvi/Container", "CPUUtilization")
                    .dimension("Service", spec.service.clone())
                    .dimension("Replica", i.id.clone());
                let points = window(
                    metrics,
                    id,
                    spec.period,
                    now,
                    &[Statistic::Sum, Statistic::SampleCount],
                    false,
                )
                .await?;
                let (sum, count) = sum_count(&points);
                samples.push(Sample {
                    ready: is_ready(i.state),
                    value: (count > 0.0).then(|| sum / count),
                });
            }
            if samples.iter().all(|s| s.value.is_none()) {
                return Ok(None);
            }
            Some(hpa::proposal(
                current,
                ready,
                &Reading::Utilization(samples),
                *target,
                tolerance,
            ))
        }
        MetricTarget::RequestsPerReplica {
            target_group,
            target,
        } => {
            let Some(lbs) = lbs else {
                return Err(op("evaluate").unsupported(
                    "requests per replica are read from the Load Balancer service, which this cloud lacks",
                ));
            };
            let mut total = 0.0;
            let mut forwarded = false;
            for lb in lbs.list_load_balancers().await? {
                let forwards = lb
                    .spec
                    .listeners
                    .iter()
                    .any(|l| l.forward.iter().any(|(g, _)| g == target_group));
                if !forwards {
                    continue;
                }
                forwarded = true;
                let id = lbs
                    .metric(&lb.spec.name, Some(target_group), metric_names::REQUESTS)
                    .await?;
                let points =
                    window(metrics, id, spec.period, now, &[Statistic::Sum], false).await?;
                total += points
                    .iter()
                    .filter_map(|p| p.get(Statistic::Sum))
                    .sum::<f64>();
            }
            // A load balancer reports no count for a period without requests: forwarding
            // and silent is 0 requests per second; no load balancer forwarding is no data.
            if !forwarded {
                return Ok(None);
            }
            Some(hpa::proposal(
                current,
                ready,
                &Reading::Total(total / secs),
                *target,
                tolerance,
            ))
        }
        MetricTarget::Custom {
            metric,
            statistic,
            target,
            per_replica,
        } => {
            let points = window(
                metrics,
                metric.clone(),
                spec.period,
                now,
                &[
                    Statistic::Sum,
                    Statistic::SampleCount,
                    Statistic::Minimum,
                    Statistic::Maximum,
                ],
                false,
            )
            .await?;
            if points.is_empty() {
                return Ok(None);
            }
            let value = match statistic {
                // A count over the window, per second.
                Statistic::Sum => {
                    points
                        .iter()
                        .filter_map(|p| p.get(Statistic::Sum))
                        .sum::<f64>()
                        / secs
                }
                Statistic::SampleCount => {
                    points
                        .iter()
                        .filter_map(|p| p.get(Statistic::SampleCount))
                        .sum::<f64>()
                        / secs
                }
                Statistic::Minimum => points
                    .iter()
                    .filter_map(|p| p.get(*statistic))
                    .fold(f64::INFINITY, f64::min),
                Statistic::Maximum => points
                    .iter()
                    .filter_map(|p| p.get(*statistic))
                    .fold(f64::NEG_INFINITY, f64::max),
                Statistic::Average => {
                    let (sum, count) = sum_count(&points);
                    if count == 0.0 {
                        return Ok(None);
                    }
                    sum / count
                }
                // A percentile does not combine across periods: one period over the window.
                Statistic::Percentile(_) => {
                    let whole = window(
                        metrics,
                        metric.clone(),
                        spec.period,
                        now,
                        &[*statistic],
                        true,
                    )
                    .await?;
                    match whole.iter().filter_map(|p| p.get(*statistic)).next_back() {
                        Some(v) => v,
                        None => return Ok(None),
                    }
                }
            };
            let reading = if *per_replica {
                Reading::Total(value)
            } else {
                Reading::Value(value)
            };
            Some(hpa::proposal(current, ready, &reading, *target, tolerance))
        }
    })
}

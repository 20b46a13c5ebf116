//! The Kubernetes Horizontal Pod Autoscaler's algorithm, as `pkg/controller/podautoscaler`
//! implements it (v1.33+ with behaviors): the replica calculation with its tolerance and its
//! handling of missing metrics and replicas not ready yet, the largest proposal of several
//! metrics, stabilization windows and scaling policies.
//!
//! Pure functions and a small state ([`Recommender`]): the controller feeds readings and the
//! time, and gets the replica count to set. Table-tested against the worked examples of the
//! Kubernetes documentation and the cases of its own tests.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::common::Timestamp;

/// HPA's default tolerance: no change while the ratio is within 10 % of 1.
pub const TOLERANCE: f64 = 0.1;

/// One replica's reading of a per-replica metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Whether the replica is ready (passed its health check); one starting is not.
    pub ready: bool,
    /// Its value; `None` when it has reported none (a missing metric).
    pub value: Option<f64>,
}

impl Sample {
    /// A ready replica's reading.
    pub fn ready(value: f64) -> Self {
        Sample {
            ready: true,
            value: Some(value),
        }
    }

    /// A replica not ready yet, with its reading.
    pub fn unready(value: f64) -> Self {
        Sample {
            ready: false,
            value: Some(value),
        }
    }

    /// A ready replica that reported nothing.
    pub fn missing() -> Self {
        Sample {
            ready: true,
            value: None,
        }
    }
}

/// What a metric reads, and how it is compared with its target.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// Per-replica utilization in percent (CPU): averaged over the replicas and truncated to
    /// a whole percent, as HPA's resource metrics are. A missing replica counts as
    /// max(100 %, target) on a scale-down, 0 % on a scale-up.
    Utilization(Vec<Sample>),
    /// A per-replica value (HPA's pods metric): averaged. A missing replica counts as the
    /// target on a scale-down, 0 on a scale-up.
    PerReplica(Vec<Sample>),
    /// One value for the whole service, to be `target` per replica (HPA's external metric
    /// with an average-value target, such as requests per target): desired is
    /// ceil(total / target).
    Total(f64),
    /// One value for the whole service, to be kept at `target` (HPA's object metric with a
    /// value target): desired is ceil(value / target × ready replicas).
    Value(f64),
}

/// The replica count one metric proposes for `current` replicas (`ready` of them ready),
/// with target `target` and tolerances `(down, up)` (both [`TOLERANCE`] by default).
pub fn proposal(
    current: u32,
    ready: u32,
    reading: &Reading,
    target: f64,
    tolerance: (f64, f64),
) -> u32 {
    let within = |ratio: f64| (1.0 - tolerance.0) <= ratio && ratio <= (1.0 + tolerance.1);
    let ceil = |x: f64| x.ceil().clamp(0.0, f64::from(u32::MAX)) as u32;
    match reading {
        Reading::Utilization(samples) => per_replica(current, samples, target, true, &within),
        Reading::PerReplica(samples) => per_replica(current, samples, target, false, &within),
        Reading::Total(total) => {
            if current == 0 {
                return ceil(total / target);
            }
            if within(total / (target * f64::from(current))) {
                return current;
            }
            ceil(total / target)
        }
        Reading::Value(value) => {
            let ratio = value / target;
            if current == 0 {
                return ceil(ratio);
            }
            if within(ratio) {
                return current;
            }
            ceil(ratio * f64::from(ready))
        }
    }
}

/// HPA's `GetResourceReplicas` / `calcPlainMetricReplicas`.
fn per_replica(
    current: u32,
    samples: &[Sample],
    target: f64,
    utilization: bool,
    within: &dyn Fn(f64) -> bool,
) -> u32 {
    let ceil = |x: f64| x.ceil().clamp(0.0, f64::from(u32::MAX)) as u32;
    // The ratio of the average of `values` to the target (a utilization is truncated to a
    // whole percent first).
    let ratio = |values: &[f64]| -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        let mut avg = values.iter().sum::<f64>() / values.len() as f64;
        if utilization {
            avg = avg.trunc();
        }
        Some(avg / target)
    };
    let ready: Vec<f64> = samples
        .iter()
        .filter(|s| s.ready)
        .filter_map(|s| s.value)
        .collect();
    let missing = samples
        .iter()
        .filter(|s| s.ready && s.value.is_none())
        .count();
    let unready = samples.iter().filter(|s| !s.ready).count();
    let Some(usage) = ratio(&ready) else {
        // No ready replica reported anything: nothing to go on.
        return current;
    };
    let up_with_unready = unready > 0 && usage > 1.0;
    if !up_with_unready && missing == 0 {
        if within(usage) {
            return current;
        }
        return ceil(usage * ready.len() as f64);
    }
    let mut values = ready.clone();
    if missing > 0 {
        if usage < 1.0 {
            // A scale-down: missing replicas use the target (100 % for a utilization, or
            // the target if higher).
            let fallback = if utilization {
                target.max(100.0)
            } else {
                target
            };
            values.extend(std::iter::repeat_n(fallback, missing));
        } else if usage > 1.0 {
            values.extend(std::iter::repeat_n(0.0, missing));
        }
    }
    if up_with_unready {
        values.extend(std::iter::repeat_n(0.0, unready));
    }
    let Some(new_usage) = ratio(&values) else {
        return current;
    };
    if within(new_usage) || (usage < 1.0 && new_usage > 1.0) || (usage > 1.0 && new_usage < 1.0) {
        // Too small a change, or the filled-in values reverse the direction.
        return current;
    }
    let n = ceil(new_usage * values.len() as f64);
    if (new_usage < 1.0 && n > current) || (new_usage > 1.0 && n < current) {
        return current;
    }
    n
}

/// How replicas are added or removed: by a number of replicas or a percentage of those at
/// the start of the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// At most `value` replicas per period.
    Pods,
    /// At most `value` % of the replicas at the period's start per period.
    Percent,
}

/// One scaling policy: at most `value` (replicas or percent) per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Replicas or percent.
    pub kind: PolicyKind,
    /// How many (or what percent).
    pub value: u32,
    /// Per how long (HPA: 1 s to 30 min).
    pub period: Duration,
}

impl Policy {
    /// At most `n` replicas per `period`.
    pub fn pods(n: u32, period: Duration) -> Self {
        Policy {
            kind: PolicyKind::Pods,
            value: n,
            period,
        }
    }

    /// At most `percent` % per `period`.
    pub fn percent(percent: u32, period: Duration) -> Self {
        Policy {
            kind: PolicyKind::Percent,
            value: percent,
            period,
        }
    }
}

/// Which policy applies when several do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// The one allowing the largest change (HPA's default).
    #[default]
    Max,
    /// The one allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// The rules of one direction: a stabilization window and policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rules {
    /// Recommendations of this long are considered: up, the lowest of them; down, the
    /// highest (so a dip or a spike shorter than the window changes nothing).
    pub stabilization: Duration,
    /// Which policy applies.
    #[serde(default)]
    pub select: Select,
    /// The policies.
    pub policies: Vec<Policy>,
}

/// How fast to scale each way (HPA's `behavior`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Behavior {
    /// Scaling up. Default: no window; at most max(4 replicas, 100 %) per 15 s.
    pub scale_up: Rules,
    /// Scaling down. Default: a 300 s window; at most 100 % per 15 s.
    pub scale_down: Rules,
}

impl Default for Behavior {
    fn default() -> Self {
        let period = Duration::from_secs(15);
        Behavior {
            scale_up: Rules {
                stabilization: Duration::ZERO,
                select: Select::Max,
                policies: vec![Policy::pods(4, period), Policy::percent(100, period)],
            },
            scale_down: Rules {
                stabilization: Duration::from_secs(300),
                select: Select::Max,
                policies: vec![Policy::percent(100, period)],
            },
        }
    }
}

/// Why the replica count is what it is (HPA's condition reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The proposal, as it was.
    DesiredWithinRange,
    /// Held by the scale-up stabilization window.
    ScaleUpStabilized,
    /// Held by the scale-down stabilization window.
    ScaleDownStabilized,
    /// Limited by the scale-up policies.
    ScaleUpLimit,
    /// Limited by the scale-down policies.
    ScaleDownLimit,
    /// The maximum.
    TooManyReplicas,
    /// The minimum.
    TooFewReplicas,
}

/// The stabilization history and the recent scale events of one scaler (HPA's per-HPA
/// `recommendations`, `scaleUpEvents` and `scaleDownEvents`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recommender {
    recommendations: Vec<(Timestamp, u32)>,
    up_events: Vec<(Timestamp, u32)>,
    down_events: Vec<(Timestamp, u32)>,
}

impl Recommender {
    /// A new scaler's history: the current count is its first recommendation, so a first
    /// scale-down waits out the window (HPA's `recordInitialRecommendation`).
    pub fn new(now: Timestamp, current: u32) -> Self {
        Recommender {
            recommendations: vec![(now, current)],
            ..Default::default()
        }
    }

    /// The replica count to set now for `desired` (the largest proposal), `current`
    /// replicas, between `min` and `max`; and why. Records the recommendation and, if the
    /// count changes, the scale event.
    pub fn next(
        &mut self,
        now: Timestamp,
        current: u32,
        desired: u32,
        min: u32,
        max: u32,
        behavior: &Behavior,
    ) -> (u32, Limit) {
        // Out of range already: straight to the bound (HPA does this before any metric).
        let (n, why) = if current > max {
            (max, Limit::TooManyReplicas)
        } else if current < min {
            (min, Limit::TooFewReplicas)
        } else {
            let (stable, stabilized) = self.stabilize(now, current, desired, behavior);
            let (n, limit) = self.rate_limit(now, current, stable, min, max, behavior);
            let why = if n != stable {
                limit
            } else if stable != desired {
                stabilized
            } else {
                limit
            };
            (n, why)
        };
        if n > current {
            self.up_events.push((now, n - current));
        } else if n < current {
            self.down_events.push((now, current - n));
        }
        let horizon = longest_period(behavior);
        self.up_events.retain(|(t, _)| age(now, *t) <= horizon);
        self.down_events.retain(|(t, _)| age(now, *t) <= horizon);
        (n, why)
    }

    /// HPA's `stabilizeRecommendationWithBehaviors`.
    fn stabilize(
        &mut self,
        now: Timestamp,
        current: u32,
        desired: u32,
        b: &Behavior,
    ) -> (u32, Limit) {
        let up_window = b.scale_up.stabilization;
        let down_window = b.scale_down.stabilization;
        let mut up = desired;
        let mut down = desired;
        let mut old = None;
        for (i, (t, r)) in self.recommendations.iter().enumerate() {
            let a = age(now, *t);
            if a < up_window {
                up = up.min(*r);
            }
            if a < down_window {
                down = down.max(*r);
            }
            if a > up_window && a > down_window {
                old = Some(i);
            }
        }
        let stable = current.max(up).min(down);
        match old {
            Some(i) => self.recommendations[i] = (now, desired),
            None => self.recommendations.push((now, desired)),
        }
        let why = if desired >= current {
            Limit::ScaleUpStabilized
        } else {
            Limit::ScaleDownStabilized
        };
        (stable, why)
    }

    /// HPA's `convertDesiredReplicasWithBehaviorRate`.
    fn rate_limit(
        &self,
        now: Timestamp,
        current: u32,
        desired: u32,
        min: u32,
        max: u32,
        b: &Behavior,
    ) -> (u32, Limit) {
        if desired > current {
            let cap = limit(current, &self.changes(now), &b.scale_up, true).max(current);
            let (allowed, why) = if max > cap {
                (cap, Limit::ScaleUpLimit)
            } else {
                (max, Limit::TooManyReplicas)
            };
            if desired > allowed {
                return (allowed, why);
            }
        } else if desired < current {
            let floor = limit(current, &self.changes(now), &b.scale_down, false).min(current);
            let (allowed, why) = if min < floor {
                (floor, Limit::ScaleDownLimit)
            } else {
                (min, Limit::TooFewReplicas)
            };
            if desired < allowed {
                return (allowed, why);
            }
        }
        (desired, Limit::DesiredWithinRange)
    }

    /// Replicas added and removed within each period, for the limits.
    fn changes(&self, now: Timestamp) -> Changes<'_> {
        Changes {
            now,
            up: &self.up_events,
            down: &self.down_events,
        }
    }
}

struct Changes<'a> {
    now: Timestamp,
    up: &'a [(Timestamp, u32)],
    down: &'a [(Timestamp, u32)],
}

impl Changes<'_> {
    /// HPA's `getReplicasChangePerPeriod`, both ways: (added, removed) within `period`.
    fn within(&self, period: Duration) -> (i64, i64) {
        let sum = |events: &[(Timestamp, u32)]| {
            events
                .iter()
                .filter(|(t, _)| age(self.now, *t) < period)
                .map(|(_, n)| i64::from(*n))
                .sum::<i64>()
        };
        (sum(self.up), sum(self.down))
    }
}

fn age(now: Timestamp, then: Timestamp) -> Duration {
    (now - then).to_std().unwrap_or(Duration::ZERO)
}

fn longest_period(b: &Behavior) -> Duration {
    b.scale_up
        .policies
        .iter()
        .chain(&b.scale_down.policies)
        .map(|p| p.period)
        .max()
        .unwrap_or(Duration::ZERO)
}

fn to_u32(n: i64) -> u32 {
    n.clamp(0, i64::from(u32::MAX)) as u32
}

/// HPA's `calculateScaleUpLimitWithScalingRules` (`up`) and
/// `calculateScaleDownLimitWithBehaviors`: the most replicas a scale-up may reach, or the
/// fewest a scale-down may leave, by `rules`' policies.
fn limit(current: u32, changes: &Changes<'_>, rules: &Rules, up: bool) -> u32 {
    if rules.select == Select::Disabled || rules.policies.is_empty() {
        return current;
    }
    let proposals = rules.policies.iter().map(|p| {
        let (added, removed) = changes.within(p.period);
        let start = i64::from(current) - added + removed;
        let value = i64::from(p.value);
        let share = f64::from(p.value) / 100.0;
        match (p.kind, up) {
            (PolicyKind::Pods, true) => start + value,
            (PolicyKind::Pods, false) => start - value,
            // Up rounds up (else a small percentage never adds a replica); down truncates.
            (PolicyKind::Percent, true) => (start as f64 * (1.0 + share)).ceil() as i64,
            (PolicyKind::Percent, false) => (start as f64 * (1.0 - share)) as i64,
        }
    });
    // Max: the policy allowing the largest change (up the highest count, down the lowest);
    // Min: the smallest.
    let largest_count = (rules.select == Select::Max) == up;
    let n = if largest_count {
        proposals.max()
    } else {
        proposals.min()
    };
    to_u32(n.unwrap_or(i64::from(current)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: (f64, f64) = (TOLERANCE, TOLERANCE);

    fn ready(values: &[f64]) -> Vec<Sample> {
        values.iter().map(|v| Sample::ready(*v)).collect()
    }

    /// The Kubernetes documentation's worked examples of the replica calculation.
    #[test]
    fn documented_examples() {
        // 200m against 100m: doubled; 50m: halved.
        assert_eq!(
            proposal(3, 3, &Reading::PerReplica(ready(&[200.0; 3])), 100.0, T),
            6
        );
        assert_eq!(
            proposal(4, 4, &Reading::PerReplica(ready(&[50.0; 4])), 100.0, T),
            2
        );
        // Within 10 % of the target: no change (1.1 exactly is within since v1.33).
        assert_eq!(
            proposal(4, 4, &Reading::PerReplica(ready(&[105.0; 4])), 100.0, T),
            4
        );
        assert_eq!(
            proposal(4, 4, &Reading::PerReplica(ready(&[110.0; 4])), 100.0, T),
            4
        );
        assert_eq!(
            proposal(4, 4, &Reading::PerReplica(ready(&[90.0; 4])), 100.0, T),
            4
        );
        // A tolerance of 5 % up: 105 MiB against 100 MiB is within, 106 is not.
        assert_eq!(
            proposal(
                4,
                4,
                &Reading::PerReplica(ready(&[105.0; 4])),
                100.0,
                (0.1, 0.05)
            ),
            4
        );
        assert_eq!(
            proposal(
                4,
                4,
                &Reading::PerReplica(ready(&[106.0; 4])),
                100.0,
                (0.1, 0.05)
            ),
            5
        );
        // The walkthrough: one replica at 305 % against 50 %: ceil(6.1) = 7.
        assert_eq!(
            proposal(1, 1, &Reading::Utilization(ready(&[305.0])), 50.0, T),
            7
        );
        // One worker per 30 queued tasks.
        assert_eq!(proposal(2, 2, &Reading::Total(100.0), 30.0, T), 4);
        // The 2025 tolerance post: 88 % against 80 % is 1.1: within.
        assert_eq!(
            proposal(
                100,
                100,
                &Reading::Utilization(ready(&[88.0; 100])),
                80.0,
                T
            ),
            100
        );
    }

    /// The cases of Kubernetes' `replica_calculator_test.go` (tolerance 0.1).
    #[test]
    fn replica_calculator_cases() {
        let util = |s: Vec<Sample>, target: f64| {
            let n = s.len() as u32;
            let ready = s.iter().filter(|s| s.ready).count() as u32;
            proposal(n, ready, &Reading::Utilization(s), target, T)
        };
        // ScaleUp: 300/500/700m of 1 CPU, target 30 %: 5.
        assert_eq!(util(ready(&[30.0, 50.0, 70.0]), 30.0), 5);
        // ScaleUpUnreadyLessScale: the first not ready: 4.
        assert_eq!(
            util(
                vec![
                    Sample::unready(30.0),
                    Sample::ready(50.0),
                    Sample::ready(70.0)
                ],
                30.0
            ),
            4
        );
        // ScaleUpUnreadyNoScale: 400/500/700m, two not ready: 3.
        assert_eq!(
            util(
                vec![
                    Sample::ready(40.0),
                    Sample::unready(50.0),
                    Sample::unready(70.0)
                ],
                30.0
            ),
            3
        );
        // ScaleDown: 100/300/500/250/250m, target 50 %: 3.
        assert_eq!(util(ready(&[10.0, 30.0, 50.0, 25.0, 25.0]), 50.0), 3);
        // Tolerance: 102 % against 100 %: 3 stays.
        assert_eq!(util(ready(&[101.0, 103.0, 102.0]), 100.0), 3);
        // MissingMetrics: 4 replicas, 2 reporting 400m/95m of 1 CPU (40 %, 9.5 %), target 100:
        // the missing ones count as 100 % on this scale-down: 3.
        assert_eq!(
            util(
                vec![
                    Sample::ready(40.0),
                    Sample::ready(9.5),
                    Sample::missing(),
                    Sample::missing()
                ],
                100.0
            ),
            3
        );
        // MissingMetricsNoChange{Eq,Gt,Lt}: 2 replicas, one reporting 100/190/60 %: 2.
        for v in [100.0, 190.0, 60.0] {
            assert_eq!(
                util(vec![Sample::ready(v), Sample::missing()], 100.0),
                2,
                "{v}"
            );
        }
        // MissingMetricsUnreadyScaleUp: 3 replicas, the first not ready (100m), the second
        // at 2000m, the third reporting nothing; target 50 %: 4.
        assert_eq!(
            util(
                vec![
                    Sample::unready(10.0),
                    Sample::ready(200.0),
                    Sample::missing()
                ],
                50.0
            ),
            4
        );
        // MissingMetricsUnreadyNoChange: the same at 100m/450m: filling in reverses the
        // direction, so 3 stays.
        assert_eq!(
            util(
                vec![
                    Sample::unready(10.0),
                    Sample::ready(45.0),
                    Sample::missing()
                ],
                50.0
            ),
            3
        );
        // Pod metric ScaleUpCM: 20000/10000/30000 against 15000: 4.
        let pods = |v: &[f64], target| {
            proposal(
                v.len() as u32,
                v.len() as u32,
                &Reading::PerReplica(ready(v)),
                target,
                T,
            )
        };
        assert_eq!(pods(&[20000.0, 10000.0, 30000.0], 15000.0), 4);
        // ScaleDownCM: 5 × 12000 against 20000: 3.
        assert_eq!(pods(&[12000.0; 5], 20000.0), 3);
        // ToleranceCM: 20000/21000/21000 against 20000: 3; with a 1 % scale-up tolerance: 4.
        assert_eq!(pods(&[20000.0, 21000.0, 21000.0], 20000.0), 3);
        assert_eq!(
            proposal(
                3,
                3,
                &Reading::PerReplica(ready(&[20000.0, 21000.0, 21000.0])),
                20000.0,
                (0.1, 0.01)
            ),
            4
        );
        // Object value 20000 against 15000, 3 replicas: 4; 50000 against 10000 with 1 ready: 5.
        assert_eq!(proposal(3, 3, &Reading::Value(20000.0), 15000.0, T), 4);
        assert_eq!(proposal(3, 1, &Reading::Value(50000.0), 10000.0, T), 5);
        // External per-replica 8600 / 2150, 3 replicas: 4.
        assert_eq!(proposal(3, 3, &Reading::Total(8600.0), 2150.0, T), 4);
    }

    fn at(secs: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("a time")
    }

    fn rules(select: Select, policies: Vec<Policy>) -> Rules {
        Rules {
            stabilization: Duration::ZERO,
            select,
            policies,
        }
    }

    fn behavior(up: Rules, down: Rules) -> Behavior {
        Behavior {
            scale_up: up,
            scale_down: down,
        }
    }

    /// Kubernetes' `TestScalingWithRules` and `convertDesiredReplicasWithRules` cases.
    #[test]
    fn policy_limits() {
        let min60 = Duration::from_secs(60);
        let none = || rules(Select::Max, vec![Policy::percent(100, min60)]);
        let cases: Vec<(u32, u32, u32, u32, Behavior, u32)> = vec![
            // current, desired, min, max, behavior, result
            (5, 7, 3, 8, Behavior::default(), 7),
            (3, 1, 2, 10, Behavior::default(), 2),
            (20, 1000, 1, 10, Behavior::default(), 10),
            (10, 50, 1, 1000, Behavior::default(), 20),
            (1, 50, 1, 1000, Behavior::default(), 5),
            (2, 50, 1, 1000, Behavior::default(), 6),
            (3, 50, 1, 1000, Behavior::default(), 7),
            (
                10,
                500,
                1,
                1000,
                behavior(
                    rules(
                        Select::Max,
                        vec![Policy::pods(100, min60), Policy::percent(100, min60)],
                    ),
                    none(),
                ),
                110,
            ),
            (
                10,
                500,
                1,
                1000,
                behavior(
                    rules(
                        Select::Max,
                        vec![Policy::pods(2, min60), Policy::percent(100, min60)],
                    ),
                    none(),
                ),
                20,
            ),
            (
                10,
                50,
                1,
                1000,
                behavior(rules(Select::Max, vec![Policy::pods(30, min60)]), none()),
                40,
            ),
            (
                10,
                50,
                1,
                1000,
                behavior(
                    rules(Select::Max, vec![Policy::percent(200, min60)]),
                    none(),
                ),
                30,
            ),
            (
                3,
                1000,
                1,
                1000,
                behavior(rules(Select::Max, vec![Policy::percent(1, min60)]), none()),
                4,
            ),
            (
                1000,
                3,
                1,
                1000,
                behavior(none(), rules(Select::Max, vec![Policy::pods(20, min60)])),
                980,
            ),
            (
                100,
                2,
                1,
                1000,
                behavior(
                    none(),
                    rules(
                        Select::Max,
                        vec![Policy::pods(20, min60), Policy::percent(1, min60)],
                    ),
                ),
                80,
            ),
            (
                100,
                2,
                1,
                1000,
                behavior(
                    none(),
                    rules(
                        Select::Max,
                        vec![Policy::pods(2, min60), Policy::percent(1, min60)],
                    ),
                ),
                98,
            ),
            (
                10,
                2,
                1,
                1000,
                behavior(none(), rules(Select::Max, vec![Policy::pods(5, min60)])),
                5,
            ),
            (10, 0, 1, 1000, behavior(none(), none()), 1),
            (10, 2, 5, 1000, behavior(none(), none()), 5),
            // Min: the smallest change ("no more than 5 a minute").
            (
                100,
                2,
                1,
                1000,
                behavior(
                    none(),
                    rules(
                        Select::Min,
                        vec![Policy::percent(10, min60), Policy::pods(5, min60)],
                    ),
                ),
                95,
            ),
            (
                30,
                2,
                1,
                1000,
                behavior(
                    none(),
                    rules(
                        Select::Min,
                        vec![Policy::percent(10, min60), Policy::pods(5, min60)],
                    ),
                ),
                27,
            ),
            // Disabled: no scale-down at all.
            (
                10,
                2,
                1,
                1000,
                behavior(
                    none(),
                    rules(Select::Disabled, vec![Policy::percent(100, min60)]),
                ),
                10,
            ),
            // Percent rounding as Kubernetes rounds: ceil(50 × 1.1) = 56; int(10 × 0.2) = 1.
            (
                50,
                500,
                1,
                1000,
                behavior(rules(Select::Max, vec![Policy::percent(10, min60)]), none()),
                56,
            ),
            (
                10,
                0,
                0,
                1000,
                behavior(none(), rules(Select::Max, vec![Policy::percent(80, min60)])),
                1,
            ),
        ];
        for (i, (current, desired, min, max, b, want)) in cases.into_iter().enumerate() {
            let mut r = Recommender::default();
            let (n, _) = r.next(at(0), current, desired, min, max, &b);
            assert_eq!(n, want, "case {i}: {current} → {desired}");
        }
    }

    /// Scale events within a period count against its policies (Kubernetes'
    /// event-based cases: prior events over 120 s).
    #[test]
    fn events_within_the_period_count() {
        let p = Duration::from_secs(120);
        let none = rules(Select::Max, vec![Policy::percent(100, p)]);
        let with_up = |up: Rules| {
            let mut r = Recommender {
                up_events: vec![(at(-100), 1), (at(-60), 5), (at(-10), 9)],
                ..Default::default()
            };
            r.next(at(0), 100, 500, 1, 1000, &behavior(up, none.clone()))
                .0
        };
        assert_eq!(with_up(rules(Select::Max, vec![Policy::pods(150, p)])), 235);
        assert_eq!(
            with_up(rules(Select::Max, vec![Policy::percent(200, p)])),
            255
        );
        assert_eq!(with_up(rules(Select::Max, vec![Policy::pods(5, p)])), 100);
        let with_down = |events: Vec<(Timestamp, u32)>, down: Rules| {
            let mut r = Recommender {
                down_events: events,
                ..Default::default()
            };
            r.next(at(0), 100, 0, 0, 1000, &behavior(none.clone(), down))
                .0
        };
        assert_eq!(
            with_down(
                vec![(at(-100), 2), (at(-60), 4), (at(-10), 6)],
                rules(Select::Max, vec![Policy::percent(50, p)])
            ),
            56
        );
        assert_eq!(
            with_down(
                vec![(at(-100), 10), (at(-60), 10), (at(-10), 10)],
                rules(Select::Max, vec![Policy::percent(10, p)])
            ),
            100
        );
    }

    /// The documented scale-down of 4 pods or 10 % a minute from 80 replicas: 80 → 72 → 64
    /// ..., one step per minute, nothing more within a minute.
    #[test]
    fn documented_rate_limited_scale_down() {
        let m = Duration::from_secs(60);
        let b = behavior(
            rules(
                Select::Max,
                vec![Policy::percent(100, Duration::from_secs(15))],
            ),
            rules(
                Select::Max,
                vec![Policy::pods(4, m), Policy::percent(10, m)],
            ),
        );
        let mut r = Recommender::default();
        let mut current = 80;
        let mut seen = vec![current];
        for minute in 0..20 {
            let (n, _) = r.next(at(minute * 60), current, 10, 1, 100, &b);
            // Within the same minute a second evaluation does nothing more.
            let (again, why) = r.next(at(minute * 60 + 30), n, 10, 1, 100, &b);
            assert_eq!(again, n, "minute {minute}");
            if n > 10 {
                assert_eq!(why, Limit::ScaleDownLimit, "minute {minute}");
            }
            current = n;
            seen.push(n);
            if n == 10 {
                break;
            }
        }
        assert_eq!(
            seen,
            [80, 72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16, 12, 10]
        );
    }

    /// A scale-down waits out its window (the highest recommendation of the last 300 s);
    /// the first evaluation counts the current count as a recommendation.
    #[test]
    fn stabilization_windows() {
        let b = Behavior::default();
        let mut r = Recommender::new(at(0), 10);
        assert_eq!(
            r.next(at(15), 10, 4, 1, 20, &b),
            (10, Limit::ScaleDownStabilized)
        );
        assert_eq!(r.next(at(200), 10, 3, 1, 20, &b).0, 10);
        // 300 s after the initial recommendation, the highest within the window is 4.
        assert_eq!(r.next(at(301), 10, 3, 1, 20, &b).0, 4);
        assert_eq!(r.next(at(501), 4, 3, 1, 20, &b).0, 3);
        // Up is not stabilized by default: at once.
        assert_eq!(
            r.next(at(502), 3, 6, 1, 20, &b),
            (6, Limit::DesiredWithinRange)
        );
        // An up window holds a spike shorter than it.
        let mut up = Behavior::default();
        up.scale_up.stabilization = Duration::from_secs(60);
        let mut r = Recommender::new(at(0), 2);
        assert_eq!(
            r.next(at(10), 2, 8, 1, 20, &up),
            (2, Limit::ScaleUpStabilized)
        );
        assert_eq!(r.next(at(40), 2, 8, 1, 20, &up).0, 2);
        assert_eq!(
            r.next(at(75), 2, 8, 1, 20, &up).0,
            6,
            "the lowest of the last 60 s is 8, limited to +4"
        );
    }

    /// Legacy stabilization cases of Kubernetes (a 5 min window, no policies in the way).
    #[test]
    fn legacy_stabilization_cases() {
        let mut b = Behavior::default();
        b.scale_down.policies = vec![Policy::percent(100, Duration::from_secs(15))];
        let run = |history: Vec<(i64, u32)>, desired: u32| {
            let mut r = Recommender {
                recommendations: history.into_iter().map(|(t, n)| (at(t), n)).collect(),
                ..Default::default()
            };
            r.next(at(0), 10, desired, 1, 20, &b).0
        };
        assert_eq!(run(vec![(-120, 4), (-60, 5)], 3), 5);
        assert_eq!(run(vec![(-600, 10), (-540, 9)], 3), 3);
        assert_eq!(run(vec![(-600, 10), (-60, 4), (-120, 5), (-540, 9)], 3), 5);
    }
}

//! Metric: time series of data points, statistics over periods, and alarms (CloudWatch on
//! AWS, an in-process time-series store locally).
//!
//! Alarm evaluation follows CloudWatch's model, implemented once in [`evaluate_alarm`] so the
//! backends that evaluate alarms themselves agree: the statistic of each of the last
//! `evaluation_periods` complete periods is compared with the threshold; the alarm is ALARM
//! when every period with data breaches, OK when any does not, and INSUFFICIENT_DATA when no
//! period has data.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::common::Timestamp;
use crate::error::{Op, Result};

/// The most data points in one `put_data` (as CloudWatch's PutMetricData).
pub const MAX_BATCH_POINTS: usize = 1000;
/// The most dimensions on one metric (as CloudWatch).
pub const MAX_DIMENSIONS: usize = 30;

/// Dimensions: name → value (`Service=web`).
pub type Dimensions = BTreeMap<String, String>;

/// The unit of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Unit {
    /// No unit.
    #[default]
    None,
    /// A count.
    Count,
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Milliseconds,
    /// Microseconds.
    Microseconds,
    /// Bytes.
    Bytes,
    /// Percent.
    Percent,
    /// Count per second.
    CountPerSecond,
    /// Bytes per second.
    BytesPerSecond,
}

/// One data point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Datum {
    /// Metric name.
    pub name: String,
    /// Dimensions.
    pub dimensions: Dimensions,
    /// Unit.
    pub unit: Unit,
    /// The value (finite).
    pub value: f64,
    /// When it was measured.
    pub timestamp: Timestamp,
}

impl Datum {
    /// A point of `name` with `value` at `timestamp`, no dimensions, no unit.
    pub fn new(name: impl Into<String>, value: f64, timestamp: Timestamp) -> Self {
        Datum {
            name: name.into(),
            dimensions: Dimensions::new(),
            unit: Unit::None,
            value,
            timestamp,
        }
    }

    /// Adds a dimension.
    pub fn dimension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.dimensions.insert(name.into(), value.into());
        self
    }

    /// Sets the unit.
    pub fn unit(mut self, unit: Unit) -> Self {
        self.unit = unit;
        self
    }
}

/// A metric's identity: namespace, name and dimensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MetricId {
    /// Namespace (`MyApp/Web`).
    pub namespace: String,
    /// Name (`Latency`).
    pub name: String,
    /// Dimensions.
    pub dimensions: Dimensions,
}

impl MetricId {
    /// A metric without dimensions.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        MetricId {
            namespace: namespace.into(),
            name: name.into(),
            dimensions: Dimensions::new(),
        }
    }

    /// Adds a dimension.
    pub fn dimension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.dimensions.insert(name.into(), value.into());
        self
    }
}

impl fmt::Display for MetricId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        for (k, v) in &self.dimensions {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// A statistic over the points of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Statistic {
    /// Sum of values.
    Sum,
    /// Mean.
    Average,
    /// Smallest.
    Minimum,
    /// Largest.
    Maximum,
    /// Number of points.
    SampleCount,
    /// A percentile, in hundredths of a percent (p99 = 9900; p99.9 = 9990).
    Percentile(u16),
}

impl Statistic {
    /// The median.
    pub const P50: Statistic = Statistic::Percentile(5000);
    /// The 90th percentile.
    pub const P90: Statistic = Statistic::Percentile(9000);
    /// The 99th percentile.
    pub const P99: Statistic = Statistic::Percentile(9900);

    /// Computes the statistic over `values` (unsorted). `None` when there are none.
    ///
    /// Percentiles use the nearest-rank method on the sorted values.
    pub fn compute(self, values: &[f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        Some(match self {
            Statistic::Sum => values.iter().sum(),
            Statistic::Average => values.iter().sum::<f64>() / n,
            Statistic::Minimum => values.iter().copied().fold(f64::INFINITY, f64::min),
            Statistic::Maximum => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Statistic::SampleCount => n,
            Statistic::Percentile(p) => {
                let mut sorted = values.to_vec();
                sorted.sort_by(f64::total_cmp);
                let rank = (f64::from(p) / 10_000.0 * n).ceil().max(1.0) as usize;
                sorted[rank.min(sorted.len()) - 1]
            }
        })
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statistic::Percentile(p) if p % 100 == 0 => write!(f, "p{}", p / 100),
            Statistic::Percentile(p) => write!(f, "p{}", f64::from(*p) / 100.0),
            other => write!(f, "{other:?}"),
        }
    }
}

/// A request for statistics.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GetStatistics {
    /// The metric.
    pub metric: MetricId,
    /// Periods starting at or after (aligned down to the period).
    pub start: Timestamp,
    /// Up to (exclusive).
    pub end: Timestamp,
    /// Period length: a whole number of seconds, at least 1.
    pub period: Duration,
    /// Which statistics.
    pub statistics: Vec<Statistic>,
}

impl GetStatistics {
    /// Statistics of `metric` over `[start, end)` by `period`.
    pub fn new(
        metric: MetricId,
        start: Timestamp,
        end: Timestamp,
        period: Duration,
        statistics: impl IntoIterator<Item = Statistic>,
    ) -> Self {
        GetStatistics {
            metric,
            start,
            end,
            period,
            statistics: statistics.into_iter().collect(),
        }
    }
}

/// The statistics of one period that has data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Datapoint {
    /// Start of the period.
    pub timestamp: Timestamp,
    /// The requested statistics.
    pub values: BTreeMap<Statistic, f64>,
    /// The unit of the points.
    pub unit: Unit,
}

impl Datapoint {
    /// The value of `stat`, if it was requested.
    pub fn get(&self, stat: Statistic) -> Option<f64> {
        self.values.get(&stat).copied()
    }
}

/// Comparison of a statistic with an alarm's threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Comparison {
    /// `>=`.
    GreaterThanOrEqual,
    /// `>`.
    GreaterThan,
    /// `<`.
    LessThan,
    /// `<=`.
    LessThanOrEqual,
}

impl Comparison {
    /// Whether `value` breaches `threshold`.
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::GreaterThanOrEqual => value >= threshold,
            Comparison::GreaterThan => value > threshold,
            Comparison::LessThan => value < threshold,
            Comparison::LessThanOrEqual => value <= threshold,
        }
    }
}

/// An alarm's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlarmState {
    /// Within the threshold.
    Ok,
    /// Breaching.
    Alarm,
    /// Not enough data to tell.
    InsufficientData,
}

/// An alarm's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AlarmSpec {
    /// Name (1–255 characters).
    pub name: String,
    /// The metric watched.
    pub metric: MetricId,
    /// The statistic compared.
    pub statistic: Statistic,
    /// Period of each evaluation (whole seconds, ≥ 1 s; CloudWatch needs multiples of 60 s
    /// or 10/30 s for high resolution).
    pub period: Duration,
    /// How many consecutive periods must breach.
    pub evaluation_periods: u32,
    /// The threshold.
    pub threshold: f64,
    /// The comparison.
    pub comparison: Comparison,
}

impl AlarmSpec {
    /// An alarm `name` on `metric`: `statistic` `comparison` `threshold` for
    /// `evaluation_periods` periods of `period`.
    pub fn new(
        name: impl Into<String>,
        metric: MetricId,
        statistic: Statistic,
        comparison: Comparison,
        threshold: f64,
        period: Duration,
        evaluation_periods: u32,
    ) -> Self {
        AlarmSpec {
            name: name.into(),
            metric,
            statistic,
            period,
            evaluation_periods,
            threshold,
            comparison,
        }
    }
}

/// An alarm and its current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// Its definition.
    pub spec: AlarmSpec,
    /// Current state.
    pub state: AlarmState,
    /// Why it is in that state.
    pub reason: String,
    /// When the state last changed.
    pub updated: Timestamp,
}

/// One state change of an alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmTransition {
    /// When.
    pub time: Timestamp,
    /// Old state.
    pub from: AlarmState,
    /// New state.
    pub to: AlarmState,
    /// Why.
    pub reason: String,
}

/// Metrics and alarms.
#[async_trait]
pub trait Metrics: fmt::Debug + Send + Sync + 'static {
    /// Records up to 1000 points in `namespace`.
    async fn put_data(&self, namespace: &str, data: Vec<Datum>) -> Result<()>;
    /// Statistics per period; periods without data are left out.
    async fn get_statistics(&self, req: GetStatistics) -> Result<Vec<Datapoint>>;
    /// Metrics that have data, optionally only in `namespace` and named `name`.
    async fn list_metrics(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<MetricId>>;

    /// Creates or replaces an alarm (state starts INSUFFICIENT_DATA, then is evaluated).
    async fn put_alarm(&self, spec: AlarmSpec) -> Result<()>;
    /// Deletes an alarm.
    async fn delete_alarm(&self, name: &str) -> Result<()>;
    /// Alarms and their states, optionally only those whose name starts with `prefix`.
    async fn describe_alarms(&self, prefix: Option<&str>) -> Result<Vec<Alarm>>;
    /// An alarm's state changes, oldest first.
    async fn alarm_history(&self, name: &str) -> Result<Vec<AlarmTransition>>;
}

/// Checks a namespace: 1–255 characters, not starting with `AWS/` (reserved).
pub fn validate_namespace(op: Op, namespace: &str) -> Result<()> {
    if namespace.is_empty() || namespace.len() > 255 {
        return Err(op.invalid(namespace, "namespaces must be 1 to 255 characters long"));
    }
    if namespace.starts_with("AWS/") {
        return Err(op.invalid(namespace, "the \"AWS/\" namespace prefix is reserved"));
    }
    if namespace.contains(':') {
        return Err(op.invalid(namespace, "namespaces must not contain ':'"));
    }
    Ok(())
}

/// Checks a data point: name 1–255 characters, finite value, at most 30 dimensions with
/// non-empty names and values.
pub fn validate_datum(op: Op, namespace: &str, d: &Datum) -> Result<()> {
    let res = || format!("{namespace}/{}", d.name);
    if d.name.is_empty() || d.name.len() > 255 {
        return Err(op.invalid(res(), "metric names must be 1 to 255 characters long"));
    }
    if !d.value.is_finite() {
        return Err(op.invalid(res(), format!("value {} is not a finite number", d.value)));
    }
    if d.dimensions.len() > MAX_DIMENSIONS {
        return Err(op.invalid(res(), format!("at most {MAX_DIMENSIONS} dimensions")));
    }
    if d.dimensions
        .iter()
        .any(|(k, v)| k.is_empty() || v.is_empty() || k.len() > 255 || v.len() > 1024)
    {
        return Err(op.invalid(res(), "dimension names and values must not be empty"));
    }
    Ok(())
}

/// Checks a period: a whole number of seconds, at least one.
pub fn validate_period(op: Op, resource: &str, period: Duration) -> Result<()> {
    if period.as_secs() == 0 || period.subsec_nanos() != 0 {
        return Err(op.invalid(
            resource,
            "the period must be a whole number of seconds, at least 1",
        ));
    }
    Ok(())
}

/// Evaluates an alarm at `now` given the statistic of each of its last `evaluation_periods`
/// complete periods (oldest first; `None` for a period without data). Returns the new state
/// and the reason.
pub fn evaluate_alarm(spec: &AlarmSpec, period_values: &[Option<f64>]) -> (AlarmState, String) {
    let with_data: Vec<f64> = period_values.iter().flatten().copied().collect();
    if with_data.is_empty() {
        return (
            AlarmState::InsufficientData,
            format!("no data in the last {} period(s)", spec.evaluation_periods),
        );
    }
    let breaching = with_data
        .iter()
        .filter(|v| spec.comparison.breaches(**v, spec.threshold))
        .count();
    if breaching == with_data.len() {
        (
            AlarmState::Alarm,
            format!(
                "{} of {} period(s) with data breached {:?} {} ({}: {:?})",
                breaching,
                spec.evaluation_periods,
                spec.comparison,
                spec.threshold,
                spec.statistic,
                with_data
            ),
        )
    } else {
        (
            AlarmState::Ok,
            format!(
                "{} of {} period(s) with data breached the threshold ({}: {:?})",
                breaching, spec.evaluation_periods, spec.statistic, with_data
            ),
        )
    }
}

/// A metric identity as the read paths accept it: any namespace of 1–255 characters (reading
/// `AWS/...` metrics is allowed, only writing them is not), and the name and dimension rules
/// of a data point. Both backends check reads with it.
pub fn validate_metric(op: Op, id: &MetricId) -> Result<()> {
    if id.namespace.is_empty() || id.namespace.len() > 255 {
        return Err(op.invalid(
            id.to_string(),
            "namespaces must be 1 to 255 characters long",
        ));
    }
    // The name and dimension rules are core's data-point rules; check them through a probe
    // point rather than restating them.
    let probe = Datum {
        name: id.name.clone(),
        dimensions: id.dimensions.clone(),
        unit: Unit::None,
        value: 0.0,
        timestamp: Timestamp::UNIX_EPOCH,
    };
    validate_datum(op, &id.namespace, &probe)
}

/// Checks an alarm's definition as CloudWatch's PutMetricAlarm does; `check_period` checks
/// its period (backends add their own period rules to [`validate_period`]'s).
pub fn validate_alarm(
    op: Op,
    spec: &AlarmSpec,
    check_period: impl FnOnce(Op, &str, Duration) -> Result<()>,
) -> Result<()> {
    let name = spec.name.as_str();
    let chars = name.chars().count();
    if chars == 0 || chars > 255 {
        return Err(op.invalid(name, "alarm names must be 1 to 255 characters long"));
    }
    validate_metric(op, &spec.metric)?;
    check_period(op, name, spec.period)?;
    validate_statistic(op, name, spec.statistic)?;
    if spec.evaluation_periods == 0 {
        return Err(op.invalid(name, "evaluation_periods must be at least 1"));
    }
    if !spec.threshold.is_finite() {
        return Err(op.invalid(
            name,
            format!("threshold {} is not a finite number", spec.threshold),
        ));
    }
    // CloudWatch's limits on the whole window: one day for periods under an hour, else seven.
    let period = spec.period.as_secs();
    let limit: u64 = if period < 3600 { 86_400 } else { 604_800 };
    let total = period.saturating_mul(u64::from(spec.evaluation_periods));
    if total > limit {
        return Err(op.invalid(
            name,
            format!(
                "period × evaluation_periods is {total} s; at most {limit} s for a period of {period} s"
            ),
        ));
    }
    Ok(())
}

/// Percentiles run from p0 to p100 (10,000 hundredths of a percent).
pub fn validate_statistic(op: Op, resource: &str, stat: Statistic) -> Result<()> {
    match stat {
        Statistic::Percentile(p) if p > 10_000 => {
            Err(op.invalid(resource, format!("percentile {stat} is above p100")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(Statistic::P50.compute(&v), Some(50.0));
        assert_eq!(Statistic::P99.compute(&v), Some(99.0));
        assert_eq!(Statistic::Percentile(10000).compute(&v), Some(100.0));
        assert_eq!(Statistic::Average.compute(&[1.0, 2.0, 3.0]), Some(2.0));
        assert_eq!(Statistic::Sum.compute(&[]), None);
    }
}

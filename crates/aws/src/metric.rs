//! Metric on Amazon CloudWatch.
//!
//! - Namespaces, data points, periods, statistics and alarm definitions are checked with
//!   core's validators (and the local backend's rules for what core does not export) before
//!   any request, so bad input fails the same way on both backends and a batch with one bad
//!   point stores nothing.
//! - `put_data` sends the batch with PutMetricData, one value per datum, as high-resolution
//!   data (`StorageResolution` 1) so that statistics over periods shorter than a minute mean
//!   what they mean locally. A batch is at most [`MAX_BATCH_POINTS`] points (CloudWatch's limit
//!   of datums per call); it is split only when its encoded size could pass CloudWatch's 1 MB
//!   request limit (long dimension values), and then the parts are sent in order.
//! - Statistics come from one GetMetricData call: one query per statistic (percentiles as
//!   CloudWatch's `pNN.NN` statistics), one `SampleCount` query for the periods that have data,
//!   and one `SampleCount` query per mvi unit, filtered by that unit, to tell whether every
//!   point of a period had the same unit (GetMetricData, unlike GetMetricStatistics, does not
//!   report units). GetMetricData aligns periods to the start time, which is sent aligned down
//!   to the period, so datapoints start at multiples of the period from the epoch as locally.
//! - Listing collects every page of ListMetrics and removes duplicates (some endpoints list a
//!   metric once per data point).
//! - Alarms are PutMetricAlarm / DescribeAlarms / DeleteAlarms / DescribeAlarmHistory
//!   (state updates only). CloudWatch evaluates them itself; missing data is treated as
//!   `missing`, which matches core's rule (INSUFFICIENT_DATA when no period has data).
//!   Deleting or reading the history of an alarm that does not exist is NotFound: both look
//!   the alarm up first, since DeleteAlarms of an unknown name succeeds on some endpoints and
//!   DescribeAlarmHistory keeps the history of deleted alarms. Alarms mvi cannot express
//!   (metric math, anomaly bands, composite alarms) are left out of `describe_alarms`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime as AwsTime;
use aws_sdk_cloudwatch::types::{
    AlarmType, ComparisonOperator, Dimension, HistoryItemType, Metric as AwsMetric, MetricAlarm,
    MetricDataQuery, MetricDatum, MetricStat, ScanBy, StandardUnit, StateValue,
    Statistic as AwsStatistic,
};
use mvi_core::metric::{
    Alarm, AlarmSpec, AlarmState, AlarmTransition, Comparison, Datapoint, Datum, GetStatistics,
    MAX_BATCH_POINTS, MetricId, Metrics, Statistic, Unit, validate_alarm, validate_datum,
    validate_metric, validate_namespace, validate_period, validate_statistic,
};
use mvi_core::{Op, Result, Service, Timestamp};
use serde::Deserialize;

use crate::error::map;

const fn op(name: &'static str) -> Op {
    Op::new(Service::Metric, name)
}

/// The most periods one `get_statistics` may span: CloudWatch's limit of 1,440 datapoints
/// per GetMetricStatistics call, which the local backend enforces too.
pub const MAX_DATAPOINTS: u64 = 1440;
/// The most queries in one GetMetricData call.
const MAX_QUERIES: usize = 500;
/// What one PutMetricData request may carry before it is split. CloudWatch takes up to 1 MB;
/// the estimate below is rough, so this leaves room.
const MAX_REQUEST_BYTES: usize = 512 * 1024;
/// CloudWatch's name of the number of points in a period.
const SAMPLE_COUNT: &str = "SampleCount";
/// Every unit mvi has, in the order the unit queries are numbered.
const UNITS: [Unit; 9] = [
    Unit::None,
    Unit::Count,
    Unit::Seconds,
    Unit::Milliseconds,
    Unit::Microseconds,
    Unit::Bytes,
    Unit::Percent,
    Unit::CountPerSecond,
    Unit::BytesPerSecond,
];

/// The Metric service on Amazon CloudWatch (or a CloudWatch-compatible endpoint).
#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    client: Client,
}

impl CloudWatchMetrics {
    /// Metrics over a CloudWatch client built from `config`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        CloudWatchMetrics {
            client: Client::new(config),
        }
    }

    /// The alarm named `name`, as CloudWatch describes it, if it exists.
    async fn find_alarm(&self, op: Op, name: &str) -> Result<Option<MetricAlarm>> {
        let out = self
            .client
            .describe_alarms()
            .alarm_names(name)
            .alarm_types(AlarmType::MetricAlarm)
            .send()
            .await
            .map_err(|e| map(op, name, e))?;
        Ok(out
            .metric_alarms()
            .iter()
            .find(|a| a.alarm_name() == Some(name))
            .cloned())
    }

    /// Looks `name` up, NotFound if there is no such alarm.
    async fn require_alarm(&self, op: Op, name: &str) -> Result<()> {
        // Names CloudWatch would refuse to look up cannot name an existing alarm.
        let chars = name.chars().count();
        if chars == 0 || chars > 255 || self.find_alarm(op, name).await?.is_none() {
            return Err(op.not_found(name, "no such alarm"));
        }
        Ok(())
    }

    /// Runs `queries` (at most [`MAX_QUERIES`]) over `[start, end)`, every page, and returns
    /// each query's `(period start, value)` pairs by query id.
    async fn metric_data(
        &self,
        op: Op,
        resource: &str,
        queries: Vec<MetricDataQuery>,
        start: AwsTime,
        end: AwsTime,
    ) -> Result<HashMap<String, Vec<(Timestamp, f64)>>> {
        let mut results: HashMap<String, Vec<(Timestamp, f64)>> = HashMap::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(start)
                .end_time(end)
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| map(op, resource, e))?;
            for r in out.metric_data_results() {
                let Some(id) = r.id() else { continue };
                if r.timestamps().len() != r.values().len() {
                    return Err(op.internal(
                        resource,
                        format!(
                            "GetMetricData answered {} timestamps and {} values for query {id}",
                            r.timestamps().len(),
                            r.values().len()
                        ),
                    ));
                }
                let entry = results.entry(id.to_owned()).or_default();
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    entry.push((from_aws_time(op, resource, t)?, *v));
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(results)
    }
}

fn to_aws_time(t: Timestamp) -> AwsTime {
    AwsTime::from_secs_and_nanos(t.timestamp(), t.timestamp_subsec_nanos())
}

fn from_aws_time(op: Op, resource: &str, t: &AwsTime) -> Result<Timestamp> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
        .ok_or_else(|| op.internal(resource, format!("time {t:?} is out of range")))
}

fn unit_to_aws(unit: Unit) -> StandardUnit {
    match unit {
        Unit::None => StandardUnit::None,
        Unit::Count => StandardUnit::Count,
        Unit::Seconds => StandardUnit::Seconds,
        Unit::Milliseconds => StandardUnit::Milliseconds,
        Unit::Microseconds => StandardUnit::Microseconds,
        Unit::Bytes => StandardUnit::Bytes,
        Unit::Percent => StandardUnit::Percent,
        Unit::CountPerSecond => StandardUnit::CountSecond,
        Unit::BytesPerSecond => StandardUnit::BytesSecond,
        // A unit added to core later goes by its own name: CloudWatch refuses a unit it does
        // not know, so the put fails rather than storing the wrong unit.
        other => StandardUnit::from(format!("{other:?}").as_str()),
    }
}

fn dimensions(dims: &BTreeMap<String, String>) -> Vec<Dimension> {
    dims.iter()
        .map(|(k, v)| Dimension::builder().name(k).value(v).build())
        .collect()
}

fn dimensions_from(dims: &[Dimension]) -> BTreeMap<String, String> {
    dims.iter()
        .filter_map(|d| Some((d.name()?.to_owned(), d.value()?.to_owned())))
        .collect()
}

fn metric(id: &MetricId) -> AwsMetric {
    AwsMetric::builder()
        .namespace(&id.namespace)
        .metric_name(&id.name)
        .set_dimensions(Some(dimensions(&id.dimensions)))
        .build()
}

/// CloudWatch's name of a statistic: `Sum`, ..., `p99`, `p99.9`.
fn stat_name(stat: Statistic) -> String {
    stat.to_string()
}

/// The inverse of [`stat_name`] for percentiles (`p99.9` → 9990).
fn parse_percentile(s: &str) -> Option<Statistic> {
    let p: f64 = s.strip_prefix('p')?.parse().ok()?;
    let hundredths = (p * 100.0).round();
    (0.0..=10_000.0)
        .contains(&hundredths)
        .then_some(Statistic::Percentile(hundredths as u16))
}

fn comparison_to_aws(c: Comparison) -> ComparisonOperator {
    match c {
        Comparison::GreaterThanOrEqual => ComparisonOperator::GreaterThanOrEqualToThreshold,
        Comparison::GreaterThan => ComparisonOperator::GreaterThanThreshold,
        Comparison::LessThan => ComparisonOperator::LessThanThreshold,
        Comparison::LessThanOrEqual => ComparisonOperator::LessThanOrEqualToThreshold,
    }
}

fn state_from(s: &str) -> Option<AlarmState> {
    match s {
        "OK" => Some(AlarmState::Ok),
        "ALARM" => Some(AlarmState::Alarm),
        "INSUFFICIENT_DATA" => Some(AlarmState::InsufficientData),
        _ => None,
    }
}

/// An alarm as mvi models it, or `None` for alarms mvi cannot express (metric math,
/// anomaly-detection bands, unknown statistics).
fn alarm_from(a: &MetricAlarm) -> Option<Alarm> {
    let metric = MetricId {
        namespace: a.namespace()?.to_owned(),
        name: a.metric_name()?.to_owned(),
        dimensions: dimensions_from(a.dimensions()),
    };
    let statistic = match (a.statistic(), a.extended_statistic()) {
        (Some(AwsStatistic::Sum), _) => Statistic::Sum,
        (Some(AwsStatistic::Average), _) => Statistic::Average,
        (Some(AwsStatistic::Minimum), _) => Statistic::Minimum,
        (Some(AwsStatistic::Maximum), _) => Statistic::Maximum,
        (Some(AwsStatistic::SampleCount), _) => Statistic::SampleCount,
        (None, Some(ext)) => parse_percentile(ext)?,
        _ => return None,
    };
    let comparison = match a.comparison_operator()? {
        ComparisonOperator::GreaterThanOrEqualToThreshold => Comparison::GreaterThanOrEqual,
        ComparisonOperator::GreaterThanThreshold => Comparison::GreaterThan,
        ComparisonOperator::LessThanThreshold => Comparison::LessThan,
        ComparisonOperator::LessThanOrEqualToThreshold => Comparison::LessThanOrEqual,
        _ => return None,
    };
    let spec = AlarmSpec::new(
        a.alarm_name()?,
        metric,
        statistic,
        comparison,
        a.threshold()?,
        Duration::from_secs(u64::try_from(a.period()?).ok()?),
        u32::try_from(a.evaluation_periods()?).ok()?,
    );
    let state = match a.state_value() {
        Some(StateValue::Ok) => AlarmState::Ok,
        Some(StateValue::Alarm) => AlarmState::Alarm,
        _ => AlarmState::InsufficientData,
    };
    let updated = a
        .state_updated_timestamp()
        .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or(Timestamp::UNIX_EPOCH);
    Some(Alarm {
        spec,
        state,
        reason: a.state_reason().unwrap_or_default().to_owned(),
        updated,
    })
}

/// The `HistoryData` JSON of a CloudWatch state update.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateUpdate {
    old_state: StateSide,
    new_state: StateSide,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateSide {
    state_value: String,
    #[serde(default)]
    state_reason: String,
}

/// Core's period rule, then CloudWatch's: a query's period is 1, 5, 10, 20 or 30 seconds or a
/// multiple of 60 (`alarm`: 10, 20, 30 or a multiple of 60). CloudWatch would refuse other
/// periods itself; saying so here names the rule.
fn validate_cloudwatch_period(op: Op, resource: &str, period: Duration, alarm: bool) -> Result<()> {
    validate_period(op, resource, period)?;
    let secs = period.as_secs();
    let short: &[u64] = if alarm {
        &[10, 20, 30]
    } else {
        &[1, 5, 10, 20, 30]
    };
    if !(secs.is_multiple_of(60) || short.contains(&secs)) {
        return Err(op.invalid(
            resource,
            format!(
                "CloudWatch periods are {} seconds or a multiple of 60; {secs} s is neither",
                short
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if i32::try_from(secs).is_err() {
        return Err(op.invalid(resource, "the period is too long"));
    }
    Ok(())
}

/// A rough upper bound of a datum's size on the wire.
fn datum_size(d: &Datum) -> usize {
    64 + d.name.len()
        + d.dimensions
            .iter()
            .map(|(k, v)| 16 + k.len() + v.len())
            .sum::<usize>()
}

fn datum_to_aws(d: &Datum) -> MetricDatum {
    MetricDatum::builder()
        .metric_name(&d.name)
        .set_dimensions(Some(dimensions(&d.dimensions)))
        .timestamp(to_aws_time(d.timestamp))
        .value(d.value)
        .unit(unit_to_aws(d.unit))
        // High resolution, so sub-minute periods are answered from the points themselves.
        .storage_resolution(1)
        .build()
}

/// What one GetMetricData query stands for.
#[derive(Clone, Copy)]
enum Query {
    /// `SampleCount` of every point: which periods have data.
    Count,
    /// A requested statistic.
    Stat(Statistic),
    /// `SampleCount` of the points with this unit.
    UnitCount(Unit),
}

#[async_trait]
impl Metrics for CloudWatchMetrics {
    async fn put_data(&self, namespace: &str, data: Vec<Datum>) -> Result<()> {
        let op = op("put_data");
        validate_namespace(op, namespace)?;
        if data.len() > MAX_BATCH_POINTS {
            return Err(op.invalid(
                namespace,
                format!(
                    "{} points in one call; at most {MAX_BATCH_POINTS}",
                    data.len()
                ),
            ));
        }
        // Every point is checked before anything is sent: a bad point stores nothing.
        for d in &data {
            validate_datum(op, namespace, d)?;
        }
        let mut chunks: Vec<Vec<MetricDatum>> = Vec::new();
        let mut size = 0;
        for d in &data {
            let s = datum_size(d);
            match chunks.last_mut() {
                Some(chunk) if size + s <= MAX_REQUEST_BYTES => {
                    chunk.push(datum_to_aws(d));
                    size += s;
                }
                _ => {
                    chunks.push(vec![datum_to_aws(d)]);
                    size = s;
                }
            }
        }
        for chunk in chunks {
            self.client
                .put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(chunk))
                .send()
                .await
                .map_err(|e| map(op, namespace, e))?;
        }
        Ok(())
    }

    async fn get_statistics(&self, req: GetStatistics) -> Result<Vec<Datapoint>> {
        let op = op("get_statistics");
        let resource = req.metric.to_string();
        validate_metric(op, &req.metric)?;
        validate_cloudwatch_period(op, &resource, req.period, false)?;
        if req.statistics.is_empty() {
            return Err(op.invalid(resource, "ask for at least one statistic"));
        }
        for stat in &req.statistics {
            validate_statistic(op, &resource, *stat)?;
        }
        if req.start >= req.end {
            return Err(op.invalid(resource, "the start must be before the end"));
        }
        let period = req.period.as_secs();
        let secs = i64::try_from(period).unwrap_or(i64::MAX);
        // Periods start at multiples of the period from the epoch: align the start down.
        let start = req.start.timestamp();
        let start = start - start.rem_euclid(secs);
        let start = chrono::DateTime::from_timestamp(start, 0)
            .ok_or_else(|| op.invalid(resource.as_str(), "the range is out of bounds"))?;
        let span = (req.end - start).num_microseconds().unwrap_or(i64::MAX);
        let spanned = span
            .unsigned_abs()
            .div_ceil(period.saturating_mul(1_000_000));
        if spanned > MAX_DATAPOINTS {
            return Err(op.invalid(
                resource,
                format!("the range spans {spanned} periods; at most {MAX_DATAPOINTS} per request"),
            ));
        }

        let stats: Vec<Statistic> = req
            .statistics
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let queries: Vec<Query> = std::iter::once(Query::Count)
            .chain(stats.iter().map(|s| Query::Stat(*s)))
            .chain(UNITS.iter().map(|u| Query::UnitCount(*u)))
            .collect();
        let metric = metric(&req.metric);
        let period_i32 = i32::try_from(period).unwrap_or(i32::MAX);
        let (aws_start, aws_end) = (to_aws_time(start), to_aws_time(req.end));

        let mut results = HashMap::new();
        for (batch, chunk) in queries.chunks(MAX_QUERIES).enumerate() {
            let built = chunk
                .iter()
                .enumerate()
                .map(|(i, q)| {
                    let (stat, unit) = match q {
                        Query::Count => (SAMPLE_COUNT.to_owned(), None),
                        Query::Stat(s) => (stat_name(*s), None),
                        Query::UnitCount(u) => (SAMPLE_COUNT.to_owned(), Some(unit_to_aws(*u))),
                    };
                    MetricDataQuery::builder()
                        .id(format!("q{}", batch * MAX_QUERIES + i))
                        .metric_stat(
                            MetricStat::builder()
                                .metric(metric.clone())
                                .period(period_i32)
                                .stat(stat)
                                .set_unit(unit)
                                .build(),
                        )
                        .return_data(true)
                        .build()
                })
                .collect();
            results.extend(
                self.metric_data(op, &resource, built, aws_start, aws_end)
                    .await?,
            );
        }
        let series = |i: usize| results.get(&format!("q{i}")).map_or(&[][..], Vec::as_slice);

        // The periods with data, then their statistics and, where every point agrees, the unit.
        let mut points: BTreeMap<Timestamp, (f64, Datapoint)> = series(0)
            .iter()
            .filter(|(_, count)| *count > 0.0)
            .map(|(t, count)| {
                let p = Datapoint {
                    timestamp: *t,
                    values: BTreeMap::new(),
                    unit: Unit::None,
                };
                (*t, (*count, p))
            })
            .collect();
        for (i, q) in queries.iter().enumerate().skip(1) {
            for (t, v) in series(i) {
                let Some((count, p)) = points.get_mut(t) else {
                    continue;
                };
                match q {
                    Query::Stat(s) => {
                        p.values.insert(*s, *v);
                    }
                    Query::UnitCount(u) if *v == *count => p.unit = *u,
                    _ => {}
                }
            }
        }
        Ok(points.into_values().map(|(_, p)| p).collect())
    }

    async fn list_metrics(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<MetricId>> {
        let op = op("list_metrics");
        if namespace == Some("") || name == Some("") {
            return Err(op.invalid("", "an empty namespace or name filter matches nothing"));
        }
        let resource = namespace.unwrap_or("*");
        let mut ids = BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_metrics()
                .set_namespace(namespace.map(str::to_owned))
                .set_metric_name(name.map(str::to_owned))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| map(op, resource, e))?;
            for m in out.metrics() {
                let (Some(ns), Some(n)) = (m.namespace(), m.metric_name()) else {
                    continue;
                };
                ids.insert(MetricId {
                    namespace: ns.to_owned(),
                    name: n.to_owned(),
                    dimensions: dimensions_from(m.dimensions()),
                });
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(ids.into_iter().collect())
    }

    async fn put_alarm(&self, spec: AlarmSpec) -> Result<()> {
        let op = op("put_alarm");
        // CloudWatch's alarm periods on top of the common rules.
        validate_alarm(op, &spec, |op, name, period| {
            validate_cloudwatch_period(op, name, period, true)
        })?;
        let name = spec.name.as_str();
        // Validated: the period fits in i32 and period × evaluation_periods ≤ 7 days.
        let period = i32::try_from(spec.period.as_secs())
            .map_err(|_| op.invalid(name, "the period is too long"))?;
        let evaluation_periods = i32::try_from(spec.evaluation_periods)
            .map_err(|_| op.invalid(name, "too many evaluation periods"))?;
        let mut req = self
            .client
            .put_metric_alarm()
            .alarm_name(name)
            .namespace(&spec.metric.namespace)
            .metric_name(&spec.metric.name)
            .set_dimensions(Some(dimensions(&spec.metric.dimensions)))
            .period(period)
            .evaluation_periods(evaluation_periods)
            .datapoints_to_alarm(evaluation_periods)
            .threshold(spec.threshold)
            .comparison_operator(comparison_to_aws(spec.comparison))
            // Core's rule: INSUFFICIENT_DATA when no period has data, else judged on the
            // periods that have data.
            .treat_missing_data("missing");
        req = match spec.statistic {
            Statistic::Sum => req.statistic(AwsStatistic::Sum),
            Statistic::Average => req.statistic(AwsStatistic::Average),
            Statistic::Minimum => req.statistic(AwsStatistic::Minimum),
            Statistic::Maximum => req.statistic(AwsStatistic::Maximum),
            Statistic::SampleCount => req.statistic(AwsStatistic::SampleCount),
            p @ Statistic::Percentile(_) => req.extended_statistic(stat_name(p)),
        };
        req.send().await.map_err(|e| map(op, name, e))?;
        Ok(())
    }

    async fn delete_alarm(&self, name: &str) -> Result<()> {
        let op = op("delete_alarm");
        self.require_alarm(op, name).await?;
        self.client
            .delete_alarms()
            .alarm_names(name)
            .send()
            .await
            .map_err(|e| map(op, name, e))?;
        Ok(())
    }

    async fn describe_alarms(&self, prefix: Option<&str>) -> Result<Vec<Alarm>> {
        let op = op("describe_alarms");
        // CloudWatch refuses an empty prefix; it matches every alarm anyway.
        let prefix = prefix.filter(|p| !p.is_empty());
        let resource = prefix.unwrap_or("*");
        let mut alarms = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_alarms()
                .set_alarm_name_prefix(prefix.map(str::to_owned))
                .alarm_types(AlarmType::MetricAlarm)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| map(op, resource, e))?;
            for a in out.metric_alarms() {
                match alarm_from(a) {
                    // The prefix is checked here too: not every endpoint filters.
                    Some(alarm) if prefix.is_none_or(|p| alarm.spec.name.starts_with(p)) => {
                        alarms.insert(alarm.spec.name.clone(), alarm);
                    }
                    Some(_) => {}
                    None => tracing::debug!(
                        alarm = a.alarm_name().unwrap_or_default(),
                        "metric: leaving out an alarm mvi cannot express"
                    ),
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(alarms.into_values().collect())
    }

    async fn alarm_history(&self, name: &str) -> Result<Vec<AlarmTransition>> {
        let op = op("alarm_history");
        self.require_alarm(op, name).await?;
        let mut history = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_alarm_history()
                .alarm_name(name)
                .alarm_types(AlarmType::MetricAlarm)
                .history_item_type(HistoryItemType::StateUpdate)
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| map(op, name, e))?;
            for item in out.alarm_history_items() {
                let data = item.history_data().unwrap_or_default();
                let update: StateUpdate = serde_json::from_str(data).map_err(|e| {
                    op.internal(name, format!("unreadable state update {data:?}: {e}"))
                })?;
                let (Some(from), Some(to)) = (
                    state_from(&update.old_state.state_value),
                    state_from(&update.new_state.state_value),
                ) else {
                    return Err(op.internal(
                        name,
                        format!("unknown alarm state in state update {data:?}"),
                    ));
                };
                let time = match item.timestamp() {
                    Some(t) => from_aws_time(op, name, t)?,
                    None => Timestamp::UNIX_EPOCH,
                };
                let reason = if update.new_state.state_reason.is_empty() {
                    item.history_summary().unwrap_or_default().to_owned()
                } else {
                    update.new_state.state_reason
                };
                history.push(AlarmTransition {
                    time,
                    from,
                    to,
                    reason,
                });
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        // Oldest first, whatever order the pages came in.
        history.sort_by_key(|h| h.time);
        Ok(history)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_names_roundtrip() {
        for p in [0u16, 5, 5000, 9000, 9900, 9990, 9999, 10_000] {
            let stat = Statistic::Percentile(p);
            assert_eq!(parse_percentile(&stat_name(stat)), Some(stat), "{stat}");
        }
        assert_eq!(stat_name(Statistic::P99), "p99");
        assert_eq!(stat_name(Statistic::SampleCount), "SampleCount");
        assert_eq!(parse_percentile("p100.5"), None);
        assert_eq!(parse_percentile("Sum"), None);
    }

    #[test]
    fn cloudwatch_periods() {
        let op = op("test");
        let ok = |s: u64, alarm| validate_cloudwatch_period(op, "m", Duration::from_secs(s), alarm);
        assert!(ok(1, false).is_ok());
        assert!(ok(1, true).is_err());
        assert!(ok(30, true).is_ok());
        assert!(ok(45, false).is_err());
        assert!(ok(300, true).is_ok());
        assert!(ok(0, false).is_err());
    }
}

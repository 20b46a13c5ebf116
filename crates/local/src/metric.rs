//! The local Metrics service: CloudWatch's metrics and alarms as an in-process time-series
//! store.
//!
//! How it is stored, and why:
//!
//! - Every series (one [`MetricId`]: namespace, name, dimensions) lives in memory as a vector
//!   of points sorted by time, so a statistics query is two binary searches and one walk over
//!   the points in range. Points nearly always arrive in time order; a batch that does not is
//!   merged by re-sorting only the tail it overlaps.
//! - On disk, each accepted `put_data` batch is appended to `points.log` as one checksummed
//!   postcard record with a single `write` (`metric/segment.rs`, a
//!   [`RecordFile`](crate::storage::records::RecordFile)). Acknowledged points therefore survive
//!   `kill -9` (they are in the OS's page cache); there is no fsync per batch, which keeps
//!   batched writes at hundreds of thousands of points per second. Opening replays the log to
//!   rebuild the series and cuts off a torn or damaged last record.
//! - Alarms and their state histories are few and change rarely: all of them are kept in
//!   `alarms.bin` (postcard), rewritten atomically on every change.
//!
//! In memory mode the same code runs without the log and the alarm file.
//!
//! Alarms are evaluated as CloudWatch does, with core's [`evaluate_alarm`] over the last
//! `evaluation_periods` complete periods (aligned to the period from the Unix epoch) before
//! `now`. There is no background timer: an alarm is evaluated when it is put, after every
//! `put_data` that touches its metric, and whenever it is read (`describe_alarms`,
//! `alarm_history`), so a moved clock is observed on the next read and the outcome depends only
//! on the data and the clock. State changes are recorded with the time they were observed.

mod segment;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use mvi_core::metric::{
    Alarm, AlarmSpec, AlarmState, AlarmTransition, Datapoint, Datum, GetStatistics,
    MAX_BATCH_POINTS, MetricId, Metrics, evaluate_alarm, validate_alarm, validate_datum,
    validate_metric, validate_namespace, validate_period, validate_statistic,
};
use mvi_core::{Op, Result, Service, Timestamp};
use serde::{Deserialize, Serialize};

use crate::sim::Sim;
use crate::storage::{Ctx, atomic_write, io_error};
use segment::{BatchRecord, Point, PointLog, SeriesRecord};

/// The most periods one `get_statistics` may span (CloudWatch's limit of 1,440 data points
/// per GetMetricStatistics call).
pub const MAX_DATAPOINTS: u64 = 1440;
/// The most state changes kept per alarm; older ones are dropped first.
pub const MAX_HISTORY: usize = 1000;

const POINTS_FILE: &str = "points.log";
const ALARMS_FILE: &str = "alarms.bin";
/// Bumped when the layout of `alarms.bin` changes.
const ALARMS_VERSION: u32 = 1;
const MICROS_PER_SEC: i64 = 1_000_000;

/// The local Metrics service.
#[derive(Debug)]
pub struct LocalMetrics {
    sim: Arc<Sim>,
    /// `alarms.bin`, or `None` in memory.
    alarms_path: Option<PathBuf>,
    state: Mutex<State>,
}

/// Everything behind one lock: a batch's log append and its insertion happen in the same
/// order for every writer, so replay rebuilds exactly what callers saw.
#[derive(Debug, Default)]
struct State {
    series: HashMap<MetricId, Vec<Point>>,
    alarms: BTreeMap<String, AlarmRecord>,
    /// The points log, or `None` in memory.
    log: Option<PointLog>,
}

/// An alarm with its history, as kept in memory and in `alarms.bin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AlarmRecord {
    alarm: Alarm,
    history: Vec<AlarmTransition>,
}

#[derive(Serialize)]
struct AlarmsFileRef<'a> {
    version: u32,
    alarms: Vec<&'a AlarmRecord>,
}

#[derive(Deserialize)]
struct AlarmsFile {
    version: u32,
    alarms: Vec<AlarmRecord>,
}

impl LocalMetrics {
    /// Opens the service's state: replays the points log and loads the alarms (on disk), or
    /// starts empty (in memory).
    pub async fn open(ctx: Ctx) -> Result<Self> {
        let op = Op::new(Service::Metric, "open");
        let mut state = State::default();
        let mut alarms_path = None;
        if let Some(dir) = &ctx.dir {
            let log = PointLog::open(op, &dir.join(POINTS_FILE), |record| state.replay(record))?;
            state.log = Some(log);
            let path = dir.join(ALARMS_FILE);
            state.alarms = load_alarms(op, &path)?;
            alarms_path = Some(path);
        }
        Ok(LocalMetrics {
            sim: ctx.sim,
            alarms_path,
            state: Mutex::new(state),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; should a bug do so, the state is still
        // consistent at every point a panic could happen (single pushes and inserts).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes every alarm to `alarms.bin` (nothing in memory mode).
    fn save_alarms(&self, op: Op, state: &State) -> Result<()> {
        let Some(path) = &self.alarms_path else {
            return Ok(());
        };
        let file = AlarmsFileRef {
            version: ALARMS_VERSION,
            alarms: state.alarms.values().collect(),
        };
        let bytes = postcard::to_stdvec(&file).map_err(|e| op.internal(ALARMS_FILE, e))?;
        atomic_write(op, path, &bytes)
    }

    /// Saves alarm state changes found while serving another operation. The operation itself
    /// succeeded, so a failure here is logged rather than returned; the whole set is written
    /// again on the next change.
    fn save_evaluated(&self, op: Op, state: &State, changed: bool) {
        if changed && let Err(e) = self.save_alarms(op, state) {
            tracing::warn!(error = %e, "metric: cannot save alarm state changes");
        }
    }
}

fn load_alarms(op: Op, path: &Path) -> Result<BTreeMap<String, AlarmRecord>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io_error(op, path, e)),
    };
    let file: AlarmsFile =
        postcard::from_bytes(&bytes).map_err(|e| op.internal(path.display().to_string(), e))?;
    if file.version != ALARMS_VERSION {
        return Err(op.internal(
            path.display().to_string(),
            format!(
                "alarm file version {} is not the supported version {ALARMS_VERSION}",
                file.version
            ),
        ));
    }
    Ok(file
        .alarms
        .into_iter()
        .map(|r| (r.alarm.spec.name.clone(), r))
        .collect())
}

impl State {
    /// Applies one replayed log record.
    fn replay(&mut self, record: BatchRecord<'static>) {
        for series in record.series {
            let id = MetricId {
                namespace: record.namespace.clone().into_owned(),
                name: series.name.into_owned(),
                dimensions: series.dimensions.into_owned(),
            };
            self.insert(id, series.points.into_owned());
        }
    }

    /// Adds time-sorted `points` to the series `id`, keeping it sorted.
    fn insert(&mut self, id: MetricId, points: Vec<Point>) {
        match self.series.get_mut(&id) {
            Some(series) => merge(series, points),
            None => {
                self.series.insert(id, points);
            }
        }
    }

    /// Evaluates the alarms `pick` selects at `now`, recording every state change. Returns
    /// whether any state changed.
    fn evaluate(&mut self, now: Timestamp, mut pick: impl FnMut(&AlarmRecord) -> bool) -> bool {
        let State { series, alarms, .. } = self;
        let mut changed = false;
        for record in alarms.values_mut().filter(|r| pick(r)) {
            let spec = &record.alarm.spec;
            let points = series.get(&spec.metric).map_or(&[][..], Vec::as_slice);
            let values = period_values(points, spec, now);
            let (to, reason) = evaluate_alarm(spec, &values);
            if to == record.alarm.state {
                continue;
            }
            record.history.push(AlarmTransition {
                time: now,
                from: record.alarm.state,
                to,
                reason: reason.clone(),
            });
            let excess = record.history.len().saturating_sub(MAX_HISTORY);
            record.history.drain(..excess);
            record.alarm.state = to;
            record.alarm.reason = reason;
            record.alarm.updated = now;
            changed = true;
        }
        changed
    }
}

/// Appends time-sorted `new` to the time-sorted `series`. Only the part of `series` that
/// `new` overlaps is re-sorted (nothing when `new` comes after, the usual case); the sort is
/// stable, so points already stored stay ahead of new points with the same time.
fn merge(series: &mut Vec<Point>, new: Vec<Point>) {
    let Some(first) = new.first() else {
        return;
    };
    let from = series.partition_point(|p| p.micros <= first.micros);
    let in_order = from == series.len();
    series.extend(new);
    if !in_order && let Some(tail) = series.get_mut(from..) {
        tail.sort_by_key(|p| p.micros);
    }
}

/// Groups a validated batch by series, each group sorted by time. Consecutive points of the
/// same series (the common shape of a batch) skip the hash lookup.
fn group_by_series(namespace: &str, data: Vec<Datum>) -> Vec<(MetricId, Vec<Point>)> {
    let mut groups: Vec<(MetricId, Vec<Point>)> = Vec::new();
    let mut index: HashMap<MetricId, usize> = HashMap::new();
    for d in data {
        let point = Point {
            micros: d.timestamp.timestamp_micros(),
            value: d.value,
            unit: d.unit,
        };
        if let Some((id, points)) = groups.last_mut()
            && id.name == d.name
            && id.dimensions == d.dimensions
        {
            points.push(point);
            continue;
        }
        let id = MetricId {
            namespace: namespace.to_owned(),
            name: d.name,
            dimensions: d.dimensions,
        };
        match index.get(&id).and_then(|&i| groups.get_mut(i)) {
            Some((_, points)) => points.push(point),
            None => {
                index.insert(id.clone(), groups.len());
                groups.push((id, vec![point]));
            }
        }
    }
    for (_, points) in &mut groups {
        points.sort_by_key(|p| p.micros);
    }
    groups
}

/// The points of a time-sorted slice, period by period: `(period start, points)` for each
/// period (aligned to `period` micros from the epoch) that has any.
struct Periods<'a> {
    rest: &'a [Point],
    period: i64,
}

impl<'a> Iterator for Periods<'a> {
    type Item = (i64, &'a [Point]);

    fn next(&mut self) -> Option<Self::Item> {
        let first = self.rest.first()?;
        let start = first.micros - first.micros.rem_euclid(self.period);
        let next = start.saturating_add(self.period);
        let (chunk, rest) = self
            .rest
            .split_at(self.rest.partition_point(|p| p.micros < next));
        self.rest = rest;
        Some((start, chunk))
    }
}

/// Walks time-sorted `points` period by period (`period` micros, > 0).
fn periods(points: &[Point], period: i64) -> Periods<'_> {
    Periods {
        rest: points,
        period,
    }
}

/// The points of `points` (time-sorted) in `[from, to)`, micros.
fn in_range(points: &[Point], from: i64, to: i64) -> &[Point] {
    let lo = points.partition_point(|p| p.micros < from);
    let hi = points.partition_point(|p| p.micros < to);
    points.get(lo..hi).unwrap_or(&[])
}

/// A period's length in micros. Validated periods (≥ 1 s) that do not fit are rejected.
fn period_micros(op: Op, resource: &str, period: Duration) -> Result<i64> {
    validate_period(op, resource, period)?;
    i64::try_from(period.as_secs())
        .ok()
        .and_then(|s| s.checked_mul(MICROS_PER_SEC))
        .ok_or_else(|| op.invalid(resource, "the period is too long"))
}

/// The statistic of each of the alarm's last `evaluation_periods` complete periods before
/// `now`, oldest first, `None` for a period without data.
fn period_values(points: &[Point], spec: &AlarmSpec, now: Timestamp) -> Vec<Option<f64>> {
    // A stored spec was validated: period × evaluation_periods ≤ 7 days, so none of this
    // arithmetic can overflow for any representable `now`.
    let period = i64::try_from(spec.period.as_secs())
        .unwrap_or(i64::MAX)
        .saturating_mul(MICROS_PER_SEC)
        .max(1);
    let count = spec.evaluation_periods as usize;
    let now = now.timestamp_micros();
    let end = now - now.rem_euclid(period);
    let start = end.saturating_sub(period.saturating_mul(i64::from(spec.evaluation_periods)));
    let mut out = vec![None; count];
    let mut values = Vec::new();
    for (period_start, chunk) in periods(in_range(points, start, end), period) {
        values.clear();
        values.extend(chunk.iter().map(|p| p.value));
        let slot = usize::try_from((period_start - start) / period).unwrap_or(usize::MAX);
        if let Some(slot) = out.get_mut(slot) {
            *slot = spec.statistic.compute(&values);
        }
    }
    out
}

#[async_trait]
impl Metrics for LocalMetrics {
    async fn put_data(&self, namespace: &str, data: Vec<Datum>) -> Result<()> {
        let op = Op::new(Service::Metric, "put_data");
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
        for d in &data {
            validate_datum(op, namespace, d)?;
        }
        if data.is_empty() {
            return Ok(());
        }
        let groups = group_by_series(namespace, data);

        let mut state = self.state();
        if let Some(log) = state.log.as_mut() {
            let record = BatchRecord {
                namespace: Cow::Borrowed(namespace),
                series: groups
                    .iter()
                    .map(|(id, points)| SeriesRecord {
                        name: Cow::Borrowed(&id.name),
                        dimensions: Cow::Borrowed(&id.dimensions),
                        points: Cow::Borrowed(points),
                    })
                    .collect(),
            };
            log.append(op, &record)?;
        }
        let touched: Vec<MetricId> = if state.alarms.is_empty() {
            Vec::new()
        } else {
            groups.iter().map(|(id, _)| id.clone()).collect()
        };
        for (id, points) in groups {
            state.insert(id, points);
        }
        if !touched.is_empty() {
            let now = self.sim.now();
            let changed = state.evaluate(now, |r| touched.contains(&r.alarm.spec.metric));
            self.save_evaluated(op, &state, changed);
        }
        Ok(())
    }

    async fn get_statistics(&self, req: GetStatistics) -> Result<Vec<Datapoint>> {
        let op = Op::new(Service::Metric, "get_statistics");
        let resource = req.metric.to_string();
        validate_metric(op, &req.metric)?;
        let period = period_micros(op, &resource, req.period)?;
        if req.statistics.is_empty() {
            return Err(op.invalid(resource, "ask for at least one statistic"));
        }
        for stat in &req.statistics {
            validate_statistic(op, &resource, *stat)?;
        }
        if req.start >= req.end {
            return Err(op.invalid(resource, "the start must be before the end"));
        }
        let start = req.start.timestamp_micros();
        let start = start - start.rem_euclid(period);
        // The end is exclusive: a sub-microsecond remainder still admits the microsecond
        // it falls in.
        let end = req.end.timestamp_micros().saturating_add(i64::from(
            !req.end.timestamp_subsec_nanos().is_multiple_of(1000),
        ));
        let spanned = end.abs_diff(start).div_ceil(period.unsigned_abs());
        if spanned > MAX_DATAPOINTS {
            return Err(op.invalid(
                resource,
                format!("the range spans {spanned} periods; at most {MAX_DATAPOINTS} per request"),
            ));
        }

        // Copy the points in range out so the lock is not held while percentiles sort.
        let points = {
            let state = self.state();
            match state.series.get(&req.metric) {
                Some(series) => in_range(series, start, end).to_vec(),
                None => return Ok(Vec::new()),
            }
        };
        let mut out = Vec::new();
        let mut values = Vec::new();
        for (period_start, chunk) in periods(&points, period) {
            values.clear();
            values.extend(chunk.iter().map(|p| p.value));
            let timestamp = Timestamp::from_timestamp_micros(period_start)
                .ok_or_else(|| op.invalid(resource.as_str(), "the range is out of bounds"))?;
            let unit = chunk
                .first()
                .map(|p| p.unit)
                .filter(|u| chunk.iter().all(|p| p.unit == *u))
                .unwrap_or_default();
            let values = req
                .statistics
                .iter()
                .filter_map(|stat| Some((*stat, stat.compute(&values)?)))
                .collect();
            out.push(Datapoint {
                timestamp,
                values,
                unit,
            });
        }
        Ok(out)
    }

    async fn list_metrics(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<MetricId>> {
        let op = Op::new(Service::Metric, "list_metrics");
        if namespace == Some("") || name == Some("") {
            return Err(op.invalid("", "an empty namespace or name filter matches nothing"));
        }
        let state = self.state();
        let mut ids: Vec<MetricId> = state
            .series
            .keys()
            .filter(|id| namespace.is_none_or(|ns| id.namespace == ns))
            .filter(|id| name.is_none_or(|n| id.name == n))
            .cloned()
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn put_alarm(&self, spec: AlarmSpec) -> Result<()> {
        let op = Op::new(Service::Metric, "put_alarm");
        validate_alarm(op, &spec, validate_period)?;
        let now = self.sim.now();
        let name = spec.name.clone();
        let mut state = self.state();
        let previous = state.alarms.get(&name).cloned();
        match state.alarms.get_mut(&name) {
            // As CloudWatch: replacing an alarm's definition leaves its state (and history)
            // as it was; the evaluation below moves it if the new definition says so.
            Some(record) => record.alarm.spec = spec,
            None => {
                state.alarms.insert(
                    name.clone(),
                    AlarmRecord {
                        alarm: Alarm {
                            spec,
                            state: AlarmState::InsufficientData,
                            reason: "the alarm was just created".into(),
                            updated: now,
                        },
                        history: Vec::new(),
                    },
                );
            }
        }
        state.evaluate(now, |r| r.alarm.spec.name == name);
        if let Err(e) = self.save_alarms(op, &state) {
            // Not saved, so not done: put the previous alarm (or none) back.
            match previous {
                Some(record) => state.alarms.insert(name, record),
                None => state.alarms.remove(&name),
            };
            return Err(e);
        }
        Ok(())
    }

    async fn delete_alarm(&self, name: &str) -> Result<()> {
        let op = Op::new(Service::Metric, "delete_alarm");
        let mut state = self.state();
        let Some(record) = state.alarms.remove(name) else {
            return Err(op.not_found(name, "no such alarm"));
        };
        if let Err(e) = self.save_alarms(op, &state) {
            state.alarms.insert(name.to_owned(), record);
            return Err(e);
        }
        Ok(())
    }

    async fn describe_alarms(&self, prefix: Option<&str>) -> Result<Vec<Alarm>> {
        let op = Op::new(Service::Metric, "describe_alarms");
        let now = self.sim.now();
        let matches = |r: &AlarmRecord| prefix.is_none_or(|p| r.alarm.spec.name.starts_with(p));
        let mut state = self.state();
        let changed = state.evaluate(now, matches);
        self.save_evaluated(op, &state, changed);
        Ok(state
            .alarms
            .values()
            .filter(|r| matches(r))
            .map(|r| r.alarm.clone())
            .collect())
    }

    async fn alarm_history(&self, name: &str) -> Result<Vec<AlarmTransition>> {
        let op = Op::new(Service::Metric, "alarm_history");
        let now = self.sim.now();
        let mut state = self.state();
        if !state.alarms.contains_key(name) {
            return Err(op.not_found(name, "no such alarm"));
        }
        let changed = state.evaluate(now, |r| r.alarm.spec.name == name);
        self.save_evaluated(op, &state, changed);
        Ok(state
            .alarms
            .get(name)
            .map(|r| r.history.clone())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use mvi_core::metric::{Statistic, Unit};
    use mvi_core::{Clock, ErrorKind, ManualClock};

    use super::*;
    use crate::storage::records;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn ctx(dir: &Path, clock: &ManualClock) -> Result<Ctx> {
        let sim = Arc::new(Sim::new(1, Arc::new(clock.clone()), "test".into()));
        Ctx::new(Some(dir), Service::Metric, sim)
    }

    async fn count(m: &LocalMetrics, now: Timestamp) -> Result<f64> {
        let id = MetricId::new("App", "Hits");
        let req = GetStatistics::new(
            id,
            now - chrono::TimeDelta::hours(1),
            now + chrono::TimeDelta::hours(1),
            Duration::from_secs(7200),
            [Statistic::SampleCount],
        );
        let points = m.get_statistics(req).await?;
        Ok(points
            .iter()
            .filter_map(|p| p.get(Statistic::SampleCount))
            .sum())
    }

    fn batch(now: Timestamp, n: usize) -> Vec<Datum> {
        (0..n).map(|i| Datum::new("Hits", i as f64, now)).collect()
    }

    #[tokio::test]
    async fn torn_tail_is_cut_and_later_appends_replay() -> TestResult {
        let dir = tempfile::tempdir()?;
        let clock = ManualClock::new(chrono::Utc::now());
        let now = clock.now();
        let m = LocalMetrics::open(ctx(dir.path(), &clock)?).await?;
        m.put_data("App", batch(now, 10)).await?;
        m.put_data("App", batch(now, 5)).await?;
        drop(m);

        // A crash in the middle of a write: a length that promises more than follows.
        let log = dir.path().join("metric").join(POINTS_FILE);
        let good_len = std::fs::metadata(&log)?.len();
        let mut f = std::fs::OpenOptions::new().append(true).open(&log)?;
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3])?;
        drop(f);

        let m = LocalMetrics::open(ctx(dir.path(), &clock)?).await?;
        assert_eq!(count(&m, now).await?, 15.0);
        assert_eq!(std::fs::metadata(&log)?.len(), good_len);
        m.put_data("App", batch(now, 3)).await?;
        drop(m);

        let m = LocalMetrics::open(ctx(dir.path(), &clock)?).await?;
        assert_eq!(count(&m, now).await?, 18.0);
        Ok(())
    }

    #[tokio::test]
    async fn undecodable_tail_is_cut() -> TestResult {
        let dir = tempfile::tempdir()?;
        let clock = ManualClock::new(chrono::Utc::now());
        let now = clock.now();
        let m = LocalMetrics::open(ctx(dir.path(), &clock)?).await?;
        m.put_data("App", batch(now, 4)).await?;
        drop(m);

        // A whole record, checksum and all, whose payload is not a batch.
        let log = dir.path().join("metric").join(POINTS_FILE);
        let good_len = std::fs::metadata(&log)?.len();
        let mut record = Vec::new();
        records::frame(
            Op::new(Service::Metric, "test"),
            "App",
            &mut record,
            &[0xff; 3],
        )?;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log)?;
        f.write_all(&record)?;
        drop(f);

        let m = LocalMetrics::open(ctx(dir.path(), &clock)?).await?;
        assert_eq!(count(&m, now).await?, 4.0);
        assert_eq!(std::fs::metadata(&log)?.len(), good_len);
        Ok(())
    }

    #[tokio::test]
    async fn second_open_of_the_same_root_is_unavailable() -> TestResult {
        let dir = tempfile::tempdir()?;
        let clock = ManualClock::new(chrono::Utc::now());
        let first = LocalMetrics::open(ctx(dir.path(), &clock)?).await?;
        let err = LocalMetrics::open(ctx(dir.path(), &clock)?)
            .await
            .err()
            .ok_or("the second open succeeded")?;
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        drop(first);
        LocalMetrics::open(ctx(dir.path(), &clock)?).await?;
        Ok(())
    }

    #[test]
    fn merge_keeps_series_sorted_and_stable() {
        let p = |micros, value| Point {
            micros,
            value,
            unit: Unit::None,
        };
        let mut series = vec![p(1, 1.0), p(5, 5.0), p(9, 9.0)];
        merge(&mut series, vec![p(5, 50.0), p(6, 6.0)]);
        merge(&mut series, vec![p(10, 10.0)]);
        let got: Vec<(i64, f64)> = series.iter().map(|p| (p.micros, p.value)).collect();
        assert_eq!(
            got,
            [
                (1, 1.0),
                (5, 5.0),
                (5, 50.0),
                (6, 6.0),
                (9, 9.0),
                (10, 10.0)
            ]
        );
    }
}

//! Metric cases.
//!
//! Every case writes to namespaces of its own (`ctx.name(..)`), so runs on a shared endpoint
//! never see each other's data; metrics cannot be deleted (as on CloudWatch), alarms are.
//! Data points are stamped relative to `ctx.now()`, within the window CloudWatch accepts (two
//! weeks back). Datapoints are sorted by time before they are compared, since CloudWatch
//! returns them in no particular order.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use mvi_core::Timestamp;
use mvi_core::metric::{
    AlarmSpec, AlarmState, Comparison, Datapoint, Datum, GetStatistics, MAX_BATCH_POINTS,
    MAX_DIMENSIONS, MetricId, Metrics, Statistic, Unit,
};

use crate::{Ctx, Failure, Outcome, ensure, expect_err};

/// Every Metric case, as tests against `$target`.
#[macro_export]
macro_rules! metric_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
            metric_put_then_statistics => $crate::metric::put_then_statistics;
            metric_percentiles => $crate::metric::percentiles [ExactStatistics];
            metric_periods_aligned_and_empty_omitted => $crate::metric::periods_aligned_and_empty_omitted;
            metric_out_of_order_points => $crate::metric::out_of_order_points;
            metric_dimensions_are_separate_series => $crate::metric::dimensions_are_separate_series [ExactStatistics];
            metric_list_by_namespace_and_name => $crate::metric::list_by_namespace_and_name;
            metric_unknown_metric_has_no_datapoints => $crate::metric::unknown_metric_has_no_datapoints;
            metric_concurrent_writers => $crate::metric::concurrent_writers;
            metric_invalid_namespace_rejected => $crate::metric::invalid_namespace_rejected;
            metric_non_finite_value_rejected => $crate::metric::non_finite_value_rejected;
            metric_too_many_points_rejected => $crate::metric::too_many_points_rejected;
            metric_too_many_dimensions_rejected => $crate::metric::too_many_dimensions_rejected;
            metric_invalid_period_rejected => $crate::metric::invalid_period_rejected;
            metric_invalid_statistics_request_rejected => $crate::metric::invalid_statistics_request_rejected;
            metric_invalid_alarm_rejected => $crate::metric::invalid_alarm_rejected;
            metric_alarm_ok_alarm_ok_history => $crate::metric::alarm_ok_alarm_ok_history [ManualClock, AlarmEvaluation];
            metric_alarm_over_several_periods => $crate::metric::alarm_over_several_periods [ManualClock, AlarmEvaluation];
            metric_alarm_without_data_insufficient => $crate::metric::alarm_without_data_insufficient [AlarmEvaluation];
            metric_describe_alarms_prefix => $crate::metric::describe_alarms_prefix;
            metric_delete_alarm_then_not_found => $crate::metric::delete_alarm_then_not_found;
            metric_replace_alarm_spec => $crate::metric::replace_alarm_spec;
            metric_replace_alarm_reevaluates => $crate::metric::replace_alarm_reevaluates [ManualClock, AlarmEvaluation];
            metric_persist_across_reopen => $crate::metric::persist_across_reopen [Reopen, ExactStatistics];
        }
    };
}

const MINUTE: Duration = Duration::from_secs(60);

fn metrics(ctx: &Ctx) -> Result<Arc<dyn Metrics>, Failure> {
    Ok(ctx.cloud().metrics()?.clone())
}

/// `t` rounded down to a multiple of `secs` seconds since the epoch.
fn align(t: Timestamp, secs: i64) -> Result<Timestamp, Failure> {
    let s = t.timestamp();
    Timestamp::from_timestamp(s - s.rem_euclid(secs), 0).ok_or_else(|| "time out of range".into())
}

/// The start of a minute ten minutes ago: a period that is complete and well inside the
/// window CloudWatch accepts data for.
fn past_minute(ctx: &Ctx) -> Result<Timestamp, Failure> {
    align(ctx.now() - TimeDelta::minutes(10), 60)
}

fn secs(s: i64) -> TimeDelta {
    TimeDelta::seconds(s)
}

/// Statistics of `metric` over `[start, end)` by minute, sorted by time.
async fn stats(
    m: &dyn Metrics,
    metric: &MetricId,
    start: Timestamp,
    end: Timestamp,
    statistics: &[Statistic],
) -> Result<Vec<Datapoint>, Failure> {
    let req = GetStatistics::new(
        metric.clone(),
        start,
        end,
        MINUTE,
        statistics.iter().copied(),
    );
    let mut points = m.get_statistics(req).await?;
    points.sort_by_key(|p| p.timestamp);
    Ok(points)
}

/// The state of alarm `name`.
async fn alarm_state(m: &dyn Metrics, name: &str) -> Result<AlarmState, Failure> {
    let alarms = m.describe_alarms(Some(name)).await?;
    let alarm = alarms
        .iter()
        .find(|a| a.spec.name == name)
        .ok_or_else(|| format!("alarm {name} is not listed"))?;
    Ok(alarm.state)
}

/// Sum, average, minimum, maximum and sample count are exact on known values, and the
/// datapoint carries the period's start and the points' unit.
pub async fn put_then_statistics(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let ns = ctx.name("stats");
    let t = past_minute(ctx)?;
    let data = [1.0, 2.0, 3.0, 4.0, 10.0]
        .iter()
        .enumerate()
        .map(|(i, v)| Datum::new("Requests", *v, t + secs(5 * i as i64 + 1)).unit(Unit::Count))
        .collect();
    m.put_data(&ns, data).await?;
    let all = [
        Statistic::Sum,
        Statistic::Average,
        Statistic::Minimum,
        Statistic::Maximum,
        Statistic::SampleCount,
    ];
    let id = MetricId::new(&ns, "Requests");
    let points = stats(&*m, &id, t, t + secs(60), &all).await?;
    ensure!(points.len() == 1, "expected one datapoint, got {points:?}");
    let p = &points[0];
    ensure!(p.timestamp == t, "datapoint at {} not {t}", p.timestamp);
    ensure!(p.unit == Unit::Count, "unit {:?} is not Count", p.unit);
    for (stat, want) in [
        (Statistic::Sum, 20.0),
        (Statistic::Average, 4.0),
        (Statistic::Minimum, 1.0),
        (Statistic::Maximum, 10.0),
        (Statistic::SampleCount, 5.0),
    ] {
        ensure!(
            p.get(stat) == Some(want),
            "{stat} is {:?}, expected {want}",
            p.get(stat)
        );
    }
    Ok(())
}

/// p50, p90 and p99 of 1..=100 (put in reverse order) are 50, 90 and 99.
pub async fn percentiles(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let ns = ctx.name("pct");
    let t = past_minute(ctx)?;
    let data = (1..=100)
        .rev()
        .map(|v| Datum::new("Latency", f64::from(v), t + secs(i64::from(v % 60))))
        .collect();
    m.put_data(&ns, data).await?;
    let id = MetricId::new(&ns, "Latency");
    let wanted = [Statistic::P50, Statistic::P90, Statistic::P99];
    let points = stats(&*m, &id, t, t + secs(60), &wanted).await?;
    ensure!(points.len() == 1, "expected one datapoint, got {points:?}");
    for (stat, want) in wanted.iter().zip([50.0, 90.0, 99.0]) {
        let got = points[0].get(*stat);
        ensure!(got == Some(want), "{stat} is {got:?}, expected {want}");
    }
    Ok(())
}

/// Periods start at multiples of the period from the epoch (a start inside a period counts
/// from the period's start), and periods without data are left out.
pub async fn periods_aligned_and_empty_omitted(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let ns = ctx.name("periods");
    let t = past_minute(ctx)?;
    let data = vec![
        Datum::new("Hits", 1.0, t + secs(5)),
        Datum::new("Hits", 2.0, t + secs(50)),
        // Nothing in the minute t+60..t+120.
        Datum::new("Hits", 7.0, t + secs(125)),
    ];
    m.put_data(&ns, data).await?;
    let id = MetricId::new(&ns, "Hits");
    let points = stats(
        &*m,
        &id,
        t + secs(30),
        t + secs(180),
        &[Statistic::Sum, Statistic::SampleCount],
    )
    .await?;
    let got: Vec<(Timestamp, Option<f64>, Option<f64>)> = points
        .iter()
        .map(|p| {
            (
                p.timestamp,
                p.get(Statistic::Sum),
                p.get(Statistic::SampleCount),
            )
        })
        .collect();
    let want = vec![
        (t, Some(3.0), Some(2.0)),
        (t + secs(120), Some(7.0), Some(1.0)),
    ];
    ensure!(got == want, "datapoints {got:?}, expected {want:?}");
    Ok(())
}

/// Points put out of time order (a later batch with earlier times) are counted in the
/// right periods.
pub async fn out_of_order_points(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let ns = ctx.name("order");
    let t = past_minute(ctx)?;
    m.put_data(
        &ns,
        vec![
            Datum::new("Q", 30.0, t + secs(150)),
            Datum::new("Q", 20.0, t + secs(90)),
        ],
    )
    .await?;
    m.put_data(
        &ns,
        vec![
            Datum::new("Q", 10.0, t + secs(30)),
            Datum::new("Q", 21.0, t + secs(61)),
        ],
    )
    .await?;
    let id = MetricId::new(&ns, "Q");
    let points = stats(&*m, &id, t, t + secs(180), &[Statistic::Sum]).await?;
    let got: Vec<_> = points
        .iter()
        .map(|p| (p.timestamp, p.get(Statistic::Sum)))
        .collect();
    let want = vec![
        (t, Some(10.0)),
        (t + secs(60), Some(41.0)),
        (t + secs(120), Some(30.0)),
    ];
    ensure!(got == want, "datapoints {got:?}, expected {want:?}");
    Ok(())
}

/// The same name with different dimensions is a different series.
pub async fn dimensions_are_separate_series(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let ns = ctx.name("dims");
    let t = past_minute(ctx)?;
    m.put_data(
        &ns,
        vec![
            Datum::new("Latency", 1.0, t + secs(1)).dimension("Host", "a"),
            Datum::new("Latency", 2.0, t + secs(2)).dimension("Host", "a"),
            Datum::new("Latency", 10.0, t + secs(3)).dimension("Host", "b"),
            Datum::new("Latency", 100.0, t + secs(4)),
        ],
    )
    .await?;
    let plain = MetricId::new(&ns, "Latency");
    for (id, want) in [
        (plain.clone().dimension("Host", "a"), 3.0),
        (plain.clone().dimension("Host", "b"), 10.0),
        (plain.clone(), 100.0),
    ] {
        let points = stats(&*m, &id, t, t + secs(60), &[Statistic::Sum]).await?;
        let got: Vec<_> = points.iter().map(|p| p.get(Statistic::Sum)).collect();
        ensure!(
            got == vec![Some(want)],
            "{id}: sums {got:?}, expected [{want}]"
        );
    }
    let listed = m.list_metrics(Some(&ns), None).await?;
    ensure!(listed.len() == 3, "expected 3 series, listed {listed:?}");
    Ok(())
}

/// Listing filters by namespace, by name, or both, and is sorted.
pub async fn list_by_namespace_and_name(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let ns1 = ctx.name("list1");
    let ns2 = ctx.name("list2");
    let shared = ctx.name("shared");
    let t = past_minute(ctx)?;
    m.put_data(
        &ns1,
        vec![
            Datum::new("B", 1.0, t),
            Datum::new("A", 1.0, t).dimension("Host", "x"),
            Datum::new("A", 1.0, t),
            Datum::new(&shared, 1.0, t),
        ],
    )
    .await?;
    m.put_data(&ns2, vec![Datum::new(&shared, 1.0, t)]).await?;

    let got = m.list_metrics(Some(&ns1), None).await?;
    let want = vec![
        MetricId::new(&ns1, "A"),
        MetricId::new(&ns1, "A").dimension("Host", "x"),
        MetricId::new(&ns1, "B"),
        MetricId::new(&ns1, &shared),
    ];
    ensure!(got == want, "namespace listing {got:?}, expected {want:?}");

    let got = m.list_metrics(Some(&ns1), Some("A")).await?;
    let want = vec![
        MetricId::new(&ns1, "A"),
        MetricId::new(&ns1, "A").dimension("Host", "x"),
    ];
    ensure!(
        got == want,
        "namespace+name listing {got:?}, expected {want:?}"
    );

    let got = m.list_metrics(None, Some(&shared)).await?;
    let want = vec![MetricId::new(&ns1, &shared), MetricId::new(&ns2, &shared)];
    ensure!(got == want, "name listing {got:?}, expected {want:?}");
    Ok(())
}

/// Statistics of a metric that never had data are empty, not an error.
pub async fn unknown_metric_has_no_datapoints(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let id = MetricId::new(ctx.name("nothing"), "Nothing");
    let t = past_minute(ctx)?;
    let points = stats(&*m, &id, t, t + secs(600), &[Statistic::Sum]).await?;
    ensure!(
        points.is_empty(),
        "datapoints for an unknown metric: {points:?}"
    );
    Ok(())
}

/// 16 writers putting to one series at once lose no point.
pub async fn concurrent_writers(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let ns = ctx.name("race");
    let t = past_minute(ctx)?;
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let m = m.clone();
            let ns = ns.clone();
            tokio::spawn(async move {
                for b in 0..2 {
                    let data = (0..50)
                        .map(|i| Datum::new("Ops", 1.0, t + secs((w + b * 16 + i) % 60)))
                        .collect();
                    m.put_data(&ns, data).await?;
                }
                Ok::<_, mvi_core::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let id = MetricId::new(&ns, "Ops");
    let points = stats(
        &*m,
        &id,
        t,
        t + secs(60),
        &[Statistic::Sum, Statistic::SampleCount],
    )
    .await?;
    let got: Vec<_> = points
        .iter()
        .map(|p| (p.get(Statistic::Sum), p.get(Statistic::SampleCount)))
        .collect();
    ensure!(
        got == vec![(Some(1600.0), Some(1600.0))],
        "sum and count {got:?}, expected 1600 points"
    );
    Ok(())
}

/// An empty namespace and the reserved `AWS/` prefix are rejected.
pub async fn invalid_namespace_rejected(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let t = ctx.now();
    expect_err!(
        m.put_data("", vec![Datum::new("X", 1.0, t)]).await,
        InvalidArgument
    );
    let err = expect_err!(
        m.put_data("AWS/EC2", vec![Datum::new("X", 1.0, t)]).await,
        InvalidArgument
    );
    ensure!(
        err.to_string().contains("AWS/"),
        "error does not name the namespace: {err}"
    );
    Ok(())
}

/// NaN and infinities are rejected, and a batch with one bad point stores nothing.
pub async fn non_finite_value_rejected(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let ns = ctx.name("nan");
    let t = past_minute(ctx)?;
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        expect_err!(
            m.put_data(
                &ns,
                vec![Datum::new("V", 1.0, t), Datum::new("V", bad, t + secs(1))]
            )
            .await,
            InvalidArgument
        );
    }
    let id = MetricId::new(&ns, "V");
    let points = stats(&*m, &id, t, t + secs(60), &[Statistic::SampleCount]).await?;
    ensure!(points.is_empty(), "a rejected batch stored {points:?}");
    Ok(())
}

/// More than MAX_BATCH_POINTS points in one call is rejected; exactly that many is fine.
pub async fn too_many_points_rejected(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let ns = ctx.name("batch");
    let t = past_minute(ctx)?;
    let batch = |n: usize| -> Vec<Datum> { (0..n).map(|_| Datum::new("N", 1.0, t)).collect() };
    expect_err!(
        m.put_data(&ns, batch(MAX_BATCH_POINTS + 1)).await,
        InvalidArgument
    );
    m.put_data(&ns, batch(MAX_BATCH_POINTS)).await?;
    let id = MetricId::new(&ns, "N");
    let points = stats(&*m, &id, t, t + secs(60), &[Statistic::SampleCount]).await?;
    let got: Vec<_> = points
        .iter()
        .map(|p| p.get(Statistic::SampleCount))
        .collect();
    ensure!(
        got == vec![Some(MAX_BATCH_POINTS as f64)],
        "counts {got:?}, expected only the accepted batch"
    );
    Ok(())
}

/// More than MAX_DIMENSIONS dimensions, or an empty dimension value, is rejected.
pub async fn too_many_dimensions_rejected(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let ns = ctx.name("dimlimit");
    let t = ctx.now();
    let mut d = Datum::new("D", 1.0, t);
    for i in 0..=MAX_DIMENSIONS {
        d = d.dimension(format!("k{i}"), "v");
    }
    expect_err!(m.put_data(&ns, vec![d]).await, InvalidArgument);
    expect_err!(
        m.put_data(&ns, vec![Datum::new("D", 1.0, t).dimension("Host", "")])
            .await,
        InvalidArgument
    );
    Ok(())
}

/// A period of 0 s or of a fraction of a second is rejected, for statistics and alarms.
pub async fn invalid_period_rejected(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let id = MetricId::new(ctx.name("period"), "P");
    let t = past_minute(ctx)?;
    for period in [Duration::ZERO, Duration::from_millis(1500)] {
        let req = GetStatistics::new(id.clone(), t, t + secs(60), period, [Statistic::Sum]);
        expect_err!(m.get_statistics(req).await, InvalidArgument);
        let spec = AlarmSpec::new(
            ctx.name("bad-period"),
            id.clone(),
            Statistic::Sum,
            Comparison::GreaterThan,
            1.0,
            period,
            1,
        );
        expect_err!(m.put_alarm(spec).await, InvalidArgument);
    }
    Ok(())
}

/// A range that ends before it starts, no statistic, or more than 1,440 periods is rejected.
pub async fn invalid_statistics_request_rejected(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let id = MetricId::new(ctx.name("badreq"), "R");
    let t = past_minute(ctx)?;
    let req = |start, end, period: u64, stats: &[Statistic]| {
        GetStatistics::new(
            id.clone(),
            start,
            end,
            Duration::from_secs(period),
            stats.iter().copied(),
        )
    };
    expect_err!(
        m.get_statistics(req(t, t, 60, &[Statistic::Sum])).await,
        InvalidArgument
    );
    expect_err!(
        m.get_statistics(req(t + secs(60), t, 60, &[Statistic::Sum]))
            .await,
        InvalidArgument
    );
    expect_err!(
        m.get_statistics(req(t, t + secs(60), 60, &[])).await,
        InvalidArgument
    );
    expect_err!(
        m.get_statistics(req(t - TimeDelta::days(1), t, 1, &[Statistic::Sum]))
            .await,
        InvalidArgument
    );
    Ok(())
}

/// Alarm names must be 1–255 characters, evaluation periods at least one and the threshold
/// finite.
pub async fn invalid_alarm_rejected(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let id = MetricId::new(ctx.name("badalarm"), "A");
    let spec = |name: String, threshold: f64, periods: u32| {
        AlarmSpec::new(
            name,
            id.clone(),
            Statistic::Average,
            Comparison::GreaterThan,
            threshold,
            MINUTE,
            periods,
        )
    };
    let ok = ctx.name("alarm");
    for bad in [
        spec(String::new(), 1.0, 1),
        spec("x".repeat(256), 1.0, 1),
        spec(ok.clone(), 1.0, 0),
        spec(ok.clone(), f64::NAN, 1),
        spec(ok.clone(), f64::INFINITY, 1),
    ] {
        expect_err!(m.put_alarm(bad).await, InvalidArgument);
    }
    let listed = m.describe_alarms(Some(&ok)).await?;
    ensure!(listed.is_empty(), "a rejected alarm was stored: {listed:?}");
    Ok(())
}

/// An alarm goes INSUFFICIENT_DATA → OK → ALARM → OK as complete periods come in, and each
/// change is in its history, oldest first.
pub async fn alarm_ok_alarm_ok_history(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let clock = ctx.clock();
    let ns = ctx.name("alarm");
    let name = ctx.name("errors-high");
    let spec = AlarmSpec::new(
        &name,
        MetricId::new(&ns, "Errors"),
        Statistic::Maximum,
        Comparison::GreaterThan,
        10.0,
        MINUTE,
        1,
    );
    m.put_alarm(spec).await?;
    let s = alarm_state(&*m, &name).await?;
    ensure!(
        s == AlarmState::InsufficientData,
        "a new alarm without data is {s:?}"
    );

    for (value, want) in [
        (1.0, AlarmState::Ok),
        (100.0, AlarmState::Alarm),
        (2.0, AlarmState::Ok),
    ] {
        m.put_data(&ns, vec![Datum::new("Errors", value, ctx.now())])
            .await?;
        // The current period is not complete yet: the point does not count.
        clock.advance(MINUTE);
        let s = alarm_state(&*m, &name).await?;
        ensure!(
            s == want,
            "after a period with {value}: {s:?}, expected {want:?}"
        );
    }

    let history = m.alarm_history(&name).await?;
    let changes: Vec<_> = history.iter().map(|h| (h.from, h.to)).collect();
    let want = vec![
        (AlarmState::InsufficientData, AlarmState::Ok),
        (AlarmState::Ok, AlarmState::Alarm),
        (AlarmState::Alarm, AlarmState::Ok),
    ];
    ensure!(changes == want, "history {changes:?}, expected {want:?}");
    ensure!(
        history.windows(2).all(|w| w[0].time < w[1].time),
        "history times are not increasing: {history:?}"
    );
    ensure!(
        history.iter().all(|h| !h.reason.is_empty()),
        "a transition has no reason: {history:?}"
    );
    m.delete_alarm(&name).await?;
    Ok(())
}

/// Over several periods the alarm is ALARM only when every period with data breaches.
pub async fn alarm_over_several_periods(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let clock = ctx.clock();
    let ns = ctx.name("multi");
    let name = ctx.name("cpu-high");
    let spec = AlarmSpec::new(
        &name,
        MetricId::new(&ns, "Cpu"),
        Statistic::Average,
        Comparison::GreaterThanOrEqual,
        80.0,
        MINUTE,
        2,
    );
    m.put_alarm(spec).await?;
    // One breaching period, then one that is not: OK.
    for value in [90.0, 50.0] {
        m.put_data(&ns, vec![Datum::new("Cpu", value, ctx.now())])
            .await?;
        clock.advance(MINUTE);
    }
    let s = alarm_state(&*m, &name).await?;
    ensure!(s == AlarmState::Ok, "one of two periods breaching: {s:?}");
    // Two breaching periods in a row: ALARM.
    for value in [85.0, 95.0] {
        m.put_data(&ns, vec![Datum::new("Cpu", value, ctx.now())])
            .await?;
        clock.advance(MINUTE);
    }
    let s = alarm_state(&*m, &name).await?;
    ensure!(s == AlarmState::Alarm, "two periods breaching: {s:?}");
    // One more breaching period, then none: the only period with data breaches.
    m.put_data(&ns, vec![Datum::new("Cpu", 99.0, ctx.now())])
        .await?;
    clock.advance(MINUTE * 2);
    let s = alarm_state(&*m, &name).await?;
    ensure!(
        s == AlarmState::Alarm,
        "the one period with data breaches: {s:?}"
    );
    // No data in either period: INSUFFICIENT_DATA.
    clock.advance(MINUTE * 2);
    let s = alarm_state(&*m, &name).await?;
    ensure!(s == AlarmState::InsufficientData, "no data at all: {s:?}");
    m.delete_alarm(&name).await?;
    Ok(())
}

/// An alarm on a metric that has no data stays INSUFFICIENT_DATA, with no state change.
pub async fn alarm_without_data_insufficient(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let name = ctx.name("quiet");
    let spec = AlarmSpec::new(
        &name,
        MetricId::new(ctx.name("quiet-ns"), "Nothing"),
        Statistic::Sum,
        Comparison::GreaterThan,
        0.0,
        MINUTE,
        3,
    );
    m.put_alarm(spec).await?;
    let s = alarm_state(&*m, &name).await?;
    ensure!(s == AlarmState::InsufficientData, "no data, yet {s:?}");
    let history = m.alarm_history(&name).await?;
    ensure!(history.is_empty(), "no state change expected: {history:?}");
    m.delete_alarm(&name).await?;
    Ok(())
}

/// `describe_alarms` with a prefix lists exactly the alarms whose names start with it,
/// sorted by name.
pub async fn describe_alarms_prefix(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let id = MetricId::new(ctx.name("prefix-ns"), "M");
    let names = [ctx.name("web-b"), ctx.name("web-a"), ctx.name("db-a")];
    for name in &names {
        let spec = AlarmSpec::new(
            name,
            id.clone(),
            Statistic::Sum,
            Comparison::GreaterThan,
            5.0,
            MINUTE,
            1,
        );
        m.put_alarm(spec).await?;
    }
    let listed: Vec<String> = m
        .describe_alarms(Some(&ctx.name("web-")))
        .await?
        .into_iter()
        .map(|a| a.spec.name)
        .collect();
    let want = vec![ctx.name("web-a"), ctx.name("web-b")];
    ensure!(listed == want, "listed {listed:?}, expected {want:?}");
    let all = m.describe_alarms(Some(&ctx.name(""))).await?;
    ensure!(
        all.len() == 3,
        "the run's prefix lists {} alarms",
        all.len()
    );
    for name in &names {
        m.delete_alarm(name).await?;
    }
    Ok(())
}

/// A deleted alarm is gone: not listed, its history NotFound, deleting it again NotFound.
pub async fn delete_alarm_then_not_found(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let name = ctx.name("doomed");
    let spec = AlarmSpec::new(
        &name,
        MetricId::new(ctx.name("doomed-ns"), "M"),
        Statistic::Sum,
        Comparison::GreaterThan,
        5.0,
        MINUTE,
        1,
    );
    m.put_alarm(spec).await?;
    m.delete_alarm(&name).await?;
    let listed = m.describe_alarms(Some(&name)).await?;
    ensure!(listed.is_empty(), "deleted alarm still listed: {listed:?}");
    let err = expect_err!(m.alarm_history(&name).await, NotFound);
    ensure!(
        err.to_string().contains(&name),
        "error does not name the alarm: {err}"
    );
    expect_err!(m.delete_alarm(&name).await, NotFound);
    Ok(())
}

/// Putting an alarm with an existing name replaces its definition: one alarm, new spec.
pub async fn replace_alarm_spec(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let name = ctx.name("replace");
    let id = MetricId::new(ctx.name("replace-ns"), "M");
    let spec = |threshold, comparison| {
        AlarmSpec::new(
            &name,
            id.clone(),
            Statistic::Maximum,
            comparison,
            threshold,
            MINUTE,
            1,
        )
    };
    m.put_alarm(spec(10.0, Comparison::GreaterThan)).await?;
    let new = spec(20.0, Comparison::LessThan);
    m.put_alarm(new.clone()).await?;
    let listed = m.describe_alarms(Some(&name)).await?;
    ensure!(listed.len() == 1, "expected one alarm, got {listed:?}");
    ensure!(
        listed[0].spec == new,
        "spec {:?} was not replaced by {new:?}",
        listed[0].spec
    );
    m.delete_alarm(&name).await?;
    Ok(())
}

/// Replacing an alarm's threshold is evaluated at once: the same data now breaches.
pub async fn replace_alarm_reevaluates(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let clock = ctx.clock();
    let ns = ctx.name("reeval");
    let name = ctx.name("reeval");
    m.put_data(&ns, vec![Datum::new("Load", 50.0, ctx.now())])
        .await?;
    clock.advance(MINUTE);
    let spec = |threshold| {
        AlarmSpec::new(
            &name,
            MetricId::new(&ns, "Load"),
            Statistic::Average,
            Comparison::GreaterThan,
            threshold,
            MINUTE,
            1,
        )
    };
    m.put_alarm(spec(100.0)).await?;
    let s = alarm_state(&*m, &name).await?;
    ensure!(s == AlarmState::Ok, "50 > 100 should be OK, is {s:?}");
    m.put_alarm(spec(10.0)).await?;
    let s = alarm_state(&*m, &name).await?;
    ensure!(s == AlarmState::Alarm, "50 > 10 should be ALARM, is {s:?}");
    let history = m.alarm_history(&name).await?;
    ensure!(
        history.last().map(|h| h.to) == Some(AlarmState::Alarm),
        "the last change is not to ALARM: {history:?}"
    );
    m.delete_alarm(&name).await?;
    Ok(())
}

/// Data, series and alarms (with their histories) survive a restart, and writes after the
/// restart add to what was there.
pub async fn persist_across_reopen(ctx: &mut Ctx) -> Outcome {
    let m = metrics(ctx)?;
    let ns = ctx.name("persist");
    let t = past_minute(ctx)?;
    let id = MetricId::new(&ns, "Bytes").dimension("Bucket", "b1");
    let data = (0..10)
        .map(|i| {
            Datum::new("Bytes", f64::from(i), t + secs(i64::from(i) * 15))
                .dimension("Bucket", "b1")
                .unit(Unit::Bytes)
        })
        .collect();
    m.put_data(&ns, data).await?;
    let name = ctx.name("persist-alarm");
    let spec = AlarmSpec::new(
        &name,
        id.clone(),
        Statistic::P90,
        Comparison::GreaterThanOrEqual,
        5.0,
        MINUTE,
        2,
    );
    m.put_alarm(spec).await?;
    let all = [Statistic::Sum, Statistic::SampleCount, Statistic::P50];
    let stats_before = stats(&*m, &id, t, t + secs(180), &all).await?;
    let alarms_before = m.describe_alarms(Some(&name)).await?;
    let history_before = m.alarm_history(&name).await?;
    let listed_before = m.list_metrics(Some(&ns), None).await?;
    drop(m);

    ctx.reopen().await?;
    let m = metrics(ctx)?;
    let stats_after = stats(&*m, &id, t, t + secs(180), &all).await?;
    ensure!(
        stats_after == stats_before,
        "statistics {stats_after:?} after reopen, {stats_before:?} before"
    );
    let listed = m.list_metrics(Some(&ns), None).await?;
    ensure!(listed == listed_before, "listed {listed:?} after reopen");
    let alarms = m.describe_alarms(Some(&name)).await?;
    ensure!(
        alarms == alarms_before,
        "alarms {alarms:?} after reopen, {alarms_before:?} before"
    );
    let history = m.alarm_history(&name).await?;
    ensure!(
        history == history_before,
        "history {history:?} after reopen, {history_before:?} before"
    );

    m.put_data(
        &ns,
        vec![
            Datum::new("Bytes", 100.0, t + secs(1))
                .dimension("Bucket", "b1")
                .unit(Unit::Bytes),
        ],
    )
    .await?;
    let points = stats(&*m, &id, t, t + secs(60), &[Statistic::SampleCount]).await?;
    let counts: Vec<_> = points
        .iter()
        .map(|p| p.get(Statistic::SampleCount))
        .collect();
    ensure!(
        counts == vec![Some(5.0)],
        "counts {counts:?}: the first minute held 4 points and one was added"
    );
    m.delete_alarm(&name).await?;
    Ok(())
}

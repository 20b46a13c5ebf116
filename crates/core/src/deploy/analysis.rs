//! The analysis of a new revision's traffic: success rate and p99 latency of its target
//! group from the load balancer's metrics, and custom metric conditions, over one window.
//!
//! What a load balancer reports is the backend's business ([`LoadBalancers::metric`] names a
//! metric as the backend stores it); this reads it the same way everywhere:
//! - requests and target 5xx: the `Sum` of `RequestCount` and `HTTPCode_Target_5XX_Count`
//!   of the target group over the window;
//! - p99: from the target group's response-time histogram (`TargetResponseTimeHistogram`, a
//!   `Count` per bucket with the bucket's upper bound in milliseconds as dimension
//!   `UpperBoundMs`) when the load balancer keeps one, else the `p99` statistic of
//!   `TargetResponseTime` (ELBv2 reports it in seconds: the unit says which).

use std::sync::Arc;
use std::time::Duration;

use crate::common::Timestamp;
use crate::deploy::{Analysis, MetricCondition};
use crate::error::Result;
use crate::lb::{LoadBalancers, metric_names};
use crate::metric::{GetStatistics, MetricId, Metrics, Statistic, Unit};

/// The result of one analysis.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every check held; the figures measured.
    Pass(String),
    /// A check failed; which, with the figures measured.
    Fail(String),
    /// Too few requests to judge; how many.
    Inconclusive(String),
}

/// Where the analysed traffic is: the load balancers forwarding to the target group.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub lbs: Arc<dyn LoadBalancers>,
    pub metrics: Arc<dyn Metrics>,
    pub load_balancers: Vec<String>,
    pub group: String,
}

/// Analyses `[start, end)`.
pub(crate) async fn analyse(
    src: &Source,
    a: &Analysis,
    start: Timestamp,
    end: Timestamp,
) -> Result<Verdict> {
    let requests = src.sum(metric_names::REQUESTS, start, end).await?;
    let errors = src.sum(metric_names::TARGET_5XX, start, end).await?;
    if requests < a.min_requests as f64 || requests == 0.0 {
        return Ok(Verdict::Inconclusive(format!(
            "{requests} request(s) to target group {} in the window, {} needed to judge",
            src.group, a.min_requests
        )));
    }
    let success = 1.0 - errors / requests;
    let mut figures = vec![format!(
        "success rate {:.2} % of {requests} request(s) (at least {:.2} % wanted)",
        success * 100.0,
        a.min_success_rate * 100.0
    )];
    if success < a.min_success_rate {
        return Ok(Verdict::Fail(format!(
            "the success rate of target group {} was {:.2} % ({errors} of {requests} request(s) answered 5xx), below {:.2} %",
            src.group,
            success * 100.0,
            a.min_success_rate * 100.0
        )));
    }
    if let Some(p99) = src.p99(start, end).await? {
        figures.push(format!(
            "p99 {:.1} ms (at most {} ms wanted)",
            p99.as_secs_f64() * 1000.0,
            a.max_p99.as_millis()
        ));
        if p99 > a.max_p99 {
            return Ok(Verdict::Fail(format!(
                "the p99 response time of target group {} was {:.1} ms, above {} ms",
                src.group,
                p99.as_secs_f64() * 1000.0,
                a.max_p99.as_millis()
            )));
        }
    }
    for c in &a.conditions {
        match condition(src, c, start, end).await? {
            Some((value, false)) => figures.push(format!("{} {value}", c.name)),
            Some((value, true)) => {
                return Ok(Verdict::Fail(format!(
                    "{}: {} of {} was {value}, {:?} {}",
                    c.name, c.statistic, c.metric, c.fails_when, c.threshold
                )));
            }
            None => {
                return Ok(Verdict::Inconclusive(format!(
                    "{}: no data for {} in the window",
                    c.name, c.metric
                )));
            }
        }
    }
    Ok(Verdict::Pass(figures.join(", ")))
}

/// A custom condition's value over the window and whether it fails.
async fn condition(
    src: &Source,
    c: &MetricCondition,
    start: Timestamp,
    end: Timestamp,
) -> Result<Option<(f64, bool)>> {
    let period = window_period(start, end);
    let points = src
        .metrics
        .get_statistics(GetStatistics::new(
            c.metric.clone(),
            start,
            end,
            period,
            [c.statistic],
        ))
        .await?;
    let values: Vec<f64> = points.iter().filter_map(|p| p.get(c.statistic)).collect();
    let value = match c.statistic {
        Statistic::Sum | Statistic::SampleCount => Some(values.iter().sum()),
        Statistic::Minimum => values.iter().copied().reduce(f64::min),
        Statistic::Maximum => values.iter().copied().reduce(f64::max),
        // One period covers the window: its value is the statistic.
        _ => values.first().copied(),
    };
    Ok(value.map(|v| (v, c.fails_when.breaches(v, c.threshold))))
}

/// One period covering `[start, end)` (whole seconds, at least one).
fn window_period(start: Timestamp, end: Timestamp) -> Duration {
    let secs = (end - start).num_seconds().max(1);
    Duration::from_secs(u64::try_from(secs).unwrap_or(1))
}

impl Source {
    async fn ids(&self, name: &str) -> Result<Vec<MetricId>> {
        let mut ids = Vec::new();
        for lb in &self.load_balancers {
            ids.push(self.lbs.metric(lb, Some(&self.group), name).await?);
        }
        Ok(ids)
    }

    /// The sum of `name` over the window, across the load balancers.
    async fn sum(&self, name: &str, start: Timestamp, end: Timestamp) -> Result<f64> {
        let mut total = 0.0;
        for id in self.ids(name).await? {
            let points = self
                .metrics
                .get_statistics(GetStatistics::new(
                    id,
                    start,
                    end,
                    Duration::from_secs(1),
                    [Statistic::Sum],
                ))
                .await?;
            total += points
                .iter()
                .filter_map(|p| p.get(Statistic::Sum))
                .sum::<f64>();
        }
        Ok(total)
    }

    /// The p99 response time over the window, if there were responses.
    async fn p99(&self, start: Timestamp, end: Timestamp) -> Result<Option<Duration>> {
        // The histogram, when the load balancer keeps one: the bucket holding the 99th
        // percentile response, reported by its upper bound (a bound on the true p99).
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for id in self.ids(metric_names::RESPONSE_TIME_HISTOGRAM).await? {
            let listed = self
                .metrics
                .list_metrics(Some(&id.namespace), Some(&id.name))
                .await?;
            for m in listed {
                let same = id
                    .dimensions
                    .iter()
                    .all(|(k, v)| m.dimensions.get(k) == Some(v));
                let Some(bound) = m.dimensions.get(metric_names::BUCKET_DIMENSION) else {
                    continue;
                };
                if !same {
                    continue;
                }
                let bound = if bound == "+Inf" {
                    f64::INFINITY
                } else {
                    bound.parse::<f64>().unwrap_or(f64::INFINITY)
                };
                let points = self
                    .metrics
                    .get_statistics(GetStatistics::new(
                        m.clone(),
                        start,
                        end,
                        Duration::from_secs(1),
                        [Statistic::Sum],
                    ))
                    .await?;
                let n: f64 = points.iter().filter_map(|p| p.get(Statistic::Sum)).sum();
                if n > 0.0 {
                    buckets.push((bound, n));
                }
            }
        }
        if !buckets.is_empty() {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let total: f64 = buckets.iter().map(|b| b.1).sum();
            let rank = (total * 0.99).ceil();
            let mut seen = 0.0;
            for (bound, n) in &buckets {
                seen += n;
                if seen >= rank {
                    // Past the last finite bound: slower than 10 s.
                    let ms = if bound.is_finite() {
                        *bound
                    } else {
                        10_000.0 * 10.0
                    };
                    return Ok(Some(Duration::from_secs_f64(ms / 1000.0)));
                }
            }
            return Ok(None);
        }
        // No histogram: the backend's own percentile of the response time.
        let mut worst: Option<Duration> = None;
        for id in self.ids(metric_names::RESPONSE_TIME).await? {
            let period = window_period(start, end);
            let points = self
                .metrics
                .get_statistics(GetStatistics::new(id, start, end, period, [Statistic::P99]))
                .await?;
            for p in points {
                let Some(v) = p.get(Statistic::P99) else {
                    continue;
                };
                let secs = match p.unit {
                    Unit::Milliseconds => v / 1000.0,
                    Unit::Microseconds => v / 1e6,
                    _ => v,
                };
                let d = Duration::from_secs_f64(secs.max(0.0));
                worst = Some(worst.map_or(d, |w| w.max(d)));
            }
        }
        Ok(worst)
    }
}

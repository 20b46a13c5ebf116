//! The CloudWatch door: CloudWatch's JSON protocol (`GraniteServiceVersion20100801`, which
//! boto3 and the AWS CLI use) over the local Metric service.
//!
//! Served: PutMetricData (`Value`, or `Values` with `Counts`; dimensions; units) and
//! GetMetricStatistics (`Statistics` and `ExtendedStatistics` percentiles such as `p99`).
//! Times are epoch seconds. PutMetricData needs `cloudwatch:PutMetricData` with the request's
//! namespace as the `cloudwatch:namespace` condition key, as on AWS; GetMetricStatistics needs
//! `cloudwatch:GetMetricStatistics` (not scoped by namespace on AWS, so not here either).
//!
//! Refused with a ValidationException saying so: `StatisticValues` (pre-aggregated sets),
//! units the Metric service does not have, and high-resolution storage.

use chrono::{DateTime, Utc};
use mvi_core::metric::{Datum, Dimensions, GetStatistics, MetricId, Metrics, Statistic, Unit};
use mvi_core::{Error, ErrorKind};
use serde_json::{Map, Value as Json, json};

use super::json::{Caller, Input, JsonError, JsonResult};

/// The most samples one `Values`/`Counts` entry may expand to (CloudWatch takes 150 values
/// per datum; counts multiply them).
const MAX_SAMPLES: usize = 10_000;

/// Runs one CloudWatch operation.
pub(crate) async fn call(
    metrics: &dyn Metrics,
    caller: &Caller,
    operation: &str,
    input: Json,
) -> JsonResult {
    let req = Input(input);
    match operation {
        "PutMetricData" => {
            let namespace = req.required_str("Namespace")?;
            caller.require_in(
                "cloudwatch:PutMetricData",
                "*",
                &[("cloudwatch:namespace", namespace)],
            )?;
            let data = req
                .get("MetricData")
                .and_then(Json::as_array)
                .ok_or_else(|| JsonError::validation("MetricData is required"))?;
            let mut points = Vec::new();
            for d in data {
                points.extend(datum(d)?);
            }
            metrics.put_data(namespace, points).await.map_err(error)?;
            Ok(json!({}))
        }
        "GetMetricStatistics" => {
            caller.require("cloudwatch:GetMetricStatistics", "*")?;
            get_statistics(metrics, &req).await
        }
        other => Err(JsonError::new(
            "UnknownOperationException",
            format!("this endpoint does not serve the CloudWatch operation {other:?}"),
        )),
    }
}

fn error(e: Error) -> JsonError {
    match e.kind() {
        ErrorKind::InvalidArgument => JsonError::new("InvalidParameterValue", e.message()),
        ErrorKind::NotFound => JsonError::new("ResourceNotFound", e.message()),
        _ => JsonError::of_kind(&e),
    }
}

/// Epoch seconds (a number) as a time.
fn time(v: &Json, field: &str) -> Result<DateTime<Utc>, JsonError> {
    v.as_f64()
        .and_then(|s| DateTime::from_timestamp_millis((s * 1000.0).round() as i64))
        .ok_or_else(|| JsonError::serialization(format!("{field} must be epoch seconds")))
}

fn unit(name: Option<&str>) -> Result<Unit, JsonError> {
    Ok(match name.unwrap_or("None") {
        "None" => Unit::None,
        "Count" => Unit::Count,
        "Seconds" => Unit::Seconds,
        "Milliseconds" => Unit::Milliseconds,
        "Microseconds" => Unit::Microseconds,
        "Bytes" => Unit::Bytes,
        "Percent" => Unit::Percent,
        "Count/Second" => Unit::CountPerSecond,
        "Bytes/Second" => Unit::BytesPerSecond,
        other => {
            return Err(JsonError::validation(format!(
                "the unit {other:?} is not supported by this endpoint (None, Count, Seconds, \
                 Milliseconds, Microseconds, Bytes, Percent, Count/Second, Bytes/Second)"
            )));
        }
    })
}

fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::Count => "Count",
        Unit::Seconds => "Seconds",
        Unit::Milliseconds => "Milliseconds",
        Unit::Microseconds => "Microseconds",
        Unit::Bytes => "Bytes",
        Unit::Percent => "Percent",
        Unit::CountPerSecond => "Count/Second",
        Unit::BytesPerSecond => "Bytes/Second",
        _ => "None",
    }
}

fn dimensions(v: Option<&Json>) -> Result<Dimensions, JsonError> {
    let mut out = Dimensions::new();
    for d in v.and_then(Json::as_array).into_iter().flatten() {
        match (
            d.get("Name").and_then(Json::as_str),
            d.get("Value").and_then(Json::as_str),
        ) {
            (Some(n), Some(v)) => {
                out.insert(n.to_owned(), v.to_owned());
            }
            _ => {
                return Err(JsonError::serialization(
                    "each dimension has a Name and a Value",
                ));
            }
        }
    }
    Ok(out)
}

/// One `MetricDatum` as the points it stands for.
fn datum(d: &Json) -> Result<Vec<Datum>, JsonError> {
    let name = d
        .get("MetricName")
        .and_then(Json::as_str)
        .ok_or_else(|| JsonError::validation("each metric datum has a MetricName"))?;
    if d.get("StatisticValues").is_some() {
        return Err(JsonError::validation(
            "StatisticValues (pre-aggregated statistic sets) are not supported by this \
             endpoint: send Value, or Values with Counts",
        ));
    }
    if d.get("StorageResolution").and_then(Json::as_i64) == Some(1) {
        return Err(JsonError::validation(
            "high-resolution metrics (StorageResolution 1) are not supported by this endpoint",
        ));
    }
    let at = match d.get("Timestamp") {
        Some(t) => time(t, "Timestamp")?,
        None => Utc::now(),
    };
    let dims = dimensions(d.get("Dimensions"))?;
    let unit = unit(d.get("Unit").and_then(Json::as_str))?;
    let point = |value: f64| {
        let mut p = Datum::new(name, value, at).unit(unit);
        p.dimensions = dims.clone();
        p
    };
    let number = |v: &Json| {
        v.as_f64()
            .ok_or_else(|| JsonError::serialization("metric values are numbers"))
    };
    match (d.get("Value"), d.get("Values")) {
        (Some(v), None) => Ok(vec![point(number(v)?)]),
        (None, Some(Json::Array(values))) => {
            let counts: Vec<f64> = match d.get("Counts") {
                Some(Json::Array(c)) => c.iter().map(number).collect::<Result<_, _>>()?,
                None => vec![1.0; values.len()],
                Some(_) => return Err(JsonError::serialization("Counts is a list")),
            };
            if counts.len() != values.len() {
                return Err(JsonError::validation(
                    "The parameters MetricData.member.Values and MetricData.member.Counts \
                     must be of the same size.",
                ));
            }
            let mut out = Vec::new();
            for (v, c) in values.iter().zip(counts) {
                let n = c.max(0.0).round() as usize;
                if out.len() + n > MAX_SAMPLES {
                    return Err(JsonError::validation(format!(
                        "Values with Counts stand for more than {MAX_SAMPLES} samples"
                    )));
                }
                out.extend(std::iter::repeat_n(point(number(v)?), n));
            }
            Ok(out)
        }
        _ => Err(JsonError::validation(
            "each metric datum has either a Value or Values",
        )),
    }
}

/// `p99`, `p99.9` as a percentile.
fn percentile(s: &str) -> Result<Statistic, JsonError> {
    s.strip_prefix('p')
        .and_then(|p| p.parse::<f64>().ok())
        .filter(|p| (0.0..=100.0).contains(p))
        .map(|p| Statistic::Percentile((p * 100.0).round() as u16))
        .ok_or_else(|| {
            JsonError::new(
                "InvalidParameterValue",
                format!("The value {s} for parameter ExtendedStatistics is not supported."),
            )
        })
}

async fn get_statistics(metrics: &dyn Metrics, req: &Input) -> JsonResult {
    let mut metric = MetricId::new(
        req.required_str("Namespace")?,
        req.required_str("MetricName")?,
    );
    metric.dimensions = dimensions(req.get("Dimensions"))?;
    let required = |f: &str| {
        req.get(f)
            .ok_or_else(|| JsonError::validation(format!("{f} is required")))
    };
    let start = time(required("StartTime")?, "StartTime")?;
    let end = time(required("EndTime")?, "EndTime")?;
    let period = required("Period")?
        .as_u64()
        .filter(|p| *p >= 1)
        .ok_or_else(|| JsonError::validation("Period is a whole number of seconds, at least 1"))?;
    let mut named = Vec::new();
    for s in req
        .get("Statistics")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let stat = match s.as_str() {
            Some("SampleCount") => Statistic::SampleCount,
            Some("Average") => Statistic::Average,
            Some("Sum") => Statistic::Sum,
            Some("Minimum") => Statistic::Minimum,
            Some("Maximum") => Statistic::Maximum,
            _ => {
                return Err(JsonError::validation(format!(
                    "Statistics: {s} is not one of SampleCount, Average, Sum, Minimum, Maximum"
                )));
            }
        };
        named.push((s.as_str().unwrap_or_default().to_owned(), stat, false));
    }
    for s in req
        .get("ExtendedStatistics")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let name = s.as_str().unwrap_or_default();
        named.push((name.to_owned(), percentile(name)?, true));
    }
    let extended = named.iter().filter(|(_, _, e)| *e).count();
    if named.is_empty() {
        return Err(JsonError::new(
            "MissingParameter",
            "Must specify either Statistics or ExtendedStatistics.",
        ));
    }
    if extended > 0 && extended < named.len() {
        return Err(JsonError::new(
            "InvalidParameterCombination",
            "Must specify either Statistics or ExtendedStatistics, but not both.",
        ));
    }
    let q = GetStatistics::new(
        metric.clone(),
        start,
        end,
        std::time::Duration::from_secs(period),
        named.iter().map(|(_, s, _)| *s),
    );
    let points = metrics.get_statistics(q).await.map_err(error)?;
    let datapoints: Vec<Json> = points
        .iter()
        .map(|p| {
            let mut m = Map::new();
            m.insert(
                "Timestamp".into(),
                json!(p.timestamp.timestamp_millis() as f64 / 1000.0),
            );
            m.insert("Unit".into(), json!(unit_name(p.unit)));
            let mut extended = Map::new();
            for (name, stat, is_extended) in &named {
                if let Some(v) = p.get(*stat) {
                    if *is_extended {
                        extended.insert(name.clone(), json!(v));
                    } else {
                        m.insert(name.clone(), json!(v));
                    }
                }
            }
            if !extended.is_empty() {
                m.insert("ExtendedStatistics".into(), Json::Object(extended));
            }
            Json::Object(m)
        })
        .collect();
    Ok(json!({ "Label": metric.name, "Datapoints": datapoints }))
}

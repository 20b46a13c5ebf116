//! Per-request metrics and access lines, batched off the hot path.
//!
//! A request only bumps a few atomic counters and pushes its access line's facts into a
//! buffer; a task per load balancer hands the totals to the Metric service and the lines to
//! the Log service once a second. Response times go two ways: `TargetResponseTime` is the
//! second's mean (one data point per second, not one per request), and the latency histogram
//! is `TargetResponseTimeHistogram`, one `Count` data point per second and non-empty bucket,
//! the bucket's upper bound in milliseconds in the `UpperBoundMs` dimension (`+Inf` for the
//! last). Summing a bucket's points over any period counts the responses in it, from which
//! percentiles follow without storing a point per request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mvi_core::lb::metric_names as names;
use mvi_core::log::LogEvent;
use mvi_core::metric::{Datum, Unit};
use mvi_core::{ErrorKind, Logs, Metrics, Timestamp};

/// The Metric namespace the load balancers report in.
pub(crate) const NAMESPACE: &str = "mvi/LoadBalancer";

/// Access lines kept per flush; beyond this they are counted as dropped, so a flood of
/// requests cannot grow memory without bound.
const MAX_LINES: usize = 20_000;

/// Events per `put_events` call.
const LOG_BATCH: usize = 1_000;

/// The log group of load balancer `lb`.
pub(crate) fn log_group(lb: &str) -> String {
    format!("/mvi/lb/{lb}")
}

/// The access-log stream of a listener.
pub(crate) fn log_stream(port: u16) -> String {
    format!("listener-{port}")
}

/// Upper bounds of the response-time histogram's buckets, in microseconds; a last bucket
/// (`+Inf`) takes the slower responses.
pub(crate) const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// The `UpperBoundMs` value of bucket `i`: `0.1`, `0.25`, ..., `10000`, `+Inf`.
pub(crate) fn bucket_label(i: usize) -> String {
    match BUCKETS_US.get(i) {
        Some(us) => format!("{}", *us as f64 / 1000.0),
        None => "+Inf".into(),
    }
}

/// Requests counted since the last flush: of a whole load balancer, or of one of its
/// target groups.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    target_5xx: AtomicU64,
    elb_5xx: AtomicU64,
    response_us: AtomicU64,
    responses: AtomicU64,
    /// Responses per histogram bucket (`BUCKETS_US`, then `+Inf`).
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
}

impl Counters {
    /// Counts one request (or TCP connection).
    pub fn count(&self, outcome: Outcome) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Target(status, us) => {
                if status >= 500 {
                    self.target_5xx.fetch_add(1, Ordering::Relaxed);
                }
                self.response_us.fetch_add(us, Ordering::Relaxed);
                self.responses.fetch_add(1, Ordering::Relaxed);
                let bucket = BUCKETS_US.partition_point(|&bound| bound < us);
                self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Flow => {}
            Outcome::Elb(status) => {
                if status >= 500 {
                    self.elb_5xx.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The counts as data points with `dims` (and resets them); none without requests.
    fn take(&self, now: Timestamp, dims: &[(&str, &str)]) -> Vec<Datum> {
        let requests = self.requests.swap(0, Ordering::Relaxed);
        let target_5xx = self.target_5xx.swap(0, Ordering::Relaxed);
        let elb_5xx = self.elb_5xx.swap(0, Ordering::Relaxed);
        let response_us = self.response_us.swap(0, Ordering::Relaxed);
        let responses = self.responses.swap(0, Ordering::Relaxed);
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.swap(0, Ordering::Relaxed))
            .collect();
        if requests == 0 {
            return Vec::new();
        }
        let with = |mut d: Datum| {
            for (k, v) in dims {
                d = d.dimension(*k, *v);
            }
            d
        };
        let count = |name: &str, v: u64| with(Datum::new(name, v as f64, now).unit(Unit::Count));
        let mut data = vec![
            count(names::REQUESTS, requests),
            count(names::TARGET_5XX, target_5xx),
            count(names::ELB_5XX, elb_5xx),
        ];
        if responses > 0 {
            let mean_ms = response_us as f64 / responses as f64 / 1000.0;
            data.push(with(
                Datum::new(names::RESPONSE_TIME, mean_ms, now).unit(Unit::Milliseconds),
            ));
        }
        for (i, n) in buckets.into_iter().enumerate() {
            if n > 0 {
                data.push(
                    count(names::RESPONSE_TIME_HISTOGRAM, n)
                        .dimension(names::BUCKET_DIMENSION, bucket_label(i)),
                );
            }
        }
        data
    }
}

/// What a load balancer's listeners accumulated since the last flush.
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    total: Counters,
    /// Per target group (by name), shared with the listeners' forward entries.
    groups: Mutex<BTreeMap<String, Arc<Counters>>>,
    dropped: AtomicU64,
    lines: Mutex<Vec<Access>>,
}

/// One access line's facts, formatted only at flush time so the request path stays cheap.
#[derive(Debug)]
pub(crate) struct Access {
    /// When.
    pub at: Timestamp,
    /// The listener's port (the log stream).
    pub port: u16,
    /// The client.
    pub peer: std::net::SocketAddr,
    /// The target that answered, if one did.
    pub target: Option<std::sync::Arc<super::balance::TargetRt>>,
    /// Time to the target's response head, in microseconds.
    pub us: u64,
    /// HTTP status (0 for TCP).
    pub status: u16,
    /// `GET /path` for HTTP, or what happened to a TCP connection.
    pub what: What,
}

/// The request part of an access line.
#[derive(Debug)]
pub(crate) enum What {
    /// An HTTP request.
    Http(hyper::Method, Option<hyper::http::uri::PathAndQuery>),
    /// A TCP connection and a note on it.
    Tcp(String),
}

impl Access {
    /// `client target seconds status "METHOD path HTTP/1.1"`, in the spirit of ELB's log.
    fn line(&self) -> String {
        let target = self.target.as_ref().map(|t| t.addr.as_str()).unwrap_or("-");
        let secs = self.us as f64 / 1e6;
        match &self.what {
            What::Http(method, path) => {
                let path = path.as_ref().map(|p| p.as_str()).unwrap_or("/");
                format!(
                    "{} {target} {secs:.6} {} \"{method} {path} HTTP/1.1\"",
                    self.peer, self.status
                )
            }
            What::Tcp(note) => format!("{} {target} {secs:.6} - \"TCP\" {note}", self.peer),
        }
    }
}

/// Where a request's answer came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    /// The target answered with this status after this many microseconds.
    Target(u16, u64),
    /// A TCP connection was relayed to a target.
    Flow,
    /// The load balancer answered itself with this status (no target, target unreachable).
    Elb(u16),
}

impl Telemetry {
    /// The counters of target group `group`'s traffic through this load balancer.
    pub fn group(&self, group: &str) -> Arc<Counters> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(group.to_string())
            .or_default()
            .clone()
    }

    /// Counts one request (or TCP connection) and keeps its access line.
    pub fn record(&self, outcome: Outcome, access: Access) {
        self.total.count(outcome);
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() < MAX_LINES {
            lines.push(access);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends what accumulated to the Metric and Log services: the load balancer's totals
    /// (dimension `LoadBalancer`) and each target group's (`LoadBalancer` and
    /// `TargetGroup`). Failures are logged with `tracing` and the batch is dropped:
    /// telemetry must never stop traffic.
    pub async fn flush(&self, lb: &str, now: Timestamp, metrics: &dyn Metrics, logs: &dyn Logs) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        let lines = std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()));
        let mut data = self.total.take(now, &[("LoadBalancer", lb)]);
        let groups: Vec<(String, Arc<Counters>)> = self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (group, counters) in &groups {
            data.extend(counters.take(now, &[("LoadBalancer", lb), ("TargetGroup", group)]));
        }
        // At most 1000 points a put (the Metric service's limit).
        for chunk in data.chunks(1000) {
            if let Err(e) = metrics.put_data(NAMESPACE, chunk.to_vec()).await {
                tracing::warn!("load balancer {lb}: cannot put metrics: {e}");
            }
        }
        if dropped > 0 {
            tracing::warn!(
                "load balancer {lb}: {dropped} access lines dropped (over {MAX_LINES}/s)"
            );
        }
        // Lines are formatted a batch at a time, as they are sent, so a second's tens of
        // thousands of lines at full load never exist twice in memory.
        let mut by_port: BTreeMap<u16, Vec<Access>> = BTreeMap::new();
        for a in lines {
            by_port.entry(a.port).or_default().push(a);
        }
        let group = log_group(lb);
        for (port, lines) in by_port {
            let stream = log_stream(port);
            for chunk in lines.chunks(LOG_BATCH) {
                let events = || {
                    chunk
                        .iter()
                        .map(|a| LogEvent::new(a.at, a.line()))
                        .collect()
                };
                let mut result = logs.put_events(&group, &stream, events()).await;
                if result
                    .as_ref()
                    .is_err_and(|e| e.kind() == ErrorKind::NotFound)
                {
                    // The group or stream was deleted by someone: make them again once.
                    ensure_log_stream(logs, &group, &stream).await;
                    result = logs.put_events(&group, &stream, events()).await;
                }
                if let Err(e) = result {
                    tracing::warn!("load balancer {lb}: cannot put access lines: {e}");
                }
            }
        }
    }
}

/// Makes the log group and stream if they do not exist yet.
pub(crate) async fn ensure_log_stream(logs: &dyn Logs, group: &str, stream: &str) {
    if let Err(e) = logs.create_group(group, None).await
        && e.kind() != ErrorKind::AlreadyExists
    {
        tracing::warn!("cannot create log group {group}: {e}");
    }
    if let Err(e) = logs.create_stream(group, stream).await
        && e.kind() != ErrorKind::AlreadyExists
    {
        tracing::warn!("cannot create log stream {group}/{stream}: {e}");
    }
}

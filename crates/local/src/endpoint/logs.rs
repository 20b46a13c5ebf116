//! The CloudWatch Logs door: the Logs JSON protocol (`Logs_20140328`) over the local Log
//! service.
//!
//! Served: CreateLogGroup, CreateLogStream, DescribeLogStreams, PutLogEvents, GetLogEvents and
//! FilterLogEvents (with the Log service's filter patterns). Times are milliseconds since the
//! epoch, as in CloudWatch Logs.
//!
//! GetLogEvents without a token and without `startFromHead` answers the newest events (up to
//! `limit`), as CloudWatch Logs does. Its `nextForwardToken` continues after the last event
//! returned: once the stream is read to its end, the token names the millisecond after the
//! last event, and is returned unchanged while nothing newer arrives (which is how the AWS
//! CLI knows to stop). An event put later with the same millisecond as the last one read is
//! not seen through that token. Backward tokens are not served.

use chrono::{DateTime, Utc};
use mvi_core::log::{FilterEvents, GetEvents, LogEvent, LogRecord, Logs};
use mvi_core::{Error, ErrorKind};
use serde_json::{Value as Json, json};

use super::json::{Caller, Input, JsonError, JsonResult};

/// The most events GetLogEvents and FilterLogEvents return at once (CloudWatch's limit).
const MAX_EVENTS: usize = 10_000;

/// Runs one CloudWatch Logs operation.
pub(crate) async fn call(
    logs: &dyn Logs,
    caller: &Caller,
    operation: &str,
    input: Json,
) -> JsonResult {
    let req = Input(input);
    let group = req.required_str("logGroupName")?;
    let group_arn = caller.account.log_group_arn(group);
    let stream_arn = |stream: &str| format!("{group_arn}:log-stream:{stream}");
    match operation {
        "CreateLogGroup" => {
            caller.require("logs:CreateLogGroup", &group_arn)?;
            logs.create_group(group, None).await.map_err(error)?;
            Ok(json!({}))
        }
        "CreateLogStream" => {
            let stream = req.required_str("logStreamName")?;
            caller.require("logs:CreateLogStream", &stream_arn(stream))?;
            logs.create_stream(group, stream).await.map_err(error)?;
            Ok(json!({}))
        }
        "DescribeLogStreams" => {
            caller.require("logs:DescribeLogStreams", &group_arn)?;
            let prefix = req.str("logStreamNamePrefix")?.unwrap_or("");
            let streams: Vec<Json> = logs
                .list_streams(group)
                .await
                .map_err(error)?
                .into_iter()
                .filter(|s| s.name.starts_with(prefix))
                .map(|s| {
                    let mut out = json!({
                        "logStreamName": s.name,
                        "creationTime": s.created.timestamp_millis(),
                        "arn": stream_arn(&s.name),
                        "storedBytes": 0,
                    });
                    if let (Some(t), Some(m)) = (s.last_event, out.as_object_mut()) {
                        m.insert("lastEventTimestamp".into(), json!(t.timestamp_millis()));
                    }
                    out
                })
                .collect();
            Ok(json!({ "logStreams": streams }))
        }
        "PutLogEvents" => {
            let stream = req.required_str("logStreamName")?;
            caller.require("logs:PutLogEvents", &stream_arn(stream))?;
            let events = req
                .get("logEvents")
                .and_then(Json::as_array)
                .ok_or_else(|| JsonError::validation("logEvents is required"))?
                .iter()
                .map(|e| {
                    let at = e.get("timestamp").and_then(Json::as_i64);
                    let message = e.get("message").and_then(Json::as_str);
                    match (at.and_then(DateTime::from_timestamp_millis), message) {
                        (Some(at), Some(m)) => Ok(LogEvent::new(at, m)),
                        _ => Err(JsonError::serialization(
                            "each log event has a timestamp (milliseconds) and a message",
                        )),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            logs.put_events(group, stream, events)
                .await
                .map_err(error)?;
            Ok(json!({}))
        }
        "GetLogEvents" => {
            let stream = req.required_str("logStreamName")?;
            caller.require("logs:GetLogEvents", &stream_arn(stream))?;
            get_events(logs, &req, group, stream).await
        }
        "FilterLogEvents" => {
            caller.require("logs:FilterLogEvents", &group_arn)?;
            let mut f = FilterEvents::new(group, req.str("filterPattern")?.unwrap_or(""))
                .cursor(req.str("nextToken")?.map(str::to_owned));
            if let Some(names) = req.get("logStreamNames").and_then(Json::as_array) {
                f = f.streams(names.iter().filter_map(Json::as_str));
            }
            let (start, end) = times(&req)?;
            f.start = start;
            f.end = end;
            f = f.limit(req.limit("limit")?.unwrap_or(MAX_EVENTS).min(MAX_EVENTS));
            let page = logs.filter_events(f).await.map_err(error)?;
            let events: Vec<Json> = page
                .items
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut e = event(r);
                    if let Some(m) = e.as_object_mut() {
                        m.insert("logStreamName".into(), json!(r.stream));
                        m.insert(
                            "eventId".into(),
                            json!(format!("{}{:06}", r.timestamp.timestamp_millis(), i)),
                        );
                    }
                    e
                })
                .collect();
            let mut out = json!({ "events": events, "searchedLogStreams": [] });
            if let (Some(next), Some(m)) = (page.next, out.as_object_mut()) {
                m.insert("nextToken".into(), json!(next));
            }
            Ok(out)
        }
        other => Err(JsonError::new(
            "UnknownOperationException",
            format!("this endpoint does not serve the CloudWatch Logs operation {other:?}"),
        )),
    }
}

fn event(r: &LogRecord) -> Json {
    json!({
        "timestamp": r.timestamp.timestamp_millis(),
        "message": r.message,
        "ingestionTime": r.ingested.timestamp_millis(),
    })
}

/// A time range's optional start and (exclusive) end.
type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// `startTime` and `endTime` (milliseconds; the end is exclusive).
fn times(req: &Input) -> Result<Range, JsonError> {
    let at = |field: &str| -> Result<Option<DateTime<Utc>>, JsonError> {
        req.i64(field)?
            .map(|ms| {
                DateTime::from_timestamp_millis(ms).ok_or_else(|| {
                    JsonError::new(
                        "InvalidParameterException",
                        format!("{field} is out of range"),
                    )
                })
            })
            .transpose()
    };
    Ok((at("startTime")?, at("endTime")?))
}

async fn get_events(logs: &dyn Logs, req: &Input, group: &str, stream: &str) -> JsonResult {
    let limit = req.limit("limit")?.unwrap_or(MAX_EVENTS).min(MAX_EVENTS);
    let (mut start, end) = times(req)?;
    let token = req.str("nextToken")?;
    let mut cursor = None;
    match token {
        None => {}
        Some(t) if t.starts_with("f/c") => cursor = Some(t[3..].to_owned()),
        Some(t) if t.starts_with("f/t") => {
            let ms = t[3..]
                .parse::<i64>()
                .ok()
                .and_then(DateTime::from_timestamp_millis);
            start = Some(ms.ok_or_else(|| bad_token(t))?);
        }
        Some(t) => return Err(bad_token(t)),
    }
    let query = |cursor: Option<String>, limit: usize| {
        let mut q = GetEvents::new(group, stream).limit(limit).cursor(cursor);
        q.start = start;
        q.end = end;
        q
    };
    let newest = token.is_none() && req.get("startFromHead") != Some(&Json::Bool(true));
    let (events, next) = if newest {
        // The newest `limit` events: read to the end, keeping the last ones.
        let mut kept = std::collections::VecDeque::with_capacity(limit);
        let mut cursor = None;
        loop {
            let page = logs
                .get_events(query(cursor, MAX_EVENTS))
                .await
                .map_err(error)?;
            for r in page.items {
                if kept.len() == limit {
                    kept.pop_front();
                }
                kept.push_back(r);
            }
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        (Vec::from(kept), None)
    } else {
        let page = logs.get_events(query(cursor, limit)).await.map_err(error)?;
        (page.items, page.next)
    };
    let forward = match (next, events.last(), token) {
        (Some(c), _, _) => format!("f/c{c}"),
        (None, Some(last), _) => format!("f/t{}", last.timestamp.timestamp_millis() + 1),
        // Nothing new: the same token, so a reader polling it knows it is at the end.
        (None, None, Some(t)) => t.to_owned(),
        (None, None, None) => format!("f/t{}", start.map_or(0, |s| s.timestamp_millis())),
    };
    Ok(json!({
        "events": events.iter().map(event).collect::<Vec<_>>(),
        "nextForwardToken": forward,
        "nextBackwardToken": "b/0",
    }))
}

fn bad_token(t: &str) -> JsonError {
    JsonError::new(
        "InvalidParameterException",
        format!("the token {t:?} is not a forward token of this endpoint"),
    )
}

/// CloudWatch Logs' answer to a Log error.
fn error(e: Error) -> JsonError {
    match e.kind() {
        ErrorKind::NotFound => JsonError::new("ResourceNotFoundException", e.message()),
        ErrorKind::AlreadyExists => JsonError::new("ResourceAlreadyExistsException", e.message()),
        ErrorKind::InvalidArgument => JsonError::new("InvalidParameterException", e.message()),
        _ => JsonError::of_kind(&e),
    }
}

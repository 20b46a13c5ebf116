//! Log on Amazon CloudWatch Logs.
//!
//! Names, retention periods, batches, page sizes and filter patterns are checked with core's
//! rules before any request, so they fail as on the local backend.
//!
//! # How each part maps to CloudWatch Logs
//!
//! - Groups and streams: `CreateLogGroup` (then `PutRetentionPolicy` for a retention),
//!   `DeleteLogGroup`, `DescribeLogGroups`, `PutRetentionPolicy`/`DeleteRetentionPolicy`,
//!   `CreateLogStream`, `DescribeLogStreams`. A stream's newest event is read with
//!   `GetLogEvents` (newest first, one event), since `DescribeLogStreams`'
//!   `lastEventTimestamp` is only updated eventually (CloudWatch: "typically less than an
//!   hour"); this costs one request per stream listed.
//! - `put_events`: checked whole first (at most 10,000 events, each message 1 byte to
//!   [`MAX_EVENT_SIZE`], in chronological order, none more than 2 hours ahead or older than
//!   14 days, which CloudWatch would drop), then sent with `PutLogEvents` in as few requests
//!   as CloudWatch's per-request limits allow: at most 1,048,576 bytes (each message's UTF-8
//!   bytes + 26), 10,000 events, and a span of 24 hours per request. A batch that needs more
//!   than one request is not atomic: if a later request fails, the earlier ones are stored.
//!   Events already past the group's retention are accepted and dropped, as CloudWatch does.
//! - `get_events`: `GetLogEvents` from the head, following `nextForwardToken` (CloudWatch
//!   marks the end by answering the token it was given).
//! - `filter_events`: `FilterLogEvents` (events of all or some streams, merged in time order)
//!   with the pattern matched here by core's [`FilterPattern`], not sent to CloudWatch:
//!   CloudWatch's own pattern language differs in detail (and moto 5.2.5 gets `-term` and
//!   `?term` wrong), while both backends must match the same events. Every event of the time
//!   range is therefore read.
//! - `tail`: polling. At the start it reads the group's events of the last
//!   [`TAIL_LOOKBACK`] (and from `since`, when given) and remembers their ids; every
//!   [`TAIL_POLL`] it reads that sliding window again and delivers the events it has not seen,
//!   in time order. Events stamped more than [`TAIL_LOOKBACK`] before they are put are not
//!   seen by a tail (read them with `filter_events`). The tail ends when the group is
//!   deleted, including when a group of the same name has been created since.
//!
//! Cursors are CloudWatch's tokens, wrapped so a token of one listing is refused by the other.
//!
//! CloudWatch deletes events past a group's retention in the background, up to 72 hours
//! late, and returns them until then; this backend does not hide them itself.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::types::{
    FilteredLogEvent, InputLogEvent, LogGroup as CwGroup, LogStream as CwStream, OrderBy,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{StreamExt, TryStreamExt};
use mvi_core::log::{
    FilterEvents, FilterPattern, GetEvents, LogEvent, LogGroup, LogRecord, LogStream,
    MAX_BATCH_EVENTS, MAX_EVENT_SIZE, TailEvents, validate_group_name, validate_retention,
    validate_stream_name,
};
use mvi_core::{BoxStream, Error, Logs, Op, Page, Result, Service, Timestamp};

use crate::error::map;

const fn op(name: &'static str) -> Op {
    Op::new(Service::Log, name)
}

/// The most events one page returns (CloudWatch's limit, and the local backend's).
const MAX_PAGE: usize = 10_000;
/// The most bytes one `PutLogEvents` carries: messages' UTF-8 bytes + 26 per event.
const MAX_REQUEST_BYTES: usize = 1_048_576;
/// What CloudWatch counts for each event beyond its message.
const EVENT_OVERHEAD: usize = 26;
/// The longest time span of one `PutLogEvents`, in milliseconds.
const MAX_REQUEST_SPAN_MS: i64 = 24 * 3_600_000;
/// How far ahead of now CloudWatch accepts an event, in milliseconds.
const MAX_AHEAD_MS: i64 = 2 * 3_600_000;
/// How old an event CloudWatch accepts, in milliseconds.
const MAX_AGE_MS: i64 = 14 * 86_400_000;
/// The most stream names `FilterLogEvents` takes; longer lists are filtered here.
const MAX_FILTER_STREAMS: usize = 100;
/// Requests one `get_events` or `filter_events` call makes at most while CloudWatch answers
/// empty pages that are not the last.
const MAX_EMPTY_PAGES: usize = 50;
/// How many streams `list_streams` reads the newest event of at once.
const LIST_CONCURRENCY: usize = 8;
/// How often a tail asks CloudWatch for new events.
pub const TAIL_POLL: Duration = Duration::from_secs(1);
/// How far back in event time a tail looks for newly put events.
pub const TAIL_LOOKBACK: Duration = Duration::from_secs(15 * 60);

/// The Log service on Amazon CloudWatch Logs (or a compatible endpoint).
#[derive(Debug)]
pub struct CloudWatchLogs {
    client: Client,
    /// Serializes `CreateLogGroup` within this handle, so tasks of one program racing to
    /// create a group get exactly one winner even from an endpoint whose check-and-create is
    /// not atomic (moto 5.2.5); CloudWatch itself would answer the same.
    create_lock: tokio::sync::Mutex<()>,
}

impl CloudWatchLogs {
    /// Logs over a CloudWatch Logs client built from `config`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        CloudWatchLogs {
            client: Client::new(config),
            create_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The group named exactly `name`, if it exists.
    async fn find_group(&self, op: Op, name: &str) -> Result<Option<CwGroup>> {
        find_group(&self.client, op, name).await
    }

    /// The stream `stream` of `group`, if it exists; NotFound if the group does not.
    async fn find_stream(&self, op: Op, group: &str, stream: &str) -> Result<Option<CwStream>> {
        let mut pages = self
            .client
            .describe_log_streams()
            .log_group_name(group)
            .log_stream_name_prefix(stream)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map(op, group, e))?;
            if let Some(found) = page
                .log_streams()
                .iter()
                .find(|s| s.log_stream_name() == Some(stream))
            {
                return Ok(Some(found.clone()));
            }
        }
        Ok(None)
    }

    /// NotFound unless each of `streams` exists in `group`.
    async fn require_streams(&self, op: Op, group: &str, streams: &[String]) -> Result<()> {
        let unique: HashSet<&String> = streams.iter().collect();
        for stream in unique {
            if self.find_stream(op, group, stream).await?.is_none() {
                return Err(no_stream(op, group, stream));
            }
        }
        Ok(())
    }

    /// The timestamp of the newest event of `group`/`stream`.
    async fn newest_event(&self, op: Op, group: &str, stream: &CwStream) -> Result<Option<i64>> {
        let name = stream.log_stream_name().unwrap_or_default();
        let out = self
            .client
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(name)
            .start_from_head(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| map(op, format!("{group}/{name}"), e))?;
        let newest = out.events().iter().filter_map(|e| e.timestamp()).max();
        Ok(newest.or(stream.last_event_timestamp()))
    }

    /// One `PutLogEvents` of `events`.
    async fn put_request(
        &self,
        op: Op,
        group: &str,
        stream: &str,
        events: &[LogEvent],
    ) -> Result<()> {
        let resource = format!("{group}/{stream}");
        let input = events
            .iter()
            .map(|e| {
                InputLogEvent::builder()
                    .timestamp(millis(e.timestamp))
                    .message(e.message.as_str())
                    .build()
                    .map_err(|err| op.internal(resource.as_str(), err))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = self
            .client
            .put_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .set_log_events(Some(input))
            .send()
            .await
            .map_err(|e| map(op, resource.as_str(), e))?;
        // Events past the group's retention are dropped silently, as on the local backend.
        // Too old or too new ones were refused before sending; if CloudWatch still refused
        // some (the clocks differ), say so: the rest of the request is stored.
        if let Some(info) = out.rejected_log_events_info() {
            let mut refused = Vec::new();
            if let Some(i) = info.too_old_log_event_end_index() {
                refused.push(format!("events 0 to {i} are too old"));
            }
            if let Some(i) = info.too_new_log_event_start_index() {
                refused.push(format!("events from {i} on are too far in the future"));
            }
            if !refused.is_empty() {
                return Err(op.invalid(
                    resource,
                    format!(
                        "CloudWatch refused part of the batch ({}); the other events are stored",
                        refused.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Logs for CloudWatchLogs {
    async fn create_group(&self, group: &str, retention_days: Option<u32>) -> Result<LogGroup> {
        let op = op("create_group");
        validate_group_name(op, group)?;
        validate_retention(op, group, retention_days)?;
        {
            let _one_at_a_time = self.create_lock.lock().await;
            self.client
                .create_log_group()
                .log_group_name(group)
                .send()
                .await
                .map_err(|e| map(op, group, e))?;
        }
        if let Some(days) = retention_days
            && let Err(e) = self.put_retention(op, group, days).await
        {
            // A group without the retention asked for is not what was created: undo.
            if let Err(undo) = self
                .client
                .delete_log_group()
                .log_group_name(group)
                .send()
                .await
            {
                tracing::warn!(group, error = %map(op, group, undo),
                        "could not delete a log group whose retention could not be set");
            }
            return Err(e);
        }
        let found = self
            .find_group(op, group)
            .await?
            .ok_or_else(|| op.internal(group, "the new log group is not listed"))?;
        Ok(to_group(&found))
    }

    async fn delete_group(&self, group: &str) -> Result<()> {
        let op = op("delete_group");
        validate_group_name(op, group)?;
        self.client
            .delete_log_group()
            .log_group_name(group)
            .send()
            .await
            .map_err(|e| map(op, group, e))?;
        Ok(())
    }

    async fn list_groups(&self) -> Result<Vec<LogGroup>> {
        let op = op("list_groups");
        let groups: Vec<CwGroup> = self
            .client
            .describe_log_groups()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| map(op, "log groups", e))?;
        let mut out: Vec<LogGroup> = groups.iter().map(to_group).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn set_retention(&self, group: &str, retention_days: Option<u32>) -> Result<()> {
        let op = op("set_retention");
        validate_group_name(op, group)?;
        validate_retention(op, group, retention_days)?;
        match retention_days {
            Some(days) => self.put_retention(op, group, days).await,
            None => {
                self.client
                    .delete_retention_policy()
                    .log_group_name(group)
                    .send()
                    .await
                    .map_err(|e| map(op, group, e))?;
                Ok(())
            }
        }
    }

    async fn create_stream(&self, group: &str, stream: &str) -> Result<LogStream> {
        let op = op("create_stream");
        validate_group_name(op, group)?;
        validate_stream_name(op, group, stream)?;
        self.client
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await
            .map_err(|e| {
                let err = map(op, format!("{group}/{stream}"), e);
                // A missing group is about the group.
                if err.kind() == mvi_core::ErrorKind::NotFound {
                    op.not_found(group, err.message().to_owned())
                } else {
                    err
                }
            })?;
        let created = self
            .find_stream(op, group, stream)
            .await?
            .and_then(|s| s.creation_time())
            .map_or_else(chrono::Utc::now, timestamp);
        Ok(LogStream {
            name: stream.to_owned(),
            created,
            last_event: None,
        })
    }

    async fn list_streams(&self, group: &str) -> Result<Vec<LogStream>> {
        let op = op("list_streams");
        validate_group_name(op, group)?;
        let streams: Vec<CwStream> = self
            .client
            .describe_log_streams()
            .log_group_name(group)
            .order_by(OrderBy::LogStreamName)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| map(op, group, e))?;
        let lookups: Vec<_> = streams
            .iter()
            .map(|s| self.newest_event(op, group, s))
            .collect();
        let newest: Vec<Option<i64>> = futures::stream::iter(lookups)
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        let mut out: Vec<LogStream> = streams
            .iter()
            .zip(newest)
            .map(|(s, last)| LogStream {
                name: s.log_stream_name().unwrap_or_default().to_owned(),
                created: timestamp(s.creation_time().unwrap_or_default()),
                last_event: last.map(timestamp),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn put_events(&self, group: &str, stream: &str, events: Vec<LogEvent>) -> Result<()> {
        let op = op("put_events");
        validate_group_name(op, group)?;
        validate_stream_name(op, group, stream)?;
        let resource = format!("{group}/{stream}");
        check_batch(op, &resource, &events, millis(chrono::Utc::now()))?;
        if events.is_empty() {
            // Nothing to send, but the stream must exist, as on the local backend.
            return match self.find_stream(op, group, stream).await? {
                Some(_) => Ok(()),
                None => Err(no_stream(op, group, stream)),
            };
        }
        for range in requests(&events) {
            self.put_request(op, group, stream, &events[range]).await?;
        }
        Ok(())
    }

    async fn get_events(&self, req: GetEvents) -> Result<Page<LogRecord>> {
        let op = op("get_events");
        validate_group_name(op, &req.group)?;
        validate_stream_name(op, &req.group, &req.stream)?;
        let limit = check_limit(op, &req.group, req.limit)?;
        let mut token = req
            .cursor
            .as_deref()
            .map(|c| decode_cursor(op, &req.group, GET_CURSOR, c))
            .transpose()?;
        let range = TimeRange::new(req.start, req.end);
        let resource = format!("{}/{}", req.group, req.stream);
        for _ in 0..MAX_EMPTY_PAGES {
            let out = self
                .client
                .get_log_events()
                .log_group_name(&req.group)
                .log_stream_name(&req.stream)
                .start_from_head(true)
                .set_start_time(range.start)
                // CloudWatch's end is exclusive here, as mvi's.
                .set_end_time(range.end)
                .limit(page_limit(limit))
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| map(op, resource.as_str(), e))?;
            let items: Vec<LogRecord> = out
                .events()
                .iter()
                .filter(|e| range.contains(e.timestamp().unwrap_or_default()))
                .map(|e| LogRecord {
                    stream: req.stream.clone(),
                    timestamp: timestamp(e.timestamp().unwrap_or_default()),
                    ingested: timestamp(e.ingestion_time().unwrap_or_default()),
                    message: e.message().unwrap_or_default().to_owned(),
                })
                .collect();
            let next = out.next_forward_token().map(str::to_owned);
            // The end: CloudWatch answers the token it was given (or none).
            if next.is_none() || next == token {
                return Ok(Page { items, next: None });
            }
            if !items.is_empty() {
                return Ok(Page {
                    items,
                    next: next.map(|t| encode_cursor(GET_CURSOR, &t)),
                });
            }
            token = next;
        }
        Ok(Page {
            items: Vec::new(),
            next: token.map(|t| encode_cursor(GET_CURSOR, &t)),
        })
    }

    async fn filter_events(&self, req: FilterEvents) -> Result<Page<LogRecord>> {
        let op = op("filter_events");
        validate_group_name(op, &req.group)?;
        let pattern = FilterPattern::parse(op, &req.pattern)?;
        let limit = check_limit(op, &req.group, req.limit)?;
        for s in &req.streams {
            validate_stream_name(op, &req.group, s)?;
        }
        let mut token = req
            .cursor
            .as_deref()
            .map(|c| decode_cursor(op, &req.group, FILTER_CURSOR, c))
            .transpose()?;
        if token.is_none() && !req.streams.is_empty() {
            // CloudWatch would ignore a stream that does not exist; the contract says
            // NotFound. Checked once, on the first page.
            self.require_streams(op, &req.group, &req.streams).await?;
        }
        let selection = StreamSelection::new(&req.streams);
        let range = TimeRange::new(req.start, req.end);
        for _ in 0..MAX_EMPTY_PAGES {
            let out = filter_request(
                &self.client,
                &req.group,
                &selection,
                &range,
                Some(page_limit(limit)),
                token.clone(),
            )
            .send()
            .await
            .map_err(|e| map(op, req.group.as_str(), e))?;
            let items: Vec<LogRecord> = out
                .events()
                .iter()
                .filter(|e| {
                    range.contains(e.timestamp().unwrap_or_default())
                        && selection.contains(e.log_stream_name().unwrap_or_default())
                        && pattern.matches(e.message().unwrap_or_default())
                })
                .map(to_record)
                .collect();
            let next = out.next_token().map(str::to_owned);
            match next {
                None => return Ok(Page { items, next: None }),
                Some(next) if !items.is_empty() => {
                    return Ok(Page {
                        items,
                        next: Some(encode_cursor(FILTER_CURSOR, &next)),
                    });
                }
                Some(next) => token = Some(next),
            }
        }
        Ok(Page {
            items: Vec::new(),
            next: token.map(|t| encode_cursor(FILTER_CURSOR, &t)),
        })
    }

    async fn tail(&self, req: TailEvents) -> Result<BoxStream<LogRecord>> {
        let op = op("tail");
        validate_group_name(op, &req.group)?;
        let pattern = FilterPattern::parse(op, &req.pattern)?;
        for s in &req.streams {
            validate_stream_name(op, &req.group, s)?;
        }
        let group = self
            .find_group(op, &req.group)
            .await?
            .ok_or_else(|| no_group(op, &req.group))?;
        if !req.streams.is_empty() {
            self.require_streams(op, &req.group, &req.streams).await?;
        }
        let mut tail = Tail {
            client: self.client.clone(),
            group: req.group,
            created: group.creation_time(),
            selection: StreamSelection::new(&req.streams),
            pattern,
            seen: HashMap::new(),
            pending: VecDeque::new(),
            polled: false,
            ended: false,
        };
        // What is stored now is history: delivered if at or after `since`, else only
        // remembered so that the polls do not take it for new.
        let now = millis(chrono::Utc::now());
        let window = now - lookback_ms();
        let since = req.since.map(millis_ceil);
        let from = since.map_or(window, |s| s.min(window));
        for event in tail.read(op, from).await? {
            let Some(id) = event.event_id() else { continue };
            let ts = event.timestamp().unwrap_or_default();
            tail.seen.insert(id.to_owned(), ts);
            if since.is_some_and(|s| ts >= s) && tail.wanted(&event) {
                tail.pending.push_back(to_record(&event));
            }
        }
        Ok(Box::pin(futures::stream::unfold(
            tail,
            |mut tail| async move {
                let item = tail.next().await?;
                Some((item, tail))
            },
        )))
    }
}

impl CloudWatchLogs {
    async fn put_retention(&self, op: Op, group: &str, days: u32) -> Result<()> {
        let days = i32::try_from(days).map_err(|_| op.invalid(group, "retention out of range"))?;
        self.client
            .put_retention_policy()
            .log_group_name(group)
            .retention_in_days(days)
            .send()
            .await
            .map_err(|e| map(op, group, e))?;
        Ok(())
    }
}

/// A running tail (see the module docs).
struct Tail {
    client: Client,
    group: String,
    /// The creation time of the group when the tail started: a group of the same name
    /// created since is another group.
    created: Option<i64>,
    selection: StreamSelection,
    pattern: FilterPattern,
    /// Ids of the events already delivered or present at the start, with their timestamps.
    seen: HashMap<String, i64>,
    pending: VecDeque<LogRecord>,
    polled: bool,
    ended: bool,
}

impl Tail {
    fn wanted(&self, event: &FilteredLogEvent) -> bool {
        self.selection
            .contains(event.log_stream_name().unwrap_or_default())
            && self.pattern.matches(event.message().unwrap_or_default())
    }

    /// Every event of the group stamped at or after `from`, in time order.
    async fn read(&self, op: Op, from: i64) -> Result<Vec<FilteredLogEvent>> {
        let range = TimeRange {
            start: Some(from),
            end: None,
        };
        let mut events = Vec::new();
        let mut token = None;
        loop {
            let out = filter_request(
                &self.client,
                &self.group,
                &self.selection,
                &range,
                None,
                token,
            )
            .send()
            .await
            .map_err(|e| map(op, self.group.as_str(), e))?;
            events.extend(out.events().iter().cloned());
            match out.next_token() {
                Some(next) => token = Some(next.to_owned()),
                None => return Ok(events),
            }
        }
    }

    /// The next event, `None` once the group is gone.
    async fn next(&mut self) -> Option<Result<LogRecord>> {
        let op = op("tail");
        loop {
            if let Some(record) = self.pending.pop_front() {
                return Some(Ok(record));
            }
            if self.ended {
                return None;
            }
            if self.polled {
                tokio::time::sleep(TAIL_POLL).await;
            }
            self.polled = true;
            match self.poll(op).await {
                Ok(true) => {}
                Ok(false) => self.ended = true,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Queues the events put since the last poll; `false` once the group is gone.
    async fn poll(&mut self, op: Op) -> Result<bool> {
        match find_group(&self.client, op, &self.group).await? {
            Some(g) if g.creation_time() == self.created => {}
            _ => return Ok(false),
        }
        let window = millis(chrono::Utc::now()) - lookback_ms();
        let events = match self.read(op, window).await {
            Ok(events) => events,
            Err(e) if e.kind() == mvi_core::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        for event in events {
            let Some(id) = event.event_id() else { continue };
            if self.seen.contains_key(id) {
                continue;
            }
            self.seen
                .insert(id.to_owned(), event.timestamp().unwrap_or_default());
            if self.wanted(&event) {
                self.pending.push_back(to_record(&event));
            }
        }
        // Ids older than the window can never come back: forget them.
        self.seen.retain(|_, ts| *ts >= window);
        Ok(true)
    }
}

/// The group named exactly `name`, if it exists.
async fn find_group(client: &Client, op: Op, name: &str) -> Result<Option<CwGroup>> {
    let mut pages = client
        .describe_log_groups()
        .log_group_name_prefix(name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| map(op, name, e))?;
        if let Some(found) = page
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
        {
            return Ok(Some(found.clone()));
        }
    }
    Ok(None)
}

/// A `FilterLogEvents` request without a pattern (patterns are matched here).
#[allow(deprecated)] // `interleaved`: see below.
fn filter_request(
    client: &Client,
    group: &str,
    selection: &StreamSelection,
    range: &TimeRange,
    limit: Option<i32>,
    token: Option<String>,
) -> aws_sdk_cloudwatchlogs::operation::filter_log_events::builders::FilterLogEventsFluentBuilder {
    client
        .filter_log_events()
        .log_group_name(group)
        .set_log_stream_names(selection.server_side())
        .set_start_time(range.start)
        // CloudWatch's end is inclusive here; mvi's is exclusive.
        .set_end_time(range.end.map(|e| e - 1))
        .set_limit(limit)
        .set_next_token(token)
        // CloudWatch ignores it (it always interleaves streams in time order); moto 5.2.5
        // returns the streams one after the other without it.
        .interleaved(true)
}

/// Which streams a filter or tail reads.
#[derive(Debug, Clone)]
struct StreamSelection {
    /// Empty: all.
    names: HashSet<String>,
}

impl StreamSelection {
    fn new(names: &[String]) -> Self {
        StreamSelection {
            names: names.iter().cloned().collect(),
        }
    }

    fn contains(&self, stream: &str) -> bool {
        self.names.is_empty() || self.names.contains(stream)
    }

    /// The names to send to CloudWatch: none (all streams, filtered here) beyond its limit.
    fn server_side(&self) -> Option<Vec<String>> {
        if self.names.is_empty() || self.names.len() > MAX_FILTER_STREAMS {
            return None;
        }
        let mut names: Vec<String> = self.names.iter().cloned().collect();
        names.sort();
        Some(names)
    }
}

/// `[start, end)` in whole milliseconds, as CloudWatch counts time.
#[derive(Debug, Clone, Copy)]
struct TimeRange {
    start: Option<i64>,
    end: Option<i64>,
}

impl TimeRange {
    /// An event at `t` (ms) is in `[start, end)` exactly when `t >= ceil(start)` and
    /// `t < ceil(end)`.
    fn new(start: Option<Timestamp>, end: Option<Timestamp>) -> Self {
        TimeRange {
            start: start.map(millis_ceil),
            end: end.map(millis_ceil),
        }
    }

    fn contains(&self, t: i64) -> bool {
        self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t < e)
    }
}

fn millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

/// `t` in milliseconds, rounded up.
fn millis_ceil(t: Timestamp) -> i64 {
    let ms = t.timestamp_millis();
    if t.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        ms
    } else {
        ms + 1
    }
}

fn timestamp(ms: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn lookback_ms() -> i64 {
    i64::try_from(TAIL_LOOKBACK.as_millis()).unwrap_or(i64::MAX)
}

fn page_limit(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

fn to_group(g: &CwGroup) -> LogGroup {
    LogGroup {
        name: g.log_group_name().unwrap_or_default().to_owned(),
        retention_days: g.retention_in_days().and_then(|d| u32::try_from(d).ok()),
        created: timestamp(g.creation_time().unwrap_or_default()),
    }
}

fn to_record(e: &FilteredLogEvent) -> LogRecord {
    LogRecord {
        stream: e.log_stream_name().unwrap_or_default().to_owned(),
        timestamp: timestamp(e.timestamp().unwrap_or_default()),
        ingested: timestamp(e.ingestion_time().unwrap_or_default()),
        message: e.message().unwrap_or_default().to_owned(),
    }
}

fn no_group(op: Op, group: &str) -> Error {
    op.not_found(group, "no such log group")
}

fn no_stream(op: Op, group: &str, stream: &str) -> Error {
    op.not_found(format!("{group}/{stream}"), "no such log stream")
}

fn check_limit(op: Op, group: &str, limit: Option<usize>) -> Result<usize> {
    match limit {
        None => Ok(MAX_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(op.invalid(
            group,
            format!("limit must be between 1 and {MAX_PAGE}, got {n}"),
        )),
    }
}

/// Checks a batch as a whole before anything is sent (see the module docs); `now` in ms.
fn check_batch(op: Op, resource: &str, events: &[LogEvent], now: i64) -> Result<()> {
    if events.len() > MAX_BATCH_EVENTS {
        return Err(op.invalid(
            resource,
            format!(
                "a batch holds at most {MAX_BATCH_EVENTS} events, got {}",
                events.len()
            ),
        ));
    }
    let mut prev: Option<i64> = None;
    for (i, e) in events.iter().enumerate() {
        if e.message.is_empty() {
            return Err(op.invalid(resource, format!("event {i} has an empty message")));
        }
        if e.message.len() > MAX_EVENT_SIZE {
            return Err(op.invalid(
                resource,
                format!(
                    "event {i} is {} bytes; a message holds at most {MAX_EVENT_SIZE}",
                    e.message.len()
                ),
            ));
        }
        let ts = millis(e.timestamp);
        if prev.is_some_and(|p| ts < p) {
            return Err(op.invalid(
                resource,
                format!(
                    "events must be in chronological order: event {i} ({}) is older than event {}",
                    e.timestamp,
                    i - 1
                ),
            ));
        }
        if ts > now + MAX_AHEAD_MS {
            return Err(op.invalid(
                resource,
                format!(
                    "event {i} ({}) is more than 2 hours in the future; CloudWatch Logs refuses it",
                    e.timestamp
                ),
            ));
        }
        if ts < now - MAX_AGE_MS {
            return Err(op.invalid(
                resource,
                format!(
                    "event {i} ({}) is more than 14 days old; CloudWatch Logs refuses it",
                    e.timestamp
                ),
            ));
        }
        prev = Some(ts);
    }
    Ok(())
}

/// Splits a checked batch into `PutLogEvents` requests within CloudWatch's limits: bytes,
/// events and time span per request.
fn requests(events: &[LogEvent]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, e) in events.iter().enumerate() {
        let size = e.message.len() + EVENT_OVERHEAD;
        let first_ts = events.get(start).map_or(0, |f| millis(f.timestamp));
        let full = i - start == MAX_BATCH_EVENTS
            || bytes + size > MAX_REQUEST_BYTES
            || millis(e.timestamp) - first_ts > MAX_REQUEST_SPAN_MS;
        if i > start && full {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < events.len() {
        out.push(start..events.len());
    }
    out
}

/// The kind tags of cursors, so a token of one listing is refused by the other.
const GET_CURSOR: char = 'g';
const FILTER_CURSOR: char = 'f';

fn encode_cursor(kind: char, token: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}{token}"))
}

fn decode_cursor(op: Op, group: &str, kind: char, cursor: &str) -> Result<String> {
    let bad = || {
        op.invalid(
            group,
            format!("not a pagination token of this listing: {cursor:?}"),
        )
    };
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    match text.strip_prefix(kind) {
        Some(token) if !token.is_empty() => Ok(token.to_owned()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64, size: usize) -> LogEvent {
        LogEvent::new(timestamp(ms), "x".repeat(size))
    }

    #[test]
    fn batches_split_at_cloudwatch_limits() {
        // Bytes: four events of 300 KB need two requests of at most 1 MiB.
        let big: Vec<LogEvent> = (0..4).map(|i| at(i, 300_000)).collect();
        assert_eq!(requests(&big), vec![0..3, 3..4]);
        // Time: a batch spanning more than 24 hours is cut where it passes 24 hours.
        let day = MAX_REQUEST_SPAN_MS;
        let spread = vec![at(0, 1), at(day, 1), at(day + 1, 1), at(day + 5, 1)];
        assert_eq!(requests(&spread), vec![0..2, 2..4]);
        // Count: 10,000 small events fit one request.
        let many: Vec<LogEvent> = (0..MAX_BATCH_EVENTS).map(|_| at(0, 1)).collect();
        assert_eq!(requests(&many), vec![0..MAX_BATCH_EVENTS]);
        assert!(requests(&[]).is_empty());
    }

    #[test]
    fn batch_checks() {
        let op = op("put_events");
        let now = 1_700_000_000_000;
        assert!(check_batch(op, "g/s", &[at(now, 1), at(now, 2)], now).is_ok());
        assert!(check_batch(op, "g/s", &[at(now, 1), at(now - 1, 1)], now).is_err());
        assert!(check_batch(op, "g/s", &[at(now, 0)], now).is_err());
        assert!(check_batch(op, "g/s", &[at(now, MAX_EVENT_SIZE + 1)], now).is_err());
        assert!(check_batch(op, "g/s", &[at(now + MAX_AHEAD_MS + 1, 1)], now).is_err());
        assert!(check_batch(op, "g/s", &[at(now - MAX_AGE_MS - 1, 1)], now).is_err());
    }

    #[test]
    fn time_ranges_round_up_to_milliseconds() {
        let t = timestamp(1_000) + chrono::Duration::microseconds(1);
        let r = TimeRange::new(Some(t), Some(t + chrono::Duration::milliseconds(2)));
        assert_eq!((r.start, r.end), (Some(1_001), Some(1_003)));
        assert!(!r.contains(1_000) && r.contains(1_001) && r.contains(1_002));
        assert!(!r.contains(1_003));
    }

    #[test]
    fn cursors_roundtrip_and_keep_to_their_listing() {
        let op = op("get_events");
        let c = encode_cursor(
            GET_CURSOR,
            "f/00000000000000000000000000000000000000000000000000000039",
        );
        assert!(decode_cursor(op, "g", GET_CURSOR, &c).is_ok());
        assert!(decode_cursor(op, "g", FILTER_CURSOR, &c).is_err());
        assert!(decode_cursor(op, "g", GET_CURSOR, "!!").is_err());
    }
}

//! Log: groups of streams of timestamped events (CloudWatch Logs on AWS, append-only segment
//! files locally).
//!
//! Filter patterns follow a subset of CloudWatch Logs' syntax, implemented once in
//! [`FilterPattern`] so every backend that filters itself agrees: whitespace-separated terms
//! that must all appear (`ERROR db`), `"quoted phrases"`, `-term` to exclude, and `?term` for
//! "any of these". Matching is case-sensitive, as CloudWatch's.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::common::{BoxStream, Page, Timestamp};
use crate::error::{Op, Result};

/// The largest event message, in bytes (CloudWatch: 256 KiB minus 26 bytes of overhead).
pub const MAX_EVENT_SIZE: usize = 256 * 1024 - 26;
/// The most events in one `put_events` (as CloudWatch).
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Retention periods CloudWatch Logs accepts, in days.
pub const RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// A log group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogGroup {
    /// Its name (1–512 characters: letters, digits, `_ - / . #`).
    pub name: String,
    /// Events older than this many days are dropped; `None` keeps them forever.
    pub retention_days: Option<u32>,
    /// When it was created.
    pub created: Timestamp,
}

/// A log stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStream {
    /// Its name (1–512 characters, no `:` or `*`).
    pub name: String,
    /// When it was created.
    pub created: Timestamp,
    /// Timestamp of its newest event.
    pub last_event: Option<Timestamp>,
}

/// An event to put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// When it happened.
    pub timestamp: Timestamp,
    /// The message.
    pub message: String,
}

impl LogEvent {
    /// An event at `timestamp`.
    pub fn new(timestamp: Timestamp, message: impl Into<String>) -> Self {
        LogEvent {
            timestamp,
            message: message.into(),
        }
    }
}

/// An event read back, with the stream it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// The stream.
    pub stream: String,
    /// When it happened.
    pub timestamp: Timestamp,
    /// When the service received it.
    pub ingested: Timestamp,
    /// The message.
    pub message: String,
}

/// Reading one stream by time range.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetEvents {
    /// The group.
    pub group: String,
    /// The stream.
    pub stream: String,
    /// Events at or after.
    pub start: Option<Timestamp>,
    /// Events before.
    pub end: Option<Timestamp>,
    /// At most this many per page.
    pub limit: Option<usize>,
    /// The `next` token of the previous page.
    pub cursor: Option<String>,
}

impl GetEvents {
    /// Every event of `group`/`stream`.
    pub fn new(group: impl Into<String>, stream: impl Into<String>) -> Self {
        GetEvents {
            group: group.into(),
            stream: stream.into(),
            start: None,
            end: None,
            limit: None,
            cursor: None,
        }
    }

    /// Events in `[start, end)`.
    pub fn between(mut self, start: Timestamp, end: Timestamp) -> Self {
        self.start = Some(start);
        self.end = Some(end);
        self
    }

    /// Page size.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Continues after a previous page.
    pub fn cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }
}

/// Filtering events across the streams of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FilterEvents {
    /// The group.
    pub group: String,
    /// Only these streams (all when empty).
    pub streams: Vec<String>,
    /// A filter pattern (see [`FilterPattern`]); empty matches everything.
    pub pattern: String,
    /// Events at or after.
    pub start: Option<Timestamp>,
    /// Events before.
    pub end: Option<Timestamp>,
    /// At most this many per page.
    pub limit: Option<usize>,
    /// The `next` token of the previous page.
    pub cursor: Option<String>,
}

impl FilterEvents {
    /// Every event of `group` matching `pattern`.
    pub fn new(group: impl Into<String>, pattern: impl Into<String>) -> Self {
        FilterEvents {
            group: group.into(),
            streams: Vec::new(),
            pattern: pattern.into(),
            start: None,
            end: None,
            limit: None,
            cursor: None,
        }
    }

    /// Only these streams.
    pub fn streams(mut self, streams: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.streams = streams.into_iter().map(Into::into).collect();
        self
    }

    /// Events in `[start, end)`.
    pub fn between(mut self, start: Timestamp, end: Timestamp) -> Self {
        self.start = Some(start);
        self.end = Some(end);
        self
    }

    /// Page size.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Continues after a previous page.
    pub fn cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }
}

/// Following a group in real time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TailEvents {
    /// The group.
    pub group: String,
    /// Only these streams (all when empty).
    pub streams: Vec<String>,
    /// A filter pattern; empty matches everything.
    pub pattern: String,
    /// Also deliver stored events at or after this time first; `None` starts with new events.
    pub since: Option<Timestamp>,
}

impl TailEvents {
    /// New events of `group`.
    pub fn new(group: impl Into<String>) -> Self {
        TailEvents {
            group: group.into(),
            streams: Vec::new(),
            pattern: String::new(),
            since: None,
        }
    }

    /// Only events matching `pattern`.
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.pattern = pattern.into();
        self
    }

    /// Only these streams.
    pub fn streams(mut self, streams: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.streams = streams.into_iter().map(Into::into).collect();
        self
    }

    /// Starts with stored events at or after `since`.
    pub fn since(mut self, since: Timestamp) -> Self {
        self.since = Some(since);
        self
    }
}

/// Log groups and streams.
#[async_trait]
pub trait Logs: fmt::Debug + Send + Sync + 'static {
    /// Creates a group; `retention_days` must be one of [`RETENTION_DAYS`].
    async fn create_group(&self, group: &str, retention_days: Option<u32>) -> Result<LogGroup>;
    /// Deletes a group and all its streams.
    async fn delete_group(&self, group: &str) -> Result<()>;
    /// Every group, by name.
    async fn list_groups(&self) -> Result<Vec<LogGroup>>;
    /// Changes a group's retention (`None` keeps events forever).
    async fn set_retention(&self, group: &str, retention_days: Option<u32>) -> Result<()>;

    /// Creates a stream in a group.
    async fn create_stream(&self, group: &str, stream: &str) -> Result<LogStream>;
    /// Every stream of a group, by name.
    async fn list_streams(&self, group: &str) -> Result<Vec<LogStream>>;

    /// Appends events to a stream. The batch must be in chronological order, at most 10,000
    /// events, each message at most [`MAX_EVENT_SIZE`] bytes.
    async fn put_events(&self, group: &str, stream: &str, events: Vec<LogEvent>) -> Result<()>;
    /// One page of a stream's events in time order.
    async fn get_events(&self, req: GetEvents) -> Result<Page<LogRecord>>;
    /// One page of a group's events matching a pattern, in time order across streams.
    async fn filter_events(&self, req: FilterEvents) -> Result<Page<LogRecord>>;
    /// Events as they arrive. The stream ends when the group is deleted.
    async fn tail(&self, req: TailEvents) -> Result<BoxStream<LogRecord>>;
}

/// Checks a group name (CloudWatch's rule).
pub fn validate_group_name(op: Op, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 512 {
        return Err(op.invalid(name, "log group names must be 1 to 512 characters long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/' | b'.' | b'#'))
    {
        return Err(op.invalid(
            name,
            "log group names may contain only letters, digits, '_', '-', '/', '.' and '#'",
        ));
    }
    Ok(())
}

/// Checks a stream name (CloudWatch's rule).
pub fn validate_stream_name(op: Op, group: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 512 || name.contains([':', '*']) {
        return Err(op.invalid(
            format!("{group}/{name}"),
            "log stream names must be 1 to 512 characters long, without ':' or '*'",
        ));
    }
    Ok(())
}

/// Checks a retention period.
pub fn validate_retention(op: Op, group: &str, days: Option<u32>) -> Result<()> {
    match days {
        Some(d) if !RETENTION_DAYS.contains(&d) => Err(op.invalid(
            group,
            format!("retention of {d} days is not allowed; use one of {RETENTION_DAYS:?}"),
        )),
        _ => Ok(()),
    }
}

/// Retention as a duration.
pub fn retention_duration(days: u32) -> Duration {
    Duration::from_secs(u64::from(days) * 86_400)
}

/// A parsed filter pattern.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilterPattern {
    required: Vec<String>,
    any_of: Vec<String>,
    excluded: Vec<String>,
}

impl FilterPattern {
    /// Parses `pattern`. Unbalanced quotes are InvalidArgument.
    pub fn parse(op: Op, pattern: &str) -> Result<Self> {
        let mut out = FilterPattern::default();
        let mut chars = pattern.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let Some(&first) = chars.peek() else { break };
            let list = match first {
                '-' => {
                    chars.next();
                    &mut out.excluded
                }
                '?' => {
                    chars.next();
                    &mut out.any_of
                }
                _ => &mut out.required,
            };
            let mut term = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '"' {
                        closed = true;
                        break;
                    }
                    term.push(c);
                }
                if !closed {
                    return Err(op.invalid(pattern, "unbalanced quote in filter pattern"));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    term.push(c);
                    chars.next();
                }
            }
            if !term.is_empty() {
                list.push(term);
            }
        }
        Ok(out)
    }

    /// Whether `message` matches.
    pub fn matches(&self, message: &str) -> bool {
        self.required.iter().all(|t| message.contains(t.as_str()))
            && (self.any_of.is_empty() || self.any_of.iter().any(|t| message.contains(t.as_str())))
            && !self.excluded.iter().any(|t| message.contains(t.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Service;

    #[test]
    fn filter_patterns() {
        let op = Op::new(Service::Log, "filter_events");
        let p = FilterPattern::parse(op, "ERROR \"db down\" -retry").unwrap_or_default();
        assert!(p.matches("ERROR: db down now"));
        assert!(!p.matches("ERROR: db down, retry"));
        assert!(!p.matches("WARN: db down"));
        let any = FilterPattern::parse(op, "?ERROR ?WARN").unwrap_or_default();
        assert!(any.matches("a WARN"));
        assert!(!any.matches("INFO"));
        assert!(
            FilterPattern::parse(op, "")
                .unwrap_or_default()
                .matches("anything")
        );
        assert!(FilterPattern::parse(op, "\"open").is_err());
    }
}

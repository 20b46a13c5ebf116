//! Log cases.
//!
//! Event timestamps are a few minutes before the target's "now" and whole milliseconds, so
//! they fit CloudWatch Logs' window (no older than 14 days, no more than 2 hours ahead) and
//! its millisecond precision.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mvi_core::log::{
    FilterEvents, GetEvents, LogEvent, LogRecord, MAX_BATCH_EVENTS, MAX_EVENT_SIZE, TailEvents,
};
use mvi_core::{BoxStream, Logs, Timestamp};

use crate::{Ctx, Failure, Outcome, ensure, expect_err};

/// Every log case, as tests against `$target`.
#[macro_export]
macro_rules! log_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
            log_group_lifecycle => $crate::log::group_lifecycle;
            log_duplicate_group_already_exists => $crate::log::duplicate_group_already_exists;
            log_concurrent_create_group_one_wins => $crate::log::concurrent_create_group_one_wins;
            log_invalid_group_names => $crate::log::invalid_group_names;
            log_invalid_stream_names => $crate::log::invalid_stream_names;
            log_invalid_retention => $crate::log::invalid_retention;
            log_stream_lifecycle => $crate::log::stream_lifecycle;
            log_delete_group_removes_streams_and_events => $crate::log::delete_group_removes_streams_and_events;
            log_put_get_roundtrip_in_order => $crate::log::put_get_roundtrip_in_order;
            log_older_batch_is_read_in_time_order => $crate::log::older_batch_is_read_in_time_order;
            log_get_by_time_range => $crate::log::get_by_time_range;
            log_pagination_covers_all_exactly_once => $crate::log::pagination_covers_all_exactly_once;
            log_unordered_batch_rejected => $crate::log::unordered_batch_rejected;
            log_oversize_message_rejected => $crate::log::oversize_message_rejected;
            log_too_many_events_rejected => $crate::log::too_many_events_rejected;
            log_unknown_group_or_stream_not_found => $crate::log::unknown_group_or_stream_not_found;
            log_filter_by_pattern_across_streams => $crate::log::filter_by_pattern_across_streams;
            log_filter_restricted_to_streams => $crate::log::filter_restricted_to_streams;
            log_invalid_filter_pattern_rejected => $crate::log::invalid_filter_pattern_rejected;
            log_concurrent_writers_lose_nothing => $crate::log::concurrent_writers_lose_nothing;
            log_tail_receives_new_events => $crate::log::tail_receives_new_events;
            log_tail_with_pattern_skips_non_matching => $crate::log::tail_with_pattern_skips_non_matching;
            log_tail_since_starts_with_stored_events => $crate::log::tail_since_starts_with_stored_events;
            log_tail_ends_when_group_deleted => $crate::log::tail_ends_when_group_deleted;
            log_retention_hides_old_events => $crate::log::retention_hides_old_events [ManualClock];
            log_persistence_across_reopen => $crate::log::persistence_across_reopen [Reopen];
        }
    };
}

/// How long a tail may take to deliver an event before the case fails: a liveness bound,
/// not a timing assertion.
const TAIL_WAIT: Duration = Duration::from_secs(5);

/// `t` rounded down to a whole millisecond.
fn whole_ms(t: Timestamp) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// A base time ten minutes before the target's now.
fn base(ctx: &Ctx) -> Timestamp {
    whole_ms(ctx.now() - chrono::Duration::minutes(10))
}

fn ms(n: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(n)
}

fn logs(ctx: &Ctx) -> Result<Arc<dyn Logs>, Failure> {
    Ok(ctx.cloud().logs()?.clone())
}

/// A group (no retention) with `streams`.
async fn group_with(ctx: &Ctx, base_name: &str, streams: &[&str]) -> Result<String, Failure> {
    let logs = logs(ctx)?;
    let group = ctx.name(base_name);
    logs.create_group(&group, None).await?;
    for s in streams {
        logs.create_stream(&group, s).await?;
    }
    Ok(group)
}

/// Every page of a get.
async fn get_all(logs: &dyn Logs, req: GetEvents) -> Result<Vec<LogRecord>, Failure> {
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..100_000 {
        let page = logs.get_events(req.clone().cursor(cursor)).await?;
        out.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
    Err("get_events kept returning pages".into())
}

/// Every page of a filter.
async fn filter_all(logs: &dyn Logs, req: FilterEvents) -> Result<Vec<LogRecord>, Failure> {
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..100_000 {
        let page = logs.filter_events(req.clone().cursor(cursor)).await?;
        out.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
    Err("filter_events kept returning pages".into())
}

fn messages(records: &[LogRecord]) -> Vec<&str> {
    records.iter().map(|r| r.message.as_str()).collect()
}

fn in_time_order(records: &[LogRecord]) -> bool {
    records.windows(2).all(|w| w[0].timestamp <= w[1].timestamp)
}

/// The next tail event, `None` if the tail ended; fails after [`TAIL_WAIT`].
async fn next_event(tail: &mut BoxStream<LogRecord>) -> Result<Option<LogRecord>, Failure> {
    match tokio::time::timeout(TAIL_WAIT, tail.next()).await {
        Err(_) => Err(format!("the tail delivered nothing within {TAIL_WAIT:?}").into()),
        Ok(None) => Ok(None),
        Ok(Some(record)) => Ok(Some(record?)),
    }
}

async fn expect_event(tail: &mut BoxStream<LogRecord>) -> Result<LogRecord, Failure> {
    next_event(tail)
        .await?
        .ok_or_else(|| "the tail ended early".into())
}

/// A group is created with its retention, listed, changed, deleted, and then gone.
pub async fn group_lifecycle(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = ctx.name("lifecycle");
    let made = logs.create_group(&group, Some(7)).await?;
    ensure!(made.name == group, "created {made:?}");
    ensure!(made.retention_days == Some(7), "created {made:?}");
    let find = |groups: Vec<mvi_core::log::LogGroup>| groups.into_iter().find(|g| g.name == group);
    let listed = find(logs.list_groups().await?);
    ensure!(
        listed.as_ref().is_some_and(|g| g.retention_days == Some(7)),
        "listed {listed:?}"
    );
    logs.set_retention(&group, Some(30)).await?;
    let listed = find(logs.list_groups().await?);
    ensure!(
        listed
            .as_ref()
            .is_some_and(|g| g.retention_days == Some(30)),
        "after set_retention(30): {listed:?}"
    );
    logs.set_retention(&group, None).await?;
    let listed = find(logs.list_groups().await?);
    ensure!(
        listed.as_ref().is_some_and(|g| g.retention_days.is_none()),
        "after set_retention(None): {listed:?}"
    );
    logs.delete_group(&group).await?;
    let listed = find(logs.list_groups().await?);
    ensure!(listed.is_none(), "deleted group still listed: {listed:?}");
    expect_err!(logs.delete_group(&group).await, NotFound);
    expect_err!(logs.set_retention(&group, Some(1)).await, NotFound);
    Ok(())
}

/// Creating a group twice is AlreadyExists and leaves the first as it was.
pub async fn duplicate_group_already_exists(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = ctx.name("dup");
    logs.create_group(&group, Some(3)).await?;
    let err = expect_err!(logs.create_group(&group, None).await, AlreadyExists);
    ensure!(
        err.to_string().contains(&group),
        "error does not name the group: {err}"
    );
    let listed = logs.list_groups().await?;
    ensure!(
        listed
            .iter()
            .any(|g| g.name == group && g.retention_days == Some(3)),
        "the first group changed: {listed:?}"
    );
    logs.delete_group(&group).await?;
    Ok(())
}

/// Sixteen tasks racing to create one group: exactly one wins, the rest see AlreadyExists.
pub async fn concurrent_create_group_one_wins(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = ctx.name("race");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let logs = logs.clone();
            let group = group.clone();
            tokio::spawn(async move { logs.create_group(&group, None).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await? {
            Ok(_) => won += 1,
            Err(e) if e.kind() == mvi_core::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("unexpected error: {e}").into()),
        }
    }
    ensure!(won == 1, "{won} creators won, expected exactly one");
    logs.delete_group(&group).await?;
    Ok(())
}

/// Group names outside CloudWatch's rule are InvalidArgument.
pub async fn invalid_group_names(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let long = format!("{}-{}", ctx.name("long"), "x".repeat(512));
    for bad in [
        String::new(),
        format!("{} space", ctx.name("g")),
        format!("{}:colon", ctx.name("g")),
        format!("{}*star", ctx.name("g")),
        long,
    ] {
        expect_err!(logs.create_group(&bad, None).await, InvalidArgument);
    }
    // The allowed punctuation is accepted.
    let good = format!("/{}/a_b-c.d#e", ctx.name("ok"));
    logs.create_group(&good, None).await?;
    logs.delete_group(&good).await?;
    Ok(())
}

/// Stream names that are empty, too long, or hold ':' or '*' are InvalidArgument naming the
/// group.
pub async fn invalid_stream_names(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "badstream", &[]).await?;
    for bad in [
        String::new(),
        "a:b".to_string(),
        "a*b".to_string(),
        "x".repeat(513),
    ] {
        let err = expect_err!(logs.create_stream(&group, &bad).await, InvalidArgument);
        ensure!(
            err.to_string().contains(&group),
            "error does not name the group: {err}"
        );
    }
    // Slashes, spaces and brackets are fine in stream names.
    logs.create_stream(&group, "2024/01/01/[$LATEST] abc")
        .await?;
    logs.delete_group(&group).await?;
    Ok(())
}

/// Retention must be one of CloudWatch's periods, on create and on change.
pub async fn invalid_retention(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = ctx.name("retention");
    expect_err!(logs.create_group(&group, Some(2)).await, InvalidArgument);
    expect_err!(logs.create_group(&group, Some(0)).await, InvalidArgument);
    logs.create_group(&group, Some(1)).await?;
    expect_err!(logs.set_retention(&group, Some(13)).await, InvalidArgument);
    let listed = logs.list_groups().await?;
    ensure!(
        listed
            .iter()
            .any(|g| g.name == group && g.retention_days == Some(1)),
        "a rejected change altered the group: {listed:?}"
    );
    logs.delete_group(&group).await?;
    Ok(())
}

/// Streams are created, listed by name with their newest event, and unique per group.
pub async fn stream_lifecycle(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "streams", &[]).await?;
    let made = logs.create_stream(&group, "web-2").await?;
    ensure!(
        made.name == "web-2" && made.last_event.is_none(),
        "created {made:?}"
    );
    logs.create_stream(&group, "web-1").await?;
    let err = expect_err!(logs.create_stream(&group, "web-1").await, AlreadyExists);
    ensure!(
        err.to_string().contains("web-1"),
        "error does not name the stream: {err}"
    );
    let t = base(ctx);
    logs.put_events(
        &group,
        "web-1",
        vec![LogEvent::new(t, "a"), LogEvent::new(t + ms(5), "b")],
    )
    .await?;
    let streams = logs.list_streams(&group).await?;
    let names: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
    ensure!(names == ["web-1", "web-2"], "listed {names:?}");
    ensure!(
        streams[0].last_event == Some(t + ms(5)),
        "last event of web-1: {:?}",
        streams[0].last_event
    );
    ensure!(
        streams[1].last_event.is_none(),
        "web-2 has no events: {:?}",
        streams[1].last_event
    );
    logs.delete_group(&group).await?;
    Ok(())
}

/// Deleting a group deletes its streams and events: a new group of the same name is empty.
pub async fn delete_group_removes_streams_and_events(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "recreate", &["s"]).await?;
    logs.put_events(&group, "s", vec![LogEvent::new(base(ctx), "old")])
        .await?;
    logs.delete_group(&group).await?;
    expect_err!(logs.list_streams(&group).await, NotFound);
    logs.create_group(&group, None).await?;
    let streams = logs.list_streams(&group).await?;
    ensure!(streams.is_empty(), "a new group has streams: {streams:?}");
    logs.create_stream(&group, "s").await?;
    let got = get_all(logs.as_ref(), GetEvents::new(&group, "s")).await?;
    ensure!(got.is_empty(), "a new stream has old events: {got:?}");
    logs.delete_group(&group).await?;
    Ok(())
}

/// Events put in batches read back in time order, with their stream, timestamp and message.
pub async fn put_get_roundtrip_in_order(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "roundtrip", &["app"]).await?;
    let t = base(ctx);
    let mut sent = Vec::new();
    for batch in 0..3 {
        let events: Vec<LogEvent> = (0..40)
            .map(|i| {
                let n = batch * 40 + i;
                LogEvent::new(t + ms(n), format!("event {n} ünïcödé"))
            })
            .collect();
        sent.extend(events.clone());
        logs.put_events(&group, "app", events).await?;
    }
    let got = get_all(logs.as_ref(), GetEvents::new(&group, "app")).await?;
    ensure!(
        got.len() == sent.len(),
        "{} events, sent {}",
        got.len(),
        sent.len()
    );
    for (g, s) in got.iter().zip(&sent) {
        ensure!(
            g.message == s.message && g.timestamp == s.timestamp && g.stream == "app",
            "read {g:?}, sent {s:?}"
        );
    }
    // Events with the same timestamp keep the order they were put in.
    logs.put_events(
        &group,
        "app",
        vec![
            LogEvent::new(t + ms(500), "same-1"),
            LogEvent::new(t + ms(500), "same-2"),
        ],
    )
    .await?;
    let got = get_all(logs.as_ref(), GetEvents::new(&group, "app")).await?;
    let tail = messages(&got[got.len().saturating_sub(2)..]);
    ensure!(
        tail == ["same-1", "same-2"],
        "equal timestamps reordered: {tail:?}"
    );
    logs.delete_group(&group).await?;
    Ok(())
}

/// A batch older than the events already stored is read back in time order among them.
pub async fn older_batch_is_read_in_time_order(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "older", &["s"]).await?;
    let t = base(ctx);
    logs.put_events(
        &group,
        "s",
        vec![
            LogEvent::new(t + ms(10), "c"),
            LogEvent::new(t + ms(30), "e"),
        ],
    )
    .await?;
    logs.put_events(
        &group,
        "s",
        vec![
            LogEvent::new(t, "a"),
            LogEvent::new(t + ms(5), "b"),
            LogEvent::new(t + ms(20), "d"),
        ],
    )
    .await?;
    let got = get_all(logs.as_ref(), GetEvents::new(&group, "s")).await?;
    ensure!(
        messages(&got) == ["a", "b", "c", "d", "e"],
        "read {:?}",
        messages(&got)
    );
    logs.delete_group(&group).await?;
    Ok(())
}

/// `between(start, end)` returns events with `start <= t < end`.
pub async fn get_by_time_range(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "range", &["s"]).await?;
    let t = base(ctx);
    let events = (0..10)
        .map(|i| LogEvent::new(t + chrono::Duration::seconds(i), format!("{i}")))
        .collect();
    logs.put_events(&group, "s", events).await?;
    let req = GetEvents::new(&group, "s").between(
        t + chrono::Duration::seconds(3),
        t + chrono::Duration::seconds(7),
    );
    let got = get_all(logs.as_ref(), req).await?;
    ensure!(
        messages(&got) == ["3", "4", "5", "6"],
        "read {:?}",
        messages(&got)
    );
    let req = FilterEvents::new(&group, "").between(
        t + chrono::Duration::seconds(8),
        t + chrono::Duration::seconds(60),
    );
    let got = filter_all(logs.as_ref(), req).await?;
    ensure!(
        messages(&got) == ["8", "9"],
        "filtered {:?}",
        messages(&got)
    );
    logs.delete_group(&group).await?;
    Ok(())
}

/// Following `next` page by page yields every event exactly once, in time order, for both
/// get and filter.
pub async fn pagination_covers_all_exactly_once(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "pages", &["a", "b"]).await?;
    let t = base(ctx);
    for (stream, offset) in [("a", 0), ("b", 1)] {
        // Both streams share some timestamps, so the merge must break ties consistently.
        let events = (0..250)
            .map(|i| LogEvent::new(t + ms(i - i % 3 * offset), format!("{stream}{i}")))
            .collect();
        logs.put_events(&group, stream, events).await?;
    }
    let mut pages = 0;
    let mut got = Vec::new();
    let mut cursor = None;
    loop {
        let page = logs
            .get_events(GetEvents::new(&group, "a").limit(40).cursor(cursor))
            .await?;
        ensure!(
            page.items.len() <= 40,
            "a page of {} > 40",
            page.items.len()
        );
        pages += 1;
        got.extend(page.items);
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
        ensure!(pages < 100, "pagination does not end");
    }
    ensure!(
        pages >= 7,
        "250 events in pages of 40 came in {pages} pages"
    );
    let want: Vec<String> = (0..250).map(|i| format!("a{i}")).collect();
    ensure!(messages(&got) == want, "read {:?}", messages(&got));

    let mut got = Vec::new();
    let mut cursor = None;
    loop {
        let page = logs
            .filter_events(FilterEvents::new(&group, "").limit(33).cursor(cursor))
            .await?;
        ensure!(
            page.items.len() <= 33,
            "a page of {} > 33",
            page.items.len()
        );
        got.extend(page.items);
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
        ensure!(got.len() <= 1_000, "pagination does not end");
    }
    let unique: BTreeSet<&str> = got.iter().map(|r| r.message.as_str()).collect();
    ensure!(
        got.len() == 500 && unique.len() == 500,
        "{} events, {} unique; expected 500",
        got.len(),
        unique.len()
    );
    ensure!(in_time_order(&got), "filter pages are not in time order");
    logs.delete_group(&group).await?;
    Ok(())
}

/// A batch out of chronological order is InvalidArgument naming the stream, and nothing of
/// it is stored.
pub async fn unordered_batch_rejected(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "unordered", &["s"]).await?;
    let t = base(ctx);
    let err = expect_err!(
        logs.put_events(
            &group,
            "s",
            vec![
                LogEvent::new(t, "1"),
                LogEvent::new(t + ms(2), "2"),
                LogEvent::new(t + ms(1), "3"),
            ],
        )
        .await,
        InvalidArgument
    );
    ensure!(
        err.to_string().contains(&group) && err.to_string().contains("s"),
        "error does not name the group and stream: {err}"
    );
    let got = get_all(logs.as_ref(), GetEvents::new(&group, "s")).await?;
    ensure!(got.is_empty(), "a rejected batch was stored: {got:?}");
    logs.delete_group(&group).await?;
    Ok(())
}

/// A message over [`MAX_EVENT_SIZE`] bytes is InvalidArgument; one of exactly that size is
/// stored whole.
pub async fn oversize_message_rejected(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "oversize", &["s"]).await?;
    let t = base(ctx);
    let err = expect_err!(
        logs.put_events(
            &group,
            "s",
            vec![
                LogEvent::new(t, "small"),
                LogEvent::new(t, "x".repeat(MAX_EVENT_SIZE + 1)),
            ],
        )
        .await,
        InvalidArgument
    );
    ensure!(
        err.to_string().contains(&group),
        "error does not name the group: {err}"
    );
    let got = get_all(logs.as_ref(), GetEvents::new(&group, "s")).await?;
    ensure!(got.is_empty(), "part of a rejected batch was stored");
    logs.put_events(
        &group,
        "s",
        vec![LogEvent::new(t, "y".repeat(MAX_EVENT_SIZE))],
    )
    .await?;
    let got = get_all(logs.as_ref(), GetEvents::new(&group, "s")).await?;
    ensure!(
        got.len() == 1 && got[0].message.len() == MAX_EVENT_SIZE,
        "the largest allowed message did not read back whole"
    );
    logs.delete_group(&group).await?;
    Ok(())
}

/// More than [`MAX_BATCH_EVENTS`] events in one put is InvalidArgument; exactly that many is
/// fine.
pub async fn too_many_events_rejected(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "toomany", &["s"]).await?;
    let t = base(ctx);
    let batch = |n: usize| -> Vec<LogEvent> { (0..n).map(|_| LogEvent::new(t, "e")).collect() };
    let err = expect_err!(
        logs.put_events(&group, "s", batch(MAX_BATCH_EVENTS + 1))
            .await,
        InvalidArgument
    );
    ensure!(
        err.to_string().contains(&group),
        "error does not name the group: {err}"
    );
    logs.put_events(&group, "s", batch(MAX_BATCH_EVENTS))
        .await?;
    let got = get_all(logs.as_ref(), GetEvents::new(&group, "s")).await?;
    ensure!(
        got.len() == MAX_BATCH_EVENTS,
        "{} events stored, expected {MAX_BATCH_EVENTS}",
        got.len()
    );
    logs.delete_group(&group).await?;
    Ok(())
}

/// Every operation on a group or stream that does not exist is NotFound naming it.
pub async fn unknown_group_or_stream_not_found(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let missing = ctx.name("missing");
    let group = group_with(ctx, "known", &["s"]).await?;
    let t = base(ctx);
    let ev = || vec![LogEvent::new(t, "x")];
    let err = expect_err!(logs.put_events(&missing, "s", ev()).await, NotFound);
    ensure!(err.to_string().contains(&missing), "error: {err}");
    let err = expect_err!(logs.put_events(&group, "nostream", ev()).await, NotFound);
    ensure!(err.to_string().contains("nostream"), "error: {err}");
    expect_err!(
        logs.get_events(GetEvents::new(&group, "nostream")).await,
        NotFound
    );
    expect_err!(
        logs.get_events(GetEvents::new(&missing, "s")).await,
        NotFound
    );
    expect_err!(
        logs.filter_events(FilterEvents::new(&missing, "")).await,
        NotFound
    );
    expect_err!(logs.list_streams(&missing).await, NotFound);
    expect_err!(logs.create_stream(&missing, "s").await, NotFound);
    expect_err!(logs.delete_group(&missing).await, NotFound);
    expect_err!(
        logs.tail(TailEvents::new(&missing)).await.map(|_| ()),
        NotFound
    );
    logs.delete_group(&group).await?;
    Ok(())
}

/// Filter patterns (terms, a quoted phrase, exclusion, `?` alternatives) select events across
/// streams, merged in time order.
pub async fn filter_by_pattern_across_streams(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "filter", &["api", "worker"]).await?;
    let t = base(ctx);
    logs.put_events(
        &group,
        "api",
        vec![
            LogEvent::new(t, "ERROR db down"),
            LogEvent::new(t + ms(2), "INFO all good"),
            LogEvent::new(t + ms(4), "ERROR timeout calling billing"),
        ],
    )
    .await?;
    logs.put_events(
        &group,
        "worker",
        vec![
            LogEvent::new(t + ms(1), "WARN disk full"),
            LogEvent::new(t + ms(3), "ERROR db down, retry"),
            LogEvent::new(t + ms(5), "error lower case"),
        ],
    )
    .await?;
    let cases: [(&str, &[&str]); 6] = [
        (
            "ERROR",
            &[
                "ERROR db down",
                "ERROR db down, retry",
                "ERROR timeout calling billing",
            ],
        ),
        ("\"db down\"", &["ERROR db down", "ERROR db down, retry"]),
        ("ERROR db", &["ERROR db down", "ERROR db down, retry"]),
        (
            "ERROR -retry",
            &["ERROR db down", "ERROR timeout calling billing"],
        ),
        (
            "?WARN ?timeout",
            &["WARN disk full", "ERROR timeout calling billing"],
        ),
        (
            "",
            &[
                "ERROR db down",
                "WARN disk full",
                "INFO all good",
                "ERROR db down, retry",
                "ERROR timeout calling billing",
                "error lower case",
            ],
        ),
    ];
    for (pattern, want) in cases {
        let got = filter_all(logs.as_ref(), FilterEvents::new(&group, pattern)).await?;
        ensure!(
            messages(&got) == want,
            "pattern {pattern:?} gave {:?}, expected {want:?}",
            messages(&got)
        );
    }
    let got = filter_all(logs.as_ref(), FilterEvents::new(&group, "WARN")).await?;
    ensure!(
        got.len() == 1 && got[0].stream == "worker" && got[0].timestamp == t + ms(1),
        "the match does not name its stream and time: {got:?}"
    );
    logs.delete_group(&group).await?;
    Ok(())
}

/// A filter restricted to some streams reads only those.
pub async fn filter_restricted_to_streams(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "subset", &["a", "b", "c"]).await?;
    let t = base(ctx);
    for (i, s) in ["a", "b", "c"].into_iter().enumerate() {
        let events = (0..5)
            .map(|j| LogEvent::new(t + ms(j * 3 + i as i64), format!("{s} {j}")))
            .collect();
        logs.put_events(&group, s, events).await?;
    }
    let got = filter_all(
        logs.as_ref(),
        FilterEvents::new(&group, "").streams(["c", "a"]),
    )
    .await?;
    ensure!(
        got.len() == 10,
        "{} events from a and c, expected 10",
        got.len()
    );
    ensure!(
        got.iter().all(|r| r.stream == "a" || r.stream == "c"),
        "events from other streams: {got:?}"
    );
    ensure!(
        in_time_order(&got),
        "not in time order: {:?}",
        messages(&got)
    );
    let got = filter_all(logs.as_ref(), FilterEvents::new(&group, "3").streams(["b"])).await?;
    ensure!(messages(&got) == ["b 3"], "read {:?}", messages(&got));
    logs.delete_group(&group).await?;
    Ok(())
}

/// An unbalanced quote in a pattern is InvalidArgument, for filters and tails.
pub async fn invalid_filter_pattern_rejected(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "badpattern", &["s"]).await?;
    expect_err!(
        logs.filter_events(FilterEvents::new(&group, "\"open"))
            .await,
        InvalidArgument
    );
    expect_err!(
        logs.tail(TailEvents::new(&group).pattern("ERROR \"open"))
            .await
            .map(|_| ()),
        InvalidArgument
    );
    logs.delete_group(&group).await?;
    Ok(())
}

/// Sixteen tasks putting to one stream and to their own streams at once: every event is
/// stored exactly once and reads back in time order.
pub async fn concurrent_writers_lose_nothing(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "writers", &["shared"]).await?;
    let t = base(ctx);
    let mut tasks = Vec::new();
    for w in 0..16i64 {
        let logs = logs.clone();
        let group = group.clone();
        let own = format!("own-{w}");
        logs.create_stream(&group, &own).await?;
        tasks.push(tokio::spawn(async move {
            for b in 0..5i64 {
                let events: Vec<LogEvent> = (0..20i64)
                    .map(|i| {
                        LogEvent::new(t + ms((b * 20 + i) * 16 + w), format!("w{w} b{b} e{i}"))
                    })
                    .collect();
                logs.put_events(&group, "shared", events.clone()).await?;
                logs.put_events(&group, &own, events).await?;
            }
            Ok::<_, mvi_core::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let shared = get_all(logs.as_ref(), GetEvents::new(&group, "shared")).await?;
    let unique: BTreeSet<&str> = shared.iter().map(|r| r.message.as_str()).collect();
    ensure!(
        shared.len() == 1_600 && unique.len() == 1_600,
        "{} events ({} unique) in the shared stream, expected 1600",
        shared.len(),
        unique.len()
    );
    ensure!(
        in_time_order(&shared),
        "the shared stream is not in time order"
    );
    let all = filter_all(logs.as_ref(), FilterEvents::new(&group, "")).await?;
    ensure!(
        all.len() == 3_200,
        "{} events in the group, expected 3200",
        all.len()
    );
    logs.delete_group(&group).await?;
    Ok(())
}

/// A tail delivers events put after it started, in order.
pub async fn tail_receives_new_events(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "tail", &["s"]).await?;
    let mut tail = logs.tail(TailEvents::new(&group)).await?;
    let t = base(ctx);
    logs.put_events(
        &group,
        "s",
        vec![LogEvent::new(t, "one"), LogEvent::new(t + ms(1), "two")],
    )
    .await?;
    logs.put_events(&group, "s", vec![LogEvent::new(t + ms(2), "three")])
        .await?;
    for want in ["one", "two", "three"] {
        let got = expect_event(&mut tail).await?;
        ensure!(
            got.message == want && got.stream == "s",
            "tail gave {got:?}, expected {want:?}"
        );
    }
    drop(tail);
    logs.delete_group(&group).await?;
    Ok(())
}

/// A tail with a pattern or a stream list skips what does not match.
pub async fn tail_with_pattern_skips_non_matching(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "tailpattern", &["a", "b"]).await?;
    let mut errors = logs.tail(TailEvents::new(&group).pattern("ERROR")).await?;
    let mut only_b = logs.tail(TailEvents::new(&group).streams(["b"])).await?;
    let t = base(ctx);
    logs.put_events(
        &group,
        "a",
        vec![
            LogEvent::new(t, "INFO starting"),
            LogEvent::new(t + ms(1), "ERROR first"),
            LogEvent::new(t + ms(2), "INFO still going"),
        ],
    )
    .await?;
    logs.put_events(
        &group,
        "b",
        vec![
            LogEvent::new(t + ms(3), "INFO from b"),
            LogEvent::new(t + ms(4), "ERROR second"),
        ],
    )
    .await?;
    for want in ["ERROR first", "ERROR second"] {
        let got = expect_event(&mut errors).await?;
        ensure!(
            got.message == want,
            "pattern tail gave {got:?}, expected {want:?}"
        );
    }
    for want in ["INFO from b", "ERROR second"] {
        let got = expect_event(&mut only_b).await?;
        ensure!(
            got.message == want && got.stream == "b",
            "stream tail gave {got:?}, expected {want:?}"
        );
    }
    drop((errors, only_b));
    logs.delete_group(&group).await?;
    Ok(())
}

/// A tail with `since` first delivers the stored events from that time, then new ones.
pub async fn tail_since_starts_with_stored_events(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "tailsince", &["a", "b"]).await?;
    let t = base(ctx);
    logs.put_events(
        &group,
        "a",
        vec![LogEvent::new(t, "too old"), LogEvent::new(t + ms(20), "a1")],
    )
    .await?;
    logs.put_events(&group, "b", vec![LogEvent::new(t + ms(10), "b1")])
        .await?;
    let mut tail = logs.tail(TailEvents::new(&group).since(t + ms(5))).await?;
    logs.put_events(&group, "b", vec![LogEvent::new(t + ms(30), "live")])
        .await?;
    for want in ["b1", "a1", "live"] {
        let got = expect_event(&mut tail).await?;
        ensure!(got.message == want, "tail gave {got:?}, expected {want:?}");
    }
    drop(tail);
    logs.delete_group(&group).await?;
    Ok(())
}

/// Deleting the group ends its tails.
pub async fn tail_ends_when_group_deleted(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = group_with(ctx, "tailend", &["s"]).await?;
    let mut tail = logs.tail(TailEvents::new(&group)).await?;
    logs.delete_group(&group).await?;
    // Recreating the name must not revive the old tail.
    logs.create_group(&group, None).await?;
    let next = next_event(&mut tail).await?;
    ensure!(
        next.is_none(),
        "the tail went on after the group was deleted: {next:?}"
    );
    logs.delete_group(&group).await?;
    Ok(())
}

/// Events older than the retention period are not returned by get, filter or tail.
pub async fn retention_hides_old_events(ctx: &mut Ctx) -> Outcome {
    let logs = logs(ctx)?;
    let group = ctx.name("retain");
    logs.create_group(&group, Some(1)).await?;
    logs.create_stream(&group, "s").await?;
    let t = whole_ms(ctx.now());
    logs.put_events(
        &group,
        "s",
        vec![
            LogEvent::new(t - ms(1_000), "old-1"),
            LogEvent::new(t, "old-2"),
        ],
    )
    .await?;
    let got = get_all(logs.as_ref(), GetEvents::new(&group, "s")).await?;
    ensure!(
        got.len() == 2,
        "{} events before expiry, expected 2",
        got.len()
    );

    ctx.clock().advance(Duration::from_secs(36 * 3_600));
    let now = whole_ms(ctx.now());
    logs.put_events(&group, "s", vec![LogEvent::new(now, "new")])
        .await?;
    let got = get_all(logs.as_ref(), GetEvents::new(&group, "s")).await?;
    ensure!(
        messages(&got) == ["new"],
        "get after expiry: {:?}",
        messages(&got)
    );
    let got = filter_all(logs.as_ref(), FilterEvents::new(&group, "old")).await?;
    ensure!(got.is_empty(), "filter after expiry: {:?}", messages(&got));
    let mut tail = logs
        .tail(TailEvents::new(&group).since(t - ms(10_000)))
        .await?;
    let first = expect_event(&mut tail).await?;
    ensure!(
        first.message == "new",
        "tail replayed an expired event: {first:?}"
    );
    drop(tail);

    // A longer retention keeps newer events that a shorter one would drop.
    logs.set_retention(&group, Some(3)).await?;
    ctx.clock().advance(Duration::from_secs(2 * 86_400));
    let got = get_all(logs.as_ref(), GetEvents::new(&group, "s")).await?;
    ensure!(
        messages(&got) == ["new"],
        "3-day retention after 2 days: {:?}",
        messages(&got)
    );
    logs.delete_group(&group).await?;
    Ok(())
}

/// Groups, streams, retention and events survive a restart, and writing goes on after it.
pub async fn persistence_across_reopen(ctx: &mut Ctx) -> Outcome {
    let group = ctx.name("persist");
    let t = base(ctx);
    {
        let logs = logs(ctx)?;
        logs.create_group(&group, Some(7)).await?;
        logs.create_stream(&group, "a").await?;
        logs.create_stream(&group, "b").await?;
        for batch in 0..4i64 {
            let events = (0..250i64)
                .map(|i| LogEvent::new(t + ms(batch * 250 + i), format!("a{}", batch * 250 + i)))
                .collect();
            logs.put_events(&group, "a", events).await?;
        }
        logs.put_events(&group, "b", vec![LogEvent::new(t + ms(3), "b0")])
            .await?;
    }
    ctx.reopen().await?;
    let logs = logs(ctx)?;
    let listed = logs.list_groups().await?;
    ensure!(
        listed
            .iter()
            .any(|g| g.name == group && g.retention_days == Some(7)),
        "group lost or changed: {listed:?}"
    );
    let streams = logs.list_streams(&group).await?;
    let names: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
    ensure!(names == ["a", "b"], "streams after reopen: {names:?}");
    ensure!(
        streams[0].last_event == Some(t + ms(999)),
        "last event of a: {:?}",
        streams[0].last_event
    );
    let got = get_all(logs.as_ref(), GetEvents::new(&group, "a")).await?;
    let want: Vec<String> = (0..1_000).map(|i| format!("a{i}")).collect();
    ensure!(
        messages(&got) == want,
        "a after reopen: {} events",
        got.len()
    );
    logs.put_events(&group, "a", vec![LogEvent::new(t + ms(1_000), "after")])
        .await?;
    logs.create_stream(&group, "c").await?;
    logs.put_events(&group, "c", vec![LogEvent::new(t + ms(2), "c0")])
        .await?;
    let all = filter_all(logs.as_ref(), FilterEvents::new(&group, "")).await?;
    ensure!(
        all.len() == 1_003,
        "{} events in the group, expected 1003",
        all.len()
    );
    ensure!(
        all.first().is_some_and(|r| r.message == "a0")
            && all.last().is_some_and(|r| r.message == "after"),
        "group not in time order after reopen"
    );
    ensure!(in_time_order(&all), "group not in time order after reopen");
    logs.delete_group(&group).await?;
    ctx.reopen().await?;
    let listed = ctx.cloud().logs()?.list_groups().await?;
    ensure!(
        !listed.iter().any(|g| g.name == group),
        "a deleted group came back after reopen"
    );
    Ok(())
}

//! Restore drills: prove that a database can be restored, and measure how long it takes.
//!
//! [`drill`] restores a database into a new instance, from its latest restorable time (or a
//! snapshot). It runs the caller's verification query there, and reports:
//! - **RTO**: the time from the restore request to the copy being restored and verified;
//! - **RPO**: how old the newest data in the copy was at the request. It is measured with
//!   heartbeat rows that the drill writes into the source beforehand (table
//!   [`HEARTBEAT_TABLE`]): the newest heartbeat the copy holds.
//!
//! Then it deletes the copy, passed or not, and records the result: an item in the KV table
//! [`TABLE`] and the metrics `RTO`, `RPO` and `Passed` in [`NAMESPACE`]. So "when did we last
//! prove we can restore, and how long did it take" has an answer: [`last_drill`].
//!
//! It runs over the Database, KV and Metric traits, so on either backend. It connects to the
//! databases with a PostgreSQL client of its own (`tokio-postgres`), without TLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cloud::Cloud;
use crate::common::{Clock, SystemClock, Timestamp};
use crate::database::{Credentials, DatabaseSpec, Databases, RestoreTime};
use crate::error::{Error, ErrorKind, Op, Result, Service};
use crate::kv::{KeyAttr, KeyType, Kv, PutItem, Query, TableSpec, Value};
use crate::metric::{Datum, Metrics, Unit};

/// The KV table where drills are recorded: partition key `database`, sort key `at` (the
/// request's time in milliseconds since the epoch), the report as JSON in `report`.
pub const TABLE: &str = "mvi-drills";
/// The namespace of the drills' metrics (dimension `Database`).
pub const NAMESPACE: &str = "mvi/Drill";
/// The table in the source database that the drill's heartbeat rows go into.
pub const HEARTBEAT_TABLE: &str = "mvi_drill_heartbeat";

fn op() -> Op {
    Op::new(Service::Database, "drill")
}

/// What a drill restores from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillSource {
    /// The latest restorable time when the database keeps backups; else its newest snapshot.
    Latest,
    /// A point in time of the database's continuous backups.
    PointInTime(RestoreTime),
    /// A snapshot of the database: this one, or its newest when `None`.
    Snapshot(Option<String>),
}

/// A drill's definition.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Drill {
    /// The database to prove.
    pub database: String,
    /// The verification query, run in the restored copy: it must return one row whose first
    /// column is `true` (for example `SELECT count(*) > 0 FROM orders`).
    pub check: String,
    /// What to restore from.
    pub source: DrillSource,
    /// How many heartbeat rows to write into the source before the restore, and how far
    /// apart. Spread over a few seconds, they measure what continuous backups capture.
    pub heartbeats: u32,
    /// The time between two heartbeats.
    pub heartbeat_every: Duration,
    /// The clock the records and metrics are stamped with.
    pub clock: Arc<dyn Clock>,
}

impl Drill {
    /// A drill of `database` from its latest restorable time, verified by `check`, after 4
    /// heartbeats 1 s apart.
    pub fn new(database: impl Into<String>, check: impl Into<String>) -> Self {
        Drill {
            database: database.into(),
            check: check.into(),
            source: DrillSource::Latest,
            heartbeats: 4,
            heartbeat_every: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
        }
    }

    /// Restores from `source`.
    pub fn source(mut self, source: DrillSource) -> Self {
        self.source = source;
        self
    }

    /// Writes `count` heartbeats `every` apart before the restore (0: none).
    pub fn heartbeats(mut self, count: u32, every: Duration) -> Self {
        self.heartbeats = count;
        self.heartbeat_every = every;
        self
    }

    /// Stamps records and metrics with `clock` (the cloud's, when it is simulated).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn check_spec(&self) -> Result<()> {
        let o = op();
        if self.database.is_empty() {
            return Err(o.invalid("", "the drill names no database"));
        }
        if self.check.trim().is_empty() {
            return Err(o.invalid(
                &self.database,
                "the drill has no verification query (`check`): a restore nobody checked proves nothing",
            ));
        }
        if self.heartbeats > 1 && self.heartbeat_every.is_zero() {
            return Err(o.invalid(
                &self.database,
                "heartbeats 0 s apart measure nothing: give `heartbeat_every` a duration",
            ));
        }
        Ok(())
    }
}

/// How a drill ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillOutcome {
    /// Restored, and the check returned true.
    Passed,
    /// Why not.
    Failed(String),
}

/// What a drill found; recorded in [`TABLE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// The database proven.
    pub database: String,
    /// The instance it was restored into (deleted since).
    pub copy: String,
    /// What it was restored from: "the latest restorable time" or "snapshot <name>".
    pub restored_from: String,
    /// When the restore was requested (the drill's clock).
    pub requested: Timestamp,
    /// From the request to the copy restored and verified (to the failure, for a failed
    /// drill).
    #[serde(with = "millis")]
    pub rto: Duration,
    /// The age of the newest data in the copy at the request; `None` when the copy holds no
    /// heartbeat (a snapshot taken before any drill) or the drill failed.
    #[serde(with = "opt_millis")]
    pub rpo: Option<Duration>,
    /// The newest heartbeat in the copy (the database server's clock).
    pub newest_data: Option<Timestamp>,
    /// The verification query.
    pub check: String,
    /// Passed, or why not.
    pub outcome: DrillOutcome,
}

impl DrillReport {
    /// Whether the drill passed.
    pub fn passed(&self) -> bool {
        self.outcome == DrillOutcome::Passed
    }
}

/// Runs a drill (see the module doc). On success, the report; on failure, the error, after
/// the failure is recorded and the copy deleted. A database without backups or snapshots,
/// or an unknown one, is refused before anything is made.
pub async fn drill(cloud: &Cloud, spec: Drill) -> Result<DrillReport> {
    spec.check_spec()?;
    let db = cloud.databases()?.clone();
    let kv = cloud.kv()?.clone();
    let metrics = cloud.metrics()?.clone();
    let source = db.describe_database(&spec.database).await?;
    let plan = plan(&db, &spec, &source.spec).await?;
    let creds = db.credentials(&spec.database).await?;
    let client = connect(&creds).await?;
    write_heartbeats(&client, &spec).await?;
    // The request's time on the server's clock, which stamped the heartbeats.
    let requested_on_server = server_now(&client).await?;
    drop(client);

    let requested = spec.clock.now();
    let started = Instant::now();
    let copy = copy_name(&spec.database, requested);
    let mut copy_spec = source.spec.clone();
    copy_spec.name.clone_from(&copy);
    // A copy to check and delete needs no standby and no backups of its own.
    copy_spec.multi_az = false;
    copy_spec.backup_retention_days = 0;
    let restored = restore_and_check(&db, &plan, &spec.database, copy_spec, &spec.check).await;
    // Whole milliseconds, as recorded, so the report and its record are equal.
    let rto = whole_ms(started.elapsed());
    let deleted = match db.delete_database(&copy).await {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    };
    let (outcome, newest_data) = match (&restored, &deleted) {
        (Ok(newest), Ok(())) => (DrillOutcome::Passed, *newest),
        (Err(e), _) => (DrillOutcome::Failed(e.to_string()), None),
        (Ok(newest), Err(e)) => (
            DrillOutcome::Failed(format!("the drill's copy {copy} was not deleted: {e}")),
            *newest,
        ),
    };
    let rpo = newest_data.map(|t| whole_ms((requested_on_server - t).to_std().unwrap_or_default()));
    let report = DrillReport {
        database: spec.database.clone(),
        copy,
        restored_from: plan.describe(),
        requested,
        rto,
        rpo,
        newest_data,
        check: spec.check.clone(),
        outcome,
    };
    record(&kv, &metrics, &report).await?;
    restored?;
    deleted?;
    Ok(report)
}

fn whole_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The newest recorded drill of `database`, if any.
pub async fn last_drill(cloud: &Cloud, database: &str) -> Result<Option<DrillReport>> {
    Ok(drill_history(cloud, database, 1).await?.into_iter().next())
}

/// The newest `limit` recorded drills of `database`, newest first.
pub async fn drill_history(
    cloud: &Cloud,
    database: &str,
    limit: usize,
) -> Result<Vec<DrillReport>> {
    let kv = cloud.kv()?;
    let page = match kv
        .query(Query::new(TABLE, database).descending().limit(limit.max(1)))
        .await
    {
        Ok(page) => page,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    page.items
        .iter()
        .take(limit)
        .map(|item| {
            let json = item
                .get("report")
                .and_then(Value::as_str)
                .unwrap_or_default();
            serde_json::from_str(json).map_err(|e| {
                op().internal(
                    database,
                    format!("a drill record in {TABLE} does not parse: {e}"),
                )
            })
        })
        .collect()
}

/// What a drill will restore from, resolved before anything is made.
#[derive(Debug)]
enum Plan {
    PointInTime(RestoreTime),
    Snapshot(String),
}

impl Plan {
    fn describe(&self) -> String {
        match self {
            Plan::PointInTime(RestoreTime::Latest) => "the latest restorable time".into(),
            Plan::PointInTime(RestoreTime::At(t)) => format!("the point in time {t}"),
            Plan::Snapshot(s) => format!("snapshot {s}"),
        }
    }
}

async fn plan(db: &Arc<dyn Databases>, spec: &Drill, source: &DatabaseSpec) -> Result<Plan> {
    let o = op();
    let name = &spec.database;
    let newest_snapshot = || async {
        let mut snaps = db.list_snapshots(Some(name)).await?;
        snaps.sort_by_key(|s| s.created);
        snaps.pop().map(|s| Plan::Snapshot(s.name)).ok_or_else(|| {
            o.precondition(
                name,
                "it keeps no backups (backup_retention_days is 0) and has no snapshot: nothing to restore from",
            )
        })
    };
    match &spec.source {
        DrillSource::Latest if source.backup_retention_days > 0 => {
            Ok(Plan::PointInTime(RestoreTime::Latest))
        }
        DrillSource::Latest | DrillSource::Snapshot(None) => newest_snapshot().await,
        DrillSource::PointInTime(t) => Ok(Plan::PointInTime(*t)),
        DrillSource::Snapshot(Some(s)) => {
            let snaps = db.list_snapshots(Some(name)).await?;
            if snaps.iter().any(|x| &x.name == s) {
                Ok(Plan::Snapshot(s.clone()))
            } else {
                Err(o.not_found(s, format!("no snapshot of {name} has this name")))
            }
        }
    }
}

/// Restores into `copy`, runs the check there and reads its newest heartbeat.
async fn restore_and_check(
    db: &Arc<dyn Databases>,
    plan: &Plan,
    source: &str,
    copy: DatabaseSpec,
    check: &str,
) -> Result<Option<Timestamp>> {
    let name = copy.name.clone();
    match plan {
        Plan::PointInTime(t) => db.restore_to_point_in_time(source, *t, copy).await?,
        Plan::Snapshot(s) => db.restore_snapshot(s, copy).await?,
    };
    let client = connect(&db.credentials(&name).await?).await?;
    let rows = client
        .simple_query(check)
        .await
        .map_err(|e| sql_error(&name, "the verification query failed", &e))?;
    let first = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
        _ => None,
    });
    match first {
        Some(Some(v)) if v == "t" || v == "true" => {}
        Some(v) => {
            return Err(op().precondition(
                &name,
                format!(
                    "the verification query returned {}, not true",
                    v.as_deref().unwrap_or("NULL")
                ),
            ));
        }
        None => {
            return Err(op().precondition(&name, "the verification query returned no row"));
        }
    }
    newest_heartbeat(&client, &name).await
}

/// `<database>-drill-<ms since the epoch, hex>`, within RDS's 63 characters: a long
/// database name is cut (never ending in a hyphen, which RDS refuses).
fn copy_name(database: &str, at: Timestamp) -> String {
    let suffix = format!("-drill-{:x}", at.timestamp_millis().max(0));
    let keep = 63usize.saturating_sub(suffix.len());
    // Identifiers are ASCII (validated by the backends), so a byte cut is a character cut.
    let base = database.get(..keep.min(database.len())).unwrap_or(database);
    format!("{}{suffix}", base.trim_end_matches('-'))
}

async fn connect(creds: &Credentials) -> Result<tokio_postgres::Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&creds.host)
        .port(creds.port)
        .user(&creds.user)
        .password(creds.password.expose())
        .dbname(&creds.database)
        .application_name("mvi-drill")
        .connect_timeout(Duration::from_secs(10));
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| sql_error(&creds.host, "cannot connect", &e))?;
    // The connection ends when the client is dropped.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn sql_error(resource: &str, what: &str, e: &tokio_postgres::Error) -> Error {
    let detail = e
        .as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned());
    op().err(
        ErrorKind::Unavailable,
        resource,
        format!("{what}: {detail}"),
    )
}

async fn write_heartbeats(client: &tokio_postgres::Client, spec: &Drill) -> Result<()> {
    let name = &spec.database;
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {HEARTBEAT_TABLE} \
               (at timestamptz PRIMARY KEY DEFAULT clock_timestamp());\n\
             DELETE FROM {HEARTBEAT_TABLE} WHERE at < clock_timestamp() - interval '30 days';"
        ))
        .await
        .map_err(|e| sql_error(name, "cannot write heartbeats", &e))?;
    for i in 0..spec.heartbeats {
        if i > 0 {
            tokio::time::sleep(spec.heartbeat_every).await;
        }
        client
            .batch_execute(&format!("INSERT INTO {HEARTBEAT_TABLE} DEFAULT VALUES"))
            .await
            .map_err(|e| sql_error(name, "cannot write a heartbeat", &e))?;
    }
    Ok(())
}

/// The first column of the first row of `sql`, as text.
async fn scalar(client: &tokio_postgres::Client, name: &str, sql: &str) -> Result<Option<String>> {
    let rows = client
        .simple_query(sql)
        .await
        .map_err(|e| sql_error(name, "a query failed", &e))?;
    Ok(rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    }))
}

fn epoch_to_timestamp(name: &str, text: &str) -> Result<Timestamp> {
    let secs: f64 = text
        .parse()
        .map_err(|e| op().internal(name, format!("the server's time {text:?}: {e}")))?;
    #[allow(clippy::cast_possible_truncation)]
    let micros = (secs * 1e6).round() as i64;
    Timestamp::from_timestamp_micros(micros)
        .ok_or_else(|| op().internal(name, format!("the server's time {text:?} is out of range")))
}

async fn server_now(client: &tokio_postgres::Client) -> Result<Timestamp> {
    let text = scalar(
        client,
        "server",
        "SELECT extract(epoch FROM clock_timestamp())::text",
    )
    .await?
    .unwrap_or_default();
    epoch_to_timestamp("server", &text)
}

/// The newest heartbeat in the copy; `None` when it has none (or no heartbeat table).
async fn newest_heartbeat(
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<Option<Timestamp>> {
    let exists = scalar(
        client,
        name,
        &format!("SELECT to_regclass('{HEARTBEAT_TABLE}') IS NOT NULL"),
    )
    .await?;
    if exists.as_deref() != Some("t") {
        return Ok(None);
    }
    match scalar(
        client,
        name,
        &format!("SELECT extract(epoch FROM max(at))::text FROM {HEARTBEAT_TABLE}"),
    )
    .await?
    {
        Some(text) => epoch_to_timestamp(name, &text).map(Some),
        None => Ok(None),
    }
}

async fn record(kv: &Arc<dyn Kv>, metrics: &Arc<dyn Metrics>, report: &DrillReport) -> Result<()> {
    let o = op();
    let spec = TableSpec::new(TABLE, KeyAttr::new("database", KeyType::Str))
        .sort_key(KeyAttr::new("at", KeyType::Number));
    match kv.create_table(spec).await {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let json = serde_json::to_string(report).map_err(|e| o.internal(&report.database, e))?;
    let item = crate::item! {
        "database" => report.database.as_str(),
        "at" => report.requested.timestamp_millis(),
        "report" => json.as_str(),
        "passed" => report.passed(),
    };
    kv.put_item(PutItem::new(TABLE, item)).await?;
    let at = report.requested;
    let point = |name: &str, value: f64, unit: Unit| {
        Datum::new(name, value, at)
            .dimension("Database", &report.database)
            .unit(unit)
    };
    let mut data = vec![
        point("RTO", report.rto.as_secs_f64(), Unit::Seconds),
        point(
            "Passed",
            if report.passed() { 1.0 } else { 0.0 },
            Unit::Count,
        ),
    ];
    if let Some(rpo) = report.rpo {
        data.push(point("RPO", rpo.as_secs_f64(), Unit::Seconds));
    }
    metrics.put_data(NAMESPACE, data).await
}

/// A duration as whole milliseconds in JSON.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::cast_possible_truncation, clippy::trivially_copy_pass_by_ref)]
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// An optional duration as whole milliseconds (or null) in JSON.
mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::cast_possible_truncation, clippy::ref_option)]
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|m| m.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_names_say_what_they_copy() {
        let at = Timestamp::from_timestamp_millis(1_764_000_000_000).unwrap();
        assert_eq!(copy_name("orders", at), "orders-drill-19ab697e800");
        let long = format!("{}-b", "a".repeat(44));
        let name = copy_name(&long, at);
        assert_eq!(name.len(), 62, "{name}");
        assert_eq!(name, format!("{}-drill-19ab697e800", "a".repeat(44)));
    }

    #[test]
    fn a_drill_needs_a_database_and_a_check() {
        assert!(Drill::new("", "select true").check_spec().is_err());
        let e = Drill::new("orders", "  ").check_spec().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("verification query"), "{e}");
        let e = Drill::new("orders", "select true")
            .heartbeats(3, Duration::ZERO)
            .check_spec()
            .unwrap_err();
        assert!(e.to_string().contains("heartbeat_every"), "{e}");
        assert!(Drill::new("orders", "select true").check_spec().is_ok());
    }

    #[test]
    fn reports_round_trip_through_their_record() {
        let report = DrillReport {
            database: "orders".into(),
            copy: "orders-drill-1".into(),
            restored_from: "snapshot nightly".into(),
            requested: Timestamp::from_timestamp_millis(1_764_000_000_000).unwrap(),
            rto: Duration::from_millis(1234),
            rpo: Some(Duration::from_millis(2001)),
            newest_data: None,
            check: "select true".into(),
            outcome: DrillOutcome::Failed("pg_restore failed".into()),
        };
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains("\"rto\":1234"), "{json}");
        let back: DrillReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        assert!(!back.passed());
    }
}

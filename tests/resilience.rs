//! Surviving failures on the local backend: a multi-AZ database whose primary's zone fails
//! under a writer, with every acknowledged commit still there after the failover; a reboot
//! with failover; a single-AZ database stopped by its zone's failure and started again when
//! the zone is back; restore drills from the latest point in time and from snapshots,
//! good and corrupt.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::Path;
use std::time::{Duration, Instant};

use mvi::database::{DatabaseSpec, DatabaseState};
use mvi::local::LocalCloud;

mod common;
use common::sql::{Writer, psql, tally};

async fn open(root: &Path) -> LocalCloud {
    LocalCloud::builder()
        .root(root.join("cloud"))
        .seed(14)
        .build_local()
        .await
        .unwrap()
}

/// Stops every server of the root even if the test fails.
struct Purge(std::path::PathBuf);
impl Drop for Purge {
    fn drop(&mut self) {
        mvi::local::database::purge(&self.0);
    }
}

async fn wait_for<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The primary's zone fails while a writer commits a row per request: every acknowledged
/// row is there afterwards, writes resume through the same endpoint, and a new standby is
/// built in the third zone; a reboot with failover then moves the primary back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_failure_under_writes_loses_no_acknowledged_commit() {
    let dir = tempfile::tempdir().unwrap();
    let _purge = Purge(dir.path().join("cloud"));
    let local = open(dir.path()).await;
    let dbs = local.cloud().databases().unwrap().clone();
    let mut spec = DatabaseSpec::postgres("orders");
    spec.multi_az = true;
    let info = dbs.create_database(spec).await.unwrap();
    assert_eq!(info.zone.as_deref(), Some("local-1a"));
    assert_eq!(info.standby_zone.as_deref(), Some("local-1b"));
    let endpoint = info.endpoint.clone();
    let url = dbs
        .credentials("orders")
        .await
        .unwrap()
        .url()
        .expose()
        .to_string();
    psql(&url, "create table rows (id bigint primary key)").unwrap();
    // A commit is acknowledged once the standby has flushed it.
    assert_eq!(psql(&url, "show synchronous_commit").unwrap(), "on");
    assert_eq!(
        psql(&url, "show synchronous_standby_names").unwrap(),
        "standby"
    );

    let writer = Writer::start(&url, "rows");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let failed_at = writer.elapsed();
    local.vms().fail_zone("local-1a").unwrap();
    // Writing goes on a while after the failover.
    wait_for("the failover", || async {
        dbs.describe_database("orders")
            .await
            .unwrap()
            .zone
            .as_deref()
            == Some("local-1b")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked = writer.stop();
    let t = tally(&url, "rows", &acked, failed_at).unwrap();
    let resumed = t
        .resumed
        .expect("no write was acknowledged after the zone failed");
    assert!(
        t.before > 0 && t.acked > t.before,
        "{} rows before, {} in all",
        t.before,
        t.acked
    );
    // Every acknowledged row is there, through the same endpoint.
    assert!(t.lost.is_empty(), "acknowledged rows lost: {:?}", t.lost);
    let info = dbs.describe_database("orders").await.unwrap();
    assert_eq!(info.endpoint, endpoint, "the endpoint moved");
    println!(
        "multi-AZ failover: {} rows acknowledged ({} before the zone failed), 0 lost; first acknowledged write {} ms after the zone failed",
        t.acked,
        t.before,
        resumed.as_millis()
    );
    assert!(
        info.events.iter().any(|e| e
            .message
            .starts_with("failed over from zone local-1a to zone local-1b")),
        "{:?}",
        info.events
    );
    // A new standby in the zone left.
    wait_for("a new standby in local-1c", || async {
        dbs.describe_database("orders")
            .await
            .unwrap()
            .standby_zone
            .as_deref()
            == Some("local-1c")
    })
    .await;
    // Commits wait for it again, and it has every row.
    psql(&url, "insert into rows values (1000000)").unwrap();

    // A reboot with failover: the standby in local-1c takes over.
    let info = dbs.reboot_database("orders", true).await.unwrap();
    assert_eq!(info.zone.as_deref(), Some("local-1c"));
    assert_eq!(info.endpoint, endpoint);
    let count: usize = psql(&url, "select count(*) from rows")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        count,
        t.rows + 1,
        "the rows before the reboot, and one more"
    );
    // The old primary's zone gets the new standby (local-1b is up).
    wait_for("a new standby in local-1b", || async {
        dbs.describe_database("orders")
            .await
            .unwrap()
            .standby_zone
            .as_deref()
            == Some("local-1b")
    })
    .await;

    // The failovers were graphed.
    let metrics = local.cloud().metrics().unwrap();
    let listed = metrics
        .list_metrics(Some("mvi/Database"), Some("FailoverTime"))
        .await
        .unwrap();
    assert!(
        listed.iter().any(|m| m.name == "FailoverTime"),
        "{listed:?}"
    );
    dbs.delete_database("orders").await.unwrap();
}

/// Without a standby there is no failover; a single-AZ instance in a failed zone is
/// stopped, and started again with its data when the zone is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_az_database_goes_down_with_its_zone_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let _purge = Purge(dir.path().join("cloud"));
    let local = open(dir.path()).await;
    let dbs = local.cloud().databases().unwrap().clone();
    let info = dbs
        .create_database(DatabaseSpec::postgres("solo"))
        .await
        .unwrap();
    assert_eq!(
        (info.zone.as_deref(), info.standby_zone),
        (Some("local-1a"), None)
    );
    let e = dbs.reboot_database("solo", true).await.unwrap_err();
    assert_eq!(e.kind(), mvi::ErrorKind::PreconditionFailed, "{e}");
    assert!(e.to_string().contains("only a multi-AZ database"), "{e}");
    let url = dbs
        .credentials("solo")
        .await
        .unwrap()
        .url()
        .expose()
        .to_string();
    psql(
        &url,
        "create table kept (x int); insert into kept values (7)",
    )
    .unwrap();
    // A plain reboot keeps the address and the data.
    let rebooted = dbs.reboot_database("solo", false).await.unwrap();
    assert_eq!(rebooted.endpoint, info.endpoint);
    assert_eq!(psql(&url, "select x from kept").unwrap(), "7");

    local.vms().fail_zone("local-1a").unwrap();
    wait_for("the database to stop with its zone", || async {
        dbs.describe_database("solo").await.unwrap().state == DatabaseState::Stopped
    })
    .await;
    assert!(psql(&url, "select 1").is_err());
    local.vms().restore_zone("local-1a").unwrap();
    wait_for("the database to start again", || async {
        dbs.describe_database("solo").await.unwrap().state == DatabaseState::Available
    })
    .await;
    let url = dbs
        .credentials("solo")
        .await
        .unwrap()
        .url()
        .expose()
        .to_string();
    assert_eq!(psql(&url, "select x from kept").unwrap(), "7");
    dbs.delete_database("solo").await.unwrap();
}

/// The server's clock, as the drill's heartbeats are stamped.
fn server_now(url: &str) -> chrono::DateTime<chrono::Utc> {
    let text = psql(url, "select extract(epoch from clock_timestamp())").unwrap();
    let secs: f64 = text.parse().unwrap();
    #[allow(clippy::cast_possible_truncation)]
    chrono::DateTime::from_timestamp_micros((secs * 1e6) as i64).unwrap()
}

/// A drill from the latest restorable time restores every archived row into a copy, checks
/// it, measures RTO and RPO (the newest heartbeat in the copy), deletes the copy and records
/// the result; a drill whose check returns false fails, recorded as failed, and leaves no
/// copy either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_restores_the_latest_point_in_time_and_records_rto_and_rpo() {
    use mvi::drill::{self, Drill, DrillOutcome, HEARTBEAT_TABLE};
    let dir = tempfile::tempdir().unwrap();
    let _purge = Purge(dir.path().join("cloud"));
    let local = open(dir.path()).await;
    let cloud = local.cloud().clone();
    let dbs = cloud.databases().unwrap().clone();
    dbs.create_database(DatabaseSpec::postgres("orders"))
        .await
        .unwrap();
    let url = dbs
        .credentials("orders")
        .await
        .unwrap()
        .url()
        .expose()
        .to_string();
    // A heartbeat of the test's own, beside 1000 rows: once they are archived, the copy
    // holds them whatever the drill's own heartbeats catch.
    psql(
        &url,
        &format!(
            "create table orders (id int primary key); \
             insert into orders select generate_series(1, 1000); \
             create table {HEARTBEAT_TABLE} (at timestamptz primary key default clock_timestamp()); \
             insert into {HEARTBEAT_TABLE} default values"
        ),
    )
    .unwrap();
    let written = server_now(&url);
    wait_for("the rows to be archived", || async {
        dbs.describe_database("orders")
            .await
            .unwrap()
            .latest_restorable_time
            .is_some_and(|t| t >= written)
    })
    .await;

    let report = drill::drill(
        &cloud,
        Drill::new("orders", "select count(*) = 1000 from orders")
            .heartbeats(3, Duration::from_millis(500)),
    )
    .await
    .unwrap();
    assert!(report.passed(), "{report:?}");
    assert_eq!(report.restored_from, "the latest restorable time");
    assert!(report.copy.starts_with("orders-drill-"), "{}", report.copy);
    let newest = report.newest_data.expect("the copy holds no heartbeat");
    assert!(newest <= chrono::Utc::now(), "{newest}");
    let rpo = report.rpo.expect("no RPO");
    assert!(report.rto > Duration::ZERO);
    println!(
        "drill: RTO {} ms, RPO {} ms",
        report.rto.as_millis(),
        rpo.as_millis()
    );
    // The copy is gone; the record and the metrics say what happened.
    let names: Vec<String> = dbs
        .list_databases()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.spec.name)
        .collect();
    assert_eq!(names, ["orders"]);
    assert_eq!(
        drill::last_drill(&cloud, "orders").await.unwrap().as_ref(),
        Some(&report)
    );
    let metrics = cloud.metrics().unwrap();
    for name in ["RTO", "RPO", "Passed"] {
        let listed = metrics
            .list_metrics(Some(drill::NAMESPACE), Some(name))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1, "{name}: {listed:?}");
    }

    // A check that does not hold fails the drill, and it is recorded as such.
    let e = drill::drill(
        &cloud,
        Drill::new("orders", "select count(*) = 5 from orders").heartbeats(0, Duration::ZERO),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("the verification query returned f, not true"),
        "{e}"
    );
    let last = drill::last_drill(&cloud, "orders").await.unwrap().unwrap();
    assert!(
        matches!(&last.outcome, DrillOutcome::Failed(m) if m.contains("returned f")),
        "{last:?}"
    );
    assert_eq!(
        drill::drill_history(&cloud, "orders", 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(dbs.list_databases().await.unwrap().len(), 1);
    dbs.delete_database("orders").await.unwrap();
}

/// A drill from a corrupt snapshot fails with an error that says so and leaves no instance
/// behind; without backups or snapshots there is nothing to drill, and nothing is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_from_a_corrupt_snapshot_fails_cleanly() {
    use mvi::drill::{self, Drill, DrillOutcome, DrillSource};
    let dir = tempfile::tempdir().unwrap();
    let _purge = Purge(dir.path().join("cloud"));
    let local = open(dir.path()).await;
    let cloud = local.cloud().clone();
    let dbs = cloud.databases().unwrap().clone();
    let mut spec = DatabaseSpec::postgres("ledger");
    spec.backup_retention_days = 0;
    dbs.create_database(spec).await.unwrap();
    let check = "select count(*) = 100 from entries";
    let e = drill::drill(&cloud, Drill::new("ledger", check))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), mvi::ErrorKind::PreconditionFailed, "{e}");
    assert!(e.to_string().contains("no snapshot"), "{e}");
    assert!(drill::last_drill(&cloud, "ledger").await.unwrap().is_none());

    let url = dbs
        .credentials("ledger")
        .await
        .unwrap()
        .url()
        .expose()
        .to_string();
    psql(
        &url,
        "create table entries (id int); insert into entries select generate_series(1, 100)",
    )
    .unwrap();
    dbs.create_snapshot("ledger", "nightly").await.unwrap();
    // A good snapshot passes ...
    let report = drill::drill(
        &cloud,
        Drill::new("ledger", check).heartbeats(1, Duration::ZERO),
    )
    .await
    .unwrap();
    assert_eq!(report.restored_from, "snapshot nightly");
    // ... and one whose bytes were damaged fails.
    let dump = dir.path().join("cloud/database/snapshots/nightly.dump");
    let mut bytes = std::fs::read(&dump).unwrap();
    let half = bytes.len() / 2;
    bytes.truncate(half);
    bytes.extend_from_slice(b"not a dump any more");
    std::fs::write(&dump, bytes).unwrap();
    let e = drill::drill(
        &cloud,
        Drill::new("ledger", check)
            .source(DrillSource::Snapshot(Some("nightly".into())))
            .heartbeats(0, Duration::ZERO),
    )
    .await
    .unwrap_err();
    println!("a drill from a corrupt snapshot: {e}");
    assert!(e.to_string().contains("pg_restore"), "{e}");
    let names: Vec<String> = dbs
        .list_databases()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.spec.name)
        .collect();
    assert_eq!(names, ["ledger"], "the drill left an instance behind");
    let last = drill::last_drill(&cloud, "ledger").await.unwrap().unwrap();
    assert!(
        matches!(&last.outcome, DrillOutcome::Failed(m) if m.contains("pg_restore")),
        "{last:?}"
    );
    assert_eq!(last.rpo, None);
    dbs.delete_database("ledger").await.unwrap();
}

//! Surviving failures on the local backend: a multi-AZ database whose primary's zone fails
//! under a writer, with every acknowledged commit still there after the failover; a reboot
//! with failover; a single-AZ database stopped by its zone's failure and started again when
//! the zone is back.

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

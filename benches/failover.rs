//! Local multi-AZ failover under writes: from the primary's zone failing to the first commit
//! acknowledged through the endpoint, and the acknowledged rows lost (must be 0), over
//! `ROUNDS` zone failures. A benchmark, not a test: it prints the figures for
//! docs/benchmarks.md.
//!
//! ```text
//! cargo bench --bench failover
//! ```

use std::time::Duration;

use mvi::database::DatabaseSpec;
use mvi::local::LocalCloud;

#[path = "../tests/common/sql.rs"]
mod sql;

const ROUNDS: usize = 5;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = dir.path().join("cloud");
    let local = LocalCloud::builder()
        .root(&root)
        .build_local()
        .await
        .expect("a local cloud");
    let dbs = local.cloud().databases().expect("databases").clone();
    let mut resumed = Vec::new();
    let mut lost = 0;
    let mut acked = 0;
    for round in 0..ROUNDS {
        let name = format!("bench{round}");
        let mut spec = DatabaseSpec::postgres(&name);
        spec.multi_az = true;
        let info = dbs
            .create_database(spec)
            .await
            .expect("a multi-AZ database");
        let url = dbs.credentials(&name).await.expect("credentials").url();
        let url = url.expose();
        sql::psql(url, "create table rows (id bigint primary key)").expect("a table");
        let writer = sql::Writer::start(url, "rows");
        tokio::time::sleep(Duration::from_millis(800)).await;
        let zone = info.zone.clone().expect("a zone");
        let failed_at = writer.elapsed();
        local.vms().fail_zone(&zone).expect("fail the zone");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let rows = writer.stop();
        let t = sql::tally(url, "rows", &rows, failed_at).expect("the rows");
        println!(
            "round {round}: zone {zone} failed; first acknowledged write after {} ms; {} acknowledged, {} lost",
            t.resumed.map_or(-1, |d| d.as_millis() as i64),
            t.acked,
            t.lost.len()
        );
        resumed.extend(t.resumed);
        lost += t.lost.len();
        acked += t.acked;
        local.vms().restore_zone(&zone).expect("restore the zone");
        dbs.delete_database(&name).await.expect("delete");
    }
    resumed.sort();
    let ms = |d: &Duration| d.as_millis();
    println!(
        "failover, zone failure to first acknowledged write: median {} ms, max {} ms over {} rounds; {acked} commits acknowledged, {lost} lost",
        resumed.get(resumed.len() / 2).map_or(0, ms),
        resumed.last().map_or(0, ms),
        resumed.len()
    );
    mvi::local::database::purge(&root);
}

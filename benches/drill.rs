//! Restore drills of a 100 MB database on the local backend, from the latest point in time
//! (WAL archiving) and from a snapshot, with an app committing a row per request meanwhile:
//! RTO (request to restored and verified) and RPO (the newest data's age at the request),
//! over `ROUNDS` drills each. A benchmark, not a test: it prints the figures for
//! docs/benchmarks.md.
//!
//! ```text
//! cargo bench --bench drill
//! ```

use std::time::Duration;

use mvi::database::DatabaseSpec;
use mvi::drill::{self, Drill, DrillSource};
use mvi::local::LocalCloud;

#[path = "../tests/common/sql.rs"]
mod sql;

const ROUNDS: usize = 3;
/// Rows of 1 kB: about 100 MB of table data.
const ROWS: u32 = 100_000;

fn summary(what: &str, values: &mut [Duration]) {
    values.sort();
    let ms = |d: Duration| d.as_millis();
    println!(
        "{what}: median {} ms, min {} ms, max {} ms over {} drills",
        ms(values[values.len() / 2]),
        ms(values[0]),
        ms(values[values.len() - 1]),
        values.len()
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let root = dir.path().join("cloud");
    let local = LocalCloud::builder()
        .root(&root)
        .build_local()
        .await
        .expect("a local cloud");
    let cloud = local.cloud().clone();
    let dbs = cloud.databases().expect("databases").clone();
    dbs.create_database(DatabaseSpec::postgres("bench"))
        .await
        .expect("a database");
    let url = dbs
        .credentials("bench")
        .await
        .expect("credentials")
        .url()
        .expose()
        .to_string();
    sql::psql(
        &url,
        &format!(
            "create table payload (id int primary key, body text); \
             insert into payload select g, repeat(md5(g::text), 32) from generate_series(1, {ROWS}) g; \
             create table rows (id bigint primary key)"
        ),
    )
    .expect("100 MB of rows");
    let size = sql::psql(&url, "select pg_size_pretty(pg_database_size('app'))").expect("size");
    println!("database size {size}");
    dbs.create_snapshot("bench", "bench-snap")
        .await
        .expect("a snapshot");
    let writer = sql::Writer::start(&url, "rows");
    let check = format!("select count(*) = {ROWS} from payload");
    let (mut pitr_rto, mut pitr_rpo, mut snap_rto) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let r = drill::drill(&cloud, Drill::new("bench", &check))
            .await
            .expect("a point-in-time drill");
        pitr_rto.push(r.rto);
        pitr_rpo.push(r.rpo.expect("an RPO"));
        let r = drill::drill(
            &cloud,
            Drill::new("bench", &check)
                .source(DrillSource::Snapshot(Some("bench-snap".into())))
                .heartbeats(0, Duration::ZERO),
        )
        .await
        .expect("a snapshot drill");
        snap_rto.push(r.rto);
    }
    let acked = writer.stop();
    summary("point-in-time drill RTO", &mut pitr_rto);
    summary("point-in-time drill RPO", &mut pitr_rpo);
    summary("snapshot drill RTO", &mut snap_rto);
    println!("the app committed {} rows meanwhile", acked.len());
    dbs.delete_database("bench").await.expect("delete");
    mvi::local::database::purge(&root);
}
